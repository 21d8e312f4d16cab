//! The group item's part of a `record_failures` transaction, planned from a *view* of the stored group.
//!
//! DynamoDB has `ADD` for counters and sets but no min, max or "longest": first/last failure, a client's
//! first sighting, the fullest spelling of the principal and the caps on listed values all depend on what
//! is stored. Rather than read-modify-write, the plan guesses from the view which way each comparison goes
//! (the stored first failure is earlier than the new ones, say), writes accordingly, and puts that guess in
//! the condition (`first_failure <= :t`). If the guess holds, the update is exact, whatever else changed
//! since the view was taken; if not, the transaction is cancelled, DynamoDB hands back the stored item
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`) and the caller plans again from it. The view only
//! decides how many round trips a batch costs, never what is stored.
//!
//! Every rule mirrors [`FailureStats::merge`] (min/max, ties keep what is stored, a strictly longer
//! principal wins, capped lists admit in sorted order while there is room), so a successful plan leaves
//! exactly `stored.merge(delta)`.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::AttributeValue;
use tokenwatch_core::incident::{GroupState, Incident, IncidentId};
use tokenwatch_core::ports::Change;
use tokenwatch_core::stats::{FailureStats, GroupKey, MAX_EVENT_NAMES, MAX_LISTED};
use tokenwatch_core::time::Epoch;

use super::expr::Expr;
use super::item::*;

/// The group item's update and what the group becomes if it applies to the state the view describes.
pub(crate) struct Plan {
    pub expr: Expr,
    pub next: GroupState,
}

/// Plans the update of `key`'s group item adding `delta` (the new failures' stats) under `change`.
/// `view` is what the group is believed to hold (default: nothing). `batch_time` (the latest time among the
/// batch's failures, duplicates included) gives the item a TTL when no new failure does.
/// Every group write names the schema and the group's key parts, so that an item read without its key
/// (a scan, the open-incidents index) still says whose it is.
pub(crate) fn set_identity(e: &mut Expr, key: &GroupKey) {
    e.set(SCHEMA, n(SCHEMA_VERSION));
    for (name, part) in [
        (KEY_ACCOUNT, &key.account),
        (KEY_PRINCIPAL, &key.principal),
        (KEY_SESSION, &key.session),
    ] {
        if let Some(p) = part {
            e.set(name, s(p));
        }
    }
}

pub(crate) fn group_update(
    key: &GroupKey,
    view: &GroupState,
    delta: &FailureStats,
    change: Change<'_>,
    batch_time: Option<Epoch>,
) -> Plan {
    let mut e = Expr::default();
    set_identity(&mut e, key);
    let next = match change {
        Change::Add { incident } => add(&mut e, view, delta, incident, batch_time),
        Change::Restart {
            expected,
            incident,
            session_failed_at,
        } => restart(
            &mut e,
            view,
            delta,
            Restarted {
                expected,
                incident,
                session_failed_at,
            },
            batch_time,
        ),
    };
    Plan {
        expr: e,
        next: GroupState {
            key: key.clone(),
            ..next
        },
    }
}

fn add(
    e: &mut Expr,
    view: &GroupState,
    delta: &FailureStats,
    incident: &IncidentId,
    batch_time: Option<Epoch>,
) -> GroupState {
    let mut next = view.clone();
    next.stats.merge(delta.clone());

    let id = e.name(INCIDENT_ID);
    if view.incident.id.is_some() {
        e.require(format!("attribute_exists({id})"));
    } else {
        e.require(format!("attribute_not_exists({id})"));
        e.set(INCIDENT_ID, s(incident.to_string()));
        e.set(OPEN, s(OPEN_VALUE));
        next.incident.id = Some(incident.clone());
    }

    if delta.failures == 0 {
        if let Some(t) = batch_time {
            e.set_if_absent(EXPIRES_AT, n(t + GROUP_TTL));
        }
        return next;
    }

    add_counts(e, delta);
    let stored = &view.stats;
    let first = e.name(FIRST);
    if stored.failures == 0 {
        // Nothing stored yet: the new failures' first/last/principal are the group's.
        e.require(format!("attribute_not_exists({first})"));
        set_first(e, delta);
        set_last(e, delta.last);
        if let Some(p) = &delta.principal {
            e.set(PRINCIPAL, s(p));
        }
    } else {
        let t = e.n(delta.first);
        if delta.first < stored.first {
            e.require(format!("{first} > {t}"));
            set_first(e, delta);
        } else {
            e.require(format!("{first} <= {t}"));
        }
        let last = e.name(LAST);
        let t = e.n(delta.last);
        if delta.last > stored.last {
            // `<=`, not `<`: rewriting an equal last failure changes nothing, and concurrent writers in a
            // storm often reach the same second.
            e.require(format!("{last} <= {t}"));
            set_last(e, delta.last);
        } else {
            e.require(format!("{last} >= {t}"));
        }
        if let Some(p) = &delta.principal {
            let name = e.name(PRINCIPAL);
            let len = e.n(p.len());
            if Some(p.len()) > stored.principal.as_ref().map(String::len) {
                e.require(format!("attribute_not_exists({name}) OR size({name}) < {len}"));
                e.set(PRINCIPAL, s(p));
            } else {
                e.require(format!("size({name}) >= {len}"));
            }
        }
    }

    for (client, (_, seen)) in &delta.clients {
        let attr = format!("{CLIENT_FIRST_PREFIX}{client}");
        let name = e.name(&attr);
        let t = e.n(seen);
        match stored.clients.get(client) {
            Some((_, stored_seen)) if stored_seen <= seen => e.require(format!("{name} <= {t}")),
            _ => {
                e.require(format!("attribute_not_exists({name}) OR {name} >= {t}"));
                e.set(&attr, n(seen));
            }
        }
    }

    let view_calls: BTreeSet<String> = stored.event_names.keys().cloned().collect();
    let delta_calls: Vec<String> = delta.event_names.keys().cloned().collect();
    let admitted = capped(
        e,
        view,
        CALL_NAMES,
        &view_calls,
        &delta_calls,
        MAX_EVENT_NAMES,
        |len, name| len < MAX_EVENT_NAMES || view_calls.contains(name),
    );
    for call in &admitted {
        e.add(&format!("{CALL_PREFIX}{call}"), n(delta.event_names[call]));
    }
    if !admitted.is_empty() {
        e.add(CALL_NAMES, ss(&admitted));
    }
    for (attr, stored_set, delta_set) in [
        (SOURCE_IPS, &stored.source_ips, &delta.source_ips),
        (ACCESS_KEY_IDS, &stored.access_key_ids, &delta.access_key_ids),
        (
            REQUESTED_SESSIONS,
            &stored.requested_sessions,
            &delta.requested_sessions,
        ),
    ] {
        let values: Vec<String> = delta_set.iter().cloned().collect();
        let admitted = capped(e, view, attr, stored_set, &values, MAX_LISTED, |len, _| {
            len < MAX_LISTED
        });
        if !admitted.is_empty() {
            e.add(attr, ss(&admitted));
        }
    }
    next
}

/// Which of `new` (sorted) a capped list admits, as [`FailureStats::merge`] does: each in turn while
/// `admits(current length, value)`. When even the worst case fits (nothing of `new` stored yet), the
/// condition only bounds the stored size; otherwise the plan depends on the exact stored list, which the
/// condition pins by its size (within one incident such lists only grow, and the view never holds a value
/// the table lacks, so equal sizes mean equal lists) and by the incident id.
fn capped(
    e: &mut Expr,
    view: &GroupState,
    attr: &str,
    stored: &BTreeSet<String>,
    new: &[String],
    cap: usize,
    admits: impl Fn(usize, &String) -> bool,
) -> Vec<String> {
    if new.is_empty() {
        return Vec::new();
    }
    let name = e.name(attr);
    if stored.len() + new.len() <= cap {
        let room = e.n(cap - new.len());
        e.require(format!("attribute_not_exists({name}) OR size({name}) <= {room}"));
        return new.to_vec();
    }
    if stored.is_empty() {
        e.require(format!("attribute_not_exists({name})"));
    } else {
        let len = e.n(stored.len());
        e.require(format!("size({name}) = {len}"));
    }
    if let Some(id) = &view.incident.id {
        let (id_name, id_value) = (e.name(INCIDENT_ID), e.s(id.to_string()));
        e.require(format!("{id_name} = {id_value}"));
    }
    let mut current = stored.clone();
    let mut admitted = Vec::new();
    for value in new {
        if admits(current.len(), value) {
            current.insert(value.clone());
            admitted.push(value.clone());
        }
    }
    admitted
}

fn add_counts(e: &mut Expr, delta: &FailureStats) {
    e.add(FAILURES, n(delta.failures));
    if delta.token_call_failures > 0 {
        e.add(TOKEN_CALL_FAILURES, n(delta.token_call_failures));
    }
    if delta.request_expired_failures > 0 {
        e.add(REQUEST_EXPIRED_FAILURES, n(delta.request_expired_failures));
    }
    for (code, count) in &delta.error_codes {
        e.add(&format!("{CODE_PREFIX}{code}"), n(count));
    }
    for (client, (count, _)) in &delta.clients {
        e.add(&format!("{CLIENT_PREFIX}{client}"), n(count));
    }
}

fn set_first(e: &mut Expr, stats: &FailureStats) {
    let f = &stats.first_failure;
    e.set(FIRST, n(stats.first));
    set_or_remove(e, FIRST_ACCESS_KEY_ID, f.access_key_id.as_ref().map(s));
    set_or_remove(e, FIRST_CREATION_DATE, f.creation_date.map(n));
    set_or_remove(
        e,
        FIRST_IDENTITY_TYPE,
        f.hints.identity_type.map(|t| s(t.as_str())),
    );
    e.set(
        FIRST_EC2_ROLE_DELIVERY,
        AttributeValue::Bool(f.hints.ec2_role_delivery),
    );
    e.set(FIRST_WEB_IDENTITY, AttributeValue::Bool(f.hints.web_identity));
    set_or_remove(e, FIRST_TOKEN_CALL, f.token_call.map(|c| s(c.as_str())));
}

fn set_last(e: &mut Expr, last: Epoch) {
    e.set(LAST, n(last));
    e.set(EXPIRES_AT, n(last + GROUP_TTL));
}

fn set_or_remove(e: &mut Expr, name: &str, value: Option<AttributeValue>) {
    match value {
        Some(v) => e.set(name, v),
        None => e.remove(name),
    }
}

/// What a restart replaces the incident with.
struct Restarted<'a> {
    expected: Option<&'a IncidentId>,
    incident: &'a IncidentId,
    session_failed_at: Option<Epoch>,
}

/// Replaces the group's stats with `delta`'s and starts `incident`, if the stored incident is still
/// `expected`. The attributes of the old counters must be removed by name, so the plan also pins the
/// stored failure count to the view's (a view of incident `expected`): within an incident every new
/// counter comes with new failures, so an equal count means the view knows every counter attribute there
/// is.
fn restart(
    e: &mut Expr,
    view: &GroupState,
    delta: &FailureStats,
    to: Restarted<'_>,
    batch_time: Option<Epoch>,
) -> GroupState {
    let Restarted {
        expected,
        incident,
        session_failed_at,
    } = to;
    let id = e.name(INCIDENT_ID);
    match expected {
        Some(x) => {
            let x = e.s(x.to_string());
            e.require(format!("{id} = {x}"));
        }
        None => e.require(format!("attribute_not_exists({id})")),
    }
    // The count proves the view knows every counter only within one incident: a view of an earlier
    // incident (this process's, before another writer restarted the group) can have as many failures and
    // other counters. Such a view is not trusted; the plan then holds only for a group without failures,
    // and otherwise the cancellation hands back the stored item to plan from.
    let none = FailureStats::default();
    let stored = if view.incident.id.as_ref() == expected {
        &view.stats
    } else {
        &none
    };
    if stored.failures > 0 {
        let (name, count) = (e.name(FAILURES), e.n(stored.failures));
        e.require(format!("{name} = {count}"));
    } else {
        let first = e.name(FIRST);
        e.require(format!("attribute_not_exists({first})"));
    }

    e.set(FAILURES, n(delta.failures));
    e.set(TOKEN_CALL_FAILURES, n(delta.token_call_failures));
    e.set(REQUEST_EXPIRED_FAILURES, n(delta.request_expired_failures));
    if delta.failures > 0 {
        set_first(e, delta);
        set_last(e, delta.last);
        set_or_remove(e, PRINCIPAL, delta.principal.as_ref().map(s));
    } else {
        for attr in [
            FIRST,
            LAST,
            FIRST_ACCESS_KEY_ID,
            FIRST_CREATION_DATE,
            FIRST_IDENTITY_TYPE,
            FIRST_EC2_ROLE_DELIVERY,
            FIRST_WEB_IDENTITY,
            FIRST_TOKEN_CALL,
            PRINCIPAL,
        ] {
            e.remove(attr);
        }
        if let Some(t) = batch_time {
            e.set_if_absent(EXPIRES_AT, n(t + GROUP_TTL));
        }
    }

    for (code, count) in &delta.error_codes {
        e.set(&format!("{CODE_PREFIX}{code}"), n(count));
    }
    for code in stored
        .error_codes
        .keys()
        .filter(|c| !delta.error_codes.contains_key(*c))
    {
        e.remove(&format!("{CODE_PREFIX}{code}"));
    }
    for (call, count) in &delta.event_names {
        e.set(&format!("{CALL_PREFIX}{call}"), n(count));
    }
    for call in stored
        .event_names
        .keys()
        .filter(|c| !delta.event_names.contains_key(*c))
    {
        e.remove(&format!("{CALL_PREFIX}{call}"));
    }
    set_or_remove(
        e,
        CALL_NAMES,
        (!delta.event_names.is_empty()).then(|| ss(delta.event_names.keys())),
    );
    set_or_remove(
        e,
        SOURCE_IPS,
        (!delta.source_ips.is_empty()).then(|| ss(&delta.source_ips)),
    );
    set_or_remove(
        e,
        ACCESS_KEY_IDS,
        (!delta.access_key_ids.is_empty()).then(|| ss(&delta.access_key_ids)),
    );
    set_or_remove(
        e,
        REQUESTED_SESSIONS,
        (!delta.requested_sessions.is_empty()).then(|| ss(&delta.requested_sessions)),
    );
    for (client, (count, seen)) in &delta.clients {
        e.set(&format!("{CLIENT_PREFIX}{client}"), n(count));
        e.set(&format!("{CLIENT_FIRST_PREFIX}{client}"), n(seen));
    }
    for client in stored.clients.keys().filter(|c| !delta.clients.contains_key(*c)) {
        e.remove(&format!("{CLIENT_PREFIX}{client}"));
        e.remove(&format!("{CLIENT_FIRST_PREFIX}{client}"));
    }

    e.set(INCIDENT_ID, s(incident.to_string()));
    e.set(OPEN, s(OPEN_VALUE));
    e.remove(PAGED);
    e.remove(RESOLVED_AT);
    set_or_remove(e, FIRST_SESSION_FAILED_AT, session_failed_at.map(n));
    let mut stats = delta.clone();
    stats.first_failure.session_failed_at = session_failed_at;
    GroupState {
        key: view.key.clone(),
        stats,
        issued_times: view.issued_times.clone(),
        issued_keys: view.issued_keys.clone(),
        incident: Incident {
            id: Some(incident.clone()),
            paged: None,
            resolved_at: None,
        },
        history: view.history.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(name: &str) -> IncidentId {
        IncidentId {
            group: name.into(),
            opened_at: 0,
        }
    }
    use tokenwatch_core::classify::Failure;
    use tokenwatch_core::model::Client;

    fn failure(time: Epoch, call: &str) -> Failure {
        Failure {
            event_id: Some(format!("e{time}{call}")),
            time,
            principal: Some("etl".into()),
            error_code: "ExpiredToken".into(),
            event_name: call.into(),
            ..Default::default()
        }
    }

    fn stats(failures: &[Failure]) -> FailureStats {
        let mut s = FailureStats::default();
        for f in failures {
            s.add(f.clone());
        }
        s
    }

    fn viewing(failures: &[Failure]) -> GroupState {
        GroupState {
            stats: stats(failures),
            incident: Incident {
                id: Some(inc("inc")),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn condition(plan: &Plan) -> String {
        let mut c = plan.expr.condition_expression().unwrap_or_default();
        // Spell placeholders out so that assertions read like the expression DynamoDB evaluates.
        for (p, name) in plan.expr.names().unwrap_or_default() {
            c = c
                .replace(&format!("{p})"), &format!("{name})"))
                .replace(&format!("{p} "), &format!("{name} "));
        }
        c
    }

    #[test]
    fn a_first_batch_requires_an_empty_group() {
        let delta = stats(&[failure(100, "s3:A")]);
        let plan = group_update(
            &GroupKey::default(),
            &GroupState::default(),
            &delta,
            Change::Add {
                incident: &inc("inc"),
            },
            Some(100),
        );
        let c = condition(&plan);
        assert!(
            c.contains("attribute_not_exists(incident_id)")
                && c.contains("attribute_not_exists(first_failure)"),
            "{c}"
        );
        assert_eq!(plan.next.stats, delta);
        assert_eq!(
            plan.next.incident.id.as_ref().map(|i| i.group.as_str()),
            Some("inc")
        );
    }

    #[test]
    fn later_failures_extend_last_and_keep_first() {
        let view = viewing(&[failure(100, "s3:A")]);
        let delta = stats(&[failure(200, "s3:A")]);
        let plan = group_update(
            &GroupKey::default(),
            &view,
            &delta,
            Change::Add { incident: &inc("x") },
            Some(200),
        );
        let c = condition(&plan);
        assert!(
            c.contains("first_failure <= ") && c.contains("last_failure <= "),
            "{c}"
        );
        assert!(!plan.expr.update_expression().contains("if_not_exists"));
        assert_eq!(
            (
                plan.next.stats.first,
                plan.next.stats.last,
                plan.next.stats.failures
            ),
            (100, 200, 2)
        );
        assert_eq!(
            plan.next.incident.id.as_ref().map(|i| i.group.as_str()),
            Some("inc"),
            "Add keeps the stored incident"
        );
    }

    #[test]
    fn a_full_list_pins_its_size_and_admits_only_what_merge_admits() {
        let names: Vec<Failure> = (0..MAX_EVENT_NAMES)
            .map(|i| failure(100, &format!("s3:Call{i:03}")))
            .collect();
        let view = viewing(&names);
        let delta = stats(&[failure(150, "s3:Call007"), failure(150, "s3:ZZZ")]);
        let plan = group_update(
            &GroupKey::default(),
            &view,
            &delta,
            Change::Add { incident: &inc("x") },
            None,
        );
        assert!(
            condition(&plan).contains("size(call_names) = "),
            "{}",
            condition(&plan)
        );
        let mut expected = view.stats.clone();
        expected.merge(delta);
        assert_eq!(plan.next.stats, expected);
        assert!(!plan.next.stats.event_names.contains_key("s3:ZZZ"));
        assert_eq!(plan.next.stats.event_names["s3:Call007"], 2);
    }

    #[test]
    fn the_largest_plans_stay_within_the_4_kb_expression_limit() {
        let old: Vec<Failure> = (0..MAX_EVENT_NAMES)
            .map(|i| Failure {
                error_code: format!("Svc{i}ExpiredToken"),
                ..failure(100, &format!("service-name:OldCall{i:03}"))
            })
            .collect();
        let view = viewing(&old);
        let new: Vec<Failure> = (0..99)
            .map(|i| Failure {
                client: Client::ALL.get(i % Client::ALL.len()).copied(),
                source_ip: Some(format!("10.0.0.{i}")),
                access_key_id: Some(format!("ASIAEXAMPLE{i:09}")),
                ..failure(200 + i as Epoch, &format!("service-name:NewCall{i:03}"))
            })
            .collect();
        let delta = stats(&new);
        let small = viewing(&old[..1]);
        let restart = Change::Restart {
            expected: Some(&inc("inc")),
            incident: &inc("inc2"),
            session_failed_at: None,
        };
        for (view, change) in [
            (
                &small,
                Change::Add {
                    incident: &inc("inc"),
                },
            ),
            (
                &view,
                Change::Add {
                    incident: &inc("inc"),
                },
            ),
            (&view, restart),
        ] {
            let plan = group_update(&GroupKey::default(), view, &delta, change, None);
            let (update, condition) = (
                plan.expr.update_expression(),
                plan.expr.condition_expression().unwrap(),
            );
            assert!(
                update.len() < 4096 && condition.len() < 4096,
                "{change:?}: {} / {}",
                update.len(),
                condition.len()
            );
        }
    }

    /// Regression: a restart planned from a view of an earlier incident (this process's, before another
    /// writer restarted the group) trusted that view's counters when the stored failure count happened to
    /// be the same, and left the newer incident's other counters behind: an event name still counted in an
    /// incident restarted with no failures.
    #[test]
    fn a_restart_does_not_trust_a_view_of_an_earlier_incident() {
        use crate::dynamodb::evaluate::update;

        let group = GroupKey {
            account: Some("123456789012".into()),
            principal: Some("etl".into()),
            session: Some("nightly-etl".into()),
        };
        let (inc1, inc2, inc3) = (inc("inc1"), inc("inc2"), inc("inc3"));
        let mut item = key(group_pk(&group), GROUP_SK);
        let mut write = |view: &GroupState, delta: &FailureStats, change: Change<'_>| {
            let plan = group_update(&group, view, delta, change, Some(300));
            let updated = update(&item, &plan.expr).expect("a request DynamoDB accepts");
            let written = updated.is_some();
            if let Some(updated) = updated {
                item = updated;
            }
            (written, plan.next, decode_group(&item))
        };
        let empty = GroupState {
            key: group.clone(),
            ..Default::default()
        };
        let first = stats(&[failure(100, "s3:A"), failure(101, "s3:A")]);
        let (_, earlier, stored) = write(&empty, &first, Change::Add { incident: &inc1 });
        let second = stats(&[failure(200, "s3:A"), failure(201, "s3:B")]);
        let restart = Change::Restart {
            expected: Some(&inc1),
            incident: &inc2,
            session_failed_at: None,
        };
        let (written, _, stored) = write(&stored, &second, restart);
        assert!(written && stored.stats.failures == earlier.stats.failures);

        let none = FailureStats::default();
        let again = Change::Restart {
            expected: Some(&inc2),
            incident: &inc3,
            session_failed_at: None,
        };
        let (written, _, _) = write(&earlier, &none, again);
        assert!(
            !written,
            "planned from a view of incident 1, the restart of incident 2 must be refused"
        );
        let (written, _, stored) = write(&stored, &none, again);
        assert!(written);
        assert!(
            stored.stats.event_names.is_empty(),
            "{:?}",
            stored.stats.event_names
        );
        assert_eq!(stored.stats, none);
    }

    #[test]
    fn a_restart_pins_the_incident_and_the_count_and_removes_old_counters() {
        let view = viewing(&[failure(100, "s3:Old")]);
        let delta = stats(&[failure(9000, "s3:New")]);
        let plan = group_update(
            &GroupKey::default(),
            &view,
            &delta,
            Change::Restart {
                expected: Some(&inc("inc")),
                incident: &inc("inc2"),
                session_failed_at: None,
            },
            None,
        );
        let c = condition(&plan);
        assert!(c.contains("incident_id = ") && c.contains("failures = "), "{c}");
        let names: Vec<String> = plan.expr.names().unwrap().into_values().collect();
        assert!(names.contains(&"call#s3:Old".to_owned()) && names.contains(&"call#s3:New".to_owned()));
        assert!(plan.expr.update_expression().contains("REMOVE"));
        assert_eq!(plan.next.stats, delta);
        assert_eq!(
            plan.next.incident,
            Incident {
                id: Some(inc("inc2")),
                paged: None,
                resolved_at: None
            }
        );
    }
}
