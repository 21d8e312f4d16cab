//! `tokenwatch drill --real`: proves, in the account, whether CloudTrail records calls rejected for an
//! expired session token and whether tokenwatch sees them (docs/contract.md, "Proving it in the account").
//!
//! The steps: assume the stack's drill role for 900 s as a `tokenwatch-drill-<random>` session; make each
//! probe's call while the session is valid (the control); wait until it expired, plus a margin; make each
//! call again; then read CloudTrail Event history (by the session's access key, and by its name in case a
//! record lacks the key) and the state table (the session's group) until every failure is accounted for
//! or 20 minutes passed, since Event history lags. Each step is saved in the run's folder before the next
//! one begins, so an interrupted drill resumes where it stopped (`--resume DIR`).
//!
//! Time is a parameter ([`Clock`]): the tests run whole drills on a manual clock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_smithy_async::rt::sleep::{AsyncSleep, SharedAsyncSleep};
use aws_smithy_async::time::SharedTimeSource;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokenwatch_aws::drill::{assume, session_credentials};
use tokenwatch_aws::lookup::{Lookup, LookupEvents};
use tokenwatch_aws::probe::{PROBES, Probe, Prober};
use tokenwatch_core::coverage::{
    Answer, DetectorView, IdentityFields, Outcome, Probed, exit_status, find, outcome,
};
use tokenwatch_core::drill::{DRILL_SESSION_PREFIX, DrillRole};
use tokenwatch_core::finding::judge_stored;
use tokenwatch_core::ports::StateStore;
use tokenwatch_core::stats::group_key;
use tokenwatch_core::time::{Epoch, format_time};

use crate::table;

/// The drill session's lease: the shortest STS allows, so the drill takes a quarter of an hour.
pub(crate) const SESSION_SECONDS: i32 = 900;
/// Waited after the session's expiry before the expired calls: the local clock and AWS's may differ.
pub(crate) const EXPIRY_MARGIN: Epoch = 60;
/// How long Event history is read after the expired calls: it "typically" lags by minutes, and no
/// failure is declared unrecorded before this.
pub(crate) const HISTORY_WAIT: Epoch = 20 * 60;
/// Event history and the state table are read this often meanwhile.
pub(crate) const POLL_EVERY: Epoch = 60;
/// Records this long before the session was issued are looked at too (clock differences).
const LOOKBACK: Epoch = 300;
/// A service still taking the session after its expiry is asked again after this, this many times.
const STILL_VALID_RETRY: Epoch = 30;
const STILL_VALID_TRIES: usize = 10;
/// The file in the run's folder that holds where the drill is.
pub(crate) const SESSION_FILE: &str = "drill-session.json";

/// The clock a drill waits on.
#[derive(Clone, Debug)]
pub(crate) struct Clock {
    pub sleep: SharedAsyncSleep,
    pub time: SharedTimeSource,
}

impl Clock {
    pub(crate) fn now(&self) -> Epoch {
        self.time
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as Epoch)
            .unwrap_or_default()
    }

    async fn sleep(&self, seconds: Epoch) {
        self.sleep.sleep(Duration::from_secs(seconds.max(1) as u64)).await;
    }
}

/// How a drill tells its progress: on a terminal a countdown bar, otherwise a line a minute.
pub(crate) trait Feedback: Send + Sync {
    /// A line for the user.
    fn say(&self, line: &str);
    /// `left` of `total` seconds remain of `what`.
    fn countdown(&self, what: &str, left: Epoch, total: Epoch);
    /// The countdown is over.
    fn done(&self);
    /// How often [`Feedback::countdown`] wants to be called, in seconds.
    fn tick(&self) -> Epoch;
}

/// What a drill talks to.
pub(crate) struct Services<'a, S> {
    /// STS with the operator's credentials (AssumeRole).
    pub sts: aws_sdk_sts::Client,
    /// The probe calls, in the drill's region.
    pub prober: Prober,
    /// Event history of each region the probes are recorded in: the drill's, and the partition's first
    /// region for IAM.
    pub history: Vec<(String, LookupEvents)>,
    /// The stack's state table, if known.
    pub store: Option<&'a S>,
}

/// Where a drill stands: saved in the run's folder after each step (readable only by its owner while it
/// holds the session's secret, which it does until the expired calls were made).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Saved {
    pub schema: u32,
    pub role_arn: String,
    pub session: String,
    pub region: String,
    pub table: Option<String>,
    /// The probes' `--services` names.
    pub services: Vec<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub assumed_at: Option<Epoch>,
    pub expires_at: Option<Epoch>,
    /// Service name → the control call's answer.
    pub controls: BTreeMap<String, Answer>,
    pub probed_at: Option<Epoch>,
    /// Service name → the expired call's answer.
    pub expired: BTreeMap<String, Answer>,
}

impl Saved {
    /// A drill not started yet.
    pub(crate) fn new(role_arn: &str, region: &str, table: Option<String>, probes: &[&Probe]) -> Saved {
        Saved {
            schema: 1,
            role_arn: role_arn.to_owned(),
            session: format!("{DRILL_SESSION_PREFIX}{}", random_hex()),
            region: region.to_owned(),
            table,
            services: probes.iter().map(|p| p.key.to_owned()).collect(),
            ..Default::default()
        }
    }

    fn probes(&self) -> Vec<&'static Probe> {
        PROBES
            .iter()
            .filter(|p| self.services.iter().any(|s| s == p.key))
            .collect()
    }

    /// Writes the file `dir/SESSION_FILE`, readable only by its owner.
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(SESSION_FILE);
        let tmp = dir.join(format!("{SESSION_FILE}.tmp"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Reads `dir/SESSION_FILE`.
    pub(crate) fn read(dir: &Path) -> Result<Saved> {
        let path = dir.join(SESSION_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (the folder of a drill started earlier)",
                path.display()
            )
        })?;
        let saved: Saved = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a drill's session", path.display()))?;
        if saved.schema != 1 {
            bail!("{} was written by another version of tokenwatch", path.display());
        }
        Ok(saved)
    }

    /// What was done so far, and how to go on: said when the drill stops before its end.
    pub(crate) fn where_it_stands(&self, dir: &Path, now: Epoch) -> String {
        let resume = format!("tokenwatch drill --real --resume {}", dir.display());
        match (self.expires_at, self.probed_at) {
            (None, _) => format!(
                "Stopped before the drill role was assumed: nothing was done and nothing needs cleaning up. \
                 Run the drill again to start over ({resume} also does)."
            ),
            (Some(expires), None) => format!(
                "Session {} was assumed and its control calls made; it expires by itself at {} (nothing to \
                 clean up). Finish the drill with: {resume}{}",
                self.session,
                format_time(expires),
                if now < expires + EXPIRY_MARGIN {
                    " (it waits until then)"
                } else {
                    ""
                }
            ),
            (Some(_), Some(probed)) => format!(
                "The expired calls were made at {}; CloudTrail Event history is read for {} minutes after \
                 them. See what it recorded with: {resume}",
                format_time(probed),
                HISTORY_WAIT / 60
            ),
        }
    }
}

