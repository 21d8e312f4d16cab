//! Drills, told apart from real failures, and kept away from every real group (docs/contract.md, "Drills").
//!
//! Two kinds:
//! - A **synthetic drill** (`tokenwatch drill`) is an event whose `source` is
//!   [`DRILL_SOURCE`](crate::pipeline::DRILL_SOURCE). Whoever may put events on a watched bus can put one,
//!   and everything in its `detail` is theirs to write. So [`screen`] admits one only from the stack's own
//!   account or an account it was told to admit (the envelope's `account`, which EventBridge sets, never
//!   the detail's), dated within [`DRILL_WINDOW`] of now, and only as an expired-credential failure; the
//!   detector then claims the account's drill slot in the state store, at most one per
//!   [`DRILL_INTERVAL`] ([`crate::ports::StateStore::claim_drill`]). An admitted drill is filed under
//!   [`drill_group`], a key no real failure has, so it can never open, page, silence, escalate or resolve a
//!   real group's incident, and a drill that keeps failing retries only its own event.
//! - A **real drill** (`tokenwatch drill --real`) calls AWS with expired credentials of the stack's drill
//!   role. Its failures are real failures, grouped as any other; its pages are drills because the group is
//!   a `tokenwatch-drill-…` session of that role ([`DrillPolicy::is_real_drill`]), and for no other reason.

use std::collections::BTreeSet;
use std::fmt;

use crate::classify::{Failure, Observation, classify};
use crate::record::{EnvelopeContext, Record};
use crate::stats::GroupKey;
use crate::time::Epoch;

/// A synthetic drill's `eventTime` must be at most this far from now, either way (seconds).
pub const DRILL_WINDOW: Epoch = 15 * 60;
/// One synthetic drill per account per this many seconds.
pub const DRILL_INTERVAL: Epoch = 5 * 60;
/// How the drill role's sessions are named: its trust policy admits no other name.
pub const DRILL_SESSION_PREFIX: &str = "tokenwatch-drill-";

/// The principal part of a synthetic drill's group key starts with this. No real failure's key does: a
/// real principal key is a role name (IAM allows no `/` in one), an ARN (`arn:…`), or the requested role
/// of a failed web-identity call, which CloudTrail records only in the account that owns that role, so an
/// ARN again.
const SYNTHETIC: &str = "tokenwatch.drill/";

/// Which drills the detector accepts, and how it knows its drill role: read once at cold start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrillPolicy {
    /// The stack's own account (the function's ARN says it). `None` admits no synthetic drill at all.
    pub own_account: Option<String>,
    /// Other accounts whose synthetic drills a central stack accepts.
    pub accounts: BTreeSet<String>,
    /// Accept synthetic drills from every account whose events reach the bus: in a central deployment the
    /// bus policy admits only the organization's forwarders.
    pub organization: bool,
    /// The stack's drill role, whose `tokenwatch-drill-…` sessions are real drills.
    pub role: Option<DrillRole>,
}

/// The stack's drill role, as the group keys of its sessions name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrillRole {
    /// The role's account.
    pub account: String,
    /// The role's name (without its path): a role's group key names it so.
    pub name: String,
}

