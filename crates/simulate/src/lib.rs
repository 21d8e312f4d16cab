//! Synthetic CloudTrail corpora for tokenwatch's benchmarks and tests.
//!
//! [`write_corpus`] writes gzip trail files laid out exactly as CloudTrail delivers them to S3
//! (`AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/…json.gz`, each `{"Records":[…]}`, records not
//! sorted by time). Most records are healthy traffic: a few hundred role sessions refreshing on time,
//! IAM users and AWS services calling some forty APIs with the SDK user agents seen in the wild. Into
//! it go incidents (about one per 5,000 records: stale-cache, refresh-race, paused-process,
//! clock-skew) and look-alike errors (AccessDenied, InvalidClientTokenId, SignatureDoesNotMatch,
//! throttling on temporary keys). The returned [`Summary`] lists, per incident, the group the rules of
//! `docs/rules.md` must find ([`ExpectedGroup`]), so `tokenwatch analyze` can be checked against it.
//!
//! Output is a pure function of [`Options`]: the same seed gives the same bytes, whatever the
//! scheduling of the two writer threads. Records are formatted straight into a reused buffer and each
//! file is compressed with zlib-rs at the default level.
//!
//! [`history`] makes small, realistic histories instead (a few workloads' sessions in the situations that
//! decide verdicts and incidents, with EventBridge's delivery order), for comparing the engine's paths
//! with each other; it states no expected verdicts.

mod catalog;
mod error;
pub mod history;
mod ids;
mod incident;
mod record;
mod rng;
mod time;
mod world;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::{fs, io};

use flate2::Compression;
use flate2::write::GzEncoder;

pub use error::Error;

use catalog::{APIS, Issuer};
use incident::{Caller, Plan, What};
use record::{Agent, Call, Fault, Identity, Issue};
use rng::{Rng, hash3, mix};

/// 2026-11-02T00:00:00Z, the default first `eventTime`.
pub const DEFAULT_START_EPOCH: i64 = time::days_from_civil(2026, 11, 2) * 86_400;

/// Healthy traffic rate: records per minute of simulated time (a file of 2,000 covers 5 minutes).
const RECORDS_PER_MINUTE: i64 = 400;

/// Writer threads; files are split between them by index.
const THREADS: usize = 2;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Total records over all files. Default 10,000.
    pub records: u64,
    /// Records per trail file (the last file may hold fewer). Default 2,000.
    pub records_per_file: usize,
    /// PRNG seed: the same seed and options give byte-identical files.
    pub seed: u64,
    /// Start of the first file's time window, in Unix seconds. Default [`DEFAULT_START_EPOCH`].
    pub start_epoch: i64,
    /// Account id, in paths and records. Default `123456789012`.
    pub account: String,
    /// Region of the trail folder and of the records. Default `us-east-1`.
    pub region: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            records: 10_000,
            records_per_file: 2_000,
            seed: 0,
            start_epoch: DEFAULT_START_EPOCH,
            account: "123456789012".to_owned(),
            region: "us-east-1".to_owned(),
        }
    }
}

/// What was written, and what the engine must find in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Records written (equals `Options::records`).
    pub records: u64,
    /// Trail files written.
    pub files: usize,
    /// Total size of the files' JSON before compression.
    pub json_bytes: u64,
    /// Total size of the `.json.gz` files.
    pub gzip_bytes: u64,
    /// Expiry-family failures written (distinct `eventID`s): the report's `failures`.
    pub failures: u64,
    /// Look-alike error records written on temporary keys (never failures, never groups).
    pub look_alikes: u64,
    /// The groups the rules must find, in order of their session's issue time.
    pub groups: Vec<ExpectedGroup>,
}

/// One group the engine must report, with the values `docs/rules.md` implies for it.
///
/// Field names follow the report document (docs/contract.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedGroup {
    /// `recipientAccountId` of its records.
    pub account: String,
    /// Role ARN (`sessionIssuer.arn`, with the role's path).
    pub principal: String,
    /// Role session name.
    pub session: String,
    /// The failing session's access key (`ASIA…`).
    pub access_key_id: String,
    /// `stale-cache`, `refresh-race`, `paused-process` or `clock-skew`.
    pub verdict: &'static str,
    /// Severity per the rules' table.
    pub severity: &'static str,
    /// `assume-role`, `role-chaining` or `instance-profile`.
    pub credential_source: &'static str,
    /// Client class of the failures' user agent (`boto3`, `aws-cli-v2`, `java-v2`, `go-v2`, `js-v3`, `rust`).
    pub client: &'static str,
    /// The failing session's `creationDate` (= its AssumeRole `eventTime`), ISO-8601.
    pub issued_at: String,
    /// `eventTime` of the first failure.
    pub first_failure: String,
    /// `eventTime` of the last failure.
    pub last_failure: String,
    /// First failure − `issued_at`, in seconds.
    pub age_at_first_failure_seconds: i64,
    /// The session's lease in seconds.
    pub lease_seconds: u64,
    /// `duration-seconds` (the issuance passed `durationSeconds`) or `expiration`.
    pub lease_source: &'static str,
    /// Failures of the group (distinct `eventID`s).
    pub failures: u64,
    /// Failures per `errorCode`, sorted by code.
    pub error_codes: Vec<(&'static str, u64)>,
}

