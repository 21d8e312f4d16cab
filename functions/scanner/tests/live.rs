//! The scanner's live mode against S3 and DynamoDB in ministack, with the real SDK: a trail holding log
//! files of the last 2 hours and an older one. A near miss of the window shows in the state table, in the
//! table's report (what `tokenwatch report` prints) and in the next digest; a failure EventBridge never
//! delivered becomes one incident and one page, one it did deliver is not counted twice; the older file is
//! not read; and a second scan adds nothing.

use std::io::Write;

use aws_sdk_s3::primitives::ByteStream;
use serde_json::{Value, json};
use tokenwatch_aws::trail::s3_client;
use tokenwatch_aws::{DynamoStore, create_table};
use tokenwatch_core::incident::Policy;
use tokenwatch_core::memory::RecordingSink;
use tokenwatch_core::notice::Notice;
use tokenwatch_core::pipeline::Detector;
use tokenwatch_core::ports::{NearMissStore, StateStore};
use tokenwatch_core::query::{Query, report_with_near_misses};
use tokenwatch_core::time::{Epoch, parse_time};
use tokenwatch_reporter::{Reporter, handle as report};
use tokenwatch_scanner::live::LiveConfig;
use tokenwatch_scanner::live::{LiveScanner, scan};
use tokenwatch_testkit::{Emulator, unique};

const ACCOUNT: &str = "123456789012";
const BOTO3: &str = "Boto3/1.34.0 md/Botocore#1.34.0 Botocore/1.34.0";
const GO_V2: &str = "aws-sdk-go-v2/1.24.0 os/linux";

fn at(t: &str) -> Epoch {
    parse_time(t).unwrap()
}

/// A call signed by session `session` (access key `key`, issued at `created`) at `time`.
fn call(key: &str, session: &str, created: &str, time: &str, ua: &str, error: Option<&str>) -> Value {
    let mut r = json!({
        "eventVersion": "1.08", "eventTime": time, "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets",
        "eventID": format!("{key}-{time}"), "awsRegion": "us-east-1", "recipientAccountId": ACCOUNT,
        "userAgent": ua, "sourceIPAddress": "198.51.100.7",
        "userIdentity": {"type": "AssumedRole", "principalId": format!("AROAEXAMPLE:{session}"),
            "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/etl/{session}"), "accountId": ACCOUNT,
            "accessKeyId": key,
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{ACCOUNT}:role/etl")},
                "attributes": {"creationDate": created, "mfaAuthenticated": "false"}}}
    });
    if let Some(code) = error {
        r["errorCode"] = json!(code);
        r["errorMessage"] = json!("The provided token has expired.");
    }
    r
}

fn gzip(records: &[Value]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(json!({ "Records": records }).to_string().as_bytes())
        .unwrap();
    gz.finish().unwrap()
}

/// A log file's key under the trail's prefix `org`, delivered at `stamp` (`YYYYMMDDTHHmmZ`).
fn log_key(stamp: &str) -> String {
    format!(
        "org/AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{}/{}/{}/{ACCOUNT}_CloudTrail_us-east-1_{stamp}_Ab12Cd34Ef56Gh78.json.gz",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8]
    )
}

struct Rig {
    store: DynamoStore,
    sink: RecordingSink,
    policy: Policy,
    config: LiveConfig,
    s3: aws_sdk_s3::Client,
}

impl Rig {
    async fn new(near_miss_pages: bool) -> Rig {
        let sdk = Emulator::Ministack.sdk().await;
        let s3 = s3_client(&sdk);
        let bucket = unique("tw-live-trail");
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let table = unique("tw-live-state");
        create_table(&dynamodb, &table).await.expect("table created");
        let config = LiveConfig::from_lookup(
            |name| match name {
                "TRAIL_BUCKET" => Some(bucket.clone()),
                "TRAIL_PREFIX" => Some("org".into()),
                "TABLE_NAME" => Some(table.clone()),
                "TOPIC_ARN" => Some(format!("arn:aws:sns:us-east-1:{ACCOUNT}:tw-alerts")),
                "AWS_REGION" => Some("us-east-1".into()),
                "NEAR_MISS_PAGES" => Some(near_miss_pages.to_string()),
                _ => None,
            },
            at(NOW),
        )
        .unwrap();
        Rig {
            store: DynamoStore::from_client(dynamodb, table),
            sink: RecordingSink::default(),
            policy: Policy::default(),
            config,
            s3,
        }
    }

