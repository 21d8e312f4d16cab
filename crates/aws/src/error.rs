//! SDK errors → [`PortError`]: transient when a retry can succeed, permanent when it cannot.
//!
//! Messages name the operation, the service's error code and its message, and the error chain of
//! connection failures. None of those carry credentials: the SDK never puts keys or session tokens in
//! errors, and requests (where the signature lives) are never formatted.
//!
//! What only the person running tokenwatch can fix (no credentials, expired or refused credentials, no
//! region, a missing permission) is a [`Blocked`]: permanent, so never retried, and said in two lines,
//! what is wrong and the command that fixes it.

use std::error::Error;
use std::fmt;

use aws_credential_types::provider::error::CredentialsError;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use tokenwatch_core::ports::PortError;

/// Service error codes that a later attempt may not get. The SDK's own retry list
/// (`aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS}`, aws-runtime 1.10), plus
/// the codes SNS, DynamoDB transactions and server faults use; any 5xx or 429 counts too.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    "Throttled",
    "KMSThrottling",
    "KMSThrottlingException",
    "TransactionConflictException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
];

/// Something between tokenwatch and AWS that only the person running it can fix; retrying cannot help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// No credentials were found anywhere the SDK looks.
    NoCredentials {
        /// What the credential chain said.
        detail: String,
    },
    /// The credentials have expired (`ExpiredToken`).
    ExpiredCredentials,
    /// AWS does not know the credentials (`InvalidClientTokenId`, a wrong secret key).
    InvalidCredentials {
        /// The service's error code.
        code: String,
    },
    /// No region is configured.
    NoRegion,
    /// The profile needs a credential source this build cannot use (an IAM Identity Center profile, a
    /// `credential_process`).
    UnsupportedProfile {
        /// What the SDK said.
        detail: String,
    },
    /// The caller may not make this call.
    AccessDenied {
        /// The service's error code (`AccessDenied`, `AccessDeniedException`, ...).
        code: String,
        /// The IAM action (`cloudtrail:LookupEvents`, `s3:ListBucket`).
        action: String,
        /// The service's message (who was refused, on what).
        message: String,
    },
}

/// How to get credentials the default chain finds.
const GET_CREDENTIALS: &str = "sign in with `aws sso login --profile NAME` and export them with `eval \"$(aws configure \
     export-credentials --profile NAME --format env)\"`, or set AWS_PROFILE=NAME to a profile with keys or a role \
     (`role_arn` + `source_profile`), or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";

impl Blocked {
    /// What is wrong, in one line.
    pub fn what(&self) -> String {
        match self {
            Blocked::NoCredentials { detail } => format!(
                "no AWS credentials found (looked in the environment, AWS_PROFILE or the default profile of \
                 ~/.aws/config and ~/.aws/credentials, and the container and instance metadata): {detail}"
            ),
            Blocked::ExpiredCredentials => {
                "the AWS credentials tokenwatch found have expired (ExpiredToken)".to_owned()
            }
            Blocked::InvalidCredentials { code } => {
                format!("AWS refused the credentials tokenwatch found ({code}): unknown key or wrong secret")
            }
            Blocked::NoRegion => "no AWS region is configured".to_owned(),
            Blocked::UnsupportedProfile { detail } => format!(
                "the AWS profile needs a credential source this build of tokenwatch cannot use \
                 (IAM Identity Center or credential_process): {detail}"
            ),
            Blocked::AccessDenied {
                code,
                action,
                message,
            } => {
                format!("{code} (the permission {action} is missing): {message}")
            }
        }
    }

    /// The command or setting that fixes it, in one line.
    pub fn fix(&self) -> String {
        match self {
            Blocked::NoCredentials { .. } => format!("to fix: {GET_CREDENTIALS}"),
            Blocked::ExpiredCredentials => format!("to fix: get fresh ones: {GET_CREDENTIALS}"),
            Blocked::InvalidCredentials { .. } => format!(
                "to fix: check which credentials are in use with `aws sts get-caller-identity`, then {GET_CREDENTIALS}"
            ),
            Blocked::NoRegion => {
                "to fix: export AWS_REGION=us-east-1 (the region to read), or set `region` in the profile".to_owned()
            }
            Blocked::UnsupportedProfile { .. } => "to fix: export the profile's credentials first: `eval \"$(aws \
                 configure export-credentials --profile NAME --format env)\"` (after `aws sso login --profile NAME` \
                 for Identity Center)"
                .to_owned(),
            Blocked::AccessDenied { action, .. } => format!(
                "to fix: allow {action} to the identity in use (`aws sts get-caller-identity` names it), or use \
                 a profile that has it"
            ),
        }
    }
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n{}", self.what(), self.fix())
    }
}

impl Error for Blocked {}

/// A [`PortError`]'s source when the call was [`Blocked`]: the SDK error kept beneath it.
#[derive(Debug)]
pub struct BlockedError {
    /// What blocks the call.
    pub blocked: Blocked,
    source: Box<dyn Error + Send + Sync + 'static>,
}

impl fmt::Display for BlockedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.blocked.what())
    }
}

