//! Events per second through the detector with the real adapters (DynamoDB and SNS over HTTP on local
//! emulators), and what each failure event costs in DynamoDB and SNS calls. The emulators bound the
//! absolute rate (each request is a Python round trip on one core shared with this process); the call
//! counts are what real AWS would see.
//!
//!     scripts/emulators.sh start && source target/emulators/env && cargo bench -p tokenwatch-detector --bench emulated

// The sample event is one large json! literal.
#![recursion_limit = "256"]

use std::time::Instant;

use serde_json::json;
use tokenwatch_aws::{DynamoStore, SdkOptions, SnsAlertSink, create_table, sdk_config};
use tokenwatch_core::incident::Policy;
use tokenwatch_core::pipeline::Detector;
use tokenwatch_core::time::format_time;

const BASE: i64 = 1_793_606_400; // 2026-11-02T08:00:00Z

fn failure(i: usize, group: usize, tag: &str) -> Vec<u8> {
    let t = BASE + 3700 + (i as i64 % 3000);
    json!({"version": "0", "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3", "account": "123456789012",
        "detail": {"eventVersion": "1.09", "eventTime": format_time(t), "eventSource": "s3.amazonaws.com",
            "eventName": "GetObject", "sourceIPAddress": "10.1.2.3", "userAgent": "Boto3/1.34.0 Botocore/1.34.0",
            "errorCode": "ExpiredToken", "eventID": format!("{tag}-{group}-{i}"), "recipientAccountId": "123456789012",
            "userIdentity": {"type": "AssumedRole", "principalId": format!("AROAEXAMPLE:job-{group}"),
                "arn": format!("arn:aws:sts::123456789012:assumed-role/etl-role/job-{group}"),
                "accessKeyId": format!("ASIABENCH{group:011}"),
                "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::123456789012:role/etl-role"},
                    "attributes": {"creationDate": format_time(BASE)}}}}})
    .to_string()
    .into_bytes()
}

/// A successful `AssumeRole` of role `role` issuing session `n` (each its own session and group) at `t`.
fn issuance(n: usize, role: usize, t: i64) -> Vec<u8> {
    json!({"version": "0", "detail-type": "AWS API Call via CloudTrail", "source": "aws.sts", "account": "123456789012",
        "detail": {"eventVersion": "1.08", "eventTime": format_time(t), "eventSource": "sts.amazonaws.com",
            "eventName": "AssumeRole", "eventID": format!("issue-{role}-{n}"), "recipientAccountId": "123456789012",
            "userIdentity": {"type": "AWSService", "invokedBy": "ecs-tasks.amazonaws.com"},
            "requestParameters": {"roleArn": format!("arn:aws:iam::123456789012:role/svc-{role}"),
                "roleSessionName": format!("task-{n}")},
            "responseElements": {"credentials": {"accessKeyId": format!("ASIAISSUE{role:03}{n:08}"),
                "expiration": format_time(t + 3600)}}}})
    .to_string()
    .into_bytes()
}

/// Failure `n` of session `job-<session>` of one role at `t`, its session issued at `issued`.
fn interleaved(session: usize, n: usize, t: i64, issued: i64) -> Vec<u8> {
    json!({"version": "0", "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3", "account": "123456789012",
        "detail": {"eventVersion": "1.09", "eventTime": format_time(t), "eventSource": "s3.amazonaws.com",
            "eventName": "GetObject", "errorCode": "ExpiredToken", "eventID": format!("interleaved-{session}-{n}"),
            "recipientAccountId": "123456789012", "userAgent": "Boto3/1.34.0 Botocore/1.34.0",
            "userIdentity": {"type": "AssumedRole", "principalId": format!("AROAEXAMPLE:job-{session}"),
                "arn": format!("arn:aws:sts::123456789012:assumed-role/etl-role/job-{session}"),
                "accessKeyId": format!("ASIAINTERLEAVED{session:05}"),
                "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::123456789012:role/etl-role"},
                    "attributes": {"creationDate": format_time(issued)}}}}})
    .to_string()
    .into_bytes()
}

fn wall() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

async fn run(name: &str, endpoint: &str, events: Vec<Vec<u8>>, tasks: usize) {
    run_at(name, endpoint, events, tasks, BASE + 9000, 10).await;
}

