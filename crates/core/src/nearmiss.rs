//! Near misses (docs/rules.md, "Near misses"): a session signing calls later before its lease end than
//! its own SDK's refreshing provider would ever have used it was not managed by that provider (it was
//! copied out of it: environment variables, a client built once). It did not fail this time; the next run
//! that lasts a little longer fails at the lease boundary.
//!
//! The rule is pure: given when a session was last used, by which client, and when its lease ends, it says
//! whether that was a near miss and how close it came. Only clients whose refresh window is documented in
//! their SDK's source take part; the others never give a near miss.

use std::collections::{BTreeMap, BTreeSet};

use crate::assess::{Facts, Lease, credential_source, lease};
use crate::classify::{AssumedRoleArn, IdentityHints, arn_account};
use crate::finding::{Recurrence, Sessions};
use crate::model::{Client, CredentialSource, IdentityType, LeaseSource, Severity, Verdict};
use crate::stats::{GroupKey, MAX_LISTED, group_key};
use crate::time::Epoch;
use crate::usage::SessionUse;
use crate::workload::{WorkloadKey, keep_fuller, list_session, session_pattern, workload_key};

/// When a client's refreshing credential provider swaps a session for a new one, in seconds before the
/// session's lease end, by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshWindow {
    /// The earliest it starts to refresh.
    pub from: Epoch,
    /// The latest: past this, the provider refreshes before it signs a call (or fails the call), so a
    /// managed session is never used closer to its lease end.
    pub by: Epoch,
    /// The provider the window belongs to, as a near miss names it.
    pub provider: &'static str,
}

/// The refresh window of `client`'s default refreshing provider, where its SDK's source states one
/// (docs/rules.md lists the source of each). `None` for clients without a documented window or without
/// one at all (the Go SDK v2's credentials cache refreshes only once the session expired).
pub fn refresh_window(client: Client) -> Option<RefreshWindow> {
    let window = |from, by, provider| Some(RefreshWindow { from, by, provider });
    match client {
        // botocore's RefreshableCredentials: advisory refresh 15 min before expiry, mandatory 10 min.
        Client::Boto3 | Client::Botocore | Client::AwsCliV1 | Client::AwsCliV2 => {
            window(15 * 60, 10 * 60, "botocore")
        }
        // The Java SDK v2's STS providers: prefetch 5 min before, stale (blocking) 1 min before.
        Client::JavaV2 => window(5 * 60, 60, "the Java SDK v2's STS provider"),
        // The JavaScript SDK v3's default provider chain is memoized until 5 min before expiry.
        Client::JsV3 => window(5 * 60, 5 * 60, "the JavaScript SDK v3's default provider"),
        // The JavaScript SDK v2's AWS.Credentials: expiryWindow 15 s.
        Client::JsV2 => window(15, 15, "the JavaScript SDK v2's AWS.Credentials"),
        // The Rust SDK's lazy identity cache: a 10 s buffer plus up to half of it as jitter.
        Client::Rust => window(15, 10, "the Rust SDK's identity cache"),
        Client::GoV1
        | Client::GoV2
        | Client::JavaV1
        | Client::Dotnet
        | Client::Php
        | Client::Ruby
        | Client::Powershell
        | Client::Terraform
        | Client::Console => None,
    }
}

/// A session used closer to its lease end than its client's provider would have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NearMiss {
    /// How long before the lease end the session was last used.
    pub seconds_before_expiry: Epoch,
    /// The window the client's provider refreshes in.
    pub window: RefreshWindow,
}

impl NearMiss {
    /// How close it came, in words: "used 42 s before expiry; botocore refreshes 10–15 min before".
    pub fn describe(&self) -> String {
        format!(
            "used {} before expiry; {} refreshes {} before",
            span(self.seconds_before_expiry),
            self.window.provider,
            range(self.window.by, self.window.from)
        )
    }
}

/// Whether a session last used at `last_use` by `client`, whose lease ends at `lease_end`, was a near miss:
/// used after its client's provider would have refreshed it (later than `window.by` before the lease end)
/// and before the lease end (a use at or past it failed, and is the failure's group, not a near miss).
pub fn near_miss(last_use: Epoch, client: Client, lease_end: Epoch) -> Option<NearMiss> {
    let window = refresh_window(client)?;
    let before = lease_end - last_use;
    (before > 0 && before < window.by).then_some(NearMiss {
        seconds_before_expiry: before,
        window,
    })
}

