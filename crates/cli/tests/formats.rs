//! `tokenwatch analyze --format csv|html`, run as a user would: the built binary over the samples and over
//! hostile records on stdin.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tokenwatch_testkit::samples_dir;

fn tokenwatch(args: &[&str], stdin: Option<&str>) -> Output {
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
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "tokenwatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn analyze(format: &str, path: &Path) -> String {
    let path = path.display().to_string();
    String::from_utf8(tokenwatch(&["analyze", "--format", format, &path], None).stdout).unwrap()
}

fn groups(path: &Path) -> Vec<Value> {
    let report: Value = serde_json::from_str(&analyze("json", path)).unwrap();
    report["groups"].as_array().unwrap().clone()
}

/// RFC 4180 read back: quoted fields may hold commas, doubled quotes and line breaks; records end in CRLF.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => {
                assert!(c != '\r' && c != '\n', "a bare line break outside quotes");
                field.push(c);
            }
        }
    }
    assert!(
        !quoted && field.is_empty() && row.is_empty(),
        "the last record must end with CRLF"
    );
    rows
}

const COLUMNS: [&str; 20] = [
    "account",
    "principal",
    "session",
    "verdict",
    "severity",
    "failures",
    "first_failure",
    "last_failure",
    "issued_at",
    "lease_seconds",
    "lease_source",
    "age_at_first_failure_seconds",
    "credential_source",
    "client",
    "error_codes",
    "remediation",
    "incident_state",
    "resolved_at",
    "time_to_recover_seconds",
    "next_expected_failure",
];

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn csv_has_a_header_and_a_row_per_group_that_parse_back_to_the_json_report() {
    let groups = groups(&samples_dir());
    let report: Value = serde_json::from_str(&analyze("json", &samples_dir())).unwrap();
    let near_misses = report["near_misses"]["groups"].as_array().unwrap();
    let rows = parse_csv(&analyze("csv", &samples_dir()));
    assert_eq!(groups.len(), 71);
    // A row per group, then one per near-miss group.
    assert_eq!(rows.len(), 1 + groups.len() + near_misses.len());
    assert_eq!(rows[0], COLUMNS);
    for (row, g) in rows[1 + groups.len()..].iter().zip(near_misses) {
        let cell = |c: &str| row[COLUMNS.iter().position(|x| *x == c).unwrap()].clone();
        for c in [
            "account",
            "principal",
            "session",
            "verdict",
            "severity",
            "issued_at",
        ] {
            assert_eq!(cell(c), text(&g[c]), "{c} of near miss {}", g["session"]);
        }
        for c in ["lease_seconds", "lease_source", "credential_source", "client"] {
            assert_eq!(cell(c), text(&g[c]), "{c} of near miss {}", g["session"]);
        }
        assert_eq!(cell("failures"), "0");
        assert_eq!(cell("first_failure"), "");
        let how_close = text(&g["how_close"]);
        assert!(cell("remediation").starts_with(&how_close), "{row:?}");
    }
    for (row, g) in rows[1..].iter().zip(&groups) {
        assert_eq!(row.len(), COLUMNS.len(), "{row:?}");
        for (column, cell) in COLUMNS.iter().zip(row) {
            let want = match *column {
                "error_codes" => g["error_codes"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(code, n)| format!("{code}={n}"))
                    .collect::<Vec<_>>()
                    .join(";"),
                c => text(&g[c]),
            };
            assert_eq!(*cell, want, "{column} of {}", g["session"]);
        }
    }
}

/// A failing call whose session name and other event fields are chosen by an attacker.
fn hostile_record(session: &str, event_name: &str, ip: &str) -> String {
    serde_json::json!({
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": format!("AROAHOSTILE1EXAMPLE:{session}"),
            "arn": format!("arn:aws:sts::123456789012:assumed-role/R&D-role/{session}"),
            "accountId": "123456789012",
            "accessKeyId": "ASIAHOSTILE1EXAMPLE",
            "sessionContext": {
                "attributes": {"creationDate": "2026-11-02T08:00:00Z", "mfaAuthenticated": "false"},
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": "AROAHOSTILE1EXAMPLE",
                    "arn": "arn:aws:iam::123456789012:role/R&D-role",
                    "accountId": "123456789012",
                    "userName": "R&D-role"
                }
            }
        },
        "eventTime": "2026-11-02T09:00:20Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": ip,
        "userAgent": "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux lang/python#3.11",
        "errorCode": "ExpiredToken",
        "errorMessage": "The provided token has expired.",
        "eventID": format!("hostile-{session}"),
        "eventType": "AwsApiCall",
        "recipientAccountId": "123456789012"
    })
    .to_string()
}

