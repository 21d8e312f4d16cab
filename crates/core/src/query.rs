//! Reports from the state table: which groups a query selects, what each group's incidents say (time to
//! recover, recurrence, the next expected failure), and the [`Report`] the CLI and the reporter Lambda
//! both print. The groups come from a [`StateStore`]; `now` comes in as an argument.

use serde::Deserialize;

use crate::finding::{
    Finding, IncidentBrief, IncidentState, IncidentSummary, Recurrence, Report, judge_stored, order,
};
use crate::incident::{GroupState, wildcard};
use crate::model::{Severity, Verdict};
use crate::nearmiss::NearMisses;
use crate::ports::{NearMissStore, PortError, StateStore};
use crate::time::Epoch;

/// What a report asks for. The reporter Lambda takes it as its direct-invocation payload (JSON, every
/// field optional, unknown fields rejected so that a typo does not silently widen a query).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// Groups whose last failure is at or after this time, plus every open incident (default: a day
    /// back).
    #[serde(default)]
    pub since: Option<Since>,
    /// The principal: its ARN or role name, `*` matching any run of characters.
    #[serde(default)]
    pub principal: Option<String>,
    /// Only this verdict.
    #[serde(default)]
    pub verdict: Option<Verdict>,
    /// Only groups at or above this severity.
    #[serde(default)]
    pub min_severity: Option<Severity>,
}

/// Where a report's window starts: a time, or a span back from when the report is made (a scheduled
/// digest's query is written once and asked every day).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// This time.
    At(Epoch),
    /// This many seconds before now.
    Ago(Epoch),
}

/// In JSON: epoch seconds, or a string: a span (`24h`, `7d`), a date or an ISO-8601 time.
impl<'de> Deserialize<'de> for Since {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Epoch(Epoch),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Epoch(t) => Ok(Since::At(t)),
            Raw::Text(text) => crate::time::parse_instant(&text)
                .map(Since::At)
                .or_else(|| crate::time::parse_span(&text).map(Since::Ago))
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "since '{text}': expected a span (24h, 7d), a date or an ISO-8601 time"
                    ))
                }),
        }
    }
}

/// Without `since`, a report covers the last day.
pub const DEFAULT_SPAN: Epoch = 86_400;

impl Query {
    /// The absolute start of the window at `now`.
    pub fn since_at(&self, now: Epoch) -> Epoch {
        match self.since {
            None => now - DEFAULT_SPAN,
            Some(Since::Ago(span)) => now - span,
            Some(Since::At(t)) => t,
        }
    }

    /// Does the report keep this finding?
    pub fn matches(&self, finding: &Finding) -> bool {
        self.verdict.is_none_or(|v| finding.verdict() == v)
            && self.min_severity.is_none_or(|s| finding.severity() >= s)
            && self.principal.as_deref().is_none_or(|pattern| {
                let arn = finding.principal.as_deref().unwrap_or("");
                let name = arn.rsplit(['/', ':']).next().unwrap_or(arn);
                wildcard(pattern, arn) || wildcard(pattern, name)
            })
    }
}

/// How a group's incidents recur (docs/rules.md, "Recurrence"): at a steady interval, or daily on
/// weekdays only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rhythm {
    /// The interval between beats (for a weekday job, between consecutive weekdays' starts).
    pub every: Epoch,
    /// No beat falls on a Saturday or Sunday (UTC): the beat after a Friday's is on Monday.
    pub weekdays_only: bool,
}

impl Rhythm {
    /// The beat after `t`: a weekday job's skips Saturday and Sunday.
    fn after(self, t: Epoch) -> Epoch {
        let mut next = t + self.every;
        while self.weekdays_only && is_weekend(next) {
            next += DAY;
        }
        next
    }

    /// When the next incident is expected to begin: the first beat after `now` of the rhythm through
    /// `last_start`. `None` once two beats were missed (the job was fixed or stopped).
    pub fn next_after(self, last_start: Epoch, now: Epoch) -> Option<Epoch> {
        if self.every <= 0 {
            return None;
        }
        let first = self.after(last_start);
        if first > now {
            return Some(first);
        }
        let second = self.after(first);
        (second > now).then_some(second)
    }
}

