//! The report document (docs/contract.md) and the ways it is shown: JSON, a terminal table, markdown,
//! CSV (and HTML, in [`crate::html`]). A [`Document`] is made from the engine's
//! [`tokenwatch_core::finding::Report`]; times become text here and nowhere before.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use tokenwatch_core::Window;
use tokenwatch_core::finding::{Finding, IncidentBrief, IncidentState, IncidentSummary, Report};
use tokenwatch_core::model::{Client, CredentialSource, LeaseSource, Severity, Verdict};
use tokenwatch_core::time::{Epoch, format_time};

use crate::nearmiss::{NearMissSection, summary as near_miss_summary};
use crate::table::{Column, Layout, Row, Table};

/// The version of the report document: the `schema` field. Version 2 added `schema`, `generated_at`,
/// `tool` and `window`; docs/report.schema.json describes it.
pub const REPORT_SCHEMA: u32 = 2;

/// A failure this recent (against the report's `generated_at`) means the group is still failing: the
/// detector's default cool-down, after which a quiet group's incident ends.
pub const STILL_FAILING: Epoch = 3600;

/// `tokenwatch analyze --format json`: field names and order are the contract's.
#[derive(Clone, Debug, Serialize)]
pub struct Document {
    /// [`REPORT_SCHEMA`].
    pub schema: u32,
    /// When the report was made: the only field that differs between two runs over the same input.
    pub generated_at: String,
    /// What made it.
    pub tool: Tool,
    /// The window asked for (`--since`/`--until`, or a default a source applies); nulls when none.
    pub window: ReportWindow,
    /// Records read, duplicates included.
    pub records: u64,
    /// Expiry-family failures, each eventID once.
    pub failures: u64,
    /// Records that could not be used (no time, not JSON), included in `records`.
    pub skipped_records: u64,
    /// The groups' workloads (account + principal + session pattern), most severe first.
    pub workloads: Vec<WorkloadEntry>,
    /// Failures grouped by account + principal + session, most severe first.
    pub groups: Vec<Group>,
    /// Sessions that came close to failing and did not; left out when there is none.
    #[serde(skip_serializing_if = "NearMissSection::is_empty")]
    pub near_misses: NearMissSection,
    /// `generated_at` as a time: what "still failing" is measured against.
    #[serde(skip)]
    pub generated: Epoch,
}

/// The program that made a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tool {
    /// `tokenwatch`.
    pub name: &'static str,
    /// Its version.
    pub version: &'static str,
}

impl Default for Tool {
    fn default() -> Tool {
        Tool {
            name: "tokenwatch",
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// The window a report covers, as given; `null` for an open end.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReportWindow {
    /// Failures from this time on.
    pub since: Option<String>,
    /// Failures up to this time.
    pub until: Option<String>,
}

/// When a report was made and over which window: what a [`Document`] says beside the engine's report.
#[derive(Clone, Copy, Debug, Default)]
pub struct Made {
    /// When (the caller's clock: the engine has none).
    pub at: Epoch,
    /// The window asked for.
    pub window: Window,
}

impl Made {
    /// Made at `at`, over no window.
    pub fn at(at: Epoch) -> Made {
        Made {
            at,
            window: Window::default(),
        }
    }
}

/// One workload of the document.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct WorkloadEntry {
    pub account: Option<String>,
    pub principal: Option<String>,
    pub session_pattern: Option<String>,
    pub groups: usize,
    pub sessions: Vec<String>,
    pub failures: u64,
    pub first_failure: String,
    pub last_failure: String,
    pub verdicts: BTreeMap<Verdict, usize>,
    pub severity: Severity,
}

impl WorkloadEntry {
    /// The document's entry for a workload.
    pub fn of(w: &tokenwatch_core::workload::Workload) -> WorkloadEntry {
        WorkloadEntry {
            account: w.account.clone(),
            principal: w.principal.clone(),
            session_pattern: w.session_pattern.clone(),
            groups: w.groups,
            sessions: w.sessions.clone(),
            failures: w.failures,
            first_failure: format_time(w.first_failure),
            last_failure: format_time(w.last_failure),
            verdicts: w.verdicts.clone(),
            severity: w.severity,
        }
    }
}

/// One account + principal + session and what its failures say. Unknowns are `null`, never omitted.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct Group {
    pub account: Option<String>,
    pub principal: Option<String>,
    pub session: Option<String>,
    /// Its workload's session pattern.
    pub workload: Option<String>,
    pub access_key_ids: Vec<String>,
    pub failures: u64,
    pub first_failure: String,
    pub last_failure: String,
    pub issued_at: Option<String>,
    pub lease_seconds: Option<u64>,
    pub lease_source: Option<LeaseSource>,
    pub age_at_first_failure_seconds: Option<i64>,
    pub verdict: Verdict,
    pub severity: Severity,
    /// The severity its incident pages at: the verdict's, without the volume raise of `severity`.
    pub paging_severity: Severity,
    pub credential_source: CredentialSource,
    pub client: Option<Client>,
    pub error_codes: BTreeMap<String, u64>,
    pub event_names: BTreeMap<String, u64>,
    pub source_ips: Vec<String>,
    /// The session names failed `AssumeRoleWith*` calls asked for (at most 20), when the group is such
    /// calls': its session is `(any session)`, since the caller chooses the name (docs/rules.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requested_sessions: Vec<String>,
    pub remediation: String,
    /// Incidents of the group (this group's fields describe the latest).
    pub incidents: usize,
    /// Each incident, oldest first.
    pub incident_list: Vec<IncidentEntry>,
    /// The interval its incidents recur at, when three or more come evenly spaced.
    pub recurs_every_seconds: Option<i64>,
    /// When the next incident's first failure is expected, for a group that recurs.
    pub next_expected_failure: Option<String>,
    /// From the state table only (`tokenwatch report` without a source flag); `null` elsewhere.
    pub incident: Option<Incident>,
    /// The one-line fix (the start of `remediation`), for tables and pages.
    #[serde(skip)]
    pub fix: std::sync::Arc<str>,
    /// `first_failure` as a time.
    #[serde(skip)]
    pub first: Epoch,
    /// `last_failure` as a time.
    #[serde(skip)]
    pub last: Epoch,
    /// `issued_at` as a time.
    #[serde(skip)]
    pub issued: Option<Epoch>,
}

