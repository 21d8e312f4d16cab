//! Finding input files and reading them on every core through the engine.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, FileType, Metadata};
use std::io::{self, Read};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use indicatif::{ProgressBar, ProgressStyle};
use memchr::memmem;
use tokenwatch_core::Analyzer;
use tokenwatch_core::reader::{JsonSplitter, ReadError};

use crate::inflate::{Inflater, Opened};

/// One input: a file, or standard input for `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A file and its size in bytes (0 for a FIFO or device named on the command line: a stream).
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

/// An input named on stderr, and why: one that could not be read (wholly or in part), or one skipped.
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
/// Folders CloudTrail writes beside the log files that hold no API records: digest files and Insights
/// events. `report --from-trail` never lists them either (docs/cloudtrail.md, "Digest files"), so both
/// read the same records from a trail and from a copy of its bucket.
const NOT_LOGS: [&str; 2] = ["CloudTrail-Digest", "CloudTrail-Insight"];

/// What discovery found: the inputs to read, and what it left out on purpose.
#[derive(Debug, Default)]
pub struct Found {
    /// The files (and standard input) to read.
    pub inputs: Vec<Input>,
    /// What was not read and why, for stderr: links to a folder or file read already, FIFOs, sockets and
    /// devices in folders. Nothing is lost by these: everything they lead to is read once.
    pub skipped: Vec<InputError>,
}

/// A command-line path that is an S3 URL (and no local path): `analyze` reads local files only.
pub fn s3_url(paths: &[PathBuf]) -> Option<&PathBuf> {
    paths.iter().find(|p| {
        let s = p.to_string_lossy();
        s.get(..5)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("s3://"))
            && std::fs::symlink_metadata(p).is_err()
    })
}

/// What identifies a file or folder however it is reached (through links, bind mounts, `..`): its device
/// and inode.
#[cfg(unix)]
type FileId = (u64, u64);

#[cfg(unix)]
fn file_id(_path: &Path, m: &Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
type FileId = PathBuf;

#[cfg(not(unix))]
fn file_id(path: &Path, _m: &Metadata) -> Option<FileId> {
    std::fs::canonicalize(path).ok()
}

/// What a file that is neither a folder nor a regular file is, in words.
fn special_kind(ft: FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
    }
    let _ = ft;
    "not a regular file"
}

fn named(path: &Path, reason: impl Into<String>) -> InputError {
    InputError {
        name: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Whether a file found in a folder is read, by its name.
fn is_input_name(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    name != NOT_INPUT && EXTENSIONS.iter().any(|ext| name.ends_with(ext))
}

/// Expands the command-line paths: folders recursively, in sorted order so runs are repeatable. Each
/// folder and file is taken once however many links and arguments lead to it (so a link back to an
/// ancestor ends at once); links are followed only after the real trees of every argument are walked, so
/// a file is read under its own name when it has one there. In folders only regular files are read (a
/// FIFO would block the run forever); a FIFO or device named on the command line is read as a stream,
/// like `-`. A folder that holds nothing to read is an error, named with what it held.
pub fn discover(paths: &[PathBuf], errors: &mut Vec<InputError>) -> Found {
    let mut walk = Walk::default();
    for path in paths {
        if path.as_os_str() == "-" {
            walk.found.inputs.push(Input::Stdin);
            continue;
        }
        let m = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                walk.error(None, path, e.to_string());
                continue;
            }
        };
        if let Some(first) = walk.taken_before(path, &m) {
            let what = if m.is_dir() { "folder" } else { "file" };
            walk.skip(path, format!("the same {what} as {first}, read once"));
        } else if m.is_dir() {
            walk.roots.push((path.clone(), Held::default()));
            let root = walk.roots.len() - 1;
            walk.tree(path.clone(), root);
        } else if m.is_file() || m.file_type().is_fifo_like() {
            let size = if m.is_file() { m.len() } else { 0 };
            walk.found.inputs.push(Input::File(path.clone(), size));
        } else {
            let reason = format!("{}: not a file to read", special_kind(m.file_type()));
            walk.error(None, path, reason);
        }
    }
    while let Some((link, root)) = walk.links.pop_front() {
        walk.link(&link, root);
    }
    for (path, held) in std::mem::take(&mut walk.roots) {
        if held.inputs == 0 && held.errors == 0 {
            walk.errors.push(named(&path, held.reason()));
        }
    }
    errors.append(&mut walk.errors);
    walk.found
}