fn span(seconds: Epoch) -> String {
    if seconds < 120 {
        format!("{seconds} s")
    } else {
        format!("{} min", seconds / 60)
    }
}

fn range(by: Epoch, from: Epoch) -> String {
    match (by == from, by % 60 == 0 && from % 60 == 0) {
        (true, _) => span(by),
        (false, true) => format!("{}–{} min", by / 60, from / 60),
        (false, false) => format!("{}–{} s", by, from),
    }
}

/// One session's near miss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    /// The session's access key.
    pub access_key_id: String,
    /// When it was issued.
    pub issued_at: Epoch,
    /// Its last use.
    pub last_use: Epoch,
    /// Its lease end.
    pub lease_end: Epoch,
    /// How close it came.
    pub near_miss: NearMiss,
}

/// The near misses of one account + principal + session name (the group a failure of the same sessions
/// would have), described by the latest; earlier ones are its history, as a failing group's incidents.
#[derive(Clone, Debug, PartialEq)]
pub struct NearMissGroup {
    /// What the group is keyed by (the principal reduced to the role name).
    pub key: GroupKey,
    /// The account.
    pub account: Option<String>,
    /// The fullest spelling of the principal seen.
    pub principal: Option<String>,
    /// The session name.
    pub session: Option<String>,
    /// Its workload's session pattern.
    pub workload: Option<String>,
    /// Always [`Verdict::NearMiss`].
    pub verdict: Verdict,
    /// Always [`Severity::Low`]: nothing failed.
    pub severity: Severity,
    /// Where the latest session came from.
    pub credential_source: CredentialSource,
    /// The latest session's lease.
    pub lease: Lease,
    /// The client of the latest session's last use.
    pub client: Client,
    /// The latest near miss.
    pub latest: Occurrence,
    /// Every near miss of the group, oldest first (at most [`MAX_LISTED`], the latest ones).
    pub occurrences: Vec<Occurrence>,
    /// Near misses counted (sessions).
    pub count: u64,
    /// The earliest near miss's last use.
    pub first: Epoch,
    /// The interval the near misses recur at, when three or more come evenly spaced.
    pub recurrence: Option<Recurrence>,
}

impl NearMissGroup {
    /// How close it came, in words, with the lease it was measured against when that is a default.
    pub fn describe(&self) -> String {
        self.latest.near_miss.describe()
    }
}

/// The near-miss groups of one account + principal + session pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NearMissWorkload {
    /// The account.
    pub account: Option<String>,
    /// The principal (the fullest spelling among its groups).
    pub principal: Option<String>,
    /// The session pattern.
    pub session_pattern: Option<String>,
    /// Groups in it.
    pub groups: usize,
    /// Up to [`crate::workload::MAX_SESSIONS_LISTED`] session names, in order.
    pub sessions: Vec<String>,
    /// Near misses (sessions) of its groups.
    pub near_misses: u64,
    /// The earliest last use of a near miss.
    pub first_near_miss: Epoch,
    /// The latest.
    pub last_near_miss: Epoch,
    /// The closest any came, in seconds before expiry.
    pub closest_seconds_before_expiry: Epoch,
}

/// A report's near misses: groups (in account, principal, session order) and their workloads (most
/// near misses first).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NearMisses {
    /// The groups.
    pub groups: Vec<NearMissGroup>,
    /// Their workloads.
    pub workloads: Vec<NearMissWorkload>,
}

