//! From what is known of a group's failures and its session, decide the credential source, lease,
//! verdict and severity. Pure: the same facts give the same answer in the Lambda and offline.

use crate::classify::{IdentityHints, Issuance, role_name};
use crate::model::{CredentialSource, IdentityType, LeaseSource, Severity, StsCall, Verdict};
use crate::time::Epoch;

/// Tolerance around the lease end: STS and hosts disagree by a little.
pub const EDGE: i64 = 120;
/// A newer session issued this close to the first failure means the client refreshed.
pub const REFRESH_WINDOW: i64 = 300;
/// How late EventBridge may hand the detector a record and still be waited for: a decision that a late
/// record could change (a renewal that makes a refresh race, an issuing call that gives a shorter lease)
/// waits this long past its window (docs/rules.md, "Incidents").
pub const DELIVERY_ALLOWANCE: i64 = 300;

/// What the engine knows about one group when it decides.
#[derive(Clone, Debug, Default)]
pub struct Facts<'a> {
    /// The group's principal.
    pub principal: Option<&'a str>,
    /// The group's session name.
    pub session: Option<&'a str>,
    /// Failures counted (each eventID once).
    pub failures: u64,
    /// First and last failure time.
    pub first_failure: Epoch,
    /// Last failure time.
    pub last_failure: Epoch,
    /// Failures that are `AssumeRoleWith*` calls presenting an expired external token, and which call.
    pub token_call_failures: u64,
    /// The call of the first such failure.
    pub token_call: Option<StsCall>,
    /// Failures whose code is `RequestExpired`.
    pub request_expired_failures: u64,
    /// The first failure's `creationDate`.
    pub creation_date: Option<Epoch>,
    /// The first failure's access key.
    pub access_key_id: Option<&'a str>,
    /// The first failure's identity hints.
    pub hints: IdentityHints,
    /// When the first failure's session first failed, if before these failures (a later incident of the
    /// same session): the verdict is timed from then.
    pub session_failed_at: Option<Epoch>,
    /// The issuing call of the first failure's session, joined by access key.
    pub issuance: Option<&'a Issuance>,
    /// When sessions of the same account + principal + session name were issued.
    pub issued_times: &'a [Epoch],
}

/// A session lifetime and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Seconds.
    pub seconds: u64,
    /// Its source.
    pub source: LeaseSource,
}

/// The engine's decision about a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    /// See [`Verdict`].
    pub verdict: Verdict,
    /// See [`CredentialSource`].
    pub credential_source: CredentialSource,
    /// When the failing session was issued.
    pub issued_at: Option<Epoch>,
    /// Its lease; `None` for a web-identity token failure.
    pub lease: Option<Lease>,
    /// First failure minus `issued_at`.
    pub age_at_first_failure: Option<i64>,
    /// The report's severity: the verdict's, raised by volume (see [`severity`]).
    pub severity: Severity,
    /// The severity an incident of the group pages at (see [`paging_severity`]).
    pub paging_severity: Severity,
}

/// Decides per docs/rules.md.
pub fn assess(f: &Facts) -> Assessment {
    let credential_source = credential_source(f);
    if f.failures > 0 && f.token_call_failures == f.failures {
        return Assessment {
            verdict: Verdict::WebIdentityTokenExpired,
            credential_source,
            issued_at: None,
            lease: None,
            age_at_first_failure: None,
            severity: severity(Verdict::WebIdentityTokenExpired, f),
            paging_severity: paging_severity(Verdict::WebIdentityTokenExpired, f),
        };
    }
    let issued_at = f.creation_date.or(f.issuance.map(|i| i.issued_at));
    let lease = lease(f.issuance, credential_source);
    let age = issued_at.map(|t| f.first_failure - t);
    // A session that failed before this incident keeps the verdict of its first failure: a copied
    // credential used again after a quiet hour is the same stale cache, not a process that slept.
    let timed_from = f
        .session_failed_at
        .map_or(f.first_failure, |t| t.min(f.first_failure));
    let verdict = match issued_at {
        None => Verdict::Unknown,
        Some(issued) => timing_verdict(f, issued, timed_from - issued, lease.seconds as i64),
    };
    Assessment {
        verdict,
        credential_source,
        issued_at,
        lease: Some(lease),
        age_at_first_failure: age,
        severity: severity(verdict, f),
        paging_severity: paging_severity(verdict, f),
    }
}

