//! Hot reload and versions: a process owner edits the files of a running server; new
//! instances get the new version, running ones keep theirs, and a broken edit is refused
//! at its line and column while the last good set keeps serving.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use opsflow::clock::SystemClock;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::change::plans;
use crate::helpers::{TestApp, processes_copy, repo_path, spawn_app_configured};

const CAB_QUORUM: &str = "cab_quorum: { low: 1, medium: 2, high: 3 }";
const RAISED_QUORUM: &str = "cab_quorum: { low: 1, medium: 3, high: 3 }";

/// A server on `processes` that checks its folders every 100 ms.
async fn watching_app(processes: &Path) -> TestApp {
    spawn_app_configured(
        processes,
        &repo_path("rules"),
        None,
        Arc::new(SystemClock),
        |s| s.reload_poll_ms = 100,
    )
    .await
}

/// Rewrites the change process in `processes` with `edit`.
fn edit_change(processes: &Path, edit: impl Fn(String) -> String) {
    let path = processes.join("change.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
}

/// Waits until the reload status satisfies `done` (at most 10 s); returns it.
async fn status_when(app: &TestApp, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let s = app.get("/api/v1/admin/reload/status", "adm").await;
        assert_eq!(s.status, StatusCode::OK, "{}", s.text);
        if done(&s.body) {
            return s.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the reload status never got there");
}

/// A normal change of medium risk waiting for the CAB.
async fn change_at_cab(app: &TestApp) -> String {
    let id = app
        .create_id(
            "change",
            "req",
            json!({"summary": "Rotate the payment gateway TLS certificate", "kind": "normal"}),
        )
        .await;
    app.fire_ok(&id, "submit", "req", json!({})).await;
    let v = app.fire_ok(&id, "assess", "cm", plans()).await;
    assert_eq!(v["state"], "cab_review");
    id
}

async fn approve(app: &TestApp, id: &str, voter: &str) -> Value {
    let a = app.vote(id, "cab_approve", voter, "approve").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body
}

#[tokio::test]
async fn a_raised_cab_quorum_saved_on_disk_binds_new_changes_while_a_running_one_completes_under_its_own()
 {
    let (_dir, processes) = processes_copy("change.yaml", |t| t);
    let app = watching_app(&processes).await;
    let before = change_at_cab(&app).await;
    let pinned = app.get(&format!("/api/v1/instances/{before}"), "cm").await;
    let old_hash = pinned.body["definition_hash"].clone();

    edit_change(&processes, |t| t.replace(CAB_QUORUM, RAISED_QUORUM));
    let status = status_when(&app, |s| s["reloads"] == 1).await;
    let attempt = &status["last_attempt"];
    assert_eq!(attempt["ok"], true, "{status}");
    assert_eq!(attempt["trigger"], "watch");
    let changed: Vec<&Value> = attempt["installation"]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["change"] != "unchanged")
        .collect();
    assert_eq!(
        changed.len(),
        1,
        "only the change process changed: {status}"
    );
    assert_eq!(changed[0]["process"], "change");
    assert_eq!(changed[0]["change"], "changed");
    assert_eq!(changed[0]["version"], 2);

    let after = change_at_cab(&app).await;
    let new_view = app.get(&format!("/api/v1/instances/{after}"), "cm").await;
    assert_ne!(new_view.body["definition_hash"], old_hash);

    // Two approvals: enough under version 1, not under version 2.
    approve(&app, &before, "cab1").await;
    assert_eq!(approve(&app, &before, "cab2").await["state"], "approved");
    approve(&app, &after, "cab1").await;
    assert_eq!(approve(&app, &after, "cab2").await["state"], "cab_review");
    assert_eq!(approve(&app, &after, "cab3").await["state"], "approved");
    app.assert_trace_consistent(&before).await;
    app.assert_trace_consistent(&after).await;

    let shown = app.get("/api/v1/processes/change", "cm").await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["version"], 2);
    assert_eq!(shown.body["tables"]["cab_quorum"]["medium"], 3);
    let versions = shown.body["versions"].as_array().unwrap();
    let numbers: Vec<(i64, bool)> = versions
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["serving"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(numbers, [(1, false), (2, true)]);
    assert_eq!(versions[0]["hash"], old_hash);
    let first = app.get("/api/v1/processes/change?version=1", "cm").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.body["version"], 1);
    assert_eq!(first.body["serving"], false);
    assert_eq!(first.body["tables"]["cab_quorum"]["medium"], 2);
}

