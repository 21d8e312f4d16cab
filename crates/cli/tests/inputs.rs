//! What `tokenwatch analyze` does with inputs a careless operator or an attacker gives it, run as a user
//! would: symlink loops, FIFOs, `--jobs` far beyond the machine, paths that hold no CloudTrail, an S3 URL,
//! and file names and event values made to drive or spoof a terminal.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokenwatch_testkit::scenarios;

/// Runs the binary, killing it (and failing) if it has not finished within `limit`.
fn tokenwatch_within(limit: Duration, args: &[&OsStr], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    // Drained as it runs: a report larger than a pipe's buffer must not stall it.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "tokenwatch {args:?} still running after {limit:?}; stderr so far: {}",
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn analyze(args: &[&Path]) -> Output {
    let mut all: Vec<&OsStr> = vec![OsStr::new("analyze")];
    all.extend(args.iter().map(|p| p.as_os_str()));
    tokenwatch_within(Duration::from_secs(60), &all, None)
}

fn analyze_json(paths: &[&Path]) -> (Value, String, Option<i32>) {
    let mut args: Vec<&Path> = vec![Path::new("--format"), Path::new("json")];
    args.extend(paths);
    let out = analyze(&args);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

/// A trail log file with one expired-token failure of its own group (role and session `n`).
fn failing_log_file(n: usize) -> String {
    failing_log_file_of(n, &format!("session-{n}"))
}

fn failing_log_file_of(n: usize, session: &str) -> String {
    serde_json::json!({"Records": [{
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": format!("AROAEXAMPLE{n}:{session}"),
            "arn": format!("arn:aws:sts::123456789012:assumed-role/role-{n}/{session}"),
            "accountId": "123456789012",
            "accessKeyId": format!("ASIAEXAMPLE{n:08}"),
        },
        "eventTime": "2026-11-02T09:00:20Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": "GetObject",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.9",
        "userAgent": "Boto3/1.34.0 md/Botocore#1.34.0",
        "errorCode": "ExpiredToken",
        "errorMessage": "The provided token has expired.",
        "eventID": format!("failure-{n}"),
        "eventType": "AwsApiCall",
        "recipientAccountId": "123456789012"
    }]})
    .to_string()
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// Nothing on stderr but whole `tokenwatch: ` lines: no terminal control, no bidi or zero-width
/// character, no line that an input began.
fn assert_clean_stderr(stderr: &[u8]) {
    let text = std::str::from_utf8(stderr).expect("stderr is UTF-8");
    for c in text.chars() {
        assert!(
            c == '\n' || !tokenwatch_render::text::is_unsafe(c),
            "{c:?} reached stderr: {text}"
        );
    }
    for line in text.lines() {
        assert!(
            line.starts_with("tokenwatch: "),
            "a line not of tokenwatch's: {line:?}"
        );
        assert!(
            !line.starts_with("tokenwatch: all good"),
            "a forged line: {line:?}"
        );
    }
}

#[test]
fn symlink_loops_fifos_and_jobs_100000_over_300_files_finish_at_once_with_every_finding() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for n in 0..300 {
        let dir = root.join(format!(
            "AWSLogs/123456789012/CloudTrail/us-east-1/day-{:02}",
            n % 10
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("file-{n:03}.json")), failing_log_file(n)).unwrap();
    }
    // Two links back to an ancestor in every day folder: followed naively, the walk is exponential.
    for day in 0..10 {
        let dir = root.join(format!("AWSLogs/123456789012/CloudTrail/us-east-1/day-{day:02}"));
        symlink("..", dir.join("up")).unwrap();
        symlink("../../../..", dir.join("top")).unwrap();
    }
    mkfifo(&root.join("AWSLogs/pipe.json"));
    mkfifo(&root.join("AWSLogs/fifo"));

    let started = Instant::now();
    let mut args: Vec<&Path> = vec![Path::new("--jobs"), Path::new("100000")];
    args.push(root);
    let (report, stderr, code) = analyze_json(&args);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["records"], 300);
    assert_eq!(report["failures"], 300);
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 300, "every file's finding");
    let mut sessions: Vec<&str> = groups.iter().map(|g| g["session"].as_str().unwrap()).collect();
    sessions.sort_unstable();
    sessions.dedup();
    assert_eq!(sessions.len(), 300);

    for skipped in ["AWSLogs/pipe.json", "AWSLogs/fifo", "day-00/up", "day-09/top"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(skipped) && l.contains("skipped")),
            "{skipped} not named: {stderr}"
        );
    }
    assert!(stderr.contains("a FIFO (named pipe)"), "{stderr}");
    assert!(stderr.contains("a link to a folder read already"), "{stderr}");
    assert!(
        stderr.contains("--jobs 100000: reading at most"),
        "the clamp is said: {stderr}"
    );
}

#[test]
fn jobs_far_beyond_the_cores_do_not_panic_and_zero_is_refused() {
    let dir = scenarios().into_iter().next().unwrap();
    let (report, stderr, code) = analyze_json(&[Path::new("--jobs"), Path::new("100000"), &dir]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!report["groups"].as_array().unwrap().is_empty());
    let out = analyze(&[Path::new("--jobs"), Path::new("0"), &dir]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--jobs"));
}

#[test]
fn a_fifo_named_on_the_command_line_is_read_as_a_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("trail");
    mkfifo(&fifo);
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, failing_log_file(7)).unwrap())
    };
    let (report, stderr, code) = analyze_json(&[&fifo]);
    writer.join().unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["failures"], 1);
}

