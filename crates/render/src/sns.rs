//! Notices as SNS publishes them: a subject, one message per protocol (`MessageStructure=json`), and the
//! message attributes subscription filter policies route on (docs/contract.md, "Alerts").
//!
//! Every value that comes from an event (principal, session, addresses, call names) is attacker-
//! controlled: it is stripped of control characters and length-capped before it goes anywhere, and only
//! serialized by serde (JSON) or placed in plain text lines, so it can never break a message's structure.
//! No secret reaches an alert: the engine never reads session tokens or secret keys at all.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;
use tokenwatch_core::fleet::FleetTally;
use tokenwatch_core::model::{Severity, Verdict};
use tokenwatch_core::notice::{
    DigestNotice, IncidentNotice, NearMissNotice, Notice, NoticeKind, Resolution, printable,
};
use tokenwatch_core::stats::principal_key;
use tokenwatch_core::time::format_time;

use crate::report::{Document, Group, WorkloadEntry, duration};

/// The alert document's schema version (the `schema` field of the JSON message).
pub const SCHEMA: u32 = 1;
/// SNS allows 100 characters of subject.
pub const MAX_SUBJECT: usize = 100;
const MAX_SMS: usize = 140;

/// How the human-readable messages are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AlertFormat {
    /// Plain text for e-mail and `default`, JSON for machines.
    #[default]
    Standard,
    /// `default` and `https` carry an AWS Chatbot custom notification (Slack, Teams, Chime).
    Chatbot,
}

/// How a stack's alerts are written: set once per stack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Style {
    /// Region for console links.
    pub region: String,
    /// Message format.
    pub format: AlertFormat,
    /// The runbook's address, `{verdict}` standing for the verdict (`https://wiki/tokenwatch/{verdict}`);
    /// `None`: pages carry no runbook link.
    pub runbook: Option<String>,
}

impl Style {
    /// The runbook link for `verdict`, if the stack has a runbook.
    pub fn runbook_for(&self, verdict: tokenwatch_core::Verdict) -> Option<String> {
        self.runbook
            .as_deref()
            .map(|t| clean(&t.replace("{verdict}", verdict.as_str()), 1000))
    }
}

/// One SNS publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Unique per incident, kind and severity: a retry of the same alert has the same id.
    pub alert_id: String,
    /// ≤ 100 printable ASCII characters.
    pub subject: String,
    /// The `MessageStructure=json` message: `default`, `email`, `sms`, `sqs`, `lambda`, `https`.
    pub message: String,
    /// `MessageAttributes` (all of type String).
    pub attributes: BTreeMap<String, String>,
}

/// [`clean`] for a text of several lines: keeps line breaks, strips every other unsafe character.
pub fn clean_lines(s: &str, max: usize) -> String {
    let kept: Vec<char> = s
        .chars()
        .filter(|c| *c == '\n' || !crate::text::is_unsafe(*c))
        .take(max + 1)
        .collect();
    if kept.len() <= max {
        kept.into_iter().collect()
    } else {
        kept[..max.saturating_sub(1)].iter().chain(['…'].iter()).collect()
    }
}

/// Strips unsafe characters ([`crate::text::is_unsafe`]: controls, bidi overrides, zero-width characters)
/// and caps the length (in characters), marking a cut with `…`.
pub fn clean(s: &str, max: usize) -> String {
    let kept: Vec<char> = s
        .chars()
        .filter(|c| !crate::text::is_unsafe(*c))
        .take(max + 1)
        .collect();
    if kept.len() <= max {
        kept.into_iter().collect()
    } else {
        kept[..max.saturating_sub(1)].iter().chain(['…'].iter()).collect()
    }
}

use printable as ascii;

/// The group with every event-supplied value cleaned and capped.
fn cleaned(group: &Group) -> Group {
    let mut g = group.clone();
    let c = |o: &Option<String>, max| o.as_deref().map(|s| clean(s, max));
    g.account = c(&group.account, 32);
    g.principal = c(&group.principal, 512);
    g.session = c(&group.session, 128);
    g.access_key_ids = group.access_key_ids.iter().map(|k| clean(k, 128)).collect();
    g.source_ips = group.source_ips.iter().map(|ip| clean(ip, 128)).collect();
    g.requested_sessions = group.requested_sessions.iter().map(|s| clean(s, 128)).collect();
    g.error_codes = group
        .error_codes
        .iter()
        .map(|(k, v)| (clean(k, 128), *v))
        .collect();
    g.event_names = group
        .event_names
        .iter()
        .map(|(k, v)| (clean(k, 128), *v))
        .collect();
    g
}

/// The CloudTrail console, filtered to a key's events. Keys that are not key-shaped get no link.
pub fn console_link(region: &str, key: &str) -> Option<String> {
    let shaped =
        (16..=128).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (shaped && region_ok).then(|| {
        format!("https://{region}.console.aws.amazon.com/cloudtrailv2/home?region={region}#/events?AccessKeyId={key}")
    })
}

/// Renders a notice as SNS publishes it.
pub fn render(notice: &Notice, style: &Style) -> Message {
    let alert_id = notice.alert_id();
    match notice {
        Notice::Incident(n) => render_incident(n, alert_id, style),
        Notice::Digest(d) => {
            let made = crate::report::Made {
                at: d.until,
                window: tokenwatch_core::Window {
                    since: Some(d.since),
                    until: Some(d.until),
                },
            };
            render_digest(&Document::of(&d.report, made), d, alert_id, style)
        }
        Notice::NearMiss(n) => render_near_miss(n, alert_id, style),
    }
}

fn render_incident(n: &IncidentNotice, alert_id: String, style: &Style) -> Message {
    let mut group = Group::of(&n.finding);
    group.severity = n.severity;
    if let Some(fleet) = n.fleet.as_ref().filter(|f| f.sessions > 1) {
        as_workload(&mut group, fleet);
    }
    let page = Page {
        incident_id: n.incident.to_string(),
        group: n.incident.group.clone(),
        kind: n.kind,
        drill: n.drill,
        resolution: n.resolution,
        sessions: n.fleet.as_ref().map(|f| f.sessions),
    };
    render_group(&group, &page, alert_id, style)
}

