//! The scanner Lambda's entry point: configuration, clients, handler. Nothing else happens here.

use std::sync::OnceLock;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use tokenwatch_aws::partials::PartialStore;
use tokenwatch_aws::trail::s3_client;
use tokenwatch_aws::{DynamoStore, SdkOptions, SnsAlertSink, sdk_config};
use tokenwatch_process::{init_logging, now};
use tokenwatch_scanner::config::Config;
use tokenwatch_scanner::live::{LiveConfig, LiveScanner, Mode, scan};
use tokenwatch_scanner::{Scanner, handle};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_logging();
    // A bad value fails the cold start here, naming the variable, instead of failing every item.
    let mode = Mode::from_lookup(|name| std::env::var(name).ok())
        .inspect_err(|e| tracing::error!(error = %e, "Configuration is invalid."))?;
    if mode == Mode::Live {
        return live().await;
    }
    let config =
        Config::from_env().inspect_err(|e| tracing::error!(error = %e, "Configuration is invalid."))?;
    let sdk = sdk_config(&SdkOptions::default()).await;
    let client = s3_client(&sdk);
    let scanner = Scanner {
        partials: PartialStore::new(client.clone(), &config.partials_bucket, &config.partials_prefix),
        client,
        config,
    };
    let scanner = &scanner;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(event.payload, scanner).await
    }))
    .await
}

/// The scheduled scan: every invocation, whatever its payload, scans the window ending now.
async fn live() -> Result<(), lambda_runtime::Error> {
    let config =
        LiveConfig::from_env().inspect_err(|e| tracing::error!(error = %e, "Configuration is invalid."))?;
    let sdk = sdk_config(&SdkOptions::default()).await;
    let client = s3_client(&sdk);
    let store = DynamoStore::new(&sdk, &config.detector.common.table_name);
    let sink = SnsAlertSink::new(
        &sdk,
        &config.detector.common.topic_arn,
        config.detector.common.style.clone(),
    );
    // The function's own account admits its synthetic drills; only an invocation's context names it.
    let policy = OnceLock::new();
    let (config, store, sink, policy, client) = (&config, &store, &sink, &policy, &client);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let policy = policy.get_or_init(|| config.detector.policy_for(&event.context.invoked_function_arn));
        let live = LiveScanner {
            client: client.clone(),
            store,
            sink,
            policy,
            config,
        };
        scan(&live, now()).await.map(|o| o.to_json())
    }))
    .await
}
