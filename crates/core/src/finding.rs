//! The judged group: [`Finding`], made by [`judge`] and nothing else.
//!
//! Offline analysis, the detector and the state-table report each gather a group's evidence their own way
//! (records in memory, a DynamoDB item), then hand it to [`judge`]: the one place that joins a group to the
//! session it is judged on, decides with [`crate::assess`], and writes the fix. Decisions
//! ([`crate::incident::decide`], [`crate::query::Query::matches`]) and every renderer take the
//! [`Finding`]; nothing parses a rendered value back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::assess::{Assessment, Facts, assess};
use crate::classify::Issuance;
use crate::incident::{GroupState, IncidentId};
use crate::model::{Client, CredentialSource, Severity, StsCall, Verdict};
use crate::ports::{PortError, StateStore};
use crate::remediation::{Remediation, remediation};
use crate::stats::{FailureStats, GroupKey};
use crate::time::Epoch;

/// One account + principal + session and what its failures say. Unknowns are `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// What the group is keyed by (the principal reduced to the role name).
    pub key: GroupKey,
    /// The fullest spelling of the principal seen (a role ARN keeps its path). The account and the session
    /// name are the key's: [`Finding::account`], [`Finding::session`].
    pub principal: Option<String>,
    /// Its workload's session pattern (set when a report gathers workloads; shared by its findings).
    pub workload: Option<Arc<str>>,
    /// Access keys of the failing calls (at most [`crate::stats::MAX_LISTED`]).
    pub access_key_ids: Vec<String>,
    /// Failures counted, each eventID once.
    pub failures: u64,
    /// The earliest failure.
    pub first_failure: Epoch,
    /// The latest failure.
    pub last_failure: Epoch,
    /// Verdict, credential source, issue time, lease, age and severities.
    pub assessment: Assessment,
    /// The client that failed most.
    pub client: Option<Client>,
    /// Failures per error code (shared between findings with the same counts: most groups of a large
    /// run have the same few).
    pub error_codes: Arc<BTreeMap<String, u64>>,
    /// Failures per `service:EventName` (shared as `error_codes`).
    pub event_names: Arc<BTreeMap<String, u64>>,
    /// Source addresses (at most [`crate::stats::MAX_LISTED`]).
    pub source_ips: Vec<String>,
    /// The session names failed `AssumeRoleWith*` calls asked for (at most
    /// [`crate::stats::MAX_LISTED`]); their group's session is [`crate::classify::ANY_SESSION`].
    pub requested_sessions: Vec<String>,
    /// The fix for the client and credential source found.
    pub remediation: Remediation,
    /// The incident the state table holds for the group; `None` offline (boxed: a finding is held per
    /// group, and offline none has one).
    pub incident: Option<Box<IncidentSummary>>,
    /// Every incident of the group the source knows, oldest first; the finding describes the latest.
    /// Empty when the finding's own incident is the only one (no allocation for the usual group): read it
    /// through [`Finding::incidents`].
    pub history: Vec<IncidentBrief>,
    /// The interval the incidents recur at, when they do (boxed: most groups do not recur).
    pub recurrence: Option<Box<Recurrence>>,
    /// Which records the verdict rests on.
    pub provenance: Provenance,
}

/// One incident of a group, in short: what `incident_list` shows. What the source no longer holds (the
/// state table keeps only the start of a past incident) is `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentBrief {
    /// Its first failure.
    pub first_failure: Epoch,
    /// Its last failure.
    pub last_failure: Option<Epoch>,
    /// Failures in it.
    pub failures: Option<u64>,
    /// When its session was issued.
    pub issued_at: Option<Epoch>,
    /// Its first failure's age.
    pub age_at_first_failure: Option<i64>,
    /// What it was.
    pub verdict: Option<Verdict>,
    /// The severity it pages at.
    pub paging_severity: Option<Severity>,
}

impl IncidentBrief {
    /// The brief of an incident judged as `f`.
    pub fn of(f: &Finding) -> IncidentBrief {
        IncidentBrief {
            first_failure: f.first_failure,
            last_failure: Some(f.last_failure),
            failures: Some(f.failures),
            issued_at: f.assessment.issued_at,
            age_at_first_failure: f.assessment.age_at_first_failure,
            verdict: Some(f.assessment.verdict),
            paging_severity: Some(f.assessment.paging_severity),
        }
    }

