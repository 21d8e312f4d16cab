//! The detector pipeline end to end, over any state store and alert sink: every sample fed as
//! EventBridge events pages exactly what its expected.json implies; a storm is one page with an exact
//! count; hostile values give well-formed alerts with no secret in them. `memory` runs these against the
//! in-memory twins; `emulated.rs` runs them against DynamoDB, SNS and SQS in moto and ministack.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::{Value, json};
use tokenwatch_core::Severity;
use tokenwatch_core::events::eventbridge_events;
use tokenwatch_core::fleet::fleet_of;
use tokenwatch_core::incident::Policy;
use tokenwatch_core::pipeline::Detector;
use tokenwatch_core::ports::{AlertSink, StateStore};
use tokenwatch_core::reader::decompressing;
use tokenwatch_core::stats::group_key;
use tokenwatch_core::time::{Epoch, parse_time};
use tokenwatch_core::workload::session_pattern;
use tokenwatch_render::sns::{Message as Alert, Style};
use tokenwatch_testkit::{inputs, scenarios};

/// A scenario's records as EventBridge events, in time order (as EventBridge would deliver them).
pub fn scenario_events(dir: &Path) -> Vec<Value> {
    let mut events = Vec::new();
    for path in inputs(dir) {
        let mut bytes = Vec::new();
        decompressing(std::fs::File::open(&path).unwrap())
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        events.extend(eventbridge_events(&bytes).unwrap());
    }
    events.sort_by_key(event_time);
    events
}

pub fn event_time(e: &Value) -> Epoch {
    e["detail"]["eventTime"]
        .as_str()
        .and_then(parse_time)
        .unwrap_or_default()
}

/// The groups a scenario must page: each expected group whose paging severity (its `paging_severity`
/// where the scenario names it, else its severity) is at the default floor, unless it is a refresh race.
pub fn expected_pages(dir: &Path) -> Vec<Value> {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    expected["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| {
            let paging = g.get("paging_severity").unwrap_or(&g["severity"]);
            let severity: Severity = paging.as_str().unwrap().parse().unwrap();
            g["verdict"] != "refresh-race" && severity >= Policy::default().min_severity
        })
        .cloned()
        .collect()
}

/// A scenario's `pages`, where it lists them: every page (open and escalation), in order, as
/// (kind, verdict, severity, client).
pub fn listed_pages(dir: &Path) -> Option<Vec<[String; 4]>> {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let text = |v: &Value| v.as_str().unwrap_or("null").to_owned();
    expected.get("pages")?.as_array().map(|pages| {
        pages
            .iter()
            .map(|p| {
                [
                    text(&p["kind"]),
                    text(&p["verdict"]),
                    text(&p["severity"]),
                    text(&p["client"]),
                ]
            })
            .collect()
    })
}

/// The `sqs` document of each alert.
pub fn documents(alerts: &[Alert]) -> Vec<Value> {
    alerts
        .iter()
        .map(|a| {
            let m: Value = serde_json::from_str(&a.message).unwrap();
            serde_json::from_str(m["sqs"].as_str().unwrap()).unwrap()
        })
        .collect()
}

/// Feeds a scenario as EventBridge would (in time order, each a minute after it happened), then sweeps
/// once the refresh window has passed.
pub async fn feed_scenario<S: StateStore, A: AlertSink>(detector: &Detector<'_, S, A>, dir: &Path) {
    let events = scenario_events(dir);
    let last = events.iter().map(event_time).max().unwrap_or_default();
    for chunk in events.chunks(3) {
        let bytes: Vec<Vec<u8>> = chunk.iter().map(|e| e.to_string().into_bytes()).collect();
        let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
        let now = chunk.iter().map(event_time).max().unwrap_or_default() + 60;
        let out = detector.process(&refs, now).await;
        assert!(
            out.retry.is_empty() && out.unreadable.is_empty(),
            "{}: {out:?}",
            dir.display()
        );
    }
    // Past every hold: the refresh window and the delivery allowance.
    detector.sweep(last + 700).await.unwrap();
}

