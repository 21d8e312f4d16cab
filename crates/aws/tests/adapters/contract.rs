//! `DynamoStore` behaves as `MemoryStore`, the ports' reference: the same script of calls gives the same
//! answers and the same loaded states, step by step.

use std::collections::BTreeSet;

use tokenwatch_aws::DynamoStore;
use tokenwatch_core::classify::{Failure, Issuance};
use tokenwatch_core::incident::{IncidentId, MAX_HISTORY, MAX_ISSUED_TIMES, incident_id};
use tokenwatch_core::memory::MemoryStore;
use tokenwatch_core::model::{Client, Severity, StsCall};
use tokenwatch_core::ports::{Change, PAGE_LEASE, StateStore};
use tokenwatch_core::stats::{FailureStats, GroupKey};
use tokenwatch_core::time::Epoch;
use tokenwatch_testkit::Emulator;

use crate::common::{T0, failure, fresh_store, inc, issuance, key};

/// Runs a port call, writes it and its answer into `log`, and hands back its result.
macro_rules! step {
    ($log:ident, $label:expr, $call:expr) => {{
        let answer = $call.await;
        $log.push(format!("{}: {:?}", $label, answer));
        answer.expect(&$label)
    }};
}

/// Every port call with its answer, as text: the two stores' transcripts must be equal.
async fn script<S: StateStore>(store: &S) -> Vec<String> {
    let mut log = Vec::new();

    let k = key("nightly-etl");
    let inc1 = incident_id(&k, T0 + 3650);
    let inc2 = incident_id(&k, T0 + 20_000);

    step!(log, "load before anything", store.load(&k));
    step!(
        log,
        "issuance",
        store.record_issuance(&k, &issuance("ASIAEXAMPLEFAILING01", T0))
    );
    let replay = Issuance {
        duration_seconds: Some(900),
        ..issuance("ASIAEXAMPLEFAILING01", T0)
    };
    step!(
        log,
        "the same key issued again: the first record stands",
        store.record_issuance(&k, &replay)
    );
    step!(
        log,
        "a newer session",
        store.record_issuance(&k, &issuance("ASIAEXAMPLENEWER0001", T0 + 7200))
    );
    step!(log, "session", store.session("ASIAEXAMPLEFAILING01"));
    step!(log, "unknown session", store.session("ASIAEXAMPLEUNKNOWN01"));
    step!(log, "load after issuances", store.load(&k));

    let no_id = Failure {
        event_id: None,
        ..failure("", 3800, "sts:GetCallerIdentity")
    };
    let first = vec![
        failure("e1", 3700, "s3:ListBuckets"),
        failure("e2", 3650, "s3:GetObject"),
        failure("e1", 3700, "s3:ListBuckets"),
        no_id.clone(),
        no_id,
    ];
    step!(
        log,
        "first batch: a repeat inside it counts once",
        store.record_failures(&k, &first, Change::Add { incident: &inc1 })
    );
    let earlier = Failure {
        event_id: Some("e3".into()),
        time: T0 + 3640,
        principal: Some("arn:aws:iam::123456789012:role/jobs/etl-pipeline-role".into()),
        access_key_id: Some("ASIAEXAMPLEFAILING02".into()),
        creation_date: Some(T0 + 5),
        error_code: "ExpiredTokenException".into(),
        client: Some(Client::JavaV2),
        source_ip: Some("10.9.9.9".into()),
        token_call: Some(StsCall::AssumeRoleWithWebIdentity),
        ..failure("e3", 0, "sts:AssumeRoleWithWebIdentity")
    };
    let later = Failure {
        error_code: "RequestExpired".into(),
        client: None,
        ..failure("e4", 4000, "ec2:DescribeInstances")
    };
    let second = vec![failure("e2", 3650, "s3:GetObject"), earlier, later];
    step!(
        log,
        "second batch: a duplicate, an earlier failure and a later one",
        store.record_failures(
            &k,
            &second,
            Change::Add {
                incident: &inc("ignored: the group has one")
            }
        )
    );
    let state = step!(log, "load", store.load(&k));

    // Page claims are leases: held for PAGE_LEASE, taken over after it (the claimer died before
    // publishing), and only a confirmed page is recorded as paged.
    let t = T0 + 4000;
    assert!(step!(
        log,
        "page high",
        store.claim_page(&k, &inc1, Severity::High, t)
    ));
    assert!(!step!(
        log,
        "page high again while the claim holds",
        store.claim_page(&k, &inc1, Severity::High, t + 1)
    ));
    step!(
        log,
        "page medium while high is claimed",
        store.claim_page(&k, &inc1, Severity::Medium, t + 1)
    );
    step!(log, "load while claimed: not paged yet", store.load(&k));
    assert!(step!(
        log,
        "a live lower claim does not block an escalation",
        store.claim_page(&k, &inc1, Severity::Critical, t + 2)
    ));
    step!(
        log,
        "the high claimer confirms: paged rises, the critical claim stays",
        store.confirm_page(&k, &inc1, Severity::High)
    );
    step!(log, "load after the high page", store.load(&k));
    step!(
        log,
        "critical while its claim holds",
        store.claim_page(&k, &inc1, Severity::Critical, t + 3)
    );
    step!(
        log,
        "release critical",
        store.release_page(&k, &inc1, Severity::Critical)
    );
    step!(
        log,
        "release what is not held",
        store.release_page(&k, &inc1, Severity::Critical)
    );
    step!(
        log,
        "critical after the release",
        store.claim_page(&k, &inc1, Severity::Critical, t + 4)
    );
    assert!(!step!(
        log,
        "critical while the lease holds (the claimer died)",
        store.claim_page(&k, &inc1, Severity::Critical, t + 4 + PAGE_LEASE - 1)
    ));
    assert!(step!(
        log,
        "critical once the lease ran out: taken over",
        store.claim_page(&k, &inc1, Severity::Critical, t + 4 + PAGE_LEASE)
    ));
    step!(
        log,
        "confirm critical",
        store.confirm_page(&k, &inc1, Severity::Critical)
    );
    step!(
        log,
        "a late confirm of high changes nothing",
        store.confirm_page(&k, &inc1, Severity::High)
    );
    step!(
        log,
        "page high after critical",
        store.claim_page(&k, &inc1, Severity::High, t + 500)
    );
    assert!(!step!(
        log,
        "page critical again, long after",
        store.claim_page(&k, &inc1, Severity::Critical, t + 9999)
    ));
    step!(
        log,
        "page another incident",
        store.claim_page(&k, &inc("not-the-incident"), Severity::Critical, t)
    );
    step!(
        log,
        "confirm another incident",
        store.confirm_page(&k, &inc("not-the-incident"), Severity::Critical)
    );
    step!(
        log,
        "page a group never seen",
        store.claim_page(&key("nobody"), &inc1, Severity::Critical, t)
    );
    step!(log, "load after the pages", store.load(&k));
    step!(log, "open incidents", store.open_incidents());

    // The hourly cap of new groups per principal: a counter per clock hour. Dated now, since
    // ministack's TTL reaper deletes an item whose expires_at has passed.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let hour = now - now.rem_euclid(3600);
    let principal = "123456789012|etl-pipeline-role|-";
    for i in 0..3 {
        assert!(step!(
            log,
            format!("new group {i} of the hour, within the cap").as_str(),
            store.admit_new_group(principal, hour + i, 3)
        ));
    }
    assert!(!step!(
        log,
        "past the cap",
        store.admit_new_group(principal, hour + 3599, 3)
    ));
    assert!(step!(
        log,
        "another principal has its own count",
        store.admit_new_group("123456789012|other-role|-", hour + 10, 3)
    ));
    assert!(step!(
        log,
        "the next hour counts afresh",
        store.admit_new_group(principal, hour + 3600, 3)
    ));

    step!(log, "resolve", store.resolve(&k, &inc1, T0 + 9000));
    step!(log, "resolve again", store.resolve(&k, &inc1, T0 + 9000));
    step!(
        log,
        "resolve another incident",
        store.resolve(&k, &inc("not-the-incident"), T0 + 9000)
    );
    step!(log, "open incidents after resolve", store.open_incidents());
    step!(
        log,
        "unresolve another resolution",
        store.unresolve(&k, &inc1, T0 + 1)
    );
    step!(log, "load resolved", store.load(&k));
    step!(log, "unresolve", store.unresolve(&k, &inc1, T0 + 9000));
    step!(log, "open incidents after unresolve", store.open_incidents());
    step!(log, "resolve once more", store.resolve(&k, &inc1, T0 + 9001));

    let restart = vec![
        failure("e1", 3700, "s3:ListBuckets"),
        failure("e10", 20_000, "dynamodb:Query"),
        failure("e11", 20_060, "dynamodb:Query"),
    ];
    let stale = Change::Restart {
        expected: Some(&inc("stale-incident")),
        incident: &inc2,
        session_failed_at: None,
    };
    step!(
        log,
        "restart on a stale incident id writes nothing",
        store.record_failures(&k, &restart, stale)
    );
    step!(log, "load after the stale restart", store.load(&k));
    let fresh = Change::Restart {
        expected: Some(&inc1),
        incident: &inc2,
        session_failed_at: None,
    };
    step!(log, "restart", store.record_failures(&k, &restart, fresh));
    step!(log, "load after restart", store.load(&k));
    step!(
        log,
        "the new incident is claimed whatever the old one's claims",
        store.claim_page(&k, &inc2, Severity::Critical, t + 10_000)
    );
    step!(
        log,
        "and confirmed",
        store.confirm_page(&k, &inc2, Severity::Critical)
    );
    step!(log, "load after paging the new incident", store.load(&k));
    let more = vec![
        failure("e10", 20_000, "dynamodb:Query"),
        failure("e12", 20_120, "s3:PutObject"),
    ];
    step!(
        log,
        "add to the new incident",
        store.record_failures(&k, &more, Change::Add { incident: &inc2 })
    );
    step!(
        log,
        "all duplicates",
        store.record_failures(&k, &more, Change::Add { incident: &inc2 })
    );

    let other = key("other");
    let started = Change::Restart {
        expected: None,
        incident: &inc("other-1"),
        session_failed_at: None,
    };
    step!(
        log,
        "restart a new group",
        store.record_failures(&other, &[failure("e20", 5000, "s3:A")], started)
    );
    step!(
        log,
        "restart it expecting none again",
        store.record_failures(&other, &[failure("e21", 5001, "s3:A")], started)
    );
    let empty_key = key("empty");
    step!(
        log,
        "an empty batch still opens the incident",
        store.record_failures(
            &empty_key,
            &[],
            Change::Add {
                incident: &inc("empty-1")
            }
        )
    );
    step!(log, "load the empty group", store.load(&empty_key));
    let none_key = GroupKey::default();
    step!(
        log,
        "a group with no key parts",
        store.record_failures(
            &none_key,
            &[failure("e30", 100, "s3:A")],
            Change::Add {
                incident: &inc("anon")
            }
        )
    );
    step!(log, "open incidents at the end", store.open_incidents());

    // The caps: 20 listed values and 100 event names per group, admitted as FailureStats::merge does.
    let caps = key("caps");
    let batch = |prefix: &str, names: std::ops::Range<usize>, ips: std::ops::Range<usize>| -> Vec<Failure> {
        names
            .zip(ips.cycle())
            .map(|(n, ip)| Failure {
                source_ip: Some(format!("10.0.{}.{}", ip / 100, ip % 100)),
                access_key_id: Some(format!("ASIAEXAMPLE{ip:09}")),
                ..failure(
                    &format!("{prefix}{n}"),
                    4000 + n as i64,
                    &format!("s3:Call{n:03}"),
                )
            })
            .collect()
    };
    step!(
        log,
        "60 names, 16 addresses",
        store.record_failures(
            &caps,
            &batch("a", 0..60, 0..16),
            Change::Add {
                incident: &inc("caps")
            }
        )
    );
    step!(
        log,
        "70 names, 16 more addresses",
        store.record_failures(
            &caps,
            &batch("b", 40..110, 100..116),
            Change::Add {
                incident: &inc("caps")
            }
        )
    );
    step!(
        log,
        "known names count, new ones do not",
        store.record_failures(
            &caps,
            &batch("c", 0..10, 200..210),
            Change::Add {
                incident: &inc("caps")
            }
        )
    );
    step!(log, "load at the caps", store.load(&caps));

    // More failures than one transaction holds.
    let big = key("big");
    let many: Vec<Failure> = (0..250)
        .map(|i| failure(&format!("big{i}"), 4000 + i, "s3:GetObject"))
        .collect();
    let applied = step!(
        log,
        "250 failures",
        store.record_failures(
            &big,
            &many,
            Change::Add {
                incident: &inc("big")
            }
        )
    );
    assert_eq!(applied.map(|a| a.len()), Some(250));
    step!(
        log,
        "the same 250 again",
        store.record_failures(
            &big,
            &many,
            Change::Add {
                incident: &inc("big")
            }
        )
    );
    step!(log, "load 250", store.load(&big));

    // Synthetic drills: one slot per account per five minutes; the event holding it keeps it.
    let (a, b) = ("111122223333", "444455556666");
    step!(log, "first drill", store.claim_drill(a, Some("eb-1"), T0));
    step!(
        log,
        "another drill at once",
        store.claim_drill(a, Some("eb-2"), T0 + 1)
    );
    step!(
        log,
        "the first, delivered again",
        store.claim_drill(a, Some("eb-1"), T0 + 200)
    );
    step!(
        log,
        "no event id, within the interval",
        store.claim_drill(a, None, T0 + 299)
    );
    step!(log, "another account", store.claim_drill(b, None, T0 + 1));
    step!(
        log,
        "no event id holds nothing",
        store.claim_drill(b, None, T0 + 2)
    );
    step!(
        log,
        "after the interval",
        store.claim_drill(a, Some("eb-3"), T0 + 300)
    );
    step!(
        log,
        "the first, too late",
        store.claim_drill(a, Some("eb-1"), T0 + 301)
    );
    step!(
        log,
        "the holder after the interval",
        store.claim_drill(a, Some("eb-3"), T0 + 900)
    );

    // Reports: open incidents and recent failures, whatever else the table holds.
    step!(log, "groups failing since T0 + 4100", store.groups(T0 + 4100));
    step!(log, "every group with a failure", store.groups(0));

    // Incident history: each resolution keeps its incident's start, the newest MAX_HISTORY of them.
    let daily = key("daily");
    let mut previous: Option<IncidentId> = None;
    for day in 0..(MAX_HISTORY as i64 + 3) {
        let start = T0 + day * 86_400;
        let id = incident_id(&daily, start);
        let change = Change::Restart {
            expected: previous.as_ref(),
            incident: &id,
            session_failed_at: None,
        };
        let f = failure(&format!("day{day}"), day * 86_400, "s3:GetObject");
        step!(
            log,
            "a day's incident",
            store.record_failures(&daily, &[f], change)
        );
        step!(log, "resolved", store.resolve(&daily, &id, start + 3600));
        previous = Some(id);
    }
    let daily_state = step!(log, "load the daily group", store.load(&daily));
    let history = daily_state.map(|s| s.history).unwrap_or_default();
    assert_eq!(history.len(), MAX_HISTORY);
    assert_eq!(history.first(), Some(&(T0 + 3 * 86_400)), "the oldest went first");

    // The stored stats are the merge of what was applied (the contract of record_failures).
    let mut expected = FailureStats::default();
    for f in [&first[1], &first[0], &first[3], &first[4]] {
        expected.add(f.clone());
    }
    let mut second_delta = FailureStats::default();
    for f in &second[1..] {
        second_delta.add(f.clone());
    }
    expected.merge(second_delta);
    assert_eq!(
        state.expect("group exists").stats,
        expected,
        "stats are the merge of the applied failures"
    );
    log
}