/// File types read as a stream when named on the command line.
trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for FileType {
    fn is_fifo_like(&self) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            self.is_fifo() || self.is_char_device() || self.is_block_device()
        }
        #[cfg(not(unix))]
        {
            false
        }
    }
}

/// The state of one discovery.
#[derive(Default)]
struct Walk {
    /// Every folder and file taken, with the path it was taken by.
    taken: HashMap<FileId, PathBuf>,
    /// The folders named on the command line, and what each held.
    roots: Vec<(PathBuf, Held)>,
    /// Links found in folders, with the command-line folder they were found under: followed last.
    links: VecDeque<(PathBuf, usize)>,
    found: Found,
    errors: Vec<InputError>,
}

/// What one command-line folder held, to say what it was when nothing in it is read.
#[derive(Default)]
struct Held {
    /// Entries seen at any depth.
    entries: usize,
    /// Files that would be read, including those read already through another path.
    inputs: usize,
    /// Other files (by name or by type), and the first of them.
    others: usize,
    example: Option<PathBuf>,
    /// Entries that could not be looked at (each named already).
    errors: usize,
}

impl Held {
    fn other(&mut self, path: &Path) {
        self.others += 1;
        if self.example.is_none() {
            self.example = path.file_name().map(PathBuf::from);
        }
    }

    /// Why a folder holding no file to read is not CloudTrail.
    fn reason(&self) -> String {
        if self.entries == 0 {
            return "not CloudTrail: an empty folder".to_owned();
        }
        let what = match (&self.example, self.others) {
            (_, 0) => "only empty folders".to_owned(),
            (Some(e), 1) => format!("1 other file: {}", e.display()),
            (Some(e), n) => format!("{n} other files, such as {}", e.display()),
            (None, n) => format!("{n} other files"),
        };
        format!("not CloudTrail: no .json, .gz, .ndjson or .jsonl files in the folder ({what})")
    }
}

impl Walk {
    /// The path `path` was taken by before, or `None` after taking it now.
    fn taken_before(&mut self, path: &Path, m: &Metadata) -> Option<String> {
        let id = file_id(path, m)?;
        match self.taken.get(&id) {
            Some(first) => Some(first.display().to_string()),
            None => {
                self.taken.insert(id, path.to_path_buf());
                None
            }
        }
    }

    fn skip(&mut self, path: &Path, reason: String) {
        self.found.skipped.push(named(path, reason));
    }

    fn error(&mut self, root: Option<usize>, path: &Path, reason: String) {
        if let Some(r) = root {
            self.roots[r].1.errors += 1;
        }
        self.errors.push(named(path, reason));
    }

    fn held(&mut self, root: usize) -> &mut Held {
        &mut self.roots[root].1
    }

    /// Walks the real folders under `top` (taken already), depth first with a stack of its own: a tree
    /// thousands of folders deep must not overflow the thread's.
    fn tree(&mut self, top: PathBuf, root: usize) {
        let mut folders = vec![top];
        while let Some(dir) = folders.pop() {
            self.entries(&dir, &mut folders, root);
        }
    }

