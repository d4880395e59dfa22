//! What changed between two versions of a process, for a change review (`opsflow diff`):
//! roles, fields, states, transitions, approvals, timers, tables and rule modules added,
//! removed or changed, each change with the attributes that differ.

use std::fmt::Write as _;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Map, Value};

use super::model::{Definition, Named};

/// Added, removed or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Only in the new version.
    Added,
    /// Only in the old version.
    Removed,
    /// In both, different.
    Changed,
}

/// One attribute that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribute {
    /// Its key (`quorum`, `from`).
    pub key: String,
    /// In the old version (`null`: absent).
    pub old: Value,
    /// In the new version (`null`: absent).
    pub new: Value,
}

/// One thing added, removed or changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// `process`, `roles`, `fields`, `states`, `transitions`, `approvals`, `timers`,
    /// `tables` or `rules`.
    pub section: &'static str,
    /// The role, field, state, transition, timer, table or rule module.
    pub name: String,
    /// What happened to it.
    pub kind: ChangeKind,
    /// For a change, the attributes that differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Attribute>,
}

fn to_value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Each named entry as a JSON object, without `name` (it is the key) and without the keys
/// in `without`.
fn entries<T: Serialize>(items: &Named<T>, without: &[&str]) -> IndexMap<String, Value> {
    items
        .iter()
        .map(|(name, item)| {
            let mut v = to_value(item);
            if let Value::Object(m) = &mut v {
                m.remove("name");
                for k in without {
                    m.remove(*k);
                }
            }
            (name.clone(), v)
        })
        .collect()
}

/// The keys whose values differ between two objects, in the old one's order first.
fn attributes(old: &Value, new: &Value) -> Vec<Attribute> {
    let empty = Map::new();
    let (o, n) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = o.keys().collect();
    keys.extend(n.keys().filter(|k| !o.contains_key(*k)));
    keys.into_iter()
        .filter_map(|k| {
            let (a, b) = (
                o.get(k).cloned().unwrap_or(Value::Null),
                n.get(k).cloned().unwrap_or(Value::Null),
            );
            (a != b).then(|| Attribute {
                key: k.clone(),
                old: a,
                new: b,
            })
        })
        .collect()
}

/// The changes of one section: entries only in `new` (added), only in `old` (removed),
/// and in both but different (changed, with their attributes).
fn section(
    name: &'static str,
    old: &IndexMap<String, Value>,
    new: &IndexMap<String, Value>,
    out: &mut Vec<Change>,
) {
    for (key, o) in old {
        match new.get(key) {
            None => out.push(Change {
                section: name,
                name: key.clone(),
                kind: ChangeKind::Removed,
                attributes: Vec::new(),
            }),
            Some(n) if n != o => {
                let attributes = if o.is_object() && n.is_object() {
                    attributes(o, n)
                } else {
                    vec![Attribute {
                        key: "value".into(),
                        old: o.clone(),
                        new: n.clone(),
                    }]
                };
                out.push(Change {
                    section: name,
                    name: key.clone(),
                    kind: ChangeKind::Changed,
                    attributes,
                });
            }
            Some(_) => {}
        }
    }
    for key in new.keys().filter(|k| !old.contains_key(*k)) {
        out.push(Change {
            section: name,
            name: key.clone(),
            kind: ChangeKind::Added,
            attributes: Vec::new(),
        });
    }
}

fn set(items: &[String]) -> IndexMap<String, Value> {
    items
        .iter()
        .map(|r| (r.clone(), Value::Bool(true)))
        .collect()
}

fn approvals(d: &Definition) -> IndexMap<String, Value> {
    d.transitions
        .iter()
        .filter_map(|(name, t)| t.approval.as_ref().map(|a| (name.clone(), to_value(a))))
        .collect()
}

