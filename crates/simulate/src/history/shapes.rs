//! The situations a history is made of. Each plants the records of one workload (its issuing calls, some
//! healthy calls, its failures) around an anchor time, and says what it planted.

use super::records::{
    Agent, Api, Detail, EC2_APIS, EC2_CONSOLE_APIS, Issue, IssueCall, Role, RoleSession, S3_CONSOLE_APIS,
    SDKS, WORKLOAD_APIS, Who, Writer,
};
use super::{Planted, Shape};
use crate::rng::Rng;

/// Workloads: role stem, session name, resource stem.
const WORKLOADS: [(&str, &str, &str); 8] = [
    ("etl-pipeline", "nightly-etl", "etl"),
    ("report-builder", "weekly-report", "reports"),
    ("ledger-reconciler", "reconciler", "ledger"),
    ("billing-export", "export-job", "billing"),
    ("media-transcoder", "transcode-worker", "media"),
    ("search-indexer", "indexer", "search"),
    ("backup-runner", "backup", "backup"),
    ("ml-training", "trainer", "ml"),
];

/// The documentation's placeholder people.
const PEOPLE: [&str; 2] = ["jane.doe", "alex.rivera"];

const OIDC: &str = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E";

/// `n` times from `first` to `last`: both ends and the rest uniform between, in order.
fn spread(rng: &mut Rng, first: i64, last: i64, n: i64) -> Vec<i64> {
    let mut times = vec![first];
    if n > 1 && last > first {
        times.push(last);
        for _ in 2..n {
            times.push(rng.range(first, last));
        }
    }
    times.sort_unstable();
    times
}

/// What one planting knows while it writes.
struct Plot<'a> {
    w: &'a mut Writer,
    k: usize,
    stem: &'static str,
    session: String,
    app: &'static str,
    agent: Agent,
    ip: String,
}

impl<'a> Plot<'a> {
    fn new(w: &'a mut Writer, k: usize) -> Self {
        let (stem, session, app) = *w.rng.pick(&WORKLOADS);
        let agent = *w.rng.pick(&SDKS);
        let ip = format!("10.{}.{}.{}", 1 + k, w.rng.range(0, 255), w.rng.range(1, 254));
        Plot {
            w,
            k,
            stem,
            session: format!("{session}-{k}"),
            app,
            agent,
            ip,
        }
    }

    fn role(&mut self, suffix: &str, path: &'static str) -> Role {
        let name = format!("{}-{suffix}-{}", self.stem, self.k);
        self.w.role(name, path)
    }

    /// The CI user that assumes workload roles, with its long-term key.
    fn ci_user(&mut self) -> Who {
        let user = self.w.user(&format!("ci-deployer-{}", self.k));
        let key = self.w.key(b"AKIA");
        Who::User { user, key }
    }

    /// An AssumeRole by `caller` for `role`/`session` at `t`; returns the session's identity.
    #[allow(clippy::too_many_arguments)]
    fn assume(
        &mut self,
        t: i64,
        caller: &Who,
        role: &Role,
        session: &str,
        duration: Option<i64>,
        lease: i64,
        detail: Detail,
    ) -> RoleSession {
        let key = self.w.key(b"ASIA");
        let expiry_short = i64::from(duration.is_none() && self.w.rng.percent(25));
        let is = Issue {
            call: IssueCall::AssumeRole,
            role: Some((role.clone(), session.to_owned())),
            key: key.clone(),
            duration,
            lease,
            expiry_short,
        };
        let (agent, ip) = match caller {
            Who::Service(s) => (Agent::Service(s), (*s).to_owned()),
            _ => (self.agent, self.ip.clone()),
        };
        self.w.issue(t, caller, agent, &ip, &is);
        RoleSession {
            role: role.clone(),
            session: session.to_owned(),
            key,
            created: t,
            detail,
            ec2: false,
            web_provider: None,
        }
    }

    /// Successful calls of `who` between `from` and `to`.
    fn healthy(&mut self, who: &Who, from: i64, to: i64, n: i64) {
        for _ in 0..n {
            let t = self.w.rng.range(from, to.max(from));
            let api = *self.w.rng.pick(&WORKLOAD_APIS);
            let (agent, ip) = (self.agent, self.ip.clone());
            self.w.call(t, who, agent, &ip, &api, self.app, false);
        }
    }