#[tokio::test]
async fn a_broken_edit_is_refused_at_its_line_and_column_and_the_last_good_set_keeps_serving() {
    let (_dir, processes) = processes_copy("change.yaml", |t| t);
    let app = watching_app(&processes).await;
    edit_change(&processes, |t| {
        t.replacen("    to: cab_review\n", "    to: cab_reveiw\n", 1)
    });

    let refused = app.post("/api/v1/admin/reload", "adm", json!({})).await;
    refused.assert_problem(422, "invalid-definitions");
    let errors = refused.body["errors"].as_array().unwrap();
    assert_eq!(
        errors.len(),
        1,
        "processes linking to the broken one are not blamed too: {}",
        refused.text
    );
    let problem = errors
        .iter()
        .find(|e| e["message"].as_str().unwrap().contains("cab_reveiw"))
        .unwrap_or_else(|| panic!("no error names the misspelt state: {}", refused.text));
    assert!(problem["file"].as_str().unwrap().ends_with("change.yaml"));
    let text = std::fs::read_to_string(processes.join("change.yaml")).unwrap();
    let line = text.lines().position(|l| l.contains("cab_reveiw")).unwrap() + 1;
    assert_eq!(problem["line"], line);
    assert_eq!(problem["column"], 9, "the column of the state's name");
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `cab_review`"),
        "{problem}"
    );
    let messages = refused.body["messages"].as_array().unwrap();
    assert!(
        messages[0]
            .as_str()
            .unwrap()
            .contains(&format!("change.yaml:{line}:9: ")),
        "{messages:?}"
    );

    // The watcher saw the same broken set and leaves it alone; the status tells why.
    let status = status_when(&app, |s| s["failures"].as_u64() >= Some(1)).await;
    assert_eq!(status["reloads"], 0);
    assert_eq!(status["last_attempt"]["ok"], false);
    assert_eq!(status["last_attempt"]["errors"][0]["line"], line);
    let served: Vec<&Value> = status["serving"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["process"] == "change")
        .collect();
    assert_eq!(served[0]["version"], 1);

    // The last good version keeps serving.
    let id = change_at_cab(&app).await;
    assert_eq!(
        app.get("/api/v1/processes/change", "cm").await.body["version"],
        1
    );

    // Fixed on disk: the watcher picks it up.
    edit_change(&processes, |t| t.replace("cab_reveiw", "cab_review"));
    let status = status_when(&app, |s| s["reloads"] == 1).await;
    assert_eq!(status["last_attempt"]["ok"], true);
    assert_eq!(status["last_attempt"]["trigger"], "watch");
    assert_eq!(approve(&app, &id, "cab1").await["state"], "cab_review");
}

