//! Rules that misbehave refuse their step, name themselves, and leave the server serving.

use std::path::PathBuf;

use serde_json::json;
use tempfile::TempDir;

use crate::helpers::{TestApp, spawn_app_configured};

const LAB_PROCESS: &str = r#"
process: lab
rules: [lab]
roles: [auditor]
fields:
  n: { type: integer }
states:
  start: { initial: true }
  done:  { final: true }
transitions:
  spin:       { from: start, to: done, roles: [auditor], guard: spin_forever }
  inline_spin: { from: start, to: done, roles: [auditor], guard: 'loop { }' }
  refuse:     { from: start, to: done, roles: [auditor], guard: refuse }
  deep:       { from: start, to: done, roles: [auditor], guard: deep }
  not_bool:   { from: start, to: done, roles: [auditor], guard: '"yes"' }
  not_map:    { from: start, to: done, roles: [auditor], action: '42' }
  bad_write:  { from: start, to: done, roles: [auditor], action: '#{ n: "seven" }' }
  finish:     { from: start, to: done, roles: [auditor], action: '#{ n: 7 }' }
  count:      { from: start, to: done, roles: [auditor], guard: 'let n = 0; for i in 0..2000 { n += 1; } n > 0' }
"#;

const LAB_RULES: &str = r#"
/// Never returns.
fn spin_forever(ctx) {
    loop { }
}

/// Refuses with a reason.
fn refuse(ctx) {
    throw "the change freeze is on";
}

fn down(n) {
    down(n + 1)
}

/// Recurses without end.
fn deep(ctx) {
    down(0)
}
"#;

async fn lab() -> (TestApp, TempDir) {
    lab_configured(|_| {}).await
}

async fn lab_configured(
    configure: impl FnOnce(&mut opsflow::settings::Settings),
) -> (TestApp, TempDir) {
    let files = tempfile::tempdir().unwrap();
    let processes: PathBuf = files.path().join("processes");
    let rules: PathBuf = files.path().join("rules");
    std::fs::create_dir_all(&processes).unwrap();
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(processes.join("lab.yaml"), LAB_PROCESS).unwrap();
    std::fs::write(rules.join("lab.rhai"), LAB_RULES).unwrap();
    let app = spawn_app_configured(
        &processes,
        &rules,
        None,
        std::sync::Arc::new(opsflow::clock::SystemClock),
        configure,
    )
    .await;
    (app, files)
}

async fn new_lab(app: &TestApp) -> String {
    let a = app
        .post("/api/v1/instances", "nobody", json!({"process": "lab"}))
        .await;
    assert_eq!(a.status.as_u16(), 201, "{}", a.text);
    a.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_guard_that_loops_forever_is_stopped_and_the_server_answers_the_next_request() {
    let (app, _files) = lab().await;
    let id = new_lab(&app).await;
    for transition in ["spin", "inline_spin"] {
        let a = app.fire(&id, transition, "nobody", json!({})).await;
        a.assert_problem(409, "rule-failed");
        assert_eq!(a.body["reason"], "limit");
        assert!(
            a.body["detail"]
                .as_str()
                .unwrap()
                .contains("too many operations"),
            "{}",
            a.text
        );
    }
    assert_eq!(
        app.fire(&id, "spin", "nobody", json!({})).await.body["function"],
        "spin_forever"
    );
    let v = app.fire_ok(&id, "finish", "nobody", json!({})).await;
    assert_eq!(v["state"], "done");
    assert_eq!(v["data"]["n"], 7);
}

#[tokio::test]
async fn a_rule_that_throws_refuses_the_step_with_its_reason_and_function() {
    let (app, _files) = lab().await;
    let id = new_lab(&app).await;
    let a = app.fire(&id, "refuse", "nobody", json!({})).await;
    a.assert_problem(409, "rule-failed");
    assert_eq!(a.body["reason"], "threw");
    assert_eq!(a.body["function"], "refuse");
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains("the change freeze is on")
    );
    let rule = a.body["rule"].as_str().unwrap();
    assert!(
        rule.starts_with("transition `refuse` guard at ") && rule.contains("lab.yaml:13:"),
        "the rule is named with its place: {rule}"
    );
    let v = app.get(&format!("/api/v1/instances/{id}"), "nobody").await;
    assert_eq!(v.body["state"], "start");
    assert_eq!(v.body["version"], 1);
}

#[tokio::test]
async fn runaway_recursion_is_stopped_by_the_call_depth_limit() {
    let (app, _files) = lab().await;
    let id = new_lab(&app).await;
    let a = app.fire(&id, "deep", "nobody", json!({})).await;
    a.assert_problem(409, "rule-failed");
    assert_eq!(a.body["reason"], "limit");
}

#[tokio::test]
async fn rules_returning_the_wrong_type_refuse_the_step() {
    let (app, _files) = lab().await;
    let id = new_lab(&app).await;
    let a = app.fire(&id, "not_bool", "nobody", json!({})).await;
    a.assert_problem(409, "rule-failed");
    assert_eq!(a.body["reason"], "wrong-type");
    let a = app.fire(&id, "not_map", "nobody", json!({})).await;
    a.assert_problem(409, "rule-failed");
    assert_eq!(a.body["reason"], "wrong-type");
    let a = app.fire(&id, "bad_write", "nobody", json!({})).await;
    a.assert_problem(409, "rule-failed");
    assert!(
        a.body["detail"].as_str().unwrap().contains("field `n`"),
        "{}",
        a.text
    );
    assert_eq!(
        app.trace(&id).await.len(),
        1,
        "nothing of the refused steps was written"
    );
}

#[tokio::test]
async fn the_operation_limit_of_scripts_is_the_configured_one() {
    let (app, _files) = lab().await;
    let id = new_lab(&app).await;
    let v = app.fire_ok(&id, "count", "nobody", json!({})).await;
    assert_eq!(v["state"], "done", "2,000 rounds fit the default limit");

    let (tight, _files) = lab_configured(|s| s.rules_max_operations = 1_000).await;
    let id = new_lab(&tight).await;
    let a = tight.fire(&id, "count", "nobody", json!({})).await;
    a.assert_problem(409, "rule-failed");
    assert_eq!(a.body["reason"], "limit", "{}", a.text);
}
