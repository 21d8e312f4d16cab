//! The detector deployed on ministack as infra/template.yaml declares it, proven end to end with the
//! scenario samples: EventBridge `PutEvents` → the template's rules → the event queue (failures and
//! drills) → the real `tokenwatch-detector` binary (an SQS event source mapping with
//! `ReportBatchItemFailures`), and each issuing call straight to the same function (the issuance rule's
//! target, an asynchronous invocation) → the state table → the alert topic → an SQS queue subscribed to it, where the alerts are read back. Then the
//! real `tokenwatch-reporter` binary, deployed beside it, answers queries (`Invoke` with a query payload,
//! as `aws lambda invoke --payload` does) with the groups the detector stored, and publishes its digest
//! when invoked as its schedule invokes it: the digest reaches a subscription filtering on
//! `kind=digest`, never the pager's, which filters on the incident kinds.
//!
//! Every resource, name and setting is read from the template: the table's keys, index, TTL, encryption
//! and recovery; the queue, its dead-letter queue and redrive; the topic; the log group; the function's
//! runtime, handler, memory, timeout, logging and environment (variable names and parameter defaults);
//! the event source mapping; the rule's pattern and target (retry policy and dead-letter queue); the
//! sweep's and the digest's schedules and permissions (a resource whose `Condition` is off with the
//! parameters' defaults is left out). Names are `<stack>-<logical id>` (what CloudFormation generates,
//! without its random suffix) unless the template fixes one. Resources that ministack does not enforce
//! or that prove nothing here are listed with the reason in `NOT_DEPLOYED`; a new resource type in the
//! template, or a new resource of a deployed type, fails the test until it is deployed or listed.
//!
//! What differs from the template, and why (ministack 1.5.33, docs/building.md, "Traps the tests work around"):
//! - The functions are the debug builds `target/debug/tokenwatch-detector` and `tokenwatch-reporter`
//!   (scripts/test.sh builds them before the tests), for this machine's architecture (x86_64 here)
//!   instead of the template's arm64: ministack runs a `provided.al2023` bootstrap natively.
//! - Their environment also carries `AWS_ENDPOINT_URL` = ministack: ministack does not inject it.
//! - The rules' state is `ENABLED`: ministack never matches a rule in `ENABLED_WITH_ALL_CLOUDTRAIL_
//!   MANAGEMENT_EVENTS`.
//! - The function's asynchronous retries and dead-letter queue (`EventInvokeConfig`, `DeadLetterQueue`)
//!   are not configured: no invocation here fails, and they are `tests/infra.rs`'s to check.
//! - ministack refuses `PutEvents` with an `aws.*` source (`NotAuthorizedForSourceException`, as AWS
//!   does), so the samples are put with their source prefixed by a per-run prefix (`aws.kms` becomes
//!   `<prefix>aws.kms`), and the pattern's `source: [{prefix: "aws."}]` becomes `[{prefix:
//!   "<prefix>aws."}]`. Everything else in the pattern is the template's, and the drill branch is
//!   untouched: the drill event is put with its real source.
//! - ministack's event source mapping hands the function at most 10 messages per batch (not the
//!   template's 100) and does not wait for the batching window, so a scenario arrives in several
//!   batches, two at a time (`MaximumConcurrency`).
//! - The samples happened in November 2026; the deployed function reads the wall clock. Each scenario
//!   is moved in time, every timestamp by the same amount, so that its last failure or issuing call
//!   happened 5 s before it is put: as CloudTrail would deliver it, with the refresh window of a failure
//!   at the lease boundary still open (07 must be held, then recognised as a refresh race, whatever the
//!   order its batches run in).
//!
//! Errors of invocations by the event source mapping or the schedule are only in the function's log
//! group: on failure the test prints it. It needs `TOKENWATCH_MINISTACK_ENDPOINT` (scripts/test.sh
//! starts the emulators) and fails without it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};
use tokenwatch_aws::DynamoStore;
use tokenwatch_core::Severity;
use tokenwatch_core::classify::is_expiry;
use tokenwatch_core::events::drill_event;
use tokenwatch_core::model::StsCall;
use tokenwatch_core::pipeline::DRILL_SOURCE;
use tokenwatch_core::ports::StateStore;
use tokenwatch_core::time::{Epoch, format_time, parse_time};
use tokenwatch_render::sns::Message as Alert;
use tokenwatch_testkit::{Emulator, Received, Subscriber, queue_arn, samples_dir, unique};

use crate::detector::{check_counts, check_pages, event_time, expected_pages, scenario_events};
use crate::emulated::{alert_of, envelope_problems};
use crate::reporter::{DIGEST_FILTER, filtered_subscriber, identity, kind, listed};

/// The scenarios put through the deployed function: a page (01), a refresh race that must not page
/// (07), a stale web identity token (10), and look-alikes (13) that page nothing: the rule keeps all
/// but their one issuing call from the function.
const SCENARIOS: [&str; 4] = [
    "01-assume-role-default-boto3",
    "07-refresh-race",
    "10-web-identity-stale-token",
    "13-look-alikes",
];

/// Resource types of the template this test does not create, and why.
const NOT_DEPLOYED: [(&str, &str); 8] = [
    (
        "AWS::IAM::Role",
        "ministack enforces no IAM (without AUTH=1); the function is given the role's ARN by name",
    ),
    (
        "AWS::SQS::QueuePolicy",
        "not enforced by ministack; tests/infra.rs checks that only the rule may send",
    ),
    (
        "AWS::KMS::Key",
        "topic encryption: not enforced by ministack; tests/infra.rs checks it is declared",
    ),
    ("AWS::KMS::Alias", "the key's alias"),
    (
        "AWS::SNS::TopicPolicy",
        "not enforced by ministack; tests/infra.rs checks that only the function and the alarms publish",
    ),
    (
        "AWS::SNS::Subscription",
        "conditional, off by default (AlertEmail, AlertHttpsEndpoint); the test subscribes its own queue",
    ),
    (
        "AWS::CloudWatch::Alarm",
        "alarms on the function's own metrics: nothing in this test would set them off",
    ),
    (
        "AWS::Events::EventBusPolicy",
        "conditional, off by default (ForwarderOrganizationId)",
    ),
];

/// How long the function may take over one scenario, from `PutEvents` to an empty event queue.
const PROCESSING: Duration = Duration::from_secs(120);

// -----------------------------------------------------------------------------------------------------
// The template
// -----------------------------------------------------------------------------------------------------

fn template() -> Value {
    crate::infra::template("template.yaml")
}

/// The template's resources of one type.
fn of_type<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

fn only<'a>(t: &'a Value, kind: &str) -> (&'a str, &'a Value) {
    let all = of_type(t, kind);
    assert_eq!(all.len(), 1, "the template has one {kind}");
    all[0]
}

/// The logical id a `!Ref` or `!GetAtt` points at.
fn target_id(v: &Value) -> &str {
    v["Ref"]
        .as_str()
        .or(v["Fn::GetAtt"][0].as_str())
        .unwrap_or_else(|| panic!("not a reference: {v}"))
}

