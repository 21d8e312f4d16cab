//! What the detector and the reporter tell on-call, in domain words: a [`Notice`] about an incident (its
//! first page, an escalation, its end) or a digest of the state table. The [`crate::ports::AlertSink`]
//! adapter renders it for its channel; the engine never writes message text.

use crate::finding::{Finding, Report};
use crate::fleet::FleetTally;
use crate::incident::IncidentId;
use crate::model::Severity;
use crate::time::Epoch;

/// Why an incident notice is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NoticeKind {
    /// An incident's first page.
    Open,
    /// The incident's severity rose since it was paged.
    Escalation,
    /// The incident ended: a newer session was issued, or it was quiet for the cool-down.
    Resolved,
}

impl NoticeKind {
    /// `open`, `escalation` or `resolved`: the alert's `kind` and a metric dimension.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Open => "open",
            NoticeKind::Escalation => "escalation",
            NoticeKind::Resolved => "resolved",
        }
    }

    /// `open` or `resolved`: the incident's state after this notice.
    pub fn state(self) -> &'static str {
        match self {
            NoticeKind::Open | NoticeKind::Escalation => "open",
            NoticeKind::Resolved => "resolved",
        }
    }
}

/// How an incident ended, as the detector saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// A newer session of the group was issued at this time: the workload got fresh credentials.
    NewerSession {
        /// The newer session's issue time.
        issued_at: Epoch,
    },
    /// No failure for the cool-down after the last one.
    Quiet {
        /// The incident's last failure.
        last_failure: Epoch,
        /// The cool-down, in seconds.
        cooldown: i64,
    },
}

/// A notice about one incident.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentNotice {
    /// Page, escalation or end.
    pub kind: NoticeKind,
    /// The severity it is sent at (the paging severity; for an end, the highest one paged).
    pub severity: Severity,
    /// The incident.
    pub incident: IncidentId,
    /// The group as judged when the notice was decided.
    pub finding: Finding,
    /// Made by a drill, and said so loudly.
    pub drill: bool,
    /// How it ended: set on a [`NoticeKind::Resolved`] notice, `None` on the others.
    pub resolution: Option<Resolution>,
    /// The fleet's tally when the incident is a workload's ([`crate::fleet`]), `None` for a group's.
    pub fleet: Option<FleetTally>,
}

/// The scheduled digest of a state-table report covering `since..until`.
#[derive(Clone, Debug, PartialEq)]
pub struct DigestNotice {
    /// The report.
    pub report: Report,
    /// Start of the window.
    pub since: Epoch,
    /// End of the window (when it was made).
    pub until: Epoch,
}

/// A near miss paged at `low` (docs/rules.md, "Near misses"): sent by the scheduled trail scan, once per
/// session, only when the stack turns it on (they never page by default).
#[derive(Clone, Debug, PartialEq)]
pub struct NearMissNotice {
    /// The session's near miss.
    pub near_miss: crate::nearmiss::SessionNearMiss,
}

/// One thing to publish.
// Notices are a few per invocation and short-lived; a box would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    /// About an incident.
    Incident(IncidentNotice),
    /// A digest.
    Digest(DigestNotice),
    /// A near miss's page.
    NearMiss(NearMissNotice),
}

impl Notice {
    /// The notice's stable id: the same for every retry of the same notice, different for any other, so
    /// that a subscriber can drop a repeat. Printable ASCII, at most 600 characters.
    pub fn alert_id(&self) -> String {
        match self {
            Notice::Incident(n) => {
                printable(&format!("{}#{}#{}", n.incident, n.kind.as_str(), n.severity), 600)
            }
            Notice::Digest(d) => format!("digest@{}", d.until),
            Notice::NearMiss(n) => printable(
                &format!("near-miss#{}", n.near_miss.occurrence.access_key_id),
                600,
            ),
        }
    }

    /// The incident notice, if it is one.
    pub fn incident(&self) -> Option<&IncidentNotice> {
        match self {
            Notice::Incident(n) => Some(n),
            Notice::Digest(_) | Notice::NearMiss(_) => None,
        }
    }
}

/// Printable ASCII only (anything else becomes `?`), at most `max` bytes, a cut marked with `...`.
pub fn printable(s: &str, max: usize) -> String {
    let mapped: String = s
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    if mapped.len() <= max {
        mapped
    } else {
        format!("{}...", &mapped[..max.saturating_sub(3)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::example_finding;

    fn notice(kind: NoticeKind, severity: Severity, opened_at: Epoch) -> Notice {
        Notice::Incident(IncidentNotice {
            kind,
            severity,
            incident: IncidentId {
                group: "123456789012|etl|job🦀".into(),
                opened_at,
            },
            finding: example_finding(),
            drill: false,
            resolution: None,
            fleet: None,
        })
    }

    #[test]
    fn alert_ids_are_stable_per_notice_and_differ_between_notices() {
        let a = notice(NoticeKind::Open, Severity::High, 100);
        assert_eq!(a.alert_id(), a.clone().alert_id());
        assert_eq!(a.alert_id(), "123456789012|etl|job?@100#open#high");
        for other in [
            notice(NoticeKind::Escalation, Severity::High, 100),
            notice(NoticeKind::Open, Severity::Critical, 100),
            notice(NoticeKind::Open, Severity::High, 101),
        ] {
            assert_ne!(a.alert_id(), other.alert_id());
        }
    }

    #[test]
    fn printable_keeps_ascii_and_caps_the_length() {
        assert_eq!(printable("a\nb", 10), "a?b");
        assert_eq!(printable(&"x".repeat(700), 600).len(), 600);
        assert!(printable(&"x".repeat(700), 600).ends_with("..."));
    }
}
