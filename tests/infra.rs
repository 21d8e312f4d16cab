//! The SAM deployment (infra/), checked by reading it: least privilege, encryption, the dead-letter queue,
//! the rule state, the event source mapping and the function's environment; and the rule's event pattern,
//! installed on moto's EventBridge, letting through exactly the events the detector needs from every
//! sample, a drill and a set of look-alikes. The resource and trust policies are evaluated, as IAM would,
//! against the principals that matter (who may send to the queues, publish to the topic, use its key, put
//! events on the organization's bus, assume the drill and redrive roles), the digest-missing alarm over runs
//! of hours with and without a digest, and each check is shown to catch the template it guards against.
//!
//! The moto test needs `TOKENWATCH_MOTO_ENDPOINT` (`scripts/emulators.sh start`, then
//! `source target/emulators/env`) and fails without it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use tokenwatch_core::classify::is_expiry;
use tokenwatch_core::pipeline::DRILL_SOURCE;
use tokenwatch_testkit::{Emulator, Queue, scenarios, unique};

use crate::detector::scenario_events;

const READ_ONLY_TOO: &str = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS";
const ISSUING_CALLS: [&str; 5] = [
    "AssumeRole",
    "AssumeRoleWithSAML",
    "AssumeRoleWithWebIdentity",
    "GetSessionToken",
    "GetFederationToken",
];

/// Statements that must keep a `*` resource (or action): (template, resource, statement Sid, why).
const WILDCARD_RESOURCES: [(&str, &str, &str, &str); 11] = [
    (
        "template.yaml",
        "TopicKey",
        "AccountAdministersTheKey",
        "a key policy's Resource is always \"*\": it means this key",
    ),
    (
        "template.yaml",
        "TopicKey",
        "AlarmsPublishToTheEncryptedTopic",
        "a key policy's Resource is always \"*\": it means this key",
    ),
    (
        "template.yaml",
        "DrillRole",
        "ReadOnlyProbes",
        "the probes' list calls are authorised only on \"*\" (the actions: \
         the_drill_role_may_make_exactly_the_probe_calls)",
    ),
    (
        "template.yaml",
        "ScannerRole",
        "ReadTheTrailsLogFiles",
        "the trail's log files: every object of the trail bucket the parameter names",
    ),
    (
        "template.yaml",
        "LiveScanRole",
        "ReadTheTrailsLogFiles",
        "the trail's log files: objects under AWSLogs/ (below the trail's prefix) of the bucket the parameter names",
    ),
    (
        "template.yaml",
        "ScannerRole",
        "WritePartials",
        "the partials of runs: objects under tokenwatch-partials/ of the stack's own bucket",
    ),
    (
        "template.yaml",
        "BackfillStateMachineRole",
        "ReadTheManifest",
        "runs' manifests: objects under tokenwatch-partials/ of the stack's own bucket",
    ),
    (
        "template.yaml",
        "BackfillStateMachineRole",
        "RunTheScanner",
        "the scanner function and its versions",
    ),
    (
        "template.yaml",
        "BackfillStateMachineRole",
        "WatchItsOwnChildExecutions",
        "the executions of the stack's own state machine (a Distributed Map's children)",
    ),
    (
        "template.yaml",
        "BackfillStateMachineRole",
        "Logs",
        "vended log delivery is authorised only on \"*\" (the Step Functions documentation's policy)",
    ),
    (
        "template.yaml",
        "BackfillStateMachineRole",
        "Tracing",
        "X-Ray's calls are authorised only on \"*\"",
    ),
];

fn infra_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra")
}

/// A template as JSON, CloudFormation's short tags written out in their long form (`!Ref X` is
/// `{"Ref": "X"}`, `!GetAtt A.B` is `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` is `{"Fn::Sub": s}`, ...).
pub fn template(name: &str) -> Value {
    let text = std::fs::read_to_string(infra_dir().join(name)).unwrap();
    let yaml: serde_norway::Value = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    cfn_json(yaml)
}

fn cfn_json(v: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                json!(n.as_f64())
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(cfn_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match cfn_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, cfn_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = cfn_json(t.value);
            match tag {
                "Ref" | "Condition" => json!({ tag: inner }),
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (resource, attribute) = s.split_once('.').unwrap();
                        json!({ "Fn::GetAtt": [resource, attribute] })
                    }
                    other => json!({ "Fn::GetAtt": other }),
                },
                other => json!({ format!("Fn::{other}"): inner }),
            }
        }
    }
}

fn resources(t: &Value) -> &Map<String, Value> {
    t["Resources"].as_object().unwrap()
}

fn of_type<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

fn only<'a>(t: &'a Value, kind: &str) -> (&'a str, &'a Value) {
    let all = of_type(t, kind);
    assert_eq!(
        all.len(),
        1,
        "expected one {kind}: {:?}",
        all.iter().map(|(id, _)| id).collect::<Vec<_>>()
    );
    all[0]
}

fn get_att(resource: &str, attribute: &str) -> Value {
    json!({ "Fn::GetAtt": [resource, attribute] })
}

fn reference(resource: &str) -> Value {
    json!({ "Ref": resource })
}

fn as_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// The function, the queue that feeds it, the rule that feeds the queue (failures and drills) and the
/// rule that invokes the function with each issuing call.
struct Pipeline<'a> {
    function: (&'a str, &'a Value),
    queue: &'a str,
    rule: (&'a str, &'a Value),
    issuance: (&'a str, &'a Value),
}

fn pipeline(t: &Value) -> Pipeline<'_> {
    let fed = |f: &Value| {
        f["Properties"]["Events"]
            .as_object()
            .is_some_and(|events| events.values().any(|e| e["Type"] == "SQS"))
    };
    let detectors: Vec<(&str, &Value)> = of_type(t, "AWS::Serverless::Function")
        .into_iter()
        .filter(|(_, f)| fed(f))
        .collect();
    assert_eq!(detectors.len(), 1, "one function is fed by the queue");
    let function = detectors[0];
    let events = function.1["Properties"]["Events"].as_object().unwrap();
    let sqs: Vec<&Value> = events.values().filter(|e| e["Type"] == "SQS").collect();
    assert_eq!(sqs.len(), 1, "the function has one SQS event source");
    let queue = sqs[0]["Properties"]["Queue"]["Fn::GetAtt"][0].as_str().unwrap();
    let rules: Vec<(&str, &Value)> = of_type(t, "AWS::Events::Rule")
        .into_iter()
        .filter(|(_, r)| r["Properties"].get("EventPattern").is_some())
        .collect();
    assert_eq!(rules.len(), 2, "two rules with an event pattern");
    let targeting = |arn: Value| {
        let found: Vec<(&str, &Value)> = rules
            .iter()
            .copied()
            .filter(|(_, r)| {
                as_list(&r["Properties"]["Targets"])
                    .iter()
                    .all(|t| t["Arn"] == arn)
            })
            .collect();
        assert_eq!(found.len(), 1, "one rule targets {arn}");
        found[0]
    };
    Pipeline {
        function,
        queue,
        rule: targeting(get_att(queue, "Arn")),
        issuance: targeting(get_att(function.0, "Arn")),
    }
}

/// Every policy statement of a template, with the resource that holds it.
fn statements(t: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (id, r) in resources(t) {
        let p = &r["Properties"];
        let mut documents = Vec::new();
        match r["Type"].as_str().unwrap() {
            "AWS::IAM::Role" => {
                for policy in as_list(&p["Policies"]) {
                    documents.push(policy["PolicyDocument"].clone());
                }
                documents.push(p["AssumeRolePolicyDocument"].clone());
            }
            "AWS::IAM::Policy"
            | "AWS::IAM::ManagedPolicy"
            | "AWS::SQS::QueuePolicy"
            | "AWS::SNS::TopicPolicy" => documents.push(p["PolicyDocument"].clone()),
            "AWS::KMS::Key" => documents.push(p["KeyPolicy"].clone()),
            "AWS::Events::EventBusPolicy" => documents.push(json!({ "Statement": p["Statement"] })),
            _ => {}
        }
        for d in documents {
            for s in as_list(&d["Statement"]) {
                out.push((id.clone(), s));
            }
        }
    }
    out
}

#[test]
fn every_permission_names_its_resource() {
    for name in ["template.yaml", "forwarder.yaml"] {
        let t = template(name);
        let mut wildcards = Vec::new();
        for (id, s) in statements(&t) {
            let sid = s["Sid"].as_str().unwrap_or("");
            assert!(
                s.get("NotResource").is_none() && s.get("NotAction").is_none(),
                "{name} {id} {sid}: Not*"
            );
            let trust = s["Action"] == "sts:AssumeRole";
            if trust {
                continue;
            }
            let resource = &s["Resource"];
            assert!(
                !resource.is_null(),
                "{name} {id} {sid}: a statement without Resource"
            );
            let wild = as_list(resource).iter().any(|r| r.to_string().contains('*'));
            let wild_action = as_list(&s["Action"])
                .iter()
                .any(|a| a.as_str().is_some_and(|a| a == "*" || a.ends_with(":*")));
            if wild || wild_action {
                wildcards.push((id.clone(), sid.to_owned()));
            }
        }
        for (id, sid) in &wildcards {
            assert!(
                WILDCARD_RESOURCES
                    .iter()
                    .any(|(n, r, s, _)| *n == name && r == id && s == sid),
                "{name} {id} {sid}: a wildcard resource or action that is not justified in WILDCARD_RESOURCES"
            );
        }
        // Roles get their permissions inline, statement by statement: no managed policy (AWS's
        // AWSLambdaBasicExecutionRole grants logs on "*"), and SAM generates no role for the function.
        for (id, role) in of_type(&t, "AWS::IAM::Role") {
            assert!(
                role["Properties"].get("ManagedPolicyArns").is_none(),
                "{name} {id}: managed policy"
            );
        }
        for (id, f) in of_type(&t, "AWS::Serverless::Function") {
            assert!(
                f["Properties"].get("Role").is_some(),
                "{name} {id}: SAM would generate a role"
            );
            assert!(
                f["Properties"].get("Policies").is_none(),
                "{name} {id}: SAM policies"
            );
        }
        // A service may act only for this stack's own resource.
        for (id, s) in statements(&t) {
            let services = as_list(&s["Principal"]["Service"]);
            if s["Effect"] == "Allow" && !services.is_empty() && s["Action"] != "sts:AssumeRole" {
                let condition = s["Condition"].to_string();
                assert!(
                    condition.contains("aws:SourceArn") || condition.contains("aws:SourceAccount"),
                    "{name} {id} {}: a service principal without aws:SourceArn / aws:SourceAccount",
                    s["Sid"]
                );
            }
        }
        for (id, p) in of_type(&t, "AWS::Lambda::Permission") {
            assert!(
                p["Properties"].get("SourceArn").is_some(),
                "{name} {id}: no SourceArn"
            );
        }
    }
    // The justifications name statements that exist.
    let t = template("template.yaml");
    for (_, r, sid, why) in WILDCARD_RESOURCES {
        assert!(!why.is_empty());
        assert!(
            statements(&t).iter().any(|(id, s)| id == r && s["Sid"] == sid),
            "WILDCARD_RESOURCES names {r} {sid}, which is gone"
        );
    }
}

#[test]
fn the_detector_role_grants_exactly_what_the_function_calls() {
    let t = template("template.yaml");
    let p = pipeline(&t);
    let role = p.function.1["Properties"]["Role"]["Fn::GetAtt"][0]
        .as_str()
        .unwrap();
    let granted = grants(&t, role);
    let table = get_att("StateTable", "Arn").to_string();
    let index = json!({ "Fn::Sub": "${StateTable.Arn}/index/open-incidents" }).to_string();
    let queue = get_att(p.queue, "Arn").to_string();
    let dlq = get_att("DeadLetterQueue", "Arn").to_string();
    let expect: BTreeMap<&str, Vec<&String>> = BTreeMap::from([
        ("dynamodb:GetItem", vec![&table]),
        ("dynamodb:BatchGetItem", vec![&table]),
        ("dynamodb:PutItem", vec![&table]),
        ("dynamodb:UpdateItem", vec![&table]),
        // The sweep queries the open-incidents index, never the table.
        ("dynamodb:Query", vec![&index]),
        ("sqs:ReceiveMessage", vec![&queue]),
        ("sqs:DeleteMessage", vec![&queue]),
        ("sqs:ChangeMessageVisibility", vec![&queue]),
        ("sqs:GetQueueAttributes", vec![&queue]),
        // Re-checks of held pages to its own queue; an issuing call whose invocations all failed to
        // the dead-letter queue (Lambda sends it with the function's role).
        ("sqs:SendMessage", vec![&queue, &dlq]),
    ]);
    for (action, want) in &expect {
        let got = granted
            .get(*action)
            .unwrap_or_else(|| panic!("{action} is not granted"));
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, &want, "{action}");
    }
    assert_eq!(
        granted["sns:Publish"],
        BTreeSet::from([reference("AlertTopic").to_string()])
    );
    let actions: BTreeSet<&str> = granted.keys().map(String::as_str).collect();
    let known: BTreeSet<&str> = expect
        .keys()
        .copied()
        .chain([
            "sns:Publish",
            "kms:GenerateDataKey",
            "kms:Decrypt",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
        ])
        .collect();
    assert_eq!(
        actions, known,
        "the detector role grants an action nobody reviewed"
    );
}

