//! Golden outputs: the report document (JSON), CSV and markdown of every sample and of a simulated
//! corpus, and every SNS message the detector publishes for every sample through the memory twins
//! (standard and Chatbot formats, the incidents' resolved notices, and the digest of the state table
//! afterwards). They were recorded before the engine's types and renderers moved apart; any change to
//! them is a change of behaviour, made on purpose and reviewed as such.
//!
//! `GOLDEN_UPDATE=1 cargo nextest run -p tokenwatch-e2e golden` rewrites the files under `tests/golden/`.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokenwatch_core::incident::Policy;
use tokenwatch_core::memory::{MemoryStore, RecordingSink};
use tokenwatch_core::notice::{DigestNotice, Notice};
use tokenwatch_core::pipeline::Detector;
use tokenwatch_core::query::{Query, Since, state_report};
use tokenwatch_core::reader::decompressing;
use tokenwatch_core::{Analyzer, Report, Window};
use tokenwatch_render::sns::{AlertFormat, Message, Style, render};
use tokenwatch_render::{Document, Made};
use tokenwatch_testkit::{assert_valid_report, inputs, scenarios};

use crate::detector::{event_time, feed_scenario, scenario_events};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

/// Compares `actual` with the golden file `name` (or writes it under `GOLDEN_UPDATE=1`); returns a
/// problem to report, so one run names every file that differs.
fn check(name: &str, actual: &str) -> Option<String> {
    let path = golden_dir().join(name);
    if std::env::var_os("GOLDEN_UPDATE").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (GOLDEN_UPDATE=1 records it)", path.display()));
    if expected == actual {
        return None;
    }
    let line = expected
        .lines()
        .zip(actual.lines())
        .position(|(a, b)| a != b)
        .map_or_else(|| "the length".to_owned(), |i| format!("line {}", i + 1));
    Some(format!("{name} differs from its golden file at {line}"))
}

fn analyze_files(files: &[PathBuf]) -> Report {
    let mut analyzer = Analyzer::new(Window::default());
    for path in files {
        let mut bytes = Vec::new();
        decompressing(std::fs::File::open(path).unwrap())
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        analyzer.read(bytes.as_slice()).unwrap();
    }
    analyzer.report()
}

/// `generated_at` of the recorded documents: the one field that differs between two runs over the same
/// input, fixed here so that the rest compares byte for byte.
const GENERATED_AT: i64 = 1_796_083_200; // 2026-12-01T00:00:00Z

fn renderings(stem: &str, report: &Report) -> Vec<Option<String>> {
    let document = Document::of(report, Made::at(GENERATED_AT));
    assert_valid_report(&serde_json::to_value(&document).unwrap());
    vec![
        check(
            &format!("{stem}.json"),
            &(serde_json::to_string_pretty(&document).unwrap() + "\n"),
        ),
        check(&format!("{stem}.csv"), &document.to_csv()),
        check(&format!("{stem}.md"), &document.to_markdown()),
    ]
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn the_report_of_every_sample_and_of_a_simulated_corpus_is_unchanged() {
    let mut problems: Vec<String> = Vec::new();
    for dir in scenarios() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let report = analyze_files(&inputs(&dir));
        problems.extend(
            renderings(&format!("samples/{name}"), &report)
                .into_iter()
                .flatten(),
        );
    }
    let corpus = tempfile::tempdir().unwrap();
    tokenwatch_simulate::write_corpus(
        corpus.path(),
        &tokenwatch_simulate::Options {
            records: 200_000,
            records_per_file: 2_000,
            seed: 7,
            ..Default::default()
        },
    )
    .unwrap();
    let report = analyze_files(&all_files(corpus.path()));
    assert!(report.findings.len() > 10, "the corpus has incidents");
    problems.extend(renderings("corpus-200000-seed-7", &report).into_iter().flatten());
    assert!(problems.is_empty(), "{problems:#?}");
}

fn alert_json(alert: &Message) -> Value {
    json!({
        "alert_id": alert.alert_id,
        "subject": alert.subject,
        "message": alert.message,
        "attributes": alert.attributes,
    })
}

/// Every publish of one sample through the detector on the memory twins, in `format`: its pages, the
/// resolved notices once the group has been quiet for the cool-down, and the digest of the day.
async fn sns_messages(dir: &Path, format: AlertFormat) -> Vec<Value> {
    let store = MemoryStore::default();
    let sink = RecordingSink::default();
    let policy = Policy::default();
    let style = Style {
        region: "us-east-1".into(),
        format,
        runbook: Some("https://runbooks.example.com/tokenwatch/{verdict}".into()),
    };
    let detector = Detector {
        store: &store,
        sink: &sink,
        policy: &policy,
    };
    feed_scenario(&detector, dir).await;
    let last = scenario_events(dir)
        .iter()
        .map(event_time)
        .max()
        .unwrap_or_default();
    let quiet = last + policy.cooldown + 400;
    detector.sweep(quiet).await.unwrap();
    let mut out: Vec<Value> = sink
        .notices()
        .iter()
        .map(|n| alert_json(&render(n, &style)))
        .collect();
    let day = Query {
        since: Some(Since::Ago(86_400)),
        ..Default::default()
    };
    let report = state_report(&store, &day, quiet).await.unwrap();
    let digest = Notice::Digest(DigestNotice {
        report,
        since: quiet - 86_400,
        until: quiet,
    });
    out.push(alert_json(&render(&digest, &style)));
    out
}

#[tokio::test]
async fn the_sns_messages_of_every_sample_are_unchanged() {
    let mut problems: Vec<String> = Vec::new();
    for dir in scenarios() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        for (format, suffix) in [
            (AlertFormat::Standard, "standard"),
            (AlertFormat::Chatbot, "chatbot"),
        ] {
            let messages = sns_messages(&dir, format).await;
            let text = serde_json::to_string_pretty(&messages).unwrap() + "\n";
            problems.extend(check(&format!("sns/{name}.{suffix}.json"), &text));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
