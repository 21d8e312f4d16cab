//! Realistic CloudTrail histories for differential tests: a few workloads' sessions in the situations
//! that decide a verdict or an incident (stale caches from the lease boundary on, renewals before, within
//! and after the refresh window, stragglers, daily recurrences, fleets, console and service sessions,
//! failures without `creationDate`, with or without their issuing call, explicit `durationSeconds`, role
//! chaining, `RequestExpired`, stale web identity tokens), plus the order and time in which EventBridge
//! would hand each record to the detector: late, out of order, some twice.
//!
//! Written from the CloudTrail record shapes and the facts AWS documents, not from the engine: this module
//! does not depend on `tokenwatch-core` and never says what a verdict should be, so it can serve as an
//! independent oracle for comparing the engine's paths with each other.
//!
//! ```
//! use tokenwatch_simulate::history::{self, Shape};
//! let h = history::generate(7);
//! assert!(!h.records.is_empty() && !h.deliveries.is_empty());
//! let one = history::with_shapes(7, &[Shape::RenewalWithStraggler]);
//! assert_eq!(one.planted.len(), 1);
//! ```

mod records;
mod shapes;

use serde_json::{Value, json};

use crate::ids;
use crate::rng::{Rng, hash2, mix};

pub use records::{ACCOUNT, REGION};

/// A situation a history can contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    /// One AssumeRole session cached past its lease: failures from the lease boundary on, for minutes
    /// to hours (lease from `expiration` or `durationSeconds` 900 s … 4 h).
    StaleCache,
    /// A few failures within two minutes after the lease end and a newer session of the same role and
    /// session name within a minute and a half of the first.
    RefreshRace,
    /// The newer session was issued 5–25 min before the old one's first failure.
    RenewalBeforeWindow,
    /// The newer session was issued within 5 min of the old one's first failure (either side).
    RenewalWithinWindow,
    /// The newer session was issued 5–30 min after the old one's first failure.
    RenewalAfterWindow,
    /// Failures right after the lease end, a renewal 2–5 min after the first, and one more failure of
    /// the old session shortly after the renewal.
    RenewalWithStraggler,
    /// The same role and session name every day for 3–6 days, each run failing at its lease end.
    DailyJob,
    /// 4–16 pods (`botocore-session-<epoch>` names) of one IRSA role, each failing at its lease end.
    Fleet,
    /// An IAM user's console session (ASIA key, `IAMUser`, 12 h) polled by the EC2 and S3 consoles
    /// past its end; no issuing call in the trail.
    ConsoleSession,
    /// Copied instance-profile credentials (`ec2RoleDelivery`, `i-…`), with hourly rotations by
    /// `ec2.amazonaws.com` in the trail most of the time.
    InstanceProfile,
    /// An ECS task role's session (issued by `ecs-tasks.amazonaws.com`, 6 h) cached past its end.
    EcsTask,
    /// A stale cache whose failures carry no `sessionContext`: the age comes from the issuing call,
    /// joined by access key (some failures carry nothing but the key).
    MissingCreationDate,
    /// Failures without `creationDate` and without an issuing call in the trail.
    MissingIssuingCall,
    /// An assumed-role session assumes the workload role (chained, at most 1 h).
    RoleChaining,
    /// An IAM user's GetSessionToken session (12 h by default, or 1 h / 36 h) cached past its end.
    SessionToken,
    /// EC2 `RequestExpired` long before the session ends (a skewed host clock), 1–160 of them.
    ClockSkew,
    /// [`Shape::ClockSkew`], and later the same session, still cached, fails from its lease end on.
    ClockSkewThenStale,
    /// A session of another account's role assumes a role here (chained); CloudTrail logs the
    /// AssumeRole in both accounts, the caller shown as an assumed role in one copy and as
    /// `AWSAccount` in the other.
    CrossAccountChain,
    /// `AssumeRoleWithWebIdentity` refused with `ExpiredTokenException` (a stale token file).
    WebIdentityToken,
    /// A laptop woke hours after its session ended; sometimes signs in again right after.
    PausedProcess,
}

