//! `tokenwatch`: find AWS credentials cached past their lease in CloudTrail.

mod inflate;
mod inputs;
mod report;

use std::io::Write;
use std::num::NonZeroUsize;
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
    /// Put a synthetic, clearly labelled expired-token event on the account's EventBridge bus, to prove
    /// after a deploy that rule, queue, function, topic and subscriptions work. Uses the usual AWS
    /// credentials and region (AWS_PROFILE, AWS_REGION, ...).
    Drill(DrillArgs),
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
    /// In folders, each folder and file is read once however many links lead to it, and FIFOs, sockets
    /// and devices are skipped (named on stderr); a FIFO named here is read as a stream, like `-`. A
    /// path holding no CloudTrail record is named on stderr with what it was (exit status 2). For a
    /// trail's bucket in S3, use `tokenwatch report --from-trail s3://BUCKET/PREFIX`.
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
    /// Files read at once (default: one per core). At most 4 per core: reading is CPU-bound, so more
    /// would only cost memory; a larger value is lowered, and stderr says so.
    #[arg(long, value_name = "N")]
    jobs: Option<NonZeroUsize>,
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

#[derive(Parser)]
struct DrillArgs {
    /// Event bus name (default: the account's default bus, where CloudTrail events arrive).
    #[arg(long)]
    bus: Option<String>,
    /// Print the event instead of putting it (no AWS call; account 123456789012 unless --account).
    #[arg(long)]
    dry_run: bool,
    /// Account to name in the event (default: the caller's, from STS).
    #[arg(long)]
    account: Option<String>,
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
            // Line by line: an error may say more on a line of its own, but no line can carry a control
            // or bidi character (from a path or an AWS message) to the terminal.
            let text = format!("{e:#}");
            for (i, line) in text.lines().enumerate() {
                let prefix = if i == 0 { "tokenwatch: " } else { "" };
                eprintln!("{prefix}{}", tokenwatch_render::text::line(line));
            }
            ExitCode::from(1)
        }
    }
}

/// Writes `tokenwatch: MESSAGE` on stderr as one line. File names, S3 keys, AWS messages and anything
/// else inside are escaped ([`tokenwatch_render::text::line`]): they can neither drive the terminal nor
/// start a line of their own that looks like tokenwatch's.
pub(crate) fn warn(message: &str) {
    eprintln!("tokenwatch: {}", tokenwatch_render::text::line(message));
}

/// `sysexits.h`'s EX_USAGE: the command line itself is wrong (docs/contract.md, "The command line").
const EXIT_USAGE: u8 = 64;

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Analyze(args) => analyze(args),
        Command::Drill(args) => drill(args),
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

/// Exit status: 0 all read, 1 nothing could be done, 2 the report is partial (some input unreadable,
/// or holding no CloudTrail record), 64 an S3 URL given as a path.
fn analyze(args: AnalyzeArgs) -> Result<ExitCode> {
    // A usage error, not an unreadable input: no report could ever cover it, and the fix is another
    // command. Refused before anything is read, so no partial report suggests it was looked at.
    if let Some(url) = inputs::s3_url(&args.paths) {
        let url = url.display();
        warn(&format!(
            "{url}: analyze reads local files and folders; for a trail's log files in S3 use \
             `tokenwatch report --from-trail {url}`"
        ));
        return Ok(ExitCode::from(EXIT_USAGE));
    }
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
    for skipped in &found.skipped {
        warn(&format!("{}: skipped: {}", skipped.name, skipped.reason));
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (jobs, lowered) = inputs::jobs(args.jobs, cores);
    if let Some(lowered) = lowered {
        warn(&lowered);
    }
    let mut analyzer = Analyzer::new(window);
    inputs::read_all(&mut analyzer, found.inputs, jobs, &mut errors);
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
        warn(&format!("{name}: {reason}"));
    }
    if unread.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        warn(&format!(
            "{} input(s) could not be read in full; the report covers the rest",
            unread.len()
        ));
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