/// A near miss's page (only when the stack makes near misses page): `low`, verdict `near-miss`, kind
/// `open` so that a pager subscription filtering on kind or severity treats it as the page it was asked
/// for. Nothing failed, and the text says so first.
fn render_near_miss(n: &NearMissNotice, alert_id: String, ctx: &Style) -> Message {
    let m = &n.near_miss;
    let o = &m.occurrence;
    let principal = m
        .principal
        .as_deref()
        .map(|p| p.rsplit(['/', ':']).next().unwrap_or(p))
        .unwrap_or("(unknown principal)");
    let label = match &m.session {
        Some(s) => format!("{principal}/{s}"),
        None => principal.to_owned(),
    };
    let account = m
        .account
        .as_deref()
        .map(|a| format!("{} ", ascii(a, 32)))
        .unwrap_or_default();
    let fixed = format!("[tokenwatch] LOW near-miss {account}");
    let tail = format!(" ({} s before expiry)", o.near_miss.seconds_before_expiry);
    let room = MAX_SUBJECT.saturating_sub(fixed.len() + tail.len());
    let subject = ascii(&format!("{fixed}{}{tail}", ascii(&label, room)), MAX_SUBJECT);
    let how = o.near_miss.describe();
    let fix =
        tokenwatch_core::remediation::remediation(Verdict::NearMiss, m.credential_source, Some(m.client))
            .fix
            .to_string();
    let link = console_link(&ctx.region, &o.access_key_id);
    let runbook = ctx.runbook_for(Verdict::NearMiss);
    let mut text = format!("{subject}\n\n");
    let _ = writeln!(
        text,
        "Nothing failed yet: {} was {how}. Its credentials were copied out of a refreshing provider; a run a \
         little longer fails at the lease boundary.",
        clean(&label, 160)
    );
    let _ = writeln!(text, "Fix: {}", clean(&fix, 300));
    let _ = writeln!(
        text,
        "\nAccount {}, access key {}, client {}, credential source {}.",
        clean(m.account.as_deref().unwrap_or("unknown"), 32),
        clean(&o.access_key_id, 128),
        m.client,
        m.credential_source.as_str()
    );
    let _ = writeln!(
        text,
        "Issued {}, last used {}, lease end {} ({} s, {}).",
        format_time(o.issued_at),
        format_time(o.last_use),
        format_time(o.lease_end),
        m.lease.seconds,
        m.lease.source.as_str()
    );
    if let Some(link) = &link {
        let _ = writeln!(text, "CloudTrail: {link}");
    }
    if let Some(runbook) = &runbook {
        let _ = writeln!(text, "Runbook: {runbook}");
    }
    let _ = writeln!(text, "Alert id: {alert_id}");
    let machine = json!({
        "schema": SCHEMA, "alert_id": alert_id, "kind": "open", "state": "open", "drill": false,
        "verdict": Verdict::NearMiss, "severity": Severity::Low,
        "account": m.account, "principal": m.principal, "session": m.session,
        "client": m.client, "credential_source": m.credential_source,
        "access_key_id": o.access_key_id, "issued_at": format_time(o.issued_at),
        "last_use": format_time(o.last_use), "lease_end": format_time(o.lease_end),
        "lease_seconds": m.lease.seconds, "lease_source": m.lease.source,
        "seconds_before_expiry": o.near_miss.seconds_before_expiry, "how_close": how,
        "remediation": fix,
        "links": { "cloudtrail": link.iter().collect::<Vec<_>>(), "runbook": runbook },
    })
    .to_string();
    let human = match ctx.format {
        AlertFormat::Standard => text.clone(),
        AlertFormat::Chatbot => json!({
            "version": "1.0",
            "source": "custom",
            "id": alert_id,
            "content": { "textType": "client-markdown", "title": subject, "description": md_lines(&clean_lines(text.split_once('\n').map_or("", |(_, rest)| rest).trim_start(), 3500)) },
            "metadata": { "summary": subject, "eventType": "near-miss" },
        })
        .to_string(),
    };
    let https = if ctx.format == AlertFormat::Chatbot {
        human.clone()
    } else {
        machine.clone()
    };
    let message = json!({
        "default": human,
        "email": text,
        "sms": clean(&subject, MAX_SMS),
        "sqs": machine,
        "lambda": machine,
        "https": https,
    })
    .to_string();
    let attributes = BTreeMap::from([
        ("alert_id".to_owned(), alert_id.clone()),
        ("kind".to_owned(), "open".to_owned()),
        ("severity".to_owned(), Severity::Low.as_str().to_owned()),
        ("verdict".to_owned(), Verdict::NearMiss.as_str().to_owned()),
        (
            "account".to_owned(),
            ascii(m.account.as_deref().unwrap_or("unknown"), 256),
        ),
        (
            "principal".to_owned(),
            ascii(m.principal.as_deref().unwrap_or("unknown"), 256),
        ),
        (
            "credential_source".to_owned(),
            m.credential_source.as_str().to_owned(),
        ),
        ("drill".to_owned(), "false".to_owned()),
    ]);
    Message {
        alert_id,
        subject,
        message,
        attributes,
    }
}

/// A fleet's page names its workload, counts all its sessions and dates it from the workload's first
/// failure, not the member's it was sent for; a fleet of one session is shown as that session.
fn as_workload(group: &mut Group, fleet: &FleetTally) {
    group.session = Some(fleet.pattern.clone());
    group.failures = group.failures.max(fleet.failures);
    if fleet.since < group.first {
        group.first = fleet.since;
        group.first_failure = format_time(fleet.since);
    }
}

/// What an incident notice says beside its group.
struct Page {
    incident_id: String,
    /// The group's id: a synthetic drill's page is worded as one.
    group: String,
    kind: NoticeKind,
    drill: bool,
    resolution: Option<Resolution>,
    /// A fleet's page: how many sessions its incident counts.
    sessions: Option<u64>,
}

/// Renders the alert for `group` (whose `severity` is the one it is sent at).
fn render_group(group: &Group, page: &Page, alert_id: String, ctx: &Style) -> Message {
    let (incident_id, kind, drill) = (page.incident_id.as_str(), page.kind, page.drill);
    let g = cleaned(group);
    let label = g.label();
    let links: Vec<String> = g
        .access_key_ids
        .iter()
        .filter_map(|k| console_link(&ctx.region, k))
        .collect();

    let tag = if drill {
        "[tokenwatch DRILL]"
    } else {
        "[tokenwatch]"
    };
    let head = match kind {
        NoticeKind::Resolved => "RESOLVED".to_owned(),
        NoticeKind::Escalation => format!("ESCALATED {}", g.severity.as_str().to_uppercase()),
        NoticeKind::Open => g.severity.as_str().to_uppercase(),
    };
    let tail = match page.sessions {
        Some(n) if n > 1 => format!(" ({n} sessions, {} failures)", g.failures),
        _ => format!(" ({} failures)", g.failures),
    };
    let account = g
        .account
        .as_deref()
        .map(|a| format!("{} ", ascii(a, 32)))
        .unwrap_or_default();
    let fixed = format!("{tag} {head} {} {account}", g.verdict);
    let room = MAX_SUBJECT.saturating_sub(fixed.len() + tail.len());
    let subject = ascii(&format!("{fixed}{}{tail}", ascii(&label, room)), MAX_SUBJECT);
    let runbook = ctx.runbook_for(g.verdict);

    let mut doc = serde_json::to_value(&g).unwrap_or_default();
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("schema".into(), json!(SCHEMA));
        obj.insert("alert_id".into(), json!(alert_id));
        obj.insert("incident_id".into(), json!(clean(incident_id, 600)));
        obj.insert("state".into(), json!(kind.state()));
        obj.insert("kind".into(), json!(kind.as_str()));
        obj.insert("drill".into(), json!(drill));
        if let Some(n) = page.sessions {
            obj.insert("workload_sessions".into(), json!(n));
        }
        obj.insert("links".into(), json!({ "cloudtrail": links, "runbook": runbook }));
        obj.insert("resolution".into(), resolution_json(page.resolution));
    }
    let machine = doc.to_string();
    let text = text_message(&g, page, &subject, &links, runbook.as_deref(), &alert_id);
    let sms = clean(&subject, MAX_SMS);
    let human = match ctx.format {
        AlertFormat::Standard => text.clone(),
        AlertFormat::Chatbot => chatbot(&g, kind, &subject, &text, incident_id),
    };
    let https = if ctx.format == AlertFormat::Chatbot {
        human.clone()
    } else {
        machine.clone()
    };
    let message = json!({
        "default": human,
        "email": text,
        "sms": sms,
        "sqs": machine,
        "lambda": machine,
        "https": https,
    })
    .to_string();

    let attributes = BTreeMap::from([
        ("alert_id".to_owned(), alert_id.clone()),
        ("kind".to_owned(), kind.as_str().to_owned()),
        ("severity".to_owned(), g.severity.as_str().to_owned()),
        ("verdict".to_owned(), g.verdict.as_str().to_owned()),
        (
            "account".to_owned(),
            ascii(g.account.as_deref().unwrap_or("unknown"), 256),
        ),
        (
            "principal".to_owned(),
            ascii(g.principal.as_deref().unwrap_or("unknown"), 256),
        ),
        (
            "credential_source".to_owned(),
            g.credential_source.as_str().to_owned(),
        ),
        ("drill".to_owned(), drill.to_string()),
    ]);
    Message {
        alert_id,
        subject,
        message,
        attributes,
    }
}

