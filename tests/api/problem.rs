//! The problem process and its links: events open problems, problems raise changes.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn new_problem(app: &TestApp) -> String {
    app.create(
        "problem",
        "pm",
        json!({"summary": "Order report times out every month end", "source": "recurring_events"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn known_error(app: &TestApp) -> String {
    let id = new_problem(app).await;
    app.fire_ok(&id, "accept", "pm", json!({})).await;
    let v = app
        .fire_ok(
            &id,
            "assess",
            "pm",
            json!({"priority": "P2", "assigned_group": "db_team"}),
        )
        .await;
    assert_eq!(v["state"], "analysis");
    let v = app
        .fire_ok(
            &id,
            "record_known_error",
            "an",
            json!({"root_cause": "missing index on orders.created_at",
                   "workaround": "run the report per week", "kb_entry": "KB-1042"}),
        )
        .await;
    assert_eq!(v["state"], "known_error");
    assert_eq!(v["data"]["known_error"], true);
    id
}

async fn links(app: &TestApp, id: &str) -> Value {
    let v = app.get(&format!("/api/v1/instances/{id}"), "pm").await;
    assert_eq!(v.status.as_u16(), 200, "{}", v.text);
    v.body["links"].clone()
}

#[tokio::test]
async fn a_workaround_resolution_opens_a_linked_problem() {
    let app = spawn_app().await;
    let event = app.event_at_l1().await;
    let v = app
        .fire_ok(
            &event,
            "resolve",
            "desk",
            json!({"resolution_code": "workaround", "solution": "export per week"}),
        )
        .await;
    assert_eq!(v["state"], "resolved");
    let problem = v["data"]["problem"]
        .as_str()
        .expect("the event links its problem")
        .to_owned();

    let p = app.get(&format!("/api/v1/instances/{problem}"), "pm").await;
    assert_eq!(p.body["process"], "problem");
    assert_eq!(p.body["state"], "new");
    assert_eq!(p.body["data"]["source"], "workaround_resolution");
    assert_eq!(p.body["data"]["summary"], "Root cause of: VPN down");
    assert_eq!(
        p.body["links"]["incoming"],
        json!([{"relation": "problem", "id": event, "process": "event", "state": "resolved"}])
    );
    assert_eq!(
        links(&app, &event).await["outgoing"],
        json!([{"relation": "problem", "id": problem, "process": "problem", "state": "new"}])
    );
    let trace = app.trace(&problem).await;
    assert_eq!(trace.len(), 1);
    assert_eq!(trace[0]["actor"], "dana");
    assert_eq!(trace[0]["comment"], format!("created by event {event}"));
}

#[tokio::test]
async fn a_resolution_without_a_workaround_opens_no_problem() {
    let app = spawn_app().await;
    let event = app.event_at_l1().await;
    let v = app
        .fire_ok(
            &event,
            "resolve",
            "desk",
            json!({"resolution_code": "fixed", "solution": "x"}),
        )
        .await;
    assert!(v["data"].get("problem").is_none());
    assert_eq!(
        links(&app, &event).await,
        json!({"outgoing": [], "incoming": []})
    );
}

#[tokio::test]
async fn a_problem_raises_a_change_and_closes_once_the_change_is_closed() {
    let app = spawn_app().await;
    let id = known_error(&app).await;
    let v = app.fire_ok(&id, "raise_change", "pm", json!({})).await;
    assert_eq!(v["state"], "fix_in_progress");
    let change = v["data"]["change"].as_str().unwrap().to_owned();
    let c = app.get(&format!("/api/v1/instances/{change}"), "cm").await;
    assert_eq!(c.body["state"], "draft");
    assert_eq!(c.body["data"]["kind"], "normal");
    assert_eq!(
        c.body["data"]["problem"],
        id.as_str(),
        "the change links back to its problem"
    );

    // The fix cannot be verified while the change is open.
    let a = app
        .fire(
            &id,
            "fix_verified",
            "an",
            json!({"fix_description": "index added"}),
        )
        .await;
    a.assert_problem(409, "guard-refused");

    app.fire_ok(&change, "submit", "cm", json!({})).await;
    app.fire_ok(
        &change,
        "assess",
        "cm",
        json!({"risk": "low", "impact_assessment": "none", "implementation_plan": "create index concurrently",
               "backout_plan": "drop index", "test_plan": "explain plan on staging"}),
    )
    .await;
    app.vote(&change, "cab_approve", "cab1", "approve").await;
    app.fire_ok(
        &change,
        "implement",
        "impl",
        json!({"planned_start": "2026-12-02T01:00:00Z", "owner": "ivan"}),
    )
    .await;
    app.fire_ok(
        &change,
        "complete",
        "impl",
        json!({"outcome": "successful", "outcome_notes": "ok"}),
    )
    .await;
    let c = app
        .fire_ok(&change, "close", "cm", json!({"review_notes": "fine"}))
        .await;
    assert_eq!(c["state"], "closed");

    let v = app
        .fire_ok(
            &id,
            "fix_verified",
            "an",
            json!({"fix_description": "index added"}),
        )
        .await;
    assert_eq!(v["state"], "resolved");
    let v = app.fire_ok(&id, "close", "pm", json!({})).await;
    assert_eq!(v["state"], "closed");
    app.assert_trace_consistent(&id).await;
    app.assert_trace_consistent(&change).await;
    assert_eq!(
        links(&app, &id).await["outgoing"],
        json!([{"relation": "change", "id": change, "process": "change", "state": "closed"}])
    );
}

#[tokio::test]
async fn a_problem_whose_risk_is_accepted_closes_without_a_change() {
    let app = spawn_app().await;
    let id = known_error(&app).await;
    let a = app.fire(&id, "accept_risk", "pm", json!({})).await;
    a.assert_problem(422, "invalid-data");
    assert_eq!(a.body["field"], "risk_acceptance_note");
    let v = app
        .fire_ok(
            &id,
            "accept_risk",
            "pm",
            json!({"risk_acceptance_note": "report retired next quarter"}),
        )
        .await;
    assert_eq!(v["state"], "resolved");
    assert_eq!(v["data"]["risk_accepted"], true);
    let v = app.fire_ok(&id, "close", "pm", json!({})).await;
    assert_eq!(v["state"], "closed");
}

#[tokio::test]
async fn a_duplicate_problem_links_the_original_and_is_checked() {
    let app = spawn_app().await;
    let original = new_problem(&app).await;
    let copy = new_problem(&app).await;

    let a = app
        .fire(
            &copy,
            "mark_duplicate",
            "pm",
            json!({"duplicate_of": "no-such-id"}),
        )
        .await;
    a.assert_problem(422, "invalid-data");
    assert_eq!(a.body["field"], "duplicate_of");
    let event = app.new_event().await;
    let a = app
        .fire(
            &copy,
            "mark_duplicate",
            "pm",
            json!({"duplicate_of": event}),
        )
        .await;
    a.assert_problem(422, "invalid-data");
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains("a `event` instance"),
        "{}",
        a.text
    );
    app.fire(&copy, "mark_duplicate", "pm", json!({"duplicate_of": copy}))
        .await
        .assert_problem(409, "guard-refused");

    let v = app
        .fire_ok(
            &copy,
            "mark_duplicate",
            "pm",
            json!({"duplicate_of": original}),
        )
        .await;
    assert_eq!(v["state"], "duplicate");
    assert_eq!(
        links(&app, &original).await["incoming"],
        json!([{"relation": "duplicate_of", "id": copy, "process": "problem", "state": "duplicate"}])
    );
}

#[tokio::test]
async fn analysis_needs_a_priority_and_a_group_and_a_problem_can_be_cancelled() {
    let app = spawn_app().await;
    let id = new_problem(&app).await;
    app.fire_ok(&id, "accept", "pm", json!({})).await;
    let a = app
        .fire(&id, "assess", "pm", json!({"priority": "P3"}))
        .await;
    a.assert_problem(422, "invalid-data");
    assert_eq!(a.body["field"], "assigned_group");
    let v = app
        .fire_ok(
            &id,
            "cancel",
            "pm",
            json!({"cancel_reason": "not reproducible"}),
        )
        .await;
    assert_eq!(v["state"], "cancelled");
}
