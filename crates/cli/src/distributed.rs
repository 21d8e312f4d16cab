//! `tokenwatch report --from-trail s3://… --distributed`: the same report as `--from-trail`, read by the
//! deployed back-fill (Step Functions' Distributed Map running the scanner Lambda) instead of this
//! machine. The CLI lists the window's log files as the local path would, writes them as the run's
//! manifest, starts the state machine, follows its map run, merges the partials the scanners wrote, names
//! what could not be read, and deletes the run's files.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use indicatif::ProgressBar;
use serde_json::{Value, json};
use tokenwatch_aws::backfill::{Execution, FailedItem, StateMachines};
use tokenwatch_aws::partials::PartialStore;
use tokenwatch_aws::trail::{ObjectError, TrailFilter, TrailLocation, TrailReader, s3_client};
use tokenwatch_core::partial::{Partial, Settings};
use tokenwatch_core::ports::PortError;
use tokenwatch_core::time::Epoch;

use crate::output::Output;
use crate::report::{Unread, aws_error};

/// Where the back-fill's files go: the prefix the template's lifecycle rule expires and the state
/// machine's role may read.
pub(crate) const RUNS_PREFIX: &str = "tokenwatch-partials/";
/// The manifest's name in a run's folder: every other file there is a partial.
const MANIFEST: &str = "manifest.json";
/// Default for `--timeout`.
const DEFAULT_TIMEOUT: Epoch = 2 * 3600;

/// Which deployed back-fill `--distributed` runs on.
#[derive(Args, Debug, Default)]
pub(crate) struct DistributedArgs {
    /// --from-trail: read the trail with the deployed back-fill (Step Functions' Distributed Map running
    /// the scanner Lambda, README "Scale") instead of on this machine. Needs --stack, or --state-machine
    /// and --work-bucket.
    #[arg(long, requires = "from_trail", conflicts_with = "lookup_events")]
    pub(crate) distributed: bool,
    /// --distributed: the stack deployed with BackfillTrailBucket set; its outputs name the state machine
    /// and the bucket for the run's files.
    #[arg(
        long,
        value_name = "NAME",
        requires = "distributed",
        conflicts_with = "state_machine"
    )]
    pub(crate) stack: Option<String>,
    /// --distributed: the back-fill's state machine (the stack's BackfillStateMachineArn output), instead
    /// of --stack.
    #[arg(long, value_name = "ARN", requires_all = ["distributed", "work_bucket"])]
    pub(crate) state_machine: Option<String>,
    /// --distributed: the bucket for the run's manifest and partials (the stack's BackfillBucketName
    /// output), with --state-machine.
    #[arg(long, value_name = "BUCKET", requires = "state_machine")]
    pub(crate) work_bucket: Option<String>,
    /// --distributed: give up (and stop the execution) after this long: seconds, or 30m, 2h (default 2h).
    #[arg(long, value_name = "SPAN", requires = "distributed", value_parser = span)]
    pub(crate) timeout: Option<Epoch>,
}

fn span(raw: &str) -> Result<Epoch, String> {
    raw.trim()
        .parse::<Epoch>()
        .ok()
        .or_else(|| tokenwatch_core::time::parse_span(raw))
        .filter(|s| *s > 0)
        .ok_or_else(|| "expected seconds or a span like 30m, 2h".to_owned())
}

/// What the run reads: its state machine and work bucket.
struct Target {
    state_machine: String,
    bucket: String,
}

/// A run's name: also the execution's, unique per state machine, and the folder of its files.
fn run_name(now: Epoch) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("tw-{now}-{:x}{nanos:08x}", std::process::id())
}

/// The keys a failed item was to read, from its input (`{"Key"}` or `{"Items": [{"Key"}…]}`).
fn keys_of(input: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<Value>(input) else {
        return Vec::new();
    };
    let key = |i: &Value| i["Key"].as_str().or(i["Prefix"].as_str()).map(str::to_owned);
    match v["Items"].as_array() {
        Some(items) => items.iter().filter_map(key).collect(),
        None => key(&v).into_iter().collect(),
    }
}