#[test]
fn paths_holding_no_cloudtrail_are_named_with_what_they_were_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let random = tmp.path().join("package.json");
    std::fs::write(&random, r#"{"name": "left-pad", "version": "1.3.0"}"#).unwrap();
    let csv = tmp.path().join("billing.csv");
    std::fs::write(&csv, "account,cost\n123456789012,42\n").unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let wrong = tmp.path().join("wrong");
    std::fs::create_dir(&wrong).unwrap();
    std::fs::write(wrong.join("notes.txt"), "hello").unwrap();
    let good = scenarios().into_iter().next().unwrap();
    let (alone, _, _) = analyze_json(&[&good]);

    for (path, what) in [
        (
            &random,
            "not CloudTrail: a JSON object without Records or eventTime",
        ),
        (&csv, "not CloudTrail: a CSV file"),
        (&empty, "not CloudTrail: an empty folder"),
        (
            &wrong,
            "not CloudTrail: no .json, .gz, .ndjson or .jsonl files in the folder",
        ),
    ] {
        // Alone: "0 failures" would be a lie; with a good input: the report is the good input's alone.
        for paths in [vec![path.as_path()], vec![path.as_path(), good.as_path()]] {
            let (report, stderr, code) = analyze_json(&paths);
            assert_eq!(code, Some(2), "{path:?}: {stderr}");
            let named = format!("tokenwatch: {}: {what}", path.display());
            assert!(stderr.contains(&named), "want {named:?} in: {stderr}");
            if paths.len() == 2 {
                assert_eq!(report["records"], alone["records"], "{path:?} counts nothing");
                assert_eq!(report["groups"], alone["groups"]);
            }
        }
    }
}

#[test]
fn empty_log_files_lookups_and_streams_are_not_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, body) in [
        ("trail.json", r#"{"Records":[]}"#),
        ("lookup.json", r#"{"Events": []}"#),
        ("matched-nothing.ndjson", ""),
    ] {
        std::fs::write(tmp.path().join(name), body).unwrap();
    }
    let (report, stderr, code) = analyze_json(&[tmp.path()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["records"], 0);
}

#[test]
fn an_s3_url_is_a_usage_error_that_points_at_report_from_trail() {
    let out = analyze(&[Path::new("s3://my-trail-bucket/org"), Path::new(".")]);
    assert_eq!(out.status.code(), Some(64));
    assert!(out.stdout.is_empty(), "no report at all");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("use `tokenwatch report --from-trail s3://my-trail-bucket/org`"),
        "{stderr}"
    );
}

/// File names built to drive a terminal or forge tokenwatch's own lines.
fn hostile_names() -> Vec<PathBuf> {
    [
        &b"esc-\x1b[2J\x1b]0;owned\x07-clear.json"[..],
        b"bel-\x07\x07.json",
        "c1-\u{9b}31m-csi.json".as_bytes(),
        b"raw-c1-\x9b31m.json",
        "bidi-\u{202e}nosj.txt".as_bytes(),
        "zw-ad\u{200b}min\u{2066}.json".as_bytes(),
        b"x\ntokenwatch: all good, 0 failures\n.json",
        b"cr-\rtokenwatch: all good.json",
    ]
    .iter()
    .map(|b| PathBuf::from(OsStr::from_bytes(b)))
    .collect()
}

#[test]
fn hostile_file_names_cannot_inject_anything_into_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut named = Vec::new();
    for (i, name) in hostile_names().into_iter().enumerate() {
        let sub = root.join(format!("d{i}"));
        std::fs::create_dir(&sub).unwrap();
        // Each name as an unreadable file, a FIFO, a loop and a broken link: every message that names
        // a path.
        std::fs::write(sub.join(&name), "\u{1b}[31mnot json\u{202e}").unwrap();
        mkfifo(&sub.join(format!("{}.fifo", name.display())));
        symlink("..", sub.join(&name).with_extension("loop")).unwrap();
        symlink("nowhere", sub.join(&name).with_extension("json.gz")).unwrap();
        named.push(sub.join(&name));
    }
    let mut args: Vec<&Path> = vec![root];
    args.extend(named.iter().map(PathBuf::as_path));
    let out = analyze(&args);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\\u{1b}[2J"), "the escape is shown: {stderr}");
    assert!(stderr.contains("\\ntokenwatch: all good"), "{stderr}");
    assert!(stderr.contains("\\u{202e}"), "{stderr}");
    assert_clean_stderr(&out.stderr);
}

#[test]
fn event_values_reach_table_markdown_and_csv_as_escapes_only() {
    let session = "ad\u{200b}min\u{202e}\u{1b}[2J\u{7}\u{9b}0m\ntokenwatch: all good";
    let record = failing_log_file_of(1, session);
    for format in ["table", "markdown", "csv"] {
        let out = tokenwatch_within(
            Duration::from_secs(30),
            &[
                OsStr::new("analyze"),
                OsStr::new("--format"),
                OsStr::new(format),
                OsStr::new("-"),
            ],
            Some(record.as_bytes()),
        );
        assert!(out.status.success(), "{format}");
        let text = String::from_utf8(out.stdout).unwrap();
        // Line ends are the renderer's own (CSV's CR LF included).
        let leaked: Vec<char> = text
            .replace("\r\n", "\n")
            .chars()
            .filter(|c| tokenwatch_render::text::is_unsafe(*c) && *c != '\n')
            .collect();
        assert!(leaked.is_empty(), "{format}: {leaked:?} in {text}");
        // CSV keeps a value's line breaks inside its quoted field (RFC 4180): one header, one record.
        if format == "csv" {
            assert_eq!(text.matches("\r\n").count(), 2, "{text}");
        } else {
            assert!(
                !text.lines().any(|l| l.starts_with("tokenwatch: all good")),
                "{format}: {text}"
            );
        }
        assert!(text.contains("\\u{202e}"), "{format} shows the override: {text}");
    }
}
