//! `tokenwatch report`: the report from a source other than local files. Without a source flag it reads
//! a deployed stack's state table: open and recent incidents, each with its time to recover and, for a
//! group that fails again and again, when the next failure is expected. `--from-trail` streams a trail's
//! log files from S3 and `--lookup-events` pages CloudTrail Event history; both feed one engine, so the
//! report is the one `analyze` would give over the same records (eventIDs count once across sources).
//! The filters (`--principal`, `--verdict`, `--min-severity`) apply to every source.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use tokenwatch_aws::lookup::{ISSUING_CALLS, Lookup, LookupError, LookupEvents};
use tokenwatch_aws::trail::{TrailFilter, TrailLocation, TrailProgress, TrailReader};
use tokenwatch_aws::{DynamoStore, SdkOptions, blocked, ready, sdk_config};
use tokenwatch_core::ports::PortError;
use tokenwatch_core::query::{Query, Since, report_with_near_misses};
use tokenwatch_core::time::Epoch;
use tokenwatch_core::{Analyzer, Report, Severity, Verdict, Window};

use tokenwatch_render::Made;

use crate::distributed::DistributedArgs;
use crate::output::Output;
use crate::{ReportOutput, bound, now, usage};

/// Without `--since`, lookups cover this much of the recent past (Event history keeps 90 days, and
/// reading all of it at the API's pace takes hours).
const DEFAULT_LOOKUP_SPAN: Epoch = 86_400;
/// Issuing calls are also read for this long before `--since`: sessions that began before the window
/// keep their issue time and lease.
const ISSUANCE_LOOKBACK: Epoch = 86_400;

/// Sources of `tokenwatch report`: the state table (the default), or a trail and/or Event history.
#[derive(Parser)]
pub(crate) struct ReportArgs {
    /// The deployed stack's state table (its `StateTableName` output), read when no other source is
    /// given.
    #[arg(long, value_name = "NAME")]
    table: Option<String>,
    /// Only groups of this principal: a role or user ARN or a role name, `*` matching any run of
    /// characters (`'etl-*'`).
    #[arg(long, value_name = "PATTERN")]
    principal: Option<String>,
    /// Only groups with this verdict.
    #[arg(long, value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<Verdict>()))]
    verdict: Option<Verdict>,
    /// Only groups at or above this severity (info, low, medium, high, critical).
    #[arg(long, value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<Severity>()))]
    min_severity: Option<Severity>,
    /// Read a trail's log files from S3: s3://BUCKET/PREFIX, where PREFIX is what the trail writes under
    /// (the part before AWSLogs/; organization trails included). Only the day folders of the window are
    /// listed, plus one day on each side. The bucket's region must be the configured one (AWS_REGION).
    #[arg(long, value_name = "S3_URL")]
    from_trail: Option<TrailLocation>,
    /// Read CloudTrail Event history (LookupEvents, management events of the last 90 days), at most 2
    /// requests per second. Alone: every event of the window (it cannot be filtered on errorCode, so this
    /// is ~100 events/s, 360,000 an hour) and the STS issuing calls of the day before it. With
    /// --access-key: only those keys' calls, and the issuing calls from a day before the window to its end.
    /// --since defaults to 24h.
    #[arg(long)]
    lookup_events: bool,
    /// With --lookup-events: look up the calls made with this access key (a session's other calls)
    /// instead of every event. Repeatable.
    #[arg(long = "access-key", value_name = "KEY", requires = "lookup_events")]
    access_keys: Vec<String>,
    #[command(flatten)]
    pub(crate) out: ReportOutput,
    /// Count failures from this time on: an ISO-8601 time, a date, or a span back from now (24h, 7d).
    /// From the state table: groups whose last failure is this recent, and every open incident
    /// (default 24h).
    #[arg(long)]
    since: Option<String>,
    /// Count failures up to this time (same forms as --since). Not with the state table, which keeps
    /// only each group's current incident.
    #[arg(long)]
    until: Option<String>,
    /// --from-trail and --lookup-events: quiet time that ends an incident, as for `analyze` (seconds, or
    /// 30m, 1h, 1d; at least 1m, at most 30d; default 1h). Not with the state table, whose incidents the
    /// detector split with the stack's COOLDOWN.
    #[arg(long, value_name = "SPAN", value_parser = crate::cooldown)]
    cooldown: Option<Epoch>,
    /// --from-trail: only this account's folders (12 digits). Repeatable.
    #[arg(long = "account", value_name = "ACCOUNT")]
    accounts: Vec<String>,
    /// --from-trail: only this region's folders. --lookup-events: look up in these regions (default: the
    /// configured region). Repeatable.
    #[arg(long = "region", value_name = "REGION")]
    regions: Vec<String>,
    /// --from-trail: log files downloaded and decompressed at once.
    #[arg(long, default_value_t = tokenwatch_aws::trail::DEFAULT_DOWNLOADS)]
    downloads: usize,
    #[command(flatten)]
    distributed: DistributedArgs,
}