/// A random 12-digit hex suffix for the session name (std's hasher keys are random per process).
fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{:012x}", bits & 0xffff_ffff_ffff)
}

/// How a drill ended.
pub(crate) enum Ended {
    /// It ran to the end.
    Finished(Box<Report>),
    /// `--no-wait`: the session was assumed and the controls made; it resumes after the expiry.
    Paused,
}

/// Runs the drill from wherever `saved` stands, saving it in `dir` after each step.
pub(crate) async fn drive<S: StateStore>(
    services: &Services<'_, S>,
    saved: &mut Saved,
    dir: &Path,
    no_wait: bool,
    clock: &Clock,
    feedback: &dyn Feedback,
) -> Result<Ended> {
    let role = DrillRole::parse(&saved.role_arn)
        .with_context(|| format!("'{}' is not an IAM role ARN", saved.role_arn))?;
    if saved.expires_at.is_none() {
        start(services, saved, clock, feedback).await?;
        saved.write(dir)?;
        feedback.say(&format!(
            "Saved in {}. If you stop the drill, finish it later with: tokenwatch drill --real --resume {}",
            dir.display(),
            dir.display()
        ));
    }
    if no_wait && saved.probed_at.is_none() {
        return Ok(Ended::Paused);
    }
    if saved.probed_at.is_none() {
        let expires = saved.expires_at.unwrap_or_default();
        wait_until(clock, feedback, expires + EXPIRY_MARGIN, "the session's expiry").await;
        probe_expired(services, saved, clock, feedback).await?;
        saved.write(dir)?;
    }
    let report = observe(services, saved, &role, clock, feedback).await?;
    Ok(Ended::Finished(Box::new(report)))
}

/// Assumes the role and makes the control calls.
async fn start<S>(
    services: &Services<'_, S>,
    saved: &mut Saved,
    clock: &Clock,
    feedback: &dyn Feedback,
) -> Result<()> {
    feedback.say(&format!(
        "Assuming {} for {SESSION_SECONDS} s as session {}.",
        saved.role_arn, saved.session
    ));
    let assumed = assume(&services.sts, &saved.role_arn, &saved.session, SESSION_SECONDS).await?;
    saved.assumed_at = Some(clock.now());
    saved.expires_at = Some(assumed.expires_at);
    saved.access_key_id = Some(assumed.access_key_id.clone());
    saved.secret_access_key = Some(assumed.credentials.secret_access_key().to_owned());
    saved.session_token = assumed.credentials.session_token().map(str::to_owned);
    for probe in saved.probes() {
        let answer = services.prober.probe(probe, &assumed.credentials).await;
        feedback.say(&format!(
            "control: {} {} answered {}",
            probe.service,
            probe.call,
            answer.summary()
        ));
        saved.controls.insert(probe.key.to_owned(), answer);
    }
    Ok(())
}

/// Waits until `until`, counting down.
async fn wait_until(clock: &Clock, feedback: &dyn Feedback, until: Epoch, what: &str) {
    let total = (until - clock.now()).max(1);
    loop {
        let left = until - clock.now();
        if left <= 0 {
            break;
        }
        feedback.countdown(what, left, total);
        clock.sleep(left.min(feedback.tick())).await;
    }
    feedback.done();
}

/// Makes each probe's call with the expired session, then forgets its secret.
async fn probe_expired<S>(
    services: &Services<'_, S>,
    saved: &mut Saved,
    clock: &Clock,
    feedback: &dyn Feedback,
) -> Result<()> {
    let (Some(key), Some(secret), Some(token), Some(expires)) = (
        saved.access_key_id.clone(),
        saved.secret_access_key.clone(),
        saved.session_token.clone(),
        saved.expires_at,
    ) else {
        bail!("the saved session has no credentials left: it was used already");
    };
    let credentials = session_credentials(&key, &secret, &token, expires);
    let probes = saved.probes();
    // The first probe tells whether AWS agrees that the session expired; the others follow at once.
    for attempt in 0..STILL_VALID_TRIES {
        let Some(first) = probes.first() else { break };
        let answer = services.prober.probe(first, &credentials).await;
        let valid = answer.succeeded();
        saved.expired.insert(first.key.to_owned(), answer);
        if !valid || attempt + 1 == STILL_VALID_TRIES {
            break;
        }
        feedback.say(&format!(
            "{} still took the session after its expiry (the clocks differ); asking again in {STILL_VALID_RETRY} s.",
            first.service
        ));
        clock.sleep(STILL_VALID_RETRY).await;
    }
    for probe in probes.iter().skip(1) {
        let answer = services.prober.probe(probe, &credentials).await;
        saved.expired.insert(probe.key.to_owned(), answer);
    }
    saved.probed_at = Some(clock.now());
    for probe in &probes {
        if let Some(a) = saved.expired.get(probe.key) {
            feedback.say(&format!(
                "expired: {} {} answered {}",
                probe.service,
                probe.call,
                a.summary()
            ));
        }
    }
    // The session is no longer needed: its secret leaves the saved file.
    saved.secret_access_key = None;
    saved.session_token = None;
    Ok(())
}

/// What one drill found.
pub(crate) struct Report {
    /// The coverage document (`--format json`, and `coverage.json` with `--save`).
    pub coverage: Coverage,
    /// Every record CloudTrail returned for the session (`records.json` with `--save`).
    pub records: Vec<Value>,
}

/// The coverage document.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Coverage {
    pub schema: u32,
    pub role_arn: String,
    pub session: String,
    pub access_key_id: Option<String>,
    pub region: String,
    pub assumed_at: Option<String>,
    pub expires_at: Option<String>,
    pub probed_at: Option<String>,
    pub observed_until: String,
    /// What the detector made of the session's group; `null` when the state table was not read.
    pub detector: Option<DetectorView>,
    pub services: Vec<Row>,
    pub exit_status: u8,
    pub conclusion: String,
}

/// One service's row.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Row {
    #[serde(flatten)]
    pub probed: Probed,
    pub outcome: Outcome,
}