/// What `!Ref`, `!GetAtt` and `!Sub` resolve to for the resources deployed so far.
struct Stack {
    name: String,
    account: String,
    template: Value,
    refs: BTreeMap<String, String>,
    attributes: BTreeMap<(String, String), String>,
}

impl Stack {
    /// `<stack>-<logical id>`: the name CloudFormation would generate, without its random suffix.
    fn physical_name(&self, id: &str) -> String {
        format!("{}-{id}", self.name)
    }

    fn properties(&self, id: &str) -> &Value {
        &self.template["Resources"][id]["Properties"]
    }

    fn deployed(&mut self, id: &str, reference: String, attributes: &[(&str, String)]) {
        self.refs.insert(id.to_owned(), reference);
        for (name, value) in attributes {
            self.attributes
                .insert((id.to_owned(), (*name).to_owned()), value.clone());
        }
    }

    fn reference(&self, name: &str) -> String {
        match name {
            "AWS::StackName" => return self.name.clone(),
            "AWS::Region" => return "us-east-1".into(),
            "AWS::AccountId" => return self.account.clone(),
            "AWS::Partition" => return "aws".into(),
            _ => {}
        }
        if let Some(v) = self.refs.get(name) {
            return v.clone();
        }
        let parameter = &self.template["Parameters"][name];
        match &parameter["Default"] {
            Value::String(s) => s.clone(),
            Value::Null => panic!("!Ref {name}: neither deployed nor a parameter with a default"),
            other => other.to_string(),
        }
    }

    fn attribute(&self, id: &str, attribute: &str) -> String {
        self.attributes
            .get(&(id.to_owned(), attribute.to_owned()))
            .cloned()
            .unwrap_or_else(|| panic!("!GetAtt {id}.{attribute}: not deployed"))
    }

    /// `v` with every `!Ref`, `!GetAtt` and `!Sub` in it resolved.
    fn resolve(&self, v: &Value) -> Value {
        match v {
            Value::Object(m) if m.len() == 1 && m.contains_key("Ref") => {
                json!(self.reference(m["Ref"].as_str().unwrap()))
            }
            Value::Object(m) if m.len() == 1 && m.contains_key("Fn::If") => {
                let branches = &m["Fn::If"];
                let holds = self.truth(&self.template["Conditions"][branches[0].as_str().unwrap()]);
                self.resolve(&branches[if holds { 1 } else { 2 }])
            }
            Value::Object(m) if m.len() == 1 && m.contains_key("Fn::GetAtt") => json!(self.attribute(
                m["Fn::GetAtt"][0].as_str().unwrap(),
                m["Fn::GetAtt"][1].as_str().unwrap()
            )),
            Value::Object(m) if m.len() == 1 && m.contains_key("Fn::Sub") => {
                let text = m["Fn::Sub"].as_str().expect("!Sub of a string");
                let re = regex::Regex::new(r"\$\{([^}]+)\}").unwrap();
                json!(
                    re.replace_all(text, |c: &regex::Captures| match c[1].split_once('.') {
                        Some((id, attribute)) if !c[1].starts_with("AWS::") => self.attribute(id, attribute),
                        _ => self.reference(&c[1]),
                    })
                )
            }
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), self.resolve(v))).collect()),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.resolve(v)).collect()),
            other => other.clone(),
        }
    }

    /// Whether a resource's `Condition` holds with the parameters' defaults (no condition: it does).
    fn holds(&self, resource: &Value) -> bool {
        match resource["Condition"].as_str() {
            None => true,
            Some(name) => self.truth(&self.template["Conditions"][name]),
        }
    }

    fn truth(&self, condition: &Value) -> bool {
        if let Some(c) = condition.get("Fn::Not") {
            !self.truth(&c[0])
        } else if let Some(c) = condition.get("Fn::Equals") {
            self.resolve(&c[0]) == self.resolve(&c[1])
        } else if let Some(name) = condition.get("Condition").and_then(Value::as_str) {
            self.truth(&self.template["Conditions"][name])
        } else if let Some(all) = condition.get("Fn::And").and_then(Value::as_array) {
            all.iter().all(|c| self.truth(c))
        } else if let Some(any) = condition.get("Fn::Or").and_then(Value::as_array) {
            any.iter().any(|c| self.truth(c))
        } else {
            panic!("a condition this test does not evaluate: {condition}")
        }
    }

    fn text(&self, v: &Value) -> String {
        match self.resolve(v) {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }
}

/// Replaces `{"prefix": "aws."}` in every `source` list of the pattern by `{"prefix": "<custom>aws."}`;
/// returns how many it replaced.
fn prefix_aws_sources(pattern: &mut Value, custom: &str) -> usize {
    let mut replaced = 0;
    match pattern {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if k == "source"
                    && let Value::Array(items) = v
                {
                    for item in items.iter_mut() {
                        if *item == json!({"prefix": "aws."}) {
                            *item = json!({ "prefix": format!("{custom}aws.") });
                            replaced += 1;
                        }
                    }
                } else {
                    replaced += prefix_aws_sources(v, custom);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                replaced += prefix_aws_sources(v, custom);
            }
        }
        _ => {}
    }
    replaced
}

// -----------------------------------------------------------------------------------------------------
// Moving a scenario in time
// -----------------------------------------------------------------------------------------------------

/// `s` moved by `delta` seconds in its own format, if it is a timestamp in one of the forms CloudTrail
/// writes: ISO-8601 (`2026-11-02T09:00:14Z`), basic (`20261102T080000Z`), or the US form of STS
/// `expiration` (`Nov 2, 2026, 9:00:00 AM`, older records without the second comma).
fn shifted(s: &str, delta: i64) -> Option<String> {
    use std::sync::LazyLock;
    static ISO: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$").unwrap());
    static BASIC: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"^\d{8}T\d{6}Z$").unwrap());
    static US: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"^[A-Z][a-z]{2} \d{1,2}, \d{4}(,?) \d{1,2}:\d{2}:\d{2} [AP]M$").unwrap()
    });
    let at = |t: Epoch| chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0).unwrap();
    let out = if ISO.is_match(s) {
        format_time(parse_time(s)? + delta)
    } else if BASIC.is_match(s) {
        at(parse_time(s)? + delta).format("%Y%m%dT%H%M%SZ").to_string()
    } else if let Some(c) = US.captures(s) {
        let t = at(parse_time(s)? + delta);
        format!("{}{} {}", t.format("%b %-d, %Y"), &c[1], t.format("%-I:%M:%S %p"))
    } else {
        return None;
    };
    assert_eq!(
        parse_time(&out),
        parse_time(s).map(|t| t + delta),
        "{s} moved by {delta} s is {out}"
    );
    Some(out)
}

