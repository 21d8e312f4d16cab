//! SDK errors → [`PortError`]: transient when a retry can succeed, permanent when it cannot.
//!
//! Messages name the operation, the service's error code and its message, and the error chain of
//! connection failures. None of those carry credentials: the SDK never puts keys or session tokens in
//! errors, and requests (where the signature lives) are never formatted.

use std::error::Error;

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

/// Maps a failed SDK call (`operation` names it in the message, e.g. `dynamodb:TransactWriteItems`).
pub(crate) fn from_sdk<E>(operation: &str, err: SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
{
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
