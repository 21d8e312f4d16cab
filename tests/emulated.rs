//! The detector pipeline (`tokenwatch_core::pipeline::Detector`) with the real adapters over real HTTP:
//! `DynamoStore` and `SnsAlertSink` on local AWS emulators, each alert read back from an SQS queue
//! subscribed to the topic, as a subscriber receives it (SNS's envelope: `Subject`, `Message` = the
//! alert's `sqs` document, `MessageAttributes`), and held to the same expectations as the in-memory
//! twins of `detector.rs`.
//!
//! moto for sequential work; ministack for the storm, because moto 5.2.5's DynamoDB loses writes under
//! concurrent transactions (crates/aws/tests/adapters/concurrency.rs). Both need their endpoint variable
//! (`TOKENWATCH_MOTO_ENDPOINT`, `TOKENWATCH_MINISTACK_ENDPOINT`: `scripts/test.sh`, or
//! `scripts/emulators.sh install && scripts/emulators.sh start && source target/emulators/env`), and
//! fail without it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use serde_json::{Value, json};
use tokenwatch_aws::{DynamoStore, SdkOptions, SnsAlertSink, create_table, sdk_config};
use tokenwatch_core::classify::is_expiry;
use tokenwatch_core::notice::Notice;
use tokenwatch_core::pipeline::Detector;
use tokenwatch_core::ports::{AlertSink, PortError, StateStore};
use tokenwatch_core::stats::group_key;
use tokenwatch_core::time::{Epoch, parse_time};
use tokenwatch_render::sns::{MAX_SUBJECT, Message as Alert};
use tokenwatch_testkit::{Emulator, Received, Subscriber, samples_dir, scenarios, unique};

use crate::detector::{
    SECRET, check_counts, check_hostile, check_pages, event_time, feed_scenario, hostile_events, policy,
    scenario_events, storm, style, tally,
};

/// The alert as far as an SQS subscriber sees it: the subject, the message of its protocol (put back
/// under its key, as in the `MessageStructure=json` message the sink published) and the attributes.
pub fn alert_of(r: &Received) -> Alert {
    let e = &r.envelope;
    let attributes: BTreeMap<String, String> = e["MessageAttributes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v["Value"].as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let document = r.document();
    Alert {
        alert_id: document["alert_id"].as_str().unwrap_or_default().to_owned(),
        subject: e["Subject"].as_str().unwrap_or_default().to_owned(),
        message: json!({ "sqs": e["Message"] }).to_string(),
        attributes,
    }
}

/// What is wrong with the envelope itself: its type, topic, subject and attribute types.
pub fn envelope_problems(r: &Received, topic_arn: &str) -> Vec<String> {
    let e = &r.envelope;
    let mut problems = Vec::new();
    if e["Type"] != "Notification" || e["TopicArn"] != topic_arn {
        problems.push(format!("not a notification of {topic_arn}: {}", r.body));
    }
    let subject = e["Subject"].as_str().unwrap_or_default();
    if !subject.starts_with("[tokenwatch] ")
        || subject.len() > MAX_SUBJECT
        || !subject.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        problems.push(format!("bad subject {subject:?}"));
    }
    if !r.document().is_object() {
        problems.push(format!("Message is not the alert document: {}", e["Message"]));
    }
    match e["MessageAttributes"].as_object() {
        None => problems.push("no MessageAttributes".into()),
        Some(attributes) => {
            for name in [
                "alert_id",
                "kind",
                "severity",
                "verdict",
                "account",
                "principal",
                "credential_source",
            ] {
                if !attributes.contains_key(name) {
                    problems.push(format!("attribute {name} is missing"));
                }
            }
            for (name, v) in attributes {
                let value = v["Value"].as_str().unwrap_or_default();
                // The alert id is as long as uniqueness needs (at most 600, docs/contract.md "Alerts").
                let max = if name == "alert_id" { 600 } else { 256 };
                if v["Type"] != "String"
                    || value.len() > max
                    || !value.bytes().all(|b| (0x20..0x7f).contains(&b))
                {
                    problems.push(format!("attribute {name} is {v}"));
                }
            }
            if attributes.get("alert_id").map(|v| &v["Value"]) != Some(&r.document()["alert_id"]) {
                problems.push("the alert_id attribute is not the document's".into());
            }
        }
    }
    problems
}

/// A sink that counts what it sends: publish attempts (each one SNS `Publish`, not counting the SDK's
/// own retries of it) and publishes that succeeded.
pub struct Counted<A> {
    inner: A,
    attempts: AtomicUsize,
    published: AtomicUsize,
}

impl<A> Counted<A> {
    pub fn new(inner: A) -> Self {
        Counted {
            inner,
            attempts: AtomicUsize::new(0),
            published: AtomicUsize::new(0),
        }
    }

    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::Relaxed)
    }

    pub fn published(&self) -> usize {
        self.published.load(Ordering::Relaxed)
    }
}

