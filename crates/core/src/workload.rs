//! Workloads: the sessions of one account and principal whose names differ only in their variable parts
//! (epochs, hex ids, UUIDs, instance ids, pod-name suffixes). A fleet of pods that cached credentials the
//! same way is one workload of many groups; on-call meets it as one thing (docs/rules.md, "Workloads").

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::finding::Finding;
use crate::model::{Severity, Verdict};
use crate::stats::principal_key;
use crate::time::Epoch;

/// Session names listed per workload.
pub const MAX_SESSIONS_LISTED: usize = 10;

/// The session pattern of a session name: each variable part replaced by `*`
/// (`botocore-session-1764825600` → `botocore-session-*`, `i-0abcd1234ef567890` → `i-*`, a bare ECS task
/// id → `*`); a name without a variable part is its own pattern.
pub fn session_pattern(session: &str) -> String {
    let bytes = session.as_bytes();
    let mut out = String::with_capacity(session.len());
    let mut i = 0;
    while i < bytes.len() {
        if let Some(len) = variable_at(session, i) {
            if !out.ends_with('*') {
                out.push('*');
            }
            i += len;
            continue;
        }
        // A whole word (letters and digits between separators) is copied at once, so that a variable
        // part is only ever a whole word or a run inside one that starts at a word's start; a separator
        // (any other character, of any length in UTF-8) is copied on its own.
        let rest = &session[i..];
        let end = match rest.find(|c: char| !c.is_ascii_alphanumeric()) {
            Some(0) => i + rest.chars().next().map_or(1, char::len_utf8),
            Some(e) => i + e,
            None => session.len(),
        };
        out.push_str(&session[i..end]);
        i = end;
    }
    fold_pod_suffix(out)
}

/// The length of a variable part starting at byte `i` (at a word's start), if one does.
fn variable_at(s: &str, i: usize) -> Option<usize> {
    let at_word_start = i == 0 || !s.as_bytes()[i - 1].is_ascii_alphanumeric();
    if !at_word_start {
        return None;
    }
    let rest = &s[i..];
    let word_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let word = &rest[..word_len];
    // A UUID spans four separators.
    if let Some(candidate) = rest.get(..36) {
        let parts: Vec<&str> = candidate.split('-').collect();
        let ends_word = rest.len() == 36 || !rest.as_bytes()[36].is_ascii_alphanumeric();
        if ends_word
            && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
            && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Some(36);
        }
    }
    let digits = word.bytes().all(|b| b.is_ascii_digit());
    let hex = word.bytes().all(|b| b.is_ascii_hexdigit()) && word.bytes().any(|b| b.is_ascii_digit());
    if (digits && word.len() >= 6) || (hex && word.len() >= 8) {
        return Some(word_len);
    }
    None
}

/// The characters Kubernetes draws a pod-template hash and a generated name's suffix from: consonants and
/// the digits that cannot be read as letters (`k8s.io/apimachinery/pkg/util/rand`, `alphanums`). A suffix
/// without a digit is as likely as one in five.
const KUBERNETES_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Neighbouring variable parts fold into one `*`; a Kubernetes pod name's `-<replica set hash>-<pod hash>` (9–10 and 5
/// characters of [`KUBERNETES_ALPHABET`], or lowercase letters and digits with a digit) becomes `-*`.
fn fold_pod_suffix(mut pattern: String) -> String {
    // Variable parts side by side (`-20261102-deadbeef01`) are one.
    for joined in ["*-*", "*_*", "*.*"] {
        while pattern.contains(joined) {
            pattern = pattern.replace(joined, "*");
        }
    }
    let segments: Vec<&str> = pattern.split('-').collect();
    let pod_hash = |s: &str, lens: &[usize]| {
        lens.contains(&s.len())
            && (s.bytes().all(|b| KUBERNETES_ALPHABET.contains(&b))
                || (s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                    && s.bytes().any(|b| b.is_ascii_digit())))
    };
    let n = segments.len();
    if n >= 3
        && pod_hash(segments[n - 1], &[5])
        && (pod_hash(segments[n - 2], &[9, 10]) || segments[n - 2] == "*")
    {
        let mut head = segments[..n - 2].join("-");
        head.push_str("-*");
        return head;
    }
    pattern
}

