//! Opens whatever carries CloudTrail records, the one way every path does: a bare record; an EventBridge
//! envelope (its `detail`); a wrapper holding more JSON in a string (an SQS message `body`, an SNS
//! `Message` also as Lambda delivers it under `Sns`, a lookup-events `CloudTrailEvent`), opened again
//! down to [`MAX_DEPTH`] wrappers. The analyzer, the detector and the EventBridge replay of files
//! ([`crate::events`]) all call [`open`]; the wrapper fields are the serde names of
//! [`crate::record::Record`] and spelled nowhere else.

use crate::reader::JsonSplitter;
use crate::record::{EnvelopeContext, Record};

/// Wrappers inside wrappers (SNS in SQS in a file) are opened this deep; deeper ones are unreadable.
pub const MAX_DEPTH: u8 = 4;

/// Why a value could not be opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The bytes are not a JSON value.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// A JSON value, but no record, envelope or wrapper.
    #[error("neither a CloudTrail record nor an EventBridge event")]
    NotAnEvent,
    /// Wrapped more than [`MAX_DEPTH`] times.
    #[error("wrapped more than {MAX_DEPTH} times")]
    TooDeep,
    /// A wrapper's string does not hold JSON values.
    #[error("the JSON a wrapper carries is unreadable: {0}")]
    Carried(String),
}

/// What [`open`] found in one value.
// Each value is handed to the visitor once and never stored, so the size difference costs nothing a box
// would save, and boxing would allocate per record.
#[allow(clippy::large_enum_variant)]
pub enum Opened<'a> {
    /// A record, with what its envelope says.
    Record {
        /// The record's JSON.
        raw: &'a [u8],
        /// The record, decoded leniently.
        record: Record,
        /// The envelope's account, region and source (empty for a bare record).
        envelope: EnvelopeContext,
        /// The EventBridge envelope's JSON when the record came in one.
        outer: Option<&'a [u8]>,
    },
    /// Left out by the caller's filter, undecoded.
    Filtered,
    /// Could not be opened.
    Unreadable(OpenError),
}

