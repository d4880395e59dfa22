//! Scripts given only the fields of `data` they name decide as they would with all of it.

use indexmap::IndexMap;
use serde_json::{Value, json};

use super::{Limits, RuleEngine, test_context};
use crate::clock::ManualClock;
use crate::definition;

/// Runs each guard on data holding `tier`, `impact` and `list`; returns what each gave.
fn guards(sources: &[&str]) -> Vec<Option<bool>> {
    let transitions: String = sources
        .iter()
        .enumerate()
        .map(|(i, g)| format!("  t{i}: {{ from: a, to: b, roles: [r], guard: '{g}' }}\n"))
        .collect();
    let yaml = format!(
        "process: t\nroles: [r]\nstates:\n  a: {{ initial: true }}\n  b: {{ final: true }}\ntransitions:\n{transitions}"
    );
    let def = definition::parse("t.yaml", &yaml, &IndexMap::new()).expect("definition parses");
    let engine = RuleEngine::new(ManualClock::at(1_700_000_000_000), Limits::default());
    let compiled = engine.compile(&def).expect("scripts compile");
    let Value::Object(data) = json!({"tier": "L1", "impact": "high", "list": [1, 2]}) else {
        unreachable!()
    };
    let ctx = test_context(&data);
    (0..sources.len())
        .map(|i| {
            let guard = def.transitions[&format!("t{i}")].guard.as_ref().unwrap();
            engine.guard(&compiled, guard, &ctx).ok()
        })
        .collect()
}

#[test]
fn a_guard_sees_the_fields_it_names_and_a_whole_data_where_it_needs_one() {
    let answers = guards(&[
        r#"data.tier == "L1""#,
        r#"data.impact == "high" && data.list.len() == 2"#,
        "data.missing == ()",
        "data.keys().len() == 3",
        "data.len() == 3",
        r#"data["impact"] == "high""#,
        "let d = data; d.list[1] == 2",
    ]);
    assert_eq!(answers, vec![Some(true); 7]);
}
