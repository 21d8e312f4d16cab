//! Reading a Lambda function's environment into typed values. Every failure names the variable and
//! what it expects, so a bad deployment fails its cold start with a message on-call can act on. The
//! variables both functions read (state table, alert topic, alert format, region) are [`Common`]; each
//! function declares its own others as constants.

use tokenwatch_core::Severity;
use tokenwatch_core::time::{Epoch, parse_span};
use tokenwatch_render::sns::{AlertFormat, Style};

/// DynamoDB state table name (required).
pub const TABLE_NAME: &str = "TABLE_NAME";
/// SNS topic ARN alerts are published to (required).
pub const TOPIC_ARN: &str = "TOPIC_ARN";
/// `standard` (default) or `chatbot` (AWS Chatbot custom notifications in `default` and `https`).
pub const ALERT_FORMAT: &str = "ALERT_FORMAT";
/// Region for console links; the Lambda runtime sets it.
pub const AWS_REGION: &str = "AWS_REGION";
/// A runbook's address with `{verdict}` for the verdict (optional): every page links the runbook of its
/// verdict.
pub const RUNBOOK_URL: &str = "RUNBOOK_URL";

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong and what it expects.
    pub problem: String,
}

/// What both functions are told: where state lives, where notices go and how they are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Common {
    /// The state table ([`TABLE_NAME`]).
    pub table_name: String,
    /// The alert topic ([`TOPIC_ARN`]).
    pub topic_arn: String,
    /// Region, message format and runbook of alerts ([`AWS_REGION`], [`ALERT_FORMAT`], [`RUNBOOK_URL`]).
    pub style: Style,
}

impl Common {
    /// Reads the common variables.
    pub fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Common, ConfigError> {
        Ok(Common {
            table_name: env.required(TABLE_NAME, "the state table's name")?,
            topic_arn: env.topic_arn(TOPIC_ARN)?,
            style: Style {
                runbook: env.runbook(RUNBOOK_URL)?,
                ..env.style(AWS_REGION, ALERT_FORMAT)?
            },
        })
    }
}

/// The environment, seen through `lookup` so that tests need not touch the process environment.
pub struct Env<F>(pub F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The trimmed value, `None` when unset or blank: a blank template parameter means "the default".
    pub fn optional(&self, variable: &str) -> Option<String> {
        (self.0)(variable)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A value the function cannot run without; `what` says what it is.
    pub fn required(&self, variable: &'static str, what: &str) -> Result<String, ConfigError> {
        self.optional(variable).ok_or_else(|| ConfigError {
            variable,
            problem: format!("is not set; expected {what} (the SAM template passes it)"),
        })
    }

    /// A required SNS topic ARN. Checked for its shape here because SNS would only reject it at the
    /// first publish, long after the deployment looked healthy.
    pub fn topic_arn(&self, variable: &'static str) -> Result<String, ConfigError> {
        let arn = self.required(variable, "the alert topic's ARN")?;
        if !arn.starts_with("arn:") || arn.split(':').count() < 6 {
            return Err(ConfigError {
                variable,
                problem: format!("'{arn}' is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"),
            });
        }
        Ok(arn)
    }

    /// A severity, `default` when unset.
    pub fn severity(&self, variable: &'static str, default: Severity) -> Result<Severity, ConfigError> {
        match self.optional(variable) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|problem: String| ConfigError { variable, problem }),
        }
    }

    /// A span back in time in seconds (`3600`, `90m`, `24h`, `7d`), `default` when unset, within
    /// `min..=max` seconds.
    pub fn span(
        &self,
        variable: &'static str,
        default: Epoch,
        (min, max): (Epoch, Epoch),
    ) -> Result<Epoch, ConfigError> {
        let Some(v) = self.optional(variable) else {
            return Ok(default);
        };
        let seconds = v.parse::<Epoch>().ok().or_else(|| parse_span(&v));
        seconds
            .filter(|s| (min..=max).contains(s))
            .ok_or_else(|| ConfigError {
                variable,
                problem: format!(
                    "'{v}' is not a duration; expected seconds or a span like 30m, 1h, 1d (at least {}, at most {})",
                    human(min),
                    human(max)
                ),
            })
    }

    /// `standard` (the default) or `chatbot`.
    pub fn alert_format(&self, variable: &'static str) -> Result<AlertFormat, ConfigError> {
        match self.optional(variable).as_deref() {
            None | Some("standard") => Ok(AlertFormat::Standard),
            Some("chatbot") => Ok(AlertFormat::Chatbot),
            Some(other) => Err(ConfigError {
                variable,
                problem: format!("'{other}' is not one of: standard, chatbot"),
            }),
        }
    }

    /// A runbook address template: `https://` and printable, `{verdict}` standing for the verdict (a
    /// template without it links every verdict to one page). Unset: no runbook link.
    pub fn runbook(&self, variable: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(url) = self.optional(variable) else {
            return Ok(None);
        };
        if !url.starts_with("https://") || url.len() > 1000 || !url.chars().all(|c| c.is_ascii_graphic()) {
            return Err(ConfigError {
                variable,
                problem: format!(
                    "'{}' is not an https:// address (at most 1000 printable characters, no spaces; \
                     {{verdict}} stands for the verdict)",
                    tokenwatch_core::notice::printable(&url, 120)
                ),
            });
        }
        Ok(Some(url))
    }

    /// How alerts are written: console links for `region_variable` (the Lambda runtime sets
    /// `AWS_REGION`; `us-east-1` outside it) in the format `format_variable` names.
    pub fn style(
        &self,
        region_variable: &'static str,
        format_variable: &'static str,
    ) -> Result<Style, ConfigError> {
        Ok(Style {
            region: self
                .optional(region_variable)
                .unwrap_or_else(|| "us-east-1".to_owned()),
            format: self.alert_format(format_variable)?,
            runbook: None,
        })
    }
}

