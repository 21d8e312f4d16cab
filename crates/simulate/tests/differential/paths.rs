//! Every call into tokenwatch-core the differential test makes, and nothing else: the three paths a
//! history can take through the engine, each reduced to plain [`Outcome`]s. When the engine's API
//! changes, only this file changes.

use serde_json::Value;
use tokenwatch_core::finding::judge_stored;
use tokenwatch_core::fleet::fleet_of;
use tokenwatch_core::incident::Policy;
use tokenwatch_core::memory::{MemoryStore, RecordingSink};
use tokenwatch_core::notice::NoticeKind;
use tokenwatch_core::pipeline::Detector;
use tokenwatch_core::ports::StateStore;
use tokenwatch_core::query::{Query, Since, state_report};
use tokenwatch_core::{Analyzer, Finding, Severity, Window};
use tokenwatch_simulate::history::History;

use super::{Key, Outcome};

/// The scheduled sweep's period, as the stack's schedule runs it.
pub const SWEEP_EVERY: i64 = 300;
/// The detector goes on sweeping this long after the last delivery.
pub const SWEEP_AFTER: i64 = 2 * 3600;
/// Deliveries this close together arrive in one invocation (an SQS batch).
const BATCH_WINDOW: i64 = 10;
const BATCH_MAX: usize = 10;

fn key_of(account: Option<&str>, principal: &Option<String>, session: Option<&str>) -> Key {
    Key {
        account: account.map(str::to_owned),
        principal: principal
            .as_deref()
            .map(|p| p.rsplit('/').next().unwrap_or(p).to_owned()),
        session: session.map(str::to_owned),
    }
}

fn from_finding(g: &Finding, severity: Severity) -> Outcome {
    Outcome {
        key: key_of(g.account(), &g.principal, g.session()),
        verdict: g.verdict().as_str().to_owned(),
        lease_seconds: g.lease_seconds(),
        lease_source: g.assessment.lease.map(|l| l.source.as_str().to_owned()),
        credential_source: g.credential_source().as_str().to_owned(),
        client: g.client.map(|c| c.as_str().to_owned()),
        severity: severity.as_str().to_owned(),
        failures: g.failures,
        pages: g
            .incidents()
            .iter()
            .any(|i| i.pages_at(Policy::default().min_severity)),
    }
}

fn from_group(g: &Finding) -> Outcome {
    from_finding(g, g.severity())
}

/// `analyze` over the history's trail.
pub fn offline(h: &History) -> Vec<Outcome> {
    let mut analyzer = Analyzer::new(Window::default());
    for record in h.trail() {
        analyzer.feed_value(record.to_string().as_bytes());
    }
    analyzer.report().findings.iter().map(from_group).collect()
}

/// Would the detector page a group the offline report found, at the default paging floor? When any of
/// its incidents pages there (its paging severity, which leaves out the volume raise, at or above the
/// floor, and no refresh race).
pub fn pages_at_default_floor(o: &Outcome) -> bool {
    o.pages
}

/// How late a record may be handed to the detector and still be waited for: the generator's deliveries
/// must stay within it for the paths to agree (docs/rules.md, "Incidents").
pub const DELIVERY_ALLOWANCE: i64 = tokenwatch_core::assess::DELIVERY_ALLOWANCE;

/// What the detector did with a history: its state afterwards and every page (open or escalation) it
/// published, in order, as the page's document describes the group.
pub struct Live<S> {
    store: S,
    /// Pages (not resolved notices), each reduced to an outcome; `severity` is the paged severity.
    pub pages: Vec<Outcome>,
    /// Events the detector asked to be delivered again, or could not read (there should be none).
    pub faults: Vec<String>,
    /// The time of the last sweep.
    pub end: i64,
}

/// The detector on the in-memory twins: deliveries in order, in small batches with `now` = delivery
/// time, and the scheduled sweep every 5 minutes from the first delivery until 2 hours after the last.
pub fn live(h: &History) -> Live<MemoryStore> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(live_on(h, MemoryStore::default()))
}

