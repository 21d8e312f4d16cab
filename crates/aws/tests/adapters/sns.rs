//! `SnsAlertSink` through moto: published to a topic, read back from an SQS queue subscribed to it.

use std::time::Duration;

use std::collections::BTreeSet;

use serde_json::Value;
use tokenwatch_aws::SnsAlertSink;
use tokenwatch_core::finding::{Evidence, judge};
use tokenwatch_core::incident::incident_id;
use tokenwatch_core::notice::{IncidentNotice, Notice, NoticeKind};
use tokenwatch_core::ports::AlertSink;
use tokenwatch_core::stats::FailureStats;
use tokenwatch_render::sns::{Style, render};
use tokenwatch_testkit::{Emulator, Subscriber};

use crate::common::{T0, failure};

#[tokio::test]
async fn an_alert_reaches_an_sqs_subscriber_with_subject_document_and_attributes() {
    let sdk = Emulator::Moto.sdk().await;
    let subscriber = Subscriber::with_new_topic(&sdk).await;
    let topic = &subscriber.topic_arn;

    let mut stats = FailureStats::default();
    for (i, age) in [3610, 3700, 3800].into_iter().enumerate() {
        stats.add(failure(&format!("sns-{i}"), age, "s3:ListBuckets"));
    }
    let k = crate::common::key("nightly-etl");
    let issued = BTreeSet::from([T0]);
    let finding = judge(
        Evidence {
            key: &k,
            stats: &stats,
            issued_times: &issued,
        },
        &(),
    );
    let incident = incident_id(&k, stats.first);
    let notice = Notice::Incident(IncidentNotice {
        kind: NoticeKind::Open,
        severity: finding.assessment.paging_severity,
        incident: incident.clone(),
        finding,
        drill: false,
        resolution: None,
        fleet: None,
    });
    let style = Style {
        region: "us-east-1".into(),
        ..Default::default()
    };
    let alert = render(&notice, &style);

    let sink = SnsAlertSink::new(&sdk, topic, style);
    sink.publish(&notice).await.unwrap();

    let received = subscriber.receive(1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1, "one message per alert");
    let envelope = &received[0].envelope;
    assert_eq!(envelope["Type"], "Notification");
    assert_eq!(envelope["TopicArn"], topic.as_str());
    assert_eq!(envelope["Subject"], alert.subject.as_str());
    assert!(
        alert.subject.starts_with("[tokenwatch] HIGH stale-cache"),
        "{}",
        alert.subject
    );

    // With MessageStructure=json an SQS subscriber gets the `sqs` entry: the alert as one JSON document.
    let per_protocol: Value = serde_json::from_str(&alert.message).unwrap();
    assert_eq!(envelope["Message"], per_protocol["sqs"]);
    let document: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    assert_eq!(document["alert_id"], alert.alert_id.as_str());
    assert_eq!(document["incident_id"], incident.to_string().as_str());
    assert_eq!(document["state"], "open");
    assert_eq!(document["verdict"], "stale-cache");
    assert_eq!(document["failures"], 3);

    let attributes = envelope["MessageAttributes"].as_object().unwrap();
    assert_eq!(attributes.len(), alert.attributes.len());
    for (name, value) in &alert.attributes {
        assert_eq!(attributes[name]["Type"], "String", "{name}");
        assert_eq!(attributes[name]["Value"], value.as_str(), "{name}");
    }
    assert_eq!(attributes["severity"]["Value"], "high");
}
