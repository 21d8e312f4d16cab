//! DynamoDB's update and condition expressions, for the subset [`super::plan`] writes, evaluated against an
//! item in memory: what lets a property test apply planned group updates without a network, from views
//! of the group as stale as concurrent writers leave them, and hold the result to `FailureStats::merge`.
//!
//! Semantics follow the DynamoDB Developer Guide ("Update expressions", "Condition and filter expressions,
//! operators and functions"): a comparison with a missing attribute is false, `size` of a string is its
//! length and of a set its number of elements, `ADD` to a missing attribute starts from zero or the empty
//! set, `if_not_exists` reads the item as it was before the update. What DynamoDB rejects with a
//! `ValidationException` is an error here too: two actions on one attribute ("overlapping paths"), a
//! placeholder that is not defined, or one that is defined and not used.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;

use super::expr::Expr;
use super::item::Item;

// The random histories and the oracle core's store test uses (one description of the merge for every store).
#[path = "../../../core/tests/support/histories.rs"]
mod histories;

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Name(String),
    Value(String),
    Word(String),
    Open,
    Close,
    Comma,
    Compare(&'static str),
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let word = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && (chars[*i].is_ascii_alphanumeric() || chars[*i] == '_') {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            ' ' => i += 1,
            '(' | ')' | ',' => {
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
                i += 1;
            }
            '#' | ':' => {
                i += 1;
                let w = word(&mut i);
                if w.is_empty() {
                    return Err(format!("an empty placeholder in {text}"));
                }
                out.push(if c == '#' {
                    Token::Name(format!("#{w}"))
                } else {
                    Token::Value(format!(":{w}"))
                });
            }
            '=' => {
                out.push(Token::Compare("="));
                i += 1;
            }
            '<' | '>' => {
                let op = match (c, next) {
                    ('<', Some('=')) => "<=",
                    ('<', Some('>')) => "<>",
                    ('>', Some('=')) => ">=",
                    ('<', _) => "<",
                    _ => ">",
                };
                out.push(Token::Compare(op));
                i += op.len();
            }
            c if c.is_ascii_alphabetic() => out.push(Token::Word(word(&mut i))),
            c => return Err(format!("unexpected '{c}' in {text}")),
        }
    }
    Ok(out)
}

/// Resolves placeholders and remembers which were used.
struct Placeholders {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    used_names: HashSet<String>,
    used_values: HashSet<String>,
}

impl Placeholders {
    fn of(expr: &Expr) -> Self {
        Placeholders {
            names: expr.names().unwrap_or_default(),
            values: expr.values().unwrap_or_default(),
            used_names: HashSet::new(),
            used_values: HashSet::new(),
        }
    }

    fn name(&mut self, p: &str) -> Result<String, String> {
        self.used_names.insert(p.to_owned());
        self.names
            .get(p)
            .cloned()
            .ok_or_else(|| format!("undefined name placeholder {p}"))
    }

    fn value(&mut self, p: &str) -> Result<AttributeValue, String> {
        self.used_values.insert(p.to_owned());
        self.values
            .get(p)
            .cloned()
            .ok_or_else(|| format!("undefined value placeholder {p}"))
    }

    fn all_used(&self) -> Result<(), String> {
        let unused_names: BTreeSet<&String> = self
            .names
            .keys()
            .filter(|p| !self.used_names.contains(*p))
            .collect();
        let unused_values: BTreeSet<&String> = self
            .values
            .keys()
            .filter(|p| !self.used_values.contains(*p))
            .collect();
        if unused_names.is_empty() && unused_values.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "unused placeholders: names {unused_names:?}, values {unused_values:?}"
            ))
        }
    }
}

/// Applies `expr` to `item` as a conditional `UpdateItem` (or the update of a transaction) does: `Ok(None)`
/// when the condition fails (nothing written), the updated item otherwise, an error where DynamoDB would
/// reject the request.
pub(crate) fn update(item: &Item, expr: &Expr) -> Result<Option<Item>, String> {
    let mut p = Placeholders::of(expr);
    let holds = condition(item, expr, &mut p)?;
    let updated = apply(item, &expr.update_expression(), &mut p)?;
    p.all_used()?;
    Ok(holds.then_some(updated))
}

fn condition(item: &Item, expr: &Expr, p: &mut Placeholders) -> Result<bool, String> {
    let Some(text) = expr.condition_expression() else {
        return Ok(true);
    };
    let tokens = tokens(&text)?;
    let mut parser = Condition {
        tokens: &tokens,
        at: 0,
        item,
        p,
    };
    let holds = parser.or()?;
    if parser.at != tokens.len() {
        return Err(format!("trailing tokens in condition {text}"));
    }
    Ok(holds)
}