/// `batch` events per `process` call: 10 as the queue hands them over, 1 as the issuance rule invokes
/// the function (one event per invocation).
async fn run_at(name: &str, endpoint: &str, events: Vec<Vec<u8>>, tasks: usize, now: i64, batch: usize) {
    let sdk = sdk_config(&SdkOptions::emulator(endpoint)).await;
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let table = format!("bench-{}-{run}", std::process::id());
    create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .expect("table");
    let topic = aws_sdk_sns::Client::new(&sdk)
        .create_topic()
        .name(&table)
        .send()
        .await
        .expect("topic");
    let store = DynamoStore::new(&sdk, &table);
    let sink = SnsAlertSink::new(&sdk, topic.topic_arn().expect("arn"), Default::default());
    let policy = Policy::default();
    let detector = Detector {
        store: &store,
        sink: &sink,
        policy: &policy,
    };
    let chunks: Vec<&[Vec<u8>]> = events.chunks(batch).collect();
    let per_task = chunks.len().div_ceil(tasks);
    let start = Instant::now();
    let work = chunks.chunks(per_task).map(|mine| {
        let detector = &detector;
        async move {
            for chunk in mine {
                let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
                let mut pending = refs;
                for _ in 0..20 {
                    let out = detector.process(&pending, now).await;
                    if out.retry.is_empty() {
                        break;
                    }
                    pending = out.retry.iter().map(|&i| pending[i]).collect();
                }
            }
        }
    });
    let handles: Vec<_> = work.map(Box::pin).collect();
    join_all(handles).await;
    let secs = start.elapsed().as_secs_f64();
    let per_event = |x: f64| x / events.len() as f64;
    println!(
        "| {name:<52} | {:>6} | {tasks:>5} | {:>8.0} | {:>10.3} | {:>11.2} |",
        events.len(),
        events.len() as f64 / secs,
        per_event(store.calls() as f64),
        per_event(store.write_units()),
    );
}

/// Drives the futures concurrently on this task: their requests overlap on the wire.
async fn join_all<F: std::future::Future<Output = ()> + Unpin>(mut futures: Vec<F>) {
    std::future::poll_fn(|cx| {
        futures.retain_mut(|f| std::pin::Pin::new(f).poll(cx).is_pending());
        if futures.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

fn endpoint(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: scripts/emulators.sh start && source target/emulators/env")
    })
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ministack = endpoint("TOKENWATCH_MINISTACK_ENDPOINT");
    let moto = endpoint("TOKENWATCH_MOTO_ENDPOINT");
    println!(
        "| workload (batches of 10)                             | events | tasks | events/s | DynamoDB calls/event | write units/event |"
    );
    println!(
        "|------------------------------------------------------|--------|-------|----------|------------|-------------|"
    );
    runtime.block_on(async {
        let storm: Vec<Vec<u8>> = (0..3000).map(|i| failure(i, 0, "a")).collect();
        run("storm, one session, ministack", &ministack, storm.clone(), 1).await;
        let twice: Vec<Vec<u8>> = storm.iter().chain(storm.iter()).cloned().collect();
        run("storm delivered twice, 4 tasks, ministack", &ministack, twice, 4).await;
        let spread: Vec<Vec<u8>> = (0..3000).map(|i| failure(i, i % 50, "b")).collect();
        run(
            "50 sessions interleaved, 4 tasks, ministack",
            &ministack,
            spread,
            4,
        )
        .await;
        // Issue 14, item 3: one failure of each of ten sessions per batch, 50 sessions (as in
        // tests/emulated.rs), dated against the clock so that the emulator keeps the groups.
        let now = wall();
        let issued = now - 3 * 3600;
        let interleaved: Vec<Vec<u8>> = (0..2000)
            .map(|i| interleaved(i % 50, i / 50, issued + 3700 + (i / 50) as i64, issued))
            .collect();
        run_at(
            "50 sessions interleaved, 1 task, ministack",
            &ministack,
            interleaved,
            1,
            now,
            10,
        )
        .await;
        // Issue 14, item 4: successful issuing calls, each a new session (most of what an account sends).
        let issuances: Vec<Vec<u8>> = (0..1000).map(|n| issuance(n, n % 5, now - 60)).collect();
        run_at(
            "issuing calls, a new session each, ministack",
            &ministack,
            issuances.clone(),
            1,
            now,
            10,
        )
        .await;
        // The issuance rule's path: EventBridge invokes the function with one event.
        run_at(
            "issuing calls, one per invocation, ministack",
            &ministack,
            issuances.clone(),
            1,
            now,
            1,
        )
        .await;
        run_at(
            "issuing calls, one per invocation, moto",
            &moto,
            issuances.clone(),
            1,
            now,
            1,
        )
        .await;
        // Each delivered twice (a redelivery, or the other account's copy of a cross-account call).
        let twice: Vec<Vec<u8>> = issuances.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
        run_at(
            "issuing calls delivered twice, one per invocation, ministack",
            &ministack,
            twice,
            1,
            now,
            1,
        )
        .await;
        // One session name re-issued over and over (an instance's or a job's role): its group's issue
        // times grow the group item, and a write is billed per KB of the item.
        let busy: Vec<Vec<u8>> = (0..300)
            .map(|n| {
                let e = issuance(n, 0, now - 3600 + n as i64);
                let text = String::from_utf8(e).expect("utf-8");
                text.replace(&format!("\"task-{n}\""), "\"task\"").into_bytes()
            })
            .collect();
        run_at(
            "issuing calls, one session name re-issued 300 times, ministack",
            &ministack,
            busy,
            1,
            now,
            1,
        )
        .await;
        let storm_moto: Vec<Vec<u8>> = (0..1000).map(|i| failure(i, 0, "c")).collect();
        run("storm, one session, moto", &moto, storm_moto, 1).await;
    });
}
