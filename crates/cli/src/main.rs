//! `tokenwatch`: find AWS credentials cached past their lease in CloudTrail.

mod distributed;
mod doctor;
mod explain;
mod inflate;
mod inputs;
mod output;
mod real_drill;
mod report;
mod table;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use tokenwatch_core::time::{Epoch, parse_bound};
use tokenwatch_core::{Analyzer, Severity, Window};
use tokenwatch_render::{Document, Made};

use crate::output::{Color, Output, finished, say, say_lines};

/// A report of many groups holds them all until it is written; glibc's malloc keeps more of what the
/// reading threads gave back than mimalloc does (bench/groups.sh, README "Memory").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Find AWS credentials cached past their lease: ExpiredToken failures that begin at the end of an STS
/// session, told apart from refresh races, paused processes, clock skew and stale web identity tokens.
#[derive(Parser)]
#[command(name = "tokenwatch", version, after_help = TOP_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

/// The top-level help's examples and the exit statuses, which are the same for every command (each
/// command's help lists those it uses).
const TOP_HELP: &str = "\
Am I affected?
  tokenwatch analyze ./AWSLogs/                       CloudTrail files you have (a trail's folder, .gz too)
  tokenwatch report --from-trail s3://BUCKET/PREFIX --since 7d
                                                      a trail's bucket, without deploying anything
  cd infra && sam build && sam deploy --guided        page on-call from now on

More examples:
  tokenwatch explain etl-pipeline-role/nightly-etl ./AWSLogs/
  tokenwatch alert preview ./AWSLogs/
  tokenwatch report --lookup-events --since 24h --fail-on high

Exit status:
  0   done, everything read
  1   nothing useful was done (bad input everywhere, missing credentials, AWS refused)
  2   done but partial: some input could not be read (each is named on stderr)
  3   --fail-on: a group at or above that severity was found (analyze, report)
  64  usage error (a bad flag or value)";

/// Flags every command takes.
#[derive(Args, Clone, Debug)]
struct Global {
    /// Colour: auto (on a terminal), always, never. NO_COLOR (set and not empty) turns it off whatever
    /// this says.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true, value_name = "WHEN")]
    color: Color,
    /// No progress bars and no summary lines on stderr; warnings and errors are still written.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Analyze CloudTrail files offline: trail log files (plain or .gz), NDJSON, EventBridge envelopes
    /// (also SQS- and SNS-wrapped) and `aws cloudtrail lookup-events` output, in files and folders.
    #[command(after_help = ANALYZE_HELP)]
    Analyze(AnalyzeArgs),
    /// Report open and recent incidents from a deployed stack's state table (--table), or from CloudTrail
    /// itself, for accounts where nothing was deployed or for history before the deploy: a trail's log
    /// files in S3 (--from-trail s3://BUCKET/PREFIX) and/or CloudTrail Event history (--lookup-events).
    /// Uses the usual AWS credentials and region.
    #[command(after_help = REPORT_HELP)]
    Report(report::ReportArgs),
    /// Show one group in full: its timeline, every field, the whole fix, the CloudTrail console link, and
    /// which records the verdict rests on. Reads the same inputs as `analyze`.
    #[command(after_help = EXPLAIN_HELP)]
    Explain(explain::ExplainArgs),
    /// Pages as on-call receives them, from files and without AWS.
    #[command(subcommand)]
    Alert(explain::AlertCommand),
    /// Prove the deployment. Without --real: put a synthetic, clearly labelled expired-token event on the
    /// account's EventBridge bus, which proves that rule, queue, function, topic and subscriptions work.
    /// With --real: make real calls with an expired session of the stack's drill role, and measure what
    /// each service answers, whether CloudTrail records it and whether tokenwatch sees it. Uses the usual
    /// AWS credentials and region (AWS_PROFILE, AWS_REGION, ...).
    Drill(DrillArgs),
    /// Check a deployed stack, read-only: each check OK, WARN or FAIL with its fix in one line. Uses the
    /// usual AWS credentials and region.
    Doctor(doctor::DoctorArgs),
    /// Print a shell completion script: `tokenwatch completions bash > /etc/bash_completion.d/tokenwatch`.
    #[command(after_help = COMPLETIONS_HELP)]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `tokenwatch man > /usr/local/share/man/man1/tokenwatch.1`.
    #[command(after_help = MAN_HELP)]
    Man,
    /// Write a synthetic CloudTrail corpus (gzip trail files with incidents mixed into healthy traffic) and
    /// print what it injected, as JSON, on stdout. A development tool: built with `--features simulate`.
    #[cfg(feature = "simulate")]
    #[command(after_help = SIMULATE_HELP)]
    Simulate(SimulateArgs),
}

#[cfg(feature = "simulate")]
const SIMULATE_HELP: &str = "\
Examples:
  tokenwatch simulate --out ./corpus --records 200000 --seed 7 > injected.json
  tokenwatch analyze ./corpus                     then compare its groups with injected.json

Exit status:
  0   written
  1   the folder could not be written
  64  usage error";

const ANALYZE_HELP: &str = "\
Examples:
  tokenwatch analyze ./AWSLogs/                          a trail's folder, read recursively
  tokenwatch analyze --since 7d --format html -o report.html ./AWSLogs/
  aws cloudtrail lookup-events --max-results 50 | tokenwatch analyze -
  tokenwatch analyze --fail-on high ./AWSLogs/ || page-someone     in CI or cron
  tokenwatch analyze --cooldown 30m ./AWSLogs/           failures 30 min apart are two incidents

Exit status:
  0   done, everything read
  1   nothing useful was done (bad input everywhere)
  2   done but partial: some input could not be read (each is named on stderr)
  3   --fail-on: a group at or above that severity was found
  64  usage error (a bad flag or value)";

const REPORT_HELP: &str = "\
Examples:
  tokenwatch report --from-trail s3://my-trail-bucket/org --since 7d
  tokenwatch report --lookup-events --since 24h
  tokenwatch report --lookup-events --access-key ASIAEXAMPLEKEY --since 2026-11-02
  tokenwatch report --table tokenwatch-StateTable-ABC123 --min-severity high

Credentials and region come from the environment as for the AWS CLI (AWS_PROFILE, AWS_REGION, ...).

Exit status:
  0   done, everything read
  1   nothing useful was done (missing credentials or region, AWS refused, no such trail)
  2   done but partial: some object or lookup could not be read (each is named on stderr)
  3   --fail-on: a group at or above that severity was found
  64  usage error (a bad flag or value)";

const EXPLAIN_HELP: &str = "\
GROUP is what the table shows (role/session, or ACCOUNT/role/session when accounts differ), a session
name or a principal ARN; an access key (ASIA...) or a CloudTrail eventID finds its group too.

Examples:
  tokenwatch explain etl-pipeline-role/nightly-etl ./AWSLogs/
  tokenwatch explain ASIAETLNIGHT1EXAMPLE ./AWSLogs/
  tokenwatch explain --format json nightly-etl samples/01-assume-role-default-boto3

Exit status:
  0   done, everything read
  1   nothing matched, or nothing could be read
  2   done but partial: some input could not be read (each is named on stderr)
  64  usage error (a bad flag or value)";

const COMPLETIONS_HELP: &str = "\
Examples:
  tokenwatch completions bash > ~/.local/share/bash-completion/completions/tokenwatch
  tokenwatch completions zsh > \"${fpath[1]}/_tokenwatch\"
  tokenwatch completions fish > ~/.config/fish/completions/tokenwatch.fish

Exit status:
  0   written
  64  usage error (an unknown shell)";

const MAN_HELP: &str = "\
Examples:
  tokenwatch man > /usr/local/share/man/man1/tokenwatch.1 && man tokenwatch

Exit status:
  0   written
  64  usage error";

/// What every report-writing command takes: where to write and when to fail.
#[derive(Args, Clone, Debug)]
pub(crate) struct ReportOutput {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report to FILE instead of standard output (no colour unless --color always).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Exit 3 when a group at or above this severity was found (info, low, medium, high, critical): for CI
    /// and cron.
    #[arg(long, value_name = "SEVERITY", value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<Severity>()))]
    pub fail_on: Option<Severity>,
}

#[derive(Parser)]
struct AnalyzeArgs {
    /// Files or folders (read recursively: *.json, *.json.gz, *.gz, *.ndjson, *.jsonl); `-` for stdin.
    /// In folders, each folder and file is read once however many links lead to it, and FIFOs, sockets
    /// and devices are skipped (named on stderr); a FIFO named here is read as a stream, like `-`. A
    /// path holding no CloudTrail record is named on stderr with what it was (exit status 2). For a
    /// trail's bucket in S3, use `tokenwatch report --from-trail s3://BUCKET/PREFIX`.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    out: ReportOutput,
    /// Count failures from this time on: an ISO-8601 time, a date, or a span back from now (24h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Count failures up to this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// Quiet time that ends an incident: a group's failures further apart than this are two incidents
    /// (seconds, or 30m, 1h, 1d; at least 1m, at most 30d; default 1h, the stack's COOLDOWN default).
    #[arg(long, value_name = "SPAN", value_parser = cooldown)]
    cooldown: Option<Epoch>,
    /// Files read at once (default: one per core). At most 4 per core: reading is CPU-bound, so more
    /// would only cost memory; a larger value is lowered, and stderr says so.
    #[arg(long, value_name = "N")]
    jobs: Option<NonZeroUsize>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns that fit the terminal (COLUMNS, else its width, else 100).
    Table,
    /// The report document (docs/contract.md; its JSON Schema is docs/report.schema.json).
    Json,
    /// A summary table with each group's fix, and a section per group.
    Markdown,
    /// One row per group with a header row (RFC 4180), safe to open in a spreadsheet.
    Csv,
    /// One self-contained page: totals, a histogram of age at first failure, a timeline per group.
    Html,
}

const DRILL_HELP: &str = "\
Examples:
  tokenwatch drill                 the synthetic drill: an alert whose subject starts with
                                   [tokenwatch DRILL] within minutes
  tokenwatch drill --dry-run       print the synthetic event, call nothing
  tokenwatch drill --real --stack tokenwatch --save ./drill
                                   the real drill (about 15 minutes, then up to 20 more while CloudTrail
                                   Event history catches up); records and coverage table saved to share

The real drill assumes the stack's drill role (your IAM policy needs sts:AssumeRole on its DrillRoleArn
output) for 900 s, calls each probe service while the session is valid and again once it has expired, then
reads CloudTrail Event history (cloudtrail:LookupEvents) and the stack's state table (dynamodb:GetItem). It
prints, per service: what the service answered, whether CloudTrail recorded the failure (errorCode,
errorMessage, the userIdentity fields present), whether the detector saw it, its verdict and lease, and
whether it paged as a drill; then one plain conclusion. Stopped at any point (Ctrl-C, or --no-wait), it
says where it stands and finishes with --resume DIR.

