//! Every class of bad request gets its status and a problem document, and changes nothing.

use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_request_without_a_token_is_unauthorized() {
    let app = spawn_app().await;
    let a = app
        .request(
            Method::POST,
            "/api/v1/instances",
            None,
            Some(json!({"process": "event"})),
        )
        .await;
    a.assert_problem(401, "unauthorized");
    let a = app
        .request(Method::GET, "/api/v1/processes", None, None)
        .await;
    a.assert_problem(401, "unauthorized");
}

#[tokio::test]
async fn a_request_with_an_unknown_token_is_unauthorized() {
    let app = spawn_app().await;
    let a = app.get("/api/v1/instances", "not-a-token").await;
    a.assert_problem(401, "unauthorized");
    let basic = app
        .raw(
            app.client
                .get(format!("{}/api/v1/instances", app.base))
                .basic_auth("desk", Some("x")),
        )
        .await;
    basic.assert_problem(401, "unauthorized");
}

#[tokio::test]
async fn malformed_json_is_a_bad_request() {
    let app = spawn_app().await;
    let a = app
        .post_text(
            "/api/v1/instances",
            "req",
            "application/json",
            "{\"process\": \"event\", ",
        )
        .await;
    a.assert_problem(400, "malformed-request");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_an_unsupported_media_type() {
    let app = spawn_app().await;
    let a = app
        .post_text("/api/v1/instances", "req", "text/plain", "process=event")
        .await;
    a.assert_problem(415, "unsupported-media-type");
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let app = spawn_app().await;
    let huge = "x".repeat(2 * 1024 * 1024);
    let a = app
        .post(
            "/api/v1/instances",
            "req",
            json!({"process": "event", "data": {"summary": huge}}),
        )
        .await;
    a.assert_problem(413, "payload-too-large");
}

#[tokio::test]
async fn data_that_is_not_an_object_is_unprocessable() {
    let app = spawn_app().await;
    let a = app
        .post(
            "/api/v1/instances",
            "req",
            json!({"process": "event", "data": [1, 2]}),
        )
        .await;
    a.assert_problem(422, "invalid-data");
    assert_eq!(a.body["field"], "data");
}

#[tokio::test]
async fn starting_a_process_without_a_starting_role_is_forbidden() {
    let app = spawn_app().await;
    let a = app
        .post(
            "/api/v1/instances",
            "l2",
            json!({"process": "event", "data": {"kind": "incident", "channel": "phone", "summary": "x"}}),
        )
        .await;
    a.assert_problem(403, "forbidden");
    assert_eq!(a.body["roles_needed"], json!(["requester", "service_desk"]));
}

#[tokio::test]
async fn firing_a_transition_without_the_role_is_forbidden_and_changes_nothing() {
    let app = spawn_app().await;
    let id = app.event_at_l1().await;
    let before = app.get(&format!("/api/v1/instances/{id}"), "desk").await;
    let a = app
        .fire(
            &id,
            "resolve",
            "req",
            json!({"resolution_code": "fixed", "solution": "x"}),
        )
        .await;
    a.assert_problem(403, "forbidden");
    let after = app.get(&format!("/api/v1/instances/{id}"), "desk").await;
    assert_eq!(before.body, after.body);
}

#[tokio::test]
async fn unknown_processes_instances_transitions_and_routes_are_not_found() {
    let app = spawn_app().await;
    app.post("/api/v1/instances", "req", json!({"process": "nope"}))
        .await
        .assert_problem(404, "unknown-process");
    app.get("/api/v1/processes/nope", "req")
        .await
        .assert_problem(404, "unknown-process");
    app.get("/api/v1/instances/0000", "req")
        .await
        .assert_problem(404, "unknown-instance");
    app.fire("0000", "classify", "desk", json!({}))
        .await
        .assert_problem(404, "unknown-instance");
    app.get("/api/v1/instances/0000/trace", "req")
        .await
        .assert_problem(404, "unknown-instance");
    let id = app.new_event().await;
    let a = app.fire(&id, "teleport", "desk", json!({})).await;
    a.assert_problem(404, "unknown-transition");
    assert_eq!(a.body["transition"], "teleport");
    app.get("/api/v1/nothing-here", "req")
        .await
        .assert_problem(404, "not-found");
    app.request(Method::DELETE, "/api/v1/instances", Some("req"), None)
        .await
        .assert_problem(405, "method-not-allowed");
}

#[tokio::test]
async fn a_transition_from_the_wrong_state_is_a_conflict() {
    let app = spawn_app().await;
    let id = app.new_event().await;
    let a = app
        .fire(
            &id,
            "resolve",
            "desk",
            json!({"resolution_code": "fixed", "solution": "x"}),
        )
        .await;
    a.assert_problem(409, "wrong-state");
    assert_eq!(a.body["state"], "new");
    assert_eq!(a.body["allowed_from"], json!(["l1", "l2", "l3"]));
}

#[tokio::test]
async fn an_automatic_transition_cannot_be_fired_by_a_caller() {
    let app = spawn_app().await;
    let id = app.new_event().await;
    app.fire(&id, "to_l1", "desk", json!({}))
        .await
        .assert_problem(409, "automatic-transition");
}

#[tokio::test]
async fn a_guard_that_refuses_is_a_conflict_and_changes_nothing() {
    let app = spawn_app().await;
    let id = app.event_at_l1().await;
    app.fire_ok(
        &id,
        "resolve",
        "desk",
        json!({"resolution_code": "fixed", "solution": "x"}),
    )
    .await;
    let trace_before = app.trace(&id).await;
    let a = app
        .fire(
            &id,
            "close_after_callback",
            "desk",
            json!({"requester_confirmed": false, "satisfaction": 40}),
        )
        .await;
    a.assert_problem(409, "guard-refused");
    assert_eq!(a.body["transition"], "close_after_callback");
    let v = app.get(&format!("/api/v1/instances/{id}"), "desk").await;
    assert_eq!(v.body["state"], "resolved");
    assert!(
        v.body["data"].get("satisfaction").is_none(),
        "refused input is not kept"
    );
    assert_eq!(app.trace(&id).await, trace_before);
}

#[tokio::test]
async fn escalating_past_the_third_line_is_refused_by_its_guard() {
    let app = spawn_app().await;
    let id = app.event_at_l1().await;
    app.fire_ok(&id, "escalate", "desk", json!({"escalation_reason": "a"}))
        .await;
    app.fire_ok(&id, "escalate", "l2", json!({"escalation_reason": "b"}))
        .await;
    // At L3 the instance is in state l3, which `escalate` does not leave.
    app.fire(&id, "escalate", "l2", json!({"escalation_reason": "c"}))
        .await
        .assert_problem(409, "wrong-state");
}

#[tokio::test]
async fn a_missing_required_field_is_unprocessable_and_named() {
    let app = spawn_app().await;
    let id = app.new_event().await;
    let a = app
        .fire(
            &id,
            "classify",
            "desk",
            json!({"category": "order_consultation"}),
        )
        .await;
    a.assert_problem(422, "invalid-data");
    let fields: Vec<&str> = a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["impact", "urgency"]);
    assert_eq!(a.body["field"], "impact");

    let a = app
        .post(
            "/api/v1/instances",
            "req",
            json!({"process": "event", "data": {"kind": "incident"}}),
        )
        .await;
    a.assert_problem(422, "invalid-data");
    let fields: Vec<&str> = a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["channel", "summary"]);
}

