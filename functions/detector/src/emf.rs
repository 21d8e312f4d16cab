//! CloudWatch Embedded Metric Format: one JSON line per metric value, which CloudWatch Logs turns into
//! metrics in the `tokenwatch` namespace, so dashboards and alarms need no extra code or API calls.

use std::collections::BTreeMap;

use tokenwatch_core::pipeline::{Fault, Metrics};
use tokenwatch_core::time::Epoch;
use tokenwatch_process::emf::metric_line as line;

/// The detector's metrics: what the template's alarms and a dashboard read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// New failures, by the verdict of their group.
    FailuresSeen,
    /// Incidents opened, by verdict.
    IncidentsOpened,
    /// Notices published, by kind.
    AlertsPublished,
    /// Pages not sent, by reason.
    AlertsWithheld,
    /// Failures already recorded by an earlier delivery.
    DuplicateFailures,
    /// Issuing calls recorded.
    IssuingCalls,
    /// Events, or records inside one, dropped without effect, by reason.
    EventsDropped,
    /// Port faults a retry may get past (the work is retried).
    TransientFaults,
    /// Port faults no retry gets past; the line lists the groups (`Groups`, not a dimension). The
    /// template's `<stack>-permanent-faults` alarm fires on one.
    PermanentFaults,
    /// Synthetic drills refused, by reason.
    DrillsRefused,
    /// Sessions whose failures went to their principal's over-the-cap group (the hourly cap of new
    /// groups bit).
    NewGroupsCapped,
    /// Sweeps that ran to the end: one per scheduled invocation (`tokenwatch doctor` looks for it).
    SweepsCompleted,
}

impl Metric {
    /// The metric's name in CloudWatch.
    pub fn name(self) -> &'static str {
        match self {
            Metric::FailuresSeen => "FailuresSeen",
            Metric::IncidentsOpened => "IncidentsOpened",
            Metric::AlertsPublished => "AlertsPublished",
            Metric::AlertsWithheld => "AlertsWithheld",
            Metric::DuplicateFailures => "DuplicateFailures",
            Metric::IssuingCalls => "IssuingCalls",
            Metric::EventsDropped => "EventsDropped",
            Metric::TransientFaults => "TransientFaults",
            Metric::PermanentFaults => "PermanentFaults",
            Metric::DrillsRefused => "DrillsRefused",
            Metric::SweepsCompleted => "SweepsCompleted",
            Metric::NewGroupsCapped => "NewGroupsCapped",
        }
    }

    /// Its one dimension, if it has one.
    pub fn dimension(self) -> Option<&'static str> {
        match self {
            Metric::FailuresSeen | Metric::IncidentsOpened => Some("Verdict"),
            Metric::AlertsPublished => Some("Kind"),
            Metric::AlertsWithheld | Metric::EventsDropped | Metric::DrillsRefused => Some("Reason"),
            Metric::DuplicateFailures
            | Metric::IssuingCalls
            | Metric::TransientFaults
            | Metric::PermanentFaults
            | Metric::NewGroupsCapped
            | Metric::SweepsCompleted => None,
        }
    }
}

/// Groups a `PermanentFaults` line names at most.
const MAX_FAULT_GROUPS: usize = 20;

