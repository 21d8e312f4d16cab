//! `MemoryStore`, the ports' reference twin, keeps the contract of `StateStore::record_failures` on random
//! histories: what it answers and what it holds after each batch is what `FailureStats` says
//! (support/histories.rs; the adapters' tests hold `DynamoStore` to the same oracle).

#[path = "support/histories.rs"]
mod histories;

use proptest::prelude::*;
use tokenwatch_core::memory::MemoryStore;
use tokenwatch_core::stats::GroupKey;

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn memory_store_records_random_histories_as_failure_stats_merge(history in histories::history(1..9)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        let store = MemoryStore::default();
        let key = GroupKey {
            account: Some("123456789012".into()),
            principal: Some("etl".into()),
            session: Some("nightly-etl".into()),
        };
        runtime.block_on(histories::agrees(&store, &key, &history, ""))?;
    }
}

/// Regression: `MemoryStore` merged a batch of more than `MERGE_PART` failures in one merge, `DynamoStore`
/// part by part, so a fuller spelling of the principal arriving in the second part was kept in DynamoDB
/// and not in the twin (nor in what the detector decided on).
#[tokio::test]
async fn a_batch_longer_than_one_part_is_merged_part_by_part() {
    use tokenwatch_core::classify::Failure;
    use tokenwatch_core::incident::IncidentId;
    use tokenwatch_core::ports::{Change, MERGE_PART, StateStore};

    let short = "arn:aws:iam::123456789012:role/etl";
    let full = "arn:aws:iam::123456789012:role/jobs/etl";
    let failures: Vec<Failure> = (0..=MERGE_PART)
        .map(|i| Failure {
            event_id: Some(format!("e{i}")),
            time: histories::T0 + i as i64,
            principal: Some(if i < MERGE_PART { short } else { full }.into()),
            error_code: "ExpiredToken".into(),
            event_name: "s3:GetObject".into(),
            ..Default::default()
        })
        .collect();
    let store = MemoryStore::default();
    let key = GroupKey::default();
    let incident = IncidentId {
        group: "g".into(),
        opened_at: histories::T0,
    };
    let applied = store
        .record_failures(&key, &failures, Change::Add { incident: &incident })
        .await
        .unwrap();
    assert_eq!(applied.map(|a| a.len()), Some(MERGE_PART + 1));
    let stats = store.load(&key).await.unwrap().unwrap().stats;
    assert_eq!(stats.failures, MERGE_PART as u64 + 1);
    assert_eq!(
        stats.principal.as_deref(),
        Some(full),
        "the second part's fuller spelling"
    );

    // A batch within one part keeps its first spelling: add takes the first, merge only a longer one.
    let store = MemoryStore::default();
    let within: Vec<Failure> = failures[MERGE_PART - 9..].to_vec();
    store
        .record_failures(&key, &within, Change::Add { incident: &incident })
        .await
        .unwrap();
    let stats = store.load(&key).await.unwrap().unwrap().stats;
    assert_eq!(stats.principal.as_deref(), Some(short));
}
