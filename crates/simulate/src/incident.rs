//! Injected incidents: their sessions, their records' times, and what the engine must conclude.
//!
//! Each incident is planned relative to its issuance, then anchored in the corpus in proportion to its
//! position, so incidents are spread evenly over any corpus size. Expected values are computed from the
//! planned records with the rules of `docs/rules.md`, not copied from the intended kind, and tests check
//! that the two agree.

use crate::catalog::{self, APIS, Api, INCIDENT_WORKLOADS, Sdk};
use crate::ids::{self, access_key};
use crate::record::Fault;
use crate::rng::{Rng, hash3};
use crate::time::iso;
use crate::world::{RoleIdent, World, private_ip, public_ip};
use crate::{ExpectedGroup, Layout};

/// How a stale-cache incident's session was issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stale {
    /// AssumeRole by an IAM user without `durationSeconds`: lease from `expiration` (1 h).
    Expiration,
    /// AssumeRole by an IAM user with `durationSeconds` (1, 2 or 4 h).
    Duration,
    /// AssumeRole by an assumed-role session (role chaining) with `durationSeconds` 900 or 3600.
    Chained,
    /// EC2 instance profile: issued by `ec2.amazonaws.com`, 6 h, `ec2RoleDelivery`.
    Ec2,
    /// ECS task role: issued by `ecs-tasks.amazonaws.com`, 6 h.
    Ecs,
}

/// Errors on temporary keys that are not expiry failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LookAlike {
    AccessDenied,
    InvalidClientTokenId,
    SignatureDoesNotMatch,
    Throttling,
}

/// What an incident is meant to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    StaleCache(Stale),
    RefreshRace,
    PausedProcess,
    ClockSkew,
    LookAlike(LookAlike),
}

impl Kind {
    /// The verdict this kind is built to produce (`None`: not a group).
    pub(crate) fn intended(self) -> Option<&'static str> {
        match self {
            Kind::StaleCache(_) => Some("stale-cache"),
            Kind::RefreshRace => Some("refresh-race"),
            Kind::PausedProcess => Some("paused-process"),
            Kind::ClockSkew => Some("clock-skew"),
            Kind::LookAlike(_) => None,
        }
    }
}

/// Who calls AssumeRole for an incident's session.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Caller {
    User(usize),
    /// A hub-role session (index into `World::sessions`): role chaining.
    Hub(usize),
    Service(&'static str),
}

/// One injected incident: a role session (and, for refresh-race, its successor).
#[derive(Debug)]
pub(crate) struct Incident {
    pub kind: Kind,
    pub ident: RoleIdent,
    pub caller: Caller,
    /// Access keys of the failing session and (refresh-race) of its successor.
    pub keys: [[u8; 20]; 2],
    /// Issue times of the two sessions.
    pub issued: [i64; 2],
    /// Lifetime: `expiration = issued + lease - expiry_skew`.
    pub lease: i64,
    pub expiry_skew: i64,
    pub duration: Option<i64>,
    pub sdk: Sdk,
    pub sdk_ver: u8,
    pub ip: String,
    pub app: &'static str,
    pub expected: Option<ExpectedGroup>,
}

/// What one incident record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum What {
    /// AssumeRole issuing session 0 (the failing one) or 1 (its successor).
    Issue(u8),
    /// A successful call by session 0 or 1.
    Call(u8, u16),
    /// An expiry-family failure.
    Fail(u16),
    /// A look-alike error (not a failure).
    LookAlike(u16),
}

/// One incident record: when, whose, what.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Event {
    pub t: i64,
    pub incident: u32,
    pub what: What,
}

/// The error of an expiry failure on `api`, as the service reports it.
pub(crate) fn failure_fault(kind: Kind, api: &Api) -> (&'static str, &'static str) {
    if kind == Kind::ClockSkew {
        ("RequestExpired", "Request has expired.")
    } else if api.svc == "s3" {
        ("ExpiredToken", "The provided token has expired.")
    } else if api.json {
        (
            "ExpiredTokenException",
            "The security token included in the request is expired",
        )
    } else {
        (
            "ExpiredToken",
            "The security token included in the request is expired",
        )
    }
}

/// The error of a look-alike record.
pub(crate) fn look_alike_fault(kind: LookAlike) -> Fault {
    match kind {
        LookAlike::AccessDenied => Fault::Denied,
        LookAlike::InvalidClientTokenId => Fault::Fixed(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ),
        LookAlike::SignatureDoesNotMatch => Fault::Fixed(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. \
             Check your key and signing method.",
        ),
        LookAlike::Throttling => Fault::Fixed("ThrottlingException", "Rate exceeded"),
    }
}