/// The lines for one batch's (or sweep's) counters, zero counters left out; `faults` gives the groups
/// the `PermanentFaults` line names.
pub fn lines(m: &Metrics, faults: &[Fault], now: Epoch) -> Vec<String> {
    let mut out = Vec::new();
    fn by<K>(
        out: &mut Vec<String>,
        now: Epoch,
        metric: Metric,
        map: &BTreeMap<K, u64>,
        value: impl Fn(&K) -> &'static str,
    ) {
        let dim = metric.dimension().unwrap_or("Value");
        for (k, n) in map {
            if *n > 0 {
                out.push(line(now, metric.name(), Some((dim, value(k))), *n));
            }
        }
    }
    by(&mut out, now, Metric::FailuresSeen, &m.failures, |v| v.as_str());
    by(&mut out, now, Metric::IncidentsOpened, &m.incidents_opened, |v| {
        v.as_str()
    });
    by(&mut out, now, Metric::AlertsPublished, &m.alerts_published, |k| {
        k.as_str()
    });
    by(&mut out, now, Metric::AlertsWithheld, &m.alerts_withheld, |r| {
        r.as_str()
    });
    by(&mut out, now, Metric::EventsDropped, &m.dropped, |r| r.as_str());
    by(&mut out, now, Metric::DrillsRefused, &m.drills_refused, |r| {
        r.as_str()
    });
    for (metric, n) in [
        (Metric::DuplicateFailures, m.duplicates),
        (Metric::IssuingCalls, m.issuances),
        (Metric::TransientFaults, m.transient_faults),
        (Metric::NewGroupsCapped, m.new_groups_capped),
    ] {
        if n > 0 {
            out.push(line(now, metric.name(), None, n));
        }
    }
    if m.permanent_faults > 0 {
        let line = line(now, Metric::PermanentFaults.name(), None, m.permanent_faults);
        let groups: Vec<&str> = faults
            .iter()
            .filter(|f| !f.transient)
            .filter_map(|f| f.group.as_deref())
            .take(MAX_FAULT_GROUPS)
            .collect();
        // A property, not a dimension: the alarm reads the metric whole, and a group id per dimension
        // value would be a metric per group.
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(mut doc) if !groups.is_empty() => {
                doc["Groups"] = serde_json::json!(groups);
                out.push(doc.to_string());
            }
            _ => out.push(line),
        }
    }
    out
}

/// The line a completed sweep prints.
pub fn sweep_line(now: Epoch) -> String {
    line(now, Metric::SweepsCompleted.name(), None, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn each_counter_is_a_valid_emf_line() {
        let mut m = Metrics::default();
        m.failures.insert(tokenwatch_core::Verdict::StaleCache, 83);
        m.alerts_published
            .insert(tokenwatch_core::notice::NoticeKind::Open, 1);
        m.duplicates = 2;
        let out = lines(&m, &[], 1_793_610_000);
        assert_eq!(out.len(), 3);
        let first: Value = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(first["FailuresSeen"], 83);
        assert_eq!(first["Verdict"], "stale-cache");
        assert_eq!(first["_aws"]["CloudWatchMetrics"][0]["Namespace"], "tokenwatch");
        assert_eq!(
            first["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Verdict"]])
        );
        assert_eq!(first["_aws"]["Timestamp"], 1_793_610_000_000u64);
        let plain: Value = serde_json::from_str(&out[2]).unwrap();
        assert_eq!(plain["DuplicateFailures"], 2);
        assert_eq!(plain["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
        assert!(lines(&Metrics::default(), &[], 0).is_empty());
        let mut refused = Metrics::default();
        refused
            .drills_refused
            .insert(tokenwatch_core::drill::Refusal::TooSoon, 4);
        let drill: Value = serde_json::from_str(&lines(&refused, &[], 0)[0]).unwrap();
        assert_eq!(
            (drill["DrillsRefused"].clone(), drill["Reason"].clone()),
            (json!(4), json!("too soon after the last drill"))
        );
        let sweep: Value = serde_json::from_str(&sweep_line(0)).unwrap();
        assert_eq!(sweep["SweepsCompleted"], 1);
    }

    #[test]
    fn every_dropped_event_is_a_metric_by_reason() {
        use tokenwatch_core::pipeline::DropReason;
        let mut m = Metrics::default();
        m.dropped.insert(DropReason::BadEventTime, 2);
        m.dropped.insert(DropReason::NotJson, 1);
        let out: Vec<Value> = lines(&m, &[], 0)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1]["EventsDropped"], 2);
        assert_eq!(out[1]["Reason"], "unparsable eventTime");
        assert_eq!(
            out[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Reason"]])
        );
        assert_eq!(out[0]["Reason"], "not JSON");
    }
}
