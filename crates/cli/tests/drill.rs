//! `tokenwatch drill` against moto's EventBridge: the built binary puts the drill event with the real SDK,
//! a rule on its source delivers it to an SQS queue, and the event as delivered pages as a drill.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tokenwatch_testkit::{Emulator, Queue, unique};

#[tokio::test]
async fn a_drill_reaches_the_bus_and_pages_as_a_drill() {
    let endpoint = Emulator::Moto.endpoint();
    let sdk = Emulator::Moto.sdk().await;
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let queue = Queue::new(&sdk, "drill").await;
    let name = unique("drill");
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
                .arn(&queue.arn)
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

    let bodies = queue.receive(1, Duration::from_secs(20)).await;
    assert!(!bodies.is_empty(), "the drill event never reached the queue");
    let mut event: Value = serde_json::from_str(&bodies[0]).unwrap();
    // EventBridge sets the envelope's `account` (the account that put the event); moto leaves it out. The
    // detector admits a drill only by it, so the test sets it as EventBridge would.
    assert!(
        event.get("account").is_none(),
        "moto now sets account: drop this step"
    );
    event["account"] = Value::from("123456789012");
    let body = &event.to_string();
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
    // The detector accepts synthetic drills of its own account only: moto's, which put the event.
    let policy = tokenwatch_core::incident::Policy {
        drills: tokenwatch_core::drill::DrillPolicy {
            own_account: Some("123456789012".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let detector = tokenwatch_core::pipeline::Detector {
        store: &store,
        sink: &sink,
        policy: &policy,
    };
    let now = tokenwatch_core::time::parse_time(event["detail"]["eventTime"].as_str().unwrap()).unwrap();
    detector.process(&[body.as_bytes()], now + 5).await;
    let published = sink.notices();
    assert_eq!(published.len(), 1);
    // And it pages nothing for another account's stack.
    let (elsewhere, nobody) = (
        tokenwatch_core::memory::MemoryStore::default(),
        tokenwatch_core::memory::RecordingSink::default(),
    );
    let other = tokenwatch_core::incident::Policy {
        drills: tokenwatch_core::drill::DrillPolicy {
            own_account: Some("444455556666".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let out = tokenwatch_core::pipeline::Detector {
        store: &elsewhere,
        sink: &nobody,
        policy: &other,
    }
    .process(&[body.as_bytes()], now + 5)
    .await;
    assert!(nobody.notices().is_empty());
    assert_eq!(out.refused.len(), 1);
    let message = tokenwatch_render::sns::render(&published[0], &Default::default());
    assert!(
        message.subject.starts_with("[tokenwatch DRILL]"),
        "{}",
        message.subject
    );
}
