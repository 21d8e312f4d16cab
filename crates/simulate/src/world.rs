//! The healthy account: role sessions that refresh on time, IAM users, AWS services.
//!
//! Everything here is a pure function of the seed, so any file can be written without the others:
//! a session's key and `creationDate` at time `t` follow from its refresh period and offset.

use crate::catalog::{self, EMAILS, Issuer, Naming, ROLES, SERVICE_CALLS, Sdk, USERS};
use crate::ids::{self, access_key};
use crate::rng::{Rng, hash2, hash3};

/// How many healthy role sessions the account runs.
const SESSIONS: usize = 320;

/// The JSON of an assumed-role `userIdentity`, pre-rendered around its two variable parts:
/// `head` + access key + `mid` + creationDate + `tail`.
#[derive(Debug)]
pub(crate) struct RoleIdent {
    pub head: String,
    pub mid: String,
    pub tail: String,
    /// `arn:aws:sts::A:assumed-role/NAME/SESSION`.
    pub arn: String,
    /// `arn:aws:iam::A:role/PATH/NAME`: the group's principal.
    pub role_arn: String,
    /// `AROA…`.
    pub role_id: String,
    pub session: String,
}

impl RoleIdent {
    pub(crate) fn new(
        account: &str,
        role_name: &str,
        path: &str,
        session: &str,
        ec2_delivery: bool,
        id_seed: u64,
    ) -> Self {
        let role_id = ids::unique_id("AROA", id_seed);
        let arn = format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session}");
        let role_arn = format!("arn:aws:iam::{account}:role/{path}{role_name}");
        let head = format!(
            r#"{{"type":"AssumedRole","principalId":"{role_id}:{session}","arn":"{arn}","accountId":"{account}","accessKeyId":""#
        );
        let mid = format!(
            r#"","sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"{role_id}","arn":"{role_arn}","accountId":"{account}","userName":"{role_name}"}},"webIdFederationData":{{}},"attributes":{{"creationDate":""#
        );
        let tail = if ec2_delivery {
            r#"","mfaAuthenticated":"false"},"ec2RoleDelivery":"2.0"}}"#
        } else {
            r#"","mfaAuthenticated":"false"}}}"#
        }
        .to_owned();
        RoleIdent {
            head,
            mid,
            tail,
            arn,
            role_arn,
            role_id,
            session: session.to_owned(),
        }
    }
}

/// One healthy role session: refreshed every `period` seconds, each generation a new key.
#[derive(Debug)]
pub(crate) struct Session {
    pub ident: RoleIdent,
    key_seed: u64,
    pub period: i64,
    pub offset: i64,
    pub lease: i64,
    pub duration: Option<i64>,
    pub issuer: Issuer,
    /// For [`Issuer::Hub`]: the hub session that makes the chained AssumeRole.
    pub hub: usize,
    pub sdk: Sdk,
    pub sdk_ver: u8,
    pub ip: String,
    pub apis: Vec<u16>,
    pub app: &'static str,
}

impl Session {
    /// The generation (refresh number) in use at `t`.
    pub(crate) fn generation(&self, t: i64) -> i64 {
        (t - self.offset).div_euclid(self.period)
    }

    /// When generation `g` was issued (its `creationDate`).
    pub(crate) fn created(&self, g: i64) -> i64 {
        self.offset + g * self.period
    }

    /// The access key of generation `g`.
    pub(crate) fn key(&self, g: i64) -> [u8; 20] {
        access_key(b"ASIA", hash2(self.key_seed, g as u64))
    }
}

/// An IAM user with a long-term key; its `userIdentity` never changes.
#[derive(Debug)]
pub(crate) struct User {
    pub json: String,
    pub arn: String,
    pub sdk: Sdk,
    pub ip: String,
    pub apis: Vec<u16>,
    pub app: &'static str,
}

