//! Incidents: what the detector keeps per group between invocations, and when to page, hold, escalate
//! or resolve. Pure: the state comes in from a [`crate::ports::StateStore`], `now` comes in as an argument.

use std::collections::{BTreeMap, BTreeSet};

use std::fmt;

use crate::assess::{DELIVERY_ALLOWANCE, EDGE, REFRESH_WINDOW};
use crate::classify::Issuance;
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
    /// The access key each of those sessions was issued with: how a failure whose own key was never
    /// issued (an Identity Center session) finds its issuing call by `creationDate`.
    pub issued_keys: BTreeMap<Epoch, String>,
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

/// Bytes of a key part kept as they are in a group id; a longer part is cut to this and marked with its
/// hash ([`group_id`]).
pub const MAX_PART: usize = 256;

/// The id of a group: bounded, and distinct for distinct keys. Parts are separated by `|`; inside a part
/// `|` and `\` are escaped with `\`. An absent part is `-`, and a part that is the text `-` (a role may be
/// named so) is `\-`. A part longer than [`MAX_PART`] bytes is cut there (on a character boundary) and
/// marked `\#` + 128 bits of its SHA-256 in hex, so that two long IAM user paths with the same beginning
/// stay two groups. `\-` and `\#` never come out of escaping, so no part's text can spell them. Ids of
/// keys with no part `-` and none longer than [`MAX_PART`] are what earlier versions wrote.
pub fn group_id(key: &GroupKey) -> String {
    fn part(p: &Option<String>, out: &mut String) {
        let Some(s) = p else {
            out.push('-');
            return;
        };
        if s == "-" {
            out.push_str("\\-");
            return;
        }
        let mut kept = s.len();
        if kept > MAX_PART {
            kept = MAX_PART;
            while !s.is_char_boundary(kept) {
                kept -= 1;
            }
        }
        for c in s[..kept].chars() {
            if c == '|' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        if kept < s.len() {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(s.as_bytes());
            out.push_str("\\#");
            for b in &digest[..16] {
                out.push_str(&format!("{b:02x}"));
            }
        }
    }
    let mut id = String::new();
    part(&key.account, &mut id);
    id.push('|');
    part(&key.principal, &mut id);
    id.push('|');
    part(&key.session, &mut id);
    id
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
    /// New groups (and so incidents and pages) one principal may open per clock hour; the failures of
    /// the sessions past it go to the principal's [`OVER_CAP_SESSION`] group (docs/rules.md).
    pub new_groups_per_hour: u64,
}

/// The session of the group that takes a principal's failures of sessions it could not open a group for
/// in that hour ([`Policy::new_groups_per_hour`]). Not a legal session name, so no session shares it.
pub const OVER_CAP_SESSION: &str = "(sessions over the hourly cap)";

/// New groups one principal may open per hour by default: above any fleet's hourly churn of sessions
/// (a Deployment of 40 pods renewing every 15 minutes opens no new group at all, a job per minute 60),
/// far below a flood.
pub const NEW_GROUPS_PER_HOUR: u64 = 100;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_severity: Severity::Low,
            cooldown: 3600,
            suppressions: Vec::new(),
            drills: Default::default(),
            new_groups_per_hour: NEW_GROUPS_PER_HOUR,
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
    let severity = finding.assessment.paging_severity;
    if severity < policy.min_severity {
        return Decision::Quiet(Withheld::BelowFloor);
    }
    if might_still_be_a_refresh_race(state, finding, now) {
        return Decision::Hold;
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

/// A late record could still change the verdict, so the page waits until [`hold_ends`].
fn might_still_be_a_refresh_race(state: &GroupState, finding: &Finding, now: Epoch) -> bool {
    hold_ends(state, finding).is_some_and(|end| now < end)
}

/// Until when a page of this group waits for a late record that could still change the verdict
/// (docs/rules.md, "Incidents"), `None` when nothing would be waited for:
/// - failures at the lease boundary only: the refresh window plus the delivery allowance after the
///   first, for a renewal that may still show up and make it a refresh race;
/// - a clock skew judged on a default lease: the delivery allowance after its first failure, for the
///   issuing call that gives the real, shorter lease.
///
/// Once this has passed, the evidence is decisive: the detector re-decides the group then (a re-check,
/// crate::recheck) rather than at the next sweep.
pub fn hold_ends(state: &GroupState, finding: &Finding) -> Option<Epoch> {
    let first = state.stats.first;
    match finding.verdict() {
        Verdict::StaleCache => {
            let (Some(issued_at), Some(lease)) = (finding.issued_at(), finding.lease_seconds()) else {
                return None;
            };
            let last_age = state.stats.last - issued_at;
            (last_age <= lease as i64 + EDGE).then_some(first + REFRESH_WINDOW + DELIVERY_ALLOWANCE)
        }
        Verdict::ClockSkew if finding.assessment.lease.is_some_and(|l| l.source.is_default()) => {
            Some(first + DELIVERY_ALLOWANCE)
        }
        _ => None,
    }
}

/// Has the open incident been quiet for the cool-down?
pub fn resolved_by_quiet(state: &GroupState, policy: &Policy, now: Epoch) -> bool {
    state.is_open() && now - state.stats.last >= policy.cooldown
}

/// A newer session of the group was issued and the incident's failures stopped with it: when to call
/// the incident over. `failing_issued_at` is when the incident's session was issued. The newest session
/// issued after it ends the incident if no failure came later than [`EDGE`] after that issue, once the
/// delivery allowance has passed (a straggler of the old session, delivered late, would keep it open);
/// returns when that newer session was issued (the incident ended then, or at its last failure if later).
pub fn renewal_settled(state: &GroupState, failing_issued_at: Option<Epoch>, now: Epoch) -> Option<Epoch> {
    if !state.is_open() || state.stats.failures == 0 {
        return None;
    }
    let after = failing_issued_at.unwrap_or(state.stats.first);
    let renewed = state.issued_times.iter().copied().filter(|&t| t > after).max()?;
    let ended = renewed.max(state.stats.last);
    (state.stats.last <= renewed + EDGE && now >= ended + DELIVERY_ALLOWANCE).then_some(renewed)
}

/// Where a batch of one session's failures goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Into the current incident (open or not: a late record of an ended incident only counts).
    Same,
    /// Into the current incident, which had been called over: it is open again.
    Reopen,
    /// A new incident. `session_failed_at` is when the session first failed, if it failed before.
    New {
        /// See [`crate::stats::FirstFailure::session_failed_at`].
        session_failed_at: Option<Epoch>,
    },
}

/// The session of a batch of failures, as far as it matters for incidents.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchSession<'a> {
    /// Their access key.
    pub access_key_id: Option<&'a str>,
    /// Their `creationDate`.
    pub creation_date: Option<Epoch>,
    /// When their session was issued (`creationDate`, else the issuing call), if known.
    pub issued_at: Option<Epoch>,
    /// The earliest of them.
    pub earliest: Epoch,
}