/// Groups listed in a digest: the most severe first; the rest are counted.
pub const MAX_DIGEST_GROUPS: usize = 25;
/// SNS takes 256 KiB per message; a digest stays well below it whatever the groups hold.
const MAX_DIGEST_BYTES: usize = 200 * 1024;

/// The scheduled digest of a state-table report covering `since..now`: a summary publish with the
/// attribute `kind=digest` and no `severity`, so that a pager subscription filtering on severity or on
/// `kind` never receives it and a chat channel can take only digests. `sqs`/`lambda`/`https` carry a
/// JSON document (`kind`, `schema`, the window, totals and a short entry per listed group).
fn render_digest(report: &Document, d: &DigestNotice, alert_id: String, ctx: &Style) -> Message {
    let (since, now) = (d.since, d.until);
    let open = report
        .groups
        .iter()
        .filter(|g| g.incident.as_ref().is_some_and(|i| i.is_open()))
        .count();
    let window = duration(now - since);
    let subject = ascii(
        &format!(
            "[tokenwatch] digest {window}: {open} open, {} groups, {} failures",
            report.groups.len(),
            report.failures
        ),
        MAX_SUBJECT,
    );
    let mut listed = digest_items(report).len().min(MAX_DIGEST_GROUPS);
    loop {
        let window = Window { since, now, open };
        let message = digest_message(report, listed, &window, ctx, &subject, &alert_id);
        if message.len() <= MAX_DIGEST_BYTES || listed == 0 {
            return Message {
                attributes: BTreeMap::from([
                    ("alert_id".to_owned(), alert_id.clone()),
                    ("kind".to_owned(), "digest".to_owned()),
                    ("drill".to_owned(), "false".to_owned()),
                ]),
                alert_id,
                subject,
                message,
            };
        }
        listed /= 2;
    }
}

/// What a digest lists, most severe first: each group, except that the groups of a workload of several
/// sessions (a fleet) are one item, its most severe group standing for it with the workload's totals.
fn digest_items(report: &Document) -> Vec<(&Group, Option<&WorkloadEntry>)> {
    let key = |account: &Option<String>, principal: &Option<String>, pattern: &Option<String>| {
        (
            account.clone(),
            principal.as_deref().map(|p| principal_key(p).to_owned()),
            pattern.clone(),
        )
    };
    let fleets: BTreeMap<_, &WorkloadEntry> = report
        .workloads
        .iter()
        .filter(|w| w.groups > 1)
        .map(|w| (key(&w.account, &w.principal, &w.session_pattern), w))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    report
        .groups
        .iter()
        .filter_map(|g| {
            let k = key(&g.account, &g.principal, &g.workload);
            match fleets.get(&k) {
                Some(w) => seen.insert(k).then_some((g, Some(*w))),
                None => Some((g, None)),
            }
        })
        .collect()
}

/// The digest's near misses (docs/rules.md, "Near misses"): a line per workload, after the failures, with
/// how close its latest session came and the fix; never in the subject, which pagers filter on.
fn near_miss_lines(report: &Document, text: &mut String) {
    let workloads = &report.near_misses.workloads;
    if workloads.is_empty() {
        return;
    }
    let _ = writeln!(
        text,
        "\nNear misses, not failures ({}): sessions used after their SDK would have refreshed them.",
        crate::nearmiss::summary(&report.near_misses)
    );
    for w in workloads.iter().take(MAX_DIGEST_GROUPS) {
        let latest = near_miss_group_of(report, w);
        let principal = w
            .principal
            .as_deref()
            .map(|p| p.rsplit(['/', ':']).next().unwrap_or(p))
            .unwrap_or("(unknown principal)");
        let label = match &w.session_pattern {
            Some(pattern) => format!("{principal}/{pattern}"),
            None => principal.to_owned(),
        };
        let label = match &w.account {
            Some(account) => format!("{account} {label}"),
            None => label,
        };
        let sessions = if w.groups == 1 {
            "1 session".to_owned()
        } else {
            format!("{} sessions", w.groups)
        };
        let _ = write!(
            text,
            "\nLOW near-miss {}: {sessions}, {} near miss{}, last {}",
            clean(&label, 160),
            w.near_misses,
            if w.near_misses == 1 { "" } else { "es" },
            w.last_near_miss,
        );
        match latest {
            Some(g) => {
                let _ = writeln!(
                    text,
                    "; {}\n  Fix: {}",
                    clean(&g.how_close, 200),
                    clean(&g.fix, 300)
                );
            }
            None => text.push('\n'),
        }
    }
    if workloads.len() > MAX_DIGEST_GROUPS {
        let _ = writeln!(
            text,
            "\n…and {} more near-miss workloads: `tokenwatch report` lists them all.",
            workloads.len() - MAX_DIGEST_GROUPS
        );
    }
}

/// The latest near-miss group of workload `w`, which describes it.
fn near_miss_group_of<'a>(
    report: &'a Document,
    w: &crate::nearmiss::NearMissWorkloadEntry,
) -> Option<&'a crate::nearmiss::NearMissEntry> {
    let principal = |p: &Option<String>| p.as_deref().map(|p| principal_key(p).to_owned());
    report
        .near_misses
        .groups
        .iter()
        .filter(|g| {
            g.account == w.account
                && principal(&g.principal) == principal(&w.principal)
                && g.workload == w.session_pattern
        })
        .max_by(|a, b| a.last_use.cmp(&b.last_use))
}

/// The digest document's near-miss workloads.
fn near_miss_entries(report: &Document) -> serde_json::Value {
    report
        .near_misses
        .workloads
        .iter()
        .take(MAX_DIGEST_GROUPS)
        .map(|w| {
            let latest = near_miss_group_of(report, w);
            json!({
                "account": w.account, "principal": w.principal, "session_pattern": w.session_pattern,
                "sessions": w.groups, "near_misses": w.near_misses,
                "first_near_miss": w.first_near_miss, "last_near_miss": w.last_near_miss,
                "closest_seconds_before_expiry": w.closest_seconds_before_expiry,
                "how_close": latest.map(|g| g.how_close.clone()),
                "client": latest.map(|g| g.client),
            })
        })
        .collect()
}

/// What a digest covers.
struct Window {
    since: i64,
    now: i64,
    open: usize,
}