#[test]
fn the_dead_letter_queue_is_wired() {
    let t = template("template.yaml");
    let p = pipeline(&t);
    let res = resources(&t);
    let queue = &res[p.queue]["Properties"];
    let dlq = queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        .as_str()
        .expect("the event queue redrives to a queue of this stack");
    assert_ne!(dlq, p.queue);
    assert_eq!(res[dlq]["Type"], "AWS::SQS::Queue");
    let receives = queue["RedrivePolicy"]["maxReceiveCount"].as_i64().unwrap();
    assert!((2..=10).contains(&receives), "maxReceiveCount {receives}");
    // The DLQ keeps a message longer than the queue did (retention counts from the first send).
    let retention = |q: &Value| q["MessageRetentionPeriod"].as_i64().unwrap_or(345_600);
    assert!(retention(&res[dlq]["Properties"]) > retention(queue));
    assert_eq!(retention(&res[dlq]["Properties"]), 1_209_600);
    // Lambda's guidance: visibility timeout ≥ 6 × function timeout (+ batching window).
    let timeout = p.function.1["Properties"]["Timeout"].as_i64().unwrap();
    assert!(queue["VisibilityTimeout"].as_i64().unwrap() >= 6 * timeout);
    // Events EventBridge fails to deliver go there too, from either rule, and the rule may send to both
    // queues, nobody else.
    let target = &p.rule.1["Properties"]["Targets"][0];
    assert_eq!(target["Arn"], get_att(p.queue, "Arn"));
    assert_eq!(target["DeadLetterConfig"]["Arn"], get_att(dlq, "Arn"));
    let direct = &p.issuance.1["Properties"]["Targets"][0];
    assert_eq!(direct["Arn"], get_att(p.function.0, "Arn"));
    assert_eq!(direct["DeadLetterConfig"]["Arn"], get_att(dlq, "Arn"));
    assert_eq!(direct["RetryPolicy"]["MaximumEventAgeInSeconds"], 86_400);
    // An issuing call whose handling failed: Lambda tries it again, then dead-letters it there too.
    let f = &p.function.1["Properties"];
    assert_eq!(
        f["DeadLetterQueue"],
        json!({"Type": "SQS", "TargetArn": get_att(dlq, "Arn")})
    );
    assert!(f["EventInvokeConfig"]["MaximumRetryAttempts"].as_i64().unwrap() >= 1);
    assert!(
        f["EventInvokeConfig"]["MaximumEventAgeInSeconds"]
            .as_i64()
            .unwrap()
            >= 3600
    );
    for q in [p.queue, dlq] {
        let policies: Vec<&Value> = of_type(&t, "AWS::SQS::QueuePolicy")
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| as_list(&r["Properties"]["Queues"]).contains(&reference(q)))
            .collect();
        assert_eq!(policies.len(), 1, "{q} has one queue policy");
        let s: Vec<Value> = as_list(&policies[0]["Properties"]["PolicyDocument"]["Statement"])
            .into_iter()
            .filter(|s| s["Effect"] == "Allow")
            .collect();
        assert_eq!(s.len(), 1, "{q}: only the rules are granted");
        assert_eq!(s[0]["Principal"], json!({"Service": "events.amazonaws.com"}));
        assert_eq!(s[0]["Action"], "sqs:SendMessage");
        assert_eq!(s[0]["Resource"], get_att(q, "Arn"));
        let rules = if q == dlq {
            json!([get_att(p.rule.0, "Arn"), get_att(p.issuance.0, "Arn")])
        } else {
            get_att(p.rule.0, "Arn")
        };
        assert_eq!(s[0]["Condition"]["ArnEquals"]["aws:SourceArn"], rules);
    }
    // And someone hears about it.
    let alarms = of_type(&t, "AWS::CloudWatch::Alarm");
    let depth = alarms
        .iter()
        .find(|(_, a)| a["Properties"]["Dimensions"][0]["Value"] == get_att(dlq, "QueueName"))
        .expect("an alarm on the dead-letter queue");
    assert_eq!(
        depth.1["Properties"]["MetricName"],
        "ApproximateNumberOfMessagesVisible"
    );
    assert_eq!(depth.1["Properties"]["Namespace"], "AWS/SQS");
}

#[test]
fn the_table_the_topic_and_the_queues_are_encrypted() {
    let t = template("template.yaml");
    for (id, table) in of_type(&t, "AWS::DynamoDB::Table") {
        let p = &table["Properties"];
        assert_eq!(p["SSESpecification"]["SSEEnabled"], true, "{id}");
        assert_eq!(
            p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true,
            "{id}"
        );
        assert_eq!(p["BillingMode"], "PAY_PER_REQUEST", "{id}");
        assert_eq!(
            p["TimeToLiveSpecification"],
            json!({"AttributeName": "expires_at", "Enabled": true})
        );
        // The design crates/aws writes to.
        assert_eq!(
            p["KeySchema"],
            json!([{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
        );
        assert_eq!(p["GlobalSecondaryIndexes"][0]["IndexName"], "open-incidents");
        assert_eq!(
            p["GlobalSecondaryIndexes"][0]["KeySchema"],
            json!([{"AttributeName": "open", "KeyType": "HASH"}])
        );
        assert_eq!(
            p["GlobalSecondaryIndexes"][0]["Projection"]["ProjectionType"],
            "ALL"
        );
    }
    for (id, topic) in of_type(&t, "AWS::SNS::Topic") {
        let key = &topic["Properties"]["KmsMasterKeyId"];
        assert!(!key.is_null(), "{id} is not encrypted");
        let key_id = key["Fn::GetAtt"][0].as_str().or(key["Ref"].as_str()).unwrap();
        assert_eq!(resources(&t)[key_id]["Type"], "AWS::KMS::Key");
        assert_eq!(resources(&t)[key_id]["Properties"]["EnableKeyRotation"], true);
    }
    let queues = of_type(&t, "AWS::SQS::Queue");
    assert_eq!(queues.len(), 2);
    let forwarder = template("forwarder.yaml");
    let forwarder_queues = of_type(&forwarder, "AWS::SQS::Queue");
    assert_eq!(forwarder_queues.len(), 1);
    for (id, q) in queues.into_iter().chain(forwarder_queues) {
        let p = &q["Properties"];
        assert!(
            p["SqsManagedSseEnabled"] == true || !p["KmsMasterKeyId"].is_null(),
            "{id} is not encrypted"
        );
    }
}

#[test]
fn the_rule_sees_read_only_calls_and_the_forwarder_forwards_the_same_events() {
    let t = template("template.yaml");
    let p = pipeline(&t);
    assert_eq!(p.rule.1["Properties"]["State"], READ_ONLY_TOO);
    assert_eq!(p.issuance.1["Properties"]["State"], READ_ONLY_TOO);
    let pattern = union(
        &p.rule.1["Properties"]["EventPattern"],
        &p.issuance.1["Properties"]["EventPattern"],
    );
    let f = template("forwarder.yaml");
    let (_, forwarder) = only(&f, "AWS::Events::Rule");
    assert_eq!(forwarder["Properties"]["State"], READ_ONLY_TOO);
    assert_eq!(
        forwarder["Properties"]["EventPattern"], pattern,
        "forwarder.yaml's pattern is not the two rules' together"
    );
    let target = &forwarder["Properties"]["Targets"][0];
    assert!(target["Arn"].to_string().contains(":event-bus/default"));
    assert!(target["RoleArn"].to_string().contains("ForwarderRole"));
}

/// The pattern that matches what either rule matches, written as the forwarder's rule has it: the
/// issuance rule's `detail` one more alternative of the detector rule's AWS-source `detail`. Panics when
/// the two differ anywhere else (their `detail-type`, the issuance rule's source).
fn union(detector: &Value, issuance: &Value) -> Value {
    assert_eq!(detector["detail-type"], issuance["detail-type"]);
    assert_eq!(issuance["source"], json!([{"prefix": "aws."}]));
    let mut both = detector.clone();
    let aws = both["$or"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|b| b["source"] == issuance["source"])
        .expect("the detector rule's AWS branch");
    aws["detail"]["$or"]
        .as_array_mut()
        .unwrap()
        .push(issuance["detail"].clone());
    both
}

#[test]
fn the_queue_feeds_the_function_in_batches_and_retries_only_failed_messages() {
    let t = template("template.yaml");
    let p = pipeline(&t);
    let props = &p.function.1["Properties"];
    let event = props["Events"]
        .as_object()
        .unwrap()
        .values()
        .find(|e| e["Type"] == "SQS")
        .unwrap();
    let e = &event["Properties"];
    assert_eq!(e["FunctionResponseTypes"], json!(["ReportBatchItemFailures"]));
    let batch = e["BatchSize"].as_i64().unwrap();
    assert!(batch > 10, "storms are batched");
    // SQS rejects a batch size over 10 without a batching window.
    assert!(e["MaximumBatchingWindowInSeconds"].as_i64().unwrap() >= 1);
    assert_eq!(props["Runtime"], "provided.al2023");
    assert_eq!(props["Architectures"], json!(["arm64"]));
    assert!(props["MemorySize"].as_i64().unwrap() <= 256);
    assert_eq!(props["LoggingConfig"]["LogFormat"], "JSON");
    let log_group = props["LoggingConfig"]["LogGroup"]["Ref"].as_str().unwrap();
    assert!(resources(&t)[log_group]["Properties"]["RetentionInDays"].is_object());
    // The sweep: every five minutes, and only that schedule may invoke the function.
    let schedules = schedules_of(&t, p.function.0);
    assert_eq!(schedules.len(), 1);
    let (schedule, rule) = schedules[0];
    assert_eq!(rule["Properties"]["ScheduleExpression"], "rate(5 minutes)");
    assert!(rule.get("Condition").is_none(), "the sweep always runs");
    // Only that schedule and the issuance rule may invoke the function.
    let permissions = permissions_of(&t, p.function.0);
    let sources: BTreeSet<String> = permissions
        .iter()
        .map(|permission| {
            assert_eq!(permission["Properties"]["Principal"], "events.amazonaws.com");
            permission["Properties"]["SourceArn"].to_string()
        })
        .collect();
    assert_eq!(
        sources,
        BTreeSet::from([
            get_att(schedule, "Arn").to_string(),
            get_att(p.issuance.0, "Arn").to_string()
        ]),
        "two permissions to invoke the detector"
    );
}

/// The schedule rules whose target is `function`.
fn schedules_of<'a>(t: &'a Value, function: &str) -> Vec<(&'a str, &'a Value)> {
    of_type(t, "AWS::Events::Rule")
        .into_iter()
        .filter(|(_, r)| r["Properties"].get("ScheduleExpression").is_some())
        .filter(|(_, r)| {
            as_list(&r["Properties"]["Targets"])
                .iter()
                .any(|target| target["Arn"] == get_att(function, "Arn"))
        })
        .collect()
}

/// The invoke permissions of `function`.
fn permissions_of<'a>(t: &'a Value, function: &str) -> Vec<&'a Value> {
    of_type(t, "AWS::Lambda::Permission")
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| p["Properties"]["FunctionName"] == reference(function))
        .collect()
}

/// The actions a role grants, each with the resources it is granted on.
fn grants(t: &Value, role: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut granted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, s) in statements(t) {
        if id != role || s["Action"] == "sts:AssumeRole" {
            continue;
        }
        assert_eq!(s["Effect"], "Allow");
        for a in as_list(&s["Action"]) {
            for r in as_list(&s["Resource"]) {
                granted
                    .entry(a.as_str().unwrap().to_owned())
                    .or_default()
                    .insert(r.to_string());
            }
        }
    }
    granted
}

/// The function that is not fed by the queue and is not the back-fill's scanner: the reporter.
fn reporter(t: &Value) -> (&str, &Value) {
    let detector = pipeline(t).function.0;
    let others: Vec<(&str, &Value)> = of_type(t, "AWS::Serverless::Function")
        .into_iter()
        .filter(|(id, _)| *id != detector && *id != "ScannerFunction" && *id != "LiveScanFunction")
        .collect();
    assert_eq!(others.len(), 1, "the detector and the reporter");
    others[0]
}