fn tables(d: &Definition) -> IndexMap<String, Value> {
    d.tables
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn rule_modules(d: &Definition) -> IndexMap<String, Value> {
    d.source
        .rules
        .iter()
        .map(|(name, r)| (name.clone(), Value::from(r.source.clone())))
        .collect()
}

fn header(d: &Definition) -> IndexMap<String, Value> {
    let mut m = IndexMap::new();
    m.insert("id".into(), Value::from(d.id.clone()));
    m.insert("title".into(), to_value(&d.title));
    m.insert("description".into(), to_value(&d.description));
    m.insert("start".into(), to_value(&d.start));
    m
}

/// Everything that differs from `old` to `new`, section by section.
pub fn diff(old: &Definition, new: &Definition) -> Vec<Change> {
    let mut out = Vec::new();
    let (ho, hn) = (header(old), header(new));
    let attributes = attributes(&to_value(&ho), &to_value(&hn));
    if !attributes.is_empty() {
        out.push(Change {
            section: "process",
            name: new.id.clone(),
            kind: ChangeKind::Changed,
            attributes,
        });
    }
    section("roles", &set(&old.roles), &set(&new.roles), &mut out);
    section(
        "fields",
        &entries(&old.fields, &[]),
        &entries(&new.fields, &[]),
        &mut out,
    );
    section(
        "states",
        &entries(&old.states, &[]),
        &entries(&new.states, &[]),
        &mut out,
    );
    section(
        "transitions",
        &entries(&old.transitions, &["approval"]),
        &entries(&new.transitions, &["approval"]),
        &mut out,
    );
    section("approvals", &approvals(old), &approvals(new), &mut out);
    section(
        "timers",
        &entries(&old.timers, &[]),
        &entries(&new.timers, &[]),
        &mut out,
    );
    section("tables", &tables(old), &tables(new), &mut out);
    section("rules", &rule_modules(old), &rule_modules(new), &mut out);
    out
}

fn short(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) if s.contains('\n') => format!("{} lines", s.lines().count()),
        other => other.to_string(),
    }
}

/// The changes as text for a reviewer, a section at a time: `+` added, `-` removed, `~`
/// changed with `key: old → new` lines.
pub fn render_diff(changes: &[Change]) -> String {
    let mut out = String::new();
    let mut current = "";
    for c in changes {
        if c.section != current {
            current = c.section;
            let _ = writeln!(out, "{current}");
        }
        let sign = match c.kind {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Changed => '~',
        };
        let _ = writeln!(out, "  {sign} {}", c.name);
        for a in &c.attributes {
            if c.section == "rules" {
                let _ = writeln!(
                    out,
                    "      source changed ({} → {})",
                    short(&a.old),
                    short(&a.new)
                );
            } else {
                let _ = writeln!(
                    out,
                    "      {}: {} → {}",
                    a.key,
                    short(&a.old),
                    short(&a.new)
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Definition {
        crate::definition::parse("p.yaml", yaml, &IndexMap::new())
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    const OLD: &str = "process: p\nroles: [a, b]\ntables:\n  q: 2\nstates:\n  s: { initial: true }\n  t: {}\n  done: { final: true }\ntransitions:\n  go: { from: s, to: t, roles: [a] }\n  vote: { from: t, to: done, approval: { roles: [b], quorum: 2, reject_to: s } }\n";

    #[test]
    fn an_identical_version_has_no_changes() {
        assert!(diff(&parse(OLD), &parse(OLD)).is_empty());
    }

    #[test]
    fn every_kind_of_change_is_listed_in_its_section_with_the_attributes_that_differ() {
        let new = OLD
            .replace("roles: [a, b]", "roles: [a, b, c]")
            .replace("q: 2", "q: 3")
            .replace("  t: {}\n", "  t: { requires: [x] }\n  u: {}\n")
            .replace("go: { from: s, to: t, roles: [a] }", "go: { from: s, to: t, roles: [a, c] }\n  on: { from: t, to: u, roles: [c] }\n  off: { from: u, to: done, roles: [c] }")
            .replace("quorum: 2", "quorum: 3")
            .replace("tables:", "fields:\n  x: { type: string }\ntables:");
        let changes = diff(&parse(OLD), &parse(&new));
        let text = render_diff(&changes);
        for line in [
            "roles\n  + c\n",
            "fields\n  + x\n",
            "states\n  ~ t\n      requires: [] → [\"x\"]\n  + u\n",
            "transitions\n  ~ go\n      roles: [\"a\"] → [\"a\",\"c\"]\n  + on\n  + off\n",
            "approvals\n  ~ vote\n      quorum: 2 → 3\n",
            "tables\n  ~ q\n      value: 2 → 3\n",
        ] {
            assert!(text.contains(line), "missing\n{line}\nin\n{text}");
        }
        let removed = diff(&parse(&new), &parse(OLD));
        assert!(
            removed
                .iter()
                .any(|c| c.section == "states" && c.name == "u" && c.kind == ChangeKind::Removed)
        );
    }
}