impl Error for BlockedError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// What blocks the call that failed with `err`, if only the user can fix it.
pub fn blocked(err: &PortError) -> Option<&Blocked> {
    let mut next: Option<&(dyn Error + 'static)> = err.source();
    while let Some(e) = next {
        if let Some(b) = e.downcast_ref::<BlockedError>() {
            return Some(&b.blocked);
        }
        next = e.source();
    }
    None
}

/// The IAM action of an operation, where it is not the operation's own name.
fn action_of(operation: &str) -> &str {
    match operation {
        "s3:ListObjectsV2" => "s3:ListBucket",
        other => other,
    }
}

/// What in `err` only the user can fix, if anything.
fn classify<E>(operation: &str, err: &SdkError<E, HttpResponse>) -> Option<Blocked>
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
{
    if let SdkError::ServiceError(_) = err {
        let code = err.code().unwrap_or_default();
        let message = err.message().unwrap_or("no message");
        return match code {
            "ExpiredToken" | "ExpiredTokenException" => Some(Blocked::ExpiredCredentials),
            "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "InvalidAccessKeyId"
            | "AuthFailure"
            | "SignatureDoesNotMatch" => Some(Blocked::InvalidCredentials {
                code: code.to_owned(),
            }),
            "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
                // The service names the action where it can ("is not authorized to perform: X on ...").
                let named = message
                    .split("perform: ")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .filter(|a| a.contains(':'));
                Some(Blocked::AccessDenied {
                    code: code.to_owned(),
                    action: named.unwrap_or(action_of(operation)).to_owned(),
                    message: clip(message),
                })
            }
            _ => None,
        };
    }
    let mut next: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(from_credentials(c));
        }
        next = e.source();
    }
    None
}

/// Why the credential chain found nothing, as the user fixes it.
pub fn from_credentials(c: &CredentialsError) -> Blocked {
    let detail = clip(&DisplayErrorContext(c).to_string());
    if detail.contains("cargo feature") {
        Blocked::UnsupportedProfile { detail }
    } else {
        Blocked::NoCredentials { detail }
    }
}

/// At most 300 characters of a message, on one line.
fn clip(s: &str) -> String {
    let one: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if one.chars().count() <= 300 {
        one
    } else {
        one.chars().take(299).chain(['…']).collect()
    }
}

/// Maps a failed SDK call (`operation` names it in the message, e.g. `dynamodb:TransactWriteItems`).
pub(crate) fn from_sdk<E>(operation: &str, err: SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
{
    if let Some(blocked) = classify(operation, &err) {
        return PortError::permanent(format!("{operation}: {}", blocked.what())).with_source(BlockedError {
            blocked,
            source: Box::new(err),
        });
    }
    let mapped = match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = err.code().unwrap_or("unknown");
            let message = err.message().unwrap_or("no message");
            let text = format!("{operation} failed: {code} (HTTP {status}): {message}");
            if status >= 500 || status == 429 || TRANSIENT_CODES.contains(&code) {
                PortError::transient(text)
            } else {
                PortError::permanent(text)
            }
        }
        SdkError::ConstructionFailure(_) => PortError::permanent(format!(
            "{operation}: request could not be built: {}",
            DisplayErrorContext(&err)
        )),
        SdkError::DispatchFailure(dispatch) if dispatch.is_user() => PortError::permanent(format!(
            "{operation}: request could not be sent: {}",
            DisplayErrorContext(&err)
        )),
        // Timeouts, connection and I/O failures, unreadable responses (typically a proxy's error page).
        _ => PortError::transient(format!("{operation} failed: {}", DisplayErrorContext(&err))),
    };
    mapped.with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_credentials_say_where_tokenwatch_looked_and_how_to_get_some() {
        let found = from_credentials(&CredentialsError::not_loaded(
            "no providers in chain provided credentials",
        ));
        assert!(matches!(found, Blocked::NoCredentials { .. }), "{found:?}");
        let said = found.to_string();
        assert_eq!(said.lines().count(), 2, "{said}");
        assert!(said.starts_with("no AWS credentials found"), "{said}");
        assert!(
            said.contains("aws sso login") && said.contains("AWS_PROFILE"),
            "{said}"
        );
    }

    #[test]
    fn a_profile_this_build_cannot_read_is_told_apart_from_none() {
        let found = from_credentials(&CredentialsError::invalid_configuration(
            "This behavior requires following cargo feature(s) enabled: sso",
        ));
        assert!(matches!(found, Blocked::UnsupportedProfile { .. }), "{found:?}");
        assert!(found.fix().contains("export-credentials"), "{}", found.fix());
    }

    #[test]
    fn each_blocked_call_says_what_and_the_fix_in_two_lines() {
        for b in [
            Blocked::ExpiredCredentials,
            Blocked::InvalidCredentials {
                code: "InvalidClientTokenId".into(),
            },
            Blocked::NoRegion,
            Blocked::AccessDenied {
                code: "AccessDenied".into(),
                action: "s3:ListBucket".into(),
                message: "Access Denied".into(),
            },
        ] {
            let said = b.to_string();
            assert_eq!(said.lines().count(), 2, "{said}");
            assert!(said.lines().nth(1).unwrap().starts_with("to fix: "), "{said}");
        }
        assert!(Blocked::NoRegion.fix().contains("AWS_REGION"));
        assert_eq!(action_of("s3:ListObjectsV2"), "s3:ListBucket");
        assert_eq!(action_of("cloudtrail:LookupEvents"), "cloudtrail:LookupEvents");
    }
}