Exit status:
  0   the event was put (or printed); --real: every probe went end to end
  1   nothing useful was done (missing credentials or region, AWS refused); --real: CloudTrail recorded
      a failure and tokenwatch did not see or page it
  2   --real: some probe could not be measured
  3   --real: CloudTrail does not record some service's expired-credential failures (a coverage gap to
      know, not a tokenwatch fault)
  64  usage error (a bad flag or value)
  130 --real: interrupted";

#[derive(Parser)]
#[command(after_help = DRILL_HELP)]
struct DrillArgs {
    /// Event bus name (default: the account's default bus, where CloudTrail events arrive).
    #[arg(long, conflicts_with = "real")]
    bus: Option<String>,
    /// Print the event instead of putting it (no AWS call; account 123456789012 unless --account).
    #[arg(long, conflicts_with = "real")]
    dry_run: bool,
    /// Account to name in the event (default: the caller's, from STS).
    #[arg(long, conflicts_with = "real")]
    account: Option<String>,
    /// The real drill: calls with an expired session of the stack's drill role, and what CloudTrail and
    /// tokenwatch made of them.
    #[arg(long)]
    real: bool,
    /// --real: the deployed stack (its DrillRoleArn and StateTableName outputs).
    #[arg(long, value_name = "NAME", requires = "real", conflicts_with_all = ["role_arn", "resume"])]
    stack: Option<String>,
    /// --real: the drill role to assume, instead of --stack.
    #[arg(long, value_name = "ARN", requires = "real", conflicts_with = "resume")]
    role_arn: Option<String>,
    /// --real with --role-arn: the state table to read (without it the detector is not checked).
    #[arg(long, value_name = "NAME", requires = "role_arn")]
    table: Option<String>,
    /// --real: only these probe services, comma-separated (sts, s3, ec2, dynamodb, lambda, sqs, sns, ssm,
    /// kms, logs, iam; default all).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        requires = "real",
        conflicts_with = "resume"
    )]
    services: Vec<String>,
    /// --real: output format.
    #[arg(long, value_enum, default_value_t = DrillFormat::Table, requires = "real")]
    format: DrillFormat,
    /// --real: the drill's folder: its saved session, and at the end the records CloudTrail returned
    /// (records.json) and the coverage table (coverage.json), which hold no secrets. Default: a new
    /// folder in the temporary directory.
    #[arg(long, value_name = "DIR", requires = "real")]
    save: Option<PathBuf>,
    /// --real: assume the role and make the control calls, then stop; finish after the session's expiry
    /// with --resume.
    #[arg(long, requires = "real")]
    no_wait: bool,
    /// --real: go on with the drill saved in DIR (stopped, or started with --no-wait).
    #[arg(long, value_name = "DIR", requires = "real")]
    resume: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DrillFormat {
    /// The coverage table and its conclusion.
    Table,
    /// The coverage document.
    Json,
}

