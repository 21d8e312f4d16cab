//! Builds one update's expressions with their placeholders. Every attribute name goes through a `#…`
//! placeholder: names like `code#ExpiredToken` are not valid in an expression, and some of ours (`open`)
//! are reserved words.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

#[derive(Debug, Default)]
pub(crate) struct Expr {
    names: HashMap<String, String>,
    placeholders: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    set: Vec<String>,
    add: Vec<String>,
    delete: Vec<String>,
    remove: Vec<String>,
    conditions: Vec<String>,
}

impl Expr {
    /// The placeholder of an attribute name (one per distinct name).
    pub fn name(&mut self, name: &str) -> String {
        if let Some(p) = self.placeholders.get(name) {
            return p.clone();
        }
        let p = format!("#{}", base36(self.placeholders.len()));
        self.placeholders.insert(name.to_owned(), p.clone());
        self.names.insert(p.clone(), name.to_owned());
        p
    }

    /// The placeholder of a value (one per call).
    pub fn value(&mut self, value: AttributeValue) -> String {
        let p = format!(":{}", base36(self.values.len()));
        self.values.insert(p.clone(), value);
        p
    }

    pub fn n(&mut self, n: impl ToString) -> String {
        self.value(AttributeValue::N(n.to_string()))
    }

    pub fn s(&mut self, s: impl Into<String>) -> String {
        self.value(AttributeValue::S(s.into()))
    }

    /// `SET name = value`.
    pub fn set(&mut self, name: &str, value: AttributeValue) {
        let (n, v) = (self.name(name), self.value(value));
        self.set.push(format!("{n} = {v}"));
    }

    /// `SET name = if_not_exists(name, value)`.
    pub fn set_if_absent(&mut self, name: &str, value: AttributeValue) {
        let (n, v) = (self.name(name), self.value(value));
        self.set.push(format!("{n} = if_not_exists({n}, {v})"));
    }

    /// `ADD name value` (numbers and sets).
    pub fn add(&mut self, name: &str, value: AttributeValue) {
        let (n, v) = (self.name(name), self.value(value));
        self.add.push(format!("{n} {v}"));
    }

    /// `DELETE name value` (elements from a set).
    pub fn delete(&mut self, name: &str, value: AttributeValue) {
        let (n, v) = (self.name(name), self.value(value));
        self.delete.push(format!("{n} {v}"));
    }

    pub fn remove(&mut self, name: &str) {
        let n = self.name(name);
        self.remove.push(n);
    }

    /// Adds a clause to the condition (clauses are ANDed).
    pub fn require(&mut self, clause: String) {
        self.conditions.push(clause);
    }

    pub fn update_expression(&self) -> String {
        let mut parts = Vec::new();
        for (word, list) in [
            ("SET", &self.set),
            ("ADD", &self.add),
            ("DELETE", &self.delete),
            ("REMOVE", &self.remove),
        ] {
            if !list.is_empty() {
                parts.push(format!("{word} {}", list.join(", ")));
            }
        }
        parts.join(" ")
    }

    pub fn condition_expression(&self) -> Option<String> {
        match self.conditions.len() {
            0 => None,
            1 => Some(self.conditions[0].clone()),
            _ => Some(
                self.conditions
                    .iter()
                    .map(|c| format!("({c})"))
                    .collect::<Vec<_>>()
                    .join(" AND "),
            ),
        }
    }

    pub fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    pub fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// Placeholders as short as they can be: expressions are limited to 4 KB, and a restart that renames a
/// hundred counters writes a few hundred of them.
fn base36(mut i: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[i % 36]);
        i /= 36;
        if i == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_placeheld_once_and_clauses_are_grouped() {
        let mut e = Expr::default();
        e.set("open", AttributeValue::S("1".into()));
        e.add("code#ExpiredToken", AttributeValue::N("2".into()));
        e.remove("resolved_at");
        let open = e.name("open");
        e.require(format!("attribute_exists({open})"));
        e.require("size(#9) < :9".into());
        assert_eq!(e.update_expression(), "SET #0 = :0 ADD #1 :1 REMOVE #2");
        assert_eq!(
            e.condition_expression().unwrap(),
            "(attribute_exists(#0)) AND (size(#9) < :9)"
        );
        assert_eq!(e.names().unwrap()["#1"], "code#ExpiredToken");
        assert_eq!(
            (base36(35), base36(36), base36(1295)),
            ("z".into(), "10".into(), "zz".into())
        );
    }
}
