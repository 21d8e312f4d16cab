//! Emulator endpoints, fresh tables, and failures to record.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokenwatch_aws::{DynamoStore, SdkOptions, create_table, sdk_config};
use tokenwatch_core::classify::{Failure, IdentityHints, Issuance};
use tokenwatch_core::model::{Client, StsCall};
use tokenwatch_core::stats::GroupKey;
use tokenwatch_core::time::Epoch;

/// Which emulator a test talks to.
#[derive(Clone, Copy, Debug)]
pub enum Emulator {
    Moto,
    /// Serialises its DynamoDB requests, unlike moto (see `concurrency.rs`).
    Ministack,
}

impl Emulator {
    fn variable(self) -> &'static str {
        match self {
            Emulator::Moto => "TOKENWATCH_MOTO_ENDPOINT",
            Emulator::Ministack => "TOKENWATCH_MINISTACK_ENDPOINT",
        }
    }

    /// The endpoint, or a failure that says how to get one.
    pub fn endpoint(self) -> String {
        let var = self.variable();
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "{var} is not set: this test needs the local AWS emulators. Run scripts/test.sh, or \
                 `scripts/emulators.sh install && scripts/emulators.sh start && source target/emulators/env` \
                 and run the tests again"
            ),
        }
    }

    pub async fn sdk(self) -> aws_config::SdkConfig {
        sdk_config(&SdkOptions::emulator(self.endpoint())).await
    }

    /// A new table of its own, and a client for it.
    pub async fn fresh_table(self) -> (aws_sdk_dynamodb::Client, String) {
        let client = aws_sdk_dynamodb::Client::new(&self.sdk().await);
        let table = unique("tokenwatch-state");
        create_table(&client, &table).await.expect("table created");
        (client, table)
    }

    /// A store on a new table of its own.
    pub async fn fresh_store(self) -> DynamoStore {
        let (client, table) = self.fresh_table().await;
        DynamoStore::from_client(client, table)
    }
}

/// A name no other test (or earlier run against the same emulator) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// 2026-11-02T08:00:00Z, when the sessions below were issued.
pub const T0: Epoch = 1_793_606_400;

pub fn key(session: &str) -> GroupKey {
    GroupKey {
        account: Some("123456789012".into()),
        principal: Some("etl-pipeline-role".into()),
        session: Some(session.into()),
    }
}

/// A failure `age` seconds after T0, calling `call`.
pub fn failure(id: &str, age: i64, call: &str) -> Failure {
    Failure {
        event_id: Some(id.into()),
        time: T0 + age,
        account: Some("123456789012".into()),
        principal: Some("arn:aws:iam::123456789012:role/etl-pipeline-role".into()),
        session: Some("nightly-etl".into()),
        access_key_id: Some("ASIAEXAMPLEFAILING01".into()),
        creation_date: Some(T0),
        error_code: "ExpiredToken".into(),
        event_name: call.into(),
        source_ip: Some("10.1.2.3".into()),
        client: Some(Client::Boto3),
        token_call: None,
        hints: IdentityHints {
            identity_type: Some("AssumedRole".into()),
            ..Default::default()
        },
    }
}

pub fn issuance(access_key_id: &str, issued_at: Epoch) -> Issuance {
    Issuance {
        access_key_id: access_key_id.into(),
        account: Some("123456789012".into()),
        principal: Some("arn:aws:iam::123456789012:role/etl-pipeline-role".into()),
        session: Some("nightly-etl".into()),
        issued_at,
        duration_seconds: Some(3600),
        expiration: Some(issued_at + 3600),
        call: StsCall::AssumeRole,
        chained: false,
    }
}
