//! The tokenwatch engine: CloudTrail records in, expired-credential findings out.
//!
//! Data flow: bytes (trail files, NDJSON, EventBridge envelopes, SQS/SNS wrappers, lookup-events output,
//! plain or gzip) are split into record-sized values by [`reader`]; a cheap substring test lets through
//! only values that may be an expiry failure or an STS issuing call; those are decoded into the lenient
//! [`record::Record`] and [`classify`]-ed into a failure, an issuance or nothing. The [`analyze::Analyzer`]
//! keeps the session index and per-session aggregates, then joins and groups; [`finding::judge`] decides
//! each group's verdict, lease, credential source, client and severity with the pure functions of
//! [`assess`] and writes the fix with [`remediation`]. The result is a [`finding::Report`] of
//! [`finding::Finding`]s. The detector ([`pipeline`]) and the state-table report ([`query`]) judge with
//! the same function, and tell on-call through [`notice::Notice`]s. Showing any of it (JSON, tables,
//! HTML, SNS messages) is `tokenwatch-render`'s job: nothing here writes text for people.
//!
//! Nothing here reads a clock, the network or the environment: time comes in with the records, and the
//! crate depends on no AWS SDK, no Lambda runtime and no async runtime. The rules are in docs/rules.md.

pub mod analyze;
pub mod assess;
pub mod classify;
pub mod coverage;
pub mod drill;
pub mod envelope;
pub mod events;
pub mod finding;
pub mod fleet;
pub mod incident;
pub mod livescan;
pub mod memory;
pub mod model;
pub mod nearmiss;
pub mod notice;
pub mod partial;
pub mod pipeline;
pub mod ports;
pub mod query;
pub mod reader;
pub mod recheck;
pub mod record;
pub mod remediation;
pub mod stats;
pub mod time;
pub mod usage;
pub mod workload;

pub use analyze::{Analyzer, Window};
pub use finding::{Finding, Report, judge};
pub use model::{Client, CredentialSource, LeaseSource, Severity, StsCall, Verdict};
