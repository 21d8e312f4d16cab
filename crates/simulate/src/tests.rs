//! Corpus-level tests: layout, determinism, record shape, and an independent re-derivation of the
//! expected groups from the written files with the rules of docs/rules.md.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use serde_json::Value;

use crate::time::days_from_civil;
use crate::{Error, ExpectedGroup, Options, Summary, write_corpus};

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path)
            } else {
                out.push(path)
            }
        }
    }
    out.sort();
    out
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut json = Vec::new();
    GzDecoder::new(fs::File::open(path).unwrap())
        .read_to_end(&mut json)
        .unwrap();
    json
}

fn records_of(path: &Path) -> Vec<Value> {
    let doc: Value = serde_json::from_slice(&gunzip(path)).unwrap();
    let obj = doc.as_object().unwrap();
    assert_eq!(obj.len(), 1, "{} has keys besides Records", path.display());
    obj["Records"].as_array().unwrap().clone()
}

fn generate(records: u64, per_file: usize, seed: u64) -> (tempfile::TempDir, Summary) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        records,
        records_per_file: per_file,
        seed,
        ..Options::default()
    };
    let summary = write_corpus(dir.path(), &opts).unwrap();
    (dir, summary)
}

fn is_failure(r: &Value) -> bool {
    let code = r["errorCode"].as_str().unwrap_or("");
    let message = r["errorMessage"].as_str().unwrap_or("").to_ascii_lowercase();
    matches!(code, "ExpiredToken" | "ExpiredTokenException" | "RequestExpired")
        || code.ends_with("ExpiredToken")
        || code.ends_with("ExpiredTokenException")
        || message.contains("security token included in the request is expired")
        || message.contains("provided token has expired")
}