fn apply(item: &Item, text: &str, p: &mut Placeholders) -> Result<Item, String> {
    let tokens = tokens(text)?;
    let mut out = item.clone();
    let mut targets = HashSet::new();
    let mut clause = String::new();
    let mut i = 0;
    let take = |i: &mut usize| -> Result<Token, String> {
        let t = tokens
            .get(*i)
            .cloned()
            .ok_or_else(|| format!("{text} ends early"))?;
        *i += 1;
        Ok(t)
    };
    while i < tokens.len() {
        match &tokens[i] {
            Token::Word(w) if ["SET", "ADD", "DELETE", "REMOVE"].contains(&w.as_str()) => {
                clause = w.clone();
                i += 1;
                continue;
            }
            Token::Comma => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let Token::Name(target) = take(&mut i)? else {
            return Err(format!("expected an attribute in {text}"));
        };
        let name = p.name(&target)?;
        if !targets.insert(name.clone()) {
            return Err(format!("two actions on {name} (overlapping paths) in {text}"));
        }
        match clause.as_str() {
            "SET" => {
                if take(&mut i)? != Token::Compare("=") {
                    return Err(format!("expected '=' in {text}"));
                }
                let value = match take(&mut i)? {
                    Token::Value(v) => p.value(&v)?,
                    Token::Word(f) if f == "if_not_exists" => {
                        let (Token::Open, Token::Name(of), Token::Comma, Token::Value(v), Token::Close) = (
                            take(&mut i)?,
                            take(&mut i)?,
                            take(&mut i)?,
                            take(&mut i)?,
                            take(&mut i)?,
                        ) else {
                            return Err(format!("malformed if_not_exists in {text}"));
                        };
                        let of = p.name(&of)?;
                        let default = p.value(&v)?;
                        item.get(&of).cloned().unwrap_or(default)
                    }
                    t => return Err(format!("unexpected {t:?} in SET of {text}")),
                };
                out.insert(name, value);
            }
            "ADD" | "DELETE" => {
                let Token::Value(v) = take(&mut i)? else {
                    return Err(format!("expected a value in {text}"));
                };
                let operand = p.value(&v)?;
                let current = item.get(&name);
                let next = if clause == "ADD" {
                    add(current, operand)?
                } else {
                    delete(current, operand)?
                };
                match next {
                    Some(v) => out.insert(name, v),
                    None => out.remove(&name),
                };
            }
            "REMOVE" => {
                out.remove(&name);
            }
            _ => return Err(format!("an action outside a clause in {text}")),
        }
    }
    Ok(out)
}

fn number(text: &str) -> Result<i128, String> {
    text.parse().map_err(|_| format!("not an integer: {text}"))
}

fn add(current: Option<&AttributeValue>, operand: AttributeValue) -> Result<Option<AttributeValue>, String> {
    Ok(Some(match (current, operand) {
        (None, v @ (AttributeValue::N(_) | AttributeValue::Ss(_) | AttributeValue::Ns(_))) => v,
        (Some(AttributeValue::N(a)), AttributeValue::N(b)) => {
            AttributeValue::N((number(a)? + number(&b)?).to_string())
        }
        (Some(AttributeValue::Ss(a)), AttributeValue::Ss(b)) => AttributeValue::Ss(
            a.iter()
                .chain(&b)
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        ),
        (Some(AttributeValue::Ns(a)), AttributeValue::Ns(b)) => {
            let all: BTreeSet<i128> = a.iter().chain(&b).map(|n| number(n)).collect::<Result<_, _>>()?;
            AttributeValue::Ns(all.into_iter().map(|n| n.to_string()).collect())
        }
        (current, operand) => return Err(format!("ADD {operand:?} to {current:?}: mismatched types")),
    }))
}

fn delete(
    current: Option<&AttributeValue>,
    operand: AttributeValue,
) -> Result<Option<AttributeValue>, String> {
    match (current, operand) {
        (None, _) => Ok(None),
        (Some(AttributeValue::Ns(a)), AttributeValue::Ns(b)) => {
            let gone: BTreeSet<i128> = b.iter().map(|n| number(n)).collect::<Result<_, _>>()?;
            let left: Vec<String> = a
                .iter()
                .filter(|n| number(n).is_ok_and(|n| !gone.contains(&n)))
                .cloned()
                .collect();
            Ok((!left.is_empty()).then_some(AttributeValue::Ns(left)))
        }
        (Some(AttributeValue::Ss(a)), AttributeValue::Ss(b)) => {
            let left: Vec<String> = a.iter().filter(|s| !b.contains(s)).cloned().collect();
            Ok((!left.is_empty()).then_some(AttributeValue::Ss(left)))
        }
        (current, operand) => Err(format!("DELETE {operand:?} from {current:?}: mismatched types")),
    }
}

struct Condition<'t, 'i, 'p> {
    tokens: &'t [Token],
    at: usize,
    item: &'i Item,
    p: &'p mut Placeholders,
}