/// One workload: the groups of one account + principal + session pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// The account.
    pub account: Option<String>,
    /// The principal (the fullest spelling among its groups).
    pub principal: Option<String>,
    /// The session pattern; `None` for sessions without a name (GetSessionToken).
    pub session_pattern: Option<String>,
    /// Groups in it.
    pub groups: usize,
    /// Up to [`MAX_SESSIONS_LISTED`] session names, in order.
    pub sessions: Vec<String>,
    /// Failures of its groups' incidents shown (each group's latest).
    pub failures: u64,
    /// The earliest first failure.
    pub first_failure: Epoch,
    /// The latest last failure.
    pub last_failure: Epoch,
    /// Groups per verdict.
    pub verdicts: BTreeMap<Verdict, usize>,
    /// The worst severity of its groups.
    pub severity: Severity,
}

/// What makes two findings one workload: account, principal (without its session) and session pattern.
pub(crate) type WorkloadKey = (Option<String>, Option<String>, Option<String>);

/// The workload key of an account, a principal (as spelt) and a session pattern.
pub(crate) fn workload_key(
    account: Option<&str>,
    principal: Option<&str>,
    pattern: Option<&str>,
) -> WorkloadKey {
    (
        account.map(str::to_owned),
        principal.map(|p| principal_key(p).to_owned()),
        pattern.map(str::to_owned),
    )
}

/// Offers a session name to a workload's list: the first [`MAX_SESSIONS_LISTED`] in order are kept, and
/// no more are held.
pub(crate) fn list_session(listed: &mut BTreeSet<String>, session: &str) {
    if listed.len() < MAX_SESSIONS_LISTED || listed.last().is_some_and(|last| session < last.as_str()) {
        listed.insert(session.to_owned());
        if listed.len() > MAX_SESSIONS_LISTED {
            listed.pop_last();
        }
    }
}

/// Keeps the fuller spelling of a workload's principal (a role ARN with its path over a bare name).
pub(crate) fn keep_fuller(principal: &mut Option<String>, other: Option<&str>) {
    if other.map(str::len) > principal.as_deref().map(str::len) {
        *principal = other.map(str::to_owned);
    }
}

/// A workload as its findings come: the first session names it lists, and its session pattern as its
/// findings share it.
type Gathering = (Workload, BTreeSet<String>, Option<Arc<str>>);

