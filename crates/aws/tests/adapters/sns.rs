//! `SnsAlertSink` through moto: published to a topic, read back from an SQS queue subscribed to it.

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;
use tokenwatch_aws::SnsAlertSink;
use tokenwatch_core::alert::{AlertContext, AlertKind, render};
use tokenwatch_core::incident::incident_id;
use tokenwatch_core::ports::AlertSink;
use tokenwatch_core::stats::FailureStats;

use crate::common::{Emulator, T0, failure, unique};

#[tokio::test]
async fn an_alert_reaches_an_sqs_subscriber_with_subject_document_and_attributes() {
    let sdk = Emulator::Moto.sdk().await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let topic = sns
        .create_topic()
        .name(unique("alerts"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let queue_url = sqs
        .create_queue()
        .queue_name(unique("pager"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .send()
        .await
        .unwrap();

    let mut stats = FailureStats::default();
    for (i, age) in [3610, 3700, 3800].into_iter().enumerate() {
        stats.add(failure(&format!("sns-{i}"), age, "s3:ListBuckets"));
    }
    let k = crate::common::key("nightly-etl");
    let group = stats.to_group(&k, None, &[T0]);
    let incident = incident_id(&k, stats.first);
    let ctx = AlertContext {
        region: "us-east-1".into(),
        ..Default::default()
    };
    let alert = render(&group, &incident, AlertKind::Open, &ctx);

    let sink = SnsAlertSink::new(&sdk, &topic);
    sink.publish(&alert).await.unwrap();

    let mut messages = Vec::new();
    for _ in 0..10 {
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        messages.extend(out.messages.unwrap_or_default());
        if !messages.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(messages.len(), 1, "one message per alert");
    let envelope: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
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
    assert_eq!(document["incident_id"], incident.as_str());
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
