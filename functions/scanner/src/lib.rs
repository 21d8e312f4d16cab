//! The tokenwatch scanner Lambda: the item processor of the back-fill's Distributed Map. Given a batch
//! of a trail's log files (the keys an `ItemBatcher` hands it, or a day/account/region prefix to list),
//! it reads them as `tokenwatch report --from-trail` does and returns their mergeable partial
//! ([`tokenwatch_core::partial::Partial`]): in its result when small, else written to the partials prefix
//! and named by its key. `main.rs` only wires configuration, clients and this handler.
//!
//! Objects that cannot be read for a reason that will not go away (access denied, truncated gzip, not a
//! CloudTrail log file) are named in the partial with their reason and the item succeeds. The item fails
//! with the error type `Retryable`, and the map's Retry runs it again, when an object met a transient
//! fault (throttling, a 5xx, a timeout, a dropped connection), or a listing or the partial's write did. The state machine passes the attempt (`$$.State.RetryCount`) with the batch,
//! and the partial carries it, so the CLI counts the items that succeeded on a retry.

pub mod config;
pub mod live;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokenwatch_aws::partials::PartialStore;
use tokenwatch_aws::trail::{NoProgress, ObjectError, TrailLocation, TrailReader};
use tokenwatch_core::partial::Unread;
use tokenwatch_core::ports::PortError;
use tokenwatch_core::time::Epoch;
use tokenwatch_core::{Analyzer, Window};
use tracing::{info, warn};

use crate::config::Config;

/// What every item of one run shares: where and how to read (the state machine passes it, from the
/// execution's input, in `BatchInput` or in each item's `Job`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Job {
    /// The trail's bucket.
    pub bucket: String,
    /// Failures from this time on are counted (Unix seconds).
    #[serde(default)]
    pub since: Option<Epoch>,
    /// Failures up to this time are counted.
    #[serde(default)]
    pub until: Option<Epoch>,
    /// Quiet time that ends an incident (seconds).
    pub cooldown: Epoch,
    /// The run's name: partials go under `PARTIALS_PREFIX/RUN/`.
    pub run: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Item {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    job: Option<Job>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(default)]
    items: Vec<Item>,
    #[serde(default)]
    batch_input: Option<Job>,
    #[serde(flatten)]
    single: Item,
}

/// An item's work: the job, the keys to read and the prefixes to list.
#[derive(Debug, PartialEq, Eq)]
pub struct Work {
    /// The run's settings.
    pub job: Job,
    /// Objects to read.
    pub keys: Vec<String>,
    /// Folders whose log files to read.
    pub prefixes: Vec<String>,
}

/// Why an item failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The input is not an item of a back-fill; retrying cannot help.
    #[error(
        "not a scanner item ({0}); expected {{\"Items\":[{{\"Key\":…}}|{{\"Prefix\":…}}], \"BatchInput\":{{\"Bucket\",\"Cooldown\",\"Run\",\"Since\",\"Until\"}}}}"
    )]
    Request(String),
    /// A prefix could not be listed.
    #[error("listing s3://{bucket}/{prefix}: {source}")]
    List {
        /// The bucket.
        bucket: String,
        /// The prefix.
        prefix: String,
        /// Why.
        #[source]
        source: PortError,
    },
    /// The partial could not be written.
    #[error("writing the partial: {0}")]
    Write(#[source] PortError),
    /// Objects met transient faults (throttling, a 5xx, a timeout): the map's Retry reads the whole batch
    /// again.
    #[error("{}", read_message(.objects, .errors))]
    Read {
        /// Objects of the batch.
        objects: u64,
        /// The transient faults, by object.
        errors: Vec<ObjectError>,
    },
}

/// Faults named in full in a failed item's message; Step Functions keeps 32,768 characters of a cause.
const NAMED_FAULTS: usize = 5;

