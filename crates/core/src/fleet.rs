//! One page per workload incident (docs/rules.md, "One page per workload incident"). The groups of a
//! workload whose session names have a variable part (a fleet: `botocore-session-*`, pod names, task ids)
//! share one incident while any of them is open: the first group opens it, later groups are counted into
//! it, a page goes out once per severity for all of them, and the resolved notice when the last of them
//! resolved. The rules here are pure; a store keeps the [`Fleet`] document and writes it only if nobody
//! wrote it since it was read (the detector retries on a conflict).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::incident::{IncidentId, group_id};
use crate::model::Severity;
use crate::stats::GroupKey;
use crate::time::Epoch;
use crate::workload::session_pattern;

/// How long a claim on a fleet's page holds: the same lease as a group's page claim (crate::ports).
pub const FLEET_CLAIM_LEASE: Epoch = crate::ports::PAGE_LEASE;

/// Bytes of member ids a fleet document lists: DynamoDB's items stop at 400 KB. Members beyond are only
/// counted ([`Fleet::overflow`]).
pub const MAX_MEMBER_BYTES: usize = 256 * 1024;

/// The fleet a group belongs to: the id of its workload (account, principal, session pattern), when its
/// session name has a variable part. A session name without one is its own workload of one group, paged
/// as a group.
pub fn fleet_of(key: &GroupKey) -> Option<String> {
    let session = key.session.as_deref()?;
    let pattern = session_pattern(session);
    if pattern == session {
        return None;
    }
    Some(group_id(&GroupKey {
        account: key.account.clone(),
        principal: key.principal.clone(),
        session: Some(pattern),
    }))
}

/// A workload's current incident, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fleet {
    /// The workload's pattern (what pages name).
    pub pattern: String,
    /// When the incident began: the opening group's incident start.
    pub opened_at: Epoch,
    /// Member incidents (their [`IncidentId`] as text) and the failures each had when last seen.
    pub members: BTreeMap<String, Member>,
    /// Members not listed (past [`MAX_MEMBER_BYTES`]): how many, how many still open, their failures.
    pub overflow: u64,
    /// Of [`Fleet::overflow`], those still open.
    pub overflow_open: u64,
    /// Failures of the unlisted members when they joined.
    pub overflow_failures: u64,
    /// The highest severity paged (SNS accepted it).
    pub paged: Option<Severity>,
    /// A claim on a page not yet confirmed: its severity and when it runs out.
    pub claim: Option<(Severity, Epoch)>,
}

/// One member of a fleet incident.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its failures when last seen.
    pub failures: u64,
    /// Its incident resolved.
    pub resolved: bool,
}

impl Fleet {
    /// The fleet incident's id: the workload's id and its start.
    pub fn id(&self, fleet: &str) -> IncidentId {
        IncidentId {
            group: fleet.to_owned(),
            opened_at: self.opened_at,
        }
    }

    /// Members still open.
    pub fn open(&self) -> u64 {
        self.members.values().filter(|m| !m.resolved).count() as u64 + self.overflow_open
    }

    /// Sessions counted into it.
    pub fn sessions(&self) -> u64 {
        self.members.len() as u64 + self.overflow
    }

    /// Failures of all its members, as last seen.
    pub fn failures(&self) -> u64 {
        self.members.values().map(|m| m.failures).sum::<u64>() + self.overflow_failures
    }

    fn listed_bytes(&self) -> usize {
        self.members.keys().map(|k| k.len() + 32).sum()
    }
}

/// What [`join`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Joined {
    /// The member opened a new fleet incident.
    Opened,
    /// The member was counted into the open one.
    Counted,
    /// It was counted already (its failure count may have moved).
    Already,
}

