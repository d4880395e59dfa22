//! Service reports: elements from the SLA, data, draft, manager (and leadership) review,
//! submission and archive; rejection back to drafting.

use serde_json::json;

use crate::helpers::{TestApp, spawn_app};
use crate::service_level::active_sla;

async fn drafted(app: &TestApp, leadership: bool) -> String {
    let sla = active_sla(app).await;
    let id = app
        .create_id(
            "report",
            "ro",
            json!({"title": "November service report", "report_type": "monthly",
                                          "leadership_review": leadership}),
        )
        .await;
    let v = app
        .fire_ok(
            &id,
            "start",
            "ro",
            json!({"sla": sla, "period_start": "2026-11-01T00:00:00+08:00",
                                            "period_end": "2026-12-01T00:00:00+08:00"}),
        )
        .await;
    assert_eq!(v["state"], "identifying");
    app.fire_ok(
        &id,
        "elements_identified",
        "ro",
        json!({"elements": "availability, MTTR, SLA attainment, satisfaction"}),
    )
    .await;
    let a = app
        .post(
            &format!("/api/v1/instances/{id}/report/collect"),
            "ro",
            json!({"data": {"data_summary": "412 events, 3 problems, 18 changes"}}),
        )
        .await;
    assert_eq!(a.body["state"], "drafting", "{}", a.text);
    let v = app
        .fire_ok(
            &id,
            "submit_for_review",
            "ro",
            json!({"content": "1. Summary ..."}),
        )
        .await;
    assert_eq!(v["state"], "manager_review");
    id
}

#[tokio::test]
async fn a_monthly_report_is_reviewed_by_the_manager_submitted_and_archived() {
    let app = spawn_app().await;
    let id = drafted(&app, false).await;
    let v = app.vote(&id, "manager_approve", "dm", "approve").await;
    assert_eq!(
        v.body["state"], "ready",
        "no leadership review unless flagged"
    );
    app.fire_ok(
        &id,
        "submit",
        "ro",
        json!({"submitted_to": "customer IT manager"}),
    )
    .await;
    let v = app
        .fire_ok(&id, "archive", "ro", json!({"archive_ref": "RPT-2026-11"}))
        .await;
    assert_eq!(v["state"], "archived");
    app.assert_trace_consistent(&id).await;
}

#[tokio::test]
async fn a_flagged_report_also_needs_leadership_and_a_rejection_returns_it_to_drafting() {
    let app = spawn_app().await;
    let id = drafted(&app, true).await;
    let v = app.vote(&id, "manager_approve", "dm", "approve").await;
    assert_eq!(v.body["state"], "leadership_review");
    let v = app.vote(&id, "leadership_approve", "exec", "reject").await;
    assert_eq!(v.body["state"], "drafting");
    // The content is editable again in drafting, and the review starts over.
    app.fire_ok(
        &id,
        "submit_for_review",
        "ro",
        json!({"content": "1. Summary (revised) ..."}),
    )
    .await;
    app.vote(&id, "manager_approve", "dm", "approve").await;
    let v = app.vote(&id, "leadership_approve", "exec", "approve").await;
    assert_eq!(v.body["state"], "ready");
}

#[tokio::test]
async fn the_content_is_read_only_under_review() {
    let app = spawn_app().await;
    let id = drafted(&app, false).await;
    let a = app
        .post(
            &format!("/api/v1/instances/{id}/transitions/manager_approve"),
            "dm",
            json!({"vote": "approve", "data": {"sla_attainment": "100% everywhere"}}),
        )
        .await;
    a.assert_problem(422, "invalid-data");
    assert_eq!(a.body["field"], "sla_attainment");
}

#[tokio::test]
async fn a_report_starts_only_for_an_active_sla() {
    let app = spawn_app().await;
    let draft_sla = app
        .create_id(
            "service-level",
            "slm",
            json!({"title": "T", "agreement_type": "sla"}),
        )
        .await;
    let id = app
        .create_id(
            "report",
            "ro",
            json!({"title": "R", "report_type": "quarterly"}),
        )
        .await;
    let a = app
        .fire(
            &id,
            "start",
            "ro",
            json!({"sla": draft_sla, "period_start": "2026-10-01T00:00:00Z",
                                         "period_end": "2027-01-01T00:00:00Z"}),
        )
        .await;
    a.assert_problem(409, "rule-failed");
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains("the SLA is draft"),
        "{}",
        a.text
    );
    let v = app
        .fire_ok(
            &id,
            "cancel",
            "ro",
            json!({"cancel_reason": "SLA not signed yet"}),
        )
        .await;
    assert_eq!(v["state"], "cancelled");
}
