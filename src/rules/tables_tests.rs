//! The process's `tables` are shared by every evaluation: no script can change what the
//! next one reads.

use indexmap::IndexMap;
use serde_json::Map;

use super::{Limits, RuleEngine, test_context};
use crate::clock::ManualClock;
use crate::definition::{self, RuleSource};

const MODULE: &str = r#"
fn through_ctx(ctx) { ctx.tables.p.x = 5; true }
fn remove_key(ctx) { ctx.tables.p.remove("x"); true }
fn reads(ctx) { ctx.tables.p.x == 1 }
"#;

/// Runs `attempt` (a guard that tries to change the tables; it may fail), then a guard that
/// checks `tables.p.x` is still 1, both inline and through a rule function.
fn tables_survive(attempt: &str) {
    let yaml = format!(
        "process: t\nrules: [m]\nroles: [r]\ntables:\n  p: {{ x: 1 }}\nstates:\n  a: {{ initial: true }}\n  b: {{ final: true }}\ntransitions:\n  try: {{ from: a, to: b, roles: [r], guard: '{attempt}' }}\n  check: {{ from: a, to: b, roles: [r], guard: 'tables.p.x == 1' }}\n  check_fn: {{ from: a, to: b, roles: [r], guard: reads }}\n"
    );
    let mut library = IndexMap::new();
    library.insert(
        "m".to_owned(),
        RuleSource {
            file: "m.rhai".into(),
            source: MODULE.to_owned(),
        },
    );
    let def = definition::parse("t.yaml", &yaml, &library).expect("definition parses");
    let engine = RuleEngine::new(ManualClock::at(1_700_000_000_000), Limits::default());
    let compiled = engine.compile(&def).expect("scripts compile");
    let data = Map::new();
    let ctx = test_context(&data);
    let guard = |t: &str| engine.guard(&compiled, def.transitions[t].guard.as_ref().unwrap(), &ctx);
    let _ = guard("try");
    assert_eq!(guard("check").ok(), Some(true), "after `{attempt}`");
    assert_eq!(guard("check_fn").ok(), Some(true), "after `{attempt}`");
}

#[test]
fn assigning_into_the_tables_changes_nothing_for_later_rules() {
    tables_survive("tables.p.x = 5; true");
    tables_survive("tables.p = 5; true");
    tables_survive("tables = 5; true");
}

#[test]
fn a_copy_of_the_tables_is_the_script_s_own() {
    tables_survive("let t = tables; t.p.x = 5; true");
    tables_survive("let p = tables.p; p.x = 5; true");
}

#[test]
fn methods_and_rule_functions_cannot_change_the_tables() {
    tables_survive(r#"tables.p.remove("x"); true"#);
    tables_survive("tables.p.clear(); true");
    tables_survive("through_ctx");
    tables_survive("remove_key");
}