#[test]
fn the_reporter_only_reads_the_table_and_publishes_to_the_topic() {
    let t = template("template.yaml");
    let (function, f) = reporter(&t);
    let role = f["Properties"]["Role"]["Fn::GetAtt"][0].as_str().unwrap();
    assert_ne!(
        role,
        pipeline(&t).function.1["Properties"]["Role"]["Fn::GetAtt"][0],
        "a role of its own"
    );
    let granted = grants(&t, role);
    let table = get_att("StateTable", "Arn").to_string();
    let log_group = f["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        .as_str()
        .unwrap();
    let key = get_att("TopicKey", "Arn").to_string();
    let set = |items: &[&String]| -> BTreeSet<String> { items.iter().map(|s| s.to_string()).collect() };
    let expect: BTreeMap<&str, BTreeSet<String>> = BTreeMap::from([
        // A report scans the groups and gets the failing sessions; it queries nothing.
        ("dynamodb:Scan", set(&[&table])),
        ("dynamodb:GetItem", set(&[&table])),
        ("sns:Publish", set(&[&reference("AlertTopic").to_string()])),
        ("kms:GenerateDataKey", set(&[&key])),
        ("kms:Decrypt", set(&[&key])),
        (
            "logs:CreateLogStream",
            set(&[&get_att(log_group, "Arn").to_string()]),
        ),
        (
            "logs:PutLogEvents",
            set(&[&get_att(log_group, "Arn").to_string()]),
        ),
    ]);
    let got: BTreeMap<&str, BTreeSet<String>> =
        granted.iter().map(|(a, r)| (a.as_str(), r.clone())).collect();
    assert_eq!(got, expect, "the reporter role grants exactly this");
    for (action, resources) in &granted {
        assert!(
            !action.starts_with("dynamodb:")
                || ["dynamodb:Scan", "dynamodb:GetItem"].contains(&action.as_str()),
            "{action}: the reporter never writes"
        );
        assert!(
            resources.iter().all(|r| !r.contains('*')),
            "{action} on {resources:?}"
        );
    }
    // KMS only through SNS, as the detector's.
    let kms = statements(&t)
        .into_iter()
        .find(|(id, s)| id == role && s["Action"].to_string().contains("kms:"))
        .unwrap()
        .1;
    assert_eq!(
        kms["Condition"]["StringEquals"]["kms:ViaService"],
        json!({"Fn::Sub": "sns.${AWS::Region}.amazonaws.com"})
    );

    // The digest: a schedule of the DigestSchedule parameter that targets it, turned off with the parameter.
    let schedules = schedules_of(&t, function);
    assert_eq!(schedules.len(), 1, "one digest schedule");
    let (schedule, rule) = schedules[0];
    assert_eq!(
        rule["Properties"]["ScheduleExpression"],
        reference("DigestSchedule")
    );
    let condition = rule["Condition"].as_str().expect("the digest can be turned off");
    assert_eq!(
        t["Conditions"][condition],
        json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "DigestSchedule"}, ""]}]})
    );
    let permissions = permissions_of(&t, function);
    assert_eq!(permissions.len(), 1);
    assert_eq!(permissions[0]["Condition"], condition);
    assert_eq!(
        permissions[0]["Properties"]["SourceArn"],
        get_att(schedule, "Arn")
    );
    assert_eq!(permissions[0]["Properties"]["Principal"], "events.amazonaws.com");
    // No other event source: it is invoked by its schedule and by people.
    assert!(f["Properties"].get("Events").is_none());
    let p = &f["Properties"];
    assert_eq!(p["Runtime"], "provided.al2023");
    assert_eq!(p["Architectures"], json!(["arm64"]));
    assert_eq!(p["LoggingConfig"]["LogFormat"], "JSON");
    assert!(resources(&t)[log_group]["Properties"]["RetentionInDays"].is_object());
    assert_eq!(t["Outputs"]["ReporterFunctionName"]["Value"], reference(function));
    // A failed digest alarms to the topic (a digest that stops arriving is otherwise noticed late); its
    // Errors do not, because a mistyped query is one.
    let alarms = of_type(&t, "AWS::CloudWatch::Alarm");
    assert!(
        alarms
            .iter()
            .any(|(_, a)| a["Properties"]["Namespace"] == "tokenwatch"
                && a["Properties"]["MetricName"] == "DigestsFailed"),
        "an alarm on failed digests"
    );
    assert!(
        !alarms
            .iter()
            .any(|(_, a)| a["Properties"]["Dimensions"][0]["Value"] == reference(function)),
        "no alarm on the reporter's own errors"
    );
    let reporter_source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions/reporter/src/lib.rs"),
    )
    .unwrap();
    assert!(
        reporter_source.contains("\"DigestsFailed\""),
        "the reporter emits the alarm's metric"
    );
}

/// `pub const NAME: &str = "VALUE";` in a function crate's src/config.rs.
/// The variables a function's `config.rs` declares, and those it re-exports from the variables both
/// functions share (`tokenwatch_process::env`, where each is a constant named as its variable).
fn config_variables(crate_dir: &Path) -> BTreeSet<String> {
    let source = std::fs::read_to_string(crate_dir.join("src/config.rs")).unwrap();
    let own = regex::Regex::new(r#"(?m)^pub const [A-Z_]+: &str = "([A-Z_]+)";"#).unwrap();
    let shared = regex::Regex::new(r"(?m)^pub use tokenwatch_process::env::\{([^}]*)\};").unwrap();
    let mut read: BTreeSet<String> = own.captures_iter(&source).map(|c| c[1].to_owned()).collect();
    for list in shared.captures_iter(&source) {
        read.extend(
            list[1]
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
                .map(str::to_owned),
        );
    }
    read
}

/// The trail scan is the scanner in live mode: its variables are those of functions/scanner/src/live.rs and
/// the detector's (a missed failure is decided by the detector's rules, with the detector's values), but
/// the re-check queue (held pages wait for the sweep), and the back-fill's trail bucket and downloads.
fn live_scan_environment(function: &Value) {
    let props = &function["Properties"];
    let vars = &props["Environment"]["Variables"];
    let set: BTreeSet<String> = vars.as_object().unwrap().keys().cloned().collect();
    let scanner = infra_dir().join(props["CodeUri"].as_str().unwrap());
    let source = std::fs::read_to_string(scanner.join("src/live.rs")).unwrap();
    let own = regex::Regex::new(r#"(?m)^pub const [A-Z_]+: &str = "([A-Z_]+)";"#).unwrap();
    let mut want: BTreeSet<String> = own.captures_iter(&source).map(|c| c[1].to_owned()).collect();
    assert!(
        want.contains("SCAN_MODE") && want.contains("LIVE_SPAN"),
        "{want:?}"
    );
    want.extend(config_variables(&infra_dir().join("../functions/detector")));
    want.extend(["TRAIL_BUCKET".to_owned(), "DOWNLOADS".to_owned()]);
    for not_set in ["AWS_REGION", "RECHECK_QUEUE_URL"] {
        want.remove(not_set);
    }
    assert_eq!(
        set, want,
        "LiveScanFunction: template variables vs live.rs and the detector's"
    );
    assert_eq!(vars["SCAN_MODE"], "live");
    assert_eq!(vars["TABLE_NAME"], reference("StateTable"));
    assert_eq!(vars["TOPIC_ARN"], reference("AlertTopic"));
    // The same paging rules as the detector's.
    let detector =
        &template("template.yaml")["Resources"]["DetectorFunction"]["Properties"]["Environment"]["Variables"];
    for shared in [
        "MIN_SEVERITY",
        "COOLDOWN",
        "SUPPRESSIONS",
        "ALERT_FORMAT",
        "RUNBOOK_URL",
        "DRILL_ROLE_ARN",
        "DRILL_ACCOUNTS",
    ] {
        assert_eq!(vars[shared], detector[shared], "{shared}");
    }
    assert_eq!(function["Condition"], "LiveScans");
}

#[test]
fn each_function_environment_is_what_its_configuration_reads() {
    let t = template("template.yaml");
    let functions = of_type(&t, "AWS::Serverless::Function");
    assert_eq!(
        functions.len(),
        4,
        "the detector, the reporter, the back-fill's scanner and the trail scan"
    );
    for (id, function) in functions {
        let props = &function["Properties"];
        if id == "LiveScanFunction" {
            live_scan_environment(function);
            continue;
        }
        let set: BTreeSet<String> = props["Environment"]["Variables"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let code = infra_dir().join(props["CodeUri"].as_str().unwrap());
        let read = config_variables(&code);
        // The scanner reads the trail and writes partials: no state table, no topic.
        let scanner = id == "ScannerFunction";
        assert!(
            if scanner {
                read.contains("TRAIL_BUCKET") && read.contains("PARTIALS_BUCKET")
            } else {
                read.contains("TABLE_NAME") && read.contains("TOPIC_ARN")
            },
            "{id}: config.rs was not understood: {read:?}"
        );
        // The Lambda runtime sets AWS_REGION (and reserves it).
        let by_runtime = BTreeSet::from(["AWS_REGION".to_owned()]);
        let want: BTreeSet<String> = read.difference(&by_runtime).cloned().collect();
        assert_eq!(set, want, "{id}: template variables vs config.rs constants");
        let vars = &props["Environment"]["Variables"];
        if scanner {
            assert_eq!(vars["PARTIALS_BUCKET"], reference("BackfillBucket"), "{id}");
        } else {
            assert_eq!(vars["TABLE_NAME"], reference("StateTable"), "{id}");
            assert_eq!(vars["TOPIC_ARN"], reference("AlertTopic"), "{id}");
        }
        // The build: the crate the template points at, and its binary.
        let manifest = std::fs::read_to_string(code.join("Cargo.toml")).unwrap();
        let binary = function["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap();
        assert!(
            manifest.contains(&format!("name = \"{binary}\"")),
            "{id}: {binary} is not the crate's binary"
        );
        assert_eq!(function["Metadata"]["BuildMethod"], "rust-cargolambda", "{id}");
    }
}

#[test]
fn parameters_are_described_and_default_to_safe_values() {
    for name in ["template.yaml", "forwarder.yaml"] {
        let t = template(name);
        for (id, param) in t["Parameters"].as_object().unwrap() {
            let description = param["Description"].as_str().unwrap_or("");
            assert!(description.len() > 20, "{name} {id}: no description");
            let Some(default) = param.get("Default") else {
                // Only where no default can be right: the main region a forwarder sends to.
                assert_eq!((name, id.as_str()), ("forwarder.yaml", "MainRegion"));
                continue;
            };
            let default = match default {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if let Some(allowed) = param["AllowedValues"].as_array() {
                assert!(
                    allowed
                        .iter()
                        .any(|a| a.as_str().map(str::to_owned).unwrap_or(a.to_string()) == default),
                    "{name} {id}: default {default:?} is not an allowed value"
                );
            }
            if let Some(pattern) = param["AllowedPattern"].as_str() {
                let re = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
                assert!(
                    re.is_match(&default),
                    "{name} {id}: default {default:?} fails {pattern}"
                );
            }
        }
    }
    let t = template("template.yaml");
    let defaults: BTreeMap<&str, &Value> = t["Parameters"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), &v["Default"]))
        .collect();
    assert_eq!(defaults["MinSeverity"], "low");
    assert_eq!(defaults["Cooldown"], "1h");
    assert_eq!(defaults["Suppressions"], "[]");
    assert_eq!(defaults["AlertFormat"], "standard");
    assert_eq!(defaults["RunbookUrl"], "", "no runbook link unless given one");
    let runbook = regex::Regex::new(&format!(
        "^(?:{})$",
        t["Parameters"]["RunbookUrl"]["AllowedPattern"].as_str().unwrap()
    ))
    .unwrap();
    assert!(runbook.is_match("https://wiki.example.com/tokenwatch/{verdict}"));
    assert!(!runbook.is_match("http://wiki.example.com/{verdict}") && !runbook.is_match("https://a b"));
    assert_eq!(defaults["AlertEmail"], "");
    assert_eq!(defaults["AlertHttpsEndpoint"], "");
    assert_eq!(defaults["ForwarderOrganizationId"], "");
    assert_eq!(
        defaults["DrillAccounts"], "",
        "drills of the stack's own account only"
    );
    assert_eq!(defaults["DigestSchedule"], "cron(0 9 * * ? *)");
    assert_eq!(defaults["DigestSince"], "24h");
    assert_eq!(defaults["DigestMinSeverity"], "low");
    for wanted in [
        "MinSeverity",
        "Cooldown",
        "Suppressions",
        "AlertFormat",
        "LogRetentionDays",
    ] {
        assert!(defaults.contains_key(wanted), "{wanted}");
    }
}

#[test]
fn only_the_functions_and_the_stack_alarms_publish_to_the_topic() {
    let t = template("template.yaml");
    let (topic, _) = only(&t, "AWS::SNS::Topic");
    let (_, policy) = only(&t, "AWS::SNS::TopicPolicy");
    let s = as_list(&policy["Properties"]["PolicyDocument"]["Statement"]);
    let allows: Vec<&Value> = s.iter().filter(|s| s["Effect"] == "Allow").collect();
    assert_eq!(allows.len(), 2);
    let live_scan = json!({"Fn::If": ["LiveScans", get_att("LiveScanRole", "Arn"), {"Ref": "AWS::NoValue"}]});
    let roles = json!([
        get_att("DetectorRole", "Arn"),
        get_att("ReporterRole", "Arn"),
        live_scan
    ]);
    assert_eq!(allows[0]["Principal"]["AWS"], roles);
    assert_eq!(allows[1]["Principal"]["Service"], "cloudwatch.amazonaws.com");
    let deny = s
        .iter()
        .find(|s| s["Effect"] == "Deny")
        .expect("a deny for everyone else");
    assert_eq!(deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"], roles);
    // Each function's role is one of them, but the back-fill's scanner's, which publishes nothing.
    for (id, f) in of_type(&t, "AWS::Serverless::Function") {
        if id == "ScannerFunction" {
            continue;
        }
        let role = get_att(f["Properties"]["Role"]["Fn::GetAtt"][0].as_str().unwrap(), "Arn");
        if id == "LiveScanFunction" {
            // Its role exists only with the trail scan, and is listed only then.
            assert_eq!(live_scan["Fn::If"][1], role, "{id}");
            assert_eq!(f["Condition"], live_scan["Fn::If"][0], "{id}");
            continue;
        }
        assert!(roles.as_array().unwrap().contains(&role), "{id}");
    }
    for s in &s {
        assert_eq!(s["Action"], "sns:Publish");
        assert_eq!(s["Resource"], reference(topic));
    }
    // Errors, throttles and dead letters alarm to the topic; its ARN is an output.
    let alarms = of_type(&t, "AWS::CloudWatch::Alarm");
    let metrics: BTreeSet<&str> = alarms
        .iter()
        .map(|(_, a)| a["Properties"]["MetricName"].as_str().unwrap())
        .collect();
    assert_eq!(
        metrics,
        BTreeSet::from([
            "Errors",
            "Throttles",
            "ApproximateNumberOfMessagesVisible",
            "DigestsFailed",
            "DigestsPublished",
            "PermanentFaults"
        ])
    );
    for (id, a) in &alarms {
        assert_eq!(a["Properties"]["AlarmActions"], json!([reference(topic)]), "{id}");
        let name = a["Properties"]["AlarmName"]["Fn::Sub"].as_str().unwrap();
        assert!(
            name.starts_with("${AWS::StackName}-"),
            "{id}: the key policy admits the stack's alarms by name"
        );
    }
    assert_eq!(t["Outputs"]["AlertTopicArn"]["Value"], reference(topic));
}

// -----------------------------------------------------------------------------------------------------
// The event pattern on a local EventBridge (moto)
// -----------------------------------------------------------------------------------------------------

/// Does the detector need this event? The engine's own expiry rule (docs/rules.md), successful STS
/// issuing calls, and drills; only CloudTrail API-call events, and only from AWS or the drill.
fn needed(event: &Value) -> bool {
    if event["detail-type"] != "AWS API Call via CloudTrail" {
        return false;
    }
    let source = event["source"].as_str().unwrap_or("");
    if source == DRILL_SOURCE {
        return true;
    }
    if !source.starts_with("aws.") {
        return false;
    }
    let d = &event["detail"];
    let failure = is_expiry(d["errorCode"].as_str(), d["errorMessage"].as_str());
    let issuance = d["eventSource"] == "sts.amazonaws.com"
        && ISSUING_CALLS.contains(&d["eventName"].as_str().unwrap_or(""))
        && d.get("errorCode").is_none();
    failure || issuance
}

/// The bundled events (infra/pattern-events.json, which `tokenwatch doctor` also tests the deployed rule
/// with): healthy traffic, look-alikes and every expiry-family shape, each marked whether the rule must
/// match it.
fn pattern_events() -> (Value, Vec<(String, bool, Value)>) {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(infra_dir().join("pattern-events.json")).unwrap())
            .unwrap();
    let events = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["match"].as_bool().unwrap(),
                e["event"].clone(),
            )
        })
        .collect();
    (doc["pattern"].clone(), events)
}

