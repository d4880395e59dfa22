//! The release process: changes bundled, built, tested, go/no-go, deployed, verified;
//! hold and resume, rollback, and no deployment with an unapproved change.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// A normal change walked to `approved` (or left in draft when `approve` is false).
async fn change(app: &TestApp, approve: bool) -> String {
    let id = app
        .create_id(
            "change",
            "req",
            json!({"summary": "Upgrade the order service", "kind": "standard"}),
        )
        .await;
    if approve {
        let v = app.fire_ok(&id, "submit", "req", json!({})).await;
        assert_eq!(v["state"], "approved");
    }
    id
}

fn window() -> Value {
    json!({"window_start": "2026-12-05T22:00:00+08:00", "window_end": "2026-12-06T02:00:00+08:00"})
}

async fn planned(app: &TestApp, changes: Vec<String>) -> String {
    let id = app
        .create_id(
            "release",
            "rm",
            json!({"summary": "Order service 4.2", "version": "4.2.0"}),
        )
        .await;
    let mut data = window();
    data["changes"] = json!(changes);
    let v = app.fire_ok(&id, "plan", "rm", data).await;
    assert_eq!(v["state"], "planned");
    id
}

async fn at_go_no_go(app: &TestApp, id: &str) {
    app.fire_ok(id, "start_build", "be", json!({})).await;
    app.fire_ok(id, "build_done", "be", json!({"build_ref": "ci#1842"}))
        .await;
    let v = app
        .fire_ok(
            id,
            "test_passed",
            "qa",
            json!({"test_report": "412 passed", "test_passed": true}),
        )
        .await;
    assert_eq!(v["state"], "go_no_go");
}

#[tokio::test]
async fn a_release_goes_from_plan_to_closed_when_all_its_changes_are_approved() {
    let app = spawn_app().await;
    let changes = vec![change(&app, true).await, change(&app, true).await];
    let id = planned(&app, changes.clone()).await;
    at_go_no_go(&app, &id).await;
    let v = app.vote(&id, "go", "ra1", "approve").await;
    assert_eq!(v.body["state"], "go_no_go", "one of two go votes");
    let v = app.vote(&id, "go", "ra2", "approve").await;
    assert_eq!(v.body["state"], "deploying", "{}", v.text);
    app.fire_ok(
        &id,
        "deployed",
        "dep",
        json!({"deploy_notes": "blue/green switch at 23:10"}),
    )
    .await;
    let v = app
        .fire_ok(
            &id,
            "verified",
            "so",
            json!({"verification_notes": "orders flowing"}),
        )
        .await;
    assert_eq!(v["state"], "closed");
    app.assert_trace_consistent(&id).await;

    let r = app.get(&format!("/api/v1/instances/{id}"), "rm").await;
    let out = r.body["links"]["outgoing"].as_array().unwrap();
    assert_eq!(out.len(), 2);
    assert!(
        out.iter()
            .all(|l| l["relation"] == "changes" && l["process"] == "change")
    );
    let c = app
        .get(&format!("/api/v1/instances/{}", changes[0]), "rm")
        .await;
    assert_eq!(c.body["links"]["incoming"][0]["id"], id.as_str());
}

#[tokio::test]
async fn a_release_with_an_unapproved_change_cannot_deploy() {
    let app = spawn_app().await;
    let draft = change(&app, false).await;
    let id = planned(&app, vec![change(&app, true).await, draft.clone()]).await;
    at_go_no_go(&app, &id).await;
    app.vote(&id, "go", "ra1", "approve").await;
    let a = app.vote(&id, "go", "ra2", "approve").await;
    a.assert_problem(409, "rule-failed");
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("change {draft} is draft")),
        "{}",
        a.text
    );
    let v = app.get(&format!("/api/v1/instances/{id}"), "rm").await;
    assert_eq!(v.body["state"], "go_no_go");
    assert_eq!(
        v.body["votes"].as_array().unwrap().len(),
        1,
        "the refused vote is not kept"
    );
}

#[tokio::test]
async fn a_no_go_vote_sends_the_release_back_to_planning() {
    let app = spawn_app().await;
    let id = planned(&app, vec![change(&app, true).await]).await;
    at_go_no_go(&app, &id).await;
    let v = app.vote(&id, "go", "ra1", "reject").await;
    assert_eq!(v.body["state"], "planned");
}

#[tokio::test]
async fn failed_tests_send_the_release_back_to_build() {
    let app = spawn_app().await;
    let id = planned(&app, vec![change(&app, true).await]).await;
    app.fire_ok(&id, "start_build", "be", json!({})).await;
    app.fire_ok(&id, "build_done", "be", json!({"build_ref": "ci#1"}))
        .await;
    let a = app
        .fire(
            &id,
            "test_passed",
            "qa",
            json!({"test_report": "3 failed", "test_passed": false}),
        )
        .await;
    a.assert_problem(409, "guard-refused");
    let v = app
        .fire_ok(&id, "test_failed", "qa", json!({"test_report": "3 failed"}))
        .await;
    assert_eq!(v["state"], "build");
}

#[tokio::test]
async fn a_failed_deployment_rolls_back_and_is_planned_again() {
    let app = spawn_app().await;
    let id = planned(&app, vec![change(&app, true).await]).await;
    at_go_no_go(&app, &id).await;
    app.vote(&id, "go", "ra1", "approve").await;
    app.vote(&id, "go", "ra2", "approve").await;
    let v = app
        .fire_ok(
            &id,
            "rollback",
            "dep",
            json!({"rollback_reason": "payment errors after switch"}),
        )
        .await;
    assert_eq!(v["state"], "rolled_back");
    let v = app.fire_ok(&id, "replan", "rm", json!({})).await;
    assert_eq!(v["state"], "planned");
}

#[tokio::test]
async fn a_release_on_hold_resumes_where_it_stopped() {
    let app = spawn_app().await;
    let id = planned(&app, vec![change(&app, true).await]).await;
    app.fire_ok(&id, "start_build", "be", json!({})).await;
    let v = app
        .fire_ok(&id, "hold", "rm", json!({"hold_reason": "change freeze"}))
        .await;
    assert_eq!(v["state"], "on_hold");
    assert_eq!(v["data"]["held_from"], "build");
    let v = app.fire_ok(&id, "resume", "rm", json!({})).await;
    assert_eq!(v["state"], "build");
    assert!(v["data"].get("hold_reason").is_none());
}

#[tokio::test]
async fn planning_checks_the_window_and_the_linked_changes() {
    let app = spawn_app().await;
    let id = app
        .create_id("release", "rm", json!({"summary": "R"}))
        .await;
    let c = change(&app, true).await;
    let a = app
        .fire(&id, "plan", "rm", json!({"changes": [c], "window_start": "2026-12-06T02:00:00Z", "window_end": "2026-12-05T22:00:00Z"}))
        .await;
    a.assert_problem(409, "rule-failed");
    let problem = app
        .create_id(
            "problem",
            "pm",
            json!({"summary": "p", "source": "major_event"}),
        )
        .await;
    let mut data = window();
    data["changes"] = json!([problem]);
    let a = app.fire(&id, "plan", "rm", data).await;
    a.assert_problem(422, "invalid-data");
    assert_eq!(a.body["field"], "changes");
    let v = app
        .fire_ok(
            &id,
            "cancel",
            "rm",
            json!({"cancel_reason": "merged into 4.3"}),
        )
        .await;
    assert_eq!(v["state"], "cancelled");
}