impl Group {
    /// The document's group for a finding.
    pub fn of(f: &Finding) -> Group {
        let a = &f.assessment;
        Group {
            account: f.account().map(str::to_owned),
            principal: f.principal.clone(),
            session: f.session().map(str::to_owned),
            workload: f.workload.as_deref().map(str::to_owned),
            access_key_ids: f.access_key_ids.clone(),
            failures: f.failures,
            first_failure: format_time(f.first_failure),
            last_failure: format_time(f.last_failure),
            issued_at: a.issued_at.map(format_time),
            lease_seconds: a.lease.map(|l| l.seconds),
            lease_source: a.lease.map(|l| l.source),
            age_at_first_failure_seconds: a.age_at_first_failure,
            verdict: a.verdict,
            severity: a.severity,
            paging_severity: a.paging_severity,
            credential_source: a.credential_source,
            client: f.client,
            error_codes: (*f.error_codes).clone(),
            event_names: (*f.event_names).clone(),
            source_ips: f.source_ips.clone(),
            requested_sessions: f.requested_sessions.clone(),
            remediation: f.remediation.to_string(),
            incidents: f.history.len().max(1),
            incident_list: f.incidents().iter().map(IncidentEntry::of).collect(),
            recurs_every_seconds: f.recurrence.as_deref().map(|r| r.every_seconds),
            next_expected_failure: f
                .recurrence
                .as_deref()
                .and_then(|r| r.next_expected_failure)
                .map(format_time),
            incident: f.incident.as_deref().map(Incident::of),
            fix: f.remediation.fix.clone(),
            first: f.first_failure,
            last: f.last_failure,
            issued: a.issued_at,
        }
    }
}

impl Document {
    /// The document of a report made as `made` says.
    pub fn of(report: &Report, made: Made) -> Document {
        Document {
            groups: report.findings.iter().map(Group::of).collect(),
            ..Document::head(report, made)
        }
    }

    /// The document without its groups.
    fn head(report: &Report, made: Made) -> Document {
        Document {
            schema: REPORT_SCHEMA,
            generated_at: format_time(made.at),
            tool: Tool::default(),
            window: ReportWindow {
                since: made.window.since.map(format_time),
                until: made.window.until.map(format_time),
            },
            generated: made.at,
            records: report.records,
            failures: report.failures,
            skipped_records: report.skipped_records,
            workloads: report.workloads.iter().map(WorkloadEntry::of).collect(),
            groups: Vec::new(),
            near_misses: NearMissSection::of(&report.near_misses),
        }
    }

    /// Writes the document of `report` as pretty JSON, a group at a time: the bytes of
    /// `serde_json::to_writer_pretty(w, &Document::of(report, made))`, without holding every group's entry
    /// (and the whole text) at once, which for a run of a million groups is most of its memory.
    pub fn write_json(report: &Report, made: Made, w: impl std::io::Write) -> serde_json::Result<()> {
        let streamed = Streamed {
            head: Document::head(report, made),
            findings: &report.findings,
        };
        serde_json::to_writer_pretty(w, &streamed)
    }
}

/// A [`Document`] whose groups are made from the findings as they are written.
struct Streamed<'a> {
    head: Document,
    findings: &'a [Finding],
}

impl Serialize for Streamed<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        // The fields of `Document`, in its order (a test holds the two to the same bytes).
        let d = &self.head;
        let mut s = serializer.serialize_struct("Document", 10)?;
        s.serialize_field("schema", &d.schema)?;
        s.serialize_field("generated_at", &d.generated_at)?;
        s.serialize_field("tool", &d.tool)?;
        s.serialize_field("window", &d.window)?;
        s.serialize_field("records", &d.records)?;
        s.serialize_field("failures", &d.failures)?;
        s.serialize_field("skipped_records", &d.skipped_records)?;
        s.serialize_field("workloads", &d.workloads)?;
        s.serialize_field("groups", &GroupsOf(self.findings))?;
        if d.near_misses.is_empty() {
            s.skip_field("near_misses")?;
        } else {
            s.serialize_field("near_misses", &d.near_misses)?;
        }
        s.end()
    }
}

/// Findings serialised as the document's groups, each made as it is written.
struct GroupsOf<'a>(&'a [Finding]);

impl Serialize for GroupsOf<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(Group::of))
    }
}

/// One entry of `incident_list`: unknowns are `null` (the state table keeps only a past incident's start).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct IncidentEntry {
    pub first_failure: String,
    pub last_failure: Option<String>,
    pub failures: Option<u64>,
    pub issued_at: Option<String>,
    pub age_at_first_failure_seconds: Option<i64>,
    pub verdict: Option<Verdict>,
}