fn shift_times(v: &mut Value, delta: i64) {
    match v {
        Value::String(s) => {
            if let Some(moved) = shifted(s, delta) {
                *s = moved;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| shift_times(v, delta)),
        Value::Object(m) => m.values_mut().for_each(|v| shift_times(v, delta)),
        _ => {}
    }
}

/// A failure, or an STS call that issued a session: what the detector acts on.
fn acts_on(e: &Value) -> bool {
    let d = &e["detail"];
    is_expiry(d["errorCode"].as_str(), d["errorMessage"].as_str())
        || (d["eventSource"] == "sts.amazonaws.com"
            && d.get("errorCode").is_none()
            && d["eventName"]
                .as_str()
                .and_then(StsCall::from_event_name)
                .is_some())
}

fn wall_clock() -> Epoch {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as Epoch
}

/// The scenario's events, moved so that the last one the detector acts on happened 5 s ago.
fn current_events(dir: &Path) -> Vec<Value> {
    let mut events = scenario_events(dir);
    let anchor = events
        .iter()
        .filter(|e| acts_on(e))
        .map(event_time)
        .max()
        .unwrap_or_else(|| events.iter().map(event_time).max().unwrap());
    let delta = wall_clock() - 5 - anchor;
    for e in &mut events {
        let before = event_time(e);
        shift_times(e, delta);
        assert_eq!(event_time(e), before + delta, "{e}");
    }
    events
}

// -----------------------------------------------------------------------------------------------------
// The function's code
// -----------------------------------------------------------------------------------------------------

/// `target/debug/<binary>`, next to the directory this test binary runs from.
fn debug_binary(binary: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/e2e-…
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    profile_dir.join(binary)
}

/// Files under `dir`, recursively.
pub(crate) fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// A function's debug binary (`binary`, built from the crate in `crate_dir`), checked: there, built for
/// this machine's architecture, and newer than the sources it is built from.
pub(crate) fn checked_binary(binary: &str, crate_dir: &str) -> (PathBuf, Vec<u8>) {
    let path = debug_binary(binary);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. This test deploys the functions' debug builds: run `cargo build -p {binary}` \
             first (scripts/test.sh does)",
            path.display()
        )
    });
    assert!(
        bytes.starts_with(b"\x7fELF") && bytes.len() > 20,
        "{} is not an ELF binary",
        path.display()
    );
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    let host = match std::env::consts::ARCH {
        "x86_64" => 0x3e,
        "aarch64" => 0xb7,
        other => panic!("ministack runs the bootstrap natively; no known ELF machine for {other}"),
    };
    assert_eq!(
        machine,
        host,
        "{} is not built for {}: ministack runs the bootstrap natively (docs/building.md)",
        path.display(),
        std::env::consts::ARCH
    );
    let built = std::fs::metadata(&path).unwrap().modified().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut sources = Vec::new();
    for crate_dir in [crate_dir, "crates/core", "crates/aws"] {
        files(&root.join(crate_dir).join("src"), &mut sources);
        sources.push(root.join(crate_dir).join("Cargo.toml"));
    }
    sources.retain(|s| s.extension().is_some_and(|e| e == "rs" || e == "toml"));
    sources.push(root.join("Cargo.lock"));
    let stale: Vec<String> = sources
        .iter()
        .filter(|s| std::fs::metadata(s).unwrap().modified().unwrap() > built)
        .map(|s| s.strip_prefix(&root).unwrap_or(s).display().to_string())
        .collect();
    assert!(
        stale.is_empty(),
        "{} is older than {stale:?}: run `cargo build -p {binary}` (scripts/test.sh does)",
        path.display()
    );
    (path, bytes)
}

/// A zip holding `binary` as `bootstrap` (executable), deflated.
pub(crate) fn bootstrap_zip(binary: &[u8]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o755)
            .large_file(false);
        zip.start_file("bootstrap", options).unwrap();
        zip.write_all(binary).unwrap();
        zip.finish().unwrap();
    }
    out.into_inner()
}

// -----------------------------------------------------------------------------------------------------
// Deploying
// -----------------------------------------------------------------------------------------------------

struct Clients {
    dynamodb: aws_sdk_dynamodb::Client,
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
    lambda: aws_sdk_lambda::Client,
    events: aws_sdk_eventbridge::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
}

impl Clients {
    fn new(sdk: &SdkConfig) -> Clients {
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sns: aws_sdk_sns::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            lambda: aws_sdk_lambda::Client::new(sdk),
            events: aws_sdk_eventbridge::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
        }
    }
}

/// What the test needs to know of the deployment.
struct Deployment {
    stack: Stack,
    function: String,
    log_group: String,
    reporter: String,
    reporter_log_group: String,
    table: String,
    event_queue_url: String,
    dead_letter_queue_url: String,
    mapping: String,
    rules: Vec<(String, Vec<String>)>,
    schedule_arn: String,
    digest_arn: String,
    /// Prefix of the sources the samples are put with (see the module docs).
    source_prefix: String,
    memory_size: i64,
}