impl NearMisses {
    /// No near miss.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// The near misses of the sessions in `usage` (docs/rules.md, "Near misses"): each session joined to its
/// issuing call in `sessions` for its lease and identity, skipped when it failed (`failed` holds the
/// access keys of failing calls), when its last use is outside `[since, until]`, or when its issue time or
/// credential source is unknown (a default lease of an unknown source is no evidence).
pub fn near_misses(
    usage: &SessionUse,
    sessions: &dyn Sessions,
    failed: &dyn Fn(&str) -> bool,
    since: Option<Epoch>,
    until: Option<Epoch>,
) -> NearMisses {
    let mut by_group: BTreeMap<GroupKey, Vec<Judged>> = BTreeMap::new();
    for (key, last) in usage.iter() {
        let Some(client) = last.client else { continue };
        if refresh_window(client).is_none()
            || since.is_some_and(|s| last.at < s)
            || until.is_some_and(|u| last.at > u)
            || failed(key)
        {
            continue;
        }
        let issuance = sessions.issued(key);
        let arn = last.identity.and_then(|i| usage.identity(i));
        let identity = Identity::of(arn, issuance.as_ref());
        let facts = Facts {
            principal: identity.principal.as_deref(),
            session: identity.session.as_deref(),
            access_key_id: Some(key),
            hints: IdentityHints {
                identity_type: identity.kind,
                ..IdentityHints::default()
            },
            issuance: issuance.as_ref(),
            ..Facts::default()
        };
        let source = credential_source(&facts);
        let lease = lease(issuance.as_ref(), source);
        if lease.source == LeaseSource::DefaultUnknown {
            continue;
        }
        let Some(issued_at) = last.created.or(issuance.as_ref().map(|i| i.issued_at)) else {
            continue;
        };
        let lease_end = issued_at + lease.seconds as Epoch;
        let Some(miss) = near_miss(last.at, client, lease_end) else {
            continue;
        };
        let group = group_key(&identity.account, &identity.principal, &identity.session);
        let occurrence = Occurrence {
            access_key_id: key.to_owned(),
            issued_at,
            last_use: last.at,
            lease_end,
            near_miss: miss,
        };
        by_group
            .entry(group)
            .or_default()
            .push((occurrence, client, source, lease, identity));
    }
    let mut groups: Vec<NearMissGroup> = by_group
        .into_iter()
        .map(|(key, mut all)| {
            all.sort_by(|a, b| (a.0.last_use, &a.0.access_key_id).cmp(&(b.0.last_use, &b.0.access_key_id)));
            let starts: Vec<Epoch> = all.iter().map(|o| o.0.last_use).collect();
            let first = starts[0];
            let count = all.len() as u64;
            let principal = all
                .iter()
                .filter_map(|o| o.4.principal.clone())
                .max_by_key(|p| p.len());
            let (latest, client, source, lease, identity) = all.last().cloned().expect("a group has one");
            let skip = all.len().saturating_sub(MAX_LISTED);
            NearMissGroup {
                account: identity.account.clone(),
                principal,
                session: identity.session.clone(),
                workload: identity.session.as_deref().map(session_pattern),
                key,
                verdict: Verdict::NearMiss,
                severity: Severity::Low,
                credential_source: source,
                lease,
                client,
                recurrence: Recurrence::of(&starts, latest.last_use),
                latest,
                occurrences: all.into_iter().skip(skip).map(|o| o.0).collect(),
                count,
                first,
            }
        })
        .collect();
    groups
        .sort_by(|a, b| (&a.account, &a.principal, &a.session).cmp(&(&b.account, &b.principal, &b.session)));
    let workloads = workloads(&groups);
    NearMisses { groups, workloads }
}

fn workloads(groups: &[NearMissGroup]) -> Vec<NearMissWorkload> {
    let mut by_key: BTreeMap<WorkloadKey, (NearMissWorkload, BTreeSet<String>)> = BTreeMap::new();
    for g in groups {
        let (w, listed) = by_key
            .entry(workload_key(
                g.account.as_deref(),
                g.principal.as_deref(),
                g.workload.as_deref(),
            ))
            .or_insert_with(|| {
                let w = NearMissWorkload {
                    account: g.account.clone(),
                    principal: g.principal.clone(),
                    session_pattern: g.workload.clone(),
                    groups: 0,
                    sessions: Vec::new(),
                    near_misses: 0,
                    first_near_miss: g.latest.last_use,
                    last_near_miss: g.latest.last_use,
                    closest_seconds_before_expiry: g.latest.near_miss.seconds_before_expiry,
                };
                (w, BTreeSet::new())
            });
        if let Some(s) = &g.session {
            list_session(listed, s);
        }
        w.groups += 1;
        w.near_misses += g.count;
        w.first_near_miss = w.first_near_miss.min(g.first);
        for o in &g.occurrences {
            w.last_near_miss = w.last_near_miss.max(o.last_use);
            w.closest_seconds_before_expiry = w
                .closest_seconds_before_expiry
                .min(o.near_miss.seconds_before_expiry);
        }
        keep_fuller(&mut w.principal, g.principal.as_deref());
    }
    let mut out: Vec<NearMissWorkload> = by_key
        .into_values()
        .map(|(mut w, listed)| {
            w.sessions = listed.into_iter().collect();
            w
        })
        .collect();
    out.sort_by(|a, b| {
        b.near_misses.cmp(&a.near_misses).then_with(|| {
            (&a.account, &a.principal, &a.session_pattern).cmp(&(
                &b.account,
                &b.principal,
                &b.session_pattern,
            ))
        })
    });
    out
}

/// One session's near miss, flat: what the live scan keeps of it in the state table (an item per session,
/// so that scanning the same files again writes the same item) and what a report from the table is rebuilt
/// from ([`NearMisses::from_sessions`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionNearMiss {
    /// The account.
    pub account: Option<String>,
    /// The principal, as the group spelled it.
    pub principal: Option<String>,
    /// The session name.
    pub session: Option<String>,
    /// The client of its last use.
    pub client: Client,
    /// Where it came from.
    pub credential_source: CredentialSource,
    /// Its lease.
    pub lease: Lease,
    /// When and how close.
    pub occurrence: Occurrence,
}