/// Opens `bytes` (one JSON value) and hands `visit` each record found in it, in order. `keep` sees every
/// value before it is decoded (the top one and each one a wrapper carries); a value it refuses is
/// reported as [`Opened::Filtered`] and never parsed.
pub fn open(bytes: &[u8], keep: &dyn Fn(&[u8]) -> bool, visit: &mut dyn FnMut(Opened<'_>)) {
    open_at(bytes, 0, keep, visit);
}

fn open_at(bytes: &[u8], depth: u8, keep: &dyn Fn(&[u8]) -> bool, visit: &mut dyn FnMut(Opened<'_>)) {
    if !keep(bytes) {
        visit(Opened::Filtered);
        return;
    }
    let record: Record = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(e) => return visit(Opened::Unreadable(OpenError::NotJson(e.to_string()))),
    };
    if record.event_time.get().is_some() {
        return visit(Opened::Record {
            raw: bytes,
            record,
            envelope: EnvelopeContext::default(),
            outer: None,
        });
    }
    // A `detail` that is not an object (a string, a number) is no record: the value is then read as if
    // it had none.
    if let Some(detail) = record.detail.as_deref()
        && detail.get().trim_start().starts_with('{')
    {
        let raw = detail.get().as_bytes();
        let inner: Record = serde_json::from_slice(raw).unwrap_or_default();
        return visit(Opened::Record {
            raw,
            record: inner,
            envelope: EnvelopeContext {
                account: record.account.0,
                region: record.region.0,
                source: record.source.0,
                id: record.id.0,
            },
            outer: Some(bytes),
        });
    }
    let Some(carried) = record.carried_json() else {
        return visit(Opened::Unreadable(OpenError::NotAnEvent));
    };
    if depth >= MAX_DEPTH {
        return visit(Opened::Unreadable(OpenError::TooDeep));
    }
    let mut inner = JsonSplitter::new(carried.as_bytes());
    loop {
        match inner.next_value() {
            Ok(Some(v)) => open_at(v, depth + 1, keep, visit),
            Ok(None) => break,
            Err(e) => {
                visit(Opened::Unreadable(OpenError::Carried(e.to_string())));
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Event id and envelope account of each record opened, or why a value was not.
    type Found = Result<(Option<String>, Option<String>), OpenError>;

    fn records(bytes: &[u8]) -> Vec<Found> {
        let mut out = Vec::new();
        open(bytes, &|_| true, &mut |o| match o {
            Opened::Record { record, envelope, .. } => out.push(Ok((record.event_id.0, envelope.account))),
            Opened::Filtered => unreachable!("nothing is filtered"),
            Opened::Unreadable(e) => out.push(Err(e)),
        });
        out
    }

    const RECORD: &str = r#"{"eventTime":"2026-11-02T09:00:00Z","eventID":"e1"}"#;

    fn envelope() -> String {
        format!(r#"{{"version":"0","account":"123456789012","detail":{RECORD}}}"#)
    }

    #[test]
    fn a_bare_record_and_an_envelope_open_to_their_record() {
        assert_eq!(records(RECORD.as_bytes()), vec![Ok((Some("e1".into()), None))]);
        assert_eq!(
            records(envelope().as_bytes()),
            vec![Ok((Some("e1".into()), Some("123456789012".into())))]
        );
    }

    #[test]
    fn wrappers_open_to_what_they_carry() {
        let sqs = json!({"messageId": "m", "body": envelope()}).to_string();
        let sns = json!({"Type": "Notification", "Message": format!("{RECORD}\n{RECORD}")}).to_string();
        let lambda_sns = json!({"EventSource": "aws:sns", "Sns": {"Message": envelope()}}).to_string();
        let lookup = json!({"CloudTrailEvent": RECORD}).to_string();
        assert_eq!(records(sqs.as_bytes()).len(), 1);
        assert_eq!(records(sns.as_bytes()).len(), 2);
        assert_eq!(
            records(lambda_sns.as_bytes())[0].as_ref().unwrap().1.as_deref(),
            Some("123456789012")
        );
        assert_eq!(records(lookup.as_bytes()), vec![Ok((Some("e1".into()), None))]);
    }

    #[test]
    fn wrapping_deeper_than_the_limit_is_unreadable_not_followed() {
        let mut v = RECORD.to_owned();
        for _ in 0..MAX_DEPTH {
            v = json!({ "body": v }).to_string();
        }
        assert_eq!(records(v.as_bytes()).len(), 1, "{MAX_DEPTH} wrappers are opened");
        let deeper = json!({ "body": v }).to_string();
        assert_eq!(records(deeper.as_bytes()), vec![Err(OpenError::TooDeep)]);
    }

    #[test]
    fn what_is_not_an_event_says_why() {
        assert!(matches!(records(b"not json")[..], [Err(OpenError::NotJson(_))]));
        assert_eq!(records(br#"{"hello":"world"}"#), vec![Err(OpenError::NotAnEvent)]);
        assert_eq!(
            records(br#"{"detail":"a string"}"#),
            vec![Err(OpenError::NotAnEvent)]
        );
        assert!(matches!(
            records(br#"{"body":"{\"eventTime\": oops"}"#)[..],
            [Err(OpenError::Carried(_))]
        ));
    }

    #[test]
    fn a_filtered_value_is_never_decoded() {
        let sqs = json!({"body": format!("{RECORD}\n{{\"eventTime\":\"x\",\"keep\":1}}")}).to_string();
        let mut seen = Vec::new();
        open(
            sqs.as_bytes(),
            &|v| !v.starts_with(br#"{"eventTime":"2026"#),
            &mut |o| seen.push(matches!(o, Opened::Filtered)),
        );
        assert_eq!(seen, vec![true, false]);
    }
}
