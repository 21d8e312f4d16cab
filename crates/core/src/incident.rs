//! Incidents: what the detector keeps per group between invocations, and when to page, hold, escalate
//! or resolve. Pure: the state comes in from a [`crate::ports::StateStore`], `now` comes in as an argument.

use std::collections::BTreeSet;

use std::fmt;

use crate::assess::{EDGE, REFRESH_WINDOW};
use crate::classify::{Failure, Issuance};
use crate::finding::Finding;
use crate::model::{Severity, Verdict};
use crate::stats::{FailureStats, GroupKey};
use crate::time::Epoch;

/// A group's state in the state table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupState {
    /// The group.
    pub key: GroupKey,
    /// Failures of the current incident.
    pub stats: FailureStats,
    /// When sessions of this group were issued (from issuing calls seen).
    pub issued_times: BTreeSet<Epoch>,
    /// The current (or last) incident.
    pub incident: Incident,
    /// When this group's resolved incidents began (the newest [`MAX_HISTORY`] are kept): what shows a
    /// job that dies at the same point of every run.
    pub history: BTreeSet<Epoch>,
}

/// Incident starts kept per group: two months of a daily job.
pub const MAX_HISTORY: usize = 64;

/// Issue times kept per group. A busy role re-issued at every cold start would otherwise grow its state
/// without bound; at the cap the times are dropped and counting starts again from the newest, which keeps
/// the recent sessions a refresh race is judged on.
pub const MAX_ISSUED_TIMES: usize = 256;

/// Which incident: its group and its first failure. Written `<group id>@<epoch seconds>` wherever it
/// must be text (a state-table attribute, an alert).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncidentId {
    /// The group's [`group_id`].
    pub group: String,
    /// When the incident began: its first failure.
    pub opened_at: Epoch,
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.group, self.opened_at)
    }
}

impl std::str::FromStr for IncidentId {
    type Err = String;

    /// Reads the text [`IncidentId`]'s `Display` writes (for stores that keep it as text).
    fn from_str(s: &str) -> Result<IncidentId, String> {
        let (group, start) = s
            .rsplit_once('@')
            .ok_or_else(|| format!("incident id '{s}' has no '@'"))?;
        let opened_at = start
            .parse()
            .map_err(|_| format!("incident id '{s}' does not end in epoch seconds"))?;
        Ok(IncidentId {
            group: group.to_owned(),
            opened_at,
        })
    }
}

/// One incident of a group: from its first failure until a newer session or the cool-down.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Incident {
    /// Which incident; `None` before any failure.
    pub id: Option<IncidentId>,
    /// The highest severity paged for it, if any.
    pub paged: Option<Severity>,
    /// When it was resolved; `None` while open.
    pub resolved_at: Option<Epoch>,
}

impl GroupState {
    /// An incident exists and is not resolved.
    pub fn is_open(&self) -> bool {
        self.incident.id.is_some() && self.incident.resolved_at.is_none()
    }

    /// When the failing session was issued, as far as the state knows.
    pub fn failing_session_issued_at(&self, issuance: Option<&Issuance>) -> Option<Epoch> {
        self.stats
            .first_failure
            .creation_date
            .or(issuance.map(|i| i.issued_at))
    }
}

/// The id of a group: printable, bounded, and unambiguous (`|` separates, `\` escapes).
pub fn group_id(key: &GroupKey) -> String {
    let part = |p: &Option<String>| -> String {
        match p {
            None => "-".to_owned(),
            // At most 256 bytes of each part (on a character boundary): with escaping, three parts stay
            // well under DynamoDB's 2,048-byte key limit whatever the characters.
            Some(s) => s
                .char_indices()
                .take_while(|(i, c)| i + c.len_utf8() <= 256)
                .map(|(_, c)| c)
                .flat_map(|c| {
                    if c == '|' || c == '\\' {
                        vec!['\\', c]
                    } else {
                        vec![c]
                    }
                })
                .collect(),
        }
    };
    format!(
        "{}|{}|{}",
        part(&key.account),
        part(&key.principal),
        part(&key.session)
    )
}

