//! Near misses ([`tokenwatch_core::nearmiss`]) in the state table: one item per session, written by the
//! scheduled trail scan and read by reports and the digest.
//!
//! | `pk` | `sk` | holds | `expires_at` |
//! |---|---|---|---|
//! | `NEARMISS#<accessKeyId>` | `NEARMISS` | the session's near miss, flat | 30 days after its last use |
//!
//! A write is a `PutItem` conditional on no item, or on an item whose `last_use` is earlier: the same near
//! miss scanned again (every scan reads the last 2 hours, so each file several times) writes nothing, and
//! a later use of the session (closer to its end) replaces the earlier one.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{ReturnConsumedCapacity, ReturnValue};
use tokenwatch_core::assess::Lease;
use tokenwatch_core::nearmiss::{Occurrence, SessionNearMiss, near_miss};
use tokenwatch_core::ports::{NearMissStore, NearMissesRecorded, PortError};
use tokenwatch_core::time::Epoch;
use tokenwatch_core::{Client, CredentialSource, LeaseSource};

use super::DynamoStore;
use super::item::{DAY, EXPIRES_AT, Item, PK, SCHEMA, SCHEMA_VERSION, SK, key, n, s};
use crate::error::from_sdk;

/// The item's sort key.
pub(crate) const NEAR_MISS_SK: &str = "NEARMISS";
/// A near miss is kept a month after its last use: the digest reads a day, a report a week or more.
const NEAR_MISS_TTL: Epoch = 30 * DAY;

const NM_ACCOUNT: &str = "nm_account";
const NM_PRINCIPAL: &str = "nm_principal";
const NM_SESSION: &str = "nm_session";
const NM_ACCESS_KEY_ID: &str = "nm_access_key_id";
const NM_CLIENT: &str = "nm_client";
const NM_SOURCE: &str = "nm_credential_source";
const NM_LEASE_SOURCE: &str = "nm_lease_source";
const NM_ISSUED_AT: &str = "nm_issued_at";
const NM_LEASE_END: &str = "nm_lease_end";
/// The session's last use: what the write's condition and the reports' filter compare.
const NM_LAST_USE: &str = "nm_last_use";

pub(crate) fn near_miss_pk(access_key_id: &str) -> String {
    format!("NEARMISS#{access_key_id}")
}

fn encode(m: &SessionNearMiss) -> Item {
    let o = &m.occurrence;
    let mut item = key(near_miss_pk(&o.access_key_id), NEAR_MISS_SK);
    item.insert(SCHEMA.to_owned(), n(SCHEMA_VERSION));
    for (name, value) in [
        (NM_ACCOUNT, &m.account),
        (NM_PRINCIPAL, &m.principal),
        (NM_SESSION, &m.session),
    ] {
        if let Some(v) = value {
            item.insert(name.to_owned(), s(v.clone()));
        }
    }
    item.insert(NM_ACCESS_KEY_ID.to_owned(), s(o.access_key_id.clone()));
    item.insert(NM_CLIENT.to_owned(), s(m.client.as_str()));
    item.insert(NM_SOURCE.to_owned(), s(m.credential_source.as_str()));
    item.insert(NM_LEASE_SOURCE.to_owned(), s(m.lease.source.as_str()));
    item.insert(NM_ISSUED_AT.to_owned(), n(o.issued_at));
    item.insert(NM_LEASE_END.to_owned(), n(o.lease_end));
    item.insert(NM_LAST_USE.to_owned(), n(o.last_use));
    item.insert(EXPIRES_AT.to_owned(), n(o.last_use + NEAR_MISS_TTL));
    item
}

/// The stored near miss, `None` when the item does not hold one this version can judge (a client without
/// a refresh window, an unknown name, a use no closer than the window): it is left out of reports.
fn decode(item: &Item) -> Option<SessionNearMiss> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let number = |name: &str| -> Option<Epoch> { item.get(name)?.as_n().ok()?.parse().ok() };
    let client: Client = text(NM_CLIENT)?.parse().ok()?;
    let credential_source: CredentialSource = text(NM_SOURCE)?.parse().ok()?;
    let lease_source: LeaseSource = text(NM_LEASE_SOURCE)?.parse().ok()?;
    let (issued_at, lease_end, last_use) =
        (number(NM_ISSUED_AT)?, number(NM_LEASE_END)?, number(NM_LAST_USE)?);
    Some(SessionNearMiss {
        account: text(NM_ACCOUNT),
        principal: text(NM_PRINCIPAL),
        session: text(NM_SESSION),
        client,
        credential_source,
        lease: Lease {
            seconds: (lease_end - issued_at).max(0) as u64,
            source: lease_source,
        },
        occurrence: Occurrence {
            access_key_id: text(NM_ACCESS_KEY_ID)?,
            issued_at,
            last_use,
            lease_end,
            near_miss: near_miss(last_use, client, lease_end)?,
        },
    })
}