/// A failed item as warnings: each object it was to read, with the item's error.
fn unread_of(location: &TrailLocation, item: &FailedItem) -> Vec<Unread> {
    // The cause of a Lambda error is its JSON error document; its message is what a reader wants.
    let message = serde_json::from_str::<Value>(&item.cause)
        .ok()
        .and_then(|c| c["errorMessage"].as_str().map(str::to_owned))
        .unwrap_or_else(|| item.cause.clone());
    let reason = format!("the scanner's item failed: {}: {message}", item.error);
    let keys = keys_of(&item.input);
    if keys.is_empty() {
        return vec![Unread {
            name: format!("{location}: an item of the back-fill"),
            reason: format!("{reason} (input {})", item.input),
        }];
    }
    keys.into_iter()
        .map(|k| Unread {
            name: location.url_of(&k),
            reason: reason.clone(),
        })
        .collect()
}

async fn target(
    sdk: &aws_config::SdkConfig,
    args: &DistributedArgs,
    location: &TrailLocation,
) -> Result<Target> {
    if let (Some(state_machine), Some(bucket)) = (&args.state_machine, &args.work_bucket) {
        return Ok(Target {
            state_machine: state_machine.clone(),
            bucket: bucket.clone(),
        });
    }
    let Some(name) = &args.stack else {
        return Err(crate::usage(
            "--distributed needs the deployed back-fill: --stack NAME, or --state-machine ARN and --work-bucket BUCKET",
        ));
    };
    let prober = tokenwatch_aws::probe::Prober::new(sdk);
    let credentials = tokenwatch_aws::drill::operator_credentials(sdk)
        .await
        .map_err(aws_error)?;
    let stack = tokenwatch_aws::drill::describe_stack(&prober, &credentials, name)
        .await
        .map_err(|e| {
            aws_error(e).context(format!(
                "reading the stack {name} (CloudFormation DescribeStacks)"
            ))
        })?;
    let output = |k: &str| stack.outputs.get(k).filter(|v| !v.is_empty()).cloned();
    let (Some(state_machine), Some(bucket)) =
        (output("BackfillStateMachineArn"), output("BackfillBucketName"))
    else {
        bail!(
            "the stack {name} has no back-fill (no BackfillStateMachineArn output): deploy it with \
             BackfillTrailBucket={} (README, \"Scale\")",
            location.bucket
        );
    };
    if let Some(trail) = stack.parameters.get("BackfillTrailBucket")
        && *trail != location.bucket
    {
        bail!(
            "the stack {name}'s back-fill reads the bucket {trail}, not {}: its scanner may read only \
             that bucket (deploy it with BackfillTrailBucket={})",
            location.bucket,
            location.bucket
        );
    }
    Ok(Target {
        state_machine,
        bucket,
    })
}

/// What a distributed run read.
pub(crate) struct Read {
    /// The partials merged.
    pub(crate) partial: Partial,
    /// Objects, folders and items that could not be read.
    pub(crate) unread: Vec<Unread>,
}