/// The id of `key`'s incident starting at `first_failure`.
pub fn incident_id(key: &GroupKey, first_failure: Epoch) -> IncidentId {
    IncidentId {
        group: group_id(key),
        opened_at: first_failure,
    }
}

/// A principal or session pattern with `*` wildcards, silencing pages until it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppression {
    /// Pattern for the principal ARN (`*` matches any run of characters).
    pub principal: String,
    /// Pattern for the session name; `*` for any.
    pub session: String,
    /// The suppression ends at this time.
    pub expires: Epoch,
    /// Why: shown in logs, so a silenced workload is not forgotten.
    pub reason: String,
}

impl Suppression {
    /// Does it silence this group at `now`?
    pub fn matches(&self, key: &GroupKey, principal: Option<&str>, now: Epoch) -> bool {
        now < self.expires
            && wildcard(
                &self.principal,
                principal.or(key.principal.as_deref()).unwrap_or(""),
            )
            && wildcard(&self.session, key.session.as_deref().unwrap_or(""))
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// What the detector is told to do: read once at cold start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Page only at or above this severity.
    pub min_severity: Severity,
    /// A group quiet this long ends its incident.
    pub cooldown: i64,
    /// Silenced workloads.
    pub suppressions: Vec<Suppression>,
    /// Which drills are accepted, and which groups are drills.
    pub drills: crate::drill::DrillPolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_severity: Severity::Low,
            cooldown: 3600,
            suppressions: Vec::new(),
            drills: Default::default(),
        }
    }
}

/// What to do about a group now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Publish an alert at this severity: the incident's first page, or an escalation of it.
    Page {
        /// Paging severity.
        severity: Severity,
        /// The incident was paged before at a lower severity.
        escalation: bool,
    },
    /// Wait: the failures may still turn out to be a refresh race.
    Hold,
    /// Nothing to send, and why.
    Quiet(Withheld),
}

/// Why a page was not sent: a metric dimension, so a dashboard can tell a silenced group from a held one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Withheld {
    /// The group has no open incident.
    NoOpenIncident,
    /// A suppression matches it.
    Suppressed,
    /// A refresh race recovers by itself.
    RefreshRace,
    /// Held while a newer session may still make it a refresh race.
    HeldForRefreshWindow,
    /// Its paging severity is below the floor.
    BelowFloor,
    /// It was paged at this severity or higher already.
    AlreadyPaged,
}

impl Withheld {
    /// The dimension value.
    pub fn as_str(self) -> &'static str {
        match self {
            Withheld::NoOpenIncident => "no open incident",
            Withheld::Suppressed => "suppressed",
            Withheld::RefreshRace => "refresh race: recovered by itself",
            Withheld::HeldForRefreshWindow => "held for the refresh window",
            Withheld::BelowFloor => "below the paging floor",
            Withheld::AlreadyPaged => "already paged",
        }
    }
}

/// Decides whether to page for the group of `state`, judged as `finding`.
pub fn decide(state: &GroupState, finding: &Finding, policy: &Policy, now: Epoch) -> Decision {
    if state.stats.failures == 0 || !state.is_open() {
        return Decision::Quiet(Withheld::NoOpenIncident);
    }
    if policy
        .suppressions
        .iter()
        .any(|s| s.matches(&state.key, finding.principal.as_deref(), now))
    {
        return Decision::Quiet(Withheld::Suppressed);
    }
    if finding.verdict() == Verdict::RefreshRace {
        return Decision::Quiet(Withheld::RefreshRace);
    }
    if might_still_be_a_refresh_race(state, finding, now) {
        return Decision::Hold;
    }
    let severity = finding.assessment.paging_severity;
    if severity < policy.min_severity {
        return Decision::Quiet(Withheld::BelowFloor);
    }
    match state.incident.paged {
        Some(paged) if paged >= severity => Decision::Quiet(Withheld::AlreadyPaged),
        paged => Decision::Page {
            severity,
            escalation: paged.is_some(),
        },
    }
}