/// A busy role's issue times (re-issued at every cold start and refresh): at [`MAX_ISSUED_TIMES`] the set
/// starts again from the time being recorded, for a new session and for a redelivered one alike.
/// Regression: the set grew without bound in DynamoDB, towards the item's 400 KB limit after which every
/// update of the group fails; and the in-memory twin did not cap it at all. On a table of its own, and on
/// ministack only: it makes over 500 issuances, and moto copies the whole table for each action of a
/// transaction, which takes minutes here (`issuance_cap.rs` holds moto to the cap). The sessions are
/// issued from `since` on, a recent time: ministack deletes items whose `expires_at` has passed (a group's
/// is 30 days after its last issue time), so a group issued at T0 vanishes mid-test once T0 is a month old.
async fn issue_times<S: StateStore>(store: &S, since: Epoch) -> Vec<String> {
    let mut log = Vec::new();
    let busy = key("busy");
    let cap = MAX_ISSUED_TIMES as i64;
    let session = |i: i64| issuance(&format!("ASIABUSY{i:012}"), since + i * 60);
    for i in 0..cap - 1 {
        step!(
            log,
            format!("issuance {i}, below the cap"),
            store.record_issuance(&busy, &session(i))
        );
    }
    step!(log, "one below the cap", store.load(&busy));
    step!(
        log,
        "the issuance that fills the set",
        store.record_issuance(&busy, &session(cap - 1))
    );
    step!(log, "at the cap", store.load(&busy));
    step!(
        log,
        "a new session at the cap: the set starts again from it",
        store.record_issuance(&busy, &session(cap))
    );
    step!(log, "after the cap", store.load(&busy));
    step!(
        log,
        "the same session redelivered: a set, nothing changes",
        store.record_issuance(&busy, &session(cap))
    );
    for i in cap + 1..2 * cap {
        step!(
            log,
            format!("issuance {i}, filling the set again"),
            store.record_issuance(&busy, &session(i))
        );
    }
    step!(log, "at the cap again", store.load(&busy));
    step!(
        log,
        "a recorded session redelivered at the cap: the set starts again from its time",
        store.record_issuance(&busy, &session(cap + 5))
    );
    step!(log, "after the redelivery", store.load(&busy));
    for i in [0, cap - 1, cap, 2 * cap - 1] {
        step!(
            log,
            format!("session {i} stays readable, as first recorded"),
            store.session(&session(i).access_key_id)
        );
    }
    let state = store.load(&busy).await.ok().flatten().unwrap_or_default();
    assert_eq!(state.issued_times, BTreeSet::from([since + (cap + 5) * 60]));
    log
}

