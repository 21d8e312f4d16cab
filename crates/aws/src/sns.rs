//! [`SnsAlertSink`]: notices rendered for SNS (`tokenwatch_render::sns`) and published to a topic, one
//! `Publish` each.

use aws_config::SdkConfig;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;
use tokenwatch_core::notice::Notice;
use tokenwatch_core::ports::{AlertSink, PortError};
use tokenwatch_render::sns::{Style, render};

use crate::error::from_sdk;

/// The [`AlertSink`] of the functions: publishes to one SNS topic with `MessageStructure=json`, so each
/// protocol gets its own message (`default`, `email`, `sms`, `sqs`, `lambda`, `https`; see
/// [`tokenwatch_render::sns`]), and with the alert's attributes as String message attributes for
/// subscription filter policies.
pub struct SnsAlertSink {
    client: Client,
    topic_arn: String,
    style: Style,
}

impl SnsAlertSink {
    /// A sink publishing to `topic_arn` in `style`, with a client built from `sdk` ([`crate::sdk_config`]).
    pub fn new(sdk: &SdkConfig, topic_arn: impl Into<String>, style: Style) -> Self {
        Self::from_client(Client::new(sdk), topic_arn, style)
    }

    /// A sink publishing to `topic_arn` in `style` through `client`.
    pub fn from_client(client: Client, topic_arn: impl Into<String>, style: Style) -> Self {
        SnsAlertSink {
            client,
            topic_arn: topic_arn.into(),
            style,
        }
    }

    /// The topic's ARN.
    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }
}

impl AlertSink for SnsAlertSink {
    async fn publish(&self, notice: &Notice) -> Result<(), PortError> {
        let alert = render(notice, &self.style);
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .message_structure("json")
            .subject(&alert.subject)
            .message(&alert.message);
        // SNS rejects the whole publish for an empty attribute value; the page matters more than one
        // routing attribute (the rendered alert never has one empty, but it comes from event data).
        for (name, value) in alert.attributes.iter().filter(|(_, v)| !v.is_empty()) {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| PortError::permanent(format!("sns: message attribute {name} not built: {e}")))?;
            request = request.message_attributes(name, attribute);
        }
        request.send().await.map_err(|e| from_sdk("sns:Publish", e))?;
        Ok(())
    }
}
