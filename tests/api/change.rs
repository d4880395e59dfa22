//! The change process: routing by kind, CAB quorum by risk, votes, rejection, reviews.

use serde_json::{Value, json};

use crate::helpers::{TestApp, processes_copy, repo_path, spawn_app, spawn_app_with};

pub fn plans() -> Value {
    json!({
        "risk": "medium",
        "impact_assessment": "payment API unavailable for 5 minutes",
        "implementation_plan": "rolling restart with the new TLS bundle",
        "backout_plan": "restore the previous bundle from the vault",
        "test_plan": "smoke tests on staging, then canary",
    })
}

async fn new_change(app: &TestApp, kind: &str) -> String {
    let c = app
        .create(
            "change",
            "req",
            json!({"summary": "Rotate the payment gateway TLS certificate", "kind": kind}),
        )
        .await;
    assert_eq!(c["state"], "draft");
    c["id"].as_str().unwrap().to_owned()
}

async fn at_cab(app: &TestApp, risk: &str) -> String {
    let id = new_change(app, "normal").await;
    let v = app.fire_ok(&id, "submit", "req", json!({})).await;
    assert_eq!(v["state"], "assessment");
    let mut p = plans();
    p["risk"] = json!(risk);
    let v = app.fire_ok(&id, "assess", "cm", p).await;
    assert_eq!(v["state"], "cab_review");
    id
}

async fn implement_and_complete(app: &TestApp, id: &str, outcome: &str) -> Value {
    app.fire_ok(
        id,
        "implement",
        "impl",
        json!({"planned_start": "2026-12-01T22:00:00+08:00", "owner": "ivan"}),
    )
    .await;
    app.fire_ok(
        id,
        "complete",
        "impl",
        json!({"outcome": outcome, "outcome_notes": "see the runbook log"}),
    )
    .await
}

#[tokio::test]
async fn a_standard_change_is_pre_approved_and_closes_itself_when_it_succeeds() {
    let app = spawn_app().await;
    let id = new_change(&app, "standard").await;
    let v = app.fire_ok(&id, "submit", "req", json!({})).await;
    assert_eq!(v["state"], "approved");
    let v = implement_and_complete(&app, &id, "successful").await;
    assert_eq!(v["state"], "closed");
    assert_eq!(
        app.steps(&id).await,
        [
            "created:->draft",
            "transition:submit>submitted",
            "automatic:pre_approved>approved",
            "transition:implement>implementing",
            "transition:complete>implemented",
            "automatic:auto_close>closed",
        ]
    );
}

#[tokio::test]
async fn a_standard_change_that_failed_goes_to_review() {
    let app = spawn_app().await;
    let id = new_change(&app, "standard").await;
    app.fire_ok(&id, "submit", "req", json!({})).await;
    let v = implement_and_complete(&app, &id, "backed_out").await;
    assert_eq!(v["state"], "review");
    let v = app
        .fire_ok(
            &id,
            "close",
            "cm",
            json!({"review_notes": "model needs a pre-check"}),
        )
        .await;
    assert_eq!(v["state"], "closed");
}

#[tokio::test]
async fn a_medium_risk_change_needs_two_cab_approvals_and_each_vote_is_traced() {
    let app = spawn_app().await;
    let id = at_cab(&app, "medium").await;

    let one = app.vote(&id, "cab_approve", "cab1", "approve").await;
    assert_eq!(one.status.as_u16(), 200, "{}", one.text);
    assert_eq!(
        one.body["state"], "cab_review",
        "one approval of two: quorum not reached"
    );
    assert_eq!(one.body["votes"].as_array().unwrap().len(), 1);
    assert_eq!(one.body["votes"][0]["actor"], "ann");

    let again = app.vote(&id, "cab_approve", "cab1", "approve").await;
    again.assert_problem(409, "already-voted");

    let two = app.vote(&id, "cab_approve", "cab2", "approve").await;
    assert_eq!(two.body["state"], "approved", "{}", two.text);
    assert_eq!(
        two.body["votes"],
        json!([]),
        "the round closes with the state change"
    );

    let trace = app.trace(&id).await;
    let votes: Vec<&Value> = trace.iter().filter(|r| r["kind"] == "vote").collect();
    assert_eq!(votes.len(), 2);
    assert_eq!(votes[0]["actor"], "ann");
    assert_eq!(votes[0]["data"]["vote"], "approve");
    assert_eq!(votes[0]["comment"], "cab1 votes approve");
    assert_eq!(votes[1]["actor"], "ben");
    let last = trace.last().unwrap();
    assert_eq!(last["transition"], "cab_approve");
    assert_eq!(last["to"], "approved");
    assert_eq!(last["data"]["outcome"], "approved");
    assert_eq!(last["data"]["approvals"], 2);
    app.assert_trace_consistent(&id).await;
}

#[tokio::test]
async fn a_high_risk_change_needs_three_approvals_and_a_low_risk_one_only_one() {
    let app = spawn_app().await;
    let high = at_cab(&app, "high").await;
    for (i, token) in ["cab1", "cab2", "cab3"].iter().enumerate() {
        let v = app.vote(&high, "cab_approve", token, "approve").await;
        let expected = if i < 2 { "cab_review" } else { "approved" };
        assert_eq!(v.body["state"], expected, "after {} vote(s)", i + 1);
    }
    let low = at_cab(&app, "low").await;
    let v = app.vote(&low, "cab_approve", "cab3", "approve").await;
    assert_eq!(v.body["state"], "approved");
}

