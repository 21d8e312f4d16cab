//! `tokenwatch`: find AWS credentials cached past their lease in CloudTrail.

mod doctor;
mod inputs;
mod real_drill;
mod report;
mod table;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tokenwatch_core::time::{Epoch, parse_bound};
use tokenwatch_core::{Analyzer, Window};
use tokenwatch_render::Document;

/// Find AWS credentials cached past their lease: ExpiredToken failures that begin at the end of an STS
/// session, told apart from refresh races, paused processes, clock skew and stale web identity tokens.
#[derive(Parser)]
#[command(name = "tokenwatch", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Analyze CloudTrail files offline: trail log files (plain or .gz), NDJSON, EventBridge envelopes
    /// (also SQS- and SNS-wrapped) and `aws cloudtrail lookup-events` output, in files and folders.
    Analyze(AnalyzeArgs),
    /// Prove the deployment. Without --real: put a synthetic, clearly labelled expired-token event on the
    /// account's EventBridge bus, which proves that rule, queue, function, topic and subscriptions work.
    /// With --real: make real calls with an expired session of the stack's drill role, and measure what
    /// each service answers, whether CloudTrail records it and whether tokenwatch sees it. Uses the usual
    /// AWS credentials and region (AWS_PROFILE, AWS_REGION, ...).
    Drill(DrillArgs),
    /// Check a deployed stack, read-only: each check OK, WARN or FAIL with its fix in one line. Uses the
    /// usual AWS credentials and region.
    Doctor(doctor::DoctorArgs),
    /// Report open and recent incidents from a deployed stack's state table (--table), or from CloudTrail
    /// itself, for accounts where nothing was deployed or for history before the deploy: a trail's log
    /// files in S3 (--from-trail s3://BUCKET/PREFIX) and/or CloudTrail Event history (--lookup-events).
    /// Uses the usual AWS credentials and region.
    Report(report::ReportArgs),
    /// Write a synthetic CloudTrail corpus (gzip trail files with incidents mixed into healthy traffic) and
    /// print what it injected, as JSON, on stdout. A development tool: built with `--features simulate`.
    #[cfg(feature = "simulate")]
    Simulate(SimulateArgs),
}

#[derive(Parser)]
struct AnalyzeArgs {
    /// Files or folders (read recursively: *.json, *.json.gz, *.gz, *.ndjson, *.jsonl); `-` for stdin.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Count failures from this time on: an ISO-8601 time, a date, or a span back from now (24h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Count failures up to this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// Files read at once (default: one per core).
    #[arg(long)]
    jobs: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// The report document (docs/contract.md).
    Json,
    /// A summary table and a section per group.
    Markdown,
    /// One row per group with a header row (RFC 4180), safe to open in a spreadsheet.
    Csv,
    /// One self-contained page: totals, a histogram of age at first failure, a timeline per group.
    Html,
}

const DRILL_HELP: &str = "\
Examples:
  # The synthetic drill: an alert whose subject starts with [tokenwatch DRILL] within minutes.
  tokenwatch drill

  # The real drill against the stack `tokenwatch` (about 15 minutes, then up to 20 more while CloudTrail
  # Event history catches up); the records and the coverage table are saved to share.
  tokenwatch drill --real --stack tokenwatch --save ./drill

The real drill assumes the stack's drill role (your IAM policy needs sts:AssumeRole on its DrillRoleArn
output) for 900 s, calls each probe service while the session is valid and again once it has expired, then
reads CloudTrail Event history (cloudtrail:LookupEvents) and the stack's state table (dynamodb:GetItem). It
prints, per service: what the service answered, whether CloudTrail recorded the failure (errorCode,
errorMessage, the userIdentity fields present), whether the detector saw it, its verdict and lease, and
whether it paged as a drill; then one plain conclusion. Stopped at any point (Ctrl-C, or --no-wait), it
says where it stands and finishes with --resume DIR.