    /// Failed calls of `who` at `times`, each an API of `apis`.
    fn fail(&mut self, who: &Who, apis: &[Api], times: &[i64]) {
        for &t in times {
            let api = *self.w.rng.pick(apis);
            let (agent, ip) = (self.agent, self.ip.clone());
            self.w.call(t, who, agent, &ip, &api, self.app, true);
        }
    }

    /// A lease and the `durationSeconds` that asked for it (none: the 1 h default, read from `expiration`).
    fn lease(&mut self) -> (Option<i64>, i64) {
        *self.w.rng.pick(&[
            (None, 3600),
            (None, 3600),
            (Some(900), 900),
            (Some(3600), 3600),
            (Some(7200), 7200),
            (Some(14_400), 14_400),
        ])
    }

    fn planted(&self, shape: Shape, principal: String, sessions: Vec<String>, note: String) -> Planted {
        Planted {
            shape,
            principal,
            sessions,
            note,
        }
    }
}

pub(super) fn plant(w: &mut Writer, shape: Shape, k: usize, t0: i64) -> Planted {
    let mut p = Plot::new(w, k);
    match shape {
        Shape::StaleCache => stale_cache(&mut p, t0, Detail::Full, true),
        Shape::MissingCreationDate => {
            let detail = if p.w.rng.percent(70) {
                Detail::Bare
            } else {
                Detail::KeyOnly
            };
            stale_cache(&mut p, t0, detail, true)
        }
        Shape::MissingIssuingCall => stale_cache(&mut p, t0, Detail::Bare, false),
        Shape::RefreshRace => refresh_race(&mut p, t0),
        Shape::RenewalBeforeWindow | Shape::RenewalWithinWindow | Shape::RenewalAfterWindow => {
            renewal(&mut p, shape, t0)
        }
        Shape::RenewalWithStraggler => renewal_with_straggler(&mut p, t0),
        Shape::DailyJob => daily_job(&mut p, t0),
        Shape::Fleet => fleet(&mut p, t0),
        Shape::ConsoleSession => console_session(&mut p, t0),
        Shape::InstanceProfile => instance_profile(&mut p, t0),
        Shape::EcsTask => ecs_task(&mut p, t0),
        Shape::RoleChaining => role_chaining(&mut p, t0),
        Shape::SessionToken => session_token(&mut p, t0),
        Shape::ClockSkew => clock_skew(&mut p, t0, false),
        Shape::ClockSkewThenStale => clock_skew(&mut p, t0, true),
        Shape::CrossAccountChain => cross_account_chain(&mut p, t0),
        Shape::WebIdentityToken => web_identity_token(&mut p, t0),
        Shape::PausedProcess => paused_process(&mut p, t0),
    }
}

/// A job keeps the credentials of one AssumeRole and fails from the lease boundary on.
fn stale_cache(p: &mut Plot<'_>, t0: i64, detail: Detail, issuing_call: bool) -> Planted {
    let shape = match (detail, issuing_call) {
        (Detail::Full, _) => Shape::StaleCache,
        (_, true) => Shape::MissingCreationDate,
        (_, false) => Shape::MissingIssuingCall,
    };
    let path = if p.w.rng.percent(30) { "service-role/" } else { "" };
    let role = p.role("role", path);
    let (duration, lease) = p.lease();
    let caller = p.ci_user();
    let session = p.session.clone();
    let rs = if issuing_call {
        p.assume(t0, &caller, &role, &session, duration, lease, detail)
    } else {
        let key = p.w.key(b"ASIA");
        RoleSession {
            role: role.clone(),
            session: session.clone(),
            key,
            created: t0,
            detail,
            ec2: false,
            web_provider: None,
        }
    };
    let who = Who::Role(rs);
    let n = p.w.rng.range(2, 5);
    p.healthy(&who, t0 + 30, t0 + lease - 300, n);
    let first = t0 + lease + p.w.rng.range(-90, 240);
    let span = match p.w.rng.below(100) {
        0..65 => p.w.rng.range(300, 3600),
        65..85 => p.w.rng.range(3600, 7100),
        _ => p.w.rng.range(7200, 10_800),
    };
    let n = p.w.rng.range(1, 60);
    let times = spread(&mut p.w.rng, first, first + span, n);
    // Some jobs only describe EC2, whose expired calls all say RequestExpired.
    let apis: &[Api] = if p.w.rng.percent(15) {
        &EC2_APIS
    } else {
        &WORKLOAD_APIS
    };
    p.fail(&who, apis, &times);
    let note = format!(
        "{:?} identity, issuing call {}, lease {lease} s{}, first failure at age {}, {n} failures over {span} s",
        detail,
        if issuing_call { "logged" } else { "absent" },
        duration.map_or(" (expiration)".to_owned(), |d| format!(" (durationSeconds {d})")),
        first - t0,
    );
    p.planted(shape, role.arn(), vec![session], note)
}

