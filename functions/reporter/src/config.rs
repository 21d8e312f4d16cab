//! The reporter's configuration: environment variables read once at cold start into a typed value.
//! A missing or malformed value fails the cold start with a message naming the variable, instead of
//! a digest that silently never arrives.

use tokenwatch_core::Severity;
use tokenwatch_core::query::{DEFAULT_SPAN, Query, Since};
use tokenwatch_core::time::Epoch;
use tokenwatch_process::env::{Common, Env};

pub use tokenwatch_process::env::{
    ALERT_FORMAT, AWS_REGION, ConfigError, RUNBOOK_URL, TABLE_NAME, TOPIC_ARN,
};

/// How far back a digest looks: seconds or a span like 24h, 7d (default 24h, between 1h and 90d).
pub const DIGEST_SINCE: &str = "DIGEST_SINCE";
/// Lowest severity a digest lists: info, low, medium, high, critical (default low).
pub const DIGEST_MIN_SEVERITY: &str = "DIGEST_MIN_SEVERITY";

/// A digest window shorter than the schedule's hour would skip failures between digests; longer than
/// the state table keeps groups would promise history it does not have.
const DIGEST_SPAN_RANGE: (Epoch, Epoch) = (3600, 90 * 86_400);

/// Everything the reporter is told, typed.
#[derive(Clone, Debug)]
pub struct Config {
    /// State table, alert topic, how the digest is written.
    pub common: Common,
    /// Seconds a digest looks back.
    pub digest_span: Epoch,
    /// Lowest severity a digest lists.
    pub digest_min_severity: Severity,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env(lookup);
        Ok(Config {
            common: Common::read(&env)?,
            digest_span: env.span(DIGEST_SINCE, DEFAULT_SPAN, DIGEST_SPAN_RANGE)?,
            digest_min_severity: env.severity(DIGEST_MIN_SEVERITY, Severity::Low)?,
        })
    }

    /// The query a scheduled digest runs.
    pub fn digest_query(&self) -> Query {
        Query {
            since: Some(Since::Ago(self.digest_span)),
            min_severity: Some(self.digest_min_severity),
            ..Query::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokenwatch_render::sns::AlertFormat;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    const BASE: [(&str, &str); 2] = [
        (TABLE_NAME, "tokenwatch-state"),
        (TOPIC_ARN, "arn:aws:sns:us-east-1:123456789012:tokenwatch"),
    ];

    #[test]
    fn a_daily_digest_of_everything_from_low_up_is_the_default() {
        let c = config(&BASE).unwrap();
        assert_eq!(c.digest_span, 86_400);
        assert_eq!(c.digest_min_severity, Severity::Low);
        assert_eq!(c.common.style.format, AlertFormat::Standard);
        assert_eq!(c.common.style.region, "us-east-1");
        let q = c.digest_query();
        assert_eq!(q.since_at(1_800_000_000), 1_800_000_000 - 86_400);
        assert_eq!(q.min_severity, Some(Severity::Low));
    }

    #[test]
    fn every_variable_is_read() {
        let mut vars = BASE.to_vec();
        vars.extend([
            (DIGEST_SINCE, "7d"),
            (DIGEST_MIN_SEVERITY, "high"),
            (ALERT_FORMAT, "chatbot"),
            (AWS_REGION, "eu-west-1"),
        ]);
        let c = config(&vars).unwrap();
        assert_eq!(c.digest_span, 7 * 86_400);
        assert_eq!(c.digest_min_severity, Severity::High);
        assert_eq!(c.common.style.format, AlertFormat::Chatbot);
        assert_eq!(c.common.style.region, "eu-west-1");
        assert_eq!(c.common.table_name, "tokenwatch-state");
    }

    #[test]
    fn a_bad_value_names_its_variable_and_what_it_expects() {
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Vars, &str, &str); 8] = [
            (&[(TOPIC_ARN, BASE[1].1)], TABLE_NAME, "is not set"),
            (&[(TABLE_NAME, "t")], TOPIC_ARN, "is not set"),
            (
                &[(TABLE_NAME, "t"), (TOPIC_ARN, "tokenwatch-alerts")],
                TOPIC_ARN,
                "not an SNS topic ARN",
            ),
            (&[(DIGEST_SINCE, "yesterday")], DIGEST_SINCE, "not a duration"),
            (&[(DIGEST_SINCE, "10m")], DIGEST_SINCE, "at least 1h"),
            (&[(DIGEST_SINCE, "2026-11-02")], DIGEST_SINCE, "not a duration"),
            (
                &[(DIGEST_MIN_SEVERITY, "urgent")],
                DIGEST_MIN_SEVERITY,
                "critical",
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
