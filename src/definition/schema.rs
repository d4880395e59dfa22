//! The JSON Schema of a process file, for editors: with a YAML language server, a process
//! owner gets completion, hover help and a red line under a misspelt key while typing.
//! `opsflow schema` prints it; `schemas/process.schema.json` is the same text, which the
//! shipped process files name on their first line.
//!
//! The schema checks shape only (keys, types, the duration and share formats). What needs
//! the whole file, such as a transition naming a state that does not exist, is checked by
//! `opsflow validate` and by the server, with line and column.

use serde_json::{Value, json};

use super::field::TYPE_NAMES;

/// The draft the schema is written in: the one YAML language servers support best.
const DRAFT: &str = "http://json-schema.org/draft-07/schema#";

fn names(description: &str) -> Value {
    json!({ "type": "array", "items": { "type": "string" }, "description": description })
}

fn text(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

fn script(description: &str) -> Value {
    json!({
        "type": "string",
        "description": format!("{description} A function of a rule module named in `rules:`, or an inline Rhai expression."),
    })
}

fn duration(description: &str) -> Value {
    json!({
        "type": "string",
        "pattern": "^\\s*([0-9]+[smhd])+\\s*$",
        "description": format!("{description} Written as 45s, 90m, 4h, 1h30m or 3d."),
    })
}

fn field() -> Value {
    let requires = |kind: &str, key: &str| {
        json!({
            "if": { "properties": { "type": { "const": kind } }, "required": ["type"] },
            "then": { "required": [key] },
        })
    };
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["type"],
        "properties": {
            "type": { "enum": TYPE_NAMES, "description": "What the field holds." },
            "title": text("A label for forms."),
            "required": { "type": "boolean", "description": "An instance cannot start without it." },
            "computed": { "type": "boolean", "description": "Written by rules only, never by callers." },
            "values": names("The values an `enum` field takes."),
            "min": { "type": "number", "description": "Smallest value of a number or integer." },
            "max": { "type": "number", "description": "Largest value of a number or integer." },
            "min_len": { "type": "integer", "minimum": 0, "description": "Fewest characters of a string." },
            "max_len": { "type": "integer", "minimum": 0, "description": "Most characters of a string." },
            "process": text("The process a `link` or `links` field points to."),
        },
        "allOf": [requires("enum", "values"), requires("link", "process"), requires("links", "process")],
    })
}

fn state() -> Value {
    json!({
        "type": ["object", "null"],
        "additionalProperties": false,
        "properties": {
            "title": text("A label for people."),
            "description": text("What happens in this state."),
            "initial": { "type": "boolean", "description": "Instances start here; exactly one state is initial." },
            "final": { "type": "boolean", "description": "Nothing happens after this state." },
            "requires": names("Fields that must hold a value to enter this state."),
            "read_only": names("Fields no step may change while in this state."),
        },
    })
}

fn transition() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["from", "to"],
        "properties": {
            "from": {
                "description": "The state, or states, it leaves.",
                "oneOf": [{ "type": "string" }, { "type": "array", "items": { "type": "string" }, "minItems": 1 }],
            },
            "to": text("The state it enters."),
            "title": text("A label for buttons."),
            "roles": names("Roles that may fire it."),
            "requires": names("Fields that must hold a value once the caller's input is applied."),
            "auto": { "type": "boolean", "description": "Fired by the engine when its guard holds, never by callers." },
            "guard": script("A condition that must hold."),
            "action": script("Computes fields to write."),
            "approval": {
                "type": "object",
                "additionalProperties": false,
                "required": ["roles", "quorum", "reject_to"],
                "description": "Votes needed before the transition happens.",
                "properties": {
                    "roles": names("Roles that vote."),
                    "quorum": {
                        "description": "Approvals needed: a number, or a table or rule that computes it.",
                        "oneOf": [{ "type": "integer", "minimum": 1 }, { "type": "string" }],
                    },
                    "rejections": { "type": "integer", "minimum": 1, "description": "Rejections that end the round (1 by default)." },
                    "reject_to": text("The state a rejected round goes to."),
                },
            },
            "creates": {
                "type": "array",
                "description": "Instances of other processes it creates and links.",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["process", "link"],
                    "properties": {
                        "process": text("The process of the new instance."),
                        "link": text("The link field of this instance that points to it."),
                        "when": script("Creates it only when this holds."),
                        "data": script("Computes the new instance's data."),
                    },
                },
            },
            "notify": names("Roles notified when it happens."),
        },
    })
}

fn timer() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["in"],
        "properties": {
            "title": text("A label for people."),
            "in": names("States it runs in."),
            "pause_in": names("States it stands still in, keeping the time it has left."),
            "stop_on": names("Transitions that stop it for good."),
            "after": duration("How long it runs."),
            "after_rule": script("Computes how long it runs, in ms."),
            "calendar": text("The business calendar its time counts in (calendars/)."),
            "fire": text("The transition fired when it runs out."),
            "notify": names("Roles notified when it runs out."),
            "warn": {
                "type": "object",
                "additionalProperties": false,
                "required": ["at"],
                "description": "A warning before it runs out.",
                "properties": {
                    "at": { "type": "string", "pattern": "^\\s*[0-9]+\\s*%$", "description": "The share of its time after which it warns, such as 75%." },
                    "fire": text("The transition fired at the warning."),
                    "notify": names("Roles notified at the warning."),
                },
            },
            "sla": { "type": "boolean", "description": "Keeps an SLA record: met or missed, with paused time." },
        },
    })
}

