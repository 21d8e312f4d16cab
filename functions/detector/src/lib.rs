//! The tokenwatch detector Lambda: takes CloudTrail events from EventBridge (directly, or through an SQS
//! queue in batches) and scheduled sweeps, runs them through the core pipeline against the state table
//! and the alert topic, and reports which SQS messages must be retried (`batchItemFailures`), so one bad
//! message never re-drives its batch. `main.rs` only wires configuration, clients and this handler.

pub mod config;
pub mod emf;

use serde_json::{Value, json};
use tokenwatch_core::pipeline::{Detector, DropReason, Fault, Metrics, Outcome, schedule_rechecks};
use tokenwatch_core::ports::{AlertSink, PortError, RecheckQueue, StateStore};
use tokenwatch_core::time::Epoch;
use tracing::{error, info, warn};

/// Why an invocation failed as a whole (Lambda then retries it).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Some of the event's work hit a transient fault; nothing was lost, the retry finishes it.
    #[error("retry: {0}")]
    Retry(String),
    /// The scheduled sweep could not list the open incidents.
    #[error("sweep failed: {0}")]
    Sweep(#[from] PortError),
    /// The scheduled sweep failed on every open incident it looked at (one group's fault fails nothing
    /// but that group, which the next sweep tries again).
    #[error("sweep failed on all {groups} open incidents: {faults}")]
    SweepEveryGroup {
        /// Open incidents looked at.
        groups: usize,
        /// The faults, for the log.
        faults: String,
    },
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        // The type names what on-call sees in the Lambda console and the Errors alarm's logs.
        let error_type = match e {
            HandlerError::Retry(_) => "Retryable",
            HandlerError::Sweep(PortError::Transient { .. }) => "SweepRetryable",
            HandlerError::Sweep(PortError::Permanent { .. }) | HandlerError::SweepEveryGroup { .. } => {
                "SweepFailed"
            }
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// The kinds of payload the function is invoked with.
#[derive(Debug, PartialEq)]
pub enum Invocation<'a> {
    /// An SQS batch: each message's id and body (one EventBridge event).
    Sqs(Vec<(&'a str, &'a str)>),
    /// An EventBridge schedule: sweep open incidents.
    Scheduled,
    /// One EventBridge event delivered directly.
    Event,
}

/// Tells the payload's kind from its shape.
pub fn invocation(payload: &Value) -> Invocation<'_> {
    if let Some(records) = payload.get("Records").and_then(Value::as_array)
        && records
            .iter()
            .all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"))
        && !records.is_empty()
    {
        return Invocation::Sqs(
            records
                .iter()
                .map(|r| {
                    (
                        r.get("messageId").and_then(Value::as_str).unwrap_or(""),
                        r.get("body").and_then(Value::as_str).unwrap_or(""),
                    )
                })
                .collect(),
        );
    }
    if payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        return Invocation::Scheduled;
    }
    Invocation::Event
}