    /// An incident known only by its start.
    pub fn started_at(first_failure: Epoch) -> IncidentBrief {
        IncidentBrief {
            first_failure,
            last_failure: None,
            failures: None,
            issued_at: None,
            age_at_first_failure: None,
            verdict: None,
            paging_severity: None,
        }
    }

    /// Would the detector page this incident at `floor`? (Unknown: no.)
    pub fn pages_at(&self, floor: Severity) -> bool {
        self.verdict.is_some_and(|v| v != Verdict::RefreshRace)
            && self.paging_severity.is_some_and(|s| s >= floor)
    }
}

/// A group whose incidents come at a regular interval (docs/rules.md, "Recurrence").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recurrence {
    /// The interval.
    pub every_seconds: i64,
    /// When the next incident's first failure is expected; `None` once two beats were missed.
    pub next_expected_failure: Option<Epoch>,
}

impl Recurrence {
    /// The recurrence of incidents that began at `starts`, seen at `now`.
    pub fn of(starts: &[Epoch], now: Epoch) -> Option<Recurrence> {
        let rhythm = crate::query::rhythm(starts)?;
        let last = starts.iter().copied().max()?;
        Some(Recurrence {
            every_seconds: rhythm.every,
            next_expected_failure: rhythm.next_after(last, now),
        })
    }
}

/// Which records the verdict rests on: where the issue time came from, and the issuing call joined to the
/// failing session (whose `durationSeconds` or `expiration` gives the lease, per
/// [`crate::assess::Lease::source`]). `tokenwatch explain` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provenance {
    /// Where [`Assessment::issued_at`] came from; `None` when it is unknown.
    pub issued_at_from: Option<IssuedAtFrom>,
    /// The issuing call found by the failing access key, if one was seen (boxed: most findings of a large
    /// run have none, and a finding is held per group).
    pub issuing_call: Option<Box<IssuingCall>>,
}

/// The record an issue time was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssuedAtFrom {
    /// The first failure's `userIdentity.sessionContext.attributes.creationDate`.
    CreationDate,
    /// The `eventTime` of the issuing call ([`Provenance::issuing_call`]).
    IssuingCall,
}

/// The STS call that issued the failing session, as far as the verdict uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuingCall {
    /// Which call.
    pub call: StsCall,
    /// Its `eventTime`.
    pub at: Epoch,
    /// The access key it handed out (the failing one).
    pub access_key_id: String,
    /// Its `requestParameters.durationSeconds`.
    pub duration_seconds: Option<u64>,
    /// Its `responseElements.credentials.expiration`.
    pub expiration: Option<Epoch>,
}

impl Provenance {
    /// What `facts` gave the assessment.
    fn of(creation_date: Option<Epoch>, issuance: Option<&Issuance>, assessment: &Assessment) -> Provenance {
        let issued_at_from = match (assessment.issued_at, creation_date) {
            (None, _) => None,
            (Some(_), Some(_)) => Some(IssuedAtFrom::CreationDate),
            (Some(_), None) => Some(IssuedAtFrom::IssuingCall),
        };
        Provenance {
            issued_at_from,
            issuing_call: issuance.map(|i| {
                Box::new(IssuingCall {
                    call: i.call,
                    at: i.issued_at,
                    access_key_id: i.access_key_id.clone(),
                    duration_seconds: i.duration_seconds,
                    expiration: i.expiration,
                })
            }),
        }
    }
}

impl Finding {
    /// The account.
    pub fn account(&self) -> Option<&str> {
        self.key.account.as_deref()
    }

    /// The session name.
    pub fn session(&self) -> Option<&str> {
        self.key.session.as_deref()
    }

    /// See [`Verdict`].
    pub fn verdict(&self) -> Verdict {
        self.assessment.verdict
    }

    /// The report's severity (raised by volume).
    pub fn severity(&self) -> Severity {
        self.assessment.severity
    }

    /// See [`CredentialSource`].
    pub fn credential_source(&self) -> CredentialSource {
        self.assessment.credential_source
    }

    /// When the failing session was issued.
    pub fn issued_at(&self) -> Option<Epoch> {
        self.assessment.issued_at
    }