fn digest_message(
    report: &Document,
    listed: usize,
    w: &Window,
    ctx: &Style,
    subject: &str,
    alert_id: &str,
) -> String {
    let (since, now) = (w.since, w.now);
    let items = digest_items(report);
    let groups: Vec<(Group, Option<&WorkloadEntry>)> =
        items.iter().take(listed).map(|(g, w)| (cleaned(g), *w)).collect();
    let mut text = format!("{subject}\n\n");
    let _ = writeln!(
        text,
        "From {} to {}: {} groups with expired-credential failures, {} failures in their current incidents.",
        tokenwatch_core::time::format_time(since),
        tokenwatch_core::time::format_time(now),
        report.groups.len(),
        report.failures
    );
    for (g, workload) in &groups {
        match workload {
            Some(w) => {
                let mut label = g.clone();
                label.session = w.session_pattern.clone();
                let _ = write!(
                    text,
                    "\n{} {} {}: {} sessions, {} failures from {} to {}; the most severe: {}",
                    w.severity.as_str().to_uppercase(),
                    g.verdict,
                    clean(&label.label(), 160),
                    w.groups,
                    w.failures,
                    w.first_failure,
                    w.last_failure,
                    clean(g.session.as_deref().unwrap_or("?"), 128),
                );
            }
            None => {
                let _ = write!(
                    text,
                    "\n{} {} {}: {} failures, age {} of lease",
                    g.severity.as_str().to_uppercase(),
                    g.verdict,
                    clean(&g.label(), 160),
                    g.failures,
                    g.age_against_lease()
                );
            }
        }
        if let Some(i) = &g.incident {
            let _ = write!(text, "; {}", i.describe());
        }
        let _ = writeln!(text, "\n  Fix: {}", clean(&g.fix, 300));
    }
    near_miss_lines(report, &mut text);
    if items.len() > listed {
        let _ = writeln!(
            text,
            "\n…and {} more {}: `tokenwatch report` lists them all.",
            items.len() - listed,
            if items.len() - listed == 1 {
                "group or workload"
            } else {
                "groups or workloads"
            }
        );
    }
    let entries: Vec<serde_json::Value> = groups
        .iter()
        .map(|(g, w)| {
            let mut entry = json!({
                "account": g.account, "principal": g.principal, "session": g.session,
                "verdict": g.verdict, "severity": g.severity, "failures": g.failures,
                "first_failure": g.first_failure, "last_failure": g.last_failure,
                "age_at_first_failure_seconds": g.age_at_first_failure_seconds,
                "lease_seconds": g.lease_seconds, "credential_source": g.credential_source,
                "client": g.client, "incident": g.incident,
                "links": { "cloudtrail": g.access_key_ids.iter().filter_map(|k| console_link(&ctx.region, k)).collect::<Vec<_>>() },
            });
            if let Some(w) = w {
                entry["workload_sessions"] = json!(w.groups);
            }
            entry
        })
        .collect();
    let machine = json!({
        "schema": SCHEMA,
        "kind": "digest",
        "alert_id": alert_id,
        "since": tokenwatch_core::time::format_time(since),
        "until": tokenwatch_core::time::format_time(now),
        "groups_total": report.groups.len(),
        "open_incidents": w.open,
        "failures": report.failures,
        "groups": entries,
    });
    let mut machine = machine;
    if !report.near_misses.is_empty() {
        machine["near_misses"] = near_miss_entries(report);
    }
    let machine = machine.to_string();
    let human = match ctx.format {
        AlertFormat::Standard => text.clone(),
        AlertFormat::Chatbot => json!({
            "version": "1.0",
            "source": "custom",
            "id": alert_id,
            "content": { "textType": "client-markdown", "title": subject, "description": md_lines(&clean_lines(text.split_once('\n').map_or("", |(_, rest)| rest).trim_start(), 3500)) },
            "metadata": { "summary": subject, "eventType": "digest" },
        })
        .to_string(),
    };
    let https = if ctx.format == AlertFormat::Chatbot {
        human.clone()
    } else {
        machine.clone()
    };
    json!({
        "default": human,
        "email": text,
        "sms": clean(subject, MAX_SMS),
        "sqs": machine,
        "lambda": machine,
        "https": https,
    })
    .to_string()
}

/// The readable page: the headline; since when and how much; the fix; then the details and the links.
/// The fix is within the first six lines, so a phone's preview shows it.
fn text_message(
    g: &Group,
    page: &Page,
    subject: &str,
    links: &[String],
    runbook: Option<&str>,
    id: &str,
) -> String {
    let mut t = String::new();
    if page.drill {
        if tokenwatch_core::drill::is_synthetic_group(&page.group) {
            t.push_str("THIS IS A DRILL sent by `tokenwatch drill`: no workload failed. It proves the path from EventBridge to this channel.\n\n");
        } else {
            t.push_str("THIS IS A DRILL run by `tokenwatch drill --real`: a session of the drill role was let expire and used, on purpose; no workload failed. It proves that CloudTrail records the failure and that tokenwatch pages it.\n\n");
        }
    }
    let _ = writeln!(t, "{subject}");
    let sessions = match page.sessions.unwrap_or(g.access_key_ids.len() as u64) {
        0 | 1 => "1 session".to_owned(),
        n => format!("{n} sessions"),
    };
    match page.kind {
        NoticeKind::Resolved => {
            let how = match page.resolution {
                Some(Resolution::NewerSession { issued_at }) => format!(
                    "Resolved: a newer session of the group was issued at {}.",
                    format_time(issued_at)
                ),
                Some(Resolution::Quiet {
                    last_failure,
                    cooldown,
                }) => format!(
                    "Resolved: no failure for {} (the cool-down) after the last one at {}.",
                    duration(cooldown),
                    format_time(last_failure)
                ),
                None => "Resolved: a newer session was issued or the group stayed quiet for the cool-down."
                    .to_owned(),
            };
            let _ = writeln!(t, "{how}");
            let _ = writeln!(
                t,
                "It failed from {} to {}: {} failures, {sessions}.",
                g.first_failure, g.last_failure, g.failures
            );
        }
        NoticeKind::Open | NoticeKind::Escalation => {
            let what = headline(g.verdict);
            if page.kind == NoticeKind::Escalation {
                let _ = writeln!(
                    t,
                    "Escalated: still failing, and worse since it was paged. {what}"
                );
            } else {
                let _ = writeln!(t, "{what}");
            }
            let _ = writeln!(
                t,
                "Since {}: {} failures, {sessions}; still failing (last failure {}).",
                g.first_failure, g.failures, g.last_failure
            );
            let _ = writeln!(t, "\nFix: {}", g.remediation);
        }
    }
    let age = g
        .age_at_first_failure_seconds
        .map(duration)
        .unwrap_or_else(|| "unknown".into());
    let lease = g
        .lease_seconds
        .map(|l| duration(l as i64))
        .unwrap_or_else(|| "unknown".into());
    let mut rows = vec![
        (
            "Principal",
            g.principal.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("Session", g.session.clone().unwrap_or_else(|| "none".into())),
        ("Account", g.account.clone().unwrap_or_else(|| "unknown".into())),
        (
            "Lease and age",
            format!(
                "failed {age} into a {lease} lease ({}); issued {}",
                g.lease_source.map(|s| s.as_str()).unwrap_or("unknown"),
                g.issued_at.as_deref().unwrap_or("at an unknown time")
            ),
        ),
        ("Credential source", g.credential_source.to_string()),
        (
            "Client",
            g.client
                .map(|c| c.to_string())
                .unwrap_or_else(|| "unknown".into()),
        ),
        ("Access keys", g.access_key_ids.join(", ")),
        ("Error codes", counts(&g.error_codes)),
        ("Calls", counts(&g.event_names)),
        ("Source IPs", g.source_ips.join(", ")),
    ];
    if !g.requested_sessions.is_empty() {
        // The caller chose these names (the group is one per role for that reason): listed, never grouped.
        rows.push(("Session names asked for", g.requested_sessions.join(", ")));
    }
    t.push_str("\nDetails\n");
    for (k, v) in rows {
        let _ = writeln!(t, "{k}: {v}");
    }
    if !links.is_empty() || runbook.is_some() {
        t.push_str("\nLinks\n");
    }
    for l in links {
        let _ = writeln!(t, "CloudTrail: {l}");
    }
    if let Some(r) = runbook {
        let _ = writeln!(t, "Runbook: {r}");
    }
    let _ = writeln!(t, "\nAlert id: {id}");
    t
}

/// What a verdict means, in one sentence.
pub fn headline(verdict: tokenwatch_core::Verdict) -> &'static str {
    use tokenwatch_core::Verdict;
    match verdict {
        Verdict::StaleCache => "Credentials were cached past their lease and the workload keeps using them.",
        Verdict::RefreshRace => "A refreshing client renewed its credentials a little late and recovered.",
        Verdict::PausedProcess => "A process slept holding a session and woke after it expired.",
        Verdict::ClockSkew => {
            "Calls were rejected while the session was still valid: a clock or a presigned URL is off."
        }
        Verdict::WebIdentityTokenExpired => "An expired OIDC token or SAML assertion was presented to STS.",
        Verdict::Unknown => "Calls failed with expired credentials; the session's age could not be measured.",
        Verdict::NearMiss => {
            "A session signed calls after its client would have refreshed it: a copied credential that a longer run will see expire."
        }
    }
}