impl NearMisses {
    /// Each session's near miss, flat, for the state table. A group's earlier sessions take the group's
    /// client, source and lease source (a group's sessions are one job's runs, and the report keeps those
    /// of its latest only); each keeps its own times.
    pub fn sessions(&self) -> Vec<SessionNearMiss> {
        self.groups
            .iter()
            .flat_map(|g| {
                g.occurrences.iter().map(move |o| SessionNearMiss {
                    account: g.account.clone(),
                    principal: g.principal.clone(),
                    session: g.session.clone(),
                    client: g.client,
                    credential_source: g.credential_source,
                    lease: Lease {
                        seconds: (o.lease_end - o.issued_at).max(0) as u64,
                        source: g.lease.source,
                    },
                    occurrence: o.clone(),
                })
            })
            .collect()
    }

    /// The near misses of stored sessions: grouped, described and put into workloads as
    /// [`near_misses`] does from records, so that a report from the table reads like one from the trail.
    /// A session listed twice counts once (its latest use).
    pub fn from_sessions(sessions: Vec<SessionNearMiss>) -> NearMisses {
        let mut latest: BTreeMap<String, SessionNearMiss> = BTreeMap::new();
        for s in sessions {
            match latest.get(&s.occurrence.access_key_id) {
                Some(kept) if kept.occurrence.last_use >= s.occurrence.last_use => {}
                _ => {
                    latest.insert(s.occurrence.access_key_id.clone(), s);
                }
            }
        }
        let mut by_group: BTreeMap<GroupKey, Vec<SessionNearMiss>> = BTreeMap::new();
        for s in latest.into_values() {
            by_group
                .entry(group_key(&s.account, &s.principal, &s.session))
                .or_default()
                .push(s);
        }
        let mut groups: Vec<NearMissGroup> = by_group
            .into_iter()
            .filter_map(|(key, mut all)| {
                all.sort_by(|a, b| {
                    (a.occurrence.last_use, &a.occurrence.access_key_id)
                        .cmp(&(b.occurrence.last_use, &b.occurrence.access_key_id))
                });
                let starts: Vec<Epoch> = all.iter().map(|s| s.occurrence.last_use).collect();
                let principal = all
                    .iter()
                    .filter_map(|s| s.principal.clone())
                    .max_by_key(|p| p.len());
                let last = all.last()?.clone();
                let skip = all.len().saturating_sub(MAX_LISTED);
                Some(NearMissGroup {
                    account: last.account.clone(),
                    principal,
                    workload: last.session.as_deref().map(session_pattern),
                    session: last.session.clone(),
                    key,
                    verdict: Verdict::NearMiss,
                    severity: Severity::Low,
                    credential_source: last.credential_source,
                    lease: last.lease,
                    client: last.client,
                    recurrence: Recurrence::of(&starts, last.occurrence.last_use),
                    first: starts[0],
                    count: all.len() as u64,
                    latest: last.occurrence,
                    occurrences: all.into_iter().skip(skip).map(|s| s.occurrence).collect(),
                })
            })
            .collect();
        groups.sort_by(|a, b| {
            (&a.account, &a.principal, &a.session).cmp(&(&b.account, &b.principal, &b.session))
        });
        let workloads = workloads(&groups);
        NearMisses { groups, workloads }
    }
}

