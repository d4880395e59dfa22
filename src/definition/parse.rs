//! From YAML text to a checked [`Definition`], collecting every problem on the way.

use std::collections::HashSet;

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::error::DefinitionError;
use super::field::{Field, FieldType, TYPE_NAMES};
use super::graph::{Edge, StateGraph};
use super::model::{
    Approval, Create, Definition, Quorum, RuleSource, Script, ScriptRef, Source, Start, State,
    Transition,
};
use super::raw::{RawField, RawProcess, RawQuorum, RawStart, RawState, RawTransition};
use super::source_map::{Position, SourceMap, YamlPath};

/// Collects problems and places them in the source.
struct Problems<'a> {
    file: &'a str,
    map: &'a SourceMap,
    list: Vec<DefinitionError>,
}

impl Problems<'_> {
    fn at_key(&mut self, path: &YamlPath, message: impl Into<String>) {
        let position = self.map.key_position(path);
        self.list
            .push(DefinitionError::new(self.file, position, message));
    }

    fn at_value(&mut self, path: &YamlPath, message: impl Into<String>) {
        let position = self.map.value_position(path);
        self.list
            .push(DefinitionError::new(self.file, position, message));
    }

    /// Deserializes one node; a failure is reported at the node it concerns.
    fn deserialize<T: DeserializeOwned>(
        &mut self,
        base: &YamlPath,
        value: serde_yaml::Value,
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut path = base.clone();
                for segment in e.path().iter() {
                    match segment {
                        serde_path_to_error::Segment::Map { key } => path = path.key(key),
                        serde_path_to_error::Segment::Seq { index } => path = path.index(*index),
                        _ => {}
                    }
                }
                let message = e.into_inner().to_string();
                if let Some(key) = unknown_key(&message) {
                    self.at_key(&path.key(key), message);
                } else if message.starts_with("missing field") {
                    self.at_key(&path, message);
                } else {
                    self.at_value(&path, message);
                }
                None
            }
        }
    }
}