impl IncidentEntry {
    /// The entry of an incident.
    pub fn of(i: &IncidentBrief) -> IncidentEntry {
        IncidentEntry {
            first_failure: format_time(i.first_failure),
            last_failure: i.last_failure.map(format_time),
            failures: i.failures,
            issued_at: i.issued_at.map(format_time),
            age_at_first_failure_seconds: i.age_at_first_failure,
            verdict: i.verdict,
        }
    }
}

/// The incident a state-table group is in or last had, and what its history says. Unknowns are `null`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Incident {
    /// The incident's id (group id `@` its first failure).
    pub id: String,
    /// `open` or `resolved`.
    pub state: &'static str,
    /// When it began: its first failure.
    pub opened_at: String,
    /// When it ended: a newer session, or the cool-down after its last failure.
    pub resolved_at: Option<String>,
    /// `resolved_at − opened_at`.
    pub time_to_recover_seconds: Option<i64>,
    /// The highest severity it paged at; `null`: it did not page (below the floor, held, suppressed).
    pub paged: Option<Severity>,
    /// Incidents of this group the table remembers, this one included.
    pub incidents_seen: usize,
    /// The interval its incidents recur at, when they recur regularly (three or more).
    pub recurs_every_seconds: Option<i64>,
    /// When the next incident's first failure is expected, for a group that recurs.
    pub next_expected_failure: Option<String>,
}

impl Incident {
    /// The document's incident for a summary.
    pub fn of(i: &IncidentSummary) -> Incident {
        Incident {
            id: i.id.to_string(),
            state: i.state.as_str(),
            opened_at: format_time(i.opened_at),
            resolved_at: i.resolved_at.map(format_time),
            time_to_recover_seconds: i.time_to_recover_seconds,
            paged: i.paged,
            incidents_seen: i.incidents_seen,
            recurs_every_seconds: i.recurs_every_seconds,
            next_expected_failure: i.next_expected_failure.map(format_time),
        }
    }

    /// Whether the incident is still open.
    pub fn is_open(&self) -> bool {
        self.state == IncidentState::Open.as_str()
    }

    /// One line for people: "open since …", "resolved after 45m", and the recurrence if any.
    pub fn describe(&self) -> String {
        let mut out = match (self.is_open(), self.time_to_recover_seconds) {
            (true, _) => format!("open since {}", self.opened_at),
            (false, Some(t)) => {
                format!(
                    "resolved after {} (at {})",
                    duration(t),
                    self.resolved_at.as_deref().unwrap_or("?")
                )
            }
            (false, None) => "resolved".to_owned(),
        };
        if let Some(p) = self.paged {
            let _ = write!(out, "; paged {p}");
        }
        if let (Some(every), Some(next)) = (self.recurs_every_seconds, &self.next_expected_failure) {
            let _ = write!(
                out,
                "; {} incidents, one every {}: next failure expected {next}",
                self.incidents_seen,
                duration(every)
            );
        }
        out
    }
}

impl Group {
    /// `role/session` for people: the last path segment of the principal and the session name.
    pub fn label(&self) -> String {
        let principal = self
            .principal
            .as_deref()
            .map(|p| p.rsplit(['/', ':']).next().unwrap_or(p));
        match (principal, self.session.as_deref()) {
            (Some(p), Some(s)) => format!("{p}/{s}"),
            (Some(p), None) => p.to_owned(),
            (None, Some(s)) => format!("?/{s}"),
            (None, None) => "(unknown principal)".to_owned(),
        }
    }

    /// "age 1h00m14s of 1h lease" style text.
    pub fn age_against_lease(&self) -> String {
        let age = self
            .age_at_first_failure_seconds
            .map(duration)
            .unwrap_or_else(|| "?".into());
        let lease = self
            .lease_seconds
            .map(|l| duration(l as i64))
            .unwrap_or_else(|| "?".into());
        format!("{age} / {lease}")
    }
}

/// `3614` → `1h00m14s`; `900` → `15m`; `43200` → `12h`.
pub fn duration(seconds: i64) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let s = seconds.unsigned_abs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    match (h, m, sec) {
        (0, 0, sec) => format!("{sign}{sec}s"),
        (0, m, 0) => format!("{sign}{m}m"),
        (0, m, sec) => format!("{sign}{m}m{sec:02}s"),
        (h, 0, 0) => format!("{sign}{h}h"),
        (h, m, 0) => format!("{sign}{h}h{m:02}m"),
        (h, m, sec) => format!("{sign}{h}h{m:02}m{sec:02}s"),
    }
}

/// Markdown for a value from an event: every character markdown could read as markup is escaped.
fn md_escape(s: &str) -> String {
    let mut escaped = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '!'
        ) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Markdown for the tool's own text (a remediation): its code spans stay code, the rest is escaped. An
/// unpaired backtick is escaped like any other character. In a table cell (`in_table`), `|` is escaped
/// inside code spans too, as GitHub's tables require.
fn md_own(s: &str, in_table: bool) -> String {
    let s = cell(s, 2000);
    let parts: Vec<&str> = s.split('`').collect();
    let paired = parts.len() % 2 == 1;
    let mut out = String::with_capacity(s.len() + 16);
    for (k, part) in parts.iter().enumerate() {
        if k % 2 == 1 && (paired || k + 1 < parts.len()) {
            out.push('`');
            out.push_str(&if in_table {
                part.replace('|', "\\|")
            } else {
                (*part).to_owned()
            });
            out.push('`');
        } else {
            if k % 2 == 1 {
                out.push_str("\\`");
            }
            out.push_str(&md_escape(part));
        }
    }
    out
}

