//! Safe retries with `Idempotency-Key`: the first answer again, nothing written twice.

use std::sync::Arc;

use opsflow::clock::ManualClock;
use serde_json::json;

use crate::helpers::{TestApp, repo_path, spawn_app, spawn_app_on_clock};

fn new_event() -> serde_json::Value {
    json!({"process": "event", "data": {"kind": "incident", "channel": "email", "summary": "Mail bounces"}})
}

async fn count_events(app: &TestApp) -> usize {
    let a = app
        .get("/api/v1/instances?process=event&limit=500", "desk")
        .await;
    a.body["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_retried_create_returns_the_first_answer_and_creates_nothing_more() {
    let app = spawn_app().await;
    let first = app
        .post_with_key("/api/v1/instances", "req", "create-1", new_event())
        .await;
    assert_eq!(first.status.as_u16(), 201, "{}", first.text);
    assert!(first.headers.get("idempotency-replayed").is_none());
    let retry = app
        .post_with_key("/api/v1/instances", "req", "create-1", new_event())
        .await;
    assert_eq!(retry.status.as_u16(), 201);
    assert_eq!(retry.headers["idempotency-replayed"], "true");
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.headers["location"], first.headers["location"]);
    assert_eq!(retry.headers["etag"], first.headers["etag"]);
    assert_eq!(count_events(&app).await, 1);
}

#[tokio::test]
async fn a_retried_fire_returns_the_first_answer_and_writes_no_step() {
    let app = spawn_app().await;
    let id = app.event_at_l1().await;
    let path = format!("/api/v1/instances/{id}/transitions/await");
    let body =
        json!({"data": {"pending_reason": "awaiting_customer"}, "comment": "asked for logs"});
    let first = app
        .post_with_key(&path, "desk", "await-1", body.clone())
        .await;
    assert_eq!(first.status.as_u16(), 200, "{}", first.text);
    let trace = app.trace_steps(&id).await;

    // The instance moves on; a retry of the old request still gets the old answer.
    app.fire_ok(&id, "resume", "desk", json!({})).await;
    let retry = app.post_with_key(&path, "desk", "await-1", body).await;
    assert_eq!(retry.status.as_u16(), 200);
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.body["state"], "pending");
    assert_eq!(
        app.trace_steps(&id).await.len(),
        trace.len() + 2,
        "only the resume was written"
    );
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let app = spawn_app().await;
    app.post_with_key("/api/v1/instances", "req", "k", new_event())
        .await;
    let mut other = new_event();
    other["data"]["summary"] = json!("Something else");
    let a = app
        .post_with_key("/api/v1/instances", "req", "k", other)
        .await;
    a.assert_problem(422, "idempotency-key-reused");
    assert_eq!(a.body["idempotency_key"], "k");
    assert_eq!(count_events(&app).await, 1);
}

#[tokio::test]
async fn the_same_body_with_its_keys_reordered_is_the_same_request() {
    let app = spawn_app().await;
    let a = json!({"process": "event", "data": {"kind": "incident", "channel": "email", "summary": "x"}});
    let b = json!({"data": {"summary": "x", "channel": "email", "kind": "incident"}, "process": "event"});
    let first = app.post_with_key("/api/v1/instances", "req", "k", a).await;
    let retry = app.post_with_key("/api/v1/instances", "req", "k", b).await;
    assert_eq!(retry.body["id"], first.body["id"]);
}

#[tokio::test]
async fn keys_belong_to_their_caller() {
    let app = spawn_app().await;
    let mine = app
        .post_with_key("/api/v1/instances", "req", "shared", new_event())
        .await;
    let theirs = app
        .post_with_key("/api/v1/instances", "desk", "shared", new_event())
        .await;
    assert_eq!(theirs.status.as_u16(), 201);
    assert_ne!(theirs.body["id"], mine.body["id"]);
}

#[tokio::test]
async fn a_refused_request_stores_no_answer() {
    let app = spawn_app().await;
    let id = app.event_at_l1().await;
    let path = format!("/api/v1/instances/{id}/transitions/resolve");
    let body = json!({"data": {"resolution_code": "fixed"}});
    app.post_with_key(&path, "desk", "r", body.clone())
        .await
        .assert_problem(422, "invalid-data");
    // The same request again is evaluated again (and refused again).
    app.post_with_key(&path, "desk", "r", body)
        .await
        .assert_problem(422, "invalid-data");
}

#[tokio::test]
async fn concurrent_requests_with_one_key_write_one_step_and_all_get_its_answer() {
    let app = spawn_app().await;
    let id = app.event_at_l1().await;
    let path = format!("/api/v1/instances/{id}/transitions/await");
    let body = json!({"data": {"pending_reason": "awaiting_customer"}});
    let attempts = (0..8).map(|_| app.post_with_key(&path, "desk", "same", body.clone()));
    let answers = futures::future::join_all(attempts).await;
    let ok: Vec<_> = answers
        .iter()
        .filter(|a| a.status.as_u16() == 200)
        .collect();
    for a in &answers {
        // A request that found the instance already moved by its twin may be refused as a
        // conflict only if it read the instance before the twin committed; none may write.
        assert!(matches!(a.status.as_u16(), 200 | 409), "{}", a.text);
    }
    assert!(!ok.is_empty());
    assert!(
        ok.iter().all(|a| a.body == ok[0].body),
        "every success is the same answer"
    );
    assert_eq!(app.trace_steps(&id).await.len(), 4, "one step written");
}

#[tokio::test]
async fn a_key_expires_after_the_configured_time() {
    let clock = ManualClock::at(1_800_000_000_000);
    let app = spawn_app_on_clock(
        &repo_path("processes"),
        &repo_path("rules"),
        None,
        clock.clone(),
    )
    .await;
    let first = app
        .post_with_key("/api/v1/instances", "req", "old", new_event())
        .await;
    clock.advance(3_599_000);
    let retry = app
        .post_with_key("/api/v1/instances", "req", "old", new_event())
        .await;
    assert_eq!(retry.body["id"], first.body["id"], "still within the hour");
    clock.advance(2_000);
    let later = app
        .post_with_key("/api/v1/instances", "req", "old", new_event())
        .await;
    assert_eq!(later.status.as_u16(), 201);
    assert!(later.headers.get("idempotency-replayed").is_none());
    assert_ne!(
        later.body["id"], first.body["id"],
        "an expired key starts afresh"
    );
    let _: Arc<ManualClock> = clock;
}
