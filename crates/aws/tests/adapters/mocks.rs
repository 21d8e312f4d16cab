//! Error paths no emulator produces, with aws-smithy-mocks: the SDK parses canned HTTP responses exactly
//! as it would DynamoDB's and SNS's, and the adapters must sort them into transient and permanent.

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
use aws_sdk_sns::operation::publish::PublishOutput;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use tokenwatch_aws::{DynamoStore, SnsAlertSink};
use tokenwatch_core::notice::{DigestNotice, Notice};
use tokenwatch_core::ports::{AlertSink, Change, PortError, StateStore};

use crate::common::{failure, inc, key};

fn dynamo_error(status: u16, code: &str) -> (u16, Option<String>) {
    (
        status,
        Some(format!(
            r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"canned {code}"}}"#
        )),
    )
}

fn sns_error(status: u16, code: &str) -> (u16, Option<String>) {
    let body = format!(
        r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type><Code>{code}</Code><Message>canned {code}</Message></Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"#
    );
    (status, Some(body))
}

/// `load` answered by one canned response (no SDK retries, so each case is one response).
async fn load_after(status: u16, body: Option<String>) -> Result<(), PortError> {
    let rule = mock!(aws_sdk_dynamodb::Client::get_item)
        .sequence()
        .http_status(status, body)
        .build();
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    DynamoStore::from_client(client, "state")
        .load(&key("mocked"))
        .await
        .map(|_| ())
}

fn assert_transient(result: Result<(), PortError>, what: &str) {
    assert!(
        matches!(result, Err(PortError::Transient { .. })),
        "{what}: {result:?}"
    );
}

fn assert_permanent(result: Result<(), PortError>, what: &str) {
    assert!(
        matches!(result, Err(PortError::Permanent { .. })),
        "{what}: {result:?}"
    );
}

#[tokio::test]
async fn dynamodb_throttling_and_server_errors_are_transient() {
    for code in [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
    ] {
        let (status, body) = dynamo_error(400, code);
        assert_transient(load_after(status, body).await, code);
    }
    let (status, body) = dynamo_error(500, "InternalServerError");
    assert_transient(load_after(status, body).await, "500");
    assert_transient(load_after(503, None).await, "503 without a body");
}

#[tokio::test]
async fn dynamodb_validation_missing_tables_and_denials_are_permanent() {
    for code in [
        "ValidationException",
        "ResourceNotFoundException",
        "AccessDeniedException",
    ] {
        let (status, body) = dynamo_error(400, code);
        let result = load_after(status, body).await;
        assert_permanent(result, code);
    }
    let (status, body) = dynamo_error(400, "ValidationException");
    let message = load_after(status, body).await.unwrap_err().to_string();
    assert!(
        message.contains("dynamodb:GetItem") && message.contains("ValidationException"),
        "{message}"
    );
}

