//! What `tokenwatch doctor` reads of a deployed stack, read-only: each function returns what AWS said,
//! and the checks (what is OK, WARN or FAIL, and the fix) are the command's.

use aws_sdk_cloudtrail::types::ReadWriteType;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;
use tokenwatch_core::ports::PortError;
use tokenwatch_core::time::Epoch;

use crate::error::from_sdk;
use crate::probe::{Alarm, Prober, QueryService, parse_alarms};
use aws_sdk_sts::config::Credentials;

/// An EventBridge rule as `DescribeRule` and `ListTargetsByRule` tell it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// `State`: `ENABLED`, `DISABLED`, `ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS`.
    pub state: String,
    /// `EventPattern` (JSON text), if it has one.
    pub pattern: Option<String>,
    /// Its targets' ARNs.
    pub targets: Vec<String>,
}

/// The rule's bus and name from its ARN (`arn:…:rule/NAME` on the default bus, `rule/BUS/NAME` on
/// another), or a bare name.
pub fn rule_name(arn_or_name: &str) -> (Option<&str>, &str) {
    match arn_or_name.split_once(":rule/") {
        Some((_, rest)) => match rest.split_once('/') {
            Some((bus, name)) => (Some(bus), name),
            None => (None, rest),
        },
        None => (None, arn_or_name),
    }
}

/// The rule `arn_or_name`, or `None` when there is none.
pub async fn rule(
    events: &aws_sdk_eventbridge::Client,
    arn_or_name: &str,
) -> Result<Option<Rule>, PortError> {
    let (bus, name) = rule_name(arn_or_name);
    let described = match events
        .describe_rule()
        .name(name)
        .set_event_bus_name(bus.map(str::to_owned))
        .send()
        .await
    {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(from_sdk("events:DescribeRule", e)),
    };
    let mut targets = Vec::new();
    let mut token = None;
    loop {
        let page = events
            .list_targets_by_rule()
            .rule(name)
            .set_event_bus_name(bus.map(str::to_owned))
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| from_sdk("events:ListTargetsByRule", e))?;
        targets.extend(page.targets().iter().map(|t| t.arn().to_owned()));
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    Ok(Some(Rule {
        state: described
            .state()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        pattern: described.event_pattern().map(str::to_owned),
        targets,
    }))
}

/// Does `pattern` match `event` (an EventBridge event), as EventBridge itself decides (`TestEventPattern`)?
pub async fn matches(
    events: &aws_sdk_eventbridge::Client,
    pattern: &str,
    event: &Value,
) -> Result<bool, PortError> {
    events
        .test_event_pattern()
        .event_pattern(pattern)
        .event(event.to_string())
        .send()
        .await
        .map(|out| out.result())
        .map_err(|e| from_sdk("events:TestEventPattern", e))
}

/// A trail and what it logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trail {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// Where it was created.
    pub home_region: String,
    /// It logs every region.
    pub multi_region: bool,
    /// An organization's trail.
    pub organization: bool,
    /// `GetTrailStatus.IsLogging`; `None` when the status could not be read (an organization's trail
    /// seen from a member account).
    pub logging: Option<bool>,
    /// It logs read-only management events.
    pub management_read: bool,
    /// It logs write management events.
    pub management_write: bool,
}

/// Every trail that applies to the client's region (shadow trails of multi-region and organization
/// trails included), with its status and its management-event selectors.
pub async fn trails(cloudtrail: &aws_sdk_cloudtrail::Client) -> Result<Vec<Trail>, PortError> {
    let listed = cloudtrail
        .describe_trails()
        .include_shadow_trails(true)
        .send()
        .await
        .map_err(|e| from_sdk("cloudtrail:DescribeTrails", e))?;
    let mut out = Vec::new();
    for t in listed.trail_list() {
        let arn = t.trail_arn().or(t.name()).unwrap_or_default().to_owned();
        let logging = cloudtrail
            .get_trail_status()
            .name(&arn)
            .send()
            .await
            .ok()
            .and_then(|s| s.is_logging());
        let (mut read, mut write) = (false, false);
        if let Ok(selectors) = cloudtrail.get_event_selectors().trail_name(&arn).send().await {
            for s in selectors.event_selectors() {
                if s.include_management_events().unwrap_or(true) {
                    match s.read_write_type().cloned().unwrap_or(ReadWriteType::All) {
                        ReadWriteType::ReadOnly => read = true,
                        ReadWriteType::WriteOnly => write = true,
                        _ => (read, write) = (true, true),
                    }
                }
            }
            for a in selectors.advanced_event_selectors() {
                let field = |name: &str| a.field_selectors().iter().find(|f| f.field() == name);
                let management =
                    field("eventCategory").is_some_and(|f| f.equals().iter().any(|v| v == "Management"));
                if !management {
                    continue;
                }
                match field("readOnly").map(|f| (f.equals(), f.not_equals())) {
                    Some((eq, _)) if eq.iter().any(|v| v == "true") => read = true,
                    Some((eq, _)) if eq.iter().any(|v| v == "false") => write = true,
                    Some((_, ne)) if ne.iter().any(|v| v == "true") => write = true,
                    Some((_, ne)) if ne.iter().any(|v| v == "false") => read = true,
                    _ => (read, write) = (true, true),
                }
            }
        }
        out.push(Trail {
            name: t.name().unwrap_or_default().to_owned(),
            arn,
            home_region: t.home_region().unwrap_or_default().to_owned(),
            multi_region: t.is_multi_region_trail().unwrap_or(false),
            organization: t.is_organization_trail().unwrap_or(false),
            logging,
            management_read: read,
            management_write: write,
        });
    }
    Ok(out)
}

