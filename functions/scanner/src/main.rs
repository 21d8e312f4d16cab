//! The scanner Lambda's entry point: configuration, clients, handler. Nothing else happens here.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use tokenwatch_aws::partials::PartialStore;
use tokenwatch_aws::trail::s3_client;
use tokenwatch_aws::{SdkOptions, sdk_config};
use tokenwatch_process::init_logging;
use tokenwatch_scanner::config::Config;
use tokenwatch_scanner::{Scanner, handle};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_logging();
    // A bad value fails the cold start here, naming the variable, instead of failing every item.
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
