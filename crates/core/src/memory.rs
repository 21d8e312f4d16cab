//! In-memory twins of the ports: the reference behaviour the DynamoDB and SNS adapters must match, used
//! by tests and the offline drill. [`MemoryStore::fail_next`] and [`RecordingSink::fail_next`] inject
//! transient faults. [`MemoryRechecks`] holds re-checks until a test's clock reaches them.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::classify::{Failure, Issuance};
use crate::drill::DRILL_INTERVAL;
use crate::fleet::Fleet;
use crate::incident::{GroupState, IncidentId, MAX_HISTORY, MAX_ISSUED_TIMES};
use crate::model::Severity;
use crate::notice::Notice;
use crate::ports::{
    AlertSink, Change, PAGE_LEASE, PortError, Preloaded, RecheckQueue, StateStore, merge_parts,
};
use crate::recheck::Recheck;
use crate::stats::GroupKey;
use crate::time::Epoch;

#[derive(Default)]
struct Inner {
    groups: HashMap<GroupKey, GroupState>,
    events: HashSet<String>,
    sessions: HashMap<String, Issuance>,
    /// Each group's page claim: which incident, at what severity, until when.
    claims: HashMap<GroupKey, (IncidentId, Severity, Epoch)>,
    /// New groups counted per principal and clock hour.
    new_groups: HashMap<(String, Epoch), u64>,
    /// Per account: when its drill slot was taken, and by which event.
    drills: HashMap<String, (Epoch, Option<String>)>,
    /// Per fleet: its incident and version.
    fleets: HashMap<String, (Fleet, u64)>,
    /// Near misses by access key.
    near_misses: HashMap<String, crate::nearmiss::SessionNearMiss>,
}

/// A [`StateStore`] in a mutex.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    failing: AtomicUsize,
    calls: AtomicUsize,
    /// Groups every call about fails, and whether transiently.
    broken: Mutex<HashMap<GroupKey, bool>>,
}

impl MemoryStore {
    /// The next `n` calls fail with a transient error.
    pub fn fail_next(&self, n: usize) {
        self.failing.store(n, Ordering::SeqCst);
    }

