//! What integrators and operators read: the OpenAPI document and its page, health and
//! readiness, metrics, request ids, and the limits each refused with a problem document.

use std::collections::BTreeSet;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, repo_path, spawn_app, spawn_app_configured};

/// Every `(METHOD, path)` the document describes.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                ops.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// Every `$ref` in `v`.
fn refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.insert(r.clone());
            }
            m.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_is_3_1_with_unique_operation_ids_resolving_refs_and_problem_answers()
{
    let app = spawn_app().await;
    let doc = app.openapi().await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "opsflow");
    let mut ids = BTreeSet::new();
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][method.to_lowercase()];
        let id = op["operationId"].as_str().expect("an operation id");
        assert!(ids.insert(id.to_owned()), "operation id {id} twice");
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{method} {path} has a summary"
        );
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path}"
        );
        for (status, r) in responses {
            if status.as_str() >= "400" {
                assert_eq!(
                    r["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {status} answers a problem document"
                );
            }
        }
        let public = op["security"] == json!([{}]);
        assert_eq!(
            public,
            !path.starts_with("/api/"),
            "{method} {path}: only the operations endpoints are public"
        );
        if !public {
            assert!(
                responses.contains_key("401"),
                "{method} {path} documents 401"
            );
        }
    }
    let mut all = BTreeSet::new();
    refs(&doc, &mut all);
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "$ref {r} resolves"
        );
    }
    // The Problem schema lists every problem type the server can answer.
    let types = doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(types.len(), opsflow::api::PROBLEM_TYPES.len());
    assert!(types.contains(&json!("urn:opsflow:problem:version-mismatch")));
}

/// The routes the source declares outside `routes!` (whose paths come from the handlers'
/// annotations, so they are documented by construction).
fn plain_routes() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(repo_path("src/api")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices(".route(\"") {
            let rest = &text[i + ".route(\"".len()..];
            let end = rest.find('"').unwrap();
            found.push(format!("{}: {}", path.display(), &rest[..end]));
        }
    }
    found
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document_and_every_documented_operation_is_served() {
    assert_eq!(
        plain_routes(),
        Vec::<String>::new(),
        "routes must be registered with utoipa_axum::routes! so that they are documented"
    );
    let app = spawn_app().await;
    let doc = app.openapi().await;
    let ops = operations(&doc);
    for expected in [
        ("POST", "/api/v1/instances"),
        ("GET", "/api/v1/instances"),
        ("POST", "/api/v1/instances/{id}/transitions/{name}"),
        ("GET", "/api/v1/audit/export"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ] {
        assert!(
            ops.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} is documented"
        );
    }
    for (method, path) in &ops {
        let concrete = path
            .replace("{id}", "no-such-id")
            .replace("{name}", "classify");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let a = app
            .raw(
                app.client
                    .request(method.clone(), format!("{}{concrete}", app.base))
                    .bearer_auth("adm"),
            )
            .await;
        assert_ne!(
            a.status.as_u16(),
            405,
            "{method} {path} is routed: {}",
            a.text
        );
        assert!(
            a.body["detail"] != "no such resource",
            "{method} {path} is routed: {}",
            a.text
        );
        assert!(a.status.as_u16() < 500, "{method} {path}: {}", a.text);
    }
}

#[tokio::test]
async fn the_documentation_page_loads_with_its_assets_from_the_server_itself() {
    let app = spawn_app().await;
    let page = app.raw(app.client.get(format!("{}/docs/", app.base))).await;
    assert_eq!(page.status.as_u16(), 200);
    assert!(page.content_type().starts_with("text/html"));
    assert!(page.text.contains("swagger-ui"), "{}", page.text);
    let config = app
        .raw(
            app.client
                .get(format!("{}/docs/swagger-initializer.js", app.base)),
        )
        .await;
    assert_eq!(config.status.as_u16(), 200);
    assert!(config.text.contains("/openapi.json"), "{}", config.text);
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css"] {
        let a = app
            .raw(app.client.get(format!("{}/docs/{asset}", app.base)))
            .await;
        assert_eq!(a.status.as_u16(), 200, "{asset}");
        assert!(a.text.len() > 10_000, "{asset} is served whole");
    }
}

