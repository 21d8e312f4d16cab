//! The detector's configuration: environment variables read once at cold start into a typed value.
//! A missing or malformed value fails the cold start with a message naming the variable and what it
//! expects; nothing is read from the environment mid-invocation.

use std::collections::BTreeSet;

use tokenwatch_core::Severity;
use tokenwatch_core::drill::{DrillPolicy, DrillRole};
use tokenwatch_core::incident::{Policy, Suppression};
use tokenwatch_core::time::{Epoch, parse_bound, parse_time};
use tokenwatch_process::env::{Common, Env};

pub use tokenwatch_process::env::{
    ALERT_FORMAT, AWS_REGION, ConfigError, RUNBOOK_URL, TABLE_NAME, TOPIC_ARN,
};

/// Lowest severity that pages: info, low, medium, high, critical (default low).
pub const MIN_SEVERITY: &str = "MIN_SEVERITY";
/// Quiet time that ends an incident: seconds or a span like 90m, 1h (default 1h).
pub const COOLDOWN: &str = "COOLDOWN";
/// JSON array of suppressions: `[{"principal": "...", "session": "*", "expires": "2026-12-31", "reason": "..."}]`.
pub const SUPPRESSIONS: &str = "SUPPRESSIONS";
/// The stack's drill role: its `tokenwatch-drill-…` sessions' pages are drills. Empty when turned off.
pub const DRILL_ROLE_ARN: &str = "DRILL_ROLE_ARN";
/// Accounts whose synthetic drills a central stack accepts besides its own: comma-separated account ids,
/// or `organization` for every account whose events reach the bus. Empty: only its own.
pub const DRILL_ACCOUNTS: &str = "DRILL_ACCOUNTS";
/// The URL of the function's own event queue: a held page's re-check is sent there, delayed to the end of
/// its wait. Empty or unset: held pages wait for the sweep.
pub const RECHECK_QUEUE_URL: &str = "RECHECK_QUEUE_URL";
/// Everything the detector is told, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// State table, alert topic, how alerts are written.
    pub common: Common,
    /// Paging floor, cool-down, suppressions.
    pub policy: Policy,
    /// Where re-checks of held pages go ([`RECHECK_QUEUE_URL`]).
    pub recheck_queue_url: Option<String>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok(), tokenwatch_process::now())
    }

    /// Reads variables through `lookup`; `now` dates suppressions given as spans.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>, now: Epoch) -> Result<Config, ConfigError> {
        let env = Env(lookup);
        let common = Common::read(&env)?;
        let min_severity = env.severity(MIN_SEVERITY, Severity::Low)?;
        let cooldown = env.span(COOLDOWN, 3600, (60, 30 * 86_400))?;
        let suppressions = match env.optional(SUPPRESSIONS) {
            None => Vec::new(),
            Some(v) => parse_suppressions(&v, now).map_err(|problem| ConfigError {
                variable: SUPPRESSIONS,
                problem,
            })?,
        };
        let role = match env.optional(DRILL_ROLE_ARN) {
            None => None,
            Some(arn) => Some(DrillRole::parse(&arn).ok_or_else(|| ConfigError {
                variable: DRILL_ROLE_ARN,
                problem: format!("'{arn}' is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
            })?),
        };
        let (accounts, organization) = match env.optional(DRILL_ACCOUNTS) {
            None => (BTreeSet::new(), false),
            Some(v) => parse_drill_accounts(&v).map_err(|problem| ConfigError {
                variable: DRILL_ACCOUNTS,
                problem,
            })?,
        };
        let recheck_queue_url = match env.optional(RECHECK_QUEUE_URL) {
            None => None,
            Some(url) => Some(parse_queue_url(&url).map_err(|problem| ConfigError {
                variable: RECHECK_QUEUE_URL,
                problem,
            })?),
        };
        Ok(Config {
            recheck_queue_url,
            common,
            policy: Policy {
                min_severity,
                cooldown,
                suppressions,
                drills: DrillPolicy {
                    own_account: None,
                    accounts,
                    organization,
                    role,
                },
                ..Policy::default()
            },
        })
    }

    /// The policy for the function `function_arn` names: its account is the one whose synthetic drills
    /// are always accepted. Known only from the first invocation's context, hence not in [`Config::from_lookup`].
    pub fn policy_for(&self, function_arn: &str) -> Policy {
        let mut policy = self.policy.clone();
        policy.drills.own_account = tokenwatch_core::classify::arn_account(function_arn)
            .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_owned);
        policy
    }
}

