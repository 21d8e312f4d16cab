//! From the moment a page's evidence is decisive to SNS accepting the page, with the real adapters on
//! ministack, for four shapes of incident:
//!
//! - (a) a stale cache that keeps failing: decisive when a failure later than the lease boundary arrives
//!   (it is sent to the queue);
//! - (b) one failure then silence: decisive when its wait for a renewal ends (a held page, released by a
//!   re-check message with `DelaySeconds`);
//! - (c) a storm of 10,000 failures of 20 sessions that keep failing, sent as fast as SQS takes them:
//!   each session's page is decisive when its first failure past the boundary is sent;
//! - (d) fleets of 50 pods that each failed once at the boundary and went quiet: one page per fleet,
//!   decisive when the first pod's wait ends.
//!
//! Every event goes through a real SQS queue. Two pollers stand in for the Lambda event-source mapping
//! as the template configures it: batches of up to 100 messages, a 5 s batching window, two at once
//! (`MaximumConcurrency: 2`).
//! Failures are dated against the wall clock so that the waits end a few seconds into the run.
//!
//!     scripts/emulators.sh start && source target/emulators/env && cargo bench -p tokenwatch-detector --bench latency

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use serde_json::json;
use tokenwatch_aws::{DynamoStore, SdkOptions, SnsAlertSink, SqsRecheckQueue, create_table, sdk_config};
use tokenwatch_core::assess::{DELIVERY_ALLOWANCE, EDGE, REFRESH_WINDOW};
use tokenwatch_core::incident::Policy;
use tokenwatch_core::notice::Notice;
use tokenwatch_core::pipeline::{Detector, schedule_rechecks};
use tokenwatch_core::ports::{AlertSink, PortError};
use tokenwatch_core::time::format_time;

/// The event-source mapping of infra/template.yaml.
const BATCH_SIZE: usize = 100;
const BATCHING_WINDOW: Duration = Duration::from_secs(5);
/// The lease of every session here (the default of AssumeRole).
const LEASE: i64 = 3600;

fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// SNS, and when it accepted each page, by the role of the paged group (each incident here has a role of
/// its own, a fleet too).
struct Timed<'a> {
    sink: &'a SnsAlertSink,
    accepted: Mutex<Vec<(String, f64)>>,
    kinds: Mutex<BTreeMap<String, usize>>,
}

impl AlertSink for Timed<'_> {
    async fn publish(&self, notice: &Notice) -> Result<(), PortError> {
        self.sink.publish(notice).await?;
        let role = notice
            .incident()
            .and_then(|n| n.finding.key.principal.clone())
            .unwrap_or_default();
        self.accepted.lock().unwrap().push((role, wall()));
        if let Some(n) = notice.incident() {
            let kind = format!(
                "{} at {}{}",
                n.kind.as_str(),
                n.severity,
                if n.fleet.is_some() { " (fleet)" } else { "" }
            );
            if std::env::var_os("LATENCY_DEBUG").is_some() {
                eprintln!("{}", notice.alert_id());
            }
            *self.kinds.lock().unwrap().entry(kind).or_default() += 1;
        }
        Ok(())
    }
}

/// A failure of `role`'s session `session` (issued at `issued`) at `t`.
fn failure(role: &str, session: &str, issued: i64, t: i64, n: usize) -> String {
    json!({"version": "0", "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3", "account": "123456789012",
        "detail": {"eventVersion": "1.09", "eventTime": format_time(t), "eventSource": "s3.amazonaws.com",
            "eventName": "GetObject", "errorCode": "ExpiredToken", "eventID": format!("{role}-{session}-{n}"),
            "recipientAccountId": "123456789012", "userAgent": "Boto3/1.34.0 Botocore/1.34.0",
            "userIdentity": {"type": "AssumedRole", "principalId": format!("AROAEXAMPLE:{session}"),
                "arn": format!("arn:aws:sts::123456789012:assumed-role/{role}/{session}"),
                "accessKeyId": format!("ASIA{:016X}", fnv(&format!("{role}/{session}"))),
                "sessionContext": {"sessionIssuer": {"arn": format!("arn:aws:iam::123456789012:role/{role}")},
                    "attributes": {"creationDate": format_time(issued)}}}}})
    .to_string()
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Five characters of the alphabet Kubernetes draws pod-name suffixes from (no vowels).
fn pod_suffix(mut x: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "nothing measured");
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

struct Rig<'a> {
    sqs: aws_sdk_sqs::Client,
    url: String,
    detector: Detector<'a, DynamoStore, Timed<'a>>,
    rechecks: SqsRecheckQueue,
    sink: &'a Timed<'a>,
}

