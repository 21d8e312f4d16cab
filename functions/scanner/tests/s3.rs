//! The scanner's handler against S3 in ministack, with the real SDK: the samples uploaded as a trail's
//! log files with three faults (a truncated gzip, an object that is not a CloudTrail log file, an object
//! the bucket policy denies), read in batches of keys and by prefix; the partials, inline and written to
//! S3, merge into the report one analyzer gives over the same objects, with each fault named.

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_s3::primitives::ByteStream;
use serde_json::{Value, json};
use tokenwatch_aws::partials::PartialStore;
use tokenwatch_aws::trail::{TrailLocation, read_log_file};
use tokenwatch_core::partial::{Partial, Settings};
use tokenwatch_core::{Analyzer, Window};
use tokenwatch_render::report::{Document, Made};
use tokenwatch_scanner::config::Config;
use tokenwatch_scanner::{Scanner, handle};
use tokenwatch_testkit::{Emulator, inputs, scenarios};

const ARCHIVE: &str = "111111111111";
const READER: &str = "222222222222";
const DAY: &str = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/02/";

async fn s3(access_key: &str) -> aws_sdk_s3::Client {
    let sdk = Emulator::Ministack.sdk_as(access_key).await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    )
}

fn name(what: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "tw-scan-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn is_log_file(bytes: &[u8]) -> bool {
    use std::io::Read;
    let mut text = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(bytes)
            .take(64)
            .read_to_end(&mut text)
            .unwrap();
    } else {
        text = bytes.iter().take(64).copied().collect();
    }
    let head: String = String::from_utf8_lossy(&text).split_whitespace().collect();
    head.starts_with("{\"Records\"")
}

fn json_of(partial: Partial) -> String {
    let mut out = Vec::new();
    Document::write_json(&partial.report(), Made::at(0), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn batches_of_a_trail_merge_to_the_report_of_one_analyzer_with_the_faults_named() {
    let owner = s3(ARCHIVE).await;
    let reader = s3(READER).await;
    let trail = name("trail");
    let work = name("work");
    owner.create_bucket().bucket(&trail).send().await.unwrap();
    reader.create_bucket().bucket(&work).send().await.unwrap();

    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    for dir in scenarios() {
        let scenario = dir.file_name().unwrap().to_string_lossy().into_owned();
        // The samples that are trail log files (the others are EventBridge events, lookup pages…).
        for file in inputs(&dir)
            .into_iter()
            .filter(|f| is_log_file(&std::fs::read(f).unwrap()))
        {
            let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
            objects.push((
                format!("{DAY}{scenario}-{file_name}"),
                std::fs::read(&file).unwrap(),
            ));
        }
    }
    let whole = objects
        .iter()
        .find(|(k, _)| k.ends_with(".gz"))
        .unwrap()
        .1
        .clone();
    let truncated = format!("{DAY}fault-truncated.json.gz");
    let stray = format!("{DAY}fault-not-a-log-file.json");
    let denied = format!("{DAY}fault-denied.json.gz");
    objects.push((truncated.clone(), whole[..whole.len() / 2].to_vec()));
    objects.push((stray.clone(), br#"{"hello":"world"}"#.to_vec()));
    objects.push((denied.clone(), whole.clone()));
    for (key, body) in &objects {
        owner
            .put_object()
            .bucket(&trail)
            .key(key)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();
    }
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{READER}:root")},
             "Action": ["s3:ListBucket", "s3:GetObject"],
             "Resource": [format!("arn:aws:s3:::{trail}"), format!("arn:aws:s3:::{trail}/*")]},
            {"Effect": "Deny", "Principal": {"AWS": format!("arn:aws:iam::{READER}:root")},
             "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{trail}/{denied}")}
        ]
    });
    owner
        .put_bucket_policy()
        .bucket(&trail)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();

    // What one analyzer makes of every object the reader may read, as `report --from-trail` reads them.
    let settings = Settings {
        window: Window::default(),
        cooldown: 3600,
    };
    let mut one = Analyzer::collecting(settings.window, settings.cooldown);
    for (key, body) in &objects {
        if *key != denied {
            let _ = read_log_file(&mut one, std::io::Cursor::new(body.clone()));
        }
    }
    let expected = json_of(one.into_partial().unwrap());

    let config = Config::from_lookup(|k| match k {
        "TRAIL_BUCKET" => Some(trail.clone()),
        "PARTIALS_BUCKET" => Some(work.clone()),
        // Small: a partial with failures in it goes to S3, one without comes inline.
        "INLINE_LIMIT" => Some("2000".into()),
        _ => None,
    })
    .unwrap();
    let scanner = Scanner {
        partials: PartialStore::new(reader.clone(), &work, &config.partials_prefix),
        client: reader.clone(),
        config,
    };
    let job = json!({"Bucket": trail, "Cooldown": 3600, "Run": "run-1"});
    let keys: Vec<&String> = objects.iter().map(|(k, _)| k).collect();
    let (first, rest) = keys.split_at(keys.len() / 3);
    let batches = [
        json!({"Items": first.iter().map(|k| json!({"Key": k})).collect::<Vec<_>>(), "BatchInput": job}),
        json!({"Items": rest.iter().map(|k| json!({"Key": k, "Job": job})).collect::<Vec<_>>()}),
        // One object with nothing of interest: small enough to come inline.
        json!({"Key": stray, "Job": job}),
    ];
    let mut merged = Partial::empty(settings);
    let (mut inline, mut written) = (0, 0);
    for (i, batch) in batches.into_iter().enumerate() {
        let out: Value = handle(batch, &scanner).await.unwrap();
        let partial = match (out.get("Partial"), out["PartialKey"].as_str()) {
            (Some(p), None) => {
                inline += 1;
                serde_json::from_value(p.clone()).unwrap()
            }
            (None, Some(key)) => {
                written += 1;
                assert!(key.starts_with("tokenwatch-partials/run-1/"), "{key}");
                scanner.partials.partial(key).await.unwrap()
            }
            _ => panic!("neither inline nor written: {out}"),
        };
        // The stray object is read twice (its own item, and the second batch): its partial only counts
        // it, and is merged once below.
        if i < 2 {
            merged.merge(partial).unwrap();
        }
    }
    assert_eq!(
        (inline, written),
        (1, 2),
        "a large partial is written to S3, a small one returned"
    );
    let unread = merged.unread.clone();
    let location = TrailLocation {
        bucket: trail.clone(),
        prefix: String::new(),
    };
    let named = |key: &str, words: &str| {
        let reason = unread
            .0
            .get(&location.url_of(key))
            .unwrap_or_else(|| panic!("{key} is not named: {unread:?}"));
        assert!(reason.contains(words), "{key}: {reason}");
    };
    named(&truncated, "gzip");
    named(&stray, "CloudTrail");
    named(&denied, "AccessDenied");
    assert_eq!(unread.0.len(), 3, "{unread:?}");
    assert_eq!(json_of(merged), expected);

    // The same day read by prefix, in one item: the same report.
    let out = handle(
        json!({"Prefix": DAY, "Job": {"Bucket": trail, "Cooldown": 3600, "Run": "run-2"}}),
        &scanner,
    )
    .await
    .unwrap();
    let key = out["PartialKey"].as_str().unwrap();
    assert_eq!(out["Objects"], json!(objects.len()));
    let by_prefix = scanner.partials.partial(key).await.unwrap();
    assert_eq!(json_of(by_prefix), expected);
    assert!(scanner.partials.delete_run("run-2").await.unwrap() >= 1);
}