/// Reads the trail at `location` with the deployed back-fill.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn read(
    args: &DistributedArgs,
    location: &TrailLocation,
    filter: &TrailFilter,
    settings: Settings,
    now: Epoch,
    out: &Output,
) -> Result<Read> {
    let sdk = tokenwatch_aws::sdk_config(&tokenwatch_aws::SdkOptions::default()).await;
    tokenwatch_aws::ready(&sdk).await?;
    let target = target(&sdk, args, location).await?;
    let started = Instant::now();

    let mut errors: Vec<ObjectError> = Vec::new();
    let reader = TrailReader::new(&sdk, location.clone());
    let plan = reader
        .plan(filter, now, &mut errors)
        .await
        .context("listing the trail")?;
    let mut unread: Vec<Unread> = errors
        .into_iter()
        .map(|e| Unread {
            name: e.name,
            reason: e.reason,
        })
        .collect();
    let bytes: u64 = plan.iter().map(|(_, size)| size).sum();
    out.note(&format!(
        "{location}: {} log files, {:.1} MB to read in the back-fill",
        plan.len(),
        bytes as f64 / 1e6
    ));
    if plan.is_empty() {
        return Ok(Read {
            partial: Partial::empty(settings),
            unread,
        });
    }

    let run = run_name(now);
    let store = PartialStore::new(s3_client(&sdk), &target.bucket, RUNS_PREFIX);
    let manifest: Vec<Value> = plan.iter().map(|(k, _)| json!({"Key": k})).collect();
    let manifest_key = store
        .put(&run, MANIFEST, serde_json::to_vec(&manifest)?)
        .await
        .map_err(|e| aws_error(e).context(format!("writing the run's manifest to s3://{}", target.bucket)))?;
    let input = json!({
        "ManifestBucket": target.bucket,
        "ManifestKey": manifest_key,
        "Job": {
            "Bucket": location.bucket,
            "Since": settings.window.since,
            "Until": settings.window.until,
            "Cooldown": settings.cooldown,
            "Run": run,
        },
    });
    let machines = StateMachines::new(&sdk);
    let result = follow(&machines, &target, &run, input.to_string(), args, started, out).await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => {
            cleanup(&store, &run, out).await;
            return Err(e);
        }
    };

    for item in &outcome.failed {
        unread.extend(unread_of(location, item));
    }
    let collected = match collect(&store, &run, settings).await {
        Ok(collected) => collected,
        Err(e) => {
            cleanup(&store, &run, out).await;
            return Err(aws_error(e).context("listing the run's partials"));
        }
    };
    let Collected {
        mut merged,
        partials,
        retried,
        unread: unmerged,
        keys,
    } = collected;
    unread.extend(unmerged);
    if (partials as i64) < outcome.batches {
        // A scanner whose INLINE_LIMIT lets small partials come back in the map's results, which the
        // state machine drops: those batches' records are missing from the report.
        unread.push(Unread {
            name: format!("{location}: {} batches of the back-fill", outcome.batches - partials as i64),
            reason: format!(
                "succeeded but wrote no partial to s3://{}/{RUNS_PREFIX}: deploy the scanner with INLINE_LIMIT=0 \
                 (the template does)",
                target.bucket
            ),
        });
    }
    unread.extend(
        std::mem::take(&mut merged.unread.0)
            .into_iter()
            .map(|(name, reason)| Unread { name, reason }),
    );
    let seconds = started.elapsed().as_secs_f64().max(1e-3);
    out.note(&format!(
        "back-fill {run}: {} items ({} failed, {retried} succeeded on a retry), {partials} partials, {} records \
         in {seconds:.1} s ({:.0} records/s)",
        outcome.items,
        outcome.failed.len(),
        merged.counts.records,
        merged.counts.records as f64 / seconds,
    ));
    note_deletion(&store, &run, store.delete(&keys).await, out);
    Ok(Read {
        partial: merged,
        unread,
    })
}

/// What a finished run left in its folder, merged.
struct Collected {
    /// The partials, merged.
    merged: Partial,
    /// How many were merged.
    partials: usize,
    /// How many were written by a retry of their item (the map's Retry after a transient fault).
    retried: usize,
    /// Partials that could not be read or merged.
    unread: Vec<Unread>,
    /// Every file of the run (the manifest too): what to delete.
    keys: Vec<String>,
}

/// Lists the run's files once and merges its partials; the listing also serves their deletion.
async fn collect(store: &PartialStore, run: &str, settings: Settings) -> Result<Collected, PortError> {
    let keys = store.keys(run).await?;
    let mut collected = Collected {
        merged: Partial::empty(settings),
        partials: 0,
        retried: 0,
        unread: Vec::new(),
        keys: Vec::new(),
    };
    for key in keys.iter().filter(|k| !k.ends_with(&format!("/{MANIFEST}"))) {
        let name = format!("s3://{}/{key}", store.bucket);
        match store.partial_of_attempt(key).await {
            Ok((p, attempt)) => match collected.merged.merge(p) {
                Ok(()) => {
                    collected.partials += 1;
                    collected.retried += usize::from(attempt > 0);
                }
                Err(e) => collected.unread.push(Unread {
                    name,
                    reason: e.to_string(),
                }),
            },
            Err(e) => collected.unread.push(Unread {
                name,
                reason: format!("a partial that could not be read: {e}"),
            }),
        }
    }
    collected.keys = keys;
    Ok(collected)
}