/// Reads Event history and the state table until every failure is accounted for or [`HISTORY_WAIT`]
/// passed since the expired calls.
async fn observe<S: StateStore>(
    services: &Services<'_, S>,
    saved: &Saved,
    role: &DrillRole,
    clock: &Clock,
    feedback: &dyn Feedback,
) -> Result<Report> {
    let probed_at = saved.probed_at.unwrap_or_else(|| clock.now());
    let deadline = probed_at + HISTORY_WAIT;
    // A failure recorded without its role (a reduced identity) is grouped by account and session alone:
    // it is seen, though not in the drill role's group.
    let keys = [
        group_key(
            &Some(role.account.clone()),
            &Some(saved.role_arn.clone()),
            &Some(saved.session.clone()),
        ),
        group_key(&Some(role.account.clone()), &None, &Some(saved.session.clone())),
    ];
    loop {
        let now = clock.now();
        let records = history(services, saved, now).await?;
        let (detector, seen) = match services.store {
            None => (None, None),
            Some(store) => {
                let mut view: Option<DetectorView> = None;
                let mut seen = BTreeSet::new();
                for key in &keys {
                    let Some(state) = store
                        .load(key)
                        .await
                        .context("reading the drill session's group in the state table")?
                    else {
                        continue;
                    };
                    seen.extend(
                        state
                            .stats
                            .event_names
                            .keys()
                            .filter_map(|n| n.split_once(':').map(|(s, _)| s.to_owned())),
                    );
                    if view.is_none() {
                        let finding = judge_stored(store, &state)
                            .await
                            .context("reading the state table")?;
                        view = Some(DetectorView {
                            verdict: Some(finding.verdict().as_str().to_owned()),
                            lease_seconds: finding.lease_seconds(),
                            paged: state.incident.paged.is_some() && key == &keys[0],
                        });
                    }
                }
                (Some(view.unwrap_or_default()), Some(seen))
            }
        };
        let rows: Vec<Row> = saved
            .probes()
            .iter()
            .map(|p| {
                let prefix = p.event_source.trim_end_matches(".amazonaws.com");
                let probed = Probed {
                    service: p.service.to_owned(),
                    call: p.call.to_owned(),
                    event_source: p.event_source.to_owned(),
                    control: saved.controls.get(p.key).cloned().unwrap_or_default(),
                    expired: saved.expired.get(p.key).cloned().unwrap_or_default(),
                    found: find(&records, p.event_source),
                    seen: seen.as_ref().map(|s| s.contains(prefix)),
                };
                let outcome = outcome(&probed, detector.as_ref());
                Row { probed, outcome }
            })
            .collect();
        let settled = rows.iter().all(|r| {
            matches!(
                r.outcome,
                Outcome::EndToEnd | Outcome::NotMeasured | Outcome::Unchecked
            )
        });
        if settled || now >= deadline {
            feedback.done();
            let outcomes: Vec<Outcome> = rows.iter().map(|r| r.outcome).collect();
            let coverage = Coverage {
                schema: 1,
                role_arn: saved.role_arn.clone(),
                session: saved.session.clone(),
                access_key_id: saved.access_key_id.clone(),
                region: saved.region.clone(),
                assumed_at: saved.assumed_at.map(format_time),
                expires_at: saved.expires_at.map(format_time),
                probed_at: saved.probed_at.map(format_time),
                observed_until: format_time(now),
                detector,
                exit_status: exit_status(&outcomes),
                conclusion: conclusion(&rows),
                services: rows,
            };
            return Ok(Report { coverage, records });
        }
        let recorded = rows.iter().filter(|r| r.probed.found.failure.is_some()).count();
        let seen = rows.iter().filter(|r| r.probed.seen == Some(true)).count();
        feedback.countdown(
            &format!(
                "CloudTrail Event history: {recorded} of {} failures recorded, {seen} seen by the detector",
                rows.len()
            ),
            deadline - now,
            HISTORY_WAIT,
        );
        clock.sleep(POLL_EVERY.min(deadline - now)).await;
    }
}

/// Every record Event history holds of the session: looked up by its access key and by its name (a
/// failure's record might not carry the key), in every region its calls are recorded in, once each.
async fn history<S>(services: &Services<'_, S>, saved: &Saved, now: Epoch) -> Result<Vec<Value>> {
    let start = saved.assumed_at.unwrap_or(now) - LOOKBACK;
    let mut lookups = vec![Lookup::Username(saved.session.clone())];
    if let Some(key) = &saved.access_key_id {
        lookups.insert(0, Lookup::AccessKey(key.clone()));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (region, history) in &services.history {
        for lookup in &lookups {
            let records = history.records(lookup, start, now).await.with_context(|| {
                format!("reading CloudTrail Event history in {region} (cloudtrail:LookupEvents)")
            })?;
            for text in records {
                let Ok(record) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let id = record["eventID"].as_str().unwrap_or_default().to_owned();
                if id.is_empty() || seen.insert(id) {
                    out.push(record);
                }
            }
        }
    }
    Ok(out)
}

/// The one plain sentence (or three) the table ends with.
pub(crate) fn conclusion(rows: &[Row]) -> String {
    let names = |o: Outcome| -> Vec<&str> {
        rows.iter()
            .filter(|r| r.outcome == o)
            .map(|r| r.probed.service.as_str())
            .collect()
    };
    let list = |v: &[&str]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    let sees = names(Outcome::EndToEnd);
    let recorded_unchecked = names(Outcome::Unchecked);
    let gaps = names(Outcome::NotRecorded);
    let missed = names(Outcome::Missed);
    let unmeasured = names(Outcome::NotMeasured);
    let mut out = if recorded_unchecked.is_empty() {
        format!("tokenwatch sees expired-credential failures of: {}", list(&sees))
    } else {
        format!(
            "tokenwatch sees expired-credential failures of: {}; CloudTrail records those of {} too (the \
             detector's state was not read: give --stack or --table)",
            list(&sees),
            list(&recorded_unchecked)
        )
    };
    if gaps.is_empty() {
        out.push('.');
    } else {
        out.push_str(&format!(
            "; it cannot see: {}, because CloudTrail does not record them in this account.",
            list(&gaps)
        ));
    }
    if !missed.is_empty() {
        out.push_str(&format!(
            " tokenwatch MISSED the recorded failures of: {} (see the detector's log group, and please report it).",
            list(&missed)
        ));
    }
    if !unmeasured.is_empty() {
        out.push_str(&format!(
            " Not measured: {} (the control call failed, or the expired call was not rejected as expired: see \
             the answers).",
            list(&unmeasured)
        ));
    }
    out
}

/// How many `userIdentity` fields the table reports on.
const IDENTITY_FIELDS: usize = 6;

/// The coverage table and its conclusion, `width` characters wide.
pub(crate) fn render_table(c: &Coverage, width: usize) -> String {
    let headers = [
        "SERVICE",
        "ANSWERED",
        "RECORDED BY CLOUDTRAIL",
        "SEEN BY THE DETECTOR",
        "VERDICT, LEASE",
        "PAGED AS A DRILL",
    ];
    let verdict = c
        .detector
        .as_ref()
        .and_then(|d| {
            d.verdict.as_ref().map(|v| match d.lease_seconds {
                Some(l) => format!("{v} {l} s"),
                None => v.clone(),
            })
        })
        .unwrap_or_else(|| "-".into());
    let paged = match &c.detector {
        None => "not checked".to_owned(),
        Some(d) if d.paged => "yes".to_owned(),
        Some(_) => "no".to_owned(),
    };
    let rows: Vec<Vec<String>> = c
        .services
        .iter()
        .map(|r| {
            let p = &r.probed;
            let answered = if p.control.succeeded() {
                p.expired.summary()
            } else {
                format!("{} (control: {})", p.expired.summary(), p.control.summary())
            };
            let recorded = match &p.found.failure {
                Some(f) => {
                    let present = f.identity.names();
                    let identity = if present.len() == IDENTITY_FIELDS {
                        "all 6 identity fields".to_owned()
                    } else {
                        let missing: Vec<&str> = IdentityFields {
                            kind: true,
                            arn: true,
                            principal_id: true,
                            access_key_id: true,
                            creation_date: true,
                            session_issuer: true,
                        }
                        .names()
                        .into_iter()
                        .filter(|n| !present.contains(n))
                        .collect();
                        format!("identity without {}", missing.join(", "))
                    };
                    format!(
                        "{} \"{}\"; {identity}",
                        f.error_code.as_deref().unwrap_or("(no errorCode)"),
                        f.error_message.as_deref().unwrap_or("")
                    )
                }
                None if p.found.control => "no (only the control call)".into(),
                None => "no".into(),
            };
            let seen = match p.seen {
                None => "not checked".to_owned(),
                Some(true) => "yes".to_owned(),
                Some(false) => "no".to_owned(),
            };
            let involved = p.found.failure.is_some() || p.seen == Some(true);
            vec![
                p.service.clone(),
                answered,
                recorded,
                seen,
                if involved { verdict.clone() } else { "-".into() },
                if involved { paged.clone() } else { "-".into() },
            ]
        })
        .collect();
    let mut out = table::render(&headers, &rows, width);
    out.push('\n');
    out.push_str(&c.conclusion);
    out.push('\n');
    out
}

/// Writes `records.json` and `coverage.json` into `dir`.
pub(crate) fn save(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let records = dir.join("records.json");
    let coverage = dir.join("coverage.json");
    std::fs::write(&records, serde_json::to_string_pretty(&report.records)? + "\n")
        .with_context(|| format!("writing {}", records.display()))?;
    std::fs::write(&coverage, serde_json::to_string_pretty(&report.coverage)? + "\n")
        .with_context(|| format!("writing {}", coverage.display()))?;
    Ok(vec![records, coverage])
}

/// A countdown bar on a terminal.
struct Bar {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl Feedback for Bar {
    fn say(&self, line: &str) {
        match self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn countdown(&self, what: &str, left: Epoch, total: Epoch) {
        let mut slot = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        let bar = slot.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new(total.max(1) as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:30} {msg}") {
                bar.set_style(style);
            }
            bar
        });
        bar.set_length(total.max(1) as u64);
        bar.set_position((total - left).max(0) as u64);
        bar.set_message(format!("{what}: {} left", clock_text(left)));
    }

    fn done(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }

    fn tick(&self) -> Epoch {
        1
    }
}