/// A session's near miss with what it was judged on: its client, source, lease and identity.
type Judged = (Occurrence, Client, CredentialSource, Lease, Identity);

/// Whose session it was: from the identity ARN of its calls, else its issuing call.
#[derive(Clone, Debug, Default)]
struct Identity {
    account: Option<String>,
    principal: Option<String>,
    session: Option<String>,
    kind: Option<IdentityType>,
}

impl Identity {
    fn of(arn: Option<&str>, issuance: Option<&crate::classify::Issuance>) -> Identity {
        let mut id = Identity::default();
        if let Some(arn) = arn {
            if let Some(a) = AssumedRoleArn::parse(arn) {
                id.account = Some(a.account.to_owned());
                id.principal = Some(a.role_arn());
                id.session = Some(a.session.to_owned());
                id.kind = Some(IdentityType::AssumedRole);
            } else {
                id.account = arn_account(arn).map(str::to_owned);
                id.principal = Some(arn.to_owned());
                let resource = arn.splitn(6, ':').nth(5).unwrap_or_default();
                id.kind = if resource.starts_with("user/") {
                    Some(IdentityType::IamUser)
                } else if resource.starts_with("federated-user/") {
                    Some(IdentityType::FederatedUser)
                } else {
                    None
                };
            }
        }
        if let Some(i) = issuance {
            id.account = id.account.or_else(|| i.account.clone());
            // The issuing call names the role with its path.
            if i.principal.as_ref().map(String::len) > id.principal.as_ref().map(String::len) {
                id.principal = i.principal.clone();
            }
            id.session = id.session.or_else(|| i.session.clone());
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const END: Epoch = 1_800_000_000;

    #[test]
    fn a_boto3_session_used_42_s_before_expiry_is_a_near_miss_and_says_how_close() {
        let miss = near_miss(END - 42, Client::Boto3, END).expect("a near miss");
        assert_eq!(miss.seconds_before_expiry, 42);
        assert_eq!(
            miss.describe(),
            "used 42 s before expiry; botocore refreshes 10–15 min before"
        );
    }

    #[test]
    fn a_boto3_session_last_used_before_botocore_must_refresh_is_no_near_miss() {
        // 11 minutes before: inside the advisory window a managed session may still sign calls.
        assert_eq!(near_miss(END - 11 * 60, Client::Boto3, END), None);
        assert!(near_miss(END - 9 * 60, Client::AwsCliV2, END).is_some());
    }

    #[test]
    fn a_use_at_or_after_the_lease_end_is_a_failure_not_a_near_miss() {
        assert_eq!(near_miss(END, Client::Boto3, END), None);
        assert_eq!(near_miss(END + 5, Client::Boto3, END), None);
    }

    #[test]
    fn each_documented_window_flags_inside_it_and_not_before_it() {
        for (client, by) in [
            (Client::Botocore, 600),
            (Client::AwsCliV1, 600),
            (Client::JavaV2, 60),
            (Client::JsV3, 300),
            (Client::JsV2, 15),
            (Client::Rust, 10),
        ] {
            assert!(
                near_miss(END - (by - 1), client, END).is_some(),
                "{client} just inside"
            );
            assert_eq!(near_miss(END - by, client, END), None, "{client} at its window");
        }
    }

    #[test]
    fn go_v2_uses_its_session_to_the_last_second_and_that_is_no_near_miss() {
        // Its credentials cache's ExpiryWindow defaults to zero: the last second is normal.
        assert_eq!(near_miss(END - 1, Client::GoV2, END), None);
    }

    #[test]
    fn clients_without_a_documented_window_never_give_a_near_miss() {
        for client in [
            Client::JavaV1,
            Client::GoV1,
            Client::Dotnet,
            Client::Console,
            Client::Terraform,
        ] {
            assert_eq!(refresh_window(client), None, "{client}");
            assert_eq!(near_miss(END - 1, client, END), None, "{client}");
        }
    }

    #[test]
    fn windows_in_words() {
        let java = near_miss(END - 30, Client::JavaV2, END).unwrap();
        assert_eq!(
            java.describe(),
            "used 30 s before expiry; the Java SDK v2's STS provider refreshes 1–5 min before"
        );
        let js = near_miss(END - 200, Client::JsV3, END).unwrap();
        assert!(
            js.describe().starts_with("used 3 min before expiry;"),
            "{}",
            js.describe()
        );
        assert!(
            js.describe().ends_with("refreshes 5 min before"),
            "{}",
            js.describe()
        );
        let rust = near_miss(END - 3, Client::Rust, END).unwrap();
        assert!(
            rust.describe().ends_with("refreshes 10–15 s before"),
            "{}",
            rust.describe()
        );
    }
}

#[cfg(test)]
mod report_tests {
    use crate::Analyzer;
    use crate::model::{Client, LeaseSource, Verdict};
    use crate::time::parse_time;

    fn call(key: &str, session: &str, time: &str, ua: &str, error: Option<&str>) -> String {
        let error = error.map_or(String::new(), |e| format!(r#""errorCode":"{e}","#));
        format!(
            r#"{{"eventVersion":"1.08","userIdentity":{{"type":"AssumedRole","principalId":"AROAEXAMPLE:{session}",
            "arn":"arn:aws:sts::123456789012:assumed-role/etl/{session}","accountId":"123456789012",
            "accessKeyId":"{key}","sessionContext":{{"sessionIssuer":{{"type":"Role",
            "arn":"arn:aws:iam::123456789012:role/etl"}},"attributes":{{"creationDate":"2026-11-02T08:00:00Z"}}}}}},
            "eventTime":"{time}","eventSource":"s3.amazonaws.com","eventName":"ListBuckets",{error}
            "eventID":"{key}-{time}","userAgent":"{ua}"}}"#
        )
    }