#[cfg(feature = "simulate")]
#[derive(Parser)]
struct SimulateArgs {
    /// Folder to write the trail files under (as AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/).
    #[arg(long)]
    out: PathBuf,
    /// Records to write.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Records per trail file.
    #[arg(long, default_value_t = 2_000)]
    records_per_file: usize,
    /// Seed: the same seed writes the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// A mistake in how tokenwatch was called: exit 64, like clap's own usage errors.
#[derive(Debug)]
pub(crate) struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Fails with a usage error (exit 64).
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

/// Exit status of a usage error.
const USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout and exit 0; a usage error goes to stderr and exits 64.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match finished(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            let code = if e.chain().any(|c| c.downcast_ref::<Usage>().is_some()) {
                USAGE
            } else {
                1
            };
            say_lines(&format!("{e:#}"));
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let global = cli.global;
    let output = |file: Option<PathBuf>| Output {
        file,
        color: global.color,
        quiet: global.quiet,
    };
    match cli.command {
        Command::Analyze(args) => {
            let out = output(args.out.output.clone());
            analyze(args, &out)
        }
        Command::Report(args) => {
            let out = output(args.out.output.clone());
            report::run(args, &out)
        }
        Command::Explain(args) => {
            let out = output(args.output.clone());
            explain::explain(args, &out)
        }
        Command::Alert(command) => explain::alert(command, &output(None)),
        Command::Drill(args) if args.real => real_drill::run(args),
        Command::Drill(args) => drill(args, &output(None)),
        Command::Doctor(args) => doctor::run(args),
        Command::Completions { shell } => {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "tokenwatch", &mut text);
            output(None).write(&String::from_utf8_lossy(&text))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let mut text = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut text)
                .context("writing the man page")?;
            output(None).write(&String::from_utf8_lossy(&text))?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "simulate")]
        Command::Simulate(args) => simulate(args),
    }
}

