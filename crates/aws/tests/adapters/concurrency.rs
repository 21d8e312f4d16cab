//! Many writers on one group, and what a storm costs in DynamoDB calls.
//!
//! The concurrent test runs on ministack: moto 5.2.5 serves requests on threads without a lock around
//! its DynamoDB backend, and its TransactWriteItems rolls back a cancelled transaction by restoring a
//! deep copy of the whole table taken when it began, which also undoes every write other threads made in
//! between. Under concurrent writers it loses and double-counts writes by itself. ministack runs each
//! DynamoDB request to completion on one event loop, so it is linearizable like DynamoDB.

use std::sync::Arc;

use tokenwatch_aws::DynamoStore;
use tokenwatch_core::classify::Failure;
use tokenwatch_core::model::{Client, Severity};
use tokenwatch_core::ports::{Change, StateStore};
use tokenwatch_core::stats::FailureStats;
use tokenwatch_testkit::Emulator;

use crate::common::{T0, failure, fresh_store, fresh_table, inc, key};

/// xorshift64*: enough to shuffle deterministically without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// A storm of `n` failures of a session issued two hours ago. Dated now, not at T0: ministack deletes items
/// whose `expires_at` has passed (a group's is 30 days after its last failure), so a storm dated at T0
/// vanished mid-test once T0 was a month old.
fn storm(n: usize) -> Vec<Failure> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let shift = now - 2 * 3600 - T0;
    (0..n)
        .map(|i| {
            let f = failure(
                &format!("storm-{i}"),
                3600 + i as i64,
                ["s3:GetObject", "s3:PutObject", "sqs:SendMessage"][i % 3],
            );
            Failure {
                client: Some(if i % 3 == 0 { Client::JavaV2 } else { Client::Boto3 }),
                time: f.time + shift,
                creation_date: f.creation_date.map(|c| c + shift),
                ..f
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_count_each_failure_once_and_page_once() {
    const WRITERS: u64 = 8;
    const FAILURES: usize = 2000;
    let store = Arc::new(fresh_store(Emulator::Ministack).await);
    let failures = Arc::new(storm(FAILURES));
    let k = key("storm");

    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (store, failures, k) = (store.clone(), failures.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            let mut order: Vec<usize> = (0..FAILURES).chain(0..FAILURES).collect();
            Rng(0x9E37_79B9_7F4A_7C15 ^ (writer + 1)).shuffle(&mut order);
            let mut applied = Vec::new();
            for batch in order.chunks(10) {
                let slice: Vec<Failure> = batch.iter().map(|&i| failures[i].clone()).collect();
                let done = store
                    .record_failures(
                        &k,
                        &slice,
                        Change::Add {
                            incident: &inc("storm"),
                        },
                    )
                    .await
                    .unwrap()
                    .unwrap();
                applied.extend(done.into_iter().map(|j| batch[j]));
            }
            applied
        }));
    }
    let mut applied = Vec::new();
    for task in tasks {
        applied.extend(task.await.unwrap());
    }
    applied.sort_unstable();
    assert_eq!(
        applied,
        (0..FAILURES).collect::<Vec<_>>(),
        "every failure applied by exactly one writer"
    );

    let state = store.load(&k).await.unwrap().unwrap();
    assert_eq!(state.stats.failures, FAILURES as u64);
    let mut expected = FailureStats::default();
    for f in failures.iter() {
        expected.add(f.clone());
    }
    assert_eq!(
        state.stats, expected,
        "the stored stats are the merge of all failures, in any order"
    );
    let calls = store.calls();
    println!(
        "{WRITERS} writers x {} batches of 10: {calls} DynamoDB calls ({:.2} per batch)",
        2 * FAILURES / 10,
        calls as f64 / (WRITERS as usize * 2 * FAILURES / 10) as f64
    );

    let mut claims = Vec::new();
    for _ in 0..WRITERS {
        let (store, k) = (store.clone(), k.clone());
        claims.push(tokio::spawn(async move {
            store
                .claim_page(&k, &inc("storm"), Severity::High, 0)
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for claim in claims {
        won += usize::from(claim.await.unwrap());
    }
    assert_eq!(won, 1, "exactly one writer pages");
}

/// Calls per `record_failures` batch for one writer: the detector's budget is 1.2 DynamoDB + SNS calls
/// per failure event in a storm.
async fn calls_per_batch(store: &DynamoStore, batch_size: usize, shuffled: bool) -> f64 {
    let k = key(&format!("cost-{batch_size}-{shuffled}"));
    let mut failures = storm(600);
    if shuffled {
        Rng(42).shuffle(&mut failures);
    }
    for f in &mut failures {
        f.event_id = Some(format!(
            "{}-{batch_size}-{shuffled}",
            f.event_id.as_deref().unwrap()
        ));
    }
    // The detector reads the group before it records (to choose Add or Restart).
    store.load(&k).await.unwrap();
    let before = store.calls();
    let batches = failures.chunks(batch_size).count();
    for batch in failures.chunks(batch_size) {
        store
            .record_failures(
                &k,
                batch,
                Change::Add {
                    incident: &inc("cost"),
                },
            )
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(store.load(&k).await.unwrap().unwrap().stats.failures, 600);
    (store.calls() - before - 1) as f64 / batches as f64
}

/// Calls per batch when `writers` detector instances (each with its own store, so its own view of the
/// group) share a storm of 600 failures, 5 per second, each recording its share in time order.
async fn calls_per_batch_with_writers(writers: usize, batch_size: usize) -> f64 {
    let (client, table) = fresh_table(Emulator::Ministack).await;
    let k = key("shared-storm");
    let failures: Vec<Failure> = storm(600)
        .into_iter()
        .enumerate()
        .map(|(i, f)| Failure {
            time: f.time - i as i64 + i as i64 / 5,
            ..f
        })
        .collect();
    let failures = Arc::new(failures);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (client, table, k, failures) = (client.clone(), table.clone(), k.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let store = DynamoStore::from_client(client, table);
            let mine: Vec<Failure> = failures.iter().skip(w).step_by(writers).cloned().collect();
            store.load(&k).await.unwrap();
            let before = store.calls();
            for batch in mine.chunks(batch_size) {
                store
                    .record_failures(
                        &k,
                        batch,
                        Change::Add {
                            incident: &inc("shared"),
                        },
                    )
                    .await
                    .unwrap()
                    .unwrap();
            }
            (store.calls() - before, mine.chunks(batch_size).count())
        }));
    }
    let (mut calls, mut batches) = (0, 0);
    for task in tasks {
        let (c, b) = task.await.unwrap();
        calls += c;
        batches += b;
    }
    let store = DynamoStore::from_client(client, table);
    let state = store.load(&k).await.unwrap().unwrap();
    let mut expected = FailureStats::default();
    for f in failures.iter() {
        expected.add(f.clone());
    }
    assert_eq!(state.stats, expected);
    calls as f64 / batches as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_costs_about_one_call_per_batch() {
    // ministack: moto copies the whole table for every transaction, which makes 2,400 of them take minutes.
    let store = fresh_store(Emulator::Ministack).await;
    let mut report = Vec::new();
    for (size, shuffled) in [(1, false), (10, false), (1, true), (10, true)] {
        let per_batch = calls_per_batch(&store, size, shuffled).await;
        let order = if shuffled { "shuffled" } else { "in order" };
        report.push(format!(
            "1 writer, batches of {size:>2}, {order}: {per_batch:.3} calls per batch"
        ));
        assert!(
            per_batch <= 1.01,
            "one writer's batches of {size} cost {per_batch} calls each"
        );
    }
    for (writers, size) in [(4, 1), (4, 10), (8, 1)] {
        let per_batch = calls_per_batch_with_writers(writers, size).await;
        report.push(format!(
            "{writers} writers, batches of {size:>2}, in order: {per_batch:.3} calls per batch"
        ));
        assert!(
            per_batch <= 1.5,
            "{writers} writers' batches of {size} cost {per_batch} calls each"
        );
    }
    println!("{}", report.join("\n"));
}