    /// From now on every call about the group `key` fails, transiently or permanently (as an item at
    /// DynamoDB's size limit does); [`MemoryStore::mend`] ends it.
    pub fn break_group(&self, key: &GroupKey, transient: bool) {
        self.broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), transient);
    }

    /// Calls about `key` work again.
    pub fn mend(&self, key: &GroupKey) {
        self.broken.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// [`MemoryStore::enter`] for a call about the group `key`.
    fn enter_group(&self, key: &GroupKey) -> Result<std::sync::MutexGuard<'_, Inner>, PortError> {
        let broken = self
            .broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied();
        match broken {
            Some(true) => Err(PortError::transient("injected fault of the group")),
            Some(false) => Err(PortError::permanent("injected permanent fault of the group")),
            None => self.enter(),
        }
    }

    /// Every group stored, in no particular order (not counted as a call).
    pub fn snapshot(&self) -> Vec<GroupState> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.groups.values().cloned().collect()
    }

    /// Calls made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn enter(&self) -> Result<std::sync::MutexGuard<'_, Inner>, PortError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self
            .failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(PortError::transient("injected fault"));
        }
        Ok(self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl StateStore for MemoryStore {
    async fn preload(&self, groups: &[GroupKey], access_keys: &[String]) -> Result<Preloaded, PortError> {
        let broken = self.broken.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let inner = self.enter()?;
        Ok(Preloaded {
            // A broken group is left out, as a batch read leaves out what it could not read: its own
            // read then fails as it would have.
            groups: groups
                .iter()
                .filter(|k| !broken.contains_key(*k))
                .map(|k| (k.clone(), inner.groups.get(k).cloned()))
                .collect(),
            sessions: access_keys
                .iter()
                .map(|k| (k.clone(), inner.sessions.get(k).cloned()))
                .collect(),
        })
    }

    async fn load(&self, key: &GroupKey) -> Result<Option<GroupState>, PortError> {
        Ok(self.enter_group(key)?.groups.get(key).cloned())
    }

    async fn record_failures(
        &self,
        key: &GroupKey,
        failures: &[Failure],
        change: Change<'_>,
    ) -> Result<Option<Vec<usize>>, PortError> {
        let mut inner = self.enter_group(key)?;
        let current = inner.groups.get(key).and_then(|g| g.incident.id.clone());
        if let Change::Restart { expected, .. } = change
            && current.as_ref() != expected
        {
            return Ok(None);
        }
        let applied: Vec<usize> = merge_parts(failures)
            .into_iter()
            .flatten()
            .filter(|&i| {
                failures[i]
                    .event_id
                    .as_ref()
                    .is_none_or(|id| inner.events.insert(id.clone()))
            })
            .collect();
        let group = inner.groups.entry(key.clone()).or_insert_with(|| GroupState {
            key: key.clone(),
            ..Default::default()
        });
        change.apply(group, failures, &applied);
        Ok(Some(applied))
    }

    async fn record_issuance(&self, key: &GroupKey, issuance: &Issuance) -> Result<GroupState, PortError> {
        let mut inner = self.enter_group(key)?;
        inner
            .sessions
            .entry(issuance.access_key_id.clone())
            .and_modify(|known| combine_copies(known, issuance))
            .or_insert_with(|| issuance.clone());
        let group = inner.groups.entry(key.clone()).or_insert_with(|| GroupState {
            key: key.clone(),
            ..Default::default()
        });
        if group.issued_times.len() >= MAX_ISSUED_TIMES {
            group.issued_times.clear();
            group.issued_keys.clear();
        }
        group.issued_times.insert(issuance.issued_at);
        // Two sessions issued in the same second: the smaller key, as the DynamoDB adapter reads it back.
        let key = &issuance.access_key_id;
        group
            .issued_keys
            .entry(issuance.issued_at)
            .and_modify(|k| {
                if key < k {
                    k.clone_from(key)
                }
            })
            .or_insert_with(|| key.clone());
        Ok(group.clone())
    }

    async fn session(&self, access_key_id: &str) -> Result<Option<Issuance>, PortError> {
        Ok(self.enter()?.sessions.get(access_key_id).cloned())
    }

    async fn claim_page(
        &self,
        key: &GroupKey,
        incident: &IncidentId,
        severity: Severity,
        now: Epoch,
    ) -> Result<bool, PortError> {
        let mut inner = self.enter_group(key)?;
        let Some(g) = inner.groups.get(key) else {
            return Ok(false);
        };
        if g.incident.id.as_ref() != Some(incident) || g.incident.paged.is_some_and(|p| p >= severity) {
            return Ok(false);
        }
        let held = inner
            .claims
            .get(key)
            .is_some_and(|(i, s, until)| i == incident && *s >= severity && *until > now);
        if held {
            return Ok(false);
        }
        inner
            .claims
            .insert(key.clone(), (incident.clone(), severity, now + PAGE_LEASE));
        Ok(true)
    }

    async fn confirm_page(
        &self,
        key: &GroupKey,
        incident: &IncidentId,
        severity: Severity,
    ) -> Result<(), PortError> {
        let mut inner = self.enter_group(key)?;
        if let Some(g) = inner.groups.get_mut(key)
            && g.incident.id.as_ref() == Some(incident)
            && g.incident.paged.is_none_or(|p| p < severity)
        {
            g.incident.paged = Some(severity);
        }
        release(&mut inner, key, incident, severity);
        Ok(())
    }

    async fn release_page(
        &self,
        key: &GroupKey,
        incident: &IncidentId,
        severity: Severity,
    ) -> Result<(), PortError> {
        let mut inner = self.enter_group(key)?;
        release(&mut inner, key, incident, severity);
        Ok(())
    }

    async fn resolve(&self, key: &GroupKey, incident: &IncidentId, at: Epoch) -> Result<bool, PortError> {
        let mut inner = self.enter_group(key)?;
        let Some(g) = inner.groups.get_mut(key) else {
            return Ok(false);
        };
        if g.incident.id.as_ref() != Some(incident) || g.incident.resolved_at.is_some() {
            return Ok(false);
        }
        g.incident.resolved_at = Some(at);
        g.history.insert(incident.opened_at);
        while g.history.len() > MAX_HISTORY {
            g.history.pop_first();
        }
        Ok(true)
    }

    async fn unresolve(&self, key: &GroupKey, incident: &IncidentId, at: Epoch) -> Result<(), PortError> {
        let mut inner = self.enter_group(key)?;
        if let Some(g) = inner.groups.get_mut(key)
            && g.incident.id.as_ref() == Some(incident)
            && g.incident.resolved_at == Some(at)
        {
            g.incident.resolved_at = None;
        }
        Ok(())
    }

    async fn claim_drill(&self, account: &str, event: Option<&str>, now: Epoch) -> Result<bool, PortError> {
        let mut inner = self.enter()?;
        match inner.drills.get(account) {
            // The event holding the slot keeps it as it was: a redelivery does not move it on.
            Some((_, holder)) if event.is_some() && holder.as_deref() == event => Ok(true),
            Some((at, _)) if *at > now - DRILL_INTERVAL => Ok(false),
            _ => {
                inner
                    .drills
                    .insert(account.to_owned(), (now, event.map(str::to_owned)));
                Ok(true)
            }
        }
    }

    async fn admit_new_group(&self, principal: &str, now: Epoch, cap: u64) -> Result<bool, PortError> {
        let mut inner = self.enter()?;
        let count = inner
            .new_groups
            .entry((principal.to_owned(), now - now.rem_euclid(3600)))
            .or_default();
        if *count >= cap {
            return Ok(false);
        }
        *count += 1;
        Ok(true)
    }

    async fn load_fleet(&self, fleet: &str) -> Result<Option<(Fleet, u64)>, PortError> {
        Ok(self.enter()?.fleets.get(fleet).cloned())
    }

    async fn save_fleet(
        &self,
        fleet: &str,
        doc: &Fleet,
        expected: Option<u64>,
        _now: Epoch,
    ) -> Result<bool, PortError> {
        let mut inner = self.enter()?;
        let stored = inner.fleets.get(fleet).map(|(_, v)| *v);
        if stored != expected {
            return Ok(false);
        }
        inner
            .fleets
            .insert(fleet.to_owned(), (doc.clone(), expected.unwrap_or(0) + 1));
        Ok(true)
    }

    async fn open_incidents(&self) -> Result<Vec<GroupState>, PortError> {
        let inner = self.enter()?;
        let mut open: Vec<GroupState> = inner.groups.values().filter(|g| g.is_open()).cloned().collect();
        open.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(open)
    }

    async fn groups(&self, since: Epoch) -> Result<Vec<GroupState>, PortError> {
        let inner = self.enter()?;
        let mut groups: Vec<GroupState> = inner
            .groups
            .values()
            .filter(|g| g.is_open() || (g.stats.failures > 0 && g.stats.last >= since))
            .cloned()
            .collect();
        groups.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(groups)
    }
}

/// Ends the claim of `incident` at `severity`, if it is the group's claim.
fn release(inner: &mut Inner, key: &GroupKey, incident: &IncidentId, severity: Severity) {
    if inner
        .claims
        .get(key)
        .is_some_and(|(i, s, _)| i == incident && *s == severity)
    {
        inner.claims.remove(key);
    }
}

/// Copies of one issuing call (a cross-account AssumeRole is logged in both accounts) are combined,
/// whatever order they come in: role chaining if either copy shows it, the known facts of both.
pub fn combine_copies(known: &mut Issuance, copy: &Issuance) {
    known.chained |= copy.chained;
    known.for_container |= copy.for_container;
    known.duration_seconds = known.duration_seconds.max(copy.duration_seconds);
    known.expiration = known.expiration.max(copy.expiration);
}

/// An [`AlertSink`] that keeps the notices it was given.
#[derive(Default)]
pub struct RecordingSink {
    notices: Mutex<Vec<Notice>>,
    failing: AtomicUsize,
}

impl RecordingSink {
    /// The next `n` publishes fail with a transient error.
    pub fn fail_next(&self, n: usize) {
        self.failing.store(n, Ordering::SeqCst);
    }

    /// What was published, in order.
    pub fn notices(&self) -> Vec<Notice> {
        self.notices.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl AlertSink for RecordingSink {
    async fn publish(&self, notice: &Notice) -> Result<(), PortError> {
        if self
            .failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(PortError::transient("injected fault"));
        }
        self.notices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(notice.clone());
        Ok(())
    }
}

/// A [`RecheckQueue`] on a test's clock: each re-check is due [`Recheck::delay`] after it was scheduled,
/// as an SQS message with that `DelaySeconds` would be.
#[derive(Default)]
pub struct MemoryRechecks {
    queued: Mutex<Vec<(Epoch, String)>>,
}

impl MemoryRechecks {
    /// The message bodies due at `now`, in the order they fell due; they leave the queue.
    pub fn due(&self, now: Epoch) -> Vec<String> {
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        let (mut due, later): (Vec<_>, Vec<_>) = queued.drain(..).partition(|(at, _)| *at <= now);
        *queued = later;
        due.sort_by_key(|(at, _)| *at);
        due.into_iter().map(|(_, body)| body).collect()
    }

    /// When each queued re-check falls due, earliest first.
    pub fn times(&self) -> Vec<Epoch> {
        let mut t: Vec<Epoch> = self
            .queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(at, _)| *at)
            .collect();
        t.sort_unstable();
        t
    }
}

impl RecheckQueue for MemoryRechecks {
    async fn schedule(&self, recheck: &Recheck, now: Epoch) -> Result<(), PortError> {
        self.queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((now + recheck.delay(now), recheck.to_json()));
        Ok(())
    }
}

impl crate::ports::NearMissStore for MemoryStore {
    async fn record_near_misses(
        &self,
        sessions: &[crate::nearmiss::SessionNearMiss],
        _now: Epoch,
    ) -> Result<crate::ports::NearMissesRecorded, PortError> {
        let mut out = crate::ports::NearMissesRecorded::default();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (i, s) in sessions.iter().enumerate() {
            let key = s.occurrence.access_key_id.clone();
            match inner.near_misses.get(&key) {
                None => out.new.push(i),
                Some(kept) if kept.occurrence.last_use < s.occurrence.last_use => out.later += 1,
                Some(_) => {
                    out.unchanged += 1;
                    continue;
                }
            }
            inner.near_misses.insert(key, s.clone());
        }
        Ok(out)
    }

    async fn near_misses(&self, since: Epoch) -> Result<Vec<crate::nearmiss::SessionNearMiss>, PortError> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = inner
            .near_misses
            .values()
            .filter(|s| s.occurrence.last_use >= since)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.occurrence.access_key_id.cmp(&b.occurrence.access_key_id));
        Ok(out)
    }
}
