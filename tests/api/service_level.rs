//! The SLA itself: negotiation, signing by both parties, yearly review, revision, end.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

pub fn targets() -> Value {
    json!({
        "response_hours_p1": 0.5, "response_hours_p2": 1, "response_hours_p3": 2, "response_hours_p4": 2,
        "resolution_hours_p1": 4, "resolution_hours_p2": 8, "resolution_hours_p3": 24, "resolution_hours_p4": 72,
        "reports_owed": "monthly service report to the customer's IT manager: availability, MTTR, SLA attainment",
    })
}

/// An SLA walked to `active`; returns its id.
pub async fn active_sla(app: &TestApp) -> String {
    let id = app
        .create_id(
            "service-level",
            "slm",
            json!({"title": "Order platform operations", "agreement_type": "sla"}),
        )
        .await;
    app.fire_ok(
        &id,
        "propose",
        "slm",
        json!({"customer": "Finance dept.", "provider": "IT operations", "services": "order platform, reporting",
               "term_start": "2027-01-01T00:00:00+08:00", "term_end": "2027-12-31T23:59:59+08:00"}),
    )
    .await;
    let v = app.fire_ok(&id, "agree", "cr", targets()).await;
    assert_eq!(v["state"], "provider_signing");
    let v = app.vote(&id, "provider_sign", "ps", "approve").await;
    assert_eq!(v.body["state"], "customer_signing");
    let v = app.vote(&id, "customer_sign", "cs", "approve").await;
    assert_eq!(v.body["state"], "active", "{}", v.text);
    id
}

/// A new agreement of `kind` with parties, scope and term, in negotiation.
async fn in_negotiation(app: &TestApp, kind: &str) -> String {
    let id = app
        .create_id(
            "service-level",
            "slm",
            json!({"title": "T", "agreement_type": kind}),
        )
        .await;
    app.fire_ok(
        &id,
        "propose",
        "slm",
        json!({"customer": "c", "provider": "p", "services": "s",
               "term_start": "2027-01-01T00:00:00Z", "term_end": "2028-01-01T00:00:00Z"}),
    )
    .await;
    id
}

#[tokio::test]
async fn an_sla_is_signed_by_both_parties_and_then_scheduled_for_review_within_a_year() {
    let app = spawn_app().await;
    let id = active_sla(&app).await;
    let v = app.get(&format!("/api/v1/instances/{id}"), "slm").await;
    let due = chrono::DateTime::parse_from_rfc3339(v.body["data"]["review_due"].as_str().unwrap())
        .unwrap();
    let days = (due.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
    assert!((364..=365).contains(&days), "next review in {days} days");
    let votes: Vec<String> = app
        .trace(&id)
        .await
        .iter()
        .filter(|r| r["kind"] == "vote")
        .map(|r| r["actor"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        votes,
        ["pat", "cy"],
        "the provider signs first, then the customer"
    );
}

#[tokio::test]
async fn a_signatory_who_refuses_sends_the_sla_back_to_negotiation() {
    let app = spawn_app().await;
    let id = in_negotiation(&app, "ola").await;
    app.fire_ok(&id, "agree", "slm", targets()).await;
    app.vote(&id, "provider_sign", "ps", "approve").await;
    let v = app.vote(&id, "customer_sign", "cs", "reject").await;
    assert_eq!(v.body["state"], "negotiation");
}

#[tokio::test]
async fn targets_where_the_response_is_due_after_the_resolution_are_refused() {
    let app = spawn_app().await;
    let id = in_negotiation(&app, "sla").await;
    let mut bad = targets();
    bad["response_hours_p2"] = json!(12);
    let a = app.fire(&id, "agree", "slm", bad).await;
    a.assert_problem(409, "rule-failed");
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains("p2: first response (12 h)"),
        "{}",
        a.text
    );
}

#[tokio::test]
async fn an_active_sla_is_reviewed_revised_and_terminated() {
    let app = spawn_app().await;
    let id = active_sla(&app).await;
    // Signed terms are read-only while the SLA is active.
    let a = app
        .fire(
            &id,
            "start_review",
            "slm",
            json!({"resolution_hours_p1": 2}),
        )
        .await;
    a.assert_problem(422, "invalid-data");
    app.fire_ok(&id, "start_review", "slm", json!({})).await;
    let v = app
        .fire_ok(
            &id,
            "review_done",
            "slm",
            json!({"review_minutes": "targets met all year"}),
        )
        .await;
    assert_eq!(v["state"], "active");
    assert!(v["data"]["last_review"].as_str().is_some());

    app.fire_ok(&id, "start_review", "slm", json!({})).await;
    let v = app
        .fire_ok(
            &id,
            "revise",
            "slm",
            json!({"revision_reason": "new reporting service", "review_minutes": "scope grows"}),
        )
        .await;
    assert_eq!(v["state"], "negotiation");
    app.fire_ok(&id, "agree", "slm", json!({"resolution_hours_p1": 2}))
        .await;
    app.vote(&id, "provider_sign", "ps", "approve").await;
    let v = app.vote(&id, "customer_sign", "cs", "approve").await;
    assert_eq!(v.body["state"], "active");
    assert_eq!(v.body["data"]["resolution_hours_p1"], 2);

    let v = app
        .fire_ok(
            &id,
            "terminate",
            "slm",
            json!({"termination_reason": "contract ended"}),
        )
        .await;
    assert_eq!(v["state"], "terminated");
    app.assert_trace_consistent(&id).await;
}
