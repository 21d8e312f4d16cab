//! From the moment a held page's evidence is decisive (its wait ended) to SNS accepting the page, with the
//! real adapters on ministack: the re-check is a real SQS message with `DelaySeconds`, received by a
//! poller standing in for the Lambda event-source mapping. Failures are dated so that their wait ends a
//! few seconds into the run.
//!
//!     scripts/emulators.sh start && source target/emulators/env && cargo bench -p tokenwatch-detector --bench latency

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokenwatch_aws::{DynamoStore, SdkOptions, SnsAlertSink, SqsRecheckQueue, create_table, sdk_config};
use tokenwatch_core::assess::{DELIVERY_ALLOWANCE, REFRESH_WINDOW};
use tokenwatch_core::incident::Policy;
use tokenwatch_core::notice::Notice;
use tokenwatch_core::pipeline::{Detector, schedule_rechecks};
use tokenwatch_core::ports::{AlertSink, PortError};
use tokenwatch_core::time::format_time;

fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// SNS, and when it accepted each page.
struct Timed<'a> {
    sink: &'a SnsAlertSink,
    accepted: std::sync::Mutex<Vec<f64>>,
}

impl AlertSink for Timed<'_> {
    async fn publish(&self, notice: &Notice) -> Result<(), PortError> {
        self.sink.publish(notice).await?;
        self.accepted.lock().unwrap().push(wall());
        Ok(())
    }
}

/// A failure at the lease boundary of a one-hour session, at `t`.
fn failure(group: usize, t: i64) -> Vec<u8> {
    json!({"version": "0", "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3", "account": "123456789012",
        "detail": {"eventVersion": "1.09", "eventTime": format_time(t), "eventSource": "s3.amazonaws.com",
            "eventName": "GetObject", "errorCode": "ExpiredToken", "eventID": format!("lat-{group}-{t}"),
            "recipientAccountId": "123456789012", "userAgent": "Boto3/1.34.0 Botocore/1.34.0",
            "userIdentity": {"type": "AssumedRole", "principalId": format!("AROAEXAMPLE:held-{group}"),
                "arn": format!("arn:aws:sts::123456789012:assumed-role/etl-role/held-{group}"),
                "accessKeyId": format!("ASIALAT{group:013}"),
                "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::123456789012:role/etl-role"},
                    "attributes": {"creationDate": format_time(t - 3600)}}}}})
    .to_string()
    .into_bytes()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let endpoint = std::env::var("TOKENWATCH_MINISTACK_ENDPOINT").expect("source target/emulators/env");
    let sdk = sdk_config(&SdkOptions::emulator(&endpoint)).await;
    let name = format!("latency-{}", std::process::id());
    create_table(&aws_sdk_dynamodb::Client::new(&sdk), &name)
        .await
        .expect("table");
    let topic = aws_sdk_sns::Client::new(&sdk)
        .create_topic()
        .name(&name)
        .send()
        .await
        .expect("topic");
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = sqs.create_queue().queue_name(&name).send().await.expect("queue");
    let url = queue.queue_url().expect("url").to_owned();
    let store = DynamoStore::new(&sdk, &name);
    let sns = SnsAlertSink::new(&sdk, topic.topic_arn().expect("arn"), Default::default());
    let sink = Timed {
        sink: &sns,
        accepted: Default::default(),
    };
    let rechecks = SqsRecheckQueue::new(&sdk, &url);
    let policy = Policy::default();
    let detector = Detector {
        store: &store,
        sink: &sink,
        policy: &policy,
    };
    let groups: usize = std::env::args().find_map(|a| a.parse().ok()).unwrap_or(40);
    // (b) one failure then silence: each group's wait ends 3 to 12 s into the run.
    let wait = REFRESH_WINDOW + DELIVERY_ALLOWANCE;
    let start = wall() as i64;
    let mut decisive = Vec::new();
    for g in 0..groups {
        let end = start + 3 + (g as i64 % 10);
        decisive.push(end as f64);
        let now = wall() as i64;
        let mut out = detector.process(&[&failure(g, end - wait)], now).await;
        assert!(out.retry.is_empty(), "{:?}", out.faults);
        assert!(
            schedule_rechecks(&rechecks, &mut out.metrics, now)
                .await
                .is_empty()
        );
    }
    // The event-source mapping: long polls, batches of up to 10, processed at once.
    while sink.accepted.lock().unwrap().len() < groups && wall() < start as f64 + 60.0 {
        let got = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        let messages = got.messages();
        if messages.is_empty() {
            continue;
        }
        let bodies: Vec<&[u8]> = messages
            .iter()
            .map(|m| m.body().unwrap_or("").as_bytes())
            .collect();
        let now = wall() as i64;
        let mut out = detector.process(&bodies, now).await;
        assert!(out.retry.is_empty(), "{:?}", out.faults);
        schedule_rechecks(&rechecks, &mut out.metrics, now).await;
        for m in messages {
            sqs.delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle().unwrap_or(""))
                .send()
                .await
                .expect("delete");
        }
        tokio::time::sleep(Duration::from_millis(0)).await;
    }
    let mut accepted = sink.accepted.lock().unwrap().clone();
    accepted.sort_by(f64::total_cmp);
    decisive.sort_by(f64::total_cmp);
    assert_eq!(accepted.len(), groups, "every held page went out");
    let mut latency: Vec<f64> = accepted.iter().zip(&decisive).map(|(a, d)| a - d).collect();
    latency.sort_by(f64::total_cmp);
    println!(
        "(b) one failure then silence, {groups} groups: evidence decisive -> SNS accepted: p50 {:.2} s, p99 {:.2} s",
        percentile(&latency, 0.5),
        percentile(&latency, 0.99)
    );
}