/// `2026-11-02T09:00:14Z` → `2026-11-02 09:00Z`: what a table cell needs, and a break between date and
/// time.
pub fn short_time(iso: &str) -> String {
    match (iso.get(..10), iso.get(11..16)) {
        (Some(date), Some(hm)) if iso.len() >= 20 => format!("{date} {hm}Z"),
        _ => iso.to_owned(),
    }
}

/// The colour of a severity on a terminal (SGR parameters).
fn severity_style(severity: &str) -> Option<&'static str> {
    match severity {
        "critical" => Some("1;97;41"),
        "high" => Some("1;31"),
        "medium" => Some("33"),
        "low" => Some("36"),
        "info" => Some("2"),
        _ => None,
    }
}

/// Keeps table cells on one line and bounded: unsafe characters are escaped ([`crate::text::line`]).
fn cell(s: &str, max: usize) -> String {
    let clean = crate::text::line(s);
    if clean.chars().count() <= max {
        clean.into_owned()
    } else {
        let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

impl Document {
    /// A table for a terminal that fits `layout.width` ([`crate::table`]): one row per group with its
    /// fix, an ACCOUNT column when more than one account is present, SINCE (the first failure, and
    /// whether it is still failing at [`Document::generated_at`]), and, for a report from the state
    /// table, each incident's time to recover and next expected failure. Then a one-line summary.
    pub fn to_table(&self, layout: Layout) -> String {
        let incidents = self.from_state_table();
        let accounts: std::collections::BTreeSet<Option<&str>> =
            self.groups.iter().map(|g| g.account.as_deref()).collect();
        let many_accounts = accounts.len() > 1;
        let mut columns = Vec::new();
        if many_accounts {
            columns.push(Column::text("ACCOUNT", 12).rank(3));
        }
        columns.extend([
            Column::text("GROUP", 20),
            Column::text("VERDICT", 12),
            Column::text("SEVERITY", 8).rank(4).styled(severity_style),
            Column::number("FAILURES").rank(5),
            Column::text("AGE / LEASE", 11).rank(2),
            Column::text("SINCE", 11).rank(3),
            Column::text("CLIENT", 7).rank(1),
        ]);
        if incidents {
            columns.push(Column::text("RECOVERED IN", 8).rank(1));
            columns.push(Column::text("NEXT FAILURE", 10).rank(2));
        }
        let rows = self
            .groups
            .iter()
            .map(|g| {
                let mut cells = Vec::new();
                if many_accounts {
                    cells.push(cell(g.account.as_deref().unwrap_or("-"), 64));
                }
                cells.extend([
                    cell(&g.label(), 300),
                    g.verdict.to_string(),
                    g.severity.to_string(),
                    g.failures.to_string(),
                    g.age_against_lease(),
                    self.since(g),
                    g.client.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                ]);
                if incidents {
                    let i = g.incident.as_ref();
                    cells.push(
                        i.and_then(|i| i.time_to_recover_seconds)
                            .map(duration)
                            .unwrap_or_else(|| "-".into()),
                    );
                    cells.push(
                        i.and_then(|i| i.next_expected_failure.as_deref())
                            .map(short_time)
                            .unwrap_or_else(|| "-".into()),
                    );
                }
                Row {
                    cells,
                    note: Some(cell(&g.fix, 1000)),
                    children: Vec::new(),
                }
            })
            .collect();
        let table = Table {
            columns,
            note: Some("FIX"),
            rows,
        };
        let mut out = if self.groups.is_empty() {
            String::new()
        } else {
            table.render(layout) + "\n"
        };
        if !self.near_misses.is_empty() {
            out.push_str(&self.near_miss_table(layout));
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{}{}",
            self.summary(),
            if self.skipped_records > 0 {
                format!(", {} records skipped", self.skipped_records)
            } else {
                String::new()
            }
        );
        if !self.near_misses.is_empty() {
            let _ = writeln!(out, "{}", near_miss_summary(&self.near_misses));
        }
        out
    }

    /// The near misses as a table, under a title: one row per group, how close it came and the fix.
    fn near_miss_table(&self, layout: Layout) -> String {
        let columns = vec![
            Column::text("NEAR MISS", 20),
            Column::text("HOW CLOSE", 24),
            Column::text("LAST USE", 11).rank(2),
            Column::text("CLIENT", 7).rank(1),
            Column::text("TIMES", 9).rank(3),
        ];
        let rows = self
            .near_misses
            .groups
            .iter()
            .map(|g| Row {
                cells: vec![
                    cell(&g.label(), 300),
                    cell(&g.how_close, 300),
                    g.last_use_cell(),
                    g.client.to_string(),
                    g.times(),
                ],
                note: Some(cell(&g.fix, 1000)),
                children: Vec::new(),
            })
            .collect();
        let table = Table {
            columns,
            note: Some("FIX"),
            rows,
        };
        format!(
            "Near misses (used after their client would have refreshed; nothing failed yet):\n{}",
            table.render(layout)
        )
    }

    /// The SINCE cell: when the group (or its incident) began failing, and whether it still fails.
    fn since(&self, g: &Group) -> String {
        if let Some(i) = &g.incident {
            let state = if i.is_open() {
                "still failing".to_owned()
            } else {
                i.time_to_recover_seconds
                    .map(|t| format!("resolved after {}", duration(t)))
                    .unwrap_or_else(|| "resolved".into())
            };
            return format!("{}\n{state}", short_time(&i.opened_at));
        }
        format!(
            "{}\n{}",
            short_time(&g.first_failure),
            self.still_failing_or_last(g)
        )
    }

    /// "still failing" when the last failure is within [`STILL_FAILING`] of when the report was made,
    /// else when it was.
    pub fn still_failing_or_last(&self, g: &Group) -> String {
        if self.still_failing(g) {
            "still failing".into()
        } else if g.first_failure.get(..10) == g.last_failure.get(..10) {
            format!(
                "last {}",
                short_time(&g.last_failure).get(11..).unwrap_or_default()
            )
        } else {
            format!("last {}", short_time(&g.last_failure))
        }
    }

    /// Its last failure is within [`STILL_FAILING`] of when the report was made.
    pub fn still_failing(&self, g: &Group) -> bool {
        (0..STILL_FAILING).contains(&(self.generated - g.last))
    }

    /// "51234 records, 518 expired-credential failures in 3 groups". A report from the state table reads
    /// no records: it says only what it found.
    pub fn summary(&self) -> String {
        let found = format!(
            "{} expired-credential failures in {} groups",
            self.failures,
            self.groups.len()
        );
        if self.from_state_table() {
            found
        } else {
            format!("{} records, {found}", self.records)
        }
    }

    /// Its groups carry incidents: it was read from the state table, not from records.
    pub fn from_state_table(&self) -> bool {
        self.groups.iter().any(|g| g.incident.is_some())
    }

    /// Markdown: a summary table (with each group's fix) and a section per group with its remediation.
    /// Values from events are escaped; the tool's own texts keep their code spans (`` `aws sso login` ``)
    /// as code.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("# tokenwatch report\n\n");
        let _ = writeln!(out, "{}.\n", self.summary());
        if self.groups.is_empty() {
            self.markdown_near_misses(&mut out);
            return out;
        }
        out.push_str(
            "| group | verdict | severity | failures | age / lease | since | client | fix |\n\
             |---|---|---|---:|---|---|---|---|\n",
        );
        for g in &self.groups {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                md_escape(&cell(&g.label(), 80)),
                g.verdict,
                g.severity,
                g.failures,
                g.age_against_lease(),
                md_escape(&self.since(g).replace('\n', ", ")),
                g.client.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                md_own(&g.fix, true)
            );
        }
        for g in &self.groups {
            let _ = writeln!(out, "\n## {}\n", md_escape(&cell(&g.label(), 120)));
            let _ = writeln!(
                out,
                "- principal: {}",
                md_escape(&cell(g.principal.as_deref().unwrap_or("unknown"), 300))
            );
            let _ = writeln!(
                out,
                "- account: {}",
                md_escape(&cell(g.account.as_deref().unwrap_or("unknown"), 40))
            );
            let _ = writeln!(
                out,
                "- failures: {} from {} to {}",
                g.failures, g.first_failure, g.last_failure
            );
            let _ = writeln!(
                out,
                "- credential source: {}; lease {} ({})",
                g.credential_source,
                g.lease_seconds
                    .map(|l| duration(l as i64))
                    .unwrap_or_else(|| "unknown".into()),
                g.lease_source.map(|s| s.as_str()).unwrap_or("unknown")
            );
            if let Some(i) = &g.incident {
                let _ = writeln!(out, "- incident: {}", i.describe());
            }
            let _ = writeln!(out, "\n{}", md_own(&g.remediation, false));
        }
        self.markdown_near_misses(&mut out);
        out
    }

    /// The near misses' section of the markdown, when there are any.
    fn markdown_near_misses(&self, out: &mut String) {
        if self.near_misses.is_empty() {
            return;
        }
        if !out.ends_with("\n\n") {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "## Near misses\n\n{}: sessions used after their client would have refreshed them. Nothing \
             failed yet; a longer run will.\n",
            near_miss_summary(&self.near_misses)
        );
        out.push_str("| group | how close | last use | client | times | fix |\n|---|---|---|---|---:|---|\n");
        for g in &self.near_misses.groups {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                md_escape(&cell(&g.label(), 80)),
                md_escape(&g.how_close),
                g.last_use_cell(),
                g.client,
                g.how_often(),
                md_own(&g.fix, true)
            );
        }
    }

    /// CSV for a spreadsheet: a header row and one row per group ([`CSV_COLUMNS`]), RFC 4180 (CRLF line
    /// ends; fields with a comma, quote, CR or LF quoted, quotes doubled). Unknowns are empty fields.
    ///
    /// Text that comes from events is defended against formula injection: a cell starting with `=`, `+`,
    /// `-`, `@`, tab or CR gets a leading `'`, so a spreadsheet shows it instead of evaluating it. Numbers
    /// (a negative age included) are written as they are.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        csv_row(&mut out, CSV_COLUMNS.iter().map(|c| (*c).to_owned()));
        for g in &self.groups {
            let text = |v: Option<&str>| v.map(csv_text).unwrap_or_default();
            let error_codes = g
                .error_codes
                .iter()
                .map(|(code, n)| format!("{code}={n}"))
                .collect::<Vec<_>>()
                .join(";");
            csv_row(
                &mut out,
                [
                    text(g.account.as_deref()),
                    text(g.principal.as_deref()),
                    text(g.session.as_deref()),
                    g.verdict.to_string(),
                    g.severity.to_string(),
                    g.failures.to_string(),
                    csv_text(&g.first_failure),
                    csv_text(&g.last_failure),
                    text(g.issued_at.as_deref()),
                    g.lease_seconds.map(|l| l.to_string()).unwrap_or_default(),
                    g.lease_source.map(|s| s.to_string()).unwrap_or_default(),
                    g.age_at_first_failure_seconds
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                    g.credential_source.to_string(),
                    g.client.map(|c| c.to_string()).unwrap_or_default(),
                    csv_text(&error_codes),
                    csv_text(&g.remediation),
                    text(g.incident.as_ref().map(|i| i.state)),
                    text(g.incident.as_ref().and_then(|i| i.resolved_at.as_deref())),
                    g.incident
                        .as_ref()
                        .and_then(|i| i.time_to_recover_seconds)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    text(g.next_expected_failure.as_deref()),
                ],
            );
        }
        // Near misses in the same columns: no failures, no failure times or age; the remediation starts
        // with how close it came.
        for g in &self.near_misses.groups {
            let text = |v: Option<&str>| v.map(csv_text).unwrap_or_default();
            csv_row(
                &mut out,
                [
                    text(g.account.as_deref()),
                    text(g.principal.as_deref()),
                    text(g.session.as_deref()),
                    g.verdict.to_string(),
                    g.severity.to_string(),
                    "0".to_owned(),
                    String::new(),
                    String::new(),
                    csv_text(&g.issued_at),
                    g.lease_seconds.to_string(),
                    g.lease_source.to_string(),
                    String::new(),
                    g.credential_source.to_string(),
                    g.client.to_string(),
                    String::new(),
                    csv_text(&format!("{}. {}", g.how_close, g.remediation)),
                    String::new(),
                    String::new(),
                    String::new(),
                    text(g.next_expected.as_deref()),
                ],
            );
        }
        out
    }
}

