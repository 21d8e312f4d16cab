//! `LookupEvents` against aws-smithy-mocks (moto answers LookupEvents with 500 NotImplemented): pages
//! followed by NextToken, throttling retried after a backoff, never more than 2 requests in any second,
//! and every `CloudTrailEvent` in the engine. Time is a manual clock: sleeps return at once and move it,
//! so the tests take no real time and the request times they check are exact.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_cloudtrail::operation::lookup_events::{LookupEventsInput, LookupEventsOutput};
use aws_sdk_cloudtrail::types::{Event, LookupAttributeKey};
use aws_smithy_async::rt::sleep::{AsyncSleep, Sleep};
use aws_smithy_async::time::TimeSource;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use tokenwatch_aws::Blocked;
use tokenwatch_aws::lookup::{Lookup, LookupEvents, MAX_ATTEMPTS};
use tokenwatch_core::{Analyzer, Verdict};

/// Time that moves only when slept through.
#[derive(Clone, Debug)]
struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    fn new() -> Self {
        ManualClock(Arc::new(Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_600_000),
        )))
    }

    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

impl AsyncSleep for ManualClock {
    fn sleep(&self, duration: Duration) -> Sleep {
        *self.0.lock().unwrap() += duration;
        Sleep::new(std::future::ready(()))
    }
}

impl TimeSource for ManualClock {
    fn now(&self) -> SystemTime {
        ManualClock::now(self)
    }
}

/// When each request was sent, by the manual clock.
#[derive(Clone, Default)]
struct Sent(Arc<Mutex<Vec<SystemTime>>>);

impl Sent {
    fn gaps(&self) -> Vec<Duration> {
        let times = self.0.lock().unwrap();
        times
            .windows(2)
            .map(|w| w[1].duration_since(w[0]).unwrap())
            .collect()
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// No one-second window `[t, t + 1 s)` holds more than two requests.
    fn assert_at_most_two_per_second(&self) {
        let times = self.0.lock().unwrap();
        for w in times.windows(3) {
            let span = w[2].duration_since(w[0]).unwrap();
            assert!(span >= Duration::from_secs(1), "3 requests within {span:?}");
        }
    }
}

/// A rule for one page that records when its request was sent and checks what it asked for.
fn page(
    clock: &ManualClock,
    sent: &Sent,
    expect_token: Option<&'static str>,
    check: impl Fn(&LookupEventsInput) -> bool + Send + Sync + 'static,
    events: Vec<String>,
    next: Option<&'static str>,
) -> Rule {
    let (clock, sent) = (clock.clone(), sent.clone());
    mock!(aws_sdk_cloudtrail::Client::lookup_events)
        .match_requests(move |r| {
            sent.0.lock().unwrap().push(clock.now());
            assert_eq!(r.next_token(), expect_token, "NextToken of the request");
            assert_eq!(r.max_results(), Some(50));
            check(r)
        })
        .then_output(move || {
            LookupEventsOutput::builder()
                .set_events(Some(
                    events
                        .iter()
                        .map(|e| Event::builder().cloud_trail_event(e).build())
                        .collect(),
                ))
                .set_next_token(next.map(str::to_owned))
                .build()
        })
}

fn lookups(rules: &[&Rule], clock: &ManualClock) -> LookupEvents {
    let client = mock_client!(aws_sdk_cloudtrail, RuleMode::Sequential, rules);
    LookupEvents::from_client(client).with_clock(clock.clone(), clock.clone())
}

fn failure(id: &str, time: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.08","eventTime":"{time}","eventSource":"s3.amazonaws.com","eventName":"ListBuckets",
        "errorCode":"ExpiredToken","errorMessage":"The provided token has expired.","eventID":"{id}",
        "recipientAccountId":"123456789012","userAgent":"Boto3/1.34.0 Botocore/1.34.0",
        "userIdentity":{{"type":"AssumedRole","principalId":"AROAEXAMPLEEXAMPLE123:nightly","accessKeyId":"ASIALOOKUPEXAMPLE001",
          "arn":"arn:aws:sts::123456789012:assumed-role/lookup-role/nightly"}}}}"#
    )
}

