//! `tokenwatch explain` (one group in full) and `tokenwatch alert preview` (a group's page as every
//! channel receives it), both over the same inputs as `analyze` and without AWS.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;
use tokenwatch_core::classify::{Observation, classify};
use tokenwatch_core::envelope::{Opened, open};
use tokenwatch_core::finding::Finding;
use tokenwatch_core::incident::incident_id;
use tokenwatch_core::notice::{IncidentNotice, Notice, NoticeKind, Resolution};
use tokenwatch_core::reader::{JsonSplitter, decompressing};
use tokenwatch_core::stats::group_key;
use tokenwatch_core::time::Epoch;
use tokenwatch_core::{Report, Window};
use tokenwatch_render::explain::{Explain, explain as explain_text};
use tokenwatch_render::sns::{AlertFormat, Style, render};
use tokenwatch_render::{Document, Made};

use crate::inputs::Input;
use crate::output::{Output, say};
use crate::{DEFAULT_COOLDOWN, now, read_inputs, usage, window};

/// `tokenwatch explain`.
#[derive(Parser)]
pub(crate) struct ExplainArgs {
    /// The group (as the table names it: role/session, or ACCOUNT/role/session), a session name, a
    /// principal ARN, an access key id, or a CloudTrail eventID of one of its failures.
    what: String,
    /// Files or folders, as for `analyze`; `-` for stdin (an eventID is looked up in files only).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// text: the group in full for people; json: the report document of that group alone.
    #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
    format: ExplainFormat,
    /// Write to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Region for the CloudTrail console link (default: AWS_REGION, else us-east-1).
    #[arg(long)]
    region: Option<String>,
    /// Count failures from this time on (as for `analyze`).
    #[arg(long)]
    since: Option<String>,
    /// Count failures up to this time (as for `analyze`).
    #[arg(long)]
    until: Option<String>,
    /// Quiet time that ends an incident (as for `analyze`; default 1h).
    #[arg(long, value_name = "SPAN", value_parser = crate::cooldown)]
    cooldown: Option<Epoch>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ExplainFormat {
    Text,
    Json,
}

/// `tokenwatch alert …`.
#[derive(Subcommand)]
pub(crate) enum AlertCommand {
    /// Render the page of a group as every channel receives it: the subject and message attributes, the
    /// e-mail text, the SMS line, the JSON document SQS, Lambda and HTTPS subscribers get, and the AWS
    /// Chatbot notification (Slack, Teams). From files, without AWS.
    #[command(after_help = PREVIEW_HELP)]
    Preview(PreviewArgs),
}

const PREVIEW_HELP: &str = "\
Examples:
  tokenwatch alert preview samples/                           the most severe group's page
  tokenwatch alert preview --group nightly-etl --kind resolved ./AWSLogs/
  tokenwatch alert preview --runbook 'https://wiki.example.com/tokenwatch/{verdict}' ./AWSLogs/

Exit status:
  0   done, everything read
  1   no group to page about, or nothing could be read
  2   done but partial: some input could not be read (each is named on stderr)
  64  usage error (a bad flag or value)";

/// `tokenwatch alert preview`.
#[derive(Parser)]
pub(crate) struct PreviewArgs {
    /// Files or folders, as for `analyze`; `-` for stdin.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The group to page about (as for `explain`); default: the most severe.
    #[arg(long)]
    group: Option<String>,
    /// Which notice: the incident's first page, an escalation, or its end (resolved after the cool-down).
    #[arg(long, value_enum, default_value_t = Kind::Open)]
    kind: Kind,
    /// Region for console links (default: AWS_REGION, else us-east-1).
    #[arg(long)]
    region: Option<String>,
    /// The stack's RunbookUrl: an https:// address, `{verdict}` standing for the verdict.
    #[arg(long, value_name = "URL")]
    runbook: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    Open,
    Escalation,
    Resolved,
}

fn region(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
        .unwrap_or_else(|| "us-east-1".into())
}

/// What `what` names among the findings: a group label (with or without the account), a session name, a
/// principal, an access key, or the eventID of a failure in `files`.
fn find<'a>(report: &'a Report, what: &str, files: &[PathBuf]) -> Result<&'a Finding> {
    let what = what.trim();
    let label = |f: &Finding| tokenwatch_render::Group::of(f).label();
    let rules: [&dyn Fn(&Finding) -> bool; 5] = [
        &|f| label(f) == what,
        &|f| f.account().is_some_and(|a| format!("{a}/{}", label(f)) == what),
        &|f| f.principal.as_deref() == Some(what),
        &|f| f.session() == Some(what),
        &|f| f.access_key_ids.iter().any(|k| k == what),
    ];
    for rule in rules {
        let matched: Vec<&Finding> = report.findings.iter().filter(|f| rule(f)).collect();
        match matched.as_slice() {
            [one] => return Ok(one),
            [] => continue,
            many => {
                let names: Vec<String> = many
                    .iter()
                    .map(|f| format!("{}/{}", f.account().unwrap_or("?"), label(f)))
                    .collect();
                return Err(anyhow!(
                    "'{what}' names {} groups: {}; give one of these instead",
                    many.len(),
                    names.join(", ")
                ));
            }
        }
    }
    if let Some(found) = by_event_id(report, what, files) {
        return Ok(found);
    }
    let known: Vec<String> = report.findings.iter().take(20).map(label).collect();
    Err(anyhow!(
        "no group, access key or failure eventID '{what}' in what was read{}",
        if known.is_empty() {
            " (it holds no expired-credential failure)".to_owned()
        } else {
            format!("; its groups: {}", known.join(", "))
        }
    ))
}

