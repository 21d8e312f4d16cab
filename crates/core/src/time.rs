//! Lenient timestamps: every form CloudTrail is known to write, to whole seconds since the epoch.

use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use regex::{Regex, RegexBuilder};

/// Seconds since 1970-01-01T00:00:00Z.
pub type Epoch = i64;

/// `responseElements.credentials.expiration`: `Nov 29, 2018 4:31:59 AM` (≤ 2021) or
/// `Oct 25, 2023, 2:21:21 AM` (2023 on), implicitly UTC, hour and day not zero-padded.
static US_DATE: LazyLock<Regex> = LazyLock::new(|| {
    RegexBuilder::new(
        r"^([A-Za-z]{3})[a-z]*\.?\s+(\d{1,2}),\s*(\d{4}),?\s+(\d{1,2}):(\d{2}):(\d{2})\s*([AaPp])\.?[Mm]\.?$",
    )
    .unicode(false)
    .build()
    .expect("valid regex")
});

/// Parses a CloudTrail timestamp in any of the forms seen in real records: ISO-8601 with a zone,
/// ISO-8601 with stray spaces (`2021-02-21T23: 46: 28Z`), basic format (`20131102T010628Z`),
/// zone-less ISO or space-separated forms (taken as UTC), and the US form of STS `expiration`.
pub fn parse_time(raw: &str) -> Option<Epoch> {
    let s = raw.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp());
    }
    // Narrow and ordinary no-break spaces appear where locale formatting is involved.
    let s: String = s
        .chars()
        .map(|c| if c == '\u{202f}' || c == '\u{a0}' { ' ' } else { c })
        .collect();
    if let Some(t) = parse_us_form(&s) {
        return Some(t);
    }
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if let Ok(t) = DateTime::parse_from_rfc3339(&compact) {
        return Some(t.timestamp());
    }
    const NAIVE_FORMS: [&str; 4] = [
        "%Y%m%dT%H%M%SZ",
        "%Y%m%dT%H%M%S",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.fZ",
    ];
    for form in NAIVE_FORMS {
        if let Ok(t) = NaiveDateTime::parse_from_str(&compact, form) {
            return Some(t.and_utc().timestamp());
        }
    }
    NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

fn parse_us_form(s: &str) -> Option<Epoch> {
    let c = US_DATE.captures(s)?;
    let month = match c[1].to_ascii_lowercase().as_str() {
        "jan" => 1,
        "feb" => 2,
        "mar" => 3,
        "apr" => 4,
        "may" => 5,
        "jun" => 6,
        "jul" => 7,
        "aug" => 8,
        "sep" => 9,
        "oct" => 10,
        "nov" => 11,
        "dec" => 12,
        _ => return None,
    };
    let day: u32 = c[2].parse().ok()?;
    let year: i32 = c[3].parse().ok()?;
    let hour12: u32 = c[4].parse().ok()?;
    let minute: u32 = c[5].parse().ok()?;
    let second: u32 = c[6].parse().ok()?;
    if hour12 > 12 {
        return None;
    }
    let pm = c[7].eq_ignore_ascii_case("p");
    // "12:xx AM" is just after midnight; a synthetic "0:xx PM" is read as noon.
    let hour = match (hour12 % 12, pm) {
        (h, false) => h,
        (h, true) => h + 12,
    };
    let t = NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(hour, minute, second)?;
    Some(t.and_utc().timestamp())
}

/// Formats as CloudTrail does: `2026-11-02T09:00:14Z`.
pub fn format_time(t: Epoch) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.to_string())
}

/// Parses a `--since`/`--until` bound: an absolute timestamp (any form [`parse_time`] takes, or a
/// bare date `2026-11-02`), or a span back from `now` such as `90m`, `24h`, `7d`, `2w`.
pub fn parse_bound(raw: &str, now: Epoch) -> Option<Epoch> {
    parse_instant(raw).or_else(|| parse_span(raw).and_then(|span| now.checked_sub(span)))
}

/// An absolute bound: any form [`parse_time`] takes, or a bare date `2026-11-02` (its midnight, UTC).
pub fn parse_instant(raw: &str) -> Option<Epoch> {
    let s = raw.trim();
    if let Some(t) = parse_time(s) {
        return Some(t);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()?
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
}

/// A span in seconds: `90m`, `24h`, `7d`, `2w`, `30s`.
pub fn parse_span(raw: &str) -> Option<Epoch> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok()?;
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(unit_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Epoch = 1_793_610_014; // 2026-11-02T09:00:14Z

    #[test]
    fn reads_iso_with_and_without_millis() {
        assert_eq!(parse_time("2026-11-02T09:00:14Z"), Some(T));
        assert_eq!(parse_time("2026-11-02T09:00:14.000Z"), Some(T));
        assert_eq!(parse_time("2026-11-02T10:00:14+01:00"), Some(T));
    }

    #[test]
    fn reads_the_forms_seen_in_aws_documentation() {
        assert_eq!(parse_time("20261102T090014Z"), Some(T));
        assert_eq!(parse_time("2026-11-02T09: 00: 14Z"), Some(T));
        assert_eq!(parse_time("2026-11-02 09:00:14.000000000"), Some(T));
    }

    #[test]
    fn reads_both_expiration_forms() {
        assert_eq!(parse_time("Nov 2, 2026 9:00:14 AM"), Some(T));
        assert_eq!(parse_time("Nov 2, 2026, 9:00:14 AM"), Some(T));
        assert_eq!(parse_time("Nov 02, 2026, 9:00:14\u{202f}AM"), Some(T));
        assert_eq!(
            parse_time("Nov 2, 2026, 12:00:00 AM"),
            parse_time("2026-11-02T00:00:00Z")
        );
        assert_eq!(
            parse_time("Nov 2, 2026, 12:30:00 PM"),
            parse_time("2026-11-02T12:30:00Z")
        );
        assert_eq!(
            parse_time("Nov 2, 2026, 1:30:00 PM"),
            parse_time("2026-11-02T13:30:00Z")
        );
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for bad in [
            "",
            "yesterday",
            "Nov 31, 2026, 1:00:00 PM",
            "Nov 2, 2026, 13:00:00 PM",
            "2026-13-01T00:00:00Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_as_cloudtrail_does() {
        assert_eq!(format_time(T), "2026-11-02T09:00:14Z");
    }

    #[test]
    fn bounds_are_absolute_or_relative_to_now() {
        assert_eq!(parse_bound("24h", T), Some(T - 86_400));
        assert_eq!(parse_bound("7d", T), Some(T - 7 * 86_400));
        assert_eq!(parse_bound("2026-11-02", T), parse_time("2026-11-02T00:00:00Z"));
        assert_eq!(parse_bound("2026-11-02T09:00:14Z", 0), Some(T));
        assert_eq!(parse_bound("soon", T), None);
        assert_eq!(parse_bound("5y", T), None);
    }
}
