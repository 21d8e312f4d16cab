//! Regression: the SDK clients had no operation or attempt timeouts, so a DynamoDB or SNS endpoint that
//! accepts a connection and never answers held the call until Lambda's deadline ended the invocation
//! (between claiming a page and publishing it, say). Every call now ends within its time limits with a
//! transient error the detector retries.

use std::time::{Duration, Instant};

use tokenwatch_aws::{DynamoStore, SdkOptions, SnsAlertSink, Timeouts, sdk_config};
use tokenwatch_core::finding::example_finding;
use tokenwatch_core::incident::IncidentId;
use tokenwatch_core::model::Severity;
use tokenwatch_core::notice::{IncidentNotice, Notice, NoticeKind};
use tokenwatch_core::ports::{AlertSink, StateStore};
use tokenwatch_render::sns::Style;

use crate::common::key;

/// A loopback endpoint that accepts connections and never answers.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

#[tokio::test]
async fn a_hanging_endpoint_no_longer_holds_a_call_past_its_timeouts() {
    let timeouts = Timeouts {
        connect: Duration::from_millis(500),
        attempt: Duration::from_millis(300),
        operation: Duration::from_secs(1),
    };
    let sdk = sdk_config(&SdkOptions {
        timeouts,
        ..SdkOptions::emulator(black_hole().await)
    })
    .await;
    let store = DynamoStore::new(&sdk, "tokenwatch-state");
    let sink = SnsAlertSink::new(
        &sdk,
        "arn:aws:sns:us-east-1:123456789012:alerts",
        Style::default(),
    );
    let notice = Notice::Incident(IncidentNotice {
        kind: NoticeKind::Open,
        severity: Severity::High,
        incident: IncidentId {
            group: "123456789012|etl|job".into(),
            opened_at: 0,
        },
        finding: example_finding(),
        drill: false,
        resolution: None,
        fleet: None,
    });

    let started = Instant::now();
    let published = sink.publish(&notice).await;
    let took = started.elapsed();
    let error = published.expect_err("nothing answered");
    assert!(error.is_transient(), "a timeout is worth retrying: {error}");
    assert!(took < Duration::from_secs(4), "took {took:?}");

    let started = Instant::now();
    let loaded = store.load(&key("job")).await;
    assert!(loaded.expect_err("nothing answered").is_transient());
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn every_call_is_bounded_by_default() {
    let t = SdkOptions::default().timeouts;
    assert_eq!(t, Timeouts::DEFAULT);
    assert!(t.connect <= t.attempt && t.attempt <= t.operation);
    // The detector's timeout is 30 s (tests/infra.rs checks the template against these).
    assert!(t.operation <= Duration::from_secs(10));
}