    const BOTO3: &str = "Boto3/1.34.0 md/Botocore#1.34.0 Botocore/1.34.0";

    fn report(values: &[String]) -> crate::Report {
        let mut a = Analyzer::default();
        for v in values {
            a.feed_value(v.as_bytes());
        }
        a.report()
    }

    #[test]
    fn a_copied_boto3_session_used_at_57_minutes_is_a_near_miss_of_its_group() {
        let r = report(&[
            call("ASIANM1EXAMPLE", "nightly", "2026-11-02T08:00:05Z", BOTO3, None),
            call("ASIANM1EXAMPLE", "nightly", "2026-11-02T08:57:00Z", BOTO3, None),
        ]);
        assert_eq!(r.failures, 0);
        let [g] = &r.near_misses.groups[..] else {
            panic!("{:?}", r.near_misses)
        };
        assert_eq!(g.verdict, Verdict::NearMiss);
        assert_eq!(g.client, Client::Boto3);
        assert_eq!(g.session.as_deref(), Some("nightly"));
        assert_eq!(g.principal.as_deref(), Some("arn:aws:iam::123456789012:role/etl"));
        assert_eq!(g.lease.source, LeaseSource::DefaultAssumeRole);
        assert_eq!(g.latest.near_miss.seconds_before_expiry, 180);
        assert_eq!(
            g.describe(),
            "used 3 min before expiry; botocore refreshes 10–15 min before"
        );
        assert_eq!(r.near_misses.workloads.len(), 1);
    }

    #[test]
    fn a_session_that_failed_is_no_near_miss() {
        let r = report(&[
            call("ASIANM2EXAMPLE", "nightly", "2026-11-02T08:57:00Z", BOTO3, None),
            call(
                "ASIANM2EXAMPLE",
                "nightly",
                "2026-11-02T09:00:10Z",
                BOTO3,
                Some("ExpiredToken"),
            ),
        ]);
        assert_eq!(r.failures, 1);
        assert!(r.near_misses.is_empty(), "{:?}", r.near_misses);
    }

    #[test]
    fn a_use_before_the_window_and_a_go_v2_use_to_the_end_are_no_near_misses() {
        let r = report(&[
            call("ASIANM3EXAMPLE", "early", "2026-11-02T08:45:00Z", BOTO3, None),
            call(
                "ASIANM4EXAMPLE",
                "go",
                "2026-11-02T08:59:59Z",
                "aws-sdk-go-v2/1.24.0 os/linux",
                None,
            ),
        ]);
        assert!(r.near_misses.is_empty(), "{:?}", r.near_misses);
    }