/// The verdict of docs/rules.md for a group with a known `issued_at`.
pub(crate) fn verdict(age: i64, lease: i64, last_age: i64, newer_session_near_first: bool) -> &'static str {
    let grace = (lease / 10).max(1800);
    if age < lease - 120 {
        "clock-skew"
    } else if last_age <= lease + 120 && newer_session_near_first {
        "refresh-race"
    } else if age <= lease + grace {
        "stale-cache"
    } else {
        "paused-process"
    }
}

/// The severity of docs/rules.md.
pub(crate) fn severity(verdict: &str, failures: u64, span: i64, all_request_expired: bool) -> &'static str {
    const LEVELS: [&str; 5] = ["info", "low", "medium", "high", "critical"];
    let level = match verdict {
        "stale-cache" if failures >= 1000 || span >= 7200 => 4,
        "stale-cache" => 3,
        "clock-skew" if failures >= 100 => 2,
        "clock-skew" => 1,
        "refresh-race" => 0,
        _ if failures >= 1000 => 3,
        _ => 2,
    };
    LEVELS[if all_request_expired {
        level.max(1) - 1
    } else {
        level
    }]
}

/// `expiration − eventTime`, rounded to the whole minute when within 5 s of it.
fn lease_from_expiration(seconds: i64) -> i64 {
    let minute = (seconds + 30).div_euclid(60) * 60;
    if (seconds - minute).abs() <= 5 {
        minute
    } else {
        seconds
    }
}

/// How many incidents and look-alike bursts a corpus of `records` gets: about one per 5,000 records
/// (look-alikes one per 10,000), and a few even in small corpora.
pub(crate) fn counts(records: u64) -> (usize, usize) {
    let incidents = (records / 5000).max((records / 2000).min(4));
    let look_alikes = (records / 10_000).max((records / 4000).min(2));
    (incidents as usize, look_alikes as usize)
}

const STALE_CYCLE: [Stale; 8] = [
    Stale::Expiration,
    Stale::Duration,
    Stale::Chained,
    Stale::Ec2,
    Stale::Expiration,
    Stale::Ecs,
    Stale::Duration,
    Stale::Chained,
];
const LOOK_ALIKE_CYCLE: [LookAlike; 4] = [
    LookAlike::AccessDenied,
    LookAlike::InvalidClientTokenId,
    LookAlike::SignatureDoesNotMatch,
    LookAlike::Throttling,
];
const SDKS: [Sdk; 6] = [Sdk::Boto3, Sdk::Cli2, Sdk::Java2, Sdk::Go2, Sdk::Js3, Sdk::Rust];
/// IAM users (indices into `catalog::USERS`) that assume incident roles.
const CALLER_USERS: [usize; 5] = [0, 2, 4, 5, 6];

/// The incident kind at position `k` of the corpus: most are stale-cache; one in ten each of
/// refresh-race, paused-process and clock-skew, so that four incidents cover all four verdicts.
fn kind_at(k: usize, stale_seen: &mut usize) -> Kind {
    match k % 10 {
        1 => Kind::RefreshRace,
        2 => Kind::PausedProcess,
        3 => Kind::ClockSkew,
        _ => {
            *stale_seen += 1;
            Kind::StaleCache(STALE_CYCLE[(*stale_seen - 1) % STALE_CYCLE.len()])
        }
    }
}

