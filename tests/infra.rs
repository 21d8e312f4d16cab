//! The SAM deployment (infra/), checked by reading it: least privilege, encryption, the dead-letter queue,
//! the rule state, the event source mapping and the function's environment; and the rule's event pattern,
//! installed on moto's EventBridge, letting through exactly the events the detector needs from every
//! sample, a drill and a set of look-alikes.
//!
//! The moto test needs `TOKENWATCH_MOTO_ENDPOINT` (`scripts/emulators.sh start`, then
//! `source target/emulators/env`) and fails without it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use tokenwatch_core::classify::is_expiry;
use tokenwatch_core::events::drill_event;
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
const WILDCARD_RESOURCES: [(&str, &str, &str, &str); 2] = [
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

/// The function, the queue that feeds it and the rule that feeds the queue.
struct Pipeline<'a> {
    function: (&'a str, &'a Value),
    queue: &'a str,
    rule: (&'a str, &'a Value),
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
    assert_eq!(rules.len(), 1, "one rule with an event pattern");
    Pipeline {
        function,
        queue,
        rule: rules[0],
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
    let expect: BTreeMap<&str, Vec<&String>> = BTreeMap::from([
        ("dynamodb:GetItem", vec![&table]),
        ("dynamodb:PutItem", vec![&table]),
        ("dynamodb:UpdateItem", vec![&table]),
        ("dynamodb:Query", vec![&table, &index]),
        ("sqs:ReceiveMessage", vec![&queue]),
        ("sqs:DeleteMessage", vec![&queue]),
        ("sqs:ChangeMessageVisibility", vec![&queue]),
        ("sqs:GetQueueAttributes", vec![&queue]),
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
            "kms:GenerateDataKey*",
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
    // Events EventBridge fails to deliver go there too, and the rule may send to both queues, nobody else.
    let target = &p.rule.1["Properties"]["Targets"][0];
    assert_eq!(target["Arn"], get_att(p.queue, "Arn"));
    assert_eq!(target["DeadLetterConfig"]["Arn"], get_att(dlq, "Arn"));
    for q in [p.queue, dlq] {
        let policies: Vec<&Value> = of_type(&t, "AWS::SQS::QueuePolicy")
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| as_list(&r["Properties"]["Queues"]).contains(&reference(q)))
            .collect();
        assert_eq!(policies.len(), 1, "{q} has one queue policy");
        let s = as_list(&policies[0]["Properties"]["PolicyDocument"]["Statement"]);
        assert_eq!(s.len(), 1, "{q}: only the rule is granted");
        assert_eq!(s[0]["Principal"], json!({"Service": "events.amazonaws.com"}));
        assert_eq!(s[0]["Action"], "sqs:SendMessage");
        assert_eq!(s[0]["Resource"], get_att(q, "Arn"));
        assert_eq!(
            s[0]["Condition"]["ArnEquals"]["aws:SourceArn"],
            get_att(p.rule.0, "Arn")
        );
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
    for (id, q) in queues {
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
    let pattern = &p.rule.1["Properties"]["EventPattern"];
    let f = template("forwarder.yaml");
    let (_, forwarder) = only(&f, "AWS::Events::Rule");
    assert_eq!(forwarder["Properties"]["State"], READ_ONLY_TOO);
    assert_eq!(
        &forwarder["Properties"]["EventPattern"], pattern,
        "forwarder.yaml's pattern differs"
    );
    let target = &forwarder["Properties"]["Targets"][0];
    assert!(target["Arn"].to_string().contains(":event-bus/default"));
    assert!(target["RoleArn"].to_string().contains("ForwarderRole"));
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
    let permissions = permissions_of(&t, p.function.0);
    assert_eq!(permissions.len(), 1, "one permission to invoke the detector");
    let permission = permissions[0];
    assert_eq!(permission["Properties"]["SourceArn"], get_att(schedule, "Arn"));
    assert_eq!(permission["Properties"]["Principal"], "events.amazonaws.com");
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

/// The function that is not fed by the queue: the reporter.
fn reporter(t: &Value) -> (&str, &Value) {
    let detector = pipeline(t).function.0;
    let others: Vec<(&str, &Value)> = of_type(t, "AWS::Serverless::Function")
        .into_iter()
        .filter(|(id, _)| *id != detector)
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
    let index = json!({ "Fn::Sub": "${StateTable.Arn}/index/open-incidents" }).to_string();
    let log_group = f["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        .as_str()
        .unwrap();
    let key = get_att("TopicKey", "Arn").to_string();
    let set = |items: &[&String]| -> BTreeSet<String> { items.iter().map(|s| s.to_string()).collect() };
    let expect: BTreeMap<&str, BTreeSet<String>> = BTreeMap::from([
        ("dynamodb:Scan", set(&[&table])),
        ("dynamodb:GetItem", set(&[&table])),
        ("dynamodb:Query", set(&[&table, &index])),
        ("sns:Publish", set(&[&reference("AlertTopic").to_string()])),
        ("kms:GenerateDataKey*", set(&[&key])),
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
                || ["dynamodb:Scan", "dynamodb:Query", "dynamodb:GetItem"].contains(&action.as_str()),
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
fn config_variables(crate_dir: &Path) -> BTreeSet<String> {
    let source = std::fs::read_to_string(crate_dir.join("src/config.rs")).unwrap();
    let re = regex::Regex::new(r#"(?m)^pub const [A-Z_]+: &str = "([A-Z_]+)";"#).unwrap();
    re.captures_iter(&source).map(|c| c[1].to_owned()).collect()
}

#[test]
fn each_function_environment_is_what_its_configuration_reads() {
    let t = template("template.yaml");
    let functions = of_type(&t, "AWS::Serverless::Function");
    assert_eq!(functions.len(), 2, "the detector and the reporter");
    for (id, function) in functions {
        let props = &function["Properties"];
        let set: BTreeSet<String> = props["Environment"]["Variables"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let code = infra_dir().join(props["CodeUri"].as_str().unwrap());
        let read = config_variables(&code);
        assert!(
            read.contains("TABLE_NAME") && read.contains("TOPIC_ARN"),
            "{id}: config.rs was not understood: {read:?}"
        );
        // The Lambda runtime sets AWS_REGION (and reserves it).
        let by_runtime = BTreeSet::from(["AWS_REGION".to_owned()]);
        let want: BTreeSet<String> = read.difference(&by_runtime).cloned().collect();
        assert_eq!(set, want, "{id}: template variables vs config.rs constants");
        let vars = &props["Environment"]["Variables"];
        assert_eq!(vars["TABLE_NAME"], reference("StateTable"), "{id}");
        assert_eq!(vars["TOPIC_ARN"], reference("AlertTopic"), "{id}");
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
    assert_eq!(defaults["AlertEmail"], "");
    assert_eq!(defaults["AlertHttpsEndpoint"], "");
    assert_eq!(defaults["ForwarderOrganizationId"], "");
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
    let roles = json!([get_att("DetectorRole", "Arn"), get_att("ReporterRole", "Arn")]);
    assert_eq!(allows[0]["Principal"]["AWS"], roles);
    assert_eq!(allows[1]["Principal"]["Service"], "cloudwatch.amazonaws.com");
    let deny = s
        .iter()
        .find(|s| s["Effect"] == "Deny")
        .expect("a deny for everyone else");
    assert_eq!(deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"], roles);
    // Each function's role is one of them.
    for (id, f) in of_type(&t, "AWS::Serverless::Function") {
        let role = get_att(f["Properties"]["Role"]["Fn::GetAtt"][0].as_str().unwrap(), "Arn");
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
            "DigestsFailed"
        ])
    );
    for (id, a) in &alarms {
        assert_eq!(a["Properties"]["AlarmActions"], json!([reference(topic)]), "{id}");
        let name = a["Properties"]["AlarmName"]["Fn::Sub"].as_str().unwrap();
        assert!(
            name.starts_with("${AWS::StackName}-"),
            "{id}: the topic policy admits alarms by name"
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

fn cloudtrail(source: &str, detail_type: &str, detail: Value) -> Value {
    json!({"version": "0", "detail-type": detail_type, "source": source, "account": "123456789012",
           "region": "us-east-1", "resources": [], "detail": detail})
}

fn call(service: &str, name: &str, code: Option<&str>, message: Option<&str>) -> Value {
    let mut d = json!({
        "eventVersion": "1.09", "eventTime": "2026-11-20T10:00:00Z", "eventSource": format!("{service}.amazonaws.com"),
        "eventName": name, "awsRegion": "us-east-1", "eventID": format!("infra-{service}-{name}-{code:?}"),
        "recipientAccountId": "123456789012",
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/app/s1",
                         "accessKeyId": "ASIAINFRATESTEXAMPLE"}
    });
    if let Some(c) = code {
        d["errorCode"] = json!(c);
    }
    if let Some(m) = message {
        d["errorMessage"] = json!(m);
    }
    cloudtrail(&format!("aws.{service}"), "AWS API Call via CloudTrail", d)
}

/// Healthy traffic, look-alikes and edge cases of the expiry family the samples do not cover.
fn edge_events() -> Vec<(&'static str, Value)> {
    const EXPIRED: &str = "The security token included in the request is expired";
    let spoof = {
        let mut e = call("s3", "ListBuckets", Some("ExpiredToken"), Some(EXPIRED));
        e["source"] = json!("my.app");
        e
    };
    let console = {
        let mut e = call("signin", "ConsoleLogin", Some("ExpiredToken"), Some(EXPIRED));
        e["detail-type"] = json!("AWS Console Sign In via CloudTrail");
        e
    };
    vec![
        ("ListBuckets ok", call("s3", "ListBuckets", None, None)),
        (
            "GetObject AccessDenied",
            call("s3", "GetObject", Some("AccessDenied"), Some("Access Denied")),
        ),
        (
            "AccessDenied saying expired",
            call("s3", "GetObject", Some("AccessDenied"), Some(EXPIRED)),
        ),
        (
            "throttled saying expired",
            call("ssm", "GetParameters", Some("ThrottlingException"), Some(EXPIRED)),
        ),
        (
            "InvalidClientTokenId",
            call("sts", "GetCallerIdentity", Some("InvalidClientTokenId"), None),
        ),
        (
            "Client.RequestExpired",
            call("ec2", "DescribeInstances", Some("Client.RequestExpired"), None),
        ),
        (
            "Server.ExpiredToken",
            call("ec2", "DescribeVolumes", Some("Server.ExpiredToken"), None),
        ),
        (
            "service-prefixed",
            call("foo", "List", Some("FooExpiredTokenException"), None),
        ),
        (
            "RequestExpiredX",
            call("ec2", "DescribeTags", Some("RequestExpiredX"), None),
        ),
        (
            "ExpiredIterator",
            call(
                "kinesis",
                "GetRecords",
                Some("ExpiredIteratorException"),
                Some("Iterator expired"),
            ),
        ),
        (
            "message only",
            call("s3", "GetObject", None, Some("The provided token has expired.")),
        ),
        (
            "capitalised message",
            call(
                "foo",
                "Get",
                Some("TokenExpired"),
                Some("Security token included in the request is expired"),
            ),
        ),
        (
            "must be refreshed",
            call(
                "s3",
                "GetObject",
                Some("TokenRefreshRequired"),
                Some("The provided token must be refreshed."),
            ),
        ),
        ("AssumeRole ok", call("sts", "AssumeRole", None, None)),
        (
            "AssumeRole denied",
            call("sts", "AssumeRole", Some("AccessDenied"), Some("not authorized")),
        ),
        ("GetSessionToken ok", call("sts", "GetSessionToken", None, None)),
        (
            "GetFederationToken ok",
            call("sts", "GetFederationToken", None, None),
        ),
        (
            "GetCallerIdentity ok",
            call("sts", "GetCallerIdentity", None, None),
        ),
        (
            "web identity token expired",
            call(
                "sts",
                "AssumeRoleWithWebIdentity",
                Some("ExpiredTokenException"),
                None,
            ),
        ),
        ("spoofed source", spoof),
        ("console sign-in", console),
        ("drill", drill_event("123456789012", "us-east-1", 1_795_000_000)),
    ]
}

#[tokio::test]
async fn the_rule_pattern_passes_exactly_what_the_detector_needs() {
    use aws_sdk_eventbridge::types::{PutEventsRequestEntry, RuleState, Target};

    let t = template("template.yaml");
    let rule = pipeline(&t).rule.1["Properties"].clone();
    let pattern = rule["EventPattern"].to_string();
    assert!(
        !pattern.contains("\"Ref\"") && !pattern.contains("Fn::"),
        "the pattern is literal JSON"
    );
    // PutRule's limit on EventPattern.
    assert!(
        pattern.len() <= 4096,
        "the pattern is {} characters",
        pattern.len()
    );

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
    events.extend(edge_events().into_iter().map(|(n, e)| (n.to_owned(), e)));
    let expected: BTreeSet<usize> = (0..events.len()).filter(|&i| needed(&events[i].1)).collect();
    assert!(expected.iter().any(|&i| i < from_samples) && expected.len() < events.len());

    let config = Emulator::Moto.sdk().await;
    let eb = aws_sdk_eventbridge::Client::new(&config);
    // A bus of its own, so that no other test's rules see these events.
    let bus = unique("tokenwatch-infra");
    let queue = Queue::new(&config, "tokenwatch-infra").await;
    eb.create_event_bus().name(&bus).send().await.unwrap();
    eb.put_rule()
        .name(&bus)
        .event_bus_name(&bus)
        .event_pattern(&pattern)
        .state(RuleState::from(rule["State"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    eb.put_targets()
        .rule(&bus)
        .event_bus_name(&bus)
        .targets(Target::builder().id("queue").arn(&queue.arn).build().unwrap())
        .send()
        .await
        .unwrap();

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

    eb.remove_targets()
        .rule(&bus)
        .event_bus_name(&bus)
        .ids("queue")
        .send()
        .await
        .unwrap();
    eb.delete_rule()
        .name(&bus)
        .event_bus_name(&bus)
        .send()
        .await
        .unwrap();
    eb.delete_event_bus().name(&bus).send().await.unwrap();
    queue
        .sqs
        .delete_queue()
        .queue_url(&queue.url)
        .send()
        .await
        .unwrap();
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