/// Handles one invocation at time `now`; the pages it holds are re-checked through `rechecks` when their
/// wait ends (`()`: at the sweep).
pub async fn handle<S: StateStore, A: AlertSink, Q: RecheckQueue>(
    payload: Value,
    detector: &Detector<'_, S, A>,
    rechecks: &Q,
    now: Epoch,
) -> Result<Value, HandlerError> {
    match invocation(&payload) {
        Invocation::Sqs(messages) => {
            let bodies: Vec<&[u8]> = messages.iter().map(|(_, body)| body.as_bytes()).collect();
            let mut out = detector.process(&bodies, now).await;
            let lost = schedule_rechecks(rechecks, &mut out.metrics, now).await;
            out.faults.extend(lost);
            log_drops(&out, |i| messages[i].0);
            for (i, refusal) in &out.refused {
                warn!(message_id = messages[*i].0, reason = %refusal, "Dropped a drill event.");
            }
            log_faults(&out.faults);
            emit(&out.metrics, &out.faults, now);
            let failures: Vec<Value> = out
                .retry
                .iter()
                .map(|&i| json!({ "itemIdentifier": messages[i].0 }))
                .collect();
            if !failures.is_empty() {
                warn!(
                    failed = failures.len(),
                    of = messages.len(),
                    "Messages left for retry after a fault."
                );
            }
            if !out.abandoned.is_empty() {
                let given_up: Vec<&str> = out.abandoned.iter().map(|&i| messages[i].0).collect();
                error!(
                    message_ids = ?given_up,
                    "Messages given up on after a permanent fault of their group (not retried)."
                );
            }
            Ok(json!({ "batchItemFailures": failures }))
        }
        Invocation::Scheduled => {
            let mut out = detector.sweep(now).await?;
            // A held page whose re-check was lost gets another one.
            let lost = schedule_rechecks(rechecks, &mut out.metrics, now).await;
            out.faults.extend(lost);
            log_faults(&out.faults);
            emit(&out.metrics, &out.faults, now);
            if out.all_failed() {
                let faults: Vec<String> = out.faults.iter().map(Fault::to_string).collect();
                return Err(HandlerError::SweepEveryGroup {
                    groups: out.groups,
                    faults: faults.join("; "),
                });
            }
            println!("{}", emf::sweep_line(now));
            Ok(json!({ "swept": true }))
        }
        Invocation::Event => {
            let bytes = payload.to_string();
            let mut out = detector.process(&[bytes.as_bytes()], now).await;
            let lost = schedule_rechecks(rechecks, &mut out.metrics, now).await;
            out.faults.extend(lost);
            let id = payload.get("id").and_then(Value::as_str).unwrap_or("");
            log_drops(&out, |_| id);
            log_faults(&out.faults);
            emit(&out.metrics, &out.faults, now);
            if !out.abandoned.is_empty() {
                error!(
                    event_id = id,
                    "Event given up on after a permanent fault of its group (not retried)."
                );
            }
            for (_, refusal) in &out.refused {
                warn!(event_id = id, reason = %refusal, "Dropped a drill event.");
            }
            if out.retry.is_empty() {
                Ok(json!({}))
            } else {
                let faults: Vec<String> = out.faults.iter().map(Fault::to_string).collect();
                Err(HandlerError::Retry(format!("event {id}: {}", faults.join("; "))))
            }
        }
    }
}

/// A line for every event or record dropped (each is counted in `EventsDropped` as well), naming the
/// message or event id that `id` gives for an event's index.
fn log_drops<'a>(out: &Outcome, id: impl Fn(usize) -> &'a str) {
    for (i, reason) in &out.unreadable {
        warn!(message_id = id(*i), %reason, "Skipped an event that is not a CloudTrail event.");
    }
    for (i, reason) in &out.skipped {
        match reason {
            DropReason::NotAFailureOrIssuance => info!(
                message_id = id(*i),
                reason = reason.as_str(),
                "Skipped a record that is neither an expiry failure nor an issuing call."
            ),
            _ => warn!(
                message_id = id(*i),
                reason = reason.as_str(),
                "Skipped a record that cannot be timed."
            ),
        }
    }
    if out.metrics.new_groups_capped > 0 {
        warn!(
            sessions = out.metrics.new_groups_capped,
            "A principal opened its hourly share of new groups: these sessions' failures went to its over-the-cap group."
        );
    }
}

/// Nothing but issuing calls recorded, without a fault, a drop or a decision.
fn only_issuances(metrics: &Metrics) -> bool {
    *metrics
        == Metrics {
            issuances: metrics.issuances,
            ..Metrics::default()
        }
}

/// A line per port fault, naming its group: a transient one is retried (the message, or the next sweep),
/// a permanent one also raises the `PermanentFaults` alarm.
fn log_faults(faults: &[Fault]) {
    for f in faults {
        let group = f.group.as_deref().unwrap_or("");
        if f.transient {
            warn!(group, fault = %f.message, "A transient fault; the work is tried again.");
        } else {
            error!(group, fault = %f.message, "A permanent fault; a retry cannot get past it.");
        }
    }
}

