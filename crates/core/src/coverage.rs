//! What `tokenwatch drill --real` measured, per probe service, and what it means: whether a call rejected
//! for an expired session token went end to end (recorded by CloudTrail, counted by the detector, paged
//! as a drill), is a coverage gap (CloudTrail did not record it), or was missed by tokenwatch
//! (docs/contract.md, "Proving it in the account"). Pure: the answers, records and state come in.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::classify::is_expiry;

/// What a service answered one call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The HTTP status; `None` when no answer came (the request failed in transit).
    pub status: Option<u16>,
    /// The error code, as the service's protocol spells it.
    pub code: Option<String>,
    /// The error message, or why no answer came.
    pub message: Option<String>,
}

impl Answer {
    /// The call succeeded.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// The call was rejected for expired credentials (by tokenwatch's own rule, docs/rules.md).
    pub fn rejected_as_expired(&self) -> bool {
        self.status.is_some() && !self.succeeded() && is_expiry(self.code.as_deref(), self.message.as_deref())
    }

    /// One short line: `200`, `403 ExpiredToken`, `no answer: ...`.
    pub fn summary(&self) -> String {
        match (self.status, &self.code) {
            (None, _) => format!("no answer: {}", self.message.as_deref().unwrap_or("unknown")),
            (Some(s), None) => s.to_string(),
            (Some(s), Some(code)) => format!("{s} {code}"),
        }
    }
}

/// Which `userIdentity` fields a record carried (absent, `null` and `""` all count as missing). In JSON,
/// each is named as in the record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityFields {
    /// `type`.
    #[serde(rename = "type")]
    pub kind: bool,
    /// `arn`.
    pub arn: bool,
    /// `principalId`.
    pub principal_id: bool,
    /// `accessKeyId`.
    pub access_key_id: bool,
    /// `sessionContext.attributes.creationDate`.
    pub creation_date: bool,
    /// `sessionContext.sessionIssuer` with an `arn` or a `principalId`.
    pub session_issuer: bool,
}

impl IdentityFields {
    /// The names of the fields present, in the order of the coverage table.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.kind, "type"),
            (self.arn, "arn"),
            (self.principal_id, "principalId"),
            (self.access_key_id, "accessKeyId"),
            (self.creation_date, "creationDate"),
            (self.session_issuer, "sessionIssuer"),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect()
    }
}

fn text(v: &Value) -> bool {
    match v {
        Value::String(s) => !s.is_empty(),
        Value::Null => false,
        Value::Number(_) | Value::Bool(_) => true,
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// The `userIdentity` fields `record` carries.
pub fn identity_fields(record: &Value) -> IdentityFields {
    let id = &record["userIdentity"];
    let issuer = &id["sessionContext"]["sessionIssuer"];
    IdentityFields {
        kind: text(&id["type"]),
        arn: text(&id["arn"]),
        principal_id: text(&id["principalId"]),
        access_key_id: text(&id["accessKeyId"]),
        creation_date: text(&id["sessionContext"]["attributes"]["creationDate"]),
        session_issuer: text(&issuer["arn"]) || text(&issuer["principalId"]),
    }
}

/// A failure CloudTrail recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// `eventID`.
    pub event_id: Option<String>,
    /// `eventName`.
    pub event_name: Option<String>,
    /// `eventTime` as written.
    pub event_time: Option<String>,
    /// `errorCode`.
    pub error_code: Option<String>,
    /// `errorMessage`.
    pub error_message: Option<String>,
    /// Which `userIdentity` fields it carried.
    pub identity: IdentityFields,
}

/// What CloudTrail returned about one probe service's calls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    /// A successful call (the control) was recorded: CloudTrail records this service's calls here.
    pub control: bool,
    /// The failed call's record, if any.
    pub failure: Option<Recorded>,
}

