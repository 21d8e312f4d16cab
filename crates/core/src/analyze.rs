//! The offline engine: values in, one [`Report`] out.
//!
//! An [`Analyzer`] takes JSON values (from [`crate::reader::JsonSplitter`] or one EventBridge event at a
//! time), keeps the session index and per-session aggregates, and at the end joins failures to their
//! issuing calls, groups them and decides. Records may come in any order and repeat. Work can be split:
//! [`Analyzer::fork`] makes a sibling that shares the failure de-duplication, and [`Analyzer::merge`]
//! folds it back, so each thread reads its own files.

use std::collections::hash_map::{DefaultHasher, Entry, OccupiedEntry};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, Mutex};

use aho_corasick::{AhoCorasick, MatchKind};

use crate::classify::{Failure, IdentityHints, Issuance, Observation, classify};
use crate::envelope::{Opened, open};
use crate::finding::{
    CREATION_DATE_JOIN, Evidence, Finding, IncidentBrief, Recurrence, Report, Sessions, judge, order,
};
use crate::model::{Client, StsCall};
use crate::partial::{Counts, FailureLog, Issuances, Partial, Settings, Unread};
use crate::reader::{JsonSplitter, ReadError};
use crate::record::{EnvelopeContext, Record};
use crate::stats::{FailureStats, GroupKey, group_key, principal_key};
use crate::time::Epoch;
use crate::usage::SessionUse;

/// A value can only matter if it contains one of these: the expiry family (`ExpiredToken…`,
/// `RequestExpired`, "…is expired", "…has expired") or an issuing call's name. Everything else is
/// counted without being parsed. Leftmost-first matching only so that aho-corasick can use its SIMD
/// (Teddy) searcher, which it keeps for leftmost semantics: `is_match` answers the same either way, four
/// times faster over records that match nothing.
static INTERESTING: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostFirst)
        .build(std::iter::once("xpired").chain(StsCall::ALL.iter().map(|c| c.as_str())))
        .expect("valid patterns")
});

/// Which failures to count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    /// Failures before this are ignored.
    pub since: Option<Epoch>,
    /// Failures after this are ignored.
    pub until: Option<Epoch>,
}

impl Window {
    fn contains(&self, t: Epoch) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }
}

/// Accumulates records and reports on them.
pub struct Analyzer {
    window: Window,
    shared: Arc<Shared>,
    records: u64,
    skipped: u64,
    failures: u64,
    cooldown: Epoch,
    /// Each session's failures in pieces: runs whose failures are less than the cool-down apart. Kept
    /// compact, since a run can hold millions of sessions (README, "Memory").
    sessions: HashMap<SessionKey, Pieces>,
    /// The strings the sessions' failures share.
    strings: Interner,
    /// Every temporary key's last use, for near misses.
    usage: SessionUse,
    /// Set by [`Analyzer::collecting`]: failures and issuing calls are kept as they came, for a
    /// [`Partial`], rather than summed up.
    collected: Option<Collected>,
}

/// What a collecting analyzer keeps instead of summing up.
#[derive(Default)]
struct Collected {
    failures: Vec<Failure>,
    issuances: Vec<Issuance>,
}

/// A string of [`Interner`]: account ids, principals, error codes and calls repeat across
/// sessions, so each is kept once and named by four bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Sym(NonZeroU32);

#[derive(Default)]
struct Interner {
    ids: HashMap<Arc<str>, Sym>,
    strings: Vec<Arc<str>>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> Sym {
        if let Some(&sym) = self.ids.get(s) {
            return sym;
        }
        let shared: Arc<str> = Arc::from(s);
        // More distinct strings than a u32 counts cannot be held in memory anyway; saturating keeps this
        // total rather than panicking.
        let n = u32::try_from(self.strings.len() + 1).unwrap_or(u32::MAX);
        let sym = Sym(NonZeroU32::MIN.saturating_add(n - 1));
        self.strings.push(Arc::clone(&shared));
        self.ids.insert(shared, sym);
        sym
    }

    fn get(&self, sym: Sym) -> &str {
        self.strings.get(sym.0.get() as usize - 1).map_or("", |s| s)
    }

    fn owned(&self, sym: Option<Sym>) -> Option<String> {
        sym.map(|s| self.get(s).to_owned())
    }

    /// `sym` of `from`, as a symbol of this interner.
    fn adopt(&mut self, from: &Interner, sym: Sym) -> Sym {
        self.intern(from.get(sym))
    }
}

/// A session's failures: one failure kept as it came (most sessions of a large run fail once), or the
/// pieces it was summed up in. A lone failure becomes a piece exactly as [`FailureStats::add`] would
/// have made it when it first came, so the pieces are the same either way.
enum Pieces {
    One(Lone),
    Many(Vec<FailureStats>),
}

/// What [`FailureStats::add`] reads of a failure, beyond its session's key.
#[derive(Clone)]
struct Lone {
    time: Epoch,
    creation_date: Option<Epoch>,
    error_code: Sym,
    event_name: Sym,
    /// Not interned: in a large run most sessions come from an address of their own, and a boxed string
    /// is given back as its group is judged, where an interned one would be held to the end.
    source_ip: Option<Box<str>>,
    client: Option<Client>,
    token_call: Option<StsCall>,
    /// The session name a failed AssumeRoleWith* call asked for (rare: boxed, not interned).
    requested_session: Option<Box<str>>,
    hints: IdentityHints,
}

