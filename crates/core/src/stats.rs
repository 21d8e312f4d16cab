//! What tokenwatch keeps about a group's failures, offline and in the state table alike: counts, first
//! and last failure, and the facts of the earliest failure ([`crate::finding::judge`] decides on them).

use std::collections::{BTreeMap, BTreeSet};

use crate::classify::{Failure, IdentityHints, role_name};
use crate::model::{Client, StsCall};
use crate::time::Epoch;

/// Limits on what one group lists, so a storm cannot grow a report or a state item without bound.
pub const MAX_LISTED: usize = 20;
/// Distinct event names kept per group.
pub const MAX_EVENT_NAMES: usize = 100;

/// Account + principal + session: what failures are grouped by.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    /// Account id.
    pub account: Option<String>,
    /// Principal, reduced to the role name for roles (see [`principal_key`]).
    pub principal: Option<String>,
    /// Session name.
    pub session: Option<String>,
}

/// What is kept of the earliest failure: it decides the session the group's age is measured on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FirstFailure {
    /// Its access key.
    pub access_key_id: Option<String>,
    /// Its `creationDate`.
    pub creation_date: Option<Epoch>,
    /// Its identity hints.
    pub hints: IdentityHints,
    /// Set when it was an `AssumeRoleWith*` call presenting an external token.
    pub token_call: Option<StsCall>,
    /// When its session first failed, if that was before this incident (a session failing again after a
    /// quiet gap): the session is judged on its first failure, so it keeps its verdict.
    pub session_failed_at: Option<Epoch>,
}

/// The failures of a group (or of one session) summed up. Adding the same failures in any order, split in
/// any way and merged, gives the same result, except which values a capped list keeps once its cap is
/// reached and which of two equally long spellings of the principal wins.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FailureStats {
    /// The fullest spelling of the principal seen (a sessionIssuer ARN keeps the role's path).
    pub principal: Option<String>,
    /// Failures counted.
    pub failures: u64,
    /// Earliest failure time.
    pub first: Epoch,
    /// Latest failure time.
    pub last: Epoch,
    /// Facts of the earliest failure.
    pub first_failure: FirstFailure,
    /// Failures presenting an expired external token to STS.
    pub token_call_failures: u64,
    /// Failures with `RequestExpired`.
    pub request_expired_failures: u64,
    /// Failures per error code.
    pub error_codes: BTreeMap<String, u64>,
    /// Failures per `service:EventName` (at most [`MAX_EVENT_NAMES`] names).
    pub event_names: BTreeMap<String, u64>,
    /// Source addresses (at most [`MAX_LISTED`]).
    pub source_ips: BTreeSet<String>,
    /// Access keys (at most [`MAX_LISTED`]).
    pub access_key_ids: BTreeSet<String>,
    /// The session names failed `AssumeRoleWith*` calls asked for (at most [`MAX_LISTED`]): the caller's
    /// choice, so listed, never a group each (crate::classify::ANY_SESSION).
    pub requested_sessions: BTreeSet<String>,
    /// Failures per client, with the time it was first seen.
    pub clients: BTreeMap<Client, (u64, Epoch)>,
}

impl FailureStats {
    /// Counts one failure.
    pub fn add(&mut self, f: Failure) {
        if self.failures == 0 || f.time < self.first {
            self.first = f.time;
            self.first_failure = FirstFailure {
                access_key_id: f.access_key_id.clone(),
                creation_date: f.creation_date,
                hints: f.hints,
                token_call: f.token_call,
                session_failed_at: None,
            };
        }
        if self.failures == 0 || f.time > self.last {
            self.last = f.time;
        }
        self.failures += 1;
        self.token_call_failures += u64::from(f.token_call.is_some());
        self.request_expired_failures += u64::from(f.error_code.ends_with("RequestExpired"));
        *self.error_codes.entry(f.error_code).or_default() += 1;
        if self.event_names.len() < MAX_EVENT_NAMES || self.event_names.contains_key(&f.event_name) {
            *self.event_names.entry(f.event_name).or_default() += 1;
        }
        if let Some(ip) = f.source_ip
            && self.source_ips.len() < MAX_LISTED
        {
            self.source_ips.insert(ip);
        }
        if let Some(key) = f.access_key_id
            && self.access_key_ids.len() < MAX_LISTED
        {
            self.access_key_ids.insert(key);
        }
        if let Some(name) = f.requested_session
            && self.requested_sessions.len() < MAX_LISTED
        {
            self.requested_sessions.insert(name);
        }
        if let Some(c) = f.client {
            let e = self.clients.entry(c).or_insert((0, f.time));
            e.0 += 1;
            e.1 = e.1.min(f.time);
        }
        if self.principal.is_none() {
            self.principal = f.principal;
        }
    }

    /// Folds another summary in.
    pub fn merge(&mut self, other: FailureStats) {
        if other.failures == 0 {
            return;
        }
        // A property of the incident's session, not of a failure: kept whichever failure comes first.
        let session_failed_at = match (
            self.first_failure.session_failed_at,
            other.first_failure.session_failed_at,
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.failures == 0 || other.first < self.first {
            self.first = other.first;
            self.first_failure = other.first_failure;
        }
        self.first_failure.session_failed_at = session_failed_at;
        if self.failures == 0 || other.last > self.last {
            self.last = other.last;
        }
        // Prefer the fuller spelling of the principal (a sessionIssuer ARN keeps the role's path).
        if other.principal.as_ref().map(String::len) > self.principal.as_ref().map(String::len) {
            self.principal = other.principal;
        }
        self.failures += other.failures;
        self.token_call_failures += other.token_call_failures;
        self.request_expired_failures += other.request_expired_failures;
        for (k, v) in other.error_codes {
            *self.error_codes.entry(k).or_default() += v;
        }
        for (k, v) in other.event_names {
            if self.event_names.len() < MAX_EVENT_NAMES || self.event_names.contains_key(&k) {
                *self.event_names.entry(k).or_default() += v;
            }
        }
        for ip in other.source_ips {
            if self.source_ips.len() < MAX_LISTED {
                self.source_ips.insert(ip);
            }
        }
        for key in other.access_key_ids {
            if self.access_key_ids.len() < MAX_LISTED {
                self.access_key_ids.insert(key);
            }
        }
        for name in other.requested_sessions {
            if self.requested_sessions.len() < MAX_LISTED {
                self.requested_sessions.insert(name);
            }
        }
        for (c, (n, t)) in other.clients {
            let e = self.clients.entry(c).or_insert((0, t));
            e.0 += n;
            e.1 = e.1.min(t);
        }
    }

    /// The client of the earliest failure whose agent names one (ties to the first in [`Client`] order).
    /// The earliest rather than the most frequent, so that what a page named when it was sent is what the
    /// report says later (docs/rules.md, "Client").
    pub fn client(&self) -> Option<Client> {
        self.clients
            .iter()
            .min_by(|a, b| a.1.1.cmp(&b.1.1).then(a.0.cmp(b.0)))
            .map(|(c, _)| *c)
    }
}

/// Groups match whatever spelling of a role ARN a record used: with or without its path.
pub fn principal_key(principal: &str) -> &str {
    role_name(principal).unwrap_or(principal)
}

/// The group a failure or issuance with this identity belongs to.
pub fn group_key(account: &Option<String>, principal: &Option<String>, session: &Option<String>) -> GroupKey {
    GroupKey {
        account: account.clone(),
        principal: principal.as_deref().map(|p| principal_key(p).to_owned()),
        session: session.clone(),
    }
}