/// The schema of a process file.
pub fn process_schema() -> Value {
    let entries = |schema: Value, description: &str| json!({ "type": "object", "additionalProperties": schema, "description": description });
    json!({
        "$schema": DRAFT,
        "$id": "urn:opsflow:schema:process",
        "title": "opsflow process definition",
        "description": "A process opsflow runs: its fields, states, transitions, approvals and timers. See processes/README.md.",
        "type": "object",
        "additionalProperties": false,
        "required": ["process"],
        "properties": {
            "process": text("The process id, used in the API and by links from other processes."),
            "title": text("A label for people."),
            "description": text("What the process is for."),
            "rules": names("Rule modules (rules/NAME.rhai) its scripts may call."),
            "roles": names("Every role the process knows."),
            "read": names("Who may read its instances: these roles, and with `creator` listed, an instance's creator (everyone when absent)."),
            "start": {
                "type": "object",
                "additionalProperties": false,
                "description": "Who may start an instance and what runs then.",
                "properties": {
                    "roles": names("Roles that may start one (all roles by default)."),
                    "action": script("Computes fields when an instance starts."),
                },
            },
            "tables": { "type": "object", "description": "Named values and lookup tables rules and quorums read." },
            "fields": entries(field(), "The instance data, by field name."),
            "states": entries(state(), "The states, by name."),
            "transitions": entries(transition(), "The transitions, by name."),
            "timers": entries(timer(), "Clocks that run in some states, by name."),
            "lookups": entries(
                json!({
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["process", "in"],
                    "properties": {
                        "process": text("The process looked into."),
                        "in": names("The states its instances must be in."),
                    },
                }),
                "Instances of other processes timer rules may read, by name.",
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use serde::de::{self, Visitor};

    use super::*;
    use crate::definition::lookup::RawLookup;
    use crate::definition::raw::{
        RawApproval, RawCreate, RawField, RawProcess, RawStart, RawState, RawTransition,
    };
    use crate::definition::timer::{RawTimer, RawWarning};

    /// A deserializer that only asks a struct for the names of its keys.
    struct KeyProbe;

    /// The keys serde accepts for `T`: its fields, as renamed.
    fn keys<'de, T: serde::Deserialize<'de>>() -> Vec<String> {
        match T::deserialize(KeyProbe) {
            Err(Keys(k)) => k,
            Ok(_) => panic!("the probe never builds a value"),
        }
    }

    #[derive(Debug)]
    struct Keys(Vec<String>);

    impl std::fmt::Display for Keys {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }

    impl std::error::Error for Keys {}

    impl de::Error for Keys {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Keys(Vec::new())
        }
    }

    impl<'de> de::Deserializer<'de> for KeyProbe {
        type Error = Keys;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Keys> {
            Err(Keys(Vec::new()))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Keys> {
            Err(Keys(fields.iter().map(|f| (*f).to_owned()).collect()))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    fn schema_keys(schema: &Value) -> Vec<String> {
        let mut k: Vec<String> = schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no properties in {schema}"))
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    }

    fn sorted(mut k: Vec<String>) -> Vec<String> {
        k.sort();
        k
    }

    #[test]
    fn the_schema_names_exactly_the_keys_the_parser_accepts_in_every_section() {
        let s = process_schema();
        let p = &s["properties"];
        let t = &p["transitions"]["additionalProperties"];
        let timer = &p["timers"]["additionalProperties"];
        for (section, schema, parser) in [
            ("top level", &s, keys::<RawProcess>()),
            ("start", &p["start"], keys::<RawStart>()),
            (
                "fields",
                &p["fields"]["additionalProperties"],
                keys::<RawField>(),
            ),
            (
                "states",
                &p["states"]["additionalProperties"],
                keys::<RawState>(),
            ),
            ("transitions", t, keys::<RawTransition>()),
            (
                "approval",
                &t["properties"]["approval"],
                keys::<RawApproval>(),
            ),
            (
                "creates",
                &t["properties"]["creates"]["items"],
                keys::<RawCreate>(),
            ),
            ("timers", timer, keys::<RawTimer>()),
            ("warn", &timer["properties"]["warn"], keys::<RawWarning>()),
            (
                "lookups",
                &p["lookups"]["additionalProperties"],
                keys::<RawLookup>(),
            ),
        ] {
            assert_eq!(schema_keys(schema), sorted(parser), "{section}");
            assert_eq!(schema["additionalProperties"], false, "{section}");
        }
    }

    #[test]
    fn the_schema_offers_every_field_type_the_parser_knows() {
        let s = process_schema();
        let types = &s["properties"]["fields"]["additionalProperties"]["properties"]["type"];
        let offered: Vec<&str> = types["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for &t in &offered {
            let yaml = format!(
                "process: p\nroles: [r]\nfields:\n  f: {{ type: {t}, values: [a], process: p }}\nstates:\n  s: {{ initial: true, final: true }}\n"
            );
            let problems = crate::definition::parse("p.yaml", &yaml, &Default::default())
                .err()
                .unwrap_or_default();
            assert!(
                !problems
                    .iter()
                    .any(|e| e.message.contains("unknown field type")),
                "`{t}`: {problems:?}"
            );
        }
        assert_eq!(offered, TYPE_NAMES);
    }
}
