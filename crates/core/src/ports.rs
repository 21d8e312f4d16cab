//! The detector's ports, in domain words: where state lives ([`StateStore`], DynamoDB in production),
//! where alerts go ([`AlertSink`], SNS) and how a held page is decided again when its wait ends
//! ([`RecheckQueue`], a delayed SQS message). [`crate::memory`] has in-memory twins for tests and demos.
//!
//! Declared with `-> impl Future + Send` rather than `async fn` so that the futures are `Send` and
//! clippy's `async_fn_in_trait` holds; implementations may still be written as `async fn`.

use crate::fleet::Fleet;
use std::collections::{HashMap, HashSet};
use std::future::Future;

use crate::classify::{Failure, Issuance};
use crate::incident::{GroupState, Incident, IncidentId};
use crate::model::Severity;
use crate::notice::Notice;
use crate::recheck::Recheck;
use crate::stats::{FailureStats, GroupKey};
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

/// How many of a batch's failures a store merges into the group at once ([`StateStore::record_failures`]):
/// DynamoDB writes a batch in transactions of at most 100 actions, a claim of each failure's eventID and
/// the group's update. Merging part by part differs from one merge of the whole batch only where
/// [`FailureStats`] depends on how failures are split: which values a capped list keeps at its cap, and
/// which spelling of the principal is kept.
pub const MERGE_PART: usize = 99;

/// The failures of a batch a store takes, in the parts it merges them in: the first failure of each
/// `eventID` and every failure without one, in order, [`MERGE_PART`] at a time. An empty batch is one
/// empty part (it still sets the incident).
pub fn merge_parts(failures: &[Failure]) -> Vec<Vec<usize>> {
    let mut seen = HashSet::new();
    let taken: Vec<usize> = (0..failures.len())
        .filter(|&i| failures[i].event_id.as_deref().is_none_or(|id| seen.insert(id)))
        .collect();
    if taken.is_empty() {
        return vec![Vec::new()];
    }
    taken.chunks(MERGE_PART).map(<[usize]>::to_vec).collect()
}

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

impl Change<'_> {
    /// What recording `failures` under this change leaves of `state`, given which of them were new
    /// (`applied`, the answer of [`StateStore::record_failures`]): part by part ([`merge_parts`]), the
    /// stats of the part's new failures (added in order) merged into the group's; the first part of a
    /// restart replaces them instead and starts the incident. The one description of the merge every
    /// store keeps and the detector decides on.
    pub fn apply(self, state: &mut GroupState, failures: &[Failure], applied: &[usize]) {
        let new: HashSet<usize> = applied.iter().copied().collect();
        let mut change = self;
        for part in merge_parts(failures) {
            let mut delta = FailureStats::default();
            for i in part.into_iter().filter(|i| new.contains(i)) {
                delta.add(failures[i].clone());
            }
            match change {
                Change::Add { incident } => {
                    state.stats.merge(delta);
                    state.incident.id.get_or_insert_with(|| incident.clone());
                }
                Change::Restart {
                    incident,
                    session_failed_at,
                    ..
                } => {
                    state.stats = delta;
                    state.stats.first_failure.session_failed_at = session_failed_at;
                    state.incident = Incident {
                        id: Some(incident.clone()),
                        paged: None,
                        resolved_at: None,
                    };
                    // Later parts add to the incident the first one started.
                    change = Change::Add { incident };
                }
            }
        }
    }
}

/// What a batch's failures need read before they are recorded, read at once ([`StateStore::preload`]).
/// A key that is present holds what the store held at the read (`None`: nothing stored); a key that is
/// absent was not read, and is read on its own when needed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Preloaded {
    /// Group states by key.
    pub groups: HashMap<GroupKey, Option<GroupState>>,
    /// Sessions by access key.
    pub sessions: HashMap<String, Option<Issuance>>,
}

/// Where the detector keeps state between invocations.
pub trait StateStore: Sync {
    /// Reads the groups `groups` and the sessions `access_keys` in as few requests as the store can
    /// (DynamoDB: `BatchGetItem`), so that a batch of many groups does not cost a read per group. What
    /// could not be read is left out of the answer rather than failing it.
    fn preload(
        &self,
        groups: &[GroupKey],
        access_keys: &[String],
    ) -> impl Future<Output = Result<Preloaded, PortError>> + Send;

    /// The group's state, `None` if nothing of it was ever recorded.
    fn load(&self, key: &GroupKey) -> impl Future<Output = Result<Option<GroupState>, PortError>> + Send;

    /// Records failures of one group atomically with its counters, each `eventID` once across all
    /// invocations (failures without an id are always counted). The batch is taken in parts of
    /// [`MERGE_PART`] ([`merge_parts`]), each atomic: after it, the stored stats equal the previous ones
    /// merged with the stats of the part's new failures ([`FailureStats::merge`]: counts added,
    /// first/last the min/max), as [`Change::apply`] describes. Returns the indexes of `failures` that
    /// were new, or `None` when a [`Change::Restart`] found another incident id (nothing was written;
    /// reload and decide again).
    fn record_failures(
        &self,
        key: &GroupKey,
        failures: &[Failure],
        change: Change<'_>,
    ) -> impl Future<Output = Result<Option<Vec<usize>>, PortError>> + Send;

