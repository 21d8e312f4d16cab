//! Re-checks: a held page ([`crate::incident::Decision::Hold`]) is decided again the moment its wait
//! ends ([`crate::incident::hold_ends`]), not at the next sweep. When the detector holds a page it asks
//! for a re-check of the group at that time ([`crate::ports::RecheckQueue`]: in production a delayed
//! message on its own event queue); when the re-check comes back among its events, it loads the group and
//! decides again. The sweep stays the backstop for a re-check that was lost.
//!
//! A re-check names a group and nothing else: the decision is made from the stored state, so a re-check
//! cannot bring evidence, only ask for a decision early. Delivered twice, or with a sweep in between,
//! it pages once: the page claim ([`crate::ports::StateStore::claim_page`]) sees to that.

use serde_json::{Value, json};

use crate::stats::GroupKey;
use crate::time::Epoch;

/// The JSON key that tells a re-check from an event: an EventBridge event or CloudTrail record never
/// has it.
const TAG: &str = "tokenwatchRecheck";

/// The longest a re-check can be put off in one step: SQS's largest `DelaySeconds`. A wait longer than
/// this is re-checked when the step ends, finds the page still held, and asks again for the rest.
pub const MAX_DELAY: i64 = 900;

/// A request to decide a group's held page again at `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recheck {
    /// The group.
    pub group: GroupKey,
    /// When its wait ends.
    pub at: Epoch,
}

impl Recheck {
    /// The message body that carries it.
    pub fn to_json(&self) -> String {
        json!({ TAG: { "account": self.group.account, "principal": self.group.principal,
            "session": self.group.session, "at": self.at } })
        .to_string()
    }

    /// The re-check a message body carries, `None` if it is not one (an event).
    pub fn parse(bytes: &[u8]) -> Option<Recheck> {
        // Cheap for the events that make up nearly every message: no JSON is parsed unless the tag is there.
        memchr::memmem::find(bytes, TAG.as_bytes())?;
        let value: Value = serde_json::from_slice(bytes).ok()?;
        let r = value.as_object()?.get(TAG)?;
        let field = |name: &str| r.get(name).and_then(Value::as_str).map(str::to_owned);
        Some(Recheck {
            group: GroupKey {
                account: field("account"),
                principal: field("principal"),
                session: field("session"),
            },
            at: r.get("at")?.as_i64()?,
        })
    }

    /// How long after `now` to deliver it: at least a second (a re-check never races the write that
    /// held the page), at most [`MAX_DELAY`].
    pub fn delay(&self, now: Epoch) -> i64 {
        (self.at - now).clamp(1, MAX_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recheck_round_trips_and_an_event_is_not_one() {
        let r = Recheck {
            group: GroupKey {
                account: Some("123456789012".into()),
                principal: Some("etl".into()),
                session: None,
            },
            at: 1_793_610_000,
        };
        assert_eq!(Recheck::parse(r.to_json().as_bytes()), Some(r.clone()));
        assert_eq!(r.delay(r.at - 30), 30);
        assert_eq!(r.delay(r.at + 5), 1, "overdue: at once");
        assert_eq!(r.delay(r.at - 4000), MAX_DELAY, "in steps");
        for event in [
            &br#"{"detail-type":"AWS API Call via CloudTrail","detail":{}}"#[..],
            b"garbage",
            br#"{"tokenwatchRecheck": "no"}"#,
            br#"[{"tokenwatchRecheck": {"at": 1}}]"#,
        ] {
            assert_eq!(Recheck::parse(event), None);
        }
    }
}