#[tokio::test]
async fn a_cab_rejection_returns_the_change_to_draft_for_rework() {
    let app = spawn_app().await;
    let id = at_cab(&app, "medium").await;
    app.vote(&id, "cab_approve", "cab1", "approve").await;
    let v = app.vote(&id, "cab_approve", "cab2", "reject").await;
    assert_eq!(v.body["state"], "draft", "{}", v.text);
    assert_eq!(v.body["votes"], json!([]));
    let rejected = app.trace(&id).await.last().unwrap().clone();
    assert_eq!(rejected["data"]["outcome"], "rejected");
    assert_eq!(rejected["actor"], "ben");

    // Reworked and submitted again: a fresh round, in which earlier voters vote again.
    let v = app.fire_ok(&id, "submit", "req", json!({})).await;
    assert_eq!(v["data"]["submissions"], 2);
    app.fire_ok(&id, "assess", "cm", plans()).await;
    app.vote(&id, "cab_approve", "cab1", "approve").await;
    let v = app.vote(&id, "cab_approve", "cab2", "approve").await;
    assert_eq!(v.body["state"], "approved");
}

#[tokio::test]
async fn only_cab_members_vote_and_a_vote_must_say_approve_or_reject() {
    let app = spawn_app().await;
    let id = at_cab(&app, "medium").await;
    app.vote(&id, "cab_approve", "cm", "approve")
        .await
        .assert_problem(403, "forbidden");
    let a = app.fire(&id, "cab_approve", "cab1", json!({})).await;
    a.assert_problem(422, "invalid-data");
    assert_eq!(a.body["field"], "vote");
    app.vote(&id, "cab_approve", "cab1", "maybe")
        .await
        .assert_problem(422, "invalid-data");
}

#[tokio::test]
async fn assessment_requires_risk_impact_and_the_three_plans() {
    let app = spawn_app().await;
    let id = new_change(&app, "normal").await;
    app.fire_ok(&id, "submit", "req", json!({})).await;
    let a = app.fire(&id, "assess", "cm", json!({"risk": "low"})).await;
    a.assert_problem(422, "invalid-data");
    let fields: Vec<&str> = a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "impact_assessment",
            "implementation_plan",
            "backout_plan",
            "test_plan"
        ]
    );
}

#[tokio::test]
async fn the_plans_are_read_only_while_the_cab_reviews_them() {
    let app = spawn_app().await;
    let id = at_cab(&app, "medium").await;
    let a = app
        .post(
            &format!("/api/v1/instances/{id}/transitions/cab_approve"),
            "cab1",
            json!({"vote": "approve", "data": {"backout_plan": "none"}}),
        )
        .await;
    a.assert_problem(422, "invalid-data");
    assert_eq!(a.body["field"], "backout_plan");
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains("read-only in state `cab_review`")
    );
}

#[tokio::test]
async fn an_emergency_change_is_approved_by_the_ecab_and_reviewed_afterwards() {
    let app = spawn_app().await;
    let id = app
        .create(
            "change",
            "cm",
            json!({"summary": "Block the exploited admin endpoint", "kind": "emergency",
                   "implementation_plan": "WAF rule", "backout_plan": "remove the rule"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = app.fire_ok(&id, "submit", "cm", json!({})).await;
    assert_eq!(v["state"], "ecab_review");
    let v = app.vote(&id, "ecab_approve", "ecab", "approve").await;
    assert_eq!(v.body["state"], "approved");
    let v = implement_and_complete(&app, &id, "successful").await;
    assert_eq!(
        v["state"], "review",
        "the review after an emergency change is mandatory"
    );
    let v = app
        .fire_ok(
            &id,
            "close",
            "cm",
            json!({"review_notes": "root cause handed to problem management"}),
        )
        .await;
    assert_eq!(v["state"], "closed");
}

#[tokio::test]
async fn an_emergency_change_without_its_plans_cannot_reach_the_ecab() {
    let app = spawn_app().await;
    let id = new_change(&app, "emergency").await;
    let a = app.fire(&id, "submit", "req", json!({})).await;
    a.assert_problem(422, "invalid-data");
    assert_eq!(a.body["field"], "implementation_plan");
    assert_eq!(
        app.get(&format!("/api/v1/instances/{id}"), "req")
            .await
            .body["state"],
        "draft"
    );
}

#[tokio::test]
async fn a_change_can_be_withdrawn_before_implementation() {
    let app = spawn_app().await;
    let id = at_cab(&app, "low").await;
    let v = app
        .fire_ok(
            &id,
            "withdraw",
            "req",
            json!({"withdraw_reason": "superseded by CHG-2"}),
        )
        .await;
    assert_eq!(v["state"], "withdrawn");
}

#[tokio::test]
async fn a_process_owner_changes_the_cab_quorum_by_editing_yaml_only() {
    let (_files, processes) = processes_copy("change.yaml", |yaml| {
        let edited = yaml.replace(
            "cab_quorum: { low: 1, medium: 2, high: 3 }",
            "cab_quorum: { low: 1, medium: 1, high: 3 }",
        );
        assert_ne!(yaml, edited);
        edited
    });

    let app = spawn_app_with(&processes, &repo_path("rules"), None).await;
    let id = at_cab(&app, "medium").await;
    let v = app.vote(&id, "cab_approve", "cab1", "approve").await;
    assert_eq!(
        v.body["state"], "approved",
        "one approval now suffices for medium risk"
    );
}
