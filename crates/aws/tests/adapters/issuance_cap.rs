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

/// Regression (issue 14, item 4): an issuing call was a two-item transaction (4 write units) and a read
/// of its group. Now: two single-item writes, one unit each for items under 1 KB, and the group's state
/// comes back with its write; a repeat costs the same and changes nothing.
#[tokio::test]
async fn an_issuing_call_is_two_single_item_writes_and_no_read() {
    let store = fresh_store(Emulator::Ministack).await;
    let group = key("nightly-etl");
    let first = issuance("ASIAWRITES0000000001", 1_793_606_400);
    let state = store.record_issuance(&group, &first).await.unwrap();
    assert_eq!((store.calls(), store.write_units()), (2, 2.0));
    assert_eq!(
        Some(&state),
        store.load(&group).await.unwrap().as_ref(),
        "the state it hands back is the stored one"
    );
    let calls = store.calls();
    let again = store.record_issuance(&group, &first).await.unwrap();
    assert_eq!((store.calls() - calls, store.write_units()), (2, 4.0));
    assert_eq!(again, state, "a repeat changes nothing");
}
