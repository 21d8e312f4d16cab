//! The scheduled scan's listing against S3 in ministack, with the real SDK: of a trail's log files (two
//! accounts, one under an organization, two regions), only those delivered in the last two hours are
//! listed; older ones, yesterday's folder outside the window and digest files are not, and across
//! midnight yesterday's folder is listed for the files that are still within the window.

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_s3::primitives::ByteStream;
use tokenwatch_aws::trail::{TrailLocation, TrailReader};
use tokenwatch_core::livescan::{DEFAULT_SPAN, LiveWindow};
use tokenwatch_core::time::parse_time;
use tokenwatch_testkit::Emulator;

fn bucket_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "tw-live-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A log file's key under `root` (`AWSLogs/ACCOUNT/` or `AWSLogs/O-ID/ACCOUNT/`), stamped `stamp`
/// (`YYYYMMDDTHHmmZ`).
fn log_key(root: &str, account: &str, region: &str, stamp: &str) -> String {
    format!(
        "trail/{root}CloudTrail/{region}/{}/{}/{}/{account}_CloudTrail_{region}_{stamp}_AbCdEfGh12345678.json.gz",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8]
    )
}

async fn trail_with(keys: &[String]) -> (TrailReader, String) {
    let sdk = Emulator::Ministack.sdk().await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let bucket = bucket_name();
    client.create_bucket().bucket(&bucket).send().await.unwrap();
    for key in keys {
        client
            .put_object()
            .bucket(&bucket)
            .key(key)
            .body(ByteStream::from_static(b"{\"Records\":[]}"))
            .send()
            .await
            .unwrap();
    }
    let location = TrailLocation {
        bucket: bucket.clone(),
        prefix: "trail".to_owned(),
    };
    (TrailReader::new(&sdk, location), bucket)
}

#[tokio::test]
async fn only_log_files_of_the_last_two_hours_are_listed() {
    let plain = "AWSLogs/111122223333/";
    let org = "AWSLogs/o-abc123def4/444455556666/";
    let recent = vec![
        log_key(plain, "111122223333", "us-east-1", "20261102T0955Z"),
        log_key(plain, "111122223333", "us-east-1", "20261102T0800Z"),
        log_key(plain, "111122223333", "eu-west-1", "20261102T0930Z"),
        log_key(org, "444455556666", "us-east-1", "20261102T0901Z"),
    ];
    let old = vec![
        log_key(plain, "111122223333", "us-east-1", "20261102T0759Z"),
        log_key(plain, "111122223333", "us-east-1", "20261101T0955Z"),
        log_key(org, "444455556666", "us-east-1", "20261102T0100Z"),
        // A digest file of the same hour is not a log file.
        "trail/AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/02/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20261102T0955Z.json.gz".to_owned(),
    ];
    let (reader, _) = trail_with(&[recent.clone(), old].concat()).await;

    let now = parse_time("2026-11-02T10:00:00Z").unwrap();
    let mut errors = Vec::new();
    let keys = reader
        .recent_keys(&LiveWindow::new(now, DEFAULT_SPAN), &mut errors)
        .await
        .unwrap();
    let mut want = recent;
    want.sort();
    assert_eq!(keys, want);
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test]
async fn across_midnight_yesterdays_recent_files_are_listed_and_its_older_ones_are_not() {
    let plain = "AWSLogs/111122223333/";
    let yesterday_late = log_key(plain, "111122223333", "us-east-1", "20261102T2345Z");
    let today = log_key(plain, "111122223333", "us-east-1", "20261103T0025Z");
    let yesterday_early = log_key(plain, "111122223333", "us-east-1", "20261102T2200Z");
    let (reader, _) = trail_with(&[yesterday_late.clone(), today.clone(), yesterday_early]).await;

    let now = parse_time("2026-11-03T00:30:00Z").unwrap();
    let mut errors = Vec::new();
    let keys = reader
        .recent_keys(&LiveWindow::new(now, DEFAULT_SPAN), &mut errors)
        .await
        .unwrap();
    assert_eq!(keys, vec![yesterday_late, today]);
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test]
async fn a_trail_with_no_recent_file_lists_nothing() {
    let plain = "AWSLogs/111122223333/";
    let (reader, _) = trail_with(&[log_key(plain, "111122223333", "us-east-1", "20261102T0100Z")]).await;
    let now = parse_time("2026-11-02T10:00:00Z").unwrap();
    let mut errors = Vec::new();
    let keys = reader
        .recent_keys(&LiveWindow::new(now, DEFAULT_SPAN), &mut errors)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    assert!(errors.is_empty(), "{errors:?}");
}