/// The columns of [`Document::to_csv`], in order.
pub const CSV_COLUMNS: [&str; 20] = [
    "account",
    "principal",
    "session",
    "verdict",
    "severity",
    "failures",
    "first_failure",
    "last_failure",
    "issued_at",
    "lease_seconds",
    "lease_source",
    "age_at_first_failure_seconds",
    "credential_source",
    "client",
    "error_codes",
    "remediation",
    "incident_state",
    "resolved_at",
    "time_to_recover_seconds",
    "next_expected_failure",
];

/// A text cell a spreadsheet must not evaluate: `=1+1`, `@SUM(…)`, `-2+3` become `'=1+1`, …; and one a
/// terminal showing the file must not obey: unsafe characters other than line breaks and tabs are
/// escaped ([`crate::text::lines`]).
fn csv_text(s: &str) -> String {
    let s = crate::text::lines(s);
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.into_owned()
    }
}

/// Appends one RFC 4180 record.
fn csv_row(out: &mut String, fields: impl IntoIterator<Item = String>) {
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if field.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&field);
        }
    }
    out.push_str("\r\n");
}

/// A document of `groups`, made at the example group's last failure.
#[cfg(test)]
pub(crate) fn test_document(records: u64, failures: u64, groups: Vec<Group>) -> Document {
    let mut d = Document::of(&Report::default(), Made::at(test_group().last));
    d.records = records;
    d.failures = failures;
    d.groups = groups;
    d
}