/// The workloads of `findings`, most severe first (then most failures, then by name). Sets each
/// finding's `workload` as it goes.
pub fn workloads(findings: &mut [Finding]) -> Vec<Workload> {
    // Each workload with its first session names, kept to the number listed as they come: a workload of a
    // million sessions lists ten, and holds no more.
    let mut by_key: BTreeMap<WorkloadKey, Gathering> = BTreeMap::new();
    for f in findings.iter_mut() {
        let pattern = f.session().map(session_pattern);
        let (w, listed, shared) = by_key
            .entry(workload_key(
                f.account(),
                f.principal.as_deref(),
                pattern.as_deref(),
            ))
            .or_insert_with(|| {
                let shared = pattern.as_deref().map(Arc::from);
                let w = Workload {
                    account: f.account().map(str::to_owned),
                    principal: f.principal.clone(),
                    session_pattern: pattern,
                    groups: 0,
                    sessions: Vec::new(),
                    failures: 0,
                    first_failure: f.first_failure,
                    last_failure: f.last_failure,
                    verdicts: BTreeMap::new(),
                    severity: f.severity(),
                };
                (w, BTreeSet::new(), shared)
            });
        f.workload = shared.clone();
        if let Some(s) = f.session() {
            list_session(listed, s);
        }
        w.groups += 1;
        w.failures += f.failures;
        w.first_failure = w.first_failure.min(f.first_failure);
        w.last_failure = w.last_failure.max(f.last_failure);
        *w.verdicts.entry(f.verdict()).or_default() += 1;
        w.severity = w.severity.max(f.severity());
        keep_fuller(&mut w.principal, f.principal.as_deref());
    }
    let mut out: Vec<Workload> = by_key
        .into_values()
        .map(|(mut w, listed, _)| {
            w.sessions = listed.into_iter().collect();
            w
        })
        .collect();
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.failures.cmp(&a.failures))
            .then_with(|| {
                (&a.account, &a.principal, &a.session_pattern).cmp(&(
                    &b.account,
                    &b.principal,
                    &b.session_pattern,
                ))
            })
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_parts_become_stars() {
        for (name, pattern) in [
            ("botocore-session-1764825600", "botocore-session-*"),
            ("i-0abcd1234ef567890", "i-*"),
            ("0123456789abcdef0123456789abcdef", "*"),
            ("5f8e0d4c-3b2a-4c1d-9e8f-7a6b5c4d3e2f", "*"),
            ("payments-api-7d9f8b6c4-x2kq9", "payments-api-*"),
            ("job-28345678-a1b2c", "job-*"),
            ("export-run-20261102-deadbeef01", "export-run-*"),
        ] {
            assert_eq!(session_pattern(name), pattern, "{name}");
        }
    }

    #[test]
    fn a_pod_suffix_without_a_digit_is_still_a_pod_suffix() {
        // Found by the latency bench: a fleet of 50 pods paged 12 times, once for each pod whose suffix
        // happened to be all consonants, each its own workload.
        for name in [
            "payments-api-7d9f8b6c4-gpgsr",
            "payments-api-7d9f8b6c4-x2kq9",
            "payments-api-bcdfghjkl-zzzzz",
            "payments-api-5c8d7f9b6d-wttnv",
        ] {
            assert_eq!(session_pattern(name), "payments-api-*", "{name}");
        }
    }

    #[test]
    fn words_that_only_look_like_a_pod_suffix_are_kept() {
        for name in [
            // Vowels: not a generated suffix, and no digit.
            "payments-api-blueprint-admin",
            "reports-nightly-crwth",
            // A five-consonant word after a word that is not a replica set hash.
            "sync-backend-xyzzy",
            // The right shape without the replica set hash before it.
            "payments-gpgsr",
        ] {
            assert_eq!(session_pattern(name), name, "{name}");
        }
    }

    #[test]
    fn any_name_has_a_pattern_and_characters_outside_ascii_are_kept() {
        assert_eq!(session_pattern("ad\u{200b}min-1764825600"), "ad\u{200b}min-*");
        assert_eq!(session_pattern("jöb-🦀-1764825600"), "jöb-🦀-*");
        assert_eq!(session_pattern(""), "");
    }

    proptest::proptest! {
        #[test]
        fn no_session_name_panics_and_a_pattern_is_never_longer(name in ".{0,64}") {
            let pattern = session_pattern(&name);
            proptest::prop_assert!(pattern.len() <= name.len().max(1));
        }
    }

    #[test]
    fn names_without_variable_parts_are_their_own_pattern() {
        for name in [
            "nightly-etl",
            "maria@example.com",
            "worker-12345",
            "reconciler-7",
            "accepted",
            "deadbeef",
            "payments-api-worker",
            "statefulset-0",
        ] {
            assert_eq!(session_pattern(name), name, "{name}");
        }
    }

    #[test]
    fn a_fleet_is_one_workload_and_other_sessions_are_their_own() {
        let mut findings: Vec<Finding> = (0..3)
            .map(|i| {
                let mut f = crate::finding::example_finding();
                f.key.session = Some(format!("botocore-session-17648256{i:02}"));
                f
            })
            .collect();
        let mut other = crate::finding::example_finding();
        other.key.session = Some("nightly-etl".into());
        findings.push(other);
        let w = workloads(&mut findings);
        assert_eq!(w.len(), 2);
        let fleet = w.iter().find(|w| w.groups == 3).unwrap();
        assert_eq!(fleet.session_pattern.as_deref(), Some("botocore-session-*"));
        assert_eq!(fleet.sessions.len(), 3);
        assert_eq!(fleet.failures, 18);
        assert_eq!(findings[0].workload.as_deref(), Some("botocore-session-*"));
    }
}