impl ExpectedGroup {
    /// The group as a JSON object with the report's field names.
    pub fn to_json(&self) -> serde_json::Value {
        let codes: serde_json::Map<String, serde_json::Value> = self
            .error_codes
            .iter()
            .map(|&(c, n)| (c.to_owned(), n.into()))
            .collect();
        serde_json::json!({
            "account": self.account,
            "principal": self.principal,
            "session": self.session,
            "access_key_ids": [self.access_key_id],
            "failures": self.failures,
            "first_failure": self.first_failure,
            "last_failure": self.last_failure,
            "issued_at": self.issued_at,
            "lease_seconds": self.lease_seconds,
            "lease_source": self.lease_source,
            "age_at_first_failure_seconds": self.age_at_first_failure_seconds,
            "verdict": self.verdict,
            "severity": self.severity,
            "credential_source": self.credential_source,
            "client": self.client,
            "error_codes": codes,
        })
    }
}

impl Summary {
    /// The summary as JSON: the counts, and `groups` as in [`ExpectedGroup::to_json`].
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "records": self.records,
            "files": self.files,
            "json_bytes": self.json_bytes,
            "gzip_bytes": self.gzip_bytes,
            "failures": self.failures,
            "look_alikes": self.look_alikes,
            "groups": self.groups.iter().map(ExpectedGroup::to_json).collect::<Vec<_>>(),
        })
    }
}

/// How records are cut into files and time windows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub start: i64,
    pub records: u64,
    pub per_file: u64,
    pub files: usize,
}

impl Layout {
    /// Start of file `i`'s nominal time window.
    pub(crate) fn window_start(&self, i: usize) -> i64 {
        self.start + (i as i64 * self.per_file as i64 * 60) / RECORDS_PER_MINUTE
    }

    /// End of the last window.
    pub(crate) fn end(&self) -> i64 {
        self.window_start(self.files)
    }

    /// Records in file `i`.
    pub(crate) fn file_len(&self, i: usize) -> usize {
        let before = i as u64 * self.per_file;
        self.per_file.min(self.records.saturating_sub(before)) as usize
    }

    /// The file whose window holds `t` (the last one for later times).
    pub(crate) fn file_of(&self, t: i64) -> usize {
        let offset = (t - self.start).max(0) as i128;
        let i = offset * i128::from(RECORDS_PER_MINUTE) / (60 * i128::from(self.per_file));
        (i.min(self.files as i128 - 1)).max(0) as usize
    }
}

fn validate(opts: &Options) -> Result<(), Error> {
    let bad = |field, reason| Err(Error::InvalidOption { field, reason });
    if opts.records_per_file == 0 {
        return bad("records_per_file", "must be at least 1");
    }
    if opts.account.is_empty()
        || !opts
            .account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return bad(
            "account",
            "must be a non-empty account id of letters, digits and '-'",
        );
    }
    if opts.region.is_empty()
        || !opts
            .region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad(
            "region",
            "must be a non-empty region name of lowercase letters, digits and '-'",
        );
    }
    if !(0..=253_402_300_799 - 30 * 86_400).contains(&opts.start_epoch) {
        return bad("start_epoch", "must lie between 1970 and 9999");
    }
    Ok(())
}

