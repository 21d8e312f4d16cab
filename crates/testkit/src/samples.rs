//! The bundled samples (`samples/` at the top of the workspace).

use std::path::{Path, PathBuf};

/// The `samples/` folder.
pub fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples")
}

/// Every scenario folder (one with an `expected.json`), in name order. Fails if the bundled scenarios are
/// missing, so that a test looping over them cannot pass by looping over none.
pub fn scenarios() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(samples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 13, "the bundled scenarios are missing: {dirs:?}");
    dirs
}

/// A scenario's input files (all but its `expected.json` and its `deliveries.txt`, the order and times
/// the detector is handed its records in the differential test), in name order.
pub fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "expected.json")
        .filter(|p| p.extension().is_none_or(|e| e != "txt"))
        .collect();
    files.sort();
    files
}