/// Deletes the run's manifest and partials; a failure is only noted (the lifecycle rule expires them).
async fn cleanup(store: &PartialStore, run: &str, out: &Output) {
    note_deletion(store, run, store.delete_run(run).await, out);
}

/// Says how deleting the run's files went.
fn note_deletion(store: &PartialStore, run: &str, deleted: Result<usize, PortError>, out: &Output) {
    match deleted {
        Ok(n) => out.note(&format!(
            "deleted the run's {n} files from s3://{}/{}{run}/",
            store.bucket, store.prefix
        )),
        Err(e) => out.note(&format!(
            "could not delete s3://{}/{}{run}/ ({e}); the bucket's lifecycle rule expires it",
            store.bucket, store.prefix
        )),
    }
}

/// How the execution ended.
struct Outcome {
    items: i64,
    batches: i64,
    failed: Vec<FailedItem>,
}

/// Starts the execution and waits for its end, drawing its progress; an execution that did not succeed,
/// or outlived `--timeout`, is an error.
async fn follow(
    machines: &StateMachines,
    target: &Target,
    run: &str,
    input: String,
    args: &DistributedArgs,
    started: Instant,
    out: &Output,
) -> Result<Outcome> {
    let execution = machines
        .start(&target.state_machine, run, input)
        .await
        .map_err(|e| aws_error(e).context(format!("starting the back-fill {}", target.state_machine)))?;
    let timeout = Duration::from_secs(args.timeout.unwrap_or(DEFAULT_TIMEOUT).max(1) as u64);
    let spinner = if out.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    spinner.enable_steady_tick(Duration::from_millis(200));
    let mut map_run = None;
    let mut pause = Duration::from_millis(500);
    let mut last_line = Instant::now();
    let mut faults = 0;
    let status = loop {
        let status: Execution = match machines.execution(&execution).await {
            Ok(status) => status,
            // A busy endpoint or a dropped connection: the execution runs on regardless, so ask again
            // (within --timeout) rather than abandon it.
            Err(e) if e.is_transient() && started.elapsed() < timeout => {
                faults += 1;
                if faults == 1 || faults % 10 == 0 {
                    out.note(&format!("following the execution (asking again): {e}"));
                }
                tokio::time::sleep(pause).await;
                continue;
            }
            Err(e) => {
                spinner.finish_and_clear();
                let _ = machines.stop(&execution, "tokenwatch could not follow it").await;
                return Err(aws_error(e).context(format!("following the execution {execution} (stopped)")));
            }
        };
        if map_run.is_none() {
            map_run = machines.map_run(&execution).await.ok().flatten();
        }
        let counts = match &map_run {
            Some(m) => machines.items(m).await.unwrap_or_default(),
            None => Default::default(),
        };
        let line = format!(
            "back-fill {run}: {}/{} items done, {} failed, {:.0} s",
            counts.succeeded + counts.failed,
            counts.total,
            counts.failed,
            started.elapsed().as_secs_f64()
        );
        spinner.set_message(line.clone());
        // Without a terminal the spinner is hidden: a line now and then says the run is alive.
        if spinner.is_hidden() && !out.quiet && last_line.elapsed() >= Duration::from_secs(30) {
            out.note(&line);
            last_line = Instant::now();
        }
        if !status.running() {
            break (status, counts);
        }
        if started.elapsed() >= timeout {
            spinner.finish_and_clear();
            let stopped = machines.stop(&execution, "tokenwatch --timeout").await;
            bail!(
                "the back-fill did not finish within --timeout ({} s): {}; {line}",
                timeout.as_secs(),
                match stopped {
                    Ok(()) => format!("its execution {execution} was stopped"),
                    Err(e) => format!("stopping its execution {execution} failed too ({e})"),
                }
            );
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    };
    spinner.finish_and_clear();
    let (status, counts) = status;
    let failed = match &map_run {
        Some(m) => {
            let mut attempt = 0;
            loop {
                match machines.failed_items(m).await {
                    Ok(failed) => break failed,
                    Err(e) if e.is_transient() && attempt < 5 => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_secs(attempt)).await;
                    }
                    Err(e) => return Err(aws_error(e).context("listing the back-fill's failed items")),
                }
            }
        }
        None => Vec::new(),
    };
    if status.status != "SUCCEEDED" {
        let mut message = format!(
            "the back-fill's execution {execution} ended {}: {} {}",
            status.status,
            status.error.unwrap_or_default(),
            status.cause.unwrap_or_default()
        );
        for item in failed.iter().take(5) {
            for u in unread_of(
                &TrailLocation {
                    bucket: String::new(),
                    prefix: String::new(),
                },
                item,
            )
            .iter()
            .take(1)
            {
                message.push_str(&format!(
                    "\n  {}: {}",
                    u.name.trim_start_matches("s3:///"),
                    u.reason
                ));
            }
        }
        if failed.len() > 5 {
            message.push_str(&format!("\n  … and {} more failed items", failed.len() - 5));
        }
        return Err(anyhow!(message));
    }
    Ok(Outcome {
        items: counts.total,
        batches: counts.batches_succeeded,
        failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_item_names_each_key_it_was_to_read_with_the_lambda_message() {
        let location = TrailLocation {
            bucket: "org-trail".into(),
            prefix: String::new(),
        };
        let item = FailedItem {
            input: r#"{"Items":[{"Key":"AWSLogs/1/a.json.gz"},{"Key":"AWSLogs/1/b.json.gz"}]}"#.into(),
            error: "ListFailed".into(),
            cause: r#"{"errorType":"ListFailed","errorMessage":"listing s3://org-trail/x: AccessDenied"}"#
                .into(),
        };
        let u = unread_of(&location, &item);
        assert_eq!(
            u.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
            [
                "s3://org-trail/AWSLogs/1/a.json.gz",
                "s3://org-trail/AWSLogs/1/b.json.gz"
            ]
        );
        assert_eq!(
            u[0].reason,
            "the scanner's item failed: ListFailed: listing s3://org-trail/x: AccessDenied"
        );
    }

    #[test]
    fn an_item_without_keys_is_named_by_its_input() {
        let location = TrailLocation {
            bucket: "org-trail".into(),
            prefix: String::new(),
        };
        let item = FailedItem {
            input: "{}".into(),
            error: "States.Timeout".into(),
            cause: "plain".into(),
        };
        let u = unread_of(&location, &item);
        assert_eq!(u.len(), 1);
        assert!(
            u[0].reason.contains("States.Timeout: plain (input {})"),
            "{}",
            u[0].reason
        );
        assert_eq!(keys_of(r#"{"Key":"k","Job":{}}"#), ["k"]);
        assert!(keys_of("not json").is_empty());
    }

    /// Regression: a DescribeExecution that timed out on a busy endpoint ended the CLI with an error while
    /// the back-fill of 1,000,000 records ran on, and its files were deleted under it.
    #[tokio::test]
    async fn a_transient_fault_while_following_the_execution_is_asked_again() {
        use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
        use aws_sdk_sfn::operation::list_map_runs::ListMapRunsOutput;
        use aws_sdk_sfn::operation::start_execution::StartExecutionOutput;
        use aws_smithy_mocks::{RuleMode, mock, mock_client};

        let start = mock!(aws_sdk_sfn::Client::start_execution).then_output(|| {
            StartExecutionOutput::builder()
                .execution_arn("arn:aws:states:us-east-1:1:execution:m:r")
                .start_date(aws_smithy_types::DateTime::from_secs(0))
                .build()
                .unwrap()
        });
        let busy = mock!(aws_sdk_sfn::Client::describe_execution)
            .sequence()
            .http_status(503, None)
            .times(2)
            .build();
        let done = mock!(aws_sdk_sfn::Client::describe_execution).then_output(|| {
            DescribeExecutionOutput::builder()
                .execution_arn("arn:aws:states:us-east-1:1:execution:m:r")
                .state_machine_arn("arn:aws:states:us-east-1:1:stateMachine:m")
                .status(aws_sdk_sfn::types::ExecutionStatus::Succeeded)
                .start_date(aws_smithy_types::DateTime::from_secs(0))
                .build()
                .unwrap()
        });
        let runs = mock!(aws_sdk_sfn::Client::list_map_runs).then_output(|| {
            ListMapRunsOutput::builder()
                .set_map_runs(Some(Vec::new()))
                .build()
                .unwrap()
        });
        let client = mock_client!(
            aws_sdk_sfn,
            RuleMode::MatchAny,
            [&start, &busy, &done, &runs],
            |c| c.retry_config(aws_sdk_sfn::config::retry::RetryConfig::disabled())
        );
        let machines = StateMachines::from_client(client);
        let target = Target {
            state_machine: "arn:aws:states:us-east-1:1:stateMachine:m".into(),
            bucket: "work".into(),
        };
        let args = DistributedArgs {
            timeout: Some(60),
            ..DistributedArgs::default()
        };
        let out = Output {
            quiet: true,
            ..Output::default()
        };
        let outcome = follow(&machines, &target, "r", "{}".into(), &args, Instant::now(), &out)
            .await
            .unwrap();
        assert!(outcome.failed.is_empty());
        assert_eq!(done.num_calls(), 1, "asked again after the faults");
        assert_eq!(busy.num_calls(), 2);
    }

    /// Regression: the run's folder was listed twice, once to merge its partials and once to delete its
    /// files; one listing now serves both, and the partials a retry wrote are counted.
    #[tokio::test]
    async fn the_run_s_files_are_listed_once_to_merge_and_to_delete_and_retries_are_counted() {
        use aws_sdk_s3::operation::delete_object::DeleteObjectOutput;
        use aws_sdk_s3::operation::get_object::GetObjectOutput;
        use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
        use aws_sdk_s3::primitives::ByteStream;
        use aws_sdk_s3::types::Object;
        use aws_smithy_mocks::{MockResponseInterceptor, RuleMode, create_mock_http_client, mock};
        use tokenwatch_core::Window;

        let settings = Settings {
            window: Window::default(),
            cooldown: 3600,
        };
        let body = Partial::empty(settings).to_json();
        let list = mock!(aws_sdk_s3::Client::list_objects_v2).then_output(|| {
            ListObjectsV2Output::builder()
                .set_contents(Some(
                    ["manifest.json", "a.json", "b.json"]
                        .iter()
                        .map(|n| {
                            Object::builder()
                                .key(format!("tokenwatch-partials/r/{n}"))
                                .build()
                        })
                        .collect(),
                ))
                .build()
        });
        let first = {
            let body = body.clone();
            mock!(aws_sdk_s3::Client::get_object)
                .match_requests(|r| r.key() == Some("tokenwatch-partials/r/a.json"))
                .then_output(move || {
                    GetObjectOutput::builder()
                        .body(ByteStream::from(body.clone()))
                        .build()
                })
        };
        let retried = mock!(aws_sdk_s3::Client::get_object)
            .match_requests(|r| r.key() == Some("tokenwatch-partials/r/b.json"))
            .then_output(move || {
                GetObjectOutput::builder()
                    .metadata("attempt", "1")
                    .body(ByteStream::from(body.clone()))
                    .build()
            });
        let delete =
            mock!(aws_sdk_s3::Client::delete_object).then_output(|| DeleteObjectOutput::builder().build());
        // mock_client! needs the S3 SDK's test-util feature, which would rebuild it for every build
        // (Cargo.toml): the same client, set up by hand.
        let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
        for rule in [&list, &first, &retried, &delete] {
            interceptor = interceptor.with_rule(rule);
        }
        let client = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_s3::config::Credentials::for_tests())
                .http_client(create_mock_http_client())
                .interceptor(interceptor)
                .build(),
        );
        let store = PartialStore::new(client, "work", RUNS_PREFIX);

        let c = collect(&store, "r", settings).await.unwrap();
        assert_eq!((c.partials, c.retried, c.unread.len()), (2, 1, 0));
        assert_eq!(
            store.delete(&c.keys).await.unwrap(),
            3,
            "the manifest is deleted too"
        );
        assert_eq!(list.num_calls(), 1, "listed once");
        assert_eq!(delete.num_calls(), 3);
    }

    #[test]
    fn run_names_are_execution_names_and_scanner_runs() {
        let name = run_name(1_790_000_000);
        assert!(name.len() <= 80 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        assert!(span("0").is_err() && span("2h") == Ok(7200) && span("90") == Ok(90));
    }
}
