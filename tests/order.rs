//! The report does not depend on the order records arrive in (docs/contract.md, "order"): every sample and
//! a small simulated corpus, their records shuffled, reversed, and split between two forked analyzers,
//! give a report document byte-identical to the one in file order (`generated_at` fixed). A cross-account
//! AssumeRole logged twice (sample 22), a failure before its issuing call (18) and the creationDate join
//! (27) are among them: each once took its facts from whichever copy or call came first.

use std::io::Read;
use std::path::{Path, PathBuf};

use proptest::strategy::{Just, Strategy};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use tokenwatch_core::events::eventbridge_events;
use tokenwatch_core::reader::decompressing;
use tokenwatch_core::{Analyzer, Window};
use tokenwatch_render::{Document, Made};
use tokenwatch_testkit::{inputs, scenarios};

/// A fixed `generated_at`: the one field allowed to differ between two runs.
const GENERATED_AT: i64 = 1_796_083_200;

/// Every record of `files`, each as an EventBridge event of its own, in file order.
fn records(files: &[PathBuf]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for path in files {
        let mut bytes = Vec::new();
        decompressing(std::fs::File::open(path).unwrap())
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        out.extend(
            eventbridge_events(&bytes)
                .unwrap()
                .into_iter()
                .map(|e| e.to_string().into_bytes()),
        );
    }
    out
}

/// The report document of `values` fed in this order, the first `split` of them through a fork.
fn document(values: &[Vec<u8>], split: usize) -> String {
    let mut analyzer = Analyzer::new(Window::default());
    let mut fork = analyzer.fork();
    let split = split.min(values.len());
    for v in &values[..split] {
        fork.feed_value(v);
    }
    for v in &values[split..] {
        analyzer.feed_value(v);
    }
    analyzer.merge(fork);
    serde_json::to_string_pretty(&Document::of(&analyzer.report(), Made::at(GENERATED_AT))).unwrap()
}

fn order_does_not_matter(name: &str, values: Vec<Vec<u8>>, cases: u32) {
    assert!(!values.is_empty(), "{name}: no records");
    let want = document(&values, 0);
    let reversed: Vec<Vec<u8>> = values.iter().rev().cloned().collect();
    assert!(
        document(&reversed, 0) == want,
        "{name}: reversed input gives another report"
    );
    assert!(
        document(&reversed, values.len() / 2) == want,
        "{name}: reversed input split between two forks gives another report"
    );
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let n = values.len();
    let strategy = (Just(values).prop_shuffle(), 0..=n);
    let result = runner.run(&strategy, |(shuffled, split)| {
        if document(&shuffled, split) == want {
            Ok(())
        } else {
            Err(TestCaseError::fail("a shuffled input gives another report"))
        }
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

#[test]
fn shuffled_and_reversed_samples_give_the_identical_report() {
    for dir in scenarios() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        order_does_not_matter(&name, records(&inputs(&dir)), 24);
    }
}

#[test]
fn a_shuffled_simulated_corpus_gives_the_identical_report() {
    let corpus = tempfile::tempdir().unwrap();
    tokenwatch_simulate::write_corpus(
        corpus.path(),
        &tokenwatch_simulate::Options {
            records: 20_000,
            records_per_file: 2_000,
            seed: 11,
            ..Default::default()
        },
    )
    .unwrap();
    let values = records(&files(corpus.path()));
    assert!(
        document(&values, 0).matches("\"verdict\"").count() >= 4,
        "the corpus has incidents: {}",
        document(&values, 0).matches("\"verdict\"").count()
    );
    // Only what the engine reads matters to the order; healthy calls are counted and dropped.
    order_does_not_matter("corpus-20000-seed-11", values, 4);
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}