    /// Takes the entries of one folder: files to read, folders to enter (pushed on `folders`), links to
    /// follow once every real tree is walked.
    fn entries(&mut self, dir: &Path, folders: &mut Vec<PathBuf>, root: usize) {
        let mut entries: Vec<(PathBuf, io::Result<FileType>)> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| (e.path(), e.file_type()))
                .collect(),
            Err(e) => return self.error(Some(root), dir, e.to_string()),
        };
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut subfolders = Vec::new();
        for (path, ft) in entries {
            self.held(root).entries += 1;
            let ft = match ft {
                Ok(ft) => ft,
                Err(e) => {
                    self.error(Some(root), &path, e.to_string());
                    continue;
                }
            };
            if ft.is_symlink() {
                self.links.push_back((path, root));
            } else if ft.is_dir() {
                let not_logs = path.file_name().is_some_and(|n| NOT_LOGS.iter().any(|s| n == *s));
                if !not_logs {
                    self.subfolder(path, &mut subfolders, root);
                }
            } else if ft.is_file() {
                self.file(path, root);
            } else {
                self.held(root).other(&path);
                let reason = format!("{}: only regular files are read in folders", special_kind(ft));
                self.skip(&path, reason);
            }
        }
        // Popped from the end: pushed in reverse, they are walked in sorted order.
        folders.extend(subfolders.into_iter().rev());
    }

    fn subfolder(&mut self, path: PathBuf, subfolders: &mut Vec<PathBuf>, root: usize) {
        match std::fs::symlink_metadata(&path) {
            Ok(m) => match self.taken_before(&path, &m) {
                // A folder mounted twice, or reached again under a link followed.
                Some(first) => self.skip(&path, format!("the same folder as {first}, read once")),
                None => subfolders.push(path),
            },
            Err(e) => self.error(Some(root), &path, e.to_string()),
        }
    }

    /// A regular file in a folder.
    fn file(&mut self, path: PathBuf, root: usize) {
        if !is_input_name(&path) {
            return self.held(root).other(&path);
        }
        self.held(root).inputs += 1;
        match std::fs::metadata(&path) {
            Ok(m) => match self.taken_before(&path, &m) {
                Some(first) => self.skip(&path, format!("the same file as {first}, read once")),
                None => self.found.inputs.push(Input::File(path, m.len())),
            },
            Err(e) => self.error(Some(root), &path, e.to_string()),
        }
    }

    /// A link found in a folder: to a folder or file not taken yet, it is walked or read; to one taken
    /// already (a loop back to an ancestor included), it is skipped and named.
    fn link(&mut self, link: &Path, root: usize) {
        let m = match std::fs::metadata(link) {
            Ok(m) => m,
            // A dangling link matters only where a file of that name would be read.
            Err(e) if is_input_name(link) => {
                self.held(root).inputs += 1;
                return self.error(Some(root), link, format!("a broken link: {e}"));
            }
            Err(_) => return self.held(root).other(link),
        };
        if m.is_dir() {
            match self.taken_before(link, &m) {
                Some(first) => self.skip(link, format!("a link to a folder read already: {first}")),
                None => self.tree(link.to_path_buf(), root),
            }
        } else if m.is_file() {
            if !is_input_name(link) {
                return self.held(root).other(link);
            }
            self.held(root).inputs += 1;
            match self.taken_before(link, &m) {
                Some(first) => self.skip(link, format!("a link to a file read already: {first}")),
                None => self.found.inputs.push(Input::File(link.to_path_buf(), m.len())),
            }
        } else {
            self.held(root).other(link);
            let reason = format!(
                "a link to {}: only regular files are read in folders",
                special_kind(m.file_type())
            );
            self.skip(link, reason);
        }
    }
}

/// Files read at once per core, at most: reading is CPU-bound (inflate, splitting), so more threads than
/// cores help only while reads wait on a slow disk or a network file system, and each one holds a read
/// buffer and its own share of the analysis.
pub const JOBS_PER_CORE: usize = 4;