/// serde names an unknown key only in its message (`unknown field `gaurd`, expected ...`).
fn unknown_key(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// SHA-256 over the YAML and the rule modules it uses, in order.
pub(crate) fn content_hash(yaml: &str, rules: &IndexMap<String, RuleSource>) -> String {
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

/// Parses and checks one process file. `library` holds every rule module that may be named
/// in `rules:`. All problems found are returned together.
pub fn parse(
    file: &str,
    yaml: &str,
    library: &IndexMap<String, RuleSource>,
) -> Result<Definition, Vec<DefinitionError>> {
    let map = match SourceMap::build(yaml) {
        Ok(map) => map,
        Err(errors) => {
            return Err(errors
                .into_iter()
                .map(|e| DefinitionError::new(file, e.position, e.message))
                .collect());
        }
    };
    let value: serde_yaml::Value = match serde_yaml::from_str(yaml) {
        Ok(v) => v,
        Err(e) => {
            let position = e
                .location()
                .map(|l| Position {
                    line: l.line(),
                    column: l.column(),
                })
                .unwrap_or(Position { line: 1, column: 1 });
            return Err(vec![DefinitionError::new(file, position, e.to_string())]);
        }
    };
    let mut p = Problems {
        file,
        map: &map,
        list: Vec::new(),
    };
    let root = YamlPath::root();
    let Some(raw) = p.deserialize::<RawProcess>(&root, value) else {
        return Err(p.list);
    };

    let roles = check_roles(&mut p, &raw.roles);
    let known_role = |r: &str| roles.contains(r);

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
                            p.at_value(&path.key("roles").index(i), unknown_role(r));
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

    let mut fields = IndexMap::new();
    for (name, v) in raw.fields {
        let path = root.key("fields").key(&name);
        if let Some(f) = p.deserialize::<RawField>(&path, v)
            && let Some(field) = check_field(&mut p, &path, &name, f)
        {
            fields.insert(name, field);
        }
    }

    let mut states = IndexMap::new();
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
                            format!("unknown field `{f}` in `{key}`"),
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

    let mut transitions = IndexMap::new();
    let mut edges = Vec::new();
    // The state a name most likely meant: itself if known, else a close match.
    let meant = |s: &str| -> String {
        if states.contains_key(s) {
            s.to_owned()
        } else {
            super::suggest::closest(s, states.keys().map(String::as_str))
                .unwrap_or(s)
                .to_owned()
        }
    };
    for (name, v) in raw.transitions {
        let path = root.key("transitions").key(&name);
        let shadow = shadow_edge(&name, &v);
        let Some(t) = p.deserialize::<RawTransition>(&path, v) else {
            if let Some(mut e) = shadow {
                e.from = e.from.iter().map(|s| meant(s)).collect();
                e.to = meant(&e.to);
                edges.push(e);
            }
            continue;
        };
        let from = t.from.into_vec();
        if from.is_empty() {
            p.at_value(&path.key("from"), "`from` names no state");
        }
        let mut seen = HashSet::new();
        for (i, s) in from.iter().enumerate() {
            let at = if from.len() == 1 && map_is_scalar(&map, &path.key("from")) {
                path.key("from")
            } else {
                path.key("from").index(i)
            };
            if !states.contains_key(s) {
                p.at_value(&at, unknown_state(s, &states));
            } else if !seen.insert(s) {
                p.at_value(&at, format!("state `{s}` is listed twice in `from`"));
            }
        }
        if !states.contains_key(&t.to) {
            p.at_value(&path.key("to"), unknown_state(&t.to, &states));
        }
        for (i, r) in t.roles.iter().enumerate() {
            if !known_role(r) {
                p.at_value(&path.key("roles").index(i), unknown_role(r));
            }
        }
        if t.auto && !t.roles.is_empty() {
            p.at_key(
                &path.key("roles"),
                "an automatic transition is fired by the engine and takes no roles",
            );
        }
        let approval = t.approval.map(|a| {
            let apath = path.key("approval");
            if !t.roles.is_empty() {
                p.at_key(
                    &path.key("roles"),
                    "an approval transition takes its voters from `approval.roles`; remove `roles`",
                );
            }
            if t.auto {
                p.at_key(
                    &path.key("auto"),
                    "an approval transition cannot be automatic",
                );
            }
            if a.roles.is_empty() {
                p.at_key(
                    &apath.key("roles"),
                    "an approval needs at least one voting role",
                );
            }
            for (i, r) in a.roles.iter().enumerate() {
                if !known_role(r) {
                    p.at_value(&apath.key("roles").index(i), unknown_role(r));
                }
            }
            if !states.contains_key(&a.reject_to) {
                p.at_value(
                    &apath.key("reject_to"),
                    unknown_state(&a.reject_to, &states),
                );
            }
            let quorum = match a.quorum {
                RawQuorum::Count(0) => {
                    p.at_value(&apath.key("quorum"), "quorum must be at least 1");
                    Quorum::Count(1)
                }
                RawQuorum::Count(n) => Quorum::Count(n),
                RawQuorum::Rule(text) => Quorum::Rule(Script {
                    script: ScriptRef::from_text(&text),
                    path: apath.key("quorum"),
                }),
            };
            let rejections = a.rejections.unwrap_or(1);
            if rejections == 0 {
                p.at_value(&apath.key("rejections"), "rejections must be at least 1");
            }
            edges.push(Edge {
                name: name.clone(),
                from: from.iter().map(|s| meant(s)).collect(),
                to: meant(&a.reject_to),
            });
            Approval {
                roles: a.roles,
                quorum,
                rejections: rejections.max(1),
                reject_to: a.reject_to,
            }
        });
        let creates = t
            .creates
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let cpath = path.key("creates").index(i);
                match fields.get(&c.link).map(|f| f.field_type.linked_process()) {
                    None => p.at_value(&cpath.key("link"), format!("unknown field `{}`", c.link)),
                    Some(None) => p.at_value(
                        &cpath.key("link"),
                        format!("field `{}` is not a `link` or `links` field", c.link),
                    ),
                    Some(Some(target)) if target != c.process => p.at_value(
                        &cpath.key("link"),
                        format!(
                            "field `{}` links to `{target}`, not to `{}`",
                            c.link, c.process
                        ),
                    ),
                    Some(Some(_)) => {}
                }
                Create {
                    process: c.process,
                    link: c.link,
                    when: c.when.map(|w| Script {
                        script: ScriptRef::from_text(&w),
                        path: cpath.key("when"),
                    }),
                    data: c.data.map(|d| Script {
                        script: ScriptRef::from_text(&d),
                        path: cpath.key("data"),
                    }),
                }
            })
            .collect();
        if !t.auto && t.roles.is_empty() && approval.is_none() {
            p.at_key(
                &path,
                format!("transition `{name}` names no roles, so nobody could fire it; add `roles:` or `auto: true`"),
            );
        }
        for (i, f) in t.requires.iter().enumerate() {
            if !fields.contains_key(f) {
                p.at_value(
                    &path.key("requires").index(i),
                    format!("unknown field `{f}` in `requires`"),
                );
            }
        }
        edges.push(Edge {
            name: name.clone(),
            from: from.iter().map(|s| meant(s)).collect(),
            to: meant(&t.to),
        });
        transitions.insert(
            name.clone(),
            Transition {
                name,
                title: t.title,
                from,
                to: t.to,
                roles: t.roles,
                requires: t.requires,
                auto: t.auto,
                guard: t.guard.map(|g| Script {
                    script: ScriptRef::from_text(&g),
                    path: path.key("guard"),
                }),
                action: t.action.map(|a| Script {
                    script: ScriptRef::from_text(&a),
                    path: path.key("action"),
                }),
                approval,
                creates,
            },
        );
    }

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
    Ok(Definition {
        id: raw.process,
        title: raw.title,
        description: raw.description,
        hash,
        roles: raw.roles,
        start,
        fields,
        states,
        transitions,
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

/// `from` and `to` of a transition entry that did not deserialize, when they can be read.
fn shadow_edge(name: &str, value: &serde_yaml::Value) -> Option<Edge> {
    let to = value.get("to")?.as_str()?.to_owned();
    let from = match value.get("from")? {
        serde_yaml::Value::String(s) => vec![s.clone()],
        serde_yaml::Value::Sequence(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => return None,
    };
    Some(Edge {
        name: name.to_owned(),
        from,
        to,
    })
}

fn map_is_scalar(map: &SourceMap, path: &YamlPath) -> bool {
    // A list has its items mapped at `path.0`; a plain scalar does not.
    map.value_position(&path.index(0)) == map.value_position(path)
        || map.key_position(&path.index(0)) == map.key_position(path)
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

fn unknown_role(role: &str) -> String {
    format!("unknown role `{role}`: declare it under `roles:`")
}

fn unknown_state(name: &str, states: &IndexMap<String, State>) -> String {
    match super::suggest::closest(name, states.keys().map(String::as_str)) {
        Some(s) => format!("unknown state `{name}`; did you mean `{s}`?"),
        None => format!("unknown state `{name}`"),
    }
}
