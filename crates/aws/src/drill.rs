//! The AWS side of `tokenwatch drill --real` that is not a probe: the operator's credentials, the stack's
//! outputs, and the drill role's session.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_sts::config::Credentials;
use aws_sdk_sts::config::ProvideCredentials;
use tokenwatch_core::ports::PortError;
use tokenwatch_core::time::Epoch;

use crate::error::from_sdk;
use crate::probe::{Prober, QueryService, Stack, parse_stack};

/// The credentials `sdk` signs with (the usual chain: environment, profile, ...), for the calls made
/// through a [`Prober`].
pub async fn operator_credentials(sdk: &SdkConfig) -> Result<Credentials, PortError> {
    let provider = sdk.credentials_provider().ok_or_else(|| {
        PortError::permanent(
            "no AWS credentials are configured (AWS_PROFILE, aws sso login, or the environment)",
        )
    })?;
    provider
        .provide_credentials()
        .await
        .map_err(|e| PortError::permanent(format!("no usable AWS credentials: {e}")))
}

/// The stack `name`'s status, outputs and parameters (CloudFormation `DescribeStacks`).
pub async fn describe_stack(
    prober: &Prober,
    credentials: &Credentials,
    name: &str,
) -> Result<Stack, PortError> {
    let xml = prober
        .query(
            QueryService::CloudFormation,
            "DescribeStacks",
            &[("StackName", name)],
            credentials,
        )
        .await?;
    parse_stack(&xml).map_err(PortError::permanent)
}

/// A session of the drill role.
pub struct Assumed {
    /// Its credentials (secret: never printed).
    pub credentials: Credentials,
    /// Its access key id (not secret: CloudTrail records it).
    pub access_key_id: String,
    /// When it expires, as STS says.
    pub expires_at: Epoch,
}

/// Assumes `role_arn` as session `session` for `seconds` (STS `AssumeRole`).
pub async fn assume(
    sts: &aws_sdk_sts::Client,
    role_arn: &str,
    session: &str,
    seconds: i32,
) -> Result<Assumed, PortError> {
    let out = sts
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(session)
        .duration_seconds(seconds)
        .send()
        .await
        .map_err(|e| {
            let hint = format!(
                " (your IAM policy needs sts:AssumeRole on {role_arn}; the role trusts this account's principals \
                 only, with session names tokenwatch-drill-*)"
            );
            match from_sdk("sts:AssumeRole", e) {
                PortError::Permanent { message, source } => PortError::Permanent {
                    message: message + &hint,
                    source,
                },
                transient => transient,
            }
        })?;
    let c = out
        .credentials()
        .ok_or_else(|| PortError::permanent("sts:AssumeRole answered without credentials"))?;
    let expires_at = c.expiration().secs();
    Ok(Assumed {
        credentials: session_credentials(
            c.access_key_id(),
            c.secret_access_key(),
            c.session_token(),
            expires_at,
        ),
        access_key_id: c.access_key_id().to_owned(),
        expires_at,
    })
}

/// Credentials of a session, from their parts (a drill resumed from its saved session).
pub fn session_credentials(access_key_id: &str, secret: &str, token: &str, expires_at: Epoch) -> Credentials {
    Credentials::new(
        access_key_id,
        secret,
        Some(token.to_owned()),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(expires_at.max(0) as u64)),
        "tokenwatch-drill",
    )
}
