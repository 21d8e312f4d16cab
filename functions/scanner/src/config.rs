//! The scanner's configuration: environment variables read once at cold start into a typed value. A
//! missing or malformed value fails the cold start with a message naming the variable.

use tokenwatch_process::env::{ConfigError, Env};

/// The bucket the trail's log files are read from: an item naming another bucket is refused (the
/// function's role can read only this one anyway).
pub const TRAIL_BUCKET: &str = "TRAIL_BUCKET";
/// The bucket partials are written to.
pub const PARTIALS_BUCKET: &str = "PARTIALS_BUCKET";
/// The prefix partials are written under (default `tokenwatch-partials/`; the template expires it).
pub const PARTIALS_PREFIX: &str = "PARTIALS_PREFIX";
/// Log files of an item downloaded and decompressed at once (default 4, 1 to 64).
pub const DOWNLOADS: &str = "DOWNLOADS";
/// Partials up to this many bytes of JSON are returned in the result rather than written to S3
/// (default 65536; at most 200000, under Step Functions' 256 KiB limit on a state's output).
pub const INLINE_LIMIT: &str = "INLINE_LIMIT";

/// Everything the scanner is told, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// [`TRAIL_BUCKET`].
    pub trail_bucket: String,
    /// [`PARTIALS_BUCKET`].
    pub partials_bucket: String,
    /// [`PARTIALS_PREFIX`].
    pub partials_prefix: String,
    /// [`DOWNLOADS`].
    pub downloads: usize,
    /// [`INLINE_LIMIT`].
    pub inline_limit: usize,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env(lookup);
        let number = |variable: &'static str, default: usize, (min, max): (usize, usize)| match env
            .optional(variable)
        {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| ConfigError {
                    variable,
                    problem: format!("'{v}' is not a whole number from {min} to {max}"),
                }),
        };
        let bucket = |variable: &'static str, what: &str| -> Result<String, ConfigError> {
            let name = env.required(variable, what)?;
            let ok = (3..=63).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
            if ok {
                Ok(name)
            } else {
                Err(ConfigError {
                    variable,
                    problem: format!(
                        "'{name}' is not an S3 bucket name (3 to 63 lowercase letters, digits, '-', '.')"
                    ),
                })
            }
        };
        Ok(Config {
            trail_bucket: bucket(TRAIL_BUCKET, "the trail bucket's name")?,
            partials_bucket: bucket(PARTIALS_BUCKET, "the bucket partials are written to")?,
            partials_prefix: env
                .optional(PARTIALS_PREFIX)
                .unwrap_or_else(|| "tokenwatch-partials/".to_owned()),
            downloads: number(DOWNLOADS, 4, (1, 64))?,
            inline_limit: number(INLINE_LIMIT, 65_536, (0, 200_000))?,
        })
    }
}

/// Which work the function does: `backfill` (the default: items of the back-fill's Distributed Map) or
/// `live` (the scheduled scan of the trail's last 2 hours, [`LiveConfig`]).
pub const SCAN_MODE: &str = "SCAN_MODE";
/// Live mode: the prefix the trail writes under (the part before `AWSLogs/`; empty for none).
pub const TRAIL_PREFIX: &str = "TRAIL_PREFIX";
/// Live mode: how far back each scan reads: seconds or a span (default 2h, 15m to 24h).
pub const LIVE_SPAN: &str = "LIVE_SPAN";
/// Live mode: `true` makes a newly found near miss page at `low`; `false` (the default) never pages one.
pub const NEAR_MISS_PAGES: &str = "NEAR_MISS_PAGES";

/// The function's mode, read from [`SCAN_MODE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Items of the back-fill.
    Backfill,
    /// The scheduled scan.
    Live,
}

impl Mode {
    /// Reads [`SCAN_MODE`] through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Mode, ConfigError> {
        match Env(lookup).optional(SCAN_MODE).as_deref() {
            None | Some("backfill") => Ok(Mode::Backfill),
            Some("live") => Ok(Mode::Live),
            Some(other) => Err(ConfigError {
                variable: SCAN_MODE,
                problem: format!("'{other}' is not a scan mode; expected backfill or live"),
            }),
        }
    }
}

/// What the live mode is told: the trail, the window, and the detector's own configuration (state table,
/// alert topic, paging floor, cool-down, suppressions), so that a failure the scan finds is decided as
/// the detector decides one delivered live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveConfig {
    /// The detector's variables.
    pub detector: tokenwatch_detector::config::Config,
    /// [`TRAIL_BUCKET`] and [`TRAIL_PREFIX`].
    pub trail: tokenwatch_aws::trail::TrailLocation,
    /// [`LIVE_SPAN`], in seconds.
    pub span: tokenwatch_core::time::Epoch,
    /// [`NEAR_MISS_PAGES`].
    pub near_miss_pages: bool,
    /// [`DOWNLOADS`].
    pub downloads: usize,
}

