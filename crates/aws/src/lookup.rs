//! Back-fill from CloudTrail Event history: [`LookupEvents`] pages through `LookupEvents` and feeds every
//! event's `CloudTrailEvent` (the full record, as a JSON string) to the engine.
//!
//! The API allows 2 requests per second per account and region, not adjustable, one lookup attribute per
//! call, no `errorCode` filter, pages of at most 50 events, 90 days of management events
//! (docs/cloudtrail.md, "Event history"). So every request, retries included, first waits for its turn at [`REQUESTS_PER_SECOND`] (an even
//! spacing, never a burst), and a throttled or failed-in-transit request is retried after an exponential
//! backoff with jitter, up to [`MAX_ATTEMPTS`] times. The SDK's own retries are turned off: they would
//! bypass the limiter.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_cloudtrail::Client;
use aws_sdk_cloudtrail::config::retry::RetryConfig;
use aws_sdk_cloudtrail::primitives::DateTime;
use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use aws_smithy_async::rt::sleep::{AsyncSleep, SharedAsyncSleep, TokioSleep};
use aws_smithy_async::time::{SharedTimeSource, SystemTimeSource, TimeSource};
use tokenwatch_core::Analyzer;
use tokenwatch_core::ports::PortError;
use tokenwatch_core::time::Epoch;

use crate::error::{Blocked, blocked, from_sdk};

/// CloudTrail's documented limit for LookupEvents, per account and region.
pub const REQUESTS_PER_SECOND: u32 = 2;
/// The largest page LookupEvents returns.
pub const PAGE_SIZE: i32 = 50;
/// Attempts per request (the first included) before a lookup gives up.
pub const MAX_ATTEMPTS: u32 = 8;
/// The first backoff after a throttled request is between half of this and this; it doubles per attempt.
const BASE_BACKOFF: Duration = Duration::from_secs(1);
/// Backoffs never exceed this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The STS calls that issue temporary credentials: the session index is built from these.
pub const ISSUING_CALLS: [&str; 5] = [
    "AssumeRole",
    "AssumeRoleWithSAML",
    "AssumeRoleWithWebIdentity",
    "GetSessionToken",
    "GetFederationToken",
];

/// What one lookup asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Every management event of the window: the only way to find failures, since LookupEvents cannot
    /// filter on `errorCode`.
    Everything,
    /// The calls made with one access key: a session's other calls (`AccessKeyId`).
    AccessKey(String),
    /// Every call of one name (`EventName`), e.g. an issuing call.
    EventName(String),
    /// The calls of one user name (`Username`): for an assumed role, its session name.
    Username(String),
}

impl fmt::Display for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::Everything => write!(f, "every event"),
            Lookup::AccessKey(key) => write!(f, "AccessKeyId={key}"),
            Lookup::EventName(name) => write!(f, "EventName={name}"),
            Lookup::Username(name) => write!(f, "Username={name}"),
        }
    }
}

/// What a lookup did, so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pulled {
    /// Requests sent, retries included.
    pub requests: u32,
    /// Requests answered with throttling (or another transient error) and retried.
    pub retried: u32,
    /// Events fed to the engine.
    pub events: u64,
}

/// A lookup that stopped before its last page; the events before it are in the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupError {
    /// What was looked up (e.g. `EventName=AssumeRole in 2026-11-01T00:00:00Z … 2026-11-02T00:00:00Z`).
    pub lookup: String,
    /// Why it stopped.
    pub reason: String,
    /// Set when only the user can fix it (credentials, region, permission): no other lookup will do
    /// better.
    pub blocked: Option<Blocked>,
    /// What it did before.
    pub pulled: Pulled,
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lookup-events {}: {} (the {} events before it were analysed)",
            self.lookup, self.reason, self.pulled.events
        )
    }
}

impl std::error::Error for LookupError {}

/// Pulls events from one region's Event history into an [`Analyzer`], at most [`REQUESTS_PER_SECOND`].
/// One value per account and region: the limit is shared by every lookup made through it.
pub struct LookupEvents {
    client: Client,
    pacer: Pacer,
}