/// A refreshing client renews a little late: a few failures right after the lease end, a new session
/// within a minute or so.
fn refresh_race(p: &mut Plot<'_>, t0: i64) -> Planted {
    let role = p.role("role", "");
    let (duration, lease) = p.lease();
    let caller = p.ci_user();
    let session = p.session.clone();
    let old = p.assume(t0, &caller, &role, &session, duration, lease, Detail::Full);
    let who = Who::Role(old);
    p.healthy(&who, t0 + 30, t0 + lease - 60, 3);
    let first = t0 + lease + p.w.rng.range(1, 40);
    let last = p.w.rng.range(first, t0 + lease + 110);
    let n = p.w.rng.range(1, 8);
    let times = spread(&mut p.w.rng, first, last, n);
    p.fail(&who, &WORKLOAD_APIS, &times);
    let renewal = first + p.w.rng.range(1, 90);
    let new = p.assume(renewal, &caller, &role, &session, duration, lease, Detail::Full);
    p.healthy(&Who::Role(new), renewal + 1, renewal + 600, 3);
    let note = format!(
        "lease {lease} s, {n} failures at ages {}..{}, renewal {} s after the first failure",
        first - t0,
        times.last().copied().unwrap_or(first) - t0,
        renewal - first
    );
    p.planted(Shape::RefreshRace, role.arn(), vec![session], note)
}

/// The old session keeps failing while a newer one of the same role and session name is issued
/// before, within or after the refresh window (5 min around the first failure); sometimes one old
/// thread fails once more after the renewal.
fn renewal(p: &mut Plot<'_>, shape: Shape, t0: i64) -> Planted {
    let role = p.role("role", "");
    let (duration, lease) = p.lease();
    let caller = p.ci_user();
    let session = p.session.clone();
    let old = p.assume(t0, &caller, &role, &session, duration, lease, Detail::Full);
    let who = Who::Role(old);
    p.healthy(&who, t0 + 30, t0 + lease - 60, 2);
    let first = t0 + lease + p.w.rng.range(2, 60);
    let renewal = match shape {
        Shape::RenewalBeforeWindow => first - p.w.rng.range(301, 1500),
        Shape::RenewalWithinWindow => first + p.w.rng.range(-240, 290),
        _ => first + p.w.rng.range(301, 1800),
    };
    // Until the client picks the new session up (a forked copy of the old one goes on a while).
    let last = if renewal > first {
        renewal + p.w.rng.range(0, 20)
    } else {
        first + p.w.rng.range(10, 1200)
    };
    let n = p.w.rng.range(1, 15);
    let mut times = spread(&mut p.w.rng, first, last, n);
    let straggler =
        p.w.rng
            .percent(40)
            .then(|| last.max(renewal) + p.w.rng.range(5, 400));
    times.extend(straggler);
    p.fail(&who, &WORKLOAD_APIS, &times);
    let new = p.assume(renewal, &caller, &role, &session, duration, lease, Detail::Full);
    p.healthy(&Who::Role(new), renewal + 1, renewal + 900, 3);
    let until = times
        .iter()
        .copied()
        .filter(|&t| Some(t) != straggler)
        .max()
        .unwrap_or(first);
    let note = format!(
        "lease {lease} s, {n} failures at ages {}..{}, renewal {:+} s from the first failure{}",
        first - t0,
        until - t0,
        renewal - first,
        straggler.map_or(String::new(), |s| format!(", straggler at age {}", s - t0)),
    );
    p.planted(shape, role.arn(), vec![session], note)
}