/// The wall clock, in seconds: what `--since 24h`, the drill and a report's `generated_at` count from.
pub(crate) fn now() -> Epoch {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as Epoch)
        .unwrap_or_default()
}

/// A `--since`/`--until` value; a value that is not a time is a usage error.
pub(crate) fn bound(raw: Option<&str>, flag: &str) -> Result<Option<Epoch>> {
    raw.map(|r| {
        parse_bound(r, now()).ok_or_else(|| {
            usage(format!(
                "{flag} '{r}': expected an ISO-8601 time (2026-11-02T09:00:00Z), a date (2026-11-02) or a span \
                 back from now (90m, 24h, 7d)"
            ))
        })
    })
    .transpose()
}

/// The cool-down when no `--cooldown` is given: the detector's default.
pub(crate) const DEFAULT_COOLDOWN: Epoch = 3600;

/// A `--cooldown` value: seconds or a span, within the bounds the stack's COOLDOWN takes.
pub(crate) fn cooldown(raw: &str) -> Result<Epoch, String> {
    const MIN: Epoch = 60;
    const MAX: Epoch = 30 * 86_400;
    raw.trim()
        .parse::<Epoch>()
        .ok()
        .or_else(|| tokenwatch_core::time::parse_span(raw))
        .filter(|s| (MIN..=MAX).contains(s))
        .ok_or_else(|| "expected seconds or a span like 30m, 1h, 1d, at least 1m and at most 30d".to_owned())
}

