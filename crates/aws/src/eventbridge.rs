//! Putting an event on an EventBridge bus: how `tokenwatch drill` proves the deployed path (rule, queue,
//! function, topic, subscription) works.

use aws_config::SdkConfig;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde_json::Value;
use tokenwatch_core::ports::PortError;

use crate::error::from_sdk;

/// A bus to put events on.
pub struct EventBus {
    client: Client,
    name: Option<String>,
}

impl EventBus {
    /// The bus `name` (the account's default bus when `None`).
    pub fn new(sdk: &SdkConfig, name: Option<String>) -> Self {
        EventBus {
            client: Client::new(sdk),
            name,
        }
    }

    /// Puts one event given as an EventBridge envelope (its `source`, `detail-type` and `detail` are
    /// sent; EventBridge sets the rest). Returns the event id.
    pub async fn put(&self, envelope: &Value) -> Result<String, PortError> {
        let field = |k: &str| envelope.get(k).and_then(Value::as_str).map(str::to_owned);
        let entry = PutEventsRequestEntry::builder()
            .set_source(field("source"))
            .set_detail_type(field("detail-type"))
            .detail(
                envelope
                    .get("detail")
                    .map(Value::to_string)
                    .unwrap_or_else(|| "{}".into()),
            )
            .set_event_bus_name(self.name.clone())
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| from_sdk("events:PutEvents", e))?;
        let first = out.entries().first();
        match (
            first.and_then(|e| e.event_id()),
            first.and_then(|e| e.error_code()),
        ) {
            (Some(id), None) => Ok(id.to_owned()),
            (_, code) => Err(PortError::permanent(format!(
                "PutEvents rejected the event: {} {}",
                code.unwrap_or("no event id"),
                first.and_then(|e| e.error_message()).unwrap_or("")
            ))),
        }
    }
}

/// The account the configured credentials belong to (STS GetCallerIdentity).
pub async fn caller_account(sdk: &SdkConfig) -> Result<String, PortError> {
    let out = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| from_sdk("sts:GetCallerIdentity", e))?;
    out.account()
        .map(str::to_owned)
        .ok_or_else(|| PortError::permanent("GetCallerIdentity named no account"))
}
