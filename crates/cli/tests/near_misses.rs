//! `tokenwatch report` from the state table shows the near misses the scheduled trail scan stored there
//! (functions/scanner/src/live.rs), through the built binary against moto's DynamoDB with the real SDK:
//! in the JSON document's `near_misses` section and the table, within `--since`, and not when a filter
//! leaves them out.

use std::process::{Command, Output};

use serde_json::Value;
use tokenwatch_aws::{DynamoStore, create_table};
use tokenwatch_core::assess::Lease;
use tokenwatch_core::nearmiss::{Occurrence, SessionNearMiss, near_miss};
use tokenwatch_core::ports::NearMissStore;
use tokenwatch_core::time::Epoch;
use tokenwatch_core::{Client, CredentialSource, LeaseSource};
use tokenwatch_testkit::{Emulator, unique};

fn tokenwatch(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("COLUMNS", "200")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("TOKENWATCH_TABLE")
        .output()
        .unwrap()
}

/// A boto3 session of `session` copied out of its provider, last used 3 minutes before its hour ended.
fn copied(key: &str, session: &str, last_use: Epoch) -> SessionNearMiss {
    let issued_at = last_use - 57 * 60;
    SessionNearMiss {
        account: Some("123456789012".into()),
        principal: Some("arn:aws:iam::123456789012:role/etl".into()),
        session: Some(session.into()),
        client: Client::Boto3,
        credential_source: CredentialSource::AssumeRole,
        lease: Lease {
            seconds: 3600,
            source: LeaseSource::DefaultAssumeRole,
        },
        occurrence: Occurrence {
            access_key_id: key.into(),
            issued_at,
            last_use,
            lease_end: issued_at + 3600,
            near_miss: near_miss(last_use, Client::Boto3, issued_at + 3600).unwrap(),
        },
    }
}

fn near_miss_sessions(out: &Output) -> Vec<String> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    tokenwatch_testkit::assert_valid_report(&doc);
    doc["near_misses"]["groups"]
        .as_array()
        .map(|groups| {
            groups
                .iter()
                .map(|g| g["session"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_table_report_shows_the_stored_near_misses_of_its_window() {
    let endpoint = Emulator::Moto.endpoint();
    let client = aws_sdk_dynamodb::Client::new(&Emulator::Moto.sdk().await);
    let table = unique("tw-nearmiss-report");
    create_table(&client, &table).await.expect("table created");
    let store = DynamoStore::from_client(client, &table);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as Epoch;
    store
        .record_near_misses(
            &[
                copied("ASIANEARRECENT01", "nightly-copy", now - 3600),
                copied("ASIANEARLASTWEEK", "weekly-copy", now - 5 * 86_400),
            ],
            now,
        )
        .await
        .unwrap();

    let json = |extra: &[&str]| {
        let mut args = vec!["report", "--table", &table, "--format", "json"];
        args.extend(extra);
        near_miss_sessions(&tokenwatch(&endpoint, &args))
    };
    assert_eq!(json(&[]), ["nightly-copy"], "the last day's only");
    assert_eq!(json(&["--since", "7d"]), ["nightly-copy", "weekly-copy"]);
    assert_eq!(json(&["--verdict", "near-miss"]), ["nightly-copy"]);
    assert!(json(&["--verdict", "stale-cache"]).is_empty());
    assert!(json(&["--min-severity", "medium"]).is_empty());
    assert!(json(&["--principal", "web-*"]).is_empty());

    let out = tokenwatch(&endpoint, &["report", "--table", &table, "--format", "table"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("nightly-copy") && !text.contains("weekly-copy"),
        "{text}"
    );
}