/// The bundled patterns of the stack's two rules, by resource id.
fn bundled_rules() -> Value {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(infra_dir().join("pattern-events.json")).unwrap())
            .unwrap();
    doc["rules"].clone()
}

#[test]
fn the_bundled_events_are_the_rule_s_own_and_marked_as_the_detector_needs_them() {
    let (pattern, events) = pattern_events();
    let t = template("template.yaml");
    let p = pipeline(&t);
    let rules = bundled_rules();
    assert_eq!(
        rules["DetectorRule"], p.rule.1["Properties"]["EventPattern"],
        "infra/pattern-events.json holds the template's detector rule"
    );
    assert_eq!(
        rules["IssuanceRule"], p.issuance.1["Properties"]["EventPattern"],
        "infra/pattern-events.json holds the template's issuance rule"
    );
    assert_eq!(
        pattern,
        union(&rules["DetectorRule"], &rules["IssuanceRule"]),
        "infra/pattern-events.json's pattern is the two rules' together"
    );
    let mut kinds = BTreeSet::new();
    for (name, must_match, event) in &events {
        assert_eq!(needed(event), *must_match, "{name}");
        for field in [
            "version",
            "id",
            "detail-type",
            "source",
            "account",
            "time",
            "region",
            "resources",
            "detail",
        ] {
            assert!(
                event.get(field).is_some(),
                "{name}: TestEventPattern needs {field}"
            );
        }
        let d = &event["detail"];
        let kind = if event["source"] == DRILL_SOURCE {
            "drill"
        } else if !must_match {
            "must not match"
        } else if d.get("errorCode").is_some() || d.get("errorMessage").is_some() {
            "failure"
        } else {
            "issuance"
        };
        kinds.insert((kind, d["eventName"].as_str().unwrap_or_default().to_owned()));
    }
    // Each issuing call, failures of both protocols' codes, a drill, and the look-alikes the issue names.
    for call in ISSUING_CALLS {
        assert!(kinds.contains(&("issuance", call.to_owned())), "{call}");
    }
    assert!(kinds.iter().any(|(k, _)| *k == "drill"));
    let names: BTreeSet<&str> = events.iter().map(|(n, _, _)| n.as_str()).collect();
    for required in [
        "AccessDenied",
        "InvalidClientTokenId",
        "throttling saying expired",
        "a successful call",
        "a non-AWS source with an expired-token detail",
    ] {
        assert!(names.contains(required), "{required}");
    }
    let codes: BTreeSet<&str> = events
        .iter()
        .filter(|(_, m, _)| *m)
        .filter_map(|(_, _, e)| e["detail"]["errorCode"].as_str())
        .collect();
    for code in [
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "Client.RequestExpired",
        "Server.ExpiredToken",
    ] {
        assert!(codes.contains(code), "{code}");
    }
}

#[tokio::test]
async fn the_rule_pattern_passes_exactly_what_the_detector_needs() {
    use aws_sdk_eventbridge::types::{PutEventsRequestEntry, RuleState, Target};

    let t = template("template.yaml");
    let p = pipeline(&t);
    // Both rules on one bus, both to one queue: what arrives is what either passes, and an event that
    // arrived twice would be one both pass (the rules must not overlap, or an issuing call would cost
    // twice and a failure be handled twice).
    let rules: Vec<(String, Value)> = [p.rule, p.issuance]
        .iter()
        .map(|(id, r)| (id.to_string(), r["Properties"].clone()))
        .collect();
    for (id, rule) in &rules {
        let pattern = rule["EventPattern"].to_string();
        assert!(
            !pattern.contains("\"Ref\"") && !pattern.contains("Fn::"),
            "{id}: the pattern is literal JSON"
        );
        // PutRule's limit on EventPattern.
        assert!(
            pattern.len() <= 4096,
            "{id}: the pattern is {} characters",
            pattern.len()
        );
    }

    // Every sample event, then the edge cases, each marked by its index in `resources` (which the pattern
    // does not look at).
    let mut events: Vec<(String, Value)> = Vec::new();
    for dir in scenarios() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        for (i, e) in scenario_events(&dir).into_iter().enumerate() {
            events.push((format!("{name}#{i}"), e));
        }
    }
    let from_samples = events.len();
    assert!(from_samples >= 100, "the samples give {from_samples} events");
    events.extend(pattern_events().1.into_iter().map(|(n, _, e)| (n, e)));
    let expected: BTreeSet<usize> = (0..events.len()).filter(|&i| needed(&events[i].1)).collect();
    assert!(expected.iter().any(|&i| i < from_samples) && expected.len() < events.len());

    let config = Emulator::Moto.sdk().await;
    let eb = aws_sdk_eventbridge::Client::new(&config);
    // A bus of its own, so that no other test's rules see these events.
    let bus = unique("tokenwatch-infra");
    let queue = Queue::new(&config, "tokenwatch-infra").await;
    eb.create_event_bus().name(&bus).send().await.unwrap();
    for (id, rule) in &rules {
        eb.put_rule()
            .name(id)
            .event_bus_name(&bus)
            .event_pattern(rule["EventPattern"].to_string())
            .state(RuleState::from(rule["State"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        eb.put_targets()
            .rule(id)
            .event_bus_name(&bus)
            .targets(Target::builder().id("queue").arn(&queue.arn).build().unwrap())
            .send()
            .await
            .unwrap();
    }

    let indexed: Vec<(usize, &Value)> = events.iter().map(|(_, e)| e).enumerate().collect();
    for chunk in indexed.chunks(10) {
        let entries: Vec<PutEventsRequestEntry> = chunk
            .iter()
            .map(|(i, e)| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&bus)
                    .source(e["source"].as_str().unwrap())
                    .detail_type(e["detail-type"].as_str().unwrap())
                    .detail(e["detail"].to_string())
                    .resources(format!("arn:aws:tokenwatch:::test-event/{i}"))
                    .build()
            })
            .collect();
        let out = eb.put_events().set_entries(Some(entries)).send().await.unwrap();
        assert_eq!(out.failed_entry_count, 0, "{:?}", out.entries);
    }

    let mut arrived = BTreeSet::new();
    let mut empty = 0;
    while empty < 2 {
        let got = queue
            .sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            empty += 1;
        }
        for m in messages {
            let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            let marker = body["resources"][0].as_str().unwrap();
            let i: usize = marker.rsplit('/').next().unwrap().parse().unwrap();
            assert!(arrived.insert(i), "event {i} arrived twice");
        }
    }

    let describe = |i: &usize| {
        let (name, e) = &events[*i];
        let d = &e["detail"];
        format!(
            "{name} ({} {} {} {})",
            e["source"], d["eventName"], d["errorCode"], d["errorMessage"]
        )
    };
    let missing: Vec<String> = expected.difference(&arrived).map(describe).collect();
    let extra: Vec<String> = arrived.difference(&expected).map(describe).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the rule dropped events the detector needs: {missing:#?}\nand passed events it does not: {extra:#?}"
    );
    eprintln!(
        "{} events ({from_samples} from the samples): {} needed, {} arrived",
        events.len(),
        expected.len(),
        arrived.len()
    );
    // Every kind is there: failures from the samples, issuing calls, the drill.
    let kinds: BTreeSet<&str> = arrived
        .iter()
        .map(|&i| {
            let e = &events[i].1;
            if e["source"] == DRILL_SOURCE {
                "drill"
            } else if e["detail"].get("errorCode").is_some() || e["detail"].get("errorMessage").is_some() {
                "failure"
            } else {
                "issuance"
            }
        })
        .collect();
    assert_eq!(kinds, BTreeSet::from(["drill", "failure", "issuance"]));

    for (id, _) in &rules {
        eb.remove_targets()
            .rule(id)
            .event_bus_name(&bus)
            .ids("queue")
            .send()
            .await
            .unwrap();
        eb.delete_rule()
            .name(id)
            .event_bus_name(&bus)
            .send()
            .await
            .unwrap();
    }
    eb.delete_event_bus().name(&bus).send().await.unwrap();
    queue
        .sqs
        .delete_queue()
        .queue_url(&queue.url)
        .send()
        .await
        .unwrap();
}

// -----------------------------------------------------------------------------------------------------
// The policies and alarms evaluated: who may send, publish, put events, assume and invoke, and when an
// alarm fires
// -----------------------------------------------------------------------------------------------------

const ACCOUNT: &str = "111122223333";
const OTHER_ACCOUNT: &str = "444455556666";
const REGION: &str = "us-east-1";
const STACK: &str = "tokenwatch";
const ORGANIZATION: &str = "o-exampleorg01";
const CLOUDTRAIL_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";

/// A template deployed as stack STACK in account ACCOUNT and region REGION with its parameters' defaults
/// and `overrides`: CloudFormation's intrinsic functions resolved, conditions evaluated, physical names the
/// template's or `<stack>-<logical id>` where CloudFormation generates one (without its random suffix).
struct Deployed {
    t: Value,
    parameters: BTreeMap<String, String>,
}

impl Deployed {
    fn new(t: Value, overrides: &[(&str, &str)]) -> Self {
        let mut parameters = BTreeMap::new();
        for (name, p) in t["Parameters"].as_object().into_iter().flatten() {
            match &p["Default"] {
                Value::Null => {}
                Value::String(s) => {
                    parameters.insert(name.clone(), s.clone());
                }
                other => {
                    parameters.insert(name.clone(), other.to_string());
                }
            }
        }
        for (name, value) in overrides {
            assert!(t["Parameters"].get(*name).is_some(), "no parameter {name}");
            parameters.insert((*name).to_owned(), (*value).to_owned());
        }
        Deployed { t, parameters }
    }

    fn holds(&self, condition: &str) -> bool {
        let c = &self.t["Conditions"][condition];
        assert!(!c.is_null(), "no condition {condition}");
        self.truth(c)
    }

    fn truth(&self, c: &Value) -> bool {
        if let Some(name) = c.get("Condition").and_then(Value::as_str) {
            self.holds(name)
        } else if let Some(a) = c.get("Fn::Not") {
            !self.truth(&a[0])
        } else if let Some(a) = c.get("Fn::And") {
            a.as_array().unwrap().iter().all(|c| self.truth(c))
        } else if let Some(a) = c.get("Fn::Or") {
            a.as_array().unwrap().iter().any(|c| self.truth(c))
        } else if let Some(a) = c.get("Fn::Equals") {
            self.resolve(&a[0]) == self.resolve(&a[1])
        } else {
            panic!("a condition these tests do not evaluate: {c}")
        }
    }

    fn resource(&self, id: &str) -> &Value {
        let r = &self.t["Resources"][id];
        assert!(r.is_object(), "no resource {id}");
        r
    }

    /// Whether resource `id` is created with these parameters.
    fn exists(&self, id: &str) -> bool {
        self.resource(id)["Condition"]
            .as_str()
            .is_none_or(|c| self.holds(c))
    }