/// Issue 17's case: failures right after the lease end, a renewal 2–5 min after the first failure,
/// and one old thread failing once more shortly after the renewal (later than 2 min past the lease end).
fn renewal_with_straggler(p: &mut Plot<'_>, t0: i64) -> Planted {
    let role = p.role("role", "");
    let (duration, lease) = p.lease();
    let caller = p.ci_user();
    let session = p.session.clone();
    let old = p.assume(t0, &caller, &role, &session, duration, lease, Detail::Full);
    let who = Who::Role(old);
    p.healthy(&who, t0 + 30, t0 + lease - 60, 2);
    let first = t0 + lease + p.w.rng.range(2, 20);
    let last = first + p.w.rng.range(20, 80);
    let n = p.w.rng.range(2, 10);
    let mut times = spread(&mut p.w.rng, first, last, n);
    let renewal = first + p.w.rng.range(120, 280);
    let straggler = renewal + p.w.rng.range(5, 100);
    times.push(straggler);
    p.fail(&who, &WORKLOAD_APIS, &times);
    let new = p.assume(renewal, &caller, &role, &session, duration, lease, Detail::Full);
    p.healthy(&Who::Role(new), renewal + 1, renewal + 900, 3);
    let note = format!(
        "lease {lease} s, {n} failures at ages {}..{}, renewal {} s after the first failure, straggler at age {}",
        first - t0,
        last - t0,
        renewal - first,
        straggler - t0
    );
    p.planted(Shape::RenewalWithStraggler, role.arn(), vec![session], note)
}

/// A job started every day that assumes its role and dies at the lease end.
fn daily_job(p: &mut Plot<'_>, t0: i64) -> Planted {
    let role = p.role("job-role", "");
    let (duration, lease) =
        *p.w.rng
            .pick(&[(None, 3600), (Some(3600), 3600), (Some(900), 900)]);
    let caller = p.ci_user();
    let session = p.session.clone();
    let days = p.w.rng.range(3, 6);
    for day in 0..days {
        let start = t0 + day * 86_400 + p.w.rng.range(-60, 60);
        let rs = p.assume(start, &caller, &role, &session, duration, lease, Detail::Full);
        let who = Who::Role(rs);
        p.healthy(&who, start + 30, start + lease - 120, 2);
        let first = start + lease + p.w.rng.range(2, 40);
        let span = p.w.rng.range(300, 1800);
        let n = p.w.rng.range(2, 20);
        let times = spread(&mut p.w.rng, first, first + span, n);
        p.fail(&who, &WORKLOAD_APIS, &times);
    }
    let note =
        format!("{days} daily runs, lease {lease} s, each failing from its lease end for up to 30 min");
    p.planted(Shape::DailyJob, role.arn(), vec![session], note)
}