/// Something that could not be read, named for stderr.
pub(crate) struct Unread {
    pub(crate) name: String,
    pub(crate) reason: String,
}

/// Exit status: 0 everything was read, 1 nothing could be done, 2 the report is partial (some object,
/// folder or lookup could not be read; each is named on stderr).
pub(crate) fn run(args: ReportArgs, out: &Output) -> Result<ExitCode> {
    let query = Query {
        since: None,
        principal: args.principal.clone(),
        verdict: args.verdict,
        min_severity: args.min_severity,
    };
    if args.from_trail.is_none() && !args.lookup_events {
        if args.cooldown.is_some() {
            return Err(usage(
                "--cooldown applies to --from-trail and --lookup-events; the state table's incidents were \
                 split by the detector with the stack's COOLDOWN",
            ));
        }
        return from_table(&args, query, out);
    }
    if let Some(bad) = args
        .accounts
        .iter()
        .find(|a| a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(usage(format!(
            "--account '{bad}': expected a 12-digit account id"
        )));
    }
    let now = now();
    let mut since = bound(args.since.as_deref(), "--since")?;
    let until = bound(args.until.as_deref(), "--until")?;
    if args.lookup_events && since.is_none() {
        since = Some(until.unwrap_or(now) - DEFAULT_LOOKUP_SPAN);
    }
    if let (Some(s), Some(u)) = (since, until)
        && s > u
    {
        return Err(usage("--since is after --until"));
    }

    let cooldown = args.cooldown.unwrap_or(crate::DEFAULT_COOLDOWN);
    if let (true, Some(location)) = (args.distributed.distributed, &args.from_trail) {
        return distributed(
            &args,
            location,
            query,
            Window { since, until },
            cooldown,
            now,
            out,
        );
    }
    let mut analyzer = Analyzer::with_cooldown(Window { since, until }, cooldown);
    let mut unread = Vec::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        if let Some(location) = &args.from_trail {
            let filter = TrailFilter {
                since,
                until,
                accounts: args.accounts.clone(),
                regions: args.regions.clone(),
            };
            from_trail(
                &mut analyzer,
                location,
                &filter,
                args.downloads,
                now,
                &mut unread,
                out,
            )
            .await?;
        }
        if args.lookup_events {
            let start = since.unwrap_or(now - DEFAULT_LOOKUP_SPAN);
            let end = until.unwrap_or(now);
            let plan = lookup_plan(&args.access_keys, start, end);
            let regions: Vec<Option<String>> = if args.regions.is_empty() {
                vec![None]
            } else {
                args.regions.iter().cloned().map(Some).collect()
            };
            for region in regions {
                lookup_events(&mut analyzer, region, &plan, &mut unread, out).await?;
            }
        }
        anyhow::Ok(())
    })?;

    let unread: Vec<(String, String)> = unread.into_iter().map(|u| (u.name, u.reason)).collect();
    let mut report = analyzer.report();
    filter_report(&mut report, &query);
    let made = Made {
        at: now,
        window: Window { since, until },
    };
    crate::write_report(&report, made, &args.out, out, &unread)
}