/// An SQS queue URL: `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME` (any http(s) endpoint, for emulators).
fn parse_queue_url(raw: &str) -> Result<String, String> {
    let path = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .and_then(|rest| rest.split_once('/'))
        .map(|(_, path)| path);
    match path.and_then(|p| p.split_once('/')) {
        Some((account, name)) if !account.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(raw.to_owned())
        }
        _ => Err(format!(
            "'{raw}' is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE)"
        )),
    }
}

fn parse_drill_accounts(raw: &str) -> Result<(BTreeSet<String>, bool), String> {
    if raw == "organization" {
        return Ok((BTreeSet::new(), true));
    }
    raw.split(',')
        .map(str::trim)
        .map(|a| {
            if a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()) {
                Ok(a.to_owned())
            } else {
                Err(format!(
                    "'{a}' is not an account id; expected comma-separated 12-digit account ids, or organization"
                ))
            }
        })
        .collect::<Result<BTreeSet<String>, String>>()
        .map(|accounts| (accounts, false))
}

fn parse_suppressions(raw: &str, now: Epoch) -> Result<Vec<Suppression>, String> {
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("is not JSON ({e}); expected an array of objects"))?;
    let items = value
        .as_array()
        .ok_or("expected a JSON array of {principal, session, expires, reason}")?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |name: &str| {
                item.get(name)
                    .and_then(|v| v.as_str())
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
            };
            let principal = field("principal").ok_or(format!(
                "entry {i}: 'principal' (a pattern, * for any) is missing"
            ))?;
            let reason = field("reason").ok_or(format!(
                "entry {i}: 'reason' is missing: say why, so it is not forgotten"
            ))?;
            let expires_raw =
                field("expires").ok_or(format!("entry {i}: 'expires' (a date or time) is missing"))?;
            let expires = parse_time(expires_raw)
                .or_else(|| parse_bound(expires_raw, now))
                .ok_or(format!(
                    "entry {i}: 'expires' = '{expires_raw}' is not a date or time"
                ))?;
            Ok(Suppression {
                principal: principal.to_owned(),
                session: field("session").unwrap_or("*").to_owned(),
                expires,
                reason: reason.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokenwatch_render::sns::AlertFormat;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned(), 1_793_606_400)
    }

    const BASE: [(&str, &str); 2] = [
        (TABLE_NAME, "tokenwatch-state"),
        (TOPIC_ARN, "arn:aws:sns:us-east-1:123456789012:tokenwatch"),
    ];

    #[test]
    fn defaults_apply_to_what_is_optional() {
        let c = config(&BASE).unwrap();
        assert_eq!(c.policy, Policy::default());
        assert_eq!(c.common.style.format, AlertFormat::Standard);
        assert_eq!(c.recheck_queue_url, None, "held pages wait for the sweep");
    }

    #[test]
    fn every_variable_is_read() {
        let mut vars = BASE.to_vec();
        vars.extend([
            (MIN_SEVERITY, "high"),
            (COOLDOWN, "30m"),
            (ALERT_FORMAT, "chatbot"),
            (SUPPRESSIONS, r#"[{"principal":"arn:aws:iam::*:role/batch-*","expires":"2026-12-31","reason":"migrating"}]"#),
            (DRILL_ROLE_ARN, "arn:aws:iam::123456789012:role/tokenwatch-drill-us-east-1"),
            (DRILL_ACCOUNTS, "444455556666, 777788889999"),
            (
                RECHECK_QUEUE_URL,
                "https://sqs.us-east-1.amazonaws.com/123456789012/tokenwatch-events",
            ),
        ]);
        let c = config(&vars).unwrap();
        assert!(
            c.recheck_queue_url
                .as_deref()
                .unwrap()
                .ends_with("/tokenwatch-events")
        );
        assert_eq!(c.policy.min_severity, Severity::High);
        assert_eq!(c.policy.cooldown, 1800);
        assert_eq!(c.common.style.format, AlertFormat::Chatbot);
        assert_eq!(c.policy.suppressions[0].session, "*");
        assert_eq!(
            c.policy.suppressions[0].expires,
            parse_time("2026-12-31T00:00:00Z").unwrap()
        );
        let drills = &c.policy.drills;
        assert_eq!(drills.role.as_ref().unwrap().name, "tokenwatch-drill-us-east-1");
        assert_eq!(drills.accounts.len(), 2);
        assert!(!drills.organization);
        assert_eq!(drills.own_account, None, "known from the first invocation");
        let own = c.policy_for("arn:aws:lambda:us-east-1:111122223333:function:tokenwatch-detector");
        assert_eq!(own.drills.own_account.as_deref(), Some("111122223333"));
        assert_eq!(c.policy_for("not an arn").drills.own_account, None);
        let org = config(&[
            BASE[0],
            BASE[1],
            (DRILL_ACCOUNTS, "organization"),
            (DRILL_ROLE_ARN, " "),
        ])
        .unwrap();
        assert!(org.policy.drills.organization && org.policy.drills.role.is_none());
    }

    #[test]
    fn a_bad_value_names_its_variable_and_what_it_expects() {
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Vars, &str, &str); 10] = [
            (
                &[(TOPIC_ARN, "arn:aws:sns:us-east-1:1:t")],
                TABLE_NAME,
                "is not set",
            ),
            (
                &[(TABLE_NAME, "t"), (TOPIC_ARN, "my-topic")],
                TOPIC_ARN,
                "not an SNS topic ARN",
            ),
            (&[(MIN_SEVERITY, "urgent")], MIN_SEVERITY, "critical"),
            (&[(COOLDOWN, "soon")], COOLDOWN, "not a duration"),
            (&[(COOLDOWN, "5")], COOLDOWN, "at least 1m"),
            (
                &[(SUPPRESSIONS, r#"[{"principal":"*","expires":"2026-12-31"}]"#)],
                SUPPRESSIONS,
                "'reason' is missing",
            ),
            (&[(ALERT_FORMAT, "slack")], ALERT_FORMAT, "standard, chatbot"),
            (
                &[(DRILL_ROLE_ARN, "arn:aws:iam::123456789012:user/x")],
                DRILL_ROLE_ARN,
                "not an IAM role ARN",
            ),
            (
                &[(RECHECK_QUEUE_URL, "tokenwatch-events")],
                RECHECK_QUEUE_URL,
                "not an SQS queue URL",
            ),
            (
                &[(DRILL_ACCOUNTS, "123,o-abc")],
                DRILL_ACCOUNTS,
                "'123' is not an account id",
            ),
        ];
        for (extra, variable, words) in cases {
            let mut vars: Vec<(&str, &str)> =
                if extra.iter().any(|(k, _)| *k == TABLE_NAME || *k == TOPIC_ARN) {
                    Vec::new()
                } else {
                    BASE.to_vec()
                };
            vars.extend_from_slice(extra);
            let e = config(&vars).unwrap_err();
            assert_eq!(e.variable, variable, "{e}");
            assert!(
                e.to_string().starts_with(variable) && e.to_string().contains(words),
                "{e}"
            );
        }
    }
}
