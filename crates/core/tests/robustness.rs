//! Nothing panics the engine: arbitrary bytes, arbitrary JSON, and real-shaped records with arbitrary
//! values in every field the engine reads.

use std::io::Write;

use proptest::prelude::*;
use serde_json::{Value, json};
use tokenwatch_core::Analyzer;
use tokenwatch_core::reader::decompressing;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("ExpiredToken"),
            Just("ExpiredTokenException"),
            Just("RequestExpired"),
            Just("AssumeRole"),
            Just("2026-11-02T09:00:14Z"),
            Just("Nov 2, 2026, 9:00:00 AM"),
            Just("20261102T080000Z"),
            Just("arn:aws:sts::123456789012:assumed-role/r/s"),
            Just("ASIAEXAMPLE"),
            Just("sts.amazonaws.com"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    ".{0,10}",
                    Just("eventTime".to_owned()),
                    Just("errorCode".to_owned()),
                    Just("detail".to_owned()),
                    Just("Records".to_owned()),
                    Just("body".to_owned()),
                    Just("CloudTrailEvent".to_owned()),
                    Just("userIdentity".to_owned()),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The paths the engine reads, each of which may hold anything in a real-world record.
const FIELDS: &[&[&str]] = &[
    &["eventTime"],
    &["eventSource"],
    &["eventName"],
    &["errorCode"],
    &["errorMessage"],
    &["eventID"],
    &["userAgent"],
    &["recipientAccountId"],
    &["userIdentity"],
    &["userIdentity", "arn"],
    &["userIdentity", "principalId"],
    &["userIdentity", "accessKeyId"],
    &["userIdentity", "type"],
    &["userIdentity", "sessionContext"],
    &["userIdentity", "sessionContext", "attributes", "creationDate"],
    &["userIdentity", "sessionContext", "sessionIssuer"],
    &["requestParameters"],
    &["requestParameters", "durationSeconds"],
    &["requestParameters", "roleArn"],
    &["responseElements"],
    &["responseElements", "credentials"],
    &["responseElements", "credentials", "expiration"],
    &["responseElements", "credentials", "accessKeyId"],
];

fn failing_record() -> Value {
    json!({
        "eventVersion": "1.08", "eventTime": "2026-11-02T09:00:14Z", "eventSource": "sts.amazonaws.com",
        "eventName": "AssumeRole", "errorCode": "ExpiredToken", "eventID": "e1",
        "userAgent": "Boto3/1.34.0", "recipientAccountId": "123456789012",
        "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLE:s", "accessKeyId": "ASIAEXAMPLE",
            "arn": "arn:aws:sts::123456789012:assumed-role/r/s",
            "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::123456789012:role/r"},
                "attributes": {"creationDate": "2026-11-02T08:00:00Z"}}},
        "requestParameters": {"roleArn": "arn:aws:iam::123456789012:role/r", "roleSessionName": "s", "durationSeconds": 900},
        "responseElements": {"credentials": {"accessKeyId": "ASIAEXAMPLE2", "expiration": "Nov 2, 2026, 9:15:00 AM"}}
    })
}

fn set_path(v: &mut Value, path: &[&str], new: Value) {
    let mut cur = v;
    for (i, key) in path.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let obj = cur.as_object_mut().unwrap();
        if i + 1 == path.len() {
            obj.insert((*key).to_owned(), new);
            return;
        }
        cur = obj.entry((*key).to_owned()).or_insert(json!({}));
    }
}

fn analyze_bytes(bytes: &[u8]) {
    let mut a = Analyzer::default();
    let _ = a.read(bytes);
    let report = a.report();
    for f in &report.findings {
        assert!(f.failures > 0 && f.first_failure <= f.last_failure, "{f:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        analyze_bytes(&bytes);
    }

    #[test]
    fn arbitrary_bytes_behind_a_gzip_header_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut framed = vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
        framed.extend(bytes);
        let mut a = Analyzer::default();
        if let Ok(src) = decompressing(std::io::Cursor::new(framed)) {
            let _ = a.read(src);
        }
        a.report();
    }

    #[test]
    fn arbitrary_json_in_any_container_never_panics(v in arb_json()) {
        let text = v.to_string();
        analyze_bytes(text.as_bytes());
        analyze_bytes(format!("{{\"Records\":[{text},{text}]}}").as_bytes());
        analyze_bytes(json!({"Records": [{"body": text}]}).to_string().as_bytes());
        analyze_bytes(json!({"Events": [{"CloudTrailEvent": text}]}).to_string().as_bytes());
        analyze_bytes(json!({"version": "0", "detail": v}).to_string().as_bytes());
    }

    #[test]
    fn any_value_in_any_field_the_engine_reads_never_panics(
        edits in prop::collection::vec((0..FIELDS.len(), arb_json()), 1..4)
    ) {
        let mut rec = failing_record();
        for (i, value) in edits {
            set_path(&mut rec, FIELDS[i], value);
        }
        let text = rec.to_string();
        let mut a = Analyzer::default();
        a.feed_value(text.as_bytes());
        a.feed_value(json!({"detail": rec}).to_string().as_bytes());
        let r = a.report();
        prop_assert_eq!(r.records, 2);
    }

    #[test]
    fn a_records_array_of_n_objects_counts_n(n in 0usize..50, pad in "[ \n\t]{0,3}") {
        let items: Vec<String> = (0..n).map(|i| format!("{{\"eventName\":\"E{i}\"}}")).collect();
        let doc = format!("{{{pad}\"Records\"{pad}:{pad}[{pad}{}{pad}]{pad}}}", items.join(&format!("{pad},{pad}")));
        let mut a = Analyzer::default();
        a.read(doc.as_bytes()).unwrap();
        prop_assert_eq!(a.records(), n as u64);
    }

    #[test]
    fn truncating_a_valid_file_anywhere_never_panics(cut in 0usize..2000) {
        let doc = json!({"Records": [failing_record(), failing_record(), {"eventName": "x\"}]"}]}).to_string();
        let cut = cut.min(doc.len());
        analyze_bytes(&doc.as_bytes()[..cut]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(doc.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let mut a = Analyzer::default();
        if let Ok(src) = decompressing(std::io::Cursor::new(gz[..cut.min(gz.len())].to_vec())) {
            let _ = a.read(src);
        }
        a.report();
    }

    #[test]
    fn time_and_user_agent_parsers_take_any_string(s in "\\PC{0,80}") {
        let _ = tokenwatch_core::time::parse_time(&s);
        let _ = tokenwatch_core::time::parse_bound(&s, 0);
        let _ = tokenwatch_core::classify::client_of(&s);
    }
}
