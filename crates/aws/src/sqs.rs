//! [`SqsRecheckQueue`]: a held page's re-check (`tokenwatch_core::recheck`) as a delayed message on the
//! detector's own event queue, one `SendMessage` each.

use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use tokenwatch_core::ports::{PortError, RecheckQueue};
use tokenwatch_core::recheck::Recheck;
use tokenwatch_core::time::Epoch;

use crate::error::from_sdk;

/// The [`RecheckQueue`] of the detector: `SendMessage` with `DelaySeconds` ([`Recheck::delay`], at most
/// SQS's 900) to the queue its events come from, so the re-check arrives as one of them.
pub struct SqsRecheckQueue {
    client: Client,
    queue_url: String,
}

impl SqsRecheckQueue {
    /// Re-checks sent to `queue_url`, with a client built from `sdk` ([`crate::sdk_config`]).
    pub fn new(sdk: &SdkConfig, queue_url: impl Into<String>) -> Self {
        Self::from_client(Client::new(sdk), queue_url)
    }

    /// Re-checks sent to `queue_url` through `client`.
    pub fn from_client(client: Client, queue_url: impl Into<String>) -> Self {
        SqsRecheckQueue {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl RecheckQueue for SqsRecheckQueue {
    async fn schedule(&self, recheck: &Recheck, now: Epoch) -> Result<(), PortError> {
        let delay = i32::try_from(recheck.delay(now)).unwrap_or(900);
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .delay_seconds(delay)
            .message_body(recheck.to_json())
            .send()
            .await
            .map_err(|e| from_sdk("sqs:SendMessage", e))?;
        Ok(())
    }
}