/// Checks the alerts against the scenario's expected pages: the pages it lists, in order, when it lists
/// them; and one first page per group that pages (per fleet, for a fleet's groups), with its facts.
pub fn check_pages(dir: &Path, alerts: &[Alert]) -> Vec<String> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let docs = documents(alerts);
    let mut problems = Vec::new();
    if let Some(listed) = listed_pages(dir) {
        let text = |v: &Value| v.as_str().unwrap_or("null").to_owned();
        let got: Vec<[String; 4]> = docs
            .iter()
            .filter(|d| d["kind"] != "resolved")
            .map(|d| {
                [
                    text(&d["kind"]),
                    text(&d["verdict"]),
                    text(&d["severity"]),
                    text(&d["client"]),
                ]
            })
            .collect();
        if got != listed {
            problems.push(format!("{name}: pages {got:?}, expected {listed:?}"));
        }
    }
    let open: Vec<(&Value, &Alert)> = docs
        .iter()
        .zip(alerts)
        .filter(|(d, _)| d["kind"] == "open")
        .collect();
    let mut want = expected_pages(dir);
    // A fleet's groups page together: one first page for the workload, naming one of its sessions and
    // counting them all.
    let fleet_sizes = fleets(&want);
    let mut seen = std::collections::BTreeSet::new();
    want.retain(|w| fleet_id(w).is_none_or(|id| seen.insert(id)));
    if let Some(listed) = listed_pages(dir) {
        // A group paged once per incident: as many first pages as the scenario lists.
        let firsts = listed.iter().filter(|p| p[0] == "open").count();
        while want.len() < firsts && !want.is_empty() {
            want.push(want[0].clone());
        }
    }
    if open.len() != want.len() {
        problems.push(format!(
            "{name}: {} open alerts, expected {}: {:?}",
            open.len(),
            want.len(),
            alerts.iter().map(|a| &a.subject).collect::<Vec<_>>()
        ));
    }
    for w in &want {
        // A fleet's page of several sessions names the workload's session pattern.
        let fleet = fleet_id(w);
        let several = fleet.as_ref().is_some_and(|id| fleet_sizes[id] > 1);
        let session = match several {
            true => json!(session_pattern(w["session"].as_str().unwrap_or_default())),
            false => w["session"].clone(),
        };
        let Some((doc, alert)) = open
            .iter()
            .find(|(d, _)| d["principal"] == w["principal"] && d["session"] == session)
        else {
            problems.push(format!(
                "{name}: no alert for {} / {}",
                w["principal"], w["session"]
            ));
            continue;
        };
        for field in [
            "verdict",
            "credential_source",
            "client",
            "lease_seconds",
            "account",
        ] {
            if doc[field] != w[field] {
                problems.push(format!(
                    "{name}: alert {field} is {} but expected {}",
                    doc[field], w[field]
                ));
            }
        }
        for (attr, field) in [
            ("verdict", "verdict"),
            ("credential_source", "credential_source"),
            ("account", "account"),
            ("principal", "principal"),
        ] {
            if Some(alert.attributes[attr].as_str()) != w[field].as_str() {
                problems.push(format!(
                    "{name}: attribute {attr} is {} but expected {}",
                    alert.attributes[attr], w[field]
                ));
            }
        }
        if let Some(id) = &fleet {
            let sessions = doc.get("workload_sessions").and_then(Value::as_u64).unwrap_or(1);
            if sessions != fleet_sizes[id] {
                problems.push(format!(
                    "{name}: the page of {id} counts {sessions} sessions, expected {}",
                    fleet_sizes[id]
                ));
            }
        }
        if alert.attributes["severity"] != doc["severity"].as_str().unwrap() {
            problems.push(format!("{name}: severity attribute and document disagree"));
        }
    }
    problems
}

/// The fleet (workload incident) an expected group pages through, if any.
fn fleet_id(g: &Value) -> Option<String> {
    let text = |k: &str| g[k].as_str().map(str::to_owned);
    fleet_of(&group_key(&text("account"), &text("principal"), &text("session")))
}

/// How many of the groups that page belong to each fleet.
fn fleets(groups: &[Value]) -> BTreeMap<String, u64> {
    let mut sizes = BTreeMap::new();
    for id in groups.iter().filter_map(fleet_id) {
        *sizes.entry(id).or_default() += 1;
    }
    sizes
}

/// The state table holds every expected group with its exact failure count.
pub async fn check_counts<S: StateStore>(dir: &Path, store: &S) -> Vec<String> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let mut problems = Vec::new();
    for g in expected["groups"].as_array().unwrap() {
        let text = |k: &str| g[k].as_str().map(str::to_owned);
        let key = group_key(&text("account"), &text("principal"), &text("session"));
        let count = store.load(&key).await.unwrap().map(|s| s.stats.failures);
        if count != g["failures"].as_u64() {
            problems.push(format!(
                "{name}: state table holds {count:?} failures of {}, expected {}",
                g["session"], g["failures"]
            ));
        }
    }
    problems
}