impl DrillRole {
    /// Reads `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`; `None` for anything else.
    pub fn parse(arn: &str) -> Option<DrillRole> {
        let crate::classify::Arn {
            partition,
            service: "iam",
            region: "",
            account,
            resource,
        } = crate::classify::Arn::parse(arn)?
        else {
            return None;
        };
        let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
        let valid_account = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
        (!partition.is_empty() && valid_account && valid_name).then(|| DrillRole {
            account: account.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl DrillPolicy {
    /// Is the synthetic drill put by `account` one this stack accepts?
    pub fn admits(&self, account: &str) -> bool {
        let Some(own) = self.own_account.as_deref() else {
            return false;
        };
        account == own || self.organization || self.accounts.contains(account)
    }

    /// Is `key` a `tokenwatch-drill-…` session of the stack's drill role?
    pub fn is_real_drill(&self, key: &GroupKey) -> bool {
        self.role.as_ref().is_some_and(|role| {
            key.account.as_deref() == Some(role.account.as_str())
                && key.principal.as_deref() == Some(role.name.as_str())
                && key
                    .session
                    .as_deref()
                    .is_some_and(|s| s.starts_with(DRILL_SESSION_PREFIX))
        })
    }

    /// Are this group's pages drills: a synthetic drill's group, or a real drill's?
    pub fn is_drill_group(&self, key: &GroupKey) -> bool {
        is_synthetic(key) || self.is_real_drill(key)
    }
}

/// The group a synthetic drill with this identity is filed under: apart from every real group.
pub fn drill_group(key: GroupKey) -> GroupKey {
    GroupKey {
        principal: Some(format!("{SYNTHETIC}{}", key.principal.as_deref().unwrap_or("-"))),
        ..key
    }
}

/// Is `key` a synthetic drill's group ([`drill_group`])?
pub fn is_synthetic(key: &GroupKey) -> bool {
    key.principal.as_deref().is_some_and(|p| p.starts_with(SYNTHETIC))
}

/// Is this the [`group_id`](crate::incident::group_id) of a synthetic drill's group? (What a page is
/// told apart by: its finding names the principal the event named.) A synthetic drill's account is the
/// envelope's, an account id, so the principal is the part after the first `|`.
pub fn is_synthetic_group(group: &str) -> bool {
    group
        .split_once('|')
        .is_some_and(|(_, rest)| rest.starts_with(SYNTHETIC))
}

/// A synthetic drill [`screen`] let through: the failure to record (its account is the envelope's) and
/// the slot to claim for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Admitted {
    /// The failure, with the account that put the event.
    pub failure: Failure,
    /// The account whose drill slot it takes.
    pub account: String,
    /// The EventBridge event id: a redelivery of the same event takes the slot it already holds.
    pub event: Option<String>,
}

/// Why a synthetic drill was dropped (a metric dimension and a log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// Put by an account the stack was not told to admit (or with no account).
    ForeignAccount,
    /// Its `eventTime` is missing or more than [`DRILL_WINDOW`] away from now.
    OutOfWindow,
    /// Not an expired-credential failure (an issuing call, or anything else).
    NotAFailure,
    /// The account's drill slot was taken less than [`DRILL_INTERVAL`] ago.
    TooSoon,
}

impl Refusal {
    /// The dimension value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::ForeignAccount => "account not admitted",
            Refusal::OutOfWindow => "eventTime out of window",
            Refusal::NotAFailure => "not a failure",
            Refusal::TooSoon => "too soon after the last drill",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self {
            Refusal::ForeignAccount => {
                "put by an account this stack does not admit drills from (its own, and DRILL_ACCOUNTS)"
            }
            Refusal::OutOfWindow => "its eventTime is more than 15 minutes from now",
            Refusal::NotAFailure => "it is not an expired-credential failure",
            Refusal::TooSoon => "the account already had a drill in the last 5 minutes",
        };
        write!(f, "drill refused: {why}")
    }
}

/// Decides whether a synthetic drill event (`rec` in the envelope `env`) may be recorded at `now`. The
/// rate limit is the store's to enforce afterwards.
pub fn screen(
    rec: &Record,
    env: &EnvelopeContext,
    policy: &DrillPolicy,
    now: Epoch,
) -> Result<Admitted, Refusal> {
    let account = env
        .account
        .as_deref()
        .filter(|a| policy.admits(a))
        .ok_or(Refusal::ForeignAccount)?;
    let Observation::Failure(mut failure) = classify(rec, env) else {
        // `classify` also says Other when the time is unreadable: a drill without a usable time is
        // out of the window, whatever else it is.
        return Err(
            if rec.event_time.get().and_then(crate::time::parse_time).is_none() {
                Refusal::OutOfWindow
            } else {
                Refusal::NotAFailure
            },
        );
    };
    if (failure.time - now).abs() > DRILL_WINDOW {
        return Err(Refusal::OutOfWindow);
    }
    failure.account = Some(account.to_owned());
    Ok(Admitted {
        failure,
        account: account.to_owned(),
        event: env.id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::drill_event;
    use crate::stats::group_key;

    const NOW: Epoch = 1_793_610_000;
    const OWN: &str = "111122223333";

    fn policy() -> DrillPolicy {
        DrillPolicy {
            own_account: Some(OWN.into()),
            role: DrillRole::parse("arn:aws:iam::111122223333:role/tools/tokenwatch-drill-us-east-1"),
            ..Default::default()
        }
    }

    fn open(event: &serde_json::Value) -> (Record, EnvelopeContext) {
        crate::pipeline::decode(event.to_string().as_bytes())
            .unwrap()
            .remove(0)
    }

    fn screened(event: &serde_json::Value, policy: &DrillPolicy, now: Epoch) -> Result<Admitted, Refusal> {
        let (rec, env) = open(event);
        screen(&rec, &env, policy, now)
    }

    #[test]
    fn the_drill_role_is_read_from_its_arn() {
        assert_eq!(
            DrillRole::parse("arn:aws-cn:iam::111122223333:role/a/b/tokenwatch-drill"),
            Some(DrillRole {
                account: OWN.into(),
                name: "tokenwatch-drill".into()
            })
        );
        for bad in [
            "",
            "arn:aws:iam::111122223333:user/x",
            "arn:aws:sts::111122223333:assumed-role/r/s",
            "arn:aws:iam::1111:role/r",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam::111122223333:role/bad name",
        ] {
            assert_eq!(DrillRole::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_drill_from_the_own_account_within_the_window_is_admitted_under_the_envelope_account() {
        let mut event = drill_event(OWN, "us-east-1", NOW);
        event["detail"]["recipientAccountId"] = serde_json::json!("999999999999");
        let admitted = screened(&event, &policy(), NOW + 60).unwrap();
        assert_eq!(admitted.account, OWN);
        assert_eq!(
            admitted.failure.account.as_deref(),
            Some(OWN),
            "never the detail's"
        );
    }

    #[test]
    fn a_drill_from_another_account_is_refused_unless_admitted() {
        let event = drill_event("444455556666", "us-east-1", NOW);
        assert_eq!(screened(&event, &policy(), NOW), Err(Refusal::ForeignAccount));
        let listed = DrillPolicy {
            accounts: BTreeSet::from(["444455556666".to_owned()]),
            ..policy()
        };
        assert!(screened(&event, &listed, NOW).is_ok());
        let organization = DrillPolicy {
            organization: true,
            ..policy()
        };
        assert!(screened(&event, &organization, NOW).is_ok());
        let unknown_own = DrillPolicy {
            own_account: None,
            organization: true,
            ..policy()
        };
        assert_eq!(
            screened(&drill_event(OWN, "us-east-1", NOW), &unknown_own, NOW),
            Err(Refusal::ForeignAccount),
            "without its own account the detector admits nothing"
        );
        let mut anonymous = drill_event(OWN, "us-east-1", NOW);
        anonymous.as_object_mut().unwrap().remove("account");
        assert_eq!(screened(&anonymous, &policy(), NOW), Err(Refusal::ForeignAccount));
    }

    #[test]
    fn a_drill_dated_out_of_the_window_is_refused() {
        let event = drill_event(OWN, "us-east-1", NOW);
        assert!(screened(&event, &policy(), NOW + DRILL_WINDOW).is_ok());
        assert!(screened(&event, &policy(), NOW - DRILL_WINDOW).is_ok());
        assert_eq!(
            screened(&event, &policy(), NOW + DRILL_WINDOW + 1),
            Err(Refusal::OutOfWindow)
        );
        let mut far = event.clone();
        far["detail"]["eventTime"] = serde_json::json!("9999-12-31T23:59:59Z");
        assert_eq!(screened(&far, &policy(), NOW), Err(Refusal::OutOfWindow));
        far["detail"]["eventTime"] = serde_json::json!("whenever");
        assert_eq!(screened(&far, &policy(), NOW), Err(Refusal::OutOfWindow));
    }

    #[test]
    fn a_drill_that_is_not_a_failure_is_refused() {
        let mut issuance = drill_event(OWN, "us-east-1", NOW);
        let detail = issuance["detail"].as_object_mut().unwrap();
        detail.remove("errorCode");
        detail.remove("errorMessage");
        detail.insert("eventName".into(), "AssumeRole".into());
        detail.insert(
            "responseElements".into(),
            serde_json::json!({"credentials": {"accessKeyId": "ASIAREALKEY000000001"}}),
        );
        assert_eq!(screened(&issuance, &policy(), NOW), Err(Refusal::NotAFailure));
    }

    #[test]
    fn drill_groups_are_apart_from_every_real_group() {
        let real = group_key(
            &Some(OWN.into()),
            &Some("arn:aws:iam::111122223333:role/etl".into()),
            &Some("job".into()),
        );
        let drill = drill_group(real.clone());
        assert_ne!(drill, real);
        assert!(is_synthetic(&drill) && !is_synthetic(&real));
        assert_eq!(
            (drill.account.clone(), drill.session.clone()),
            (real.account.clone(), real.session.clone())
        );
        assert!(is_synthetic(&drill_group(GroupKey::default())));
        assert!(policy().is_drill_group(&drill));
        assert!(!policy().is_drill_group(&real));
    }

    #[test]
    fn a_real_drill_is_a_drill_role_session_named_as_the_drill_names_it() {
        let p = policy();
        let key = |account: &str, principal: &str, session: &str| {
            group_key(
                &Some(account.into()),
                &Some(principal.into()),
                &Some(session.into()),
            )
        };
        let role = "arn:aws:iam::111122223333:role/tools/tokenwatch-drill-us-east-1";
        assert!(p.is_real_drill(&key(OWN, role, "tokenwatch-drill-3f9a2c")));
        assert!(p.is_drill_group(&key(
            OWN,
            "arn:aws:sts::111122223333:assumed-role/tokenwatch-drill-us-east-1/tokenwatch-drill-1",
            "tokenwatch-drill-1"
        )));
        assert!(!p.is_real_drill(&key(OWN, role, "nightly")), "another session");
        assert!(!p.is_real_drill(&key("444455556666", role, "tokenwatch-drill-1")));
        assert!(!p.is_real_drill(&key(
            OWN,
            "arn:aws:iam::111122223333:role/etl",
            "tokenwatch-drill-1"
        )));
        assert!(!DrillPolicy::default().is_real_drill(&key(OWN, role, "tokenwatch-drill-1")));
    }
}
