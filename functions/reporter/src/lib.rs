//! The tokenwatch reporter Lambda: reads the detector's state table and either publishes a digest of it
//! to the alert topic (on its EventBridge schedule, with `kind=digest` so that pager subscriptions skip
//! it) or answers a direct invocation whose payload is a query with the report document, so a stack can
//! be asked what it knows with `aws lambda invoke` and no CLI. `main.rs` only wires configuration,
//! clients and this handler.

pub mod config;

use serde_json::{Value, json};
use tokenwatch_core::Window;
use tokenwatch_core::notice::{DigestNotice, Notice};
use tokenwatch_core::ports::{AlertSink, NearMissStore, PortError, StateStore};
use tokenwatch_core::query::{Query, report_with_near_misses};
use tokenwatch_core::time::{Epoch, format_time};
use tokenwatch_render::{Document, Made};
use tracing::info;

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The payload is neither a schedule nor a query; the message names the field or value at fault.
    #[error(
        "not a query ({0}); expected a JSON object with any of since (24h, 7d, an ISO-8601 time or epoch \
         seconds), principal, verdict, min_severity"
    )]
    Query(String),
    /// The state table could not be read.
    #[error("reading the state table: {0}")]
    Store(#[source] PortError),
    /// The digest could not be published.
    #[error("publishing the digest: {0}")]
    Publish(#[source] PortError),
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        // The type is what `aws lambda invoke` shows as FunctionError's errorType: the caller can tell
        // its own mistake from a fault worth retrying.
        let error_type = match &e {
            HandlerError::Query(_) => "InvalidQuery",
            HandlerError::Store(e) | HandlerError::Publish(e) if e.is_transient() => "Retryable",
            HandlerError::Store(_) => "StateTableFailed",
            HandlerError::Publish(_) => "PublishFailed",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// What the handler works with, borrowed from `main` for the life of the process.
pub struct Reporter<'a, S, A> {
    /// The detector's state table.
    pub store: &'a S,
    /// The alert topic.
    pub sink: &'a A,
    /// What a scheduled digest covers.
    pub digest: &'a Query,
}

/// The reporter's metrics (the template alarms on them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// A scheduled digest was published.
    DigestsPublished,
    /// A scheduled digest could not be made or published.
    DigestsFailed,
}

impl Metric {
    /// The metric's name in CloudWatch.
    pub fn name(self) -> &'static str {
        match self {
            Metric::DigestsPublished => "DigestsPublished",
            Metric::DigestsFailed => "DigestsFailed",
        }
    }
}

/// An EventBridge schedule's event, rather than a query. Both fields are checked: `source` alone is
/// reserved to AWS, so no caller can make a query look like a schedule by accident.
pub fn is_schedule(payload: &Value) -> bool {
    payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
        && payload.get("source").and_then(Value::as_str) == Some("aws.events")
}

