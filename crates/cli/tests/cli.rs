//! Runs the built `tokenwatch` binary as a user would.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tokenwatch_testkit::{samples_dir, scenarios};

fn tokenwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .args(args)
        .output()
        .unwrap()
}

fn analyze_json(paths: &[&Path]) -> (Value, Output) {
    let mut args = vec!["analyze", "--format", "json"];
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let out = tokenwatch(&args);
    let report = tokenwatch_testkit::assert_valid_report_text(&String::from_utf8_lossy(&out.stdout));
    (report, out)
}

fn key(g: &Value) -> (String, String, String) {
    (
        g["account"].to_string(),
        g["principal"].to_string(),
        g["session"].to_string(),
    )
}

/// The acceptance check: each scenario yields exactly the groups its expected.json lists, with the
/// expected value for every field expected.json names.
#[test]
fn every_sample_yields_exactly_its_expected_findings() {
    let mut mismatches = Vec::new();
    for dir in scenarios() {
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        let (report, out) = analyze_json(&[&dir]);
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for field in ["records", "failures", "skipped_records"] {
            if report[field] != expected[field] {
                mismatches.push(format!(
                    "{name}: {field} is {} but expected {}",
                    report[field], expected[field]
                ));
            }
        }
        // Workloads, where the scenario lists them: each with the value of every field it names.
        for w in expected["workloads"].as_array().into_iter().flatten() {
            let found =
                report["workloads"].as_array().unwrap().iter().find(|g| {
                    g["principal"] == w["principal"] && g["session_pattern"] == w["session_pattern"]
                });
            let Some(g) = found else {
                mismatches.push(format!(
                    "{name}: no workload {} {}",
                    w["principal"], w["session_pattern"]
                ));
                continue;
            };
            for (field, value) in w.as_object().unwrap() {
                if &g[field] != value {
                    mismatches.push(format!(
                        "{name} workload: {field} is {} but expected {value}",
                        g[field]
                    ));
                }
            }
        }
        // Near misses: exactly those the scenario lists (none when it lists none), each with the value
        // of every field it names; their workloads as the failures' are.
        let none = Vec::new();
        let got_near = report["near_misses"]["groups"].as_array().unwrap_or(&none);
        let want_near = expected["near_misses"].as_array().unwrap_or(&none);
        let mut got_keys: Vec<_> = got_near.iter().map(key).collect();
        let mut want_keys: Vec<_> = want_near.iter().map(key).collect();
        got_keys.sort();
        want_keys.sort();
        if got_keys != want_keys {
            mismatches.push(format!(
                "{name}: near misses {got_keys:?} but expected {want_keys:?}"
            ));
        } else {
            for w in want_near {
                let g = got_near.iter().find(|g| key(g) == key(w)).unwrap();
                for (field, value) in w.as_object().unwrap() {
                    if &g[field] != value {
                        mismatches.push(format!(
                            "{name} near miss {:?}: {field} is {} but expected {value}",
                            key(w),
                            g[field]
                        ));
                    }
                }
            }
        }
        for w in expected["near_miss_workloads"].as_array().into_iter().flatten() {
            let found = report["near_misses"]["workloads"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|g| g["principal"] == w["principal"] && g["session_pattern"] == w["session_pattern"]);
            let Some(g) = found else {
                mismatches.push(format!(
                    "{name}: no near-miss workload {} {}",
                    w["principal"], w["session_pattern"]
                ));
                continue;
            };
            for (field, value) in w.as_object().unwrap() {
                if &g[field] != value {
                    mismatches.push(format!(
                        "{name} near-miss workload: {field} is {} but expected {value}",
                        g[field]
                    ));
                }
            }
        }
        let got = report["groups"].as_array().unwrap();
        let want = expected["groups"].as_array().unwrap();
        let mut got_keys: Vec<_> = got.iter().map(key).collect();
        let mut want_keys: Vec<_> = want.iter().map(key).collect();
        got_keys.sort();
        want_keys.sort();
        if got_keys != want_keys {
            mismatches.push(format!("{name}: groups {got_keys:?} but expected {want_keys:?}"));
            continue;
        }
        for w in want {
            let g = got.iter().find(|g| key(g) == key(w)).unwrap();
            for (field, value) in w.as_object().unwrap() {
                if &g[field] != value {
                    mismatches.push(format!(
                        "{name} {:?}: {field} is {} but expected {value}",
                        key(w),
                        g[field]
                    ));
                }
            }
        }
    }
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n"));
}