impl NearMissStore for DynamoStore {
    async fn record_near_misses(
        &self,
        sessions: &[SessionNearMiss],
        _now: Epoch,
    ) -> Result<NearMissesRecorded, PortError> {
        let mut out = NearMissesRecorded::default();
        for (i, m) in sessions.iter().enumerate() {
            self.count();
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(encode(m)))
                .condition_expression("attribute_not_exists(#pk) OR #last < :last")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#last", NM_LAST_USE)
                .expression_attribute_values(":last", n(m.occurrence.last_use))
                .return_values(ReturnValue::AllOld)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await;
            match result {
                Ok(put) => {
                    self.consumed(put.consumed_capacity());
                    if put.attributes.is_some_and(|old| !old.is_empty()) {
                        out.later += 1;
                    } else {
                        out.new.push(i);
                    }
                }
                Err(err) => match err.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(_)) => out.unchanged += 1,
                    _ => return Err(from_sdk("dynamodb:PutItem", err)),
                },
            }
        }
        Ok(out)
    }

    async fn near_misses(&self, since: Epoch) -> Result<Vec<SessionNearMiss>, PortError> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            self.count();
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#sk = :nm AND #last >= :since")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_names("#last", NM_LAST_USE)
                .expression_attribute_values(":nm", s(NEAR_MISS_SK))
                .expression_attribute_values(":since", n(since))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| from_sdk("dynamodb:Scan", e))?;
            found.extend(page.items().iter().filter_map(decode));
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        found.sort_by(|a, b| a.occurrence.access_key_id.cmp(&b.occurrence.access_key_id));
        Ok(found)
    }
}

impl DynamoStore {
    /// Of `event_ids`, those no claim is stored for (strongly consistent `BatchGetItem`s of the claims, a
    /// read unit per 100 ids at most): the failures the detector never counted, which the scheduled trail
    /// scan hands it. An id whose claim could not be read is listed too: handing a counted failure to the
    /// detector again only meets its claim.
    pub async fn unclaimed(&self, event_ids: &[String]) -> Result<Vec<String>, PortError> {
        let keys: Vec<Item> = event_ids
            .iter()
            .map(|id| key(super::item::claim_pk(id), super::item::CLAIM_SK))
            .collect();
        let (found, _read) = self.batch_get(keys).await?;
        let claimed: std::collections::HashSet<&str> = found
            .iter()
            .filter_map(|item| item.get(PK)?.as_s().ok())
            .filter_map(|pk| pk.strip_prefix("EVENT#"))
            .collect();
        Ok(event_ids
            .iter()
            .filter(|id| !claimed.contains(id.as_str()))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> SessionNearMiss {
        let (issued_at, last_use) = (1_793_000_000, 1_793_000_000 + 57 * 60);
        SessionNearMiss {
            account: Some("123456789012".into()),
            principal: Some("arn:aws:iam::123456789012:role/etl".into()),
            session: None,
            client: Client::Boto3,
            credential_source: CredentialSource::AssumeRole,
            lease: Lease {
                seconds: 3600,
                source: LeaseSource::DefaultAssumeRole,
            },
            occurrence: Occurrence {
                access_key_id: "ASIAEXAMPLE".into(),
                issued_at,
                last_use,
                lease_end: issued_at + 3600,
                near_miss: near_miss(last_use, Client::Boto3, issued_at + 3600).unwrap(),
            },
        }
    }

    #[test]
    fn an_item_reads_back_as_the_near_miss_written() {
        assert_eq!(decode(&encode(&example())), Some(example()));
    }

    #[test]
    fn an_item_this_version_cannot_judge_is_left_out() {
        let mut item = encode(&example());
        item.insert(NM_CLIENT.to_owned(), s("go-v2"));
        assert_eq!(decode(&item), None, "a client without a window");
        let mut item = encode(&example());
        item.insert(NM_CLIENT.to_owned(), s("a-client-of-2030"));
        assert_eq!(decode(&item), None);
        let mut item = encode(&example());
        item.remove(NM_LAST_USE);
        assert_eq!(decode(&item), None);
    }
}