fn string(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// What `records` (full CloudTrail records) say about the calls to `event_source`: a record with an
/// `errorCode` or `errorMessage` is the failed call's, one without is the control's.
pub fn find(records: &[Value], event_source: &str) -> Found {
    let mut found = Found::default();
    for r in records.iter().filter(|r| r["eventSource"] == event_source) {
        let failed = text(&r["errorCode"]) || text(&r["errorMessage"]);
        if !failed {
            found.control = true;
        } else if found.failure.is_none() {
            found.failure = Some(Recorded {
                event_id: string(&r["eventID"]),
                event_name: string(&r["eventName"]),
                event_time: string(&r["eventTime"]),
                error_code: string(&r["errorCode"]),
                error_message: string(&r["errorMessage"]),
                identity: identity_fields(r),
            });
        }
    }
    found
}

/// What the detector made of the drill session's group, from the state table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectorView {
    /// Its verdict, if the group exists.
    pub verdict: Option<String>,
    /// The lease it judged the session by, in seconds.
    pub lease_seconds: Option<u64>,
    /// It paged (the page of a drill role's session is a drill).
    pub paged: bool,
}

/// One probe service's measurements.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probed {
    /// The service, as people name it (`S3`, `CloudWatch Logs`).
    pub service: String,
    /// The call (`ListBuckets`).
    pub call: String,
    /// Its CloudTrail `eventSource`.
    pub event_source: String,
    /// The answer while the session was valid.
    pub control: Answer,
    /// The answer after it expired.
    pub expired: Answer,
    /// What CloudTrail recorded.
    pub found: Found,
    /// The detector counted a failure of this service in the drill's group; `None` when the state table
    /// was not read.
    pub seen: Option<bool>,
}

/// What one row comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Recorded by CloudTrail, counted by the detector, and the drill paged.
    EndToEnd,
    /// Rejected for expiry, and CloudTrail recorded nothing of it: tokenwatch cannot see this service's
    /// expired-credential failures in this account.
    NotRecorded,
    /// CloudTrail recorded the failure and tokenwatch did not count it, or did not page.
    Missed,
    /// Nothing to conclude: the control call failed, or the service did not reject the expired call as
    /// expired.
    NotMeasured,
    /// Recorded by CloudTrail; the detector's state was not read.
    Unchecked,
}

impl Outcome {
    /// The word the table shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::EndToEnd => "end to end",
            Outcome::NotRecorded => "not recorded",
            Outcome::Missed => "MISSED",
            Outcome::NotMeasured => "not measured",
            Outcome::Unchecked => "detector not checked",
        }
    }
}

/// A row's outcome, given what the detector made of the drill's group (`None`: not read).
pub fn outcome(p: &Probed, detector: Option<&DetectorView>) -> Outcome {
    if !p.control.succeeded() || !p.expired.rejected_as_expired() {
        return Outcome::NotMeasured;
    }
    if p.found.failure.is_none() {
        return Outcome::NotRecorded;
    }
    match (p.seen, detector) {
        (Some(true), Some(d)) if d.paged => Outcome::EndToEnd,
        (Some(_), Some(_)) => Outcome::Missed,
        _ => Outcome::Unchecked,
    }
}