fn pick_distinct(rng: &mut Rng, pool: &[u16], max: i64) -> Vec<u16> {
    let want = rng.range(1, max.min(pool.len() as i64)) as usize;
    let mut out: Vec<u16> = Vec::with_capacity(want);
    while out.len() < want {
        let a = *rng.pick(pool);
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// Plans incident `id` relative to its first issuance (time 0).
fn build(world: &World, id: usize, kind: Kind) -> (Incident, Vec<(i64, What)>) {
    let seed = world.seed;
    let mut rng = Rng::new(hash3(seed, 0x1AC1_DE47, id as u64));
    let h = rng.next_u64();
    let (role_stem, session_stem, app, services) = INCIDENT_WORKLOADS[id % INCIDENT_WORKLOADS.len()];
    let chained =
        matches!(kind, Kind::StaleCache(Stale::Chained)) || (kind == Kind::RefreshRace && id / 10 % 2 == 1);
    let (role_name, session, path, ec2) = match kind {
        Kind::StaleCache(Stale::Ec2) => (
            format!("{role_stem}-ec2-{id:03}"),
            format!("i-0{}", ids::hex(16, h)),
            "",
            true,
        ),
        Kind::StaleCache(Stale::Ecs) => (format!("{role_stem}-task-{id:03}"), ids::hex(32, h), "", false),
        Kind::StaleCache(Stale::Expiration | Stale::Duration) if id.is_multiple_of(3) => (
            format!("{role_stem}-{id:03}"),
            format!("{session_stem}-{id:03}"),
            "service-role/",
            false,
        ),
        _ => (
            format!("{role_stem}-{id:03}"),
            format!("{session_stem}-{id:03}"),
            "",
            false,
        ),
    };
    let caller = match kind {
        Kind::StaleCache(Stale::Ec2) => Caller::Service("ec2.amazonaws.com"),
        Kind::StaleCache(Stale::Ecs) => Caller::Service("ecs-tasks.amazonaws.com"),
        _ if chained => Caller::Hub(world.hubs[id % world.hubs.len()]),
        _ => Caller::User(CALLER_USERS[id % CALLER_USERS.len()]),
    };
    let (lease, duration) = match kind {
        Kind::StaleCache(Stale::Expiration) => (3600, None),
        Kind::StaleCache(Stale::Duration) => {
            let d = *rng.pick(&[3600, 7200, 14_400, 3600]);
            (d, Some(d))
        }
        Kind::StaleCache(Stale::Chained) => {
            let d = *rng.pick(&[3600, 900]);
            (d, Some(d))
        }
        Kind::StaleCache(Stale::Ec2 | Stale::Ecs) => (21_600, None),
        _ if chained => (3600, Some(3600)),
        _ => (3600, if rng.percent(50) { Some(3600) } else { None }),
    };
    // Real expirations are sometimes a second short of the lease (12 h − 1 s seen in the wild).
    let expiry_skew = i64::from(duration.is_none() && rng.percent(25));
    let ip = if ec2 || matches!(caller, Caller::Service(_)) || id.is_multiple_of(2) {
        private_ip(h)
    } else {
        public_ip(h)
    };

    let calls = catalog::api_ids(services);
    let ids_of = |list: &[(&str, &str)]| {
        list.iter()
            .map(|&(s, n)| catalog::api_id(s, n))
            .collect::<Vec<u16>>()
    };
    let fails: Vec<u16> = match kind {
        Kind::ClockSkew => pick_distinct(
            &mut rng,
            &ids_of(&[
                ("ec2", "DescribeInstances"),
                ("ec2", "DescribeVolumes"),
                ("ec2", "DescribeSecurityGroups"),
                ("ec2", "DescribeSubnets"),
                ("ec2", "DescribeTags"),
            ]),
            3,
        ),
        Kind::LookAlike(LookAlike::InvalidClientTokenId) => pick_distinct(
            &mut rng,
            &ids_of(&[
                ("sts", "GetCallerIdentity"),
                ("iam", "GetRole"),
                ("sns", "GetTopicAttributes"),
                ("cloudformation", "DescribeStacks"),
            ]),
            1,
        ),
        Kind::LookAlike(LookAlike::SignatureDoesNotMatch) => pick_distinct(
            &mut rng,
            &ids_of(&[("s3", "ListBuckets"), ("s3", "GetObject"), ("s3", "PutObject")]),
            1,
        ),
        Kind::LookAlike(LookAlike::Throttling) => pick_distinct(
            &mut rng,
            &ids_of(&[
                ("ssm", "GetParameter"),
                ("dynamodb", "DescribeTable"),
                ("kms", "Decrypt"),
                ("secretsmanager", "GetSecretValue"),
            ]),
            1,
        ),
        _ => pick_distinct(&mut rng, &calls, 3),
    };

    let first = match kind {
        Kind::StaleCache(_) | Kind::LookAlike(_) => lease + rng.range(5, 300),
        Kind::RefreshRace => lease + rng.range(5, 30),
        Kind::PausedProcess => lease + rng.range(3 * 3600, 6 * 3600),
        Kind::ClockSkew => rng.range(540, 660),
    };
    let mut events = vec![(0, What::Issue(0))];
    let calls_until = if kind == Kind::ClockSkew {
        first - 10
    } else {
        lease - 30
    };
    for _ in 0..rng.range(3, 20) {
        events.push((rng.range(20, calls_until), What::Call(0, *rng.pick(&calls))));
    }
    let (failures, last) = match kind {
        Kind::StaleCache(_) => {
            let span = if rng.percent(17) {
                rng.range(9000, 14_400)
            } else {
                rng.range(600, 5400)
            };
            (rng.range(10, 200), first + span)
        }
        Kind::RefreshRace => (rng.range(3, 25), rng.range(first + 1, lease + 90)),
        Kind::PausedProcess => (rng.range(10, 80), first + rng.range(60, 1800)),
        Kind::ClockSkew => (rng.range(10, 150), first + rng.range(60, 900)),
        Kind::LookAlike(_) => (rng.range(5, 40), first + rng.range(60, 1800)),
    };
    for i in 0..failures {
        let t = match i {
            0 => first,
            1 => last,
            _ => rng.range(first, last),
        };
        let api = *rng.pick(&fails);
        events.push((
            t,
            if matches!(kind, Kind::LookAlike(_)) {
                What::LookAlike(api)
            } else {
                What::Fail(api)
            },
        ));
    }
    let mut issued = [0, 0];
    if kind == Kind::RefreshRace {
        issued[1] = first + rng.range(1, 60);
        events.push((issued[1], What::Issue(1)));
        for _ in 0..rng.range(2, 10) {
            events.push((issued[1] + rng.range(5, 600), What::Call(1, *rng.pick(&calls))));
        }
    }
    let incident = Incident {
        kind,
        ident: RoleIdent::new(
            &world.account,
            &role_name,
            path,
            &session,
            ec2,
            hash3(seed, 0xA10B, id as u64),
        ),
        caller,
        keys: [
            access_key(b"ASIA", hash3(seed, 0x1EA5, 2 * id as u64)),
            access_key(b"ASIA", hash3(seed, 0x1EA5, 2 * id as u64 + 1)),
        ],
        issued,
        lease,
        expiry_skew,
        duration,
        sdk: SDKS[id % SDKS.len()],
        sdk_ver: rng.below(3) as u8,
        ip,
        app,
        expected: None,
    };
    (incident, events)
}

/// What the rules make of an incident's planned records (`None` for look-alikes).
fn expect(world: &World, inc: &Incident, events: &[(i64, What)]) -> Option<ExpectedGroup> {
    inc.kind.intended()?;
    let mut codes: Vec<(&'static str, u64)> = Vec::new();
    let (mut first, mut last, mut failures, mut all_request_expired) = (i64::MAX, i64::MIN, 0u64, true);
    for &(t, what) in events {
        let What::Fail(api) = what else { continue };
        let (code, _) = failure_fault(inc.kind, &APIS[api as usize]);
        match codes.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => codes.push((code, 1)),
        }
        all_request_expired &= code == "RequestExpired";
        first = first.min(t);
        last = last.max(t);
        failures += 1;
    }
    codes.sort_unstable();
    let issued = inc.issued[0];
    let (lease, lease_source) = match inc.duration {
        Some(d) => (d, "duration-seconds"),
        None => (lease_from_expiration(inc.lease - inc.expiry_skew), "expiration"),
    };
    let credential_source = match inc.caller {
        _ if inc.ident.session.starts_with("i-") => "instance-profile",
        Caller::Hub(_) => "role-chaining",
        Caller::User(_) | Caller::Service(_) => "assume-role",
    };
    let newer = inc.issued[1] > issued && (inc.issued[1] - first).abs() <= 300;
    let verdict = verdict(first - issued, lease, last - issued, newer);
    Some(ExpectedGroup {
        account: world.account.clone(),
        principal: inc.ident.role_arn.clone(),
        session: inc.ident.session.clone(),
        access_key_id: ids::ascii(&inc.keys[0]),
        verdict,
        severity: severity(verdict, failures, last - first, all_request_expired),
        credential_source,
        client: inc.sdk.client(),
        issued_at: iso(issued),
        first_failure: iso(first),
        last_failure: iso(last),
        age_at_first_failure_seconds: first - issued,
        lease_seconds: lease as u64,
        lease_source,
        failures,
        error_codes: codes,
    })
}

/// All incidents of a corpus, their records, and which file each record goes to.
#[derive(Debug)]
pub(crate) struct Plan {
    pub incidents: Vec<Incident>,
    pub events: Vec<Event>,
    /// Indices into `events`, per file.
    pub per_file: Vec<Vec<u32>>,
    pub failures: u64,
    pub look_alikes: u64,
}

pub(crate) fn plan(world: &World, layout: &Layout) -> Plan {
    let (n_incidents, n_look_alikes) = counts(layout.records);
    let mut stale_seen = 0;
    let mut built: Vec<(Incident, Vec<(i64, What)>)> = (0..n_incidents)
        .map(|k| build(world, k, kind_at(k, &mut stale_seen)))
        .chain((0..n_look_alikes).map(|j| {
            build(
                world,
                n_incidents + j,
                Kind::LookAlike(LOOK_ALIKE_CYCLE[j % LOOK_ALIKE_CYCLE.len()]),
            )
        }))
        .collect();
    // A corpus too small for its incidents (tiny records_per_file games) keeps the ones that fit.
    while built.iter().map(|(_, e)| e.len() as u64).sum::<u64>() > layout.records {
        built.pop();
    }

    let span = layout.end() - layout.start;
    let families = [
        (0, n_incidents.min(built.len())),
        (n_incidents.min(built.len()), built.len()),
    ];
    for (from, to) in families {
        let count = (to - from) as i64;
        for (ordinal, (inc, events)) in built[from..to].iter_mut().enumerate() {
            let mut rng = Rng::new(hash3(world.seed, 0xA2C4, (from + ordinal) as u64));
            let duration = events.iter().map(|&(t, _)| t).max().unwrap_or(0);
            let room = if span > duration + 60 {
                span - duration
            } else {
                span.max(1)
            };
            let position = ordinal as i64 * 1000 + rng.below(1000) as i64;
            let anchor = layout.start + position * room / (count * 1000);
            inc.issued[0] += anchor;
            if inc.issued[1] != 0 {
                inc.issued[1] += anchor;
            }
            for (t, _) in events.iter_mut() {
                *t += anchor;
            }
            inc.expected = expect(world, inc, events);
        }
    }

    let mut incidents = Vec::with_capacity(built.len());
    let mut events = Vec::new();
    let (mut failures, mut look_alikes) = (0, 0);
    for (i, (inc, evs)) in built.into_iter().enumerate() {
        for (t, what) in evs {
            failures += u64::from(matches!(what, What::Fail(_)));
            look_alikes += u64::from(matches!(what, What::LookAlike(_)));
            events.push(Event {
                t,
                incident: i as u32,
                what,
            });
        }
        incidents.push(inc);
    }

    // Each record goes to the file whose window holds its time (records past the end go to the last
    // files, as delayed deliveries); a full file passes it on to the nearest one with room.
    let mut order: Vec<u32> = (0..events.len() as u32).collect();
    order.sort_by_key(|&e| (layout.file_of(events[e as usize].t), e));
    let mut per_file: Vec<Vec<u32>> = vec![Vec::new(); layout.files];
    for e in order {
        let want = layout.file_of(events[e as usize].t);
        let has_room = |f: usize, per_file: &Vec<Vec<u32>>| per_file[f].len() < layout.file_len(f);
        let target = (0..layout.files)
            .flat_map(|d| [want.checked_add(d), want.checked_sub(d)])
            .flatten()
            .find(|&f| f < layout.files && has_room(f, &per_file));
        if let Some(f) = target {
            per_file[f].push(e);
        }
    }
    Plan {
        incidents,
        events,
        per_file,
        failures,
        look_alikes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_boundaries_follow_the_rules() {
        assert_eq!(verdict(3479, 3600, 3479, false), "clock-skew");
        assert_eq!(verdict(3480, 3600, 3700, false), "stale-cache");
        assert_eq!(verdict(3605, 3600, 3720, true), "refresh-race");
        assert_eq!(verdict(3605, 3600, 3721, true), "stale-cache");
        assert_eq!(verdict(5400, 3600, 5400, false), "stale-cache");
        assert_eq!(verdict(5401, 3600, 5401, false), "paused-process");
        assert_eq!(verdict(21_600 + 2160, 21_600, 0, false), "stale-cache");
    }

    #[test]
    fn severity_follows_the_table() {
        assert_eq!(severity("stale-cache", 10, 600, false), "high");
        assert_eq!(severity("stale-cache", 10, 7200, false), "critical");
        assert_eq!(severity("clock-skew", 99, 0, true), "info");
        assert_eq!(severity("clock-skew", 100, 0, true), "low");
        assert_eq!(severity("refresh-race", 5, 0, true), "info");
        assert_eq!(severity("paused-process", 5, 0, false), "medium");
    }

    #[test]
    fn expiration_leases_round_to_the_minute() {
        assert_eq!(lease_from_expiration(3599), 3600);
        assert_eq!(lease_from_expiration(43_199), 43_200);
        assert_eq!(lease_from_expiration(3590), 3590);
    }

    #[test]
    fn small_corpora_still_get_every_verdict() {
        assert_eq!(counts(10_000), (4, 2));
        assert_eq!(counts(1_000_000), (200, 100));
        let mut seen = 0;
        let kinds: Vec<_> = (0..4).map(|k| kind_at(k, &mut seen).intended()).collect();
        assert_eq!(
            kinds,
            [
                Some("stale-cache"),
                Some("refresh-race"),
                Some("paused-process"),
                Some("clock-skew")
            ]
        );
    }
}