/// Pods of one deployment that each cached their IRSA session and fail at its end, within minutes.
fn fleet(p: &mut Plot<'_>, t0: i64) -> Planted {
    let role = p.role("irsa-role", "");
    p.agent = Agent::Boto3;
    let subject = format!("system:serviceaccount:{}:{}-api", p.app, p.app);
    let pods = p.w.rng.range(4, 16);
    let mut offsets: Vec<i64> = Vec::new();
    while (offsets.len() as i64) < pods {
        let o = p.w.rng.range(0, 150);
        if !offsets.contains(&o) {
            offsets.push(o);
        }
    }
    offsets.sort_unstable();
    let mut sessions = Vec::new();
    for o in offsets {
        let issued = t0 + o;
        let session = format!("botocore-session-{issued}");
        let key = p.w.key(b"ASIA");
        let caller = Who::WebIdentity {
            provider: OIDC.to_owned(),
            subject: subject.clone(),
        };
        let is = Issue {
            call: IssueCall::AssumeRoleWithWebIdentity {
                provider: OIDC.to_owned(),
                subject: subject.clone(),
            },
            role: Some((role.clone(), session.clone())),
            key: key.clone(),
            duration: None,
            lease: 3600,
            expiry_short: 0,
        };
        let ip = format!(
            "10.{}.{}.{}",
            100 + p.k,
            p.w.rng.range(0, 255),
            p.w.rng.range(1, 254)
        );
        p.w.issue(issued, &caller, Agent::Boto3, &ip, &is);
        let who = Who::Role(RoleSession {
            role: role.clone(),
            session: session.clone(),
            key,
            created: issued,
            detail: Detail::Full,
            ec2: false,
            web_provider: Some(OIDC.to_owned()),
        });
        p.ip = ip;
        p.healthy(&who, issued + 5, issued + 3000, 2);
        let first = issued + 3600 + p.w.rng.range(2, 90);
        let span = p.w.rng.range(120, 2400);
        let n = p.w.rng.range(2, 12);
        let times = spread(&mut p.w.rng, first, first + span, n);
        p.fail(&who, &WORKLOAD_APIS, &times);
        sessions.push(session);
    }
    let note = format!("{pods} pods issued within 150 s, each failing from its 1 h lease end");
    p.planted(Shape::Fleet, role.arn(), sessions, note)
}

/// An IAM user's console session (ASIA key, 12 h) left open in a browser: the EC2 and S3 consoles keep
/// polling past its end.
fn console_session(p: &mut Plot<'_>, t0: i64) -> Planted {
    let person = *p.w.rng.pick(&PEOPLE);
    let user = p.w.user(&format!("{person}-{}", p.k));
    let key = p.w.key(b"ASIA");
    let who = Who::UserSession {
        user: user.clone(),
        key,
        created: t0,
        console: true,
    };
    p.ip = format!("198.51.100.{}", 10 + p.k);
    for _ in 0..4 {
        let t = p.w.rng.range(t0 + 60, t0 + 40_000);
        let (agent, api) = if p.w.rng.percent(50) {
            (Agent::Ec2Console, *p.w.rng.pick(&EC2_CONSOLE_APIS))
        } else {
            (Agent::S3Console, *p.w.rng.pick(&S3_CONSOLE_APIS))
        };
        let ip = p.ip.clone();
        p.w.call(t, &who, agent, &ip, &api, p.app, false);
    }
    let first = t0 + 43_200 + p.w.rng.range(5, 900);
    let span = p.w.rng.range(300, 3600);
    // Often only the EC2 console tab is polling at first; the S3 tab is used again later.
    let s3_from = if p.w.rng.percent(60) {
        first + p.w.rng.range(240, 1500)
    } else {
        first
    };
    let mut t = first;
    let (mut ec2, mut s3) = (0, 0);
    while t <= first + span {
        let ip = p.ip.clone();
        if t >= s3_from && p.w.rng.percent(40) {
            let api = *p.w.rng.pick(&S3_CONSOLE_APIS);
            p.w.call(t, &who, Agent::S3Console, &ip, &api, p.app, true);
            s3 += 1;
        } else {
            let api = *p.w.rng.pick(&EC2_CONSOLE_APIS);
            p.w.call(t, &who, Agent::Ec2Console, &ip, &api, p.app, true);
            ec2 += 1;
        }
        t += p.w.rng.range(30, 90);
    }
    let note = format!(
        "console session from age {} for {span} s: {ec2} EC2 console failures, {s3} S3 console failures from {} s after the first",
        first - t0,
        s3_from - first
    );
    p.planted(Shape::ConsoleSession, user.arn(), Vec::new(), note)
}

