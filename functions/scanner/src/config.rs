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
}