impl Lone {
    fn of(f: &Failure, strings: &mut Interner) -> Lone {
        Lone {
            time: f.time,
            creation_date: f.creation_date,
            error_code: strings.intern(&f.error_code),
            event_name: strings.intern(&f.event_name),
            source_ip: f.source_ip.as_deref().map(Box::from),
            client: f.client,
            token_call: f.token_call,
            requested_session: f.requested_session.as_deref().map(Box::from),
            hints: f.hints.clone(),
        }
    }

    /// The piece of this failure alone, of the session with this principal and access key (the rest of
    /// the session's key is not read by [`FailureStats::add`]).
    fn piece(
        &self,
        principal: Option<&str>,
        access_key_id: Option<&str>,
        strings: &Interner,
    ) -> FailureStats {
        let mut stats = FailureStats::default();
        stats.add(Failure {
            event_id: None,
            time: self.time,
            account: None,
            principal: principal.map(str::to_owned),
            session: None,
            access_key_id: access_key_id.map(str::to_owned),
            creation_date: self.creation_date,
            error_code: strings.get(self.error_code).to_owned(),
            event_name: strings.get(self.event_name).to_owned(),
            source_ip: self.source_ip.as_deref().map(str::to_owned),
            client: self.client,
            token_call: self.token_call,
            requested_session: self.requested_session.as_deref().map(str::to_owned),
            hints: self.hints.clone(),
        });
        stats
    }

    /// This failure with its strings in `to` rather than `from`.
    fn adopt(mut self, from: &Interner, to: &mut Interner) -> Lone {
        self.error_code = to.adopt(from, self.error_code);
        self.event_name = to.adopt(from, self.event_name);
        self
    }
}

impl Pieces {
    /// The pieces as summaries.
    fn into_stats(
        self,
        principal: Option<&str>,
        access_key_id: Option<&str>,
        strings: &Interner,
    ) -> Vec<FailureStats> {
        match self {
            Pieces::One(lone) => vec![lone.piece(principal, access_key_id, strings)],
            Pieces::Many(pieces) => pieces,
        }
    }
}

/// A known session's pieces as summaries, to add to.
fn stats_of<'a>(
    mut e: OccupiedEntry<'a, SessionKey, Pieces>,
    strings: &Interner,
) -> &'a mut Vec<FailureStats> {
    if let Pieces::One(lone) = e.get() {
        let key = e.key();
        let principal = key.principal.map(|p| strings.get(p));
        let piece = lone.piece(principal, key.access_key_id.as_deref(), strings);
        e.insert(Pieces::Many(vec![piece]));
    }
    match e.into_mut() {
        Pieces::Many(pieces) => pieces,
        Pieces::One(_) => unreachable!("made Many above"),
    }
}

/// What forks of one analyzer share: failures already counted, and the session index. Both are touched
/// only for failures and issuing calls (a few percent of records), so the locks are rarely contended.
#[derive(Default)]
struct Shared {
    seen: Mutex<HashSet<u64>>,
    index: Mutex<SessionIndex>,
}

