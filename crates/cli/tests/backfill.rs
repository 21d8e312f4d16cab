//! `tokenwatch report --from-trail` against S3 emulators, with the real SDK over HTTP: trail log files are
//! uploaded under the real `AWSLogs/…/CloudTrail/<region>/YYYY/MM/DD/` layout (and the organization
//! layout), and the built binary must report what `tokenwatch analyze` reports over the same records, read
//! only the folders its filters select, and name every object it cannot read while reporting the rest.
//!
//! moto (`TOKENWATCH_MOTO_ENDPOINT`) serves everything but the access-denied case: moto evaluates bucket
//! policies only with IAM authentication switched on for the whole server, which would break every other
//! test sharing it. ministack (`TOKENWATCH_MINISTACK_ENDPOINT`) evaluates a cross-account bucket policy per
//! request, so that case runs there: a log-archive account's bucket that lets the reading account list
//! and read, except one object it denies. ministack also answers LookupEvents (moto does not), which runs
//! `--lookup-events` end to end; its pages, throttling and pacing are tested with mocks in
//! crates/aws/tests/lookup.rs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::StorageClass;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use tokenwatch_core::time::{format_time, parse_time};
use tokenwatch_testkit::{Emulator, inputs, samples_dir, scenarios};

/// An S3 client on `emulator` as the account behind `access_key`, with path-style addressing: emulators
/// do not resolve bucket subdomains.
async fn s3(emulator: Emulator, access_key: &str) -> aws_sdk_s3::Client {
    let sdk = emulator.sdk_as(access_key).await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    )
}

/// A bucket of its own for each test and run.
async fn bucket(client: &aws_sdk_s3::Client, name: &str) -> String {
    let bucket = format!("tw-{name}-{}", std::process::id());
    client.create_bucket().bucket(&bucket).send().await.unwrap();
    bucket
}

async fn put(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    class: Option<StorageClass>,
) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .set_storage_class(class)
        .send()
        .await
        .unwrap_or_else(|e| panic!("uploading {key}: {e:?}"));
}

/// Runs the binary against `endpoint` as the account behind `access_key`.
fn tokenwatch(endpoint: &str, access_key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", access_key)
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env_remove("TOKENWATCH_TABLE")
        .output()
        .unwrap()
}

/// The report document of a run, checked against docs/report.schema.json, with `generated_at` (the one
/// field that differs between two runs over the same input) set aside so that documents compare.
fn json_of(out: &Output) -> Value {
    let mut document: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    tokenwatch_testkit::assert_valid_report(&document);
    document["generated_at"] = Value::Null;
    document
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn analyze(paths: &[PathBuf], window: &[&str]) -> Value {
    let mut args: Vec<String> = vec!["analyze".into(), "--format".into(), "json".into()];
    args.extend(window.iter().map(|s| (*s).to_owned()));
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .args(&args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    json_of(&out)
}

/// The bare CloudTrail records in one sample file, whatever carries them: trail files, NDJSON, EventBridge
/// envelopes (their `account` kept as `recipientAccountId`, as a trail writes it), SQS and SNS wrappers,
/// lookup-events output.
fn records_of(path: &Path) -> Vec<Value> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        MultiGzDecoder::new(bytes.as_slice())
            .read_to_end(&mut plain)
            .unwrap();
        bytes = plain;
    }
    let mut out = Vec::new();
    for value in serde_json::Deserializer::from_slice(&bytes).into_iter::<Value>() {
        unwrap_records(value.unwrap(), &mut out);
    }
    out
}