/// A stale-cache group like the one of `samples/01-assume-role-default-boto3`, for tests to vary.
#[cfg(test)]
pub(crate) fn test_group() -> Group {
    Group::of(&tokenwatch_core::finding::example_finding())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_written_a_group_at_a_time_is_the_document() {
        let mut findings: Vec<Finding> = (0..3)
            .map(|i| {
                let mut f = tokenwatch_core::finding::example_finding();
                f.key.session = Some(format!("nightly-etl-{}", 1_793_606_400 + i));
                f.failures += i as u64;
                f
            })
            .collect();
        findings[1].history = vec![IncidentBrief::started_at(findings[1].first_failure - 86_400)];
        let workloads = tokenwatch_core::workload::workloads(&mut findings);
        let report = Report {
            records: 115,
            failures: 21,
            skipped_records: 2,
            findings,
            workloads,
            near_misses: Default::default(),
        };
        let made = Made {
            at: test_group().last,
            window: Window {
                since: Some(test_group().first - 3600),
                until: None,
            },
        };
        let mut written = Vec::new();
        Document::write_json(&report, made, &mut written).unwrap();
        let whole = serde_json::to_string_pretty(&Document::of(&report, made)).unwrap();
        assert_eq!(String::from_utf8(written).unwrap(), whole);
        let empty = Report::default();
        let mut written = Vec::new();
        Document::write_json(&empty, made, &mut written).unwrap();
        assert_eq!(
            String::from_utf8(written).unwrap(),
            serde_json::to_string_pretty(&Document::of(&empty, made)).unwrap()
        );
    }

    #[test]
    fn a_state_table_report_shows_incidents_and_no_record_count() {
        let mut g = test_group();
        g.incident = Some(Incident {
            id: "x@1".into(),
            state: "resolved",
            opened_at: "2026-11-02T09:00:14Z".into(),
            resolved_at: Some("2026-11-02T10:31:40Z".into()),
            time_to_recover_seconds: Some(5486),
            paged: Some(Severity::High),
            incidents_seen: 3,
            recurs_every_seconds: Some(86_400),
            next_expected_failure: Some("2026-11-05T09:00:14Z".into()),
        });
        let table_report = crate::report::test_document(0, 6, vec![g]);
        let table = table_report.to_table(WIDE);
        assert!(
            table.contains("RECOVERED IN") && table.contains("1h31m26s"),
            "{table}"
        );
        assert!(table.contains("2026-11-05 09:00Z"), "{table}");
        assert!(table.contains("resolved after 1h31m26s"), "{table}");
        assert!(
            table.ends_with("6 expired-credential failures in 1 groups\n"),
            "{table}"
        );
        let md = table_report.to_markdown();
        assert!(md.contains("- incident: resolved after 1h31m26s"), "{md}");
        assert!(md.contains("next failure expected 2026-11-05T09:00:14Z"), "{md}");

        let analyzed = crate::report::test_document(115, 6, vec![test_group()]);
        assert!(!analyzed.to_table(WIDE).contains("RECOVERED IN"));
        assert!(
            analyzed
                .to_table(WIDE)
                .contains("115 records, 6 expired-credential failures")
        );
    }

    const WIDE: Layout = Layout {
        width: 200,
        color: false,
    };

    #[test]
    fn the_table_fits_the_width_and_wraps_the_fix_in_its_cell() {
        let mut js = test_group();
        js.fix = tokenwatch_core::remediation::remediation(
            Verdict::StaleCache,
            CredentialSource::AssumeRole,
            Some(Client::JsV3),
        )
        .fix;
        js.session = Some("a-very-long-session-name-for-a-batch-job-that-runs-nightly".into());
        let d = test_document(10, 12, vec![test_group(), js.clone()]);
        for width in [60, 80, 100, 120, 160, 240] {
            let t = d.to_table(Layout { width, color: false });
            for line in t.lines() {
                assert!(crate::table::width(line) <= width, "at {width}: {line:?}\n{t}");
            }
            let fixes = fix_cells(&t);
            assert_eq!(fixes.len(), 2, "at {width}:\n{t}");
            assert_eq!(fixes[0], "Let botocore refresh the role");
            assert_eq!(
                fixes[1], &*js.fix,
                "at {width} the fix reads whole, in its cell:\n{t}"
            );
        }
    }

    /// The fix of each row, its wrapped lines joined: from the FIX column, or from the `fix:` line under
    /// each row.
    fn fix_cells(table: &str) -> Vec<String> {
        let lines: Vec<&str> = table.lines().take_while(|l| !l.is_empty()).collect();
        let mut fixes: Vec<String> = Vec::new();
        if let Some(at) = lines[0].find("FIX") {
            for l in &lines[1..] {
                let cell = l.get(at..).unwrap_or("").trim();
                // A new row starts where the first column has text.
                if !l.starts_with(' ') {
                    fixes.push(cell.to_owned());
                } else if !cell.is_empty() {
                    let last = fixes.last_mut().unwrap();
                    last.push(' ');
                    last.push_str(cell);
                }
            }
        } else {
            let mut hang = 0;
            for l in &lines[1..] {
                if let Some(at) = l.find("fix: ").filter(|_| l.trim_start().starts_with("fix: ")) {
                    hang = at + "fix: ".len();
                    fixes.push(l[hang..].to_owned());
                } else if hang > 0 && l.len() > hang && l[..hang].trim().is_empty() {
                    let last = fixes.last_mut().unwrap();
                    last.push(' ');
                    last.push_str(&l[hang..]);
                } else {
                    hang = 0;
                }
            }
        }
        fixes
    }

    #[test]
    fn an_account_column_appears_only_when_accounts_differ() {
        let one = test_document(10, 12, vec![test_group(), test_group()]);
        assert!(!one.to_table(WIDE).contains("ACCOUNT"));
        let mut other = test_group();
        other.account = Some("210987654321".into());
        let two = test_document(10, 12, vec![test_group(), other]);
        let t = two.to_table(WIDE);
        assert!(t.contains("ACCOUNT") && t.contains("210987654321"), "{t}");
    }

    #[test]
    fn since_says_still_failing_only_when_the_last_failure_is_recent() {
        let g = test_group();
        let mut recent = test_document(10, 6, vec![g.clone()]);
        recent.generated = g.last + 600;
        assert!(
            recent.to_table(WIDE).contains("still failing"),
            "{}",
            recent.to_table(WIDE)
        );
        let mut old = recent.clone();
        old.generated = g.last + STILL_FAILING + 1;
        let t = old.to_table(WIDE);
        assert!(!t.contains("still failing") && t.contains("last 09:31Z"), "{t}");
        assert!(t.contains("2026-11-02 09:00Z"), "{t}");
    }

    #[test]
    fn severity_is_coloured_only_when_asked() {
        let d = test_document(10, 6, vec![test_group()]);
        assert!(!d.to_table(WIDE).contains('\x1b'));
        let coloured = d.to_table(Layout {
            width: 200,
            color: true,
        });
        assert!(coloured.contains("\x1b[1;31mhigh\x1b[0m"), "{coloured}");
    }

    #[test]
    fn markdown_keeps_the_tools_code_spans_and_escapes_event_values() {
        let mut g = test_group();
        g.session = Some("`evil`|*x*".into());
        let md = test_document(10, 6, vec![g]).to_markdown();
        assert!(md.contains("configure `role_arn` + `source_profile`"), "{md}");
        assert!(!md.contains("\\`role_arn"), "{md}");
        assert!(md.contains("\\`evil\\`\\|\\*x\\*"), "{md}");
        let header = md.lines().find(|l| l.starts_with("| group")).unwrap();
        assert!(header.ends_with("| fix |"), "{header}");
        assert!(md.contains("| Let botocore refresh the role |"), "{md}");
        assert_eq!(md_own("a `b|c` d `e", true), "a `b\\|c` d \\`e");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(3614), "1h00m14s");
        assert_eq!(duration(900), "15m");
        assert_eq!(duration(43_200), "12h");
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(-30), "-30s");
        assert_eq!(duration(5400), "1h30m");
    }

    #[test]
    fn cells_stay_on_one_line_and_bounded() {
        assert_eq!(cell("a\nb\x1bc", 20), "a\\nb\\u{1b}c");
        assert_eq!(cell(&"x".repeat(50), 10).chars().count(), 10);
    }

    /// RFC 4180 read back: quoted fields may hold commas, doubled quotes and line breaks.
    fn parse_csv(text: &str) -> Vec<Vec<String>> {
        let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') if field.is_empty() => quoted = true,
                (false, ',') => row.push(std::mem::take(&mut field)),
                (false, '\r') if chars.peek() == Some(&'\n') => {
                    chars.next();
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                (false, c) => {
                    assert!(c != '\r' && c != '\n', "a bare line break outside quotes");
                    field.push(c);
                }
            }
        }
        assert!(
            !quoted && field.is_empty() && row.is_empty(),
            "the last record must end with CRLF"
        );
        rows
    }

    fn hostile_report() -> Document {
        let mut quoting = test_group();
        quoting.principal = Some("arn:aws:iam::123456789012:role/a,b".into());
        quoting.session = Some("say \"hi\"\r\nnext line".into());
        let mut formulas = test_group();
        formulas.account = Some("=1+1".into());
        formulas.principal = Some("@SUM(A1:A9)".into());
        formulas.session = Some("+cmd|' /C calc'!A0".into());
        formulas.error_codes = BTreeMap::from([("-2+3".into(), 1)]);
        formulas.age_at_first_failure_seconds = Some(-30);
        let mut tabbed = test_group();
        tabbed.session = Some("\t=HYPERLINK(\"http://x\")".into());
        tabbed.principal = Some("\r\n=2".into());
        tabbed.account = Some("\r=3".into());
        tabbed.issued_at = None;
        tabbed.lease_seconds = None;
        tabbed.lease_source = None;
        tabbed.age_at_first_failure_seconds = None;
        tabbed.client = None;
        crate::report::test_document(9, 3, vec![quoting, formulas, tabbed])
    }

    #[test]
    fn csv_has_a_header_and_one_row_per_group_that_parse_back() {
        let rows = parse_csv(&hostile_report().to_csv());
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0], CSV_COLUMNS);
        for row in &rows {
            assert_eq!(row.len(), CSV_COLUMNS.len(), "{row:?}");
        }
        let col = |name: &str| CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
        let first = &rows[1];
        assert_eq!(first[col("principal")], "arn:aws:iam::123456789012:role/a,b");
        assert_eq!(first[col("session")], "say \"hi\"\r\nnext line");
        assert_eq!(
            first[col("error_codes")],
            "ExpiredToken=4;ExpiredTokenException=2"
        );
        assert_eq!(first[col("lease_seconds")], "3600");
        assert_eq!(first[col("verdict")], "stale-cache");
        assert_eq!(first[col("remediation")], test_group().remediation);
    }

    #[test]
    fn csv_quotes_what_rfc_4180_says_and_nothing_else() {
        let csv = hostile_report().to_csv();
        assert!(csv.contains(",\"arn:aws:iam::123456789012:role/a,b\","));
        assert!(csv.contains(",\"say \"\"hi\"\"\r\nnext line\","));
        assert!(csv.starts_with("account,principal,session,verdict,severity,failures,first_failure,"));
        assert!(csv.contains(",stale-cache,high,6,2026-11-02T09:00:14Z,2026-11-02T09:31:40Z,"));
        assert!(csv.ends_with("\r\n") && !csv.ends_with("\r\n\r\n"));
    }

    #[test]
    fn csv_cells_from_events_cannot_become_formulas() {
        let rows = parse_csv(&hostile_report().to_csv());
        let col = |name: &str| CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
        let formulas = &rows[2];
        assert_eq!(formulas[col("account")], "'=1+1");
        assert_eq!(formulas[col("principal")], "'@SUM(A1:A9)");
        assert_eq!(formulas[col("session")], "'+cmd|' /C calc'!A0");
        assert_eq!(formulas[col("error_codes")], "'-2+3=1");
        // A number stays a number.
        assert_eq!(formulas[col("age_at_first_failure_seconds")], "-30");
        let tabbed = &rows[3];
        assert_eq!(tabbed[col("session")], "'\t=HYPERLINK(\"http://x\")");
        assert_eq!(tabbed[col("principal")], "'\r\n=2");
        // A lone CR is escaped (it would overwrite the line on a terminal), which disarms it too.
        assert_eq!(tabbed[col("account")], "\\r=3");
        for unknown in [
            "issued_at",
            "lease_seconds",
            "lease_source",
            "age_at_first_failure_seconds",
            "client",
        ] {
            assert_eq!(tabbed[col(unknown)], "", "{unknown}");
        }
    }

    #[test]
    fn csv_of_an_empty_report_is_its_header() {
        let empty = crate::report::test_document(0, 0, vec![]);
        assert_eq!(empty.to_csv(), CSV_COLUMNS.join(",") + "\r\n");
    }
}
