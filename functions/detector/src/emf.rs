//! CloudWatch Embedded Metric Format: one JSON line per metric value, which CloudWatch Logs turns into
//! metrics in the `tokenwatch` namespace, so dashboards and alarms need no extra code or API calls.

use tokenwatch_aws::process::metric_line as line;
use tokenwatch_core::pipeline::Metrics;
use tokenwatch_core::time::Epoch;

/// The lines for one batch's counters (zero counters are left out).
pub fn lines(m: &Metrics, now: Epoch) -> Vec<String> {
    let mut out = Vec::new();
    let by = |out: &mut Vec<String>,
              name: &str,
              dim: &str,
              map: &std::collections::BTreeMap<&'static str, u64>| {
        for (value, n) in map {
            if *n > 0 {
                out.push(line(now, name, Some((dim, value)), *n));
            }
        }
    };
    by(&mut out, "FailuresSeen", "Verdict", &m.failures);
    by(&mut out, "IncidentsOpened", "Verdict", &m.incidents_opened);
    by(&mut out, "AlertsPublished", "Kind", &m.alerts_published);
    by(&mut out, "AlertsWithheld", "Reason", &m.alerts_withheld);
    for (name, n) in [
        ("DuplicateFailures", m.duplicates),
        ("IssuingCalls", m.issuances),
        ("UnreadableEvents", m.unreadable),
    ] {
        if n > 0 {
            out.push(line(now, name, None, n));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn each_counter_is_a_valid_emf_line() {
        let mut m = Metrics::default();
        m.failures.insert("stale-cache", 83);
        m.alerts_published.insert("open", 1);
        m.duplicates = 2;
        let out = lines(&m, 1_793_610_000);
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
        assert!(lines(&Metrics::default(), 0).is_empty());
    }
}