const ISSUE: &str = r#"{"eventVersion":"1.08","eventTime":"2026-11-02T08:00:00Z","eventSource":"sts.amazonaws.com",
    "eventName":"AssumeRole","eventID":"lookup-issue-1","recipientAccountId":"123456789012",
    "userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/ci"},
    "requestParameters":{"roleArn":"arn:aws:iam::123456789012:role/lookup-role","roleSessionName":"nightly","durationSeconds":900},
    "responseElements":{"credentials":{"accessKeyId":"ASIALOOKUPEXAMPLE001","expiration":"Nov 2, 2026, 8:15:00 AM"}}}"#;

const START: i64 = 1_793_577_600; // 2026-11-02T00:00:00Z
const END: i64 = 1_793_664_000; // 2026-11-03T00:00:00Z

fn throttled() -> (u16, Option<String>) {
    (
        400,
        Some(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_owned()),
    )
}

#[tokio::test]
async fn pages_are_followed_and_every_event_reaches_the_engine() {
    let (clock, sent) = (ManualClock::new(), Sent::default());
    let by_key = |r: &LookupEventsInput| {
        let a = &r.lookup_attributes()[0];
        a.attribute_key() == &LookupAttributeKey::AccessKeyId
            && a.attribute_value() == "ASIALOOKUPEXAMPLE001"
            && r.start_time().map(|t| t.secs()) == Some(START)
            && r.end_time().map(|t| t.secs()) == Some(END)
    };
    // Newest first, as LookupEvents returns them; the issuing call on the last page.
    let p1 = page(
        &clock,
        &sent,
        None,
        by_key,
        vec![
            failure("lk-3", "2026-11-02T08:20:00Z"),
            failure("lk-2", "2026-11-02T08:16:00Z"),
        ],
        Some("token-1"),
    );
    let p2 = page(
        &clock,
        &sent,
        Some("token-1"),
        by_key,
        vec![
            failure("lk-1", "2026-11-02T08:15:09Z"),
            failure("lk-1", "2026-11-02T08:15:09Z"),
        ],
        Some("token-2"),
    );
    let p3 = page(
        &clock,
        &sent,
        Some("token-2"),
        by_key,
        vec![ISSUE.to_owned()],
        None,
    );
    let lookups = lookups(&[&p1, &p2, &p3], &clock);

    let mut analyzer = Analyzer::default();
    let mut pages = Vec::new();
    let pulled = lookups
        .pull_into(
            &mut analyzer,
            &Lookup::AccessKey("ASIALOOKUPEXAMPLE001".into()),
            START,
            END,
            |p| pages.push(p.events),
        )
        .await
        .unwrap();
    assert_eq!((pulled.requests, pulled.retried, pulled.events), (3, 0, 5));
    assert_eq!(pages, [2, 4, 5]);

    let report = analyzer.report();
    assert_eq!(
        (report.records, report.failures),
        (5, 3),
        "lk-1 came twice and counts once"
    );
    let g = &report.findings[0];
    assert_eq!(g.verdict(), Verdict::StaleCache);
    assert_eq!(
        (g.lease_seconds(), g.assessment.age_at_first_failure),
        (Some(900), Some(909))
    );
    sent.assert_at_most_two_per_second();
}

