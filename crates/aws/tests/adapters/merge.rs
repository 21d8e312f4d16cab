//! `DynamoStore` keeps the merge rule on the emulators: random histories of one group's failure batches
//! (the strategy and oracle core's `MemoryStore` test uses, written from `FailureStats::add` and `merge`)
//! recorded on moto and on ministack, every answer and every loaded state compared with the oracle. Each
//! history has a table of its own: moto copies every table a transaction touches once per action (to roll
//! back), so a transaction's cost grows with what the table holds.

#[path = "../../../core/tests/support/histories.rs"]
mod histories;

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use tokenwatch_core::classify::Failure;
use tokenwatch_core::stats::GroupKey;
use tokenwatch_core::time::Epoch;
use tokenwatch_testkit::Emulator;

use crate::common::{fresh_store, key};

/// Histories per emulator: each records a few batches, some of them 200 failures long. Fewer on moto:
/// it copies the whole table for each action of a transaction (to roll back), so a transaction of a
/// hundred claims costs it a second on a busy machine, where ministack takes milliseconds.
fn cases(emulator: Emulator) -> u32 {
    match emulator {
        Emulator::Moto => 8,
        Emulator::Ministack => 24,
    }
}

fn agree_on(emulator: Emulator) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let config = Config {
        cases: cases(emulator),
        // A failing case shrinks on the emulator too; bound it so a failure reports in minutes.
        max_shrink_iters: 200,
        failure_persistence: None,
        ..Config::default()
    };
    // Seeded: the same histories on every run, so that a failure on one emulator reproduces.
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as Epoch;
    let shift = now - 2 * 3600 - histories::T0;
    let case = AtomicUsize::new(0);
    let outcome = runner.run(&histories::history(1..7), |history| {
        let n = case.fetch_add(1, Ordering::Relaxed);
        let group = GroupKey {
            session: Some(format!("history-{n}")),
            ..key("")
        };
        let history = dated(history, shift);
        runtime.block_on(async {
            let store = fresh_store(emulator).await;
            histories::agrees(&store, &group, &history, &format!("h{n}-")).await
        })
    });
    if let Err(e) = outcome {
        panic!("{emulator:?}: DynamoStore and FailureStats::merge disagree: {e}");
    }
}

/// `history` moved by `shift` seconds: the histories begin two hours ago rather than at T0, because
/// ministack deletes items whose `expires_at` has passed (a group's is 30 days after its last failure),
/// so a group dated at T0 vanishes mid-test once T0 is a month old.
fn dated(history: Vec<histories::Step>, shift: Epoch) -> Vec<histories::Step> {
    history
        .into_iter()
        .map(|step| histories::Step {
            failures: step
                .failures
                .into_iter()
                .map(|f| Failure {
                    time: f.time + shift,
                    creation_date: f.creation_date.map(|c| c + shift),
                    ..f
                })
                .collect(),
            session_failed_at: step.session_failed_at.map(|t| t + shift),
            ..step
        })
        .collect()
}

#[test]
fn dynamo_store_records_random_histories_as_failure_stats_merge_on_moto() {
    agree_on(Emulator::Moto);
}

#[test]
fn dynamo_store_records_random_histories_as_failure_stats_merge_on_ministack() {
    agree_on(Emulator::Ministack);
}
