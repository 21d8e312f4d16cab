//! The usage of sessions: for each temporary access key (`ASIA…`), when it last signed a call and with
//! which client, from every record, successful or not. The near-miss rule ([`crate::nearmiss`]) reads it.
//!
//! Most records are signed by a session, so this runs on nearly every record and must cost little: it does
//! not decode the record. A targeted scan finds the `userIdentity` object by its key, checks its
//! `accessKeyId` is temporary, and reads the few strings it needs (`arn`, `creationDate`, then
//! `eventTime` and `userAgent` outside it) by byte search. A record it cannot read this way (no
//! `userIdentity`, a non-string field) gives no usage; nothing else depends on it.
//!
//! [`SessionUse`] is plain data with serde and a [`SessionUse::merge`], so that partial scans of
//! different files can be carried and combined in any order to the same result.

use std::collections::HashMap;
use std::sync::LazyLock;

use memchr::memmem;
use serde::{Deserialize, Serialize};

use crate::classify::client_of;
use crate::model::Client;
use crate::time::{Epoch, parse_time};

/// One access key's last use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUse {
    /// The latest `eventTime` of a call it signed.
    pub at: Epoch,
    /// The client of that call (its `userAgent` family), if known.
    pub client: Option<Client>,
    /// `userIdentity.sessionContext.attributes.creationDate` of any call it signed: when it was issued.
    pub created: Option<Epoch>,
    /// Index of its `userIdentity.arn` ([`SessionUse::identity`] gives it back).
    pub identity: Option<u32>,
}

/// Per temporary access key, its last use. Memory grows with distinct access keys, never with records:
/// about 100 bytes a key (README, "Memory"), plus each distinct identity ARN once.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SessionUse {
    /// The `userIdentity.arn`s seen, each once (a session's ARN names its role and session name; a
    /// workload's sessions share few).
    identities: Vec<Box<str>>,
    #[serde(skip)]
    identity_ids: HashMap<Box<str>, u32, Fast>,
    keys: HashMap<Box<str>, LastUse, Fast>,
    /// The client of recent user agents: a run holds few distinct ones, and matching one against the
    /// clients' patterns costs more than the rest of the scan.
    #[serde(skip)]
    clients: HashMap<u64, Option<Client>, Fast>,
}

/// The hash of the usage's tables. Keys are access key ids and user agents from the input, so a hostile
/// input could make them collide, but only to slow its own scan (nothing else rests on them); SipHash
/// cost a tenth of the scan.
type Fast = std::hash::BuildHasherDefault<FxHasher>;

/// The multiply-rotate hash of rustc (FxHash), eight bytes at a time.
#[derive(Default)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl PartialEq for SessionUse {
    fn eq(&self, other: &Self) -> bool {
        self.keys.len() == other.keys.len()
            && self.keys.iter().all(|(k, mine)| {
                other.keys.get(k).is_some_and(|theirs| {
                    let mine_arn = mine.identity.and_then(|i| self.identity(i));
                    let their_arn = theirs.identity.and_then(|i| other.identity(i));
                    (mine.at, mine.client, mine.created, mine_arn)
                        == (theirs.at, theirs.client, theirs.created, their_arn)
                })
            })
    }
}

/// User agents whose client is remembered; past it the memo starts again.
const CLIENT_MEMO: usize = 1 << 16;

/// The fields of one record the usage reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Use<'a> {
    /// `userIdentity.accessKeyId` (an `ASIA` key).
    pub access_key_id: &'a str,
    /// `eventTime`.
    pub at: Epoch,
    /// `userAgent`, raw (as the JSON text has it).
    pub user_agent: Option<&'a [u8]>,
    /// The identity object, braces included.
    identity: &'a [u8],
    /// Where its `accessKeyId` key starts in it.
    key_at: usize,
}

