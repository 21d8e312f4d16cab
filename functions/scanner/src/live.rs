//! The scanner's live mode (`SCAN_MODE=live`): on a schedule, it reads the trail's log files of the last
//! 2 hours ([`tokenwatch_core::livescan`]) and hands what EventBridge never delivers, or may have lost, to
//! the state table: each session's near miss (docs/rules.md, "Near misses"), for `tokenwatch report` and
//! the digest; and each expiry failure no claim was stored for, recorded through the detector's own path
//! ([`Detector::process_failures`]: claim by eventID, the same incidents and pages).
//!
//! Stateless: everything it knows comes from the trail and the table, so a scan that reads the same files
//! again (every scan reads 2 hours; one runs every 15 minutes) writes nothing new, and a scan that failed
//! is made good by the next one.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};
use tokenwatch_aws::DynamoStore;
use tokenwatch_aws::trail::{NoProgress, S3Client, TrailError, TrailLocation, TrailReader};
use tokenwatch_core::classify::Failure;
use tokenwatch_core::incident::Policy;
use tokenwatch_core::livescan::LiveWindow;
use tokenwatch_core::model::Severity;
use tokenwatch_core::notice::{NearMissNotice, Notice};
use tokenwatch_core::pipeline::Detector;
use tokenwatch_core::ports::{AlertSink, NearMissStore, PortError, StateStore};
use tokenwatch_core::stats::group_key;
use tokenwatch_core::time::{Epoch, format_time};
use tokenwatch_core::{Analyzer, Window};
use tracing::{info, warn};

use tokenwatch_process::env::{ConfigError, Env};