#[tokio::test]
async fn a_field_of_the_wrong_type_or_value_is_unprocessable() {
    let app = spawn_app().await;
    let id = app.new_event().await;
    let a = app
        .fire(
            &id,
            "classify",
            "desk",
            json!({"category": "plumbing", "impact": 3, "urgency": "low"}),
        )
        .await;
    a.assert_problem(422, "invalid-data");
    let errors = a.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["field"], "category");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("must be one of")
    );
    assert_eq!(errors[1]["field"], "impact");

    let a = app
        .fire(
            &id,
            "cancel",
            "desk",
            json!({"cancel_reason": "x", "no_such_field": 1}),
        )
        .await;
    a.assert_problem(422, "invalid-data");
    assert_eq!(a.body["field"], "no_such_field");

    let a = app
        .post(
            "/api/v1/instances",
            "req",
            json!({"process": "event", "data": {"kind": "incident", "channel": "phone", "summary": "x".repeat(201)}}),
        )
        .await;
    a.assert_problem(422, "invalid-data");
    assert_eq!(a.body["field"], "summary");
}

#[tokio::test]
async fn a_computed_field_cannot_be_set_by_a_caller() {
    let app = spawn_app().await;
    let id = app.new_event().await;
    let a = app
        .fire(
            &id,
            "classify",
            "desk",
            json!({"category": "order_consultation", "impact": "low", "urgency": "low", "priority": "P1"}),
        )
        .await;
    a.assert_problem(422, "invalid-data");
    assert_eq!(a.body["field"], "priority");
}