fn timing_verdict(f: &Facts, issued_at: Epoch, age: i64, lease: i64) -> Verdict {
    let grace = 1800.max(lease / 10);
    if age < lease - EDGE {
        return Verdict::ClockSkew;
    }
    let last_age = f.last_failure - issued_at;
    let first = issued_at + age;
    let refreshed = f
        .issued_times
        .iter()
        .any(|&t| t > issued_at && (t - first).abs() <= REFRESH_WINDOW);
    if last_age <= lease + EDGE && refreshed {
        Verdict::RefreshRace
    } else if age <= lease + grace {
        Verdict::StaleCache
    } else {
        Verdict::PausedProcess
    }
}

/// Where the session came from, first rule that applies (docs/rules.md).
pub fn credential_source(f: &Facts) -> CredentialSource {
    let issued_by = f.issuance.map(|i| i.call);
    let called = f.token_call.or(issued_by);
    if called == Some(StsCall::AssumeRoleWithWebIdentity) || f.hints.web_identity {
        return CredentialSource::WebIdentity;
    }
    if f.principal
        .and_then(role_name)
        .is_some_and(|r| r.starts_with("AWSReservedSSO_"))
    {
        return CredentialSource::Sso;
    }
    if called == Some(StsCall::AssumeRoleWithSaml) {
        return CredentialSource::Saml;
    }
    if f.hints.ec2_role_delivery || f.session.is_some_and(is_instance_id) {
        return CredentialSource::InstanceProfile;
    }
    if f.issuance.is_some_and(|i| i.for_container) || f.session.is_some_and(is_ecs_task_id) {
        return CredentialSource::Container;
    }
    if f.issuance.is_some_and(|i| i.chained) {
        return CredentialSource::RoleChaining;
    }
    let kind = f.hints.identity_type;
    let temporary_key = f.access_key_id.is_some_and(|k| k.starts_with("ASIA"));
    if (kind == Some(IdentityType::IamUser) && temporary_key) || issued_by == Some(StsCall::GetSessionToken) {
        return CredentialSource::SessionToken;
    }
    if kind == Some(IdentityType::FederatedUser) || issued_by == Some(StsCall::GetFederationToken) {
        return CredentialSource::FederationToken;
    }
    if kind == Some(IdentityType::AssumedRole) || issued_by == Some(StsCall::AssumeRole) {
        return CredentialSource::AssumeRole;
    }
    CredentialSource::Unknown
}

/// An ECS task id used as the session name, as ECS names task-role sessions: 32 lowercase hex digits
/// (the task ARN's id) or a UUID (older tasks).
fn is_ecs_task_id(session: &str) -> bool {
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let uuid = session.len() == 36
        && session.split('-').map(str::len).eq([8, 4, 4, 4, 12])
        && hex(&session.replace('-', ""));
    (session.len() == 32 && hex(session)) || uuid
}