/// Messages in a queue: (visible, in flight).
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<(u64, u64), PortError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| from_sdk("sqs:GetQueueAttributes", e))?;
    let count = |name: QueueAttributeName| {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((
        count(QueueAttributeName::ApproximateNumberOfMessages),
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}

/// The filter pattern of the line a completed sweep prints (its embedded metric `SweepsCompleted`).
pub const SWEEP_FILTER: &str = "{ $.SweepsCompleted = 1 }";

/// When the detector last completed a sweep at or after `since` (epoch seconds), from its log group.
pub async fn last_sweep(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    since: Epoch,
) -> Result<Option<Epoch>, PortError> {
    let mut last = None;
    let mut token = None;
    loop {
        let page = logs
            .filter_log_events()
            .log_group_name(group)
            .start_time(since * 1000)
            .filter_pattern(SWEEP_FILTER)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| from_sdk("logs:FilterLogEvents", e))?;
        for e in page.events() {
            let t = e.timestamp().unwrap_or_default() / 1000;
            last = Some(last.map_or(t, |l: Epoch| l.max(t)));
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(last);
        }
    }
}

/// The alarms whose names start with `prefix` (CloudWatch `DescribeAlarms`).
pub async fn alarms(
    prober: &Prober,
    credentials: &Credentials,
    prefix: &str,
) -> Result<Vec<Alarm>, PortError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = vec![("AlarmNamePrefix", prefix)];
        if let Some(t) = &token {
            params.push(("NextToken", t.as_str()));
        }
        let xml = prober
            .query(QueryService::CloudWatch, "DescribeAlarms", &params, credentials)
            .await?;
        let (page, next) = parse_alarms(&xml).map_err(PortError::permanent)?;
        out.extend(page);
        match next {
            Some(n) if Some(&n) != token.as_ref() => token = Some(n),
            _ => return Ok(out),
        }
    }
}

/// A subscription of the alert topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subscription {
    /// `email`, `https`, `sqs`, `lambda`, ...
    pub protocol: String,
    /// Where it delivers.
    pub endpoint: String,
    /// Confirmed (not `PendingConfirmation`).
    pub confirmed: bool,
    /// Its `FilterPolicy` (JSON), if any.
    pub filter_policy: Option<String>,
    /// `FilterPolicyScope`: `MessageAttributes` (the default) or `MessageBody`.
    pub filter_policy_scope: Option<String>,
}

/// Every subscription of `topic`, with its filter policy.
pub async fn subscriptions(sns: &aws_sdk_sns::Client, topic: &str) -> Result<Vec<Subscription>, PortError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = sns
            .list_subscriptions_by_topic()
            .topic_arn(topic)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| from_sdk("sns:ListSubscriptionsByTopic", e))?;
        for s in page.subscriptions() {
            let arn = s.subscription_arn().unwrap_or_default();
            let mut sub = Subscription {
                protocol: s.protocol().unwrap_or_default().to_owned(),
                endpoint: s.endpoint().unwrap_or_default().to_owned(),
                confirmed: arn.starts_with("arn:"),
                ..Default::default()
            };
            if sub.confirmed {
                let attributes = sns
                    .get_subscription_attributes()
                    .subscription_arn(arn)
                    .send()
                    .await
                    .map_err(|e| from_sdk("sns:GetSubscriptionAttributes", e))?;
                let a = attributes.attributes();
                let get = |k: &str| a.and_then(|a| a.get(k)).cloned();
                sub.confirmed = get("PendingConfirmation").as_deref() != Some("true");
                sub.filter_policy = get("FilterPolicy").filter(|p| !p.trim().is_empty());
                sub.filter_policy_scope = get("FilterPolicyScope");
            }
            out.push(sub);
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_is_named_by_its_arn_on_any_bus() {
        assert_eq!(
            rule_name("arn:aws:events:us-east-1:1:rule/tokenwatch-DetectorRule-X"),
            (None, "tokenwatch-DetectorRule-X")
        );
        assert_eq!(
            rule_name("arn:aws:events:us-east-1:1:rule/my-bus/r"),
            (Some("my-bus"), "r")
        );
        assert_eq!(rule_name("tokenwatch-forwarder"), (None, "tokenwatch-forwarder"));
    }
}