/// How the incidents that began at `starts` recur: three or more starts (those closer together than five
/// minutes counted once), and either every gap within 10 % (at least five minutes) of the median gap, the
/// median at least ten minutes (a steady interval: the mean gap); or, failing that, a weekday job: every
/// start on a weekday (UTC), each gap within 10 % of a day of one day, or of three days after a Friday's
/// start, and at least one such weekend gap (the interval: the mean gap with the weekends taken out).
pub fn rhythm(starts: &[Epoch]) -> Option<Rhythm> {
    let sorted = incidents(starts);
    if sorted.len() < 3 {
        return None;
    }
    let beats = sorted.len() as Epoch - 1;
    let span = sorted[sorted.len() - 1] - sorted[0];
    let mut gaps: Vec<Epoch> = sorted.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    let slack = (median / 10).max(SAME_INCIDENT);
    if median >= 600 && gaps.iter().all(|g| (g - median).abs() <= slack) {
        // The mean gap: a late start and an early one cancel out instead of shifting the beat.
        return Some(Rhythm {
            every: span / beats,
            weekdays_only: false,
        });
    }
    if sorted.iter().any(|&t| is_weekend(t)) {
        return None;
    }
    let mut weekends = 0;
    for w in sorted.windows(2) {
        let days = if day_of_week(w[0]) == FRIDAY {
            weekends += 1;
            3
        } else {
            1
        };
        if (w[1] - w[0] - days * DAY).abs() > DAY / 10 {
            return None;
        }
    }
    (weekends > 0).then(|| Rhythm {
        every: (span - weekends * 2 * DAY) / beats,
        weekdays_only: true,
    })
}

/// The interval a group's incidents recur at, when they do (see [`rhythm`]).
pub fn recurrence(starts: &[Epoch]) -> Option<Epoch> {
    rhythm(starts).map(|r| r.every)
}

const DAY: Epoch = 86_400;
const FRIDAY: Epoch = 4;

/// The day of the week of `t` in UTC, Monday 0 to Sunday 6 (1970-01-01 was a Thursday).
fn day_of_week(t: Epoch) -> Epoch {
    (t.div_euclid(DAY) + 3).rem_euclid(7)
}

fn is_weekend(t: Epoch) -> bool {
    day_of_week(t) >= 5
}

/// Starts closer together than this are one incident.
const SAME_INCIDENT: Epoch = 300;

/// Incident starts in order, those closer together than [`SAME_INCIDENT`] counted once.
fn incidents(starts: &[Epoch]) -> Vec<Epoch> {
    let mut sorted = starts.to_vec();
    sorted.sort_unstable();
    sorted.dedup_by(|later, earlier| *later - *earlier < SAME_INCIDENT);
    sorted
}

/// When the next incident of a group recurring every `every` seconds is expected to begin: the first
/// beat after `now` of the rhythm through the last start. `None` once two beats were missed (the job was
/// fixed or stopped).
pub fn next_expected(last_start: Epoch, every: Epoch, now: Epoch) -> Option<Epoch> {
    Rhythm {
        every,
        weekdays_only: false,
    }
    .next_after(last_start, now)
}

/// A group's incident, as the state table knows it, at `now`.
pub fn summarize(state: &GroupState, now: Epoch) -> Option<IncidentSummary> {
    let id = state.incident.id.clone()?;
    let opened = id.opened_at.min(state.stats.first);
    let resolved = state.incident.resolved_at;
    let mut starts: Vec<Epoch> = state.history.iter().copied().collect();
    starts.push(opened);
    let rhythm = rhythm(&starts);
    let last_start = starts.iter().copied().max().unwrap_or(opened);
    Some(IncidentSummary {
        id,
        state: if resolved.is_some() {
            IncidentState::Resolved
        } else {
            IncidentState::Open
        },
        opened_at: opened,
        resolved_at: resolved,
        time_to_recover_seconds: resolved.map(|r| r - opened),
        paged: state.incident.paged,
        incidents_seen: incidents(&starts).len(),
        recurs_every_seconds: rhythm.map(|r| r.every),
        next_expected_failure: rhythm.and_then(|r| r.next_after(last_start, now)),
    })
}

