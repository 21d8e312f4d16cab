//! The report's near misses (docs/rules.md, "Near misses"): sessions that signed calls after their own
//! client's provider would have refreshed them, and did not fail. The document carries them in a
//! `near_misses` section after the groups, left out when there is none (so a report without near misses is
//! what it was before they were reported); every format shows them after the failures.

use serde::Serialize;
use tokenwatch_core::model::{Client, CredentialSource, LeaseSource, Severity, Verdict};
use tokenwatch_core::nearmiss::{NearMissGroup, NearMissWorkload, NearMisses, Occurrence};
use tokenwatch_core::remediation::remediation;
use tokenwatch_core::time::format_time;

use crate::report::{duration, short_time};

/// The document's `near_misses`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NearMissSection {
    /// The near misses' workloads (account + principal + session pattern), most near misses first.
    pub workloads: Vec<NearMissWorkloadEntry>,
    /// Near misses grouped by account + principal + session, described by the latest.
    pub groups: Vec<NearMissEntry>,
}

impl NearMissSection {
    /// The section of a report's near misses.
    pub fn of(n: &NearMisses) -> NearMissSection {
        NearMissSection {
            workloads: n.workloads.iter().map(NearMissWorkloadEntry::of).collect(),
            groups: n.groups.iter().map(NearMissEntry::of).collect(),
        }
    }

    /// No near miss.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// One workload of near misses.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct NearMissWorkloadEntry {
    pub account: Option<String>,
    pub principal: Option<String>,
    pub session_pattern: Option<String>,
    pub groups: usize,
    pub sessions: Vec<String>,
    /// Near misses (sessions) of its groups.
    pub near_misses: u64,
    pub first_near_miss: String,
    pub last_near_miss: String,
    pub closest_seconds_before_expiry: i64,
}

impl NearMissWorkloadEntry {
    fn of(w: &NearMissWorkload) -> NearMissWorkloadEntry {
        NearMissWorkloadEntry {
            account: w.account.clone(),
            principal: w.principal.clone(),
            session_pattern: w.session_pattern.clone(),
            groups: w.groups,
            sessions: w.sessions.clone(),
            near_misses: w.near_misses,
            first_near_miss: format_time(w.first_near_miss),
            last_near_miss: format_time(w.last_near_miss),
            closest_seconds_before_expiry: w.closest_seconds_before_expiry,
        }
    }
}

/// One group of near misses: its latest session's, with the earlier ones listed.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct NearMissEntry {
    pub account: Option<String>,
    pub principal: Option<String>,
    pub session: Option<String>,
    pub workload: Option<String>,
    /// Always `near-miss`.
    pub verdict: Verdict,
    /// Always `low`.
    pub severity: Severity,
    /// How close it came, in words.
    pub how_close: String,
    pub seconds_before_expiry: i64,
    pub last_use: String,
    pub issued_at: String,
    pub lease_end: String,
    pub lease_seconds: u64,
    pub lease_source: LeaseSource,
    pub credential_source: CredentialSource,
    pub client: Client,
    /// The provider whose window was missed, and its window in seconds before the lease end.
    pub refresh_provider: &'static str,
    pub refresh_from_seconds: i64,
    pub refresh_by_seconds: i64,
    pub access_key_id: String,
    /// Near misses (sessions) of the group.
    pub near_misses: u64,
    /// The earliest one's last use.
    pub first_near_miss: String,
    /// Each, oldest first (the latest 20).
    pub near_miss_list: Vec<NearMissOccurrence>,
    /// The interval they recur at, when three or more come evenly spaced.
    pub recurs_every_seconds: Option<i64>,
    /// When the next is expected, for a group that recurs.
    pub next_expected: Option<String>,
    pub remediation: String,
    /// The one-line fix.
    #[serde(skip)]
    pub fix: String,
}

/// One session's near miss.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct NearMissOccurrence {
    pub access_key_id: String,
    pub issued_at: String,
    pub last_use: String,
    pub seconds_before_expiry: i64,
}

impl NearMissOccurrence {
    fn of(o: &Occurrence) -> NearMissOccurrence {
        NearMissOccurrence {
            access_key_id: o.access_key_id.clone(),
            issued_at: format_time(o.issued_at),
            last_use: format_time(o.last_use),
            seconds_before_expiry: o.near_miss.seconds_before_expiry,
        }
    }
}

impl NearMissEntry {
    fn of(g: &NearMissGroup) -> NearMissEntry {
        let fix = remediation(Verdict::NearMiss, g.credential_source, Some(g.client));
        let window = g.latest.near_miss.window;
        NearMissEntry {
            account: g.account.clone(),
            principal: g.principal.clone(),
            session: g.session.clone(),
            workload: g.workload.clone(),
            verdict: g.verdict,
            severity: g.severity,
            how_close: g.describe(),
            seconds_before_expiry: g.latest.near_miss.seconds_before_expiry,
            last_use: format_time(g.latest.last_use),
            issued_at: format_time(g.latest.issued_at),
            lease_end: format_time(g.latest.lease_end),
            lease_seconds: g.lease.seconds,
            lease_source: g.lease.source,
            credential_source: g.credential_source,
            client: g.client,
            refresh_provider: window.provider,
            refresh_from_seconds: window.from,
            refresh_by_seconds: window.by,
            access_key_id: g.latest.access_key_id.clone(),
            near_misses: g.count,
            first_near_miss: format_time(g.first),
            near_miss_list: g.occurrences.iter().map(NearMissOccurrence::of).collect(),
            recurs_every_seconds: g.recurrence.map(|r| r.every_seconds),
            next_expected: g
                .recurrence
                .and_then(|r| r.next_expected_failure)
                .map(format_time),
            remediation: fix.to_string(),
            fix: fix.fix.to_string(),
        }
    }