fn unwrap_records(value: Value, out: &mut Vec<Value>) {
    let carried = |s: &Value| -> Vec<Value> {
        serde_json::Deserializer::from_str(s.as_str().unwrap())
            .into_iter::<Value>()
            .map(Result::unwrap)
            .collect()
    };
    match value {
        Value::Array(items) => items.into_iter().for_each(|v| unwrap_records(v, out)),
        Value::Object(ref o) if o.contains_key("eventTime") => out.push(value),
        Value::Object(mut o) => {
            if let Some(Value::Object(mut detail)) = o.remove("detail") {
                if let Some(account) = o.get("account") {
                    detail.entry("recipientAccountId").or_insert(account.clone());
                }
                out.push(Value::Object(detail));
            } else if let Some(body) = o
                .get("body")
                .or_else(|| o.get("Message"))
                .or_else(|| o.get("CloudTrailEvent"))
            {
                carried(body).into_iter().for_each(|v| unwrap_records(v, out));
            } else if let Some(sns) = o.remove("Sns") {
                unwrap_records(sns, out);
            } else if let Some(items) = o.remove("Records").or_else(|| o.remove("Events")) {
                unwrap_records(items, out);
            } else {
                panic!("a sample value tokenwatch-test cannot unwrap: {o:?}");
            }
        }
        other => panic!("a sample value tokenwatch-test cannot unwrap: {other}"),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A trail log file of `records`, and where a trail would deliver it under `root`
/// (`…/CloudTrail/<region>/`): in the day folder of its delivery, five minutes after its latest record.
fn log_file(root: &str, region: &str, tag: &str, records: &[Value]) -> (String, Vec<u8>) {
    let latest = records
        .iter()
        .filter_map(|r| r["eventTime"].as_str().and_then(parse_time))
        .max()
        .unwrap();
    let delivered = format_time(latest + 300);
    let (day, stamp) = (
        delivered[..10].replace('-', "/"),
        format!(
            "{}{}{}T{}{}Z",
            &delivered[..4],
            &delivered[5..7],
            &delivered[8..10],
            &delivered[11..13],
            &delivered[14..16]
        ),
    );
    let key = format!("{root}{region}/{day}/123456789012_CloudTrail_{region}_{stamp}_{tag}.json.gz");
    (key, gzip(json!({ "Records": records }).to_string().as_bytes()))
}

/// Every sample scenario as trail log files (one per sample input file): odd scenarios under a plain
/// trail in us-east-1, even ones under an organization trail in eu-west-1.
fn sample_log_files(prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for (i, dir) in scenarios().iter().enumerate() {
        let n = i + 1;
        let (root, region) = if n % 2 == 1 {
            (format!("{prefix}AWSLogs/123456789012/CloudTrail/"), "us-east-1")
        } else {
            (
                format!("{prefix}AWSLogs/o-exampleorg1/123456789012/CloudTrail/"),
                "eu-west-1",
            )
        };
        for (j, input) in inputs(dir).iter().enumerate() {
            let records = records_of(input);
            files.push(log_file(
                &root,
                region,
                &format!("S{n:02}F{j:02}EXAMPLE000"),
                &records,
            ));
        }
    }
    files
}

#[tokio::test]
async fn the_trail_in_s3_reports_what_analyze_reports_on_the_samples_dir() {
    let endpoint = Emulator::Moto.endpoint();
    let client = s3(Emulator::Moto, "testing").await;
    let bucket = bucket(&client, "samples").await;
    let files = sample_log_files("org/trail/");
    let uploaded = files.len();
    for (key, body) in files {
        put(&client, &bucket, &key, body, None).await;
    }
    // Never read: digests live beside the logs, and this account is filtered out below.
    let digest = "org/trail/AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2026/11/02/\
                  123456789012_CloudTrail-Digest_us-east-1_trail_us-east-1_20261102T090000Z.json.gz";
    put(
        &client,
        &bucket,
        digest,
        gzip(br#"{"awsAccountId":"123456789012","logFiles":[]}"#),
        None,
    )
    .await;
    let other = "org/trail/AWSLogs/210987654321/CloudTrail/us-east-1/2026/11/02/\
                 210987654321_CloudTrail_us-east-1_20261102T0905Z_OtherAccountEXAMP.json.gz";
    put(&client, &bucket, other, b"not a log file".to_vec(), None).await;
    let trail = format!("s3://{bucket}/org/trail");
    let from_trail = |extra: &[&str]| {
        let mut args = vec!["report", "--from-trail", &trail, "--format", "json"];
        args.extend(extra);
        tokenwatch(&endpoint, "testing", &args)
    };

    // Everything, one account: the same report as analyze over the original sample files.
    let out = from_trail(&["--account", "123456789012"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = json_of(&out);
    let want = analyze(&[samples_dir()], &[]);
    assert_eq!(
        (&got["records"], &got["failures"], &got["skipped_records"]),
        (&json!(595), &json!(344), &json!(0)),
        "the union of the samples (samples/README.md)"
    );
    assert_eq!(got, want, "report --from-trail and analyze disagree");
    assert!(
        stderr(&out).contains(&format!("{trail}: {uploaded} log files")),
        "{}",
        stderr(&out)
    );

    // Without the account filter the other account's folder is read: its object is named, the rest reported.
    let out = from_trail(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "tokenwatch: s3://{bucket}/{other}: not a CloudTrail log file"
        )),
        "{err}"
    );
    assert!(!err.contains("CloudTrail-Digest"), "{err}");
    assert_eq!(json_of(&out)["groups"], want["groups"]);

    // One region: only the organization trail's eu-west-1 folders, i.e. the even scenarios.
    let out = from_trail(&["--region", "eu-west-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let even: Vec<PathBuf> = scenarios().into_iter().skip(1).step_by(2).collect();
    assert_eq!(json_of(&out), analyze(&even, &[]));

    // A window: only its day folders and one day on each side are read, and the groups are analyze's.
    let window = ["--since", "2026-11-07", "--until", "2026-11-07T23:59:59Z"];
    let mut args = vec!["--account", "123456789012"];
    args.extend(window);
    let out = from_trail(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = json_of(&out);
    let want = analyze(&[samples_dir()], &window);
    assert!(
        !want["groups"].as_array().unwrap().is_empty(),
        "the window has failures"
    );
    assert_eq!(got["groups"], want["groups"]);
    assert_eq!(got["failures"], want["failures"]);
    let read = got["records"].as_u64().unwrap();
    assert!(
        read > 0 && read < 595,
        "read {read} records: days outside the window were listed"
    );

    // Nothing to read is an error, not an empty report.
    let out = from_trail(&["--account", "999999999999"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has no folder of the accounts asked for (it has 123456789012, 210987654321)"),
        "{}",
        stderr(&out)
    );
    let wrong = format!("s3://{bucket}/org");
    let out = tokenwatch(&endpoint, "testing", &["report", "--from-trail", &wrong]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no AWSLogs/<account>/ folder under"),
        "{}",
        stderr(&out)
    );
}

/// Each scenario through the detector as EventBridge would deliver it (in time order, a minute late, three
/// events per batch), into a new state table on moto; then the sweeps once the refresh window and the
/// cool-down are over.
async fn detector_table() -> String {
    use tokenwatch_core::events::eventbridge_events;
    use tokenwatch_core::incident::Policy;
    use tokenwatch_core::memory::RecordingSink;
    use tokenwatch_core::pipeline::Detector;

    let sdk = Emulator::Moto.sdk().await;
    let table = format!("state-{}", std::process::id());
    tokenwatch_aws::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .unwrap();
    let store = tokenwatch_aws::DynamoStore::new(&sdk, &table);
    let (sink, policy) = (RecordingSink::default(), Policy::default());
    let detector = Detector {
        store: &store,
        sink: &sink,
        policy: &policy,
    };
    for dir in scenarios() {
        let records: Vec<Value> = inputs(&dir).iter().flat_map(|f| records_of(f)).collect();
        let time = |e: &Value| e["detail"]["eventTime"].as_str().and_then(parse_time).unwrap();
        let mut events = eventbridge_events(json!({ "Records": records }).to_string().as_bytes()).unwrap();
        events.sort_by_key(time);
        for batch in events.chunks(3) {
            let bytes: Vec<Vec<u8>> = batch.iter().map(|e| e.to_string().into_bytes()).collect();
            let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
            let now = batch.iter().map(time).max().unwrap() + 60;
            let out = detector.process(&refs, now).await;
            assert!(out.retry.is_empty(), "{}: {out:?}", dir.display());
        }
        let last = events.iter().map(time).max().unwrap();
        detector.sweep(last + 400).await.unwrap();
        // Quiet for the cool-down: every incident ends.
        detector.sweep(last + policy.cooldown + 400).await.unwrap();
    }
    table
}

/// The acceptance of the report issue: on the samples, the report from the state table (after the
/// detector processed them), from the trail in S3 and from `analyze` agree group for group on verdict,
/// lease, failures and client; and the state table's filters and formats work through the binary.
#[tokio::test]
async fn state_table_trail_and_analyze_agree_on_every_sample_group() {
    let endpoint = Emulator::Moto.endpoint();
    let client = s3(Emulator::Moto, "testing").await;
    let bucket = bucket(&client, "agree").await;
    for (key, body) in sample_log_files("") {
        put(&client, &bucket, &key, body, None).await;
    }
    let table = detector_table().await;
    let report = |extra: &[&str]| {
        let mut args = vec!["report", "--format", "json"];
        args.extend(extra);
        let out = tokenwatch(&endpoint, "testing", &args);
        assert!(out.status.success(), "{}", stderr(&out));
        json_of(&out)
    };
    let trail = format!("s3://{bucket}/");
    let from_trail = report(&["--from-trail", &trail]);
    let from_table = report(&["--table", &table, "--since", "2026-10-01"]);
    let analyzed = analyze(&[samples_dir()], &[]);

    let facts = |report: &Value| -> Vec<Value> {
        let mut groups: Vec<Value> = report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                json!([
                    g["account"],
                    g["principal"],
                    g["session"],
                    g["verdict"],
                    g["lease_seconds"],
                    g["lease_source"],
                    g["failures"],
                    g["client"],
                    g["age_at_first_failure_seconds"]
                ])
            })
            .collect();
        groups.sort_by_key(|g| g.to_string());
        groups
    };
    assert_eq!(
        facts(&analyzed).len(),
        71,
        "the sample groups (samples/README.md)"
    );
    assert_eq!(
        facts(&from_trail),
        facts(&analyzed),
        "--from-trail and analyze disagree"
    );
    assert_eq!(
        facts(&from_table),
        facts(&analyzed),
        "the state table and analyze disagree"
    );

    // Every state-table group carries its incident; the samples' incidents are long over.
    for g in from_table["groups"].as_array().unwrap() {
        let incident = &g["incident"];
        assert_eq!(incident["state"], "resolved", "{g}");
        let recovered = incident["time_to_recover_seconds"].as_i64().unwrap();
        assert!(recovered >= 0, "{g}");
        assert_eq!(incident["opened_at"], g["first_failure"], "{g}");
    }
    assert!(
        analyzed["groups"][0]["incident"].is_null(),
        "analyze has no incidents"
    );

    // The filters select what analyze's groups say they should.
    let select = |pick: &dyn Fn(&Value) -> bool| -> Vec<Value> {
        let mut picked = analyzed.clone();
        picked["groups"] = Value::Array(
            analyzed["groups"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|g| pick(g))
                .cloned()
                .collect(),
        );
        facts(&picked)
    };
    let since = ["--table", &table, "--since", "2026-10-01"];
    let filtered = |extra: &[&str]| {
        let mut args = since.to_vec();
        args.extend(extra);
        facts(&report(&args))
    };
    let stale = filtered(&["--verdict", "stale-cache"]);
    assert!(!stale.is_empty());
    assert_eq!(stale, select(&|g| g["verdict"] == "stale-cache"));
    let severe = filtered(&["--min-severity", "high"]);
    assert_eq!(
        severe,
        select(&|g| matches!(g["severity"].as_str(), Some("high" | "critical")))
    );
    let principal = analyzed["groups"][0]["principal"].as_str().unwrap().to_owned();
    let name = principal.rsplit('/').next().unwrap().to_owned();
    let by_name = filtered(&["--principal", &name]);
    assert!(!by_name.is_empty());
    assert_eq!(
        by_name,
        select(&|g| g["principal"]
            .as_str()
            .is_some_and(|p| p.ends_with(&format!("/{name}"))))
    );
    assert_eq!(filtered(&["--principal", &format!("*{}", &name[1..])]), by_name);
    assert!(
        facts(&report(&["--table", &table, "--since", "2026-12-01"])).is_empty(),
        "nothing failed since, nothing is open"
    );

    // The other formats read the same table.
    for format in ["table", "markdown", "csv"] {
        let out = tokenwatch(
            &endpoint,
            "testing",
            &["report", "--table", &table, "--since", "30d", "--format", format],
        );
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("resolved"), "{format}: {text}");
    }

    // A table that does not exist is an error naming it, not an empty report.
    let out = tokenwatch(&endpoint, "testing", &["report", "--table", "no-such-table"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("reading the state table no-such-table"),
        "{}",
        stderr(&out)
    );
    let out = tokenwatch(
        &endpoint,
        "testing",
        &["report", "--table", &table, "--until", "1d"],
    );
    assert_eq!(out.status.code(), Some(64), "a usage error");
    assert!(
        stderr(&out).contains("--until needs --from-trail"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_simulated_trail_in_s3_reports_what_analyze_reports_and_every_injected_failure() {
    let endpoint = Emulator::Moto.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    let injected = tokenwatch_simulate::write_corpus(
        &corpus,
        &tokenwatch_simulate::Options {
            records: 10_000,
            records_per_file: 1000,
            seed: 1,
            ..Default::default()
        },
    )
    .unwrap()
    .to_json();

    let client = s3(Emulator::Moto, "testing").await;
    let bucket = bucket(&client, "simulated").await;
    let mut files = 0;
    for entry in walk(&corpus) {
        let key = entry.strip_prefix(&corpus).unwrap().to_str().unwrap().to_owned();
        put(&client, &bucket, &key, std::fs::read(&entry).unwrap(), None).await;
        files += 1;
    }
    assert_eq!(files, 10);

    let out = tokenwatch(
        &endpoint,
        "testing",
        &[
            "report",
            "--from-trail",
            &format!("s3://{bucket}"),
            "--format",
            "json",
            "--downloads",
            "3",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let got = json_of(&out);
    assert_eq!(got, analyze(&[corpus], &[]));
    assert_eq!(
        (&got["records"], &got["failures"]),
        (&json!(10_000), &injected["failures"])
    );
    assert!(injected["failures"].as_u64().unwrap() > 0);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Sample 01 (a boto3 stale cache, 6 failures) as trail log files under `root`.
fn sample_01(root: &str) -> Vec<(String, Vec<u8>)> {
    let dir = &scenarios()[0];
    assert!(dir.ends_with("01-assume-role-default-boto3"), "{dir:?}");
    inputs(dir)
        .iter()
        .enumerate()
        .map(|(j, input)| {
            log_file(
                root,
                "us-east-1",
                &format!("S01F{j:02}EXAMPLE000"),
                &records_of(input),
            )
        })
        .collect()
}

fn assert_sample_01_reported(out: &Output) {
    let report = json_of(out);
    let g = &report["groups"][0];
    assert_eq!(
        (
            &g["principal"],
            &g["verdict"],
            &g["failures"],
            &g["lease_seconds"],
            &g["client"]
        ),
        (
            &json!("arn:aws:iam::123456789012:role/etl-pipeline-role"),
            &json!("stale-cache"),
            &json!(6),
            &json!(3600),
            &json!("boto3")
        ),
        "{report:#}"
    );
}

#[tokio::test]
async fn unreadable_objects_are_named_and_the_rest_is_reported() {
    let endpoint = Emulator::Moto.endpoint();
    let client = s3(Emulator::Moto, "testing").await;
    let bucket = bucket(&client, "bad").await;
    let day = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/02/";
    let good = sample_01("AWSLogs/123456789012/CloudTrail/");
    for (key, body) in &good {
        put(&client, &bucket, key, body.clone(), None).await;
    }
    let truncated = format!("{day}123456789012_CloudTrail_us-east-1_20261102T0940Z_TruncatedEXAMPLE.json.gz");
    let body = &good[1].1;
    put(
        &client,
        &bucket,
        &truncated,
        body[..body.len() / 2].to_vec(),
        None,
    )
    .await;
    let stray = format!("{day}README.txt");
    put(
        &client,
        &bucket,
        &stray,
        b"These are the trail's logs; ask the platform team.\n".to_vec(),
        None,
    )
    .await;
    // Lifecycle rules move old trail logs to Glacier; GetObject then answers 403 InvalidObjectState.
    let archived = format!("{day}123456789012_CloudTrail_us-east-1_20261102T0945Z_ArchivedEXAMPLE00.json.gz");
    put(
        &client,
        &bucket,
        &archived,
        good[0].1.clone(),
        Some(StorageClass::Glacier),
    )
    .await;

    let out = tokenwatch(
        &endpoint,
        "testing",
        &[
            "report",
            "--from-trail",
            &format!("s3://{bucket}/"),
            "--format",
            "json",
            "--since",
            "2026-11-02",
            "--until",
            "2026-11-03",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let named = |key: &str, reason: &str| {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("tokenwatch: s3://{bucket}/{key}: ")))
            .unwrap_or_else(|| panic!("{key} is not named:\n{err}"));
        assert!(line.contains(reason), "{key}: expected '{reason}' in: {line}");
    };
    named(
        &truncated,
        "truncated or corrupt gzip: incomplete deflate stream (the 0 records before it were analysed)",
    );
    named(
        &stray,
        "not a CloudTrail log file: it does not start with {\"Records\": (it starts with \"These are",
    );
    named(&archived, "InvalidObjectState (HTTP 403)");
    assert!(
        err.contains("3 input(s) could not be read in full; the report covers the rest"),
        "{err}"
    );
    assert_sample_01_reported(&out);
}

/// An object key made to drive a terminal (a C1 CSI, a bidi override, a zero-width space) reaches stderr
/// escaped, on the line that names it. (A line break in a key cannot go through moto's HTTP server; that
/// a name cannot forge a line is shown with file names in tests/inputs.rs, through the same writer.)
#[tokio::test]
async fn hostile_object_keys_cannot_inject_anything_into_stderr() {
    let endpoint = Emulator::Moto.endpoint();
    let client = s3(Emulator::Moto, "testing").await;
    let bucket = bucket(&client, "keys").await;
    let day = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/02/";
    for (key, body) in sample_01("AWSLogs/123456789012/CloudTrail/") {
        put(&client, &bucket, &key, body, None).await;
    }
    let hostile = format!("{day}x\u{9b}2J\u{202e}zg.nosj\u{200b}\u{85}tokenwatch: all good.json.gz");
    put(&client, &bucket, &hostile, b"\x1b[2J not a log".to_vec(), None).await;

    let out = tokenwatch(
        &endpoint,
        "testing",
        &[
            "report",
            "--from-trail",
            &format!("s3://{bucket}/"),
            "--format",
            "json",
            "--since",
            "2026-11-02",
            "--until",
            "2026-11-03",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("x\\u{9b}2J\\u{202e}zg.nosj\\u{200b}\\u{85}tokenwatch: all good.json.gz: "),
        "the key is named, escaped: {err}"
    );
    for c in err.chars() {
        assert!(
            c == '\n' || !tokenwatch_render::text::is_unsafe(c),
            "{c:?} reached stderr: {err}"
        );
    }
    for line in err.lines() {
        assert!(line.starts_with("tokenwatch: "), "{line:?}");
        assert!(
            !line.starts_with("tokenwatch: all good"),
            "a forged line: {line:?}"
        );
    }
    assert_sample_01_reported(&out);
}

#[tokio::test]
async fn an_object_the_bucket_policy_denies_is_named_and_the_rest_is_reported() {
    // ministack scopes requests to the account an access key names.
    const ARCHIVE: &str = "111111111111";
    const READER: &str = "222222222222";
    let endpoint = Emulator::Ministack.endpoint();
    let owner = s3(Emulator::Ministack, ARCHIVE).await;
    let bucket = bucket(&owner, "denied").await;
    let good = sample_01("logs/AWSLogs/123456789012/CloudTrail/");
    for (key, body) in &good {
        put(&owner, &bucket, key, body.clone(), None).await;
    }
    let denied = "logs/AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/02/\
                  123456789012_CloudTrail_us-east-1_20261102T0950Z_DeniedEXAMPLE000.json.gz";
    put(&owner, &bucket, denied, good[0].1.clone(), None).await;
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{READER}:root")},
             "Action": ["s3:ListBucket", "s3:GetObject"],
             "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")]},
            {"Effect": "Deny", "Principal": {"AWS": format!("arn:aws:iam::{READER}:root")},
             "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/{denied}")}
        ]
    });
    owner
        .put_bucket_policy()
        .bucket(&bucket)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();

    let out = tokenwatch(
        &endpoint,
        READER,
        &[
            "report",
            "--from-trail",
            &format!("s3://{bucket}/logs"),
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "tokenwatch: s3://{bucket}/{denied}: s3:GetObject: AccessDenied (the permission s3:GetObject is missing)"
        )),
        "{err}"
    );
    assert!(err.contains("1 input(s) could not be read in full"), "{err}");
    assert_sample_01_reported(&out);
}

#[test]
fn report_without_a_source_says_which_flags_give_one() {
    let out = tokenwatch("http://127.0.0.1:9", "testing", &["report"]);
    assert_eq!(out.status.code(), Some(64), "a usage error");
    assert!(
        stderr(&out).contains("--table NAME (or TOKENWATCH_TABLE)")
            && stderr(&out).contains("--from-trail s3://BUCKET/PREFIX, or --lookup-events"),
        "{}",
        stderr(&out)
    );
    let out = tokenwatch(
        "http://127.0.0.1:9",
        "testing",
        &["report", "--from-trail", "bucket/prefix"],
    );
    assert_eq!(out.status.code(), Some(64), "clap's usage error, not 2 (partial)");
    assert!(stderr(&out).contains("is not an s3:// URL"), "{}", stderr(&out));
}

#[test]
fn a_trail_that_cannot_be_listed_is_an_error_not_an_empty_report() {
    let endpoint = Emulator::Moto.endpoint();
    let out = tokenwatch(
        &endpoint,
        "testing",
        &["report", "--from-trail", "s3://tw-no-such-bucket-anywhere/logs"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("NoSuchBucket"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}

#[test]
fn lookup_events_runs_its_plan_at_two_requests_per_second() {
    // ministack answers LookupEvents (with no events: its recording is off), so the CLI's side runs for real:
    // the SDK's requests over HTTP, the plan (every event of the window, then the five issuing calls of the
    // day before) and the pacing. Pages, throttling and events are tested with mocks in crates/aws.
    let endpoint = Emulator::Ministack.endpoint();
    let started = std::time::Instant::now();
    let out = tokenwatch(
        &endpoint,
        "testing",
        &[
            "report",
            "--lookup-events",
            "--since",
            "2026-11-02",
            "--until",
            "2026-11-03",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("lookup-events us-east-1: 6 requests (0 retried), 0 events"),
        "{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(2_500),
        "6 requests in under 2.5 s"
    );
    assert_eq!(json_of(&out)["records"], json!(0));
}
