//! CloudWatch Embedded Metric Format: one JSON line per metric value, printed to stdout by a Lambda
//! function; CloudWatch Logs turns it into a metric in [`METRICS_NAMESPACE`], so dashboards and alarms
//! need no API call.

use serde_json::{Value, json};

use tokenwatch_core::time::Epoch;

/// The metrics namespace of the functions' EMF lines (`tokenwatch`): the template's own alarms read it.
pub const METRICS_NAMESPACE: &str = "tokenwatch";

/// One CloudWatch Embedded Metric Format line: printed to stdout by a Lambda function, CloudWatch Logs
/// turns it into the count `value` of metric `name` (with one optional dimension) in
/// [`METRICS_NAMESPACE`], so dashboards and alarms need no API call.
pub fn metric_line(now: Epoch, name: &str, dimension: Option<(&str, &str)>, value: u64) -> String {
    let dimensions: Vec<Vec<&str>> = vec![dimension.map(|(k, _)| vec![k]).unwrap_or_default()];
    let mut doc = json!({
        "_aws": {
            "Timestamp": now * 1000,
            "CloudWatchMetrics": [{
                "Namespace": METRICS_NAMESPACE,
                "Dimensions": dimensions,
                "Metrics": [{ "Name": name, "Unit": "Count" }],
            }],
        },
        name: value,
    });
    if let (Some((k, v)), Value::Object(obj)) = (dimension, &mut doc) {
        obj.insert(k.to_owned(), json!(v));
    }
    doc.to_string()
}