/// `failures` failures of one session, each delivered twice, shuffled, in batches of 10 over 8 handler
/// threads running at once on `runtime`. Call from `block_in_place` inside a multi-thread runtime.
pub fn storm<S: StateStore, A: AlertSink>(
    detector: &Detector<'_, S, A>,
    failures: usize,
    runtime: &tokio::runtime::Handle,
) {
    // The session was issued three hours ago. Not at a fixed date: ministack deletes a group 30 days after
    // its last failure (its TTL), so a storm dated 2026-11-02 vanished mid-test from 2026-12-02 on.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as Epoch;
    let base = now - 3 * 3600;
    let mut events: Vec<Vec<u8>> = (0..failures)
        .flat_map(|i| {
            let e = storm_event(i, base + 3700 + (i as i64 % 1800), base).into_bytes();
            [e.clone(), e]
        })
        .collect();
    // A fixed permutation: deterministic, and far from time order.
    let n = events.len();
    for i in 0..n {
        let j = (i * 7919 + 104_729) % n;
        events.swap(i, j);
    }
    let chunks: Vec<&[Vec<u8>]> = events.chunks(10).collect();
    let per_task = chunks.len().div_ceil(8);
    std::thread::scope(|s| {
        for mine in chunks.chunks(per_task) {
            s.spawn(move || {
                runtime.block_on(async {
                    for chunk in mine {
                        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
                        let mut pending = refs.clone();
                        // What a transient fault leaves is redelivered, as SQS would.
                        for _ in 0..20 {
                            let out = detector.process(&pending, base + 9000).await;
                            if out.retry.is_empty() {
                                break;
                            }
                            pending = out.retry.iter().map(|&i| pending[i]).collect();
                        }
                    }
                })
            });
        }
    });
}

/// Failure `i` of the storm, at `t`, of a session issued at `issued`.
pub fn storm_event(i: usize, t: Epoch, issued: Epoch) -> String {
    json!({"version": "0", "id": format!("eb-{i}"), "detail-type": "AWS API Call via CloudTrail", "source": "aws.dynamodb",
        "account": "123456789012", "region": "eu-west-1",
        "detail": {"eventTime": tokenwatch_core::time::format_time(t), "eventSource": "dynamodb.amazonaws.com",
            "eventName": "GetItem", "errorCode": "ExpiredTokenException", "eventID": format!("storm-{i:05}"),
            "recipientAccountId": "123456789012", "userAgent": "aws-sdk-java/2.20.0 Linux/5.10",
            "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLE:ingest", "accessKeyId": "ASIASTORMEXAMPLE0001",
                "arn": "arn:aws:sts::123456789012:assumed-role/ingest-role/ingest",
                "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::123456789012:role/ingest-role"},
                    "attributes": {"creationDate": tokenwatch_core::time::format_time(issued)}}}}})
    .to_string()
}

/// Session names and user agents with newlines, markdown, control bytes and 100 KB, with secrets in the
/// parts of the record the engine never reads.
pub fn hostile_events() -> Vec<Vec<u8>> {
    let long = "W".repeat(100_000);
    let names = [
        "evil\nSubject: injected\r\n".to_owned(),
        "**bold** [click](http://evil.example) <script>alert(1)</script> | `x`".to_owned(),
        format!("ctl\u{0}\u{7}\u{1b}[31m{long}"),
    ];
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({"version": "0", "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3", "account": "123456789012",
                "detail": {"eventTime": "2026-11-02T09:10:00Z", "eventSource": "s3.amazonaws.com", "eventName": format!("Get{name}"),
                    "errorCode": "ExpiredToken", "eventID": format!("hostile-{i}"), "recipientAccountId": "123456789012",
                    "userAgent": format!("Boto3/1.0 {name}"), "sourceIPAddress": name,
                    "requestParameters": {"secretAccessKey": SECRET, "x-amz-security-token": SECRET},
                    "responseElements": {"credentials": {"sessionToken": SECRET, "secretAccessKey": SECRET}},
                    "userIdentity": {"type": "AssumedRole", "principalId": format!("AROAEXAMPLE:{name}"),
                        "accessKeyId": "ASIAHOSTILEEXAMPLE01",
                        "arn": format!("arn:aws:sts::123456789012:assumed-role/hostile-role/{name}"),
                        "sessionContext": {"attributes": {"creationDate": "2026-11-02T08:00:00Z"}}}}})
            .to_string()
            .into_bytes()
        })
        .collect()
}

