//! `tokenwatch doctor`: read-only checks of a deployed stack, each OK, WARN or FAIL with its fix in one
//! line (docs/contract.md, "Proving it in the account"). The reads are `tokenwatch_aws::doctor`'s; every
//! check here is a pure function of what they returned.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use serde::Serialize;
use serde_json::Value;
use tokenwatch_aws::doctor::{Rule, Subscription, Trail};
use tokenwatch_aws::probe::{Alarm, Prober, Stack};
use tokenwatch_core::model::{CredentialSource, Severity, Verdict};
use tokenwatch_core::ports::PortError;
use tokenwatch_core::time::Epoch;

use crate::table;

/// The patterns of the stack's rules and the events they must and must not match: the same file the
/// template's tests put through a local EventBridge (tests/infra.rs).
pub(crate) const PATTERN_EVENTS: &str = include_str!("../../../infra/pattern-events.json");

/// The rule state that lets read-only calls through (docs/eventbridge.md).
const READ_ONLY_TOO: &str = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS";
/// The sweep runs every 5 minutes; two missed runs are a fault.
pub(crate) const SWEEP_WITHIN: Epoch = 10 * 60;
/// The forwarder's rule name (infra/forwarder.yaml).
const FORWARDER_RULE: &str = "tokenwatch-forwarder";
/// The outputs the checks need.
const NEEDED_OUTPUTS: [&str; 7] = [
    "DetectorRuleArn",
    "IssuanceRuleArn",
    "DeadLetterQueueUrl",
    "DetectorLogGroupName",
    "AlertTopicArn",
    "StateTableName",
    "EventQueueUrl",
];

const DOCTOR_HELP: &str = "\
Examples:
  tokenwatch doctor --stack tokenwatch
  tokenwatch doctor --stack tokenwatch --regions eu-west-1,ap-southeast-2

Checks, in the stack's region (AWS_REGION): the stack and its outputs; the detector rule's state
(ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS) and pattern (the template's), and the issuance rule's; the
patterns tested on EventBridge itself (TestEventPattern) against events they must and must not match; a logging trail that
covers the region with management events, read and write; the dead-letter queue empty; the detector's sweep
ran in the last 10 minutes; no alarm of the stack in ALARM; at least one confirmed subscription, and which
alerts reach no subscriber through the filter policies; with --regions, each forwarder's rule and target.
Read-only: Describe, Get, List and TestEventPattern calls, and logs:FilterLogEvents.

Exit status:
  0   no check failed (warnings allowed)
  1   a check failed, or the checks could not run
  64  usage error (a bad flag or value)";

#[derive(Parser)]
#[command(after_help = DOCTOR_HELP)]
pub(crate) struct DoctorArgs {
    /// The deployed stack's name.
    #[arg(long, value_name = "NAME")]
    stack: String,
    /// Regions where the forwarder (infra/forwarder.yaml) is deployed, comma-separated.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    regions: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DoctorFormat::Table)]
    format: DoctorFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DoctorFormat {
    /// One line per check.
    Table,
    /// The checks as a JSON document.
    Json,
}

/// A check's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Check {
    pub check: String,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it, in one line (empty when OK).
    pub fix: String,
}

fn ok(check: &str, detail: impl Into<String>) -> Check {
    Check {
        check: check.to_owned(),
        status: Status::Ok,
        detail: detail.into(),
        fix: String::new(),
    }
}

fn warn(check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        check: check.to_owned(),
        status: Status::Warn,
        detail: detail.into(),
        fix: fix.into(),
    }
}

fn fail(check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        check: check.to_owned(),
        status: Status::Fail,
        detail: detail.into(),
        fix: fix.into(),
    }
}

/// A read that failed: the check fails, saying which permission or setting to look at.
fn unreadable(check: &str, e: &PortError, permission: &str) -> Check {
    fail(
        check,
        format!("could not be read: {e}"),
        format!("run with credentials allowed {permission} in the stack's region (AWS_REGION)"),
    )
}

/// One bundled event and whether the rule must match it.
pub(crate) struct PatternEvent {
    pub name: String,
    pub must_match: bool,
    pub event: Value,
}

/// The bundled patterns of the stack's two rules: the detector rule's (failures and drills, to the
/// queue) and the issuance rule's (successful STS issuing calls, to the function).
pub(crate) fn bundled_rules() -> (Value, Value) {
    let doc: Value = serde_json::from_str(PATTERN_EVENTS).unwrap_or_default();
    (
        doc["rules"]["DetectorRule"].clone(),
        doc["rules"]["IssuanceRule"].clone(),
    )
}