/// [`decide`] for an incident that a `tokenwatch drill` event belongs to: a drill proves the path from
/// EventBridge to the channel, so it pages once whatever the floor, the hold or the suppressions say.
pub fn decide_drill(state: &GroupState, finding: &Finding, policy: &Policy, now: Epoch) -> Decision {
    match decide(state, finding, policy, now) {
        Decision::Hold | Decision::Quiet(_) if state.is_open() && state.incident.paged.is_none() => {
            Decision::Page {
                severity: finding.assessment.paging_severity,
                escalation: false,
            }
        }
        d => d,
    }
}

/// Failures at the lease boundary only, and the refresh window not yet over: a newer session may still
/// show up and make it a refresh race.
fn might_still_be_a_refresh_race(state: &GroupState, finding: &Finding, now: Epoch) -> bool {
    if finding.verdict() != Verdict::StaleCache {
        return false;
    }
    let (Some(issued_at), Some(lease)) = (finding.issued_at(), finding.lease_seconds()) else {
        return false;
    };
    let last_age = state.stats.last - issued_at;
    last_age <= lease as i64 + EDGE && now - state.stats.first < REFRESH_WINDOW
}

/// A newer session of the group was issued at `issued_at`: does it end the open incident?
pub fn resolved_by_issuance(state: &GroupState, failing_issued_at: Option<Epoch>, issued_at: Epoch) -> bool {
    state.is_open() && issued_at > failing_issued_at.unwrap_or(state.stats.first)
}

/// Has the open incident been quiet for the cool-down?
pub fn resolved_by_quiet(state: &GroupState, policy: &Policy, now: Epoch) -> bool {
    state.is_open() && now - state.stats.last >= policy.cooldown
}

