//! Mergeable partials: whatever way the objects of a trail are split between readers, merging their
//! partials gives the report one analyzer gives over every object (the same bytes of JSON).

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tokenwatch_core::partial::{Partial, Settings};
use tokenwatch_core::time::parse_time;
use tokenwatch_core::{Analyzer, Report, Window};
use tokenwatch_render::report::{Document, Made};
use tokenwatch_simulate::{Options, write_corpus};
use tokenwatch_testkit::{inputs, scenarios};

const COOLDOWN: i64 = 3600;

fn json(report: &Report) -> String {
    let mut out = Vec::new();
    Document::write_json(report, Made::at(0), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn read(analyzer: &mut Analyzer, file: &[u8]) {
    let src = tokenwatch_core::reader::decompressing(file).unwrap();
    analyzer.read(src).unwrap();
}

/// The report of one analyzer over every object, in order.
fn whole(objects: &[Vec<u8>], window: Window) -> String {
    let mut a = Analyzer::with_cooldown(window, COOLDOWN);
    for o in objects {
        read(&mut a, o);
    }
    json(&a.report())
}

/// Each object goes to the reader `split[i]`, readers read in the order given, their partials pass through
/// JSON and are merged in `merge_order`.
fn merged(
    objects: &[Vec<u8>],
    window: Window,
    split: &[usize],
    read_order: &[usize],
    merge_order: &[usize],
) -> String {
    let readers = split.iter().max().map_or(1, |m| m + 1);
    let mut partials: Vec<Option<Partial>> = (0..readers)
        .map(|r| {
            let mut a = Analyzer::collecting(window, COOLDOWN);
            for &i in read_order.iter().filter(|&&i| split[i] == r) {
                read(&mut a, &objects[i]);
            }
            let p = a.into_partial().unwrap();
            Partial::from_json(&p.to_json()).unwrap()
        })
        .map(Some)
        .collect();
    let mut all = Partial::empty(Settings {
        window,
        cooldown: COOLDOWN,
    });
    for &r in merge_order {
        if let Some(p) = partials.get_mut(r % readers).and_then(Option::take) {
            all.merge(p).unwrap();
        }
    }
    for p in partials.into_iter().flatten() {
        all.merge(p).unwrap();
    }

    json(&all.report())
}

fn sample_objects() -> Vec<Vec<u8>> {
    scenarios()
        .iter()
        .flat_map(|d| inputs(d))
        .map(|p: PathBuf| std::fs::read(p).unwrap())
        .collect()
}

fn corpus_objects(records: u64, per_file: usize) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        records,
        records_per_file: per_file,
        seed: 15,
        ..Options::default()
    };
    write_corpus(dir.path(), &opts).unwrap();
    let mut files = Vec::new();
    let mut stack = vec![dir.path().to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn split_strategy(n: usize) -> impl Strategy<Value = (Vec<usize>, Vec<usize>, Vec<usize>)> {
    (1usize..=8).prop_flat_map(move |readers| {
        (
            proptest::collection::vec(0..readers, n),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            Just((0..readers).collect::<Vec<_>>()).prop_shuffle(),
        )
    })
}

fn check_splits(objects: &[Vec<u8>], window: Window, cases: u32) {
    let expected = whole(objects, window);
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    runner
        .run(
            &split_strategy(objects.len()),
            |(split, read_order, merge_order)| {
                let got = merged(objects, window, &split, &read_order, &merge_order);
                prop_assert!(got == expected, "split {split:?} gave another report");
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn any_split_of_the_samples_merges_to_the_report_of_one_analyzer() {
    let objects = sample_objects();
    assert!(objects.len() > 40, "the samples are missing");
    check_splits(&objects, Window::default(), 24);
}

#[test]
fn any_split_of_a_simulated_corpus_merges_to_the_report_of_one_analyzer() {
    let objects = corpus_objects(30_000, 1_000);
    assert!(
        json(&{
            let mut a = Analyzer::default();
            for o in &objects {
                read(&mut a, o);
            }
            a.report()
        })
        .contains("\"verdict\"")
    );
    check_splits(&objects, Window::default(), 8);
    // With a window: failures outside it are left out by each reader, issuing calls kept.
    let window = Window {
        since: parse_time("2026-11-02T00:20:00Z"),
        until: parse_time("2026-11-02T00:50:00Z"),
    };
    check_splits(&objects, window, 4);
}

#[test]
fn a_failure_delivered_in_two_objects_read_by_two_readers_counts_once() {
    let object = br#"{"Records":[{"eventTime":"2026-11-02T09:00:10Z","eventSource":"s3.amazonaws.com","eventName":"GetObject",
        "errorCode":"ExpiredToken","eventID":"dup-1","recipientAccountId":"123456789012",
        "userIdentity":{"type":"AssumedRole","accessKeyId":"ASIAKEY1","arn":"arn:aws:sts::123456789012:assumed-role/etl/job"}}]}"#;
    let partial = || {
        let mut a = Analyzer::collecting(Window::default(), COOLDOWN);
        read(&mut a, object);
        a.into_partial().unwrap()
    };
    let mut p = partial();
    p.merge(partial()).unwrap();
    let r = p.report();
    assert_eq!((r.records, r.failures, r.findings[0].failures), (2, 1, 1));
    // The negative case: two failures with different eventIDs are two.
    let other = String::from_utf8_lossy(object).replace("dup-1", "dup-2");
    let mut a = Analyzer::collecting(Window::default(), COOLDOWN);
    read(&mut a, other.as_bytes());
    let mut p = partial();
    p.merge(a.into_partial().unwrap()).unwrap();
    assert_eq!(p.report().failures, 2);
}

#[test]
fn partials_of_other_settings_or_another_format_are_refused() {
    let mut a = Partial::empty(Settings {
        window: Window::default(),
        cooldown: 3600,
    });
    let b = Partial::empty(Settings {
        window: Window::default(),
        cooldown: 1800,
    });
    assert!(a.merge(b).is_err());
    let mut text = String::from_utf8(a.to_json()).unwrap();
    text = text.replace("\"format\":1", "\"format\":99");
    let e = Partial::from_json(text.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("format 99"), "{e}");
    assert!(Partial::from_json(b"{}").is_err());
}

#[test]
fn an_analyzer_that_is_not_collecting_has_no_partial() {
    assert!(Analyzer::default().into_partial().is_none());
}