    fn name_of(&self, id: &str) -> String {
        let r = self.resource(id);
        let p = &r["Properties"];
        let given = match r["Type"].as_str().unwrap() {
            "AWS::IAM::Role" => &p["RoleName"],
            "AWS::CloudWatch::Alarm" => &p["AlarmName"],
            "AWS::Events::Rule" => &p["Name"],
            "AWS::SQS::Queue" => &p["QueueName"],
            "AWS::SNS::Topic" => &p["TopicName"],
            "AWS::DynamoDB::Table" => &p["TableName"],
            _ => &Value::Null,
        };
        if given.is_null() {
            format!("{STACK}-{id}")
        } else {
            self.text(given)
        }
    }

    fn arn_of(&self, id: &str) -> String {
        let name = self.name_of(id);
        match self.resource(id)["Type"].as_str().unwrap() {
            "AWS::IAM::Role" => format!("arn:aws:iam::{ACCOUNT}:role/{name}"),
            "AWS::CloudWatch::Alarm" => format!("arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"),
            "AWS::Events::Rule" => format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"),
            "AWS::SQS::Queue" => format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"),
            "AWS::SNS::Topic" => format!("arn:aws:sns:{REGION}:{ACCOUNT}:{name}"),
            "AWS::DynamoDB::Table" => format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"),
            "AWS::KMS::Key" => format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{id}"),
            "AWS::Serverless::Function" => format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"),
            "AWS::Logs::LogGroup" => format!(
                "arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{}",
                self.text(&self.resource(id)["Properties"]["LogGroupName"])
            ),
            other => panic!("the ARN of a {other}: not modelled"),
        }
    }

    fn reference(&self, name: &str) -> Value {
        match name {
            "AWS::AccountId" => return json!(ACCOUNT),
            "AWS::Region" => return json!(REGION),
            "AWS::StackName" => return json!(STACK),
            "AWS::Partition" => return json!("aws"),
            "AWS::NoValue" => return Value::Null,
            _ => {}
        }
        if let Some(value) = self.parameters.get(name) {
            return json!(value);
        }
        match self.resource(name)["Type"].as_str().unwrap() {
            "AWS::SQS::Queue" => json!(format!(
                "https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{}",
                self.name_of(name)
            )),
            "AWS::SNS::Topic" | "AWS::KMS::Key" => json!(self.arn_of(name)),
            _ => json!(self.name_of(name)),
        }
    }

    fn attribute(&self, id: &str, attribute: &str) -> Value {
        match attribute {
            "Arn" => json!(self.arn_of(id)),
            "QueueName" => json!(self.name_of(id)),
            other => panic!("!GetAtt {id}.{other}: not modelled"),
        }
    }

    /// `v` with every intrinsic function resolved; `!Ref AWS::NoValue` is left out of lists and is `null`
    /// elsewhere.
    fn resolve(&self, v: &Value) -> Value {
        match v {
            Value::Object(m) if m.len() == 1 => {
                let (function, a) = m.iter().next().unwrap();
                match function.as_str() {
                    "Ref" => self.reference(a.as_str().unwrap()),
                    "Fn::GetAtt" => self.attribute(a[0].as_str().unwrap(), a[1].as_str().unwrap()),
                    "Fn::If" => {
                        let branch = if self.holds(a[0].as_str().unwrap()) { 1 } else { 2 };
                        self.resolve(&a[branch])
                    }
                    "Fn::Sub" => {
                        let (text, variables) = match a {
                            Value::String(s) => (s.as_str(), Map::new()),
                            _ => (
                                a[0].as_str().unwrap(),
                                a[1].as_object().cloned().unwrap_or_default(),
                            ),
                        };
                        let re = regex::Regex::new(r"\$\{([^}]+)\}").unwrap();
                        json!(re.replace_all(text, |c: &regex::Captures| {
                            let name = &c[1];
                            if let Some(v) = variables.get(name) {
                                self.text(v)
                            } else if let (Some((id, attribute)), false) =
                                (name.split_once('.'), name.starts_with("AWS::"))
                            {
                                self.text(&self.attribute(id, attribute))
                            } else {
                                self.text(&self.reference(name))
                            }
                        }))
                    }
                    _ => Value::Object(m.iter().map(|(k, v)| (k.clone(), self.resolve(v))).collect()),
                }
            }
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), self.resolve(v))).collect()),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.resolve(v))
                    .filter(|v| !v.is_null())
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn text(&self, v: &Value) -> String {
        match self.resolve(v) {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }

    /// The resolved statements of a resource policy (a queue's, a topic's, a key's, a bus's) or of a
    /// role's trust policy.
    fn policy(&self, id: &str) -> Vec<Value> {
        let r = self.resource(id);
        let p = &r["Properties"];
        let statements = match r["Type"].as_str().unwrap() {
            "AWS::SQS::QueuePolicy" | "AWS::SNS::TopicPolicy" => &p["PolicyDocument"]["Statement"],
            "AWS::KMS::Key" => &p["KeyPolicy"]["Statement"],
            "AWS::Events::EventBusPolicy" => &p["Statement"],
            "AWS::IAM::Role" => &p["AssumeRolePolicyDocument"]["Statement"],
            other => panic!("the policy of a {other}: not modelled"),
        };
        as_list(&self.resolve(statements))
    }

    /// The queue policy of queue `queue`.
    fn queue_policy(&self, queue: &str) -> String {
        let policies: Vec<&str> = of_type(&self.t, "AWS::SQS::QueuePolicy")
            .into_iter()
            .filter(|(_, p)| as_list(&p["Properties"]["Queues"]).contains(&reference(queue)))
            .map(|(id, _)| id)
            .collect();
        assert_eq!(policies.len(), 1, "{queue} has one queue policy: {policies:?}");
        policies[0].to_owned()
    }
}

/// Who makes a request.
#[derive(Clone, Debug)]
enum Caller {
    /// An IAM role (its ARN) whose own IAM policy allows the request: the principal every resource
    /// policy here must reckon with.
    Iam(String),
    /// An AWS service principal, acting for a resource named by `aws:SourceArn` in the context.
    Service(&'static str),
}

fn account_of(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or("")
}

/// A request on a resource of account ACCOUNT.
struct Request {
    caller: Caller,
    action: String,
    resource: String,
    /// Condition keys other than those of the caller (`aws:PrincipalArn`, `aws:PrincipalAccount`,
    /// `aws:PrincipalIsAWSService`, which come from `caller`).
    context: Vec<(&'static str, String)>,
}

impl Request {
    fn new(caller: Caller, action: &str, resource: &str) -> Self {
        Request {
            caller,
            action: action.to_owned(),
            resource: resource.to_owned(),
            context: Vec::new(),
        }
    }

    fn with(mut self, key: &'static str, value: &str) -> Self {
        self.context.push((key, value.to_owned()));
        self
    }