/// `60` → `1m`, `86400` → `1d`: the bounds in the units users write.
fn human(seconds: Epoch) -> String {
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> Env<impl Fn(&str) -> Option<String>> {
        Env(move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn blank_is_unset_and_unset_takes_the_default() {
        let e = env(&[("A", "  "), ("S", "7d")]);
        assert_eq!(e.optional("A"), None);
        assert_eq!(e.span("A", 60, (60, 86_400)).unwrap(), 60);
        assert_eq!(e.span("S", 60, (60, 30 * 86_400)).unwrap(), 7 * 86_400);
        assert_eq!(e.severity("A", Severity::Low).unwrap(), Severity::Low);
        assert_eq!(e.alert_format("A").unwrap(), AlertFormat::Standard);
        assert_eq!(
            e.required("A", "a name").unwrap_err().to_string(),
            "A: is not set; expected a name (the SAM template passes it)"
        );
    }

    #[test]
    fn a_runbook_is_an_https_address_or_nothing() {
        let e = env(&[
            ("R", "https://wiki.example.com/tokenwatch/{verdict}"),
            ("H", "http://wiki/{verdict}"),
            ("S", "https://wiki/a page"),
        ]);
        assert_eq!(
            e.runbook("R").unwrap().as_deref(),
            Some("https://wiki.example.com/tokenwatch/{verdict}")
        );
        assert_eq!(e.runbook("UNSET").unwrap(), None);
        assert!(e.runbook("H").unwrap_err().to_string().contains("https://"));
        assert!(e.runbook("S").is_err());
    }

    #[test]
    fn a_span_is_a_duration_within_its_bounds_not_a_time() {
        let e = env(&[("T", "2026-11-02"), ("N", "5"), ("W", "1w")]);
        let err = e.span("T", 60, (60, 86_400)).unwrap_err().to_string();
        assert!(err.starts_with("T: '2026-11-02' is not a duration"), "{err}");
        assert!(err.contains("at least 1m, at most 1d"), "{err}");
        assert!(e.span("N", 60, (60, 86_400)).is_err());
        assert!(e.span("W", 60, (60, 86_400)).is_err());
    }
}