    /// `role/session` for people.
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

    /// How often, for tables: "1", "2 since 2026-11-21", "3 since 2026-11-21, every 1d".
    pub fn how_often(&self) -> String {
        let since = self.first_near_miss.get(..10).unwrap_or_default();
        match (self.near_misses, self.recurs_every_seconds) {
            (1, _) => "1".to_owned(),
            (n, None) => format!("{n} since {since}"),
            (n, Some(every)) => format!("{n} since {since}, every {}", duration(every)),
        }
    }

    /// The TIMES cell of a table: "1", "2", "3\nevery 24h".
    pub fn times(&self) -> String {
        match self.recurs_every_seconds {
            Some(every) => format!("{}\nevery {}", self.near_misses, duration(every)),
            None => self.near_misses.to_string(),
        }
    }

    /// The LAST USE cell.
    pub fn last_use_cell(&self) -> String {
        short_time(&self.last_use)
    }
}

/// "2 near misses in 1 group" for a summary line.
pub fn summary(section: &NearMissSection) -> String {
    let n: u64 = section.groups.iter().map(|g| g.near_misses).sum();
    let groups = section.groups.len();
    format!(
        "{n} near miss{} in {groups} group{}",
        if n == 1 { "" } else { "es" },
        if groups == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use tokenwatch_core::Analyzer;

    use crate::table::{Layout, width};
    use crate::{Document, Made};

    fn call(key: &str, session: &str, time: &str) -> String {
        format!(
            r#"{{"userIdentity":{{"type":"AssumedRole","arn":"arn:aws:sts::123456789012:assumed-role/etl-role/{session}",
            "accountId":"123456789012","accessKeyId":"{key}","sessionContext":{{"attributes":{{
            "creationDate":"2026-11-02T08:00:00Z"}}}}}},"eventTime":"{time}","eventSource":"s3.amazonaws.com",
            "eventName":"ListBuckets","eventID":"{key}{time}","userAgent":"Boto3/1.34.0 Botocore/1.34.0"}}"#
        )
    }

    fn report(values: &[String]) -> tokenwatch_core::Report {
        let mut a = Analyzer::default();
        for v in values {
            a.feed_value(v.as_bytes());
        }
        a.report()
    }

    const AT: i64 = 1_796_083_200;

    #[test]
    fn a_report_with_a_near_miss_shows_it_in_every_format_after_the_failures() {
        let r = report(&[call("ASIARENDER1EXAMPLE", "nightly-etl", "2026-11-02T08:59:18Z")]);
        let doc = Document::of(&r, Made::at(AT));
        let json = serde_json::to_value(&doc).unwrap();
        let g = &json["near_misses"]["groups"][0];
        assert_eq!(g["verdict"], "near-miss");
        assert_eq!(g["severity"], "low");
        assert_eq!(
            g["how_close"],
            "used 42 s before expiry; botocore refreshes 10–15 min before"
        );
        assert_eq!(json["near_misses"]["workloads"][0]["near_misses"], 1);
        let mut streamed = Vec::new();
        Document::write_json(&r, Made::at(AT), &mut streamed).unwrap();
        assert_eq!(
            String::from_utf8(streamed).unwrap(),
            serde_json::to_string_pretty(&doc).unwrap()
        );

        let table = doc.to_table(Layout {
            width: 80,
            color: false,
        });
        assert!(table.contains("Near misses"), "{table}");
        assert!(table.lines().all(|l| width(l) <= 80), "{table}");
        assert!(table.ends_with(" groups\n1 near miss in 1 group\n"), "{table}");
        let md = doc.to_markdown();
        assert!(md.contains("\n## Near misses\n"), "{md}");
        assert!(
            md.contains("| etl-role/nightly-etl | used 42 s before expiry;"),
            "{md}"
        );
        let csv = doc.to_csv();
        let row = csv.lines().nth(1).expect("a near-miss row");
        assert!(
            row.starts_with(
                "123456789012,arn:aws:iam::123456789012:role/etl-role,nightly-etl,near-miss,low,0,,,"
            ),
            "{row}"
        );
        let html = doc.to_html();
        assert!(html.contains("<h2>Near misses</h2>"));
        assert!(html.contains("used 42 s before expiry"));
    }

    #[test]
    fn a_report_without_near_misses_has_no_section() {
        let r = report(&[call("ASIARENDER2EXAMPLE", "nightly-etl", "2026-11-02T08:30:00Z")]);
        let doc = Document::of(&r, Made::at(AT));
        let json = serde_json::to_value(&doc).unwrap();
        assert!(json.get("near_misses").is_none(), "{json}");
        assert!(!doc.to_markdown().contains("Near misses"));
        assert!(!doc.to_html().contains("Near misses"));
        assert_eq!(doc.to_csv().lines().count(), 1);
        let table = doc.to_table(Layout {
            width: 80,
            color: false,
        });
        assert!(!table.contains("near miss"), "{table}");
    }
}
