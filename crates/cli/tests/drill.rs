//! `tokenwatch drill` against moto's EventBridge: the built binary puts the drill event with the real SDK,
//! a rule on its source delivers it to an SQS queue, and the event as delivered pages as a drill.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

fn moto() -> String {
    std::env::var("TOKENWATCH_MOTO_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "TOKENWATCH_MOTO_ENDPOINT is not set: run scripts/test.sh, or scripts/emulators.sh start and \
             `source target/emulators/env`"
        )
    })
}

#[tokio::test]
async fn a_drill_reaches_the_bus_and_pages_as_a_drill() {
    let endpoint = moto();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let name = format!("drill-{}", std::process::id());
    let queue = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let queue_arn = format!("arn:aws:sqs:us-east-1:123456789012:{name}");
    events
        .put_rule()
        .name(&name)
        .event_pattern(r#"{"source": ["tokenwatch.drill"], "detail-type": ["AWS API Call via CloudTrail"]}"#)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule(&name)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(&queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .arg("drill")
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[tokenwatch DRILL]"));

    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let got = sqs
            .receive_message()
            .queue_url(&queue)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if let Some(m) = got.messages().first() {
            break m.body().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the drill event never reached the queue"
        );
    };
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["source"], "tokenwatch.drill");
    assert_eq!(event["detail"]["errorCode"], "ExpiredToken");
    assert_eq!(
        event["detail"]["recipientAccountId"], "123456789012",
        "the account comes from STS"
    );

    let (store, sink) = (
        tokenwatch_core::memory::MemoryStore::default(),
        tokenwatch_core::memory::RecordingSink::default(),
    );
    let (policy, alerts) = (
        tokenwatch_core::incident::Policy::default(),
        tokenwatch_core::alert::AlertContext::default(),
    );
    let detector = tokenwatch_core::pipeline::Detector {
        store: &store,
        sink: &sink,
        policy: &policy,
        alerts: &alerts,
    };
    let now = tokenwatch_core::time::parse_time(event["detail"]["eventTime"].as_str().unwrap()).unwrap();
    detector.process(&[body.as_bytes()], now + 5).await;
    let published = sink.alerts();
    assert_eq!(published.len(), 1);
    assert!(
        published[0].subject.starts_with("[tokenwatch DRILL]"),
        "{}",
        published[0].subject
    );
}
