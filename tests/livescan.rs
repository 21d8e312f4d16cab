//! The trail scan's real bootstrap (the scanner's debug build in live mode) deployed as a Lambda on
//! ministack with the environment the template gives `LiveScanFunction`: one invocation reads the trail's
//! recent log file and stores its near miss in the state table, a second adds nothing; a bad value of one
//! of its variables fails the cold start, naming the variable.

use std::io::Write;
use std::time::{Duration, Instant};

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, Environment, FunctionCode, Runtime, State};
use aws_sdk_s3::primitives::ByteStream;
use serde_json::{Value, json};
use tokenwatch_aws::{DynamoStore, create_table};
use tokenwatch_core::ports::NearMissStore;
use tokenwatch_core::time::{Epoch, format_time};
use tokenwatch_testkit::{Emulator, new_topic, unique};

use crate::lambda::{bootstrap_zip, checked_binary};

const ACCOUNT: &str = "123456789012";

/// The function's variables as the template sets them, the parameters at their defaults, and the
/// stack's resources replaced by this test's.
fn environment(bucket: &str, table: &str, topic: &str, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let template = crate::infra::template("template.yaml");
    let vars = &template["Resources"]["LiveScanFunction"]["Properties"]["Environment"]["Variables"];
    let mut out = Vec::new();
    for (name, value) in vars.as_object().unwrap() {
        let resolved = match (value.get("Ref").and_then(Value::as_str), value.as_str()) {
            (Some("LiveScanTrailBucket"), _) => bucket.to_owned(),
            (Some("StateTable"), _) => table.to_owned(),
            (Some("AlertTopic"), _) => topic.to_owned(),
            (Some(parameter), _) => template["Parameters"][parameter]["Default"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| {
                    template["Parameters"][parameter]["Default"]
                        .as_i64()
                        .map(|n| n.to_string())
                })
                .unwrap_or_else(|| panic!("{name}: {parameter} has no default")),
            (None, Some(text)) => text.to_owned(),
            // DRILL_ROLE_ARN's !If: no drill role here.
            (None, None) => String::new(),
        };
        out.push((name.clone(), resolved));
    }
    for (name, value) in overrides {
        out.retain(|(n, _)| n != name);
        out.push(((*name).to_owned(), (*value).to_owned()));
    }
    out
}

async fn deploy(lambda: &aws_sdk_lambda::Client, name: &str, vars: Vec<(String, String)>) {
    let template = crate::infra::template("template.yaml");
    let function = &template["Resources"]["LiveScanFunction"];
    let binary = function["Metadata"]["BuildProperties"]["Binary"]
        .as_str()
        .unwrap();
    let (_, bytes) = checked_binary(binary, "functions/scanner");
    let mut environment = Environment::builder();
    for (n, v) in vars {
        environment = environment.variables(n, v);
    }
    environment = environment.variables("AWS_ENDPOINT_URL", Emulator::Ministack.endpoint());
    let architecture = match std::env::consts::ARCH {
        "aarch64" => Architecture::Arm64,
        _ => Architecture::X8664,
    };
    lambda
        .create_function()
        .function_name(name)
        .runtime(Runtime::from("provided.al2023"))
        .handler("bootstrap")
        .role(format!("arn:aws:iam::{ACCOUNT}:role/{name}-role"))
        .architectures(architecture)
        .memory_size(512)
        .timeout(60)
        .environment(environment.build())
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(bootstrap_zip(&bytes)))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
        .unwrap()
        .state
        != Some(State::Active)
    {
        assert!(Instant::now() < deadline, "{name} is not Active after 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn invoke(lambda: &aws_sdk_lambda::Client, name: &str) -> (Option<String>, Value) {
    let schedule = json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
    let out = lambda
        .invoke()
        .function_name(name)
        .payload(Blob::new(schedule.to_string()))
        .send()
        .await
        .unwrap();
    let answer = serde_json::from_slice(out.payload.as_ref().map_or(&b"null"[..], |p| p.as_ref()))
        .unwrap_or(Value::Null);
    (out.function_error, answer)
}

/// A log file delivered now, holding one boto3 session used 3 minutes before its hour ended, a minute ago.
fn recent_log_file(now: Epoch) -> (String, Vec<u8>) {
    let used = now - 60;
    let created = used - 57 * 60;
    let record = json!({
        "eventVersion": "1.08", "eventTime": format_time(used), "eventSource": "s3.amazonaws.com",
        "eventName": "ListBuckets", "eventID": "live-bootstrap-1", "recipientAccountId": ACCOUNT,
        "userAgent": "Boto3/1.34.0 md/Botocore#1.34.0 Botocore/1.34.0",
        "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLE:nightly-copy",
            "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/etl/nightly-copy"), "accountId": ACCOUNT,
            "accessKeyId": "ASIABOOTSTRAP0001",
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{ACCOUNT}:role/etl")},
                "attributes": {"creationDate": format_time(created)}}}
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(json!({"Records": [record]}).to_string().as_bytes())
        .unwrap();
    let stamp = chrono::DateTime::from_timestamp(now, 0)
        .unwrap()
        .format("%Y%m%dT%H%MZ")
        .to_string();
    let day = chrono::DateTime::from_timestamp(now, 0)
        .unwrap()
        .format("%Y/%m/%d")
        .to_string();
    let key = format!(
        "AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{day}/{ACCOUNT}_CloudTrail_us-east-1_{stamp}_Ab12Cd34Ef56Gh78.json.gz"
    );
    (key, gz.finish().unwrap())
}

#[tokio::test]
async fn the_deployed_trail_scan_stores_a_near_miss_once_and_a_bad_value_fails_its_cold_start() {
    let sdk = Emulator::Ministack.sdk_as(ACCOUNT).await;
    let s3 = tokenwatch_aws::trail::s3_client(&sdk);
    let bucket = unique("tw-livescan-trail");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("tw-livescan-state");
    create_table(&dynamodb, &table).await.expect("table created");
    let topic = new_topic(&sdk, "tw-livescan").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as Epoch;
    let (key, body) = recent_log_file(now);
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();

    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let name = unique("tw-livescan");
    deploy(&lambda, &name, environment(&bucket, &table, &topic, &[])).await;
    let (error, first) = invoke(&lambda, &name).await;
    assert_eq!(error, None, "{first}");
    assert_eq!(
        (first["Objects"].as_u64(), first["NearMissesNew"].as_u64()),
        (Some(1), Some(1)),
        "{first}"
    );
    let (error, second) = invoke(&lambda, &name).await;
    assert_eq!(error, None, "{second}");
    assert_eq!(
        (second["NearMisses"].as_u64(), second["NearMissesNew"].as_u64()),
        (Some(1), Some(0)),
        "{second}"
    );
    let store = DynamoStore::from_client(dynamodb, &table);
    let stored = store.near_misses(0).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].session.as_deref(), Some("nightly-copy"));

    let bad = unique("tw-livescan-bad");
    deploy(
        &lambda,
        &bad,
        environment(&bucket, &table, &topic, &[("LIVE_SPAN", "5m")]),
    )
    .await;
    let (error, answer) = invoke(&lambda, &bad).await;
    assert!(error.is_some(), "a bad LIVE_SPAN must fail: {answer}");
    assert!(answer.to_string().contains("LIVE_SPAN"), "{answer}");
}
