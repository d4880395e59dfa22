//! Checks submitted and rule-written data against a definition's fields.

use serde_json::{Map, Value};

use super::error::FieldProblem;
use crate::definition::Definition;

/// Who is writing: a caller may not write computed fields; rules may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writer {
    Caller,
    Rule,
}

/// Checks every entry of `input`; all problems are returned together. `null` clears a field.
pub(crate) fn check_input(
    def: &Definition,
    input: &Map<String, Value>,
    writer: Writer,
) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    for (name, value) in input {
        let Some(field) = def.fields.get(name) else {
            problems.push(FieldProblem {
                field: name.clone(),
                message: format!("process `{}` has no field `{name}`", def.id),
            });
            continue;
        };
        if writer == Writer::Caller && field.computed {
            problems.push(FieldProblem {
                field: name.clone(),
                message: "is computed by the process's rules and cannot be set".into(),
            });
            continue;
        }
        if value.is_null() {
            if field.required {
                problems.push(FieldProblem {
                    field: name.clone(),
                    message: "is required and cannot be cleared".into(),
                });
            }
            continue;
        }
        if let Err(message) = field.field_type.check(value) {
            problems.push(FieldProblem {
                field: name.clone(),
                message,
            });
        }
    }
    problems
}

/// Applies writes to data: `null` removes a field.
pub(crate) fn apply(data: &mut Map<String, Value>, writes: &Map<String, Value>) {
    for (k, v) in writes {
        if v.is_null() {
            data.remove(k);
        } else {
            data.insert(k.clone(), v.clone());
        }
    }
}

/// Fields among `names` that hold no value in `data`, each once.
pub(crate) fn missing<'a>(
    data: &Map<String, Value>,
    names: impl Iterator<Item = &'a String>,
) -> Vec<FieldProblem> {
    let mut seen = std::collections::HashSet::new();
    names
        .filter(|n| seen.insert(*n))
        .filter(|n| data.get(*n).is_none_or(Value::is_null))
        .map(|n| FieldProblem {
            field: n.clone(),
            message: "is required".into(),
        })
        .collect()
}

/// Fields among `names` that would hold no value in `data` once `writes` are applied (see
/// [`apply`]), each once.
pub(crate) fn missing_after<'a>(
    data: &Map<String, Value>,
    writes: &Map<String, Value>,
    names: impl Iterator<Item = &'a String>,
) -> Vec<FieldProblem> {
    let mut seen = std::collections::HashSet::new();
    names
        .filter(|n| seen.insert(*n))
        .filter(|n| {
            writes
                .get(*n)
                .or_else(|| data.get(*n))
                .is_none_or(Value::is_null)
        })
        .map(|n| FieldProblem {
            field: n.clone(),
            message: "is required".into(),
        })
        .collect()
}

/// Fields of `input` that are read-only in `state`.
pub(crate) fn read_only(
    def: &Definition,
    state: &str,
    input: &Map<String, Value>,
) -> Vec<FieldProblem> {
    let Some(s) = def.states.get(state) else {
        return Vec::new();
    };
    input
        .keys()
        .filter(|k| s.read_only.contains(k))
        .map(|k| FieldProblem {
            field: k.clone(),
            message: format!("is read-only in state `{state}`"),
        })
        .collect()
}