/// The finding of the failure whose eventID is `id`, by its group or its access key.
fn by_event_id<'a>(report: &'a Report, id: &str, files: &[PathBuf]) -> Option<&'a Finding> {
    for path in files {
        let Ok(file) = std::fs::File::open(path) else {
            continue;
        };
        let Ok(reader) = decompressing(file) else {
            continue;
        };
        let mut splitter = JsonSplitter::new(reader);
        let mut hit = None;
        while hit.is_none()
            && let Ok(Some(value)) = splitter.next_value()
        {
            if !contains(value, id.as_bytes()) {
                continue;
            }
            open(value, &|_| true, &mut |opened| {
                if let Opened::Record { record, envelope, .. } = opened
                    && let Observation::Failure(f) = classify(&record, &envelope)
                    && f.event_id.as_deref() == Some(id)
                {
                    hit = Some(f);
                }
            });
        }
        if let Some(f) = hit {
            let key = group_key(&f.account, &f.principal, &f.session);
            return report.findings.iter().find(|g| g.key == key).or_else(|| {
                let k = f.access_key_id.as_deref()?;
                report
                    .findings
                    .iter()
                    .find(|g| g.access_key_ids.iter().any(|a| a == k))
            });
        }
    }
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The files among the inputs (an eventID is looked for in them; stdin cannot be read twice).
fn files_of(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut ignored = Vec::new();
    crate::inputs::discover(paths, &mut ignored)
        .inputs
        .into_iter()
        .filter_map(|i| match i {
            Input::File(p, _) => Some(p),
            Input::Stdin => None,
        })
        .collect()
}

