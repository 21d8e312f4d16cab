//! Regression: a role named `-` and a failure whose principal is unknown shared one group item (both
//! parts were written `-`), and so did IAM users whose paths agree on their first 256 bytes. Distinct
//! keys now have distinct items; an item an earlier version wrote stays where a key leads, or is left to
//! its TTL.

use aws_sdk_dynamodb::types::AttributeValue;
use tokenwatch_aws::DynamoStore;
use tokenwatch_core::incident::incident_id;
use tokenwatch_core::ports::{Change, StateStore};
use tokenwatch_core::stats::GroupKey;
use tokenwatch_testkit::Emulator;

use crate::common::{T0, failure, fresh_table};

fn principal(p: Option<&str>) -> GroupKey {
    GroupKey {
        account: Some("123456789012".into()),
        principal: p.map(str::to_owned),
        session: Some("job".into()),
    }
}

fn long_user(name: &str) -> String {
    format!(
        "arn:aws:iam::123456789012:user{}{name}",
        "/engineering/".repeat(25)
    )
}

#[tokio::test]
async fn a_role_named_dash_and_an_unknown_principal_no_longer_share_a_group_item() {
    let (client, table) = fresh_table(Emulator::Moto).await;
    let store = DynamoStore::from_client(client.clone(), &table);
    let keys = [
        principal(Some("-")),
        principal(None),
        principal(Some(&long_user("alice"))),
        principal(Some(&long_user("bob"))),
    ];
    for (i, k) in keys.iter().enumerate() {
        let f = failure(&format!("e{i}"), 3700 + i as i64, "s3:GetObject");
        let inc = incident_id(k, f.time);
        store
            .record_failures(k, &[f], Change::Add { incident: &inc })
            .await
            .unwrap();
    }
    for k in &keys {
        let state = store.load(k).await.unwrap().expect("each key has its item");
        assert_eq!((&state.key, state.stats.failures), (k, 1));
    }
    let open = store.open_incidents().await.unwrap();
    let mut listed: Vec<&GroupKey> = open.iter().map(|g| &g.key).collect();
    let mut want: Vec<&GroupKey> = keys.iter().collect();
    listed.sort();
    want.sort();
    assert_eq!(listed, want, "the sweep sees each group under its own key");
}

#[tokio::test]
async fn open_incidents_stored_by_an_earlier_version_are_swept_or_left_to_their_ttl() {
    let (client, table) = fresh_table(Emulator::Moto).await;
    let store = DynamoStore::from_client(client.clone(), &table);
    let s = |v: &str| AttributeValue::S(v.into());
    let legacy = |pk: String, principal: &str| {
        client
            .put_item()
            .table_name(&table)
            .item("pk", s(&format!("GROUP#{pk}")))
            .item("sk", s("STATE"))
            .item("key_account", s("123456789012"))
            .item("key_principal", s(principal))
            .item("key_session", s("job"))
            .item("failures", AttributeValue::N("3".into()))
            .item("first_failure", AttributeValue::N(T0.to_string()))
            .item("last_failure", AttributeValue::N(T0.to_string()))
            .item("incident_id", s(&format!("{pk}@{T0}")))
            .item("open", s("1"))
            .send()
    };
    // Written `-` by the old version, for a role named `-` or an unknown principal alike: its id is the
    // unknown principal's now, so it is swept as that group's.
    legacy("123456789012|-|job".into(), "-").await.unwrap();
    // Cut at 256 bytes without a hash: no key leads there any more.
    let cut: String = long_user("alice").chars().take(256).collect();
    legacy(format!("123456789012|{cut}|job"), &long_user("alice"))
        .await
        .unwrap();
    let open = store.open_incidents().await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].key, principal(None));
    assert_eq!(open[0].stats.failures, 3);
    let id = open[0].incident.id.clone().unwrap();
    assert!(
        store.resolve(&open[0].key, &id, T0 + 3600).await.unwrap(),
        "the sweep can resolve it"
    );
}
