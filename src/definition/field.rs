//! Typed fields of instance data and the check of a value against its type.

use serde::Serialize;
use serde_json::Value;

/// The field a service report's collect step writes: the SHA-256 of the KPI snapshot the
/// report is written from. A process opts in by declaring it `computed` and requiring it on
/// the transition that is its collect step.
pub const SNAPSHOT_FIELD: &str = "kpi_snapshot";

/// The type of a field, with its constraints.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FieldType {
    /// Text, with optional length bounds (in characters).
    String {
        /// Shortest allowed length.
        #[serde(skip_serializing_if = "Option::is_none")]
        min_len: Option<usize>,
        /// Longest allowed length.
        #[serde(skip_serializing_if = "Option::is_none")]
        max_len: Option<usize>,
    },
    /// A whole number, with optional bounds.
    Integer {
        /// Smallest allowed value.
        #[serde(skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        /// Largest allowed value.
        #[serde(skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    /// Any number, with optional bounds.
    Number {
        /// Smallest allowed value.
        #[serde(skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        /// Largest allowed value.
        #[serde(skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    /// `true` or `false`.
    Bool,
    /// One of a fixed list of values.
    Enum {
        /// The allowed values.
        values: Vec<String>,
    },
    /// An RFC 3339 date and time with an offset, such as `2026-11-23T09:30:00+08:00`.
    Datetime,
    /// The id of one instance of `process`; the engine keeps the link both ways.
    Link {
        /// The linked instance's process.
        process: String,
    },
    /// The ids of instances of `process`.
    Links {
        /// The linked instances' process.
        process: String,
    },
}

/// The names accepted for `type:` in a process file.
pub(crate) const TYPE_NAMES: &[&str] = &[
    "string", "integer", "number", "bool", "enum", "datetime", "link", "links",
];

impl FieldType {
    /// Checks a non-null value; the message says what was expected.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        match (self, value) {
            (FieldType::String { min_len, max_len }, Value::String(s)) => {
                let len = s.chars().count();
                if let Some(min) = min_len
                    && len < *min
                {
                    return Err(format!("must be at least {min} characters long"));
                }
                if let Some(max) = max_len
                    && len > *max
                {
                    return Err(format!("must be at most {max} characters long, got {len}"));
                }
                Ok(())
            }
            (FieldType::Integer { min, max }, Value::Number(n)) if n.is_i64() || n.is_u64() => {
                check_bounds(n.as_f64().unwrap_or_default(), *min, *max)
            }
            (FieldType::Number { min, max }, Value::Number(n)) => {
                check_bounds(n.as_f64().unwrap_or_default(), *min, *max)
            }
            (FieldType::Bool, Value::Bool(_)) => Ok(()),
            (FieldType::Enum { values }, Value::String(s)) => {
                if values.iter().any(|v| v == s) {
                    Ok(())
                } else {
                    Err(format!("must be one of {}, got `{s}`", values.join(", ")))
                }
            }
            (FieldType::Link { .. }, Value::String(s)) if !s.is_empty() => Ok(()),
            (FieldType::Links { .. }, Value::Array(items)) => {
                let mut seen = std::collections::HashSet::new();
                for item in items {
                    match item.as_str() {
                        Some(id) if !id.is_empty() => {
                            if !seen.insert(id) {
                                return Err(format!("lists `{id}` twice"));
                            }
                        }
                        _ => return Err("must be a list of instance ids".into()),
                    }
                }
                Ok(())
            }
            (FieldType::Datetime, Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|_| ())
                .map_err(|_| format!("must be an RFC 3339 date and time, got `{s}`")),
            (expected, got) => Err(format!(
                "must be {}, got {}",
                expected.describe(),
                describe_json(got)
            )),
        }
    }

    /// The type in words, for messages.
    pub fn describe(&self) -> &'static str {
        match self {
            FieldType::String { .. } => "a string",
            FieldType::Integer { .. } => "an integer",
            FieldType::Number { .. } => "a number",
            FieldType::Bool => "a boolean",
            FieldType::Enum { .. } => "one of the listed values",
            FieldType::Datetime => "an RFC 3339 date and time string",
            FieldType::Link { .. } => "an instance id",
            FieldType::Links { .. } => "a list of instance ids",
        }
    }

    /// The process a link field points to.
    pub fn linked_process(&self) -> Option<&str> {
        match self {
            FieldType::Link { process } | FieldType::Links { process } => Some(process),
            _ => None,
        }
    }

    /// The instance ids a value of this field links to.
    pub fn linked_ids(&self, value: &Value) -> Vec<String> {
        match (self, value) {
            (FieldType::Link { .. }, Value::String(s)) => vec![s.clone()],
            (FieldType::Links { .. }, Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn check_bounds(n: f64, min: Option<f64>, max: Option<f64>) -> Result<(), String> {
    if let Some(min) = min
        && n < min
    {
        return Err(format!("must be at least {min}, got {n}"));
    }
    if let Some(max) = max
        && n > max
    {
        return Err(format!("must be at most {max}, got {n}"));
    }
    Ok(())
}

/// A JSON value's kind in words.
pub fn describe_json(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One field of a process's instance data.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Field {
    /// Its name, the key in the instance data.
    pub name: String,
    /// A human title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The type and its constraints.
    #[serde(flatten)]
    pub field_type: FieldType,
    /// Must be given when an instance is created.
    pub required: bool,
    /// Written by rules only; clients may not set it.
    pub computed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_checked_against_their_types() {
        let s = FieldType::String {
            min_len: None,
            max_len: Some(3),
        };
        assert!(s.check(&json!("abc")).is_ok());
        assert!(s.check(&json!("abcd")).is_err());
        assert!(s.check(&json!(1)).is_err());
        let i = FieldType::Integer {
            min: Some(0.0),
            max: Some(100.0),
        };
        assert!(i.check(&json!(90)).is_ok());
        assert!(i.check(&json!(101)).is_err());
        assert!(i.check(&json!(1.5)).is_err());
        let e = FieldType::Enum {
            values: vec!["a".into()],
        };
        assert!(e.check(&json!("a")).is_ok());
        assert!(e.check(&json!("b")).unwrap_err().contains("one of a"));
        assert!(
            FieldType::Datetime
                .check(&json!("2026-11-23T09:00:00+08:00"))
                .is_ok()
        );
        assert!(FieldType::Datetime.check(&json!("yesterday")).is_err());
    }
}