impl<A: AlertSink> AlertSink for Counted<A> {
    async fn publish(&self, notice: &Notice) -> Result<(), PortError> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let result = self.inner.publish(notice).await;
        if result.is_ok() {
            self.published.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

/// A new state table (crates/aws's `create_table`) and a store on it.
async fn fresh_store(sdk: &SdkConfig) -> DynamoStore {
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let table = unique("tokenwatch-e2e-state");
    create_table(&client, &table).await.expect("table created");
    DynamoStore::from_client(client, table)
}

async fn delete_table(sdk: &SdkConfig, store: &DynamoStore) {
    let _ = aws_sdk_dynamodb::Client::new(sdk)
        .delete_table()
        .table_name(store.table())
        .send()
        .await;
}

fn kinds(received: &[Received]) -> BTreeMap<String, usize> {
    let alerts: Vec<Alert> = received.iter().map(alert_of).collect();
    tally(
        alerts
            .iter()
            .map(|a| a.attributes.get("kind").map_or("?", String::as_str)),
    )
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect()
}

/// How long an alert may take from `Publish` to the subscriber's queue (both emulators deliver while
/// `Publish` runs; this only bounds a slow machine).
const DELIVERY: Duration = Duration::from_secs(20);

#[tokio::test]
async fn every_sample_through_dynamodb_and_sns_pages_what_its_expected_findings_imply() {
    let sdk = Emulator::Moto.sdk().await;
    let policy = policy();
    let mut problems = Vec::new();
    for dir in scenarios() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let store = fresh_store(&sdk).await;
        let subscriber = Subscriber::with_new_topic(&sdk).await;
        let sink = Counted::new(SnsAlertSink::new(&sdk, &subscriber.topic_arn, style()));
        let detector = Detector {
            store: &store,
            sink: &sink,
            policy: &policy,
        };
        feed_scenario(&detector, &dir).await;

        let received = subscriber.receive(sink.published(), DELIVERY).await;
        if received.len() != sink.published() {
            problems.push(format!(
                "{name}: {} alerts published, {} received",
                sink.published(),
                received.len()
            ));
        }
        for r in &received {
            problems.extend(
                envelope_problems(r, &subscriber.topic_arn)
                    .into_iter()
                    .map(|p| format!("{name}: {p}")),
            );
        }
        let back: Vec<Alert> = received.iter().map(alert_of).collect();
        problems.extend(check_pages(&dir, &back));
        problems.extend(check_counts(&dir, &store).await);
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        if expected["groups"].as_array().unwrap().is_empty() && !received.is_empty() {
            problems.push(format!(
                "{name}: no group, yet {} messages: {:?}",
                received.len(),
                back.iter().map(|a| &a.subject).collect::<Vec<_>>()
            ));
        }
        eprintln!(
            "{name}: {} DynamoDB calls, {} published, received {:?}",
            store.calls(),
            sink.published(),
            kinds(&received)
        );
        subscriber.delete(&sdk).await;
        delete_table(&sdk, &store).await;
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_through_dynamodb_and_sns_is_one_page_with_an_exact_count() {
    const FAILURES: usize = 10_000;
    let sdk = Emulator::Ministack.sdk().await;
    let store = fresh_store(&sdk).await;
    let subscriber = Subscriber::with_new_topic(&sdk).await;
    let sink = Counted::new(SnsAlertSink::new(&sdk, &subscriber.topic_arn, style()));
    let policy = policy();
    let detector = Detector {
        store: &store,
        sink: &sink,
        policy: &policy,
    };
    let runtime = tokio::runtime::Handle::current();
    let started = Instant::now();
    tokio::task::block_in_place(|| storm(&detector, FAILURES, &runtime));
    let elapsed = started.elapsed();
    let (dynamodb, sns) = (store.calls(), sink.attempts());

    let key = group_key(
        &Some("123456789012".into()),
        &Some("ingest-role".into()),
        &Some("ingest".into()),
    );
    let state = store.load(&key).await.unwrap().unwrap();
    assert_eq!(state.stats.failures, FAILURES as u64);
    let received = subscriber.receive(1, DELIVERY).await;
    assert_eq!(
        kinds(&received),
        BTreeMap::from([("open".to_owned(), 1)]),
        "{:?}",
        received
            .iter()
            .map(|r| &r.envelope["Subject"])
            .collect::<Vec<_>>()
    );
    let r = &received[0];
    assert!(envelope_problems(r, &subscriber.topic_arn).is_empty());
    assert_eq!(r.document()["verdict"], "stale-cache");
    assert_eq!(
        r.envelope["MessageAttributes"]["principal"]["Value"],
        "arn:aws:iam::123456789012:role/ingest-role"
    );
    assert_eq!(sink.published(), 1);

    let deliveries = 2 * FAILURES;
    let batches = deliveries.div_ceil(10);
    let per_event = (dynamodb + sns) as f64 / deliveries as f64;
    println!(
        "storm on ministack: {FAILURES} failures delivered twice ({deliveries} events in {batches} batches of 10, \
         8 threads) in {:.1} s: {dynamodb} DynamoDB calls + {sns} SNS publishes = {:.3} calls per failure event \
         ({:.3} per distinct failure, {:.2} per batch)",
        elapsed.as_secs_f64(),
        per_event,
        (dynamodb + sns) as f64 / FAILURES as f64,
        (dynamodb + sns) as f64 / batches as f64,
    );
    assert!(
        per_event <= 1.2,
        "{per_event:.3} DynamoDB + SNS calls per failure event, over the 1.2 budget"
    );
    subscriber.delete(&sdk).await;
    delete_table(&sdk, &store).await;
}

/// Failure `n` of pod `pod` of a fleet whose sessions (`botocore-session-<epoch>`) were issued at `issued`.
fn fleet_event(pod: usize, n: usize, t: Epoch, issued: Epoch) -> Vec<u8> {
    let session = format!("botocore-session-{}", issued + pod as Epoch);
    json!({"version": "0", "id": format!("eb-{pod}-{n}"), "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3",
        "account": "123456789012", "region": "us-east-1",
        "detail": {"eventTime": tokenwatch_core::time::format_time(t), "eventSource": "s3.amazonaws.com",
            "eventName": "GetObject", "errorCode": "ExpiredToken", "eventID": format!("fleet-{pod:03}-{n}"),
            "recipientAccountId": "123456789012", "userAgent": "Boto3/1.34.0 md/Botocore#1.34.0 Botocore/1.34.0",
            "userIdentity": {"type": "AssumedRole", "principalId": format!("AROAEXAMPLE:{session}"),
                "accessKeyId": format!("ASIAFLEET{pod:011}"),
                "arn": format!("arn:aws:sts::123456789012:assumed-role/payments-api-irsa-role/{session}"),
                "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::123456789012:role/payments-api-irsa-role"},
                    "attributes": {"creationDate": tokenwatch_core::time::format_time(issued)}}}}})
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_40_pods_through_dynamodb_and_sns_is_one_page_and_one_resolved_notice() {
    use tokenwatch_core::assess::{DELIVERY_ALLOWANCE, REFRESH_WINDOW};
    const PODS: usize = 40;
    let sdk = Emulator::Ministack.sdk().await;
    let store = fresh_store(&sdk).await;
    let subscriber = Subscriber::with_new_topic(&sdk).await;
    let sink = Counted::new(SnsAlertSink::new(&sdk, &subscriber.topic_arn, style()));
    let policy = policy();
    let detector = Detector {
        store: &store,
        sink: &sink,
        policy: &policy,
    };
    // Recent times: ministack deletes items past their TTL.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as Epoch;
    let issued = now - 3 * 3600;
    // Each pod fails three times at the lease boundary, every event delivered twice, by four
    // invocations at once: the fleet's incident is written by members racing each other.
    let events: Vec<Vec<u8>> = (0..PODS)
        .flat_map(|pod| (0..3).map(move |n| (pod, n)))
        .flat_map(|(pod, n)| {
            let e = fleet_event(pod, n, issued + 3620 + pod as Epoch + 20 * n as Epoch, issued);
            [e.clone(), e]
        })
        .collect();
    let seen = issued + 3700;
    let runtime = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            for mine in events.chunks(events.len().div_ceil(4)) {
                let (detector, runtime) = (&detector, &runtime);
                s.spawn(move || {
                    runtime.block_on(async {
                        for chunk in mine.chunks(10) {
                            let mut pending: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
                            for _ in 0..20 {
                                let out = detector.process(&pending, seen).await;
                                if out.retry.is_empty() {
                                    break;
                                }
                                pending = out.retry.iter().map(|&i| pending[i]).collect();
                            }
                            assert!(pending.len() <= chunk.len());
                        }
                    })
                });
            }
        });
    });
    assert_eq!(sink.published(), 0, "held for the refresh window");
    detector
        .sweep(seen + REFRESH_WINDOW + DELIVERY_ALLOWANCE)
        .await
        .unwrap();
    let received = subscriber.receive(1, DELIVERY).await;
    assert_eq!(kinds(&received), BTreeMap::from([("open".to_owned(), 1)]));
    let doc = received[0].document();
    assert_eq!(doc["workload_sessions"], PODS);
    assert_eq!(doc["session"], "botocore-session-*");
    // The failures each member had when it joined or last paged (docs/rules.md): at least one each.
    let subject = received[0].envelope["Subject"].as_str().unwrap().to_owned();
    let failures: usize = subject
        .rsplit_once(&format!("({PODS} sessions, "))
        .and_then(|(_, tail)| tail.strip_suffix(" failures)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{subject}"));
    assert!((PODS..=3 * PODS).contains(&failures), "{subject}");
    // Quiet for the cool-down: forty incidents end, one notice says the fleet's did.
    detector.sweep(seen + 2 * 3600).await.unwrap();
    let received = subscriber.receive(1, DELIVERY).await;
    assert_eq!(kinds(&received), BTreeMap::from([("resolved".to_owned(), 1)]));
    assert_eq!(received[0].document()["workload_sessions"], PODS);
    assert_eq!(sink.published(), 2);
    subscriber.delete(&sdk).await;
    delete_table(&sdk, &store).await;
}