#[tokio::test]
async fn an_unchanged_set_reloads_as_unchanged_and_makes_no_new_version() {
    let (_dir, processes) = processes_copy("change.yaml", |t| t);
    let app = watching_app(&processes).await;
    let a = app.post("/api/v1/admin/reload", "adm", json!({})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(
        a.body["processes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["change"] == "unchanged" && p["version"] == 1),
        "{}",
        a.text
    );
    assert_eq!(a.body["removed"], json!([]));
    let versions = app.get("/api/v1/processes/change", "cm").await.body["versions"].clone();
    assert_eq!(versions.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_process_whose_file_is_removed_stops_taking_new_instances_but_its_running_ones_go_on() {
    let (_dir, processes) = processes_copy("report.yaml", |t| t);
    let app = watching_app(&processes).await;
    let monthly = json!({"title": "November service report", "report_type": "monthly"});
    let id = app.create_id("report", "ro", monthly.clone()).await;
    std::fs::remove_file(processes.join("report.yaml")).unwrap();
    let a = app.post("/api/v1/admin/reload", "adm", json!({})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["removed"], json!(["report"]));
    app.post(
        "/api/v1/instances",
        "ro",
        json!({"process": "report", "data": monthly}),
    )
    .await
    .assert_problem(404, "unknown-process");
    let v = app
        .fire_ok(
            &id,
            "cancel",
            "ro",
            json!({"cancel_reason": "merged into the quarterly report"}),
        )
        .await;
    assert_eq!(v["state"], "cancelled");
    app.get("/api/v1/processes/report", "ro")
        .await
        .assert_problem(404, "unknown-process");
    let kept = app.get("/api/v1/processes/report?version=1", "ro").await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.text);
}

#[tokio::test]
async fn removing_a_process_others_link_to_is_refused_where_they_name_it() {
    let (_dir, processes) = processes_copy("change.yaml", |t| t);
    let app = watching_app(&processes).await;
    std::fs::remove_file(processes.join("change.yaml")).unwrap();
    let a = app.post("/api/v1/admin/reload", "adm", json!({})).await;
    a.assert_problem(422, "invalid-definitions");
    let release = std::fs::read_to_string(processes.join("release.yaml")).unwrap();
    let (line, text) = release
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("process: change"))
        .unwrap();
    let at = format!(
        "release.yaml:{}:{}: unknown process `change`",
        line + 1,
        text.find("process: change").unwrap() + "process: ".len() + 1
    );
    assert!(
        a.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_str().unwrap().contains(&at)),
        "{at}: {}",
        a.text
    );
    change_at_cab(&app).await;
}

#[tokio::test]
async fn reloading_and_its_status_need_the_admin_role() {
    let (_dir, processes) = processes_copy("change.yaml", |t| t);
    let app = watching_app(&processes).await;
    app.post("/api/v1/admin/reload", "cm", json!({}))
        .await
        .assert_problem(403, "forbidden");
    app.get("/api/v1/admin/reload/status", "cm")
        .await
        .assert_problem(403, "forbidden");
    app.request(reqwest::Method::POST, "/api/v1/admin/reload", None, None)
        .await
        .assert_problem(401, "unauthorized");
}

#[tokio::test]
async fn asking_for_a_version_a_process_never_had_is_a_404_listing_the_ones_it_has() {
    let app = crate::helpers::spawn_app().await;
    let a = app.get("/api/v1/processes/change?version=7", "cm").await;
    a.assert_problem(404, "unknown-version");
    assert_eq!(a.body["versions"], json!([1]));
    app.get("/api/v1/processes/change?version=x", "cm")
        .await
        .assert_problem(400, "malformed-request");
}

#[tokio::test]
async fn an_edited_rule_module_is_a_new_version_of_the_processes_that_use_it_only() {
    let (dir, processes) = processes_copy("change.yaml", |t| t);
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    for entry in std::fs::read_dir(repo_path("rules")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, rules.join(path.file_name().unwrap())).unwrap();
    }
    let app = spawn_app_configured(&processes, &rules, None, Arc::new(SystemClock), |s| {
        s.reload_poll_ms = 100
    })
    .await;
    let module = rules.join("change.rhai");
    let text = std::fs::read_to_string(&module).unwrap();
    std::fs::write(&module, format!("{text}\n// reviewed by the CAB chair\n")).unwrap();
    let status = status_when(&app, |s| s["reloads"] == 1).await;
    let changed: Vec<&str> = status["last_attempt"]["installation"]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["change"] == "changed")
        .map(|p| p["process"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["change"], "{status}");
}

#[tokio::test]
async fn an_instance_the_server_just_wrote_creates_under_the_definitions_reloaded_meanwhile() {
    let (_dir, processes) = processes_copy("problem.yaml", |t| t);
    let app = watching_app(&processes).await;
    // The engine remembers the event it just wrote, and what that step ran under.
    let id = app.event_at_l1().await;
    let path = processes.join("problem.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{text}\n# reviewed by the problem manager\n"),
    )
    .unwrap();
    let status = status_when(&app, |s| s["reloads"] == 1).await;
    let installed = status["last_attempt"]["installation"]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["process"] == "problem")
        .cloned()
        .unwrap();
    assert_eq!(installed["change"], "changed", "{status}");

    let resolved = app
        .fire_ok(
            &id,
            "resolve",
            "desk",
            json!({"resolution_code": "workaround", "solution": "restart the spooler daily"}),
        )
        .await;
    let problem = resolved["data"]["problem"].as_str().unwrap().to_owned();
    let created = app
        .get(&format!("/api/v1/instances/{problem}"), "adm")
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    assert_eq!(created.body["definition_hash"], installed["hash"]);
}
