//! Random histories of one group (batches of failures, each recorded with `Add` or `Restart`) and the
//! oracle of what a `StateStore` must hold after each, written from the contract of
//! `StateStore::record_failures` with `FailureStats::add` and `FailureStats::merge`.
//!
//! Shared by core's test of `MemoryStore` (`tests/store_merge.rs`) and the adapters' tests of
//! `DynamoStore` on the emulators and of its update plans (crates/aws), which include this file by path:
//! one description of the merge, held against every store.

#![allow(dead_code)]

use std::collections::HashSet;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;
use tokenwatch_core::classify::{Failure, IdentityHints};
use tokenwatch_core::incident::{GroupState, Incident, IncidentId, group_id};
use tokenwatch_core::model::{Client, IdentityType, StsCall};
use tokenwatch_core::ports::{Change, MERGE_PART, StateStore};
use tokenwatch_core::stats::{FailureStats, GroupKey, MAX_EVENT_NAMES, MAX_LISTED};
use tokenwatch_core::time::Epoch;

/// 2026-11-02T08:00:00Z.
pub const T0: Epoch = 1_793_606_400;

/// Spellings of one role's principal, as records of one group carry them: the role name alone, its ARN
/// without and with a path, two paths of equal length (which of them wins is the merge's tie rule), and
/// the assumed-role ARN. ASCII only, as IAM names are (DynamoDB's `size()` and `str::len` then agree).
pub const PRINCIPALS: &[&str] = &[
    "etl",
    "arn:aws:iam::123456789012:role/etl",
    "arn:aws:iam::123456789012:role/jobs/etl",
    "arn:aws:iam::123456789012:role/nigh/etl",
    "arn:aws:sts::123456789012:assumed-role/etl/s1",
];

/// More error codes than the two counted apart (token calls and `RequestExpired`), so counters of
/// several codes accumulate.
pub const ERROR_CODES: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "(message)",
    "ExpiredTokenException.RequestExpired",
];

/// How one batch is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `Change::Add` (the group's incident, or a new one if it has none).
    Add,
    /// `Change::Restart` expecting the stored incident.
    Restart,
    /// `Change::Restart` expecting an incident that is not stored: nothing may be written.
    StaleRestart,
}

/// One batch of a history.
#[derive(Clone, Debug)]
pub struct Step {
    /// How it is recorded.
    pub kind: Kind,
    /// Its failures, in delivery order.
    pub failures: Vec<Failure>,
    /// For a restart: when the new incident's session failed before it.
    pub session_failed_at: Option<Epoch>,
}

/// One failure with values drawn from small pools, so that ties, repeats and caps happen: event ids
/// repeat within and across batches (or are missing), times tie and arrive out of order, there are more
/// event names than [`MAX_EVENT_NAMES`] and more addresses and access keys than [`MAX_LISTED`].
pub fn failure() -> impl Strategy<Value = Failure> {
    let event_id = prop_oneof![
        1 => Just(None),
        3 => (0..24u32).prop_map(|n| Some(format!("hot{n}"))),
        6 => (0..600u32).prop_map(|n| Some(format!("e{n}"))),
    ];
    let time = prop_oneof![(0..4 as Epoch), (0..900 as Epoch)].prop_map(|t| T0 + t);
    let principal = prop_oneof![
        1 => Just(None),
        6 => select(PRINCIPALS).prop_map(|p| Some(p.to_owned())),
    ];
    let listed = MAX_LISTED as u32 + 8;
    let access_key =
        proptest::option::weighted(0.9, 0..listed).prop_map(|k| k.map(|k| format!("ASIAEXAMPLE{k:09}")));
    let creation_date = proptest::option::of(0..3 as Epoch).prop_map(|d| d.map(|d| T0 - 3600 * d));
    let error_code = select(ERROR_CODES).prop_map(str::to_owned);
    let event_name = (0..EVENT_NAMES).prop_map(event_name);
    let source_ip = proptest::option::weighted(0.9, 0..listed)
        .prop_map(|a| a.map(|a| format!("10.0.{}.{}", a / 10, a % 10)));
    let client = proptest::option::weighted(0.8, select(Client::ALL));
    let token_call = prop_oneof![
        8 => Just(None),
        1 => Just(Some(StsCall::AssumeRoleWithWebIdentity)),
        1 => Just(Some(StsCall::AssumeRoleWithSaml)),
    ];
    let hints = (
        proptest::option::of(select(
            &[
                IdentityType::AssumedRole,
                IdentityType::Role,
                IdentityType::WebIdentityUser,
                IdentityType::Other,
            ][..],
        )),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(identity_type, ec2_role_delivery, web_identity)| IdentityHints {
            identity_type,
            ec2_role_delivery,
            web_identity,
        });
    (
        (event_id, time, principal, access_key, creation_date, error_code),
        (event_name, source_ip, client, token_call, hints),
    )
        .prop_map(
            |(
                (event_id, time, principal, access_key_id, creation_date, error_code),
                (event_name, source_ip, client, token_call, hints),
            )| Failure {
                event_id,
                time,
                account: Some("123456789012".into()),
                principal,
                session: Some("nightly-etl".into()),
                access_key_id,
                creation_date,
                error_code,
                event_name,
                source_ip,
                client,
                // Names a caller chose, more of them than a group lists, so that the cap is reached.
                requested_session: token_call.map(|_| format!("name-{}", time % 30)),
                token_call,
                hints,
            },
        )
}