#[test]
fn look_alikes_produce_no_group() {
    let dir = scenarios()
        .into_iter()
        .find(|d| d.to_string_lossy().contains("look-alikes"))
        .unwrap();
    let (report, _) = analyze_json(&[&dir]);
    assert_eq!(report["failures"], 0);
    assert_eq!(report["groups"], Value::Array(vec![]));
    assert!(report["records"].as_u64().unwrap() > 0);
}

#[test]
fn all_samples_at_once_are_the_union_of_each() {
    let (all, out) = analyze_json(&[&samples_dir()]);
    assert!(out.status.success());
    let mut each_records = 0;
    let mut each_groups = 0;
    for dir in scenarios() {
        let (r, _) = analyze_json(&[&dir]);
        each_records += r["records"].as_u64().unwrap();
        each_groups += r["groups"].as_array().unwrap().len();
    }
    assert_eq!(all["records"].as_u64().unwrap(), each_records);
    assert_eq!(all["groups"].as_array().unwrap().len(), each_groups);
    let near = |r: &Value| r["near_misses"]["groups"].as_array().map_or(0, Vec::len);
    let each_near: usize = scenarios().iter().map(|d| near(&analyze_json(&[d]).0)).sum();
    assert_eq!(near(&all), each_near);
    assert_eq!(each_near, 7, "the near misses of samples/README.md");
}

/// Every field the contract (docs/contract.md) names is present in every group, `null` where unknown.
#[test]
fn report_groups_carry_every_spec_field() {
    let (report, _) = analyze_json(&[&samples_dir()]);
    let fields = [
        "account",
        "principal",
        "session",
        "access_key_ids",
        "failures",
        "first_failure",
        "last_failure",
        "issued_at",
        "lease_seconds",
        "lease_source",
        "age_at_first_failure_seconds",
        "verdict",
        "severity",
        "credential_source",
        "client",
        "error_codes",
        "event_names",
        "source_ips",
        "remediation",
    ];
    for g in report["groups"].as_array().unwrap() {
        for f in fields {
            assert!(g.get(f).is_some(), "{f} missing in {g}");
        }
    }
}

#[test]
fn table_shows_group_verdict_age_against_lease_client_and_fix() {
    let dir = scenarios().into_iter().next().unwrap();
    // A wide terminal: the fix in its own column.
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .args(["analyze", dir.to_str().unwrap()])
        .env("COLUMNS", "200")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let header = text.lines().next().unwrap();
    for col in [
        "GROUP",
        "VERDICT",
        "FAILURES",
        "AGE / LEASE",
        "SINCE",
        "CLIENT",
        "FIX",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(text.contains("stale-cache") && text.contains("1h"), "{text}");
    assert!(text.contains("expired-credential failures"), "{text}");
    // The default 100 columns: the fix on a line of its own under its group.
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .args(["analyze", dir.to_str().unwrap()])
        .env_remove("COLUMNS")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("\n  fix: Let botocore refresh the role\n"),
        "{text}"
    );
}

