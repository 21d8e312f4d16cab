//! The state table's items: keys, attribute names, and the mapping between items and domain types.
//! Decoding is lenient (a missing or odd attribute reads as absent), so that an item written by a newer
//! version or edited by hand never fails a load.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use tokenwatch_core::classify::{IdentityHints, Issuance};
use tokenwatch_core::incident::{GroupState, Incident, group_id};
use tokenwatch_core::model::IdentityType;
use tokenwatch_core::stats::{FailureStats, FirstFailure, GroupKey};
use tokenwatch_core::time::Epoch;
use tokenwatch_core::{Client, Severity, StsCall};

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) const PK: &str = "pk";
pub(crate) const SK: &str = "sk";
/// The TTL attribute (epoch seconds) on every item.
pub(crate) const EXPIRES_AT: &str = "expires_at";
/// Sparse: present (`"1"`) only on groups with an open incident; the `open-incidents` index's hash key.
pub(crate) const OPEN: &str = "open";
pub(crate) const OPEN_VALUE: &str = "1";
pub(crate) const OPEN_INDEX: &str = "open-incidents";

pub(crate) const CLAIM_SK: &str = "EVENT";
pub(crate) const SESSION_SK: &str = "SESSION";
pub(crate) const GROUP_SK: &str = "STATE";
/// An account's synthetic-drill slot: when it was last taken (`drill_at`) and by which EventBridge event
/// (`drill_event`).
pub(crate) const DRILL_SK: &str = "DRILL";
pub(crate) const DRILL_AT: &str = "drill_at";
/// A principal's new groups in one clock hour: `pk` = `NEWGROUPS#<principal>#<hour>`.
pub(crate) const NEW_GROUPS_SK: &str = "NEWGROUPS";
pub(crate) const NEW_GROUPS: &str = "new_groups";
pub(crate) const DRILL_EVENT: &str = "drill_event";

pub(crate) const DAY: i64 = 86_400;
/// How long an eventID claim is kept: EventBridge redelivers within a day.
pub(crate) const CLAIM_TTL: i64 = 3 * DAY;
/// How long a session is kept: longer than its longest lease (36 h) and than a week's report, which
/// decides a group's lease from its failing session's issuing call (without it, a 2-hour AssumeRole that
/// failed at 2 h would be judged on the 1-hour default).
pub(crate) const SESSION_TTL: i64 = 9 * DAY;
// Checked when it compiles. Regression: sessions were kept 3 days, so a 7-day report judged a group whose
// failing session was older on the default lease (a 2-hour AssumeRole failing at 2 h read as a paused
// process). A group must also outlive the sessions it is judged on.
const _: () = assert!(SESSION_TTL >= 7 * DAY + 36 * 3600 && GROUP_TTL >= SESSION_TTL);
/// A group is kept this long after its last failure.
pub(crate) const GROUP_TTL: i64 = 30 * DAY;

// Group attributes.
pub(crate) const SCHEMA: &str = "schema";
pub(crate) const SCHEMA_VERSION: u32 = 1;
pub(crate) const KEY_ACCOUNT: &str = "key_account";
pub(crate) const KEY_PRINCIPAL: &str = "key_principal";
pub(crate) const KEY_SESSION: &str = "key_session";
pub(crate) const PRINCIPAL: &str = "principal";
pub(crate) const FAILURES: &str = "failures";
pub(crate) const TOKEN_CALL_FAILURES: &str = "token_call_failures";
pub(crate) const REQUEST_EXPIRED_FAILURES: &str = "request_expired_failures";
/// Present exactly while the group has failures: the marker conditions test for "no failures yet".
pub(crate) const FIRST: &str = "first_failure";
pub(crate) const LAST: &str = "last_failure";
pub(crate) const FIRST_ACCESS_KEY_ID: &str = "first_access_key_id";
pub(crate) const FIRST_CREATION_DATE: &str = "first_creation_date";
pub(crate) const FIRST_IDENTITY_TYPE: &str = "first_identity_type";
pub(crate) const FIRST_EC2_ROLE_DELIVERY: &str = "first_ec2_role_delivery";
pub(crate) const FIRST_WEB_IDENTITY: &str = "first_web_identity";
pub(crate) const FIRST_TOKEN_CALL: &str = "first_token_call";
/// When the incident's session failed before the incident (a later incident of the same session).
pub(crate) const FIRST_SESSION_FAILED_AT: &str = "first_session_failed_at";
/// `code#<errorCode>`: failures per error code, one top-level number each so that `ADD` works.
pub(crate) const CODE_PREFIX: &str = "code#";
/// `call#<service:EventName>`: failures per call, capped like [`FailureStats::event_names`].
pub(crate) const CALL_PREFIX: &str = "call#";
/// The names of the `call#` attributes, as a string set: its `size()` is what the cap is checked on.
pub(crate) const CALL_NAMES: &str = "call_names";
pub(crate) const SOURCE_IPS: &str = "source_ips";
/// String set: the session names failed `AssumeRoleWith*` calls asked for (capped like `source_ips`).
pub(crate) const REQUESTED_SESSIONS: &str = "requested_sessions";
pub(crate) const ACCESS_KEY_IDS: &str = "access_key_ids";
/// `client#<client>`: failures per client; `client_first#<client>`: when it was first seen.
pub(crate) const CLIENT_PREFIX: &str = "client#";
pub(crate) const CLIENT_FIRST_PREFIX: &str = "client_first#";
pub(crate) const ISSUED_TIMES: &str = "issued_times";
/// `<epoch> <access key>` of each issued session, capped with `issued_times`: the issuing call a failure
/// is joined to by `creationDate` when its own key was never issued.
pub(crate) const ISSUED_SESSIONS: &str = "issued_sessions";

