//! Any input tokenwatch reads, as the EventBridge events CloudTrail would have delivered: how the samples
//! are fed to the detector, to a local EventBridge, and to `tokenwatch drill`.

use serde_json::{Value, json};

use crate::envelope::{Opened, open};
use crate::reader::{JsonSplitter, ReadError};

/// Every record in `input` (any container form [`crate::analyze::Analyzer::read`] takes, already
/// decompressed) as one EventBridge event: envelopes are kept as they are, wrappers are opened
/// ([`crate::envelope::open`]), bare records get the envelope EventBridge gives them (`source` is
/// `aws.<service>`). Values that hold no record are left out.
pub fn eventbridge_events(input: &[u8]) -> Result<Vec<Value>, ReadError> {
    let mut out = Vec::new();
    let mut splitter = JsonSplitter::new(input);
    while let Some(v) = splitter.next_value()? {
        open(v, &|_| true, &mut |opened| {
            if let Opened::Record { raw, outer, .. } = opened
                && let Ok(value) = serde_json::from_slice::<Value>(outer.unwrap_or(raw))
            {
                out.push(if outer.is_some() { value } else { envelope(value) });
            }
        });
    }
    Ok(out)
}

/// The envelope EventBridge puts around a CloudTrail record.
pub fn envelope(record: Value) -> Value {
    let service = record
        .get("eventSource")
        .and_then(Value::as_str)
        .and_then(|s| s.strip_suffix(".amazonaws.com"))
        .unwrap_or("cloudtrail")
        .to_owned();
    let account = record.get("recipientAccountId").cloned().unwrap_or(Value::Null);
    let region = record.get("awsRegion").cloned().unwrap_or(Value::Null);
    let time = record.get("eventTime").cloned().unwrap_or(Value::Null);
    let id = record.get("eventID").cloned().unwrap_or(Value::Null);
    json!({
        "version": "0",
        "id": id,
        "detail-type": "AWS API Call via CloudTrail",
        "source": format!("aws.{service}"),
        "account": account,
        "time": time,
        "region": region,
        "resources": [],
        "detail": record,
    })
}

/// The event `tokenwatch drill` puts on the bus: a CloudTrail-shaped expired-token failure of a session
/// that was cached past its hour, from a clearly named drill role, with the drill's own `source` (the
/// `aws.*` sources are reserved). The detector pages it at once and labels the alert a drill.
pub fn drill_event(account: &str, region: &str, now: crate::time::Epoch) -> Value {
    use crate::time::format_time;
    let session = format!("drill-{now}");
    let record = json!({
        "eventVersion": "1.09",
        "eventTime": format_time(now),
        "eventSource": "sts.amazonaws.com",
        "eventName": "GetCallerIdentity",
        "awsRegion": region,
        "sourceIPAddress": "192.0.2.1",
        "userAgent": "tokenwatch-drill",
        "errorCode": "ExpiredToken",
        "errorMessage": "The security token included in the request is expired (tokenwatch drill: no workload failed)",
        "eventID": format!("tokenwatch-drill-{now}"),
        "eventType": "AwsApiCall",
        "recipientAccountId": account,
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": format!("AROATOKENWATCHDRILL:{session}"),
            "arn": format!("arn:aws:sts::{account}:assumed-role/tokenwatch-drill/{session}"),
            "accountId": account,
            "accessKeyId": "ASIATOKENWATCHDRILL0",
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{account}:role/tokenwatch-drill")},
                "attributes": {"creationDate": format_time(now - 3600 - 300), "mfaAuthenticated": "false"}
            }
        }
    });
    json!({
        "version": "0",
        "detail-type": "AWS API Call via CloudTrail",
        "source": crate::pipeline::DRILL_SOURCE,
        "account": account,
        "time": format_time(now),
        "region": region,
        "resources": [],
        "detail": record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_gives_one_event_per_record() {
        let rec = json!({"eventTime": "2026-11-02T09:00:00Z", "eventSource": "s3.amazonaws.com", "eventID": "e1",
            "recipientAccountId": "123456789012"});
        let env = envelope(rec.clone());
        assert_eq!(env["source"], "aws.s3");
        assert_eq!(env["detail"], rec);
        let trail = json!({"Records": [rec, rec]}).to_string();
        assert_eq!(eventbridge_events(trail.as_bytes()).unwrap().len(), 2);
        let sqs = json!({"Records": [{"messageId": "m", "body": env.to_string()}]}).to_string();
        assert_eq!(eventbridge_events(sqs.as_bytes()).unwrap(), vec![env.clone()]);
        let lookup = json!({"Events": [{"CloudTrailEvent": rec.to_string()}]}).to_string();
        assert_eq!(
            eventbridge_events(lookup.as_bytes()).unwrap()[0]["detail"]["eventID"],
            "e1"
        );
        let sns = json!({"Records": [{"Sns": {"Message": env.to_string()}}]}).to_string();
        assert_eq!(eventbridge_events(sns.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn a_drill_event_is_a_stale_cache_failure_from_the_drill_source() {
        let e = drill_event("123456789012", "eu-west-1", 1_793_610_000);
        assert_eq!(e["source"], crate::pipeline::DRILL_SOURCE);
        let mut a = crate::Analyzer::default();
        a.feed_value(e.to_string().as_bytes());
        let r = a.report();
        assert_eq!(r.findings.len(), 1);
        assert_eq!(r.findings[0].verdict(), crate::Verdict::StaleCache);
        assert!(
            r.findings[0]
                .principal
                .as_deref()
                .unwrap()
                .ends_with("role/tokenwatch-drill")
        );
    }
}