    fn keys(&self) -> BTreeMap<String, Vec<String>> {
        let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &self.context {
            keys.entry((*k).to_owned()).or_default().push(v.clone());
        }
        let mut set = |k: &str, v: &str| {
            keys.insert(k.to_owned(), vec![v.to_owned()]);
        };
        match &self.caller {
            Caller::Iam(arn) => {
                set("aws:PrincipalArn", arn);
                set("aws:PrincipalAccount", account_of(arn));
                set("aws:PrincipalIsAWSService", "false");
            }
            Caller::Service(_) => set("aws:PrincipalIsAWSService", "true"),
        }
        keys
    }
}

/// IAM's wildcards: `*` any run of characters, `?` one.
fn glob(pattern: &str, text: &str) -> bool {
    let re = regex::escape(pattern).replace(r"\*", ".*").replace(r"\?", ".");
    regex::Regex::new(&format!("^{re}$")).unwrap().is_match(text)
}

fn compare(operator: &str, value: &str, pattern: &str) -> bool {
    match operator {
        "StringEquals" => value == pattern,
        "Bool" => value.eq_ignore_ascii_case(pattern),
        // ARN operators match each part with wildcards, ArnEquals as ArnLike.
        "StringLike" | "ArnEquals" | "ArnLike" => glob(pattern, value),
        other => panic!("condition operator {other}: not modelled here"),
    }
}

fn conditions_hold(conditions: &Value, keys: &BTreeMap<String, Vec<String>>) -> bool {
    conditions.as_object().unwrap().iter().all(|(operator, tests)| {
        tests.as_object().unwrap().iter().all(|(key, wanted)| {
            let wanted: Vec<String> = as_list(wanted)
                .iter()
                .map(|w| w.as_str().map(str::to_owned).unwrap_or_else(|| w.to_string()))
                .collect();
            let got = keys.get(key.as_str());
            if let Some(base) = operator.strip_prefix("ForAllValues:") {
                // True for an absent key, as in IAM.
                return got
                    .is_none_or(|values| values.iter().all(|v| wanted.iter().any(|w| compare(base, v, w))));
            }
            let (base, negated) = match operator.as_str() {
                "ArnNotEquals" => ("ArnEquals", true),
                "ArnNotLike" => ("ArnLike", true),
                "StringNotEquals" => ("StringEquals", true),
                "StringNotLike" => ("StringLike", true),
                other => (other, false),
            };
            match got {
                // An absent key fails a positive operator and passes a negated one.
                None => negated,
                Some(values) => values.iter().any(|v| wanted.iter().any(|w| compare(base, v, w))) != negated,
            }
        })
    })
}

fn principal_matches(principal: &Value, caller: &Caller) -> bool {
    if principal == "*" {
        return true;
    }
    match caller {
        Caller::Service(name) => as_list(&principal["Service"]).iter().any(|s| s == name),
        Caller::Iam(arn) => as_list(&principal["AWS"]).iter().any(|p| {
            let p = p.as_str().unwrap();
            p == "*" || p == arn || p == format!("arn:aws:iam::{}:root", account_of(arn))
        }),
    }
}

fn applies(statement: &Value, request: &Request, keys: &BTreeMap<String, Vec<String>>) -> bool {
    principal_matches(&statement["Principal"], &request.caller)
        && as_list(&statement["Action"]).iter().any(|a| {
            glob(
                &a.as_str().unwrap().to_lowercase(),
                &request.action.to_lowercase(),
            )
        })
        && (statement.get("Resource").is_none()
            || as_list(&statement["Resource"])
                .iter()
                .any(|r| glob(r.as_str().unwrap(), &request.resource)))
        && statement
            .get("Condition")
            .is_none_or(|c| conditions_hold(c, keys))
}

fn any_applies(statements: &[Value], effect: &str, request: &Request) -> bool {
    let keys = request.keys();
    statements
        .iter()
        .any(|s| s["Effect"] == effect && applies(s, request, &keys))
}

/// Whether `request` on a resource of account ACCOUNT with resource policy `statements` is allowed: a
/// deny wins; a role of the same account is allowed by its own policy, another account's role needs the
/// resource's allow as well, and a service principal has only the resource's allow.
fn allowed(statements: &[Value], request: &Request) -> bool {
    if any_applies(statements, "Deny", request) {
        return false;
    }
    match &request.caller {
        Caller::Iam(arn) if account_of(arn) == ACCOUNT => true,
        _ => any_applies(statements, "Allow", request),
    }
}

/// Whether a role with trust policy `trust` may be assumed (the caller's own policy allowing it): the
/// trust policy must allow it, whoever asks.
fn may_assume(trust: &[Value], caller: Caller, session_name: &str) -> bool {
    let request = Request::new(caller, "sts:AssumeRole", "").with("sts:RoleSessionName", session_name);
    !any_applies(trust, "Deny", &request) && any_applies(trust, "Allow", &request)
}

fn role_of(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:role/{name}")
}

#[test]
fn the_event_queue_and_its_dead_letters_deny_every_sender_but_the_rule() {
    let check = |t: Value| {
        let d = Deployed::new(t, &[]);
        let rule = d.arn_of("DetectorRule");
        let issuance_rule = d.arn_of("IssuanceRule");
        let sends = |queue: &str, caller: Caller, source: Option<&str>| {
            let mut request = Request::new(caller, "sqs:SendMessage", &d.arn_of(queue));
            if let Some(arn) = source {
                request = request
                    .with("aws:SourceArn", arn)
                    .with("aws:SourceAccount", ACCOUNT);
            }
            allowed(&d.policy(&d.queue_policy(queue)), &request)
        };
        let other_rule = format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/someone-elses");
        let topic = format!("arn:aws:sns:{REGION}:{ACCOUNT}:someone-elses");
        let mut outcomes = BTreeMap::new();
        for queue in ["EventQueue", "DeadLetterQueue"] {
            let cases: [(&str, Caller, Option<&str>); 8] = [
                (
                    "the rule",
                    Caller::Service("events.amazonaws.com"),
                    Some(rule.as_str()),
                ),
                (
                    "the issuance rule",
                    Caller::Service("events.amazonaws.com"),
                    Some(issuance_rule.as_str()),
                ),
                (
                    "another rule",
                    Caller::Service("events.amazonaws.com"),
                    Some(other_rule.as_str()),
                ),
                (
                    "a topic",
                    Caller::Service("sns.amazonaws.com"),
                    Some(topic.as_str()),
                ),
                ("an admin", Caller::Iam(role_of(ACCOUNT, "admin")), None),
                ("the detector", Caller::Iam(d.arn_of("DetectorRole")), None),
                (
                    "another account",
                    Caller::Iam(role_of(OTHER_ACCOUNT, "admin")),
                    None,
                ),
                ("the redrive role", Caller::Iam(d.arn_of("RedriveRole")), None),
            ];
            for (who, caller, source) in cases {
                outcomes.insert((queue, who), sends(queue, caller, source));
            }
        }
        outcomes
    };
    let outcomes = check(template("template.yaml"));
    let admitted: Vec<&(&str, &str)> = outcomes.iter().filter(|(_, ok)| **ok).map(|(k, _)| k).collect();
    assert_eq!(
        admitted,
        [
            &("DeadLetterQueue", "the detector"),
            &("DeadLetterQueue", "the issuance rule"),
            &("DeadLetterQueue", "the rule"),
            &("EventQueue", "the detector"),
            &("EventQueue", "the redrive role"),
            &("EventQueue", "the rule"),
        ],
        "who may send to the queues"
    );

    // Without the deny, any principal of the account whose own policy allows sqs:SendMessage could put
    // forged events in front of the detector.
    let mut open = template("template.yaml");
    for policy in ["EventQueuePolicy", "DeadLetterQueuePolicy"] {
        let statements = open["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"]
            .as_array_mut()
            .unwrap();
        statements.retain(|s| s["Effect"] != "Deny");
    }
    let outcomes = check(open);
    assert!(outcomes[&("EventQueue", "an admin")] && outcomes[&("DeadLetterQueue", "an admin")]);
    assert!(
        !outcomes[&("EventQueue", "another account")],
        "the allow still names the rule only"
    );
}

#[test]
fn the_redrive_role_moves_the_dead_letters_back_and_does_nothing_else() {
    let t = template("template.yaml");
    let granted = grants(&t, "RedriveRole");
    let dlq = get_att("DeadLetterQueue", "Arn").to_string();
    let queue = get_att("EventQueue", "Arn").to_string();
    let expect: BTreeMap<String, BTreeSet<String>> = [
        ("sqs:StartMessageMoveTask", vec![&dlq]),
        ("sqs:ListMessageMoveTasks", vec![&dlq]),
        ("sqs:CancelMessageMoveTask", vec![&dlq]),
        ("sqs:ReceiveMessage", vec![&dlq]),
        ("sqs:DeleteMessage", vec![&dlq]),
        ("sqs:GetQueueAttributes", vec![&dlq, &queue]),
        ("sqs:SendMessage", vec![&queue]),
    ]
    .into_iter()
    .map(|(a, r)| (a.to_owned(), r.into_iter().cloned().collect()))
    .collect();
    assert_eq!(granted, expect);
    let d = Deployed::new(t, &[]);
    let trust = d.policy("RedriveRole");
    assert!(may_assume(
        &trust,
        Caller::Iam(role_of(ACCOUNT, "oncall")),
        "redrive"
    ));
    assert!(!may_assume(
        &trust,
        Caller::Iam(role_of(OTHER_ACCOUNT, "oncall")),
        "redrive"
    ));
    assert!(!may_assume(
        &trust,
        Caller::Service("lambda.amazonaws.com"),
        "redrive"
    ));
    assert_eq!(
        d.resource("RedriveRole")["Properties"]["MaxSessionDuration"],
        3600
    );
    assert_eq!(
        d.t["Outputs"]["RedriveRoleArn"]["Value"],
        get_att("RedriveRole", "Arn")
    );
    assert_eq!(
        d.t["Outputs"]["DeadLetterQueueArn"]["Value"],
        get_att("DeadLetterQueue", "Arn")
    );
}

#[test]
fn only_the_stack_alarms_by_arn_publish_to_the_topic_and_use_its_key() {
    for digest in ["cron(0 9 * * ? *)", ""] {
        let d = Deployed::new(template("template.yaml"), &[("DigestSchedule", digest)]);
        let topic = d.arn_of("AlertTopic");
        let key = d.arn_of("TopicKey");
        let alarms: Vec<String> = of_type(&d.t, "AWS::CloudWatch::Alarm")
            .into_iter()
            .filter(|(id, _)| d.exists(id))
            .map(|(id, _)| d.arn_of(id))
            .collect();
        assert_eq!(alarms.len(), if digest.is_empty() { 5 } else { 6 });
        let by_alarm = |alarm: &str, action: &str, resource: &str| {
            Request::new(Caller::Service("cloudwatch.amazonaws.com"), action, resource)
                .with("aws:SourceArn", alarm)
                .with("aws:SourceAccount", account_of(alarm))
        };
        let publishes = |alarm: &str| {
            allowed(
                &d.policy("AlertTopicPolicy"),
                &by_alarm(alarm, "sns:Publish", &topic),
            )
        };
        let uses_key =
            |alarm: &str, action: &str| allowed(&d.policy("TopicKey"), &by_alarm(alarm, action, &key));
        for alarm in &alarms {
            assert!(publishes(alarm), "{alarm} publishes");
            assert!(uses_key(alarm, "kms:GenerateDataKey") && uses_key(alarm, "kms:Decrypt"));
            assert!(
                !uses_key(alarm, "kms:GenerateDataKeyWithoutPlaintext"),
                "exact key actions"
            );
            assert!(!uses_key(alarm, "kms:Encrypt"));
        }
        // An alarm anyone in the account can create with a name like the stack's does not page.
        let lookalike = format!("arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{STACK}-detector-errors-2");
        assert!(!publishes(&lookalike));
        let elsewhere = format!("arn:aws:cloudwatch:{REGION}:{OTHER_ACCOUNT}:alarm:{STACK}-detector-errors");
        assert!(!publishes(&elsewhere) && !uses_key(&elsewhere, "kms:GenerateDataKey"));
        let other_stack = format!("arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:other-detector-errors");
        assert!(!uses_key(&other_stack, "kms:GenerateDataKey"));
        // Nor does a person or a function other than the two.
        let person = Request::new(Caller::Iam(role_of(ACCOUNT, "admin")), "sns:Publish", &topic);
        assert!(!allowed(&d.policy("AlertTopicPolicy"), &person));
        for role in ["DetectorRole", "ReporterRole"] {
            let function = Request::new(Caller::Iam(d.arn_of(role)), "sns:Publish", &topic);
            assert!(allowed(&d.policy("AlertTopicPolicy"), &function), "{role}");
        }
    }
}

#[test]
fn the_organization_bus_admits_only_forwarder_roles_with_the_forwarded_events() {
    let central = Deployed::new(
        template("template.yaml"),
        &[("ForwarderOrganizationId", ORGANIZATION)],
    );
    assert!(central.exists("ForwardedEventsPolicy"));
    assert!(!Deployed::new(template("template.yaml"), &[]).exists("ForwardedEventsPolicy"));
    let bus = format!("arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default");
    let puts = |role: &str, organization: &str, source: &str, detail_type: &str| {
        let request = Request::new(Caller::Iam(role.to_owned()), "events:PutEvents", &bus)
            .with("aws:PrincipalOrgID", organization)
            .with("events:source", source)
            .with("events:detail-type", detail_type);
        allowed(&central.policy("ForwardedEventsPolicy"), &request)
    };
    // The role forwarder.yaml creates in a member account (as deployed in REGION).
    let forwarding = Deployed::new(
        template("forwarder.yaml"),
        &[("MainRegion", "eu-central-1"), ("MainAccountId", OTHER_ACCOUNT)],
    );
    let forwarder = forwarding.arn_of("ForwarderRole").replace(ACCOUNT, OTHER_ACCOUNT);
    assert!(puts(&forwarder, ORGANIZATION, "aws.s3", CLOUDTRAIL_DETAIL_TYPE));
    assert!(puts(&forwarder, ORGANIZATION, "aws.sts", CLOUDTRAIL_DETAIL_TYPE));
    assert!(puts(
        &forwarder,
        ORGANIZATION,
        DRILL_SOURCE,
        CLOUDTRAIL_DETAIL_TYPE
    ));
    let app = role_of(OTHER_ACCOUNT, "app");
    assert!(
        !puts(&app, ORGANIZATION, "aws.s3", CLOUDTRAIL_DETAIL_TYPE),
        "any other principal"
    );
    assert!(
        !puts(&forwarder, "o-someoneelse1", "aws.s3", CLOUDTRAIL_DETAIL_TYPE),
        "a role of that name outside the organization"
    );
    assert!(
        !puts(&forwarder, ORGANIZATION, "my.app", CLOUDTRAIL_DETAIL_TYPE),
        "another source"
    );
    assert!(
        !puts(&forwarder, ORGANIZATION, "aws.s3", "Object Created"),
        "another detail type"
    );

    // What it admits is what the forwarder's rule matches: one detail type, the aws.* sources and drills.
    let pattern = &forwarding.resource("ForwarderRule")["Properties"]["EventPattern"];
    assert_eq!(pattern["detail-type"], json!([CLOUDTRAIL_DETAIL_TYPE]));
    let sources: Vec<&Value> = pattern["$or"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|branch| branch["source"].as_array().unwrap())
        .collect();
    assert_eq!(sources, [&json!(DRILL_SOURCE), &json!({"prefix": "aws."})]);
}

/// What is wrong with who may invoke the template's functions: only rules of this stack that target the
/// function (its schedules, the issuance rule), through the events service; no function URL, no other
/// event source than the queue.
fn invoke_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, r) in resources(t) {
        let kind = r["Type"].as_str().unwrap_or("");
        if kind == "AWS::Lambda::Url" {
            problems.push(format!("{id}: a function URL"));
        }
        if kind == "AWS::Serverless::Function" {
            let p = &r["Properties"];
            if p.get("FunctionUrlConfig").is_some() {
                problems.push(format!("{id}: a function URL"));
            }
            for (name, e) in p["Events"].as_object().into_iter().flatten() {
                if e["Type"] != "SQS" {
                    problems.push(format!("{id}: event {name} of type {}", e["Type"]));
                }
            }
        }
    }
    for (id, p) in of_type(t, "AWS::Lambda::Permission") {
        let p = &p["Properties"];
        if p["Principal"] != "events.amazonaws.com" || p["Action"] != "lambda:InvokeFunction" {
            problems.push(format!("{id}: {} may {}", p["Principal"], p["Action"]));
        }
        let function = p["FunctionName"]["Ref"].as_str().unwrap_or("");
        let source = p["SourceArn"]["Fn::GetAtt"][0].as_str().unwrap_or("");
        let targets_it = of_type(t, "AWS::Events::Rule").into_iter().any(|(rule, r)| {
            rule == source
                && as_list(&r["Properties"]["Targets"])
                    .iter()
                    .any(|target| target["Arn"] == get_att(function, "Arn"))
        });
        if !targets_it {
            problems.push(format!(
                "{id}: {source:?} is not a rule of this stack that targets {function:?}"
            ));
        }
    }
    problems
}

#[test]
fn only_the_stack_s_schedules_and_issuance_rule_may_invoke_the_functions() {
    let t = template("template.yaml");
    assert_eq!(invoke_problems(&t), Vec::<String>::new());
    assert_eq!(
        of_type(&t, "AWS::Lambda::Permission").len(),
        4,
        "the sweep, the digest, the issuance rule and the trail scan"
    );
    // A permission for everyone, one for the event rule (which feeds the queue, not the function), and a
    // function URL are all refused.
    let mut open = t.clone();
    open["Resources"]["Anyone"] = json!({"Type": "AWS::Lambda::Permission", "Properties": {
        "Action": "lambda:InvokeFunction", "FunctionName": {"Ref": "DetectorFunction"}, "Principal": "*"}});
    open["Resources"]["FromTheRule"] = json!({"Type": "AWS::Lambda::Permission", "Properties": {
        "Action": "lambda:InvokeFunction", "FunctionName": {"Ref": "DetectorFunction"},
        "Principal": "events.amazonaws.com", "SourceArn": get_att("DetectorRule", "Arn")}});
    open["Resources"]["ReporterFunction"]["Properties"]["FunctionUrlConfig"] = json!({"AuthType": "AWS_IAM"});
    let problems = invoke_problems(&open);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    // A function policy cannot deny, so a principal of the account whose own policy allows
    // lambda:InvokeFunction can still invoke the detector: the README says how to close that.
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    assert!(
        readme.contains("lambda:InvokeFunction"),
        "the README's note on direct invocation"
    );
}

/// CloudWatch's evaluation of `alarm` (resolved properties) over consecutive periods, oldest first, each
/// the period's statistic or `None` for no datapoint: whether the alarm is in ALARM after each period.
fn alarm_states(d: &Deployed, alarm: &Value, periods: &[Option<f64>]) -> Vec<bool> {
    let p = d.resolve(&alarm["Properties"]);
    let number = |v: &Value| d.text(v).parse::<f64>().unwrap();
    let evaluation = number(&p["EvaluationPeriods"]) as usize;
    let to_alarm = if p["DatapointsToAlarm"].is_null() {
        evaluation
    } else {
        number(&p["DatapointsToAlarm"]) as usize
    };
    let threshold = number(&p["Threshold"]);
    let breaches = |v: Option<f64>| match v {
        Some(v) => match p["ComparisonOperator"].as_str().unwrap() {
            "LessThanThreshold" => v < threshold,
            "LessThanOrEqualToThreshold" => v <= threshold,
            "GreaterThanThreshold" => v > threshold,
            "GreaterThanOrEqualToThreshold" => v >= threshold,
            other => panic!("{other}"),
        },
        None => p["TreatMissingData"] == "breaching",
    };
    (0..periods.len())
        .map(|i| {
            i + 1 >= evaluation
                && periods[i + 1 - evaluation..=i]
                    .iter()
                    .filter(|v| breaches(**v))
                    .count()
                    >= to_alarm
        })
        .collect()
}

