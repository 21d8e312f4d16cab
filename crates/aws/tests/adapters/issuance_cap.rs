//! Regression: a role issued over and over (a busy Lambda's execution role, re-issued at every cold start
//! and refresh) must not grow its group item towards DynamoDB's 400 KB limit, after which every update
//! to that group would fail. The issue times are capped; the newest always survives.

use tokenwatch_core::ports::StateStore;
use tokenwatch_testkit::Emulator;

use crate::common::{fresh_store, issuance, key};

#[tokio::test]
async fn a_busy_role_keeps_its_issue_times_capped_and_the_newest() {
    let store = fresh_store(Emulator::Moto).await;
    let group = key("nightly-etl");
    let base = 1_793_606_400;
    for i in 0..300 {
        let key_id = format!("ASIACAP{i:013}");
        store
            .record_issuance(&group, &issuance(&key_id, base + i * 60))
            .await
            .unwrap();
    }
    // A redelivered issuance (its session already recorded) still works at the cap.
    store
        .record_issuance(&group, &issuance("ASIACAP0000000000299", base + 299 * 60))
        .await
        .unwrap();
    let state = store.load(&group).await.unwrap().expect("the group exists");
    assert!(
        state.issued_times.len() <= 256,
        "{} issue times kept",
        state.issued_times.len()
    );
    assert!(
        state.issued_times.contains(&(base + 299 * 60)),
        "the newest issue time survives"
    );
    for i in [0, 150, 299] {
        let key_id = format!("ASIACAP{i:013}");
        assert_eq!(
            store.session(&key_id).await.unwrap().map(|s| s.issued_at),
            Some(base + i * 60),
            "{key_id}"
        );
    }
}
