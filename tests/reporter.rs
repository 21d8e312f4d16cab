//! The reporter's handler (`tokenwatch_reporter::handle`) over the real adapters on moto: the detector
//! fills a DynamoDB state table from every scenario sample and pages through SNS; two SQS queues are
//! subscribed to the topic with filter policies, as a pager and a chat channel would be. The scheduled
//! digest must reach the digest subscription only, once, listing the groups of its window, and a direct
//! query must answer only the groups it asks for.
//!
//! Needs `TOKENWATCH_MOTO_ENDPOINT` (`scripts/emulators.sh start`, then `source target/emulators/env`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use aws_config::SdkConfig;
use serde_json::{Value, json};
use tokenwatch_aws::{DynamoStore, SnsAlertSink, create_table};
use tokenwatch_core::Severity;
use tokenwatch_core::pipeline::Detector;
use tokenwatch_core::time::{Epoch, format_time};
use tokenwatch_core::workload::session_pattern;
use tokenwatch_reporter::config::Config;
use tokenwatch_reporter::{Reporter, handle};
use tokenwatch_testkit::{Emulator, Received, Subscriber, new_topic, scenarios, unique};

use crate::detector::{event_time, feed_scenario, policy, scenario_events, style};

/// What a pager subscribes with: incidents opening or getting worse, never digests or notices.
pub const PAGER_FILTER: &str = r#"{"kind": ["open", "escalation"]}"#;
/// What a chat channel that wants only the daily summary subscribes with.
pub const DIGEST_FILTER: &str = r#"{"kind": ["digest"]}"#;

/// A new queue subscribed to `topic_arn` with a filter policy on the message attributes.
pub async fn filtered_subscriber(sdk: &SdkConfig, topic_arn: &str, filter: &str) -> Subscriber {
    let subscriber = Subscriber::to_topic(sdk, topic_arn.to_owned()).await;
    let sns = aws_sdk_sns::Client::new(sdk);
    let subscriptions = sns
        .list_subscriptions_by_topic()
        .topic_arn(topic_arn)
        .send()
        .await
        .unwrap();
    let subscription = subscriptions
        .subscriptions()
        .iter()
        .find(|s| s.endpoint() == Some(subscriber.queue.arn.as_str()))
        .and_then(|s| s.subscription_arn())
        .expect("the queue's subscription");
    sns.set_subscription_attributes()
        .subscription_arn(subscription)
        .attribute_name("FilterPolicy")
        .attribute_value(filter)
        .send()
        .await
        .unwrap();
    subscriber
}

pub fn kind(r: &Received) -> String {
    r.envelope["MessageAttributes"]["kind"]["Value"]
        .as_str()
        .unwrap_or("?")
        .to_owned()
}

/// The scenarios in the order their events happened, so the detector's clock never goes back.
fn scenarios_in_time_order() -> Vec<(PathBuf, Epoch, Epoch)> {
    let mut all: Vec<(PathBuf, Epoch, Epoch)> = scenarios()
        .into_iter()
        .map(|dir| {
            let times: Vec<Epoch> = scenario_events(&dir).iter().map(event_time).collect();
            let (first, last) = (*times.iter().min().unwrap(), *times.iter().max().unwrap());
            (dir, first, last)
        })
        .collect();
    all.sort_by_key(|(_, first, _)| *first);
    all
}

/// (principal, session) of every expected group at or above `floor`, and of a verdict if given.
fn expected_groups(floor: Severity, verdict: Option<&str>) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for dir in scenarios() {
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        for g in expected["groups"].as_array().unwrap() {
            let severity: Severity = g["severity"].as_str().unwrap().parse().unwrap();
            if severity >= floor && verdict.is_none_or(|v| g["verdict"] == v) {
                out.insert(identity(g));
            }
        }
    }
    out
}

pub fn identity(g: &Value) -> (String, String) {
    (
        g["principal"].as_str().unwrap_or_default().to_owned(),
        g["session"].as_str().unwrap_or_default().to_owned(),
    )
}

/// (principal, session) of each group of a report or digest.
pub fn listed(groups: &Value) -> BTreeSet<(String, String)> {
    groups.as_array().unwrap().iter().map(identity).collect()
}

