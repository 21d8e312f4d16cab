//! The detector Lambda's entry point: configuration, clients, handler. Nothing else happens here.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use tokenwatch_aws::process::{init_logging, now};
use tokenwatch_aws::{DynamoStore, SdkOptions, SnsAlertSink, sdk_config};
use tokenwatch_core::pipeline::Detector;
use tokenwatch_detector::config::Config;
use tokenwatch_detector::handle;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_logging();
    // A bad value fails the cold start here, naming the variable, instead of failing every invocation.
    let config =
        Config::from_env().inspect_err(|e| tracing::error!(error = %e, "Configuration is invalid."))?;
    let sdk = sdk_config(&SdkOptions::default()).await;
    let store = DynamoStore::new(&sdk, &config.table_name);
    let sink = SnsAlertSink::new(&sdk, &config.topic_arn);
    let alerts = config.alert_context();
    let detector = Detector {
        store: &store,
        sink: &sink,
        policy: &config.policy,
        alerts: &alerts,
    };
    let detector = &detector;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(event.payload, detector, now()).await
    }))
    .await
}