/// A process on EC2 copied its instance-profile credentials; the instance keeps rotating them (each
/// rotation an AssumeRole by ec2.amazonaws.com, sometimes in the trail) and its SSM agent uses the new ones.
fn instance_profile(p: &mut Plot<'_>, t0: i64) -> Planted {
    let role = p.role("ec2-role", "");
    let session = format!("i-0{}", p.w.hex(16));
    let ec2 = Who::Service("ec2.amazonaws.com");
    let logged = p.w.rng.percent(70);
    let lease = 21_600;
    let first = t0 + lease + p.w.rng.range(5, 300);
    let span = p.w.rng.range(600, 3600);
    let mut rotation = t0;
    let mut copied: Option<RoleSession> = None;
    while rotation < first + span + 3600 {
        let rs = if logged {
            p.assume(rotation, &ec2, &role, &session, None, lease, Detail::Full)
        } else {
            let key = p.w.key(b"ASIA");
            RoleSession {
                role: role.clone(),
                session: session.clone(),
                key,
                created: rotation,
                detail: Detail::Full,
                ec2: true,
                web_provider: None,
            }
        };
        let rs = RoleSession { ec2: true, ..rs };
        copied.get_or_insert_with(|| rs.clone());
        // The SSM agent on the instance uses whatever the metadata service serves now.
        let agent = std::mem::replace(&mut p.agent, Agent::Ssm);
        p.healthy(&Who::Role(rs), rotation + 60, rotation + 3000, 1);
        p.agent = agent;
        rotation += 3600 + p.w.rng.range(0, 120);
    }
    let who = Who::Role(copied.unwrap_or_else(|| unreachable!("the loop runs at least once")));
    let n = p.w.rng.range(2, 30);
    let times = spread(&mut p.w.rng, first, first + span, n);
    p.fail(&who, &WORKLOAD_APIS, &times);
    let note = format!(
        "instance profile, rotations every ~1 h {}, copied session fails from age {} for {span} s",
        if logged { "logged" } else { "not logged" },
        first - t0
    );
    p.planted(Shape::InstanceProfile, role.arn(), vec![session], note)
}

/// An ECS task role's session (issued by ecs-tasks.amazonaws.com, 6 h) copied out of the container
/// credential endpoint.
fn ecs_task(p: &mut Plot<'_>, t0: i64) -> Planted {
    let role = p.role("task-role", "");
    let session = p.w.hex(32);
    let lease = 21_600;
    let rs = p.assume(
        t0,
        &Who::Service("ecs-tasks.amazonaws.com"),
        &role,
        &session,
        None,
        lease,
        Detail::Full,
    );
    let who = Who::Role(rs);
    p.healthy(&who, t0 + 30, t0 + lease - 600, 3);
    let first = t0 + lease + p.w.rng.range(5, 300);
    let span = p.w.rng.range(300, 3600);
    let n = p.w.rng.range(2, 30);
    let times = spread(&mut p.w.rng, first, first + span, n);
    p.fail(&who, &WORKLOAD_APIS, &times);
    let note = format!("ECS task session, fails from age {} for {span} s", first - t0);
    p.planted(Shape::EcsTask, role.arn(), vec![session], note)
}

/// A session of a CI hub role assumes the workload role (role chaining, at most 1 h) and the workload
/// caches it.
fn role_chaining(p: &mut Plot<'_>, t0: i64) -> Planted {
    let hub_role = p.w.role(format!("ci-hub-role-{}", p.k), "");
    let hub_key = p.w.key(b"ASIA");
    let hub = Who::Role(RoleSession {
        role: hub_role,
        session: format!("build-{}", p.k),
        key: hub_key,
        created: t0 - p.w.rng.range(60, 1800),
        detail: Detail::Full,
        ec2: false,
        web_provider: None,
    });
    let role = p.role("deploy-role", "service/");
    let (duration, lease) =
        *p.w.rng
            .pick(&[(None, 3600), (Some(900), 900), (Some(3600), 3600)]);
    let session = p.session.clone();
    let rs = p.assume(t0, &hub, &role, &session, duration, lease, Detail::Full);
    let who = Who::Role(rs);
    p.healthy(&who, t0 + 30, t0 + lease - 60, 2);
    let first = t0 + lease + p.w.rng.range(2, 200);
    let span = p.w.rng.range(120, 3000);
    let n = p.w.rng.range(1, 25);
    let times = spread(&mut p.w.rng, first, first + span, n);
    p.fail(&who, &WORKLOAD_APIS, &times);
    let note = format!(
        "chained AssumeRole{}, fails from age {} for {span} s",
        duration.map_or(String::new(), |d| format!(" (durationSeconds {d})")),
        first - t0
    );
    p.planted(Shape::RoleChaining, role.arn(), vec![session], note)
}