#[tokio::test]
async fn health_and_readiness_answer_without_a_token() {
    let app = spawn_app().await;
    let h = app
        .raw(app.client.get(format!("{}/healthz", app.base)))
        .await;
    assert_eq!(h.status.as_u16(), 200);
    assert_eq!(h.text, "ok");
    let r = app
        .raw(app.client.get(format!("{}/readyz", app.base)))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(r.body["status"], "ready");
    assert_eq!(r.body["processes"], 6);
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_steps_by_process_and_outcome() {
    let app = spawn_app().await;
    let before = app
        .raw(app.client.get(format!("{}/metrics", app.base)))
        .await;
    assert_eq!(before.status.as_u16(), 200);
    assert!(
        before
            .content_type()
            .starts_with("text/plain; version=0.0.4")
    );
    let id = app.event_at_l1().await;
    // A transition not allowed from here: refused.
    app.fire(&id, "confirm", "req", json!({})).await;
    app.get("/api/v1/instances/nope", "desk")
        .await
        .assert_problem(404, "unknown-instance");
    let text = app
        .raw(app.client.get(format!("{}/metrics", app.base)))
        .await
        .text;
    let created =
        r#"opsflow_http_requests_total{method="POST",route="/api/v1/instances",status="201"}"#;
    assert_eq!(metric(&text, created), 1.0, "{text}");
    let missing =
        r#"opsflow_http_requests_total{method="GET",route="/api/v1/instances/{id}",status="404"}"#;
    assert_eq!(metric(&text, missing), 1.0, "{text}");
    assert_eq!(
        metric(
            &text,
            r#"opsflow_http_requests_total{method="GET",route="/metrics",status="200"}"#
        ),
        1.0
    );
    let done = metric(
        &text,
        r#"opsflow_steps_total{process="event",outcome="done"}"#,
    );
    assert!(done >= 2.0, "creation and classification: {text}");
    assert_eq!(
        metric(
            &text,
            r#"opsflow_steps_total{process="event",outcome="refused"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"opsflow_step_duration_seconds_count{process="event"}"#
        ),
        done
    );
    assert_eq!(
        metric(
            &text,
            r#"opsflow_step_duration_seconds_bucket{process="event",le="+Inf"}"#
        ),
        done
    );
    for family in [
        "opsflow_rule_failures_total",
        "opsflow_timer_lag_seconds",
        "opsflow_reloads_total",
        "opsflow_reload_failures_total",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
    }
}

/// The sum of a family's series over its `writer` labels.
fn over_writers(text: &str, family: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(family)?.strip_prefix("{writer=\""))
        .filter_map(|rest| rest.split_once("} ")?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_show_how_many_steps_each_commit_of_the_writers_carried_and_how_long_they_wrote() {
    let app = spawn_app().await;
    let id = app.event_at_l1().await;
    app.fire(&id, "confirm", "req", json!({})).await; // refused before it reaches a writer
    let text = app
        .raw(app.client.get(format!("{}/metrics", app.base)))
        .await
        .text;
    let done = metric(
        &text,
        r#"opsflow_steps_total{process="event",outcome="done"}"#,
    );
    let commits = over_writers(&text, "opsflow_commits_total");
    let steps = over_writers(&text, "opsflow_commit_steps_total");
    assert!(done >= 2.0, "{text}");
    assert!(commits >= 1.0 && commits <= steps, "{text}");
    assert_eq!(steps, done, "every step done went through a writer: {text}");
    assert!(
        over_writers(&text, "opsflow_commit_busy_seconds_total") > 0.0,
        "{text}"
    );
    for family in [
        "opsflow_commits_total",
        "opsflow_commit_steps_total",
        "opsflow_commit_busy_seconds_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} counter")),
            "{family}"
        );
    }
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_keeps_a_sensible_one_from_the_caller() {
    let app = spawn_app().await;
    let a = app.get("/api/v1/processes", "desk").await;
    let id = a.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let b = app
        .raw(
            app.client
                .get(format!("{}/api/v1/instances/missing", app.base))
                .bearer_auth("desk")
                .header("x-request-id", "ticket-4711"),
        )
        .await;
    b.assert_problem(404, "unknown-instance");
    assert_eq!(b.headers["x-request-id"], "ticket-4711");
    let c = app
        .raw(
            app.client
                .get(format!("{}/healthz", app.base))
                .header("x-request-id", "x".repeat(500)),
        )
        .await;
    assert_ne!(c.headers["x-request-id"], "x".repeat(500).as_str());
}