impl Shape {
    /// Every shape.
    pub const ALL: &'static [Shape] = &[
        Shape::StaleCache,
        Shape::RefreshRace,
        Shape::RenewalBeforeWindow,
        Shape::RenewalWithinWindow,
        Shape::RenewalAfterWindow,
        Shape::RenewalWithStraggler,
        Shape::DailyJob,
        Shape::Fleet,
        Shape::ConsoleSession,
        Shape::InstanceProfile,
        Shape::EcsTask,
        Shape::MissingCreationDate,
        Shape::MissingIssuingCall,
        Shape::RoleChaining,
        Shape::SessionToken,
        Shape::ClockSkew,
        Shape::ClockSkewThenStale,
        Shape::CrossAccountChain,
        Shape::WebIdentityToken,
        Shape::PausedProcess,
    ];
}

/// What one shape put into a history, for people reading a disagreement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planted {
    /// The situation.
    pub shape: Shape,
    /// The role or user ARN of its sessions.
    pub principal: String,
    /// Its session names (empty for IAM user sessions, which have none).
    pub sessions: Vec<String>,
    /// Its parameters in words (lease, ages, renewal offset…).
    pub note: String,
}

/// One hand-over of a record to the detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// When EventBridge hands it over (Unix seconds): its `eventTime` plus a delay.
    pub at: i64,
    /// Index into [`History::records`].
    pub record: usize,
}

/// A generated history.
#[derive(Clone, Debug)]
pub struct History {
    /// The seed it was made from.
    pub seed: u64,
    /// Every record once, as a trail would hold them (roughly by time, locally out of order).
    pub records: Vec<Value>,
    /// Records a trail holds twice (an at-least-once delivery written again): feed them again offline.
    pub duplicated: Vec<usize>,
    /// What the detector's EventBridge rule passes, in delivery order; repeated deliveries included.
    pub deliveries: Vec<Delivery>,
    /// What was planted.
    pub planted: Vec<Planted>,
}

/// 2026-11-02T00:00:00Z: histories start within three weeks of it.
const BASE: i64 = crate::DEFAULT_START_EPOCH;

/// A history of 1–4 shapes drawn from [`Shape::ALL`], a pure function of `seed`.
pub fn generate(seed: u64) -> History {
    let mut rng = Rng::new(hash2(seed, 0x5EED_0001));
    let n = rng.range(1, 4) as usize;
    let shapes: Vec<Shape> = (0..n).map(|_| *rng.pick(Shape::ALL)).collect();
    with_shapes(seed, &shapes)
}

/// A history of exactly these shapes (each with its own principal), a pure function of the arguments.
pub fn with_shapes(seed: u64, shapes: &[Shape]) -> History {
    let mut w = records::Writer::new(seed);
    let start = BASE + w.rng.range(0, 20) * 86_400 + w.rng.range(0, 86_399);
    let mut planted = Vec::new();
    for (k, &shape) in shapes.iter().enumerate() {
        let anchor = start + w.rng.range(0, 4 * 3600);
        planted.push(shapes::plant(&mut w, shape, k + 1, anchor));
    }
    let mut rng = Rng::new(hash2(seed, 0xDE11_7E47));
    let records = trail_order(w.records, &mut rng);
    let (deliveries, duplicated) = deliver(&records, &mut rng);
    History {
        seed,
        records,
        duplicated,
        deliveries,
        planted,
    }
}

/// `eventTime` of a record, in Unix seconds (the generator writes them itself, so they always parse).
pub fn event_time(record: &Value) -> i64 {
    record["eventTime"].as_str().and_then(parse_iso).unwrap_or(0)
}