fn read_message(objects: &u64, errors: &[ObjectError]) -> String {
    let mut m = format!("{} of {objects} objects met a transient fault: ", errors.len());
    let named: Vec<String> = errors
        .iter()
        .take(NAMED_FAULTS)
        .map(|e| format!("{}: {}", e.name, e.reason))
        .collect();
    m.push_str(&named.join("; "));
    if errors.len() > NAMED_FAULTS {
        m.push_str(&format!("; and {} more", errors.len() - NAMED_FAULTS));
    }
    m
}

impl From<ScanError> for lambda_runtime::Diagnostic {
    fn from(e: ScanError) -> Self {
        // The map's Retry matches on the type: a transient fault is retried, a bad item is not.
        let error_type = match &e {
            ScanError::Request(_) => "InvalidItem",
            ScanError::Read { .. } => "Retryable",
            ScanError::List { source, .. } | ScanError::Write(source) if source.is_transient() => "Retryable",
            ScanError::List { .. } => "ListFailed",
            ScanError::Write(_) => "WriteFailed",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// The attempt of the item `payload` is: 0 for the first, 1 for the map's first retry, and so on. The
/// state machine passes it as `{"Batch": <the item>, "Attempt": $$.State.RetryCount}`; a payload without
/// it is a first attempt.
pub fn attempt_of(payload: &Value) -> u32 {
    payload
        .get("Attempt")
        .and_then(Value::as_u64)
        .map_or(0, |a| u32::try_from(a).unwrap_or(u32::MAX))
}

/// The item `payload` asks for (bare, or as the `Batch` of `{"Batch", "Attempt"}`).
pub fn work_of(payload: Value, config: &Config) -> Result<Work, ScanError> {
    let bad = |m: String| ScanError::Request(m);
    let payload = match payload {
        Value::Object(mut o) if o.contains_key("Batch") => o.remove("Batch").unwrap_or(Value::Null),
        other => other,
    };
    let request: Request = serde_json::from_value(payload).map_err(|e| bad(e.to_string()))?;
    let mut items = request.items;
    if request.single.key.is_some() || request.single.prefix.is_some() || request.single.job.is_some() {
        items.push(request.single);
    }
    let job = request
        .batch_input
        .or_else(|| items.iter().find_map(|i| i.job.clone()))
        .ok_or_else(|| bad("no BatchInput and no item with a Job".to_owned()))?;
    if items.iter().any(|i| i.job.as_ref().is_some_and(|j| *j != job)) {
        return Err(bad("items of one batch name different jobs".to_owned()));
    }
    if job.bucket != config.trail_bucket {
        return Err(bad(format!(
            "bucket '{}' is not the trail bucket this scanner reads ({})",
            job.bucket, config.trail_bucket
        )));
    }
    if job.run.is_empty()
        || job.run.len() > 80
        || !job
            .run
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(bad(format!(
            "run '{}' is not 1 to 80 letters, digits, '-', '_'",
            job.run
        )));
    }
    if !(60..=30 * 86_400).contains(&job.cooldown) {
        return Err(bad(format!("cooldown {} is not 60 s to 30 days", job.cooldown)));
    }
    let mut keys = Vec::new();
    let mut prefixes = Vec::new();
    for item in items {
        match (item.key, item.prefix) {
            (Some(k), None) if !k.is_empty() => keys.push(k),
            (None, Some(p)) if !p.is_empty() => prefixes.push(p),
            (None, None) => {}
            _ => return Err(bad("an item names a Key and a Prefix, or an empty one".to_owned())),
        }
    }
    if keys.is_empty() && prefixes.is_empty() {
        return Err(bad("no Key or Prefix to read".to_owned()));
    }
    Ok(Work { job, keys, prefixes })
}

/// The name of an item's partial: the same for a retry of the same batch, so a retry overwrites.
pub fn partial_name(work: &Work) -> String {
    let mut h = Sha256::new();
    for k in work.keys.iter().chain(&work.prefixes) {
        h.update(k.as_bytes());
        h.update(b"\n");
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{hex}.json")
}

/// What the handler works with, made by `main` for the life of the process.
pub struct Scanner {
    /// The S3 client (trail and partials).
    pub client: tokenwatch_aws::trail::S3Client,
    /// Where partials go.
    pub partials: PartialStore,
    /// The configuration.
    pub config: Config,
}

/// Reads one item and returns its result: counts and the partial, or the key it was written to.
pub async fn handle(payload: Value, scanner: &Scanner) -> Result<Value, ScanError> {
    let attempt = attempt_of(&payload);
    let work = work_of(payload, &scanner.config)?;
    let job = &work.job;
    let location = TrailLocation {
        bucket: job.bucket.clone(),
        prefix: String::new(),
    };
    let reader =
        TrailReader::from_client(scanner.client.clone(), location).downloads(scanner.config.downloads);
    let mut keys = work.keys.clone();
    for prefix in &work.prefixes {
        let listed = reader
            .keys_under(prefix)
            .await
            .map_err(|source| ScanError::List {
                bucket: job.bucket.clone(),
                prefix: prefix.clone(),
                source,
            })?;
        keys.extend(listed);
    }
    let window = Window {
        since: job.since,
        until: job.until,
    };
    let mut analyzer = Analyzer::collecting(window, job.cooldown);
    let started = std::time::Instant::now();
    let summary = reader
        .read_keys_into(&mut analyzer, keys, Arc::new(NoProgress))
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let (retryable, permanent): (Vec<ObjectError>, Vec<ObjectError>) =
        summary.errors.into_iter().partition(ObjectError::is_transient);
    if !retryable.is_empty() {
        let error = ScanError::Read {
            objects: summary.objects,
            errors: retryable,
        };
        warn!(attempt, error = %error, "Item failed; the map's Retry may run it again.");
        return Err(error);
    }
    let records = analyzer.records();
    let Some(mut partial) = analyzer.into_partial() else {
        return Err(ScanError::Request("the analyzer kept no partial".to_owned()));
    };
    partial.unread = Unread(permanent.into_iter().map(|e| (e.name, e.reason)).collect());
    let (failures, unread) = (partial.failures.len(), partial.unread.0.len());
    let text = partial.to_json();
    info!(
        objects = summary.objects,
        bytes = summary.bytes,
        records,
        failures,
        unread,
        seconds,
        attempt,
        partial_bytes = text.len(),
        "Item read."
    );
    let mut out = json!({
        "Objects": summary.objects,
        "Bytes": summary.bytes,
        "Records": records,
        "Failures": failures,
        "Unread": unread,
        "Seconds": seconds,
        "Attempt": attempt,
    });
    if text.len() <= scanner.config.inline_limit {
        out["Partial"] = serde_json::from_slice(&text).unwrap_or(Value::Null);
    } else {
        let key = scanner
            .partials
            .put_attempt(&job.run, &partial_name(&work), text, attempt)
            .await
            .map_err(ScanError::Write)?;
        out["PartialBucket"] = json!(scanner.partials.bucket);
        out["PartialKey"] = json!(key);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_lookup(|k| match k {
            "TRAIL_BUCKET" => Some("org-trail".into()),
            "PARTIALS_BUCKET" => Some("tw-work".into()),
            _ => None,
        })
        .unwrap()
    }

    fn job() -> Value {
        json!({"Bucket": "org-trail", "Since": 1_700_000_000, "Cooldown": 3600, "Run": "run-1"})
    }

    #[test]
    fn a_batch_of_keys_with_its_batch_input() {
        let w = work_of(
            json!({"Items": [{"Key": "AWSLogs/1/a.json.gz", "Size": 10}, {"Key": "AWSLogs/1/b.json.gz"}], "BatchInput": job()}),
            &config(),
        )
        .unwrap();
        assert_eq!(w.keys, ["AWSLogs/1/a.json.gz", "AWSLogs/1/b.json.gz"]);
        assert_eq!(
            (w.job.since, w.job.until, w.job.cooldown),
            (Some(1_700_000_000), None, 3600)
        );
    }

    #[test]
    fn one_item_carrying_its_job_or_a_prefix() {
        let w = work_of(json!({"Key": "k", "Job": job()}), &config()).unwrap();
        assert_eq!(w.keys, ["k"]);
        let w = work_of(
            json!({"Items": [{"Prefix": "AWSLogs/1/CloudTrail/us-east-1/2026/11/02/", "Job": job()}]}),
            &config(),
        )
        .unwrap();
        assert_eq!((w.keys.len(), w.prefixes.len()), (0, 1));
    }

    #[test]
    fn a_bad_item_is_refused_with_its_reason() {
        let cases = [
            (json!({"Items": [{"Key": "k"}]}), "no BatchInput"),
            (json!({"Items": [], "BatchInput": job()}), "no Key or Prefix"),
            (
                json!({"Items": [{"Key": "k"}], "BatchInput": {"Bucket": "other", "Cooldown": 3600, "Run": "r"}}),
                "not the trail bucket",
            ),
            (
                json!({"Items": [{"Key": "k"}], "BatchInput": {"Bucket": "org-trail", "Cooldown": 3600, "Run": "../x"}}),
                "run '../x'",
            ),
            (
                json!({"Items": [{"Key": "k"}], "BatchInput": {"Bucket": "org-trail", "Cooldown": 1, "Run": "r"}}),
                "cooldown 1",
            ),
            (
                json!({"Items": [{"Key": "k", "Prefix": "p"}], "BatchInput": job()}),
                "a Key and a Prefix",
            ),
            (json!([1, 2]), "not a scanner item"),
        ];
        for (payload, words) in cases {
            let e = work_of(payload, &config()).unwrap_err();
            assert!(e.to_string().contains(words), "{e}");
            let d: lambda_runtime::Diagnostic = e.into();
            assert_eq!(d.error_type, "InvalidItem");
        }
    }

    #[test]
    fn the_state_machine_s_batch_and_attempt_are_unwrapped() {
        let payload = json!({"Batch": {"Items": [{"Key": "k", "Job": job()}]}, "Attempt": 2});
        assert_eq!(attempt_of(&payload), 2);
        assert_eq!(work_of(payload, &config()).unwrap().keys, ["k"]);
        let bare = json!({"Key": "k", "Job": job()});
        assert_eq!(attempt_of(&bare), 0);
        assert_eq!(work_of(bare, &config()).unwrap().keys, ["k"]);
    }

    #[test]
    fn transient_faults_fail_the_item_as_retryable_and_name_the_first_few() {
        let errors: Vec<ObjectError> = (0..7)
            .map(|i| ObjectError::transient(format!("s3://org-trail/k{i}"), "s3:GetObject failed: SlowDown"))
            .collect();
        let e = ScanError::Read { objects: 50, errors };
        let said = e.to_string();
        assert!(
            said.starts_with(
                "7 of 50 objects met a transient fault: s3://org-trail/k0: s3:GetObject failed: SlowDown; "
            ),
            "{said}"
        );
        assert!(
            said.contains("k4") && !said.contains("k5") && said.ends_with("; and 2 more"),
            "{said}"
        );
        let d: lambda_runtime::Diagnostic = e.into();
        assert_eq!(d.error_type, "Retryable");
        let d: lambda_runtime::Diagnostic = ScanError::Write(PortError::permanent("AccessDenied")).into();
        assert_eq!(d.error_type, "WriteFailed", "a permanent fault is not retried");
    }

    #[test]
    fn a_retried_batch_writes_the_same_partial_and_another_batch_another() {
        let w = |keys: &[&str]| Work {
            job: serde_json::from_value(job()).unwrap(),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            prefixes: Vec::new(),
        };
        assert_eq!(partial_name(&w(&["a", "b"])), partial_name(&w(&["a", "b"])));
        assert_ne!(partial_name(&w(&["a", "b"])), partial_name(&w(&["a", "c"])));
        assert_ne!(partial_name(&w(&["ab"])), partial_name(&w(&["a", "b"])));
    }
}