/// Where failures of one session go, given the group's state (docs/rules.md, "Incidents"): a new incident
/// when the group has none, when their session was issued after the incident's last failure (a newer
/// session), or when they come at least the cool-down after it; otherwise into the current incident,
/// reopening it if it had been called over before them (a late record of a failure before its end only
/// counts).
pub fn place(state: &GroupState, batch: BatchSession<'_>, policy: &Policy) -> Placement {
    if state.incident.id.is_none() || state.stats.failures == 0 {
        return Placement::New {
            session_failed_at: None,
        };
    }
    let last = state.stats.last;
    if batch.issued_at.is_some_and(|t| t > last) {
        return Placement::New {
            session_failed_at: None,
        };
    }
    if batch.earliest - last >= policy.cooldown {
        let first = &state.stats.first_failure;
        let same_session = match (batch.access_key_id, first.access_key_id.as_deref()) {
            (Some(a), Some(b)) => a == b,
            _ => batch.creation_date.is_some() && batch.creation_date == first.creation_date,
        };
        return Placement::New {
            session_failed_at: same_session.then(|| first.session_failed_at.unwrap_or(state.stats.first)),
        };
    }
    match state.incident.resolved_at {
        Some(ended) if batch.earliest > ended => Placement::Reopen,
        _ => Placement::Same,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Failure, IdentityHints};
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
            requested_session: None,
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
    fn failures_at_the_boundary_are_held_through_the_refresh_window_and_the_delivery_allowance() {
        let s = state(&[3605, 3650]);
        assert_eq!(
            decide(&s, &group(&s), &Policy::default(), T0 + 3700),
            Decision::Hold
        );
        assert_eq!(
            decide(&s, &group(&s), &Policy::default(), T0 + 3605 + REFRESH_WINDOW + 1),
            Decision::Hold,
            "a renewal delivered late may still make it a refresh race"
        );
        assert!(matches!(
            decide(
                &s,
                &group(&s),
                &Policy::default(),
                T0 + 3605 + REFRESH_WINDOW + DELIVERY_ALLOWANCE
            ),
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
        assert_eq!(
            decide(&s, &group(&s), &Policy::default(), T0 + 700),
            Decision::Hold,
            "a clock skew on a default lease waits: its issuing call may still come with a shorter lease"
        );
        assert!(matches!(
            decide(&s, &group(&s), &Policy::default(), T0 + 600 + DELIVERY_ALLOWANCE),
            Decision::Page { .. }
        ));
    }

    fn batch(age: i64, key: &str, issued: Option<i64>) -> BatchSession<'_> {
        BatchSession {
            access_key_id: Some(key),
            creation_date: issued.map(|t| T0 + t),
            issued_at: issued.map(|t| T0 + t),
            earliest: T0 + age,
        }
    }

    #[test]
    fn a_group_without_an_incident_starts_one() {
        let policy = Policy::default();
        assert_eq!(
            place(&GroupState::default(), batch(1, "ASIAEXAMPLE", Some(0)), &policy),
            Placement::New {
                session_failed_at: None
            }
        );
    }

    #[test]
    fn failures_of_the_same_session_within_the_cool_down_stay_in_the_incident() {
        let s = state(&[3700]);
        let policy = Policy::default();
        assert_eq!(
            place(&s, batch(3800, "ASIAEXAMPLE", Some(0)), &policy),
            Placement::Same
        );
        assert_eq!(
            place(&s, batch(3650, "ASIAEXAMPLE", Some(0)), &policy),
            Placement::Same,
            "a late record of an earlier failure"
        );
    }

    #[test]
    fn a_quiet_gap_of_the_cool_down_starts_a_new_incident_that_remembers_its_session() {
        let s = state(&[3700]);
        let policy = Policy::default();
        assert_eq!(
            place(&s, batch(3700 + 3600, "ASIAEXAMPLE", Some(0)), &policy),
            Placement::New {
                session_failed_at: Some(T0 + 3700)
            },
            "the same session failing again keeps its first failure"
        );
        assert_eq!(
            place(&s, batch(3700 + 3600, "ASIAOTHERKEY", Some(100)), &policy),
            Placement::New {
                session_failed_at: None
            },
            "another session"
        );
        assert_eq!(
            place(&s, batch(3700 + 3599, "ASIAEXAMPLE", Some(0)), &policy),
            Placement::Same
        );
    }

    #[test]
    fn a_session_issued_after_the_last_failure_starts_a_new_incident() {
        let s = state(&[3700, 3800]);
        let policy = Policy::default();
        assert_eq!(
            place(&s, batch(7500, "ASIANEWER", Some(3900)), &policy),
            Placement::New {
                session_failed_at: None
            }
        );
        assert_eq!(
            place(&s, batch(3900, "ASIANEWER", Some(3750)), &policy),
            Placement::Same,
            "a session issued while the incident was failing is part of it"
        );
        assert_eq!(
            place(&s, batch(3900, "ASIANEWER", None), &policy),
            Placement::Same,
            "a session of unknown age is never taken for a newer one"
        );
    }

    #[test]
    fn a_straggler_of_the_old_session_reopens_an_incident_a_renewal_ended() {
        let mut resolved = state(&[3605]);
        resolved.incident.resolved_at = Some(T0 + 3640);
        let policy = Policy::default();
        assert_eq!(
            place(&resolved, batch(3600 + 218, "ASIAEXAMPLE", Some(0)), &policy),
            Placement::Reopen
        );
        assert_eq!(
            place(&resolved, batch(3605 + 3600, "ASIAEXAMPLE", Some(0)), &policy),
            Placement::New {
                session_failed_at: Some(T0 + 3605)
            },
            "after the cool-down it is a new incident"
        );
    }

    #[test]
    fn incidents_end_quiet_for_the_cool_down() {
        let s = state(&[3700]);
        let policy = Policy::default();
        assert!(!resolved_by_quiet(&s, &policy, T0 + 3700 + 3599));
        assert!(resolved_by_quiet(&s, &policy, T0 + 3700 + 3600));
    }

    #[test]
    fn a_renewal_ends_the_incident_once_settled_unless_the_old_session_fails_on() {
        let mut s = state(&[3605, 3630]);
        s.issued_times.insert(T0 + 3640);
        assert_eq!(
            renewal_settled(&s, Some(T0), T0 + 3640 + DELIVERY_ALLOWANCE - 1),
            None,
            "a straggler delivered late may still come"
        );
        assert_eq!(
            renewal_settled(&s, Some(T0), T0 + 3640 + DELIVERY_ALLOWANCE),
            Some(T0 + 3640)
        );
        let mut straggler = state(&[3605, 3640 + EDGE + 1]);
        straggler.issued_times.insert(T0 + 3640);
        assert_eq!(
            renewal_settled(&straggler, Some(T0), T0 + 99_999),
            None,
            "the old session failed after the renewal: it did not fix this workload"
        );
        assert_eq!(
            renewal_settled(&state(&[3605]), Some(T0), T0 + 99_999),
            None,
            "no newer session"
        );
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
    fn a_role_named_dash_and_a_missing_principal_are_two_groups() {
        let named = |p: Option<&str>| GroupKey {
            account: Some("123456789012".into()),
            principal: p.map(str::to_owned),
            session: Some("job".into()),
        };
        assert_ne!(group_id(&named(Some("-"))), group_id(&named(None)));
        assert_eq!(
            group_id(&named(None)),
            "123456789012|-|job",
            "as earlier versions wrote it"
        );
        assert_eq!(group_id(&named(Some("-"))), "123456789012|\\-|job");
        // Neither marker can be spelled by a part's text: escaping doubles the backslash.
        assert_ne!(group_id(&named(Some("\\-"))), group_id(&named(Some("-"))));
        assert_ne!(group_id(&named(Some(""))), group_id(&named(None)));
    }

    #[test]
    fn long_iam_user_paths_with_the_same_first_256_bytes_are_two_groups() {
        let path = "/engineering/".repeat(25);
        let user = |name: &str| GroupKey {
            account: Some("123456789012".into()),
            principal: Some(format!("arn:aws:iam::123456789012:user{path}{name}")),
            session: None,
        };
        let (a, b) = (group_id(&user("alice")), group_id(&user("bob")));
        assert_ne!(a, b);
        assert!(a.contains("\\#") && a.len() < 256 + 2 + 32 + 20, "{a}");
        assert_eq!(a, group_id(&user("alice")), "stable");
        // A part of exactly 256 bytes is kept whole, as before.
        let exact = GroupKey {
            principal: Some("r".repeat(MAX_PART)),
            ..GroupKey::default()
        };
        assert_eq!(group_id(&exact), format!("-|{}|-", "r".repeat(MAX_PART)));
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