fn hash64(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Who a session belongs to: account, principal, session name.
type Identity = (Option<String>, Option<String>, Option<String>);

/// Every issued session seen, compactly: memory grows with distinct sessions (tens of bytes each, the
/// names interned), not with records.
#[derive(Default)]
struct SessionIndex {
    identities: Vec<Identity>,
    identity_ids: HashMap<Identity, u32>,
    by_key: HashMap<u64, Issued>,
}

#[derive(Clone, Copy)]
struct Issued {
    identity: u32,
    issued_at: Epoch,
    expiration: Option<Epoch>,
    duration_seconds: Option<u32>,
    call: StsCall,
    chained: bool,
    for_container: bool,
}

impl SessionIndex {
    fn insert(&mut self, i: Issuance) {
        let key = hash64(&i.access_key_id);
        if let Some(known) = self.by_key.get_mut(&key) {
            // Copies of one issuing call (a cross-account AssumeRole is logged in both accounts) are
            // combined, whatever order they come in: role chaining if either copy shows it.
            known.chained |= i.chained;
            known.for_container |= i.for_container;
            known.expiration = known.expiration.max(i.expiration);
            let duration = i.duration_seconds.map(|d| d.min(u64::from(u32::MAX)) as u32);
            known.duration_seconds = known.duration_seconds.max(duration);
            return;
        }
        let identity = (i.account, i.principal, i.session);
        let id = match self.identity_ids.get(&identity) {
            Some(id) => *id,
            None => {
                let id = self.identities.len() as u32;
                self.identities.push(identity.clone());
                self.identity_ids.insert(identity, id);
                id
            }
        };
        self.by_key.insert(
            key,
            Issued {
                identity: id,
                issued_at: i.issued_at,
                expiration: i.expiration,
                duration_seconds: i.duration_seconds.map(|d| d.min(u64::from(u32::MAX)) as u32),
                call: i.call,
                chained: i.chained,
                for_container: i.for_container,
            },
        );
    }

    fn get(&self, access_key_id: &str) -> Option<Issuance> {
        let issued = self.by_key.get(&hash64(access_key_id))?;
        let (account, principal, session) = self.identities[issued.identity as usize].clone();
        Some(Issuance {
            access_key_id: access_key_id.to_owned(),
            account,
            principal,
            session,
            issued_at: issued.issued_at,
            duration_seconds: issued.duration_seconds.map(u64::from),
            expiration: issued.expiration,
            call: issued.call,
            chained: issued.chained,
            for_container: issued.for_container,
        })
    }

    /// When sessions of each group were issued.
    fn issued_times(&self) -> HashMap<GroupKey, BTreeSet<Epoch>> {
        let mut out: HashMap<GroupKey, BTreeSet<Epoch>> = HashMap::new();
        for issued in self.by_key.values() {
            let (account, principal, session) = &self.identities[issued.identity as usize];
            out.entry(group_key(account, principal, session))
                .or_default()
                .insert(issued.issued_at);
        }
        out
    }
}

impl Sessions for SessionIndex {
    fn issued(&self, access_key_id: &str) -> Option<Issuance> {
        self.get(access_key_id)
    }

    fn issued_near(&self, key: &GroupKey, creation_date: Epoch) -> Option<Issuance> {
        let window = creation_date - CREATION_DATE_JOIN..=creation_date + CREATION_DATE_JOIN;
        let issued = self
            .by_key
            .values()
            .filter(|i| window.contains(&i.issued_at))
            .filter(|i| {
                let (account, principal, session) = &self.identities[i.identity as usize];
                group_key(account, principal, session) == *key
            })
            // The nearest, then the earliest: the same answer whatever order the calls came in.
            .min_by_key(|i| {
                (
                    (i.issued_at - creation_date).abs(),
                    i.issued_at,
                    i.duration_seconds,
                    i.expiration,
                )
            })?;
        let (account, principal, session) = self.identities[issued.identity as usize].clone();
        Some(Issuance {
            access_key_id: String::new(),
            account,
            principal,
            session,
            issued_at: issued.issued_at,
            duration_seconds: issued.duration_seconds.map(u64::from),
            expiration: issued.expiration,
            call: issued.call,
            chained: issued.chained,
            for_container: issued.for_container,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SessionKey {
    account: Option<Sym>,
    principal: Option<Sym>,
    session: Option<Box<str>>,
    access_key_id: Option<Box<str>>,
}

impl SessionKey {
    /// This key with its strings in `to` rather than `from`.
    fn adopt(mut self, from: &Interner, to: &mut Interner) -> SessionKey {
        self.account = self.account.map(|s| to.adopt(from, s));
        self.principal = self.principal.map(|s| to.adopt(from, s));
        self
    }
}

/// A poisoned lock only means another thread panicked mid-update; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new(Window::default())
    }
}

impl Analyzer {
    /// An empty analyzer counting failures inside `window`.
    pub fn new(window: Window) -> Self {
        Analyzer {
            window,
            shared: Arc::default(),
            records: 0,
            skipped: 0,
            failures: 0,
            cooldown: crate::incident::Policy::default().cooldown,
            sessions: HashMap::new(),
            strings: Interner::default(),
            usage: SessionUse::default(),
            collected: None,
        }
    }

    /// An analyzer that keeps what it reads as a [`Partial`] ([`Analyzer::into_partial`]), to be merged
    /// with the partials of other objects read elsewhere.
    pub fn collecting(window: Window, cooldown: Epoch) -> Self {
        Analyzer {
            collected: Some(Collected::default()),
            ..Analyzer::with_cooldown(window, cooldown)
        }
    }

    /// What this analyzer read, to merge with other partials; `None` unless it was made by
    /// [`Analyzer::collecting`].
    pub fn into_partial(self) -> Option<Partial> {
        let collected = self.collected?;
        let mut failures = FailureLog::default();
        for f in collected.failures {
            failures.insert(f);
        }
        Some(Partial {
            format: crate::partial::FORMAT,
            settings: Settings {
                window: self.window,
                cooldown: self.cooldown,
            },
            counts: Counts {
                records: self.records,
                skipped_records: self.skipped,
            },
            failures,
            issuances: Issuances(collected.issuances),
            unread: Unread::default(),
            usage: self.usage,
        })
    }

    /// Takes in what a partial read, as if its records had been read here: its failures count once per
    /// eventID across every partial and record taken in.
    pub fn absorb(&mut self, partial: Partial) {
        self.usage.merge(partial.usage);
        self.records += partial.counts.records;
        self.skipped += partial.counts.skipped_records;
        for i in partial.issuances.0 {
            self.issued(i);
        }
        for f in partial.failures.into_iter() {
            self.add_failure(f);
        }
    }

    fn issued(&mut self, i: Issuance) {
        match &mut self.collected {
            Some(c) => c.issuances.push(i),
            None => lock(&self.shared.index).insert(i),
        }
    }

    /// An analyzer whose incidents end after `cooldown` seconds without a failure (default: the
    /// detector's default cool-down).
    pub fn with_cooldown(window: Window, cooldown: Epoch) -> Self {
        Analyzer {
            cooldown: cooldown.max(1),
            ..Analyzer::new(window)
        }
    }

    /// An empty sibling that shares this one's session index and record of failures already counted.
    pub fn fork(&self) -> Self {
        Analyzer {
            shared: Arc::clone(&self.shared),
            collected: self.collected.as_ref().map(|_| Collected::default()),
            ..Analyzer::with_cooldown(self.window, self.cooldown)
        }
    }

    /// A [`Analyzer::fork`] that reads one input on this analyzer's behalf with its usage of sessions,
    /// lent: the input's calls add to it in place rather than to a table of their own merged after (on a
    /// trail of short files, that growth and merge cost more than the scan). [`Analyzer::merge`] brings
    /// it back, and so does [`Analyzer::drop_fork`] for an input that is refused.
    pub fn fork_lending(&mut self) -> Self {
        Analyzer {
            usage: std::mem::take(&mut self.usage),
            ..self.fork()
        }
    }

    /// Drops a [`Analyzer::fork_lending`] fork's records and takes back the usage it was lent. Only for
    /// an input with no `eventTime` in it (refused as not CloudTrail): the usage scan counts a call by its
    /// `eventTime`, so such an input added no use.
    pub fn drop_fork(&mut self, fork: Analyzer) {
        self.usage.merge(fork.usage);
    }

    /// Folds a sibling's records in.
    pub fn merge(&mut self, other: Analyzer) {
        if let (Some(mine), Some(theirs)) = (&mut self.collected, other.collected) {
            mine.failures.extend(theirs.failures);
            mine.issuances.extend(theirs.issuances);
        }
        self.records += other.records;
        self.skipped += other.skipped;
        self.failures += other.failures;
        self.usage.merge(other.usage);
        let from = &other.strings;
        for (theirs, pieces) in other.sessions {
            let key = theirs.clone().adopt(from, &mut self.strings);
            match self.sessions.entry(key) {
                Entry::Vacant(e) => {
                    let pieces = match pieces {
                        Pieces::One(lone) => Pieces::One(lone.adopt(from, &mut self.strings)),
                        many => many,
                    };
                    e.insert(pieces);
                }
                Entry::Occupied(e) => {
                    let mine = stats_of(e, &self.strings);
                    let principal = theirs.principal.map(|p| from.get(p));
                    for piece in pieces.into_stats(principal, theirs.access_key_id.as_deref(), from) {
                        insert_piece(mine, piece, self.cooldown);
                    }
                }
            }
        }
    }

    /// Records read so far, duplicates included.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Reads every value of a (decompressed) stream. On error, what was read before it is kept.
    pub fn read(&mut self, src: impl Read) -> Result<(), ReadError> {
        self.read_values(&mut JsonSplitter::new(src))
    }

    /// Reads every value `splitter` hands out, e.g. from [`JsonSplitter::whole`] over a file already in
    /// memory. On error, what was read before it is kept.
    pub fn read_values<R: Read>(&mut self, splitter: &mut JsonSplitter<R>) -> Result<(), ReadError> {
        while let Some(value) = splitter.next_value()? {
            self.feed_value(value);
        }
        Ok(())
    }

    /// Takes one JSON value: a record, an EventBridge envelope, or a wrapper (SQS message, SNS
    /// notification, lookup-events result) carrying them. Each record found counts once in `records`,
    /// and so does each value that cannot be opened (also in `skipped_records`).
    pub fn feed_value(&mut self, bytes: &[u8]) {
        // Every value goes through the usage scan first, whether it is decoded or not; a wrapper that
        // carries a session's call in a string (lookup-events, SQS) is opened for it. The usage is taken
        // out for the call (moving it costs a few words) so the visitor can have the rest.
        let usage = std::cell::RefCell::new(std::mem::take(&mut self.usage));
        let keep = |v: &[u8]| {
            let carried = usage.borrow_mut().scan_value(v);
            carried || INTERESTING.is_match(v)
        };
        open(bytes, &keep, &mut |opened| {
            self.records += 1;
            match opened {
                Opened::Filtered => {}
                Opened::Unreadable(_) => self.skipped += 1,
                Opened::Record { record, envelope, .. } => self.observe(&record, &envelope),
            }
        });
        self.usage = usage.into_inner();
    }

    /// Takes one decoded record.
    pub fn observe(&mut self, rec: &Record, env: &EnvelopeContext) {
        match classify(rec, env) {
            Observation::Failure(f) => self.add_failure(f),
            Observation::Issuance(i) => self.issued(i),
            Observation::Other => {
                if rec.event_time.get().and_then(crate::time::parse_time).is_none() {
                    self.skipped += 1;
                }
            }
        }
    }

    fn add_failure(&mut self, f: Failure) {
        if !self.window.contains(f.time) {
            return;
        }
        if let Some(id) = &f.event_id
            && !lock(&self.shared.seen).insert(hash64(id))
        {
            return;
        }
        self.failures += 1;
        if let Some(c) = &mut self.collected {
            c.failures.push(f);
            return;
        }
        let key = SessionKey {
            account: f.account.as_deref().map(|s| self.strings.intern(s)),
            principal: f.principal.as_deref().map(|s| self.strings.intern(s)),
            session: f.session.as_deref().map(Box::from),
            access_key_id: f.access_key_id.as_deref().map(Box::from),
        };
        match self.sessions.entry(key) {
            Entry::Vacant(e) => {
                e.insert(Pieces::One(Lone::of(&f, &mut self.strings)));
            }
            Entry::Occupied(e) => {
                let mut piece = FailureStats::default();
                piece.add(f);
                insert_piece(stats_of(e, &self.strings), piece, self.cooldown);
            }
        }
    }

    /// Joins, groups, splits each group into incidents and decides (docs/rules.md, "Incidents").
    pub fn report(self) -> Report {
        if self.collected.is_some() {
            let mut plain = Analyzer::with_cooldown(self.window, self.cooldown);
            if let Some(partial) = self.into_partial() {
                plain.absorb(partial);
            }
            return plain.report();
        }
        let index = lock(&self.shared.index);
        // A session that failed is its failure's group, never a near miss.
        let failed: HashSet<&str> = self
            .sessions
            .keys()
            .filter_map(|k| k.access_key_id.as_deref())
            .collect();
        let near_misses = crate::nearmiss::near_misses(
            &self.usage,
            &*index,
            &|key| failed.contains(key),
            self.window.since,
            self.window.until,
        );
        drop(failed);
        drop(self.usage);
        let mut strings = self.strings;
        let mut roles: HashMap<Sym, Sym> = HashMap::new();
        // Each session with the group it belongs to, compactly, then sorted so that a group's sessions lie
        // side by side: a group's pieces are summed up only when it is judged, one group at a time.
        let mut members: Vec<Member> = Vec::with_capacity(self.sessions.len());
        for (key, pieces) in self.sessions {
            let issuance = key.access_key_id.as_deref().and_then(|k| index.get(k));
            let issued = issuance.as_ref().map(|i| i.issued_at);
            let (account, principal, session) = match issuance {
                Some(i) => (
                    key.account.or_else(|| i.account.map(|a| strings.intern(&a))),
                    key.principal.or_else(|| i.principal.map(|p| strings.intern(&p))),
                    key.session.or_else(|| i.session.map(Box::from)),
                ),
                None => (key.account, key.principal, key.session),
            };
            let role = principal.map(|p| {
                *roles.entry(p).or_insert_with(|| {
                    let role = principal_key(strings.get(p)).to_owned();
                    strings.intern(&role)
                })
            });
            members.push(Member {
                account,
                role,
                session,
                principal,
                access_key_id: key.access_key_id,
                issued,
                pieces,
            });
        }
        drop(roles);
        members.sort_unstable_by(|a, b| a.group().cmp(&b.group()));

        let issued_times = index.issued_times();
        let none = BTreeSet::new();
        let mut counts = HashSet::new();
        let mut findings = Vec::with_capacity(members.chunk_by(|a, b| a.group() == b.group()).count());
        while let Some(last) = members.last() {
            let group = last.group();
            let start = members
                .iter()
                .rposition(|m| m.group() != group)
                .map_or(0, |i| i + 1);
            let key = GroupKey {
                account: strings.owned(last.account),
                principal: strings.owned(last.role),
                session: last.session.as_deref().map(str::to_owned),
            };
            let mut pieces = Vec::new();
            for m in members.drain(start..) {
                let principal = m.principal.map(|p| strings.get(p));
                let access_key_id = m.access_key_id.as_deref();
                for stats in m.pieces.into_stats(principal, access_key_id, &strings) {
                    pieces.push(Piece {
                        session: access_key_id.map(str::to_owned),
                        issued: stats.first_failure.creation_date.or(m.issued),
                        stats: FailureStats {
                            principal: stats.principal.clone().or(principal.map(str::to_owned)),
                            ..stats
                        },
                    });
                }
            }
            // What was judged is given back as it goes, so that the members and the findings are not
            // both held whole.
            if members.capacity() > 4096 && members.len() < members.capacity() / 2 {
                members.shrink_to_fit();
            }
            let issued_times = issued_times.get(&key).unwrap_or(&none);
            let incidents: Vec<Finding> = incidents(pieces, self.cooldown)
                .iter()
                .map(|stats| {
                    let evidence = Evidence {
                        key: &key,
                        stats,
                        issued_times,
                    };
                    judge(evidence, &*index)
                })
                .collect();
            let mut finding = latest_with_history(incidents);
            finding.error_codes = shared(&mut counts, finding.error_codes);
            finding.event_names = shared(&mut counts, finding.event_names);
            findings.push(finding);
        }
        drop(counts);
        order(&mut findings);
        let workloads = crate::workload::workloads(&mut findings);
        Report {
            records: self.records,
            failures: self.failures,
            skipped_records: self.skipped,
            findings,
            workloads,
            near_misses,
        }
    }
}

/// `counts`, or the equal counts another finding already holds: most groups of a large run have the
/// same few (one `ExpiredToken`), and a map costs a few hundred bytes.
fn shared(
    seen: &mut HashSet<Arc<BTreeMap<String, u64>>>,
    counts: Arc<BTreeMap<String, u64>>,
) -> Arc<BTreeMap<String, u64>> {
    match seen.get(&counts) {
        Some(known) => Arc::clone(known),
        None => {
            seen.insert(Arc::clone(&counts));
            counts
        }
    }
}

/// A session of [`Analyzer::report`], with the group it belongs to (its account, principal and session
/// name completed from its issuing call).
struct Member {
    account: Option<Sym>,
    /// The principal reduced to the role name, as [`GroupKey`] has it.
    role: Option<Sym>,
    session: Option<Box<str>>,
    principal: Option<Sym>,
    access_key_id: Option<Box<str>>,
    issued: Option<Epoch>,
    pieces: Pieces,
}

impl Member {
    /// What the group is keyed by, as symbols (equal symbols are equal strings).
    fn group(&self) -> (Option<Sym>, Option<Sym>, Option<&str>) {
        (self.account, self.role, self.session.as_deref())
    }
}

/// A run of one session's failures, each less than the cool-down after the one before.
struct Piece {
    /// The session's access key, if its failures named one.
    session: Option<String>,
    /// When the session was issued, if known.
    issued: Option<Epoch>,
    stats: FailureStats,
}

/// Adds `piece` to a session's pieces, merging every piece it touches (less than `cooldown` apart), so
/// that the pieces are the same whatever order the failures came in. The pieces are kept in time order,
/// and no two touch, so those `piece` touches are one run found by binary search: a session failing now
/// and then for months (thousands of pieces) costs a few comparisons a failure, not a scan.
fn insert_piece(pieces: &mut Vec<FailureStats>, mut piece: FailureStats, cooldown: Epoch) {
    let start = pieces.partition_point(|p| p.last + cooldown <= piece.first);
    let mut end = start;
    let mut reach = piece.last;
    while end < pieces.len() && pieces[end].first < reach + cooldown {
        // A piece merged in may reach the next one too.
        reach = reach.max(pieces[end].last);
        end += 1;
    }
    for p in pieces.drain(start..end) {
        piece.merge(p);
    }
    pieces.insert(start, piece);
}

/// A group's pieces as incidents, oldest first: in time order, a piece starts a new incident when it
/// begins at least `cooldown` after the incident's last failure, or when its session was issued after
/// that failure (a newer session). A later incident of a session that failed before is timed from the
/// session's first failure.
fn incidents(mut pieces: Vec<Piece>, cooldown: Epoch) -> Vec<FailureStats> {
    pieces.sort_by(|a, b| {
        (a.stats.first, a.issued, &a.session, a.stats.last).cmp(&(
            b.stats.first,
            b.issued,
            &b.session,
            b.stats.last,
        ))
    });
    let mut session_first: HashMap<Option<String>, Epoch> = HashMap::new();
    for p in &pieces {
        if p.session.is_some() {
            let t = session_first.entry(p.session.clone()).or_insert(p.stats.first);
            *t = (*t).min(p.stats.first);
        }
    }
    let mut out: Vec<FailureStats> = Vec::new();
    for p in pieces {
        let new = match out.last() {
            None => true,
            Some(current) => {
                p.stats.first - current.last >= cooldown || p.issued.is_some_and(|t| t > current.last)
            }
        };
        if new {
            let mut stats = p.stats;
            stats.first_failure.session_failed_at = session_first
                .get(&p.session)
                .copied()
                .filter(|&t| p.session.is_some() && t < stats.first);
            out.push(stats);
        } else if let Some(current) = out.last_mut() {
            current.merge(p.stats);
        }
    }
    out
}

/// The latest incident's finding, with every incident summed up in its history and their recurrence
/// (the next beat after the latest one: offline, "now" is the end of the records).
fn latest_with_history(incidents: Vec<Finding>) -> Finding {
    let history: Vec<IncidentBrief> = incidents.iter().map(IncidentBrief::of).collect();
    let starts: Vec<Epoch> = history.iter().map(|i| i.first_failure).collect();
    let mut latest = incidents
        .into_iter()
        .max_by_key(|f| f.first_failure)
        .expect("a group has at least one incident");
    latest.recurrence = Recurrence::of(&starts, latest.first_failure).map(Box::new);
    // A lone incident is the finding itself ([`Finding::incidents`]): most groups of a large run have one.
    if history.len() > 1 {
        latest.history = history;
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Verdict;

    fn failure_json(id: &str, time: &str, key: &str) -> String {
        format!(
            r#"{{"eventTime":"{time}","eventSource":"s3.amazonaws.com","eventName":"GetObject","errorCode":"ExpiredToken",
            "eventID":"{id}","recipientAccountId":"123456789012","userAgent":"Boto3/1.34.0 Botocore/1.34.0",
            "userIdentity":{{"type":"AssumedRole","principalId":"AROAEXAMPLE:job","accessKeyId":"{key}",
              "arn":"arn:aws:sts::123456789012:assumed-role/etl/job"}}}}"#
        )
    }

    const ISSUE: &str = r#"{"eventTime":"2026-11-02T08:00:00Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRole",
        "eventID":"i1","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/ci"},
        "requestParameters":{"roleArn":"arn:aws:iam::123456789012:role/etl","roleSessionName":"job"},
        "responseElements":{"credentials":{"accessKeyId":"ASIAKEY1","expiration":"Nov 2, 2026, 9:00:00 AM"}}}"#;

    #[test]
    fn a_piece_that_bridges_two_pieces_merges_them_and_the_pieces_stay_in_time_order() {
        let at = |t: Epoch| FailureStats {
            first: t,
            last: t,
            failures: 1,
            ..Default::default()
        };
        let spans = |pieces: &[FailureStats]| -> Vec<(Epoch, Epoch, u64)> {
            pieces.iter().map(|p| (p.first, p.last, p.failures)).collect()
        };
        let mut pieces = Vec::new();
        for t in [10_000, 0, 5_000, 20_000] {
            insert_piece(&mut pieces, at(t), 3600);
        }
        assert_eq!(
            spans(&pieces),
            [
                (0, 0, 1),
                (5_000, 5_000, 1),
                (10_000, 10_000, 1),
                (20_000, 20_000, 1)
            ],
            "an hour or more apart: apart, in time order"
        );
        // 7,500 is less than an hour from 5,000 and from 10,000: the three are one piece.
        insert_piece(&mut pieces, at(7_500), 3600);
        assert_eq!(
            spans(&pieces),
            [(0, 0, 1), (5_000, 10_000, 3), (20_000, 20_000, 1)]
        );
        // Exactly an hour after the last failure is a new piece (the negative case).
        insert_piece(&mut pieces, at(23_600), 3600);
        assert_eq!(spans(&pieces).len(), 4);
    }

    #[test]
    fn a_lone_failed_web_identity_call_keeps_the_session_name_it_asked_for() {
        let call = |time: &str, name: &str| {
            format!(
                r#"{{"eventTime":"{time}","eventSource":"sts.amazonaws.com","eventName":"AssumeRoleWithWebIdentity",
                "errorCode":"ExpiredTokenException","recipientAccountId":"123456789012",
                "userIdentity":{{"type":"WebIdentityUser","userName":"system:serviceaccount:a:b"}},
                "requestParameters":{{"roleArn":"arn:aws:iam::123456789012:role/irsa","roleSessionName":"{name}"}}}}"#
            )
        };
        let mut a = Analyzer::default();
        a.feed_value(call("2026-11-02T09:00:00Z", "pod-1").as_bytes());
        a.feed_value(call("2026-11-02T09:00:05Z", "pod-2").as_bytes());
        let r = a.report();
        assert_eq!(r.findings.len(), 1, "one group for the role, not one per name");
        assert_eq!(r.findings[0].requested_sessions, ["pod-1", "pod-2"]);
    }

    #[test]
    fn failures_are_joined_to_an_issuing_call_that_comes_later() {
        let mut a = Analyzer::default();
        a.feed_value(failure_json("f1", "2026-11-02T09:00:10Z", "ASIAKEY1").as_bytes());
        a.feed_value(failure_json("f2", "2026-11-02T09:05:00Z", "ASIAKEY1").as_bytes());
        a.feed_value(ISSUE.as_bytes());
        let r = a.report();
        assert_eq!((r.records, r.failures), (3, 2));
        let g = &r.findings[0];
        assert_eq!(g.verdict(), Verdict::StaleCache);
        assert_eq!(g.assessment.age_at_first_failure, Some(3610));
        assert_eq!(g.lease_seconds(), Some(3600));
    }

    /// The fields the prefilter and the usage scan look for are found on either side of the identity, in
    /// CloudTrail's order (identity first) as in any other.
    #[test]
    fn failures_and_issuing_calls_are_found_after_the_identity_as_before_it() {
        let identity_first = |v: &str| {
            let mut record: serde_json::Map<String, serde_json::Value> = serde_json::from_str(v).unwrap();
            let identity = record.remove("userIdentity").unwrap();
            let rest = serde_json::Value::Object(record).to_string();
            format!(r#"{{"userIdentity":{identity},{}"#, &rest[1..])
        };
        let values = [
            failure_json("f1", "2026-11-02T09:00:10Z", "ASIAKEY1"),
            failure_json("f2", "2026-11-02T09:05:00Z", "ASIAKEY1"),
            ISSUE.to_string(),
        ];
        let first: Vec<String> = values.iter().map(|v| identity_first(v)).collect();
        assert!(first.iter().all(|v| v.starts_with(r#"{"userIdentity":"#)));
        let (before, after) = (report_of(&values), report_of(&first));
        assert_eq!((after.records, after.failures), (3, 2));
        assert_eq!(after.findings[0].verdict(), Verdict::StaleCache);
        assert_eq!(after.findings[0].lease_seconds(), Some(3600));
        assert_eq!(format!("{:?}", after.findings), format!("{:?}", before.findings));
    }

    #[test]
    fn a_repeated_event_id_counts_once_across_forks() {
        let mut a = Analyzer::default();
        let mut b = a.fork();
        let f = failure_json("same", "2026-11-02T09:00:10Z", "ASIAKEY1");
        a.feed_value(f.as_bytes());
        b.feed_value(f.as_bytes());
        a.merge(b);
        let r = a.report();
        assert_eq!((r.records, r.failures, r.findings[0].failures), (2, 1, 1));
    }

    #[test]
    fn an_envelope_in_an_sqs_body_is_unwrapped() {
        let envelope = format!(
            r#"{{"version":"0","detail-type":"AWS API Call via CloudTrail","account":"123456789012","detail":{}}}"#,
            failure_json("f1", "2026-11-02T09:00:10Z", "ASIAKEY1")
        );
        let sqs = serde_json::json!({"messageId": "m1", "body": envelope}).to_string();
        let mut a = Analyzer::default();
        a.read(format!(r#"{{"Records":[{sqs}]}}"#).as_bytes()).unwrap();
        let r = a.report();
        assert_eq!((r.records, r.failures), (1, 1));
        assert_eq!(r.findings[0].session(), Some("job"));
    }

    #[test]
    fn failures_outside_the_window_are_not_counted() {
        let mut a = Analyzer::new(Window {
            since: crate::time::parse_time("2026-11-02T09:01:00Z"),
            until: None,
        });
        a.feed_value(failure_json("f1", "2026-11-02T09:00:10Z", "ASIAKEY1").as_bytes());
        a.feed_value(failure_json("f2", "2026-11-02T09:05:00Z", "ASIAKEY1").as_bytes());
        let r = a.report();
        assert_eq!((r.records, r.failures), (2, 1));
    }

    #[test]
    fn uninteresting_and_unusable_values_are_counted_not_grouped() {
        let mut a = Analyzer::default();
        a.feed_value(br#"{"eventTime":"2026-11-02T09:00:00Z","eventName":"ListBuckets"}"#);
        a.feed_value(br#"{"errorCode":"ExpiredToken"}"#);
        a.feed_value(br#"{"errorCode":"ExpiredToken", oops}"#);
        let r = a.report();
        assert_eq!(
            (r.records, r.skipped_records, r.failures, r.findings.len()),
            (3, 2, 0, 0)
        );
    }

    fn report_of(values: &[String]) -> Report {
        let mut a = Analyzer::default();
        for v in values {
            a.feed_value(v.as_bytes());
        }
        a.report()
    }

    /// An Identity Center failure: key `key`, `creationDate` `created`.
    fn sso_failure(id: &str, time: &str, key: &str, created: &str) -> String {
        format!(
            r#"{{"eventTime":"{time}","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","errorCode":"ExpiredToken",
            "eventID":"{id}","recipientAccountId":"123456789012","userAgent":"aws-cli/2.15.0 Python/3.11",
            "userIdentity":{{"type":"AssumedRole","principalId":"AROAEXAMPLE:jane@example.com","accessKeyId":"{key}",
              "arn":"arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Ops_0123456789abcdef/jane@example.com",
              "sessionContext":{{"attributes":{{"creationDate":"{created}"}},
                "sessionIssuer":{{"arn":"arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Ops_0123456789abcdef"}}}}}}}}"#
        )
    }

    fn saml_issue(time: &str, key: &str) -> String {
        format!(
            r#"{{"eventTime":"{time}","eventSource":"sts.amazonaws.com","eventName":"AssumeRoleWithSAML","eventID":"saml-{key}",
            "recipientAccountId":"123456789012","userIdentity":{{"type":"SAMLUser"}},
            "requestParameters":{{"roleArn":"arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Ops_0123456789abcdef",
              "durationSeconds":14400}},
            "responseElements":{{"credentials":{{"accessKeyId":"{key}"}},
              "assumedRoleUser":{{"arn":"arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Ops_0123456789abcdef/jane@example.com"}}}}}}"#
        )
    }

    #[test]
    fn an_identity_center_session_is_joined_to_its_issuing_call_by_creation_date() {
        let r = report_of(&[
            saml_issue("2026-11-02T08:00:01Z", "ASIAISSUEDKEYEXAMPLE"),
            sso_failure(
                "s1",
                "2026-11-02T12:00:30Z",
                "ASIAUSEDKEY0EXAMPLE",
                "2026-11-02T08:00:00Z",
            ),
        ]);
        let f = &r.findings[0];
        assert_eq!(
            (f.lease_seconds(), f.assessment.lease.map(|l| l.source)),
            (Some(14_400), Some(crate::model::LeaseSource::DurationSeconds)),
            "the 4 h permission set's lease, from the call 1 s from creationDate"
        );
        assert_eq!(f.verdict(), Verdict::StaleCache);
    }

    #[test]
    fn no_creation_date_join_beyond_two_seconds() {
        let r = report_of(&[
            saml_issue("2026-11-02T08:00:03Z", "ASIAISSUEDKEYEXAMPLE"),
            sso_failure(
                "s1",
                "2026-11-02T12:00:30Z",
                "ASIAUSEDKEY0EXAMPLE",
                "2026-11-02T08:00:00Z",
            ),
        ]);
        let f = &r.findings[0];
        assert_eq!(
            f.assessment.lease.map(|l| l.source),
            Some(crate::model::LeaseSource::DefaultSso)
        );
        assert_eq!(f.verdict(), Verdict::PausedProcess, "4 h of a 1 h default");
    }

    fn ecs_failure(id: &str, time: &str, session: &str, created: &str) -> String {
        format!(
            r#"{{"eventTime":"{time}","eventSource":"dynamodb.amazonaws.com","eventName":"PutItem","errorCode":"ExpiredTokenException",
            "eventID":"{id}","recipientAccountId":"123456789012","userAgent":"aws-sdk-java/2.20.0",
            "userIdentity":{{"type":"AssumedRole","principalId":"AROAEXAMPLE:{session}","accessKeyId":"ASIAECSTASKEXAMPLE01",
              "arn":"arn:aws:sts::123456789012:assumed-role/orders-task-role/{session}",
              "sessionContext":{{"attributes":{{"creationDate":"{created}"}}}}}}}}"#
        )
    }

    #[test]
    fn an_ecs_task_session_is_a_container_session_with_the_documented_lease() {
        let task = "0123456789abcdef0123456789abcdef";
        let r = report_of(&[ecs_failure(
            "c1",
            "2026-11-02T14:00:20Z",
            task,
            "2026-11-02T08:00:00Z",
        )]);
        let f = &r.findings[0];
        assert_eq!(f.credential_source(), crate::CredentialSource::Container);
        assert_eq!(f.lease_seconds(), Some(21_600));
        assert_eq!(
            f.verdict(),
            Verdict::StaleCache,
            "at its 6 h lease, not a paused process"
        );
        assert!(f.remediation.fix.contains("container"), "{}", f.remediation.fix);
        let named = report_of(&[ecs_failure(
            "c2",
            "2026-11-02T14:00:20Z",
            "0123456789abcdef0123456789abcdeg",
            "2026-11-02T08:00:00Z",
        )]);
        assert_eq!(
            named.findings[0].credential_source(),
            crate::CredentialSource::AssumeRole,
            "not hex: no task id"
        );
    }

    #[test]
    fn a_session_issued_by_ecs_for_a_task_is_a_container_session() {
        let issue = r#"{"eventTime":"2026-11-02T08:00:00Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRole",
            "eventID":"ecs1","recipientAccountId":"123456789012","sourceIPAddress":"ecs-tasks.amazonaws.com",
            "userIdentity":{"type":"AWSService","invokedBy":"ecs-tasks.amazonaws.com"},
            "requestParameters":{"roleArn":"arn:aws:iam::123456789012:role/orders-task-role","roleSessionName":"orders"},
            "responseElements":{"credentials":{"accessKeyId":"ASIAECSTASKEXAMPLE01","expiration":"Nov 2, 2026, 2:00:00 PM"}}}"#;
        let r = report_of(&[
            issue.to_owned(),
            ecs_failure("c1", "2026-11-02T14:00:20Z", "orders", "2026-11-02T08:00:00Z"),
        ]);
        let f = &r.findings[0];
        assert_eq!(f.credential_source(), crate::CredentialSource::Container);
        assert_eq!(f.lease_seconds(), Some(21_600));
    }

    #[test]
    fn a_federated_users_session_belongs_to_the_federated_user_not_its_broker() {
        let failure = r#"{"eventTime":"2026-11-02T20:00:20Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","errorCode":"ExpiredToken",
            "eventID":"fed1","recipientAccountId":"123456789012",
            "userIdentity":{"type":"FederatedUser","principalId":"123456789012:partner-upload","accessKeyId":"ASIAFEDERATEDEXAMPLE",
              "arn":"arn:aws:sts::123456789012:federated-user/partner-upload",
              "sessionContext":{"attributes":{"creationDate":"2026-11-02T08:00:00Z"},
                "sessionIssuer":{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/upload-broker"}}}}"#;
        let r = report_of(&[failure.to_owned()]);
        let f = &r.findings[0];
        assert_eq!(
            f.principal.as_deref(),
            Some("arn:aws:sts::123456789012:federated-user/partner-upload")
        );
        assert_eq!(f.credential_source(), crate::CredentialSource::FederationToken);
    }
}