/// Why a scan failed as a whole (the next scheduled one tries again; nothing is lost meanwhile).
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The trail could not be listed at all.
    #[error("listing the trail: {0}")]
    List(#[source] TrailError),
    /// The state table could not be read or written.
    #[error("the state table: {0}")]
    Store(#[source] PortError),
    /// Every missed failure's group hit a fault.
    #[error("recording {failures} missed failures: {faults}")]
    Failures {
        /// Failures not recorded.
        failures: usize,
        /// The faults, for the log.
        faults: String,
    },
}

impl From<LiveError> for lambda_runtime::Diagnostic {
    fn from(e: LiveError) -> Self {
        let error_type = match &e {
            LiveError::Store(p) if p.is_transient() => "Retryable",
            LiveError::List(_) => "TrailListFailed",
            LiveError::Store(_) => "StateTableFailed",
            LiveError::Failures { .. } => "FailuresNotRecorded",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// What a scan works with, made by `main` for the life of the process.
pub struct LiveScanner<'a, A> {
    /// The S3 client of the trail.
    pub client: S3Client,
    /// The state table.
    pub store: &'a DynamoStore,
    /// The alert topic, for missed failures' pages.
    pub sink: &'a A,
    /// The detector's paging rules.
    pub policy: &'a Policy,
    /// The configuration.
    pub config: &'a LiveConfig,
}

/// What one scan did, as its result and log line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveOutcome {
    /// Log files read (those of the window).
    pub objects: u64,
    /// Records in them.
    pub records: u64,
    /// Objects or folders that could not be read, by name, with the reason.
    pub unread: Vec<(String, String)>,
    /// Sessions found to be near misses.
    pub near_misses: usize,
    /// Of those, stored for the first time.
    pub near_misses_new: usize,
    /// Near misses paged ([`NEAR_MISS_PAGES`]).
    pub near_misses_paged: usize,
    /// Expiry failures in the files (each eventID once).
    pub failures: usize,
    /// Of those, not counted by the detector before this scan.
    pub missed: usize,
    /// Of those, recorded now.
    pub recorded: usize,
}

impl LiveOutcome {
    /// The scan's result document.
    pub fn to_json(&self) -> Value {
        json!({
            "Objects": self.objects,
            "Records": self.records,
            "Unread": self.unread.iter().map(|(n, r)| json!({"Name": n, "Reason": r})).collect::<Vec<_>>(),
            "NearMisses": self.near_misses,
            "NearMissesNew": self.near_misses_new,
            "NearMissesPaged": self.near_misses_paged,
            "Failures": self.failures,
            "Missed": self.missed,
            "Recorded": self.recorded,
        })
    }
}

/// One scan at `now`.
pub async fn scan<A: AlertSink>(live: &LiveScanner<'_, A>, now: Epoch) -> Result<LiveOutcome, LiveError> {
    let config = live.config;
    let window = LiveWindow::new(now, config.span);
    let reader =
        TrailReader::from_client(live.client.clone(), config.trail.clone()).downloads(config.downloads);
    let mut errors = Vec::new();
    let keys = reader
        .recent_keys(&window, &mut errors)
        .await
        .map_err(LiveError::List)?;
    let mut analyzer = Analyzer::collecting(Window::default(), live.policy.cooldown);
    let summary = reader
        .read_keys_into(&mut analyzer, keys, Arc::new(NoProgress))
        .await;
    let mut out = LiveOutcome {
        objects: summary.objects,
        records: analyzer.records(),
        unread: errors
            .into_iter()
            .chain(summary.errors)
            .map(|e| (e.name, e.reason))
            .collect(),
        ..LiveOutcome::default()
    };
    let Some(partial) = analyzer.into_partial() else {
        return Ok(out);
    };
    let failures: Vec<Failure> = partial.failures.clone().into_iter().collect();
    let issuances = partial.issuances.0.clone();
    let sessions = partial.report().near_misses.sessions();
    out.near_misses = sessions.len();
    let recorded = live
        .store
        .record_near_misses(&sessions, now)
        .await
        .map_err(LiveError::Store)?;
    out.near_misses_new = recorded.new.len();
    if config.near_miss_pages && live.policy.min_severity <= Severity::Low {
        for &i in &recorded.new {
            let m = &sessions[i];
            let key = group_key(&m.account, &m.principal, &m.session);
            if live
                .policy
                .suppressions
                .iter()
                .any(|s| s.matches(&key, m.principal.as_deref(), now))
            {
                continue;
            }
            let notice = Notice::NearMiss(NearMissNotice { near_miss: m.clone() });
            // Stored already, so a later scan will not page it: a page SNS refused is logged, not retried.
            match live.sink.publish(&notice).await {
                Ok(()) => out.near_misses_paged += 1,
                Err(error) => {
                    warn!(%error, alert_id = notice.alert_id(), "A near miss's page was not published.")
                }
            }
        }
    }

    // Only the failures no claim was stored for go to the detector: those it counted already would only
    // meet their claims (a write each), every scan, for the 2 hours they stay in the window.
    out.failures = failures.len();
    let ids: Vec<String> = failures.iter().filter_map(|f| f.event_id.clone()).collect();
    let unclaimed: BTreeSet<String> = live
        .store
        .unclaimed(&ids)
        .await
        .map_err(LiveError::Store)?
        .into_iter()
        .collect();
    let missed: Vec<Failure> = failures
        .into_iter()
        .filter(|f| f.event_id.as_ref().is_some_and(|id| unclaimed.contains(id)))
        .collect();
    out.missed = missed.len();
    if !missed.is_empty() {
        // Their sessions' issuing calls first, as the live path records them before the failures: the
        // lease a verdict rests on comes from them.
        let keys: BTreeSet<&str> = missed.iter().filter_map(|f| f.access_key_id.as_deref()).collect();
        for issuance in issuances
            .iter()
            .filter(|i| keys.contains(i.access_key_id.as_str()))
        {
            let key = group_key(&issuance.account, &issuance.principal, &issuance.session);
            live.store
                .record_issuance(&key, issuance)
                .await
                .map_err(LiveError::Store)?;
        }
        let detector = Detector {
            store: live.store,
            sink: live.sink,
            policy: live.policy,
        };
        let outcome = detector.process_failures(missed, now).await;
        let not_recorded = outcome.retry.len() + outcome.abandoned.len() + outcome.skipped.len();
        out.recorded = out.missed - not_recorded;
        for fault in &outcome.faults {
            warn!(%fault, "A missed failure's group was not recorded; the next scan tries again.");
        }
        if out.recorded == 0 && !outcome.faults.is_empty() {
            return Err(LiveError::Failures {
                failures: not_recorded,
                faults: outcome
                    .faults
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
    }
    info!(
        from = %format_time(window.from),
        to = %format_time(window.to),
        objects = out.objects,
        records = out.records,
        unread = out.unread.len(),
        near_misses = out.near_misses,
        near_misses_new = out.near_misses_new,
        near_misses_paged = out.near_misses_paged,
        failures = out.failures,
        missed = out.missed,
        recorded = out.recorded,
        "Trail scanned."
    );
    Ok(out)
}

/// The location the live mode reads: bucket and prefix from the configuration.
pub fn location(bucket: &str, prefix: &str) -> TrailLocation {
    TrailLocation {
        bucket: bucket.to_owned(),
        prefix: prefix.trim_matches('/').to_owned(),
    }
}

/// Which work the function does: `backfill` (the default: items of the back-fill's Distributed Map) or
/// `live` (the scheduled scan of the trail's last 2 hours, [`LiveConfig`]).
pub const SCAN_MODE: &str = "SCAN_MODE";
/// Live mode: the prefix the trail writes under (the part before `AWSLogs/`; empty for none).
pub const TRAIL_PREFIX: &str = "TRAIL_PREFIX";
/// Live mode: how far back each scan reads: seconds or a span (default 2h, 15m to 24h).
pub const LIVE_SPAN: &str = "LIVE_SPAN";

/// Live mode: `true` makes a near miss found for the first time page at `low` (when the paging floor,
/// `MIN_SEVERITY`, is `low` or below, and no suppression matches); `false`, the default: never a page.
pub const NEAR_MISS_PAGES: &str = "NEAR_MISS_PAGES";

/// The function's mode, read from [`SCAN_MODE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Items of the back-fill.
    Backfill,
    /// The scheduled scan.
    Live,
}

impl Mode {
    /// Reads [`SCAN_MODE`] through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Mode, ConfigError> {
        match Env(lookup).optional(SCAN_MODE).as_deref() {
            None | Some("backfill") => Ok(Mode::Backfill),
            Some("live") => Ok(Mode::Live),
            Some(other) => Err(ConfigError {
                variable: SCAN_MODE,
                problem: format!("'{other}' is not a scan mode; expected backfill or live"),
            }),
        }
    }
}

/// What the live mode is told: the trail, the window, and the detector's own configuration (state table,
/// alert topic, paging floor, cool-down, suppressions), so that a failure the scan finds is decided as
/// the detector decides one delivered live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveConfig {
    /// The detector's variables.
    pub detector: tokenwatch_detector::config::Config,
    /// [`crate::config::TRAIL_BUCKET`] and [`TRAIL_PREFIX`].
    pub trail: tokenwatch_aws::trail::TrailLocation,
    /// [`LIVE_SPAN`], in seconds.
    pub span: tokenwatch_core::time::Epoch,
    /// [`crate::config::DOWNLOADS`].
    pub downloads: usize,
    /// [`NEAR_MISS_PAGES`].
    pub near_miss_pages: bool,
}

impl LiveConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<LiveConfig, ConfigError> {
        LiveConfig::from_lookup(|name| std::env::var(name).ok(), tokenwatch_process::now())
    }

    /// Reads variables through `lookup`; `now` dates suppressions given as spans.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        now: tokenwatch_core::time::Epoch,
    ) -> Result<LiveConfig, ConfigError> {
        let detector = tokenwatch_detector::config::Config::from_lookup(&lookup, now)?;
        // The trail bucket's rule is the back-fill's; its other variables are not the live mode's.
        let backfill = crate::config::Config::from_lookup(|name| match name {
            crate::config::PARTIALS_BUCKET => Some("unused".to_owned()),
            _ => lookup(name),
        })?;
        let env = Env(&lookup);
        let prefix = env.optional(TRAIL_PREFIX).unwrap_or_default();
        if prefix.contains("AWSLogs") || prefix.starts_with("s3:") {
            return Err(ConfigError {
                variable: TRAIL_PREFIX,
                problem: format!(
                    "'{prefix}' is not a trail's prefix; expected the part of its keys before AWSLogs/ (empty for none)"
                ),
            });
        }
        let near_miss_pages = match env.optional(NEAR_MISS_PAGES).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ConfigError {
                    variable: NEAR_MISS_PAGES,
                    problem: format!("'{other}' is not true or false"),
                });
            }
        };
        Ok(LiveConfig {
            near_miss_pages,
            detector,
            trail: location(&backfill.trail_bucket, &prefix),
            span: env.span(
                LIVE_SPAN,
                tokenwatch_core::livescan::DEFAULT_SPAN,
                (15 * 60, 86_400),
            )?,
            downloads: backfill.downloads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TRAIL_BUCKET;
    use std::collections::HashMap;

    const NOW: i64 = 1_793_000_000;

    fn config(vars: &[(&str, &str)]) -> Result<LiveConfig, ConfigError> {
        let mut map: HashMap<String, String> = [
            (TRAIL_BUCKET, "org-trail"),
            ("TABLE_NAME", "tw-state"),
            ("TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:tw-alerts"),
            ("AWS_REGION", "us-east-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in vars {
            map.insert(k.to_string(), v.to_string());
        }
        LiveConfig::from_lookup(|k| map.get(k).cloned(), NOW)
    }

    #[test]
    fn the_trail_and_the_detectors_variables_are_enough() {
        let c = config(&[]).unwrap();
        assert_eq!(c.trail.bucket, "org-trail");
        assert_eq!(c.trail.prefix, "");
        assert_eq!((c.span, c.downloads, c.near_miss_pages), (7200, 4, false));
        assert_eq!(c.detector.common.table_name, "tw-state");
        let c = config(&[
            (TRAIL_PREFIX, "org/"),
            (LIVE_SPAN, "3h"),
            (NEAR_MISS_PAGES, "true"),
        ])
        .unwrap();
        assert_eq!(
            (c.trail.prefix.as_str(), c.span, c.near_miss_pages),
            ("org", 3 * 3600, true)
        );
    }

    #[test]
    fn a_bad_value_fails_the_cold_start_naming_its_variable() {
        let cases: [(&[(&str, &str)], &str); 6] = [
            (&[(NEAR_MISS_PAGES, "yes")], NEAR_MISS_PAGES),
            (&[(TRAIL_BUCKET, "")], TRAIL_BUCKET),
            (&[(TRAIL_PREFIX, "org/AWSLogs/")], TRAIL_PREFIX),
            (&[(LIVE_SPAN, "5m")], LIVE_SPAN),
            (&[("TABLE_NAME", "")], "TABLE_NAME"),
            (&[("MIN_SEVERITY", "loud")], "MIN_SEVERITY"),
        ];
        for (vars, variable) in cases {
            let e = config(vars).unwrap_err();
            assert_eq!(e.variable, variable, "{e}");
            assert!(e.to_string().starts_with(variable), "{e}");
        }
    }

    #[test]
    fn the_mode_is_backfill_unless_told_live() {
        assert_eq!(Mode::from_lookup(|_| None).unwrap(), Mode::Backfill);
        assert_eq!(Mode::from_lookup(|_| Some("live".into())).unwrap(), Mode::Live);
        let e = Mode::from_lookup(|_| Some("Live".into())).unwrap_err();
        assert_eq!(e.variable, SCAN_MODE);
    }
}