fn epoch(iso: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| iso[r].parse::<i64>().unwrap();
    days_from_civil(n(0..4), n(5..7), n(8..10)) * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

/// Parses `Nov 2, 2026, 9:00:00 AM`.
fn expiration(s: &str) -> i64 {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = s.split([' ', ',', ':']).filter(|p| !p.is_empty()).collect();
    let month = MONTHS.iter().position(|m| *m == parts[0]).unwrap() as i64 + 1;
    let (day, year): (i64, i64) = (parts[1].parse().unwrap(), parts[2].parse().unwrap());
    let mut hour: i64 = parts[3].parse().unwrap();
    hour = match (hour, parts[6]) {
        (12, "AM") => 0,
        (h, "PM") if h < 12 => h + 12,
        (h, _) => h,
    };
    days_from_civil(year, month, day) * 86_400
        + hour * 3600
        + parts[4].parse::<i64>().unwrap() * 60
        + parts[5].parse::<i64>().unwrap()
}

#[test]
fn same_seed_gives_same_bytes_and_another_seed_does_not() {
    let (a, sa) = generate(4_000, 1_000, 7);
    let (b, sb) = generate(4_000, 1_000, 7);
    let (c, _) = generate(4_000, 1_000, 8);
    assert_eq!(sa, sb);
    let (fa, fb) = (files_under(a.path()), files_under(b.path()));
    let names = |fs: &[PathBuf], root: &Path| -> Vec<PathBuf> {
        fs.iter()
            .map(|f| f.strip_prefix(root).unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&fa, a.path()), names(&fb, b.path()));
    for (x, y) in fa.iter().zip(&fb) {
        assert!(
            fs::read(x).unwrap() == fs::read(y).unwrap(),
            "{} differs between runs",
            x.display()
        );
    }
    let fc = files_under(c.path());
    assert_ne!(fs::read(&fa[0]).unwrap(), fs::read(&fc[0]).unwrap());
}

#[test]
fn files_follow_the_trail_layout_and_hold_every_record_once() {
    let (dir, summary) = generate(10_500, 2_000, 1);
    let files = files_under(dir.path());
    assert_eq!(files.len(), 6);
    assert_eq!(summary.files, 6);
    let (mut total, mut json_bytes, mut gzip_bytes) = (0, 0, 0);
    let mut counts = Vec::new();
    let mut event_ids = HashSet::new();
    for file in &files {
        let rel = file
            .strip_prefix(dir.path())
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(
            parts[..4],
            ["AWSLogs", "123456789012", "CloudTrail", "us-east-1"],
            "{rel}"
        );
        let (y, m, d) = (parts[4], parts[5], parts[6]);
        let name = parts[7];
        let prefix = format!("123456789012_CloudTrail_us-east-1_{y}{m}{d}T");
        assert!(name.starts_with(&prefix) && name.ends_with(".json.gz"), "{name}");
        let tail = &name[prefix.len()..name.len() - ".json.gz".len()];
        let (hhmm, random) = tail.split_once("Z_").unwrap();
        assert!(
            hhmm.len() == 4 && hhmm.bytes().all(|b| b.is_ascii_digit()),
            "{name}"
        );
        assert!(
            random.len() == 16 && random.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{name}"
        );

        json_bytes += gunzip(file).len() as u64;
        gzip_bytes += fs::metadata(file).unwrap().len();
        let records = records_of(file);
        let times: Vec<&str> = records.iter().map(|r| r["eventTime"].as_str().unwrap()).collect();
        assert!(
            times.windows(2).any(|w| w[0] > w[1]),
            "records of {name} are sorted by eventTime"
        );
        for r in &records {
            assert!(r["eventTime"].is_string() && r["userIdentity"].is_object(), "{r}");
            let id = r["eventID"].as_str().unwrap();
            assert_eq!(id.len(), 36);
            assert!(event_ids.insert(id.to_owned()), "eventID {id} repeats");
            assert_eq!(r["recipientAccountId"], "123456789012");
            assert_eq!(r["eventType"], "AwsApiCall");
        }
        counts.push(records.len());
        total += records.len() as u64;
    }
    counts.sort_unstable();
    assert_eq!(counts, [500, 2000, 2000, 2000, 2000, 2000]);
    assert_eq!(total, 10_500);
    assert_eq!(
        (summary.records, summary.json_bytes, summary.gzip_bytes),
        (10_500, json_bytes, gzip_bytes)
    );
    let per_record = json_bytes / total;
    assert!(
        (1100..=1900).contains(&per_record),
        "{per_record} bytes per record"
    );
}

#[test]
fn tiny_and_empty_corpora_are_well_formed() {
    let (dir, summary) = generate(7, 3, 3);
    let files = files_under(dir.path());
    let lens: Vec<usize> = files.iter().map(|f| records_of(f).len()).collect();
    assert_eq!(lens.iter().sum::<usize>(), 7);
    assert_eq!((summary.files, summary.failures, summary.groups.len()), (3, 0, 0));
    let (dir, summary) = generate(0, 10, 3);
    assert!(files_under(dir.path()).is_empty());
    assert_eq!(summary.records, 0);
}

#[test]
fn an_unwritable_directory_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    fs::write(&blocker, b"x").unwrap();
    let target = blocker.join("corpus");
    let err = write_corpus(
        &target,
        &Options {
            records: 10,
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::CreateDir { path, .. } if *path == target),
        "{err:?}"
    );
    assert!(err.to_string().contains(&target.display().to_string()), "{err}");
}

#[test]
fn bad_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for opts in [
        Options {
            records_per_file: 0,
            ..Options::default()
        },
        Options {
            account: "12/34".into(),
            ..Options::default()
        },
        Options {
            region: "US EAST".into(),
            ..Options::default()
        },
    ] {
        assert!(matches!(
            write_corpus(dir.path(), &opts),
            Err(Error::InvalidOption { .. })
        ));
    }
}

/// What a group looks like when re-derived from the files alone.
#[derive(Debug, Default)]
struct Observed {
    failures: HashSet<String>,
    first: (i64, String, i64, bool),
    last: i64,
    codes: BTreeMap<String, u64>,
    agents: Vec<String>,
}