/// The report of the state table at `now`: the groups with an open incident or a failure since the
/// query's start, decided as the detector decides them (with the failing session's issuing call when
/// the table still has it), filtered, most severe first. Synthetic drills' groups are left out; a real
/// drill's failures are real failures of the drill role and stay.
pub async fn state_report<S: StateStore>(store: &S, query: &Query, now: Epoch) -> Result<Report, PortError> {
    let since = query.since_at(now);
    let mut findings = Vec::new();
    for state in store.groups(since).await? {
        // A synthetic drill proved the pipe when it paged; in a report it would read as an incident.
        if state.stats.failures == 0 || crate::drill::is_synthetic(&state.key) {
            continue;
        }
        let mut finding = judge_stored(store, &state).await?;
        finding.incident = summarize(&state, now).map(Box::new);
        let current = IncidentBrief::of(&finding);
        let mut history: Vec<IncidentBrief> = incidents(&state.history.iter().copied().collect::<Vec<_>>())
            .into_iter()
            .filter(|&t| (t - current.first_failure).abs() >= SAME_INCIDENT)
            .map(IncidentBrief::started_at)
            .collect();
        history.push(current);
        history.sort_by_key(|i| i.first_failure);
        finding.history = history;
        finding.recurrence = finding.incident.as_ref().and_then(|i| {
            i.recurs_every_seconds.map(|every| {
                Box::new(Recurrence {
                    every_seconds: every,
                    next_expected_failure: i.next_expected_failure,
                })
            })
        });
        if query.matches(&finding) {
            findings.push(finding);
        }
    }
    order(&mut findings);
    let workloads = crate::workload::workloads(&mut findings);
    Ok(Report {
        near_misses: Default::default(),
        records: 0,
        failures: findings.iter().map(|f| f.failures).sum(),
        skipped_records: 0,
        findings,
        workloads,
    })
}