    /// The failing session's lease in seconds.
    pub fn lease_seconds(&self) -> Option<u64> {
        self.assessment.lease.map(|l| l.seconds)
    }

    /// Failures of every incident the source knows (the finding's own `failures` are its latest
    /// incident's; a past incident the state table keeps only the start of counts nothing).
    pub fn failures_of_all_incidents(&self) -> u64 {
        if self.history.is_empty() {
            self.failures
        } else {
            self.history.iter().filter_map(|i| i.failures).sum()
        }
    }

    /// Every incident of the group the source knows, oldest first: its history, or its own incident
    /// alone.
    pub fn incidents(&self) -> std::borrow::Cow<'_, [IncidentBrief]> {
        if self.history.is_empty() {
            std::borrow::Cow::Owned(vec![IncidentBrief::of(self)])
        } else {
            std::borrow::Cow::Borrowed(&self.history)
        }
    }
}

/// Whether an incident is still going on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncidentState {
    /// Failing, or not yet quiet for the cool-down.
    Open,
    /// Ended.
    Resolved,
}

impl IncidentState {
    /// `open` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Resolved => "resolved",
        }
    }
}

/// The incident a state-table group is in or last had, and what its history says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentSummary {
    /// The incident.
    pub id: IncidentId,
    /// Open or resolved.
    pub state: IncidentState,
    /// When it began: its first failure.
    pub opened_at: Epoch,
    /// When it ended: a newer session, or the cool-down after its last failure.
    pub resolved_at: Option<Epoch>,
    /// `resolved_at − opened_at`.
    pub time_to_recover_seconds: Option<i64>,
    /// The highest severity it paged at; `None`: it did not page (below the floor, held, suppressed).
    pub paged: Option<Severity>,
    /// Incidents of this group the table remembers, this one included.
    pub incidents_seen: usize,
    /// The interval its incidents recur at, when they recur regularly (three or more).
    pub recurs_every_seconds: Option<i64>,
    /// When the next incident's first failure is expected, for a group that recurs.
    pub next_expected_failure: Option<Epoch>,
}

/// Issued sessions by the access key they handed out: the offline index, or what was read from the
/// state table for one group.
pub trait Sessions {
    /// The session issued with `access_key_id`, if its issuing call was seen.
    fn issued(&self, access_key_id: &str) -> Option<Issuance>;

    /// A session of the group `key` issued within [`CREATION_DATE_JOIN`] of `creation_date`, when the
    /// key join finds nothing (an Identity Center session's issuing call hands out another key).
    fn issued_near(&self, key: &GroupKey, creation_date: Epoch) -> Option<Issuance>;
}

/// How far a session's `creationDate` and its issuing call's `eventTime` may be apart for the two to be
/// joined without an access key (docs/rules.md, "Age and lease").
pub const CREATION_DATE_JOIN: Epoch = 2;

/// No issuing call known.
impl Sessions for () {
    fn issued(&self, _: &str) -> Option<Issuance> {
        None
    }

    fn issued_near(&self, _: &GroupKey, _: Epoch) -> Option<Issuance> {
        None
    }
}

/// Sessions by access key only (no `creationDate` join).
impl Sessions for HashMap<String, Issuance> {
    fn issued(&self, access_key_id: &str) -> Option<Issuance> {
        self.get(access_key_id).cloned()
    }

    fn issued_near(&self, _: &GroupKey, _: Epoch) -> Option<Issuance> {
        None
    }
}

/// The sessions read from a store for one group: by key, and the one joined by `creationDate`.
#[derive(Default)]
struct Known {
    by_key: HashMap<String, Issuance>,
    near: Option<Issuance>,
}

impl Sessions for Known {
    fn issued(&self, access_key_id: &str) -> Option<Issuance> {
        self.by_key.get(access_key_id).cloned()
    }

    fn issued_near(&self, _: &GroupKey, _: Epoch) -> Option<Issuance> {
        self.near.clone()
    }
}

/// What a group is judged on, however it was gathered.
#[derive(Clone, Copy, Debug)]
pub struct Evidence<'a> {
    /// The group.
    pub key: &'a GroupKey,
    /// Its failures (of the current incident, for the detector).
    pub stats: &'a FailureStats,
    /// When sessions of the group were issued.
    pub issued_times: &'a BTreeSet<Epoch>,
}