impl LookupEvents {
    /// Lookups through a client built from `sdk` ([`crate::sdk_config`]), on real time.
    pub fn new(sdk: &SdkConfig) -> Self {
        Self::from_client(Client::new(sdk))
    }

    /// Lookups through `client` (its own retries are turned off), on real time.
    pub fn from_client(client: Client) -> Self {
        let config = client
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build();
        LookupEvents {
            client: Client::from_conf(config),
            pacer: Pacer::new(
                SharedAsyncSleep::new(TokioSleep::new()),
                SharedTimeSource::new(SystemTimeSource::new()),
            ),
        }
    }

    /// Waits and backs off with `sleep` and reads the time from `time` (tests pass a manual clock).
    pub fn with_clock(mut self, sleep: impl AsyncSleep + 'static, time: impl TimeSource + 'static) -> Self {
        self.pacer = Pacer::new(SharedAsyncSleep::new(sleep), SharedTimeSource::new(time));
        self
    }

    /// Feeds every event of `lookup` between `start` and `end` (inclusive, UTC seconds) to `analyzer`,
    /// page after page, and calls `on_page` after each page. LookupEvents returns the newest first.
    pub async fn pull_into(
        &self,
        analyzer: &mut Analyzer,
        lookup: &Lookup,
        start: Epoch,
        end: Epoch,
        on_page: impl FnMut(&Pulled),
    ) -> Result<Pulled, LookupError> {
        self.visit(
            lookup,
            start,
            end,
            |record| analyzer.feed_value(record.as_bytes()),
            on_page,
        )
        .await
    }

    /// Every event's record (`CloudTrailEvent`, a JSON string) of `lookup` between `start` and `end`,
    /// newest first.
    pub async fn records(
        &self,
        lookup: &Lookup,
        start: Epoch,
        end: Epoch,
    ) -> Result<Vec<String>, LookupError> {
        let mut out = Vec::new();
        self.visit(lookup, start, end, |record| out.push(record.to_owned()), |_| {})
            .await?;
        Ok(out)
    }

    /// Hands `each` every record of `lookup` between `start` and `end`, page after page, and calls
    /// `on_page` after each page.
    async fn visit(
        &self,
        lookup: &Lookup,
        start: Epoch,
        end: Epoch,
        mut each: impl FnMut(&str),
        mut on_page: impl FnMut(&Pulled),
    ) -> Result<Pulled, LookupError> {
        let mut pulled = Pulled::default();
        let mut token: Option<String> = None;
        loop {
            let page = match self.page(lookup, start, end, token.clone(), &mut pulled).await {
                Ok(page) => page,
                Err((reason, blocked)) => {
                    return Err(LookupError {
                        blocked,
                        lookup: format!(
                            "{lookup} in {} … {}",
                            tokenwatch_core::time::format_time(start),
                            tokenwatch_core::time::format_time(end)
                        ),
                        reason,
                        pulled,
                    });
                }
            };
            for event in page.events() {
                if let Some(record) = event.cloud_trail_event() {
                    each(record);
                    pulled.events += 1;
                }
            }
            on_page(&pulled);
            match page.next_token() {
                Some(next) if !next.is_empty() && Some(next) != token.as_deref() => {
                    token = Some(next.to_owned())
                }
                _ => return Ok(pulled),
            }
        }
    }