impl Use<'_> {
    /// `userIdentity.arn`, if it is text. Read on demand: only a key's first call needs it, and most
    /// calls are not a key's first.
    pub fn arn(&self) -> Option<&str> {
        // CloudTrail writes the identity's own `arn` before its `accessKeyId` (and the session issuer's
        // after); the braces before it tell whether it is the identity's own.
        let head = &self.identity[..self.key_at];
        let at = KEYS.arn.find(head)?;
        if depth(&head[..at]) != 1 {
            return None;
        }
        string_value(head, at + 5)
            .and_then(|a| std::str::from_utf8(a).ok())
            .filter(|a| !a.is_empty())
    }

    /// `creationDate` (in the identity's session context, after the key) as a time; read on demand as
    /// the ARN is.
    pub fn created(&self) -> Option<Epoch> {
        let after = self.key_at + 13;
        KEYS.creation_date
            .find(&self.identity[after..])
            .and_then(|at| string_value(self.identity, after + at + 14))
            .and_then(time_of)
    }
}

/// How deep the end of `bytes`, the start of an identity, is in it (strings in an identity hold no brace).
fn depth(bytes: &[u8]) -> isize {
    memchr::memchr2_iter(b'{', b'}', bytes).fold(0, |d, i| if bytes[i] == b'{' { d + 1 } else { d - 1 })
}

impl SessionUse {
    /// Access keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Holds no access key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The last use of `access_key_id`, if it signed any call seen.
    pub fn get(&self, access_key_id: &str) -> Option<&LastUse> {
        self.keys.get(access_key_id)
    }

    /// Every access key with its last use.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &LastUse)> {
        self.keys.iter().map(|(k, u)| (&**k, u))
    }

    /// The identity ARN of index `i`.
    pub fn identity(&self, i: u32) -> Option<&str> {
        self.identities.get(i as usize).map(|s| &**s)
    }

    /// Reads one JSON value (a record or an EventBridge envelope around one) with the targeted scan.
    /// Returns whether it was a call signed by a temporary key.
    pub fn scan(&mut self, bytes: &[u8]) -> bool {
        match scan_use(bytes) {
            Some(u) => {
                self.add(u);
                true
            }
            None => false,
        }
    }

    /// [`SessionUse::scan`], telling instead whether the value may carry records as JSON in a string
    /// (a lookup-events result, an SQS or SNS message: no `userIdentity` of its own, an escaped one
    /// inside) for the caller to open. One search for the identity serves both.
    pub fn scan_value(&mut self, bytes: &[u8]) -> bool {
        match KEYS.user_identity.find(bytes) {
            Some(start) => {
                if let Some(u) = use_at(bytes, start) {
                    self.add(u);
                }
                false
            }
            None => KEYS.escaped_identity.find(bytes).is_some(),
        }
    }

    /// Counts one use.
    pub fn add(&mut self, u: Use<'_>) {
        // One lookup per use: most calls of a key come after the last one seen, and only its first call's
        // ARN and issue time are read.
        let SessionUse {
            identities,
            identity_ids,
            keys,
            clients,
        } = self;
        match keys.get_mut(u.access_key_id) {
            Some(known) => {
                if known.created.is_none() {
                    known.created = u.created();
                }
                if known.identity.is_none() {
                    known.identity = u.arn().map(|a| intern(identities, identity_ids, a));
                }
                if u.at < known.at {
                    return;
                }
                let client = u.user_agent.and_then(|ua| client(clients, ua));
                // At the same second the greater client wins, so the result does not depend on order.
                if known.at < u.at || client > known.client {
                    known.client = client;
                }
                known.at = u.at;
            }
            None => {
                let last = LastUse {
                    at: u.at,
                    client: u.user_agent.and_then(|ua| client(clients, ua)),
                    created: u.created(),
                    identity: u.arn().map(|a| intern(identities, identity_ids, a)),
                };
                keys.insert(Box::from(u.access_key_id), last);
            }
        }
    }

    /// Folds in another scan's usage (of other files, or the same: the result is the same whatever the
    /// order and however the records were split).
    pub fn merge(&mut self, other: SessionUse) {
        if self.keys.is_empty() {
            // A usage lent to a reader coming back ([`crate::Analyzer::fork_lending`]): taken whole.
            *self = other;
            return;
        }
        let SessionUse { identities, keys, .. } = other;
        for (key, theirs) in keys {
            let arn = theirs.identity.and_then(|i| identities.get(i as usize));
            let identity = arn.map(|a| self.intern(a));
            match self.keys.get_mut(&key) {
                None => {
                    self.keys.insert(key, LastUse { identity, ..theirs });
                }
                Some(mine) => {
                    if (theirs.at, theirs.client) > (mine.at, mine.client) {
                        mine.at = theirs.at;
                        mine.client = theirs.client;
                    }
                    mine.created = earliest(mine.created, theirs.created);
                    if mine.identity.is_none() {
                        mine.identity = identity;
                    }
                }
            }
        }
    }

    fn intern(&mut self, arn: &str) -> u32 {
        intern(&mut self.identities, &mut self.identity_ids, arn)
    }
}

