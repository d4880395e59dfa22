//! Moving running instances to a newer version: a dry run that says what would happen to
//! each, then one transaction per instance with a `migration` trace record.

use std::path::Path;
use std::sync::Arc;

use opsflow::clock::SystemClock;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::change::plans;
use crate::cli::opsflow;
use crate::helpers::{TestApp, processes_copy, repo_path, spawn_app_configured};

/// Version 2 of the change process: `assessment` is renamed `evaluation`, and a summary
/// may be at most 40 characters long.
fn version_2(text: String) -> String {
    text.replace("\n  assessment:\n", "\n  evaluation:\n")
        .replace("to: assessment,", "to: evaluation,")
        .replace("    from: assessment\n", "    from: evaluation\n")
        .replace(
            "[draft, assessment, cab_review",
            "[draft, evaluation, cab_review",
        )
        .replace(
            "min_len: 1, max_len: 200, title: 变更内容",
            "min_len: 1, max_len: 40, title: 变更内容",
        )
}

async fn app_on(processes: &Path) -> TestApp {
    spawn_app_configured(
        processes,
        &repo_path("rules"),
        None,
        Arc::new(SystemClock),
        |_| {},
    )
    .await
}

async fn change(app: &TestApp, summary: &str) -> String {
    app.create_id(
        "change",
        "req",
        json!({"summary": summary, "kind": "normal"}),
    )
    .await
}

/// Instances of version 1 in several states: draft, assessment, cab_review with one vote,
/// a long summary in draft, and a closed one.
struct Fleet {
    draft: String,
    assessing: String,
    voting: String,
    long: String,
    withdrawn: String,
}

async fn fleet(app: &TestApp) -> Fleet {
    let draft = change(app, "Rotate the TLS certificate").await;
    let assessing = change(app, "Patch the database servers").await;
    app.fire_ok(&assessing, "submit", "req", json!({})).await;
    let voting = change(app, "Move the mail relay").await;
    app.fire_ok(&voting, "submit", "req", json!({})).await;
    app.fire_ok(&voting, "assess", "cm", plans()).await;
    let v = app.vote(&voting, "cab_approve", "cab1", "approve").await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    let long = change(
        app,
        "Replace every core switch in both data centres during the weekend window",
    )
    .await;
    let withdrawn = change(app, "An idea we dropped").await;
    app.fire_ok(
        &withdrawn,
        "withdraw",
        "req",
        json!({"withdraw_reason": "not needed"}),
    )
    .await;
    Fleet {
        draft,
        assessing,
        voting,
        long,
        withdrawn,
    }
}

async fn migrate(app: &TestApp, body: Value) -> Value {
    let a = app.post("/api/v1/admin/migrations", "adm", body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body
}

fn outcome<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not in the report: {report}"))
}