/// The exit status of a command that read inputs: 2 when some could not be read, each named.
fn status(unread: &[(String, String)]) -> ExitCode {
    for (name, reason) in unread {
        say(&format!("{name}: {reason}"));
    }
    if unread.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

pub(crate) fn explain(args: ExplainArgs, out: &Output) -> Result<ExitCode> {
    let window = window(args.since.as_deref(), args.until.as_deref())?;
    let cooldown = args.cooldown.unwrap_or(DEFAULT_COOLDOWN);
    let read = read_inputs(&args.paths, window, cooldown, None)?;
    let (report, unread) = (&read.report, &read.unread);
    let finding = find(report, &args.what, &files_of(&args.paths))?;
    let now = now();
    let text = match args.format {
        ExplainFormat::Text => explain_text(
            finding,
            &Explain {
                now,
                region: &region(args.region),
                width: out.layout().width,
            },
        ),
        ExplainFormat::Json => {
            let mut findings = vec![finding.clone()];
            let workloads = tokenwatch_core::workload::workloads(&mut findings);
            let alone = Report {
                records: report.records,
                failures: finding.failures,
                skipped_records: report.skipped_records,
                findings,
                workloads,
                near_misses: Default::default(),
            };
            serde_json::to_string_pretty(&Document::of(&alone, Made { at: now, window }))? + "\n"
        }
    };
    out.write(&text)?;
    out.note(&read.summary);
    Ok(status(unread))
}

pub(crate) fn alert(command: AlertCommand, out: &Output) -> Result<ExitCode> {
    let AlertCommand::Preview(args) = command;
    if let Some(r) = &args.runbook
        && !r.starts_with("https://")
    {
        return Err(usage(format!("--runbook '{r}': expected an https:// address")));
    }
    let read = read_inputs(&args.paths, Window::default(), DEFAULT_COOLDOWN, None)?;
    let (report, unread) = (&read.report, &read.unread);
    let finding = match &args.group {
        Some(g) => find(report, g, &files_of(&args.paths))?,
        None => report.findings.first().ok_or_else(|| {
            anyhow!("no expired-credential failure in what was read: nothing to page about")
        })?,
    };
    let (kind, resolution) = match args.kind {
        Kind::Open => (NoticeKind::Open, None),
        Kind::Escalation => (NoticeKind::Escalation, None),
        Kind::Resolved => (
            NoticeKind::Resolved,
            Some(Resolution::Quiet {
                last_failure: finding.last_failure,
                cooldown: 3600,
            }),
        ),
    };
    let notice = Notice::Incident(IncidentNotice {
        kind,
        severity: finding.assessment.paging_severity,
        incident: incident_id(&finding.key, finding.first_failure),
        finding: finding.clone(),
        drill: false,
        resolution,
        fleet: None,
    });
    let style = |format| Style {
        region: region(args.region.clone()),
        format,
        runbook: args.runbook.clone(),
    };
    let standard = render(&notice, &style(AlertFormat::Standard));
    let chatbot = render(&notice, &style(AlertFormat::Chatbot));
    out.write(&preview(&standard, &chatbot))?;
    out.note(&read.summary);
    Ok(status(unread))
}

/// Every channel's view of one notice, one section each.
fn preview(standard: &tokenwatch_render::sns::Message, chatbot: &tokenwatch_render::sns::Message) -> String {
    let protocols = |m: &tokenwatch_render::sns::Message| -> serde_json::Map<String, Value> {
        serde_json::from_str::<Value>(&m.message)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default()
    };
    let text = |m: &serde_json::Map<String, Value>, k: &str| {
        m.get(k).and_then(Value::as_str).unwrap_or("").to_owned()
    };
    let pretty = |raw: &str| {
        serde_json::from_str::<Value>(raw)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| raw.to_owned())
    };
    let s = protocols(standard);
    let c = protocols(chatbot);
    let mut out = String::new();
    let rule = |out: &mut String, title: &str| {
        let _ = writeln!(
            out,
            "\n── {title} {}",
            "─".repeat(60usize.saturating_sub(title.len()))
        );
    };
    rule(&mut out, "Subject");
    let _ = writeln!(out, "{}", standard.subject);
    rule(&mut out, "Message attributes (for subscription filter policies)");
    for (k, v) in &standard.attributes {
        let _ = writeln!(out, "{k} = {v}");
    }
    rule(&mut out, "E-mail (and `default`)");
    out.push_str(&text(&s, "email"));
    rule(&mut out, "SMS");
    let _ = writeln!(out, "{}", text(&s, "sms"));
    rule(&mut out, "SQS, Lambda and HTTPS subscribers (JSON)");
    let _ = writeln!(out, "{}", pretty(&text(&s, "sqs")));
    rule(
        &mut out,
        "AWS Chatbot: Slack, Microsoft Teams (AlertFormat=chatbot)",
    );
    let payload = text(&c, "default");
    if let Ok(v) = serde_json::from_str::<Value>(&payload) {
        let _ = writeln!(out, "title: {}", v["content"]["title"].as_str().unwrap_or(""));
        let _ = writeln!(
            out,
            "description:\n{}",
            v["content"]["description"].as_str().unwrap_or("")
        );
        if let Some(steps) = v["content"]["nextSteps"].as_array() {
            for s in steps {
                let _ = writeln!(out, "next step: {}", s.as_str().unwrap_or(""));
            }
        }
        let _ = writeln!(out, "\npayload:\n{}", pretty(&payload));
    }
    out.trim_start().to_owned()
}