#[tokio::test]
async fn a_stale_if_match_is_a_failed_precondition_and_a_current_one_succeeds() {
    let app = spawn_app().await;
    let id = app.event_at_l1().await;
    let current = app.get(&format!("/api/v1/instances/{id}"), "desk").await;
    let etag = current.headers["etag"].to_str().unwrap().to_owned();
    let waiting = json!({"pending_reason": "awaiting_customer"});

    let stale = app
        .fire_if_match(&id, "await", "desk", "\"1\"", waiting.clone())
        .await;
    stale.assert_problem(412, "version-mismatch");
    assert_eq!(stale.body["current_version"], current.body["version"]);

    let ok = app
        .fire_if_match(&id, "await", "desk", &etag, waiting)
        .await;
    assert_eq!(ok.status.as_u16(), 200, "{}", ok.text);
    assert_ne!(
        ok.headers["etag"].to_str().unwrap(),
        etag,
        "a step changes the ETag"
    );

    let bad = app
        .fire_if_match(&id, "resume", "desk", "yesterday", json!({}))
        .await;
    bad.assert_problem(400, "malformed-request");
}

#[tokio::test]
async fn concurrent_fires_on_one_instance_let_exactly_one_through() {
    let app = spawn_app().await;
    let id = app.event_at_l1().await;
    let attempts = (0..8).map(|_| {
        app.fire(
            &id,
            "await",
            "desk",
            json!({"pending_reason": "awaiting_customer"}),
        )
    });
    let answers = futures::future::join_all(attempts).await;
    let ok = answers.iter().filter(|a| a.status.as_u16() == 200).count();
    assert_eq!(ok, 1, "exactly one fire wins");
    for a in answers.iter().filter(|a| a.status.as_u16() != 200) {
        assert_eq!(a.status.as_u16(), 409, "{}", a.text);
        let t = a.body["type"].as_str().unwrap();
        assert!(
            t.ends_with(":conflict") || t.ends_with(":wrong-state"),
            "{t}"
        );
    }
    let trace = app.trace_steps(&id).await;
    assert_eq!(
        trace.len(),
        4,
        "one record for the winner, none for the losers"
    );
}

#[tokio::test]
async fn a_bad_query_parameter_is_a_bad_request() {
    let app = spawn_app().await;
    app.get("/api/v1/instances?limit=lots", "desk")
        .await
        .assert_problem(400, "malformed-request");
    app.get("/api/v1/instances?limit=0", "desk")
        .await
        .assert_problem(400, "malformed-request");
    app.get("/api/v1/instances?colour=red", "desk")
        .await
        .assert_problem(400, "malformed-request");
    app.get("/api/v1/processes/event/graph?format=png", "desk")
        .await
        .assert_problem(400, "malformed-request");
}

#[tokio::test]
async fn u_0000_anywhere_in_a_request_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let id = app.event_at_l1().await;
    let listed = |a: crate::helpers::Answer| a.body["items"].as_array().unwrap().len();
    let instances = listed(app.get("/api/v1/instances", "desk").await);
    let trace = app.trace(&id).await.len();
    let nul = "a\u{0}b";

    let fire = format!("/api/v1/instances/{id}/transitions/await");
    let bodies = [
        json!({"data": {"pending_reason": "awaiting_customer", "note": nul}}),
        json!({"data": {"pending_reason": "awaiting_customer"}, "comment": nul}),
        json!({"data": {"pending_reason": "awaiting_customer", nul: 1}}),
    ];
    for body in bodies {
        let a = app.post(&fire, "desk", body).await;
        a.assert_problem(422, "nul-character");
        assert!(
            a.body["detail"].as_str().unwrap().contains("U+0000"),
            "{}",
            a.text
        );
    }
    let create = json!({"process": "event", "data": {"kind": "incident", "channel": "phone", "summary": nul}});
    app.post("/api/v1/instances", "req", create)
        .await
        .assert_problem(422, "nul-character");
    for path in [
        format!("/api/v1/instances/{id}%00"),
        format!("/api/v1/instances/{id}/trace?format=json%00"),
        "/api/v1/instances?state=l1%00".to_owned(),
    ] {
        app.get(&path, "desk")
            .await
            .assert_problem(422, "nul-character");
    }

    assert_eq!(
        listed(app.get("/api/v1/instances", "desk").await),
        instances
    );
    assert_eq!(app.trace(&id).await.len(), trace);
    // An escaped backslash before `u0000` is six characters of text, kept as sent.
    let text = r"C:\u0000\temp";
    let body = json!({"data": {"pending_reason": "awaiting_customer"}, "comment": text});
    let a = app.post(&fire, "desk", body).await;
    assert_eq!(a.status, reqwest::StatusCode::OK, "{}", a.text);
    let records = app.trace(&id).await;
    let fired = records.iter().rev().find(|r| r["kind"] == "transition");
    assert_eq!(fired.unwrap()["comment"], text);
}
