//! Fixtures the workspace's tests share, so that each exists once: the local AWS emulators
//! ([`Emulator`]: an endpoint, or a failure naming the command that provides it, and an SDK configuration
//! for it), names no other test uses ([`unique`]), SNS topics ([`new_topic`]), SQS queues alone or
//! subscribed to one ([`Queue`], [`Subscriber`]) and the bundled scenario samples ([`samples_dir`],
//! [`scenarios`], [`inputs`]).
//!
//! A dev-dependency only: of `tokenwatch-aws`, `tokenwatch` and the end-to-end tests, never of
//! `tokenwatch-core`, whose tests stay free of the SDK.

mod emulator;
mod samples;
mod sqs;

pub use emulator::{Emulator, unique};
pub use samples::{inputs, samples_dir, scenarios};
pub use sqs::{Queue, Received, Subscriber, new_topic, queue_arn};