/// A loopback port nothing listens on (bound, then released): a connection to it is refused.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn sns_unreachable_on_the_first_attempt_pages_exactly_once_on_the_retry() {
    let sdk = Emulator::Moto.sdk().await;
    let store = fresh_store(&sdk).await;
    let subscriber = Subscriber::with_new_topic(&sdk).await;
    // The same topic, through a client whose endpoint refuses connections: the publish fails at the
    // network, after the SDK's own retries.
    let unreachable = sdk_config(&SdkOptions::emulator(format!(
        "http://127.0.0.1:{}",
        closed_port()
    )))
    .await;
    let broken = Counted::new(SnsAlertSink::new(&unreachable, &subscriber.topic_arn, style()));
    let working = Counted::new(SnsAlertSink::new(&sdk, &subscriber.topic_arn, style()));
    let policy = policy();
    let (failing_detector, detector) = (
        Detector {
            store: &store,
            sink: &broken,
            policy: &policy,
        },
        Detector {
            store: &store,
            sink: &working,
            policy: &policy,
        },
    );

    // 01 in one batch: its failures page at once (the last one is past the refresh window).
    let dir = samples_dir().join("01-assume-role-default-boto3");
    let events = scenario_events(&dir);
    let bytes: Vec<Vec<u8>> = events.iter().map(|e| e.to_string().into_bytes()).collect();
    let batch: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    let now = events.iter().map(event_time).max().unwrap() + 60;
    let failing: BTreeSet<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            is_expiry(
                e["detail"]["errorCode"].as_str(),
                e["detail"]["errorMessage"].as_str(),
            )
        })
        .map(|(i, _)| i)
        .collect();
    assert!(failing.len() >= 6, "{failing:?}");

    let first = failing_detector.process(&batch, now).await;
    assert_eq!(
        first.retry, failing,
        "every failure of the group is reported for retry, nothing else: {first:?}"
    );
    assert!(first.unreadable.is_empty());
    assert!(broken.attempts() >= 1 && broken.published() == 0);
    assert!(
        subscriber.receive(0, DELIVERY).await.is_empty(),
        "nothing reached the topic"
    );

    let second = detector.process(&batch, now).await;
    assert!(second.retry.is_empty(), "{second:?}");
    let received = subscriber.receive(1, DELIVERY).await;
    assert_eq!(kinds(&received), BTreeMap::from([("open".to_owned(), 1)]));
    assert!(envelope_problems(&received[0], &subscriber.topic_arn).is_empty());
    let back: Vec<Alert> = received.iter().map(alert_of).collect();
    let problems = check_pages(&dir, &back);
    assert!(problems.is_empty(), "{problems:?}");

    let third = detector.process(&batch, now).await;
    assert!(third.retry.is_empty(), "{third:?}");
    assert_eq!(working.published(), 1, "the third delivery pages nothing");
    assert!(subscriber.receive(0, DELIVERY).await.is_empty());
    let problems = check_counts(&dir, &store).await;
    assert!(problems.is_empty(), "{problems:?}");
    eprintln!(
        "fault: {} publish attempts to the closed port, then 1 page, then none; {} DynamoDB calls",
        broken.attempts(),
        store.calls()
    );
    subscriber.delete(&sdk).await;
    delete_table(&sdk, &store).await;
}

