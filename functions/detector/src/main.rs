//! The detector Lambda's entry point: configuration, clients, handler. Nothing else happens here.

use std::sync::OnceLock;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use tokenwatch_aws::{DynamoStore, SdkOptions, SnsAlertSink, SqsRecheckQueue, sdk_config};
use tokenwatch_core::pipeline::Detector;
use tokenwatch_detector::config::Config;
use tokenwatch_detector::handle;
use tokenwatch_process::{init_logging, now};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_logging();
    // A bad value fails the cold start here, naming the variable, instead of failing every invocation.
    let config =
        Config::from_env().inspect_err(|e| tracing::error!(error = %e, "Configuration is invalid."))?;
    let sdk = sdk_config(&SdkOptions::default()).await;
    let store = DynamoStore::new(&sdk, &config.common.table_name);
    let sink = SnsAlertSink::new(&sdk, &config.common.topic_arn, config.common.style.clone());
    let rechecks = config
        .recheck_queue_url
        .as_ref()
        .map(|url| SqsRecheckQueue::new(&sdk, url));
    // The function's own account admits its synthetic drills; only an invocation's context names it.
    let policy = OnceLock::new();
    let (config, store, sink, rechecks, policy) = (&config, &store, &sink, &rechecks, &policy);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let policy = policy.get_or_init(|| config.policy_for(&event.context.invoked_function_arn));
        let detector = Detector { store, sink, policy };
        handle(event.payload, &detector, rechecks, now()).await
    }))
    .await
}