impl<'a> Evidence<'a> {
    /// The access key of the session the group is judged on: the earliest failure's. The only place that
    /// says which session that is; [`judge`] and [`judge_stored`] both ask it.
    pub fn failing_access_key(&self) -> Option<&'a str> {
        self.stats.first_failure.access_key_id.as_deref()
    }
}

impl GroupState {
    /// This state as evidence for [`judge`].
    pub fn evidence(&self) -> Evidence<'_> {
        Evidence {
            key: &self.key,
            stats: &self.stats,
            issued_times: &self.issued_times,
        }
    }
}

/// Judges a group: joins it to the session of its earliest failure through `sessions`, decides per
/// docs/rules.md, and writes the fix. The analyzer, the detector and the state-table report all come here.
pub fn judge(evidence: Evidence<'_>, sessions: &impl Sessions) -> Finding {
    let stats = evidence.stats;
    let issuance = evidence
        .failing_access_key()
        .and_then(|k| sessions.issued(k))
        .or_else(|| {
            let created = stats.first_failure.creation_date?;
            sessions.issued_near(evidence.key, created)
        });
    let issued_times: Vec<Epoch> = evidence.issued_times.iter().copied().collect();
    let facts = Facts {
        principal: stats.principal.as_deref(),
        session: evidence.key.session.as_deref(),
        failures: stats.failures,
        first_failure: stats.first,
        last_failure: stats.last,
        token_call_failures: stats.token_call_failures,
        token_call: stats.first_failure.token_call,
        request_expired_failures: stats.request_expired_failures,
        creation_date: stats.first_failure.creation_date,
        access_key_id: stats.first_failure.access_key_id.as_deref(),
        hints: stats.first_failure.hints.clone(),
        session_failed_at: stats.first_failure.session_failed_at,
        issuance: issuance.as_ref(),
        issued_times: &issued_times,
    };
    let assessment = assess(&facts);
    let provenance = Provenance::of(stats.first_failure.creation_date, issuance.as_ref(), &assessment);
    let client = stats.client();
    Finding {
        key: evidence.key.clone(),
        principal: stats.principal.clone(),
        workload: None,
        access_key_ids: stats.access_key_ids.iter().cloned().collect(),
        failures: stats.failures,
        first_failure: stats.first,
        last_failure: stats.last,
        remediation: remediation(assessment.verdict, assessment.credential_source, client),
        assessment,
        client,
        error_codes: Arc::new(stats.error_codes.clone()),
        event_names: Arc::new(stats.event_names.clone()),
        source_ips: stats.source_ips.iter().cloned().collect(),
        requested_sessions: stats.requested_sessions.iter().cloned().collect(),
        incident: None,
        history: Vec::new(),
        recurrence: None,
        provenance,
    }
}

/// [`judge`] for a group held by a [`StateStore`]: reads the one session [`Evidence::failing_access_key`]
/// names from the store first.
pub async fn judge_stored<S: StateStore>(store: &S, state: &GroupState) -> Result<Finding, PortError> {
    judge_read(store, state, &HashMap::new()).await
}

/// [`judge_stored`] taking the sessions in `read` ([`crate::ports::Preloaded::sessions`]) as the store's
/// answer for their access keys, and asking the store for any other.
pub async fn judge_read<S: StateStore>(
    store: &S,
    state: &GroupState,
    read: &HashMap<String, Option<Issuance>>,
) -> Result<Finding, PortError> {
    let evidence = state.evidence();
    let mut known = Known::default();
    if let Some(key) = evidence.failing_access_key()
        && let Some(issuance) = read_session(store, read, key).await?
    {
        known.by_key.insert(key.to_owned(), issuance);
    }
    if known.by_key.is_empty()
        && let Some(created) = state.stats.first_failure.creation_date
        && let Some(key) = state
            .issued_keys
            .range(created - CREATION_DATE_JOIN..=created + CREATION_DATE_JOIN)
            .min_by_key(|(t, _)| (**t - created).abs())
            .map(|(_, k)| k.clone())
    {
        known.near = read_session(store, read, &key).await?;
    }
    Ok(judge(evidence, &known))
}