/// The bundled pattern (the two rules' together, which a forwarder's rule has) and events.
pub(crate) fn bundled() -> (Value, Vec<PatternEvent>) {
    let doc: Value = serde_json::from_str(PATTERN_EVENTS).unwrap_or_default();
    let events = doc["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| PatternEvent {
                    name: e["name"].as_str().unwrap_or_default().to_owned(),
                    must_match: e["match"].as_bool().unwrap_or(false),
                    event: e["event"].clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    (doc["pattern"].clone(), events)
}

/// The stack: complete, with the outputs the checks need.
pub(crate) fn check_stack(name: &str, stack: &Result<Stack, PortError>) -> Check {
    const CHECK: &str = "stack";
    let s = match stack {
        Ok(s) => s,
        Err(e) if e.to_string().contains("does not exist") => {
            return fail(
                CHECK,
                format!("no stack {name} in this region"),
                "deploy it (README, \"Deploying\"), or give --stack the right name and AWS_REGION its region",
            );
        }
        Err(e) => return unreadable(CHECK, e, "cloudformation:DescribeStacks"),
    };
    let complete =
        s.status.ends_with("_COMPLETE") && !s.status.contains("ROLLBACK") && !s.status.starts_with("DELETE");
    if !complete {
        let status = if s.status.ends_with("_IN_PROGRESS") {
            Status::Warn
        } else {
            Status::Fail
        };
        return Check {
            check: CHECK.into(),
            status,
            detail: format!("{name} is {}", s.status),
            fix: "wait for the deployment to finish, or see the stack's events and deploy again".into(),
        };
    }
    let missing: Vec<&str> = NEEDED_OUTPUTS
        .iter()
        .copied()
        .filter(|o| !s.outputs.contains_key(*o))
        .collect();
    if !missing.is_empty() {
        return fail(
            CHECK,
            format!("{name} lacks the outputs {}", missing.join(", ")),
            "deploy the current infra/template.yaml (sam build && sam deploy)",
        );
    }
    if !s.outputs.contains_key("DrillRoleArn") {
        return warn(
            CHECK,
            format!("{name} is {}, without a drill role", s.status),
            "deploy with DrillRoleEnabled=true to run `tokenwatch drill --real`",
        );
    }
    ok(CHECK, format!("{name} is {}, with every output", s.status))
}

/// The detector rule's state.
pub(crate) fn check_rule_state(rule: &Result<Option<Rule>, PortError>) -> Check {
    const CHECK: &str = "rule state";
    match rule {
        Err(e) => unreadable(CHECK, e, "events:DescribeRule"),
        Ok(None) => fail(
            CHECK,
            "the detector rule does not exist",
            "deploy the stack again",
        ),
        Ok(Some(r)) if r.state == READ_ONLY_TOO => ok(CHECK, READ_ONLY_TOO),
        Ok(Some(r)) if r.state == "ENABLED" => fail(
            CHECK,
            "ENABLED: read-only calls (Get, List, Describe), where most failures happen, never reach the detector",
            "deploy the stack again (its rule is ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS); something changed it",
        ),
        Ok(Some(r)) => fail(
            CHECK,
            format!("{}: no event reaches the detector", r.state),
            "deploy the stack again (its rule is ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS)",
        ),
    }
}

/// The detector rule's pattern: the template's.
pub(crate) fn check_rule_pattern(rule: &Result<Option<Rule>, PortError>, template: &Value) -> Check {
    const CHECK: &str = "rule pattern";
    let Ok(Some(r)) = rule else {
        return fail(CHECK, "no rule to read", "see the rule state check");
    };
    let deployed: Option<Value> = r.pattern.as_deref().and_then(|p| serde_json::from_str(p).ok());
    if deployed.as_ref() == Some(template) {
        ok(CHECK, "the template's")
    } else {
        fail(
            CHECK,
            "not the template's: some failures may never reach the detector",
            "deploy this version's infra/template.yaml (sam build && sam deploy)",
        )
    }
}

/// The issuance rule: the detector rule's state, and the template's pattern. Without it no session is
/// indexed, and every failure is judged without its issuing call.
pub(crate) fn check_issuance_rule(rule: &Result<Option<Rule>, PortError>, template: &Value) -> Check {
    const CHECK: &str = "issuance rule";
    let r = match rule {
        Err(e) => return unreadable(CHECK, e, "events:DescribeRule"),
        Ok(None) => {
            return fail(
                CHECK,
                "the issuance rule does not exist: no issuing call reaches the detector",
                "deploy this version's infra/template.yaml (sam build && sam deploy)",
            );
        }
        Ok(Some(r)) => r,
    };
    if r.state != READ_ONLY_TOO {
        return fail(
            CHECK,
            format!("state {}, not {READ_ONLY_TOO}", r.state),
            "deploy the stack again; something changed the rule",
        );
    }
    let deployed: Option<Value> = r.pattern.as_deref().and_then(|p| serde_json::from_str(p).ok());
    if deployed.as_ref() != Some(template) {
        return fail(
            CHECK,
            "not the template's pattern: some issuing calls may never reach the detector",
            "deploy this version's infra/template.yaml (sam build && sam deploy)",
        );
    }
    ok(CHECK, format!("{READ_ONLY_TOO}, the template's pattern"))
}

/// The bundled events through EventBridge's own matcher: (event, must match, what EventBridge said).
pub(crate) fn check_pattern_tests(results: &[(&PatternEvent, Result<bool, PortError>)]) -> Check {
    const CHECK: &str = "pattern on EventBridge";
    if let Some((_, Err(e))) = results.iter().find(|(_, r)| r.is_err()) {
        return unreadable(CHECK, e, "events:TestEventPattern");
    }
    if results.is_empty() {
        return fail(CHECK, "no pattern to test", "see the rule state check");
    }
    let wrong: Vec<String> = results
        .iter()
        .filter(|(e, r)| r.as_ref().ok() != Some(&e.must_match))
        .map(|(e, _)| {
            format!(
                "{} ({})",
                e.name,
                if e.must_match {
                    "must match"
                } else {
                    "must not match"
                }
            )
        })
        .collect();
    let must = results.iter().filter(|(e, _)| e.must_match).count();
    if wrong.is_empty() {
        return ok(
            CHECK,
            format!(
                "{} events: the {must} that must match do, the {} others do not",
                results.len(),
                results.len() - must
            ),
        );
    }
    let none_matched = results.iter().all(|(_, r)| r.as_ref().ok() != Some(&true));
    fail(
        CHECK,
        format!(
            "{}EventBridge disagrees on {}: {}",
            if none_matched {
                "EventBridge matched no event at all. "
            } else {
                ""
            },
            wrong.len(),
            wrong.join(", ")
        ),
        "report it with this output (the pattern's semantics differ from what the template assumes); \
         failures of those shapes are not seen",
    )
}

/// A trail that feeds EventBridge in `region`: logging, covering the region, with management events
/// read and write (docs/eventbridge.md, "A trail is required").
pub(crate) fn check_trail(region: &str, trails: &Result<Vec<Trail>, PortError>) -> Check {
    const CHECK: &str = "trail";
    let trails = match trails {
        Ok(t) => t,
        Err(e) => {
            return unreadable(
                CHECK,
                e,
                "cloudtrail:DescribeTrails, GetTrailStatus and GetEventSelectors",
            );
        }
    };
    let covering: Vec<&Trail> = trails
        .iter()
        .filter(|t| t.multi_region || t.home_region == region)
        .collect();
    let describe = |t: &Trail| {
        format!(
            "{}{}",
            t.name,
            if t.organization { " (organization)" } else { "" }
        )
    };
    if let Some(t) = covering
        .iter()
        .find(|t| t.logging == Some(true) && t.management_read && t.management_write)
    {
        return ok(
            CHECK,
            format!(
                "{} logs management events, read and write, in {region}",
                describe(t)
            ),
        );
    }
    if let Some(t) = covering
        .iter()
        .find(|t| t.logging == Some(true) && t.management_write)
    {
        return warn(
            CHECK,
            format!(
                "{} logs write management events only: failed reads never reach the detector",
                describe(t)
            ),
            format!(
                "aws cloudtrail put-event-selectors --trail-name {} with ReadWriteType All",
                t.name
            ),
        );
    }
    if let Some(t) = covering.iter().find(|t| t.logging.is_none()) {
        return warn(
            CHECK,
            format!("{}'s status cannot be read from this account", describe(t)),
            "check in the organization's management account that it logs management events, read and write",
        );
    }
    let fix = "create a trail that logs management events, read and write: aws cloudtrail create-trail \
               --name tokenwatch --s3-bucket-name BUCKET --is-multi-region-trail, then start-logging";
    match covering.first() {
        Some(t) if t.logging == Some(false) => fail(
            CHECK,
            format!(
                "{} covers {region} but is not logging: CloudTrail delivers nothing to EventBridge",
                t.name
            ),
            format!("aws cloudtrail start-logging --name {}", t.name),
        ),
        Some(t) => fail(
            CHECK,
            format!("{} logs no management events", t.name),
            format!(
                "aws cloudtrail put-event-selectors --trail-name {} with management events, ReadWriteType All",
                t.name
            ),
        ),
        None => fail(
            CHECK,
            format!("no trail covers {region}: CloudTrail delivers nothing to EventBridge"),
            fix,
        ),
    }
}

/// The dead-letter queue: empty.
pub(crate) fn check_dead_letters(
    depth: &Result<(u64, u64), PortError>,
    outputs: &BTreeMap<String, String>,
) -> Check {
    const CHECK: &str = "dead-letter queue";
    match depth {
        Err(e) => unreadable(CHECK, e, "sqs:GetQueueAttributes"),
        Ok((0, 0)) => ok(CHECK, "empty"),
        Ok((visible, in_flight)) => fail(
            CHECK,
            format!("{} events the detector could not process", visible + in_flight),
            format!(
                "see the detector's log group, fix the cause, then as the RedriveRoleArn role: aws sqs \
                 start-message-move-task --source-arn {}",
                outputs
                    .get("DeadLetterQueueArn")
                    .map(String::as_str)
                    .unwrap_or("<DeadLetterQueueArn output>")
            ),
        ),
    }
}

/// The detector's sweep: completed within [`SWEEP_WITHIN`].
pub(crate) fn check_sweep(last: &Result<Option<Epoch>, PortError>, now: Epoch) -> Check {
    const CHECK: &str = "sweep";
    match last {
        Err(e) => unreadable(CHECK, e, "logs:FilterLogEvents on the detector's log group"),
        Ok(Some(t)) if now - t <= SWEEP_WITHIN => {
            ok(CHECK, format!("last completed {} s ago", (now - t).max(0)))
        }
        Ok(_) => fail(
            CHECK,
            format!(
                "no sweep completed in the last {} minutes: held pages wait and quiet incidents never resolve",
                SWEEP_WITHIN / 60
            ),
            "check that the stack's SweepSchedule rule is ENABLED, and the detector's log group for errors",
        ),
    }
}

/// The stack's alarms: none in ALARM.
pub(crate) fn check_alarms(alarms: &Result<Vec<Alarm>, PortError>, stack: &str) -> Check {
    const CHECK: &str = "alarms";
    match alarms {
        Err(e) => unreadable(CHECK, e, "cloudwatch:DescribeAlarms"),
        Ok(a) if a.is_empty() => warn(
            CHECK,
            format!("no alarm named {stack}-*"),
            "deploy the current infra/template.yaml: it creates the detector's alarms",
        ),
        Ok(a) => {
            let firing: Vec<&str> = a
                .iter()
                .filter(|a| a.state == "ALARM")
                .map(|a| a.name.as_str())
                .collect();
            if firing.is_empty() {
                ok(CHECK, format!("{} alarms, none in ALARM", a.len()))
            } else {
                fail(
                    CHECK,
                    format!("in ALARM: {}", firing.join(", ")),
                    "each alarm's description says what it means; see the detector's log group",
                )
            }
        }
    }
}

/// The alert topic's subscriptions: at least one confirmed.
pub(crate) fn check_subscriptions(subs: &Result<Vec<Subscription>, PortError>, topic: &str) -> Check {
    const CHECK: &str = "subscriptions";
    match subs {
        Err(e) => unreadable(
            CHECK,
            e,
            "sns:ListSubscriptionsByTopic and GetSubscriptionAttributes",
        ),
        Ok(s) => {
            let confirmed: Vec<String> = s
                .iter()
                .filter(|s| s.confirmed)
                .map(|s| s.protocol.clone())
                .collect();
            let pending = s.len() - confirmed.len();
            if confirmed.is_empty() {
                fail(
                    CHECK,
                    if pending > 0 {
                        format!("{pending} subscriptions, none confirmed: every page reaches nobody")
                    } else {
                        "no subscription: every page reaches nobody".into()
                    },
                    format!(
                        "confirm the pending ones (the e-mail's link), or: aws sns subscribe --topic-arn {topic} \
                         --protocol email --notification-endpoint ONCALL@EXAMPLE.COM"
                    ),
                )
            } else {
                ok(
                    CHECK,
                    format!(
                        "{} confirmed ({}){}",
                        confirmed.len(),
                        confirmed.join(", "),
                        if pending > 0 {
                            format!(", {pending} pending")
                        } else {
                            String::new()
                        }
                    ),
                )
            }
        }
    }
}

/// Does an SNS filter policy (message-attribute scope) let a message with these string attributes
/// through? `None` when it uses what this reader does not evaluate (numeric and address operators, an
/// unknown one): such a policy is taken as letting everything through, so that the check never warns
/// wrongly.
pub(crate) fn policy_matches(policy: &Value, attributes: &BTreeMap<&str, String>) -> Option<bool> {
    let object = policy.as_object()?;
    let mut all = true;
    for (key, conditions) in object {
        if key == "$or" {
            let mut any = false;
            for sub in conditions.as_array()? {
                any |= policy_matches(sub, attributes)?;
            }
            all &= any;
            continue;
        }
        let value = attributes.get(key.as_str());
        let list = match conditions {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        let mut any = false;
        for c in &list {
            any |= condition(c, value.map(String::as_str))?;
        }
        all &= any;
    }
    Some(all)
}

fn condition(c: &Value, value: Option<&str>) -> Option<bool> {
    match c {
        Value::String(s) => Some(value == Some(s.as_str())),
        Value::Null => Some(value.is_none()),
        // A number or a boolean never equals a String attribute.
        Value::Number(_) | Value::Bool(_) => Some(false),
        Value::Array(_) => None,
        Value::Object(o) => {
            let (op, arg) = o.iter().next()?;
            match op.as_str() {
                "exists" => Some(arg.as_bool()? == value.is_some()),
                "prefix" => Some(value.is_some_and(|v| v.starts_with(arg.as_str().unwrap_or("\u{0}")))),
                "suffix" => Some(value.is_some_and(|v| v.ends_with(arg.as_str().unwrap_or("\u{0}")))),
                "equals-ignore-case" => {
                    Some(value.is_some_and(|v| arg.as_str().is_some_and(|a| a.eq_ignore_ascii_case(v))))
                }
                "anything-but" => {
                    // Every condition but `exists: false` needs the attribute.
                    let Some(v) = value else {
                        return Some(false);
                    };
                    let excluded = match arg {
                        Value::String(s) => v == s,
                        Value::Array(a) => a.iter().any(|x| x.as_str() == Some(v)),
                        Value::Object(inner) => match inner.get("prefix").and_then(Value::as_str) {
                            Some(p) => v.starts_with(p),
                            None => return None,
                        },
                        _ => false,
                    };
                    Some(!excluded)
                }
                _ => None,
            }
        }
    }
}

/// The message attributes of an alert (tokenwatch-render's `sns::render` sets these names).
pub(crate) fn alert_attributes(
    kind: &str,
    severity: Option<Severity>,
    verdict: Option<Verdict>,
    source: Option<CredentialSource>,
    drill: bool,
    account: &str,
) -> BTreeMap<&'static str, String> {
    // Every notice carries its own alert_id; a filter policy on it would match one alert only.
    let mut a = BTreeMap::from([("kind", kind.to_owned()), ("alert_id", format!("example-{kind}"))]);
    if kind == "digest" {
        return a;
    }
    a.insert(
        "severity",
        severity.map(Severity::as_str).unwrap_or("high").to_owned(),
    );
    a.insert(
        "verdict",
        verdict.map(Verdict::as_str).unwrap_or("stale-cache").to_owned(),
    );
    a.insert(
        "credential_source",
        source
            .map(CredentialSource::as_str)
            .unwrap_or("assume-role")
            .to_owned(),
    );
    a.insert("account", account.to_owned());
    a.insert("principal", format!("arn:aws:iam::{account}:role/example"));
    a.insert("drill", drill.to_string());
    a
}

/// Which alerts reach no confirmed subscriber through the filter policies.
pub(crate) fn check_routing(subs: &Result<Vec<Subscription>, PortError>, account: &str) -> Check {
    const CHECK: &str = "alert routing";
    let Ok(subs) = subs else {
        return fail(CHECK, "no subscriptions to read", "see the subscriptions check");
    };
    let confirmed: Vec<&Subscription> = subs.iter().filter(|s| s.confirmed).collect();
    if confirmed.is_empty() {
        return fail(CHECK, "no confirmed subscription", "see the subscriptions check");
    }
    let reaches = |attributes: &BTreeMap<&str, String>| {
        confirmed
            .iter()
            .any(|s| match (&s.filter_policy, s.filter_policy_scope.as_deref()) {
                (None, _) => true,
                // A body-scoped policy reads the message, not its attributes: not evaluated here.
                (Some(_), Some("MessageBody")) => true,
                (Some(p), _) => serde_json::from_str::<Value>(p)
                    .ok()
                    .and_then(|p| policy_matches(&p, attributes))
                    .unwrap_or(true),
            })
    };
    let mut unreached = Vec::new();
    for kind in ["open", "escalation", "resolved"] {
        for severity in Severity::ALL {
            // A near miss is a digest line, never a page: no subscription needs to reach it.
            let paged = Verdict::ALL.iter().filter(|v| **v != Verdict::NearMiss);
            let lost: Vec<&str> = paged
                .clone()
                .filter(|v| {
                    !CredentialSource::ALL.iter().any(|s| {
                        reaches(&alert_attributes(
                            kind,
                            Some(*severity),
                            Some(**v),
                            Some(*s),
                            false,
                            account,
                        ))
                    })
                })
                .map(|v| v.as_str())
                .collect();
            if lost.len() == paged.count() {
                unreached.push(format!("{kind} {}", severity.as_str()));
            } else if !lost.is_empty() {
                unreached.push(format!("{kind} {} ({})", severity.as_str(), lost.join(", ")));
            }
        }
    }
    if !reaches(&alert_attributes(
        "open",
        Some(Severity::High),
        None,
        None,
        true,
        account,
    )) {
        unreached.push("drills".into());
    }
    if !reaches(&alert_attributes("digest", None, None, None, false, account)) {
        unreached.push("digests".into());
    }
    if unreached.is_empty() {
        ok(CHECK, "every alert reaches a confirmed subscriber")
    } else {
        warn(
            CHECK,
            format!("no confirmed subscriber gets: {}", unreached.join("; ")),
            "if that is not on purpose, widen a subscription's FilterPolicy (attributes kind, severity, verdict, drill)",
        )
    }
}

/// A forwarder's rule in `region`: the pattern and state of the template's, targeting the main bus.
pub(crate) fn check_forwarder(
    region: &str,
    main_bus: &str,
    rule: &Result<Option<Rule>, PortError>,
    template: &Value,
) -> Check {
    let check = format!("forwarder in {region}");
    let redeploy =
        format!("deploy infra/forwarder.yaml in {region} with MainRegion set to the stack's region");
    match rule {
        Err(e) => unreadable(
            &check,
            e,
            &format!("events:DescribeRule and ListTargetsByRule in {region}"),
        ),
        Ok(None) => fail(
            &check,
            format!("no rule {FORWARDER_RULE}: failures in {region} are not seen"),
            redeploy,
        ),
        Ok(Some(r)) => {
            let pattern: Option<Value> = r.pattern.as_deref().and_then(|p| serde_json::from_str(p).ok());
            let mut problems = Vec::new();
            if r.state != READ_ONLY_TOO {
                problems.push(format!("state {}", r.state));
            }
            if pattern.as_ref() != Some(template) {
                problems.push("not the template's pattern".to_owned());
            }
            if !r.targets.iter().any(|t| t == main_bus) {
                problems.push(format!("no target {main_bus}"));
            }
            if problems.is_empty() {
                ok(&check, format!("forwards to {main_bus}"))
            } else {
                fail(&check, problems.join("; "), redeploy)
            }
        }
    }
}

/// What the checks read with, in the stack's region.
pub(crate) struct Clients {
    pub events: aws_sdk_eventbridge::Client,
    /// `TestEventPattern` (the same client in production; tests answer it with mocks, since no emulator
    /// evaluates patterns through it).
    pub pattern_tester: aws_sdk_eventbridge::Client,
    pub cloudtrail: aws_sdk_cloudtrail::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub sns: aws_sdk_sns::Client,
    pub prober: Prober,
    pub credentials: aws_sdk_sts::config::Credentials,
    /// Each `--regions` region's EventBridge.
    pub forwarders: Vec<(String, aws_sdk_eventbridge::Client)>,
}

/// Runs every check.
pub(crate) async fn examine(stack_name: &str, region: &str, c: &Clients, now: Epoch) -> Vec<Check> {
    use tokenwatch_aws::doctor as read;
    let (pattern, events) = bundled();
    let (detector_pattern, issuance_pattern) = bundled_rules();
    let stack = tokenwatch_aws::drill::describe_stack(&c.prober, &c.credentials, stack_name).await;
    let mut checks = vec![check_stack(stack_name, &stack)];
    let Ok(stack) = stack else {
        return checks;
    };
    let out = |k: &str| stack.outputs.get(k).cloned().unwrap_or_default();
    let rule_arn = out("DetectorRuleArn");
    let rule = if rule_arn.is_empty() {
        Ok(None)
    } else {
        read::rule(&c.events, &rule_arn).await
    };
    let issuance_arn = out("IssuanceRuleArn");
    let issuance = if issuance_arn.is_empty() {
        Ok(None)
    } else {
        read::rule(&c.events, &issuance_arn).await
    };
    checks.push(check_rule_state(&rule));
    checks.push(check_rule_pattern(&rule, &detector_pattern));
    checks.push(check_issuance_rule(&issuance, &issuance_pattern));
    let mut results = Vec::new();
    if let Ok(Some(Rule {
        pattern: Some(deployed),
        ..
    })) = &rule
    {
        let other = match &issuance {
            Ok(Some(Rule { pattern: Some(p), .. })) => Some(p),
            _ => None,
        };
        // An event reaches the detector when either rule matches it.
        for e in &events {
            let mut matched = read::matches(&c.pattern_tester, deployed, &e.event).await;
            if let (Ok(false), Some(other)) = (&matched, other) {
                matched = read::matches(&c.pattern_tester, other, &e.event).await;
            }
            results.push((e, matched));
        }
    }
    checks.push(check_pattern_tests(&results));
    checks.push(check_trail(region, &read::trails(&c.cloudtrail).await));
    let dlq = out("DeadLetterQueueUrl");
    checks.push(check_dead_letters(
        &read::queue_depth(&c.sqs, &dlq).await,
        &stack.outputs,
    ));
    checks.push(check_sweep(
        &read::last_sweep(&c.logs, &out("DetectorLogGroupName"), now - SWEEP_WITHIN).await,
        now,
    ));
    checks.push(check_alarms(
        &read::alarms(&c.prober, &c.credentials, &format!("{stack_name}-")).await,
        stack_name,
    ));
    let topic = out("AlertTopicArn");
    let subs = read::subscriptions(&c.sns, &topic).await;
    let account = rule_arn.split(':').nth(4).unwrap_or_default().to_owned();
    checks.push(check_subscriptions(&subs, &topic));
    checks.push(check_routing(&subs, &account));
    let partition = rule_arn.split(':').nth(1).unwrap_or("aws");
    let main_bus = format!("arn:{partition}:events:{region}:{account}:event-bus/default");
    for (r, client) in &c.forwarders {
        let rule = read::rule(client, FORWARDER_RULE).await;
        checks.push(check_forwarder(r, &main_bus, &rule, &pattern));
    }
    checks
}

/// The checks as a table.
pub(crate) fn render_table(checks: &[Check], width: usize) -> String {
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                c.status.as_str().to_owned(),
                c.check.clone(),
                if c.fix.is_empty() {
                    c.detail.clone()
                } else {
                    format!("{}. Fix: {}", c.detail, c.fix)
                },
            ]
        })
        .collect();
    table::render(&["STATUS", "CHECK", "FOUND"], &rows, width)
}