/// An entry of [`ISSUED_SESSIONS`].
pub(crate) fn issued_session(issued_at: Epoch, access_key_id: &str) -> String {
    format!("{issued_at} {access_key_id}")
}
pub(crate) const INCIDENT_ID: &str = "incident_id";
pub(crate) const PAGED: &str = "paged";
/// The live page claim: `<severity>:<incident id>` (a severity has no `:`), and until when it holds.
pub(crate) const PAGE_CLAIM: &str = "page_claim";
pub(crate) const PAGE_CLAIM_UNTIL: &str = "page_claim_until";
pub(crate) const RESOLVED_AT: &str = "resolved_at";
/// Number set: when the group's resolved incidents began.
pub(crate) const HISTORY: &str = "history";

// Session attributes.
pub(crate) const ACCESS_KEY_ID: &str = "access_key_id";
pub(crate) const ACCOUNT: &str = "account";
pub(crate) const SESSION: &str = "session";
pub(crate) const ISSUED_AT: &str = "issued_at";
pub(crate) const DURATION_SECONDS: &str = "duration_seconds";
pub(crate) const EXPIRATION: &str = "expiration";
pub(crate) const CALL: &str = "call";
pub(crate) const CHAINED: &str = "chained";
/// The session was issued by a service for a container (ECS task, EKS pod).
pub(crate) const FOR_CONTAINER: &str = "for_container";

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn ss<'a>(values: impl IntoIterator<Item = &'a String>) -> AttributeValue {
    AttributeValue::Ss(values.into_iter().cloned().collect())
}

pub(crate) fn key(pk: String, sk: &str) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

pub(crate) fn claim_pk(event_id: &str) -> String {
    format!("EVENT#{event_id}")
}

pub(crate) fn new_groups_pk(principal: &str, hour: i64) -> String {
    format!("NEWGROUPS#{principal}#{hour}")
}

pub(crate) fn drill_pk(account: &str) -> String {
    format!("DRILL#{account}")
}

pub(crate) fn session_pk(access_key_id: &str) -> String {
    format!("SESSION#{access_key_id}")
}

