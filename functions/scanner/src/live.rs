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
use tokenwatch_core::pipeline::Detector;
use tokenwatch_core::ports::{AlertSink, NearMissStore, PortError, StateStore};
use tokenwatch_core::stats::group_key;
use tokenwatch_core::time::{Epoch, format_time};
use tokenwatch_core::{Analyzer, Window};
use tracing::{info, warn};

use crate::config::LiveConfig;

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
