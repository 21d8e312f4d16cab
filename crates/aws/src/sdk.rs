//! The one place that builds the AWS SDK configuration every client of this crate uses.
//!
//! By default everything comes from the environment, as in Lambda: region, credentials, and endpoint
//! overrides (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SNS`, …, which the SDK
//! honours by itself). [`SdkOptions`] overrides what tests and local runs against an emulator need.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

/// Overrides of what the environment says; the default overrides nothing.
#[derive(Clone, Debug, Default)]
pub struct SdkOptions {
    /// Send every service's requests here (e.g. `http://127.0.0.1:5000` for moto).
    pub endpoint_url: Option<String>,
    /// Region, instead of `AWS_REGION` / the profile.
    pub region: Option<String>,
    /// Sign with fixed, fake credentials instead of the default chain: for emulators, which accept any.
    pub fake_credentials: bool,
}

impl SdkOptions {
    /// Everything an emulator at `endpoint_url` needs: its endpoint, `us-east-1`, fake credentials. Tests
    /// use it so that they never pick up (or need) real credentials.
    pub fn emulator(endpoint_url: impl Into<String>) -> Self {
        SdkOptions {
            endpoint_url: Some(endpoint_url.into()),
            region: Some("us-east-1".into()),
            fake_credentials: true,
        }
    }
}

/// Loads the SDK configuration: the environment's, with `options` applied.
pub async fn sdk_config(options: &SdkOptions) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = &options.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if options.fake_credentials {
        loader = loader.credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "tokenwatch-emulator",
        ));
    }
    loader.load().await
}

/// Checks, before any request, that credentials can be found and a region is set: the region, or what
/// blocks the calls (credentials first, the more basic of the two). A call made without either fails
/// only after the SDK's retries and says less.
pub async fn ready(sdk: &SdkConfig) -> Result<String, crate::Blocked> {
    use aws_credential_types::provider::ProvideCredentials;
    if let Some(provider) = sdk.credentials_provider()
        && let Err(e) = provider.provide_credentials().await
    {
        return Err(crate::error::from_credentials(&e));
    }
    require_region(sdk)
}

/// The configured region, or [`crate::Blocked::NoRegion`]: without one no request can be sent, and the
/// SDK's own error ("a region must be set") does not say where to set it.
pub fn require_region(sdk: &SdkConfig) -> Result<String, crate::Blocked> {
    sdk.region()
        .map(ToString::to_string)
        .ok_or(crate::Blocked::NoRegion)
}