/// Handles one invocation at time `now`.
pub async fn handle<S: StateStore + NearMissStore, A: AlertSink>(
    payload: Value,
    reporter: &Reporter<'_, S, A>,
    now: Epoch,
) -> Result<Value, HandlerError> {
    if is_schedule(&payload) {
        return digest(reporter, now).await;
    }
    let query: Query = match payload {
        // `aws lambda invoke` without --payload, and the console's empty test event.
        Value::Null => Query::default(),
        // serde would read an array as the fields in order: `["24h"]` must not pass for `since`.
        Value::Object(_) => {
            serde_json::from_value(payload).map_err(|e| HandlerError::Query(e.to_string()))?
        }
        other => return Err(HandlerError::Query(format!("a JSON {}", kind(&other)))),
    };
    let report = report_with_near_misses(reporter.store, &query, now)
        .await
        .map_err(HandlerError::Store)?;
    info!(
        since = %format_time(query.since_at(now)),
        groups = report.findings.len(),
        "Report answered."
    );
    let made = Made {
        at: now,
        window: Window {
            since: Some(query.since_at(now)),
            until: Some(now),
        },
    };
    Ok(serde_json::to_value(Document::of(&report, made)).expect("a report serializes"))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Publishes the digest of `since..now`, also when there is nothing in it: a quiet digest is how
/// on-call knows the stack is alive.
///
/// Each attempt also prints a `DigestsPublished` or `DigestsFailed` metric line (EMF): the template alarms
/// on failed digests only, so that a person's mistyped query, also a function error, pages nobody.
async fn digest<S: StateStore + NearMissStore, A: AlertSink>(
    reporter: &Reporter<'_, S, A>,
    now: Epoch,
) -> Result<Value, HandlerError> {
    let outcome = publish_digest(reporter, now).await;
    let metric = if outcome.is_ok() {
        Metric::DigestsPublished
    } else {
        Metric::DigestsFailed
    };
    println!(
        "{}",
        tokenwatch_process::emf::metric_line(now, metric.name(), None, 1)
    );
    outcome
}

async fn publish_digest<S: StateStore + NearMissStore, A: AlertSink>(
    reporter: &Reporter<'_, S, A>,
    now: Epoch,
) -> Result<Value, HandlerError> {
    let since = reporter.digest.since_at(now);
    let report = report_with_near_misses(reporter.store, reporter.digest, now)
        .await
        .map_err(HandlerError::Store)?;
    let groups = report.findings.len();
    let near_misses = report.near_misses.workloads.len();
    let notice = Notice::Digest(DigestNotice {
        report,
        since,
        until: now,
    });
    reporter
        .sink
        .publish(&notice)
        .await
        .map_err(HandlerError::Publish)?;
    let alert_id = notice.alert_id();
    info!(%alert_id, groups, near_misses, "Digest published.");
    Ok(json!({ "published": alert_id, "groups": groups, "near_miss_workloads": near_misses }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenwatch_core::Severity;
    use tokenwatch_core::incident::Policy;
    use tokenwatch_core::memory::{MemoryStore, RecordingSink};
    use tokenwatch_core::pipeline::Detector;
    use tokenwatch_core::time::parse_time;

    /// Two groups: a stale cache (high) of `etl` and a clock skew (low) of `web`.
    fn failure(id: &str, role: &str, created: &str, at: &str, code: &str) -> Vec<u8> {
        json!({"version": "0", "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3", "account": "123456789012",
            "detail": {"eventTime": at, "eventSource": "s3.amazonaws.com", "eventName": "GetObject",
                "errorCode": code, "eventID": id, "recipientAccountId": "123456789012",
                "userIdentity": {"type": "AssumedRole", "principalId": format!("AROAEXAMPLE:{role}"),
                    "accessKeyId": format!("ASIA{}EXAMPLE0001", role.to_uppercase()),
                    "arn": format!("arn:aws:sts::123456789012:assumed-role/{role}/job"),
                    "sessionContext": {"attributes": {"creationDate": created}}}}})
        .to_string()
        .into_bytes()
    }

    const NOW: &str = "2026-11-02T10:00:00Z";

    async fn filled_store() -> MemoryStore {
        let store = MemoryStore::default();
        let sink = RecordingSink::default();
        let policy = Policy::default();
        let detector = Detector {
            store: &store,
            sink: &sink,
            policy: &policy,
        };
        let events = [
            failure(
                "e1",
                "etl",
                "2026-11-02T08:00:00Z",
                "2026-11-02T09:00:20Z",
                "ExpiredToken",
            ),
            failure(
                "e2",
                "etl",
                "2026-11-02T08:00:00Z",
                "2026-11-02T09:05:00Z",
                "ExpiredToken",
            ),
            failure(
                "e3",
                "web",
                "2026-11-02T09:10:00Z",
                "2026-11-02T09:20:00Z",
                "RequestExpired",
            ),
        ];
        let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        let out = detector
            .process(&refs, parse_time("2026-11-02T09:30:00Z").unwrap())
            .await;
        assert!(out.retry.is_empty() && out.unreadable.is_empty(), "{out:?}");
        store
    }

    fn reporter<'a>(
        store: &'a MemoryStore,
        sink: &'a RecordingSink,
        digest: &'a Query,
    ) -> Reporter<'a, MemoryStore, RecordingSink> {
        Reporter { store, sink, digest }
    }

    /// What the sink was given, as SNS would publish it.
    fn published(sink: &RecordingSink) -> Vec<tokenwatch_render::sns::Message> {
        sink.notices()
            .iter()
            .map(|n| tokenwatch_render::sns::render(n, &Default::default()))
            .collect()
    }

    fn schedule() -> Value {
        json!({"version": "0", "id": "d1", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": NOW, "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/digest"], "detail": {}})
    }

    fn verdicts(report: &Value) -> Vec<&str> {
        report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["verdict"].as_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_schedule_publishes_one_digest_of_the_window() {
        let store = filled_store().await;
        let sink = RecordingSink::default();
        let digest = Query::default();
        let r = reporter(&store, &sink, &digest);
        let now = parse_time(NOW).unwrap();
        let out = handle(schedule(), &r, now).await.unwrap();
        let published = published(&sink);
        assert_eq!(published.len(), 1);
        let alert = &published[0];
        assert_eq!(
            out,
            json!({"published": alert.alert_id, "groups": 2, "near_miss_workloads": 0})
        );
        assert_eq!(alert.attributes.get("kind").map(String::as_str), Some("digest"));
        assert!(
            !alert.attributes.contains_key("severity"),
            "{:?}",
            alert.attributes
        );
        assert!(alert.subject.contains("2 groups"), "{}", alert.subject);
    }

    #[tokio::test]
    async fn a_quiet_day_still_gets_its_digest() {
        let (store, sink) = (MemoryStore::default(), RecordingSink::default());
        let digest = Query::default();
        let r = reporter(&store, &sink, &digest);
        let out = handle(schedule(), &r, parse_time(NOW).unwrap()).await.unwrap();
        assert_eq!(out["groups"], 0);
        let published = published(&sink);
        assert_eq!(published.len(), 1);
        assert!(
            published[0].subject.contains("0 open, 0 groups"),
            "{}",
            published[0].subject
        );
        assert_eq!(published[0].attributes["kind"], "digest");
    }

    #[tokio::test]
    async fn the_digest_lists_only_what_reaches_its_severity() {
        let store = filled_store().await;
        let sink = RecordingSink::default();
        let digest = Query {
            min_severity: Some(Severity::High),
            ..Query::default()
        };
        let r = reporter(&store, &sink, &digest);
        let out = handle(schedule(), &r, parse_time(NOW).unwrap()).await.unwrap();
        assert_eq!(out["groups"], 1);
    }

    #[tokio::test]
    async fn a_query_answers_the_report_and_publishes_nothing() {
        let store = filled_store().await;
        let sink = RecordingSink::default();
        let digest = Query::default();
        let r = reporter(&store, &sink, &digest);
        let now = parse_time(NOW).unwrap();
        let all = handle(json!({}), &r, now).await.unwrap();
        assert_eq!(verdicts(&all), ["stale-cache", "clock-skew"]);
        assert_eq!(all["failures"], 3);
        assert!(all["groups"][0]["incident"]["id"].is_string(), "{all}");
        assert_eq!(handle(Value::Null, &r, now).await.unwrap(), all);
        let stale = handle(json!({"verdict": "stale-cache", "since": "7d"}), &r, now)
            .await
            .unwrap();
        assert_eq!(verdicts(&stale), ["stale-cache"]);
        assert_eq!(
            stale["groups"][0]["principal"],
            "arn:aws:iam::123456789012:role/etl"
        );
        let web = handle(json!({"principal": "web"}), &r, now).await.unwrap();
        assert_eq!(verdicts(&web), ["clock-skew"]);
        // Only failures since an hour before the last one.
        let later = handle(json!({"since": "2026-11-02T09:15:00Z"}), &r, now)
            .await
            .unwrap();
        assert!(verdicts(&later).contains(&"clock-skew"));
        assert!(sink.notices().is_empty());
    }

    #[tokio::test]
    async fn a_bad_query_fails_naming_the_field_or_value() {
        let (store, sink) = (MemoryStore::default(), RecordingSink::default());
        let digest = Query::default();
        let r = reporter(&store, &sink, &digest);
        let cases = [
            (json!({"sinse": "24h"}), "sinse"),
            (json!({"verdict": "stale"}), "stale"),
            (json!({"since": "yesterday-ish"}), "yesterday-ish"),
            (json!({"min_severity": "urgent"}), "urgent"),
            (json!(["24h"]), "a JSON array"),
            (json!("7d"), "a JSON string"),
            // A schedule from anywhere but EventBridge is not one: its fields are not a query's.
            (
                json!({"detail-type": "Scheduled Event", "source": "my.app"}),
                "detail-type",
            ),
        ];
        for (payload, words) in cases {
            let e = handle(payload.clone(), &r, 1_800_000_000).await.unwrap_err();
            let diagnostic = lambda_runtime::Diagnostic::from(e);
            assert_eq!(diagnostic.error_type, "InvalidQuery", "{payload}");
            assert!(
                diagnostic.error_message.contains(words)
                    && diagnostic.error_message.starts_with("not a query"),
                "{payload}: {}",
                diagnostic.error_message
            );
        }
        assert!(sink.notices().is_empty());
    }

    #[tokio::test]
    async fn a_failed_publish_fails_the_invocation_so_the_schedule_retries_it() {
        let (store, sink) = (MemoryStore::default(), RecordingSink::default());
        let digest = Query::default();
        let r = reporter(&store, &sink, &digest);
        sink.fail_next(1);
        let e = handle(schedule(), &r, 1_800_000_000).await.unwrap_err();
        assert_eq!(lambda_runtime::Diagnostic::from(e).error_type, "Retryable");
        assert!(handle(schedule(), &r, 1_800_000_000).await.is_ok());
        assert_eq!(sink.notices().len(), 1);
    }

    /// A boto3 session of `role` copied out of its provider, last used 3 minutes before its lease end.
    fn near_miss(key: &str, role: &str, last_use: Epoch) -> tokenwatch_core::nearmiss::SessionNearMiss {
        use tokenwatch_core::assess::Lease;
        use tokenwatch_core::nearmiss::{Occurrence, SessionNearMiss};
        use tokenwatch_core::{Client, CredentialSource, LeaseSource};
        let issued_at = last_use - 57 * 60;
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
                lease_end: issued_at + 3600,
                near_miss: tokenwatch_core::nearmiss::near_miss(last_use, Client::Boto3, issued_at + 3600)
                    .unwrap(),
            },
        }
    }

    #[tokio::test]
    async fn the_digest_has_a_line_per_near_miss_workload_of_its_day_and_pages_nobody() {
        let store = filled_store().await;
        let now = parse_time(NOW).unwrap();
        store
            .record_near_misses(
                &[
                    near_miss("ASIANM1", "nightly-etl", now - 3600),
                    near_miss("ASIANM2", "weekly-etl", now - 3 * 86_400),
                ],
                now,
            )
            .await
            .unwrap();
        let sink = RecordingSink::default();
        let digest = Query::default();
        let r = reporter(&store, &sink, &digest);
        let out = handle(schedule(), &r, now).await.unwrap();
        assert_eq!(
            (out["groups"].as_u64(), out["near_miss_workloads"].as_u64()),
            (Some(2), Some(1))
        );
        let alerts = published(&sink);
        let [alert] = &alerts[..] else {
            panic!("{alerts:?}")
        };
        assert!(!alert.subject.contains("near"), "{}", alert.subject);
        let message: Value = serde_json::from_str(&alert.message).unwrap();
        let email = message["email"].as_str().unwrap();
        let lines: Vec<&str> = email.lines().filter(|l| l.contains("near-miss")).collect();
        assert_eq!(
            lines,
            [
                "LOW near-miss 123456789012 nightly-etl/nightly: 1 session, 1 near miss, last 2026-11-02T09:00:00Z; used 3 min before expiry; botocore refreshes 10–15 min before"
            ],
            "{email}"
        );
        assert!(
            !email.contains("weekly-etl"),
            "older than the digest's day: {email}"
        );
        let machine: Value = serde_json::from_str(message["sqs"].as_str().unwrap()).unwrap();
        assert_eq!(machine["near_misses"][0]["session_pattern"], "nightly");
        // A digest without near misses has no such section.
        let quiet = MemoryStore::default();
        let sink = RecordingSink::default();
        handle(schedule(), &reporter(&quiet, &sink, &digest), now)
            .await
            .unwrap();
        let message: Value = serde_json::from_str(&published(&sink)[0].message).unwrap();
        assert!(!message["email"].as_str().unwrap().contains("Near misses"));
        assert!(message["sqs"].as_str().unwrap().find("near_misses").is_none());
    }
}
