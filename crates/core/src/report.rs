//! The report document of SPEC.md and the ways it is shown: JSON, a terminal table, markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::model::{Client, CredentialSource, LeaseSource, Severity, Verdict};
use crate::remediation::one_line;

/// `tokenwatch analyze --format json`: field names and order are SPEC.md's.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Records read, duplicates included.
    pub records: u64,
    /// Expiry-family failures, each eventID once.
    pub failures: u64,
    /// Records that could not be used (no time, not JSON), included in `records`.
    pub skipped_records: u64,
    /// Failures grouped by account + principal + session, most severe first.
    pub groups: Vec<Group>,
}

/// One account + principal + session and what its failures say. Unknowns are `null`, never omitted.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct Group {
    pub account: Option<String>,
    pub principal: Option<String>,
    pub session: Option<String>,
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
    pub credential_source: CredentialSource,
    pub client: Option<Client>,
    pub error_codes: BTreeMap<String, u64>,
    pub event_names: BTreeMap<String, u64>,
    pub source_ips: Vec<String>,
    pub remediation: String,
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

/// Keeps table cells on one line and bounded: control characters become spaces.
fn cell(s: &str, max: usize) -> String {
    let clean: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.chars().count() <= max {
        clean
    } else {
        let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

impl Report {
    /// A table for a terminal: one line per group with its one-line fix.
    pub fn to_table(&self) -> String {
        let headers = [
            "GROUP",
            "VERDICT",
            "SEVERITY",
            "FAILURES",
            "AGE / LEASE",
            "CLIENT",
            "FIX",
        ];
        let rows: Vec<[String; 7]> = self
            .groups
            .iter()
            .map(|g| {
                [
                    cell(&g.label(), 48),
                    g.verdict.to_string(),
                    g.severity.to_string(),
                    g.failures.to_string(),
                    g.age_against_lease(),
                    g.client.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    cell(one_line(&g.remediation), 100),
                ]
            })
            .collect();
        let mut widths = headers.map(|h| h.chars().count());
        for row in &rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[&str]| {
            let mut l = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(c);
                } else {
                    let _ = write!(l, "{c:<w$}  ", w = widths[i]);
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&mut out, &headers);
        for row in &rows {
            line(&mut out, &row.each_ref().map(String::as_str));
        }
        let _ = writeln!(
            out,
            "\n{} records, {} expired-credential failures in {} groups{}",
            self.records,
            self.failures,
            self.groups.len(),
            if self.skipped_records > 0 {
                format!(", {} records skipped", self.skipped_records)
            } else {
                String::new()
            }
        );
        out
    }

    /// Markdown: a summary table and a section per group with its remediation.
    pub fn to_markdown(&self) -> String {
        let md = |s: &str, max: usize| -> String {
            let mut escaped = String::new();
            for c in cell(s, max).chars() {
                if matches!(
                    c,
                    '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '!'
                ) {
                    escaped.push('\\');
                }
                escaped.push(c);
            }
            escaped
        };
        let mut out = String::from("# tokenwatch report\n\n");
        let _ = writeln!(
            out,
            "{} records, {} expired-credential failures in {} groups.\n",
            self.records,
            self.failures,
            self.groups.len()
        );
        if self.groups.is_empty() {
            return out;
        }
        out.push_str(
            "| group | verdict | severity | failures | age / lease | client |\n|---|---|---|---:|---|---|\n",
        );
        for g in &self.groups {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                md(&g.label(), 80),
                g.verdict,
                g.severity,
                g.failures,
                g.age_against_lease(),
                g.client.map(|c| c.to_string()).unwrap_or_else(|| "-".into())
            );
        }
        for g in &self.groups {
            let _ = writeln!(out, "\n## {}\n", md(&g.label(), 120));
            let _ = writeln!(
                out,
                "- principal: {}",
                md(g.principal.as_deref().unwrap_or("unknown"), 300)
            );
            let _ = writeln!(
                out,
                "- account: {}",
                md(g.account.as_deref().unwrap_or("unknown"), 40)
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
            let _ = writeln!(out, "\n{}", md(&g.remediation, 2000));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(cell("a\nb\x1bc", 10), "a b c");
        assert_eq!(cell(&"x".repeat(50), 10).chars().count(), 10);
    }
}
