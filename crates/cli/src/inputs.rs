//! Finding input files and reading them on every core through the engine.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use indicatif::{ProgressBar, ProgressStyle};
use tokenwatch_core::Analyzer;
use tokenwatch_core::reader::decompressing;

/// One input: a file, or standard input for `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A file and its size in bytes.
    File(PathBuf, u64),
    /// Standard input.
    Stdin,
}

impl Input {
    fn name(&self) -> String {
        match self {
            Input::File(p, _) => p.display().to_string(),
            Input::Stdin => "-".to_owned(),
        }
    }

    fn size(&self) -> u64 {
        match self {
            Input::File(_, n) => *n,
            Input::Stdin => 0,
        }
    }
}

/// An input that could not be read (wholly or in part), and why.
#[derive(Debug)]
pub struct InputError {
    /// The file.
    pub name: String,
    /// Why, in words.
    pub reason: String,
}

/// Files under a folder are read when they end in one of these; named files are always read.
const EXTENSIONS: [&str; 4] = [".json", ".gz", ".ndjson", ".jsonl"];
/// Sample expectations sit beside the sample inputs and are not CloudTrail.
const NOT_INPUT: &str = "expected.json";

/// Expands the command-line paths: folders recursively (sorted, so runs are repeatable).
pub fn discover(paths: &[PathBuf], errors: &mut Vec<InputError>) -> Vec<Input> {
    let mut out = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            out.push(Input::Stdin);
            continue;
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => walk(path, &mut out, errors),
            Ok(m) => out.push(Input::File(path.clone(), m.len())),
            Err(e) => errors.push(InputError {
                name: path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<Input>, errors: &mut Vec<InputError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect::<Vec<_>>(),
        Err(e) => {
            errors.push(InputError {
                name: dir.display().to_string(),
                reason: e.to_string(),
            });
            return;
        }
    };
    let mut entries = entries;
    entries.sort();
    for path in entries {
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => walk(&path, out, errors),
            Ok(m) => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if name != NOT_INPUT && EXTENSIONS.iter().any(|ext| name.ends_with(ext)) {
                    out.push(Input::File(path, m.len()));
                }
            }
            Err(e) => errors.push(InputError {
                name: path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }
}

/// Counts bytes as they are read, for the progress bar.
struct Counted<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Inputs larger than this together get a progress bar (on a terminal only).
const PROGRESS_THRESHOLD: u64 = 32 << 20;

/// Reads every input through `analyzer`, `jobs` files at a time, and collects what failed.
pub fn read_all(analyzer: &mut Analyzer, mut inputs: Vec<Input>, jobs: usize, errors: &mut Vec<InputError>) {
    // Largest first, so the last file to finish is a small one and both cores stay busy to the end.
    inputs.sort_by_key(|i| std::cmp::Reverse(i.size()));
    let total: u64 = inputs.iter().map(Input::size).sum();
    let bar = if total >= PROGRESS_THRESHOLD {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    let jobs = jobs.clamp(1, inputs.len().max(1));
    let forks: Vec<Analyzer> = (0..jobs).map(|_| analyzer.fork()).collect();
    let done: Vec<Analyzer> = thread::scope(|s| {
        let handles: Vec<_> = forks
            .into_iter()
            .map(|mut worker| {
                let (inputs, next, failed, bar) = (&inputs, &next, &failed, &bar);
                s.spawn(move || {
                    while let Some(input) = inputs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if let Err(reason) = read_one(&mut worker, input, bar) {
                            let mut failed = failed.lock().unwrap_or_else(|e| e.into_inner());
                            failed.push(InputError {
                                name: input.name(),
                                reason,
                            });
                        }
                    }
                    worker
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    bar.finish_and_clear();
    for worker in done {
        analyzer.merge(worker);
    }
    let mut failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    failed.sort_by(|a, b| a.name.cmp(&b.name));
    errors.extend(failed);
}

fn read_one(analyzer: &mut Analyzer, input: &Input, bar: &ProgressBar) -> Result<(), String> {
    let before = analyzer.records();
    let src: Box<dyn Read> = match input {
        Input::File(path, _) => Box::new(File::open(path).map_err(|e| e.to_string())?),
        Input::Stdin => Box::new(io::stdin()),
    };
    let src = decompressing(Counted {
        inner: src,
        bar: bar.clone(),
    })
    .map_err(|e| e.to_string())?;
    analyzer.read(src).map_err(|e| {
        let read = analyzer.records() - before;
        format!("{e} (the {read} records before it were analysed)")
    })
}