/// A line a minute, for logs and pipes.
struct Lines {
    last: std::sync::Mutex<Option<Epoch>>,
}

impl Feedback for Lines {
    fn say(&self, line: &str) {
        eprintln!("{line}");
    }

    fn countdown(&self, what: &str, left: Epoch, _total: Epoch) {
        let minutes = (left + 59) / 60;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if *last != Some(minutes) {
            *last = Some(minutes);
            eprintln!("{what}: {} left", clock_text(left));
        }
    }

    fn done(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn tick(&self) -> Epoch {
        60
    }
}

/// `754` → `12:34`.
fn clock_text(seconds: Epoch) -> String {
    let s = seconds.max(0);
    format!("{}:{:02}", s / 60, s % 60)
}

/// `tokenwatch drill --real`.
pub(crate) fn run(args: crate::DrillArgs) -> Result<std::process::ExitCode> {
    use std::io::IsTerminal;
    use std::process::ExitCode;

    use aws_smithy_async::rt::sleep::TokioSleep;
    use aws_smithy_async::time::SystemTimeSource;
    use tokenwatch_aws::drill::{describe_stack, operator_credentials};
    use tokenwatch_aws::probe::{global_region, select};
    use tokenwatch_aws::{DynamoStore, SdkOptions, sdk_config};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let resumed = args.resume.as_deref().map(Saved::read).transpose()?;
        let options = SdkOptions {
            region: resumed.as_ref().map(|s| s.region.clone()),
            ..Default::default()
        };
        let sdk = sdk_config(&options).await;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .context("no AWS region is configured: set AWS_REGION (the stack's region)")?;
        let prober = Prober::new(&sdk);
        let (mut saved, dir) = match (resumed, &args.resume) {
            (Some(saved), Some(dir)) => (saved, dir.clone()),
            _ => {
                let probes = select(&args.services).map_err(anyhow::Error::msg)?;
                let (role_arn, table) = match (&args.stack, &args.role_arn) {
                    (Some(stack), _) => {
                        let credentials = operator_credentials(&sdk).await?;
                        let s = describe_stack(&prober, &credentials, stack)
                            .await
                            .with_context(|| format!("reading the stack {stack} (cloudformation:DescribeStacks)"))?;
                        let role = s.outputs.get("DrillRoleArn").cloned().with_context(|| {
                            format!("the stack {stack} has no DrillRoleArn output: deploy it with DrillRoleEnabled=true")
                        })?;
                        (role, s.outputs.get("StateTableName").cloned())
                    }
                    (None, Some(role)) => (role.clone(), args.table.clone()),
                    (None, None) => bail!("--real needs --stack NAME (or --role-arn ARN)"),
                };
                let saved = Saved::new(&role_arn, &region, table, &probes);
                let dir = args.save.clone().unwrap_or_else(|| {
                    std::env::temp_dir().join(format!("tokenwatch-drill-{}", &saved.session[DRILL_SESSION_PREFIX.len()..]))
                });
                (saved, dir)
            }
        };
        let store = saved.table.as_ref().map(|t| DynamoStore::new(&sdk, t));
        let mut history = vec![(region.clone(), LookupEvents::new(&sdk))];
        let global = global_region(&region);
        if saved.services.iter().any(|s| s == "iam") && global != region {
            let there = sdk.to_builder().region(aws_config::Region::new(global)).build();
            history.push((global.to_owned(), LookupEvents::new(&there)));
        }
        let services = Services {
            sts: aws_sdk_sts::Client::new(&sdk),
            prober,
            history,
            store: store.as_ref(),
        };
        let clock = Clock {
            sleep: SharedAsyncSleep::new(TokioSleep::new()),
            time: SharedTimeSource::new(SystemTimeSource::new()),
        };
        let feedback: Box<dyn Feedback> = if std::io::stderr().is_terminal() {
            Box::new(Bar {
                bar: std::sync::Mutex::new(None),
            })
        } else {
            Box::new(Lines {
                last: std::sync::Mutex::new(None),
            })
        };
        say_where_it_stands_on_interrupt(&dir)?;
        match drive(&services, &mut saved, &dir, args.no_wait, &clock, feedback.as_ref()).await? {
            Ended::Paused => {
                println!("{}", saved.where_it_stands(&dir, clock.now()));
                Ok(ExitCode::SUCCESS)
            }
            Ended::Finished(report) => {
                let rendered = match args.format {
                    crate::DrillFormat::Json => serde_json::to_string_pretty(&report.coverage)? + "\n",
                    crate::DrillFormat::Table => render_table(&report.coverage, table::width()),
                };
                print!("{rendered}");
                if args.save.is_some() || args.resume.is_some() {
                    for path in save(&report, &dir)? {
                        eprintln!("tokenwatch: wrote {}", path.display());
                    }
                    eprintln!(
                        "tokenwatch: these files hold no secrets. Please share them (README, \"Prove it in your \
                         account\"): no public record shows what CloudTrail writes for an expired token."
                    );
                }
                Ok(ExitCode::from(report.coverage.exit_status))
            }
        }
    })
}