/// How many files to read at once: what was asked (default one per core), at most [`JOBS_PER_CORE`] per
/// core, with a line for stderr when that is fewer than asked. (Fewer files than jobs also means fewer
/// threads; that is not worth a line.)
pub fn jobs(requested: Option<NonZeroUsize>, cores: usize) -> (usize, Option<String>) {
    let cores = cores.max(1);
    let most = cores * JOBS_PER_CORE;
    match requested.map(NonZeroUsize::get) {
        None => (cores, None),
        Some(n) if n > most => (
            most,
            Some(format!(
                "--jobs {n}: reading at most {most} files at once ({JOBS_PER_CORE} per core, {cores} cores)"
            )),
        ),
        Some(n) => (n, None),
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
    let work = |mut worker: Analyzer| {
        let mut inflater = Inflater::default();
        while let Some(input) = inputs.get(next.fetch_add(1, Ordering::Relaxed)) {
            if let Err(reason) = read_one(&mut worker, &mut inflater, input, &bar) {
                let mut failed = failed.lock().unwrap_or_else(|e| e.into_inner());
                failed.push(InputError {
                    name: input.name(),
                    reason,
                });
            }
        }
        worker
    };
    let spare = analyzer.fork();
    let done: Vec<Analyzer> = thread::scope(|s| {
        // A thread the system refuses (a process limit) is one worker fewer, not a panic.
        let handles: Vec<_> = forks
            .into_iter()
            .filter_map(|worker| thread::Builder::new().spawn_scoped(s, move || work(worker)).ok())
            .collect();
        let mut done: Vec<Analyzer> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
        // Whatever no worker took (none could start) is read here.
        done.push(work(spare));
        done
    });
    bar.finish_and_clear();
    for worker in done {
        analyzer.merge(worker);
    }
    let mut failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    failed.sort_by(|a, b| a.name.cmp(&b.name));
    errors.extend(failed);
}

fn read_one(
    analyzer: &mut Analyzer,
    inflater: &mut Inflater,
    input: &Input,
    bar: &ProgressBar,
) -> Result<(), String> {
    let src: Box<dyn Read> = match input {
        Input::File(path, _) => Box::new(File::open(path).map_err(|e| e.to_string())?),
        Input::Stdin => Box::new(io::stdin()),
    };
    let src = Counted {
        inner: src,
        bar: bar.clone(),
    };
    // A trail file comes whole (inflated in one call, split in place); anything else as a stream.
    let opened = inflater.open(src, input.size()).map_err(|e| e.to_string())?;
    // Read apart, so that an input refused as not CloudTrail adds nothing to the report's counts; the
    // worker's usage of sessions is lent to it, and comes back either way.
    let mut file = analyzer.fork_lending();
    let outcome = match opened {
        Opened::Whole(json) => {
            let mut sniff = Sniff::new(io::empty());
            sniff.watch(&json);
            let mut splitter = JsonSplitter::whole(json);
            let read = file.read_values(&mut splitter);
            inflater.recycle(splitter.into_buffer());
            sniff.judge(read, file.records())
        }
        Opened::Stream(src) => {
            let mut sniff = Sniff::new(src);
            let read = file.read(&mut sniff);
            sniff.judge(read, file.records())
        }
    };
    match outcome {
        Outcome::Read => {
            analyzer.merge(file);
            Ok(())
        }
        Outcome::Cut(reason) => {
            analyzer.merge(file);
            Err(reason)
        }
        Outcome::NotCloudTrail(reason) => {
            analyzer.drop_fork(file);
            Err(reason)
        }
    }
}

/// What reading one input came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Read to its end.
    Read,
    /// Read up to a fault, named with what was read before it.
    Cut(String),
    /// No CloudTrail record in it: named with what it was, and nothing of it counted.
    NotCloudTrail(String),
}

/// Watches a decompressed stream for the mark of CloudTrail, and keeps its first bytes to say what it
/// was when the mark never came. The mark is `eventTime`: every record has it (docs/cloudtrail.md), in an
/// EventBridge `detail`, in an SQS or SNS body and in lookup-events' `CloudTrailEvent` string alike.
/// Once it is seen the stream only passes through, so the search costs a few bytes of the first record.
struct Sniff<R> {
    inner: R,
    seen: bool,
    head: Vec<u8>,
    /// The last bytes of the previous read, for a mark split across two reads.
    tail: Vec<u8>,
}

const MARK: &[u8] = b"eventTime";
const HEAD: usize = 512;

impl<R: Read> Read for Sniff<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.watch(&buf[..n]);
        Ok(n)
    }
}