/// `--from-trail … --distributed`: the same report, read by the deployed back-fill.
fn distributed(
    args: &ReportArgs,
    location: &TrailLocation,
    query: Query,
    window: Window,
    cooldown: Epoch,
    now: Epoch,
    out: &Output,
) -> Result<ExitCode> {
    let filter = TrailFilter {
        since: window.since,
        until: window.until,
        accounts: args.accounts.clone(),
        regions: args.regions.clone(),
    };
    let settings = tokenwatch_core::partial::Settings { window, cooldown };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let read = runtime.block_on(crate::distributed::read(
        &args.distributed,
        location,
        &filter,
        settings,
        now,
        out,
    ))?;
    let unread: Vec<(String, String)> = read.unread.into_iter().map(|u| (u.name, u.reason)).collect();
    let mut report = read.partial.report();
    filter_report(&mut report, &query);
    let made = Made { at: now, window };
    crate::write_report(&report, made, &args.out, out, &unread)
}

/// An AWS error as the user reads it: what blocks the call and its fix on two lines, else the error.
pub(crate) fn aws_error(e: PortError) -> anyhow::Error {
    match blocked(&e) {
        Some(b) => anyhow::anyhow!("{b}"),
        None => anyhow::Error::new(e),
    }
}

/// Keeps the groups the query's filters select; totals follow.
fn filter_report(report: &mut Report, query: &Query) {
    report.findings.retain(|g| query.matches(g));
    report.failures = report
        .findings
        .iter()
        .map(|g| g.failures_of_all_incidents())
        .sum();
}

/// The state table's report. Exit status 0, or 1 when the table cannot be read.
fn from_table(args: &ReportArgs, mut query: Query, out: &Output) -> Result<ExitCode> {
    let table = args
        .table
        .clone()
        .or_else(|| std::env::var("TOKENWATCH_TABLE").ok().filter(|t| !t.is_empty()));
    let Some(table) = table else {
        return Err(usage(
            "report needs a source: --table NAME (or TOKENWATCH_TABLE) for a deployed stack's state table, \
             --from-trail s3://BUCKET/PREFIX, or --lookup-events",
        ));
    };
    if args.until.is_some() {
        return Err(usage(
            "--until needs --from-trail or --lookup-events: the state table keeps only current incidents",
        ));
    }
    if !args.access_keys.is_empty() || !args.accounts.is_empty() || !args.regions.is_empty() {
        return Err(usage(
            "--access-key, --account and --region select what --from-trail or --lookup-events read",
        ));
    }
    let now = now();
    query.since = bound(args.since.as_deref(), "--since")?.map(Since::At);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let since = query.since_at(now);
    let report = runtime.block_on(async {
        let sdk = sdk_config(&SdkOptions::default()).await;
        ready(&sdk).await?;
        let store = DynamoStore::new(&sdk, table.clone());
        report_with_near_misses(&store, &query, now)
            .await
            .map_err(|e| aws_error(e).context(format!("reading the state table {table}")))
    })?;
    let made = Made {
        at: now,
        window: Window {
            since: Some(since),
            until: Some(now),
        },
    };
    crate::write_report(&report, made, &args.out, out, &[])
}

/// The progress bar of a trail walk: total bytes grow as keys are listed, done bytes as bodies arrive.
struct Bar(ProgressBar);

impl TrailProgress for Bar {
    fn listed(&self, size: u64) {
        self.0.inc_length(size);
    }