impl LiveConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<LiveConfig, ConfigError> {
        LiveConfig::from_lookup(|name| std::env::var(name).ok(), tokenwatch_process::now())
    }

    /// Reads variables through `lookup`; `now` dates suppressions given as spans.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        now: tokenwatch_core::time::Epoch,
    ) -> Result<LiveConfig, ConfigError> {
        let detector = tokenwatch_detector::config::Config::from_lookup(&lookup, now)?;
        // The trail bucket's rule is the back-fill's; its other variables are not the live mode's.
        let backfill = Config::from_lookup(|name| match name {
            PARTIALS_BUCKET => Some("unused".to_owned()),
            _ => lookup(name),
        })?;
        let env = Env(&lookup);
        let prefix = env.optional(TRAIL_PREFIX).unwrap_or_default();
        if prefix.contains("AWSLogs") || prefix.starts_with("s3:") {
            return Err(ConfigError {
                variable: TRAIL_PREFIX,
                problem: format!(
                    "'{prefix}' is not a trail's prefix; expected the part of its keys before AWSLogs/ (empty for none)"
                ),
            });
        }
        let near_miss_pages = match env.optional(NEAR_MISS_PAGES).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ConfigError {
                    variable: NEAR_MISS_PAGES,
                    problem: format!("'{other}' is not true or false"),
                });
            }
        };
        Ok(LiveConfig {
            detector,
            trail: crate::live::location(&backfill.trail_bucket, &prefix),
            span: env.span(
                LIVE_SPAN,
                tokenwatch_core::livescan::DEFAULT_SPAN,
                (15 * 60, 86_400),
            )?,
            near_miss_pages,
            downloads: backfill.downloads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    const BASE: [(&str, &str); 2] = [(TRAIL_BUCKET, "org-trail"), (PARTIALS_BUCKET, "tw-work")];

    #[test]
    fn the_buckets_are_enough() {
        let c = config(&BASE).unwrap();
        assert_eq!(
            (c.downloads, c.inline_limit, c.partials_prefix.as_str()),
            (4, 65_536, "tokenwatch-partials/")
        );
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Vars, &str, &str); 5] = [
            (&[(PARTIALS_BUCKET, "w")], TRAIL_BUCKET, "is not set"),
            (&[(TRAIL_BUCKET, "t-t")], PARTIALS_BUCKET, "is not set"),
            (
                &[(TRAIL_BUCKET, "Org_Trail"), (PARTIALS_BUCKET, "www")],
                TRAIL_BUCKET,
                "not an S3 bucket",
            ),
            (&[BASE[0], BASE[1], (DOWNLOADS, "0")], DOWNLOADS, "from 1 to 64"),
            (
                &[BASE[0], BASE[1], (INLINE_LIMIT, "1MB")],
                INLINE_LIMIT,
                "whole number",
            ),
        ];
        for (vars, variable, words) in cases {
            let e = config(vars).unwrap_err();
            assert_eq!(e.variable, variable, "{e}");
            assert!(
                e.to_string().starts_with(variable) && e.to_string().contains(words),
                "{e}"
            );
        }
    }

    mod live {
        use super::super::*;
        use std::collections::HashMap;

        const NOW: i64 = 1_793_000_000;

        fn config(vars: &[(&str, &str)]) -> Result<LiveConfig, ConfigError> {
            let mut map: HashMap<String, String> = [
                (TRAIL_BUCKET, "org-trail"),
                ("TABLE_NAME", "tw-state"),
                ("TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:tw-alerts"),
                ("AWS_REGION", "us-east-1"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            for (k, v) in vars {
                map.insert(k.to_string(), v.to_string());
            }
            LiveConfig::from_lookup(|k| map.get(k).cloned(), NOW)
        }

        #[test]
        fn the_trail_and_the_detectors_variables_are_enough() {
            let c = config(&[]).unwrap();
            assert_eq!(c.trail.bucket, "org-trail");
            assert_eq!(c.trail.prefix, "");
            assert_eq!((c.span, c.near_miss_pages, c.downloads), (7200, false, 4));
            assert_eq!(c.detector.common.table_name, "tw-state");
            let c = config(&[
                (TRAIL_PREFIX, "org/"),
                (LIVE_SPAN, "3h"),
                (NEAR_MISS_PAGES, "true"),
            ])
            .unwrap();
            assert_eq!(
                (c.trail.prefix.as_str(), c.span, c.near_miss_pages),
                ("org", 3 * 3600, true)
            );
        }

        #[test]
        fn a_bad_value_fails_the_cold_start_naming_its_variable() {
            let cases: [(&[(&str, &str)], &str); 6] = [
                (&[(TRAIL_BUCKET, "")], TRAIL_BUCKET),
                (&[(TRAIL_PREFIX, "org/AWSLogs/")], TRAIL_PREFIX),
                (&[(LIVE_SPAN, "5m")], LIVE_SPAN),
                (&[(NEAR_MISS_PAGES, "yes")], NEAR_MISS_PAGES),
                (&[("TABLE_NAME", "")], "TABLE_NAME"),
                (&[("MIN_SEVERITY", "loud")], "MIN_SEVERITY"),
            ];
            for (vars, variable) in cases {
                let e = config(vars).unwrap_err();
                assert_eq!(e.variable, variable, "{e}");
                assert!(e.to_string().starts_with(variable), "{e}");
            }
        }

        #[test]
        fn the_mode_is_backfill_unless_told_live() {
            assert_eq!(Mode::from_lookup(|_| None).unwrap(), Mode::Backfill);
            assert_eq!(Mode::from_lookup(|_| Some("live".into())).unwrap(), Mode::Live);
            let e = Mode::from_lookup(|_| Some("Live".into())).unwrap_err();
            assert_eq!(e.variable, SCAN_MODE);
        }
    }
}