/// `--since` and `--until` as a window; `--since` after `--until` is a usage error.
pub(crate) fn window(since: Option<&str>, until: Option<&str>) -> Result<Window> {
    let window = Window {
        since: bound(since, "--since")?,
        until: bound(until, "--until")?,
    };
    if let (Some(s), Some(u)) = (window.since, window.until)
        && s > u
    {
        return Err(usage("--since is after --until"));
    }
    Ok(window)
}

/// What a run read: the report, what could not be read, and a one-line summary for the end of the run.
pub(crate) struct Read {
    pub report: tokenwatch_core::Report,
    pub unread: Vec<(String, String)>,
    pub summary: String,
}

/// Reads `paths` through the engine as `analyze` does.
pub(crate) fn read_inputs(
    paths: &[PathBuf],
    window: Window,
    cooldown: Epoch,
    jobs: Option<NonZeroUsize>,
) -> Result<Read> {
    // A usage error, not an unreadable input: no report could ever cover it, and the fix is another
    // command. Refused before anything is read, so no partial report suggests it was looked at.
    if let Some(url) = inputs::s3_url(paths) {
        let url = url.display();
        return Err(usage(format!(
            "{url}: analyze reads local files and folders; for a trail's log files in S3 use \
             `tokenwatch report --from-trail {url}`"
        )));
    }
    let started = Instant::now();
    let mut errors = Vec::new();
    let found = inputs::discover(paths, &mut errors);
    for skipped in &found.skipped {
        say(&format!("{}: skipped: {}", skipped.name, skipped.reason));
    }
    let files = found.inputs.len();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (jobs, lowered) = inputs::jobs(jobs, cores);
    if let Some(lowered) = lowered {
        say(&lowered);
    }
    let mut analyzer = Analyzer::with_cooldown(window, cooldown);
    inputs::read_all(&mut analyzer, found.inputs, jobs, &mut errors);
    let report = analyzer.report();
    // The threshold can be lowered for tests (a debug build reads 100,000 groups too slowly for one).
    let many = std::env::var("TOKENWATCH_MANY_GROUPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(MANY_GROUPS);
    if report.findings.len() > many {
        say(&many_groups(report.findings.len(), resident_bytes()));
    }
    let summary = format!(
        "read {} records from {files} input{} in {:.1} s: {} expired-credential failures in {} groups{}",
        report.records,
        if files == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64(),
        report.failures,
        report.findings.len(),
        if report.skipped_records > 0 {
            format!(" ({} records skipped)", report.skipped_records)
        } else {
            String::new()
        }
    );
    let unread = errors.into_iter().map(|e| (e.name, e.reason)).collect();
    Ok(Read {
        report,
        unread,
        summary,
    })
}

/// More groups than this in one run get a warning: each costs memory until the report is written
/// (README, "Memory": under 1 KB a group).
const MANY_GROUPS: usize = 100_000;

/// The warning for a run holding `groups` groups, with the memory the process holds if known.
fn many_groups(groups: usize, resident: Option<u64>) -> String {
    let held = resident.map_or_else(String::new, |b| format!(" (about {} MB)", thousands(b >> 20)));
    format!(
        "warning: {} groups held in memory{held}; narrow the input with --since/--until or an account or \
         region folder",
        thousands(groups as u64)
    )
}

/// `312408` → `312,408`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The memory this process holds now (Linux: `VmRSS` of /proc/self/status); `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

fn analyze(args: AnalyzeArgs, out: &Output) -> Result<ExitCode> {
    let window = window(args.since.as_deref(), args.until.as_deref())?;
    let cooldown = args.cooldown.unwrap_or(DEFAULT_COOLDOWN);
    let read = read_inputs(&args.paths, window, cooldown, args.jobs)?;
    let made = Made { at: now(), window };
    let status = write_report(&read.report, made, &args.out, out, &read.unread);
    if status.is_ok() {
        out.note(&read.summary);
    }
    status
}

/// Writes the report as `how` says, names on stderr what could not be read, and gives the exit status
/// `analyze` and `report` share: 0 all read, 2 partial, 3 `--fail-on` found a group at or above it.
pub(crate) fn write_report(
    report: &tokenwatch_core::Report,
    made: Made,
    how: &ReportOutput,
    out: &Output,
    unread: &[(String, String)],
) -> Result<ExitCode> {
    let written = match how.format {
        // Written a group at a time: the machine-readable report of a very large run.
        Format::Json => out.write_with(|w| {
            Document::write_json(report, made, &mut *w).map_err(std::io::Error::from)?;
            w.write_all(b"\n")
        }),
        format => {
            let document = Document::of(report, made);
            let rendered = match format {
                Format::Table => document.to_table(out.layout()),
                Format::Markdown => document.to_markdown(),
                Format::Csv => document.to_csv(),
                Format::Html => document.to_html(),
                Format::Json => serde_json::to_string_pretty(&document)? + "\n",
            };
            drop(document);
            out.write(&rendered)
        }
    };
    for (name, reason) in unread {
        say(&format!("{name}: {reason}"));
    }
    written?;
    if let Some(path) = &out.file {
        out.note(&format!("wrote {}", path.display()));
    }
    let found = how
        .fail_on
        .filter(|floor| report.findings.iter().any(|f| f.severity() >= *floor));
    if let Some(floor) = found {
        out.note(&format!("found a group at or above {floor} (--fail-on): exit 3"));
        return Ok(ExitCode::from(3));
    }
    if unread.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        say(&format!(
            "{} input(s) could not be read in full; the report covers the rest",
            unread.len()
        ));
        Ok(ExitCode::from(2))
    }
}

