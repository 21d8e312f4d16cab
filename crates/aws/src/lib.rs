//! tokenwatch's AWS adapters, the only crate that depends on the AWS SDK.
//!
//! The detector's ports ([`tokenwatch_core::ports`]) are implemented here:
//! - [`DynamoStore`] implements [`StateStore`](tokenwatch_core::ports::StateStore) on one DynamoDB table
//!   ([`create_table`] creates it; the module docs of [`dynamodb`] describe its items);
//! - [`SnsAlertSink`] implements [`AlertSink`](tokenwatch_core::ports::AlertSink) with SNS `Publish`,
//!   rendering each notice with `tokenwatch-render`;
//! - [`EventBus`] puts `tokenwatch drill` events on an EventBridge bus;
//! - [`trail::TrailReader`] streams a trail's log files from S3 into the engine, and
//!   [`lookup::LookupEvents`] pages CloudTrail Event history into it, within the API's rate limit
//!   (`tokenwatch report --from-trail` / `--lookup-events`).
//!
//! [`sdk_config`] is the one place that builds the SDK configuration both use. SDK errors become
//! [`PortError::Transient`](tokenwatch_core::ports::PortError::Transient) (throttling, 5xx, timeouts,
//! connection failures) or `Permanent` (validation, missing table or topic, access denied), with the
//! SDK error kept as their source.

pub mod dynamodb;
mod error;
pub mod eventbridge;
#[cfg(feature = "backfill")]
pub mod lookup;
pub mod sdk;
pub mod sns;
#[cfg(feature = "backfill")]
pub mod trail;

pub use dynamodb::{DynamoStore, create_table};
pub use eventbridge::{EventBus, caller_account};
pub use sdk::{SdkOptions, Timeouts, sdk_config};
pub use sns::SnsAlertSink;