fn emit(metrics: &Metrics, faults: &[Fault], now: Epoch) {
    if only_issuances(metrics) && faults.is_empty() {
        // Most invocations are one issuing call each (the issuance rule's): a metric line apiece would
        // cost more in log ingestion than the rest of the call together. Lambda's own Invocations
        // metric counts them.
        return;
    }
    for line in emf::lines(metrics, faults, now) {
        // Embedded metric format must be a line of its own on stdout, outside the tracing layer.
        println!("{line}");
    }
    let published: u64 = metrics.alerts_published.values().sum();
    if published > 0 {
        info!(published, "Alerts published.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenwatch_core::incident::Policy;
    use tokenwatch_core::memory::{MemoryStore, RecordingSink};

    const NOW: Epoch = 1_793_610_900;

    fn failure(id: &str) -> String {
        json!({"version": "0", "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3", "account": "123456789012",
            "detail": {"eventTime": "2026-11-02T09:05:00Z", "eventSource": "s3.amazonaws.com", "eventName": "GetObject",
                "errorCode": "ExpiredToken", "eventID": id, "recipientAccountId": "123456789012",
                "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLE:job", "accessKeyId": "ASIAEXAMPLEKEY000001",
                    "arn": "arn:aws:sts::123456789012:assumed-role/etl/job",
                    "sessionContext": {"attributes": {"creationDate": "2026-11-02T08:00:00Z"}}}}})
        .to_string()
    }

    fn sqs(bodies: &[(&str, String)]) -> Value {
        json!({"Records": bodies.iter().map(|(id, b)| json!({"messageId": id, "eventSource": "aws:sqs", "body": b})).collect::<Vec<_>>()})
    }

    async fn with_detector<F, Fut>(f: F)
    where
        F: FnOnce(MemoryStore, RecordingSink) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        f(MemoryStore::default(), RecordingSink::default()).await;
    }

    #[tokio::test]
    async fn an_sqs_batch_reports_only_the_messages_to_retry() {
        with_detector(|store, sink| async move {
            let policy = Policy::default();
            let d = Detector {
                store: &store,
                sink: &sink,
                policy: &policy,
            };
            sink.fail_next(1);
            let batch = sqs(&[
                ("m1", failure("e1")),
                ("m2", "garbage".into()),
                ("m3", failure("e2")),
            ]);
            let out = handle(batch.clone(), &d, &(), NOW).await.unwrap();
            let ids: Vec<&str> = out["batchItemFailures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["itemIdentifier"].as_str().unwrap())
                .collect();
            assert_eq!(ids, ["m1", "m3"], "the unreadable m2 is dropped, not retried");
            let again = handle(sqs(&[("m1", failure("e1")), ("m3", failure("e2"))]), &d, &(), NOW)
                .await
                .unwrap();
            assert_eq!(again["batchItemFailures"], json!([]));
            assert_eq!(sink.notices().len(), 1);
        })
        .await;
    }

    #[tokio::test]
    async fn a_direct_event_fails_the_invocation_when_it_must_be_retried() {
        with_detector(|store, sink| async move {
            let policy = Policy::default();
            let d = Detector {
                store: &store,
                sink: &sink,
                policy: &policy,
            };
            store.fail_next(1);
            let event: Value = serde_json::from_str(&failure("e9")).unwrap();
            assert!(matches!(
                handle(event.clone(), &d, &(), NOW).await,
                Err(HandlerError::Retry(_))
            ));
            assert!(handle(event, &d, &(), NOW).await.is_ok());
            assert_eq!(sink.notices().len(), 1);
        })
        .await;
    }

    #[tokio::test]
    async fn a_permanent_fault_of_one_group_no_longer_sends_its_messages_to_the_dead_letter_queue() {
        with_detector(|store, sink| async move {
            let policy = Policy::default();
            let d = Detector {
                store: &store,
                sink: &sink,
                policy: &policy,
            };
            store.break_group(
                &tokenwatch_core::stats::GroupKey {
                    account: Some("123456789012".into()),
                    principal: Some("etl".into()),
                    session: Some("job".into()),
                },
                false,
            );
            let batch = sqs(&[
                ("m1", failure("e1")),
                ("m2", failure("o1").replace("job", "other")),
                ("m3", failure("e2")),
            ]);
            let out = handle(batch, &d, &(), NOW).await.unwrap();
            assert_eq!(
                out["batchItemFailures"],
                json!([]),
                "m1 and m3 are given up on, not retried five times"
            );
            assert_eq!(sink.notices().len(), 1, "the other group paged");
        })
        .await;
    }

    #[tokio::test]
    async fn the_sweep_fails_the_invocation_only_when_every_group_failed() {
        with_detector(|store, sink| async move {
            let policy = Policy::default();
            let d = Detector {
                store: &store,
                sink: &sink,
                policy: &policy,
            };
            let other = failure("o1").replace("job", "other");
            let out = handle(sqs(&[("m1", failure("e1")), ("m2", other)]), &d, &(), NOW)
                .await
                .unwrap();
            assert_eq!(out["batchItemFailures"], json!([]));
            assert_eq!(sink.notices().len(), 2, "both paged");
            let job = tokenwatch_core::stats::GroupKey {
                account: Some("123456789012".into()),
                principal: Some("etl".into()),
                session: Some("job".into()),
            };
            store.break_group(&job, false);
            let schedule = json!({"detail-type": "Scheduled Event", "source": "aws.events"});
            let quiet = NOW + 3600;
            assert_eq!(
                handle(schedule.clone(), &d, &(), quiet).await.unwrap(),
                json!({"swept": true}),
                "one group's fault fails nothing else"
            );
            assert_eq!(sink.notices().len(), 3, "the other group's resolved notice");
            let err = handle(schedule, &d, &(), quiet + 300).await.unwrap_err();
            assert!(
                matches!(err, HandlerError::SweepEveryGroup { groups: 1, .. }),
                "{err}"
            );
            assert_eq!(lambda_runtime::Diagnostic::from(err).error_type, "SweepFailed");
        })
        .await;
    }

    #[tokio::test]
    async fn a_held_page_is_sent_back_to_the_queue_and_pages_when_the_re_check_arrives() {
        with_detector(|store, sink| async move {
            let policy = Policy::default();
            let d = Detector {
                store: &store,
                sink: &sink,
                policy: &policy,
            };
            let queue = tokenwatch_core::memory::MemoryRechecks::default();
            // At the lease boundary (issued 08:00, a one-hour lease): held for the refresh window.
            let boundary = failure("b1").replace("09:05:00", "08:59:30");
            let first = tokenwatch_core::time::parse_time("2026-11-02T08:59:30Z").unwrap();
            let out = handle(sqs(&[("m1", boundary)]), &d, &queue, first + 5)
                .await
                .unwrap();
            assert_eq!(out["batchItemFailures"], json!([]));
            assert!(sink.notices().is_empty(), "held");
            let end = *queue.times().first().expect("a re-check");
            let recheck = queue.due(end);
            let out = handle(sqs(&[("r1", recheck[0].clone())]), &d, &queue, end)
                .await
                .unwrap();
            assert_eq!(out["batchItemFailures"], json!([]));
            assert_eq!(sink.notices().len(), 1, "paged by the re-check");
        })
        .await;
    }

    #[test]
    fn an_invocation_that_only_recorded_issuing_calls_prints_no_metric_line() {
        let quiet = Metrics {
            issuances: 1,
            ..Metrics::default()
        };
        assert!(only_issuances(&quiet));
        let held = Metrics {
            issuances: 1,
            alerts_withheld: [(tokenwatch_core::incident::Withheld::HeldForRefreshWindow, 1)].into(),
            ..Metrics::default()
        };
        assert!(!only_issuances(&held), "a decision it took is counted");
        let faulted = Metrics {
            issuances: 1,
            transient_faults: 1,
            ..Metrics::default()
        };
        assert!(!only_issuances(&faulted));
    }

    #[test]
    fn payload_kinds_are_told_apart() {
        assert!(matches!(invocation(&sqs(&[("m", "{}".into())])), Invocation::Sqs(v) if v.len() == 1));
        assert_eq!(
            invocation(&json!({"detail-type": "Scheduled Event", "source": "aws.events"})),
            Invocation::Scheduled
        );
        assert_eq!(
            invocation(&json!({"detail-type": "AWS API Call via CloudTrail"})),
            Invocation::Event
        );
        assert_eq!(invocation(&json!({"Records": []})), Invocation::Event);
    }
}