/// On Ctrl-C (or SIGTERM), says what the drill did so far and how to finish it, then exits with 130. The
/// saved session in `dir` tells, since each step is saved before the next begins.
fn say_where_it_stands_on_interrupt(dir: &Path) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let dir = dir.to_owned();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let text = match Saved::read(&dir) {
                Ok(saved) => saved.where_it_stands(&dir, crate::now()),
                Err(_) => "Stopped before the drill's first step was saved: if the role was assumed, its session \
                           expires by itself within 15 minutes; nothing needs cleaning up. Run the drill again."
                    .to_owned(),
            };
            eprintln!("\ntokenwatch: interrupted. {text}");
            std::process::exit(130);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Whole drills on a manual clock: STS AssumeRole (and in one test the state table) on moto; the probe
    //! services' answers replayed at the HTTP layer, as each protocol writes an expired token; CloudTrail
    //! Event history mocked, recording what the scenario says and when; and the real detector, fed each
    //! record as EventBridge would deliver it, writing the state the drill reads.

    use std::collections::BTreeSet;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    use aws_sdk_cloudtrail::operation::lookup_events::LookupEventsOutput;
    use aws_sdk_cloudtrail::types::{Event, LookupAttributeKey};
    use aws_smithy_async::rt::sleep::Sleep;
    use aws_smithy_async::time::TimeSource;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture};
    use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use serde_json::json;
    use tokenwatch_aws::probe::{Protocol, parse_error};
    use tokenwatch_core::drill::DrillPolicy;
    use tokenwatch_core::events::envelope;
    use tokenwatch_core::incident::Policy;
    use tokenwatch_core::memory::{MemoryStore, RecordingSink};
    use tokenwatch_core::pipeline::Detector;
    use tokenwatch_testkit::Emulator;

    use super::*;

    const ACCOUNT: &str = "123456789012";
    const REGION: &str = "eu-west-1";
    const ROLE: &str = "arn:aws:iam::123456789012:role/tokenwatch-drill-eu-west-1";
    const EXPIRED: &str = "The security token included in the request is expired";

    /// Time that moves only when slept through. It starts at the wall clock's now: moto dates the
    /// session's expiry by it.
    #[derive(Clone, Debug)]
    struct ManualClock(Arc<Mutex<SystemTime>>);

    impl AsyncSleep for ManualClock {
        fn sleep(&self, d: Duration) -> Sleep {
            *self.0.lock().unwrap() += d;
            Sleep::new(std::future::ready(()))
        }
    }

    impl TimeSource for ManualClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    impl ManualClock {
        fn epoch(&self) -> Epoch {
            self.now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs() as Epoch
        }
    }

    /// What CloudTrail records of a service's calls.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Trail {
        /// Every call, in Event history this long after it, with a full identity.
        After(Epoch),
        /// Every call, the failure with the reduced identity of a failed authentication (no arn, no
        /// sessionContext, an empty accessKeyId): found by the session's name only.
        Reduced,
        /// The control call only: the failure is not recorded.
        ControlOnly,
    }

    /// A scenario and what happened in it.
    struct World {
        clock: ManualClock,
        session: String,
        trail: BTreeMap<&'static str, Trail>,
        /// Services whose failures the detector is not given.
        unseen: BTreeSet<&'static str>,
        /// Services that still take the expired session.
        still_valid: BTreeSet<&'static str>,
        /// The calls made: (service, when, access key, answered as expired).
        calls: Vec<(&'static str, Epoch, String, bool)>,
        /// LookupEvents requests answered.
        lookups: usize,
    }

    type Shared = Arc<Mutex<World>>;
    type Deliver = Arc<dyn Fn(Value, Epoch) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

    fn probe(key: &str) -> &'static Probe {
        PROBES.iter().find(|p| p.key == key).unwrap()
    }

    fn protocol(key: &str) -> Protocol {
        match key {
            "sts" | "sns" | "iam" => Protocol::Query,
            "ec2" => Protocol::Ec2,
            "s3" => Protocol::RestXml,
            "lambda" => Protocol::RestJson,
            _ => Protocol::Json11("T"),
        }
    }

    /// The answer each protocol gives an expired session (docs/cloudtrail.md, "Which error codes mean
    /// expiry"): status, headers, body.
    fn expired_answer(key: &str) -> (u16, Vec<(&'static str, &'static str)>, String) {
        let query = format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code><Message>{EXPIRED}</Message>\
             </Error><RequestId>r</RequestId></ErrorResponse>"
        );
        let json =
            format!(r#"{{"__type":"com.amazon.coral.service#ExpiredTokenException","message":"{EXPIRED}"}}"#);
        match key {
            "sts" | "sns" | "iam" => (403, vec![], query),
            "s3" => (
                400,
                vec![],
                "<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message>\
                 <Token-0>FQoG</Token-0></Error>"
                    .into(),
            ),
            "ec2" => (
                400,
                vec![],
                "<Response><Errors><Error><Code>RequestExpired</Code><Message>Request has expired.</Message>\
                 </Error></Errors><RequestID>r</RequestID></Response>"
                    .into(),
            ),
            "lambda" => (
                403,
                vec![(
                    "x-amzn-errortype",
                    "ExpiredTokenException:http://internal.amazon.com/coral/",
                )],
                format!(r#"{{"Type":"User","message":"{EXPIRED}"}}"#),
            ),
            "sqs" => (400, vec![("x-amzn-query-error", "ExpiredToken;Sender")], json),
            _ => (400, vec![], json),
        }
    }

    /// The code and message CloudTrail records for a service's expired call: what it answered.
    fn recorded_error(key: &str) -> (String, String) {
        let (_, headers, body) = expired_answer(key);
        let header = |n: &str| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        let (code, message) = parse_error(
            protocol(key),
            header("x-amzn-errortype"),
            header("x-amzn-query-error"),
            &body,
        );
        (code.unwrap_or_default(), message.unwrap_or_default())
    }

    /// The CloudTrail record of call `n`.
    fn record(w: &World, n: usize) -> Value {
        let (key, at, access_key, expired) = &w.calls[n];
        let p = probe(key);
        let issued = w.calls.first().map(|c| c.1).unwrap_or(*at);
        let mut identity = json!({
            "type": "AssumedRole",
            "principalId": format!("AROAEXAMPLEDRILL0001:{}", w.session),
            "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/tokenwatch-drill-eu-west-1/{}", w.session),
            "accountId": ACCOUNT,
            "accessKeyId": access_key,
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLEDRILL0001", "arn": ROLE},
                "attributes": {"creationDate": format_time(issued), "mfaAuthenticated": "false"}
            }
        });
        if *expired && w.trail[key] == Trail::Reduced {
            identity = json!({"type": "AssumedRole", "principalId": format!("AROAEXAMPLEDRILL0001:{}", w.session),
                              "accountId": ACCOUNT, "accessKeyId": ""});
        }
        let mut r = json!({
            "eventVersion": "1.11", "eventTime": format_time(*at), "eventSource": p.event_source,
            "eventName": if *key == "lambda" { "ListFunctions20150331" } else { p.call },
            "awsRegion": if p.global { "us-east-1" } else { REGION },
            "sourceIPAddress": "192.0.2.10", "userAgent": tokenwatch_aws::probe::USER_AGENT,
            "eventID": format!("drill-event-{n}"), "eventType": "AwsApiCall", "readOnly": true,
            "recipientAccountId": ACCOUNT, "userIdentity": identity,
        });
        if *expired {
            let (code, message) = recorded_error(key);
            r["errorCode"] = json!(code);
            r["errorMessage"] = json!(message);
        }
        r
    }

    /// The AssumeRole that issued the session, as the detector's rule delivers it.
    fn issuance(w: &World, access_key: &str, at: Epoch) -> Value {
        json!({
            "eventVersion": "1.11", "eventTime": format_time(at), "eventSource": "sts.amazonaws.com",
            "eventName": "AssumeRole", "awsRegion": REGION, "eventID": "drill-assume-role",
            "recipientAccountId": ACCOUNT,
            "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::{ACCOUNT}:user/oncall")},
            "requestParameters": {"roleArn": ROLE, "roleSessionName": w.session, "durationSeconds": 900},
            "responseElements": {"credentials": {"accessKeyId": access_key, "expiration": format_time(at + 900)}}
        })
    }

    /// The probe services over HTTP: the first call to each is the control (answered 200); the later ones
    /// are answered as an expired session, unless the scenario says the service still takes it. The first
    /// call also delivers the session's AssumeRole to the detector, and each failure its record, unless
    /// the scenario keeps it from the detector.
    #[derive(Clone)]
    struct FakeServices {
        world: Shared,
        deliver: Deliver,
    }

    impl std::fmt::Debug for FakeServices {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("FakeServices")
        }
    }

    impl HttpConnector for FakeServices {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let host = request.uri().split("://").nth(1).unwrap_or_default().to_owned();
            let key = PROBES
                .iter()
                .find(|p| host.split('.').next() == Some(p.key))
                .map(|p| p.key)
                .expect("a probe service's host");
            let access_key = request
                .headers()
                .get("authorization")
                .and_then(|a| a.split("Credential=").nth(1))
                .and_then(|c| c.split('/').next())
                .unwrap_or_default()
                .to_owned();
            let mut w = self.world.lock().unwrap();
            let now = w.clock.epoch();
            let first = !w.calls.iter().any(|c| c.0 == key);
            let expired = !first && !w.still_valid.contains(key);
            w.calls.push((key, now, access_key.clone(), expired));
            let n = w.calls.len() - 1;
            let (status, headers, body) = if expired {
                expired_answer(key)
            } else {
                (200, vec![], "{}".to_owned())
            };
            let mut events = Vec::new();
            if n == 0 {
                events.push(envelope(issuance(&w, &access_key, now)));
            }
            if expired && !w.unseen.contains(key) {
                events.push(envelope(record(&w, n)));
            }
            drop(w);
            let mut response = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body));
            for (k, v) in headers {
                response.headers_mut().insert(k, v);
            }
            let deliver = self.deliver.clone();
            HttpConnectorFuture::new(async move {
                for e in events {
                    deliver(e, now).await;
                }
                Ok(response)
            })
        }
    }

    /// Event history of one region (the global services' region when `global`).
    fn history(world: &Shared, global: bool) -> LookupEvents {
        let (w, clock) = (world.clone(), world.lock().unwrap().clock.clone());
        let rule = mock!(aws_sdk_cloudtrail::Client::lookup_events).then_compute_output(move |req| {
            let mut w = w.lock().unwrap();
            w.lookups += 1;
            let now = w.clock.epoch();
            let attribute = req.lookup_attributes().first().cloned().unwrap();
            let value = attribute.attribute_value().to_owned();
            let events: Vec<Event> = (0..w.calls.len())
                .filter(|&n| probe(w.calls[n].0).global == global)
                .filter(|&n| {
                    let (key, at, _, expired) = &w.calls[n];
                    match w.trail[key] {
                        Trail::After(lag) => now >= at + lag,
                        Trail::Reduced => true,
                        Trail::ControlOnly => !expired,
                    }
                })
                .map(|n| record(&w, n))
                .filter(|r| match attribute.attribute_key() {
                    LookupAttributeKey::AccessKeyId => r["userIdentity"]["accessKeyId"] == value.as_str(),
                    LookupAttributeKey::Username => r["userIdentity"]["principalId"]
                        .as_str()
                        .is_some_and(|p| p.ends_with(&format!(":{value}"))),
                    _ => false,
                })
                .map(|r| Event::builder().cloud_trail_event(r.to_string()).build())
                .collect();
            LookupEventsOutput::builder().set_events(Some(events)).build()
        });
        let client = mock_client!(aws_sdk_cloudtrail, RuleMode::MatchAny, [&rule]);
        LookupEvents::from_client(client).with_clock(clock.clone(), clock)
    }

    /// Feeds events to the real detector on `store`, which knows the drill role.
    fn detector<S: StateStore + Send + Sync + 'static>(store: Arc<S>, sink: Arc<RecordingSink>) -> Deliver {
        let policy = Arc::new(Policy {
            drills: DrillPolicy {
                role: DrillRole::parse(ROLE),
                ..Default::default()
            },
            ..Policy::default()
        });
        Arc::new(move |event, now| {
            let (store, sink, policy) = (store.clone(), sink.clone(), policy.clone());
            Box::pin(async move {
                let bytes = event.to_string();
                let d = Detector {
                    store: &*store,
                    sink: &*sink,
                    policy: &policy,
                };
                let out = d.process(&[bytes.as_bytes()], now).await;
                assert!(
                    out.retry.is_empty() && out.unreadable.is_empty(),
                    "{:?}",
                    out.faults
                );
            })
        })
    }

    /// Lines said and countdowns shown.
    #[derive(Default)]
    struct Said(Mutex<Vec<String>>);

    impl Feedback for Said {
        fn say(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_owned());
        }
        fn countdown(&self, what: &str, left: Epoch, _total: Epoch) {
            self.0.lock().unwrap().push(format!("countdown {what}: {left}"));
        }
        fn done(&self) {}
        fn tick(&self) -> Epoch {
            60
        }
    }

    struct Run {
        world: Shared,
        clock: ManualClock,
        sink: Arc<RecordingSink>,
        said: Said,
        dir: tempfile::TempDir,
        saved: Saved,
    }

    impl Run {
        fn new(scenario: impl FnOnce(&mut World)) -> Run {
            let clock = ManualClock(Arc::new(Mutex::new(SystemTime::now())));
            let probes: Vec<&Probe> = PROBES.iter().collect();
            let saved = Saved::new(ROLE, REGION, Some("tokenwatch-state".into()), &probes);
            let mut w = World {
                clock: clock.clone(),
                session: saved.session.clone(),
                trail: PROBES.iter().map(|p| (p.key, Trail::After(0))).collect(),
                unseen: BTreeSet::new(),
                still_valid: BTreeSet::new(),
                calls: Vec::new(),
                lookups: 0,
            };
            scenario(&mut w);
            Run {
                world: Arc::new(Mutex::new(w)),
                clock,
                sink: Arc::new(RecordingSink::default()),
                said: Said::default(),
                dir: tempfile::tempdir().unwrap(),
                saved,
            }
        }

        /// Drives the drill on `store` until it ends (or pauses, with `no_wait`).
        async fn drive<S: StateStore + Send + Sync + 'static>(
            &mut self,
            store: Arc<S>,
            no_wait: bool,
        ) -> Ended {
            let deliver = detector(store.clone(), self.sink.clone());
            let sdk = aws_config::SdkConfig::builder()
                .region(aws_config::Region::new(REGION))
                .behavior_version(aws_config::BehaviorVersion::latest())
                .build();
            let prober = Prober::new(&sdk)
                .with_connector(FakeServices {
                    world: self.world.clone(),
                    deliver,
                })
                .with_time(self.clock.clone());
            let services = Services {
                sts: aws_sdk_sts::Client::new(&Emulator::Moto.sdk().await),
                prober,
                history: vec![
                    (REGION.to_owned(), history(&self.world, false)),
                    ("us-east-1".to_owned(), history(&self.world, true)),
                ],
                store: Some(&*store),
            };
            let clock = Clock {
                sleep: SharedAsyncSleep::new(self.clock.clone()),
                time: SharedTimeSource::new(self.clock.clone()),
            };
            drive(
                &services,
                &mut self.saved,
                self.dir.path(),
                no_wait,
                &clock,
                &self.said,
            )
            .await
            .unwrap()
        }

        async fn finish(&mut self) -> Report {
            match self.drive(Arc::new(MemoryStore::default()), false).await {
                Ended::Finished(r) => *r,
                Ended::Paused => panic!("paused without --no-wait"),
            }
        }
    }

    fn outcomes(r: &Report) -> BTreeMap<String, Outcome> {
        r.coverage
            .services
            .iter()
            .map(|row| (row.probed.service.clone(), row.outcome))
            .collect()
    }

    #[tokio::test]
    async fn every_probe_end_to_end_exits_0_and_waits_no_real_minute() {
        let started = std::time::Instant::now();
        let mut run = Run::new(|_| {});
        let report = run.finish().await;
        let c = &report.coverage;
        assert_eq!(c.exit_status, 0, "{}", render_table(c, 200));
        assert!(outcomes(&report).values().all(|o| *o == Outcome::EndToEnd));
        assert_eq!(c.services.len(), 11);
        let detector = c.detector.as_ref().unwrap();
        assert_eq!(
            (
                detector.verdict.as_deref(),
                detector.lease_seconds,
                detector.paged
            ),
            (Some("stale-cache"), Some(900), true)
        );
        let pages = run.sink.notices();
        assert_eq!(pages.len(), 1, "one page for the session");
        assert!(
            pages[0].incident().unwrap().drill,
            "a drill role's session pages as a drill"
        );
        // Each service answered the expired call as its protocol does, and CloudTrail's record says so.
        let row = |service: &str| c.services.iter().find(|r| r.probed.service == service).unwrap();
        assert_eq!(row("S3").probed.expired.summary(), "400 ExpiredToken");
        assert_eq!(
            row("Lambda").probed.expired.summary(),
            "403 ExpiredTokenException"
        );
        assert_eq!(row("EC2").probed.expired.summary(), "400 RequestExpired");
        assert_eq!(row("SQS").probed.expired.summary(), "400 ExpiredToken");
        let failure = row("IAM").probed.found.failure.clone().unwrap();
        assert_eq!(failure.error_code.as_deref(), Some("ExpiredToken"));
        assert_eq!(failure.identity.names().len(), 6);
        // Every record CloudTrail returned, controls and failures, once each.
        assert_eq!(report.records.len(), 22);
        assert!(c.conclusion.starts_with(
            "tokenwatch sees expired-credential failures of: STS, S3, EC2, DynamoDB, Lambda, SQS, SNS, SSM, KMS, \
             CloudWatch Logs, IAM."
        ));
        // The wait was counted down on the manual clock, past the expiry and its margin.
        let said = run.said.0.lock().unwrap().clone();
        assert!(
            said.iter()
                .any(|l| l.starts_with("countdown the session's expiry"))
        );
        let w = run.world.lock().unwrap();
        let control = w.calls[0].1;
        let expired = w.calls.iter().find(|c| c.3).unwrap().1;
        assert!(
            expired - control >= 900 + EXPIRY_MARGIN - 5,
            "{}",
            expired - control
        );
        assert!(started.elapsed() < Duration::from_secs(60), "no real waiting");
        // The saved session no longer holds the secret.
        let saved = std::fs::read_to_string(run.dir.path().join(SESSION_FILE)).unwrap();
        assert!(!saved.contains("secret_access_key\": \"") && !saved.contains("session_token\": \""));
    }

    #[tokio::test]
    async fn a_failure_recorded_but_not_seen_by_the_detector_exits_1() {
        let mut run = Run::new(|w| {
            w.unseen.insert("kms");
        });
        let report = run.finish().await;
        assert_eq!(outcomes(&report)["KMS"], Outcome::Missed);
        assert_eq!(report.coverage.exit_status, 1);
        assert!(
            report
                .coverage
                .conclusion
                .contains("tokenwatch MISSED the recorded failures of: KMS")
        );
        // It kept reading until the deadline: a late delivery might still have come.
        let w = run.world.lock().unwrap();
        let last_call = w.calls.last().unwrap().1;
        let until = tokenwatch_core::time::parse_time(&report.coverage.observed_until).unwrap();
        assert!(until >= last_call + HISTORY_WAIT, "{until} {last_call}");
    }

    #[tokio::test]
    async fn failures_cloudtrail_does_not_record_are_a_coverage_gap_exiting_3() {
        let mut run = Run::new(|w| {
            w.trail.insert("s3", Trail::ControlOnly);
            w.trail.insert("ec2", Trail::ControlOnly);
            w.unseen.extend(["s3", "ec2"]);
        });
        let report = run.finish().await;
        let o = outcomes(&report);
        assert_eq!(
            (o["S3"], o["EC2"], o["STS"]),
            (Outcome::NotRecorded, Outcome::NotRecorded, Outcome::EndToEnd)
        );
        assert_eq!(report.coverage.exit_status, 3);
        assert!(
            report
                .coverage
                .conclusion
                .contains("it cannot see: S3, EC2, because CloudTrail does not record them in this account."),
            "{}",
            report.coverage.conclusion
        );
        let table = render_table(&report.coverage, 200);
        assert!(table.contains("no (only the control call)"), "{table}");
    }

    #[tokio::test]
    async fn failures_recorded_later_than_the_first_polls_still_count() {
        let mut run = Run::new(|w| {
            for p in PROBES {
                w.trail.insert(p.key, Trail::After(10 * 60));
            }
        });
        let report = run.finish().await;
        assert_eq!(report.coverage.exit_status, 0);
        let w = run.world.lock().unwrap();
        // Two lookups per region per poll; the first polls found nothing and the drill kept polling.
        assert!(w.lookups >= 2 * 2 * 10, "{} lookups", w.lookups);
    }

    #[tokio::test]
    async fn a_record_without_its_access_key_is_found_by_the_session_name() {
        let mut run = Run::new(|w| {
            w.trail.insert("dynamodb", Trail::Reduced);
        });
        let report = run.finish().await;
        let row = report
            .coverage
            .services
            .iter()
            .find(|r| r.probed.service == "DynamoDB")
            .unwrap();
        let failure = row.probed.found.failure.clone().expect("found by Username");
        assert_eq!(failure.identity.names(), ["type", "principalId"]);
        assert_eq!(report.coverage.exit_status, 0);
    }

    #[tokio::test]
    async fn a_service_that_still_takes_the_expired_session_is_not_measured() {
        let mut run = Run::new(|w| {
            w.still_valid.insert("sns");
        });
        let report = run.finish().await;
        assert_eq!(outcomes(&report)["SNS"], Outcome::NotMeasured);
        assert_eq!(report.coverage.exit_status, 2);
        assert!(report.coverage.conclusion.contains("Not measured: SNS"));
    }

    #[tokio::test]
    async fn the_first_probe_is_asked_again_while_aws_still_takes_the_session() {
        let mut run = Run::new(|w| {
            w.still_valid.insert("sts");
        });
        let report = run.finish().await;
        let w = run.world.lock().unwrap();
        let sts_calls = w.calls.iter().filter(|c| c.0 == "sts").count();
        assert_eq!(sts_calls, 1 + STILL_VALID_TRIES, "the control, then every try");
        assert_eq!(outcomes(&report)["STS"], Outcome::NotMeasured);
        assert!(
            run.said
                .0
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("still took the session"))
        );
    }

    #[tokio::test]
    async fn no_wait_saves_the_session_and_resume_finishes_the_drill() {
        let mut run = Run::new(|_| {});
        let store = Arc::new(MemoryStore::default());
        assert!(matches!(run.drive(store.clone(), true).await, Ended::Paused));
        let path = run.dir.path().join(SESSION_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let on_disk = Saved::read(run.dir.path()).unwrap();
        assert!(on_disk.secret_access_key.is_some() && on_disk.probed_at.is_none());
        assert_eq!(on_disk.controls.len(), 11);
        let stands = on_disk.where_it_stands(run.dir.path(), run.clock.epoch());
        assert!(
            stands.contains("--resume") && stands.contains("nothing to clean up"),
            "{stands}"
        );
        // Later, from the file alone.
        run.saved = on_disk;
        let Ended::Finished(report) = run.drive(store, false).await else {
            panic!("paused again")
        };
        assert_eq!(report.coverage.exit_status, 0);
        let w = run.world.lock().unwrap();
        assert_eq!(
            w.calls.iter().filter(|c| !c.3).count(),
            11,
            "the controls were not made twice"
        );
        assert!(Saved::read(run.dir.path()).unwrap().secret_access_key.is_none());
    }

    #[test]
    fn where_a_drill_stands_says_what_to_do_at_each_step() {
        let dir = Path::new("/tmp/d");
        let mut s = Saved::default();
        assert!(s.where_it_stands(dir, 0).contains("nothing was done"));
        s.session = "tokenwatch-drill-1".into();
        s.expires_at = Some(1000);
        let assumed = s.where_it_stands(dir, 100);
        assert!(
            assumed.contains("expires by itself") && assumed.contains("--resume /tmp/d"),
            "{assumed}"
        );
        s.probed_at = Some(1100);
        assert!(s.where_it_stands(dir, 1200).contains("expired calls were made"));
    }

    #[tokio::test]
    async fn the_state_table_on_moto_is_read_as_the_detector_wrote_it() {
        let sdk = Emulator::Moto.sdk().await;
        let table = tokenwatch_testkit::unique("tokenwatch-drill");
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        tokenwatch_aws::create_table(&client, &table).await.unwrap();
        let store = Arc::new(tokenwatch_aws::DynamoStore::from_client(client, &table));
        let mut run = Run::new(|w| {
            w.unseen.insert("logs");
        });
        let Ended::Finished(report) = run.drive(store, false).await else {
            panic!("paused")
        };
        let o = outcomes(&report);
        assert_eq!(
            (o["CloudWatch Logs"], o["S3"]),
            (Outcome::Missed, Outcome::EndToEnd)
        );
        assert_eq!(
            report.coverage.detector.as_ref().unwrap().lease_seconds,
            Some(900)
        );
    }

    #[tokio::test]
    async fn save_writes_the_records_and_the_coverage_without_secrets() {
        let mut run = Run::new(|_| {});
        let report = run.finish().await;
        let out = tempfile::tempdir().unwrap();
        let written = save(&report, out.path()).unwrap();
        assert_eq!(written.len(), 2);
        let records: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("records.json")).unwrap()).unwrap();
        assert_eq!(records.len(), 22);
        let coverage: Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("coverage.json")).unwrap())
                .unwrap();
        assert_eq!(coverage["services"][0]["outcome"], "end-to-end");
        assert_eq!(
            coverage["services"][1]["found"]["failure"]["identity"]["accessKeyId"],
            true
        );
        let all = std::fs::read_to_string(out.path().join("coverage.json")).unwrap()
            + &std::fs::read_to_string(out.path().join("records.json")).unwrap();
        assert!(
            !all.contains("secret") && !all.contains("session_token"),
            "no secret is saved"
        );
    }

    /// The README's coverage table is one of these runs, rendered at 120 columns: a gap (EC2 and S3
    /// unrecorded), everything else end to end.
    #[tokio::test]
    async fn the_readme_shows_a_coverage_table_of_a_run_against_the_mocks() {
        let mut run = Run::new(|w| {
            w.trail.insert("s3", Trail::ControlOnly);
            w.trail.insert("ec2", Trail::ControlOnly);
            w.unseen.extend(["s3", "ec2"]);
            w.trail.insert("dynamodb", Trail::Reduced);
        });
        let report = run.finish().await;
        let table = render_table(&report.coverage, 120);
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
        assert!(
            readme.contains(&table),
            "README.md should show this table (in \"Prove it in your account\"):\n{table}"
        );
    }
}
