//! The detector's configuration: environment variables read once at cold start into a typed value.
//! A missing or malformed value fails the cold start with a message naming the variable and what it
//! expects; nothing is read from the environment mid-invocation.

use tokenwatch_core::Severity;
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
/// Everything the detector is told, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// State table, alert topic, how alerts are written.
    pub common: Common,
    /// Paging floor, cool-down, suppressions.
    pub policy: Policy,
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
        Ok(Config {
            common,
            policy: Policy {
                min_severity,
                cooldown,
                suppressions,
            },
        })
    }
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
    }

    #[test]
    fn every_variable_is_read() {
        let mut vars = BASE.to_vec();
        vars.extend([
            (MIN_SEVERITY, "high"),
            (COOLDOWN, "30m"),
            (ALERT_FORMAT, "chatbot"),
            (SUPPRESSIONS, r#"[{"principal":"arn:aws:iam::*:role/batch-*","expires":"2026-12-31","reason":"migrating"}]"#),
        ]);
        let c = config(&vars).unwrap();
        assert_eq!(c.policy.min_severity, Severity::High);
        assert_eq!(c.policy.cooldown, 1800);
        assert_eq!(c.common.style.format, AlertFormat::Chatbot);
        assert_eq!(c.policy.suppressions[0].session, "*");
        assert_eq!(
            c.policy.suppressions[0].expires,
            parse_time("2026-12-31T00:00:00Z").unwrap()
        );
    }

    #[test]
    fn a_bad_value_names_its_variable_and_what_it_expects() {
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Vars, &str, &str); 7] = [
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
