//! From YAML text to a checked [`Definition`], collecting every problem on the way.

use std::collections::HashSet;

use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use super::error::DefinitionError;
use super::field::{Field, FieldType, TYPE_NAMES};
use super::graph::StateGraph;
use super::lookup::check_lookups;
use super::model::{Definition, Named, RuleSource, Script, ScriptRef, Source, Start, State};
use super::problems::Problems;
use super::raw::{RawField, RawProcess, RawStart, RawState};
use super::source_map::{Position, SourceMap, YamlPath};
use super::timer::check_timers;
use super::transition::{Known, check_transition, unknown_field, unknown_role};

/// SHA-256 over the YAML and the rule modules it uses, in order.
pub fn content_hash(yaml: &str, rules: &IndexMap<String, RuleSource>) -> String {
    let mut h = Sha256::new();
    h.update(b"opsflow-definition\0");
    h.update((yaml.len() as u64).to_be_bytes());
    h.update(yaml.as_bytes());
    for (name, module) in rules {
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update((module.source.len() as u64).to_be_bytes());
        h.update(module.source.as_bytes());
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The positions and the value of a YAML text; a syntax error or a duplicate key is
/// reported at its place.
pub(crate) fn read_yaml(
    file: &str,
    yaml: &str,
) -> Result<(SourceMap, serde_yaml::Value), Vec<DefinitionError>> {
    let map = SourceMap::build(yaml).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| DefinitionError::new(file, e.position, e.message))
            .collect::<Vec<_>>()
    })?;
    let value = serde_yaml::from_str(yaml).map_err(|e| {
        let position = e
            .location()
            .map(|l| Position {
                line: l.line(),
                column: l.column(),
            })
            .unwrap_or(Position { line: 1, column: 1 });
        vec![DefinitionError::new(file, position, e.to_string())]
    })?;
    Ok((map, value))
}

/// Parses and checks one process file. `library` holds every rule module that may be named
/// in `rules:`. All problems found are returned together.
pub fn parse(
    file: &str,
    yaml: &str,
    library: &IndexMap<String, RuleSource>,
) -> Result<Definition, Vec<DefinitionError>> {
    let (map, value) = read_yaml(file, yaml)?;
    let mut p = Problems::new(file, &map);
    let root = YamlPath::root();
    let Some(raw) = p.deserialize::<RawProcess>(&root, value) else {
        return Err(p.list);
    };

    let roles = check_roles(&mut p, &raw.roles);
    let known_role = |r: &str| roles.contains(r);
    for (i, r) in raw.read.iter().flatten().enumerate() {
        if r != super::model::CREATOR && !known_role(r) {
            p.at_value(
                &root.key("read").index(i),
                format!(
                    "{} (or `{}`, the instance's creator)",
                    unknown_role(r, &roles),
                    super::model::CREATOR
                ),
            );
        }
    }

    let mut rules = IndexMap::new();
    for (i, name) in raw.rules.iter().enumerate() {
        match library.get(name) {
            Some(module) => {
                rules.insert(name.clone(), module.clone());
            }
            None => p.at_value(
                &root.key("rules").index(i),
                format!("unknown rule module `{name}`: no file `{name}.rhai` in the rules folder"),
            ),
        }
    }

    let start = match raw.start {
        None => Start::default(),
        Some(v) => {
            let path = root.key("start");
            match p.deserialize::<RawStart>(&path, v) {
                Some(s) => {
                    for (i, r) in s.roles.iter().enumerate() {
                        if !known_role(r) {
                            p.at_value(&path.key("roles").index(i), unknown_role(r, &roles));
                        }
                    }
                    Start {
                        roles: s.roles,
                        action: s.action.map(|a| Script {
                            script: ScriptRef::from_text(&a),
                            path: path.key("action"),
                        }),
                    }
                }
                None => Start::default(),
            }
        }
    };

    let tables = match raw.tables {
        None => serde_json::Value::Object(Default::default()),
        Some(v @ serde_yaml::Value::Mapping(_)) => match serde_json::to_value(&v) {
            Ok(j) => j,
            Err(e) => {
                p.at_value(
                    &root.key("tables"),
                    format!("tables must use string keys: {e}"),
                );
                serde_json::Value::Null
            }
        },
        Some(_) => {
            p.at_value(&root.key("tables"), "tables must be a mapping");
            serde_json::Value::Null
        }
    };

    let mut fields = Named::default();
    for (name, v) in raw.fields {
        let path = root.key("fields").key(&name);
        if let Some(f) = p.deserialize::<RawField>(&path, v)
            && let Some(field) = check_field(&mut p, &path, &name, f)
        {
            fields.insert(name, field);
        }
    }

    let mut states = Named::default();
    for (name, v) in raw.states {
        let path = root.key("states").key(&name);
        let s = if v.is_null() {
            Some(RawState::default())
        } else {
            p.deserialize::<RawState>(&path, v)
        };
        if let Some(s) = s {
            if s.initial && s.is_final {
                p.at_key(
                    &path,
                    format!("state `{name}` cannot be both initial and final"),
                );
            }
            for (key, list) in [("requires", &s.requires), ("read_only", &s.read_only)] {
                for (i, f) in list.iter().enumerate() {
                    if !fields.contains_key(f) {
                        p.at_value(
                            &path.key(key).index(i),
                            unknown_field(f, key, fields.keys().map(String::as_str)),
                        );
                    }
                }
            }
            states.insert(
                name.clone(),
                State {
                    name,
                    title: s.title,
                    description: s.description,
                    initial: s.initial,
                    is_final: s.is_final,
                    requires: s.requires,
                    read_only: s.read_only,
                },
            );
        }
    }

    let mut transitions = Named::default();
    let mut edges = Vec::new();
    let known = Known {
        states: &states,
        fields: &fields,
        roles: &roles,
        map: &map,
    };
    for (name, v) in raw.transitions {
        if let Some(t) = check_transition(&mut p, &known, &name, v, &mut edges) {
            transitions.insert(name, t);
        }
    }

    let timers = check_timers(&mut p, raw.timers, &states, &transitions, &raw.roles);
    let lookups = check_lookups(&mut p, raw.lookups);

    let graph = match StateGraph::build(&states, &edges) {
        Ok(g) => Some(g),
        Err(problems) => {
            for (path, message) in problems {
                p.at_key(&path, message);
            }
            None
        }
    };

    if !p.list.is_empty() {
        p.list.sort_by_key(|e| (e.line, e.column));
        return Err(p.list);
    }
    let Some(graph) = graph else {
        return Err(p.list);
    };
    let hash = content_hash(yaml, &rules);
    let outgoing = super::model::outgoing(&transitions);
    let link_positions = super::model::link_positions(&fields);
    Ok(Definition {
        id: raw.process,
        title: raw.title,
        description: raw.description,
        hash,
        roles: raw.roles,
        read: raw.read,
        start,
        fields,
        states,
        transitions,
        outgoing,
        link_positions,
        timers,
        lookups,
        tables,
        source: Source {
            file: file.to_owned(),
            yaml: yaml.to_owned(),
            rules,
        },
        source_map: map,
        graph,
    })
}