/// A fleet's incident written by members racing each other: a write succeeds only against the version
/// it read, and a document survives the round trip whole (ministack deletes items past `expires_at`:
/// the times are recent).
async fn fleet<S: StateStore>(store: &S, now: Epoch) -> Vec<String> {
    use tokenwatch_core::fleet::{claim, confirm, join};
    let mut log = Vec::new();
    let id = "123456789012|payments-api|botocore-session-*";
    let member = |i: u64| IncidentId {
        group: format!("123456789012|payments-api|botocore-session-{}", 1_764_825_600 + i),
        opened_at: now - 60,
    };
    assert_eq!(step!(log, "nothing stored", store.load_fleet(id)), None);
    let (opened, _) = join(None, "botocore-session-*", &member(0), 3);
    assert!(step!(
        log,
        "the first member opens it",
        store.save_fleet(id, &opened, None, now)
    ));
    assert!(!step!(
        log,
        "a second opener loses",
        store.save_fleet(id, &opened, None, now)
    ));
    let (doc, version) = step!(log, "load", store.load_fleet(id)).expect("stored");
    assert_eq!(doc, opened);
    let (counted, _) = join(Some(&doc), "botocore-session-*", &member(1), 5);
    assert!(step!(
        log,
        "a member counted in against the version it read",
        store.save_fleet(id, &counted, Some(version), now)
    ));
    let claimed = claim(&doc, Severity::High, now).expect("due");
    assert!(!step!(
        log,
        "a write against an old version is refused",
        store.save_fleet(id, &claimed, Some(version), now)
    ));
    let (doc, version) = step!(log, "load again", store.load_fleet(id)).expect("stored");
    assert_eq!((doc.sessions(), doc.failures()), (2, 8));
    let paged = confirm(&claim(&doc, Severity::High, now).expect("due"), Severity::High);
    assert!(step!(
        log,
        "paged",
        store.save_fleet(id, &paged, Some(version), now)
    ));
    step!(log, "load paged", store.load_fleet(id));
    step!(log, "another fleet", store.load_fleet("123456789012|etl|i-*"));
    log
}