/// `i-` followed by 8 or 17 hex digits: an EC2 instance id used as a role session name.
fn is_instance_id(session: &str) -> bool {
    session
        .strip_prefix("i-")
        .is_some_and(|h| (8..=17).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The longest session STS issues (36 h: `GetSessionToken` and `GetFederationToken`; roles allow at
/// most 12 h). A `durationSeconds` or an `expiration − eventTime` above it is ignored (docs/rules.md,
/// "Age and lease").
pub const MAX_LEASE: u64 = 129_600;

/// The session's lifetime, first rule that applies (docs/rules.md).
pub fn lease(issuance: Option<&Issuance>, source: CredentialSource) -> Lease {
    if source == CredentialSource::RoleChaining {
        return match issuance.and_then(|i| i.duration_seconds) {
            Some(d) if d <= 3600 => Lease {
                seconds: d,
                source: LeaseSource::DurationSeconds,
            },
            _ => Lease {
                seconds: 3600,
                source: LeaseSource::RoleChainingCap,
            },
        };
    }
    // A lease STS cannot issue is no evidence of one: a `durationSeconds` or `expiration` past
    // MAX_LEASE would turn a stale cache into a clock skew, so it is passed over like a missing one.
    if let Some(d) = issuance
        .and_then(|i| i.duration_seconds)
        .filter(|&d| d <= MAX_LEASE)
    {
        return Lease {
            seconds: d,
            source: LeaseSource::DurationSeconds,
        };
    }
    if let Some(i) = issuance
        && let Some(exp) = i.expiration
        && exp > i.issued_at
        && exp.saturating_sub(i.issued_at) <= MAX_LEASE as i64 + 5
    {
        let raw = exp - i.issued_at;
        let minute = (raw + 30) / 60 * 60;
        let seconds = if (raw - minute).abs() <= 5 { minute } else { raw };
        return Lease {
            seconds: seconds as u64,
            source: LeaseSource::Expiration,
        };
    }
    let (seconds, source) = source.default_lease();
    Lease { seconds, source }
}

/// How urgent, per the severity table in docs/rules.md: the verdict's severity, raised by volume.
pub fn severity(verdict: Verdict, f: &Facts) -> Severity {
    let base = verdict_severity(verdict, f);
    let many = f.failures >= 1000;
    let raised = match verdict {
        Verdict::StaleCache if many => Severity::Critical,
        Verdict::PausedProcess | Verdict::WebIdentityTokenExpired | Verdict::Unknown if many => {
            Severity::High
        }
        Verdict::ClockSkew if f.failures >= 100 => Severity::Medium,
        _ => base,
    };
    lowered_for_request_expired(base.max(raised), f)
}

/// The severity an incident pages at: the verdict's and its duration's, never its volume, so that a
/// storm of failures from one session is one page (its count is in the message).
pub fn paging_severity(verdict: Verdict, f: &Facts) -> Severity {
    lowered_for_request_expired(verdict_severity(verdict, f), f)
}

fn verdict_severity(verdict: Verdict, f: &Facts) -> Severity {
    match verdict {
        Verdict::StaleCache if f.last_failure - f.first_failure >= 7200 => Severity::Critical,
        Verdict::StaleCache => Severity::High,
        Verdict::PausedProcess | Verdict::WebIdentityTokenExpired | Verdict::Unknown => Severity::Medium,
        Verdict::ClockSkew | Verdict::NearMiss => Severity::Low,
        Verdict::RefreshRace => Severity::Info,
    }
}

fn lowered_for_request_expired(s: Severity, f: &Facts) -> Severity {
    if f.failures > 0 && f.request_expired_failures == f.failures {
        s.lower()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUED: Epoch = 1_793_606_400; // 2026-11-02T08:00:00Z

    fn assume_role(duration: Option<u64>) -> Issuance {
        Issuance {
            access_key_id: "ASIAEXAMPLE".into(),
            account: Some("123456789012".into()),
            principal: Some("arn:aws:iam::123456789012:role/r".into()),
            session: Some("s".into()),
            issued_at: ISSUED,
            duration_seconds: duration,
            expiration: Some(ISSUED + 3600),
            call: StsCall::AssumeRole,
            chained: false,
            for_container: false,
        }
    }

    fn facts(first_age: i64, last_age: i64) -> Facts<'static> {
        Facts {
            principal: Some("arn:aws:iam::123456789012:role/r"),
            session: Some("s"),
            failures: 10,
            first_failure: ISSUED + first_age,
            last_failure: ISSUED + last_age,
            creation_date: Some(ISSUED),
            hints: IdentityHints {
                identity_type: Some(IdentityType::AssumedRole),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn failures_from_the_lease_end_on_are_a_stale_cache() {
        let a = assess(&facts(3614, 5500));
        assert_eq!(a.verdict, Verdict::StaleCache);
        assert_eq!(
            a.lease,
            Some(Lease {
                seconds: 3600,
                source: LeaseSource::DefaultAssumeRole
            })
        );
        assert_eq!(a.age_at_first_failure, Some(3614));
        assert_eq!(a.severity, Severity::High);
        assert_eq!(
            assess(&facts(3600 - 100, 4000)).verdict,
            Verdict::StaleCache,
            "just before the end"
        );
        assert_eq!(
            assess(&facts(3600 + 1800, 9000)).verdict,
            Verdict::StaleCache,
            "end of the grace"
        );
    }

    #[test]
    fn failures_long_after_the_lease_are_not_a_stale_cache() {
        assert_eq!(assess(&facts(3600 + 1801, 9000)).verdict, Verdict::PausedProcess);
        assert_eq!(
            assess(&facts(5 * 3600, 5 * 3600 + 60)).verdict,
            Verdict::PausedProcess
        );
    }

    #[test]
    fn the_grace_grows_with_long_leases() {
        let mut f = facts(43_200 + 4000, 43_200 + 5000);
        f.hints.identity_type = Some(IdentityType::IamUser);
        f.access_key_id = Some("ASIAEXAMPLE");
        let a = assess(&f);
        assert_eq!(a.credential_source, CredentialSource::SessionToken);
        assert_eq!(a.lease.unwrap().seconds, 43_200);
        assert_eq!(a.verdict, Verdict::StaleCache, "grace is 10 % of 12 h = 72 min");
    }

    #[test]
    fn failures_well_inside_the_lease_are_clock_skew() {
        assert_eq!(assess(&facts(600, 700)).verdict, Verdict::ClockSkew);
        assert_ne!(assess(&facts(3600 - 120, 3700)).verdict, Verdict::ClockSkew);
    }

    #[test]
    fn a_late_refresh_that_recovers_is_a_refresh_race() {
        let issued = [ISSUED, ISSUED + 3600 + 40];
        let mut f = facts(3605, 3660);
        f.issued_times = &issued;
        let a = assess(&f);
        assert_eq!(a.verdict, Verdict::RefreshRace);
        assert_eq!(a.severity, Severity::Info);
    }

    #[test]
    fn no_refresh_race_without_a_newer_session_or_when_failures_go_on() {
        let only_old = [ISSUED];
        let mut f = facts(3605, 3660);
        f.issued_times = &only_old;
        assert_eq!(assess(&f).verdict, Verdict::StaleCache);
        let renewed = [ISSUED, ISSUED + 3640];
        let mut f = facts(3605, 3600 + 900);
        f.issued_times = &renewed;
        assert_eq!(
            assess(&f).verdict,
            Verdict::StaleCache,
            "failures went on after the renewal"
        );
        let late = [ISSUED, ISSUED + 3605 + 301];
        let mut f = facts(3605, 3660);
        f.issued_times = &late;
        assert_eq!(assess(&f).verdict, Verdict::StaleCache, "renewed too long after");
    }

    #[test]
    fn expired_web_identity_tokens_have_their_own_verdict() {
        let mut f = facts(0, 0);
        f.creation_date = None;
        f.token_call_failures = f.failures;
        f.token_call = Some(StsCall::AssumeRoleWithWebIdentity);
        let a = assess(&f);
        assert_eq!(a.verdict, Verdict::WebIdentityTokenExpired);
        assert_eq!(a.credential_source, CredentialSource::WebIdentity);
        assert_eq!((a.lease, a.issued_at, a.age_at_first_failure), (None, None, None));
        f.token_call_failures = f.failures - 1;
        assert_ne!(
            assess(&f).verdict,
            Verdict::WebIdentityTokenExpired,
            "only when every failure is one"
        );
    }

    #[test]
    fn without_creation_date_or_issuing_call_the_verdict_is_unknown() {
        let mut f = facts(3614, 4000);
        f.creation_date = None;
        let a = assess(&f);
        assert_eq!(a.verdict, Verdict::Unknown);
        assert_eq!(a.age_at_first_failure, None);
        let issuance = assume_role(Some(1800));
        f.issuance = Some(&issuance);
        let a = assess(&f);
        assert_eq!(a.verdict, Verdict::PausedProcess, "age 3614 s of a 1800 s lease");
        assert_eq!(
            a.lease,
            Some(Lease {
                seconds: 1800,
                source: LeaseSource::DurationSeconds
            })
        );
    }

    #[test]
    fn an_expiration_in_9999_no_longer_turns_a_stale_cache_into_clock_skew() {
        // 9999-12-31T23:59:59Z: no session lasts that long, so the value says nothing about the lease.
        let mut i = assume_role(None);
        i.expiration = Some(253_402_300_799);
        let mut f = facts(3614, 4000);
        f.issuance = Some(&i);
        let a = assess(&f);
        assert_eq!(
            (a.verdict, a.lease.map(|l| l.source)),
            (Verdict::StaleCache, Some(LeaseSource::DefaultAssumeRole))
        );
        // The longest lease STS issues (36 h) is still taken, within the 5 s rounding.
        i.expiration = Some(ISSUED + MAX_LEASE as i64 + 3);
        assert_eq!(
            lease(Some(&i), CredentialSource::SessionToken),
            Lease {
                seconds: MAX_LEASE,
                source: LeaseSource::Expiration
            }
        );
        i.expiration = Some(ISSUED + MAX_LEASE as i64 + 60);
        assert_eq!(
            lease(Some(&i), CredentialSource::SessionToken).source,
            LeaseSource::DefaultSessionToken
        );
    }

    #[test]
    fn a_duration_seconds_past_36_hours_is_ignored_like_a_missing_one() {
        let mut i = assume_role(Some(MAX_LEASE + 1));
        i.expiration = None;
        assert_eq!(
            lease(Some(&i), CredentialSource::AssumeRole).source,
            LeaseSource::DefaultAssumeRole
        );
        i.expiration = Some(ISSUED + 7200);
        assert_eq!(
            lease(Some(&i), CredentialSource::AssumeRole),
            Lease {
                seconds: 7200,
                source: LeaseSource::Expiration
            },
            "the next rule applies"
        );
        i.duration_seconds = Some(MAX_LEASE);
        assert_eq!(lease(Some(&i), CredentialSource::AssumeRole).seconds, MAX_LEASE);
    }

    #[test]
    fn lease_prefers_duration_then_expiration_then_default() {
        let mut i = assume_role(Some(900));
        assert_eq!(
            lease(Some(&i), CredentialSource::AssumeRole).source,
            LeaseSource::DurationSeconds
        );
        i.duration_seconds = None;
        i.expiration = Some(ISSUED + 43_199);
        assert_eq!(
            lease(Some(&i), CredentialSource::AssumeRole),
            Lease {
                seconds: 43_200,
                source: LeaseSource::Expiration
            }
        );
        i.expiration = None;
        assert_eq!(
            lease(Some(&i), CredentialSource::Sso),
            Lease {
                seconds: 3600,
                source: LeaseSource::DefaultSso
            }
        );
        i.duration_seconds = Some(7200);
        assert_eq!(
            lease(Some(&i), CredentialSource::RoleChaining),
            Lease {
                seconds: 3600,
                source: LeaseSource::RoleChainingCap
            }
        );
    }

    #[test]
    fn credential_sources_follow_their_rules() {
        let base = facts(3614, 4000);
        assert_eq!(credential_source(&base), CredentialSource::AssumeRole);

        let mut f = base.clone();
        f.principal = Some("arn:aws:iam::1:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123");
        assert_eq!(credential_source(&f), CredentialSource::Sso);

        let mut f = base.clone();
        f.session = Some("i-0abcd1234ef567890");
        assert_eq!(credential_source(&f), CredentialSource::InstanceProfile);
        f.session = Some("i-am-not-an-instance");
        assert_eq!(credential_source(&f), CredentialSource::AssumeRole);

        let mut chained = assume_role(None);
        chained.chained = true;
        let mut f = base.clone();
        f.issuance = Some(&chained);
        assert_eq!(credential_source(&f), CredentialSource::RoleChaining);

        let mut f = base.clone();
        f.hints.identity_type = Some(IdentityType::FederatedUser);
        assert_eq!(credential_source(&f), CredentialSource::FederationToken);

        let mut f = base.clone();
        f.hints.identity_type = Some(IdentityType::IamUser);
        f.access_key_id = Some("AKIAEXAMPLE");
        assert_eq!(
            credential_source(&f),
            CredentialSource::Unknown,
            "a long-term key is no session"
        );
    }

    #[test]
    fn severity_rises_with_volume_and_falls_for_request_expired() {
        let mut f = facts(3614, 4000);
        f.failures = 1000;
        assert_eq!(assess(&f).severity, Severity::Critical);
        let mut f = facts(600, 700);
        assert_eq!(assess(&f).severity, Severity::Low);
        f.request_expired_failures = f.failures;
        assert_eq!(assess(&f).severity, Severity::Info);
    }
}