/// A value that must never appear in any alert.
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY";

pub fn check_hostile(alerts: &[Alert]) -> Vec<String> {
    let mut problems = Vec::new();
    if alerts.len() != 3 {
        problems.push(format!("expected 3 alerts, got {}", alerts.len()));
    }
    for a in alerts {
        if a.subject.len() > 100 || !a.subject.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            problems.push(format!("bad subject {:?}", a.subject));
        }
        if a.message.len() > 64 * 1024 {
            problems.push(format!("message of {} bytes", a.message.len()));
        }
        let all = format!("{}{}{:?}", a.subject, a.message, a.attributes);
        if all.contains(SECRET) {
            problems.push("a secret reached an alert".into());
        }
        let m: Value = match serde_json::from_str(&a.message) {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("message is not JSON: {e}"));
                continue;
            }
        };
        for (k, v) in m.as_object().unwrap() {
            let text = v.as_str().unwrap_or_default();
            if text.contains('\r') || text.contains('\u{0}') || text.contains('\u{1b}') {
                problems.push(format!("{k}: control characters"));
            }
        }
        if m["email"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Subject: injected"))
        {
            problems.push("a header was injected into the e-mail text".into());
        }
        let doc: Value = serde_json::from_str(m["sqs"].as_str().unwrap()).unwrap();
        if doc["session"].as_str().unwrap_or_default().chars().count() > 128 {
            problems.push("session not capped".into());
        }
    }
    problems
}

pub fn policy() -> Policy {
    Policy::default()
}

/// How the stacks under test write their alerts.
pub fn style() -> Style {
    Style {
        region: "us-east-1".into(),
        ..Default::default()
    }
}

/// Counts per key, for messages.
pub fn tally<'a>(it: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, usize> {
    let mut m = BTreeMap::new();
    for k in it {
        *m.entry(k).or_default() += 1;
    }
    m
}

mod memory {
    use super::*;
    use tokenwatch_core::memory::{MemoryStore, RecordingSink};

    /// The in-memory store and sink with the default policy: what each test here runs the pipeline on.
    struct Twins {
        store: MemoryStore,
        sink: RecordingSink,
        policy: Policy,
    }

    impl Default for Twins {
        fn default() -> Self {
            Twins {
                store: MemoryStore::default(),
                sink: RecordingSink::default(),
                policy: policy(),
            }
        }
    }

    impl Twins {
        fn detector(&self) -> Detector<'_, MemoryStore, RecordingSink> {
            Detector {
                store: &self.store,
                sink: &self.sink,
                policy: &self.policy,
            }
        }

        /// The notices published, as SNS would publish them.
        fn alerts(&self) -> Vec<Alert> {
            self.sink
                .notices()
                .iter()
                .map(|n| tokenwatch_render::sns::render(n, &style()))
                .collect()
        }
    }

    #[tokio::test]
    async fn every_sample_pages_exactly_what_its_expected_findings_imply() {
        let mut problems = Vec::new();
        for dir in scenarios() {
            let twins = Twins::default();
            let detector = twins.detector();
            feed_scenario(&detector, &dir).await;
            problems.extend(check_pages(&dir, &twins.alerts()));
            problems.extend(check_counts(&dir, &twins.store).await);
        }
        assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_storm_is_one_page_with_an_exact_count() {
        let twins = Twins::default();
        let detector = twins.detector();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| storm(&detector, 10_000, &runtime));
        let key = group_key(
            &Some("123456789012".into()),
            &Some("ingest-role".into()),
            &Some("ingest".into()),
        );
        let state = twins.store.load(&key).await.unwrap().unwrap();
        assert_eq!(state.stats.failures, 10_000);
        let published = twins.alerts();
        let kinds = tally(published.iter().map(|a| a.attributes["kind"].as_str()));
        assert_eq!(
            kinds,
            BTreeMap::from([("open", 1)]),
            "{:?}",
            published.iter().map(|a| &a.subject).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn hostile_values_give_well_formed_alerts_without_secrets() {
        let twins = Twins::default();
        let detector = twins.detector();
        let events = hostile_events();
        let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        let out = detector
            .process(&refs, parse_time("2026-11-02T09:20:00Z").unwrap())
            .await;
        assert!(out.retry.is_empty());
        let problems = check_hostile(&twins.alerts());
        assert!(problems.is_empty(), "{problems:?}");
    }
}