impl Condition<'_, '_, '_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Result<Token, String> {
        let t = self.peek().cloned().ok_or("the condition ends early")?;
        self.at += 1;
        Ok(t)
    }

    fn expect(&mut self, token: Token) -> Result<(), String> {
        let t = self.next()?;
        if t == token {
            Ok(())
        } else {
            Err(format!("expected {token:?}, found {t:?}"))
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(x)) if x == w)
    }

    fn or(&mut self) -> Result<bool, String> {
        let mut holds = self.and()?;
        while self.is_word("OR") {
            self.at += 1;
            holds |= self.and()?;
        }
        Ok(holds)
    }

    fn and(&mut self) -> Result<bool, String> {
        let mut holds = self.unary()?;
        while self.is_word("AND") {
            self.at += 1;
            holds &= self.unary()?;
        }
        Ok(holds)
    }

    fn unary(&mut self) -> Result<bool, String> {
        match self.peek().cloned() {
            Some(Token::Word(w)) if w == "NOT" => {
                self.at += 1;
                Ok(!self.unary()?)
            }
            Some(Token::Open) => {
                self.at += 1;
                let holds = self.or()?;
                self.expect(Token::Close)?;
                Ok(holds)
            }
            Some(Token::Word(f)) if f == "attribute_exists" || f == "attribute_not_exists" => {
                self.at += 1;
                self.expect(Token::Open)?;
                let Token::Name(n) = self.next()? else {
                    return Err(format!("{f} takes an attribute"));
                };
                self.expect(Token::Close)?;
                let exists = self.item.contains_key(&self.p.name(&n)?);
                Ok(exists == (f == "attribute_exists"))
            }
            _ => self.comparison(),
        }
    }

    fn operand(&mut self) -> Result<Option<AttributeValue>, String> {
        match self.next()? {
            Token::Name(n) => Ok(self.item.get(&self.p.name(&n)?).cloned()),
            Token::Value(v) => Ok(Some(self.p.value(&v)?)),
            Token::Word(f) if f == "size" => {
                self.expect(Token::Open)?;
                let Token::Name(n) = self.next()? else {
                    return Err("size takes an attribute".into());
                };
                self.expect(Token::Close)?;
                Ok(match self.item.get(&self.p.name(&n)?) {
                    Some(AttributeValue::S(s)) => Some(s.len()),
                    Some(AttributeValue::Ss(v)) | Some(AttributeValue::Ns(v)) => Some(v.len()),
                    _ => None,
                }
                .map(|n| AttributeValue::N(n.to_string())))
            }
            t => Err(format!("unexpected {t:?} as an operand")),
        }
    }

    fn comparison(&mut self) -> Result<bool, String> {
        let left = self.operand()?;
        if self.is_word("IN") {
            self.at += 1;
            self.expect(Token::Open)?;
            let mut any = false;
            loop {
                let right = self.operand()?;
                any |= compare(&left, &right) == Some(Ordering::Equal);
                match self.next()? {
                    Token::Comma => continue,
                    Token::Close => break,
                    t => return Err(format!("unexpected {t:?} in IN")),
                }
            }
            return Ok(any);
        }
        let Token::Compare(op) = self.next()? else {
            return Err("expected a comparison".into());
        };
        let right = self.operand()?;
        let Some(order) = compare(&left, &right) else {
            return Ok(false);
        };
        Ok(match op {
            "=" => order.is_eq(),
            "<>" => order.is_ne(),
            "<" => order.is_lt(),
            "<=" => order.is_le(),
            ">" => order.is_gt(),
            _ => order.is_ge(),
        })
    }
}

