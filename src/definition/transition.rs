//! Checks one transition of a process file: states, roles, required fields, scripts,
//! approvals and the instances it creates, and the graph edges it contributes.

use std::collections::HashSet;

use super::field::Field;
use super::graph::Edge;
use super::model::{Approval, Create, Named, Quorum, Script, ScriptRef, State, Transition};
use super::problems::Problems;
use super::raw::{RawQuorum, RawTransition};
use super::source_map::{SourceMap, YamlPath};

/// What a transition may refer to.
pub(super) struct Known<'a> {
    pub(super) states: &'a Named<State>,
    pub(super) fields: &'a Named<Field>,
    pub(super) roles: &'a HashSet<String>,
    pub(super) map: &'a SourceMap,
}

/// Checks the transition `name`; pushes its graph edges (also, where they can be read, for
/// a transition that does not parse) and returns it when it parsed.
pub(super) fn check_transition(
    p: &mut Problems<'_>,
    known: &Known<'_>,
    name: &str,
    v: serde_yaml::Value,
    edges: &mut Vec<Edge>,
) -> Option<Transition> {
    let Known {
        states,
        fields,
        roles,
        map,
    } = *known;
    let known_role = |r: &str| roles.contains(r);
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
    let path = YamlPath::root().key("transitions").key(name);
    let shadow = shadow_edge(name, &v);
    let Some(t) = p.deserialize::<RawTransition>(&path, v) else {
        if let Some(mut e) = shadow {
            e.from = e.from.iter().map(|s| meant(s)).collect();
            e.to = meant(&e.to);
            edges.push(e);
        }
        return None;
    };
    let from = t.from.into_vec();
    if from.is_empty() {
        p.at_value(&path.key("from"), "`from` names no state");
    }
    let mut seen = HashSet::new();
    for (i, s) in from.iter().enumerate() {
        let at = if from.len() == 1 && map_is_scalar(map, &path.key("from")) {
            path.key("from")
        } else {
            path.key("from").index(i)
        };
        if !states.contains_key(s) {
            p.at_value(&at, unknown_state(s, states));
        } else if !seen.insert(s) {
            p.at_value(&at, format!("state `{s}` is listed twice in `from`"));
        }
    }
    if !states.contains_key(&t.to) {
        p.at_value(&path.key("to"), unknown_state(&t.to, states));
    }
    for (i, r) in t.roles.iter().enumerate() {
        if !known_role(r) {
            p.at_value(&path.key("roles").index(i), unknown_role(r, roles));
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
                p.at_value(&apath.key("roles").index(i), unknown_role(r, roles));
            }
        }
        if !states.contains_key(&a.reject_to) {
            p.at_value(&apath.key("reject_to"), unknown_state(&a.reject_to, states));
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
            name: name.to_owned(),
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
                None => p.at_value(
                    &cpath.key("link"),
                    unknown_field(&c.link, "link", fields.keys().map(String::as_str)),
                ),
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
    for (i, r) in t.notify.iter().enumerate() {
        if !known_role(r) {
            p.at_value(&path.key("notify").index(i), unknown_role(r, roles));
        }
    }
    for (i, f) in t.requires.iter().enumerate() {
        if !fields.contains_key(f) {
            p.at_value(
                &path.key("requires").index(i),
                unknown_field(f, "requires", fields.keys().map(String::as_str)),
            );
        }
    }
    edges.push(Edge {
        name: name.to_owned(),
        from: from.iter().map(|s| meant(s)).collect(),
        to: meant(&t.to),
    });
    Some(Transition {
        name: name.to_owned(),
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
        notify: t.notify,
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

pub(super) fn unknown_state(name: &str, states: &Named<State>) -> String {
    match super::suggest::closest(name, states.keys().map(String::as_str)) {
        Some(s) => format!("unknown state `{name}`; did you mean `{s}`?"),
        None => format!("unknown state `{name}`"),
    }
}

pub(super) fn unknown_role(role: &str, roles: &HashSet<String>) -> String {
    let mut names: Vec<&str> = roles.iter().map(String::as_str).collect();
    names.sort_unstable();
    match super::suggest::closest(role, names.into_iter()) {
        Some(r) => format!("unknown role `{role}`; did you mean `{r}`?"),
        None => format!("unknown role `{role}`: declare it under `roles:`"),
    }
}

/// An unknown field named in `place` (`requires`, `read_only`, a `link`), with the
/// closest field name when one is near.
pub(super) fn unknown_field<'a>(
    name: &str,
    place: &str,
    fields: impl Iterator<Item = &'a str>,
) -> String {
    let hint = super::suggest::closest(name, fields)
        .map(|f| format!("; did you mean `{f}`?"))
        .unwrap_or_default();
    format!("unknown field `{name}` in `{place}`{hint}")
}
