//! Fresh tables on the emulators, and failures to record.

use tokenwatch_aws::{DynamoStore, create_table};
use tokenwatch_core::classify::{Failure, IdentityHints, Issuance};
use tokenwatch_core::incident::IncidentId;
use tokenwatch_core::model::{Client, IdentityType, StsCall};
use tokenwatch_core::stats::GroupKey;
use tokenwatch_core::time::Epoch;
use tokenwatch_testkit::{Emulator, unique};

/// A new table of its own on `emulator`, and a client for it.
pub async fn fresh_table(emulator: Emulator) -> (aws_sdk_dynamodb::Client, String) {
    let client = aws_sdk_dynamodb::Client::new(&emulator.sdk().await);
    let table = unique("tokenwatch-state");
    create_table(&client, &table).await.expect("table created");
    (client, table)
}

/// A store on a new table of its own on `emulator`.
pub async fn fresh_store(emulator: Emulator) -> DynamoStore {
    let (client, table) = fresh_table(emulator).await;
    DynamoStore::from_client(client, table)
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
        requested_session: None,
        hints: IdentityHints {
            identity_type: Some(IdentityType::AssumedRole),
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
        for_container: false,
    }
}

/// An incident id named `name` (the stores compare ids, they never read into them).
pub fn inc(name: &str) -> IncidentId {
    IncidentId {
        group: name.into(),
        opened_at: T0,
    }
}