struct Issuance {
    at: i64,
    lease: (u64, &'static str),
    chained: bool,
    principal: String,
    session: String,
}

fn client_of(agent: &str) -> &'static str {
    let a = agent
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let table = [
        ("terraform/", "terraform"),
        ("aws-cli/2", "aws-cli-v2"),
        ("aws-cli/1", "aws-cli-v1"),
        ("boto3/", "boto3"),
        ("botocore/", "botocore"),
        ("aws-sdk-java/2", "java-v2"),
        ("aws-sdk-go-v2", "go-v2"),
        ("aws-sdk-js/3", "js-v3"),
        ("aws-sdk-rust", "rust"),
    ];
    table
        .iter()
        .find(|(p, _)| a.contains(p))
        .map_or("none", |(_, c)| c)
}

/// Re-derives every group from the files, with docs/rules.md, and compares it with the summary.
fn check_against_rules(dir: &Path, summary: &Summary) {
    let mut groups: HashMap<(String, String), Observed> = HashMap::new();
    let mut issuances: HashMap<String, Issuance> = HashMap::new();
    let mut failure_ids = HashSet::new();
    for file in files_under(dir) {
        for r in records_of(&file) {
            let t = epoch(r["eventTime"].as_str().unwrap());
            if r["eventSource"] == "sts.amazonaws.com"
                && r["eventName"] == "AssumeRole"
                && r["errorCode"].is_null()
            {
                let creds = &r["responseElements"]["credentials"];
                let key = creds["accessKeyId"].as_str().unwrap().to_owned();
                let lease = match r["requestParameters"]["durationSeconds"].as_u64() {
                    Some(d) => (d, "duration-seconds"),
                    None => {
                        let d = expiration(creds["expiration"].as_str().unwrap()) - t;
                        let m = (d + 30).div_euclid(60) * 60;
                        ((if (d - m).abs() <= 5 { m } else { d }) as u64, "expiration")
                    }
                };
                let issuance = Issuance {
                    at: t,
                    lease,
                    chained: r["userIdentity"]["type"] == "AssumedRole",
                    principal: r["requestParameters"]["roleArn"].as_str().unwrap().to_owned(),
                    session: r["requestParameters"]["roleSessionName"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                };
                assert!(issuances.insert(key, issuance).is_none(), "a key is issued twice");
            }
            if !is_failure(&r) {
                continue;
            }
            let id = &r["userIdentity"];
            assert_eq!(id["type"], "AssumedRole", "{r}");
            let principal = id["sessionContext"]["sessionIssuer"]["arn"]
                .as_str()
                .unwrap()
                .to_owned();
            let session = id["principalId"]
                .as_str()
                .unwrap()
                .split_once(':')
                .unwrap()
                .1
                .to_owned();
            let created = epoch(
                id["sessionContext"]["attributes"]["creationDate"]
                    .as_str()
                    .unwrap(),
            );
            let key = id["accessKeyId"].as_str().unwrap().to_owned();
            let ec2 = id["sessionContext"]["ec2RoleDelivery"].is_string();
            let event_id = r["eventID"].as_str().unwrap().to_owned();
            assert!(failure_ids.insert(event_id.clone()));
            let g = groups.entry((principal, session)).or_default();
            if g.failures.is_empty() || t < g.first.0 {
                g.first = (t, key, created, ec2);
            }
            g.last = g.last.max(t);
            g.failures.insert(event_id);
            *g.codes
                .entry(r["errorCode"].as_str().unwrap().to_owned())
                .or_default() += 1;
            g.agents.push(r["userAgent"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(failure_ids.len() as u64, summary.failures);
    assert_eq!(groups.len(), summary.groups.len());
    for want in &summary.groups {
        let got = groups
            .get(&(want.principal.clone(), want.session.clone()))
            .unwrap_or_else(|| panic!("no failures found for {} / {}", want.principal, want.session));
        let (first, key, issued_at, ec2) = &got.first;
        let issuance = &issuances[key];
        let (lease, lease_source) = match issuance.lease {
            (d, "duration-seconds") if issuance.chained => (d.min(3600), "duration-seconds"),
            other => other,
        };
        let age = first - issued_at;
        let newer = issuances.values().any(|i| {
            i.principal == want.principal
                && i.session == want.session
                && i.at > *issued_at
                && (i.at - first).abs() <= 300
        });
        let verdict = crate::incident::verdict(age, lease as i64, got.last - issued_at, newer);
        let instance = want.session.starts_with("i-")
            && (9..=19).contains(&want.session.len())
            && want.session[2..].bytes().all(|b| b.is_ascii_hexdigit());
        let source = if instance || *ec2 {
            "instance-profile"
        } else if issuance.chained {
            "role-chaining"
        } else {
            "assume-role"
        };
        let codes: Vec<(String, u64)> = got.codes.iter().map(|(c, n)| (c.clone(), *n)).collect();
        let want_codes: Vec<(String, u64)> =
            want.error_codes.iter().map(|&(c, n)| (c.to_owned(), n)).collect();
        assert_eq!(issuance.at, *issued_at, "creationDate is the issuance time");
        assert_eq!(got.failures.len() as u64, want.failures, "{want:?}");
        assert_eq!(
            (lease, lease_source),
            (want.lease_seconds, want.lease_source),
            "{want:?}"
        );
        assert_eq!(age, want.age_at_first_failure_seconds, "{want:?}");
        assert_eq!(verdict, want.verdict, "{want:?}");
        assert_eq!(source, want.credential_source, "{want:?}");
        assert_eq!(codes, want_codes, "{want:?}");
        assert_eq!(key, &want.access_key_id);
        assert!(got.agents.iter().all(|a| client_of(a) == want.client), "{want:?}");
        assert_eq!(crate::time::iso(*first), want.first_failure);
        assert_eq!(crate::time::iso(got.last), want.last_failure);
    }
}

#[test]
fn the_files_yield_exactly_the_expected_groups() {
    let (dir, summary) = generate(10_000, 2_000, 42);
    let verdicts: Vec<&str> = summary.groups.iter().map(|g| g.verdict).collect();
    assert_eq!(
        verdicts,
        ["stale-cache", "refresh-race", "paused-process", "clock-skew"]
    );
    assert!(summary.look_alikes > 0);
    check_against_rules(dir.path(), &summary);
}

#[test]
fn larger_corpora_cover_every_incident_shape() {
    // 12 incidents: every stale-cache variant, chained and plain refresh-race, and the other verdicts.
    let (dir, summary) = generate(60_000, 2_000, 5);
    assert_eq!(summary.groups.len(), 12);
    check_against_rules(dir.path(), &summary);
    let has = |f: &dyn Fn(&ExpectedGroup) -> bool| summary.groups.iter().any(f);
    for verdict in ["stale-cache", "refresh-race", "paused-process", "clock-skew"] {
        assert!(has(&|g| g.verdict == verdict), "{verdict}");
    }
    for source in ["assume-role", "role-chaining", "instance-profile"] {
        assert!(has(&|g| g.credential_source == source), "{source}");
    }
    for lease in ["expiration", "duration-seconds"] {
        assert!(has(&|g| g.lease_source == lease), "{lease}");
    }
    let principals: HashSet<&str> = summary.groups.iter().map(|g| g.principal.as_str()).collect();
    assert_eq!(
        principals.len(),
        summary.groups.len(),
        "incidents share a principal"
    );
    // Incidents are spread over the corpus, not bunched at its start.
    let issued: Vec<i64> = summary.groups.iter().map(|g| epoch(&g.issued_at)).collect();
    let start = crate::DEFAULT_START_EPOCH;
    let span = 60_000 / 400 * 60;
    assert!(issued.iter().any(|&t| t > start + span / 2), "{issued:?}");
}

#[test]
fn summary_json_uses_report_field_names() {
    let (_dir, summary) = generate(4_000, 2_000, 9);
    let json = summary.to_json();
    let group = &json["groups"][0];
    for field in [
        "account",
        "principal",
        "session",
        "verdict",
        "severity",
        "lease_seconds",
        "issued_at",
    ] {
        assert!(!group[field].is_null(), "{field}");
    }
    assert_eq!(json["records"], 4_000);
}
