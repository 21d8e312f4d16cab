//! Fixtures the workspace's tests share, so that each exists once: the local AWS emulators
//! ([`Emulator`]: an endpoint, or a failure naming the command that provides it, and an SDK configuration
//! for it), names no other test uses ([`unique`]), SNS topics ([`new_topic`]), SQS queues alone or
//! subscribed to one ([`Queue`], [`Subscriber`]), the bundled scenario samples ([`samples_dir`],
//! [`scenarios`], [`inputs`]) and the report document's JSON Schema ([`assert_valid_report`]).
//!
//! A dev-dependency only: of `tokenwatch-aws`, `tokenwatch` and the end-to-end tests, never of
//! `tokenwatch-core`, whose tests stay free of the SDK.

mod emulator;
mod samples;
mod schema;
mod sqs;

pub use emulator::{Emulator, unique};
pub use samples::{inputs, samples_dir, scenarios};
pub use schema::{assert_valid_report, assert_valid_report_text, report_schema_path};
pub use sqs::{Queue, Received, Subscriber, new_topic, queue_arn};