/// A batch: mostly a handful of failures, sometimes none, sometimes more than one store transaction
/// holds ([`MERGE_PART`]); half of those large ones call one event name after another, so that a group
/// reaches [`MAX_EVENT_NAMES`] often.
pub fn batch() -> impl Strategy<Value = Vec<Failure>> {
    let storm = (
        vec(failure(), MERGE_PART - 10..2 * MERGE_PART + 30),
        any::<bool>(),
        0..EVENT_NAMES,
    )
        .prop_map(|(mut failures, spread, offset)| {
            if spread {
                for (n, f) in (offset..).zip(&mut failures) {
                    f.event_name = event_name(n % EVENT_NAMES);
                }
            }
            failures
        });
    prop_oneof![
        6 => vec(failure(), 0..8),
        2 => vec(failure(), 8..40),
        1 => storm,
    ]
}

/// Distinct event names drawn from: more than a group keeps.
const EVENT_NAMES: u32 = MAX_EVENT_NAMES as u32 + 30;

fn event_name(n: u32) -> String {
    format!("svc{}:Call{n:03}", n % 7)
}

/// A history of `steps` batches, mostly added to the group's incident. In half of the histories time
/// moves on from batch to batch (by less than a batch spans, so batches still overlap), as it does when
/// an incident is restarted; in the others every batch falls in the same quarter hour.
pub fn history(steps: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Step>> {
    let kind = prop_oneof![
        8 => Just(Kind::Add),
        2 => Just(Kind::Restart),
        1 => Just(Kind::StaleRestart),
    ];
    let failed_before = proptest::option::of(1..7200 as Epoch);
    (vec((kind, batch(), failed_before), steps), any::<bool>()).prop_map(|(steps, moving)| {
        (0..)
            .zip(steps)
            .map(|(n, (kind, mut failures, failed_before))| {
                for f in &mut failures {
                    f.time += if moving { n * 300 } else { 0 };
                }
                Step {
                    kind,
                    failures,
                    session_failed_at: failed_before.map(|b| T0 - b),
                }
            })
            .collect()
    })
}

/// What the contract says a store holds: the group's state and every eventID counted so far.
#[derive(Default)]
pub struct Oracle {
    /// The group's state, `None` until something of it is recorded.
    pub state: Option<GroupState>,
    counted: HashSet<String>,
}

impl Oracle {
    /// The stored incident's id.
    pub fn incident(&self) -> Option<IncidentId> {
        self.state.as_ref().and_then(|s| s.incident.id.clone())
    }

    /// What `record_failures(key, failures, change)` answers, and what it leaves. A restart expecting
    /// another incident than the stored one writes nothing. Otherwise the first failure of each eventID
    /// in the batch and every failure without one are taken in order, [`MERGE_PART`] at a time; of each
    /// part, the failures whose eventID was never counted are new, and their stats (added in order) are
    /// merged into the stored ones (the first part of a restart replaces them, with when its session
    /// failed before, and starts the incident).
    pub fn record(&mut self, key: &GroupKey, failures: &[Failure], change: Change<'_>) -> Option<Vec<usize>> {
        if let Change::Restart { expected, .. } = change
            && self.incident().as_ref() != expected
        {
            return None;
        }
        let mut in_batch = HashSet::new();
        let candidates: Vec<usize> = (0..failures.len())
            .filter(|&i| {
                failures[i]
                    .event_id
                    .as_ref()
                    .is_none_or(|id| in_batch.insert(id.clone()))
            })
            .collect();
        let mut parts: Vec<&[usize]> = candidates.chunks(MERGE_PART).collect();
        if parts.is_empty() {
            parts.push(&[]);
        }
        let mut applied = Vec::new();
        for (n, part) in parts.into_iter().enumerate() {
            let mut delta = FailureStats::default();
            for &i in part {
                if failures[i]
                    .event_id
                    .as_ref()
                    .is_none_or(|id| self.counted.insert(id.clone()))
                {
                    delta.add(failures[i].clone());
                    applied.push(i);
                }
            }
            let state = self.state.get_or_insert_with(|| GroupState {
                key: key.clone(),
                ..Default::default()
            });
            match change {
                Change::Restart {
                    incident,
                    session_failed_at,
                    ..
                } if n == 0 => {
                    state.stats = delta;
                    state.stats.first_failure.session_failed_at = session_failed_at;
                    state.incident = Incident {
                        id: Some(incident.clone()),
                        paged: None,
                        resolved_at: None,
                    };
                }
                Change::Add { incident } | Change::Restart { incident, .. } => {
                    state.stats.merge(delta);
                    state.incident.id.get_or_insert_with(|| incident.clone());
                }
            }
        }
        Some(applied)
    }
}

/// Records `history` in `store` under `key`, each eventID prefixed with `tag` (so that histories can
/// share a store), and checks every answer and every loaded state against the [`Oracle`].
pub async fn agrees<S: StateStore>(
    store: &S,
    key: &GroupKey,
    history: &[Step],
    tag: &str,
) -> Result<(), TestCaseError> {
    let mut oracle = Oracle::default();
    let stale = IncidentId {
        group: "stale".into(),
        opened_at: T0,
    };
    for (n, step) in history.iter().enumerate() {
        let failures: Vec<Failure> = step
            .failures
            .iter()
            .map(|f| Failure {
                event_id: f.event_id.as_ref().map(|id| format!("{tag}{id}")),
                ..f.clone()
            })
            .collect();
        let incident = IncidentId {
            group: group_id(key),
            opened_at: T0 + n as Epoch,
        };
        let current = oracle.incident();
        let change = match step.kind {
            Kind::Add => Change::Add { incident: &incident },
            Kind::Restart => Change::Restart {
                expected: current.as_ref(),
                incident: &incident,
                session_failed_at: step.session_failed_at,
            },
            Kind::StaleRestart => Change::Restart {
                expected: Some(&stale),
                incident: &incident,
                session_failed_at: step.session_failed_at,
            },
        };
        let expected = oracle.record(key, &failures, change);
        let answer = store
            .record_failures(key, &failures, change)
            .await
            .map_err(|e| TestCaseError::fail(format!("step {n}: record_failures failed: {e}")))?;
        prop_assert_eq!(answer, expected, "step {}: the failures counted as new", n);
        let loaded = store
            .load(key)
            .await
            .map_err(|e| TestCaseError::fail(format!("step {n}: load failed: {e}")))?;
        prop_assert_eq!(loaded, oracle.state.clone(), "step {}: the stored state", n);
    }
    Ok(())
}
