//! What a person at a terminal meets: the table at 80 and 100 columns, colour, `-o`, `--fail-on`, a closed
//! pipe, completions and the man page, `explain`, `alert preview`, the report document's schema, and AWS
//! errors said in words within seconds. The built binary, run as a user would.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokenwatch_testkit::{assert_valid_report_text, samples_dir};

/// `tokenwatch args` with `env` set, its colour and width variables cleared first.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenwatch"));
    cmd.args(args)
        .env_remove("COLUMNS")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn samples() -> String {
    samples_dir().display().to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The fix under each row of a narrow table (`  fix: …` and its hanging lines), joined.
fn fixes_under_rows(table: &str) -> Vec<String> {
    let mut fixes: Vec<String> = Vec::new();
    let mut hang = 0;
    for l in table.lines() {
        if l.starts_with("  fix: ") {
            hang = "  fix: ".len();
            fixes.push(l[hang..].to_owned());
        } else if hang > 0 && l.len() > hang && l[..hang].trim().is_empty() {
            let last = fixes.last_mut().unwrap();
            last.push(' ');
            last.push_str(&l[hang..]);
        } else {
            hang = 0;
        }
    }
    fixes
}

#[test]
fn the_table_fits_100_and_80_columns_and_every_fix_reads_whole_in_its_cell() {
    let report = assert_valid_report_text(&text(
        &run(&["analyze", "--format", "json", &samples()], &[]).stdout,
    ));
    // The failures' groups, then the near misses' (each with its fix under it too).
    let groups: Vec<&Value> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .chain(report["near_misses"]["groups"].as_array().unwrap())
        .collect();
    for width in ["100", "80"] {
        let out = run(&["analyze", &samples()], &[("COLUMNS", width)]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let table = text(&out.stdout);
        let max: usize = width.parse().unwrap();
        for line in table.lines() {
            assert!(
                line.chars().count() <= max,
                "at COLUMNS={width} a line of {}: {line:?}\n{table}",
                line.chars().count()
            );
        }
        let fixes = fixes_under_rows(&table);
        assert_eq!(
            fixes.len(),
            groups.len(),
            "at {width}, one fix per group:\n{table}"
        );
        for (fix, g) in fixes.iter().zip(&groups) {
            let remediation = g["remediation"].as_str().unwrap();
            assert!(
                remediation.starts_with(&format!("{fix}: ")),
                "at {width} the fix of {} is cut or broken: {fix:?}\n{table}",
                g["session"]
            );
            assert_eq!(
                fix.matches('`').count() % 2,
                0,
                "a code span broken across lines: {fix}"
            );
        }
        assert!(table.contains("SINCE"), "{table}");
        assert!(!table.contains('\x1b'), "no colour into a pipe");
    }
}

#[test]
fn colour_only_when_asked_or_on_a_terminal_and_never_with_no_color() {
    let coloured = text(&run(&["analyze", "--color", "always", &samples()], &[]).stdout);
    assert!(coloured.contains("\x1b[1;31mhigh\x1b[0m"), "{coloured}");
    let no_color = text(
        &run(
            &["analyze", "--color", "always", &samples()],
            &[("NO_COLOR", "1")],
        )
        .stdout,
    );
    assert!(!no_color.contains('\x1b'), "NO_COLOR wins");
    let never = text(&run(&["--color", "never", "analyze", &samples()], &[]).stdout);
    assert!(!never.contains('\x1b'));
}

#[test]
fn output_goes_to_the_file_given_and_fail_on_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.json");
    let out = run(
        &[
            "analyze",
            "--format",
            "json",
            "-o",
            file.to_str().unwrap(),
            "--fail-on",
            "high",
            &samples(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "nothing on stdout");
    let report = assert_valid_report_text(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(report["schema"], 2);
    assert_eq!(report["tool"]["name"], "tokenwatch");
    assert_eq!(
        report["window"],
        serde_json::json!({"since": null, "until": null})
    );
    let out = run(&["analyze", "--fail-on", "critical", &samples()], &[]);
    assert_eq!(out.status.code(), Some(0), "no critical group in the samples");
    let windowed = text(
        &run(
            &["analyze", "--format", "json", "--since", "2026-11-02", &samples()],
            &[],
        )
        .stdout,
    );
    let windowed = assert_valid_report_text(&windowed);
    assert_eq!(windowed["window"]["since"], "2026-11-02T00:00:00Z");
}

#[test]
fn a_closed_pipe_ends_the_run_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .args(["analyze", "--format", "html", &samples()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before anything is written, as `| head -0` would.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("Broken pipe") && !err.contains("panicked"), "{err}");
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definitions() {
    let bash = run(&["completions", "bash"], &[]);
    assert!(bash.status.success());
    let bash = text(&bash.stdout);
    assert!(
        bash.contains("_tokenwatch") && bash.contains("--fail-on"),
        "{bash:.500}"
    );
    let man = run(&["man"], &[]);
    assert!(man.status.success());
    let man = text(&man.stdout);
    assert!(
        man.contains(".TH tokenwatch") && man.contains("Exit status"),
        "{man:.500}"
    );
    let out = run(&["completions", "tcsh"], &[]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn every_help_lists_examples_and_exit_statuses() {
    for command in [
        &["--help"][..],
        &["analyze", "--help"],
        &["report", "--help"],
        &["explain", "--help"],
        &["alert", "preview", "--help"],
        &["drill", "--help"],
        &["doctor", "--help"],
    ] {
        let out = run(command, &[]);
        assert!(out.status.success());
        let help = text(&out.stdout);
        assert!(
            help.contains("Exit status:") && help.contains("64  usage error"),
            "{command:?}: {help}"
        );
        assert!(
            help.contains("Examples:") || help.contains("Am I affected?"),
            "{command:?}: {help}"
        );
    }
}

#[test]
fn explain_shows_one_group_in_full_found_by_label_key_or_event_id() {
    let by_label = run(
        &["explain", "etl-pipeline-role/nightly-etl", &samples()],
        &[("COLUMNS", "100")],
    );
    assert!(by_label.status.success(), "{}", text(&by_label.stderr));
    let shown = text(&by_label.stdout);
    for part in [
        "Timeline (UTC)",
        "What the verdict rests on",
        "issue time 2026-11-02T08:00:00Z",
        "Fields",
        "https://us-east-1.console.aws.amazon.com/cloudtrailv2/",
    ] {
        assert!(shown.contains(part), "{part}:\n{shown}");
    }
    let by_key = text(
        &run(
            &["explain", "ASIAETLNIGHT1EXAMPLE", &samples()],
            &[("COLUMNS", "100")],
        )
        .stdout,
    );
    // Apart from the line that says how long ago the report was made.
    let timeless = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("no failure in the last"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        timeless(&by_key),
        timeless(&shown),
        "the access key finds the same group"
    );
    // An eventID of one of the role-chaining sample's failures.
    let file = samples_dir().join("03-role-chaining");
    let records = std::fs::read_to_string(
        std::fs::read_dir(&file)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap() != "expected.json")
            .unwrap(),
    )
    .unwrap();
    let trail: Value = serde_json::from_str(&records).unwrap();
    let failing = trail["Records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["errorCode"].as_str().is_some_and(|c| c.contains("Expired")))
        .unwrap();
    let id = failing["eventID"].as_str().unwrap();
    let by_event = run(&["explain", id, &samples()], &[]);
    assert!(by_event.status.success(), "{}", text(&by_event.stderr));
    assert!(
        text(&by_event.stdout).contains("role-chaining"),
        "{}",
        text(&by_event.stdout)
    );

    let json = run(&["explain", "--format", "json", "nightly-etl", &samples()], &[]);
    let doc = assert_valid_report_text(&text(&json.stdout));
    assert_eq!(doc["groups"].as_array().unwrap().len(), 1);

    let none = run(&["explain", "no-such-group", &samples()], &[]);
    assert_eq!(none.status.code(), Some(1));
    let err = text(&none.stderr);
    assert!(
        err.contains("no group, access key or failure eventID 'no-such-group'")
            && err.contains("nightly-etl"),
        "{err}"
    );
}

#[test]
fn alert_preview_shows_every_channel_with_the_fix_early() {
    let out = run(
        &[
            "alert",
            "preview",
            "--group",
            "etl-pipeline-role/nightly-etl",
            "--runbook",
            "https://wiki.example.com/tw/{verdict}",
            &samples(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for section in [
        "── Subject",
        "── Message attributes",
        "── E-mail",
        "── SMS",
        "── SQS, Lambda and HTTPS",
        "── AWS Chatbot",
    ] {
        assert!(shown.contains(section), "{section}:\n{shown}");
    }
    assert!(
        shown.contains("[tokenwatch] HIGH stale-cache 123456789012 etl-pipeline-role/nightly-etl"),
        "{shown}"
    );
    assert!(shown.contains("alert_id = "), "{shown}");
    let email = &shown[shown.find("── E-mail").unwrap()..];
    let lines: Vec<&str> = email.lines().skip(1).collect();
    let fix = lines.iter().position(|l| l.starts_with("Fix: ")).unwrap();
    assert!(fix < 6, "the fix on line {}:\n{email}", fix + 1);
    assert!(
        shown.contains("Runbook: https://wiki.example.com/tw/stale-cache"),
        "{shown}"
    );
    let chat = &shown[shown.find("── AWS Chatbot").unwrap()..];
    assert!(
        chat.contains("description:\nCredentials were cached past their lease"),
        "{chat}"
    );
    assert!(
        chat.contains("\n*Fix:* Let botocore refresh the role"),
        "line breaks kept: {chat}"
    );
}

/// The environment of a machine with no AWS configuration at all.
fn no_aws(cmd: &mut Command, home: &Path) {
    cmd.env_clear()
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
}

#[test]
fn missing_credentials_are_named_with_the_command_that_gets_them_within_seconds() {
    let home = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenwatch"));
    cmd.args(["report", "--lookup-events"]);
    no_aws(&mut cmd, home.path());
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let took = started.elapsed();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {err}");
    assert!(err.contains("no AWS credentials found"), "{err}");
    assert!(
        err.contains("aws sso login") && err.contains("AWS_PROFILE"),
        "{err}"
    );
    assert!(
        !err.contains("DispatchFailure") && !err.contains("Some("),
        "no Debug dump: {err}"
    );
    assert!(err.lines().count() <= 3, "said in a few lines: {err}");
    assert!(out.stdout.is_empty(), "no empty table");
}

#[test]
fn a_missing_region_is_named_with_the_variable_that_sets_it() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenwatch"));
    cmd.args(["report", "--from-trail", "s3://bucket/prefix"]);
    no_aws(&mut cmd, home.path());
    cmd.env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE01")
        .env("AWS_SECRET_ACCESS_KEY", "x");
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no AWS region") && err.contains("AWS_REGION"),
        "{err}"
    );
}

#[test]
fn a_summary_of_what_was_read_ends_the_run_also_for_stdin() {
    // Every file of the sample, concatenated: the reader takes one value after another, gzip or not.
    let mut input = Vec::new();
    for entry in std::fs::read_dir(samples_dir().join("02-explicit-900s")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "expected.json" && !path.to_string_lossy().ends_with(".gz") {
            input.extend(std::fs::read(&path).unwrap());
            input.push(b'\n');
        }
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .args(["analyze", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(
        err.contains("tokenwatch: read ") && err.contains("expired-credential failures in 1 groups"),
        "{err}"
    );
    let quiet = run(&["analyze", "--quiet", &samples()], &[]);
    assert!(quiet.stderr.is_empty(), "{}", text(&quiet.stderr));
}