/// An IAM user's GetSessionToken session (12 h by default) cached by a nightly script.
fn session_token(p: &mut Plot<'_>, t0: i64) -> Planted {
    let user = p.w.user(&format!("backup-operator-{}", p.k));
    let long_term = p.w.key(b"AKIA");
    let caller = Who::User {
        user: user.clone(),
        key: long_term,
    };
    let (duration, lease) =
        *p.w.rng
            .pick(&[(None, 43_200), (Some(3600), 3600), (Some(129_600), 129_600)]);
    let key = p.w.key(b"ASIA");
    p.agent = Agent::Cli1;
    let is = Issue {
        call: IssueCall::GetSessionToken,
        role: None,
        key: key.clone(),
        duration,
        lease,
        expiry_short: 0,
    };
    let ip = p.ip.clone();
    p.w.issue(t0, &caller, Agent::Cli1, &ip, &is);
    let who = Who::UserSession {
        user: user.clone(),
        key,
        created: t0,
        console: false,
    };
    p.healthy(&who, t0 + 4, t0 + 600, 2);
    let first = t0 + lease + p.w.rng.range(5, 300);
    let span = p.w.rng.range(60, 3000);
    let n = p.w.rng.range(1, 20);
    let times = spread(&mut p.w.rng, first, first + span, n);
    p.fail(&who, &WORKLOAD_APIS, &times);
    let note = format!("GetSessionToken lease {lease} s, fails from age {}", first - t0);
    p.planted(Shape::SessionToken, user.arn(), Vec::new(), note)
}

/// A host whose clock is off: EC2 answers RequestExpired long before the session ends. With `then_stale`,
/// the clock is fixed later but the same session stays cached and fails again at the lease end.
fn clock_skew(p: &mut Plot<'_>, t0: i64, then_stale: bool) -> Planted {
    let role = p.role("autoscaler-role", "");
    let caller = p.ci_user();
    let session = p.session.clone();
    p.agent = Agent::Go2;
    let rs = p.assume(t0, &caller, &role, &session, None, 3600, Detail::Full);
    let who = Who::Role(rs);
    let first = t0 + p.w.rng.range(300, 2700);
    let n = if p.w.rng.percent(30) {
        p.w.rng.range(100, 160)
    } else {
        p.w.rng.range(1, 40)
    };
    let mut times = Vec::new();
    let mut t = first;
    for _ in 0..n {
        times.push(t);
        t += p.w.rng.range(3, 15);
    }
    p.fail(&who, &EC2_APIS, &times);
    let mut note = format!("{n} RequestExpired from age {}", first - t0);
    if then_stale {
        let again = t0 + 3600 + p.w.rng.range(5, 200);
        let m = p.w.rng.range(2, 20);
        let until = again + p.w.rng.range(300, 1800);
        let later = spread(&mut p.w.rng, again, until, m);
        p.fail(&who, &WORKLOAD_APIS, &later);
        note += &format!(", then {m} expired-token failures from age {}", again - t0);
    }
    let shape = if then_stale {
        Shape::ClockSkewThenStale
    } else {
        Shape::ClockSkew
    };
    p.planted(shape, role.arn(), vec![session], note)
}

