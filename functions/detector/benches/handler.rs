//! Handler CPU per event without network: the whole pipeline (decode, classify, record, decide, render)
//! over the in-memory store and sink, on one thread. Target: ≤ 20 µs per event.
//!
//!     cargo bench -p tokenwatch-detector --bench handler

// The sample event is one large json! literal.
#![recursion_limit = "256"]

use std::time::Instant;

use serde_json::json;
use tokenwatch_core::incident::Policy;
use tokenwatch_core::memory::{MemoryStore, RecordingSink};
use tokenwatch_core::pipeline::Detector;
use tokenwatch_core::time::format_time;

const BASE: i64 = 1_793_606_400; // 2026-11-02T08:00:00Z

fn failure(i: usize, group: usize) -> Vec<u8> {
    let t = BASE + 3700 + (i as i64 % 3000);
    json!({"version": "0", "id": format!("eb-{i}"), "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3",
        "account": "123456789012", "time": format_time(t), "region": "us-east-1", "resources": [],
        "detail": {"eventVersion": "1.09", "eventTime": format_time(t), "eventSource": "s3.amazonaws.com",
            "eventName": "GetObject", "awsRegion": "us-east-1", "sourceIPAddress": "10.1.2.3",
            "userAgent": "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.1 md/arch#x86_64 lang/python#3.12 Botocore/1.34.0",
            "errorCode": "ExpiredToken", "errorMessage": "The provided token has expired.",
            "requestParameters": {"bucketName": "data-lake-raw", "key": format!("part-{i}.parquet")},
            "responseElements": null, "requestID": format!("REQ{i:016}"), "eventID": format!("bench-{group}-{i}"),
            "readOnly": true, "eventType": "AwsApiCall", "managementEvent": false, "recipientAccountId": "123456789012",
            "eventCategory": "Data",
            "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": "data-lake-raw.s3.us-east-1.amazonaws.com"},
            "userIdentity": {"type": "AssumedRole", "principalId": format!("AROAEXAMPLE:job-{group}"),
                "arn": format!("arn:aws:sts::123456789012:assumed-role/etl-role/job-{group}"),
                "accountId": "123456789012", "accessKeyId": format!("ASIABENCH{group:011}"),
                "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE",
                    "arn": "arn:aws:iam::123456789012:role/etl-role", "accountId": "123456789012", "userName": "etl-role"},
                    "webIdFederationData": {}, "attributes": {"creationDate": format_time(BASE), "mfaAuthenticated": "false"}}}}})
    .to_string()
    .into_bytes()
}

fn measure(name: &str, events: &[Vec<u8>], batch: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (store, sink, policy) = (
        MemoryStore::default(),
        RecordingSink::default(),
        Policy::default(),
    );
    let detector = Detector {
        store: &store,
        sink: &sink,
        policy: &policy,
    };
    let start = Instant::now();
    runtime.block_on(async {
        for chunk in events.chunks(batch) {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            detector.process(&refs, BASE + 9000).await;
        }
    });
    let elapsed = start.elapsed();
    let per_event = elapsed.as_secs_f64() * 1e6 / events.len() as f64;
    println!(
        "| {name:<52} | {:>7} | {:>5} | {per_event:>8.2} | {:>9.0} | {:>6} | {:>6} |",
        events.len(),
        batch,
        events.len() as f64 / elapsed.as_secs_f64(),
        store.calls(),
        sink.notices().len()
    );
}

fn main() {
    println!(
        "| workload                                             | events  | batch | µs/event | events/s  | store calls | alerts |"
    );
    println!(
        "|------------------------------------------------------|---------|-------|----------|-----------|--------|--------|"
    );
    let storm: Vec<Vec<u8>> = (0..20_000).map(|i| failure(i, 0)).collect();
    measure("storm: one session, batches of 10 (SQS)", &storm, 10);
    measure("storm: one session, one event per invocation", &storm, 1);
    let spread: Vec<Vec<u8>> = (0..20_000).map(|i| failure(i, i % 500)).collect();
    measure("500 sessions interleaved, batches of 10", &spread, 10);
    let redelivered: Vec<Vec<u8>> = storm.iter().chain(storm.iter()).cloned().collect();
    measure(
        "storm delivered twice (second copy all duplicates)",
        &redelivered,
        10,
    );
}