async fn app_with(configure: impl FnOnce(&mut opsflow::settings::Settings)) -> TestApp {
    spawn_app_configured(
        &repo_path("processes"),
        &repo_path("rules"),
        None,
        Arc::new(opsflow::clock::SystemClock),
        configure,
    )
    .await
}

#[tokio::test]
async fn a_reload_requested_too_soon_after_another_is_refused_with_429_and_retry_after() {
    let app = app_with(|s| s.reload_min_interval_ms = 60_000).await;
    let first = app.post("/api/v1/admin/reload", "adm", json!({})).await;
    assert_eq!(first.status.as_u16(), 200, "{}", first.text);
    let second = app.post("/api/v1/admin/reload", "adm", json!({})).await;
    second.assert_problem(429, "too-many-requests");
    let wait: u64 = second.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((59..=60).contains(&wait), "{wait}");
    let text = app
        .raw(app.client.get(format!("{}/metrics", app.base)))
        .await
        .text;
    assert_eq!(metric(&text, "opsflow_reloads_total"), 1.0, "{text}");
}

#[tokio::test]
async fn the_body_and_page_limits_are_the_configured_ones() {
    let app = app_with(|s| {
        s.max_body_bytes = 2048;
        s.max_page = 20;
    })
    .await;
    let big = json!({"process": "event", "data": {"title": "x".repeat(4096)}});
    app.post("/api/v1/instances", "req", big)
        .await
        .assert_problem(413, "payload-too-large");
    let page = app.get("/api/v1/instances?limit=21", "desk").await;
    page.assert_problem(400, "malformed-request");
    assert!(
        page.body["detail"]
            .as_str()
            .unwrap()
            .contains("between 1 and 20")
    );
    assert_eq!(
        app.get("/api/v1/instances?limit=20", "desk")
            .await
            .status
            .as_u16(),
        200
    );
    let doc = app.openapi().await;
    let limit = doc["paths"]["/api/v1/instances"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()
        .clone();
    assert_eq!(limit["schema"]["maximum"], 20.0, "{limit}");
}

#[tokio::test]
async fn a_request_in_flight_when_the_server_is_told_to_stop_is_answered_before_it_stops() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut app = spawn_app().await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let body = json!({"process": "event", "data": {"kind": "incident", "channel": "phone", "summary": "slow upload"}})
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/instances HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer req\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    app.begin_shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers and closes");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    app.shut_down().await;
}

#[tokio::test]
async fn real_answers_fit_the_documented_schemas_and_a_wrong_one_does_not() {
    let app = spawn_app().await;
    let id = app.event_at_l1().await;
    let view = app.get(&format!("/api/v1/instances/{id}"), "desk").await;
    app.assert_documented("InstanceView", &view.body).await;
    let page = app.get("/api/v1/instances", "desk").await;
    app.assert_documented("InstancePage", &page.body).await;
    let trace = app
        .get(&format!("/api/v1/instances/{id}/trace"), "desk")
        .await;
    app.assert_documented("Trace", &trace.body).await;
    let kpis = app.get("/api/v1/kpis", "desk").await;
    app.assert_documented("KpiReport", &kpis.body).await;
    for process in [
        "event",
        "change",
        "problem",
        "release",
        "service-level",
        "report",
    ] {
        let detail = app
            .get(&format!("/api/v1/processes/{process}"), "desk")
            .await;
        app.assert_documented("ProcessDetail", &detail.body).await;
    }
    let problem = app.get("/api/v1/instances/nope", "desk").await;
    app.assert_documented("Problem", &problem.body).await;

    let doc = app.openapi().await;
    let mut wrong = view.body.clone();
    wrong["version"] = json!("seven");
    let caught = std::panic::catch_unwind(|| {
        TestApp::assert_documented_sync(&doc, "InstanceView", &wrong);
    });
    assert!(
        caught.is_err(),
        "a version that is not a number does not fit"
    );
}