    /// Indexes an issued session by its access key and adds its issue time to its group; returns the
    /// group's state after the write. Idempotent, and the two copies of a cross-account call leave the
    /// same session in either order ([`crate::memory::combine_copies`]). Need not be atomic: a fault
    /// between the session and the group leaves what a late delivery of one of them leaves too, and the
    /// retry completes it.
    fn record_issuance(
        &self,
        key: &GroupKey,
        issuance: &Issuance,
    ) -> impl Future<Output = Result<GroupState, PortError>> + Send;

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

    /// Claims `account`'s synthetic-drill slot at `now`: true when no drill of that account took it in the
    /// last [`crate::drill::DRILL_INTERVAL`] seconds (the slot is then taken from `now`), or when the event
    /// holding it is `event` itself (a redelivery, or a retry after a fault; the slot is left as it was).
    /// False otherwise; nothing is written then.
    fn claim_drill(
        &self,
        account: &str,
        event: Option<&str>,
        now: Epoch,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Counts a new group of the principal `principal` (a [`crate::incident::group_id`] without session)
    /// in the clock hour of `now`: true while fewer than `cap` were counted in that hour (this one is then
    /// counted), false once `cap` were, writing nothing. The count of an hour is kept for at least two.
    fn admit_new_group(
        &self,
        principal: &str,
        now: Epoch,
        cap: u64,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// The current incident of the fleet `fleet` ([`crate::fleet::fleet_of`]) and the version to hand
    /// back to [`StateStore::save_fleet`].
    fn load_fleet(&self, fleet: &str)
    -> impl Future<Output = Result<Option<(Fleet, u64)>, PortError>> + Send;

    /// Writes `doc` as the fleet's incident if its stored version is still `expected` (`None`: nothing
    /// stored); false, writing nothing, when another invocation wrote first. Kept for at least
    /// [`crate::incident::Policy::cooldown`] after `now` and at most a month.
    fn save_fleet(
        &self,
        fleet: &str,
        doc: &Fleet,
        expected: Option<u64>,
        now: Epoch,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Every group with an open incident, for the scheduled sweep.
    fn open_incidents(&self) -> impl Future<Output = Result<Vec<GroupState>, PortError>> + Send;

    /// Every group with an open incident or a failure at or after `since`, for reports.
    fn groups(&self, since: Epoch) -> impl Future<Output = Result<Vec<GroupState>, PortError>> + Send;
}

/// What [`NearMissStore::record_near_misses`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NearMissesRecorded {
    /// Indexes of the sessions stored for the first time.
    pub new: Vec<usize>,
    /// Sessions stored before whose use came later this time (their item now holds the later one).
    pub later: usize,
    /// Sessions stored already with a use at least as late: nothing written.
    pub unchanged: usize,
}

/// Where the scheduled trail scan keeps near misses (docs/rules.md, "Near misses"), one per session, and
/// where reports and the digest read them back. Writing the same session's near miss again writes
/// nothing, so a scan that reads a file twice, or two scans of overlapping windows, add nothing twice.
pub trait NearMissStore: Sync {
    /// Stores each session's near miss unless that session's is stored with a use at least as late.
    fn record_near_misses(
        &self,
        sessions: &[crate::nearmiss::SessionNearMiss],
        now: Epoch,
    ) -> impl Future<Output = Result<NearMissesRecorded, PortError>> + Send;

    /// The stored near misses whose last use is at or after `since`.
    fn near_misses(
        &self,
        since: Epoch,
    ) -> impl Future<Output = Result<Vec<crate::nearmiss::SessionNearMiss>, PortError>> + Send;
}

/// Where notices go: the adapter renders each for its channel (SNS: `tokenwatch-render`).
pub trait AlertSink: Sync {
    /// Publishes one notice.
    fn publish(&self, notice: &Notice) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// Brings a [`Recheck`] back to the detector at its time (crate::recheck).
pub trait RecheckQueue: Sync {
    /// Delivers `recheck` to the detector, as one of its events, [`Recheck::delay`] after `now`.
    fn schedule(&self, recheck: &Recheck, now: Epoch) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// No re-checks: held pages wait for the sweep.
impl RecheckQueue for () {
    async fn schedule(&self, _: &Recheck, _: Epoch) -> Result<(), PortError> {
        Ok(())
    }
}

/// A queue when there is one, none (the sweep only) otherwise.
impl<Q: RecheckQueue> RecheckQueue for Option<Q> {
    async fn schedule(&self, recheck: &Recheck, now: Epoch) -> Result<(), PortError> {
        match self {
            Some(q) => q.schedule(recheck, now).await,
            None => Ok(()),
        }
    }
}