/// 1 when a check failed.
pub(crate) fn exit_status(checks: &[Check]) -> u8 {
    u8::from(checks.iter().any(|c| c.status == Status::Fail))
}

/// `tokenwatch doctor`.
pub(crate) fn run(args: DoctorArgs) -> Result<ExitCode> {
    use tokenwatch_aws::{SdkOptions, sdk_config};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let sdk = sdk_config(&SdkOptions::default()).await;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .context("no AWS region is configured: set AWS_REGION (the stack's region)")?;
        let events = aws_sdk_eventbridge::Client::new(&sdk);
        let forwarders = args
            .regions
            .iter()
            .map(|r| {
                let there = sdk
                    .to_builder()
                    .region(aws_config::Region::new(r.clone()))
                    .build();
                (r.clone(), aws_sdk_eventbridge::Client::new(&there))
            })
            .collect();
        let clients = Clients {
            pattern_tester: events.clone(),
            events,
            cloudtrail: aws_sdk_cloudtrail::Client::new(&sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(&sdk),
            sns: aws_sdk_sns::Client::new(&sdk),
            prober: Prober::new(&sdk),
            credentials: tokenwatch_aws::drill::operator_credentials(&sdk).await?,
            forwarders,
        };
        let checks = examine(&args.stack, &region, &clients, crate::now()).await;
        let status = exit_status(&checks);
        match args.format {
            DoctorFormat::Json => println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "stack": args.stack,
                    "region": region,
                    "checks": checks,
                    "exit_status": status,
                }))?
            ),
            DoctorFormat::Table => print!("{}", render_table(&checks, table::width())),
        }
        Ok(ExitCode::from(status))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stack(status: &str, outputs: &[&str]) -> Result<Stack, PortError> {
        Ok(Stack {
            status: status.into(),
            outputs: outputs
                .iter()
                .map(|o| ((*o).to_owned(), format!("value-of-{o}")))
                .collect(),
            parameters: BTreeMap::new(),
        })
    }

    fn all_outputs() -> Vec<&'static str> {
        let mut o = NEEDED_OUTPUTS.to_vec();
        o.push("DrillRoleArn");
        o
    }

    #[test]
    fn the_stack_check() {
        assert_eq!(
            check_stack("tw", &stack("UPDATE_COMPLETE", &all_outputs())).status,
            Status::Ok
        );
        assert_eq!(
            check_stack("tw", &stack("CREATE_COMPLETE", &NEEDED_OUTPUTS)).status,
            Status::Warn
        );
        let missing = check_stack("tw", &stack("CREATE_COMPLETE", &["AlertTopicArn"]));
        assert_eq!(missing.status, Status::Fail);
        assert!(missing.detail.contains("DetectorRuleArn"), "{missing:?}");
        assert_eq!(
            check_stack("tw", &stack("UPDATE_ROLLBACK_COMPLETE", &all_outputs())).status,
            Status::Fail
        );
        assert_eq!(
            check_stack("tw", &stack("UPDATE_IN_PROGRESS", &all_outputs())).status,
            Status::Warn
        );
        let absent = check_stack(
            "tw",
            &Err(PortError::permanent(
                "cloudformation:DescribeStacks failed: ValidationError (HTTP 400): Stack with id tw does not exist",
            )),
        );
        assert_eq!(absent.status, Status::Fail);
        assert!(absent.detail.contains("no stack tw"));
        let denied = check_stack("tw", &Err(PortError::permanent("AccessDenied")));
        assert!(denied.fix.contains("cloudformation:DescribeStacks"));
    }

    fn rule(state: &str, pattern: &Value, targets: &[&str]) -> Result<Option<Rule>, PortError> {
        Ok(Some(Rule {
            state: state.into(),
            pattern: Some(pattern.to_string()),
            targets: targets.iter().map(|t| (*t).to_owned()).collect(),
        }))
    }

    #[test]
    fn the_rule_state_and_pattern_checks() {
        let (pattern, _) = bundled();
        assert_eq!(
            check_rule_state(&rule(READ_ONLY_TOO, &pattern, &[])).status,
            Status::Ok
        );
        let enabled = check_rule_state(&rule("ENABLED", &pattern, &[]));
        assert_eq!(enabled.status, Status::Fail);
        assert!(enabled.detail.contains("read-only calls"));
        assert_eq!(
            check_rule_state(&rule("DISABLED", &pattern, &[])).status,
            Status::Fail
        );
        assert_eq!(check_rule_state(&Ok(None)).status, Status::Fail);
        assert_eq!(
            check_rule_pattern(&rule(READ_ONLY_TOO, &pattern, &[]), &pattern).status,
            Status::Ok
        );
        // Key order and spacing do not matter; content does.
        let respelled = serde_json::to_string_pretty(&pattern).unwrap();
        let same = Ok(Some(Rule {
            state: READ_ONLY_TOO.into(),
            pattern: Some(respelled),
            targets: vec![],
        }));
        assert_eq!(check_rule_pattern(&same, &pattern).status, Status::Ok);
        let mut older = pattern.clone();
        older["$or"][0]["source"] = json!(["someone.else"]);
        assert_eq!(
            check_rule_pattern(&rule(READ_ONLY_TOO, &older, &[]), &pattern).status,
            Status::Fail
        );
    }

    #[test]
    fn the_issuance_rule_check() {
        let (union, _) = bundled();
        let (_, issuance) = bundled_rules();
        assert!(issuance.get("detail").is_some());
        let checked = |r| check_issuance_rule(&r, &issuance).status;
        assert_eq!(checked(rule(READ_ONLY_TOO, &issuance, &[])), Status::Ok);
        assert_eq!(checked(Ok(None)), Status::Fail, "an older stack without it");
        assert_eq!(checked(rule("ENABLED", &issuance, &[])), Status::Fail);
        assert_eq!(checked(rule(READ_ONLY_TOO, &union, &[])), Status::Fail);
    }

    #[test]
    fn the_bundled_events_cover_what_must_and_must_not_match() {
        let (pattern, events) = bundled();
        assert!(pattern.get("$or").is_some());
        assert!(events.len() >= 25);
        assert!(events.iter().any(|e| e.must_match) && events.iter().any(|e| !e.must_match));
        assert!(
            events
                .iter()
                .any(|e| e.event["source"] == "tokenwatch.drill" && e.must_match)
        );
    }

    #[test]
    fn the_pattern_test_check() {
        let (_, events) = bundled();
        let agree: Vec<(&PatternEvent, Result<bool, PortError>)> =
            events.iter().map(|e| (e, Ok(e.must_match))).collect();
        let c = check_pattern_tests(&agree);
        assert_eq!(c.status, Status::Ok, "{c:?}");
        let mut disagree: Vec<(&PatternEvent, Result<bool, PortError>)> =
            events.iter().map(|e| (e, Ok(e.must_match))).collect();
        let i = events
            .iter()
            .position(|e| e.name == "InvalidClientTokenId")
            .unwrap();
        disagree[i].1 = Ok(true);
        let c = check_pattern_tests(&disagree);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.detail.contains("InvalidClientTokenId (must not match)"),
            "{c:?}"
        );
        let nothing: Vec<(&PatternEvent, Result<bool, PortError>)> =
            events.iter().map(|e| (e, Ok(false))).collect();
        assert!(
            check_pattern_tests(&nothing)
                .detail
                .starts_with("EventBridge matched no event at all")
        );
        let error = vec![(&events[0], Err(PortError::permanent("AccessDenied")))];
        assert!(
            check_pattern_tests(&error)
                .fix
                .contains("events:TestEventPattern")
        );
        assert_eq!(check_pattern_tests(&[]).status, Status::Fail);
    }

    fn trail(name: &str, home: &str, multi: bool, logging: Option<bool>, read: bool, write: bool) -> Trail {
        Trail {
            name: name.into(),
            arn: format!("arn:aws:cloudtrail:{home}:1:trail/{name}"),
            home_region: home.into(),
            multi_region: multi,
            organization: false,
            logging,
            management_read: read,
            management_write: write,
        }
    }

    #[test]
    fn the_trail_check() {
        let r = "eu-west-1";
        let good = trail("all", "us-east-1", true, Some(true), true, true);
        assert_eq!(check_trail(r, &Ok(vec![good.clone()])).status, Status::Ok);
        let local = trail("here", r, false, Some(true), true, true);
        assert_eq!(check_trail(r, &Ok(vec![local])).status, Status::Ok);
        let elsewhere = trail("there", "us-east-1", false, Some(true), true, true);
        let c = check_trail(r, &Ok(vec![elsewhere]));
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("no trail covers eu-west-1"));
        let write_only = trail("w", r, true, Some(true), false, true);
        assert_eq!(check_trail(r, &Ok(vec![write_only])).status, Status::Warn);
        let stopped = trail("s", r, true, Some(false), true, true);
        let c = check_trail(r, &Ok(vec![stopped]));
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.contains("start-logging --name s"));
        let no_management = trail("n", r, true, Some(true), false, false);
        assert_eq!(check_trail(r, &Ok(vec![no_management])).status, Status::Fail);
        let org = Trail {
            organization: true,
            ..trail("org", "us-east-1", true, None, false, false)
        };
        assert_eq!(check_trail(r, &Ok(vec![org.clone()])).status, Status::Warn);
        assert_eq!(check_trail(r, &Ok(vec![org, good])).status, Status::Ok);
        assert_eq!(check_trail(r, &Ok(vec![])).status, Status::Fail);
        assert_eq!(
            check_trail(r, &Err(PortError::permanent("denied"))).status,
            Status::Fail
        );
    }

    #[test]
    fn the_dead_letter_sweep_and_alarm_checks() {
        let outputs = BTreeMap::from([("DeadLetterQueueArn".to_owned(), "arn:aws:sqs:r:1:dlq".to_owned())]);
        assert_eq!(check_dead_letters(&Ok((0, 0)), &outputs).status, Status::Ok);
        let full = check_dead_letters(&Ok((3, 1)), &outputs);
        assert_eq!(full.status, Status::Fail);
        assert!(full.detail.starts_with("4 events") && full.fix.contains("--source-arn arn:aws:sqs:r:1:dlq"));
        assert_eq!(check_sweep(&Ok(Some(1000)), 1000 + 299).status, Status::Ok);
        assert_eq!(
            check_sweep(&Ok(Some(1000)), 1000 + SWEEP_WITHIN + 1).status,
            Status::Fail
        );
        assert_eq!(check_sweep(&Ok(None), 1000).status, Status::Fail);
        let alarm = |state: &str| Alarm {
            name: format!("tw-{state}"),
            state: state.into(),
        };
        assert_eq!(
            check_alarms(&Ok(vec![alarm("OK"), alarm("INSUFFICIENT_DATA")]), "tw").status,
            Status::Ok
        );
        let firing = check_alarms(&Ok(vec![alarm("OK"), alarm("ALARM")]), "tw");
        assert_eq!(firing.status, Status::Fail);
        assert!(firing.detail.contains("tw-ALARM"));
        assert_eq!(check_alarms(&Ok(vec![]), "tw").status, Status::Warn);
    }

    fn sub(protocol: &str, confirmed: bool, policy: Option<Value>) -> Subscription {
        Subscription {
            protocol: protocol.into(),
            endpoint: "x".into(),
            confirmed,
            filter_policy: policy.map(|p| p.to_string()),
            filter_policy_scope: None,
        }
    }

    #[test]
    fn the_subscription_check() {
        assert_eq!(
            check_subscriptions(&Ok(vec![sub("email", true, None)]), "t").status,
            Status::Ok
        );
        let pending = check_subscriptions(&Ok(vec![sub("email", false, None)]), "t");
        assert_eq!(pending.status, Status::Fail);
        assert!(pending.detail.contains("none confirmed"));
        assert_eq!(check_subscriptions(&Ok(vec![]), "t").status, Status::Fail);
    }

    #[test]
    fn the_routing_check_names_what_reaches_nobody() {
        let everyone = Ok(vec![sub("email", true, None)]);
        assert_eq!(check_routing(&everyone, "1").status, Status::Ok);
        let pager_only = Ok(vec![sub(
            "https",
            true,
            Some(json!({"severity": ["high", "critical"]})),
        )]);
        let c = check_routing(&pager_only, "1");
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.detail.contains("open low") && c.detail.contains("digests"),
            "{c:?}"
        );
        assert!(!c.detail.contains("open high"), "{c:?}");
        let no_drills = Ok(vec![sub(
            "https",
            true,
            Some(json!({"drill": ["false"], "kind": ["open", "escalation", "resolved", "digest"]})),
        )]);
        assert_eq!(
            check_routing(&no_drills, "1").detail,
            "no confirmed subscriber gets: drills; digests",
            "a digest has no drill attribute, so `drill: [\"false\"]` keeps it out too"
        );
        let stale_only = Ok(vec![
            sub("https", true, Some(json!({"verdict": ["stale-cache"]}))),
            sub("email", true, Some(json!({"kind": ["digest"]}))),
        ]);
        let c = check_routing(&stale_only, "1");
        assert!(
            c.detail.contains("open high (refresh-race, paused-process"),
            "{c:?}"
        );
        // A pending subscription routes nothing.
        let pending = Ok(vec![sub("email", false, None)]);
        assert_eq!(check_routing(&pending, "1").status, Status::Fail);
    }

    #[test]
    fn filter_policies_are_read_as_sns_reads_them() {
        let attrs = alert_attributes(
            "open",
            Some(Severity::High),
            Some(Verdict::StaleCache),
            None,
            false,
            "1",
        );
        let m = |p: Value| policy_matches(&p, &attrs);
        assert_eq!(m(json!({"severity": ["high"]})), Some(true));
        assert_eq!(m(json!({"severity": ["low"]})), Some(false));
        assert_eq!(
            m(json!({"severity": [{"anything-but": ["info", "low"]}]})),
            Some(true)
        );
        assert_eq!(m(json!({"severity": [{"anything-but": "high"}]})), Some(false));
        assert_eq!(m(json!({"verdict": [{"prefix": "stale"}]})), Some(true));
        assert_eq!(m(json!({"principal": [{"suffix": "/example"}]})), Some(true));
        assert_eq!(
            m(json!({"severity": [{"equals-ignore-case": "HIGH"}]})),
            Some(true)
        );
        assert_eq!(m(json!({"team": [{"exists": false}]})), Some(true));
        assert_eq!(m(json!({"team": [{"exists": true}]})), Some(false));
        assert_eq!(
            m(json!({"team": [{"anything-but": "x"}]})),
            Some(false),
            "an absent attribute matches only exists: false"
        );
        assert_eq!(
            m(json!({"$or": [{"severity": ["low"]}, {"kind": ["open"]}]})),
            Some(true)
        );
        assert_eq!(
            m(json!({"severity": ["high"], "kind": ["resolved"]})),
            Some(false)
        );
        assert_eq!(m(json!({"severity": [{"numeric": [">", 1]}]})), None);
        assert_eq!(m(json!({"severity": [5]})), Some(false));
    }

    #[test]
    fn the_alert_attributes_are_the_renderer_s() {
        use tokenwatch_core::notice::{IncidentNotice, Notice, NoticeKind};
        let notice = Notice::Incident(IncidentNotice {
            kind: NoticeKind::Open,
            severity: Severity::High,
            incident: tokenwatch_core::incident::IncidentId {
                group: "g".into(),
                opened_at: 0,
            },
            finding: tokenwatch_core::finding::example_finding(),
            drill: false,
            resolution: None,
            fleet: None,
        });
        let rendered = tokenwatch_render::sns::render(&notice, &Default::default());
        let ours = alert_attributes("open", Some(Severity::High), None, None, false, "123456789012");
        let rendered_names: std::collections::BTreeSet<&str> =
            rendered.attributes.keys().map(String::as_str).collect();
        let our_names: std::collections::BTreeSet<&str> = ours.keys().copied().collect();
        assert_eq!(rendered_names, our_names);
        assert_eq!(rendered.attributes["kind"], ours["kind"]);
        assert_eq!(rendered.attributes["drill"], ours["drill"]);
    }

    #[test]
    fn the_forwarder_check() {
        let (pattern, _) = bundled();
        let bus = "arn:aws:events:us-east-1:1:event-bus/default";
        assert_eq!(
            check_forwarder("eu-west-1", bus, &rule(READ_ONLY_TOO, &pattern, &[bus]), &pattern).status,
            Status::Ok
        );
        let elsewhere = check_forwarder(
            "eu-west-1",
            bus,
            &rule(READ_ONLY_TOO, &pattern, &["arn:other"]),
            &pattern,
        );
        assert_eq!(elsewhere.status, Status::Fail);
        assert!(elsewhere.detail.contains("no target"));
        let enabled = check_forwarder("eu-west-1", bus, &rule("ENABLED", &pattern, &[bus]), &pattern);
        assert!(enabled.detail.contains("state ENABLED"));
        let missing = check_forwarder("eu-west-1", bus, &Ok(None), &pattern);
        assert_eq!(missing.status, Status::Fail);
        assert!(missing.fix.contains("forwarder.yaml in eu-west-1"));
    }

    #[test]
    fn the_table_and_the_exit_status() {
        let checks = vec![
            ok("a", "fine"),
            warn("b", "meh", "do x"),
            fail("c", "broken", "do y"),
        ];
        assert_eq!(exit_status(&checks), 1);
        assert_eq!(exit_status(&checks[..2]), 0);
        let t = render_table(&checks, 100);
        assert!(t.contains("FAIL    c      broken. Fix: do y"), "{t}");
    }

    /// The checks against moto, which serves every read but TestEventPattern (it answers without a
    /// result): that one is answered with the bundled expectations, so this test proves the plumbing; the
    /// pattern itself is proven by EventBridge when `tokenwatch doctor` runs in an account.
    #[tokio::test]
    async fn a_healthy_stack_on_moto_passes_and_each_fault_fails_its_check() {
        use aws_sdk_eventbridge::operation::test_event_pattern::TestEventPatternOutput;
        use aws_sdk_eventbridge::types::{RuleState, Target};
        use aws_smithy_mocks::{MockResponseInterceptor, RuleMode, mock};
        use tokenwatch_testkit::{Emulator, queue_arn, unique};

        let sdk = Emulator::Moto.sdk().await;
        let credentials = aws_sdk_sts::config::Credentials::new("testing", "testing", None, None, "test");
        let prober = Prober::new(&sdk);
        let name = unique("twdoc");
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let dlq = sqs
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let inbox = sqs
            .create_queue()
            .queue_name(format!("{name}-oncall"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let sns = aws_sdk_sns::Client::new(&sdk);
        let topic = sns
            .create_topic()
            .name(&name)
            .send()
            .await
            .unwrap()
            .topic_arn
            .unwrap();
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(queue_arn(&sqs, &inbox).await)
            .send()
            .await
            .unwrap();
        let events = aws_sdk_eventbridge::Client::new(&sdk);
        let (pattern, _) = bundled();
        let (detector_pattern, issuance_pattern) = bundled_rules();
        let rule_name = format!("{name}-rule");
        let put_rule = |state: RuleState| {
            events
                .put_rule()
                .name(&rule_name)
                .event_pattern(detector_pattern.to_string())
                .state(state)
                .send()
        };
        let rule_arn = put_rule(RuleState::EnabledWithAllCloudtrailManagementEvents)
            .await
            .unwrap()
            .rule_arn
            .unwrap();
        let issuance_arn = events
            .put_rule()
            .name(format!("{name}-issuances"))
            .event_pattern(issuance_pattern.to_string())
            .state(RuleState::EnabledWithAllCloudtrailManagementEvents)
            .send()
            .await
            .unwrap()
            .rule_arn
            .unwrap();
        let bucket = unique("twdoc-trail").to_lowercase();
        aws_sdk_s3::Client::new(&sdk)
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        let cloudtrail = aws_sdk_cloudtrail::Client::new(&sdk);
        cloudtrail
            .create_trail()
            .name(&name)
            .s3_bucket_name(&bucket)
            .is_multi_region_trail(true)
            .send()
            .await
            .unwrap();
        cloudtrail.start_logging().name(&name).send().await.unwrap();
        // A new trail's default selector on AWS; moto gives a new trail none.
        cloudtrail
            .put_event_selectors()
            .trail_name(&name)
            .event_selectors(
                aws_sdk_cloudtrail::types::EventSelector::builder()
                    .read_write_type(aws_sdk_cloudtrail::types::ReadWriteType::All)
                    .include_management_events(true)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
        let group = format!("/aws/lambda/{name}-detector");
        logs.create_log_group()
            .log_group_name(&group)
            .send()
            .await
            .unwrap();
        logs.create_log_stream()
            .log_group_name(&group)
            .log_stream_name("s")
            .send()
            .await
            .unwrap();
        let now = crate::now();
        logs.put_log_events()
            .log_group_name(&group)
            .log_stream_name("s")
            .log_events(
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(now * 1000)
                    .message(r#"{"_aws":{"Timestamp":0,"CloudWatchMetrics":[]},"SweepsCompleted":1}"#)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let alarm = format!("{name}-dead-letters");
        prober
            .query(
                tokenwatch_aws::probe::QueryService::CloudWatch,
                "PutMetricAlarm",
                &[
                    ("AlarmName", alarm.as_str()),
                    ("Namespace", "AWS/SQS"),
                    ("MetricName", "ApproximateNumberOfMessagesVisible"),
                    ("Statistic", "Maximum"),
                    ("Period", "300"),
                    ("EvaluationPeriods", "1"),
                    ("Threshold", "1"),
                    ("ComparisonOperator", "GreaterThanOrEqualToThreshold"),
                ],
                &credentials,
            )
            .await
            .unwrap();
        let outputs = json!({
            "DetectorRuleArn": rule_arn, "IssuanceRuleArn": issuance_arn, "DeadLetterQueueUrl": dlq, "DetectorLogGroupName": group,
            "AlertTopicArn": topic, "StateTableName": format!("{name}-state"), "EventQueueUrl": inbox,
            "DrillRoleArn": "arn:aws:iam::123456789012:role/tokenwatch-drill-us-east-1",
            "DeadLetterQueueArn": queue_arn(&sqs, &dlq).await,
        });
        let template = json!({
            "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
            "Outputs": outputs.as_object().unwrap().iter()
                .map(|(k, v)| (k.clone(), json!({"Value": v})))
                .collect::<serde_json::Map<String, Value>>(),
        });
        prober
            .query(
                tokenwatch_aws::probe::QueryService::CloudFormation,
                "CreateStack",
                &[
                    ("StackName", name.as_str()),
                    ("TemplateBody", &template.to_string()),
                ],
                &credentials,
            )
            .await
            .unwrap();
        let forwarder_sdk = sdk
            .to_builder()
            .region(aws_config::Region::new("eu-west-1"))
            .build();
        let forwarder = aws_sdk_eventbridge::Client::new(&forwarder_sdk);
        forwarder
            .put_rule()
            .name(FORWARDER_RULE)
            .event_pattern(pattern.to_string())
            .state(RuleState::EnabledWithAllCloudtrailManagementEvents)
            .send()
            .await
            .unwrap();
        forwarder
            .put_targets()
            .rule(FORWARDER_RULE)
            .targets(
                Target::builder()
                    .id("main")
                    .arn("arn:aws:events:us-east-1:123456789012:event-bus/default")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();

        let (detector, issuances) = (detector_pattern.to_string(), issuance_pattern.to_string());
        let tested = mock!(aws_sdk_eventbridge::Client::test_event_pattern).then_compute_output(move |req| {
            let asked = req.event_pattern().unwrap_or_default();
            assert!(
                asked == detector || asked == issuances,
                "a deployed rule's pattern"
            );
            let event: Value = serde_json::from_str(req.event().unwrap()).unwrap();
            // Each rule takes its share: the issuance rule the successful STS calls, the other the rest.
            let issuing = event["detail"]["eventSource"] == "sts.amazonaws.com"
                && event["detail"].get("errorCode").is_none()
                && event["source"] != "tokenwatch.drill";
            let expected = bundled()
                .1
                .iter()
                .any(|e| e.event["id"] == event["id"] && e.must_match)
                && issuing == (asked == issuances);
            TestEventPatternOutput::builder().result(expected).build()
        });
        let pattern_tester = aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::Config::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(credentials.clone())
                .http_client(aws_smithy_mocks::create_mock_http_client())
                .interceptor(
                    MockResponseInterceptor::new()
                        .rule_mode(RuleMode::MatchAny)
                        .with_rule(&tested),
                )
                .build(),
        );
        let clients = Clients {
            events: events.clone(),
            pattern_tester,
            cloudtrail,
            sqs: sqs.clone(),
            logs,
            sns,
            prober: prober.clone(),
            credentials: credentials.clone(),
            forwarders: vec![("eu-west-1".into(), forwarder)],
        };
        let checks = examine(&name, "us-east-1", &clients, now).await;
        let status: Vec<(String, Status)> = checks.iter().map(|c| (c.check.clone(), c.status)).collect();
        assert!(
            status.iter().all(|(_, s)| *s == Status::Ok),
            "{}",
            render_table(&checks, 160)
        );
        assert_eq!(checks.len(), 12, "{status:?}");
        assert_eq!(exit_status(&checks), 0);

        // Break what an operator can break: a dead letter, an alarm firing, the rule's state, and ten
        // minutes without a sweep.
        sqs.send_message()
            .queue_url(&dlq)
            .message_body("{}")
            .send()
            .await
            .unwrap();
        prober
            .query(
                tokenwatch_aws::probe::QueryService::CloudWatch,
                "SetAlarmState",
                &[
                    ("AlarmName", alarm.as_str()),
                    ("StateValue", "ALARM"),
                    ("StateReason", "test"),
                ],
                &credentials,
            )
            .await
            .unwrap();
        put_rule(RuleState::Enabled).await.unwrap();
        let checks = examine(&name, "us-east-1", &clients, now + SWEEP_WITHIN + 60).await;
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.check.as_str())
            .collect();
        assert_eq!(
            failed,
            ["rule state", "dead-letter queue", "sweep", "alarms"],
            "{}",
            render_table(&checks, 160)
        );
        assert_eq!(exit_status(&checks), 1);
    }
}