Exit status of --real: 0 every probe went end to end; 1 CloudTrail recorded a failure and tokenwatch did
not see or page it (or nothing could be done); 2 some probe could not be measured; 3 CloudTrail does not
record some service's expired-credential failures (a coverage gap to know, not a tokenwatch fault);
130 interrupted.";

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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tokenwatch: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Analyze(args) => analyze(args),
        Command::Drill(args) if args.real => real_drill::run(args),
        Command::Drill(args) => drill(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Report(args) => report::run(args),
        #[cfg(feature = "simulate")]
        Command::Simulate(args) => simulate(args),
    }
}

/// The wall clock, in seconds: what `--since 24h` and the drill count from.
pub(crate) fn now() -> Epoch {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as Epoch)
        .unwrap_or_default()
}

fn bound(raw: Option<&str>, flag: &str) -> Result<Option<Epoch>> {
    raw.map(|r| {
        parse_bound(r, now()).with_context(|| {
            format!("{flag} '{r}': expected an ISO-8601 time, a date or a span like 24h or 7d")
        })
    })
    .transpose()
}

/// Exit status: 0 all read, 1 nothing could be done, 2 the report is partial (some input unreadable).
fn analyze(args: AnalyzeArgs) -> Result<ExitCode> {
    let window = Window {
        since: bound(args.since.as_deref(), "--since")?,
        until: bound(args.until.as_deref(), "--until")?,
    };
    if let (Some(s), Some(u)) = (window.since, window.until)
        && s > u
    {
        bail!("--since is after --until");
    }
    let mut errors = Vec::new();
    let found = inputs::discover(&args.paths, &mut errors);
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let mut analyzer = Analyzer::new(window);
    inputs::read_all(&mut analyzer, found, jobs, &mut errors);
    let report = analyzer.report();

    let errors: Vec<(String, String)> = errors.into_iter().map(|e| (e.name, e.reason)).collect();
    write_report(&report, args.format, &errors)
}

/// Prints the report as `format` shows it, names on stderr what could not be read, and gives the exit
/// status `analyze` and `report` share: 0 all read, 2 partial.
pub(crate) fn write_report(
    report: &tokenwatch_core::Report,
    format: Format,
    unread: &[(String, String)],
) -> Result<ExitCode> {
    let document = Document::of(report);
    let rendered = match format {
        Format::Json => serde_json::to_string_pretty(&document)? + "\n",
        Format::Table => document.to_table(),
        Format::Markdown => document.to_markdown(),
        Format::Csv => document.to_csv(),
        Format::Html => document.to_html(),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(rendered.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the report")?;
    for (name, reason) in unread {
        eprintln!("tokenwatch: {name}: {reason}");
    }
    if unread.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "tokenwatch: {} input(s) could not be read in full; the report covers the rest",
            unread.len()
        );
        Ok(ExitCode::from(2))
    }
}

fn drill(args: DrillArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let sdk = tokenwatch_aws::sdk_config(&tokenwatch_aws::SdkOptions::default()).await;
        let region = sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
        let account = match (args.account, args.dry_run) {
            (Some(a), _) => a,
            (None, true) => "123456789012".into(),
            (None, false) => tokenwatch_aws::caller_account(&sdk).await.context("finding the account (STS GetCallerIdentity)")?,
        };
        let event = tokenwatch_core::events::drill_event(&account, &region, now());
        if args.dry_run {
            println!("{}", serde_json::to_string_pretty(&event)?);
            return Ok(ExitCode::SUCCESS);
        }
        let bus = tokenwatch_aws::EventBus::new(&sdk, args.bus.clone());
        let id = bus.put(&event).await.context("putting the drill event")?;
        println!(
            "put drill event {id} on the {} bus in {region} (account {account}).\n\
             Expect an alert whose subject starts with \"[tokenwatch DRILL]\" within a couple of minutes.\n\
             If none arrives: aws logs tail /aws/lambda/<stack>-detector --since 10m; check the dead-letter queue\n\
             and that the rule's state is ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS.",
            args.bus.as_deref().unwrap_or("default")
        );
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
