//! Bearer tokens made with `opsflow token create`: stored hashed, accepted until revoked or
//! expired, refused with 401 afterwards.

use serde_json::json;

use crate::cli::opsflow;
use crate::helpers::{TestApp, spawn_app_at};

fn run(args: &[&str]) -> (bool, String, String) {
    let o = opsflow(args, std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

async fn processes(app: &TestApp, token: &str) -> u16 {
    app.raw(
        app.client
            .get(format!("{}/api/v1/processes", app.base))
            .bearer_auth(token),
    )
    .await
    .status
    .as_u16()
}

#[tokio::test]
async fn a_token_made_with_the_cli_works_until_it_is_revoked_and_only_its_hash_is_stored() {
    let (app, _clock) = spawn_app_at("2026-12-01T09:00:00Z", |s| s.token_cache_ms = 0).await;
    let db = app.db.url.clone();
    let (ok, secret, note) = run(&[
        "token",
        "create",
        "--db",
        &db,
        "--actor",
        "olga",
        "--roles",
        "service_desk,requester",
    ]);
    assert!(ok, "{note}");
    let secret = secret.trim().to_owned();
    assert!(
        secret.starts_with("opsflow_") && secret.len() > 60,
        "{secret}"
    );
    assert!(
        note.contains("olga") && note.contains("shown only now"),
        "{note}"
    );
    let id = note.split_whitespace().nth(1).unwrap().to_owned();
    assert!(id.starts_with("tok_"), "{note}");

    assert_eq!(processes(&app, &secret).await, 200);
    let created = app
        .raw(
            app.client
                .post(format!("{}/api/v1/instances", app.base))
                .bearer_auth(&secret)
                .json(&json!({"process": "event", "data": {"kind": "incident", "channel": "phone", "summary": "printer"}})),
        )
        .await;
    assert_eq!(created.status.as_u16(), 201, "{}", created.text);
    assert_eq!(created.body["created_by"], "olga");

    let stored = app.engine.store().tokens().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].digest, opsflow::tokens::digest_hex(&secret));
    assert!(!stored[0].digest.contains(&secret[8..]));
    let (ok, list, _) = run(&["token", "list", "--db", &db]);
    assert!(ok);
    assert!(
        list.contains(&id) && list.contains("olga") && list.contains("no expiry"),
        "{list}"
    );
    assert!(!list.contains(&secret), "the list never shows a secret");

    let (ok, out, err) = run(&["token", "revoke", "--db", &db, &id]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("revoked {id}"));
    let refused = app
        .raw(
            app.client
                .get(format!("{}/api/v1/processes", app.base))
                .bearer_auth(&secret),
        )
        .await;
    refused.assert_problem(401, "unauthorized");
    assert!(refused.body["detail"].as_str().unwrap().contains("revoked"));

    let (ok, _, err) = run(&["token", "revoke", "--db", &db, &id]);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("not already revoked"), "{err}");
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let (app, clock) = spawn_app_at("2026-12-01T09:00:00Z", |s| s.token_cache_ms = 0).await;
    let now = app.engine.now_ms();
    let issued = opsflow::tokens::issue(
        app.engine.store().as_ref(),
        "temp",
        vec!["auditor".into()],
        Some(now + 3_600_000),
        now,
    )
    .await
    .unwrap();
    let secret = issued.secret.expose().to_owned();
    assert_eq!(processes(&app, &secret).await, 200);
    clock.advance(3_600_000);
    let a = app
        .raw(
            app.client
                .get(format!("{}/api/v1/processes", app.base))
                .bearer_auth(&secret),
        )
        .await;
    a.assert_problem(401, "unauthorized");
    assert!(
        a.body["detail"].as_str().unwrap().contains("expired"),
        "{}",
        a.text
    );
}

#[test]
fn token_create_refuses_a_bad_expiry_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("t.db").display());
    let (ok, out, err) = run(&[
        "token",
        "create",
        "--db",
        &db,
        "--actor",
        "x",
        "--roles",
        "a",
        "--expires",
        "soon",
    ]);
    assert!(!ok);
    assert!(out.is_empty());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--expires"), "{err}");
    let (ok, _, err) = run(&[
        "token",
        "create",
        "--db",
        &db,
        "--actor",
        "x",
        "--roles",
        "a",
        "--expires",
        "2020-01-01T00:00:00Z",
    ]);
    assert!(!ok);
    assert!(err.contains("in the past"), "{err}");
}