/// A session of a CI role in another account assumes a role here (role chaining across accounts) and
/// the workload caches it. CloudTrail logs that AssumeRole in both accounts: the caller's copy shows the
/// assumed-role caller, the role account's copy only `AWSAccount`.
fn cross_account_chain(p: &mut Plot<'_>, t0: i64) -> Planted {
    const CALLER_ACCOUNT: &str = "111122223333";
    let hub_role = p.w.role(format!("ci-hub-role-{}", p.k), "");
    let hub = Who::Role(RoleSession {
        role: hub_role,
        session: format!("deploy-{}", p.k),
        key: p.w.key(b"ASIA"),
        created: t0 - p.w.rng.range(60, 1800),
        detail: Detail::Full,
        ec2: false,
        web_provider: None,
    });
    let role = p.role("cross-account-role", "");
    let (duration, lease) =
        *p.w.rng
            .pick(&[(None, 3600), (Some(900), 900), (Some(3600), 3600)]);
    let session = p.session.clone();
    let rs = p.assume(t0, &hub, &role, &session, duration, lease, Detail::Full);
    let issued = p.w.records.len() - 1;
    p.w.log_in_both_accounts(issued, CALLER_ACCOUNT);
    let who = Who::Role(rs);
    p.healthy(&who, t0 + 30, t0 + lease - 60, 2);
    let first = t0 + lease + p.w.rng.range(2, 200);
    let span = p.w.rng.range(120, 3000);
    let n = p.w.rng.range(1, 25);
    let times = spread(&mut p.w.rng, first, first + span, n);
    p.fail(&who, &WORKLOAD_APIS, &times);
    let note = format!(
        "AssumeRole from account {CALLER_ACCOUNT} logged in both accounts{}, fails from age {} for {span} s",
        duration.map_or(String::new(), |d| format!(" (durationSeconds {d})")),
        first - t0
    );
    p.planted(Shape::CrossAccountChain, role.arn(), vec![session], note)
}

/// A pod whose projected service-account token file went stale: STS refuses the token.
fn web_identity_token(p: &mut Plot<'_>, t0: i64) -> Planted {
    let role = p.role("irsa-role", "");
    let subject = format!("system:serviceaccount:{}:{}-worker", p.app, p.app);
    let who = Who::WebIdentity {
        provider: OIDC.to_owned(),
        subject,
    };
    let fixed_name = p.w.rng.percent(50);
    let n = p.w.rng.range(1, 12);
    let span = p.w.rng.range(60, 1800);
    let times = spread(&mut p.w.rng, t0, t0 + span, n);
    let token_exp = t0 - p.w.rng.range(60, 86_400);
    let mut sessions = Vec::new();
    for &t in &times {
        let session = if fixed_name {
            p.session.clone()
        } else {
            format!("botocore-session-{t}")
        };
        p.w.stale_token(t, &who, &role, &session, token_exp);
        if !sessions.contains(&session) {
            sessions.push(session);
        }
    }
    let note = format!(
        "{n} AssumeRoleWithWebIdentity refused over {span} s, session names {}",
        if fixed_name { "fixed" } else { "per attempt" }
    );
    p.planted(Shape::WebIdentityToken, role.arn(), sessions, note)
}

/// A laptop slept holding a session and woke hours after it ended; the user sometimes signs in again.
fn paused_process(p: &mut Plot<'_>, t0: i64) -> Planted {
    let person = *p.w.rng.pick(&PEOPLE);
    let role = p.role("admin-role", "");
    let caller = Who::User {
        user: p.w.user(&format!("{person}-{}", p.k)),
        key: p.w.key(b"AKIA"),
    };
    p.agent = *p.w.rng.pick(&[Agent::Cli2, Agent::Terraform]);
    p.ip = format!("203.0.113.{}", 10 + p.k);
    let session = format!("{person}-{}", p.k);
    let (duration, lease) = p.lease();
    let rs = p.assume(t0, &caller, &role, &session, duration, lease, Detail::Full);
    let who = Who::Role(rs);
    p.healthy(&who, t0 + 10, t0 + 900, 3);
    let first = t0 + lease + p.w.rng.range(7200, 28_800);
    let n = p.w.rng.range(1, 10);
    let last = first + p.w.rng.range(5, 300);
    let times = spread(&mut p.w.rng, first, last, n);
    p.fail(&who, &WORKLOAD_APIS, &times);
    let again = p.w.rng.percent(50).then(|| first + p.w.rng.range(30, 200));
    if let Some(t) = again {
        let rs = p.assume(t, &caller, &role, &session, duration, lease, Detail::Full);
        p.healthy(&Who::Role(rs), t + 5, t + 600, 2);
    }
    let note = format!(
        "lease {lease} s, woke at age {}, {n} failures{}",
        first - t0,
        again.map_or(String::new(), |t| format!(
            ", signed in again {} s later",
            t - first
        ))
    );
    p.planted(Shape::PausedProcess, role.arn(), vec![session], note)
}
