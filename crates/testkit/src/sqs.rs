//! SQS queues on an emulator, alone (what an EventBridge rule targets) or subscribed to an SNS topic (how
//! a test reads back what was published), and what they receive.

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use crate::unique;

/// An SQS queue's ARN.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone()
}

/// A new SNS topic named [`unique`]`(prefix)`: its ARN.
pub async fn new_topic(sdk: &SdkConfig, prefix: &str) -> String {
    aws_sdk_sns::Client::new(sdk)
        .create_topic()
        .name(unique(prefix))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap()
}

/// A new SQS queue of its own.
pub struct Queue {
    /// A client on the queue's emulator.
    pub sqs: aws_sdk_sqs::Client,
    /// The queue's URL, which SQS calls take.
    pub url: String,
    /// The queue's ARN, which subscriptions and rule targets take.
    pub arn: String,
}

impl Queue {
    /// A new queue named [`unique`]`(prefix)`.
    pub async fn new(sdk: &SdkConfig, prefix: &str) -> Queue {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let url = sqs
            .create_queue()
            .queue_name(unique(prefix))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let arn = queue_arn(&sqs, &url).await;
        Queue { sqs, url, arn }
    }

    /// Receives (and deletes) message bodies until `want` have arrived or `within` has passed, then
    /// listens one more second for any message beyond them, so that an extra one is seen, not missed.
    pub async fn receive(&self, want: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            let enough = got.len() >= want;
            if !enough && Instant::now() >= deadline {
                break;
            }
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() && enough {
                break;
            }
            for m in messages {
                self.sqs
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
                got.push(m.body().unwrap().to_owned());
            }
        }
        got
    }

    /// Deletes the queue; a failure is ignored: cleaning up must not fail a test that passed.
    pub async fn delete(&self) {
        let _ = self.sqs.delete_queue().queue_url(&self.url).send().await;
    }
}

/// An SQS queue subscribed to an SNS topic (without raw delivery: messages arrive in SNS's envelope).
pub struct Subscriber {
    /// The subscribed queue.
    pub queue: Queue,
    /// The topic it is subscribed to.
    pub topic_arn: String,
}

impl Subscriber {
    /// A new topic of its own and a queue subscribed to it.
    pub async fn with_new_topic(sdk: &SdkConfig) -> Subscriber {
        let topic_arn = new_topic(sdk, "tokenwatch-test-alerts").await;
        Subscriber::to_topic(sdk, topic_arn).await
    }

    /// A new queue subscribed to `topic_arn`.
    pub async fn to_topic(sdk: &SdkConfig, topic_arn: String) -> Subscriber {
        let queue = Queue::new(sdk, "tokenwatch-test-pager").await;
        aws_sdk_sns::Client::new(sdk)
            .subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(&queue.arn)
            .send()
            .await
            .unwrap();
        Subscriber { queue, topic_arn }
    }

    /// Receives (and deletes) messages as [`Queue::receive`] does, each in SNS's envelope.
    pub async fn receive(&self, want: usize, within: Duration) -> Vec<Received> {
        self.queue
            .receive(want, within)
            .await
            .into_iter()
            .map(|body| {
                let envelope = serde_json::from_str(&body).unwrap_or_else(|e| {
                    panic!("an SQS message that is not SNS's JSON envelope ({e}): {body}")
                });
                Received { envelope, body }
            })
            .collect()
    }

    /// Deletes the topic and the queue; failures are ignored.
    pub async fn delete(&self, sdk: &SdkConfig) {
        let _ = aws_sdk_sns::Client::new(sdk)
            .delete_topic()
            .topic_arn(&self.topic_arn)
            .send()
            .await;
        self.queue.delete().await;
    }
}

/// One message as the subscriber's queue received it.
pub struct Received {
    /// SNS's JSON envelope.
    pub envelope: Value,
    /// The SQS message body, as received.
    pub body: String,
}

impl Received {
    /// The document the envelope carries as its `Message` (for an alert, its `sqs` message), or null
    /// if that is not JSON.
    pub fn document(&self) -> Value {
        serde_json::from_str(self.envelope["Message"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
    }
}