fn intern(identities: &mut Vec<Box<str>>, ids: &mut HashMap<Box<str>, u32, Fast>, arn: &str) -> u32 {
    if ids.len() != identities.len() {
        // Read back from a serialised partial: the lookup is not carried.
        *ids = (0..)
            .zip(identities.iter())
            .map(|(i, a)| (a.clone(), i))
            .collect::<HashMap<_, _, Fast>>();
    }
    if let Some(&i) = ids.get(arn) {
        return i;
    }
    let i = u32::try_from(identities.len()).unwrap_or(u32::MAX);
    identities.push(Box::from(arn));
    ids.insert(Box::from(arn), i);
    i
}

fn client(memo: &mut HashMap<u64, Option<Client>, Fast>, raw: &[u8]) -> Option<Client> {
    let key = {
        use std::hash::Hasher;
        let mut h = FxHasher::default();
        h.write(raw);
        h.finish()
    };
    if let Some(&c) = memo.get(&key) {
        return c;
    }
    let client = unescape(raw).and_then(|ua| client_of(&ua));
    if memo.len() >= CLIENT_MEMO {
        memo.clear();
    }
    memo.insert(key, client);
    client
}

/// The earlier of two issue times (a key has one; the rule makes the result independent of order).
fn earliest(a: Option<Epoch>, b: Option<Epoch>) -> Option<Epoch> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A JSON string's raw content as text: unescaped when it has escapes.
fn unescape(raw: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    if memchr::memchr(b'\\', raw).is_none() {
        return std::str::from_utf8(raw).ok().map(Into::into);
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted).ok().map(Into::into)
}

/// Searchers for the keys the scan looks for, built once (building one per call costs more than the
/// search).
struct Keys {
    user_identity: memmem::Finder<'static>,
    access_key_id: memmem::Finder<'static>,
    arn: memmem::Finder<'static>,
    creation_date: memmem::Finder<'static>,
    event_time: memmem::Finder<'static>,
    user_agent: memmem::Finder<'static>,
    escaped_identity: memmem::Finder<'static>,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    user_identity: memmem::Finder::new(b"\"userIdentity\""),
    access_key_id: memmem::Finder::new(b"\"accessKeyId\""),
    arn: memmem::Finder::new(b"\"arn\""),
    creation_date: memmem::Finder::new(b"\"creationDate\""),
    event_time: memmem::Finder::new(b"\"eventTime\""),
    user_agent: memmem::Finder::new(b"\"userAgent\""),
    escaped_identity: memmem::Finder::new(b"\\\"userIdentity\\\""),
});

/// The fields of a call signed by a temporary key, read without decoding the record; `None` for any
/// other value.
///
/// It relies on what the identity holds: IAM names, ARNs and key ids never contain braces, so the braces
/// tell where the identity ends and how deep each of its keys is without reading its strings. One pass
/// over them bounds every other search to the identity (or to what follows it), where a search over the
/// rest of the record would only find keys of other objects.
pub fn scan_use(bytes: &[u8]) -> Option<Use<'_>> {
    use_at(bytes, KEYS.user_identity.find(bytes)?)
}