fn parse_iso(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let days = crate::time::days_from_civil(n(0..4)?, n(5..7)?, n(8..10)?);
    Some(days * 86_400 + n(11..13)? * 3600 + n(14..16)? * 60 + n(17..19)?)
}

/// By time, then each record moved a few places: records inside a trail file are not sorted.
fn trail_order(records: Vec<Value>, rng: &mut Rng) -> Vec<Value> {
    let mut keyed: Vec<(i64, Value)> = records.into_iter().map(|r| (event_time(&r), r)).collect();
    keyed.sort_by_key(|(t, _)| *t);
    let n = keyed.len();
    for j in 0..n {
        let k = j + rng.index((n - j).min(12));
        keyed.swap(j, k);
    }
    keyed.into_iter().map(|(_, r)| r).collect()
}

/// Does the detector's EventBridge rule pass this record? An expiry-family error, or a successful STS
/// call that issues a session (the stack's rule, written out from its documented pattern).
pub fn passes_detector_rule(record: &Value) -> bool {
    let code = record["errorCode"].as_str();
    let message = record["errorMessage"].as_str().unwrap_or("");
    if let Some(code) = code {
        if code.ends_with("ExpiredToken")
            || code.ends_with("ExpiredTokenException")
            || matches!(
                code,
                "RequestExpired" | "Client.RequestExpired" | "Server.RequestExpired"
            )
        {
            return true;
        }
        let look_alike = [
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "UnrecognizedClient",
            "Throttl",
        ]
        .iter()
        .any(|l| code.contains(l));
        return !look_alike
            && (message.contains("ecurity token included in the request is expired")
                || message.contains("rovided token has expired"));
    }
    record["eventSource"] == "sts.amazonaws.com"
        && matches!(
            record["eventName"].as_str(),
            Some(
                "AssumeRole"
                    | "AssumeRoleWithSAML"
                    | "AssumeRoleWithWebIdentity"
                    | "GetSessionToken"
                    | "GetFederationToken"
            )
        )
}

/// When EventBridge hands each passing record over: most within a minute, a quarter within five, one in
/// twenty 5–20 minutes late; one in twenty-five handed over again up to 15 minutes later.
/// The latest a record is handed over after its `eventTime` (a redelivered duplicate may come later).
/// The detector waits this long for a late record that could change a decision (its delivery
/// allowance); the differential test checks that the two are the same.
pub const MAX_DELIVERY_DELAY: i64 = 300;

fn deliver(records: &[Value], rng: &mut Rng) -> (Vec<Delivery>, Vec<usize>) {
    let mut out = Vec::new();
    let mut duplicated = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if !passes_detector_rule(r) {
            continue;
        }
        let delay = match rng.below(100) {
            0..70 => rng.range(2, 60),
            70..95 => rng.range(60, 180),
            _ => rng.range(180, MAX_DELIVERY_DELAY - 1),
        };
        let at = event_time(r) + delay;
        out.push(Delivery { at, record: i });
        if rng.percent(4) {
            out.push(Delivery {
                at: at + rng.range(1, 900),
                record: i,
            });
            duplicated.push(i);
        }
    }
    out.sort_by_key(|d| (d.at, d.record));
    (out, duplicated)
}

impl History {
    /// The records a trail holds: each once, then the duplicated ones again.
    pub fn trail(&self) -> impl Iterator<Item = &Value> {
        self.records
            .iter()
            .chain(self.duplicated.iter().map(|&i| &self.records[i]))
    }

    /// Earliest and latest `eventTime`.
    pub fn span(&self) -> (i64, i64) {
        let times = self.records.iter().map(event_time);
        let (lo, hi) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
        (lo, hi)
    }