/// A loopback endpoint that accepts connections and never answers: an SNS that hangs.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

/// A sink that crashes the invocation in the middle of publishing (out of memory, a panic).
struct Crashing;

impl AlertSink for Crashing {
    async fn publish(&self, _: &Notice) -> Result<(), PortError> {
        panic!("the invocation dies between claiming the page and publishing it")
    }
}

/// How the first invocation dies between claiming the page and publishing it.
enum Death {
    /// Lambda's deadline cuts it off while SNS hangs (a tokio timeout stands in for the deadline).
    Deadline,
    /// It crashes.
    Crash,
}

/// Sample 01 (one stale cache that pages at once) through DynamoDB and SNS, with the first invocation
/// dying between claim and publish: SQS delivers the batch again after its visibility timeout, and that
/// retry pages exactly once; nothing pages while the claim's lease holds, nor after.
async fn killed_between_claim_and_publish(death: Death) {
    let sdk = Emulator::Moto.sdk().await;
    let store = std::sync::Arc::new(fresh_store(&sdk).await);
    let subscriber = Subscriber::with_new_topic(&sdk).await;
    let dir = samples_dir().join("01-assume-role-default-boto3");
    let events = scenario_events(&dir);
    let bytes: Vec<Vec<u8>> = events.iter().map(|e| e.to_string().into_bytes()).collect();
    let now = events.iter().map(event_time).max().unwrap() + 60;
    match death {
        Death::Deadline => {
            let hung = sdk_config(&SdkOptions::emulator(black_hole().await)).await;
            let sink = SnsAlertSink::new(&hung, &subscriber.topic_arn, style());
            let policy = policy();
            let detector = Detector {
                store: &*store,
                sink: &sink,
                policy: &policy,
            };
            let batch: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
            let cut = tokio::time::timeout(Duration::from_secs(2), detector.process(&batch, now)).await;
            assert!(cut.is_err(), "the deadline came first");
        }
        Death::Crash => {
            let (store, bytes) = (store.clone(), bytes.clone());
            let crashed = tokio::spawn(async move {
                let policy = policy();
                let detector = Detector {
                    store: &*store,
                    sink: &Crashing,
                    policy: &policy,
                };
                let batch: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
                detector.process(&batch, now).await
            })
            .await;
            assert!(crashed.unwrap_err().is_panic());
        }
    }
    let working = Counted::new(SnsAlertSink::new(&sdk, &subscriber.topic_arn, style()));
    let policy = policy();
    let detector = Detector {
        store: &*store,
        sink: &working,
        policy: &policy,
    };
    let batch: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    let early = detector.process(&batch, now + 1).await;
    assert!(early.retry.is_empty(), "{early:?}");
    assert_eq!(
        working.attempts(),
        0,
        "the claim holds while its claimer may be alive"
    );
    let retry = detector.process(&batch, now + 300).await;
    assert!(retry.retry.is_empty(), "{retry:?}");
    let received = subscriber.receive(1, DELIVERY).await;
    assert_eq!(kinds(&received), BTreeMap::from([("open".to_owned(), 1)]));
    assert!(envelope_problems(&received[0], &subscriber.topic_arn).is_empty());
    detector.process(&batch, now + 900).await;
    detector.sweep(now + 1200).await.unwrap();
    assert_eq!(working.published(), 1, "exactly once more");
    assert!(subscriber.receive(0, DELIVERY).await.is_empty());
    let problems = check_counts(&dir, &*store).await;
    assert!(problems.is_empty(), "{problems:?}");
    subscriber.delete(&sdk).await;
    delete_table(&sdk, &store).await;
}

