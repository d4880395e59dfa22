//! A process file's `read:` list decides who sees its instances: a listing shows only
//! those, and reading one outside it is refused.

use serde_json::json;

use crate::helpers::{TestApp, processes_copy, repo_path, spawn_app_with};

async fn app_with_read(read: &str) -> (TestApp, tempfile::TempDir) {
    let (dir, processes) = processes_copy("event.yaml", |yaml| {
        yaml.replacen("\nstart:\n", &format!("\nread: {read}\n\nstart:\n"), 1)
    });
    (
        spawn_app_with(&processes, &repo_path("rules"), None).await,
        dir,
    )
}

async fn event_by(app: &TestApp, token: &str) -> String {
    app.create_id(
        "event",
        token,
        json!({"kind": "incident", "channel": "phone", "summary": "VPN down"}),
    )
    .await
}

fn ids(page: &serde_json::Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_listing_shows_only_the_instances_the_callers_roles_may_read() {
    let (app, _dir) = app_with_read("[service_desk, l1_lead, creator]").await;
    let by_requester = event_by(&app, "req").await;
    let by_desk = event_by(&app, "desk").await;
    let change = app
        .create_id(
            "change",
            "req",
            json!({"summary": "Monthly patch", "kind": "standard"}),
        )
        .await;

    // The service desk reads every event; the requester only its own; an L2 engineer none.
    let desk = app.get("/api/v1/instances?process=event", "desk").await;
    assert_eq!(ids(&desk.body), vec![by_requester.clone(), by_desk.clone()]);
    let requester = app.get("/api/v1/instances", "req").await;
    assert!(ids(&requester.body).contains(&by_requester));
    assert!(!ids(&requester.body).contains(&by_desk));
    assert!(
        ids(&requester.body).contains(&change),
        "change has no read list"
    );
    let l2 = app.get("/api/v1/instances", "l2").await;
    assert_eq!(ids(&l2.body), vec![change.clone()]);

    // Paging over what one may read gives full pages and a cursor.
    let first = app.get("/api/v1/instances?limit=1", "l2").await;
    assert_eq!(ids(&first.body), vec![change]);
    assert!(first.body["next_cursor"].is_null(), "{}", first.text);
}

#[tokio::test]
async fn reading_an_instance_or_its_trace_outside_the_read_list_is_refused() {
    let (app, _dir) = app_with_read("[service_desk, creator]").await;
    let id = event_by(&app, "desk").await;
    for path in [
        format!("/api/v1/instances/{id}"),
        format!("/api/v1/instances/{id}/trace"),
    ] {
        let a = app.get(&path, "req").await;
        a.assert_problem(403, "forbidden");
        assert!(
            a.body["detail"]
                .as_str()
                .unwrap()
                .contains("read `event` instances"),
            "{}",
            a.text
        );
        assert_eq!(app.get(&path, "desk").await.status.as_u16(), 200);
    }
    let own = event_by(&app, "req").await;
    assert_eq!(
        app.get(&format!("/api/v1/instances/{own}"), "req")
            .await
            .status
            .as_u16(),
        200,
        "the creator reads its own"
    );
}

#[tokio::test]
async fn a_read_list_naming_an_unknown_role_is_reported_at_its_position() {
    let (_dir, processes) = processes_copy("event.yaml", |yaml| {
        yaml.replacen(
            "\nstart:\n",
            "\nread: [service_desk, cleaners]\n\nstart:\n",
            1,
        )
    });
    let o = crate::cli::opsflow(
        &["validate", processes.join("event.yaml").to_str().unwrap()],
        &repo_path(""),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("event.yaml:") && err.contains("cleaners") && err.contains("creator"),
        "{err}"
    );
}