    async fn put(&self, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(&self.config.trail.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
    }

    async fn scan(&self, now: Epoch) -> tokenwatch_scanner::live::LiveOutcome {
        let live = LiveScanner {
            client: self.s3.clone(),
            store: &self.store,
            sink: &self.sink,
            policy: &self.policy,
            config: &self.config,
        };
        scan(&live, now).await.expect("the scan")
    }

    /// Incident notices, by session name.
    fn pages(&self) -> Vec<String> {
        let mut pages: Vec<String> = self
            .sink
            .notices()
            .iter()
            .filter_map(Notice::incident)
            .map(|n| n.finding.key.session.clone().unwrap_or_default())
            .collect();
        pages.sort();
        pages
    }
}

const NOW: &str = "2026-11-02T10:00:00Z";

#[tokio::test]
async fn the_live_scan_records_near_misses_and_missed_failures_of_the_last_two_hours_once() {
    let rig = Rig::new(false).await;
    // Recent: a boto3 session copied out of its provider, used 3 minutes before its default hour ended
    // (a near miss); one used half-way (none); a Go v2 session to its last seconds (none: no early window).
    let near = call(
        "ASIANEARMISS0001",
        "nightly-copy",
        "2026-11-02T08:58:00Z",
        "2026-11-02T09:55:00Z",
        BOTO3,
        None,
    );
    let fine = call(
        "ASIAFINE00000001",
        "refreshing",
        "2026-11-02T09:00:00Z",
        "2026-11-02T09:30:00Z",
        BOTO3,
        None,
    );
    let go = call(
        "ASIAGOV200000001",
        "go-job",
        "2026-11-02T08:58:00Z",
        "2026-11-02T09:57:59Z",
        GO_V2,
        None,
    );
    rig.put(&log_key("20261102T0955Z"), gzip(&[near, fine, go])).await;
    // Recent: two failures 20 minutes past their sessions' hour; EventBridge delivered only the first.
    let live = call(
        "ASIALIVE00000001",
        "delivered",
        "2026-11-02T08:20:00Z",
        "2026-11-02T09:40:00Z",
        BOTO3,
        Some("ExpiredToken"),
    );
    let missed = call(
        "ASIAMISSED000001",
        "never-delivered",
        "2026-11-02T08:20:00Z",
        "2026-11-02T09:41:00Z",
        BOTO3,
        Some("ExpiredToken"),
    );
    rig.put(&log_key("20261102T0945Z"), gzip(&[live.clone(), missed]))
        .await;
    // Older than 2 hours: a near miss and a failure that the scan must not read.
    let old_near = call(
        "ASIAOLDNEAR00001",
        "old-copy",
        "2026-11-02T06:30:00Z",
        "2026-11-02T07:27:00Z",
        BOTO3,
        None,
    );
    let old_failure = call(
        "ASIAOLDFAIL00001",
        "old-failure",
        "2026-11-02T06:00:00Z",
        "2026-11-02T07:20:00Z",
        BOTO3,
        Some("ExpiredToken"),
    );
    rig.put(&log_key("20261102T0730Z"), gzip(&[old_near, old_failure]))
        .await;

    let detector = Detector {
        store: &rig.store,
        sink: &rig.sink,
        policy: &rig.policy,
    };
    let event = json!({"version": "0", "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3",
        "account": ACCOUNT, "detail": live})
    .to_string();
    let delivered = detector
        .process(&[event.as_bytes()], at("2026-11-02T09:45:00Z"))
        .await;
    assert!(
        delivered.retry.is_empty() && delivered.faults.is_empty(),
        "{delivered:?}"
    );
    assert_eq!(rig.pages(), ["delivered"]);

    let now = at(NOW);
    let first = rig.scan(now).await;
    assert_eq!(first.objects, 2, "the older file is not read: {first:?}");
    assert!(first.unread.is_empty(), "{first:?}");
    assert_eq!((first.near_misses, first.near_misses_new), (1, 1), "{first:?}");
    assert_eq!(
        (first.failures, first.missed, first.recorded),
        (2, 1, 1),
        "{first:?}"
    );

    // The table: the near miss, and each failure once.
    let stored = rig.store.near_misses(0).await.unwrap();
    let sessions: Vec<_> = stored
        .iter()
        .map(|s| s.session.clone().unwrap_or_default())
        .collect();
    assert_eq!(sessions, ["nightly-copy"]);
    assert_eq!(stored[0].occurrence.near_miss.seconds_before_expiry, 180);
    let expected = vec![
        ("delivered".to_owned(), 1, true),
        ("never-delivered".to_owned(), 1, true),
    ];
    assert_eq!(groups(&rig.store).await, expected);
    assert_eq!(rig.pages(), ["delivered", "never-delivered"], "one page each");

    // What `tokenwatch report` prints from the table: the failures, then the near miss.
    let table_report = report_with_near_misses(&rig.store, &Query::default(), now)
        .await
        .unwrap();
    let near_groups: Vec<_> = table_report
        .near_misses
        .groups
        .iter()
        .map(|g| (g.session.clone().unwrap_or_default(), g.describe()))
        .collect();
    assert_eq!(
        near_groups,
        [(
            "nightly-copy".to_owned(),
            "used 3 min before expiry; botocore refreshes 10–15 min before".to_owned()
        )]
    );
    assert_eq!(table_report.findings.len(), 2);

    // A second scan 15 minutes later reads the same files and adds nothing.
    let second = rig.scan(now + 900).await;
    assert_eq!((second.near_misses, second.near_misses_new), (1, 0), "{second:?}");
    assert_eq!((second.missed, second.recorded), (0, 0), "{second:?}");
    assert_eq!(rig.store.near_misses(0).await.unwrap(), stored);
    assert_eq!(groups(&rig.store).await, expected);
    assert_eq!(rig.pages(), ["delivered", "never-delivered"]);
    assert!(
        !rig.sink
            .notices()
            .iter()
            .any(|n| matches!(n, Notice::NearMiss(_))),
        "near misses never page by default"
    );

    // The next digest has the near miss's line.
    let digest_sink = RecordingSink::default();
    let digest = Query::default();
    let reporter = Reporter {
        store: &rig.store,
        sink: &digest_sink,
        digest: &digest,
    };
    let schedule = json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
    let out = report(schedule, &reporter, now + 1800).await.unwrap();
    assert_eq!(out["near_miss_workloads"], 1, "{out}");
    let notices = digest_sink.notices();
    let message = tokenwatch_render::sns::render(&notices[0], &Default::default());
    let text: Value = serde_json::from_str(&message.message).unwrap();
    let email = text["email"].as_str().unwrap();
    assert!(
        email.contains("LOW near-miss 123456789012 etl/nightly-copy: 1 session, 1 near miss, last 2026-11-02T09:55:00Z; used 3 min before expiry"),
        "{email}"
    );
    assert!(
        !email.contains("old-copy") && !email.contains("go-job") && !email.contains("refreshing"),
        "{email}"
    );
}

#[tokio::test]
async fn a_stack_that_pages_near_misses_pages_each_once_at_low() {
    let rig = Rig::new(true).await;
    let near = call(
        "ASIANEARPAGE0001",
        "nightly-copy",
        "2026-11-02T08:58:00Z",
        "2026-11-02T09:55:00Z",
        BOTO3,
        None,
    );
    let fine = call(
        "ASIAFINEPAGE0001",
        "refreshing",
        "2026-11-02T09:00:00Z",
        "2026-11-02T09:30:00Z",
        BOTO3,
        None,
    );
    rig.put(&log_key("20261102T0955Z"), gzip(&[near, fine])).await;
    let now = at(NOW);
    let first = rig.scan(now).await;
    assert_eq!(
        (first.near_misses_new, first.near_misses_paged),
        (1, 1),
        "{first:?}"
    );
    let second = rig.scan(now + 900).await;
    assert_eq!(
        (second.near_misses_new, second.near_misses_paged),
        (0, 0),
        "{second:?}"
    );
    let notices = rig.sink.notices();
    let [Notice::NearMiss(page)] = &notices[..] else {
        panic!("{notices:?}")
    };
    assert_eq!(page.near_miss.session.as_deref(), Some("nightly-copy"));
    let message = tokenwatch_render::sns::render(&notices[0], &Default::default());
    assert_eq!(message.attributes["severity"], "low");
    assert_eq!(message.attributes["verdict"], "near-miss");
    assert_eq!(
        message.subject,
        "[tokenwatch] LOW near-miss 123456789012 etl/nightly-copy (180 s before expiry)"
    );
}

async fn groups(store: &DynamoStore) -> Vec<(String, u64, bool)> {
    let mut g: Vec<(String, u64, bool)> = store
        .groups(0)
        .await
        .unwrap()
        .into_iter()
        .map(|g| {
            (
                g.key.session.clone().unwrap_or_default(),
                g.stats.failures,
                g.is_open(),
            )
        })
        .collect();
    g.sort();
    g
}

/// The near-miss samples through the live path. Each sample's records are cut into the hourly log files
/// CloudTrail would have delivered, and the trail is scanned a quarter of an hour after each delivery, as
/// the schedule would: the table's report then has the near misses `analyze` finds in the sample (none
/// where it finds none, and each night's one of a recurring job), and the next digest a near-miss line
/// per workload.
#[tokio::test]
async fn each_near_miss_sample_gives_the_table_and_the_digest_what_analyze_finds() {
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples");
    let mut with_near_misses = Vec::new();
    for sample in [
        "29-boto3-copied-credentials-57-min",
        "30-boto3-role-profile-refreshes",
        "31-go-v2-cache-to-the-last-second",
        "32-java-v2-provider-prefetches",
        "33-pod-fleet-copied-credentials",
    ] {
        let rig = Rig::new(false).await;
        let mut analyzer = tokenwatch_core::Analyzer::default();
        // Delivery time -> the records of the hour before it.
        let mut files: std::collections::BTreeMap<Epoch, Vec<Value>> = Default::default();
        for entry in std::fs::read_dir(samples.join(sample)).unwrap() {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().contains("_CloudTrail_") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            analyzer.read(&bytes[..]).unwrap();
            let log: Value = serde_json::from_slice(&bytes).unwrap();
            for record in log["Records"].as_array().unwrap() {
                let t = at(record["eventTime"].as_str().unwrap());
                files.entry(t - t % 3600 + 3600).or_default().push(record.clone());
            }
        }
        let offline = analyzer.report().near_misses;
        let mut now = 0;
        for (delivered, records) in &files {
            let t = tokenwatch_core::time::format_time(*delivered);
            let stamp = format!(
                "{}{}{}T{}{}Z",
                &t[0..4],
                &t[5..7],
                &t[8..10],
                &t[11..13],
                &t[14..16]
            );
            rig.put(&log_key(&stamp), gzip(records)).await;
            now = delivered + 900;
            let scanned = rig.scan(now).await;
            assert!(scanned.unread.is_empty(), "{sample}: {scanned:?}");
        }
        // `tokenwatch report --table --since` the sample's first night.
        let all = Query {
            since: Some(tokenwatch_core::query::Since::At(0)),
            ..Query::default()
        };
        let table = report_with_near_misses(&rig.store, &all, now)
            .await
            .unwrap()
            .near_misses;
        assert_eq!(table, offline, "{sample}: the table's near misses are analyze's");
        if !offline.workloads.is_empty() {
            with_near_misses.push(sample);
        }

        let digest_sink = RecordingSink::default();
        let digest = Query::default();
        let reporter = Reporter {
            store: &rig.store,
            sink: &digest_sink,
            digest: &digest,
        };
        let schedule = json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
        let out = report(schedule, &reporter, now + 60).await.unwrap();
        assert_eq!(
            out["near_miss_workloads"],
            offline.workloads.len(),
            "{sample}: {out}"
        );
    }
    assert_eq!(
        with_near_misses,
        [
            "29-boto3-copied-credentials-57-min",
            "33-pod-fleet-copied-credentials"
        ]
    );
}