/// The resolution as the JSON document carries it: `null` unless resolved.
fn resolution_json(resolution: Option<Resolution>) -> serde_json::Value {
    match resolution {
        None => serde_json::Value::Null,
        Some(Resolution::NewerSession { issued_at }) => {
            json!({ "by": "newer-session", "issued_at": format_time(issued_at) })
        }
        Some(Resolution::Quiet {
            last_failure,
            cooldown,
        }) => json!({
            "by": "quiet",
            "last_failure": format_time(last_failure),
            "cooldown_seconds": cooldown,
        }),
    }
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    let mut v: Vec<_> = m.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .take(10)
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Chatbot's `client-markdown` with every markup character escaped: values from events cannot add links
/// or markup.
fn md(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\`*_[]<>|#!~".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// [`md`] line by line, keeping the line breaks; the `Fix:` line is the tool's own text, whose code spans
/// stay code.
fn md_lines(text: &str) -> String {
    text.lines()
        .map(|line| {
            if let Some(fix) = line.strip_prefix("Fix: ") {
                return format!("*Fix:* {}", md_code(fix));
            }
            // Our own links (a console URL, the stack's https runbook): escaping would break them.
            for label in ["CloudTrail: ", "Runbook: "] {
                if let Some(url) = line.strip_prefix(label)
                    && url.starts_with("https://")
                    && !url.contains(char::is_whitespace)
                {
                    return line.to_owned();
                }
            }
            md(line)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The tool's own text for `client-markdown`: paired backticks stay code spans, the rest is escaped.
fn md_code(s: &str) -> String {
    let parts: Vec<&str> = s.split('`').collect();
    let paired = parts.len() % 2 == 1;
    let mut out = String::new();
    for (k, part) in parts.iter().enumerate() {
        if k % 2 == 1 && (paired || k + 1 < parts.len()) {
            let _ = write!(out, "`{part}`");
        } else {
            if k % 2 == 1 {
                out.push_str("\\`");
            }
            out.push_str(&md(part));
        }
    }
    out
}

/// An AWS Chatbot custom notification: the subject as its title, the page's text (line breaks kept) as its
/// description, the fix as its next step.
fn chatbot(g: &Group, kind: NoticeKind, subject: &str, text: &str, incident_id: &str) -> String {
    // The title is the subject: the description starts after it.
    let body = text.strip_prefix(&format!("{subject}\n")).unwrap_or(text);
    json!({
        "version": "1.0",
        "source": "custom",
        "id": clean(incident_id, 200),
        "content": {
            "textType": "client-markdown",
            "title": subject,
            "description": md_lines(&clean_lines(body, 3500)),
            "nextSteps": if kind == NoticeKind::Resolved { vec![] } else { vec![md_code(&clean(&g.fix, 500))] },
        },
        "metadata": {
            "threadId": clean(incident_id, 200),
            "summary": subject,
            "eventType": kind.as_str(),
            "relatedResources": g.principal.iter().collect::<Vec<_>>(),
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use tokenwatch_core::model::{Client, CredentialSource, LeaseSource, Severity, Verdict};

    fn group(principal: &str, session: &str) -> Group {
        Group {
            account: Some("123456789012".into()),
            principal: Some(principal.into()),
            session: Some(session.into()),
            workload: None,
            access_key_ids: vec!["ASIAEXAMPLEEXAMPLE01".into()],
            failures: 83,
            first_failure: "2026-11-02T09:00:14Z".into(),
            last_failure: "2026-11-02T09:31:40Z".into(),
            issued_at: Some("2026-11-02T08:00:00Z".into()),
            lease_seconds: Some(3600),
            lease_source: Some(LeaseSource::DefaultAssumeRole),
            age_at_first_failure_seconds: Some(3614),
            verdict: Verdict::StaleCache,
            severity: Severity::High,
            paging_severity: Severity::High,
            credential_source: CredentialSource::AssumeRole,
            client: Some(Client::Boto3),
            error_codes: BTreeMap::from([("ExpiredToken".into(), 83)]),
            event_names: BTreeMap::from([("s3:ListBuckets".into(), 40), ("s3:GetBucketAcl".into(), 43)]),
            source_ips: vec!["10.1.2.3".into()],
            requested_sessions: Vec::new(),
            remediation: "Let botocore refresh the role: configure it.".into(),
            incidents: 1,
            incident_list: Vec::new(),
            recurs_every_seconds: None,
            next_expected_failure: None,
            incident: None,
            fix: "Let botocore refresh the role".into(),
            first: 1_793_610_014,
            last: 1_793_611_900,
            issued: Some(1_793_606_400),
        }
    }

    fn ctx() -> Style {
        Style {
            region: "us-east-1".into(),
            ..Default::default()
        }
    }

    fn alert(g: &Group, incident: &str, kind: NoticeKind, drill: bool, ctx: &Style) -> Message {
        let id = printable(&format!("{incident}#{}#{}", kind.as_str(), g.severity), 600);
        let group = format!(
            "123456789012|{}|{}",
            g.principal.as_deref().unwrap_or("-"),
            g.session.as_deref().unwrap_or("-")
        );
        let page = Page {
            incident_id: incident.to_owned(),
            group,
            kind,
            drill,
            resolution: None,
            sessions: None,
        };
        render_group(g, &page, id, ctx)
    }

    fn render(g: &Group, incident: &str, kind: NoticeKind, ctx: &Style) -> Message {
        alert(g, incident, kind, false, ctx)
    }

    fn digest(report: &Document, since: i64, now: i64, ctx: &Style) -> Message {
        let d = DigestNotice {
            report: Default::default(),
            since,
            until: now,
        };
        render_digest(report, &d, format!("digest@{now}"), ctx)
    }

    fn messages(a: &Message) -> serde_json::Map<String, Value> {
        serde_json::from_str::<Value>(&a.message)
            .unwrap()
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn a_fleets_resolved_notice_says_it_failed_from_the_workloads_first_failure() {
        // The notice goes out for the last member to resolve; its own failures began later.
        let mut g = group(
            "arn:aws:iam::123456789012:role/api",
            "botocore-session-1794823317",
        );
        g.failures = 2;
        let tally = FleetTally {
            pattern: "botocore-session-*".into(),
            sessions: 40,
            failures: 80,
            since: g.first - 120,
        };
        as_workload(&mut g, &tally);
        assert_eq!(g.first, tally.since);
        assert_eq!(g.first_failure, "2026-11-02T08:58:14Z");
        assert_eq!(
            (g.session.as_deref(), g.failures),
            (Some("botocore-session-*"), 80)
        );
        // A member that failed first keeps its own start (and a count above the tally's stays).
        let mut g = group(
            "arn:aws:iam::123456789012:role/api",
            "botocore-session-1794823200",
        );
        let later = FleetTally {
            since: g.first + 60,
            ..tally
        };
        as_workload(&mut g, &later);
        assert_eq!(
            (g.first_failure.as_str(), g.failures),
            ("2026-11-02T09:00:14Z", 83)
        );
    }

    #[test]
    fn the_subject_reads_like_the_spec_example() {
        let a = render(
            &group("arn:aws:iam::123456789012:role/etl-pipeline-role", "nightly-etl"),
            "inc",
            NoticeKind::Open,
            &ctx(),
        );
        assert_eq!(
            a.subject,
            "[tokenwatch] HIGH stale-cache 123456789012 etl-pipeline-role/nightly-etl (83 failures)"
        );
    }

    #[test]
    fn every_protocol_gets_its_message_and_machines_get_the_group() {
        let a = render(
            &group("arn:aws:iam::123456789012:role/r", "s"),
            "inc-1",
            NoticeKind::Open,
            &ctx(),
        );
        let m = messages(&a);
        for key in ["default", "email", "sms", "sqs", "lambda", "https"] {
            assert!(m[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
        }
        let doc: Value = serde_json::from_str(m["sqs"].as_str().unwrap()).unwrap();
        assert_eq!(doc["schema"], 1);
        assert_eq!(doc["state"], "open");
        assert_eq!(doc["verdict"], "stale-cache");
        assert_eq!(doc["failures"], 83);
        assert_eq!(doc["alert_id"], Value::String(a.alert_id.clone()));
        assert!(
            doc["links"]["cloudtrail"][0]
                .as_str()
                .unwrap()
                .contains("AccessKeyId=ASIAEXAMPLEEXAMPLE01")
        );
        assert!(m["sms"].as_str().unwrap().chars().count() <= MAX_SMS);
        for attr in [
            "severity",
            "verdict",
            "account",
            "principal",
            "credential_source",
            "kind",
        ] {
            assert!(a.attributes.contains_key(attr), "{attr}");
        }
        assert_eq!(a.attributes["severity"], "high");
    }

    #[test]
    fn hostile_values_give_a_well_formed_capped_alert() {
        let evil = format!(
            "x\n\r\u{1b}[31m**bold** [link](http://evil)|`code`<script>{}",
            "A".repeat(100_000)
        );
        let mut g = group(&format!("arn:aws:iam::123456789012:role/{evil}"), &evil);
        g.source_ips = vec![evil.clone()];
        g.event_names = BTreeMap::from([(evil.clone(), 1)]);
        for format in [AlertFormat::Standard, AlertFormat::Chatbot] {
            let a = render(&g, &evil, NoticeKind::Open, &Style { format, ..ctx() });
            assert!(
                a.subject.len() <= MAX_SUBJECT && a.subject.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "{}",
                a.subject
            );
            assert!(
                a.message.len() < 64 * 1024,
                "message of {} bytes",
                a.message.len()
            );
            let m = messages(&a);
            let doc: Value = serde_json::from_str(m["sqs"].as_str().unwrap()).unwrap();
            assert!(doc["session"].as_str().unwrap().chars().count() <= 128);
            for v in m.values() {
                let text = v.as_str().unwrap();
                assert!(
                    !text.contains('\u{1b}') && !text.contains('\r'),
                    "control characters leaked"
                );
            }
            for (k, v) in &a.attributes {
                // The alert id is as long as it needs to be (at most 600) to stay unique.
                let max = if k == "alert_id" { 600 } else { 256 };
                assert!(
                    v.len() <= max && v.bytes().all(|b| (0x20..0x7f).contains(&b)),
                    "{k}"
                );
            }
        }
        let chat = render(
            &g,
            "i",
            NoticeKind::Open,
            &Style {
                format: AlertFormat::Chatbot,
                ..ctx()
            },
        );
        let desc: Value = serde_json::from_str(messages(&chat)["default"].as_str().unwrap()).unwrap();
        assert!(
            !desc["content"]["description"]
                .as_str()
                .unwrap()
                .contains("[link](http"),
            "markdown escaped"
        );
    }

    #[test]
    fn drills_and_resolutions_say_so() {
        let g = group("arn:aws:iam::123456789012:role/r", "s");
        let drill = alert(&g, "i", NoticeKind::Open, true, &ctx());
        assert!(drill.subject.starts_with("[tokenwatch DRILL]"));
        assert!(
            messages(&drill)["email"]
                .as_str()
                .unwrap()
                .starts_with("THIS IS A DRILL")
        );
        assert_eq!(drill.attributes["drill"], "true");
        let email = |m: &Message| messages(m)["email"].as_str().unwrap().to_owned();
        // The drill role's real failure says what was done on purpose; a synthetic event says it was one.
        assert!(email(&drill).contains("`tokenwatch drill --real`"));
        assert!(!email(&drill).contains("proves the path from EventBridge"));
        let synthetic = group("tokenwatch.drill/arn:aws:iam::123456789012:role/r", "s");
        let synthetic = alert(&synthetic, "i", NoticeKind::Open, true, &ctx());
        assert!(email(&synthetic).contains("proves the path from EventBridge"));
        assert!(!email(&synthetic).contains("--real"));
        assert!(!email(&render(&g, "i", NoticeKind::Open, &ctx())).contains("DRILL"));
        let resolved = render(&g, "i", NoticeKind::Resolved, &ctx());
        assert!(resolved.subject.contains("RESOLVED"));
        let doc: Value = serde_json::from_str(messages(&resolved)["sqs"].as_str().unwrap()).unwrap();
        assert_eq!(doc["state"], "resolved");
        assert_ne!(
            resolved.alert_id,
            render(&g, "i", NoticeKind::Open, &ctx()).alert_id
        );
    }

    fn email(a: &Message) -> String {
        messages(a)["email"].as_str().unwrap().to_owned()
    }

    #[test]
    fn the_email_puts_the_fix_within_its_first_six_lines_after_when_and_how_much() {
        let g = group("arn:aws:iam::123456789012:role/etl-pipeline-role", "nightly-etl");
        let text = email(&render(&g, "i", NoticeKind::Open, &ctx()));
        let lines: Vec<&str> = text.lines().collect();
        let fix = lines
            .iter()
            .position(|l| l.starts_with("Fix: "))
            .expect("a fix line");
        assert!(fix < 6, "the fix is on line {}:\n{text}", fix + 1);
        let since = lines
            .iter()
            .position(|l| l.starts_with("Since 2026-11-02T09:00:14Z: 83 failures, 1 session; still failing"))
            .expect("since when and how much");
        assert!(since < fix, "{text}");
        let principal = lines.iter().position(|l| l.starts_with("Principal: ")).unwrap();
        assert!(principal > fix, "details after the fix:\n{text}");
        assert!(
            text.contains("Lease and age: failed 1h00m14s into a 1h lease (default-assume-role)"),
            "{text}"
        );
    }

    #[test]
    fn a_resolved_notice_says_how_it_resolved() {
        let g = group("arn:aws:iam::123456789012:role/r", "s");
        let resolved = |resolution| {
            let page = Page {
                incident_id: "i".into(),
                group: "123456789012|r|s".into(),
                kind: NoticeKind::Resolved,
                drill: false,
                resolution,
                sessions: None,
            };
            render_group(&g, &page, "i#resolved#high".into(), &ctx())
        };
        let newer = resolved(Some(Resolution::NewerSession {
            issued_at: 1_793_613_600,
        }));
        assert!(
            email(&newer)
                .contains("Resolved: a newer session of the group was issued at 2026-11-02T10:00:00Z."),
            "{}",
            email(&newer)
        );
        let doc: Value = serde_json::from_str(messages(&newer)["sqs"].as_str().unwrap()).unwrap();
        assert_eq!(doc["resolution"]["by"], "newer-session");
        let quiet = resolved(Some(Resolution::Quiet {
            last_failure: 1_793_611_900,
            cooldown: 3600,
        }));
        assert!(
            email(&quiet).contains(
                "Resolved: no failure for 1h (the cool-down) after the last one at 2026-11-02T09:31:40Z."
            ),
            "{}",
            email(&quiet)
        );
        assert!(!email(&quiet).contains("Fix: "), "a resolved notice is short");
        let open = render(&g, "i", NoticeKind::Open, &ctx());
        let doc: Value = serde_json::from_str(messages(&open)["sqs"].as_str().unwrap()).unwrap();
        assert_eq!(doc["resolution"], Value::Null);
    }

    #[test]
    fn the_chatbot_description_keeps_its_line_breaks_and_the_fix_its_code() {
        let mut g = group("arn:aws:iam::123456789012:role/etl-pipeline-role", "nightly-etl");
        g.remediation = "Let botocore refresh the role: configure `role_arn` in the profile.".into();
        let chat = render(
            &g,
            "i",
            NoticeKind::Open,
            &Style {
                format: AlertFormat::Chatbot,
                ..ctx()
            },
        );
        let payload: Value = serde_json::from_str(messages(&chat)["default"].as_str().unwrap()).unwrap();
        let description = payload["content"]["description"].as_str().unwrap();
        let lines: Vec<&str> = description.lines().collect();
        assert!(lines.len() > 10, "{description}");
        assert_eq!(
            lines[0],
            "Credentials were cached past their lease and the workload keeps using them."
        );
        assert!(
            lines[1].starts_with("Since 2026-11-02T09:00:14Z: 83 failures"),
            "{description}"
        );
        assert!(
            lines.contains(&"*Fix:* Let botocore refresh the role: configure `role_arn` in the profile."),
            "{description}"
        );
        assert!(
            lines.contains(&"Principal: arn:aws:iam::123456789012:role/etl\\-pipeline\\-role")
                || lines.contains(&"Principal: arn:aws:iam::123456789012:role/etl-pipeline-role"),
            "{description}"
        );
        assert!(lines.contains(&"Session: nightly-etl"), "{description}");
        assert!(!description.contains("etl-pipeline-roleSession"), "{description}");
        assert!(
            lines.contains(&"CloudTrail: https://us-east-1.console.aws.amazon.com/cloudtrailv2/home?region=us-east-1#/events?AccessKeyId=ASIAEXAMPLEEXAMPLE01"),
            "links stay links: {description}"
        );
        assert_eq!(payload["content"]["title"], chat.subject.as_str());
    }

    #[test]
    fn a_runbook_link_per_verdict_when_the_stack_has_one() {
        let g = group("arn:aws:iam::123456789012:role/r", "s");
        let with = Style {
            runbook: Some("https://wiki.example.com/tokenwatch/{verdict}".into()),
            ..ctx()
        };
        let a = render(&g, "i", NoticeKind::Open, &with);
        assert!(
            email(&a).contains("\nRunbook: https://wiki.example.com/tokenwatch/stale-cache\n"),
            "{}",
            email(&a)
        );
        let doc: Value = serde_json::from_str(messages(&a)["sqs"].as_str().unwrap()).unwrap();
        assert_eq!(
            doc["links"]["runbook"],
            "https://wiki.example.com/tokenwatch/stale-cache"
        );
        let without = render(&g, "i", NoticeKind::Open, &ctx());
        assert!(!email(&without).contains("Runbook"));
    }

    #[test]
    fn every_publish_carries_its_alert_id_as_an_attribute() {
        let g = group("arn:aws:iam::123456789012:role/r", "s");
        let a = render(&g, "i", NoticeKind::Open, &ctx());
        assert_eq!(a.attributes["alert_id"], a.alert_id);
        let d = digest(&crate::report::test_document(0, 0, vec![]), 0, 86_400, &ctx());
        assert_eq!(d.attributes["alert_id"], d.alert_id);
    }

    #[test]
    fn malformed_keys_and_regions_get_no_link() {
        assert!(console_link("us-east-1", "ASIAEXAMPLEEXAMPLE01").is_some());
        assert!(console_link("us-east-1", "ASIA<script>").is_none());
        assert!(console_link("us-east-1/../evil", "ASIAEXAMPLEEXAMPLE01").is_none());
    }

    #[test]
    fn clean_caps_and_strips() {
        assert_eq!(clean("a\nb", 10), "ab");
        assert_eq!(clean("abcdef", 4), "abc…");
        assert_eq!(clean("abcd", 4), "abcd");
    }

    #[test]
    fn a_digest_lists_a_fleet_once_with_its_sessions_and_other_groups_each() {
        let role = "arn:aws:iam::123456789012:role/api-irsa-role";
        let pod = |s: &str| {
            let mut g = group(role, s);
            g.workload = Some("botocore-session-*".into());
            g.failures = 2;
            g
        };
        let mut alone = group("arn:aws:iam::123456789012:role/etl", "nightly");
        alone.workload = alone.session.clone();
        let groups = vec![
            pod("botocore-session-1794823200"),
            alone,
            pod("botocore-session-1794823203"),
            pod("botocore-session-1794823206"),
        ];
        let mut report = crate::report::test_document(0, 89, groups);
        report.workloads = vec![crate::report::WorkloadEntry {
            account: Some("123456789012".into()),
            principal: Some(role.into()),
            session_pattern: Some("botocore-session-*".into()),
            groups: 3,
            sessions: Vec::new(),
            failures: 6,
            first_failure: "2026-11-02T09:00:14Z".into(),
            last_failure: "2026-11-02T09:02:50Z".into(),
            verdicts: BTreeMap::from([(Verdict::StaleCache, 3)]),
            severity: Severity::High,
        }];
        let d = digest(&report, 1_793_600_000, 1_793_700_000, &ctx());
        let m = messages(&d);
        let text = m["email"].as_str().unwrap();
        assert!(
            text.contains(
                "api-irsa-role/botocore-session-*: 3 sessions, 6 failures from 2026-11-02T09:00:14Z"
            ),
            "{text}"
        );
        assert_eq!(
            text.matches("botocore-session-").count(),
            2,
            "the workload once, naming one session: {text}"
        );
        assert!(text.contains("etl/nightly: 83 failures"), "{text}");
        assert!(!text.contains("…and"), "two items, both listed: {text}");
        let doc: Value = serde_json::from_str(m["sqs"].as_str().unwrap()).unwrap();
        let listed: Vec<Option<u64>> = doc["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["workload_sessions"].as_u64())
            .collect();
        assert_eq!(listed, [Some(3), None]);
        assert_eq!(doc["groups_total"], 4);
    }

    #[test]
    fn a_digest_is_tagged_as_one_never_carries_a_severity_and_fits_sns() {
        let mut g = group("arn:aws:iam::123456789012:role/etl", "nightly\n<b>");
        g.event_names = (0..100)
            .map(|i| (format!("s3:{}{i}", "X".repeat(120)), 1))
            .collect();
        g.incident = Some(crate::report::Incident {
            id: "x@1".into(),
            state: "open",
            opened_at: "2026-11-02T09:00:14Z".into(),
            resolved_at: None,
            time_to_recover_seconds: None,
            paged: Some(Severity::High),
            incidents_seen: 3,
            recurs_every_seconds: Some(86_400),
            next_expected_failure: Some("2026-11-03T09:00:14Z".into()),
        });
        let report = crate::report::test_document(0, 6 * 400, vec![g; 400]);
        let now = 1_793_700_000;
        let d = digest(&report, now - 86_400, now, &ctx());
        assert_eq!(d.attributes.get("kind").map(String::as_str), Some("digest"));
        assert!(
            !d.attributes.contains_key("severity"),
            "a severity filter must not page a digest"
        );
        assert!(d.subject.len() <= MAX_SUBJECT && d.subject.bytes().all(|b| (b' '..=b'~').contains(&b)));
        assert!(d.subject.contains("400 open, 400 groups"), "{}", d.subject);
        assert!(d.message.len() < 256 * 1024);
        let m: Value = serde_json::from_str(&d.message).unwrap();
        let doc: Value = serde_json::from_str(m["sqs"].as_str().unwrap()).unwrap();
        assert_eq!(
            (doc["kind"].as_str(), doc["groups_total"].as_u64()),
            (Some("digest"), Some(400))
        );
        assert_eq!(doc["groups"].as_array().unwrap().len(), MAX_DIGEST_GROUPS);
        assert_eq!(
            doc["groups"][0]["incident"]["next_expected_failure"],
            "2026-11-03T09:00:14Z"
        );
        let text = m["email"].as_str().unwrap();
        assert!(
            text.contains("375 more groups or workloads")
                && text.contains("next failure expected 2026-11-03T09:00:14Z")
        );
        assert!(!text.contains("nightly\n"), "control characters are stripped");

        let empty = crate::report::test_document(0, 0, vec![]);
        let quiet = digest(&empty, now - 86_400, now, &ctx());
        assert!(quiet.subject.contains("0 open, 0 groups"), "{}", quiet.subject);
    }

    #[test]
    fn a_chatbot_digest_is_a_custom_notification_with_escaped_markdown() {
        let g = group("arn:aws:iam::123456789012:role/etl", "*bold* [link](http://x)");
        let report = crate::report::test_document(0, 6, vec![g]);
        let ctx = Style {
            format: AlertFormat::Chatbot,
            ..ctx()
        };
        let now = 1_793_700_000;
        let d = digest(&report, now - 86_400, now, &ctx);
        let m: Value = serde_json::from_str(&d.message).unwrap();
        let chat: Value = serde_json::from_str(m["default"].as_str().unwrap()).unwrap();
        assert_eq!(
            (chat["version"].as_str(), chat["source"].as_str()),
            (Some("1.0"), Some("custom"))
        );
        assert_eq!(chat["content"]["title"], d.subject.as_str());
        let description = chat["content"]["description"].as_str().unwrap();
        assert!(description.contains("\\*bold\\* \\[link\\]"), "{description}");
        assert_eq!(m["https"], m["default"], "Chatbot reads https subscriptions too");
        let machine: Value = serde_json::from_str(m["sqs"].as_str().unwrap()).unwrap();
        assert_eq!(machine["kind"], "digest");
    }

    fn near_miss_notice(session: &str) -> Notice {
        use tokenwatch_core::assess::Lease;
        use tokenwatch_core::nearmiss::{Occurrence, SessionNearMiss, near_miss};
        let (issued_at, last_use) = (1_793_606_400, 1_793_606_400 + 3420);
        Notice::NearMiss(NearMissNotice {
            near_miss: SessionNearMiss {
                account: Some("123456789012".into()),
                principal: Some("arn:aws:iam::123456789012:role/etl".into()),
                session: Some(session.into()),
                client: Client::Boto3,
                credential_source: CredentialSource::AssumeRole,
                lease: Lease {
                    seconds: 3600,
                    source: LeaseSource::DefaultAssumeRole,
                },
                occurrence: Occurrence {
                    access_key_id: "ASIANEARMISS0001".into(),
                    issued_at,
                    last_use,
                    lease_end: issued_at + 3600,
                    near_miss: near_miss(last_use, Client::Boto3, issued_at + 3600).unwrap(),
                },
            },
        })
    }

    #[test]
    fn a_near_miss_page_is_low_says_nothing_failed_and_escapes_its_session_name() {
        let m = super::render(&near_miss_notice("nightly\n\u{1b}[31m\"}evil"), &Style::default());
        assert!(m.subject.len() <= MAX_SUBJECT && m.subject.bytes().all(|b| (b' '..=b'~').contains(&b)));
        assert!(
            m.subject
                .starts_with("[tokenwatch] LOW near-miss 123456789012 etl/nightly"),
            "{}",
            m.subject
        );
        assert_eq!(
            (
                m.attributes["severity"].as_str(),
                m.attributes["verdict"].as_str(),
                m.attributes["kind"].as_str()
            ),
            ("low", "near-miss", "open")
        );
        let message: Value = serde_json::from_str(&m.message).unwrap();
        let email = message["email"].as_str().unwrap();
        assert!(!email.contains('\u{1b}'), "{email}");
        assert!(
            email.contains("Nothing failed yet") && email.contains("used 3 min before expiry"),
            "{email}"
        );
        let machine: Value = serde_json::from_str(message["sqs"].as_str().unwrap()).unwrap();
        assert_eq!(machine["seconds_before_expiry"], 180);
        assert_eq!(machine["verdict"], "near-miss");
        assert_eq!(m.alert_id, "near-miss#ASIANEARMISS0001");
        assert_eq!(
            super::render(&near_miss_notice("nightly"), &Style::default()).alert_id,
            m.alert_id,
            "one id per session"
        );
    }
}
