//! Warnings: definitions that are legal but probably not what the process owner meant —
//! a role that nothing uses, a computed field that nothing writes, a timer that can never
//! start. They are reported like problems (`file:line:col: warning: ...`) but never stop a
//! file from loading.

use std::collections::HashSet;

use super::error::DefinitionError;
use super::field::SNAPSHOT_FIELD;
use super::model::{Definition, Quorum, Script, ScriptRef};
use super::source_map::YamlPath;

/// The warnings of a valid definition, in file order.
pub fn warnings(d: &Definition) -> Vec<DefinitionError> {
    let mut out = Vec::new();
    unused_roles(d, &mut out);
    unwritten_fields(d, &mut out);
    timers_that_never_start(d, &mut out);
    out
}

fn warn(d: &Definition, path: &YamlPath, message: String) -> DefinitionError {
    d.error_at(path, format!("warning: {message}"))
}

/// Roles declared in `roles:` that no start, transition, approval or notification names.
/// With no `start.roles`, every role may start an instance, so every role is used.
fn unused_roles(d: &Definition, out: &mut Vec<DefinitionError>) {
    if d.start.roles.is_empty() {
        return;
    }
    let mut used: HashSet<&str> = d.start.roles.iter().map(String::as_str).collect();
    for t in d.transitions.values() {
        used.extend(t.roles.iter().map(String::as_str));
        used.extend(t.notify.iter().map(String::as_str));
        if let Some(a) = &t.approval {
            used.extend(a.roles.iter().map(String::as_str));
        }
    }
    for t in d.timers.values() {
        used.extend(t.notify.iter().map(String::as_str));
        if let Some(w) = &t.warn {
            used.extend(w.notify.iter().map(String::as_str));
        }
    }
    for (i, role) in d.roles.iter().enumerate() {
        if !used.contains(role.as_str()) {
            out.push(warn(
                d,
                &YamlPath::root().key("roles").index(i),
                format!(
                    "role `{role}` is declared but no start, transition, approval or notification uses it"
                ),
            ));
        }
    }
}

/// The text of every script that may write fields: actions, start actions, creations'
/// data, and the rule modules those call.
fn writing_scripts(d: &Definition) -> Vec<&str> {
    let mut texts: Vec<&str> = d.source.rules.values().map(|r| r.source.as_str()).collect();
    texts.extend(d.start.action.as_ref().and_then(inline));
    for t in d.transitions.values() {
        texts.extend(t.action.as_ref().and_then(inline));
        texts.extend(
            t.creates
                .iter()
                .filter_map(|c| c.data.as_ref().and_then(inline)),
        );
        if let Some(Quorum::Rule(s)) = t.approval.as_ref().map(|a| &a.quorum) {
            texts.extend(inline(s));
        }
    }
    texts
}

/// The text of an inline script (a rule function's text is in its module).
fn inline(s: &Script) -> Option<&str> {
    match &s.script {
        ScriptRef::Inline(text) => Some(text.as_str()),
        ScriptRef::Function(_) => None,
    }
}

/// `text` holds `word` on its own, not as part of a longer name.
fn mentions(text: &str, word: &str) -> bool {
    let is_name = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_name) && !after.is_some_and(is_name)
    })
}

/// Computed fields (written by rules only) that no action, start action or rule module
/// mentions: nothing can ever write them. The snapshot field is written by the collect step
/// that requires it.
fn unwritten_fields(d: &Definition, out: &mut Vec<DefinitionError>) {
    let texts = writing_scripts(d);
    let linked_by_creates: HashSet<&str> = d
        .transitions
        .values()
        .flat_map(|t| t.creates.iter().map(|c| c.link.as_str()))
        .collect();
    for f in d.fields.values().filter(|f| f.computed) {
        let collected = f.name == SNAPSHOT_FIELD
            && d.transitions.values().any(|t| t.requires.contains(&f.name));
        if collected
            || linked_by_creates.contains(f.name.as_str())
            || texts.iter().any(|t| mentions(t, &f.name))
        {
            continue;
        }
        out.push(warn(
            d,
            &YamlPath::root().key("fields").key(&f.name).key("computed"),
            format!(
                "field `{}` is computed, but no action or rule module mentions it: nothing can write it",
                f.name
            ),
        ));
    }
}