#[test]
fn a_digest_that_stops_arriving_raises_the_digest_missing_alarm() {
    let t = template("template.yaml");
    let d = Deployed::new(t.clone(), &[]);
    let missing: Vec<(&str, &Value)> = of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, a)| a["Properties"]["MetricName"] == "DigestsPublished")
        .collect();
    assert_eq!(missing.len(), 1, "one alarm on the digest's absence");
    let (id, alarm) = missing[0];
    let p = &alarm["Properties"];
    assert_eq!(
        p["TreatMissingData"], "breaching",
        "no datapoint is what a dead digest looks like"
    );
    assert_eq!(p["Period"], 3600);
    assert_eq!(p["AlarmActions"], json!([reference("AlertTopic")]));
    // It reads what the reporter prints: the metric, in the functions' namespace, with no dimension.
    let line: Value = serde_json::from_str(&tokenwatch_process::emf::metric_line(
        0,
        "DigestsPublished",
        None,
        1,
    ))
    .unwrap();
    let emitted = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(p["Namespace"], emitted["Namespace"]);
    assert_eq!(emitted["Dimensions"], json!([[]]));
    assert!(p.get("Dimensions").is_none());
    let reporter_source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions/reporter/src/lib.rs"),
    )
    .unwrap();
    assert!(
        reporter_source.contains("\"DigestsPublished\""),
        "the reporter emits the alarm's metric"
    );
    // The window is the DigestMissingHours parameter (25 h by default), within the 7 days CloudWatch
    // evaluates at most.
    let hours = &t["Parameters"]["DigestMissingHours"];
    assert_eq!(hours["Default"], 25);
    assert!(hours["MaxValue"].as_i64().unwrap() * 3600 <= 7 * 86_400);
    assert_eq!(p["EvaluationPeriods"], reference("DigestMissingHours"));

    // Ten days of the daily digest at 09:00: never in alarm.
    let daily = |skipped: Option<usize>| -> Vec<Option<f64>> {
        (0..240)
            .map(|h| (h % 24 == 9 && Some(h / 24) != skipped).then_some(1.0))
            .collect()
    };
    assert!(!alarm_states(&d, alarm, &daily(None)).iter().any(|a| *a), "{id}");
    // The digest of day 4 never comes: the alarm fires 25 h after day 3's, and clears at day 5's.
    let states = alarm_states(&d, alarm, &daily(Some(4)));
    let last = 3 * 24 + 9;
    assert_eq!(states.iter().position(|a| *a), Some(last + 25));
    assert!(!states[5 * 24 + 9]);
    // Hours without a datapoint counted as not breaching, a digest that died silently would never alarm.
    let mut quiet = alarm.clone();
    quiet["Properties"]["TreatMissingData"] = json!("notBreaching");
    assert!(!alarm_states(&d, &quiet, &daily(Some(4))).iter().any(|a| *a));
    // No digest scheduled: no alarm on its absence.
    assert_eq!(alarm["Condition"], "PublishesDigests");
    assert!(!Deployed::new(t.clone(), &[("DigestSchedule", "")]).exists(id));
}

#[test]
fn sdk_calls_end_well_inside_the_functions_and_a_page_claim_outlives_its_invocation() {
    // Regression: no SDK timeout, so a hung call ran into the function's timeout, which ended the
    // invocation between claiming a page and publishing it; the claim had no end, so the page was lost.
    let t = template("template.yaml");
    let r = resources(&t);
    let timeouts = tokenwatch_aws::Timeouts::DEFAULT;
    let lease = tokenwatch_core::ports::PAGE_LEASE;
    for function in ["DetectorFunction", "ReporterFunction"] {
        let timeout = r[function]["Properties"]["Timeout"].as_u64().unwrap();
        assert!(
            timeouts.operation.as_secs() * 3 <= timeout,
            "{function}: a call ends within a third of the function's {timeout} s"
        );
    }
    let detector = r["DetectorFunction"]["Properties"]["Timeout"].as_i64().unwrap();
    assert!(lease > detector, "a live invocation's claim is never taken over");
    let visibility = r["EventQueue"]["Properties"]["VisibilityTimeout"]
        .as_i64()
        .unwrap();
    assert!(lease < visibility, "the redelivered batch finds the claim over");
    assert_eq!(
        r["SweepSchedule"]["Properties"]["ScheduleExpression"], "rate(5 minutes)",
        "and so does the next sweep"
    );
    assert!(lease < 300);
}

#[test]
fn a_permanent_fault_raises_an_alarm_at_once_not_through_the_dead_letter_queue() {
    let t = template("template.yaml");
    let d = Deployed::new(t.clone(), &[]);
    let alarms: Vec<(&str, &Value)> = of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, a)| a["Properties"]["MetricName"] == "PermanentFaults")
        .collect();
    assert_eq!(alarms.len(), 1, "one alarm on permanent faults");
    let (id, alarm) = alarms[0];
    let p = &alarm["Properties"];
    assert_eq!(p["Statistic"], "Sum");
    assert_eq!(p["Period"], 300);
    assert_eq!(p["AlarmActions"], json!([reference("AlertTopic")]));
    // It reads what the detector prints: the metric, in the functions' namespace, with no dimension (the
    // groups are a property of the line, not a dimension: the alarm sees every group's).
    let metrics = tokenwatch_core::pipeline::Metrics {
        permanent_faults: 1,
        ..Default::default()
    };
    let fault = tokenwatch_core::pipeline::Fault {
        group: Some("123456789012|etl|job".into()),
        transient: false,
        message: "dynamodb:TransactWriteItems failed: ValidationException".into(),
    };
    let lines = tokenwatch_detector::emf::lines(&metrics, &[fault], 0);
    assert_eq!(lines.len(), 1);
    let line: Value = serde_json::from_str(&lines[0]).unwrap();
    let emitted = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(p["Namespace"], emitted["Namespace"]);
    assert_eq!(emitted["Metrics"][0]["Name"], "PermanentFaults");
    assert_eq!(emitted["Dimensions"], json!([[]]));
    assert!(p.get("Dimensions").is_none());
    assert_eq!(line["Groups"], json!(["123456789012|etl|job"]));
    // One fault in a period alarms in that period; quiet periods (no line at all) are not breaching.
    let states = alarm_states(&d, alarm, &[None, Some(0.0), Some(1.0), None]);
    assert_eq!(states, [false, false, true, false], "{id}");
}

/// What is wrong with the forwarder's delivery: a retry policy, a dead-letter queue of its own (encrypted,
/// kept 14 days, only the rule may send to it) and an alarm on its depth, all where the forwarder forwards.
fn forwarder_delivery_problems(t: Value) -> Vec<String> {
    let d = Deployed::new(t, &[("MainRegion", "eu-central-1")]);
    let mut problems = Vec::new();
    let target = &d.resource("ForwarderRule")["Properties"]["Targets"][0];
    if target["RetryPolicy"] != json!({"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}) {
        problems.push(format!("retry policy {}", target["RetryPolicy"]));
    }
    let Some(queue) = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0].as_str() else {
        problems.push("no dead-letter queue".into());
        return problems;
    };
    let q = &d.resource(queue)["Properties"];
    if q["SqsManagedSseEnabled"] != true && q["KmsMasterKeyId"].is_null() {
        problems.push(format!("{queue} is not encrypted"));
    }
    if q["MessageRetentionPeriod"] != 1_209_600 {
        problems.push(format!("{queue} keeps messages {}", q["MessageRetentionPeriod"]));
    }
    let policy = d.policy(&d.queue_policy(queue));
    let from = |caller: Caller, rule: &str| {
        let request = Request::new(caller, "sqs:SendMessage", &d.arn_of(queue)).with("aws:SourceArn", rule);
        allowed(&policy, &request)
    };
    let rule = d.arn_of("ForwarderRule");
    if !from(Caller::Service("events.amazonaws.com"), &rule) {
        problems.push("the rule cannot dead-letter".into());
    }
    if from(Caller::Iam(role_of(ACCOUNT, "admin")), &rule) {
        problems.push("anyone in the account can put messages in the dead-letter queue".into());
    }
    let depth = of_type(&d.t, "AWS::CloudWatch::Alarm").into_iter().any(|(_, a)| {
        let p = &a["Properties"];
        p["Namespace"] == "AWS/SQS"
            && p["MetricName"] == "ApproximateNumberOfMessagesVisible"
            && p["Dimensions"][0]["Value"] == get_att(queue, "QueueName")
    });
    if !depth {
        problems.push(format!("no alarm on {queue}'s depth"));
    }
    for (id, r) in resources(&d.t) {
        if id != "NothingToForward" && r["Condition"] != "Forwards" {
            problems.push(format!("{id} is created where nothing is forwarded"));
        }
    }
    problems
}

#[test]
fn the_forwarder_dead_letters_what_the_main_bus_does_not_take() {
    assert_eq!(
        forwarder_delivery_problems(template("forwarder.yaml")),
        Vec::<String>::new()
    );
    let mut lossy = template("forwarder.yaml");
    lossy["Resources"]["ForwarderRule"]["Properties"]["Targets"][0]
        .as_object_mut()
        .unwrap()
        .remove("DeadLetterConfig");
    assert_eq!(forwarder_delivery_problems(lossy), ["no dead-letter queue"]);
    let mut unwatched = template("forwarder.yaml");
    unwatched["Resources"]
        .as_object_mut()
        .unwrap()
        .remove("ForwarderDeadLettersAlarm");
    assert_eq!(
        forwarder_delivery_problems(unwatched),
        ["no alarm on ForwarderDeadLetterQueue's depth"]
    );
    // The alarm notifies the topic it is given, if any, and every region has one: its name is fixed and
    // alarms are regional.
    let alarm = |topic: &str| {
        let d = Deployed::new(
            template("forwarder.yaml"),
            &[("MainRegion", "eu-central-1"), ("AlarmTopicArn", topic)],
        );
        d.resolve(&d.resource("ForwarderDeadLettersAlarm")["Properties"])
    };
    let topic = format!("arn:aws:sns:{REGION}:{ACCOUNT}:ops");
    assert_eq!(alarm(&topic)["AlarmActions"], json!([topic]));
    assert!(alarm("")["AlarmActions"].is_null());
    // Where the forwarder would target its own bus, nothing is created but the placeholder.
    let main = Deployed::new(template("forwarder.yaml"), &[("MainRegion", REGION)]);
    let created: Vec<&String> = resources(&main.t).keys().filter(|id| main.exists(id)).collect();
    assert_eq!(created, ["NothingToForward"]);
}

#[test]
fn the_state_table_survives_deleting_or_replacing_the_stack() {
    let t = template("template.yaml");
    let (id, table) = only(&t, "AWS::DynamoDB::Table");
    assert_eq!(table["DeletionPolicy"], "Retain", "{id}");
    assert_eq!(table["UpdateReplacePolicy"], "Retain", "{id}");
    assert_eq!(table["Properties"]["DeletionProtectionEnabled"], true, "{id}");
    // And the README says how to delete it on purpose.
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    assert!(
        readme.contains("--no-deletion-protection-enabled") && readme.contains("aws dynamodb delete-table")
    );
}

/// The read-only calls `tokenwatch drill --real` makes as the drill role, and the action each needs (STS
/// GetCallerIdentity needs none): the probe table itself.
fn probe_actions_of_the_drill() -> Vec<(String, &'static str)> {
    tokenwatch_aws::probe::PROBES
        .iter()
        .filter_map(|p| p.action.map(|a| (format!("{} {}", p.service, p.call), a)))
        .collect()
}

/// What the drill role may do beyond (or short of) the probe calls.
fn drill_permission_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let role = &t["Resources"]["DrillRole"]["Properties"];
    for key in ["ManagedPolicyArns", "PermissionsBoundary"] {
        if role.get(key).is_some() {
            problems.push(format!("{key}: permissions not reviewed here"));
        }
    }
    let want: BTreeSet<String> = probe_actions_of_the_drill()
        .iter()
        .map(|(_, a)| (*a).to_owned())
        .collect();
    let mut got = BTreeSet::new();
    for (_, s) in statements(t)
        .iter()
        .filter(|(id, s)| id == "DrillRole" && s["Action"] != "sts:AssumeRole")
    {
        if s["Effect"] != "Allow" || s.get("Condition").is_some() {
            problems.push(format!("statement {}: not a plain allow", s["Sid"]));
        }
        for a in as_list(&s["Action"]) {
            let a = a.as_str().unwrap().to_owned();
            if s["Resource"] == "*" && !want.contains(&a) {
                problems.push(format!("{a} on \"*\""));
            }
            got.insert(a);
        }
    }
    for a in got.symmetric_difference(&want) {
        problems.push(format!(
            "{a}: {}",
            if got.contains(a) {
                "not a probe call"
            } else {
                "missing"
            }
        ));
    }
    problems
}

/// The actions of the drill role's statement.
fn probe_actions(t: &mut Value) -> &mut Vec<Value> {
    let policy = &mut t["Resources"]["DrillRole"]["Properties"]["Policies"][0];
    policy["PolicyDocument"]["Statement"][0]["Action"]
        .as_array_mut()
        .unwrap()
}