impl Rig<'_> {
    /// Sends `bodies` in batches of 10 and gives back when SQS took each.
    async fn send(&self, bodies: &[String]) -> Vec<f64> {
        let mut sent = Vec::with_capacity(bodies.len());
        for chunk in bodies.chunks(10) {
            let entries: Vec<SendMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(b)
                        .build()
                        .unwrap()
                })
                .collect();
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("send");
            assert!(out.failed().is_empty(), "{:?}", out.failed());
            let at = wall();
            sent.extend(std::iter::repeat_n(at, chunk.len()));
        }
        sent
    }

    /// One poller of the event-source mapping: a batch is handed over when it holds `BATCH_SIZE`
    /// messages or its first message has waited `BATCHING_WINDOW`.
    async fn poll(&self, until: &Mutex<bool>) {
        while !*until.lock().unwrap() {
            let mut batch = Vec::new();
            let mut opened: Option<Instant> = None;
            while batch.len() < BATCH_SIZE && opened.is_none_or(|o| o.elapsed() < BATCHING_WINDOW) {
                if *until.lock().unwrap() {
                    break;
                }
                let got = self
                    .sqs
                    .receive_message()
                    .queue_url(&self.url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .visibility_timeout(60)
                    .send()
                    .await
                    .expect("receive");
                if !got.messages().is_empty() && opened.is_none() {
                    opened = Some(Instant::now());
                }
                batch.extend(got.messages().iter().cloned());
            }
            if batch.is_empty() {
                continue;
            }
            let bodies: Vec<&[u8]> = batch.iter().map(|m| m.body().unwrap_or("").as_bytes()).collect();
            let now = wall() as i64;
            let mut out = self.detector.process(&bodies, now).await;
            assert!(out.retry.is_empty(), "{:?}", out.faults);
            assert!(
                schedule_rechecks(&self.rechecks, &mut out.metrics, now)
                    .await
                    .is_empty()
            );
            for chunk in batch.chunks(10) {
                let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(m.receipt_handle().unwrap_or(""))
                            .build()
                            .unwrap()
                    })
                    .collect();
                self.sqs
                    .delete_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .expect("delete");
            }
        }
    }

    /// Runs the pollers until a page has come for every role of `decisive` (or `limit` has passed), and
    /// prints the latency from each role's decisive moment to its first page, and the pages per role.
    async fn measure(&self, name: &str, decisive: BTreeMap<String, f64>, limit: Duration) {
        let done = Mutex::new(false);
        let watch = async {
            let deadline = Instant::now() + limit;
            loop {
                let paged = {
                    let accepted = self.sink.accepted.lock().unwrap();
                    decisive
                        .keys()
                        .all(|role| accepted.iter().any(|(r, _)| r == role))
                };
                if paged || Instant::now() > deadline {
                    // The last page of a fleet may still be deciding: give the pollers a batch more.
                    tokio::time::sleep(BATCHING_WINDOW + Duration::from_secs(1)).await;
                    *done.lock().unwrap() = true;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::join!(watch, self.poll(&done), self.poll(&done));
        let accepted = std::mem::take(&mut *self.sink.accepted.lock().unwrap());
        let kinds = std::mem::take(&mut *self.sink.kinds.lock().unwrap());
        let mut latency = Vec::new();
        let mut pages = 0;
        for (role, at) in &decisive {
            let mine: Vec<f64> = accepted
                .iter()
                .filter(|(r, _)| r == role)
                .map(|(_, t)| *t)
                .collect();
            pages += mine.len();
            let first = mine.iter().copied().fold(f64::INFINITY, f64::min);
            assert!(first.is_finite(), "{name}: no page for {role} within {limit:?}");
            latency.push((first - at).max(0.0));
        }
        latency.sort_by(f64::total_cmp);
        println!(
            "{name}: evidence decisive -> SNS accepted: p50 {:.2} s, p99 {:.2} s, max {:.2} s; {} incidents, {pages} notices {kinds:?}",
            percentile(&latency, 0.5),
            percentile(&latency, 0.99),
            latency.last().copied().unwrap_or_default(),
            decisive.len(),
        );
    }
}

#[tokio::main]
async fn main() {
    let endpoint = std::env::var("TOKENWATCH_MINISTACK_ENDPOINT").expect("source target/emulators/env");
    let sdk = sdk_config(&SdkOptions::emulator(&endpoint)).await;
    let name = format!("latency-{}", std::process::id());
    create_table(&aws_sdk_dynamodb::Client::new(&sdk), &name)
        .await
        .expect("table");
    let topic = aws_sdk_sns::Client::new(&sdk)
        .create_topic()
        .name(&name)
        .send()
        .await
        .expect("topic");
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = sqs.create_queue().queue_name(&name).send().await.expect("queue");
    let url = queue.queue_url().expect("url").to_owned();
    let store = DynamoStore::new(&sdk, &name);
    let sns = SnsAlertSink::new(&sdk, topic.topic_arn().expect("arn"), Default::default());
    let sink = Timed {
        sink: &sns,
        accepted: Default::default(),
        kinds: Default::default(),
    };
    let policy = Policy::default();
    let rig = Rig {
        sqs: sqs.clone(),
        url: url.clone(),
        detector: Detector {
            store: &store,
            sink: &sink,
            policy: &policy,
        },
        rechecks: SqsRecheckQueue::new(&sdk, &url),
        sink: &sink,
    };
    let wait = REFRESH_WINDOW + DELIVERY_ALLOWANCE;
    let scenarios: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a.len() == 1 && "abcd".contains(a.as_str()))
        .collect();
    let run = |s: &str| scenarios.is_empty() || scenarios.iter().any(|x| x == s);

    if run("a") {
        // (a) 40 sessions fail at the boundary, then each again 2 minutes past it, sent one by one.
        let now = wall() as i64;
        let roles: Vec<String> = (0..40).map(|g| format!("keeps-failing-{g}")).collect();
        let issued = now - LEASE - 150;
        let boundary: Vec<String> = roles
            .iter()
            .map(|r| failure(r, "job", issued, issued + LEASE, 0))
            .collect();
        rig.send(&boundary).await;
        let mut decisive = BTreeMap::new();
        for r in &roles {
            let past = failure(r, "job", issued, issued + LEASE + EDGE + 20, 1);
            let at = rig.send(&[past]).await[0];
            decisive.insert(r.clone(), at);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        rig.measure(
            "(a) a stale cache that keeps failing, 40 sessions",
            decisive,
            Duration::from_secs(120),
        )
        .await;
    }

    if run("b") {
        // (b) 40 sessions fail once at the boundary; their waits end 3 to 12 s into the run.
        let start = wall() as i64;
        let mut decisive = BTreeMap::new();
        let mut bodies = Vec::new();
        for g in 0..40 {
            let role = format!("one-failure-{g}");
            let ends = start + 3 + (g % 10);
            let first = ends - wait;
            bodies.push(failure(&role, "job", first - LEASE, first, 0));
            decisive.insert(role, ends as f64);
        }
        rig.send(&bodies).await;
        rig.measure(
            "(b) one failure then silence, 40 sessions",
            decisive,
            Duration::from_secs(120),
        )
        .await;
    }

    if run("c") {
        // (c) 20 sessions, 500 failures each, one every 0.4 s of event time from the boundary on (the
        // 301st is the first past it): sent interleaved, as fast as SQS takes them.
        let now = wall() as i64;
        let issued = now - LEASE - 200;
        let roles: Vec<String> = (0..20).map(|g| format!("storm-{g}")).collect();
        let mut bodies = Vec::new();
        let mut first_past: BTreeMap<String, usize> = BTreeMap::new();
        for n in 0..500 {
            let t = issued + LEASE + n as i64 * 2 / 5;
            for r in &roles {
                if t > issued + LEASE + EDGE {
                    first_past.entry(r.clone()).or_insert(bodies.len());
                }
                bodies.push(failure(r, "job", issued, t, n));
            }
        }
        let sent = rig.send(&bodies).await;
        let decisive = first_past.into_iter().map(|(r, i)| (r, sent[i])).collect();
        rig.measure(
            "(c) a storm of 10,000 failures, 20 sessions",
            decisive,
            Duration::from_secs(600),
        )
        .await;
    }

    if run("d") {
        // (d) 10 fleets of 50 pods, each pod failing once at the boundary; the first pod's wait of each
        // fleet ends 3 to 12 s into the run, the others within the next 10 s.
        let start = wall() as i64;
        let mut decisive = BTreeMap::new();
        let mut bodies = Vec::new();
        for f in 0..10 {
            let role = format!("fleet-{f}");
            let ends = start + 3 + f;
            for p in 0..50 {
                let first = ends - wait + p % 10;
                let pod = format!("payments-api-7d9f8b6c4-{}", pod_suffix(fnv(&format!("{f}-{p}"))));
                bodies.push(failure(&role, &pod, first - LEASE, first, 0));
            }
            decisive.insert(role, ends as f64);
        }
        rig.send(&bodies).await;
        rig.measure(
            "(d) fleets of 50 pods, 10 fleets",
            decisive,
            Duration::from_secs(120),
        )
        .await;
    }
}