/// The account the corpus is drawn from.
#[derive(Debug)]
pub(crate) struct World {
    pub account: String,
    pub region: String,
    pub seed: u64,
    pub sessions: Vec<Session>,
    /// Sessions of the hub role (callers of chained AssumeRole).
    pub hubs: Vec<usize>,
    pub users: Vec<User>,
    /// `(invokedBy, api)` pairs for AWSService records.
    pub service_calls: Vec<(&'static str, u16)>,
}

pub(crate) fn private_ip(h: u64) -> String {
    format!("10.{}.{}.{}", h % 4, (h >> 8) % 256, 4 + (h >> 16) % 250)
}

pub(crate) fn public_ip(h: u64) -> String {
    let net = ["203.0.113", "198.51.100", "192.0.2"][(h % 3) as usize];
    format!("{net}.{}", 1 + (h >> 8) % 254)
}

impl World {
    pub(crate) fn new(account: &str, region: &str, seed: u64, start: i64) -> Self {
        let mut rng = Rng::new(hash2(seed, 0x5E55_1005));
        let mut sessions = Vec::with_capacity(SESSIONS);
        for s in 0..SESSIONS {
            let role = &ROLES[s % ROLES.len()];
            let j = s / ROLES.len();
            let h = hash3(seed, 0x5E55, s as u64);
            let name = match role.naming {
                Naming::Workload(names) => {
                    let base = names[j % names.len()];
                    if j < names.len() {
                        base.to_owned()
                    } else {
                        format!("{base}-{}", j / names.len() + 1)
                    }
                }
                Naming::Instance => format!("i-0{}", ids::hex(16, h)),
                Naming::Task => ids::hex(32, h),
                Naming::Email => {
                    let email = EMAILS[j % EMAILS.len()];
                    match (j / EMAILS.len(), email.split_once('@')) {
                        (0, _) | (_, None) => email.to_owned(),
                        (n, Some((user, domain))) => format!("{user}{n}@{domain}"),
                    }
                }
                Naming::Botocore => format!("botocore-session-{}", start - 86_400 + (h % 86_000) as i64),
            };
            let ec2 = matches!(role.naming, Naming::Instance);
            let (lease, duration, period) = match role.issuer {
                Issuer::User(_) => (
                    3600,
                    if rng.percent(50) { Some(3600) } else { None },
                    rng.range(2700, 3000),
                ),
                Issuer::Hub => (3600, Some(3600), rng.range(2700, 3000)),
                Issuer::Service("lambda.amazonaws.com") => (43_200, None, rng.range(3600, 7200)),
                Issuer::Service(_) => (21_600, None, 3600),
                Issuer::Sso => (3600, None, 3600),
            };
            let ip = match role.issuer {
                Issuer::Service("lambda.amazonaws.com") => {
                    format!("3.{}.{}.{}", 80 + h % 20, (h >> 8) % 256, (h >> 16) % 256)
                }
                Issuer::Service(_) => private_ip(h),
                _ if j.is_multiple_of(2) => private_ip(h),
                _ => public_ip(h),
            };
            sessions.push(Session {
                ident: RoleIdent::new(
                    account,
                    role.name,
                    role.path,
                    &name,
                    ec2,
                    hash3(seed, 0xA10A, (s % ROLES.len()) as u64),
                ),
                key_seed: hash3(seed, 0x4B45_5953, s as u64),
                period,
                offset: start - rng.below(period as u64) as i64,
                lease,
                duration,
                issuer: role.issuer,
                hub: 0,
                sdk: *rng.pick(role.sdks),
                sdk_ver: rng.below(3) as u8,
                ip,
                apis: catalog::api_ids(role.services),
                app: role.app,
            });
        }
        let hubs: Vec<usize> = (0..SESSIONS)
            .filter(|s| s % ROLES.len() == catalog::HUB_ROLE)
            .collect();
        for (s, session) in sessions.iter_mut().enumerate() {
            session.hub = hubs[s % hubs.len()];
        }
        let users = USERS
            .iter()
            .enumerate()
            .map(|(u, spec)| {
                let h = hash3(seed, 0x0005_E125, u as u64);
                let arn = format!("arn:aws:iam::{account}:user/{}", spec.name);
                let json = format!(
                    r#"{{"type":"IAMUser","principalId":"{}","arn":"{arn}","accountId":"{account}","accessKeyId":"{}","userName":"{}"}}"#,
                    ids::unique_id("AIDA", h),
                    ids::ascii(&access_key(b"AKIA", h)),
                    spec.name
                );
                User {
                    json,
                    arn,
                    sdk: spec.sdk,
                    ip: if u % 3 == 0 { public_ip(h) } else { private_ip(h) },
                    apis: catalog::api_ids(spec.services),
                    app: spec.app,
                }
            })
            .collect();
        let service_calls = SERVICE_CALLS
            .iter()
            .map(|&(by, svc, name)| (by, catalog::api_id(svc, name)))
            .collect();
        World {
            account: account.to_owned(),
            region: region.to_owned(),
            seed,
            sessions,
            hubs,
            users,
            service_calls,
        }
    }
}