fn drill(args: DrillArgs, out: &Output) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if args.dry_run {
            let account = args.account.unwrap_or_else(|| "123456789012".into());
            let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
            let event = tokenwatch_core::events::drill_event(&account, &region, now());
            out.write(&(serde_json::to_string_pretty(&event)? + "\n"))?;
            return Ok(ExitCode::SUCCESS);
        }
        let sdk = tokenwatch_aws::sdk_config(&tokenwatch_aws::SdkOptions::default()).await;
        let region = tokenwatch_aws::ready(&sdk).await?;
        let account = match args.account {
            Some(a) => a,
            None => tokenwatch_aws::caller_account(&sdk).await.map_err(report::aws_error)?,
        };
        let event = tokenwatch_core::events::drill_event(&account, &region, now());
        let bus = tokenwatch_aws::EventBus::new(&sdk, args.bus.clone());
        let id = bus.put(&event).await.map_err(report::aws_error)?;
        out.write(&format!(
            "put drill event {id} on the {} bus in {region} (account {account}).\n\
             Expect an alert whose subject starts with \"[tokenwatch DRILL]\" within a couple of minutes.\n\
             If none arrives: aws logs tail /aws/lambda/<stack>-detector --since 10m; check the dead-letter queue\n\
             and that the rule's state is ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS.\n",
            args.bus.as_deref().unwrap_or("default")
        ))?;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(feature = "simulate")]
fn simulate(args: SimulateArgs) -> Result<ExitCode> {
    let opts = tokenwatch_simulate::Options {
        records: args.records,
        records_per_file: args.records_per_file,
        seed: args.seed,
        ..Default::default()
    };
    let summary = tokenwatch_simulate::write_corpus(&args.out, &opts)
        .with_context(|| format!("writing the corpus under {}", args.out.display()))?;
    eprintln!(
        "wrote {} records in {} files ({} MB of JSON, {} MB gzip) with {} failures in {} incidents",
        summary.records,
        summary.files,
        summary.json_bytes >> 20,
        summary.gzip_bytes >> 20,
        summary.failures,
        summary.groups.len()
    );
    println!("{}", serde_json::to_string_pretty(&summary.to_json())?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_many_groups_warning_gives_the_groups_and_the_memory() {
        assert_eq!(
            many_groups(312_408, Some(250 << 20)),
            "warning: 312,408 groups held in memory (about 250 MB); narrow the input with --since/--until \
             or an account or region folder"
        );
        assert!(many_groups(100_001, None).starts_with("warning: 100,001 groups held in memory; narrow"));
        assert_eq!(
            [0, 999, 1000, 1_000_000].map(thousands),
            ["0", "999", "1,000", "1,000,000"]
        );
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_lists_the_exit_statuses_and_examples() {
        let mut cli = Cli::command();
        let top = cli.render_help().to_string();
        assert!(
            top.contains("64  usage error") && top.contains("Am I affected?"),
            "{top}"
        );
        for sub in cli.get_subcommands_mut() {
            if sub.get_name() == "help" || sub.has_subcommands() {
                continue;
            }
            let help = sub.render_help().to_string();
            assert!(help.contains("Exit status:"), "{}: {help}", sub.get_name());
            assert!(help.contains("Examples:"), "{}: {help}", sub.get_name());
        }
    }
}