/// The session of `key`: from `read` when it holds the key, from the store otherwise.
pub async fn read_session<S: StateStore>(
    store: &S,
    read: &HashMap<String, Option<Issuance>>,
    key: &str,
) -> Result<Option<Issuance>, PortError> {
    match read.get(key) {
        Some(known) => Ok(known.clone()),
        None => store.session(key).await,
    }
}

/// Report order: most severe first, then most failures, then by account, principal and session.
///
/// Stable, like `sort_by`, but sorting positions and moving the findings into place after: `sort_by`
/// takes a scratch copy of half the slice, and a finding is a few hundred bytes held per group.
pub fn order(findings: &mut [Finding]) {
    let mut places: Vec<usize> = (0..findings.len()).collect();
    places.sort_by(|&a, &b| report_order(&findings[a], &findings[b]));
    // `places[i]` is where the finding that belongs at `i` is now: follow each cycle, marking each
    // position done by pointing it at itself.
    for start in 0..places.len() {
        let mut at = start;
        loop {
            let from = places[at];
            places[at] = at;
            if from == start || from == at {
                break;
            }
            findings.swap(at, from);
            at = from;
        }
    }
}

fn report_order(a: &Finding, b: &Finding) -> std::cmp::Ordering {
    b.severity()
        .cmp(&a.severity())
        .then(b.failures.cmp(&a.failures))
        .then_with(|| (a.account(), &a.principal, a.session()).cmp(&(b.account(), &b.principal, b.session())))
}

/// What a report covers: counts and the findings, most severe first. Shown by `tokenwatch-render`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Records read, duplicates included (0 for a report from the state table, which reads none).
    pub records: u64,
    /// Expiry-family failures, each eventID once.
    pub failures: u64,
    /// Records that could not be used (no time, not JSON), included in `records`.
    pub skipped_records: u64,
    /// The findings, in [`order`].
    pub findings: Vec<Finding>,
    /// Their workloads (see [`crate::workload`]), most severe first.
    pub workloads: Vec<crate::workload::Workload>,
    /// Sessions that came close to failing and did not (docs/rules.md, "Near misses").
    pub near_misses: crate::nearmiss::NearMisses,
}

impl Report {
    /// Its findings carry incidents: it was read from the state table, not from records.
    pub fn from_state_table(&self) -> bool {
        self.findings.iter().any(|f| f.incident.is_some())
    }
}

