//! The live scan's window: which of a trail's log files a scheduled scan reads.
//!
//! A scheduled scan looks for what CloudTrail recorded but EventBridge may never have delivered (near
//! misses, failures lost in delivery) in the trail's recent log files only. A file's name carries the
//! time it was delivered (`ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHmmZ_UNIQUE.json.gz`, docs/cloudtrail.md,
//! "Trail log files"), so the scan can skip older files by name, without downloading them, and list only
//! the day folders its window touches (today's, and yesterday's when the window crosses midnight UTC).
//!
//! Nothing here reads a clock: `now` comes from the caller, so a test can place the window anywhere.

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::time::Epoch;

/// How far back a scheduled scan reads by default: two hours, so that a scan every 15 minutes sees each
/// file several times even when CloudTrail delivers late, and a missed run or two loses nothing.
pub const DEFAULT_SPAN: Epoch = 2 * 3600;

/// Files delivered up to this far after `now` are still read: the scanner's clock and S3's may disagree
/// by a little, and reading a file early is harmless (a later run reads it again and adds nothing).
const CLOCK_SLACK: Epoch = 5 * 60;

/// The delivery time written in a trail log file's name, or `None` when the key is not named as
/// CloudTrail names its log files.
pub fn delivered_at(key: &str) -> Option<Epoch> {
    let name = key.rsplit('/').next()?;
    // `ACCOUNT_CloudTrail_REGION_STAMP_UNIQUE.json.gz`: the stamp is the field after the region, and
    // neither the account, the region nor the unique part holds an underscore.
    let mut fields = name.split('_');
    let _account = fields.next()?;
    if fields.next()? != "CloudTrail" {
        return None;
    }
    let _region = fields.next()?;
    let stamp = fields.next()?;
    fields.next()?;
    if stamp.len() != 14 {
        return None;
    }
    NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%MZ")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

/// The files a scan run at `now` reads: those delivered within `span` seconds before `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveWindow {
    /// The oldest delivery time read.
    pub from: Epoch,
    /// The newest delivery time read (`now` plus a little slack for clocks).
    pub to: Epoch,
}

impl LiveWindow {
    /// The window of a run at `now` reading `span` seconds back (at least a minute, the resolution of
    /// the names' stamps).
    pub fn new(now: Epoch, span: Epoch) -> Self {
        let span = span.max(60);
        // Stamps are whole minutes: a file stamped in the minute the window opens is read.
        let from = (now - span).div_euclid(60) * 60;
        LiveWindow {
            from,
            to: now + CLOCK_SLACK,
        }
    }

    /// Whether the scan reads `key`: a log file delivered within the window. A key whose name carries
    /// no delivery time is not read, since the scan cannot tell it is recent.
    pub fn reads(&self, key: &str) -> bool {
        delivered_at(key).is_some_and(|t| (self.from..=self.to).contains(&t))
    }

    /// The day folders (`YYYY/MM/DD/`, below a region's folder) the window touches, oldest first.
    pub fn days(&self) -> Vec<String> {
        let mut days = Vec::new();
        let first = self.from.div_euclid(86_400);
        let last = self.to.div_euclid(86_400);
        for day in first..=last {
            if let Some(d) = DateTime::<Utc>::from_timestamp(day * 86_400, 0) {
                days.push(d.format("%Y/%m/%d/").to_string());
            }
        }
        days
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_time;

    fn at(s: &str) -> Epoch {
        parse_time(s).expect("a time")
    }

    fn key(stamp: &str) -> String {
        format!(
            "logs/AWSLogs/111122223333/CloudTrail/us-east-1/{}/{}/{}/111122223333_CloudTrail_us-east-1_{stamp}_AbCdEfGh12345678.json.gz",
            &stamp[0..4],
            &stamp[4..6],
            &stamp[6..8]
        )
    }

    #[test]
    fn a_log_files_name_gives_its_delivery_time() {
        assert_eq!(
            delivered_at(&key("20261204T1935Z")),
            Some(at("2026-12-04T19:35:00Z"))
        );
        // An organization trail's key has one more folder; the name is the same.
        assert_eq!(
            delivered_at(
                "AWSLogs/o-abc123/111122223333/CloudTrail/eu-west-1/2026/12/04/111122223333_CloudTrail_eu-west-1_20261204T0005Z_x1.json.gz"
            ),
            Some(at("2026-12-04T00:05:00Z"))
        );
    }

    #[test]
    fn a_key_not_named_as_a_log_file_has_no_delivery_time() {
        for k in [
            "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/12/04/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20261204T1935Z.json.gz",
            "AWSLogs/111122223333/CloudTrail/us-east-1/2026/12/04/notes.txt",
            "111122223333_CloudTrail_us-east-1_2026120T1935Z_x.json.gz",
            "111122223333_CloudTrail_us-east-1_20261304T1935Z_x.json.gz",
            "111122223333_CloudTrail_us-east-1_20261204T1935Z",
            "",
        ] {
            assert_eq!(delivered_at(k), None, "{k}");
        }
    }

    #[test]
    fn the_window_reads_files_of_the_last_two_hours_and_not_older_ones() {
        let w = LiveWindow::new(at("2026-12-04T19:40:30Z"), DEFAULT_SPAN);
        assert!(w.reads(&key("20261204T1935Z")));
        assert!(w.reads(&key("20261204T1740Z")), "the minute the window opens");
        assert!(!w.reads(&key("20261204T1739Z")), "a minute older than two hours");
        assert!(!w.reads(&key("20261203T1935Z")), "yesterday's file");
        assert!(
            w.reads(&key("20261204T1944Z")),
            "a little ahead of the scanner's clock"
        );
        assert!(!w.reads(&key("20261204T2100Z")), "far in the future");
        assert!(!w.reads("AWSLogs/111122223333/CloudTrail/us-east-1/2026/12/04/unnamed.json.gz"));
    }

    #[test]
    fn the_window_lists_today_only_or_yesterday_too_across_midnight() {
        let w = LiveWindow::new(at("2026-12-04T19:40:00Z"), DEFAULT_SPAN);
        assert_eq!(w.days(), vec!["2026/12/04/"]);
        let w = LiveWindow::new(at("2027-01-01T00:30:00Z"), DEFAULT_SPAN);
        assert_eq!(w.days(), vec!["2026/12/31/", "2027/01/01/"]);
        assert!(w.reads(&key("20261231T2345Z")));
        assert!(!w.reads(&key("20261231T2200Z")));
    }

    #[test]
    fn a_span_under_a_minute_is_taken_as_a_minute() {
        let w = LiveWindow::new(at("2026-12-04T19:40:00Z"), 0);
        assert!(w.reads(&key("20261204T1939Z")));
        assert!(!w.reads(&key("20261204T1938Z")));
    }
}