impl<R> Sniff<R> {
    /// Looks at the next bytes of the stream (all of it, for a stream read whole).
    fn watch(&mut self, chunk: &[u8]) {
        let n = chunk.len();
        if !self.seen && n > 0 {
            let room = HEAD.saturating_sub(self.head.len());
            self.head.extend_from_slice(&chunk[..n.min(room)]);
            let keep = MARK.len() - 1;
            let mut edge = std::mem::take(&mut self.tail);
            edge.extend_from_slice(&chunk[..n.min(keep)]);
            self.seen = memmem::find(&edge, MARK).is_some() || memmem::find(chunk, MARK).is_some();
            self.tail = if n >= keep {
                chunk[n - keep..].to_vec()
            } else {
                edge[edge.len().saturating_sub(keep)..].to_vec()
            };
        }
    }

    fn new(inner: R) -> Self {
        Sniff {
            inner,
            seen: false,
            head: Vec::new(),
            tail: Vec::new(),
        }
    }

    /// The outcome of reading the stream, which gave `values` values: an input with no CloudTrail record
    /// at all is refused by what it was (docs/contract.md, "The command line"). An empty stream (NDJSON of
    /// no records, what `jq` writes when its filter matched nothing) and an empty log file or lookup
    /// (`{"Records":[]}`, `{"Events":[]}`, `[]`) are CloudTrail with nothing in them, not errors.
    fn judge(&self, read: Result<(), ReadError>, values: u64) -> Outcome {
        match read {
            Ok(()) if self.seen => Outcome::Read,
            // Nothing at all, or empty containers: NDJSON of no records, a filter that matched nothing.
            Ok(()) if values == 0 && (trimmed(&self.head).is_empty() || starts_json(&self.head)) => {
                Outcome::Read
            }
            Ok(()) => Outcome::NotCloudTrail(format!("not CloudTrail: {}", describe(&self.head))),
            Err(e)
                if !self.seen
                    && values == 0
                    && !trimmed(&self.head).is_empty()
                    && !starts_container(&self.head) =>
            {
                Outcome::NotCloudTrail(format!("not CloudTrail: {}; {e}", describe(&self.head)))
            }
            Err(e) => Outcome::Cut(format!("{e} (the {values} records before it were analysed)")),
        }
    }
}

/// `head` without leading white space and byte-order mark.
fn trimmed(head: &[u8]) -> &[u8] {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    &head[start..]
}

fn starts_json(head: &[u8]) -> bool {
    trimmed(head).starts_with(b"{") || trimmed(head).starts_with(b"[")
}

/// Starts like a trail log file or lookup-events output: `{"Records":` or `{"Events":`.
fn starts_container(head: &[u8]) -> bool {
    let Some(rest) = trimmed(head).strip_prefix(b"{") else {
        return false;
    };
    let rest = trimmed(rest);
    rest.starts_with(b"\"Records\"") || rest.starts_with(b"\"Events\"")
}