/// Timers none of whose states an instance can be in while the timer is on: no state of
/// `in` is the initial state, and every transition entering one is in `stop_on`.
fn timers_that_never_start(d: &Definition, out: &mut Vec<DefinitionError>) {
    let initial = d.initial_state();
    for t in d.timers.values() {
        if t.states.iter().any(|s| s == initial) {
            continue;
        }
        let mut entering = d
            .transitions
            .values()
            .filter(|tr| t.states.contains(&tr.to))
            .peekable();
        if entering.peek().is_none() {
            continue; // unreachable states are an error reported elsewhere
        }
        if entering.all(|tr| t.stop_on.contains(&tr.name)) {
            out.push(warn(
                d,
                &YamlPath::root().key("timers").key(&t.name).key("stop_on"),
                format!(
                    "timer `{}` can never start: every transition into its states is in its `stop_on`",
                    t.name
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warned(yaml: &str) -> Vec<String> {
        let d = crate::definition::parse("w.yaml", yaml, &Default::default())
            .unwrap_or_else(|e| panic!("{e:?}"));
        warnings(&d).iter().map(ToString::to_string).collect()
    }

    const BASE: &str = "process: w\nroles: [desk, auditor]\nstart: { roles: [desk] }\nfields:\n  score: { type: integer, computed: true }\n  level: { type: integer, computed: true }\nstates:\n  new: { initial: true }\n  open: {}\n  done: { final: true }\ntransitions:\n  take: { from: new, to: open, roles: [desk], action: '#{ level: 1 }' }\n  close: { from: open, to: done, roles: [desk] }\ntimers:\n  nag:\n    in: [open]\n    after: 1h\n    stop_on: [take]\n    notify: [desk]\n";

    #[test]
    fn suspicious_but_legal_definitions_are_warned_about_at_their_place() {
        assert_eq!(
            warned(BASE),
            [
                "w.yaml:2:15: warning: role `auditor` is declared but no start, transition, approval or notification uses it",
                "w.yaml:5:37: warning: field `score` is computed, but no action or rule module mentions it: nothing can write it",
                "w.yaml:18:14: warning: timer `nag` can never start: every transition into its states is in its `stop_on`",
            ]
        );
    }

    #[test]
    fn a_definition_that_uses_what_it_declares_has_no_warnings() {
        let fine = BASE
            .replace(
                "to: done, roles: [desk] }",
                "to: done, roles: [desk, auditor] }",
            )
            .replace("#{ level: 1 }", "#{ level: 1, score: 2 }")
            .replace("stop_on: [take]", "stop_on: [close]");
        assert_eq!(warned(&fine), Vec::<String>::new());
    }

    #[test]
    fn the_snapshot_field_is_written_by_the_collect_step_that_requires_it() {
        let with_snapshot = BASE.replace("  score:", "  kpi_snapshot:");
        assert!(
            warned(&with_snapshot)[1].contains("field `kpi_snapshot` is computed"),
            "no step requires it yet"
        );
        let collected = with_snapshot.replace(
            "to: done, roles: [desk] }",
            "to: done, roles: [desk], requires: [kpi_snapshot] }",
        );
        assert!(
            !warned(&collected)
                .iter()
                .any(|w| w.contains("kpi_snapshot")),
            "{:?}",
            warned(&collected)
        );
    }

    #[test]
    fn a_name_inside_a_longer_name_is_not_a_mention() {
        assert!(mentions("data.score = 1", "score"));
        assert!(!mentions("data.scores = 1", "score"));
        assert!(!mentions("subscore", "score"));
    }
}
