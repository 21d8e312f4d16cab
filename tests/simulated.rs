//! What the corpus generator injects is exactly what the engine finds, read the way the CLI reads:
//! gzip trail files split between two forked analyzers on two threads, merged at the end.

use std::path::{Path, PathBuf};

use tokenwatch_core::Analyzer;
use tokenwatch_core::reader::decompressing;
use tokenwatch_simulate::{Options, write_corpus};

fn trail_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            trail_files(&path, out);
        } else if path.to_string_lossy().ends_with(".json.gz") {
            out.push(path);
        }
    }
}

#[test]
fn the_engine_finds_exactly_the_incidents_the_generator_injected() {
    let tmp = std::env::temp_dir().join(format!("tokenwatch-e2e-{}", std::process::id()));
    let summary = write_corpus(
        &tmp,
        &Options {
            records: 40_000,
            records_per_file: 1_500,
            seed: 7,
            ..Options::default()
        },
    )
    .unwrap();
    let mut files = Vec::new();
    trail_files(&tmp, &mut files);
    files.sort();
    assert_eq!(files.len(), summary.files);

    let mut analyzer = Analyzer::default();
    let halves: Vec<Analyzer> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(files.len().div_ceil(2))
            .map(|chunk| {
                let mut worker = analyzer.fork();
                s.spawn(move || {
                    for f in chunk {
                        worker
                            .read(decompressing(std::fs::File::open(f).unwrap()).unwrap())
                            .unwrap();
                    }
                    worker
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for half in halves {
        analyzer.merge(half);
    }
    let report = serde_json::to_value(tokenwatch_render::Document::of(
        &analyzer.report(),
        tokenwatch_render::Made::default(),
    ))
    .unwrap();
    tokenwatch_testkit::assert_valid_report(&report);
    std::fs::remove_dir_all(&tmp).unwrap();

    assert_eq!(report["records"], summary.records);
    assert_eq!(report["failures"], summary.failures);
    assert_eq!(report["skipped_records"], 0);
    let groups = report["groups"].as_array().unwrap();
    assert!(
        summary.groups.len() >= 4,
        "the corpus should hold several incidents"
    );
    assert_eq!(groups.len(), summary.groups.len());
    for want in summary.groups.iter().map(|g| g.to_json()) {
        let got = groups
            .iter()
            .find(|g| g["principal"] == want["principal"] && g["session"] == want["session"])
            .unwrap_or_else(|| panic!("not found: {want}"));
        for (field, value) in want.as_object().unwrap() {
            assert_eq!(&got[field], value, "{field} of {}", want["session"]);
        }
    }
    let verdicts: std::collections::BTreeSet<String> =
        groups.iter().map(|g| g["verdict"].to_string()).collect();
    assert!(verdicts.len() >= 3, "several kinds of incident: {verdicts:?}");
}