fn check_roles(p: &mut Problems<'_>, roles: &[String]) -> HashSet<String> {
    let mut set = HashSet::new();
    for (i, r) in roles.iter().enumerate() {
        if !set.insert(r.clone()) {
            p.at_value(
                &YamlPath::root().key("roles").index(i),
                format!("role `{r}` is declared twice"),
            );
        }
    }
    set
}

fn check_field(p: &mut Problems<'_>, path: &YamlPath, name: &str, f: RawField) -> Option<Field> {
    let type_path = path.key("type");
    let numeric = matches!(f.kind.as_str(), "integer" | "number");
    if !numeric && (f.min.is_some() || f.max.is_some()) {
        p.at_key(
            path,
            format!(
                "`min`/`max` apply to integer and number fields, not to `{}`",
                f.kind
            ),
        );
    }
    if f.kind != "string" && (f.min_len.is_some() || f.max_len.is_some()) {
        p.at_key(
            path,
            format!(
                "`min_len`/`max_len` apply to string fields, not to `{}`",
                f.kind
            ),
        );
    }
    if !matches!(f.kind.as_str(), "link" | "links") && f.process.is_some() {
        p.at_key(
            &path.key("process"),
            format!("`process` applies to link fields, not to `{}`", f.kind),
        );
    }
    if f.kind != "enum" && f.values.is_some() {
        p.at_key(
            &path.key("values"),
            format!("`values` apply to enum fields, not to `{}`", f.kind),
        );
    }
    let field_type = match f.kind.as_str() {
        "string" => FieldType::String {
            min_len: f.min_len,
            max_len: f.max_len,
        },
        "integer" => FieldType::Integer {
            min: f.min,
            max: f.max,
        },
        "number" => FieldType::Number {
            min: f.min,
            max: f.max,
        },
        "bool" => FieldType::Bool,
        "datetime" => FieldType::Datetime,
        "link" | "links" => {
            let Some(process) = f.process.clone() else {
                p.at_key(
                    path,
                    format!(
                        "{} field `{name}` needs `process:` (the linked process)",
                        f.kind
                    ),
                );
                return None;
            };
            if f.kind == "link" {
                FieldType::Link { process }
            } else {
                FieldType::Links { process }
            }
        }
        "enum" => {
            let values = f.values.unwrap_or_default();
            if values.is_empty() {
                p.at_key(
                    path,
                    format!("enum field `{name}` needs a non-empty `values` list"),
                );
            }
            let mut seen = HashSet::new();
            for (i, v) in values.iter().enumerate() {
                if !seen.insert(v) {
                    p.at_value(
                        &path.key("values").index(i),
                        format!("value `{v}` is listed twice"),
                    );
                }
            }
            FieldType::Enum { values }
        }
        other => {
            p.at_value(
                &type_path,
                format!(
                    "unknown field type `{other}`; expected one of {}",
                    TYPE_NAMES.join(", ")
                ),
            );
            return None;
        }
    };
    Some(Field {
        name: name.to_owned(),
        title: f.title,
        field_type,
        required: f.required,
        computed: f.computed,
    })
}