#[tokio::test]
async fn a_detector_cut_off_by_its_deadline_while_sns_hangs_no_longer_loses_the_page() {
    killed_between_claim_and_publish(Death::Deadline).await;
}

#[tokio::test]
async fn a_detector_that_crashes_between_claim_and_publish_no_longer_loses_the_page() {
    killed_between_claim_and_publish(Death::Crash).await;
}

/// Every string in a JSON value, with where it is.
fn strings<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::String(s) => out.push((at, s)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                strings(item, format!("{at}[{i}]"), out);
            }
        }
        Value::Object(m) => {
            for (k, item) in m {
                strings(item, format!("{at}.{k}"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn hostile_values_arrive_well_formed_capped_and_without_secrets() {
    let sdk = Emulator::Moto.sdk().await;
    let store = fresh_store(&sdk).await;
    let subscriber = Subscriber::with_new_topic(&sdk).await;
    let sink = Counted::new(SnsAlertSink::new(&sdk, &subscriber.topic_arn, style()));
    let policy = policy();
    let detector = Detector {
        store: &store,
        sink: &sink,
        policy: &policy,
    };
    let events = hostile_events();
    let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
    let out = detector
        .process(&refs, parse_time("2026-11-02T09:20:00Z").unwrap())
        .await;
    assert!(out.retry.is_empty(), "{out:?}");
    assert_eq!(sink.published(), 3);

    let received = subscriber.receive(3, DELIVERY).await;
    let back: Vec<Alert> = received.iter().map(alert_of).collect();
    let mut problems = check_hostile(&back);
    for r in &received {
        problems.extend(envelope_problems(r, &subscriber.topic_arn));
        if r.body.contains(SECRET) {
            problems.push("a secret reached the subscriber".into());
        }
        let message = r.envelope["Message"].as_str().unwrap_or_default();
        if message.len() > 64 * 1024 {
            problems.push(format!("a message of {} bytes", message.len()));
        }
        let document = r.document();
        let mut texts = Vec::new();
        strings(&document, "document".into(), &mut texts);
        for (at, text) in texts {
            if text.chars().any(|c| c.is_control() && c != '\n') {
                problems.push(format!("{at}: control characters in {text:?}"));
            }
            if text.chars().count() > 4096 {
                problems.push(format!("{at}: {} characters", text.chars().count()));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    subscriber.delete(&sdk).await;
    delete_table(&sdk, &store).await;
}

/// Failure `n` of the session `job-<session>` of one role (each session its own group), at `t`.
fn interleaved_event(session: usize, n: usize, t: Epoch, issued: Epoch) -> Vec<u8> {
    let time = tokenwatch_core::time::format_time;
    json!({"version": "0", "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3", "account": "123456789012",
        "detail": {"eventTime": time(t), "eventSource": "s3.amazonaws.com", "eventName": "GetObject",
            "errorCode": "ExpiredToken", "eventID": format!("interleaved-{session}-{n}"),
            "recipientAccountId": "123456789012", "userAgent": "Boto3/1.34.0 Botocore/1.34.0",
            "userIdentity": {"type": "AssumedRole", "principalId": format!("AROAEXAMPLE:job-{session}"),
                "arn": format!("arn:aws:sts::123456789012:assumed-role/etl-role/job-{session}"),
                "accessKeyId": format!("ASIAINTERLEAVED{session:05}"),
                "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::123456789012:role/etl-role"},
                    "attributes": {"creationDate": time(issued)}}}}})
    .to_string()
    .into_bytes()
}

/// Issue 14, item 3: each batch held one failure of each of ten sessions, and each group was read on its
/// own (3.1 DynamoDB calls per failure event with 50 sessions). The batch's groups and sessions are now
/// read at once: what remains is a write per group and batch, and each incident's page.
#[tokio::test]
async fn fifty_interleaved_sessions_cost_at_most_1_2_dynamodb_calls_per_failure_event() {
    const SESSIONS: usize = 50;
    const EACH: usize = 40;
    let sdk = Emulator::Ministack.sdk().await;
    let store = fresh_store(&sdk).await;
    let subscriber = Subscriber::with_new_topic(&sdk).await;
    let sink = Counted::new(SnsAlertSink::new(&sdk, &subscriber.topic_arn, style()));
    let policy = policy();
    let detector = Detector {
        store: &store,
        sink: &sink,
        policy: &policy,
    };
    // Relative to the clock: ministack expires a group 30 days after its last failure.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as Epoch;
    let issued = now - 3 * 3600;
    let events: Vec<Vec<u8>> = (0..SESSIONS * EACH)
        .map(|i| {
            interleaved_event(
                i % SESSIONS,
                i / SESSIONS,
                issued + 3700 + (i / SESSIONS) as Epoch,
                issued,
            )
        })
        .collect();
    for batch in events.chunks(10) {
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        let out = detector.process(&refs, now).await;
        assert!(out.retry.is_empty() && out.faults.is_empty(), "{out:?}");
    }
    let calls = store.calls();
    let per_event = calls as f64 / events.len() as f64;
    println!(
        "{SESSIONS} sessions interleaved on ministack, {} failures in batches of 10: {calls} DynamoDB calls = \
         {per_event:.3} per failure event; {} pages",
        events.len(),
        sink.published()
    );
    for session in 0..SESSIONS {
        let key = group_key(
            &Some("123456789012".into()),
            &Some("etl-role".into()),
            &Some(format!("job-{session}")),
        );
        let state = store.load(&key).await.unwrap();
        assert_eq!(
            state.map(|s| s.stats.failures),
            Some(EACH as u64),
            "job-{session}"
        );
    }
    assert_eq!(sink.published(), SESSIONS, "one page per session's incident");
    assert!(
        per_event <= 1.2,
        "{per_event:.3} DynamoDB calls per failure event, over the 1.2 budget"
    );
    subscriber.delete(&sdk).await;
    delete_table(&sdk, &store).await;
}

// -----------------------------------------------------------------------------------------------------
// Issuing calls on their own path: EventBridge's issuance rule invokes the function with one event
// -----------------------------------------------------------------------------------------------------

/// An event the issuance rule sends the function (infra/template.yaml, `IssuanceRule`): a successful STS
/// call that issues a session. Everything else reaches it through the queue.
fn issuing_call(e: &Value) -> bool {
    let d = &e["detail"];
    d["eventSource"] == "sts.amazonaws.com"
        && tokenwatch_aws::lookup::ISSUING_CALLS.contains(&d["eventName"].as_str().unwrap_or(""))
        && d.get("errorCode").is_none()
}

/// Delivers `event` as the issuance rule does: the function invoked with the event itself.
async fn invoke_directly<S: StateStore, A: AlertSink>(
    detector: &Detector<'_, S, A>,
    event: &Value,
    now: Epoch,
) {
    tokenwatch_detector::handle(event.clone(), detector, &(), now)
        .await
        .unwrap_or_else(|e| panic!("the invocation failed: {e}"));
}

/// A scenario routed as the template routes it: each issuing call a direct invocation of its own, and
/// twice (EventBridge and Lambda deliver at least once), the failures in queue batches of 3.
async fn feed_split<S: StateStore, A: AlertSink>(detector: &Detector<'_, S, A>, dir: &std::path::Path) {
    let events = scenario_events(dir);
    let last = events.iter().map(event_time).max().unwrap_or_default();
    for chunk in events.chunks(3) {
        let now = chunk.iter().map(event_time).max().unwrap_or_default() + 60;
        let (issuances, others): (Vec<&Value>, Vec<&Value>) = chunk.iter().partition(|e| issuing_call(e));
        for e in issuances {
            invoke_directly(detector, e, now).await;
            invoke_directly(detector, e, now).await;
        }
        if others.is_empty() {
            continue;
        }
        let records: Vec<Value> = others
            .iter()
            .enumerate()
            .map(|(i, e)| json!({"messageId": format!("m{i}"), "eventSource": "aws:sqs", "body": e.to_string()}))
            .collect();
        let out = tokenwatch_detector::handle(json!({ "Records": records }), detector, &(), now)
            .await
            .expect("a queue batch");
        assert_eq!(out["batchItemFailures"], json!([]), "{}", dir.display());
    }
    detector.sweep(last + 700).await.unwrap();
}

#[tokio::test]
async fn every_sample_with_its_issuing_calls_invoked_one_by_one_pages_what_its_expected_findings_imply() {
    let sdk = Emulator::Moto.sdk().await;
    let policy = policy();
    let mut problems = Vec::new();
    let mut issuing_calls = 0;
    for dir in scenarios() {
        issuing_calls += scenario_events(&dir).iter().filter(|e| issuing_call(e)).count();
        let store = fresh_store(&sdk).await;
        let subscriber = Subscriber::with_new_topic(&sdk).await;
        let sink = Counted::new(SnsAlertSink::new(&sdk, &subscriber.topic_arn, style()));
        let detector = Detector {
            store: &store,
            sink: &sink,
            policy: &policy,
        };
        feed_split(&detector, &dir).await;
        let received = subscriber.receive(sink.published(), DELIVERY).await;
        let back: Vec<Alert> = received.iter().map(alert_of).collect();
        problems.extend(check_pages(&dir, &back));
        problems.extend(check_counts(&dir, &store).await);
        subscriber.delete(&sdk).await;
        delete_table(&sdk, &store).await;
    }
    assert!(
        issuing_calls >= 20,
        "the samples hold {issuing_calls} issuing calls"
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// An `AssumeRole` of `etl` issuing `key` at `t`, a session of 900 s, as EventBridge delivers it, with the
/// duration in its request or not; `caller_account` is the account whose trail logged it (a cross-account
/// call is logged in both).
fn assume_role(key: &str, t: Epoch, duration: Option<u64>, caller_account: &str) -> Value {
    let mut request = json!({"roleArn": "arn:aws:iam::123456789012:role/etl", "roleSessionName": "nightly"});
    if let Some(d) = duration {
        request["durationSeconds"] = json!(d);
    }
    json!({"version": "0", "id": format!("issue-{key}-{caller_account}"), "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.sts", "account": caller_account, "time": tokenwatch_core::time::format_time(t),
        "region": "us-east-1", "resources": [],
        "detail": {"eventVersion": "1.08", "eventTime": tokenwatch_core::time::format_time(t),
            "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "eventID": format!("issue-{key}"),
            "recipientAccountId": caller_account,
            "userIdentity": {"type": "AssumedRole", "accountId": caller_account,
                "arn": format!("arn:aws:sts::{caller_account}:assumed-role/ci/runner")},
            "requestParameters": request,
            "responseElements": {"credentials": {"accessKeyId": key,
                "expiration": tokenwatch_core::time::format_time(t + 900)}}}})
}

/// A failure of the session `key` at `t`, naming only its access key and its issue time.
fn failure_of(key: &str, id: &str, t: Epoch, issued: Epoch) -> Value {
    json!({"version": "0", "id": id, "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3",
        "account": "123456789012", "time": tokenwatch_core::time::format_time(t), "region": "us-east-1", "resources": [],
        "detail": {"eventVersion": "1.09", "eventTime": tokenwatch_core::time::format_time(t), "eventSource": "s3.amazonaws.com",
            "eventName": "GetObject", "errorCode": "ExpiredToken", "eventID": id, "recipientAccountId": "123456789012",
            "userAgent": "Boto3/1.34.0 Botocore/1.34.0",
            "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLE:nightly", "accessKeyId": key,
                "arn": "arn:aws:sts::123456789012:assumed-role/etl/nightly",
                "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::123456789012:role/etl"},
                    "attributes": {"creationDate": tokenwatch_core::time::format_time(issued)}}}}})
}

#[tokio::test]
async fn an_issuing_call_invoked_directly_gives_the_lease_its_session_s_failure_is_judged_at() {
    let sdk = Emulator::Moto.sdk().await;
    let policy = policy();
    let t0: Epoch = 1_793_606_400;
    let key = "ASIADIRECT0000000001";
    // 930 s after a 900 s session was issued: past its lease, at the boundary. Without the issuing call
    // the lease is AssumeRole's default hour, and the same failure is a clock skew.
    let failure = failure_of(key, "direct-1", t0 + 930, t0);
    let mut judged = Vec::new();
    for with_issuance in [true, false] {
        let store = fresh_store(&sdk).await;
        let sink = tokenwatch_core::memory::RecordingSink::default();
        let detector = Detector {
            store: &store,
            sink: &sink,
            policy: &policy,
        };
        if with_issuance {
            invoke_directly(
                &detector,
                &assume_role(key, t0, Some(900), "123456789012"),
                t0 + 1,
            )
            .await;
        }
        let out = detector
            .process(&[failure.to_string().as_bytes()], t0 + 940)
            .await;
        assert!(out.retry.is_empty(), "{out:?}");
        let group = group_key(
            &Some("123456789012".into()),
            &Some("arn:aws:iam::123456789012:role/etl".into()),
            &Some("nightly".into()),
        );
        let state = store.load(&group).await.unwrap().expect("the failure's group");
        let finding = tokenwatch_core::finding::judge_stored(&store, &state)
            .await
            .unwrap();
        judged.push((finding.verdict(), finding.lease_seconds()));
        delete_table(&sdk, &store).await;
    }
    use tokenwatch_core::model::Verdict;
    assert_eq!(
        judged[0],
        (Verdict::StaleCache, Some(900)),
        "judged at the 900 s lease's end"
    );
    assert_eq!(
        judged[1],
        (Verdict::ClockSkew, Some(3600)),
        "the control: no issuing call, the default lease"
    );
}

#[tokio::test]
async fn a_replayed_or_out_of_order_issuing_call_changes_nothing() {
    let sdk = Emulator::Moto.sdk().await;
    let policy = policy();
    let t0: Epoch = 1_793_606_400;
    let (older, newer) = ("ASIAORDER00000000001", "ASIAORDER00000000002");
    // The caller's copy of a cross-account call says nothing of the duration; the role account's does.
    let first = assume_role(older, t0, None, "111122223333");
    let first_copy = assume_role(older, t0, Some(900), "123456789012");
    let second = assume_role(newer, t0 + 850, Some(900), "123456789012");
    let group = group_key(
        &Some("123456789012".into()),
        &Some("arn:aws:iam::123456789012:role/etl".into()),
        &Some("nightly".into()),
    );
    let mut stored = Vec::new();
    let orders: [Vec<&Value>; 3] = [
        vec![&first, &first_copy, &second],
        // Newest first, the copies the other way round, each delivered again.
        vec![&second, &first_copy, &first, &second, &first_copy, &first],
        vec![&first_copy, &second, &first, &first],
    ];
    for order in orders {
        let store = fresh_store(&sdk).await;
        let sink = tokenwatch_core::memory::RecordingSink::default();
        let detector = Detector {
            store: &store,
            sink: &sink,
            policy: &policy,
        };
        for e in order {
            invoke_directly(&detector, e, t0 + 900).await;
        }
        let state = store.load(&group).await.unwrap().expect("the group");
        let sessions = (
            store.session(older).await.unwrap(),
            store.session(newer).await.unwrap(),
        );
        // Read again by a store that kept nothing in memory.
        let fresh = DynamoStore::from_client(aws_sdk_dynamodb::Client::new(&sdk), store.table());
        assert_eq!(fresh.session(older).await.unwrap(), sessions.0);
        stored.push((state.issued_times, state.issued_keys, sessions));
        delete_table(&sdk, &store).await;
    }
    let (times, keys, (a, b)) = &stored[0];
    assert_eq!(times.iter().copied().collect::<Vec<_>>(), [t0, t0 + 850]);
    assert_eq!(keys.get(&t0).map(String::as_str), Some(older));
    let a = a.as_ref().expect("the older session");
    assert_eq!(
        (a.issued_at, a.duration_seconds),
        (t0, Some(900)),
        "the copies combined"
    );
    assert!(b.is_some());
    assert_eq!(stored[1], stored[0], "another order, replays");
    assert_eq!(stored[2], stored[0], "another order, a replay");
}