#[test]
fn csv_cells_from_events_are_quoted_and_cannot_become_formulas() {
    let input = hostile_record("=1+2,\"3\"", "GetObject", "203.0.113.9") + "\n";
    let out = tokenwatch(&["analyze", "--format", "csv", "-"], Some(&input));
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.contains(",\"'=1+2,\"\"3\"\"\","), "{csv}");
    let rows = parse_csv(&csv);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][2], "'=1+2,\"3\"");
    assert_eq!(rows[1][1], "arn:aws:iam::123456789012:role/R&D-role");
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `Group::label`: the principal's last path segment and the session name.
fn label(g: &Value) -> String {
    let principal = g["principal"]
        .as_str()
        .map(|p| p.rsplit(['/', ':']).next().unwrap_or(p));
    match (principal, g["session"].as_str()) {
        (Some(p), Some(s)) => format!("{p}/{s}"),
        (Some(p), None) => p.to_owned(),
        (None, Some(s)) => format!("?/{s}"),
        (None, None) => "(unknown principal)".to_owned(),
    }
}

#[test]
fn html_over_the_samples_shows_every_group() {
    let groups = groups(&samples_dir());
    let html = analyze("html", &samples_dir());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    for g in &groups {
        let label = escape(&label(g));
        assert!(html.contains(&format!(">{label}</a>")), "{label} in the table");
        assert!(
            html.contains(&format!("<h3>{label}</h3>")),
            "{label} has a section"
        );
        for field in ["principal", "session"] {
            if let Some(v) = g[field].as_str() {
                assert!(html.contains(&escape(v)), "{field} {v}");
            }
        }
        // The remediation, its backticked commands and settings shown as code.
        let remediation: String = g["remediation"]
            .as_str()
            .unwrap()
            .split('`')
            .enumerate()
            .map(|(i, part)| match i % 2 {
                1 => format!("<code>{}</code>", escape(part)),
                _ => escape(part),
            })
            .collect();
        assert!(html.contains(&remediation), "{remediation}");
    }
    assert_eq!(html.matches("<svg class=\"timeline\"").count(), groups.len());
    // Ages: 63 stale caches (50 of them the two fleets') and 2 refresh races at the lease end, a paused
    // laptop past 200 %, two clock skews at 15-17 %: three bars, drawn twice, for a desktop window and for
    // a phone.
    assert_eq!(html.matches("<g class=\"hist-bar").count(), 6);
    assert_eq!(
        html.matches("<g class=\"hist-bar at-lease\" data-count=\"65\"")
            .count(),
        2
    );
}

#[test]
fn html_escapes_hostile_event_values() {
    let input = hostile_record(
        "\"><script>alert(1)</script>",
        "<img src=x onerror=alert(2)>",
        "<b>203.0.113.9</b>",
    );
    let html =
        String::from_utf8(tokenwatch(&["analyze", "--format", "html", "-"], Some(&input)).stdout).unwrap();
    for raw in ["<script", "<img", "<b>203"] {
        assert!(!html.contains(raw), "{raw} got through");
    }
    assert!(html.contains("R&amp;D-role/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("s3:&lt;img src=x onerror=alert(2)&gt;"));
    assert!(html.contains("&lt;b&gt;203.0.113.9&lt;/b&gt;"));
}

#[test]
fn an_empty_input_gives_a_header_only_csv_and_a_whole_html_page() {
    let csv = String::from_utf8(tokenwatch(&["analyze", "--format", "csv", "-"], Some("")).stdout).unwrap();
    assert_eq!(csv, COLUMNS.join(",") + "\r\n");
    let html = String::from_utf8(tokenwatch(&["analyze", "--format", "html", "-"], Some("")).stdout).unwrap();
    assert!(html.contains("No expired-credential failures were found."));
    assert!(html.trim_end().ends_with("</html>"));
}