/// Counts `member` (a group's incident, with `failures` so far) into the fleet incident `current`, or
/// opens a new one with it when none is open. Returns the document to write.
pub fn join(current: Option<&Fleet>, pattern: &str, member: &IncidentId, failures: u64) -> (Fleet, Joined) {
    let id = member.to_string();
    if let Some(f) = current {
        if let Some(&m) = f.members.get(&id) {
            // A member whose incident reopened counts again while the fleet incident is live.
            if !m.resolved || f.open() > 0 {
                let mut f = f.clone();
                f.members.insert(
                    id,
                    Member {
                        failures: m.failures.max(failures),
                        resolved: false,
                    },
                );
                return (f, Joined::Already);
            }
        } else if f.open() > 0 {
            let mut f = f.clone();
            if f.listed_bytes() + id.len() + 32 <= MAX_MEMBER_BYTES {
                f.members.insert(
                    id,
                    Member {
                        failures,
                        resolved: false,
                    },
                );
            } else {
                f.overflow += 1;
                f.overflow_open += 1;
                f.overflow_failures += failures;
            }
            return (f, Joined::Counted);
        }
    }
    let fleet = Fleet {
        pattern: pattern.to_owned(),
        opened_at: member.opened_at,
        members: BTreeMap::from([(
            id,
            Member {
                failures,
                resolved: false,
            },
        )]),
        ..Fleet::default()
    };
    (fleet, Joined::Opened)
}

/// Takes `member`'s resolution into the fleet incident: the document to write, and whether it was the
/// last open member (the fleet's resolved notice is due). `None` when the member is not one of this
/// incident's, or resolved already.
pub fn leave(current: &Fleet, member: &IncidentId) -> Option<(Fleet, bool)> {
    let id = member.to_string();
    let mut f = current.clone();
    match f.members.get_mut(&id) {
        Some(m) if !m.resolved => m.resolved = true,
        Some(_) => return None,
        None if f.overflow_open > 0 && member.opened_at >= f.opened_at => f.overflow_open -= 1,
        None => return None,
    }
    let last = f.open() == 0;
    Some((f, last))
}

/// Claims the fleet's page at `severity` at `now`: the document to write when the page is due (never
/// paged at `severity` or above, and no live claim at `severity` or above), else `None`.
pub fn claim(current: &Fleet, severity: Severity, now: Epoch) -> Option<Fleet> {
    if current.paged.is_some_and(|p| p >= severity) {
        return None;
    }
    if current
        .claim
        .is_some_and(|(s, until)| s >= severity && until > now)
    {
        return None;
    }
    let mut f = current.clone();
    f.claim = Some((severity, now + FLEET_CLAIM_LEASE));
    Some(f)
}

/// SNS accepted the page at `severity`: it counts as paged, and the claim ends.
pub fn confirm(current: &Fleet, severity: Severity) -> Fleet {
    let mut f = current.clone();
    f.paged = f.paged.max(Some(severity));
    if f.claim.is_some_and(|(s, _)| s <= severity) {
        f.claim = None;
    }
    f
}

/// The page at `severity` could not be published: the claim is given back so the retry pages at once.
pub fn release(current: &Fleet, severity: Severity) -> Fleet {
    let mut f = current.clone();
    if f.claim.is_some_and(|(s, _)| s == severity) {
        f.claim = None;
    }
    f
}

/// What a fleet's page says beside its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetTally {
    /// The session pattern.
    pub pattern: String,
    /// Sessions counted into the incident.
    pub sessions: u64,
    /// Their failures, as last seen.
    pub failures: u64,
    /// When the workload's incident began (its first member's incident start).
    pub since: Epoch,
}