#[tokio::test]
async fn a_throttled_request_is_retried_after_a_backoff() {
    let (clock, sent) = (ManualClock::new(), Sent::default());
    let (status, body) = throttled();
    let record = {
        let (clock, sent) = (clock.clone(), sent.clone());
        move |_: &LookupEventsInput| {
            sent.0.lock().unwrap().push(clock.now());
            true
        }
    };
    let first = mock!(aws_sdk_cloudtrail::Client::lookup_events)
        .match_requests(record.clone())
        .sequence()
        .http_status(status, body)
        .build();
    let then = mock!(aws_sdk_cloudtrail::Client::lookup_events)
        .match_requests(record)
        .then_output(|| {
            LookupEventsOutput::builder()
                .events(Event::builder().cloud_trail_event(ISSUE).build())
                .build()
        });
    let lookups = lookups(&[&first, &then], &clock);
    let mut analyzer = Analyzer::default();
    let pulled = lookups
        .pull_into(
            &mut analyzer,
            &Lookup::EventName("AssumeRole".into()),
            START,
            END,
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!((pulled.requests, pulled.retried, pulled.events), (2, 1, 1));
    let gap = sent.gaps()[0];
    assert!(
        gap >= Duration::from_millis(500) && gap <= Duration::from_secs(1),
        "first backoff is 0.5-1 s, was {gap:?}"
    );
    assert_eq!(analyzer.records(), 1);
}

#[tokio::test]
async fn throttling_that_does_not_end_gives_up_with_the_lookup_named() {
    let (clock, sent) = (ManualClock::new(), Sent::default());
    let (status, body) = throttled();
    let ok = page(
        &clock,
        &sent,
        None,
        |_| true,
        vec![failure("gu-1", "2026-11-02T08:20:00Z")],
        Some("token-1"),
    );
    let throttle = {
        let (clock, sent) = (clock.clone(), sent.clone());
        mock!(aws_sdk_cloudtrail::Client::lookup_events)
            .match_requests(move |_| {
                sent.0.lock().unwrap().push(clock.now());
                true
            })
            .sequence()
            .http_status(status, body)
            .times(MAX_ATTEMPTS as usize)
            .build()
    };
    let lookups = lookups(&[&ok, &throttle], &clock);
    let mut analyzer = Analyzer::default();
    let err = lookups
        .pull_into(&mut analyzer, &Lookup::Everything, START, END, |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.pulled.requests, 1 + MAX_ATTEMPTS);
    assert_eq!(err.pulled.events, 1, "the first page's event stays in the engine");
    assert!(
        err.lookup.starts_with("every event in 2026-11-02T00:00:00Z"),
        "{}",
        err.lookup
    );
    assert!(err.reason.contains("ThrottlingException"), "{}", err.reason);
    assert!(
        err.reason
            .contains(&format!("gave up after {MAX_ATTEMPTS} attempts")),
        "{}",
        err.reason
    );
    // Backoffs grow (equal jitter: each at least half its doubling ceiling, capped at 30 s).
    let gaps = sent.gaps();
    assert!(
        gaps[1..]
            .iter()
            .zip([0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0])
            .all(|(g, min)| g.as_secs_f64() >= min),
        "{gaps:?}"
    );
    sent.assert_at_most_two_per_second();
    assert_eq!(analyzer.report().failures, 1);
}

#[tokio::test]
async fn a_refused_lookup_fails_at_once() {
    let clock = ManualClock::new();
    let refused = mock!(aws_sdk_cloudtrail::Client::lookup_events)
        .sequence()
        .http_status(
            400,
            Some(
                r#"{"__type":"InvalidTimeRangeException","message":"Start time must be before end time"}"#
                    .into(),
            ),
        )
        .build();
    let lookups = lookups(&[&refused], &clock);
    let err = lookups
        .pull_into(&mut Analyzer::default(), &Lookup::Everything, END, START, |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.pulled.requests, 1);
    assert!(err.reason.contains("InvalidTimeRangeException"), "{}", err.reason);
}

#[tokio::test]
async fn a_missing_permission_is_named_with_its_action_and_never_retried() {
    let clock = ManualClock::new();
    let denied = mock!(aws_sdk_cloudtrail::Client::lookup_events)
        .sequence()
        .http_status(
            400,
            Some(
                r#"{"__type":"AccessDeniedException","message":"User: arn:aws:sts::123456789012:assumed-role/ro/me is not authorized to perform: cloudtrail:LookupEvents because no identity-based policy allows the cloudtrail:LookupEvents action"}"#
                    .into(),
            ),
        )
        .build();
    let lookups = lookups(&[&denied], &clock);
    let err = lookups
        .pull_into(&mut Analyzer::default(), &Lookup::Everything, START, END, |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.pulled.requests, 1, "a refusal is not retried");
    match err.blocked {
        Some(Blocked::AccessDenied { action, .. }) => assert_eq!(action, "cloudtrail:LookupEvents"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn expired_credentials_are_said_once_with_how_to_get_fresh_ones() {
    let clock = ManualClock::new();
    let expired = mock!(aws_sdk_cloudtrail::Client::lookup_events)
        .sequence()
        .http_status(
            400,
            Some(r#"{"__type":"ExpiredTokenException","message":"The security token included in the request is expired"}"#.into()),
        )
        .build();
    let lookups = lookups(&[&expired], &clock);
    let err = lookups
        .pull_into(&mut Analyzer::default(), &Lookup::Everything, START, END, |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.pulled.requests, 1, "not retried");
    let blocked = err.blocked.expect("only the user can fix it");
    assert_eq!(blocked, Blocked::ExpiredCredentials);
    let said = blocked.to_string();
    assert_eq!(said.lines().count(), 2, "{said}");
    assert!(
        said.contains("expired") && said.contains("aws sso login"),
        "{said}"
    );
}

#[tokio::test]
async fn requests_never_exceed_two_per_second_across_pages_lookups_and_retries() {
    let (clock, sent) = (ManualClock::new(), Sent::default());
    let mut rules = Vec::new();
    // Lookup 1: ten pages. Lookup 2: a throttle, then two pages.
    for i in 0..10 {
        let token = [
            None,
            Some("t1"),
            Some("t2"),
            Some("t3"),
            Some("t4"),
            Some("t5"),
            Some("t6"),
            Some("t7"),
            Some("t8"),
            Some("t9"),
        ];
        let next = if i < 9 { token[i + 1] } else { None };
        rules.push(page(
            &clock,
            &sent,
            token[i],
            |_| true,
            vec![failure(&format!("rl-{i}"), "2026-11-02T08:20:00Z")],
            next,
        ));
    }
    let (status, body) = throttled();
    let recorder = {
        let (clock, sent) = (clock.clone(), sent.clone());
        move |_: &LookupEventsInput| {
            sent.0.lock().unwrap().push(clock.now());
            true
        }
    };
    rules.push(
        mock!(aws_sdk_cloudtrail::Client::lookup_events)
            .match_requests(recorder)
            .sequence()
            .http_status(status, body)
            .build(),
    );
    rules.push(page(
        &clock,
        &sent,
        None,
        |_| true,
        vec![ISSUE.to_owned()],
        Some("u1"),
    ));
    rules.push(page(&clock, &sent, Some("u1"), |_| true, vec![], None));
    let lookups = lookups(&rules.iter().collect::<Vec<_>>(), &clock);

    let started = clock.now();
    let mut analyzer = Analyzer::default();
    let first = lookups
        .pull_into(&mut analyzer, &Lookup::Everything, START, END, |_| {})
        .await
        .unwrap();
    let second = lookups
        .pull_into(
            &mut analyzer,
            &Lookup::EventName("AssumeRole".into()),
            START,
            END,
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!((first.requests, second.requests, second.retried), (10, 3, 1));
    assert_eq!(sent.count(), 13);
    sent.assert_at_most_two_per_second();
    assert!(
        sent.gaps().iter().all(|g| *g >= Duration::from_millis(500)),
        "{:?}",
        sent.gaps()
    );
    // ...and no slower than needed: ten pages back to back take 4.5 s.
    let ten = sent.0.lock().unwrap()[9].duration_since(started).unwrap();
    assert_eq!(ten, Duration::from_millis(4_500));
    assert_eq!(analyzer.report().failures, 10);
}