    /// The EventBridge event that carries record `i` (a redelivery carries the same `id`).
    pub fn envelope(&self, i: usize) -> Value {
        let r = &self.records[i];
        let svc = r["eventSource"]
            .as_str()
            .and_then(|s| s.strip_suffix(".amazonaws.com"))
            .unwrap_or("unknown");
        let h = r["eventID"]
            .as_str()
            .unwrap_or("")
            .bytes()
            .fold(0xCBF2_9CE4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
            });
        let mut id = Vec::with_capacity(36);
        ids::write_uuid(&mut id, mix(h), h);
        json!({
            "version": "0", "id": ids::ascii(&id), "detail-type": "AWS API Call via CloudTrail",
            "source": format!("aws.{svc}"), "account": ACCOUNT, "time": r["eventTime"], "region": REGION,
            "resources": [], "detail": r,
        })
    }

    /// Every delivery's EventBridge event, one per line, in delivery order (the form of a scenario
    /// sample: `analyze` reads it, and it replays the detector's input).
    pub fn eventbridge_ndjson(&self) -> String {
        let mut out = String::new();
        for d in &self.deliveries {
            out.push_str(&self.envelope(d.record).to_string());
            out.push('\n');
        }
        out
    }

    /// The history as one trail log file: its name (`<account>_CloudTrail_<region>_<delivery stamp>_<16
    /// alnum>.json`) and its `{"Records":[…]}` text, in [`History::trail`] order.
    pub fn trail_file(&self) -> (String, String) {
        let (_, last) = self.span();
        let (_, stamp) = crate::time::file_stamp(last + 300);
        let mut tag = Vec::with_capacity(16);
        ids::write_alnum(&mut tag, 16, mix(self.seed ^ 0x7A11));
        let name = format!("{ACCOUNT}_CloudTrail_{REGION}_{stamp}_{}.json", ids::ascii(&tag));
        let records: Vec<&Value> = self.trail().collect();
        let text = serde_json::to_string_pretty(&json!({ "Records": records })).unwrap_or_default();
        (name, text + "\n")
    }

    /// The deliveries as text, one a line: delivery time (Unix seconds), `eventTime`, `eventID`; `#`
    /// starts a comment. [`from_sample`] reads it back.
    pub fn deliveries_text(&self) -> String {
        let mut out = String::from(
            "# delivered_at eventTime eventID: the detector's input, in order (replay with delivered_at as now)\n",
        );
        for d in &self.deliveries {
            let r = &self.records[d.record];
            out += &format!(
                "{} {} {}\n",
                d.at,
                r["eventTime"].as_str().unwrap_or("?"),
                r["eventID"].as_str().unwrap_or("?")
            );
        }
        out
    }

    /// What was planted, one line per shape.
    pub fn describe(&self) -> String {
        self.planted
            .iter()
            .map(|p| {
                format!(
                    "  {:?} {} [{}]: {}",
                    p.shape,
                    p.principal,
                    p.sessions.join(", "),
                    p.note
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A history back from a scenario folder: a trail file's text (`{"Records":[…]}`; a record repeated
/// there is a duplicate) and [`History::deliveries_text`]'s text. Nothing is planted; the seed is 0.
pub fn from_sample(trail: &str, deliveries: &str) -> Result<History, String> {
    let doc: Value = serde_json::from_str(trail).map_err(|e| format!("trail: {e}"))?;
    let all = doc["Records"].as_array().ok_or("trail: no Records array")?;
    let mut records: Vec<Value> = Vec::new();
    let mut duplicated = Vec::new();
    let mut by_id = std::collections::HashMap::new();
    for r in all {
        let id = r["eventID"].as_str().ok_or("trail: a record without eventID")?;
        match by_id.get(id) {
            Some(&i) => duplicated.push(i),
            None => {
                by_id.insert(id.to_owned(), records.len());
                records.push(r.clone());
            }
        }
    }
    let mut out = Vec::new();
    for line in deliveries
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let mut parts = line.split_whitespace();
        let at = parts
            .next()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("deliveries: no time in '{line}'"))?;
        let id = parts
            .nth(1)
            .ok_or_else(|| format!("deliveries: no eventID in '{line}'"))?;
        let record = *by_id
            .get(id)
            .ok_or_else(|| format!("deliveries: {id} is not in the trail"))?;
        out.push(Delivery { at, record });
    }
    Ok(History {
        seed: 0,
        records,
        duplicated,
        deliveries: out,
        planted: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_history_and_another_seed_another() {
        let a = generate(42);
        let b = generate(42);
        assert_eq!(a.records, b.records);
        assert_eq!(a.deliveries, b.deliveries);
        assert_ne!(generate(43).records, a.records);
    }

    #[test]
    fn every_shape_plants_failures_the_rule_passes() {
        for (i, &shape) in Shape::ALL.iter().enumerate() {
            let h = with_shapes(i as u64, &[shape]);
            let failures = h
                .records
                .iter()
                .filter(|r| r.get("errorCode").is_some() && passes_detector_rule(r))
                .count();
            assert!(failures > 0, "{shape:?} planted no failure");
            assert!(h.deliveries.iter().all(|d| d.record < h.records.len()));
        }
    }

    #[test]
    fn deliveries_come_after_their_events_and_in_order() {
        for seed in 0..50 {
            let h = generate(seed);
            for d in &h.deliveries {
                assert!(d.at > event_time(&h.records[d.record]), "seed {seed}");
            }
            assert!(h.deliveries.windows(2).all(|w| w[0].at <= w[1].at));
        }
    }

    #[test]
    fn a_history_written_as_a_sample_reads_back_the_same() {
        let h = with_shapes(5, &[Shape::RenewalWithStraggler, Shape::DailyJob]);
        let (name, trail) = h.trail_file();
        assert!(name.starts_with("123456789012_CloudTrail_us-east-1_2026") && name.ends_with(".json"));
        let back = from_sample(&trail, &h.deliveries_text()).unwrap();
        assert_eq!(back.records, h.records);
        assert_eq!(back.deliveries, h.deliveries);
        assert_eq!(back.trail().collect::<Vec<_>>(), h.trail().collect::<Vec<_>>());
        assert!(from_sample("{}", "").is_err());
        assert!(from_sample(&trail, "1 2026-11-02T00:00:00Z no-such-id").is_err());
    }

    #[test]
    fn healthy_calls_and_look_alikes_do_not_pass_the_rule() {
        assert!(!passes_detector_rule(
            &json!({"eventSource": "s3.amazonaws.com", "eventName": "GetObject"})
        ));
        assert!(!passes_detector_rule(
            &json!({"errorCode": "AccessDenied", "errorMessage": "the provided token has expired"})
        ));
        assert!(passes_detector_rule(
            &json!({"errorCode": "Client.RequestExpired"})
        ));
        assert!(passes_detector_rule(
            &json!({"errorCode": "InvalidToken", "errorMessage": "The provided token has expired."})
        ));
        assert!(passes_detector_rule(
            &json!({"eventSource": "sts.amazonaws.com", "eventName": "GetSessionToken"})
        ));
    }

    #[test]
    fn identifiers_follow_the_samples_redaction_rule() {
        let h = with_shapes(3, Shape::ALL);
        let text = h.eventbridge_ndjson();
        let mut seen = 0;
        for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
            let len = match word.get(..4) {
                Some("ASIA" | "AKIA") => 20,
                Some("AROA" | "AIDA") => 21,
                _ => continue,
            };
            assert!(word.ends_with("EXAMPLE") && word.len() == len, "{word}");
            seen += 1;
        }
        assert!(seen > 0);
    }

    #[test]
    fn event_ids_are_unique_and_times_parse() {
        let h = generate(9);
        let mut ids: Vec<&str> = h.records.iter().map(|r| r["eventID"].as_str().unwrap()).collect();
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n);
        assert_eq!(parse_iso("2026-11-02T09:00:01Z"), Some(BASE + 9 * 3600 + 1));
        assert_eq!(parse_iso("garbage"), None);
    }
}