#[tokio::test]
async fn the_digest_reaches_the_digest_subscription_only_and_a_query_answers_its_groups() {
    let sdk = Emulator::Moto.sdk().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("tokenwatch-e2e-reporter");
    create_table(&dynamodb, &table).await.expect("table created");
    let store = DynamoStore::from_client(dynamodb.clone(), &table);
    let topic_arn = new_topic(&sdk, "tokenwatch-e2e-reporter").await;
    let pager = filtered_subscriber(&sdk, &topic_arn, PAGER_FILTER).await;
    let chat = filtered_subscriber(&sdk, &topic_arn, DIGEST_FILTER).await;
    let sink = SnsAlertSink::new(&sdk, &topic_arn, style());

    // The detector over every scenario, into one table, paging through the topic.
    let policy = policy();
    let detector = Detector {
        store: &store,
        sink: &sink,
        policy: &policy,
    };
    let ordered = scenarios_in_time_order();
    for (dir, _, _) in &ordered {
        feed_scenario(&detector, dir).await;
    }
    let pages = pager.receive(1, Duration::from_secs(20)).await;
    let page_kinds: BTreeSet<String> = pages.iter().map(kind).collect();
    assert!(
        !pages.is_empty() && page_kinds.iter().all(|k| k == "open" || k == "escalation"),
        "the pager gets pages and nothing else: {page_kinds:?}"
    );
    let before = chat.receive(0, Duration::from_secs(3)).await;
    assert!(
        before.is_empty(),
        "the digest subscription got the detector's alerts: {:?}",
        before.iter().map(kind).collect::<Vec<_>>()
    );

    // The reporter as deployed by default, but looking back 30 days, an hour after the last sample.
    let config = Config::from_lookup(|name| match name {
        "TABLE_NAME" => Some(table.clone()),
        "TOPIC_ARN" => Some(topic_arn.clone()),
        "DIGEST_SINCE" => Some("30d".into()),
        _ => None,
    })
    .unwrap();
    let digest = config.digest_query();
    let reporter = Reporter {
        store: &store,
        sink: &sink,
        digest: &digest,
    };
    let last = ordered.iter().map(|(_, _, last)| *last).max().unwrap();
    let now = last + 3600;
    let schedule = json!({"version": "0", "id": "digest-1", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": format_time(now), "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/tokenwatch-digest"], "detail": {}});
    let answer = handle(schedule, &reporter, now).await.unwrap();

    let want = expected_groups(Severity::Low, None);
    assert!(want.len() >= 8, "{want:?}");
    assert_eq!(answer["groups"], want.len(), "{answer}");
    let digests = chat.receive(1, Duration::from_secs(20)).await;
    assert_eq!(
        digests.len(),
        1,
        "{:?}",
        digests.iter().map(|r| &r.envelope).collect::<Vec<_>>()
    );
    let d = &digests[0];
    assert_eq!(kind(d), "digest");
    assert!(
        d.envelope["MessageAttributes"].get("severity").is_none(),
        "a digest has no severity: {}",
        d.envelope
    );
    let document = d.document();
    assert_eq!(document["kind"], "digest");
    assert_eq!(document["alert_id"], answer["published"]);
    assert_eq!(document["since"], format_time(now - 30 * 86_400));
    assert_eq!(document["until"], format_time(now));
    // The most severe groups, up to the digest's limit, a fleet's groups (a workload of several
    // sessions) listed once; the rest are only counted.
    let shown = listed(&document["groups"]);
    assert!(shown.is_subset(&want), "{document}");
    let mut workloads: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (principal, session) in &want {
        *workloads
            .entry((principal.clone(), session_pattern(session)))
            .or_default() += 1;
    }
    assert!(workloads.len() < want.len(), "the samples hold fleets");
    assert_eq!(
        shown.len(),
        workloads.len().min(tokenwatch_render::sns::MAX_DIGEST_GROUPS),
        "{document}"
    );
    assert_eq!(document["groups_total"], want.len());
    assert!(
        d.envelope["Subject"]
            .as_str()
            .unwrap()
            .starts_with("[tokenwatch] digest"),
        "{}",
        d.envelope["Subject"]
    );
    let paged = pager.receive(0, Duration::from_secs(3)).await;
    assert!(
        paged.is_empty(),
        "the pager got {:?}",
        paged.iter().map(kind).collect::<Vec<_>>()
    );

    // A direct query: only its verdict, in its window, and it publishes nothing.
    let stale = handle(
        json!({"verdict": "stale-cache", "since": "2026-10-01T00:00:00Z"}),
        &reporter,
        now,
    )
    .await
    .unwrap();
    tokenwatch_testkit::assert_valid_report(&stale);
    assert_eq!(stale["window"]["since"], "2026-10-01T00:00:00Z");
    assert_eq!(
        listed(&stale["groups"]),
        expected_groups(Severity::Info, Some("stale-cache"))
    );
    assert!(
        stale["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["verdict"] == "stale-cache" && g["incident"]["id"].is_string()),
        "{stale}"
    );
    let irsa = handle(json!({"principal": "payments-*", "since": "30d"}), &reporter, now)
        .await
        .unwrap();
    assert_eq!(
        listed(&irsa["groups"]),
        BTreeSet::from([(
            "arn:aws:iam::123456789012:role/payments-api-irsa-role".to_owned(),
            "(any session)".to_owned()
        )])
    );
    let e = handle(json!({"verdict": "stale"}), &reporter, now)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("stale"), "{e}");
    assert!(chat.receive(0, Duration::from_secs(2)).await.is_empty());

    for s in [&pager, &chat] {
        s.queue.delete().await;
    }
    let _ = aws_sdk_sns::Client::new(&sdk)
        .delete_topic()
        .topic_arn(&topic_arn)
        .send()
        .await;
    let _ = dynamodb.delete_table().table_name(&table).send().await;
}