#[tokio::test]
async fn a_prefix_that_cannot_be_listed_fails_the_item_for_the_map_to_retry_or_count() {
    let reader = s3(READER).await;
    let config = Config::from_lookup(|k| match k {
        "TRAIL_BUCKET" => Some("tw-no-such-trail-bucket".into()),
        "PARTIALS_BUCKET" => Some("tw-no-such-work-bucket".into()),
        _ => None,
    })
    .unwrap();
    let scanner = Scanner {
        partials: PartialStore::new(reader.clone(), "tw-no-such-work-bucket", "p/"),
        client: reader,
        config,
    };
    let e = handle(
        json!({"Prefix": DAY, "Job": {"Bucket": "tw-no-such-trail-bucket", "Cooldown": 3600, "Run": "r"}}),
        &scanner,
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("listing s3://tw-no-such-trail-bucket/"),
        "{e}"
    );
}

/// A scanner of `trail` writing every partial to `work` in ministack, through `client`.
fn scanner_of(client: aws_sdk_s3::Client, trail: &str, work: &str) -> Scanner {
    let (trail, work) = (trail.to_owned(), work.to_owned());
    let config = Config::from_lookup(|k| match k {
        "TRAIL_BUCKET" => Some(trail.clone()),
        "PARTIALS_BUCKET" => Some(work.clone()),
        "INLINE_LIMIT" => Some("0".into()),
        _ => None,
    })
    .unwrap();
    Scanner {
        partials: PartialStore::new(client.clone(), &work, "p/"),
        client,
        config,
    }
}

#[tokio::test]
async fn an_object_s3_cannot_serve_now_fails_the_item_as_retryable() {
    // Nothing listens on this port: every attempt of the SDK is refused, as an S3 that is unreachable
    // for a moment would be.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let sdk = tokenwatch_aws::sdk_config(&tokenwatch_aws::SdkOptions::emulator(endpoint)).await;
    let scanner = scanner_of(tokenwatch_aws::trail::s3_client(&sdk), "tw-trail", "tw-work");
    let key = format!("{DAY}a.json.gz");
    let e = handle(
        json!({"Batch": {"Items": [{"Key": key, "Job": {"Bucket": "tw-trail", "Cooldown": 3600, "Run": "r"}}]}, "Attempt": 0}),
        &scanner,
    )
    .await
    .unwrap_err();
    let said = e.to_string();
    assert!(
        said.starts_with(&format!(
            "1 of 1 objects met a transient fault: s3://tw-trail/{key}: "
        )),
        "{said}"
    );
    let d: lambda_runtime::Diagnostic = e.into();
    assert_eq!(d.error_type, "Retryable", "the map's Retry matches this type");
}

#[tokio::test]
async fn a_missing_object_is_named_in_the_partial_of_the_attempt_that_wrote_it() {
    let reader = s3(READER).await;
    let (trail, work) = (name("trail"), name("work"));
    for bucket in [&trail, &work] {
        reader.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let scanner = scanner_of(reader, &trail, &work);
    let key = format!("{DAY}gone.json.gz");
    let out = handle(
        json!({"Batch": {"Items": [{"Key": key, "Job": {"Bucket": trail, "Cooldown": 3600, "Run": "r"}}]}, "Attempt": 2}),
        &scanner,
    )
    .await
    .expect("a permanent fault is named, not retried");
    assert_eq!(
        (out["Unread"].as_u64(), out["Attempt"].as_u64()),
        (Some(1), Some(2))
    );
    let (partial, attempt) = scanner
        .partials
        .partial_of_attempt(out["PartialKey"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(attempt, 2, "the partial says which attempt wrote it");
    let (name, reason) = partial.unread.0.iter().next().unwrap();
    assert_eq!(name, &format!("s3://{trail}/{key}"));
    assert!(reason.contains("NoSuchKey"), "{reason}");
}