pub(crate) fn group_pk(key: &GroupKey) -> String {
    format!("GROUP#{}", group_id(key))
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn get_bool(item: &Item, name: &str) -> bool {
    item.get(name)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

fn get_ss(item: &Item, name: &str) -> BTreeSet<String> {
    item.get(name)
        .and_then(|v| v.as_ss().ok())
        .map(|v| v.iter().cloned().collect())
        .unwrap_or_default()
}

/// The group's state as stored. `key` is used when the item does not name its own key parts (it always
/// does when written by this crate).
pub(crate) fn decode_group(item: &Item) -> GroupState {
    let key = GroupKey {
        account: get_s(item, KEY_ACCOUNT).map(str::to_owned),
        principal: get_s(item, KEY_PRINCIPAL).map(str::to_owned),
        session: get_s(item, KEY_SESSION).map(str::to_owned),
    };
    let mut stats = FailureStats {
        principal: get_s(item, PRINCIPAL).map(str::to_owned),
        failures: get_n(item, FAILURES).unwrap_or(0),
        first: get_n(item, FIRST).unwrap_or(0),
        last: get_n(item, LAST).unwrap_or(0),
        first_failure: FirstFailure {
            access_key_id: get_s(item, FIRST_ACCESS_KEY_ID).map(str::to_owned),
            creation_date: get_n(item, FIRST_CREATION_DATE),
            hints: IdentityHints {
                identity_type: get_s(item, FIRST_IDENTITY_TYPE).map(IdentityType::parse),
                ec2_role_delivery: get_bool(item, FIRST_EC2_ROLE_DELIVERY),
                web_identity: get_bool(item, FIRST_WEB_IDENTITY),
            },
            token_call: get_s(item, FIRST_TOKEN_CALL).and_then(|c| c.parse::<StsCall>().ok()),
            session_failed_at: get_n(item, FIRST_SESSION_FAILED_AT),
        },
        token_call_failures: get_n(item, TOKEN_CALL_FAILURES).unwrap_or(0),
        request_expired_failures: get_n(item, REQUEST_EXPIRED_FAILURES).unwrap_or(0),
        source_ips: get_ss(item, SOURCE_IPS),
        access_key_ids: get_ss(item, ACCESS_KEY_IDS),
        requested_sessions: get_ss(item, REQUESTED_SESSIONS),
        ..Default::default()
    };
    for (name, value) in item {
        let count = || value.as_n().ok().and_then(|v| v.parse::<u64>().ok());
        if let Some(code) = name.strip_prefix(CODE_PREFIX) {
            if let Some(c) = count() {
                stats.error_codes.insert(code.to_owned(), c);
            }
        } else if let Some(call) = name.strip_prefix(CALL_PREFIX) {
            if let Some(c) = count() {
                stats.event_names.insert(call.to_owned(), c);
            }
        } else if let Some(client) = name.strip_prefix(CLIENT_PREFIX)
            && let (Ok(client), Some(c)) = (client.parse::<Client>(), count())
        {
            let first_seen = get_n(item, &format!("{CLIENT_FIRST_PREFIX}{client}")).unwrap_or(0);
            stats.clients.insert(client, (c, first_seen));
        }
    }
    let issued_times = get_ns(item, ISSUED_TIMES);
    let mut issued_keys: BTreeMap<Epoch, String> = BTreeMap::new();
    for entry in get_ss(item, ISSUED_SESSIONS) {
        if let Some((t, k)) = entry.split_once(' ')
            && let Ok(t) = t.parse::<Epoch>()
        {
            let kept = issued_keys.entry(t).or_insert_with(|| k.to_owned());
            if k < kept.as_str() {
                *kept = k.to_owned();
            }
        }
    }
    let incident = Incident {
        id: get_s(item, INCIDENT_ID).and_then(|id| id.parse().ok()),
        paged: get_s(item, PAGED).and_then(|p| p.parse::<Severity>().ok()),
        resolved_at: get_n(item, RESOLVED_AT),
    };
    GroupState {
        key,
        stats,
        issued_times,
        issued_keys,
        incident,
        history: get_ns(item, HISTORY),
    }
}

pub(crate) fn get_ns(item: &Item, name: &str) -> BTreeSet<Epoch> {
    item.get(name)
        .and_then(|v| v.as_ns().ok())
        .map(|v| v.iter().filter_map(|t| t.parse::<Epoch>().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) fn encode_session(issuance: &Issuance, expires_at: Epoch) -> Item {
    let mut item = key(session_pk(&issuance.access_key_id), SESSION_SK);
    item.insert(ACCESS_KEY_ID.into(), s(&issuance.access_key_id));
    item.insert(ISSUED_AT.into(), n(issuance.issued_at));
    item.insert(CALL.into(), s(issuance.call.as_str()));
    item.insert(CHAINED.into(), AttributeValue::Bool(issuance.chained));
    item.insert(FOR_CONTAINER.into(), AttributeValue::Bool(issuance.for_container));
    item.insert(EXPIRES_AT.into(), n(expires_at));
    let optional = [
        (ACCOUNT, issuance.account.as_ref().map(s)),
        (PRINCIPAL, issuance.principal.as_ref().map(s)),
        (SESSION, issuance.session.as_ref().map(s)),
        (DURATION_SECONDS, issuance.duration_seconds.map(n)),
        (EXPIRATION, issuance.expiration.map(n)),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            item.insert(name.into(), v);
        }
    }
    item
}

/// `None` when the item is not a session this crate wrote (no access key, issue time or call).
pub(crate) fn decode_session(item: &Item) -> Option<Issuance> {
    Some(Issuance {
        access_key_id: get_s(item, ACCESS_KEY_ID)?.to_owned(),
        account: get_s(item, ACCOUNT).map(str::to_owned),
        principal: get_s(item, PRINCIPAL).map(str::to_owned),
        session: get_s(item, SESSION).map(str::to_owned),
        issued_at: get_n(item, ISSUED_AT)?,
        duration_seconds: get_n(item, DURATION_SECONDS),
        expiration: get_n(item, EXPIRATION),
        call: get_s(item, CALL)?.parse().ok()?,
        chained: get_bool(item, CHAINED),
        for_container: get_bool(item, FOR_CONTAINER),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_round_trip() {
        let issuance = Issuance {
            access_key_id: "ASIAEXAMPLE".into(),
            account: Some("123456789012".into()),
            principal: Some("arn:aws:iam::123456789012:role/etl".into()),
            session: None,
            issued_at: 1_793_606_400,
            duration_seconds: Some(3600),
            expiration: None,
            call: StsCall::AssumeRole,
            chained: true,
            for_container: false,
        };
        assert_eq!(decode_session(&encode_session(&issuance, 0)), Some(issuance));
    }

    #[test]
    fn odd_attributes_read_as_absent() {
        let mut item = key("GROUP#x".into(), GROUP_SK);
        item.insert(FAILURES.into(), s("not a number"));
        item.insert(PAGED.into(), s("apocalyptic"));
        item.insert("client#netscape".into(), n(3));
        item.insert("code#ExpiredToken".into(), n(2));
        let g = decode_group(&item);
        assert_eq!(g.stats.failures, 0);
        assert_eq!(g.incident.paged, None);
        assert!(g.stats.clients.is_empty());
        assert_eq!(g.stats.error_codes["ExpiredToken"], 2);
    }
}