/// [`scan_use`] with the `"userIdentity"` key found at `start`.
fn use_at(bytes: &[u8], start: usize) -> Option<Use<'_>> {
    let keys = &*KEYS;
    let open = start + 14 + value_start(&bytes[start + 14..])?;
    if bytes.get(open) != Some(&b'{') {
        return None;
    }
    let braces = Braces::of(&bytes[open..])?;
    let identity = &bytes[open..open + braces.end];
    let key_at = keys.access_key_id.find(identity)?;
    // A key of a nested object of the identity is not the identity's own.
    if braces.depth_at(key_at) != 1 {
        return None;
    }
    let key = string_value(identity, key_at + 13)?;
    if !key.starts_with(b"ASIA") {
        return None;
    }
    let access_key_id = std::str::from_utf8(key).ok()?;
    // `eventTime` and `userAgent` are top-level keys, which CloudTrail writes after the identity
    // (`eventTime` right after it): looked for there first, then before it.
    let end = open + braces.end;
    let top = |finder: &memmem::Finder<'static>, name: &[u8]| {
        let follows = bytes[end..]
            .strip_prefix(b",")
            .is_some_and(|rest| rest.starts_with(name));
        let at = if follows {
            end + 1
        } else {
            finder
                .find(&bytes[end..])
                .map(|i| end + i)
                .or_else(|| finder.find(&bytes[..start]))?
        };
        string_value(bytes, at + 11)
    };
    let at = top(&keys.event_time, b"\"eventTime\"").and_then(time_of)?;
    let user_agent = top(&keys.user_agent, b"\"userAgent\"");
    Some(Use {
        access_key_id,
        at,
        user_agent,
        identity,
        key_at,
    })
}

/// The braces of an object, from its opening one: where it ends, and the depth at each of its first
/// braces (an identity has a handful).
struct Braces {
    /// Offset of its closing brace.
    end: usize,
    /// `(offset, depth after it)` of each brace in order, the opening one first.
    at: [(u32, u8); Braces::MAX],
    len: usize,
}

impl Braces {
    const MAX: usize = 48;

    /// `None` when the object does not end, or has more braces than an identity.
    fn of(object: &[u8]) -> Option<Braces> {
        let mut braces = Braces {
            end: 0,
            at: [(0, 0); Braces::MAX],
            len: 0,
        };
        let mut depth = 0u8;
        for i in memchr::memchr2_iter(b'{', b'}', object) {
            depth = if object[i] == b'{' {
                depth.checked_add(1)?
            } else {
                depth - 1
            };
            if braces.len == Braces::MAX {
                return None;
            }
            braces.at[braces.len] = (u32::try_from(i).ok()?, depth);
            braces.len += 1;
            if depth == 0 {
                braces.end = i;
                return Some(braces);
            }
        }
        None
    }

    /// The depth at offset `i` (inside the object: at least one).
    fn depth_at(&self, i: usize) -> u8 {
        self.at[..self.len]
            .iter()
            .take_while(|&&(b, _)| (b as usize) < i)
            .last()
            .map_or(0, |&(_, d)| d)
    }
}

/// The raw content of the string value after a key ending at `after`.
fn string_value(bytes: &[u8], after: usize) -> Option<&[u8]> {
    let rest = bytes.get(after..)?;
    let value = value_start(rest)?;
    if rest.get(value) != Some(&b'"') {
        return None;
    }
    let content = value + 1;
    let len = string_len(&rest[content..])?;
    Some(&rest[content..content + len])
}

/// Past `:` and whitespace after a key: the offset of its value.
fn value_start(bytes: &[u8]) -> Option<usize> {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let colon = bytes.iter().position(|b| !ws(b))?;
    if bytes[colon] != b':' {
        return None;
    }
    let value = colon + 1 + bytes[colon + 1..].iter().position(|b| !ws(b))?;
    Some(value)
}

/// The length of a string's content, up to its closing quote.
fn string_len(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        i += memchr::memchr2(b'"', b'\\', &bytes[i..])?;
        if bytes[i] == b'"' {
            return Some(i);
        }
        i += 2;
        if i > bytes.len() {
            return None;
        }
    }
}

/// A time, the common form (`2026-11-02T09:00:14Z`) read directly, any other by [`parse_time`].
fn time_of(raw: &[u8]) -> Option<Epoch> {
    if let Some(t) = iso_z(raw) {
        return Some(t);
    }
    parse_time(std::str::from_utf8(raw).ok()?)
}

