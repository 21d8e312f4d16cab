//! tokenwatch's AWS adapters, the only crate that depends on the AWS SDK.
//!
//! The detector's ports ([`tokenwatch_core::ports`]) are implemented here:
//! - [`DynamoStore`] implements [`StateStore`](tokenwatch_core::ports::StateStore) on one DynamoDB table
//!   ([`create_table`] creates it; the module docs of [`dynamodb`] describe its items);
//! - [`SnsAlertSink`] implements [`AlertSink`](tokenwatch_core::ports::AlertSink) with SNS `Publish`,
//!   rendering each notice with `tokenwatch-render`;
//! - [`SqsRecheckQueue`] implements [`RecheckQueue`](tokenwatch_core::ports::RecheckQueue) with a delayed
//!   SQS `SendMessage` to the detector's own event queue;
//! - [`EventBus`] puts `tokenwatch drill` events on an EventBridge bus;
//! - [`trail::TrailReader`] streams a trail's log files from S3 into the engine, and
//!   [`lookup::LookupEvents`] pages CloudTrail Event history into it, within the API's rate limit
//!   (`tokenwatch report --from-trail` / `--lookup-events`);
//! - with the feature `proving`: [`probe::Prober`] makes the real drill's signed probe calls (and the
//!   CloudFormation and CloudWatch reads), [`drill`] assumes the drill role, and [`doctor`] reads what
//!   `tokenwatch doctor` checks.
//!
//! [`sdk_config`] is the one place that builds the SDK configuration both use. SDK errors become
//! [`PortError::Transient`](tokenwatch_core::ports::PortError::Transient) (throttling, 5xx, timeouts,
//! connection failures) or `Permanent` (validation, missing table or topic, access denied), with the
//! SDK error kept as their source.

#[cfg(feature = "backfill")]
pub mod backfill;
#[cfg(feature = "proving")]
pub mod doctor;
#[cfg(feature = "proving")]
pub mod drill;
pub mod dynamodb;
pub mod error;
pub mod eventbridge;
#[cfg(feature = "backfill")]
pub mod lookup;
#[cfg(feature = "backfill")]
pub mod partials;
#[cfg(feature = "proving")]
pub mod probe;
pub mod sdk;
pub mod sns;
pub mod sqs;
#[cfg(feature = "backfill")]
pub mod trail;

pub use dynamodb::{DynamoStore, create_table};
pub use error::{Blocked, BlockedError, blocked};
pub use eventbridge::{EventBus, caller_account};
pub use sdk::{SdkOptions, Timeouts, ready, require_region, sdk_config};
pub use sns::SnsAlertSink;
pub use sqs::SqsRecheckQueue;
