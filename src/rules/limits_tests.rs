//! Every sandbox limit has a test that proves it fires, and the sandbox has no way out.

use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Map;

use super::{Limits, RuleEngine, RuleFailure, test_context as context};
use crate::clock::ManualClock;
use crate::definition::{self, RuleSource};

/// Compiles a one-transition process whose guard is `guard`, with `module` as rule module,
/// and runs the guard.
fn run_guard(limits: Limits, module: &str, guard: &str) -> Result<bool, super::RuleError> {
    let yaml = format!(
        "process: t\nrules: [m]\nroles: [r]\nstates:\n  a: {{ initial: true }}\n  b: {{ final: true }}\ntransitions:\n  go: {{ from: a, to: b, roles: [r], guard: '{guard}' }}\n"
    );
    let mut library = IndexMap::new();
    library.insert(
        "m".to_owned(),
        RuleSource {
            file: "m.rhai".into(),
            source: module.to_owned(),
        },
    );
    let def = definition::parse("t.yaml", &yaml, &library).expect("definition parses");
    let engine = RuleEngine::new(ManualClock::at(1_700_000_000_000), limits);
    let compiled = engine.compile(&def).expect("scripts compile");
    let data = Map::new();
    let ctx = context(&data);
    engine.guard(
        &compiled,
        def.transitions["go"].guard.as_ref().unwrap(),
        &ctx,
    )
}

#[track_caller]
fn assert_limit(result: Result<bool, super::RuleError>, what: &str) {
    match result {
        Err(e) => match &e.failure {
            RuleFailure::Limit(m) => assert!(m.contains(what), "expected `{what}` in `{m}`"),
            other => panic!("expected a limit, got {other:?}"),
        },
        Ok(v) => panic!("expected a limit, got {v}"),
    }
}

#[test]
fn the_operations_limit_stops_an_endless_loop() {
    assert_limit(
        run_guard(Limits::default(), "", "loop { }"),
        "too many operations",
    );
}

#[test]
fn the_call_depth_limit_stops_runaway_recursion() {
    let module = "fn down(n) { down(n + 1) }";
    assert_limit(
        run_guard(Limits::default(), module, "down(0)"),
        "nested too deeply",
    );
}

#[test]
fn the_string_size_limit_stops_a_growing_string() {
    let limits = Limits {
        max_string_size: 100,
        ..Limits::default()
    };
    assert_limit(
        run_guard(limits, "", "let s = \"x\"; loop { s += s; }"),
        "too large",
    );
}

#[test]
fn the_array_size_limit_stops_a_growing_array() {
    let limits = Limits {
        max_array_size: 50,
        ..Limits::default()
    };
    assert_limit(
        run_guard(limits, "", "let a = []; loop { a.push(1); }"),
        "too large",
    );
}

#[test]
fn the_map_size_limit_stops_a_growing_map() {
    let limits = Limits {
        max_map_size: 20,
        ..Limits::default()
    };
    let script =
        "let m = #{}; let i = 0; loop { i += 1; let k = `k${i}`; m += #{ x: i }; m.set(k, i); }";
    assert_limit(run_guard(limits, "", script), "too large");
}

#[test]
fn the_expression_depth_limit_refuses_a_script_at_compile_time() {
    let limits = Limits {
        max_expr_depth: 10,
        max_function_expr_depth: 10,
        ..Limits::default()
    };
    let deep = format!("{}true{}", "(".repeat(40), ")".repeat(40));
    let yaml = format!(
        "process: t\nroles: [r]\nstates:\n  a: {{ initial: true }}\n  b: {{ final: true }}\ntransitions:\n  go: {{ from: a, to: b, roles: [r], guard: '{deep}' }}\n"
    );
    let def = definition::parse("t.yaml", &yaml, &IndexMap::new()).unwrap();
    let engine = RuleEngine::new(ManualClock::at(0), limits);
    let errors = engine.compile(&def).unwrap_err();
    assert!(
        errors[0].message.contains("does not compile"),
        "{}",
        errors[0]
    );
    assert_eq!(
        (errors[0].line, errors[0].column),
        (7, 44),
        "at the guard in the YAML"
    );
}

#[test]
fn scripts_cannot_import_modules_or_eval_code() {
    let yaml = "process: t\nroles: [r]\nstates:\n  a: { initial: true }\n  b: { final: true }\ntransitions:\n  go: { from: a, to: b, roles: [r], guard: 'import \"std\" as s; true' }\n  ev: { from: a, to: b, roles: [r], guard: 'eval(\"1\")' }\n";
    let def = definition::parse("t.yaml", yaml, &IndexMap::new()).unwrap();
    let engine = RuleEngine::new(Arc::new(crate::clock::SystemClock), Limits::default());
    match engine.compile(&def) {
        Err(errors) => assert_eq!(
            errors.len(),
            1,
            "eval is refused at compile time: {errors:?}"
        ),
        Ok(compiled) => {
            let data = Map::new();
            let ctx = context(&data);
            let r = engine.guard(
                &compiled,
                def.transitions["go"].guard.as_ref().unwrap(),
                &ctx,
            );
            assert!(r.is_err(), "import must fail");
        }
    }
}

#[test]
fn time_comes_from_the_engine_clock() {
    let clock = ManualClock::at(1_700_000_000_000);
    let engine = RuleEngine::new(clock.clone(), Limits::default());
    let yaml = "process: t\nroles: [r]\nstates:\n  a: { initial: true }\n  b: { final: true }\ntransitions:\n  go: { from: a, to: b, roles: [r], guard: 'now() == \"2023-11-14T22:13:20.000Z\" && now_ms() == 1700000000000' }\n";
    let def = definition::parse("t.yaml", yaml, &IndexMap::new()).unwrap();
    let compiled = engine.compile(&def).unwrap();
    let data = Map::new();
    let ctx = context(&data);
    let guard = def.transitions["go"].guard.as_ref().unwrap();
    assert_eq!(engine.guard(&compiled, guard, &ctx), Ok(true));
    clock.advance(1);
    assert_eq!(engine.guard(&compiled, guard, &ctx), Ok(false));
}