/// [`live`] on any state store (the real table in an emulator, say).
pub async fn live_on<S: StateStore>(h: &History, store: S) -> Live<S> {
    let sink = RecordingSink::default();
    let policy = Policy::default();
    let detector = Detector {
        store: &store,
        sink: &sink,
        policy: &policy,
    };
    let mut faults = Vec::new();
    let first = h.deliveries.first().map_or(0, |d| d.at);
    let last = h.deliveries.last().map_or(0, |d| d.at);
    let mut next_sweep = (first / SWEEP_EVERY + 1) * SWEEP_EVERY;
    let end = last + SWEEP_AFTER;
    {
        let mut i = 0;
        while i < h.deliveries.len() {
            let start = h.deliveries[i].at;
            let mut j = i;
            while j < h.deliveries.len() && j - i < BATCH_MAX && h.deliveries[j].at - start <= BATCH_WINDOW {
                j += 1;
            }
            let now = h.deliveries[j - 1].at;
            while next_sweep <= now {
                match detector.sweep(next_sweep).await {
                    Ok(out) => {
                        faults.extend(out.faults.iter().map(|f| format!("sweep at {next_sweep}: {f}")))
                    }
                    Err(e) => faults.push(format!("sweep at {next_sweep}: {e}")),
                }
                next_sweep += SWEEP_EVERY;
            }
            let events: Vec<Vec<u8>> = h.deliveries[i..j]
                .iter()
                .map(|d| h.envelope(d.record).to_string().into_bytes())
                .collect();
            let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
            let out = detector.process(&refs, now).await;
            faults.extend(out.faults.iter().map(ToString::to_string));
            faults.extend(out.unreadable.into_iter().map(|(_, why)| why));
            i = j;
        }
        while next_sweep <= end {
            match detector.sweep(next_sweep).await {
                Ok(out) => faults.extend(out.faults.iter().map(|f| format!("sweep at {next_sweep}: {f}"))),
                Err(e) => faults.push(format!("sweep at {next_sweep}: {e}")),
            }
            next_sweep += SWEEP_EVERY;
        }
    }
    let mut pages: Vec<Outcome> = sink
        .notices()
        .iter()
        .filter_map(|n| n.incident())
        .filter(|n| n.kind != NoticeKind::Resolved)
        .map(|n| from_finding(&n.finding, n.severity))
        .collect();
    // A fleet's page carries one member's finding and covers every member it was counted with: those are
    // recorded as paged with it (docs/rules.md, "One page per workload incident"); each counts as paged
    // at its own paging severity, no higher than the fleet's.
    if let Ok(groups) = store.groups(i64::MIN).await {
        for state in groups {
            let (Some(paged), Some(_)) = (state.incident.paged, fleet_of(&state.key)) else {
                continue;
            };
            if let Ok(finding) = judge_stored(&store, &state).await {
                let own = finding.assessment.paging_severity;
                pages.push(from_finding(&finding, own.min(paged)));
            }
        }
    }
    Live {
        store,
        pages,
        faults,
        end: next_sweep - SWEEP_EVERY,
    }
}

/// The state-table report of the detector's store after the history, covering everything since `since`.
pub fn table(live: &Live<MemoryStore>, since: i64) -> Vec<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(table_on(live, since))
}

/// [`table`] on any state store.
pub async fn table_on<S: StateStore>(live: &Live<S>, since: i64) -> Vec<Outcome> {
    let query = Query {
        since: Some(Since::At(since)),
        ..Default::default()
    };
    match state_report(&live.store, &query, live.end).await {
        Ok(report) => report.findings.iter().map(from_group).collect(),
        Err(_) => Vec::new(),
    }
}

/// What `tokenwatch analyze` reports (its JSON document) for a sample's text, for writing samples.
pub fn analyze_text(text: &str) -> Value {
    let mut analyzer = Analyzer::new(Window::default());
    match analyzer.read(text.as_bytes()) {
        Ok(()) => serde_json::to_value(tokenwatch_render::Document::of(
            &analyzer.report(),
            tokenwatch_render::Made::default(),
        ))
        .unwrap_or_default(),
        Err(e) => Value::String(e.to_string()),
    }
}