/// A stale-cache finding like the one of `samples/01-assume-role-default-boto3`, for tests to vary.
#[doc(hidden)]
pub fn example_finding() -> Finding {
    use crate::assess::Lease;
    use crate::model::LeaseSource;
    let first = crate::time::parse_time("2026-11-02T09:00:14Z").unwrap_or_default();
    let key = GroupKey {
        account: Some("123456789012".into()),
        principal: Some("etl-pipeline-role".into()),
        session: Some("nightly-etl".into()),
    };
    Finding {
        principal: Some("arn:aws:iam::123456789012:role/etl-pipeline-role".into()),
        workload: None,
        key,
        access_key_ids: vec!["ASIAETLNIGHT1EXAMPLE".into()],
        failures: 6,
        first_failure: first,
        last_failure: first + 1886,
        assessment: Assessment {
            verdict: Verdict::StaleCache,
            credential_source: CredentialSource::AssumeRole,
            issued_at: Some(first - 3614),
            lease: Some(Lease {
                seconds: 3600,
                source: LeaseSource::Expiration,
            }),
            age_at_first_failure: Some(3614),
            severity: Severity::High,
            paging_severity: Severity::High,
        },
        client: Some(Client::Boto3),
        error_codes: Arc::new(BTreeMap::from([
            ("ExpiredToken".into(), 4),
            ("ExpiredTokenException".into(), 2),
        ])),
        event_names: Arc::new(BTreeMap::from([
            ("s3:PutObject".into(), 3),
            ("glue:GetTable".into(), 3),
        ])),
        source_ips: vec!["203.0.113.24".into()],
        requested_sessions: Vec::new(),
        remediation: remediation(
            Verdict::StaleCache,
            CredentialSource::AssumeRole,
            Some(Client::Boto3),
        ),
        incident: None,
        history: Vec::new(),
        recurrence: None,
        provenance: Provenance {
            issued_at_from: Some(IssuedAtFrom::CreationDate),
            issuing_call: Some(Box::new(IssuingCall {
                call: crate::model::StsCall::AssumeRole,
                at: first - 3614,
                access_key_id: "ASIAETLNIGHT1EXAMPLE".into(),
                duration_seconds: None,
                expiration: Some(first - 14),
            })),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Failure, IdentityHints};

    /// Findings that tie on everything the order compares (severity, failures, account, principal and
    /// session), told apart by their access key: a stable order keeps ties as they came.
    fn tied_findings() -> Vec<Finding> {
        let severities = [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ];
        (0..300u64)
            .map(|i| {
                let mut f = example_finding();
                let mix = i.wrapping_mul(2_654_435_761) % 97;
                f.assessment.severity = severities[(mix % 4) as usize];
                f.failures = mix % 3;
                f.key.account = ["111111111111", "222222222222"]
                    .get((mix % 2) as usize)
                    .map(|a| (*a).to_owned());
                f.key.session = (mix % 5 != 0).then(|| "job".to_owned());
                f.access_key_ids = vec![format!("arrival-{i}")];
                f
            })
            .collect()
    }

    #[test]
    fn report_order_is_the_stable_sort_of_the_report_comparison() {
        let mut expected = tied_findings();
        expected.sort_by(report_order);
        let mut ordered = tied_findings();
        order(&mut ordered);
        let arrival = |fs: &[Finding]| fs.iter().map(|f| f.access_key_ids.clone()).collect::<Vec<_>>();
        assert_eq!(arrival(&ordered), arrival(&expected));
        assert_ne!(
            arrival(&ordered),
            arrival(&tied_findings()),
            "the test's findings are not in order already"
        );
    }

    const T0: Epoch = 1_793_606_400;

    fn failure(creation_date: Option<Epoch>) -> Failure {
        Failure {
            event_id: Some("e1".into()),
            time: T0 + 3614,
            account: Some("123456789012".into()),
            principal: Some("arn:aws:iam::123456789012:role/etl".into()),
            session: Some("job".into()),
            access_key_id: Some("ASIAJOBEXAMPLE".into()),
            creation_date,
            error_code: "ExpiredToken".into(),
            event_name: "s3:GetObject".into(),
            source_ip: None,
            client: Some(Client::Boto3),
            token_call: None,
            requested_session: None,
            hints: IdentityHints::default(),
        }
    }

    fn issuance() -> Issuance {
        Issuance {
            access_key_id: "ASIAJOBEXAMPLE".into(),
            account: Some("123456789012".into()),
            principal: Some("arn:aws:iam::123456789012:role/etl".into()),
            session: Some("job".into()),
            issued_at: T0,
            duration_seconds: Some(3600),
            expiration: None,
            call: StsCall::AssumeRole,
            chained: false,
            for_container: false,
        }
    }

    fn judged(creation_date: Option<Epoch>, sessions: &impl Sessions) -> Finding {
        let mut stats = FailureStats::default();
        stats.add(failure(creation_date));
        let key = GroupKey::default();
        let issued = BTreeSet::new();
        judge(
            Evidence {
                key: &key,
                stats: &stats,
                issued_times: &issued,
            },
            sessions,
        )
    }

    #[test]
    fn provenance_names_the_creation_date_when_the_failure_carries_one() {
        let known = HashMap::from([("ASIAJOBEXAMPLE".to_owned(), issuance())]);
        let f = judged(Some(T0), &known);
        assert_eq!(f.provenance.issued_at_from, Some(IssuedAtFrom::CreationDate));
        let call = f.provenance.issuing_call.expect("joined by access key");
        assert_eq!(
            (call.call, call.at, call.duration_seconds),
            (StsCall::AssumeRole, T0, Some(3600))
        );
    }

    #[test]
    fn provenance_names_the_issuing_call_when_only_it_gave_the_time() {
        let known = HashMap::from([("ASIAJOBEXAMPLE".to_owned(), issuance())]);
        let f = judged(None, &known);
        assert_eq!(f.provenance.issued_at_from, Some(IssuedAtFrom::IssuingCall));
        assert_eq!(f.issued_at(), Some(T0));
    }

    #[test]
    fn provenance_is_empty_when_nothing_gave_the_time() {
        let f = judged(None, &());
        assert_eq!(f.provenance, Provenance::default());
        assert_eq!(f.verdict(), Verdict::Unknown);
    }
}