/// The state table's report with its near misses (those the scheduled trail scan stored, last used since
/// the query's start): [`state_report`]'s groups, then the near misses the query's filters let through (a
/// near miss is `near-miss`, `low`).
pub async fn report_with_near_misses<S: StateStore + NearMissStore>(
    store: &S,
    query: &Query,
    now: Epoch,
) -> Result<Report, PortError> {
    // Boxed: the report's future is deep enough to pass a Lambda handler's type-layout recursion limit.
    let mut report = Box::pin(state_report(store, query, now)).await?;
    if query.verdict.is_some_and(|v| v != Verdict::NearMiss)
        || query.min_severity.is_some_and(|s| s > Severity::Low)
    {
        return Ok(report);
    }
    let sessions = store
        .near_misses(query.since_at(now))
        .await?
        .into_iter()
        .filter(|s| {
            query.principal.as_deref().is_none_or(|pattern| {
                let arn = s.principal.as_deref().unwrap_or("");
                let name = arn.rsplit(['/', ':']).next().unwrap_or(arn);
                wildcard(pattern, arn) || wildcard(pattern, name)
            })
        })
        .collect();
    report.near_misses = NearMisses::from_sessions(sessions);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::example_finding as test_group;

    #[test]
    fn a_daily_job_recurs_and_its_next_failure_is_the_next_beat() {
        let t0 = 1_793_000_000;
        let starts = [t0, t0 + DAY + 120, t0 + 2 * DAY - 60, t0 + 3 * DAY];
        assert_eq!(recurrence(&starts), Some(DAY));
        assert_eq!(
            next_expected(t0 + 3 * DAY, DAY, t0 + 3 * DAY + 3600),
            Some(t0 + 4 * DAY)
        );
        // A beat already missed: the one after it.
        assert_eq!(
            next_expected(t0 + 3 * DAY, DAY, t0 + 4 * DAY + 60),
            Some(t0 + 5 * DAY)
        );
        // Two missed: the job was fixed or stopped.
        assert_eq!(next_expected(t0 + 3 * DAY, DAY, t0 + 5 * DAY + 60), None);
    }

    #[test]
    fn irregular_or_too_few_incidents_do_not_recur() {
        let t0 = 1_793_000_000;
        assert_eq!(recurrence(&[t0, t0 + DAY]), None);
        assert_eq!(recurrence(&[t0, t0 + DAY, t0 + 3 * DAY]), None);
        assert_eq!(recurrence(&[t0, t0 + 60, t0 + 120]), None);
        // Two near-simultaneous starts of one incident count once.
        assert_eq!(recurrence(&[t0, t0 + 30, t0 + DAY]), None);
        assert_eq!(recurrence(&[t0, t0 + 30, t0 + DAY, t0 + 2 * DAY]), Some(DAY));
    }

    /// 2026-11-02 was a Monday; a job starting at 09:00 UTC.
    const MONDAY_9: Epoch = 1_793_610_000;

    #[test]
    fn a_weekday_job_recurs_daily_and_its_next_failure_skips_the_weekend() {
        assert_eq!(day_of_week(MONDAY_9), 0);
        // Monday to Friday, then Monday and Tuesday: gaps of 1, 1, 1, 1, 3, 1 days, a few minutes off.
        let days = [0, 1, 2, 3, 4, 7, 8];
        let jitter = [0, 120, -60, 300, 30, -240, 90];
        let starts: Vec<Epoch> = days
            .iter()
            .zip(jitter)
            .map(|(d, j)| MONDAY_9 + d * DAY + j)
            .collect();
        let r = rhythm(&starts).unwrap();
        assert!(r.weekdays_only);
        assert_eq!(r.every, (starts[6] - starts[0] - 2 * DAY) / 6);
        assert_eq!(recurrence(&starts), Some(r.every));
        // Seen the Tuesday evening: Wednesday's beat.
        let wednesday = r.next_after(starts[6], starts[6] + 8 * 3600).unwrap();
        assert_eq!(day_of_week(wednesday), 2);
        // Monday to Friday only: no weekend crossed yet, so not a weekday job (and not a plain one).
        assert_eq!(
            rhythm(&starts[..5]),
            Some(Rhythm {
                every: (starts[4] - starts[0]) / 4,
                weekdays_only: false
            })
        );
        // Ending on a Friday: the next failure is on Monday, not Saturday.
        let thu_fri_mon_tue_wed_thu_fri = [3, 4, 7, 8, 9, 10, 11].map(|d| MONDAY_9 + d * DAY);
        let r = rhythm(&thu_fri_mon_tue_wed_thu_fri).unwrap();
        assert_eq!(
            r,
            Rhythm {
                every: DAY,
                weekdays_only: true
            }
        );
        let last = MONDAY_9 + 11 * DAY;
        assert_eq!(
            r.next_after(last, last),
            Some(MONDAY_9 + 14 * DAY),
            "Friday's next is Monday"
        );
        assert_eq!(r.next_after(last, MONDAY_9 + 13 * DAY), Some(MONDAY_9 + 14 * DAY));
        // Monday's beat missed: Tuesday's; Tuesday's missed too: fixed or stopped.
        assert_eq!(
            r.next_after(last, MONDAY_9 + 14 * DAY + 60),
            Some(MONDAY_9 + 15 * DAY)
        );
        assert_eq!(r.next_after(last, MONDAY_9 + 15 * DAY + 60), None);
    }

    #[test]
    fn a_job_that_also_runs_at_weekends_or_misses_a_weekday_is_not_a_weekday_job() {
        let at = |days: &[Epoch]| days.iter().map(|d| MONDAY_9 + d * DAY).collect::<Vec<_>>();
        // A Saturday run among weekdays.
        assert_eq!(rhythm(&at(&[3, 4, 5, 7, 8])), None);
        // A weekday skipped (Wednesday): a two-day gap that is no weekend.
        assert_eq!(rhythm(&at(&[0, 1, 3, 4, 7])), None);
        // A three-day gap from a Tuesday is no weekend either.
        assert_eq!(rhythm(&at(&[0, 1, 4, 7, 8])), None);
        // Off by more than a tenth of a day across the weekend.
        let mut late = at(&[3, 4, 7, 8]);
        late[2] += DAY / 10 + 60;
        assert_eq!(rhythm(&late), None);
        // Every day including weekends is the plain daily rhythm.
        assert_eq!(
            rhythm(&at(&[3, 4, 5, 6, 7])),
            Some(Rhythm {
                every: DAY,
                weekdays_only: false
            })
        );
        // Weekly on Fridays is a plain rhythm too, never a weekday one.
        assert_eq!(
            rhythm(&at(&[4, 11, 18])),
            Some(Rhythm {
                every: 7 * DAY,
                weekdays_only: false
            })
        );
    }

    #[test]
    fn queries_filter_on_verdict_severity_and_principal_pattern() {
        let g = test_group();
        assert!(Query::default().matches(&g));
        let q = |json: &str| serde_json::from_str::<Query>(json).unwrap();
        assert!(q(r#"{"verdict":"stale-cache"}"#).matches(&g));
        assert!(!q(r#"{"verdict":"clock-skew"}"#).matches(&g));
        assert!(q(r#"{"min_severity":"high"}"#).matches(&g));
        assert!(!q(r#"{"min_severity":"critical"}"#).matches(&g));
        assert!(q(r#"{"principal":"etl-pipeline-role"}"#).matches(&g));
        assert!(q(r#"{"principal":"arn:aws:iam::123456789012:role/etl-*"}"#).matches(&g));
        assert!(q(r#"{"principal":"*pipeline*"}"#).matches(&g));
        assert!(!q(r#"{"principal":"etl"}"#).matches(&g));
    }

    #[test]
    fn since_takes_spans_times_and_epochs_and_rejects_the_rest() {
        let q = |json: &str| serde_json::from_str::<Query>(json);
        let now = 1_800_000_000;
        assert_eq!(q(r#"{"since":"24h"}"#).unwrap().since_at(now), now - DAY);
        assert_eq!(q(r#"{"since":"7d"}"#).unwrap().since_at(now), now - 7 * DAY);
        assert_eq!(q(r#"{"since":1700000000}"#).unwrap().since_at(now), 1_700_000_000);
        assert_eq!(
            q(r#"{"since":"2026-11-02T08:00:00Z"}"#).unwrap().since_at(now),
            crate::time::parse_time("2026-11-02T08:00:00Z").unwrap()
        );
        assert_eq!(q("{}").unwrap().since_at(now), now - DEFAULT_SPAN);
        let err = q(r#"{"since":"yesterday-ish"}"#).unwrap_err().to_string();
        assert!(err.contains("yesterday-ish"), "{err}");
        assert!(q(r#"{"sinse":"24h"}"#).is_err());
        assert!(q(r#"{"verdict":"stale"}"#).is_err());
    }

    mod near_misses_from_the_table {
        use super::*;
        use crate::assess::Lease;
        use crate::memory::MemoryStore;
        use crate::model::{Client, CredentialSource, LeaseSource};
        use crate::nearmiss::{Occurrence, SessionNearMiss, near_miss};

        fn session(key: &str, role: &str, last_use: Epoch) -> SessionNearMiss {
            let issued_at = last_use - 57 * 60;
            let lease_end = issued_at + 3600;
            SessionNearMiss {
                account: Some("123456789012".into()),
                principal: Some(format!("arn:aws:iam::123456789012:role/{role}")),
                session: Some("nightly".into()),
                client: Client::Boto3,
                credential_source: CredentialSource::AssumeRole,
                lease: Lease {
                    seconds: 3600,
                    source: LeaseSource::DefaultAssumeRole,
                },
                occurrence: Occurrence {
                    access_key_id: key.into(),
                    issued_at,
                    last_use,
                    lease_end,
                    near_miss: near_miss(last_use, Client::Boto3, lease_end).unwrap(),
                },
            }
        }

        const NOW: Epoch = 1_793_000_000;

        async fn store() -> MemoryStore {
            let store = MemoryStore::default();
            let recorded = store
                .record_near_misses(
                    &[
                        session("ASIAETL1", "etl", NOW - 3600),
                        session("ASIAWEB1", "web", NOW - 2 * 86_400),
                    ],
                    NOW,
                )
                .await
                .unwrap();
            assert_eq!(recorded.new, [0, 1]);
            store
        }

        #[tokio::test]
        async fn the_reports_near_misses_are_those_of_its_window_and_filters() {
            let store = store().await;
            let r = report_with_near_misses(&store, &Query::default(), NOW)
                .await
                .unwrap();
            let roles: Vec<_> = r
                .near_misses
                .groups
                .iter()
                .map(|g| g.key.principal.clone())
                .collect();
            assert_eq!(roles, [Some("etl".to_owned())], "the day's only");
            let week = Query {
                since: Some(Since::Ago(7 * 86_400)),
                ..Query::default()
            };
            assert_eq!(
                report_with_near_misses(&store, &week, NOW)
                    .await
                    .unwrap()
                    .near_misses
                    .groups
                    .len(),
                2
            );
            for query in [
                Query {
                    verdict: Some(Verdict::StaleCache),
                    ..Query::default()
                },
                Query {
                    min_severity: Some(Severity::Medium),
                    ..Query::default()
                },
                Query {
                    principal: Some("web".into()),
                    ..Query::default()
                },
            ] {
                let r = report_with_near_misses(&store, &query, NOW).await.unwrap();
                assert!(r.near_misses.is_empty(), "{query:?}");
            }
            let etl = Query {
                principal: Some("etl*".into()),
                verdict: Some(Verdict::NearMiss),
                min_severity: Some(Severity::Low),
                ..Query::default()
            };
            assert_eq!(
                report_with_near_misses(&store, &etl, NOW)
                    .await
                    .unwrap()
                    .near_misses
                    .groups
                    .len(),
                1
            );
        }

        #[tokio::test]
        async fn recording_the_same_near_miss_again_writes_nothing_and_a_later_use_replaces_it() {
            let store = store().await;
            let again = store
                .record_near_misses(&[session("ASIAETL1", "etl", NOW - 3600)], NOW)
                .await
                .unwrap();
            assert_eq!((again.new.len(), again.later, again.unchanged), (0, 0, 1));
            let later = store
                .record_near_misses(&[session("ASIAETL1", "etl", NOW - 3000)], NOW)
                .await
                .unwrap();
            assert_eq!((later.new.len(), later.later, later.unchanged), (0, 1, 0));
            let all = store.near_misses(0).await.unwrap();
            assert_eq!(all.len(), 2);
        }
    }
}
