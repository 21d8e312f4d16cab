//! One group in full, for `tokenwatch explain`: the timeline of its session, the verdict and what it rests
//! on (which record gave the issue time, which gave the lease, which rule decided), the whole fix, every
//! field, and the CloudTrail console link. Values from events are cleaned of control characters; lines
//! are wrapped to the terminal's width.

use std::fmt::Write as _;

use tokenwatch_core::assess::{EDGE, REFRESH_WINDOW};
use tokenwatch_core::finding::{Finding, IssuedAtFrom};
use tokenwatch_core::model::{LeaseSource, Verdict};
use tokenwatch_core::time::{Epoch, format_time};

use crate::report::{Group, STILL_FAILING, duration};
use crate::sns::{clean, console_link};
use crate::table::wrap;

/// How to write it.
#[derive(Clone, Debug)]
pub struct Explain<'a> {
    /// When the explanation is made: what "still failing" is measured against.
    pub now: Epoch,
    /// Region for console links.
    pub region: &'a str,
    /// Line width.
    pub width: usize,
}

/// `finding` in full.
pub fn explain(f: &Finding, how: &Explain<'_>) -> String {
    let g = Group::of(f);
    let width = how.width.max(40);
    let mut out = String::new();
    // A paragraph: `lead` before its first line, as many spaces before the others.
    let para = |out: &mut String, lead: &str, text: &str| {
        let hang = " ".repeat(lead.chars().count());
        for (i, line) in wrap(text, width.saturating_sub(hang.len()).max(20))
            .iter()
            .enumerate()
        {
            let _ = writeln!(out, "{}{line}", if i == 0 { lead } else { &hang });
        }
    };
    let _ = writeln!(out, "{} — {}, {}", clean(&g.label(), 300), g.verdict, g.severity);
    para(&mut out, "", crate::sns::headline(g.verdict));

    out.push_str("\nTimeline (UTC)\n");
    let mut timeline: Vec<(Epoch, String)> = Vec::new();
    if let Some(issued) = f.issued_at() {
        let from = match (f.provenance.issued_at_from, &f.provenance.issuing_call) {
            (Some(IssuedAtFrom::IssuingCall), Some(call)) => format!("{} call", call.call),
            _ => "creationDate of the failing record".to_owned(),
        };
        timeline.push((issued, format!("session issued ({from})")));
        if let Some(lease) = f.lease_seconds() {
            timeline.push((
                issued + lease as i64,
                format!("lease ends ({} after issue)", duration(lease as i64)),
            ));
        }
    }
    if let Some(call) = &f.provenance.issuing_call
        && Some(call.at) != f.issued_at()
    {
        timeline.push((call.at, format!("{} call that issued the failing key", call.call)));
    }
    let age = f
        .assessment
        .age_at_first_failure
        .map(|a| format!(", {} after issue", duration(a)))
        .unwrap_or_default();
    timeline.push((f.first_failure, format!("first failure{age}")));
    let still = (0..STILL_FAILING).contains(&(how.now - f.last_failure));
    if f.last_failure != f.first_failure || f.failures > 1 {
        timeline.push((
            f.last_failure,
            format!(
                "last failure ({} in all{})",
                f.failures,
                if still { "; still failing" } else { "" }
            ),
        ));
    }
    timeline.sort_by_key(|(t, _)| *t);
    for (t, what) in &timeline {
        para(&mut out, "  ", &format!("{}  {what}", format_time(*t)));
    }
    if !still {
        para(
            &mut out,
            "  ",
            &format!(
                "no failure in the last {} before {}",
                duration(STILL_FAILING),
                format_time(how.now)
            ),
        );
    }

    out.push_str("\nFix\n");
    para(&mut out, "  ", &f.remediation.to_string());

    out.push_str("\nWhat the verdict rests on\n");
    for line in grounds(f) {
        para(&mut out, "  - ", &line);
    }

    out.push_str("\nFields\n");
    let rows: Vec<(&str, String)> = vec![
        ("account", g.account.clone().unwrap_or_else(|| "unknown".into())),
        (
            "principal",
            g.principal.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("session", g.session.clone().unwrap_or_else(|| "none".into())),
        ("access keys", list(&g.access_key_ids)),
        (
            "failures",
            format!("{} from {} to {}", g.failures, g.first_failure, g.last_failure),
        ),
        (
            "issued at",
            g.issued_at.clone().unwrap_or_else(|| "unknown".into()),
        ),
        (
            "lease",
            match (g.lease_seconds, g.lease_source) {
                (Some(l), Some(s)) => format!("{} ({l} s, {s})", duration(l as i64)),
                _ => "unknown".into(),
            },
        ),
        (
            "age at first failure",
            g.age_at_first_failure_seconds
                .map(|a| format!("{} ({a} s)", duration(a)))
                .unwrap_or_else(|| "unknown".into()),
        ),
        ("verdict", g.verdict.to_string()),
        (
            "severity",
            format!("{} (pages at {})", g.severity, f.assessment.paging_severity),
        ),
        ("credential source", g.credential_source.to_string()),
        (
            "client",
            g.client
                .map(|c| c.to_string())
                .unwrap_or_else(|| "unknown".into()),
        ),
        (
            "error codes",
            g.error_codes
                .iter()
                .map(|(c, n)| format!("{c} × {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "calls",
            g.event_names
                .iter()
                .map(|(c, n)| format!("{c} × {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("source IPs", list(&g.source_ips)),
    ];
    for (k, v) in rows {
        para(&mut out, "  ", &format!("{k}: {}", clean(&v, 4000)));
    }
    if let Some(i) = &g.incident {
        para(&mut out, "  ", &format!("incident: {}", i.describe()));
    }

    let links: Vec<String> = g
        .access_key_ids
        .iter()
        .filter_map(|k| console_link(how.region, k))
        .collect();
    if !links.is_empty() {
        out.push_str("\nCloudTrail (events of the failing keys)\n");
        for l in links {
            // A URL is not wrapped: a terminal makes it clickable only whole.
            let _ = writeln!(out, "  {l}");
        }
    }
    out
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// The records and rules the verdict rests on, one sentence each.
pub fn grounds(f: &Finding) -> Vec<String> {
    let mut out = Vec::new();
    let key = f
        .access_key_ids
        .first()
        .map(String::as_str)
        .unwrap_or("its access key");
    match (f.provenance.issued_at_from, f.issued_at()) {
        (Some(IssuedAtFrom::CreationDate), Some(t)) => out.push(format!(
            "issue time {}: the userIdentity.sessionContext.attributes.creationDate of the first failing record",
            format_time(t)
        )),
        (Some(IssuedAtFrom::IssuingCall), Some(t)) => out.push(format!(
            "issue time {}: the eventTime of the issuing call found by the failing access key",
            format_time(t)
        )),
        _ => out.push(
            "issue time unknown: the failing records carry no creationDate and no issuing call for their \
             access key was read"
                .to_owned(),
        ),
    }
    match &f.provenance.issuing_call {
        Some(call) => out.push(format!(
            "issuing call: {} at {} that returned {}{}{}",
            call.call,
            format_time(call.at),
            clean(&call.access_key_id, 128),
            call.duration_seconds
                .map(|d| format!(", durationSeconds {d}"))
                .unwrap_or_default(),
            call.expiration
                .map(|e| format!(", expiration {}", format_time(e)))
                .unwrap_or_default(),
        )),
        None => out.push(format!(
            "issuing call: not among the records read (none returned {}); include the trail files or the \
             region where the session was issued",
            clean(key, 128)
        )),
    }
    if let Some(lease) = f.assessment.lease {
        let why = match lease.source {
            LeaseSource::DurationSeconds => "the issuing call's durationSeconds".to_owned(),
            LeaseSource::Expiration => "the issuing call's expiration − its eventTime".to_owned(),
            LeaseSource::RoleChainingCap => "role chaining, which AWS limits to one hour".to_owned(),
            other => format!(
                "the documented default for a {} session ({other}): no issuing call gave one",
                f.credential_source()
            ),
        };
        out.push(format!("lease {}: {why}", duration(lease.seconds as i64)));
    }
    out.push(rule(f));
    out
}

/// Which rule of docs/rules.md decided, with this group's numbers.
fn rule(f: &Finding) -> String {
    let lease = f.lease_seconds().map(|l| l as i64);
    let age = f.assessment.age_at_first_failure;
    match (f.verdict(), age, lease) {
        (Verdict::WebIdentityTokenExpired, _, _) => {
            "verdict web-identity-token-expired: every failure is an AssumeRoleWithWebIdentity or \
             AssumeRoleWithSAML call rejected for its presented token"
                .to_owned()
        }
        (Verdict::Unknown, _, _) => {
            "verdict unknown: without an issue time the age cannot be measured".to_owned()
        }
        (v, Some(age), Some(lease)) => {
            let grace = 1800.max(lease / 10);
            let window = format!(
                "lease − {} … lease + {} = {} … {}",
                duration(EDGE),
                duration(grace),
                duration(lease - EDGE),
                duration(lease + grace)
            );
            match v {
                Verdict::StaleCache => format!(
                    "verdict stale-cache: the first failure came {} after issue, inside the lease-end window \
                     ({window}), and no newer session recovered it within {} of the first failure",
                    duration(age),
                    duration(REFRESH_WINDOW)
                ),
                Verdict::RefreshRace => format!(
                    "verdict refresh-race: every failure lies within {} after the lease end and a newer \
                     session was issued within {} of the first failure",
                    duration(EDGE),
                    duration(REFRESH_WINDOW)
                ),
                Verdict::PausedProcess => format!(
                    "verdict paused-process: the first failure came {} after issue, later than the \
                     lease-end window ({window})",
                    duration(age)
                ),
                Verdict::ClockSkew => format!(
                    "verdict clock-skew: the first failure came {} after issue, while the session was \
                     still valid (before lease − {})",
                    duration(age),
                    duration(EDGE)
                ),
                other => format!("verdict {other}"),
            }
        }
        (v, _, _) => format!("verdict {v}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenwatch_core::finding::example_finding;

    fn how() -> Explain<'static> {
        Explain {
            now: example_finding().last_failure + 86_400,
            region: "us-east-1",
            width: 100,
        }
    }

    #[test]
    fn a_group_in_full_names_the_records_its_verdict_rests_on() {
        let wrapped = explain(&example_finding(), &how());
        for line in wrapped.lines().filter(|l| !l.contains("https://")) {
            assert!(crate::table::width(line) <= 100, "{line}");
        }
        assert!(wrapped.contains("\n  - issue time"), "{wrapped}");
        let text = flat(&wrapped);
        assert!(
            wrapped.starts_with("etl-pipeline-role/nightly-etl — stale-cache, high\n"),
            "{wrapped}"
        );
        assert!(
            text.contains(
                "issue time 2026-11-02T08:00:00Z: the userIdentity.sessionContext.attributes.creationDate"
            ),
            "{text}"
        );
        assert!(
            text.contains("issuing call: AssumeRole at 2026-11-02T08:00:00Z that returned ASIAETLNIGHT1EXAMPLE, expiration 2026-11-02T09:00:00Z"),
            "{text}"
        );
        assert!(
            text.contains("lease 1h: the issuing call's expiration − its eventTime"),
            "{text}"
        );
        assert!(
            text.contains("verdict stale-cache: the first failure came 1h00m14s after issue"),
            "{text}"
        );
        assert!(
            text.contains("https://us-east-1.console.aws.amazon.com/cloudtrailv2/home?region=us-east-1#/events?AccessKeyId=ASIAETLNIGHT1EXAMPLE"),
            "{text}"
        );
        // The timeline, in order.
        let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s} missing:\n{text}"));
        assert!(at("session issued") < at("lease ends") && at("lease ends") < at("first failure"));
        assert!(at("first failure") < at("last failure (6 in all)"));
        // The whole fix, not only its first clause.
        assert!(
            text.contains("Let botocore refresh the role: configure `role_arn`"),
            "{text}"
        );
        assert!(text.contains("Never pass aws_session_token="), "{text}");
    }

    /// The words of `text` with single spaces: what a wrapped paragraph says.
    fn flat(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn an_unknown_issue_time_says_what_is_missing() {
        let mut f = example_finding();
        f.assessment.issued_at = None;
        f.assessment.age_at_first_failure = None;
        f.assessment.verdict = Verdict::Unknown;
        f.provenance = Default::default();
        let text = flat(&explain(&f, &how()));
        assert!(text.contains("issue time unknown"), "{text}");
        assert!(
            text.contains("issuing call: not among the records read (none returned ASIAETLNIGHT1EXAMPLE)"),
            "{text}"
        );
        assert!(text.contains("verdict unknown: without an issue time"), "{text}");
    }

    #[test]
    fn a_recent_last_failure_is_still_failing() {
        let f = example_finding();
        let text = flat(&explain(
            &f,
            &Explain {
                now: f.last_failure + 60,
                ..how()
            },
        ));
        assert!(text.contains("last failure (6 in all; still failing)"), "{text}");
    }
}