/// Do these failures start a new incident rather than add to the current one?
pub fn starts_new_incident(state: &GroupState, failures: &[Failure], policy: &Policy) -> bool {
    let Some(earliest) = failures.iter().map(|f| f.time).min() else {
        return false;
    };
    match (&state.incident.id, state.incident.resolved_at) {
        (None, _) => true,
        // The old session's stragglers, seconds after a newer one resolved the incident, still belong to it.
        (Some(_), Some(resolved)) => earliest > resolved + EDGE,
        (Some(_), None) => state.stats.failures > 0 && earliest - state.stats.last >= policy.cooldown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::IdentityHints;
    use crate::model::Client;

    const T0: Epoch = 1_793_606_400; // 2026-11-02T08:00:00Z, the session's issue time

    fn failure(id: &str, age: i64) -> Failure {
        Failure {
            event_id: Some(id.into()),
            time: T0 + age,
            account: Some("123456789012".into()),
            principal: Some("arn:aws:iam::123456789012:role/etl".into()),
            session: Some("job".into()),
            access_key_id: Some("ASIAEXAMPLE".into()),
            creation_date: Some(T0),
            error_code: "ExpiredToken".into(),
            event_name: "s3:GetObject".into(),
            source_ip: None,
            client: Some(Client::Boto3),
            token_call: None,
            hints: IdentityHints {
                identity_type: Some(crate::model::IdentityType::AssumedRole),
                ..Default::default()
            },
        }
    }

    fn key() -> GroupKey {
        GroupKey {
            account: Some("123456789012".into()),
            principal: Some("etl".into()),
            session: Some("job".into()),
        }
    }

    fn state(ages: &[i64]) -> GroupState {
        let mut stats = FailureStats::default();
        for (i, a) in ages.iter().enumerate() {
            stats.add(failure(&i.to_string(), *a));
        }
        GroupState {
            key: key(),
            incident: Incident {
                id: Some(incident_id(&key(), stats.first)),
                ..Default::default()
            },
            stats,
            issued_times: BTreeSet::from([T0]),
            ..Default::default()
        }
    }

    fn group(s: &GroupState) -> Finding {
        crate::finding::judge(s.evidence(), &())
    }

    #[test]
    fn a_stale_cache_pages_once_at_high() {
        let s = state(&[3700, 3800]);
        let now = T0 + 3900;
        assert_eq!(
            decide(&s, &group(&s), &Policy::default(), now),
            Decision::Page {
                severity: Severity::High,
                escalation: false
            }
        );
        let mut paged = s.clone();
        paged.incident.paged = Some(Severity::High);
        assert_eq!(
            decide(&paged, &group(&paged), &Policy::default(), now),
            Decision::Quiet(Withheld::AlreadyPaged)
        );
    }

    #[test]
    fn a_storm_does_not_escalate_but_two_hours_of_failing_does() {
        let ages: Vec<i64> = (0..1500).map(|i| 3610 + i).collect();
        let mut s = state(&ages);
        s.incident.paged = Some(Severity::High);
        let g = group(&s);
        assert_eq!(g.severity(), Severity::Critical, "the report still says critical");
        assert_eq!(
            decide(&s, &g, &Policy::default(), T0 + 9000),
            Decision::Quiet(Withheld::AlreadyPaged)
        );
        let mut long = state(&[3610, 3610 + 7200]);
        long.incident.paged = Some(Severity::High);
        assert_eq!(
            decide(&long, &group(&long), &Policy::default(), T0 + 20_000),
            Decision::Page {
                severity: Severity::Critical,
                escalation: true
            }
        );
    }

    #[test]
    fn failures_at_the_boundary_are_held_through_the_refresh_window() {
        let s = state(&[3605, 3650]);
        assert_eq!(
            decide(&s, &group(&s), &Policy::default(), T0 + 3700),
            Decision::Hold
        );
        assert!(matches!(
            decide(&s, &group(&s), &Policy::default(), T0 + 3605 + 301),
            Decision::Page { .. }
        ));
        let later = state(&[3605, 3900]);
        assert!(matches!(
            decide(&later, &group(&later), &Policy::default(), T0 + 3901),
            Decision::Page { .. }
        ));
    }

    #[test]
    fn a_refresh_race_never_pages() {
        let mut s = state(&[3605, 3650]);
        s.issued_times.insert(T0 + 3640);
        let g = group(&s);
        assert_eq!(g.verdict(), Verdict::RefreshRace);
        assert!(matches!(
            decide(&s, &g, &Policy::default(), T0 + 9999),
            Decision::Quiet(_)
        ));
    }

    #[test]
    fn suppressions_silence_until_they_expire() {
        let s = state(&[3700]);
        let policy = Policy {
            suppressions: vec![Suppression {
                principal: "arn:aws:iam::*:role/etl".into(),
                session: "*".into(),
                expires: T0 + 10_000,
                reason: "migrating".into(),
            }],
            ..Policy::default()
        };
        assert_eq!(
            decide(&s, &group(&s), &policy, T0 + 3800),
            Decision::Quiet(Withheld::Suppressed)
        );
        assert!(matches!(
            decide(&s, &group(&s), &policy, T0 + 10_001),
            Decision::Page { .. }
        ));
    }

    #[test]
    fn a_drill_pages_once_through_suppressions_but_never_a_closed_or_paged_incident() {
        let mut s = state(&[3700]);
        let policy = Policy {
            suppressions: vec![Suppression {
                principal: "*".into(),
                session: "*".into(),
                expires: T0 + 10_000,
                reason: "quiet week".into(),
            }],
            ..Policy::default()
        };
        let g = group(&s);
        assert_eq!(
            decide(&s, &g, &policy, T0 + 3800),
            Decision::Quiet(Withheld::Suppressed)
        );
        assert!(matches!(
            decide_drill(&s, &g, &policy, T0 + 3800),
            Decision::Page {
                escalation: false,
                ..
            }
        ));
        s.incident.paged = Some(Severity::High);
        assert_eq!(
            decide_drill(&s, &g, &policy, T0 + 3800),
            Decision::Quiet(Withheld::Suppressed)
        );
        s.incident.paged = None;
        s.incident.resolved_at = Some(T0 + 3900);
        assert!(matches!(
            decide_drill(&s, &g, &policy, T0 + 3950),
            Decision::Quiet(_)
        ));
    }

    #[test]
    fn below_the_floor_is_quiet() {
        let s = state(&[600]);
        assert_eq!(group(&s).verdict(), Verdict::ClockSkew);
        let policy = Policy {
            min_severity: Severity::Medium,
            ..Policy::default()
        };
        assert_eq!(
            decide(&s, &group(&s), &policy, T0 + 700),
            Decision::Quiet(Withheld::BelowFloor)
        );
        assert!(matches!(
            decide(&s, &group(&s), &Policy::default(), T0 + 700),
            Decision::Page { .. }
        ));
    }

    #[test]
    fn incidents_end_with_a_newer_session_or_quiet_and_restart_after() {
        let s = state(&[3700]);
        assert!(resolved_by_issuance(&s, Some(T0), T0 + 3800));
        assert!(
            !resolved_by_issuance(&s, Some(T0), T0),
            "the failing session itself"
        );
        let policy = Policy::default();
        assert!(!resolved_by_quiet(&s, &policy, T0 + 3700 + 3599));
        assert!(resolved_by_quiet(&s, &policy, T0 + 3700 + 3600));
        assert!(!starts_new_incident(&s, &[failure("x", 3800)], &policy));
        assert!(starts_new_incident(&s, &[failure("x", 3700 + 3600)], &policy));
        let mut resolved = s.clone();
        resolved.incident.resolved_at = Some(T0 + 3800);
        assert!(starts_new_incident(
            &resolved,
            &[failure("x", 3800 + EDGE + 1)],
            &policy
        ));
        assert!(
            !starts_new_incident(&resolved, &[failure("x", 3750)], &policy),
            "a late record of the old one"
        );
        assert!(starts_new_incident(
            &GroupState::default(),
            &[failure("x", 1)],
            &policy
        ));
    }

    #[test]
    fn stragglers_right_after_a_refresh_do_not_open_a_new_incident() {
        let mut resolved = state(&[3605]);
        resolved.incident.resolved_at = Some(T0 + 3640);
        let policy = Policy::default();
        assert!(!starts_new_incident(&resolved, &[failure("late", 3660)], &policy));
        assert!(!starts_new_incident(
            &resolved,
            &[failure("late", 3640 + EDGE)],
            &policy
        ));
    }

    #[test]
    fn group_ids_fit_a_dynamodb_key_whatever_the_characters() {
        // Four-byte characters (256 of them were 1 KB a part) and pipes (each escaped to two bytes).
        for text in ["🦀".repeat(400), "|".repeat(400)] {
            let key = GroupKey {
                account: Some(text.clone()),
                principal: Some(text.clone()),
                session: Some(text),
            };
            let id = group_id(&key);
            assert!(format!("GROUP#{id}").len() <= 2048, "{} bytes", id.len());
        }
    }

    #[test]
    fn group_ids_are_unambiguous() {
        let a = GroupKey {
            account: Some("1".into()),
            principal: Some("a|b".into()),
            session: Some("c".into()),
        };
        let b = GroupKey {
            account: Some("1".into()),
            principal: Some("a".into()),
            session: Some("b|c".into()),
        };
        assert_ne!(group_id(&a), group_id(&b));
        assert_eq!(group_id(&GroupKey::default()), "-|-|-");
    }

    #[test]
    fn wildcards_match_runs() {
        assert!(wildcard("*", "anything"));
        assert!(wildcard("arn:*:role/etl*", "arn:aws:iam::1:role/etl-nightly"));
        assert!(!wildcard("arn:*:role/etl", "arn:aws:iam::1:role/etl-nightly"));
        assert!(wildcard("a*b*c", "a-x-b-y-c"));
        assert!(!wildcard("a*b*c", "a-c-b"));
        assert!(wildcard("exact", "exact") && !wildcard("exact", "exact!"));
    }
}