/// Numbers by value, strings by their bytes; anything else (a missing attribute, mixed types) does not compare.
fn compare(a: &Option<AttributeValue>, b: &Option<AttributeValue>) -> Option<Ordering> {
    match (a.as_ref()?, b.as_ref()?) {
        (AttributeValue::N(a), AttributeValue::N(b)) => Some(number(a).ok()?.cmp(&number(b).ok()?)),
        (AttributeValue::S(a), AttributeValue::S(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    fn n(v: i64) -> AttributeValue {
        AttributeValue::N(v.to_string())
    }

    #[test]
    fn updates_apply_as_dynamodb_documents_them() {
        let mut e = Expr::default();
        e.add("count", n(2));
        e.add("tags", AttributeValue::Ss(vec!["b".into()]));
        e.set_if_absent("created", n(5));
        e.set("name", AttributeValue::S("x".into()));
        e.remove("gone");
        e.delete("times", AttributeValue::Ns(vec!["1".into()]));
        let before = item(&[
            ("count", n(3)),
            ("tags", AttributeValue::Ss(vec!["a".into()])),
            ("created", n(1)),
            ("gone", n(0)),
            ("times", AttributeValue::Ns(vec!["1".into(), "2".into()])),
        ]);
        let after = update(&before, &e).unwrap().unwrap();
        assert_eq!(after["count"], n(5));
        assert_eq!(after["tags"], AttributeValue::Ss(vec!["a".into(), "b".into()]));
        assert_eq!(after["created"], n(1), "if_not_exists keeps what is there");
        assert_eq!(after["name"], AttributeValue::S("x".into()));
        assert!(!after.contains_key("gone"));
        assert_eq!(after["times"], AttributeValue::Ns(vec!["2".into()]));
        let created = update(&Item::new(), &e).unwrap().unwrap();
        assert_eq!((&created["count"], &created["created"]), (&n(2), &n(5)));
    }

    #[test]
    fn conditions_hold_as_dynamodb_documents_them() {
        let stored = item(&[("first", n(100)), ("p", AttributeValue::S("abc".into()))]);
        let holds = |clause: &str| {
            let mut e = Expr::default();
            let text = clause
                .replace("$first", &e.name("first"))
                .replace("$missing", &e.name("missing"))
                .replace("$p", &e.name("p"))
                .replace("$t", &e.n(100))
                .replace("$len", &e.n(3))
                .replace("$word", &e.s("abc"));
            e.require(text);
            condition(&stored, &e, &mut Placeholders::of(&e))
        };
        assert_eq!(holds("$first <= $t AND size($p) >= $len"), Ok(true));
        assert_eq!(holds("$first < $t"), Ok(false));
        assert_eq!(
            holds("$missing <= $t"),
            Ok(false),
            "a missing attribute compares false"
        );
        assert_eq!(
            holds("attribute_not_exists($missing) OR size($missing) < $len"),
            Ok(true)
        );
        assert_eq!(holds("size($missing) >= $len"), Ok(false));
        assert_eq!(holds("($first > $t) OR ($p IN ($word, $t))"), Ok(true));
        assert_eq!(holds("NOT ($p = $word)"), Ok(false));
        assert_eq!(
            holds("$p = $t"),
            Ok(false),
            "a string and a number do not compare"
        );
    }

    #[test]
    fn what_dynamodb_rejects_is_an_error() {
        let mut twice = Expr::default();
        twice.set("a", n(1));
        twice.remove("a");
        assert!(update(&Item::new(), &twice).unwrap_err().contains("overlapping"));
        let mut unused = Expr::default();
        unused.set("a", n(1));
        unused.n(7);
        assert!(update(&Item::new(), &unused).unwrap_err().contains("unused"));
        let mut mismatched = Expr::default();
        mismatched.add("a", n(1));
        let stored = item(&[("a", AttributeValue::S("x".into()))]);
        assert!(update(&stored, &mismatched).is_err());
    }
}

/// The plans of [`super::plan`] applied by the evaluator above, by writers whose views of the group lag
/// behind each other as concurrent detectors' do: whatever a writer believed, an update whose condition
/// holds leaves exactly what `FailureStats::merge` says, and one planned from the stored item holds.
#[cfg(test)]
mod plans {
    use proptest::prelude::*;
    use tokenwatch_core::classify::Failure;
    use tokenwatch_core::incident::{GroupState, IncidentId, group_id};
    use tokenwatch_core::ports::{Change, merge_parts};
    use tokenwatch_core::stats::{FailureStats, GroupKey};
    use tokenwatch_core::time::Epoch;

    use super::histories::{self, Kind, Oracle, T0};
    use super::*;
    use crate::dynamodb::item::{GROUP_SK, decode_group, group_pk, key};
    use crate::dynamodb::plan::group_update;

    const WRITERS: usize = 3;

    fn stored(item: &Item, group: &GroupKey) -> GroupState {
        let mut state = decode_group(item);
        state.key = group.clone();
        state
    }

    /// One part of a batch through one writer, as `DynamoStore::record_chunk` plans it: from the writer's
    /// view, and once more from the stored item when the condition fails. `false`: a restart found
    /// another incident (nothing written).
    fn write(
        item: &mut Item,
        view: &mut GroupState,
        group: &GroupKey,
        part: &[Failure],
        change: Change<'_>,
    ) -> Result<bool, TestCaseError> {
        let mut delta = FailureStats::default();
        for f in part {
            delta.add(f.clone());
        }
        let batch_time = part.iter().map(|f| f.time).max();
        for attempt in 0..2 {
            let plan = group_update(group, view, &delta, change, batch_time);
            let (u, c) = (
                plan.expr.update_expression(),
                plan.expr.condition_expression().unwrap_or_default(),
            );
            prop_assert!(
                u.len() <= 4096 && c.len() <= 4096,
                "expressions over 4 KB: {} / {}",
                u.len(),
                c.len()
            );
            let planned_from_stored = *view == stored(item, group);
            match update(item, &plan.expr).map_err(TestCaseError::fail)? {
                Some(updated) => {
                    *item = updated;
                    if planned_from_stored {
                        prop_assert_eq!(&plan.next, &stored(item, group), "what the plan says it leaves");
                    }
                    *view = plan.next;
                    return Ok(true);
                }
                None => {
                    *view = stored(item, group);
                    if let Change::Restart { expected, .. } = change
                        && view.incident.id.as_ref() != expected
                    {
                        return Ok(false);
                    }
                    prop_assert!(
                        !planned_from_stored,
                        "attempt {}: planned from the stored item and refused: {}",
                        attempt,
                        c
                    );
                }
            }
        }
        Err(TestCaseError::fail("refused twice"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// Each batch is written by one of a few writers, each planning from what it last wrote or read,
        /// or by a process that read the group at some earlier point and wrote nothing since.
        #[test]
        fn plans_from_any_writers_view_leave_failure_stats_merge(
            history in histories::history(1..10),
            writers in proptest::collection::vec((0..WRITERS + 1, any::<prop::sample::Index>()), 10),
        ) {
            let group = GroupKey {
                account: Some("123456789012".into()),
                principal: Some("etl".into()),
                session: Some("nightly-etl".into()),
            };
            let mut item = key(group_pk(&group), GROUP_SK);
            let mut views = vec![GroupState { key: group.clone(), ..Default::default() }; WRITERS];
            let mut seen = vec![stored(&item, &group)];
            let mut oracle = Oracle::default();
            let stale = IncidentId { group: "stale".into(), opened_at: T0 };
            for (n, step) in history.iter().enumerate() {
                // The group update alone: eventIDs are the claims' business, so every failure is new.
                let failures: Vec<Failure> = step
                    .failures
                    .iter()
                    .map(|f| Failure { event_id: None, ..f.clone() })
                    .collect();
                let incident = IncidentId { group: group_id(&group), opened_at: T0 + n as Epoch };
                let current = oracle.incident();
                let first = match step.kind {
                    Kind::Add => Change::Add { incident: &incident },
                    Kind::Restart => Change::Restart {
                        expected: current.as_ref(),
                        incident: &incident,
                        session_failed_at: step.session_failed_at,
                    },
                    Kind::StaleRestart => Change::Restart {
                        expected: Some(&stale),
                        incident: &incident,
                        session_failed_at: step.session_failed_at,
                    },
                };
                let answer = oracle.record(&group, &failures, first);
                let (writer, read_at) = &writers[n % writers.len()];
                let mut reader = read_at.get(&seen).clone();
                let view = views.get_mut(*writer).unwrap_or(&mut reader);
                let mut change = first;
                let mut written = true;
                for part in merge_parts(&failures) {
                    let part: Vec<Failure> = part.into_iter().map(|i| failures[i].clone()).collect();
                    written = write(&mut item, view, &group, &part, change)?;
                    if !written {
                        break;
                    }
                    seen.push(stored(&item, &group));
                    change = Change::Add { incident: &incident };
                }
                prop_assert_eq!(written, answer.is_some(), "step {}: written", n);
                let expected = oracle.state.clone().unwrap_or_else(|| GroupState { key: group.clone(), ..Default::default() });
                prop_assert_eq!(stored(&item, &group), expected, "step {}: the stored group", n);
            }
        }
    }
}