/// Starts a server on version 1 with a fleet, then reloads version 2.
async fn fleet_then_version_2() -> (tempfile::TempDir, std::path::PathBuf, TestApp, Fleet) {
    let (dir, processes) = processes_copy("change.yaml", |t| t);
    let app = app_on(&processes).await;
    let f = fleet(&app).await;
    let path = processes.join("change.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, version_2(text)).unwrap();
    let r = app.post("/api/v1/admin/reload", "adm", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    (dir, processes, app, f)
}

#[tokio::test]
async fn a_dry_run_says_per_instance_what_would_happen_and_writes_nothing() {
    let (_dir, _processes, app, f) = fleet_then_version_2().await;
    let before = app.trace(&f.draft).await.len();
    let report = migrate(&app, json!({"process": "change"})).await;
    assert_eq!(report["applied"], false);
    assert_eq!(report["to_version"], 2);
    assert_eq!(outcome(&report, &f.draft)["verdict"], "fine");
    assert_eq!(outcome(&report, &f.draft)["from_version"], 1);
    assert_eq!(outcome(&report, &f.voting)["verdict"], "fine");
    let assessing = outcome(&report, &f.assessing);
    assert_eq!(assessing["verdict"], "needs_mapping");
    assert!(
        assessing["problems"][0]
            .as_str()
            .unwrap()
            .contains("version 2 has no state `assessment`"),
        "{assessing}"
    );
    let long = outcome(&report, &f.long);
    assert_eq!(long["verdict"], "field_missing");
    assert!(
        long["problems"][0]
            .as_str()
            .unwrap()
            .contains("field `summary` no longer fits version 2"),
        "{long}"
    );
    assert!(
        !report["instances"].to_string().contains(&f.withdrawn),
        "a finished instance is not migrated"
    );
    assert_eq!(
        report["counts"],
        json!({"fine": 2, "needs_mapping": 1, "field_missing": 1})
    );
    assert_eq!(
        app.trace(&f.draft).await.len(),
        before,
        "a dry run writes nothing"
    );

    let stranded = migrate(
        &app,
        json!({"process": "change", "states": {"assessment": "submitted"}}),
    )
    .await;
    let s = outcome(&stranded, &f.assessing);
    assert_eq!(s["verdict"], "stranded");
    assert_eq!(s["to_state"], "submitted");
}

#[tokio::test]
async fn applied_the_fine_instances_move_one_by_one_with_a_migration_record_and_run_under_the_new_version()
 {
    let (_dir, _processes, app, f) = fleet_then_version_2().await;
    let report = migrate(
        &app,
        json!({"process": "change", "states": {"assessment": "evaluation"}, "apply": true}),
    )
    .await;
    assert_eq!(report["applied"], true);
    for id in [&f.draft, &f.assessing, &f.voting] {
        let o = outcome(&report, id);
        assert_eq!(o["verdict"], "fine", "{o}");
        assert_eq!(o["migrated"], true, "{o}");
    }
    assert_eq!(outcome(&report, &f.long)["migrated"], false);

    let v2 = app.get("/api/v1/processes/change", "cm").await.body["hash"].clone();
    let moved = app
        .get(&format!("/api/v1/instances/{}", f.assessing), "cm")
        .await;
    assert_eq!(moved.body["state"], "evaluation");
    assert_eq!(moved.body["definition_hash"], v2);
    let trace = app.trace(&f.assessing).await;
    let last = trace.last().unwrap();
    assert_eq!(last["kind"], "migration");
    assert_eq!(last["from"], "assessment");
    assert_eq!(last["to"], "evaluation");
    assert_eq!(last["actor"], "ada");
    assert_eq!(last["definition_hash"], v2);
    assert_eq!(last["comment"], "migrated from version 1 to version 2");
    app.assert_trace_consistent(&f.assessing).await;
    let v = app.fire_ok(&f.assessing, "assess", "cm", plans()).await;
    assert_eq!(v["state"], "cab_review", "it runs on under version 2");

    let voting = app
        .get(&format!("/api/v1/instances/{}", f.voting), "cm")
        .await;
    assert_eq!(
        voting.body["votes"].as_array().unwrap().len(),
        1,
        "the open round is kept"
    );

    let unmoved = app
        .get(&format!("/api/v1/instances/{}", f.long), "cm")
        .await;
    assert_ne!(unmoved.body["definition_hash"], v2);

    let again = migrate(
        &app,
        json!({"process": "change", "states": {"assessment": "evaluation"}, "apply": true}),
    )
    .await;
    let ids: Vec<&str> = again["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [f.long.as_str()],
        "only the one left behind is still on version 1"
    );
}

#[tokio::test]
async fn migrating_needs_the_admin_role_and_a_known_process_version_and_state() {
    let (_dir, _processes, app, _f) = fleet_then_version_2().await;
    app.post(
        "/api/v1/admin/migrations",
        "cm",
        json!({"process": "change"}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.post(
        "/api/v1/admin/migrations",
        "adm",
        json!({"process": "chnage"}),
    )
    .await
    .assert_problem(404, "unknown-process");
    app.post(
        "/api/v1/admin/migrations",
        "adm",
        json!({"process": "change", "to_version": 9}),
    )
    .await
    .assert_problem(404, "unknown-version");
    let bad_state = app
        .post(
            "/api/v1/admin/migrations",
            "adm",
            json!({"process": "change", "states": {"assessment": "evaluaton"}}),
        )
        .await;
    bad_state.assert_problem(422, "invalid-data");
    app.post(
        "/api/v1/admin/migrations",
        "adm",
        json!({"process": "change", "aply": true}),
    )
    .await
    .assert_problem(422, "invalid-data");
}

#[tokio::test]
async fn the_command_line_plans_and_applies_a_migration_on_the_database() {
    let (_dir, processes, app, f) = fleet_then_version_2().await;
    let db = app.db.url.clone();
    let folder = processes.display().to_string();
    let args = |extra: &[&str]| {
        let mut a = vec![
            "migrate-instances",
            "--db",
            &db,
            "--processes",
            &folder,
            "--process",
            "change",
            "--map",
            "assessment=evaluation",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        opsflow(&refs, &repo_path("."))
    };
    let dry = run(&[]);
    let out = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(out.contains("dry run"), "{out}");
    assert!(
        out.contains(&format!(
            "{}  v1 assessment -> evaluation  fine",
            f.assessing
        )),
        "{out}"
    );
    assert!(
        out.contains("field `summary` no longer fits version 2"),
        "{out}"
    );
    assert!(out.contains("field_missing 1, fine 3"), "{out}");

    let applied = run(&["--apply"]);
    let out = String::from_utf8_lossy(&applied.stdout).into_owned();
    assert!(applied.status.success(), "{out}");
    assert!(
        out.contains(&format!("{}  v1 draft -> draft  fine (moved)", f.draft)),
        "{out}"
    );
    let trace = app.trace(&f.draft).await;
    assert_eq!(trace.last().unwrap()["kind"], "migration");
    assert!(
        trace.last().unwrap()["actor"]
            .as_str()
            .unwrap()
            .starts_with("cli:")
    );

    let bad = opsflow(
        &[
            "migrate-instances",
            "--db",
            &db,
            "--processes",
            &folder,
            "--process",
            "change",
            "--map",
            "nonsense",
        ],
        &repo_path("."),
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("expected OLD=NEW"), "{err}");
}