/// Which script of calls to run.
#[derive(Clone, Copy)]
enum Script {
    Contract,
    /// A fleet's incident, at this time.
    Fleet(Epoch),
    /// Issue times from this time on.
    IssueTimes(Epoch),
}

async fn run<S: StateStore>(store: &S, which: Script) -> Vec<String> {
    match which {
        Script::Contract => script(store).await,
        Script::IssueTimes(since) => issue_times(store, since).await,
        Script::Fleet(now) => fleet(store, now).await,
    }
}

async fn same_as_memory(emulator: Emulator, which: Script) {
    let dynamo: DynamoStore = fresh_store(emulator).await;
    let memory = MemoryStore::default();
    let expected = run(&memory, which).await;
    let actual = run(&dynamo, which).await;
    for (m, d) in expected.iter().zip(&actual) {
        assert_eq!(d, m, "DynamoStore (left) differs from MemoryStore (right)");
    }
    assert_eq!(actual.len(), expected.len());
}

#[tokio::test]
async fn dynamo_store_matches_memory_store_on_moto() {
    same_as_memory(Emulator::Moto, Script::Contract).await;
}

#[tokio::test]
async fn dynamo_store_matches_memory_store_on_ministack() {
    same_as_memory(Emulator::Ministack, Script::Contract).await;
}

#[tokio::test]
async fn issue_times_are_capped_alike_on_ministack() {
    let day_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as Epoch
        - 86_400;
    same_as_memory(Emulator::Ministack, Script::IssueTimes(day_ago)).await;
}

fn recent() -> Epoch {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as Epoch
}

#[tokio::test]
async fn a_fleet_incident_is_version_checked_alike_on_moto() {
    same_as_memory(Emulator::Moto, Script::Fleet(recent())).await;
}

#[tokio::test]
async fn a_fleet_incident_is_version_checked_alike_on_ministack() {
    same_as_memory(Emulator::Ministack, Script::Fleet(recent())).await;
}