#[test]
fn markdown_has_a_section_per_group() {
    let (report, _) = analyze_json(&[&samples_dir()]);
    let out = tokenwatch(&["analyze", "--format", "markdown", samples_dir().to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("# tokenwatch report"));
    // A section per group, and one for the near misses when there are any.
    let near_misses = usize::from(report.get("near_misses").is_some());
    assert_eq!(
        text.matches("\n## ").count(),
        report["groups"].as_array().unwrap().len() + near_misses
    );
    assert_eq!(text.matches("\n## Near misses\n").count(), near_misses);
}

#[test]
fn a_corrupt_file_is_named_with_its_reason_and_the_rest_is_analysed() {
    let tmp = tempfile::tempdir().unwrap();
    let good = scenarios().into_iter().next().unwrap();
    for f in std::fs::read_dir(&good).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, tmp.path().join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(tmp.path().join("garbage.json"), b"\x00\x01 this is not json").unwrap();
    std::fs::write(
        tmp.path().join("truncated.json.gz"),
        &gzip(br#"{"Records":[{"eventTime":"2026"#)[..20],
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("cut.json"),
        br#"{"Records":[{"eventName":"a"},{"eventName"#,
    )
    .unwrap();
    let (report, out) = analyze_json(&[tmp.path()]);
    let (alone, _) = analyze_json(&[&good]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "partial results exit 2");
    for name in ["garbage.json", "truncated.json.gz", "cut.json"] {
        assert!(stderr.contains(name), "{name} not named in: {stderr}");
    }
    assert!(stderr.contains("not valid JSON"), "{stderr}");
    assert_eq!(
        report["groups"], alone["groups"],
        "the good file is analysed as if alone"
    );
    assert_eq!(
        report["records"].as_u64(),
        alone["records"].as_u64().map(|n| n + 1),
        "cut.json's whole record counts"
    );
}

#[test]
fn a_missing_path_is_reported_and_the_others_still_read() {
    let dir = scenarios().into_iter().next().unwrap();
    let (report, out) = analyze_json(&[Path::new("/nonexistent/trail.json"), &dir]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/trail.json"));
    assert!(!report["groups"].as_array().unwrap().is_empty());
}

#[test]
fn stdin_is_read_for_dash_gzip_included() {
    let dir = scenarios().into_iter().next().unwrap();
    let gz = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".gz"));
    let input = match gz {
        Some(p) => std::fs::read(p).unwrap(),
        None => {
            gzip(&std::fs::read(std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path()).unwrap())
        }
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .args(["analyze", "--format", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["records"].as_u64().unwrap() > 0);
}

#[test]
fn since_and_until_bound_the_failures_counted() {
    let (all, _) = analyze_json(&[&samples_dir()]);
    let out = tokenwatch(&[
        "analyze",
        "--format",
        "json",
        "--since",
        "2100-01-01",
        samples_dir().to_str().unwrap(),
    ]);
    let future: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(future["failures"], 0);
    assert_eq!(future["records"], all["records"], "records are still read");
    let out = tokenwatch(&[
        "analyze",
        "--format",
        "json",
        "--until",
        "2000-01-01T00:00:00Z",
        samples_dir().to_str().unwrap(),
    ]);
    let past: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(past["failures"], 0);
}

#[test]
fn a_bad_flag_value_is_a_clear_error() {
    let out = tokenwatch(&["analyze", "--since", "whenever", "."]);
    assert_eq!(out.status.code(), Some(64), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--since 'whenever'"), "{stderr}");
    let out = tokenwatch(&["analyze", "--format", "yaml", "."]);
    assert_eq!(
        out.status.code(),
        Some(64),
        "clap's usage error exits 64, not 2 (partial)"
    );
    let out = tokenwatch(&["analyze", "--since", "2026-11-03", "--until", "2026-11-02", "."]);
    assert_eq!(out.status.code(), Some(64));
    let out = tokenwatch(&["analyze"]);
    assert_eq!(out.status.code(), Some(64), "a missing argument");
    let out = tokenwatch(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "help is not an error");
}

/// The cool-down decides where a group's incidents split: sample 19's two failures 2 h apart are two
/// incidents at the default 1 h, one at `--cooldown 3h`.
#[test]
fn the_cooldown_flag_splits_incidents_and_rejects_a_bad_value() {
    let dir = samples_dir().join("19-stale-cache-quiet-for-an-hour");
    let incidents = |extra: &[&str]| {
        let mut args = vec!["analyze", "--format", "json"];
        args.extend(extra);
        let dir = dir.display().to_string();
        args.push(&dir);
        let out = tokenwatch(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report = tokenwatch_testkit::assert_valid_report_text(&String::from_utf8_lossy(&out.stdout));
        report["groups"][0]["incidents"].as_u64().unwrap()
    };
    assert_eq!(incidents(&[]), 2);
    assert_eq!(incidents(&["--cooldown", "1h"]), 2);
    assert_eq!(incidents(&["--cooldown", "3h"]), 1);
    assert_eq!(incidents(&["--cooldown", "10800"]), 1);
    for bad in ["soon", "0", "30s", "31d", "-1h", ""] {
        let flag = format!("--cooldown={bad}");
        let out = tokenwatch(&["analyze", &flag, dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(64), "--cooldown '{bad}' is a usage error");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--cooldown") && stderr.contains("at least 1m"),
            "{stderr}"
        );
    }
    let out = tokenwatch(&["explain", "--cooldown", "soon", "backup-1", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    // The state table's incidents were split by the detector: no --cooldown there.
    let out = tokenwatch(&["report", "--table", "t", "--cooldown", "2h"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("COOLDOWN"));
    let help = String::from_utf8_lossy(&tokenwatch(&["analyze", "--help"]).stdout).into_owned();
    assert!(help.contains("--cooldown <SPAN>"), "{help}");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    child.wait_with_output().unwrap().stdout
}

#[test]
fn drill_real_and_doctor_describe_themselves_with_an_example() {
    let flat = |out: &Output| {
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let drill = tokenwatch(&["drill", "--real", "--help"]);
    let text = flat(&drill);
    assert!(drill.status.success(), "{text}");
    for words in [
        "tokenwatch drill --real --stack tokenwatch --save ./drill",
        "--role-arn",
        "--services",
        "--no-wait",
        "--resume",
        "sts:AssumeRole",
        "3 --real: CloudTrail does not record",
    ] {
        assert!(
            text.contains(words),
            "drill --real --help lacks {words:?}:\n{text}"
        );
    }
    let doctor = tokenwatch(&["doctor", "--help"]);
    let text = flat(&doctor);
    assert!(doctor.status.success(), "{text}");
    for words in [
        "tokenwatch doctor --stack tokenwatch --regions",
        "TestEventPattern",
        "--format",
        "Exit status",
    ] {
        assert!(text.contains(words), "doctor --help lacks {words:?}:\n{text}");
    }
}

#[test]
fn drill_real_flags_need_real_and_a_role() {
    let out = tokenwatch(&["drill", "--stack", "tokenwatch"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--real"));
    let offline = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
            .args(args)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap()
    };
    let out = offline(&["drill", "--real"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--real needs --stack NAME (or --role-arn ARN)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = offline(&[
        "drill",
        "--real",
        "--role-arn",
        "arn:aws:iam::1:role/x",
        "--services",
        "s4",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown service 's4'"));
}

/// `n` expired-token failures of `n` sessions, as NDJSON.
fn distinct_groups(n: usize) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".ndjson").tempfile().unwrap();
    for i in 0..n {
        writeln!(
            file,
            r#"{{"eventTime":"2026-11-02T09:00:00Z","errorCode":"ExpiredToken","userIdentity":{{"arn":"arn:aws:sts::123456789012:assumed-role/etl/s{i}"}}}}"#
        )
        .unwrap();
    }
    file
}

fn analyze_with_many_groups_at(threshold: &str, path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .args(["analyze", "--quiet", "--format", "csv"])
        .arg(path)
        .env("TOKENWATCH_MANY_GROUPS", threshold)
        .output()
        .unwrap()
}

#[test]
fn a_run_holding_more_groups_than_the_threshold_warns_with_the_figure_even_when_quiet() {
    let file = distinct_groups(3);
    let out = analyze_with_many_groups_at("2", file.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("tokenwatch: warning: 3 groups held in memory")
            && stderr.contains("narrow the input with --since/--until"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "the warning alone, under --quiet: {stderr}"
    );
}

#[test]
fn a_run_holding_no_more_groups_than_the_threshold_does_not_warn() {
    let file = distinct_groups(3);
    let out = analyze_with_many_groups_at("3", file.path());
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let default = Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .args(["analyze", "--quiet", "--format", "csv"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&default.stderr),
        "",
        "3 of the default 100,000"
    );
}
