//! Definitions over HTTP: list, detail, graph and validation of a posted file.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{repo_path, spawn_app};

#[tokio::test]
async fn the_shipped_event_process_is_listed_with_its_hash() {
    let app = spawn_app().await;
    let a = app.get("/api/v1/processes", "desk").await;
    assert_eq!(a.status, StatusCode::OK);
    let event = a.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "event")
        .cloned()
        .unwrap();
    assert_eq!(event["hash"].as_str().unwrap().len(), 64);
    assert_eq!(event["initial"], "new");
    assert!(
        event["states"]
            .as_array()
            .unwrap()
            .contains(&"closed".into())
    );
}

#[tokio::test]
async fn a_definition_shows_what_a_client_needs_to_build_its_forms() {
    let app = spawn_app().await;
    let a = app.get("/api/v1/processes/event", "desk").await;
    assert_eq!(a.status, StatusCode::OK);
    let d = &a.body;
    assert_eq!(d["fields"]["impact"]["type"], "enum");
    assert_eq!(
        d["fields"]["impact"]["values"],
        serde_json::json!(["high", "medium", "low"])
    );
    assert_eq!(d["fields"]["summary"]["required"], true);
    assert_eq!(d["fields"]["summary"]["max_len"], 200);
    assert_eq!(d["fields"]["satisfaction"]["type"], "integer");
    assert_eq!(d["fields"]["priority"]["computed"], true);
    let states = d["states"].as_array().unwrap();
    assert!(
        states
            .iter()
            .any(|s| s["name"] == "new" && s["initial"] == true)
    );
    assert!(
        states
            .iter()
            .any(|s| s["name"] == "closed" && s["final"] == true)
    );
    let escalate = d["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "escalate")
        .unwrap();
    assert_eq!(escalate["from"], serde_json::json!(["l1", "l2"]));
    assert_eq!(escalate["to"], "routing");
    assert_eq!(
        escalate["requires"],
        serde_json::json!(["escalation_reason"])
    );
    assert!(
        escalate["roles"]
            .as_array()
            .unwrap()
            .contains(&"service_desk".into())
    );
}

#[tokio::test]
async fn the_state_graph_comes_as_mermaid_or_dot() {
    let app = spawn_app().await;
    let m = app.get("/api/v1/processes/event/graph", "desk").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.text.starts_with("stateDiagram-v2\n"));
    assert!(m.text.contains("l1 --> routing: escalate"));
    assert!(m.text.contains("routing --> l2: to_l2 (auto)"));
    let d = app
        .get("/api/v1/processes/event/graph?format=dot", "desk")
        .await;
    assert!(d.text.starts_with("digraph \"event\" {"));
    assert!(
        d.text
            .contains("\"resolved\" -> \"closed\" [label=\"confirm\"]")
    );
}

#[tokio::test]
async fn posting_a_broken_process_file_lists_every_problem_with_its_position() {
    let app = spawn_app().await;
    let good = std::fs::read_to_string(repo_path("processes/event.yaml")).unwrap();
    let a = app
        .raw(
            app.client
                .post(format!("{}/api/v1/processes/validate", app.base))
                .bearer_auth("desk")
                .body(good.clone()),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["valid"], true, "{}", a.text);
    assert_eq!(a.body["process"], "event");
    assert_eq!(
        a.body["warnings"],
        json!([]),
        "the shipped file raises no warning"
    );

    let suspicious = good.replacen(
        "roles:
",
        "roles:
  - auditor
",
        1,
    );
    let a = app
        .raw(
            app.client
                .post(format!("{}/api/v1/processes/validate", app.base))
                .bearer_auth("desk")
                .body(suspicious),
        )
        .await;
    assert_eq!(
        a.body["valid"], true,
        "a warning does not make a file invalid"
    );
    let warning = a.body["warnings"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        warning.starts_with("warning: role `auditor` is declared"),
        "{}",
        a.text
    );

    let bad = good.replace("    to: resolved\n", "    to: resolvd\n");
    let a = app
        .raw(
            app.client
                .post(format!("{}/api/v1/processes/validate", app.base))
                .bearer_auth("desk")
                .body(bad),
        )
        .await;
    assert_eq!(a.body["valid"], false);
    let errors = a.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{}", a.text);
    assert!(errors[0]["line"].as_u64().unwrap() > 1);
    assert_eq!(errors[0]["column"], 9);
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `resolved`")
    );
}

#[tokio::test]
async fn posting_a_process_whose_timer_names_an_unknown_calendar_is_invalid() {
    let app = spawn_app().await;
    let yaml = "process: ticket\nroles: [r]\nstates:\n  open: { initial: true }\n  closed: { final: true }\ntransitions:\n  close: { from: open, to: closed, roles: [r] }\ntimers:\n  expiry: { in: [open], after: 1h, calendar: service_desk, fire: close }\n";
    let post = |body: String| {
        app.raw(
            app.client
                .post(format!("{}/api/v1/processes/validate", app.base))
                .bearer_auth("desk")
                .body(body),
        )
    };
    let a = post(yaml.to_owned()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["valid"], false, "{}", a.text);
    assert_eq!(a.body["errors"][0]["line"], 9);
    assert_eq!(a.body["errors"][0]["column"], 46);
    assert!(
        a.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `service-desk`"),
        "{}",
        a.text
    );
    let a = post(yaml.replace("service_desk", "service-desk")).await;
    assert_eq!(a.body["valid"], true, "{}", a.text);
}