#[test]
fn the_drill_role_may_make_exactly_the_probe_calls() {
    let t = template("template.yaml");
    assert_eq!(drill_permission_problems(&t), Vec::<String>::new());
    // All of them list or describe; none reads data.
    let actions = probe_actions_of_the_drill();
    assert_eq!(
        actions.len(),
        10,
        "every probe but STS GetCallerIdentity needs an action"
    );
    for (call, action) in actions {
        let verb = action.split(':').nth(1).unwrap();
        assert!(
            verb.starts_with("List") || verb.starts_with("Describe"),
            "{call}: {action}"
        );
    }
    let mut wider = t.clone();
    probe_actions(&mut wider).push(json!("s3:GetObject"));
    assert_eq!(
        drill_permission_problems(&wider),
        ["s3:GetObject on \"*\"", "s3:GetObject: not a probe call"]
    );
    let mut narrower = t;
    probe_actions(&mut narrower).retain(|a| a != "kms:ListAliases");
    assert_eq!(drill_permission_problems(&narrower), ["kms:ListAliases: missing"]);
}

#[test]
fn the_drill_role_trusts_only_the_account_for_an_hour_and_the_detector_knows_it() {
    let t = template("template.yaml");
    let d = Deployed::new(t.clone(), &[]);
    assert!(d.exists("DrillRole"), "on by default");
    let trust = d.policy("DrillRole");
    let oncall = || Caller::Iam(role_of(ACCOUNT, "oncall"));
    assert!(may_assume(&trust, oncall(), "tokenwatch-drill-3f9a2c"));
    assert!(
        !may_assume(&trust, oncall(), "oncall"),
        "only as a drill's session"
    );
    assert!(!may_assume(
        &trust,
        Caller::Iam(role_of(OTHER_ACCOUNT, "oncall")),
        "tokenwatch-drill-1"
    ));
    assert!(!may_assume(
        &trust,
        Caller::Service("lambda.amazonaws.com"),
        "tokenwatch-drill-1"
    ));
    // The trust names the account itself, not a principal in it: an operator also needs sts:AssumeRole on
    // the role's ARN in their own policy.
    let principals: Vec<Value> = trust.iter().map(|s| s["Principal"].clone()).collect();
    assert_eq!(
        principals,
        [json!({"AWS": format!("arn:aws:iam::{ACCOUNT}:root")})]
    );
    let role = &d.resource("DrillRole")["Properties"];
    assert_eq!(role["MaxSessionDuration"], 3600);
    // A stable name, so that the drill's sessions are recognisable; IAM's 64-character limit holds for the
    // default stack name in the longest region names.
    assert!(
        role["RoleName"]["Fn::Sub"]
            .as_str()
            .unwrap()
            .starts_with("${AWS::StackName}-drill")
    );
    let name = d.name_of("DrillRole");
    assert_eq!(name, "tokenwatch-drill-us-east-1");
    assert!(name.len() - REGION.len() + "ap-southeast-3".len() <= 64);
    // The detector gets its ARN (the reporter does not), and the stack outputs it.
    let env = |function: &str| d.resolve(&d.resource(function)["Properties"]["Environment"]["Variables"]);
    assert_eq!(
        env("DetectorFunction")["DRILL_ROLE_ARN"],
        json!(d.arn_of("DrillRole"))
    );
    assert!(env("ReporterFunction").get("DRILL_ROLE_ARN").is_none());
    // Synthetic drills: the function's own account, and those a central stack admits. "organization"
    // means the accounts the bus policy admits, so it needs that policy's organization.
    let detector_env = &d.resource("DetectorFunction")["Properties"]["Environment"]["Variables"];
    assert_eq!(detector_env["DRILL_ACCOUNTS"], reference("DrillAccounts"));
    let rule = &t["Rules"]["DrillsFromTheOrganizationNeedItsBusPolicy"];
    assert_eq!(
        rule["RuleCondition"],
        json!({"Fn::Equals": [reference("DrillAccounts"), "organization"]})
    );
    assert_eq!(
        rule["Assertions"][0]["Assert"],
        json!({"Fn::Not": [{"Fn::Equals": [reference("ForwarderOrganizationId"), ""]}]})
    );
    assert_eq!(t["Outputs"]["DrillRoleArn"]["Value"], get_att("DrillRole", "Arn"));
    assert_eq!(
        t["Outputs"]["DrillRoleArn"]["Condition"],
        t["Resources"]["DrillRole"]["Condition"]
    );
    // Turned off: no role, no output, an empty variable.
    let off = Deployed::new(t.clone(), &[("DrillRoleEnabled", "false")]);
    assert!(!off.exists("DrillRole"));
    let env = off.resolve(&off.resource("DetectorFunction")["Properties"]["Environment"]["Variables"]);
    assert_eq!(env["DRILL_ROLE_ARN"], "");
}

/// The DynamoDB actions each call of the state store needs (crates/aws/src/dynamodb), and whether on the
/// table or its index.
fn dynamodb_actions_of_the_store() -> BTreeSet<(&'static str, &'static str)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/aws/src/dynamodb");
    // evaluate.rs is the tests' expression evaluator; every other file is the store's.
    let source: String = ["mod.rs", "fleet.rs"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect();
    // The tests module creates tables; the store does not.
    let source = source.split("#[cfg(test)]\nmod tests").next().unwrap();
    let operations = [
        "get_item",
        "put_item",
        "update_item",
        "delete_item",
        "transact_write_items",
        "transact_get_items",
        "batch_get_item",
        "batch_write_item",
        "query",
        "scan",
        "execute_statement",
    ];
    let calls = regex::Regex::new(&format!(r"\.({})\(\)", operations.join("|"))).unwrap();
    let mut actions = BTreeSet::new();
    for call in calls.captures_iter(source) {
        match &call[1] {
            "get_item" => actions.insert(("dynamodb:GetItem", "table")),
            "batch_get_item" => actions.insert(("dynamodb:BatchGetItem", "table")),
            "update_item" => actions.insert(("dynamodb:UpdateItem", "table")),
            // Authorised per item: the store's transactions hold puts and updates only.
            "transact_write_items" => {
                assert!(!source.contains("Delete::builder") && !source.contains("ConditionCheck::builder"));
                actions.insert(("dynamodb:PutItem", "table"));
                actions.insert(("dynamodb:UpdateItem", "table"))
            }
            "query" => actions.insert(("dynamodb:Query", "index")),
            "scan" => actions.insert(("dynamodb:Scan", "table")),
            other => panic!("the store calls {other}: say which action it needs"),
        };
    }
    // Every query names the index.
    let on_the_index = regex::Regex::new(r"\.query\(\)\s*\.table_name\([^)]*\)\s*\.index_name\(").unwrap();
    assert_eq!(
        source.matches(".query()").count(),
        on_the_index.find_iter(source).count()
    );
    actions
}

/// The DynamoDB actions the template grants, on the table or its index, and the statements that grant
/// Query on the table itself.
fn dynamodb_grants(t: &Value) -> (BTreeSet<(String, &'static str)>, Vec<String>) {
    let table = get_att("StateTable", "Arn").to_string();
    let index = json!({ "Fn::Sub": "${StateTable.Arn}/index/open-incidents" }).to_string();
    let mut granted = BTreeSet::new();
    let mut table_queries = Vec::new();
    for role in ["DetectorRole", "ReporterRole"] {
        for (action, on) in grants(t, role) {
            if !action.starts_with("dynamodb:") {
                continue;
            }
            for r in on {
                let target = if r == table {
                    "table"
                } else if r == index {
                    "index"
                } else {
                    panic!("{role} {action} on {r}")
                };
                if action == "dynamodb:Query" && target == "table" {
                    table_queries.push(role.to_owned());
                }
                granted.insert((action.clone(), target));
            }
        }
    }
    (granted, table_queries)
}

#[test]
fn the_roles_grant_the_dynamodb_calls_the_store_makes_and_no_query_of_the_table() {
    let needed: BTreeSet<(String, &str)> = dynamodb_actions_of_the_store()
        .into_iter()
        .map(|(a, on)| (a.to_owned(), on))
        .collect();
    let t = template("template.yaml");
    let (granted, table_queries) = dynamodb_grants(&t);
    assert_eq!(granted, needed, "granted vs what crates/aws/src/dynamodb calls");
    assert!(table_queries.is_empty());
    // The regression: both roles used to grant Query on the base table, which nothing calls.
    let mut wide = t;
    wide["Resources"]["ReporterRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][1]["Action"]
        .as_array_mut()
        .unwrap()
        .push(json!("dynamodb:Query"));
    let (granted, table_queries) = dynamodb_grants(&wide);
    assert_eq!(table_queries, ["ReporterRole"]);
    assert_ne!(granted, needed);
}

/// KMS grants other than the account's administration of its key: exactly GenerateDataKey and Decrypt.
fn kms_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, s) in statements(t) {
        if s["Sid"] == "AccountAdministersTheKey" {
            continue;
        }
        // Reading the trail's log files decrypts only (the back-fill's scanner).
        if s["Sid"] == "DecryptTheTrail" {
            if s["Action"] != "kms:Decrypt" {
                problems.push(format!("{id} DecryptTheTrail: {}", s["Action"]));
            }
            continue;
        }
        let actions = as_list(&s["Action"]);
        let kms: BTreeSet<&str> = actions
            .iter()
            .filter_map(Value::as_str)
            .filter(|a| a.starts_with("kms:"))
            .collect();
        // Listing aliases (the drill's probe) uses no key.
        let uses_a_key = kms.iter().any(|a| !a.starts_with("kms:List"));
        if uses_a_key && kms != BTreeSet::from(["kms:GenerateDataKey", "kms:Decrypt"]) {
            problems.push(format!("{id} {}: {kms:?}", s["Sid"]));
        }
    }
    problems
}

#[test]
fn publishing_to_the_encrypted_topic_is_granted_exact_key_actions() {
    let t = template("template.yaml");
    assert_eq!(kms_problems(&t), Vec::<String>::new());
    let mut wildcard = t;
    wildcard["Resources"]["DetectorRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["Sid"] == "EncryptAlerts")
        .unwrap()["Action"] = json!(["kms:GenerateDataKey*", "kms:Decrypt"]);
    assert_eq!(kms_problems(&wildcard).len(), 1);
}

/// The skipped checks of a checkov configuration, each with its reason: the comment lines right above the
/// entry, the first starting with the check's id and a colon.
fn checkov_skips(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut skips: Vec<(String, String)> = Vec::new();
    let mut in_list = false;
    let mut comment: Vec<&str> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            comment.clear();
            continue;
        }
        if !line.starts_with(' ') {
            in_list = trimmed == "skip-check:";
            comment.clear();
            continue;
        }
        if !in_list {
            continue;
        }
        if let Some(c) = trimmed.strip_prefix('#') {
            comment.push(c.trim());
        } else if let Some(id) = trimmed.strip_prefix("- ") {
            let id = id.trim();
            let reason = comment
                .first()
                .and_then(|first| first.strip_prefix(&format!("{id}:")))
                .map(|first| {
                    std::iter::once(first.trim())
                        .chain(comment[1..].iter().copied())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .ok_or_else(|| format!("{id}: no comment starting with \"# {id}:\" right above it"))?;
            if reason.len() < 40 {
                return Err(format!("{id}: reason too short to be one: {reason:?}"));
            }
            if skips.iter().any(|(known, _)| known == id) {
                return Err(format!("{id}: skipped twice"));
            }
            skips.push((id.to_owned(), reason));
            comment.clear();
        } else {
            comment.clear();
        }
    }
    Ok(skips)
}

#[test]
fn every_checkov_skip_has_a_reason() {
    let text = std::fs::read_to_string(infra_dir().join(".checkov.yaml")).unwrap();
    let skips = checkov_skips(&text).unwrap();
    assert!(!skips.is_empty());
    let id = regex::Regex::new(r"^CKV2?_AWS_[0-9]+$").unwrap();
    for (check, _) in &skips {
        assert!(id.is_match(check), "{check}");
    }
    // checkov itself reads the same list.
    let config: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let listed: Vec<String> = config["skip-check"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, skips.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>());
    // Pinned, in a venv of its own, and run by the lint.
    let script =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/infra-check.sh"))
            .unwrap();
    assert!(
        regex::Regex::new(r"(?m)^CHECKOV_VERSION=[0-9]+\.[0-9]+\.[0-9]+$")
            .unwrap()
            .is_match(&script)
    );
    assert!(script.contains("install_one .venv-checkov checkov \"$CHECKOV_VERSION\""));

    let unexplained = "skip-check:\n  - CKV_AWS_117\n";
    assert!(checkov_skips(unexplained).unwrap_err().contains("CKV_AWS_117"));
    let misplaced = concat!(
        "skip-check:\n",
        "  # CKV_AWS_116: the schedules' invocations carry nothing to replay, and so on\n",
        "  - CKV_AWS_117\n"
    );
    assert!(checkov_skips(misplaced).is_err());
    let terse = "skip-check:\n  # CKV_AWS_117: no\n  - CKV_AWS_117\n";
    assert!(checkov_skips(terse).unwrap_err().contains("too short"));
    let separated = concat!(
        "skip-check:\n",
        "  # CKV_AWS_117: the functions call only AWS APIs, nothing private to reach\n",
        "  - CKV_AWS_116\n",
        "  - CKV_AWS_117\n"
    );
    assert!(checkov_skips(separated).is_err());
}
