//! The detector's two ports, in domain words: where state lives ([`StateStore`], DynamoDB in production)
//! and where alerts go ([`AlertSink`], SNS). [`crate::memory`] has in-memory twins for tests and demos.
//!
//! Declared with `-> impl Future + Send` rather than `async fn` so that the futures are `Send` and
//! clippy's `async_fn_in_trait` holds; implementations may still be written as `async fn`.

use std::future::Future;

use crate::classify::{Failure, Issuance};
use crate::incident::{GroupState, IncidentId};
use crate::model::Severity;
use crate::notice::Notice;
use crate::stats::GroupKey;
use crate::time::Epoch;

/// The error a port failed with underneath (an SDK error), kept for its chain.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a port call failed: whether a retry can help, what failed in words, and the underlying error.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Worth retrying: throttling, 5xx, timeouts, connection errors.
    #[error("{message}")]
    Transient {
        /// What failed, for a log line.
        message: String,
        /// The error underneath, if any.
        #[source]
        source: Option<Source>,
    },
    /// Will fail again: validation, a missing table or topic, access denied.
    #[error("{message}")]
    Permanent {
        /// What failed, for a log line.
        message: String,
        /// The error underneath, if any.
        #[source]
        source: Option<Source>,
    },
}

impl PortError {
    /// A transient failure described by `message`.
    pub fn transient(message: impl Into<String>) -> PortError {
        PortError::Transient {
            message: message.into(),
            source: None,
        }
    }

    /// A permanent failure described by `message`.
    pub fn permanent(message: impl Into<String>) -> PortError {
        PortError::Permanent {
            message: message.into(),
            source: None,
        }
    }

    /// Keeps `source` as the error underneath.
    pub fn with_source(self, source: impl Into<Source>) -> PortError {
        match self {
            PortError::Transient { message, .. } => PortError::Transient {
                message,
                source: Some(source.into()),
            },
            PortError::Permanent { message, .. } => PortError::Permanent {
                message,
                source: Some(source.into()),
            },
        }
    }

    /// Can a retry succeed?
    pub fn is_transient(&self) -> bool {
        matches!(self, PortError::Transient { .. })
    }
}

/// Seconds a page claim holds ([`StateStore::claim_page`]). Longer than an invocation can live (the
/// detector's timeout is 30 s), so a live claimer is never overtaken; shorter than the event queue's
/// visibility timeout (300 s) and the sweep's period (5 min), so that the retry of an invocation that
/// died between claiming and publishing, or the next sweep, finds the claim over and pages
/// (tests/infra.rs holds the template to both).
pub const PAGE_LEASE: i64 = 120;

/// How a batch of new failures changes a group's stored state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change<'a> {
    /// Add to the incident with this id (set on the item if it has none yet).
    Add {
        /// The incident.
        incident: &'a IncidentId,
    },
    /// Start a new incident: replace the counters with these failures' and clear `paged` and
    /// `resolved_at`, but only if the stored incident id is still `expected`.
    Restart {
        /// The incident id the caller read (`None`: the item had none).
        expected: Option<&'a IncidentId>,
        /// The new incident's id.
        incident: &'a IncidentId,
        /// When the new incident's session failed before it, if it did
        /// ([`crate::stats::FirstFailure::session_failed_at`]).
        session_failed_at: Option<Epoch>,
    },
}

/// Where the detector keeps state between invocations.
pub trait StateStore: Sync {
    /// The group's state, `None` if nothing of it was ever recorded.
    fn load(&self, key: &GroupKey) -> impl Future<Output = Result<Option<GroupState>, PortError>> + Send;

    /// Records failures of one group atomically with its counters, each `eventID` once across all
    /// invocations (failures without an id are always counted). After it, the stored stats equal the
    /// previous ones merged with the new failures' ([`crate::stats::FailureStats::merge`]: counts added,
    /// first/last the min/max). Returns the indexes of `failures` that were new, or `None` when a
    /// [`Change::Restart`] found another incident id (nothing was written; reload and decide again).
    fn record_failures(
        &self,
        key: &GroupKey,
        failures: &[Failure],
        change: Change<'_>,
    ) -> impl Future<Output = Result<Option<Vec<usize>>, PortError>> + Send;

    /// Indexes an issued session by its access key and adds its issue time to its group.
    fn record_issuance(
        &self,
        key: &GroupKey,
        issuance: &Issuance,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// The session issued with this access key, if its issuing call was recorded.
    fn session(
        &self,
        access_key_id: &str,
    ) -> impl Future<Output = Result<Option<Issuance>, PortError>> + Send;

    /// Claims the page of `incident` at `severity` for [`PAGE_LEASE`] seconds from `now`: true for one
    /// caller at a time, and only while the incident is current, was paged (confirmed) below `severity`
    /// or not at all, and no live claim of the incident at `severity` or above exists. A claim whose lease
    /// ran out (its invocation died between claiming and publishing) is taken over, so no page is lost;
    /// a claim below `severity` does not stand in an escalation's way.
    fn claim_page(
        &self,
        key: &GroupKey,
        incident: &IncidentId,
        severity: Severity,
        now: Epoch,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Records that the page at `severity` was published (SNS accepted it): the incident's `paged`
    /// rises to `severity` (never falls) and the caller's claim ends. Nothing changes if the incident is
    /// no longer current.
    fn confirm_page(
        &self,
        key: &GroupKey,
        incident: &IncidentId,
        severity: Severity,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Gives a claim back when its alert could not be published, so that the retry pages at once rather
    /// than after the lease (which ends it anyway when this call fails too).
    fn release_page(
        &self,
        key: &GroupKey,
        incident: &IncidentId,
        severity: Severity,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Marks `incident` resolved at `at`: true for exactly one caller while it is current and open. The
    /// incident's start ([`IncidentId::opened_at`]) joins the group's `history`.
    fn resolve(
        &self,
        key: &GroupKey,
        incident: &IncidentId,
        at: Epoch,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Undoes [`StateStore::resolve`] when the resolved notice could not be published.
    fn unresolve(
        &self,
        key: &GroupKey,
        incident: &IncidentId,
        at: Epoch,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Every group with an open incident, for the scheduled sweep.
    fn open_incidents(&self) -> impl Future<Output = Result<Vec<GroupState>, PortError>> + Send;

    /// Every group with an open incident or a failure at or after `since`, for reports.
    fn groups(&self, since: Epoch) -> impl Future<Output = Result<Vec<GroupState>, PortError>> + Send;
}

/// Where notices go: the adapter renders each for its channel (SNS: `tokenwatch-render`).
pub trait AlertSink: Sync {
    /// Publishes one notice.
    fn publish(&self, notice: &Notice) -> impl Future<Output = Result<(), PortError>> + Send;
}