/// The exit status of a drill with these outcomes: `1` if tokenwatch missed a recorded failure, else `3`
/// if CloudTrail did not record some service's failure, else `2` if some probe could not be measured or
/// checked, else `0`.
pub fn exit_status(outcomes: &[Outcome]) -> u8 {
    if outcomes.contains(&Outcome::Missed) {
        1
    } else if outcomes.contains(&Outcome::NotRecorded) {
        3
    } else if outcomes
        .iter()
        .any(|o| matches!(o, Outcome::NotMeasured | Outcome::Unchecked))
    {
        2
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(status: u16, code: Option<&str>) -> Answer {
        Answer {
            status: Some(status),
            code: code.map(str::to_owned),
            message: None,
        }
    }

    fn record(source: &str, code: Option<&str>) -> Value {
        let mut r = json!({"eventSource": source, "eventName": "ListBuckets", "eventID": "e1",
            "eventTime": "2026-11-02T09:00:00Z", "userIdentity": {"type": "AssumedRole", "accessKeyId": ""}});
        if let Some(c) = code {
            r["errorCode"] = json!(c);
        }
        r
    }

    #[test]
    fn an_expired_answer_is_one_the_engine_counts() {
        assert!(answer(403, Some("ExpiredToken")).rejected_as_expired());
        assert!(answer(400, Some("ExpiredTokenException")).rejected_as_expired());
        assert!(!answer(200, None).rejected_as_expired());
        assert!(!answer(403, Some("AccessDenied")).rejected_as_expired());
        assert!(!Answer::default().rejected_as_expired(), "no answer");
        let by_message = Answer {
            status: Some(400),
            code: None,
            message: Some("The provided token has expired.".into()),
        };
        assert!(by_message.rejected_as_expired());
        assert_eq!(answer(403, Some("ExpiredToken")).summary(), "403 ExpiredToken");
    }

    #[test]
    fn identity_fields_count_only_what_has_a_value() {
        let full = json!({"userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::1:assumed-role/r/s",
            "principalId": "AROA:s", "accessKeyId": "ASIA1",
            "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::1:role/r"},
                               "attributes": {"creationDate": "2026-11-02T08:00:00Z"}}}});
        assert_eq!(
            identity_fields(&full).names(),
            [
                "type",
                "arn",
                "principalId",
                "accessKeyId",
                "creationDate",
                "sessionIssuer"
            ]
        );
        let reduced = json!({"userIdentity": {"type": "AssumedRole", "accessKeyId": "", "arn": null,
            "sessionContext": {"sessionIssuer": {}}}});
        assert_eq!(identity_fields(&reduced).names(), ["type"]);
        assert_eq!(identity_fields(&json!({})).names(), Vec::<&str>::new());
    }

    #[test]
    fn records_are_told_apart_as_control_and_failure_per_service() {
        let records = [
            record("s3.amazonaws.com", None),
            record("s3.amazonaws.com", Some("ExpiredToken")),
            record("ec2.amazonaws.com", None),
        ];
        let s3 = find(&records, "s3.amazonaws.com");
        assert!(s3.control);
        let failure = s3.failure.unwrap();
        assert_eq!(failure.error_code.as_deref(), Some("ExpiredToken"));
        assert_eq!(failure.identity.names(), ["type"]);
        let ec2 = find(&records, "ec2.amazonaws.com");
        assert!(ec2.control && ec2.failure.is_none());
        assert_eq!(find(&records, "kms.amazonaws.com"), Found::default());
    }

    fn probed(expired: Answer, recorded: bool, seen: Option<bool>) -> Probed {
        Probed {
            control: answer(200, None),
            expired,
            found: Found {
                control: true,
                failure: recorded.then(Recorded::default),
            },
            seen,
            ..Default::default()
        }
    }

    #[test]
    fn each_outcome_and_the_exit_status_it_gives() {
        let paged = DetectorView {
            paged: true,
            ..Default::default()
        };
        let silent = DetectorView::default();
        let expired = || answer(403, Some("ExpiredToken"));
        let cases = [
            (
                probed(expired(), true, Some(true)),
                Some(&paged),
                Outcome::EndToEnd,
                0,
            ),
            (
                probed(expired(), true, Some(false)),
                Some(&paged),
                Outcome::Missed,
                1,
            ),
            (
                probed(expired(), true, Some(true)),
                Some(&silent),
                Outcome::Missed,
                1,
            ),
            (
                probed(expired(), false, None),
                Some(&paged),
                Outcome::NotRecorded,
                3,
            ),
            (
                probed(answer(200, None), false, None),
                Some(&paged),
                Outcome::NotMeasured,
                2,
            ),
            (
                probed(answer(403, Some("AccessDenied")), true, Some(true)),
                Some(&paged),
                Outcome::NotMeasured,
                2,
            ),
            (probed(expired(), true, None), None, Outcome::Unchecked, 2),
        ];
        for (p, detector, want, status) in cases {
            let got = outcome(&p, detector);
            assert_eq!(got, want, "{p:?}");
            assert_eq!(exit_status(&[Outcome::EndToEnd, got]), status, "{want:?}");
        }
        let mut failed_control = probed(expired(), true, Some(true));
        failed_control.control = answer(403, Some("AccessDenied"));
        assert_eq!(outcome(&failed_control, Some(&paged)), Outcome::NotMeasured);
        assert_eq!(
            exit_status(&[Outcome::NotRecorded, Outcome::Missed]),
            1,
            "a miss outranks a gap"
        );
        assert_eq!(exit_status(&[Outcome::NotMeasured, Outcome::NotRecorded]), 3);
        assert_eq!(exit_status(&[]), 0);
    }
}
