//! What tokenwatch's processes share and the engine leaves out on purpose: the wall clock and, for the
//! Lambda functions, their metrics (CloudWatch Embedded Metric Format lines) and (feature `lambda`) JSON
//! logs.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use tokenwatch_core::time::Epoch;

/// The wall clock, in seconds. The engine never reads it: the functions and the CLI pass it in.
pub fn now() -> Epoch {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as Epoch)
        .unwrap_or_default()
}

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

/// JSON logs on stderr, at the level `RUST_LOG` names (`error` … `trace`) or `info`. A plain level rather
/// than `EnvFilter` directives keeps a regex engine out of the binaries.
#[cfg(feature = "lambda")]
pub fn init_logging() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .without_time()
        .try_init();
}