    #[test]
    fn the_lease_comes_from_the_issuing_call_when_seen() {
        let issue = r#"{"eventTime":"2026-11-02T08:00:00Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRole",
            "eventID":"issue-nm5","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/ci",
            "accessKeyId":"AKIAEXAMPLE"},"requestParameters":{"roleArn":"arn:aws:iam::123456789012:role/etl",
            "roleSessionName":"short","durationSeconds":900},
            "responseElements":{"credentials":{"accessKeyId":"ASIANM5EXAMPLE","expiration":"Nov 2, 2026, 8:15:00 AM"}}}"#;
        // 14 min into a 15-min session: a near miss only because the lease is the call's.
        let r = report(&[
            issue.to_owned(),
            call("ASIANM5EXAMPLE", "short", "2026-11-02T08:14:00Z", BOTO3, None),
        ]);
        let [g] = &r.near_misses.groups[..] else {
            panic!("{:?}", r.near_misses)
        };
        assert_eq!(g.lease.source, LeaseSource::DurationSeconds);
        assert_eq!(g.latest.near_miss.seconds_before_expiry, 60);
    }

    #[test]
    fn nightly_near_misses_recur_as_one_group() {
        let mut values = Vec::new();
        for day in 2..=5 {
            let created = format!("2026-11-0{day}T08:00:00Z");
            let used = format!("2026-11-0{day}T08:57:00Z");
            let key = format!("ASIANMDAY{day}EXAMPLE");
            values.push(call(&key, "nightly", &used, BOTO3, None).replace("2026-11-02T08:00:00Z", &created));
        }
        let r = report(&values);
        let [g] = &r.near_misses.groups[..] else {
            panic!("{:?}", r.near_misses)
        };
        assert_eq!(g.count, 4);
        assert_eq!(g.occurrences.len(), 4);
        let recurrence = g.recurrence.expect("every night");
        assert_eq!(recurrence.every_seconds, 86_400);
        assert_eq!(Some(g.latest.last_use), parse_time("2026-11-05T08:57:00Z"));
    }

    #[test]
    fn a_lookup_events_wrapper_carrying_a_session_call_is_scanned() {
        let inner = call("ASIANM6EXAMPLE", "wrapped", "2026-11-02T08:57:00Z", BOTO3, None);
        let wrapped = serde_json::json!({"Events": [{"EventId": "x", "CloudTrailEvent": inner}]}).to_string();
        let mut a = Analyzer::default();
        a.read(wrapped.as_bytes()).unwrap();
        let r = a.report();
        assert_eq!(r.records, 1);
        assert_eq!(r.near_misses.groups.len(), 1, "{:?}", r.near_misses);
    }

    #[test]
    fn near_misses_flattened_for_the_table_and_rebuilt_read_the_same() {
        let mut values = Vec::new();
        for day in 2..=5 {
            let created = format!("2026-11-0{day}T08:00:00Z");
            let used = format!("2026-11-0{day}T08:57:00Z");
            let key = format!("ASIANMDAY{day}EXAMPLE");
            values.push(call(&key, "nightly", &used, BOTO3, None).replace("2026-11-02T08:00:00Z", &created));
        }
        values.push(call(
            "ASIANMPOD1EXAMPLE",
            "pod-7f9c4d8b6-x2k9q",
            "2026-11-02T08:58:00Z",
            BOTO3,
            None,
        ));
        values.push(call(
            "ASIANMPOD2EXAMPLE",
            "pod-7f9c4d8b6-h7m3z",
            "2026-11-02T08:59:00Z",
            BOTO3,
            None,
        ));
        let r = report(&values);
        let sessions = r.near_misses.sessions();
        assert_eq!(sessions.len(), 6);
        let mut twice = sessions.clone();
        twice.extend(sessions.iter().rev().cloned());
        assert_eq!(super::NearMisses::from_sessions(twice), r.near_misses);
    }

    #[test]
    fn a_session_stored_with_an_earlier_use_counts_once_at_its_latest() {
        let r = report(&[call(
            "ASIANM7EXAMPLE",
            "nightly",
            "2026-11-02T08:57:00Z",
            BOTO3,
            None,
        )]);
        let [latest] = &r.near_misses.sessions()[..] else {
            panic!("{:?}", r.near_misses)
        };
        let mut earlier = latest.clone();
        earlier.occurrence.last_use -= 60;
        let rebuilt = super::NearMisses::from_sessions(vec![earlier, latest.clone()]);
        assert_eq!(rebuilt.groups[0].count, 1);
        assert_eq!(rebuilt.groups[0].latest, latest.occurrence);
        assert!(super::NearMisses::from_sessions(Vec::new()).is_empty());
    }
}