fn iso_z(b: &[u8]) -> Option<Epoch> {
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, min, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || min > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + min * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, time: &str, ua: &str) -> String {
        format!(
            r#"{{"eventVersion":"1.08","userIdentity":{{"type":"AssumedRole","principalId":"AROAEXAMPLE:job",
            "arn":"arn:aws:sts::123456789012:assumed-role/etl/job","accountId":"123456789012",
            "accessKeyId":"{key}","sessionContext":{{"sessionIssuer":{{}},"attributes":{{
            "creationDate":"2026-11-02T08:00:00Z","mfaAuthenticated":"false"}}}}}},
            "eventTime":"{time}","eventSource":"s3.amazonaws.com","eventName":"ListBuckets",
            "userAgent":"{ua}","requestParameters":null,
            "responseElements":{{"credentials":{{"accessKeyId":"ASIAOTHEREXAMPLE"}}}}}}"#
        )
    }

    #[test]
    fn the_scan_reads_the_fields_a_full_parse_would() {
        let r = record(
            "ASIAKEY1EXAMPLE",
            "2026-11-02T08:59:18Z",
            "Boto3/1.34.0 Botocore/1.34.0",
        );
        let u = scan_use(r.as_bytes()).expect("a session's call");
        assert_eq!(u.access_key_id, "ASIAKEY1EXAMPLE");
        assert_eq!(Some(u.at), parse_time("2026-11-02T08:59:18Z"));
        assert_eq!(u.created(), parse_time("2026-11-02T08:00:00Z"));
        assert_eq!(u.arn(), Some("arn:aws:sts::123456789012:assumed-role/etl/job"));
        assert_eq!(u.user_agent, Some(&b"Boto3/1.34.0 Botocore/1.34.0"[..]));
    }

    #[test]
    fn long_term_keys_and_records_without_an_identity_give_no_use() {
        let user = record("AKIAKEY1EXAMPLE", "2026-11-02T08:59:18Z", "aws-cli/2.15.0");
        assert_eq!(scan_use(user.as_bytes()), None);
        // The issued key of a call signed without a session is not a use of the issued key.
        let issuing = r#"{"userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/ci"},
            "eventTime":"2026-11-02T08:00:00Z","responseElements":{"credentials":{"accessKeyId":"ASIAKEY"}}}"#;
        assert_eq!(scan_use(issuing.as_bytes()), None);
        assert_eq!(scan_use(br#"{"eventTime":"2026-11-02T08:00:00Z"}"#), None);
        assert_eq!(scan_use(br#"{"userIdentity":"ASIA","eventTime":"x"}"#), None);
    }

    #[test]
    fn only_the_identitys_own_fields_are_read_and_the_top_level_ones_outside_it() {
        // A session issuer's key and ARN and a creation date past the identity are not the session's.
        let nested = r#"{"userIdentity":{"type":"AssumedRole","sessionContext":{"sessionIssuer":{
            "arn":"arn:aws:iam::123456789012:role/etl","accessKeyId":"ASIANESTED"}}},
            "eventTime":"2026-11-02T08:00:00Z","requestParameters":{"accessKeyId":"ASIAPARAM"}}"#;
        assert_eq!(scan_use(nested.as_bytes()), None);
        let late = r#"{"userIdentity":{"arn":"arn:aws:sts::1:assumed-role/etl/job","accessKeyId":"ASIAKEY"},
            "eventTime":"2026-11-02T08:00:00Z","requestParameters":{"creationDate":"2026-11-01T00:00:00Z",
            "userAgent":"not-the-callers"},"userAgent":"aws-cli/2.15.0"}"#;
        let u = scan_use(late.as_bytes()).expect("a session's call");
        assert_eq!(u.arn(), Some("arn:aws:sts::1:assumed-role/etl/job"));
        assert_eq!(u.created(), None);
        assert_eq!(u.at, iso_z(b"2026-11-02T08:00:00Z").unwrap());
        // The first `userAgent` after the identity, as before: nested ones are not told apart.
        assert_eq!(u.user_agent, Some(&b"not-the-callers"[..]));
        // Top-level fields written before the identity are found too.
        let before = r#"{"userAgent":"aws-cli/2.15.0","eventTime":"2026-11-02T08:00:00Z",
            "userIdentity":{"accessKeyId":"ASIAKEY"}}"#;
        let u = scan_use(before.as_bytes()).expect("a session's call");
        assert_eq!(
            (u.at, u.user_agent),
            (
                iso_z(b"2026-11-02T08:00:00Z").unwrap(),
                Some(&b"aws-cli/2.15.0"[..])
            )
        );
        // An identity that never closes gives nothing.
        assert_eq!(
            scan_use(br#"{"userIdentity":{"accessKeyId":"ASIAKEY","eventTime":"2026-11-02T08:00:00Z""#),
            None
        );
    }

    #[test]
    fn pretty_printed_and_escaped_records_are_read() {
        let pretty = r#"{
          "userIdentity" : {
            "type": "AssumedRole",
            "arn": "arn:aws:sts::123456789012:assumed-role/etl/job \"x\"",
            "accessKeyId": "ASIAKEY2EXAMPLE"
          },
          "eventTime" : "2026-11-02T08:59:18+00:00",
          "userAgent" : "[aws-sdk-java/2.20.0 \"quoted\"]"
        }"#;
        let u = scan_use(pretty.as_bytes()).expect("read");
        assert_eq!(u.access_key_id, "ASIAKEY2EXAMPLE");
        assert_eq!(Some(u.at), parse_time("2026-11-02T08:59:18Z"));
        let mut usage = SessionUse::default();
        usage.add(u);
        assert_eq!(usage.get("ASIAKEY2EXAMPLE").unwrap().client, Some(Client::JavaV2));
    }

    #[test]
    fn the_common_time_form_reads_as_the_general_parser_does() {
        for t in [
            "2026-11-02T08:59:18Z",
            "2000-02-29T23:59:59Z",
            "1970-01-01T00:00:00Z",
            "2100-03-01T00:00:00Z",
        ] {
            assert_eq!(iso_z(t.as_bytes()), parse_time(t), "{t}");
        }
        assert_eq!(iso_z(b"2026-13-02T08:59:18Z"), None);
    }

    #[test]
    fn the_latest_use_wins_whatever_the_order_and_a_split_merges_to_the_same() {
        let records = [
            record("ASIAK1", "2026-11-02T08:10:00Z", "aws-cli/2.15.0 Python/3.11"),
            record("ASIAK1", "2026-11-02T08:59:18Z", "Boto3/1.34.0 Botocore/1.34.0"),
            record("ASIAK2", "2026-11-02T08:30:00Z", "aws-sdk-go-v2/1.24.0"),
            record("ASIAK1", "2026-11-02T08:20:00Z", "aws-cli/2.15.0 Python/3.11"),
        ];
        let mut whole = SessionUse::default();
        for r in &records {
            assert!(whole.scan(r.as_bytes()));
        }
        let k1 = whole.get("ASIAK1").unwrap();
        assert_eq!(Some(k1.at), parse_time("2026-11-02T08:59:18Z"));
        assert_eq!(k1.client, Some(Client::Boto3));
        let mut reversed = SessionUse::default();
        for r in records.iter().rev() {
            reversed.scan(r.as_bytes());
        }
        assert_eq!(reversed, whole);
        let (mut a, mut b) = (SessionUse::default(), SessionUse::default());
        a.scan(records[1].as_bytes());
        a.scan(records[2].as_bytes());
        b.scan(records[0].as_bytes());
        b.scan(records[3].as_bytes());
        let b: SessionUse = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        let mut merged = b.clone();
        merged.merge(a.clone());
        assert_eq!(merged, whole);
        a.merge(b);
        assert_eq!(a, whole);
    }

    #[test]
    fn a_usage_merged_into_an_empty_one_is_taken_whole_and_later_merges_still_add_up() {
        let (one, two) = (
            record("ASIAK1", "2026-11-02T08:10:00Z", "aws-cli/2.15.0 Python/3.11"),
            record("ASIAK2", "2026-11-02T08:30:00Z", "aws-sdk-go-v2/1.24.0")
                .replace("assumed-role/etl/job", "assumed-role/report/nightly"),
        );
        let (mut total, mut first) = (SessionUse::default(), SessionUse::default());
        first.scan(one.as_bytes());
        total.merge(first.clone());
        assert_eq!(total, first);
        let mut second = SessionUse::default();
        second.scan(two.as_bytes());
        total.merge(second);
        let mut whole = SessionUse::default();
        whole.scan(one.as_bytes());
        whole.scan(two.as_bytes());
        assert_eq!(total, whole);
        let arn = |u: &SessionUse, k: &str| {
            u.get(k)
                .and_then(|l| l.identity)
                .and_then(|i| u.identity(i))
                .map(str::to_owned)
        };
        assert_eq!(
            arn(&total, "ASIAK2").as_deref(),
            Some("arn:aws:sts::123456789012:assumed-role/report/nightly")
        );
        assert_eq!(
            arn(&total, "ASIAK1").as_deref(),
            Some("arn:aws:sts::123456789012:assumed-role/etl/job")
        );
    }

    #[test]
    fn a_value_without_an_identity_of_its_own_may_carry_one_escaped() {
        let mut usage = SessionUse::default();
        let wrapped = serde_json::json!({ "Events": [{ "CloudTrailEvent": record("ASIAK1", "2026-11-02T08:10:00Z", "aws-cli/2.15.0") }] })
            .to_string();
        assert!(usage.scan_value(wrapped.as_bytes()));
        assert!(usage.is_empty());
        let plain = record("ASIAK1", "2026-11-02T08:10:00Z", "aws-cli/2.15.0");
        assert!(!usage.scan_value(plain.as_bytes()));
        assert!(usage.get("ASIAK1").is_some());
        assert!(!usage.scan_value(br#"{"eventTime":"2026-11-02T08:00:00Z"}"#));
    }

    proptest::proptest! {
        /// Any order of records, split anywhere into two scans merged either way round, gives the usage
        /// of one scan in file order.
        #[test]
        fn any_order_and_any_split_give_the_same_usage(
            uses in proptest::collection::vec((0..4usize, 0..5000i64, 0..3usize, proptest::bool::ANY), 1..40),
            cut in 0..40usize,
        ) {
            let uas = ["Boto3/1.34.0 Botocore/1.34.0", "aws-sdk-go-v2/1.24.0", "aws-sdk-java/2.20.0"];
            let records: Vec<String> = uses
                .iter()
                .map(|&(k, t, ua, created)| {
                    let time = crate::time::format_time(1_793_606_400 + t);
                    let r = record(&format!("ASIAPROP{k}EXAMPLE"), &time, uas[ua]);
                    if created { r } else { r.replace("\"creationDate\":\"2026-11-02T08:00:00Z\",", "") }
                })
                .collect();
            let mut whole = SessionUse::default();
            for r in &records {
                whole.scan(r.as_bytes());
            }
            let cut = cut.min(records.len());
            let (mut a, mut b) = (SessionUse::default(), SessionUse::default());
            for r in records[..cut].iter().rev() {
                a.scan(r.as_bytes());
            }
            for r in &records[cut..] {
                b.scan(r.as_bytes());
            }
            let mut ab = a.clone();
            ab.merge(b.clone());
            b.merge(a);
            proptest::prop_assert_eq!(&ab, &whole);
            proptest::prop_assert_eq!(&b, &whole);
        }
    }

    #[test]
    fn truncated_or_odd_bytes_never_panic() {
        let r = record("ASIAK1", "2026-11-02T08:59:18Z", "Boto3/1.34.0");
        for cut in 0..r.len() {
            let _ = scan_use(&r.as_bytes()[..cut]);
        }
        let _ = scan_use(br#"{"userIdentity":{"accessKeyId":"ASIA\"#);
        let _ = scan_use(br#"{"userIdentity":{{{{"#);
        let _ = scan_use(br#"{"userIdentity":}}}}"#);
    }

    #[test]
    fn one_key_costs_about_a_hundred_bytes() {
        // The entry: the key's box and its last use in the table, the key's 20 bytes on the heap.
        let entry = std::mem::size_of::<(Box<str>, LastUse)>() + 1;
        assert!(entry + 32 <= 100, "{entry} bytes an entry");
    }
}