/// What a stream with no CloudTrail record in it was, from its first bytes.
fn describe(head: &[u8]) -> String {
    let t = trimmed(head);
    let utf8 = match std::str::from_utf8(t) {
        Ok(s) => Some(s),
        // A character cut at the end of the head is still text.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&t[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    let binary = utf8.is_none_or(|s| s.chars().any(|c| c.is_control() && !c.is_ascii_whitespace()));
    let what = if t.starts_with(b"{") && memmem::find(head, b"\"digestStartTime\"").is_some() {
        "a CloudTrail digest file (it lists log files; it holds no records)"
    } else if starts_container(head) {
        "a Records or Events list with no eventTime in its entries"
    } else if t.starts_with(b"{") {
        "a JSON object without Records or eventTime"
    } else if t.starts_with(b"[") {
        "a JSON array without CloudTrail records (no eventTime)"
    } else if binary {
        "binary data, neither JSON nor gzip"
    } else if t.starts_with(b"<") {
        "an XML or HTML file"
    } else {
        let first_line = t.split(|b| *b == b'\n').next().unwrap_or_default();
        if first_line.contains(&b',') {
            "a CSV file"
        } else if first_line.contains(&b'\t') {
            "a tab-separated file"
        } else {
            "text, not JSON"
        }
    };
    let text = String::from_utf8_lossy(t);
    let text = text.trim_end();
    let start: String = text.chars().take(40).collect();
    let more = if start.len() < text.len() { "…" } else { "" };
    format!("{what}, starting \"{start}{more}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::process::Command;

    const RECORD: &str = r#"{"Records":[{"eventTime":"2026-11-02T09:00:00Z","eventName":"ListBuckets"}]}"#;

    fn mkfifo(path: &Path) {
        assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
    }

    fn names(found: &[Input], root: &Path) -> Vec<String> {
        found
            .iter()
            .map(|i| match i {
                Input::File(p, _) => p.strip_prefix(root).unwrap_or(p).display().to_string(),
                Input::Stdin => "-".into(),
            })
            .collect()
    }

    fn skipped(found: &Found, root: &Path) -> Vec<String> {
        let root = root.display().to_string();
        found
            .skipped
            .iter()
            .map(|s| {
                s.name
                    .strip_prefix(&format!("{root}/"))
                    .unwrap_or(&s.name)
                    .to_owned()
            })
            .collect()
    }

    /// Reads `bytes` handing out at most `step` bytes per read, as a pipe or a gzip stream may.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    fn sniffed(bytes: &[u8], step: usize) -> Outcome {
        let mut analyzer = Analyzer::default();
        let mut sniff = Sniff::new(Trickle { bytes, step });
        let read = analyzer.read(&mut sniff);
        sniff.judge(read, analyzer.records())
    }

    /// Each input's reader is lent the worker's usage of sessions: a refused input, one that cannot be
    /// opened, or one whose first read fails (a folder given as a file) must hand it back as it was.
    #[test]
    fn a_refused_input_after_a_trail_file_keeps_its_near_misses() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../samples/29-boto3-copied-credentials-57-min")
            .join("123456789012_CloudTrail_us-east-1_20261123T0200Z_uqUDdFzfuwDgViKG.json");
        let tmp = tempfile::tempdir().unwrap();
        let junk = tmp.path().join("notes.json");
        std::fs::write(&junk, "just some words").unwrap();
        let gone = tmp.path().join("gone.json");
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(1);
        let near_misses = |inputs: Vec<Input>| {
            let mut analyzer = Analyzer::default();
            let mut errors = Vec::new();
            read_all(&mut analyzer, inputs, 1, &mut errors);
            let mut refused: Vec<_> = errors.iter().map(|e| e.reason.clone()).collect();
            refused.sort();
            (analyzer.report().near_misses, refused)
        };
        let (alone, none) = near_misses(vec![Input::File(sample.clone(), size(&sample))]);
        assert!(none.is_empty(), "{none:?}");
        assert_eq!(alone.workloads.len(), 1, "sample 29 has one near miss");
        // The sample is the largest and is read first; the refused and the missing input come after it.
        let (mixed, refused) = near_misses(vec![
            Input::File(junk.clone(), size(&junk)),
            Input::File(gone.clone(), 1),
            Input::File(tmp.path().to_path_buf(), 1),
            Input::File(sample.clone(), size(&sample)),
        ]);
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert!(
            refused.iter().any(|r| r.starts_with("not CloudTrail")),
            "{refused:?}"
        );
        assert_eq!(mixed, alone);
    }

    #[test]
    fn two_links_back_to_an_ancestor_end_at_once_and_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/trail.json"), RECORD).unwrap();
        symlink("..", root.join("a/b/up")).unwrap();
        symlink("../..", root.join("a/b/upup")).unwrap();
        symlink("../b", root.join("a/b/self")).unwrap();
        let mut errors = Vec::new();
        let found = discover(&[root.to_path_buf()], &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(names(&found.inputs, root), ["a/b/trail.json"]);
        assert_eq!(skipped(&found, root), ["a/b/self", "a/b/up", "a/b/upup"]);
        assert!(
            found.skipped[0]
                .reason
                .starts_with("a link to a folder read already"),
            "{:?}",
            found.skipped
        );
    }

    #[test]
    fn a_link_to_a_folder_outside_the_tree_is_followed_once() {
        let tmp = tempfile::tempdir().unwrap();
        let (logs, elsewhere) = (tmp.path().join("logs"), tmp.path().join("elsewhere"));
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("more.json"), RECORD).unwrap();
        std::fs::write(logs.join("own.json"), RECORD).unwrap();
        symlink(&elsewhere, logs.join("1-first")).unwrap();
        symlink(&elsewhere, logs.join("2-again")).unwrap();
        symlink(logs.join("own.json"), logs.join("0-latest.json")).unwrap();
        let mut errors = Vec::new();
        let found = discover(std::slice::from_ref(&logs), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        // The real file is read under its own name, the link to it is the one skipped.
        assert_eq!(names(&found.inputs, &logs), ["own.json", "1-first/more.json"]);
        assert_eq!(skipped(&found, &logs), ["0-latest.json", "2-again"]);
    }

    #[test]
    fn the_same_folder_or_file_named_twice_is_read_once() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("t.json");
        std::fs::write(&file, RECORD).unwrap();
        let mut errors = Vec::new();
        let paths = [tmp.path().to_path_buf(), file.clone(), tmp.path().join(".")];
        let found = discover(&paths, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(found.inputs.len(), 1);
        assert_eq!(found.skipped.len(), 2, "{:?}", found.skipped);
    }

    #[test]
    fn fifos_in_folders_are_skipped_by_name_and_a_named_fifo_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("trail.json"), RECORD).unwrap();
        mkfifo(&root.join("pipe.json"));
        mkfifo(&root.join("fifo"));
        let mut errors = Vec::new();
        let found = discover(&[root.to_path_buf()], &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(names(&found.inputs, root), ["trail.json"]);
        assert_eq!(skipped(&found, root), ["fifo", "pipe.json"]);
        assert!(found.skipped[0].reason.starts_with("a FIFO"));

        let found = discover(&[root.join("fifo")], &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(found.inputs, [Input::File(root.join("fifo"), 0)]);
    }

    #[test]
    fn a_folder_with_nothing_to_read_is_named_with_what_it_held() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for d in ["empty", "dirs/a/b", "other", "digest/CloudTrail-Digest/us-east-1"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("other/notes.txt"), "x").unwrap();
        std::fs::write(root.join("other/data.csv"), "x").unwrap();
        std::fs::write(root.join("other/expected.json"), "{}").unwrap();
        std::fs::write(root.join("digest/CloudTrail-Digest/us-east-1/d.json.gz"), "x").unwrap();
        let reason = |dir: &str| {
            let mut errors = Vec::new();
            let found = discover(&[root.join(dir)], &mut errors);
            assert!(found.inputs.is_empty());
            assert_eq!(errors.len(), 1, "{errors:?}");
            errors.remove(0).reason
        };
        assert_eq!(reason("empty"), "not CloudTrail: an empty folder");
        assert!(
            reason("dirs").ends_with("(only empty folders)"),
            "{}",
            reason("dirs")
        );
        assert!(
            reason("other").ends_with("(3 other files, such as data.csv)"),
            "{}",
            reason("other")
        );
        // Digest folders are never entered (as with report --from-trail).
        assert!(reason("digest").ends_with("(only empty folders)"));
    }

    #[test]
    fn a_broken_link_is_an_error_only_where_a_file_of_its_name_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("trail.json"), RECORD).unwrap();
        symlink("nowhere", root.join("gone.json")).unwrap();
        symlink("nowhere", root.join("gone.txt")).unwrap();
        let mut errors = Vec::new();
        let found = discover(&[root.to_path_buf()], &mut errors);
        assert_eq!(found.inputs.len(), 1);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].name.ends_with("gone.json") && errors[0].reason.starts_with("a broken link"));
    }

    #[test]
    fn a_deep_tree_does_not_overflow_the_stack() {
        let tmp = tempfile::tempdir().unwrap();
        let mut deep = tmp.path().to_path_buf();
        // Short names keep the path under PATH_MAX.
        for _ in 0..1000 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("t.json"), RECORD).unwrap();
        let mut errors = Vec::new();
        let found = discover(&[tmp.path().to_path_buf()], &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(found.inputs.len(), 1);
    }

    #[test]
    fn s3_urls_are_told_from_local_paths() {
        assert!(s3_url(&["s3://bucket/prefix".into()]).is_some());
        assert!(s3_url(&["S3://bucket".into()]).is_some());
        assert!(s3_url(&["./s3-logs".into(), "-".into(), "s3.json".into()]).is_none());
    }

    #[test]
    fn jobs_are_capped_per_core_and_say_so() {
        let n = |j| NonZeroUsize::new(j);
        assert_eq!(jobs(None, 2), (2, None));
        assert_eq!(jobs(n(3), 2), (3, None));
        assert_eq!(jobs(n(8), 2), (8, None));
        let (capped, said) = jobs(n(100_000), 2);
        assert_eq!(capped, 2 * JOBS_PER_CORE);
        assert!(
            said.unwrap()
                .starts_with("--jobs 100000: reading at most 8 files")
        );
        assert_eq!(jobs(n(5), 0).0, JOBS_PER_CORE.min(5));
    }

    #[test]
    fn the_cloudtrail_mark_is_found_across_reads_of_any_size() {
        let lookup =
            br#"{"Events":[{"EventId":"e","CloudTrailEvent":"{\"eventTime\":\"2026-11-02T09:00:00Z\"}"}]}"#;
        for step in [1, 2, 3, 5, 8, 9, 10, 4096] {
            assert_eq!(sniffed(RECORD.as_bytes(), step), Outcome::Read, "step {step}");
            assert_eq!(sniffed(lookup, step), Outcome::Read, "step {step}");
        }
    }

    #[test]
    fn streams_without_a_cloudtrail_record_are_refused_with_what_they_were() {
        let refused = |bytes: &[u8]| match sniffed(bytes, 4096) {
            Outcome::NotCloudTrail(r) => r,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(bytes)),
        };
        assert!(
            refused(br#"{"name":"x","items":[1,2]}"#).contains("a JSON object without Records or eventTime")
        );
        assert!(refused(b"id,name\n1,a\n").contains("a CSV file, starting \"id,name\n1,a\""));
        assert!(refused(b"a\tb\n").contains("a tab-separated file"));
        assert!(refused(b"[1,2]").contains("a JSON array"));
        assert!(refused(b"\x00\x01\x02bin").contains("binary data"));
        assert!(refused(b"<html>").contains("an XML or HTML file"));
        assert!(refused(b"hello").contains("text, not JSON"));
        assert!(refused(br#"{"Records":[{"eventName":"x"}]}"#).contains("no eventTime in its entries"));
        assert!(
            refused(br#"{"awsAccountId":"1","digestStartTime":"2026-11-02T09:00:00Z","logFiles":[]}"#)
                .contains("a CloudTrail digest file")
        );
    }

    #[test]
    fn empty_streams_log_files_and_lookups_are_cloudtrail_with_nothing_in_them() {
        for empty in [
            &br#"{"Records":[]}"#[..],
            br#"{"Events": []}"#,
            b"[]",
            b"",
            b" \n",
        ] {
            assert_eq!(sniffed(empty, 4096), Outcome::Read);
        }
    }

    #[test]
    fn a_cut_log_file_keeps_its_reason_and_what_was_read() {
        match sniffed(
            br#"{"Records":[{"eventTime":"2026-11-02T09:00:00Z"},{"eventN"#,
            4096,
        ) {
            Outcome::Cut(r) => assert!(r.contains("the 1 records before it"), "{r}"),
            other => panic!("{other:?}"),
        }
        match sniffed(br#"{"Records":[{"eventName":"a"},{"eventN"#, 4096) {
            Outcome::Cut(r) => assert!(r.starts_with("not valid JSON"), "{r}"),
            other => panic!("{other:?}"),
        }
    }
}