/// Writes a synthetic corpus under `dir` (created if missing) and returns what it holds.
///
/// Files go to `dir/AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`, named
/// `<account>_CloudTrail_<region>_YYYYMMDDTHHmmZ_<16 alnum>.json.gz` after their delivery time (the end
/// of their window, or later when they carry late records). Existing files are overwritten.
pub fn write_corpus(dir: &Path, opts: &Options) -> Result<Summary, Error> {
    validate(opts)?;
    fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let per_file = opts.records_per_file as u64;
    let layout = Layout {
        start: opts.start_epoch,
        records: opts.records,
        per_file,
        files: opts.records.div_ceil(per_file) as usize,
    };
    let world = world::World::new(&opts.account, &opts.region, opts.seed, opts.start_epoch);
    let plan = incident::plan(&world, &layout);
    let job = Job {
        root: dir,
        world: &world,
        plan: &plan,
        layout,
    };

    let failed = AtomicBool::new(false);
    let threads = THREADS.min(layout.files).max(1);
    let results: Vec<Result<(u64, u64), Error>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (job, failed) = (&job, &failed);
                scope.spawn(move || {
                    let mut scratch = Scratch::default();
                    let (mut json, mut gz) = (0, 0);
                    for i in (t..layout.files).step_by(threads) {
                        if failed.load(Ordering::Relaxed) {
                            break;
                        }
                        match job.write_file(i, &mut scratch) {
                            Ok((j, g)) => {
                                json += j;
                                gz += g;
                            }
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok((json, gz))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let (mut json_bytes, mut gzip_bytes) = (0, 0);
    for result in results {
        let (j, g) = result?;
        json_bytes += j;
        gzip_bytes += g;
    }
    Ok(Summary {
        records: opts.records,
        files: layout.files,
        json_bytes,
        gzip_bytes,
        failures: plan.failures,
        look_alikes: plan.look_alikes,
        groups: plan.incidents.iter().filter_map(|i| i.expected.clone()).collect(),
    })
}

/// One file's record before formatting.
#[derive(Clone, Copy)]
enum Spec {
    /// A healthy call, drawn when formatted.
    Healthy,
    /// The AssumeRole that issues generation `generation` of a healthy session.
    Renewal { session: u32, generation: i64 },
    /// An incident record (index into `Plan::events`).
    Incident(u32),
}

/// Buffers a writer thread reuses from file to file.
#[derive(Default)]
struct Scratch {
    items: Vec<(i64, Spec)>,
    json: Vec<u8>,
    gz: Vec<u8>,
    made_dir: Option<PathBuf>,
}

/// Everything a writer thread reads.
struct Job<'a> {
    root: &'a Path,
    world: &'a world::World,
    plan: &'a Plan,
    layout: Layout,
}

impl Job<'_> {
    /// Builds, compresses and writes file `i`; returns its JSON and gzip sizes.
    fn write_file(&self, i: usize, scratch: &mut Scratch) -> Result<(u64, u64), Error> {
        let (world, layout) = (self.world, &self.layout);
        let mut rng = Rng::new(hash3(world.seed, 0xF11E, i as u64));
        let cap = layout.file_len(i);
        let (w0, w1) = (layout.window_start(i), layout.window_start(i + 1));
        let items = &mut scratch.items;
        items.clear();
        items.extend(
            self.plan.per_file[i]
                .iter()
                .map(|&e| (self.plan.events[e as usize].t, Spec::Incident(e))),
        );
        for (s, session) in world.sessions.iter().enumerate() {
            if session.issuer == Issuer::Sso {
                continue;
            }
            let mut g = (w0 - session.offset + session.period - 1).div_euclid(session.period);
            while session.created(g) < w1 && items.len() < cap {
                items.push((
                    session.created(g),
                    Spec::Renewal {
                        session: s as u32,
                        generation: g,
                    },
                ));
                g += 1;
            }
        }
        let width = (w1 - w0).max(1) as u64;
        while items.len() < cap {
            items.push((w0 + rng.below(width) as i64, Spec::Healthy));
        }
        // Roughly in time order, locally shuffled, as real trail files are.
        items.sort_unstable_by_key(|&(t, _)| t);
        let n = items.len();
        for j in 0..n {
            let k = j + rng.below((n - j).min(48) as u64) as usize;
            items.swap(j, k);
        }

        let json = &mut scratch.json;
        json.clear();
        json.extend_from_slice(br#"{"Records":["#);
        let id_key = mix(world.seed ^ 0x0E7E_71D5);
        let mut latest = w1;
        for (pos, &(t, spec)) in items.iter().enumerate() {
            if pos > 0 {
                json.push(b',');
            }
            // Distinct positions give distinct eventIDs: `mix` is a bijection.
            let event_id = mix((i as u64 * layout.per_file + pos as u64).wrapping_add(id_key));
            latest = latest.max(t);
            match spec {
                Spec::Healthy => write_healthy(json, world, t, event_id, &mut rng),
                Spec::Renewal { session, generation } => {
                    write_renewal(json, world, session as usize, generation, event_id, &mut rng)
                }
                Spec::Incident(e) => self.write_incident(json, e, event_id, &mut rng),
            }
        }
        json.extend_from_slice(b"]}");

        let delivered = (latest + 59).div_euclid(60) * 60;
        let (day, stamp) = time::file_stamp(delivered);
        let (account, region) = (&world.account, &world.region);
        let folder = self
            .root
            .join(format!("AWSLogs/{account}/CloudTrail/{region}/{day}"));
        if scratch.made_dir.as_ref() != Some(&folder) {
            fs::create_dir_all(&folder).map_err(|source| Error::CreateDir {
                path: folder.clone(),
                source,
            })?;
            scratch.made_dir = Some(folder.clone());
        }
        let mut suffix = Vec::with_capacity(16);
        ids::write_alnum(&mut suffix, 16, hash3(world.seed, 0xF11E_AA3E, i as u64));
        let name = format!(
            "{account}_CloudTrail_{region}_{stamp}_{}.json.gz",
            ids::ascii(&suffix)
        );
        let path = folder.join(name);

        let mut encoder = GzEncoder::new(std::mem::take(&mut scratch.gz), Compression::default());
        let compressed = encoder.write_all(json).and_then(|()| encoder.finish());
        let gz = compressed.map_err(|source| Error::WriteFile {
            path: path.clone(),
            source,
        })?;
        let write = fs::write(&path, &gz);
        let sizes = (json.len() as u64, gz.len() as u64);
        scratch.gz = gz;
        scratch.gz.clear();
        write.map_err(|source: io::Error| Error::WriteFile { path, source })?;
        Ok(sizes)
    }

    fn write_incident(&self, buf: &mut Vec<u8>, e: u32, event_id: u64, rng: &mut Rng) {
        let world = self.world;
        let event = self.plan.events[e as usize];
        let inc = &self.plan.incidents[event.incident as usize];
        let session = |g: u8| Identity::Role {
            ident: &inc.ident,
            key: &inc.keys[usize::from(g)],
            created: inc.issued[usize::from(g)],
        };
        let call = |api: u16, identity, fault| Call {
            time: event.t,
            identity,
            agent: Agent::Sdk(inc.sdk, inc.sdk_ver),
            ip: &inc.ip,
            api: &APIS[api as usize],
            fault,
            app: inc.app,
            event_id,
        };
        match event.what {
            What::Issue(g) => {
                let hub_key;
                let (caller, agent, ip) = match inc.caller {
                    Caller::User(u) => (
                        Identity::User(&world.users[u]),
                        Agent::Sdk(inc.sdk, inc.sdk_ver),
                        &*inc.ip,
                    ),
                    Caller::Hub(h) => {
                        let hub = &world.sessions[h];
                        let hg = hub.generation(event.t);
                        hub_key = hub.key(hg);
                        let caller = Identity::Role {
                            ident: &hub.ident,
                            key: &hub_key,
                            created: hub.created(hg),
                        };
                        (caller, Agent::Sdk(inc.sdk, inc.sdk_ver), &*inc.ip)
                    }
                    Caller::Service(by) => (Identity::Service(by), Agent::Service(by), by),
                };
                let issued = inc.issued[usize::from(g)];
                let issue = Issue {
                    time: event.t,
                    caller,
                    agent,
                    ip,
                    role: &inc.ident,
                    key: &inc.keys[usize::from(g)],
                    duration: inc.duration,
                    expiration: issued + inc.lease - inc.expiry_skew,
                    event_id,
                };
                record::write_issue(buf, world, &issue, rng);
            }
            What::Call(g, api) => record::write_call(buf, world, &call(api, session(g), None), rng),
            What::Fail(api) => {
                let (code, message) = incident::failure_fault(inc.kind, &APIS[api as usize]);
                let c = call(api, session(0), Some(Fault::Fixed(code, message)));
                record::write_call(buf, world, &c, rng);
            }
            What::LookAlike(api) => {
                let incident::Kind::LookAlike(kind) = inc.kind else {
                    return;
                };
                let c = call(api, session(0), Some(incident::look_alike_fault(kind)));
                record::write_call(buf, world, &c, rng);
            }
        }
    }
}

/// The occasional error of healthy traffic (about 2%, plus S3's common NoSuchBucketPolicy).
fn healthy_fault(api: &catalog::Api, rng: &mut Rng) -> Option<Fault> {
    if api.name == "GetBucketPolicy" && rng.percent(30) {
        return Some(Fault::Fixed(
            "NoSuchBucketPolicy",
            "The bucket policy does not exist",
        ));
    }
    if !rng.percent(2) {
        return None;
    }
    let fault = match (rng.below(10), api.svc) {
        (0..=4, "ec2") => Fault::Fixed(
            "Client.UnauthorizedOperation",
            "You are not authorized to perform this operation.",
        ),
        (0..=4, _) => Fault::Denied,
        (5..=6, "ec2") => Fault::Fixed("Client.RequestLimitExceeded", "Request limit exceeded."),
        (5..=6, _) => Fault::Fixed("ThrottlingException", "Rate exceeded"),
        (_, "ec2") => Fault::Fixed(
            "Client.InvalidInstanceID.NotFound",
            "The instance ID does not exist",
        ),
        (_, "s3") if api.data => Fault::Fixed("NoSuchKey", "The specified key does not exist."),
        (_, "s3") => Fault::Fixed("NoSuchBucket", "The specified bucket does not exist"),
        (_, "iam") => Fault::Fixed("NoSuchEntityException", "The role cannot be found."),
        _ if api.json => Fault::Fixed("ResourceNotFoundException", "Requested resource not found"),
        _ => Fault::Fixed("ValidationError", "1 validation error detected"),
    };
    Some(fault)
}

fn write_healthy(buf: &mut Vec<u8>, world: &world::World, t: i64, event_id: u64, rng: &mut Rng) {
    let roll = rng.below(100);
    if roll < 80 {
        // A few busy sessions, a long tail of quiet ones.
        let n = world.sessions.len();
        let s = if rng.percent(40) {
            rng.index(n.min(40))
        } else {
            rng.index(n)
        };
        let session = &world.sessions[s];
        let g = session.generation(t);
        let key = session.key(g);
        let api = &APIS[*rng.pick(&session.apis) as usize];
        let call = Call {
            time: t,
            identity: Identity::Role {
                ident: &session.ident,
                key: &key,
                created: session.created(g),
            },
            agent: Agent::Sdk(session.sdk, session.sdk_ver),
            ip: &session.ip,
            api,
            fault: healthy_fault(api, rng),
            app: session.app,
            event_id,
        };
        record::write_call(buf, world, &call, rng);
    } else if roll < 91 {
        let user = rng.pick(&world.users);
        let api = &APIS[*rng.pick(&user.apis) as usize];
        let call = Call {
            time: t,
            identity: Identity::User(user),
            agent: Agent::Sdk(user.sdk, (event_id % 3) as u8),
            ip: &user.ip,
            api,
            fault: healthy_fault(api, rng),
            app: user.app,
            event_id,
        };
        record::write_call(buf, world, &call, rng);
    } else {
        let &(by, api) = rng.pick(&world.service_calls);
        let call = Call {
            time: t,
            identity: Identity::Service(by),
            agent: Agent::Service(by),
            ip: by,
            api: &APIS[api as usize],
            fault: None,
            app: "trail-logs",
            event_id,
        };
        record::write_call(buf, world, &call, rng);
    }
}

fn write_renewal(buf: &mut Vec<u8>, world: &world::World, s: usize, g: i64, event_id: u64, rng: &mut Rng) {
    let session = &world.sessions[s];
    let time = session.created(g);
    let key = session.key(g);
    let hub_key;
    let (caller, agent, ip) = match session.issuer {
        Issuer::User(u) => (
            Identity::User(&world.users[u]),
            Agent::Sdk(session.sdk, session.sdk_ver),
            &*session.ip,
        ),
        Issuer::Hub => {
            let hub = &world.sessions[session.hub];
            let hg = hub.generation(time);
            hub_key = hub.key(hg);
            let caller = Identity::Role {
                ident: &hub.ident,
                key: &hub_key,
                created: hub.created(hg),
            };
            (caller, Agent::Sdk(session.sdk, session.sdk_ver), &*session.ip)
        }
        Issuer::Service(by) => (Identity::Service(by), Agent::Service(by), by),
        // Never scheduled (SSO sessions are issued outside the trail); kept well-formed regardless.
        Issuer::Sso => {
            let by = "sso.amazonaws.com";
            (Identity::Service(by), Agent::Service(by), by)
        }
    };
    let issue = Issue {
        time,
        caller,
        agent,
        ip,
        role: &session.ident,
        key: &key,
        duration: session.duration,
        expiration: time + session.duration.unwrap_or(session.lease),
        event_id,
    };
    record::write_issue(buf, world, &issue, rng);
}

#[cfg(test)]
mod tests;