    fn downloaded(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

async fn from_trail(
    analyzer: &mut Analyzer,
    location: &TrailLocation,
    filter: &TrailFilter,
    downloads: usize,
    now: Epoch,
    unread: &mut Vec<Unread>,
    out: &Output,
) -> Result<()> {
    let sdk = sdk_config(&SdkOptions::default()).await;
    ready(&sdk).await?;
    let reader = TrailReader::new(&sdk, location.clone()).downloads(downloads);
    // Drawn only when stderr is a terminal (indicatif hides it otherwise), and never with --quiet.
    let bar = if out.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} reading the trail {msg}: {binary_bytes}/{binary_total_bytes} \
             ({binary_bytes_per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(tokenwatch_render::text::line(&location.to_string()).into_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    let (records, started) = (analyzer.records(), Instant::now());
    let summary = reader
        .read_into(analyzer, filter, now, Arc::new(Bar(bar.clone())))
        .await;
    bar.finish_and_clear();
    let summary = summary.context("reading the trail")?;
    let seconds = started.elapsed().as_secs_f64().max(1e-3);
    let records = analyzer.records() - records;
    out.note(&format!(
        "{location}: {} log files, {:.1} MB in {seconds:.1} s ({:.1} MB/s), {records} records ({:.0} records/s)",
        summary.objects,
        summary.bytes as f64 / 1e6,
        summary.bytes as f64 / 1e6 / seconds,
        records as f64 / seconds,
    ));
    unread.extend(summary.errors.into_iter().map(|e| Unread {
        name: e.name,
        reason: e.reason,
    }));
    Ok(())
}

/// The lookups `--lookup-events` makes for the window `start..=end` (see the flag's help).
fn lookup_plan(access_keys: &[String], start: Epoch, end: Epoch) -> Vec<(Lookup, Epoch, Epoch)> {
    let issuing = |from: Epoch, to: Epoch| {
        ISSUING_CALLS
            .iter()
            .map(move |name| (Lookup::EventName((*name).to_owned()), from, to))
    };
    if access_keys.is_empty() {
        std::iter::once((Lookup::Everything, start, end))
            .chain(issuing(start - ISSUANCE_LOOKBACK, start))
            .collect()
    } else {
        access_keys
            .iter()
            .map(|k| (Lookup::AccessKey(k.clone()), start, end))
            .chain(issuing(start - ISSUANCE_LOOKBACK, end))
            .collect()
    }
}

async fn lookup_events(
    analyzer: &mut Analyzer,
    region: Option<String>,
    plan: &[(Lookup, Epoch, Epoch)],
    unread: &mut Vec<Unread>,
    out: &Output,
) -> Result<()> {
    let sdk = sdk_config(&SdkOptions {
        region,
        ..SdkOptions::default()
    })
    .await;
    let region = ready(&sdk).await?;
    let lookups = LookupEvents::new(&sdk);
    let spinner = if out.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    spinner.enable_steady_tick(Duration::from_millis(200));
    let (mut requests, mut retried, mut events) = (0, 0, 0);
    let started = Instant::now();
    for (lookup, start, end) in plan {
        let result = lookups
            .pull_into(analyzer, lookup, *start, *end, |p| {
                let message = format!(
                    "reading CloudTrail Event history ({region}, {lookup}): {} requests, {} events",
                    p.requests, p.events
                );
                spinner.set_message(tokenwatch_render::text::line(&message).into_owned());
            })
            .await;
        let pulled = match result {
            Ok(pulled) => pulled,
            Err(LookupError { blocked: Some(b), .. }) => {
                // Credentials, region or permission: every other lookup would fail the same way.
                spinner.finish_and_clear();
                return Err(anyhow::anyhow!("lookup-events {region}: {b}"));
            }
            Err(e) => {
                unread.push(Unread {
                    name: format!("lookup-events {region} {}", e.lookup),
                    reason: format!(
                        "{} (the {} events before it were analysed)",
                        e.reason, e.pulled.events
                    ),
                });
                e.pulled
            }
        };
        requests += pulled.requests;
        retried += pulled.retried;
        events += pulled.events;
    }
    spinner.finish_and_clear();
    out.note(&format!(
        "lookup-events {region}: {requests} requests ({retried} retried), {events} events in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alone_it_reads_every_event_and_the_issuing_calls_of_the_day_before() {
        let plan = lookup_plan(&[], 100_000, 200_000);
        assert_eq!(plan[0], (Lookup::Everything, 100_000, 200_000));
        assert_eq!(plan.len(), 1 + ISSUING_CALLS.len());
        assert!(plan[1..].iter().all(|(l, s, e)| matches!(l, Lookup::EventName(_))
            && (*s, *e) == (100_000 - ISSUANCE_LOOKBACK, 100_000)));
    }

    #[test]
    fn with_keys_it_reads_their_calls_and_every_issuing_call() {
        let plan = lookup_plan(
            &["ASIAONEEXAMPLE".into(), "ASIATWOEXAMPLE".into()],
            100_000,
            200_000,
        );
        assert_eq!(
            plan[1],
            (Lookup::AccessKey("ASIATWOEXAMPLE".into()), 100_000, 200_000)
        );
        assert_eq!(
            plan[2],
            (
                Lookup::EventName("AssumeRole".into()),
                100_000 - ISSUANCE_LOOKBACK,
                200_000
            )
        );
        assert_eq!(plan.len(), 2 + ISSUING_CALLS.len());
        assert!(!plan.iter().any(|(l, _, _)| *l == Lookup::Everything));
    }
}