    /// One page: waits for its turn, and retries throttling and transient faults with backoff.
    async fn page(
        &self,
        lookup: &Lookup,
        start: Epoch,
        end: Epoch,
        token: Option<String>,
        pulled: &mut Pulled,
    ) -> Result<aws_sdk_cloudtrail::operation::lookup_events::LookupEventsOutput, (String, Option<Blocked>)>
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.pacer.wait_turn().await;
            pulled.requests += 1;
            let mut request = self
                .client
                .lookup_events()
                .start_time(DateTime::from_secs(start))
                .end_time(DateTime::from_secs(end))
                .max_results(PAGE_SIZE)
                .set_next_token(token.clone());
            if let Some(attribute) = attribute(lookup).map_err(|e| (e, None))? {
                request = request.lookup_attributes(attribute);
            }
            match request.send().await {
                Ok(page) => return Ok(page),
                Err(e) => match from_sdk("cloudtrail:LookupEvents", e) {
                    // Credentials, region, permission: permanent, so never retried; said once.
                    fault if blocked(&fault).is_some() => {
                        return Err((fault.to_string(), blocked(&fault).cloned()));
                    }
                    PortError::Transient { message, .. } if attempt < MAX_ATTEMPTS => {
                        pulled.retried += 1;
                        tracing::debug!(%lookup, attempt, reason = %message, "Lookup throttled or failed in transit; backing off.");
                        self.pacer.sleep(backoff(attempt, random_fraction())).await;
                    }
                    PortError::Transient { message, .. } => {
                        return Err((format!("{message} (gave up after {attempt} attempts)"), None));
                    }
                    PortError::Permanent { message, .. } => return Err((message, None)),
                },
            }
        }
    }
}

fn attribute(lookup: &Lookup) -> Result<Option<LookupAttribute>, String> {
    let (key, value) = match lookup {
        Lookup::Everything => return Ok(None),
        Lookup::AccessKey(key) => (LookupAttributeKey::AccessKeyId, key),
        Lookup::EventName(name) => (LookupAttributeKey::EventName, name),
        Lookup::Username(name) => (LookupAttributeKey::Username, name),
    };
    LookupAttribute::builder()
        .attribute_key(key)
        .attribute_value(value)
        .build()
        .map(Some)
        .map_err(|e| format!("lookup attribute not built: {e}"))
}

/// The wait before attempt `attempt + 1`: "equal jitter" (half of the exponential delay, plus a random
/// part of the other half), so retries spread out but always grow. `fraction` is in `[0, 1)`.
pub fn backoff(attempt: u32, fraction: f64) -> Duration {
    let ceiling = BASE_BACKOFF
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    ceiling / 2 + ceiling.mul_f64(fraction.clamp(0.0, 1.0) / 2.0)
}

/// A random number in `[0, 1)`: std's hasher keys are random per process and per `RandomState`, which
/// is plenty for spreading retries (no new dependency for it).
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Spaces requests evenly at [`REQUESTS_PER_SECOND`]: each request starts at least 1/rate after the
/// previous one, so no window of one second ever holds more than the limit.
struct Pacer {
    sleep: SharedAsyncSleep,
    time: SharedTimeSource,
    interval: Duration,
    next: Mutex<Option<SystemTime>>,
}

impl Pacer {
    fn new(sleep: SharedAsyncSleep, time: SharedTimeSource) -> Self {
        Pacer {
            sleep,
            time,
            interval: Duration::from_secs(1) / REQUESTS_PER_SECOND,
            next: Mutex::new(None),
        }
    }

    async fn wait_turn(&self) {
        let now = self.time.now();
        let turn = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let turn = next.map_or(now, |n| n.max(now));
            *next = Some(turn + self.interval);
            turn
        };
        if let Ok(wait) = turn.duration_since(now)
            && !wait.is_zero()
        {
            self.sleep.sleep(wait).await;
        }
    }

    async fn sleep(&self, d: Duration) {
        self.sleep.sleep(d).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        assert_eq!(backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(2, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(4, 0.5), Duration::from_secs(6));
        assert_eq!(backoff(30, 1.0), MAX_BACKOFF);
        for _ in 0..100 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f));
        }
    }

    #[test]
    fn lookups_name_their_attribute() {
        assert_eq!(
            Lookup::EventName("AssumeRole".into()).to_string(),
            "EventName=AssumeRole"
        );
        assert_eq!(
            Lookup::AccessKey("ASIAEXAMPLE".into()).to_string(),
            "AccessKeyId=ASIAEXAMPLE"
        );
        assert!(attribute(&Lookup::Everything).unwrap().is_none());
    }
}
