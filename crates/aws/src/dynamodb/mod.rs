//! [`DynamoStore`]: the detector's [`StateStore`] in one DynamoDB table.
//!
//! The table (see [`create_table`]) has string keys `pk` (HASH) and `sk` (RANGE), the TTL attribute
//! `expires_at` (epoch seconds) on every item, and the sparse index `open-incidents` (hash key `open`,
//! all attributes projected). Items:
//!
//! | `pk` | `sk` | holds | `expires_at` |
//! |---|---|---|---|
//! | `EVENT#<eventID>` | `EVENT` | the claim that counts a failure once | 3 days after it was recorded |
//! | `SESSION#<accessKeyId>` | `SESSION` | an issued session ([`Issuance`]) | 9 days after it was recorded |
//! | `GROUP#<group id>` | `STATE` | a group's [`GroupState`] | 30 days after its last failure |
//! | `DRILL#<account>` | `DRILL` | the account's synthetic-drill slot: `drill_at`, `drill_event` | a day after it was taken |
//! | `NEARMISS#<accessKeyId>` | `NEARMISS` | a session's near miss, stored by the scheduled trail scan (`nearmiss.rs`) | 30 days after its last use |
//!
//! A group item holds its key parts (`key_account`, `key_principal`, `key_session`), its counters as
//! top-level numbers so that `ADD` counts atomically (`failures`, `token_call_failures`,
//! `request_expired_failures`, `code#<errorCode>`, `call#<service:EventName>`, `client#<client>`), the
//! first failure's time and facts (`first_failure`, `first_access_key_id`, …), `last_failure`, each
//! client's first sighting (`client_first#<client>`), string sets `source_ips`, `access_key_ids` and
//! `call_names` (the `call#` names, whose `size()` the cap is checked on), the number set `issued_times`,
//! and the incident: `incident_id`, `paged` (the highest severity published), `resolved_at`, and the
//! page claim `page_claim` (`<severity>:<incident id>`) with its lease's end `page_claim_until`.
//! `open` = `"1"` exists only while the incident is open (set when one starts, removed on resolve, set
//! again on unresolve), so `open_incidents` is a query of the index, not a scan.
//!
//! `record_failures` makes one `TransactWriteItems` per part of the batch ([`MERGE_PART`], 99 failures): a
//! put of each eventID's claim, conditional on `attribute_not_exists(pk)`, and one update of the group
//! item that `ADD`s the counters.
//! A claim that already exists cancels the transaction; its failure is a duplicate, dropped, and the rest
//! are sent again. First and last failure are a min and a max, which DynamoDB cannot compute, and the
//! caps on listed values depend on what is stored. Rather than read-modify-write, the update is written
//! for a guess about the stored group (say: its first failure is earlier than these, its last one later),
//! taken from what this store last read or wrote of it, and the guess is part of the update's condition
//! (`first_failure <= :t AND last_failure <= :t2`). When the guess holds, the update is exact whatever
//! else changed meanwhile; when it does not, the cancellation hands back the stored item
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`) and the transaction is planned again from it. So a
//! stale guess costs one more round trip, never a wrong count, and no min/max is ever left for a follow-up
//! write that a crash could lose. A restart replaces the counters under a condition on the stored
//! incident id (and on the stored failure count, which proves the store knows every counter it must
//! remove, when what it last saw is of that incident); a different incident id makes it return `None`
//! with nothing written.
//!
//! `record_issuance` makes two `UpdateItem`s and no transaction: the session item, every fact
//! `if_not_exists` (role chaining and a container's session set when a copy says so), so that replays and
//! the two copies of a cross-account call leave the same item in any order; then the group's issue time
//! (`ADD` to a set), which hands the group back (`ReturnValues`) for the detector to decide on. Either
//! write alone leaves what a late delivery of the other would, and a retry redoes both.
//!
//! That the plans leave exactly what `FailureStats::merge` says, whatever a writer's view, is a property
//! test (`evaluate.rs` applies them as DynamoDB would; `tests/adapters/merge.rs` records random histories
//! on the emulators).
//!
//! Accepted limits: a batch of more than one part is several transactions, each atomic (the stats are
//! merged part by part, as the port's contract says: [`Change::apply`]); the principal's length is
//! compared with `size()`, which counts UTF-8 bytes in DynamoDB as `str::len` does (moto counts
//! characters; the two differ only for non-ASCII principals, which IAM does not allow); items past their
//! `expires_at` are still read until DynamoDB deletes them (it does so lazily, within days). Group ids
//! changed for two rare keys (`tokenwatch_core::incident::group_id`): an item an earlier version stored for a part
//! written `-` is now the item of the key without that part (the earlier version wrote both alike), and
//! one stored for a part cut at 256 bytes is reached by no key any more: the sweep skips it and it
//! expires.

#[cfg(test)]
mod evaluate;
mod expr;
mod fleet;
mod item;
mod nearmiss;
mod plan;

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CancellationReason, ConsumedCapacity,
    GlobalSecondaryIndex, KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put,
    ReturnConsumedCapacity, ReturnValue, ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
    TimeToLiveSpecification, TransactWriteItem, Update,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use tokenwatch_core::classify::{Failure, Issuance};
use tokenwatch_core::drill::DRILL_INTERVAL;
use tokenwatch_core::fleet::Fleet;
use tokenwatch_core::incident::{GroupState, IncidentId, MAX_HISTORY, MAX_ISSUED_TIMES};
use tokenwatch_core::model::Severity;
use tokenwatch_core::ports::{Change, MERGE_PART, PAGE_LEASE, PortError, Preloaded, StateStore, merge_parts};
use tokenwatch_core::stats::{FailureStats, GroupKey};
use tokenwatch_core::time::Epoch;
use tracing::{debug, warn};

use crate::error::from_sdk;
use expr::Expr;
use item::*;

// At most 100 actions per transaction: a part's claims and the group's update.
const _: () = assert!(MERGE_PART < 100);
/// Attempts per batch before giving up with a transient error. Each attempt either succeeds, drops
/// duplicates, learns the stored group, or backs off from a conflicting writer.
const MAX_ATTEMPTS: usize = 30;
/// Views kept for the groups this process wrote or read: a detector sees few groups at a time, and a
/// view at the caps is some 20 KB.
const MAX_VIEWS: usize = 512;

/// Sessions a process keeps after reading them (a few hundred bytes each).
const MAX_SESSIONS: usize = 4096;

/// Keys per `BatchGetItem` request (DynamoDB's limit).
const BATCH_GET_KEYS: usize = 100;
/// Requests for the keys a `BatchGetItem` left unprocessed (throttling, or its 16 MB answer limit) before
/// the rest are left to be read one by one.
const BATCH_GET_ATTEMPTS: usize = 4;

/// The [`StateStore`] of the detector: one DynamoDB table (see the module docs for its design).
pub struct DynamoStore {
    client: Client,
    table: String,
    /// What this process last saw or wrote of each group. It only picks which guess a transaction makes
    /// about the stored first/last failure and lists (see [`plan`]); the transaction's condition checks the
    /// guess, so a stale view costs a round trip, never a wrong count.
    views: Mutex<HashMap<String, GroupState>>,
    /// Sessions already read: an issued session never changes once recorded, and a warm Lambda sees the
    /// same failing keys batch after batch. Only found sessions are kept (one not yet recorded may be soon).
    sessions: Mutex<HashMap<String, Issuance>>,
    calls: AtomicUsize,
    /// Write units the table reported for the writes that succeeded, in hundredths.
    write_units: AtomicU64,
}

impl DynamoStore {
    /// A store on `table`, with a client built from `sdk` ([`crate::sdk_config`]).
    pub fn new(sdk: &SdkConfig, table: impl Into<String>) -> Self {
        Self::from_client(Client::new(sdk), table)
    }

    /// A store on `table` through `client`.
    pub fn from_client(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            views: Mutex::default(),
            sessions: Mutex::default(),
            calls: AtomicUsize::new(0),
            write_units: AtomicU64::new(0),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// DynamoDB requests made so far (operations, not counting the SDK's own retries of one request).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Write units DynamoDB reported consuming for the group, session and issuance writes that
    /// succeeded so far (what on-demand bills; a write refused by its condition is billed too, and is
    /// not in this sum). For the cost per event a benchmark prints.
    pub fn write_units(&self) -> f64 {
        self.write_units.load(Ordering::Relaxed) as f64 / 100.0
    }

    fn consumed<'c>(&self, capacity: impl IntoIterator<Item = &'c ConsumedCapacity>) {
        let units: f64 = capacity
            .into_iter()
            .filter_map(ConsumedCapacity::capacity_units)
            .sum();
        self.write_units
            .fetch_add((units * 100.0).round() as u64, Ordering::Relaxed);
    }

    fn view(&self, pk: &str) -> Option<GroupState> {
        self.views
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(pk)
            .cloned()
    }

    fn remember(&self, pk: &str, state: GroupState) {
        let mut views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        if views.len() >= MAX_VIEWS && !views.contains_key(pk) {
            views.clear();
        }
        views.insert(pk.to_owned(), state);
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, PortError> {
        self.count();
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk("dynamodb:GetItem", e))?;
        Ok(out.item)
    }

    /// Reads `keys` (pk, sk) with strongly consistent `BatchGetItem` requests of at most
    /// [`BATCH_GET_KEYS`], asking again for what DynamoDB left unprocessed at most
    /// [`BATCH_GET_ATTEMPTS`] times in all. Returns the items found and the keys read (found or not):
    /// a key left unprocessed at the end is in neither.
    async fn batch_get(&self, keys: Vec<Item>) -> Result<(Vec<Item>, HashSet<(String, String)>), PortError> {
        let mut found = Vec::new();
        let mut read = HashSet::new();
        for chunk in keys.chunks(BATCH_GET_KEYS) {
            let mut pending: Vec<Item> = chunk.to_vec();
            for attempt in 0..BATCH_GET_ATTEMPTS {
                if pending.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                self.count();
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(pending.clone()))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| PortError::permanent(format!("dynamodb: batch read not built: {e}")))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| from_sdk("dynamodb:BatchGetItem", e))?;
                let unprocessed: Vec<Item> = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                let left: HashSet<(String, String)> = unprocessed.iter().filter_map(key_of).collect();
                read.extend(pending.iter().filter_map(key_of).filter(|k| !left.contains(k)));
                found.extend(
                    out.responses
                        .and_then(|mut r| r.remove(&self.table))
                        .unwrap_or_default(),
                );
                pending = unprocessed;
            }
        }
        Ok((found, read))
    }

    /// One conditional `UpdateItem` of a group; `false` when the condition failed (nothing written).
    async fn update_group(&self, key: &GroupKey, e: Expr) -> Result<bool, PortError> {
        Ok(self
            .update_group_returning(key, e, ReturnValue::None)
            .await?
            .is_some())
    }

    /// One conditional `UpdateItem` of a group, returning the attributes `returning` asks for; `None` when
    /// the condition failed (nothing written).
    async fn update_group_returning(
        &self,
        key: &GroupKey,
        e: Expr,
        returning: ReturnValue,
    ) -> Result<Option<Item>, PortError> {
        self.update_item(group_pk(key), GROUP_SK, e, returning).await
    }

    /// One conditional `UpdateItem` of any item, returning the attributes `returning` asks for; `None`
    /// when the condition failed (nothing written).
    async fn update_item(
        &self,
        pk: String,
        sk: &str,
        e: Expr,
        returning: ReturnValue,
    ) -> Result<Option<Item>, PortError> {
        self.count();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item::key(pk, sk)))
            .update_expression(e.update_expression())
            .set_condition_expression(e.condition_expression())
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .return_values(returning)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                self.consumed(out.consumed_capacity());
                Ok(Some(out.attributes.unwrap_or_default()))
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(err) => Err(from_sdk("dynamodb:UpdateItem", err)),
        }
    }

    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<(), SdkError<TransactWriteItemsError, HttpResponse>> {
        self.count();
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map(|out| self.consumed(out.consumed_capacity()))
    }

    /// Records one transaction's worth of failures (`chunk` indexes `failures`, event ids unique).
    async fn record_chunk(
        &self,
        key: &GroupKey,
        failures: &[Failure],
        chunk: &[usize],
        change: Change<'_>,
    ) -> Result<Option<Vec<usize>>, PortError> {
        let pk = group_pk(key);
        let batch_time = chunk.iter().map(|&i| failures[i].time).max();
        let mut pending = chunk.to_vec();
        let mut view = self.view(&pk).unwrap_or_else(|| GroupState {
            key: key.clone(),
            ..Default::default()
        });
        let mut group_condition_held = false;
        let mut view_is_stored = false;
        for attempt in 0..MAX_ATTEMPTS {
            // Every failure was a duplicate and the group's condition held on the last try: the update
            // would only rewrite the key parts, so skip it (a redelivered event costs one call, not two).
            if pending.is_empty()
                && group_condition_held
                && view.incident.id.is_some()
                && matches!(change, Change::Add { .. })
            {
                return Ok(Some(pending));
            }
            let delta = stats_of(pending.iter().map(|&i| &failures[i]));
            let plan = plan::group_update(key, &view, &delta, change, batch_time);
            let claimed: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|&i| failures[i].event_id.is_some())
                .collect();
            let claim_expires = now().max(batch_time.unwrap_or(0)) + CLAIM_TTL;
            let mut actions = Vec::with_capacity(claimed.len() + 1);
            for &i in &claimed {
                let id = failures[i].event_id.as_deref().unwrap_or_default();
                let mut claim = item::key(claim_pk(id), CLAIM_SK);
                claim.insert(EXPIRES_AT.into(), n(claim_expires));
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(claim))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(|e| PortError::permanent(format!("dynamodb: claim not built: {e}")))?;
                actions.push(TransactWriteItem::builder().put(put).build());
            }
            let e = &plan.expr;
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(item::key(pk.clone(), GROUP_SK)))
                .update_expression(e.update_expression())
                .set_condition_expression(e.condition_expression())
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build()
                .map_err(|e| PortError::permanent(format!("dynamodb: group update not built: {e}")))?;
            actions.push(TransactWriteItem::builder().update(update).build());

            let err = match self.transact(actions).await {
                Ok(()) => {
                    self.remember(&pk, plan.next);
                    return Ok(Some(pending));
                }
                Err(err) => err,
            };
            let Some(reasons) = cancellation_reasons(&err) else {
                return Err(from_sdk("dynamodb:TransactWriteItems", err));
            };
            if reasons.len() != claimed.len() + 1 {
                return Err(PortError::transient(format!(
                    "dynamodb:TransactWriteItems cancelled with {} reasons for {} actions",
                    reasons.len(),
                    claimed.len() + 1
                )));
            }
            let mut duplicates = HashSet::new();
            let mut stored_group = None;
            let mut back_off = false;
            for (position, reason) in reasons.iter().enumerate() {
                let is_group = position == claimed.len();
                match reason.code().unwrap_or("None") {
                    "None" => {}
                    "ConditionalCheckFailed" if is_group => stored_group = Some(reason.item().cloned()),
                    "ConditionalCheckFailed" => {
                        duplicates.insert(claimed[position]);
                    }
                    "TransactionConflict"
                    | "ThrottlingError"
                    | "ProvisionedThroughputExceeded"
                    | "RequestLimitExceeded" => {
                        back_off = true;
                    }
                    code => {
                        return Err(PortError::permanent(format!(
                            "dynamodb:TransactWriteItems cancelled: {code}: {}",
                            reason.message().unwrap_or("no message")
                        )));
                    }
                }
            }
            group_condition_held = stored_group.is_none() && !back_off;
            pending.retain(|i| !duplicates.contains(i));
            if let Some(stored) = stored_group {
                // DynamoDB returns the stored item with the failed condition; without it (no item, or a
                // service that leaves it out) read it.
                let stored = match stored {
                    Some(item) => Some(item),
                    None => self.get(pk.clone(), GROUP_SK).await?,
                };
                let mut stored = stored.as_ref().map(decode_group).unwrap_or_default();
                stored.key = key.clone();
                if let Change::Restart { expected, .. } = change
                    && stored.incident.id.as_ref() != expected
                {
                    self.remember(&pk, stored);
                    return Ok(None);
                }
                // Planned from exactly what is stored and refused anyway: the item holds something this
                // code does not write (edited by hand, or by another version). Retrying cannot help.
                if view_is_stored && stored == view {
                    return Err(PortError::permanent(format!(
                        "dynamodb: group item {pk} does not have the shape this version writes; \
                         its update's condition fails on it"
                    )));
                }
                view = stored;
                view_is_stored = true;
            }
            debug!(
                attempt,
                duplicates = duplicates.len(),
                relearned = !group_condition_held,
                back_off,
                "Transaction cancelled; retrying."
            );
            if back_off {
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        warn!(group = %pk, attempts = MAX_ATTEMPTS, "Gave up recording failures: the group kept changing.");
        Err(PortError::transient(format!(
            "dynamodb: {MAX_ATTEMPTS} attempts to record failures all conflicted with other writers"
        )))
    }
}

fn cancellation_reasons(
    err: &SdkError<TransactWriteItemsError, HttpResponse>,
) -> Option<&[CancellationReason]> {
    match err.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(e) => Some(e.cancellation_reasons()),
        _ => None,
    }
}

fn stats_of<'a>(failures: impl Iterator<Item = &'a Failure>) -> FailureStats {
    let mut stats = FailureStats::default();
    for f in failures {
        stats.add(f.clone());
    }
    stats
}

/// The wall clock, for TTLs only: what the engine decides never depends on it.
fn now() -> Epoch {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as Epoch)
        .unwrap_or_default()
}

/// Exponential from 10 ms to 320 ms, with full jitter so that writers that collided spread out.
fn backoff(attempt: usize) -> Duration {
    let ceiling = 10u64 << attempt.min(5);
    let random = RandomState::new().build_hasher().finish();
    Duration::from_millis(1 + random % ceiling)
}

/// An item's (pk, sk).
fn key_of(item: &Item) -> Option<(String, String)> {
    let pk = item.get("pk")?.as_s().ok()?;
    let sk = item.get("sk")?.as_s().ok()?;
    Some((pk.clone(), sk.clone()))
}

impl StateStore for DynamoStore {
    async fn preload(&self, groups: &[GroupKey], access_keys: &[String]) -> Result<Preloaded, PortError> {
        let mut preloaded = Preloaded::default();
        // Sessions this process already read never change: only the others are asked for.
        let unknown: Vec<&String> = {
            let cache = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            access_keys
                .iter()
                .filter(|k| match cache.get(k.as_str()) {
                    Some(s) => {
                        preloaded.sessions.insert((*k).clone(), Some(s.clone()));
                        false
                    }
                    None => true,
                })
                .collect()
        };
        let mut keys: Vec<Item> = groups.iter().map(|k| key(group_pk(k), GROUP_SK)).collect();
        keys.extend(unknown.iter().map(|k| key(session_pk(k), SESSION_SK)));
        let mut seen = HashSet::new();
        keys.retain(|k| key_of(k).is_some_and(|k| seen.insert(k)));
        if keys.is_empty() {
            return Ok(preloaded);
        }
        let (found, read) = self.batch_get(keys).await?;
        let found: HashMap<(String, String), Item> =
            found.into_iter().filter_map(|i| Some((key_of(&i)?, i))).collect();
        for group in groups {
            let k = (group_pk(group), GROUP_SK.to_owned());
            if !read.contains(&k) {
                continue;
            }
            let state = found.get(&k).map(|item| {
                let mut state = decode_group(item);
                state.key = group.clone();
                self.remember(&k.0, state.clone());
                state
            });
            preloaded.groups.insert(group.clone(), state);
        }
        for access_key in unknown {
            let k = (session_pk(access_key), SESSION_SK.to_owned());
            if !read.contains(&k) {
                continue;
            }
            let session = found.get(&k).and_then(decode_session);
            if let Some(s) = &session {
                let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
                if sessions.len() >= MAX_SESSIONS {
                    sessions.clear();
                }
                sessions.insert(access_key.clone(), s.clone());
            }
            preloaded.sessions.insert(access_key.clone(), session);
        }
        Ok(preloaded)
    }

    async fn load(&self, key: &GroupKey) -> Result<Option<GroupState>, PortError> {
        let pk = group_pk(key);
        let Some(item) = self.get(pk.clone(), GROUP_SK).await? else {
            return Ok(None);
        };
        let mut state = decode_group(&item);
        state.key = key.clone();
        self.remember(&pk, state.clone());
        Ok(Some(state))
    }

    async fn record_failures(
        &self,
        key: &GroupKey,
        failures: &[Failure],
        change: Change<'_>,
    ) -> Result<Option<Vec<usize>>, PortError> {
        // One transaction per part; a part holds each eventID once (a transaction may not touch one
        // item twice), its first occurrence.
        let mut applied = Vec::new();
        let mut change = change;
        for chunk in merge_parts(failures) {
            match self.record_chunk(key, failures, &chunk, change).await? {
                Some(done) => applied.extend(done),
                None => return Ok(None),
            }
            // Later chunks add to the incident the first one started.
            if let Change::Restart { incident, .. } = change {
                change = Change::Add { incident };
            }
        }
        Ok(Some(applied))
    }

    async fn record_issuance(&self, key: &GroupKey, issuance: &Issuance) -> Result<GroupState, PortError> {
        // Two single-item writes, no transaction: each is idempotent and commutes with the other copy of
        // the same call, and either one alone is a state a late delivery of the other leaves too (a
        // session whose group has not yet seen its issue time, or the reverse), which every decision
        // already waits for (crates/core/src/incident.rs, `hold_ends`). A retry after a fault between
        // them redoes both to the same items. A transaction would cost twice the write units.
        let session = self
            .update_item(
                session_pk(&issuance.access_key_id),
                SESSION_SK,
                session_upsert(issuance, now().max(issuance.issued_at) + SESSION_TTL),
                ReturnValue::AllNew,
            )
            .await?
            .as_ref()
            .and_then(decode_session);
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            match session {
                Some(s) => {
                    if sessions.len() >= MAX_SESSIONS {
                        sessions.clear();
                    }
                    sessions.insert(issuance.access_key_id.clone(), s);
                }
                None => {
                    sessions.remove(&issuance.access_key_id);
                }
            }
        }
        // The group's state comes back with its write (no read units): the detector decides on it.
        let item = match self
            .update_group_returning(key, issuance_update(key, issuance, true), ReturnValue::AllNew)
            .await?
        {
            Some(item) => item,
            // The group's issue times reached their cap: start the set again from this one (only recent
            // issuances decide anything).
            None => self
                .update_group_returning(key, issuance_update(key, issuance, false), ReturnValue::AllNew)
                .await?
                .ok_or_else(|| PortError::transient("dynamodb: the group's issue times changed meanwhile"))?,
        };
        let mut state = decode_group(&item);
        state.key = key.clone();
        self.remember(&group_pk(key), state.clone());
        Ok(state)
    }

    async fn session(&self, access_key_id: &str) -> Result<Option<Issuance>, PortError> {
        let cached = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(access_key_id)
            .cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        let found = self
            .get(session_pk(access_key_id), SESSION_SK)
            .await?
            .as_ref()
            .and_then(decode_session);
        if let Some(session) = &found {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if sessions.len() >= MAX_SESSIONS {
                sessions.clear();
            }
            sessions.insert(access_key_id.to_owned(), session.clone());
        }
        Ok(found)
    }

    async fn claim_page(
        &self,
        key: &GroupKey,
        incident: &IncidentId,
        severity: Severity,
        now: Epoch,
    ) -> Result<bool, PortError> {
        let mut e = Expr::default();
        let (id, inc) = (e.name(INCIDENT_ID), e.s(incident.to_string()));
        e.require(format!("{id} = {inc}"));
        paged_below(&mut e, severity);
        let (claim, until, t) = (e.name(PAGE_CLAIM), e.name(PAGE_CLAIM_UNTIL), e.n(now));
        let blocking: Vec<String> = Severity::ALL
            .iter()
            .filter(|s| **s >= severity)
            .map(|s| e.s(claim_text(incident, *s)))
            .collect();
        e.require(format!(
            "attribute_not_exists({claim}) OR {until} <= {t} OR NOT ({claim} IN ({}))",
            blocking.join(", ")
        ));
        e.set(PAGE_CLAIM, s(claim_text(incident, severity)));
        e.set(PAGE_CLAIM_UNTIL, n(now + PAGE_LEASE));
        self.update_group(key, e).await
    }

    async fn confirm_page(
        &self,
        key: &GroupKey,
        incident: &IncidentId,
        severity: Severity,
    ) -> Result<(), PortError> {
        // One call when the claim is this caller's (or gone), as it almost always is; otherwise `paged`
        // rises without touching another caller's claim, and a claim of this caller's that is left (the
        // page was recorded meanwhile) ends on its own.
        let raise = |with_claim: bool| {
            let mut e = Expr::default();
            let (id, inc) = (e.name(INCIDENT_ID), e.s(incident.to_string()));
            e.require(format!("{id} = {inc}"));
            paged_below(&mut e, severity);
            if with_claim {
                let (claim, mine) = (e.name(PAGE_CLAIM), e.s(claim_text(incident, severity)));
                e.require(format!("attribute_not_exists({claim}) OR {claim} = {mine}"));
                e.remove(PAGE_CLAIM);
                e.remove(PAGE_CLAIM_UNTIL);
            }
            e.set(PAGED, s(severity.as_str()));
            e
        };
        if self.update_group(key, raise(true)).await? || self.update_group(key, raise(false)).await? {
            return Ok(());
        }
        self.release_page(key, incident, severity).await
    }

    async fn release_page(
        &self,
        key: &GroupKey,
        incident: &IncidentId,
        severity: Severity,
    ) -> Result<(), PortError> {
        let mut e = Expr::default();
        let (claim, mine) = (e.name(PAGE_CLAIM), e.s(claim_text(incident, severity)));
        e.require(format!("{claim} = {mine}"));
        e.remove(PAGE_CLAIM);
        e.remove(PAGE_CLAIM_UNTIL);
        self.update_group(key, e).await.map(|_| ())
    }

    async fn resolve(&self, key: &GroupKey, incident: &IncidentId, at: Epoch) -> Result<bool, PortError> {
        let mut e = Expr::default();
        let (id, inc) = (e.name(INCIDENT_ID), e.s(incident.to_string()));
        let resolved = e.name(RESOLVED_AT);
        e.require(format!("{id} = {inc} AND attribute_not_exists({resolved})"));
        e.set(RESOLVED_AT, n(at));
        e.remove(OPEN);
        e.add(HISTORY, AttributeValue::Ns(vec![incident.opened_at.to_string()]));
        let Some(updated) = self
            .update_group_returning(key, e, ReturnValue::UpdatedNew)
            .await?
        else {
            return Ok(false);
        };
        // ADD cannot cap a set: trim the oldest starts in a second update, only when over the cap. A lost
        // trim leaves a few extra numbers that the next resolution removes.
        let history = item::get_ns(&updated, HISTORY);
        if history.len() > MAX_HISTORY {
            let oldest: Vec<String> = history
                .iter()
                .take(history.len() - MAX_HISTORY)
                .map(Epoch::to_string)
                .collect();
            let mut trim = Expr::default();
            trim.delete(HISTORY, AttributeValue::Ns(oldest));
            self.update_group(key, trim).await?;
        }
        Ok(true)
    }

    async fn unresolve(&self, key: &GroupKey, incident: &IncidentId, at: Epoch) -> Result<(), PortError> {
        let mut e = Expr::default();
        let (id, inc) = (e.name(INCIDENT_ID), e.s(incident.to_string()));
        let (resolved, t) = (e.name(RESOLVED_AT), e.n(at));
        e.require(format!("{id} = {inc} AND {resolved} = {t}"));
        e.remove(RESOLVED_AT);
        e.set(OPEN, s(OPEN_VALUE));
        self.update_group(key, e).await.map(|_| ())
    }

    /// One conditional `UpdateItem`: it takes the slot when it is free by time; when it is not, the stored
    /// slot comes back with the refusal and tells whether `event` holds it already (nothing is written).
    async fn claim_drill(&self, account: &str, event: Option<&str>, now: Epoch) -> Result<bool, PortError> {
        let mut e = Expr::default();
        let (pk, at, cutoff) = (e.name(PK), e.name(DRILL_AT), e.n(now - DRILL_INTERVAL));
        e.require(format!("attribute_not_exists({pk}) OR {at} <= {cutoff}"));
        e.set(DRILL_AT, n(now));
        match event {
            Some(id) => e.set(DRILL_EVENT, s(id)),
            None => e.remove(DRILL_EVENT),
        }
        e.set(EXPIRES_AT, n(now + DAY));
        self.count();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item::key(drill_pk(account), DRILL_SK)))
            .update_expression(e.update_expression())
            .set_condition_expression(e.condition_expression())
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                    let holder = refused
                        .item()
                        .and_then(|item| item.get(DRILL_EVENT))
                        .and_then(|v| v.as_s().ok());
                    Ok(event.is_some() && holder.map(String::as_str) == event)
                }
                _ => Err(from_sdk("dynamodb:UpdateItem", err)),
            },
        }
    }

    async fn admit_new_group(&self, principal: &str, now: Epoch, cap: u64) -> Result<bool, PortError> {
        // One counter item per principal and hour, `ADD`ed under a condition: no read, and two
        // invocations can never both take the last place.
        let hour = now - now.rem_euclid(3600);
        let mut e = Expr::default();
        let (count, limit) = (e.name(NEW_GROUPS), e.n(cap));
        e.require(format!("attribute_not_exists({count}) OR {count} < {limit}"));
        e.add(NEW_GROUPS, n(1));
        e.set(EXPIRES_AT, n(hour + 2 * 3600));
        let pk = new_groups_pk(principal, hour);
        Ok(self
            .update_item(pk, NEW_GROUPS_SK, e, ReturnValue::None)
            .await?
            .is_some())
    }

    async fn load_fleet(&self, fleet: &str) -> Result<Option<(Fleet, u64)>, PortError> {
        self.load_fleet_item(fleet).await
    }

    async fn save_fleet(
        &self,
        fleet: &str,
        doc: &Fleet,
        expected: Option<u64>,
        now: Epoch,
    ) -> Result<bool, PortError> {
        self.save_fleet_item(fleet, doc, expected, now).await
    }

    async fn open_incidents(&self) -> Result<Vec<GroupState>, PortError> {
        let mut open = Vec::new();
        let mut start = None;
        loop {
            self.count();
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(OPEN_INDEX)
                .key_condition_expression("#open = :open")
                .expression_attribute_names("#open", OPEN)
                .expression_attribute_values(":open", s(OPEN_VALUE))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| from_sdk("dynamodb:Query", e))?;
            // The index is eventually consistent: an incident resolved a moment ago may still be listed.
            for item in page.items() {
                let mut state = decode_group(item);
                if !state.is_open() {
                    continue;
                }
                // The sweep pages and resolves through the key: an item no key leads to any more (stored
                // under an id an earlier version gave a part longer than 256 bytes) is left to its TTL.
                match stored_key(item, &state.key) {
                    Some(key) => state.key = key,
                    None => {
                        debug!(key = ?state.key, "Skipped an open incident stored under an earlier group id.");
                        continue;
                    }
                }
                open.push(state);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        open.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(open)
    }

    /// A scan of the table for group items: claims and sessions are filtered out by DynamoDB but still
    /// read (half a read unit per 4 KB, eventually consistent: a write of the last second may be missed).
    async fn groups(&self, since: Epoch) -> Result<Vec<GroupState>, PortError> {
        let mut groups = Vec::new();
        let mut start = None;
        loop {
            self.count();
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#sk = :state AND (#last >= :since OR attribute_exists(#open))")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_names("#last", LAST)
                .expression_attribute_names("#open", OPEN)
                .expression_attribute_values(":state", s(GROUP_SK))
                .expression_attribute_values(":since", n(since))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| from_sdk("dynamodb:Scan", e))?;
            groups.extend(page.items().iter().map(decode_group));
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        groups.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(groups)
    }
}

/// Requires the incident to have been paged below `severity`, or not at all.
fn paged_below(e: &mut Expr, severity: Severity) {
    let paged = e.name(PAGED);
    let lower: Vec<String> = Severity::ALL
        .iter()
        .filter(|s| **s < severity)
        .map(|s| e.s(s.as_str()))
        .collect();
    if lower.is_empty() {
        e.require(format!("attribute_not_exists({paged})"));
    } else {
        e.require(format!(
            "attribute_not_exists({paged}) OR {paged} IN ({})",
            lower.join(", ")
        ));
    }
}

/// A page claim as stored: which incident, at what severity.
fn claim_text(incident: &IncidentId, severity: Severity) -> String {
    format!("{severity}:{incident}")
}

/// The key whose group id is the item's `pk`: `key`, the parts it names, or, for an item an earlier version
/// wrote, the same with a part written `-` read as absent (that version wrote both as `-`, and the item's
/// id is now the absent part's: incident::group_id). `None` when neither leads to the item (an earlier
/// version's id for a part longer than 256 bytes).
fn stored_key(item: &Item, key: &GroupKey) -> Option<GroupKey> {
    let pk = item.get(PK).and_then(|v| v.as_s().ok())?;
    if group_pk(key) == *pk {
        return Some(key.clone());
    }
    let absent = |p: &Option<String>| p.clone().filter(|p| p != "-");
    let legacy = GroupKey {
        account: absent(&key.account),
        principal: absent(&key.principal),
        session: absent(&key.session),
    };
    (group_pk(&legacy) == *pk).then_some(legacy)
}

/// The write of an issued session that needs no read: the first copy of the call creates the item, and
/// either copy of a cross-account `AssumeRole` (the caller's account and the role's each log one), in
/// either order and however often delivered, leaves the same item: role chaining or a container's
/// session if either copy says so, every other fact the first copy that has it gives (the copies are of
/// one call, so two that both have a fact agree on it), as `MemoryStore` combines them.
fn session_upsert(issuance: &Issuance, expires_at: Epoch) -> Expr {
    let mut e = Expr::default();
    e.set_if_absent(ACCESS_KEY_ID, s(&issuance.access_key_id));
    e.set_if_absent(ISSUED_AT, n(issuance.issued_at));
    e.set_if_absent(CALL, s(issuance.call.as_str()));
    for (name, yes) in [
        (CHAINED, issuance.chained),
        (FOR_CONTAINER, issuance.for_container),
    ] {
        if yes {
            e.set(name, AttributeValue::Bool(true));
        } else {
            e.set_if_absent(name, AttributeValue::Bool(false));
        }
    }
    e.set_if_absent(EXPIRES_AT, n(expires_at));
    let optional = [
        (ACCOUNT, issuance.account.as_ref().map(s)),
        (PRINCIPAL, issuance.principal.as_ref().map(s)),
        (SESSION, issuance.session.as_ref().map(s)),
        (DURATION_SECONDS, issuance.duration_seconds.map(n)),
        (EXPIRATION, issuance.expiration.map(n)),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            e.set_if_absent(name, v);
        }
    }
    e
}

/// The group update for an issuance: `capped` adds its time to the set while it holds fewer than
/// [`MAX_ISSUED_TIMES`] (a condition); otherwise the set is replaced by this one time.
fn issuance_update(key: &GroupKey, issuance: &Issuance, capped: bool) -> Expr {
    let mut e = Expr::default();
    plan::set_identity(&mut e, key);
    let time = aws_sdk_dynamodb::types::AttributeValue::Ns(vec![issuance.issued_at.to_string()]);
    let session = aws_sdk_dynamodb::types::AttributeValue::Ss(vec![item::issued_session(
        issuance.issued_at,
        &issuance.access_key_id,
    )]);
    if capped {
        let (times, cap) = (e.name(ISSUED_TIMES), e.n(MAX_ISSUED_TIMES));
        e.require(format!("attribute_not_exists({times}) OR size({times}) < {cap}"));
        e.add(ISSUED_TIMES, time);
        e.add(ISSUED_SESSIONS, session);
    } else {
        e.set(ISSUED_TIMES, time);
        e.set(ISSUED_SESSIONS, session);
    }
    e.set_if_absent(EXPIRES_AT, n(issuance.issued_at + GROUP_TTL));
    e
}

/// Creates the state table (on-demand capacity) with its `open-incidents` index, waits until it is
/// active and turns TTL on for `expires_at`. The SAM template declares the same table.
pub async fn create_table(client: &Client, name: &str) -> Result<(), PortError> {
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| PortError::permanent(format!("dynamodb: table definition not built: {e}")))
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| PortError::permanent(format!("dynamodb: table definition not built: {e}")))
    };
    let index = GlobalSecondaryIndex::builder()
        .index_name(OPEN_INDEX)
        .key_schema(key(OPEN, KeyType::Hash)?)
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .map_err(|e| PortError::permanent(format!("dynamodb: index definition not built: {e}")))?;
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(PK)?)
        .attribute_definitions(attribute(SK)?)
        .attribute_definitions(attribute(OPEN)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(index)
        .send()
        .await
        .map_err(|e| from_sdk("dynamodb:CreateTable", e))?;
    client
        .wait_until_table_exists()
        .table_name(name)
        .wait(Duration::from_secs(120))
        .await
        .map_err(|e| PortError::transient(format!("dynamodb: table {name} did not become active: {e}")))?;
    let ttl = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(EXPIRES_AT)
        .build()
        .map_err(|e| PortError::permanent(format!("dynamodb: TTL specification not built: {e}")))?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(ttl)
        .send()
        .await
        .map_err(|e| from_sdk("dynamodb:UpdateTimeToLive", e))?;
    Ok(())
}