async fn deploy_table(c: &Clients, stack: &mut Stack, id: &str) -> String {
    use aws_sdk_dynamodb::client::Waiters;
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType, SseSpecification,
        TimeToLiveSpecification,
    };
    let p = stack.properties(id).clone();
    let name = stack.physical_name(id);
    let keys = |schema: &Value| -> Vec<KeySchemaElement> {
        schema
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                KeySchemaElement::builder()
                    .attribute_name(k["AttributeName"].as_str().unwrap())
                    .key_type(KeyType::from(k["KeyType"].as_str().unwrap()))
                    .build()
                    .unwrap()
            })
            .collect()
    };
    let mut create = c
        .dynamodb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::from(p["BillingMode"].as_str().unwrap()))
        .set_key_schema(Some(keys(&p["KeySchema"])))
        .sse_specification(
            SseSpecification::builder()
                .enabled(p["SSESpecification"]["SSEEnabled"] == true)
                .build(),
        );
    for a in p["AttributeDefinitions"].as_array().unwrap() {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(a["AttributeName"].as_str().unwrap())
                .attribute_type(ScalarAttributeType::from(a["AttributeType"].as_str().unwrap()))
                .build()
                .unwrap(),
        );
    }
    for index in p["GlobalSecondaryIndexes"].as_array().into_iter().flatten() {
        create = create.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index["IndexName"].as_str().unwrap())
                .set_key_schema(Some(keys(&index["KeySchema"])))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            index["Projection"]["ProjectionType"].as_str().unwrap(),
                        ))
                        .build(),
                )
                .build()
                .unwrap(),
        );
    }
    create.send().await.unwrap();
    c.dynamodb
        .wait_until_table_exists()
        .table_name(&name)
        .wait(Duration::from_secs(60))
        .await
        .unwrap();
    let ttl = &p["TimeToLiveSpecification"];
    c.dynamodb
        .update_time_to_live()
        .table_name(&name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(ttl["AttributeName"].as_str().unwrap())
                .enabled(ttl["Enabled"] == true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    c.dynamodb
        .update_continuous_backups()
        .table_name(&name)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(
                    p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] == true,
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let arn = c
        .dynamodb
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .unwrap()
        .table
        .unwrap()
        .table_arn
        .unwrap();
    stack.deployed(id, name.clone(), &[("Arn", arn)]);
    name
}

async fn deploy_queue(c: &Clients, stack: &mut Stack, id: &str) -> String {
    let p = stack.resolve(stack.properties(id));
    let name = stack.physical_name(id);
    let mut create = c.sqs.create_queue().queue_name(&name);
    for (key, value) in p.as_object().unwrap() {
        let value = match value {
            Value::String(s) => s.clone(),
            // RedrivePolicy is a JSON document; numbers and booleans are sent as their text.
            other => other.to_string(),
        };
        create = create.attributes(QueueAttributeName::from(key.as_str()), value);
    }
    let url = create.send().await.unwrap().queue_url.unwrap();
    let arn = queue_arn(&c.sqs, &url).await;
    stack.deployed(id, url.clone(), &[("Arn", arn), ("QueueName", name)]);
    url
}

/// Creates a function of the template (`function_id`) with its log group, as SAM would, from the debug
/// build of its binary; returns its name, its log group and its memory size.
async fn deploy_function(
    c: &Clients,
    stack: &mut Stack,
    function_id: &str,
    endpoint: &str,
) -> (String, String, i64) {
    use aws_sdk_lambda::primitives::Blob;
    use aws_sdk_lambda::types::{
        Architecture, Environment, FunctionCode, LogFormat, LoggingConfig, Runtime, State,
    };

    let t = stack.template.clone();
    let function = &t["Resources"][function_id];
    let fp = &function["Properties"];
    let log_group_id = target_id(&fp["LoggingConfig"]["LogGroup"]).to_owned();
    let log_group = stack.text(&t["Resources"][&log_group_id]["Properties"]["LogGroupName"]);
    let retention = stack.text(&t["Resources"][&log_group_id]["Properties"]["RetentionInDays"]);
    c.logs
        .create_log_group()
        .log_group_name(&log_group)
        .send()
        .await
        .unwrap();
    c.logs
        .put_retention_policy()
        .log_group_name(&log_group)
        .retention_in_days(retention.parse().unwrap())
        .send()
        .await
        .unwrap();
    stack.deployed(
        &log_group_id,
        log_group.clone(),
        &[(
            "Arn",
            format!("arn:aws:logs:us-east-1:{}:log-group:{log_group}", stack.account),
        )],
    );
    // Its code: the debug build of the binary SAM would build, from the crate at CodeUri.
    let binary_name = function["Metadata"]["BuildProperties"]["Binary"]
        .as_str()
        .unwrap();
    let crate_dir = fp["CodeUri"].as_str().unwrap().trim_start_matches("../");
    let (binary_path, binary) = checked_binary(binary_name, crate_dir);
    let started = Instant::now();
    let zip = bootstrap_zip(&binary);
    eprintln!(
        "{}: {:.1} MB, zipped to {:.1} MB in {:.1} s",
        binary_path.display(),
        binary.len() as f64 / 1e6,
        zip.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let mut environment = Environment::builder();
    for (name, value) in fp["Environment"]["Variables"].as_object().unwrap() {
        environment = environment.variables(name, stack.text(value));
    }
    // ministack does not inject it (docs/building.md): without it the SDK calls real AWS.
    environment = environment.variables("AWS_ENDPOINT_URL", endpoint);
    let function_name = stack.physical_name(function_id);
    let role = format!(
        "arn:aws:iam::{}:role/{}",
        stack.account,
        stack.physical_name(target_id(&fp["Role"]))
    );
    let logging = &fp["LoggingConfig"];
    let memory_size = fp["MemorySize"].as_i64().unwrap();
    // The template deploys arm64; ministack runs the bootstrap natively, so it gets this machine's
    // architecture, which `checked_binary` made sure the binary is built for.
    let architecture = match std::env::consts::ARCH {
        "aarch64" => Architecture::Arm64,
        _ => Architecture::X8664,
    };
    let created = c
        .lambda
        .create_function()
        .function_name(&function_name)
        .runtime(Runtime::from(fp["Runtime"].as_str().unwrap()))
        .handler(fp["Handler"].as_str().unwrap())
        .role(role)
        .architectures(architecture)
        .memory_size(memory_size as i32)
        .timeout(fp["Timeout"].as_i64().unwrap() as i32)
        .description(fp["Description"].as_str().unwrap_or_default())
        .environment(environment.build())
        .logging_config(
            LoggingConfig::builder()
                .log_format(LogFormat::from(logging["LogFormat"].as_str().unwrap()))
                .log_group(&log_group)
                .application_log_level(logging["ApplicationLogLevel"].as_str().unwrap().into())
                .system_log_level(logging["SystemLogLevel"].as_str().unwrap().into())
                .build(),
        )
        .code(FunctionCode::builder().zip_file(Blob::new(zip)).build())
        .send()
        .await
        .unwrap();
    let function_arn = created.function_arn.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = c
            .lambda
            .get_function_configuration()
            .function_name(&function_name)
            .send()
            .await
            .unwrap()
            .state;
        if state == Some(State::Active) {
            break;
        }
        assert!(Instant::now() < deadline, "the function is still {state:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.deployed(function_id, function_name.clone(), &[("Arn", function_arn)]);
    (function_name, log_group, memory_size)
}

async fn deploy(c: &Clients, endpoint: &str) -> Deployment {
    use aws_sdk_eventbridge::types::{DeadLetterConfig, RetryPolicy, RuleState, Target};
    use aws_sdk_lambda::types::{FunctionResponseType, ScalingConfig};

    let t = template();
    let mut deployed_types = BTreeSet::new();
    let mut stack = Stack {
        name: unique("tw-e2e"),
        account: String::new(),
        template: t.clone(),
        refs: BTreeMap::new(),
        attributes: BTreeMap::new(),
    };

    // The function, and what the template wires to it.
    // The functions: the detector is the one the queue feeds; the other is the reporter. The back-fill's
    // scanner is made only when a trail bucket is given (a condition off by default), and is not
    // deployed here.
    let functions: Vec<(&str, &Value)> = of_type(&t, "AWS::Serverless::Function")
        .into_iter()
        .filter(|(_, f)| stack.holds(f))
        .collect();
    assert_eq!(functions.len(), 2, "the detector and the reporter");
    let (function_id, function) = *functions
        .iter()
        .find(|(_, f)| {
            f["Properties"]["Events"]
                .as_object()
                .is_some_and(|events| events.values().any(|e| e["Type"] == "SQS"))
        })
        .expect("a function fed by the queue");
    let (reporter_id, _) = *functions.iter().find(|(id, _)| *id != function_id).unwrap();
    let fp = &function["Properties"];
    let events = fp["Events"].as_object().unwrap();
    let queue_event = &events
        .values()
        .find(|e| e["Type"] == "SQS")
        .expect("the function has an SQS event source")["Properties"];
    let queue_id = target_id(&queue_event["Queue"]).to_owned();
    let dlq_id = target_id(&t["Resources"][&queue_id]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
        .to_owned();
    let (table_id, _) = only(&t, "AWS::DynamoDB::Table");
    let (topic_id, topic) = only(&t, "AWS::SNS::Topic");
    let rules = of_type(&t, "AWS::Events::Rule");
    // The rule that feeds the queue (failures, drills) and the one that invokes the function with each
    // issuing call.
    let patterned: Vec<(&str, &Value)> = rules
        .iter()
        .copied()
        .filter(|(_, r)| r["Properties"].get("EventPattern").is_some())
        .collect();
    assert_eq!(patterned.len(), 2, "two rules with an event pattern");
    let schedules: Vec<(&str, &Value)> = rules
        .iter()
        .copied()
        .filter(|(_, r)| r["Properties"].get("ScheduleExpression").is_some())
        .collect();

    let table = deploy_table(c, &mut stack, table_id).await;
    deployed_types.insert("AWS::DynamoDB::Table");

    let topic_arn = c
        .sns
        .create_topic()
        .name(stack.physical_name(topic_id))
        .attributes(
            "DisplayName",
            topic["Properties"]["DisplayName"]
                .as_str()
                .unwrap_or("tokenwatch"),
        )
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    stack.account = topic_arn.split(':').nth(4).unwrap().to_owned();
    stack.deployed(
        topic_id,
        topic_arn.clone(),
        &[("TopicName", stack.physical_name(topic_id))],
    );
    deployed_types.insert("AWS::SNS::Topic");

    // The roles are not created (NOT_DEPLOYED), but the functions' environment may name one.
    for (role_id, role) in of_type(&t, "AWS::IAM::Role") {
        if !stack.holds(role) {
            continue;
        }
        let name = match &role["Properties"]["RoleName"] {
            Value::Null => stack.physical_name(role_id),
            given => stack.text(given),
        };
        let arn = format!("arn:aws:iam::{}:role/{name}", stack.account);
        stack.deployed(role_id, name, &[("Arn", arn)]);
    }

    let dead_letter_queue_url = deploy_queue(c, &mut stack, &dlq_id).await;
    let event_queue_url = deploy_queue(c, &mut stack, &queue_id).await;
    deployed_types.insert("AWS::SQS::Queue");

    let (function_name, log_group, memory_size) = deploy_function(c, &mut stack, function_id, endpoint).await;
    let (reporter, reporter_log_group, _) = deploy_function(c, &mut stack, reporter_id, endpoint).await;
    deployed_types.insert("AWS::Logs::LogGroup");
    deployed_types.insert("AWS::Serverless::Function");

    // The queue → function mapping (SAM's SQS event).
    let scaling = &queue_event["ScalingConfig"];
    let mut mapping = c
        .lambda
        .create_event_source_mapping()
        .function_name(&function_name)
        .event_source_arn(stack.attribute(&queue_id, "Arn"))
        .batch_size(queue_event["BatchSize"].as_i64().unwrap() as i32)
        .maximum_batching_window_in_seconds(
            queue_event["MaximumBatchingWindowInSeconds"].as_i64().unwrap() as i32
        )
        .enabled(true);
    for kind in queue_event["FunctionResponseTypes"].as_array().unwrap() {
        mapping = mapping.function_response_types(FunctionResponseType::from(kind.as_str().unwrap()));
    }
    if let Some(n) = scaling["MaximumConcurrency"].as_i64() {
        mapping = mapping.scaling_config(ScalingConfig::builder().maximum_concurrency(n as i32).build());
    }
    let mapping = mapping.send().await.unwrap().uuid.unwrap();

    // The rules with a pattern: each to its target (the queue, or the function invoked with the event).
    let source_prefix = format!("{}.", stack.name);
    let mut rules = Vec::new();
    for (rule_id, rule) in patterned {
        let rp = &rule["Properties"];
        assert_eq!(rp["State"], "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS");
        let mut pattern = rp["EventPattern"].clone();
        assert_eq!(
            prefix_aws_sources(&mut pattern, &source_prefix),
            1,
            "the pattern admits aws.* sources in one place: {pattern}"
        );
        let rule_name = stack.physical_name(rule_id);
        let rule_arn = c
            .events
            .put_rule()
            .name(&rule_name)
            .description(rp["Description"].as_str().unwrap_or_default())
            .event_pattern(pattern.to_string())
            // ministack never matches a rule in the template's state (docs/building.md).
            .state(RuleState::Enabled)
            .send()
            .await
            .unwrap()
            .rule_arn
            .unwrap();
        stack.deployed(rule_id, rule_name.clone(), &[("Arn", rule_arn)]);
        let mut target_ids = Vec::new();
        for target in rp["Targets"].as_array().unwrap() {
            let target = stack.resolve(target);
            let retry = &target["RetryPolicy"];
            let id = target["Id"].as_str().unwrap().to_owned();
            let built = Target::builder()
                .id(&id)
                .arn(target["Arn"].as_str().unwrap())
                .retry_policy(
                    RetryPolicy::builder()
                        .maximum_retry_attempts(retry["MaximumRetryAttempts"].as_i64().unwrap() as i32)
                        .maximum_event_age_in_seconds(
                            retry["MaximumEventAgeInSeconds"].as_i64().unwrap() as i32
                        )
                        .build(),
                )
                .dead_letter_config(
                    DeadLetterConfig::builder()
                        .arn(target["DeadLetterConfig"]["Arn"].as_str().unwrap())
                        .build(),
                )
                .build()
                .unwrap();
            let out = c
                .events
                .put_targets()
                .rule(&rule_name)
                .targets(built)
                .send()
                .await
                .unwrap();
            assert_eq!(out.failed_entry_count, 0, "{:?}", out.failed_entries);
            target_ids.push(id);
        }
        rules.push((rule_name, target_ids));
    }
    assert!(
        rules.len() == 2
            && stack.template["Resources"]
                .as_object()
                .unwrap()
                .values()
                .any(|r| r["Properties"]["EventPattern"]
                    .to_string()
                    .contains(&format!("\"{DRILL_SOURCE}\"")))
    );

    // The schedules (the detector's sweep, the reporter's digest) and their permissions to invoke.
    let mut schedule_arns = BTreeMap::new();
    for (schedule_id, schedule) in schedules {
        if !stack.holds(schedule) {
            continue;
        }
        let sp = &schedule["Properties"];
        let schedule_name = stack.physical_name(schedule_id);
        let schedule_arn = c
            .events
            .put_rule()
            .name(&schedule_name)
            .description(sp["Description"].as_str().unwrap_or_default())
            .schedule_expression(stack.text(&sp["ScheduleExpression"]))
            .state(RuleState::from(sp["State"].as_str().unwrap()))
            .send()
            .await
            .unwrap()
            .rule_arn
            .unwrap();
        stack.deployed(
            schedule_id,
            schedule_name.clone(),
            &[("Arn", schedule_arn.clone())],
        );
        let mut schedule_targets = Vec::new();
        for target in sp["Targets"].as_array().unwrap() {
            let target = stack.resolve(target);
            let id = target["Id"].as_str().unwrap().to_owned();
            let arn = target["Arn"].as_str().unwrap().to_owned();
            c.events
                .put_targets()
                .rule(&schedule_name)
                .targets(Target::builder().id(&id).arn(&arn).build().unwrap())
                .send()
                .await
                .unwrap();
            schedule_targets.push(id);
            schedule_arns.insert(arn, schedule_arn.clone());
        }
        rules.push((schedule_name, schedule_targets));
    }
    deployed_types.insert("AWS::Events::Rule");
    for (permission_id, permission) in of_type(&t, "AWS::Lambda::Permission") {
        if !stack.holds(permission) {
            continue;
        }
        let pp = stack.resolve(&permission["Properties"]);
        c.lambda
            .add_permission()
            .function_name(pp["FunctionName"].as_str().unwrap())
            .statement_id(permission_id)
            .action(pp["Action"].as_str().unwrap())
            .principal(pp["Principal"].as_str().unwrap())
            .source_arn(pp["SourceArn"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        stack.deployed(permission_id, permission_id.to_owned(), &[]);
    }
    deployed_types.insert("AWS::Lambda::Permission");
    let schedule_of = |function_id: &str| schedule_arns.get(&stack.attribute(function_id, "Arn")).cloned();
    let schedule_arn = schedule_of(function_id).expect("the sweep's schedule targets the detector");
    let digest_arn = schedule_of(reporter_id).expect("the digest's schedule targets the reporter");

    // Every resource type the template makes by default is deployed or has its reason not to be.
    let all: BTreeSet<&str> = t["Resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| stack.holds(r))
        .map(|r| r["Type"].as_str().unwrap())
        .collect();
    let skipped: BTreeSet<&str> = NOT_DEPLOYED.iter().map(|(kind, _)| *kind).collect();
    let unaccounted: Vec<&&str> = all
        .iter()
        .filter(|k| !deployed_types.contains(*k) && !skipped.contains(*k))
        .collect();
    assert!(
        unaccounted.is_empty(),
        "template resource types neither deployed nor in NOT_DEPLOYED: {unaccounted:?}"
    );
    // And of the types deployed, every resource is (unless its condition is off by default).
    let missed: Vec<&String> = t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(id, r)| {
            deployed_types.contains(r["Type"].as_str().unwrap())
                && stack.holds(r)
                && !stack.refs.contains_key(id.as_str())
        })
        .map(|(id, _)| id)
        .collect();
    assert!(
        missed.is_empty(),
        "resources of deployed types that this test does not deploy: {missed:?}"
    );

    Deployment {
        stack,
        function: function_name,
        log_group,
        reporter,
        reporter_log_group,
        table,
        event_queue_url,
        dead_letter_queue_url,
        mapping,
        rules,
        schedule_arn,
        digest_arn,
        source_prefix,
        memory_size,
    }
}

async fn tear_down(c: &Clients, d: &Deployment, alerts: &Subscriber) {
    let _ = c
        .lambda
        .delete_event_source_mapping()
        .uuid(&d.mapping)
        .send()
        .await;
    for (rule, targets) in &d.rules {
        let _ = c
            .events
            .remove_targets()
            .rule(rule)
            .set_ids(Some(targets.clone()))
            .send()
            .await;
        let _ = c.events.delete_rule().name(rule).send().await;
    }
    for (function, log_group) in [(&d.function, &d.log_group), (&d.reporter, &d.reporter_log_group)] {
        let _ = c.lambda.delete_function().function_name(function).send().await;
        let _ = c.logs.delete_log_group().log_group_name(log_group).send().await;
    }
    for url in [&d.event_queue_url, &d.dead_letter_queue_url, &alerts.queue.url] {
        let _ = c.sqs.delete_queue().queue_url(url).send().await;
    }
    let _ = c.sns.delete_topic().topic_arn(&alerts.topic_arn).send().await;
    let _ = c.dynamodb.delete_table().table_name(&d.table).send().await;
}

// -----------------------------------------------------------------------------------------------------
// Running it
// -----------------------------------------------------------------------------------------------------

/// Puts events on the default bus, ten per call, in order.
async fn put_events(c: &Clients, events: &[Value]) {
    use aws_sdk_eventbridge::primitives::DateTime;
    use aws_sdk_eventbridge::types::PutEventsRequestEntry;
    for chunk in events.chunks(10) {
        let entries: Vec<PutEventsRequestEntry> = chunk
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .source(e["source"].as_str().unwrap())
                    .detail_type(e["detail-type"].as_str().unwrap())
                    .detail(e["detail"].to_string())
                    .time(DateTime::from_secs(event_time(e)))
                    .build()
            })
            .collect();
        let out = c
            .events
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_entry_count, 0, "{:?}", out.entries);
    }
}

/// Messages in a queue: visible, in flight, delayed.
async fn queue_depth(c: &Clients, url: &str) -> [u64; 3] {
    let attributes = c
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    let n = |name: QueueAttributeName| attributes.get(&name).map_or(0, |v| v.parse().unwrap());
    [
        n(QueueAttributeName::ApproximateNumberOfMessages),
        n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        n(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
    ]
}

/// Waits until the function has taken every message off the event queue (a message is deleted only
/// after the invocation that got it succeeded for it); false if `within` passes first.
async fn drained(c: &Clients, url: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        // Delayed messages are re-checks of held pages, due at the end of their wait (minutes away when
        // the events are replayed at the current time): work scheduled for later, not work unfinished.
        if matches!(queue_depth(c, url).await, [0, 0, _]) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every line of the function's log group, oldest first.
async fn log_lines(c: &Clients, group: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut next = None;
    loop {
        let out = match c
            .logs
            .filter_log_events()
            .log_group_name(group)
            .set_next_token(next)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                lines.push(format!("(the log group could not be read: {e:?})"));
                return lines;
            }
        };
        let mut events = out.events.unwrap_or_default();
        events.sort_by_key(|e| e.timestamp.unwrap_or_default());
        lines.extend(events.into_iter().filter_map(|e| e.message));
        next = out.next_token;
        if next.is_none() {
            return lines;
        }
    }
}

/// Peak RSS (`VmHWM`, KiB) of each live process of the function: ministack keeps the bootstrap running
/// between invocations, one process per concurrent execution environment.
fn function_processes(function: &str) -> Vec<(u32, u64)> {
    let marker = format!("AWS_LAMBDA_FUNCTION_NAME={function}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !environ.split(|&b| b == 0).any(|v| v == marker.as_bytes()) {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        if let Some(hwm) = hwm {
            found.push((pid, hwm));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployed_detector_pages_once_per_incident_from_eventbridge_to_the_topic() {
    let endpoint = Emulator::Ministack.endpoint();
    let sdk = Emulator::Ministack.sdk().await;
    let c = Clients::new(&sdk);
    let started = Instant::now();
    let d = deploy(&c, &endpoint).await;
    let topic_arn = d.stack.reference(only(&d.stack.template, "AWS::SNS::Topic").0);
    // On-call's subscriptions: a pager's queue on the alert topic taking incidents, and a chat channel's
    // taking only the reporter's digests (filter policies on the `kind` attribute).
    let alerts = filtered_subscriber(&sdk, &topic_arn, INCIDENTS_FILTER).await;
    let digests = filtered_subscriber(&sdk, &topic_arn, DIGEST_FILTER).await;
    let store = DynamoStore::from_client(c.dynamodb.clone(), &d.table);
    eprintln!(
        "deployed stack {} (function {}) in {:.1} s",
        d.stack.name,
        d.function,
        started.elapsed().as_secs_f64()
    );

    let mut problems: Vec<String> = Vec::new();
    let mut report = Vec::new();
    for name in SCENARIOS {
        let dir = samples_dir().join(name);
        let mut events = current_events(&dir);
        for e in &mut events {
            let source = e["source"].as_str().unwrap();
            e["source"] = json!(format!("{}{source}", d.source_prefix));
        }
        let t = Instant::now();
        put_events(&c, &events).await;
        if !drained(&c, &d.event_queue_url, PROCESSING).await {
            problems.push(format!(
                "{name}: the event queue still holds {:?} (visible, in flight, delayed) after {PROCESSING:?}",
                queue_depth(&c, &d.event_queue_url).await
            ));
            break;
        }
        // The issuance rule invokes the function with each issuing call, beside the queue: each session
        // is in the table once its invocation ran.
        let issued: Vec<String> = events
            .iter()
            .filter(|e| {
                e["detail"]["eventSource"] == "sts.amazonaws.com" && e["detail"].get("errorCode").is_none()
            })
            .filter_map(|e| e["detail"]["responseElements"]["credentials"]["accessKeyId"].as_str())
            .map(str::to_owned)
            .collect();
        let deadline = Instant::now() + PROCESSING;
        let mut unrecorded = issued.clone();
        while !unrecorded.is_empty() && Instant::now() < deadline {
            let mut still = Vec::new();
            for key in unrecorded {
                if DynamoStore::from_client(c.dynamodb.clone(), &d.table)
                    .session(&key)
                    .await
                    .unwrap()
                    .is_none()
                {
                    still.push(key);
                }
            }
            unrecorded = still;
            if !unrecorded.is_empty() {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        if !unrecorded.is_empty() {
            problems.push(format!(
                "{name}: the issuing calls of {unrecorded:?} never reached the function"
            ));
        }
        report.push(format!(
            "{name}: {} issuing calls recorded",
            issued.len() - unrecorded.len()
        ));
        let want = expected_pages(&dir).len();
        let received = alerts.receive(want, Duration::from_secs(20)).await;
        let back: Vec<Alert> = received.iter().map(alert_of).collect();
        for r in &received {
            problems.extend(
                envelope_problems(r, &alerts.topic_arn)
                    .into_iter()
                    .map(|p| format!("{name}: {p}")),
            );
        }
        problems.extend(check_pages(&dir, &back));
        problems.extend(check_counts(&dir, &store).await);
        if received.len() != want {
            problems.push(format!(
                "{name}: {} messages, expected {want} open alerts: {:?}",
                received.len(),
                back.iter().map(|a| &a.subject).collect::<Vec<_>>()
            ));
        }
        report.push(format!(
            "{name}: {} events put, processed in {:.1} s, {} alerts: {:?}",
            events.len(),
            t.elapsed().as_secs_f64(),
            received.len(),
            back.iter().map(|a| &a.subject).collect::<Vec<_>>()
        ));
    }

    // A drill, with its real source: the template's pattern admits it as it is.
    let mut drill_group = BTreeSet::new();
    if problems.is_empty() {
        let now = wall_clock();
        let drill = drill_event("123456789012", "us-east-1", now);
        // Its group: the role that issued the session, and the session name (the ARN's last part).
        let identity = &drill["detail"]["userIdentity"];
        drill_group.insert((
            identity["sessionContext"]["sessionIssuer"]["arn"]
                .as_str()
                .unwrap()
                .to_owned(),
            identity["arn"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned(),
        ));
        let t = Instant::now();
        put_events(&c, std::slice::from_ref(&drill)).await;
        if !drained(&c, &d.event_queue_url, PROCESSING).await {
            problems.push("drill: the event queue did not drain".into());
        }
        let received = alerts.receive(1, Duration::from_secs(20)).await;
        let drill_pages: Vec<&Received> = received
            .iter()
            .filter(|r| {
                r.envelope["MessageAttributes"]["drill"]["Value"] == "true"
                    && r.envelope["MessageAttributes"]["kind"]["Value"] == "open"
                    && r.document()["drill"] == true
            })
            .collect();
        if received.len() != 1 || drill_pages.len() != 1 {
            problems.push(format!(
                "drill: expected one open drill alert, got {:?}",
                received.iter().map(|r| &r.envelope).collect::<Vec<_>>()
            ));
        }
        report.push(format!(
            "drill: processed in {:.1} s, {} alert: {:?}",
            t.elapsed().as_secs_f64(),
            received.len(),
            received
                .iter()
                .map(|r| &r.envelope["Subject"])
                .collect::<Vec<_>>()
        ));
    }

    // The sweep, invoked as the schedule invokes it: nothing is quiet for the cool-down yet and nothing
    // is held, so it pages nothing.
    if problems.is_empty() {
        let payload = json!({"version": "0", "id": "sweep-1", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": d.stack.account, "time": format_time(wall_clock()), "region": "us-east-1",
            "resources": [d.schedule_arn], "detail": {}});
        let (error, answer) = invoke(&c, &d.function, payload).await;
        if error.is_some() || answer != json!({"swept": true}) {
            problems.push(format!("sweep: {error:?} answered {answer}"));
        }
        let received = alerts.receive(0, Duration::from_secs(5)).await;
        if !received.is_empty() {
            problems.push(format!(
                "sweep: it published {:?}",
                received
                    .iter()
                    .map(|r| &r.envelope["Subject"])
                    .collect::<Vec<_>>()
            ));
        }
        report.push(format!("sweep: answered {answer}, {} alerts", received.len()));
    }

    // The reporter, asked directly as `aws lambda invoke --payload` asks it, then invoked as its schedule
    // invokes it. The events were moved to the last minutes, inside the default window of a day.
    if problems.is_empty() {
        let groups_of = |floor: Severity, verdict: Option<&str>| -> BTreeSet<(String, String)> {
            SCENARIOS
                .iter()
                .flat_map(|name| {
                    let path = samples_dir().join(name).join("expected.json");
                    let expected: Value =
                        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
                    expected["groups"].as_array().unwrap().clone()
                })
                .filter(|g| g["severity"].as_str().unwrap().parse::<Severity>().unwrap() >= floor)
                .filter(|g| verdict.is_none_or(|v| g["verdict"] == v))
                .map(|g| identity(&g))
                .collect()
        };
        // The synthetic drill paged; reports and the digest leave it out.
        let (error, all) = invoke(&c, &d.reporter, json!({})).await;
        if error.is_some()
            || listed(&all["groups"]) != groups_of(Severity::Info, None)
            || !listed(&all["groups"]).is_disjoint(&drill_group)
        {
            problems.push(format!("reporter {{}}: {error:?} {all}"));
        }
        let (error, stale) = invoke(&c, &d.reporter, json!({"since": "1h", "verdict": "stale-cache"})).await;
        if error.is_some() || listed(&stale["groups"]) != groups_of(Severity::Info, Some("stale-cache")) {
            problems.push(format!("reporter stale-cache: {error:?} {stale}"));
        }
        let (error, bad) = invoke(&c, &d.reporter, json!({"verdict": "stale"})).await;
        let message = bad["errorMessage"].as_str().unwrap_or_default();
        if error.is_none() || bad["errorType"] != "InvalidQuery" || !message.contains("stale") {
            problems.push(format!("reporter with a bad query: {error:?} {bad}"));
        }
        let payload = json!({"version": "0", "id": "digest-1", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": d.stack.account, "time": format_time(wall_clock()), "region": "us-east-1",
            "resources": [d.digest_arn], "detail": {}});
        let (error, answer) = invoke(&c, &d.reporter, payload).await;
        let want = groups_of(Severity::Low, None);
        if error.is_some() || answer["groups"] != want.len() {
            problems.push(format!(
                "digest: {error:?} answered {answer}, expected {} groups",
                want.len()
            ));
        }
        // The schedule itself may fire too (at 09:00 UTC): the digest of this invocation is the one with
        // its id, and whatever else arrives there is a digest.
        let received = digests.receive(1, Duration::from_secs(20)).await;
        let ours: Vec<&Received> = received
            .iter()
            .filter(|r| r.document()["alert_id"] == answer["published"])
            .collect();
        if ours.len() != 1
            || received.iter().any(|r| kind(r) != "digest")
            || listed(&ours[0].document()["groups"]) != want
        {
            problems.push(format!(
                "digest: expected one digest {} listing {want:?}, the digest subscription got {:?}",
                answer["published"],
                received.iter().map(|r| &r.envelope).collect::<Vec<_>>()
            ));
        }
        let paged = alerts.receive(0, Duration::from_secs(3)).await;
        if !paged.is_empty() {
            problems.push(format!(
                "the pager's subscription got {:?}",
                paged.iter().map(kind).collect::<Vec<_>>()
            ));
        }
        report.push(format!(
            "reporter: {} groups, {} stale-cache in the last hour; digest {} of {} groups received by its \
             subscription only",
            all["groups"].as_array().map_or(0, Vec::len),
            stale["groups"].as_array().map_or(0, Vec::len),
            answer["published"],
            answer["groups"]
        ));
    }

    let dead = queue_depth(&c, &d.dead_letter_queue_url).await;
    if dead != [0, 0, 0] {
        problems.push(format!("the dead-letter queue holds {dead:?}"));
    }

    // Memory: the live bootstrap processes' peak RSS; ministack's REPORT line is not about them.
    let processes = function_processes(&d.function);
    let lines = log_lines(&c, &d.log_group).await;
    let reports: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("REPORT RequestId:"))
        .collect();
    let reported_max = reports
        .iter()
        .filter_map(|l| l.split("Max Memory Used: ").nth(1))
        .filter_map(|v| v.trim_end_matches(" MB").trim().parse::<u64>().ok())
        .max();
    let peak_kib = processes.iter().map(|(_, hwm)| *hwm).max();
    report.push(format!(
        "{} invocations (REPORT lines in {}); REPORT \"Max Memory Used\" at most {reported_max:?} MB \
         (ministack reports getrusage(RUSAGE_CHILDREN) of its own process: finished children only, not the \
         live bootstrap); bootstrap processes (pid, VmHWM KiB): {processes:?}, peak RSS {:.1} MB of the \
         template's {} MB",
        reports.len(),
        d.log_group,
        peak_kib.unwrap_or_default() as f64 / 1024.0,
        d.memory_size
    ));
    if reports.is_empty() {
        problems.push(format!("no invocation logged in {}", d.log_group));
    }
    if let Some(kib) = peak_kib
        && kib > d.memory_size as u64 * 1024
    {
        problems.push(format!(
            "the function peaked at {:.1} MB, over its {} MB",
            kib as f64 / 1024.0,
            d.memory_size
        ));
    }
    report.push(format!("total {:.1} s", started.elapsed().as_secs_f64()));
    println!("{}", report.join("\n"));

    if !problems.is_empty() {
        eprintln!("--- {} ({} lines) ---", d.log_group, lines.len());
        for l in &lines {
            eprintln!("{l}");
        }
        panic!("\n{}", problems.join("\n"));
    }
    tear_down(&c, &d, &alerts).await;
    let _ = c.sqs.delete_queue().queue_url(&digests.queue.url).send().await;
}

/// What a subscription of the incident stream (pages, escalations, notices) filters on: every alert
/// kind but the digest.
const INCIDENTS_FILTER: &str = r#"{"kind": ["open", "escalation", "resolved"]}"#;

/// Invokes a function synchronously: its error type (`FunctionError`), if any, and the payload it
/// answered.
async fn invoke(c: &Clients, function: &str, payload: Value) -> (Option<String>, Value) {
    let out = c
        .lambda
        .invoke()
        .function_name(function)
        .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
        .send()
        .await
        .unwrap();
    let answer = serde_json::from_slice(out.payload.as_ref().map_or(&b"null"[..], |p| p.as_ref()))
        .unwrap_or(Value::Null);
    (out.function_error, answer)
}

#[test]
fn timestamps_move_in_their_own_format() {
    let cases = [
        ("2026-11-02T09:00:14Z", 3600, "2026-11-02T10:00:14Z"),
        ("20261102T080000Z", 86_400 + 1, "20261103T080001Z"),
        ("Nov 2, 2026, 9:00:00 AM", 4 * 3600, "Nov 2, 2026, 1:00:00 PM"),
        ("Nov 9, 2026 12:40:00 PM", 12 * 3600, "Nov 10, 2026 12:40:00 AM"),
        ("Nov 30, 2026, 11:59:59 PM", 1, "Dec 1, 2026, 12:00:00 AM"),
    ];
    for (before, delta, after) in cases {
        assert_eq!(shifted(before, delta).as_deref(), Some(after), "{before}");
    }
    for other in [
        "900",
        "1793999000",
        "arn:aws:iam::123456789012:role/x",
        "2026-11-02",
    ] {
        assert_eq!(shifted(other, 60), None, "{other}");
    }
    let mut pattern = json!({"detail-type": ["AWS API Call via CloudTrail"],
        "$or": [{"source": ["tokenwatch.drill"]}, {"source": [{"prefix": "aws."}], "detail": {"eventSource": [{"prefix": "aws."}]}}]});
    assert_eq!(prefix_aws_sources(&mut pattern, "x."), 1);
    assert_eq!(pattern["$or"][1]["source"], json!([{"prefix": "x.aws."}]));
    assert_eq!(
        pattern["$or"][1]["detail"]["eventSource"],
        json!([{"prefix": "aws."}])
    );
}
