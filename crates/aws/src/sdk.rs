//! The one place that builds the AWS SDK configuration every client of this crate uses.
//!
//! By default everything comes from the environment, as in Lambda: region, credentials, and endpoint
//! overrides (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SNS`, …, which the SDK
//! honours by itself). [`SdkOptions`] overrides what tests and local runs against an emulator need. Every
//! call is bounded in time ([`Timeouts`]).

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

/// How long one SDK call may take. Without them the SDK waits on a silent connection for as long as the
/// Lambda function lives, and its timeout then ends the invocation mid-work (between claiming a page and
/// publishing it, say) instead of the call failing with an error the handler can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a connection.
    pub connect: Duration,
    /// One attempt of a call: from sending the request until the response (its headers, for a
    /// streamed body such as an S3 object) is read.
    pub attempt: Duration,
    /// A call with all its retries.
    pub operation: Duration,
}

impl Timeouts {
    /// Every client's: each call ends within 10 s, well inside the detector's 30 s timeout and the
    /// reporter's 60 s (tests/infra.rs holds the template to it), so a hung DynamoDB or SNS call is a
    /// transient error the handler retries, and leaves time to give a page claim back. The SDK's
    /// standard retries (three attempts) fit: DynamoDB and SNS answer in milliseconds.
    pub const DEFAULT: Timeouts = Timeouts {
        connect: Duration::from_secs(2),
        attempt: Duration::from_secs(4),
        operation: Duration::from_secs(10),
    };
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::DEFAULT
    }
}

/// Overrides of what the environment says; the default overrides nothing but sets [`Timeouts::DEFAULT`].
#[derive(Clone, Debug, Default)]
pub struct SdkOptions {
    /// Send every service's requests here (e.g. `http://127.0.0.1:5000` for moto).
    pub endpoint_url: Option<String>,
    /// Region, instead of `AWS_REGION` / the profile.
    pub region: Option<String>,
    /// Sign with fixed, fake credentials instead of the default chain: for emulators, which accept any.
    pub fake_credentials: bool,
    /// Every call's time limits.
    pub timeouts: Timeouts,
}

impl SdkOptions {
    /// Everything an emulator at `endpoint_url` needs: its endpoint, `us-east-1`, fake credentials. Tests
    /// use it so that they never pick up (or need) real credentials.
    pub fn emulator(endpoint_url: impl Into<String>) -> Self {
        SdkOptions {
            endpoint_url: Some(endpoint_url.into()),
            region: Some("us-east-1".into()),
            fake_credentials: true,
            timeouts: Timeouts::DEFAULT,
        }
    }
}

/// Loads the SDK configuration: the environment's, with `options` applied.
pub async fn sdk_config(options: &SdkOptions) -> SdkConfig {
    let t = options.timeouts;
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(t.connect)
            .operation_attempt_timeout(t.attempt)
            .operation_timeout(t.operation)
            .build(),
    );
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