impl FleetTally {
    /// The tally of `fleet`.
    pub fn of(fleet: &Fleet) -> Self {
        FleetTally {
            pattern: fleet.pattern.clone(),
            sessions: fleet.sessions(),
            failures: fleet.failures(),
            since: fleet.opened_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(session: &str) -> GroupKey {
        GroupKey {
            account: Some("123456789012".into()),
            principal: Some("payments-api-irsa-role".into()),
            session: Some(session.into()),
        }
    }

    fn member(session: &str, at: Epoch) -> IncidentId {
        IncidentId {
            group: group_id(&key(session)),
            opened_at: at,
        }
    }

    #[test]
    fn sessions_with_a_variable_part_are_a_fleet_and_others_are_not() {
        let a = fleet_of(&key("botocore-session-1764825600")).unwrap();
        assert_eq!(Some(a.clone()), fleet_of(&key("botocore-session-1764825661")));
        assert!(a.contains("botocore-session-*"), "{a}");
        assert_eq!(fleet_of(&key("nightly-etl")), None);
        let other_role = GroupKey {
            principal: Some("etl".into()),
            ..key("botocore-session-1764825600")
        };
        assert_ne!(fleet_of(&other_role), Some(a));
        assert_eq!(fleet_of(&GroupKey::default()), None);
    }

    #[test]
    fn the_first_member_opens_later_ones_are_counted_and_the_last_to_resolve_ends_it() {
        let (f, j) = join(None, "botocore-session-*", &member("s-1764825600", 100), 3);
        assert_eq!(j, Joined::Opened);
        assert_eq!(f.opened_at, 100);
        let (f, j) = join(Some(&f), "botocore-session-*", &member("s-1764825601", 130), 5);
        assert_eq!(j, Joined::Counted);
        let (f, j) = join(Some(&f), "botocore-session-*", &member("s-1764825601", 130), 9);
        assert_eq!(j, Joined::Already, "a member joins once");
        assert_eq!((f.sessions(), f.failures(), f.open()), (2, 12, 2));
        let (f, last) = leave(&f, &member("s-1764825600", 100)).unwrap();
        assert!(!last, "one member is still failing");
        assert_eq!(leave(&f, &member("s-1764825600", 100)), None, "resolves once");
        let (f, last) = leave(&f, &member("s-1764825601", 130)).unwrap();
        assert!(last);
        // Over: the next member opens a new fleet incident.
        let (g, j) = join(Some(&f), "botocore-session-*", &member("s-1764900000", 9000), 1);
        assert_eq!((j, g.opened_at, g.sessions()), (Joined::Opened, 9000, 1));
        assert_eq!(g.paged, None);
    }

    #[test]
    fn a_page_is_claimed_once_per_severity_and_a_dead_claim_runs_out() {
        let (f, _) = join(None, "p-*", &member("p-1764825600", 100), 1);
        let claimed = claim(&f, Severity::High, 1000).unwrap();
        assert_eq!(claim(&claimed, Severity::High, 1001), None, "a live claim holds");
        assert!(
            claim(&claimed, Severity::Critical, 1001).is_some(),
            "escalation passes"
        );
        assert!(
            claim(&claimed, Severity::High, 1000 + FLEET_CLAIM_LEASE).is_some(),
            "its invocation died: the claim ran out"
        );
        let paged = confirm(&claimed, Severity::High);
        assert_eq!((paged.paged, paged.claim), (Some(Severity::High), None));
        assert_eq!(claim(&paged, Severity::High, 5000), None);
        assert_eq!(claim(&paged, Severity::Low, 5000), None);
        assert_eq!(release(&claimed, Severity::High).claim, None);
        assert!(claim(&release(&claimed, Severity::High), Severity::High, 1001).is_some());
    }

    #[test]
    fn members_past_the_size_limit_are_counted_not_listed() {
        let (mut f, _) = join(None, "p-*", &member("p-1764825600", 100), 1);
        let mut i = 0u64;
        while f.overflow == 0 {
            i += 1;
            f = join(
                Some(&f),
                "p-*",
                &member(&format!("p-{}", 1_764_825_600 + i), 100),
                1,
            )
            .0;
        }
        let listed = f.members.len();
        assert!(f.listed_bytes() <= MAX_MEMBER_BYTES);
        let (g, j) = join(Some(&f), "p-*", &member("p-9999999999", 100), 7);
        assert_eq!(j, Joined::Counted);
        assert_eq!(g.members.len(), listed);
        assert_eq!((g.overflow, g.overflow_open, g.overflow_failures), (2, 2, 8));
        assert_eq!(g.sessions(), listed as u64 + 2);
        assert!(serde_json::to_vec(&g).unwrap().len() < 400 * 1024);
        let (g, last) = leave(&g, &member("p-8888888888", 200)).unwrap();
        assert_eq!(g.overflow_open, 1);
        assert!(!last);
    }
}