#[tokio::test]
async fn a_transaction_conflict_is_retried() {
    let conflict = r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"Transaction cancelled","CancellationReasons":[{"Code":"None"},{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"}]}"#;
    let rule = mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .sequence()
        .http_status(400, Some(conflict.to_owned()))
        .output(|| TransactWriteItemsOutput::builder().build())
        .build();
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let store = DynamoStore::from_client(client, "state");
    let applied = store
        .record_failures(
            &key("mocked"),
            &[failure("m1", 3700, "s3:A")],
            Change::Add { incident: &inc("i") },
        )
        .await;
    assert_eq!(applied.unwrap(), Some(vec![0]));
    assert_eq!(store.calls(), 2);
    assert_eq!(rule.num_calls(), 2);
}

#[tokio::test]
async fn a_cancellation_for_another_reason_is_not_retried() {
    let invalid = r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"Transaction cancelled","CancellationReasons":[{"Code":"None"},{"Code":"ValidationError","Message":"item too large"}]}"#;
    let rule = mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .sequence()
        .http_status(400, Some(invalid.to_owned()))
        .build();
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let store = DynamoStore::from_client(client, "state");
    let result = store
        .record_failures(
            &key("mocked"),
            &[failure("m1", 3700, "s3:A")],
            Change::Add { incident: &inc("i") },
        )
        .await;
    assert!(
        matches!(result, Err(PortError::Permanent { ref message, .. }) if message.contains("ValidationError")),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_group_item_this_code_cannot_update_is_a_permanent_error() {
    // A first failure without a failure count: hand-edited, or written by another version. Each attempt is
    // refused with the same stored item, so retrying could only burn calls.
    let refused = r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"Transaction cancelled","CancellationReasons":[{"Code":"None"},{"Code":"ConditionalCheckFailed","Message":"The conditional request failed","Item":{"pk":{"S":"GROUP#x"},"sk":{"S":"STATE"},"first_failure":{"N":"5"}}}]}"#;
    let rule = mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .sequence()
        .http_status(400, Some(refused.to_owned()))
        .times(3)
        .build();
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let store = DynamoStore::from_client(client, "state");
    let result = store
        .record_failures(
            &key("mocked"),
            &[failure("m1", 3700, "s3:A")],
            Change::Add { incident: &inc("i") },
        )
        .await;
    assert!(
        matches!(result, Err(PortError::Permanent { ref message, .. }) if message.contains("shape")),
        "{result:?}"
    );
    assert_eq!(
        rule.num_calls(),
        2,
        "one attempt from the guess, one from the stored item"
    );
}

#[tokio::test]
async fn a_missing_group_loads_as_none() {
    let rule = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| GetItemOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, [&rule]);
    assert_eq!(
        DynamoStore::from_client(client, "state")
            .load(&key("mocked"))
            .await
            .unwrap(),
        None
    );
}

/// A digest: the smallest notice, rendered with subject `[tokenwatch] digest 1h: ...` and `kind=digest`.
fn alert() -> Notice {
    Notice::Digest(DigestNotice {
        report: Default::default(),
        since: 1_793_606_400,
        until: 1_793_606_400 + 3600,
    })
}

fn sink(client: aws_sdk_sns::Client) -> SnsAlertSink {
    SnsAlertSink::from_client(
        client,
        "arn:aws:sns:us-east-1:123456789012:alerts",
        Default::default(),
    )
}

async fn publish_after(status: u16, body: Option<String>) -> Result<(), PortError> {
    let rule = mock!(aws_sdk_sns::Client::publish)
        .sequence()
        .http_status(status, body)
        .build();
    let client = mock_client!(aws_sdk_sns, RuleMode::Sequential, [&rule], |c| c
        .retry_config(aws_sdk_sns::config::retry::RetryConfig::disabled()));
    sink(client).publish(&alert()).await
}

#[tokio::test]
async fn sns_throttling_and_server_errors_are_transient() {
    for code in ["Throttling", "Throttled", "KMSThrottling"] {
        let (status, body) = sns_error(400, code);
        assert_transient(publish_after(status, body).await, code);
    }
    let (status, body) = sns_error(500, "InternalError");
    assert_transient(publish_after(status, body).await, "500");
}

#[tokio::test]
async fn sns_invalid_parameters_missing_topics_and_denials_are_permanent() {
    for (status, code) in [
        (400, "InvalidParameter"),
        (404, "NotFound"),
        (403, "AuthorizationError"),
    ] {
        let (status, body) = sns_error(status, code);
        assert_permanent(publish_after(status, body).await, code);
    }
}

#[tokio::test]
async fn a_published_alert_is_one_call() {
    let rule = mock!(aws_sdk_sns::Client::publish)
        .match_requests(|r| {
            r.message_structure() == Some("json")
                && r.subject()
                    .is_some_and(|s| s.starts_with("[tokenwatch] digest 1h:"))
                && r.message_attributes()
                    .is_some_and(|a| a["kind"].string_value() == Some("digest"))
        })
        .then_output(|| PublishOutput::builder().message_id("m").build());
    let client = mock_client!(aws_sdk_sns, [&rule]);
    sink(client).publish(&alert()).await.unwrap();
    assert_eq!(rule.num_calls(), 1);
}
