//! Evidence bundles: an instance's or a period's records with the definitions they ran
//! under, a digest and the operator's Ed25519 signature; `opsflow verify BUNDLE` checks
//! everything without the database.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::opsflow;
use crate::evidence::walked_event;
use crate::helpers::{TestApp, repo_path, spawn_app_configured};

/// Makes a key with `opsflow keygen`; returns its file and public key.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let file = dir.join(name);
    let out = opsflow(&["keygen", file.to_str().unwrap()], dir);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let public = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(public.len(), 64, "{public}");
    (file, public)
}

async fn app_signing_with(key: &Path) -> TestApp {
    let key = key.to_owned();
    spawn_app_configured(
        &repo_path("processes"),
        &repo_path("rules"),
        None,
        Arc::new(opsflow::clock::SystemClock),
        move |s| s.evidence_key = Some(key),
    )
    .await
}

/// Runs `opsflow verify` on `bundle` written to a file; exit code and both outputs.
fn verify(dir: &Path, bundle: &Value, public_key: Option<&str>) -> (Option<i32>, String) {
    let file = dir.join("bundle.json");
    std::fs::write(&file, serde_json::to_string_pretty(bundle).unwrap()).unwrap();
    let mut args = vec!["verify", file.to_str().unwrap()];
    if let Some(k) = public_key {
        args.extend(["--public-key", k]);
    }
    let out = opsflow(&args, dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test]
async fn an_instance_bundle_verifies_alone_and_each_edit_or_other_signer_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "operator.key");
    let (_, other_public) = keygen(dir.path(), "other.key");
    let app = app_signing_with(&key).await;
    let id = walked_event(&app).await;

    let a = app
        .get(
            &format!("/api/v1/instances/{id}/trace?format=bundle"),
            "nobody",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.content_type().starts_with("application/json"));
    let bundle = a.body;
    assert_eq!(bundle["format"], "opsflow-evidence/1");
    assert_eq!(bundle["scope"], json!({"instance": id}));
    assert_eq!(bundle["signature"]["public_key"], public.as_str());
    let records = bundle["instances"][0]["trace"].as_array().unwrap().len();
    assert_eq!(records, app.trace(&id).await.len());
    let yaml = std::fs::read_to_string(repo_path("processes/event.yaml")).unwrap();
    assert_eq!(bundle["definitions"][0]["source"]["yaml"], yaml.as_str());
    assert_eq!(
        bundle["definitions"][0]["source"]["rules"]["event"]["source"],
        std::fs::read_to_string(repo_path("rules/event.rhai"))
            .unwrap()
            .as_str()
    );

    let (code, out) = verify(dir.path(), &bundle, Some(&public));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("every hash holds; signed by the expected key"),
        "{out}"
    );
    let (code, out) = verify(dir.path(), &bundle, None);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("pass --public-key"), "{out}");

    let edited = |f: &dyn Fn(&mut Value)| {
        let mut b = bundle.clone();
        f(&mut b);
        b
    };
    let expect = |b: &Value, key: Option<&str>, lines: &[&str]| {
        let (code, out) = verify(dir.path(), b, key);
        assert_eq!(code, Some(1), "{out}");
        for line in lines {
            assert!(out.contains(line), "`{line}` not in:\n{out}");
        }
    };
    let trace =
        |b: &mut Value| -> Vec<Value> { b["instances"][0]["trace"].as_array().unwrap().clone() };

    // A record's data changed: the record and the digest no longer hold.
    let b = edited(&|b| b["instances"][0]["trace"][2]["data"]["x"] = json!("y"));
    expect(
        &b,
        Some(&public),
        &[
            &format!("instance {id} record 3: changed"),
            "bundle: digest does not match its content",
        ],
    );
    // A record deleted.
    let b = edited(&|b| {
        let mut t = trace(b);
        t.remove(3);
        b["instances"][0]["trace"] = Value::Array(t);
    });
    expect(&b, None, &[&format!("instance {id} record 5: missing")]);
    // Two sequence numbers swapped.
    let b = edited(&|b| {
        let mut t = trace(b);
        t.swap(1, 2);
        t[1]["seq"] = json!(2);
        t[2]["seq"] = json!(3);
        b["instances"][0]["trace"] = Value::Array(t);
    });
    expect(
        &b,
        None,
        &[
            &format!("instance {id} record 2: reordered"),
            &format!("instance {id} record 3: reordered"),
        ],
    );
    // The process file the records ran under, edited.
    let b = edited(&|b| {
        let y = b["definitions"][0]["source"]["yaml"].as_str().unwrap();
        b["definitions"][0]["source"]["yaml"] = json!(format!("{y}# one more line\n"));
    });
    let hash = bundle["definitions"][0]["hash"].as_str().unwrap();
    expect(
        &b,
        None,
        &[&format!(
            "definition {hash} (event): does not match its sources"
        )],
    );
    // Checked against another key than the one that signed it.
    let (code, out) = verify(dir.path(), &bundle, Some(&other_public));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "bad signature: signed by key {public}, not by the expected key {other_public}"
        )),
        "{out}"
    );
    // A signature copied onto another digest.
    let b = edited(&|b| b["digest"] = json!("0".repeat(64)));
    expect(
        &b,
        Some(&public),
        &["bad signature: it does not match the digest"],
    );
    // The signature taken off.
    let b = edited(&|b| {
        b.as_object_mut().unwrap().remove("signature");
    });
    expect(
        &b,
        Some(&public),
        &["not signed, but a signer's key was given"],
    );
}

#[tokio::test]
async fn a_bundle_signed_with_another_key_is_refused_and_a_period_bundle_of_the_cli_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "operator.key");
    let (other, _) = keygen(dir.path(), "intruder.key");
    let app = app_signing_with(&key).await;
    let ids = [walked_event(&app).await, walked_event(&app).await];
    let a = app
        .get("/api/v1/audit/export?process=event&format=bundle", "nobody")
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["instances"].as_array().unwrap().len(), 2);
    let db = app.shut_down().await;

    let export = |key: &Path| {
        let out = opsflow(
            &[
                "export",
                "--db",
                &db.url,
                "--process",
                "event",
                "--from",
                "2000-01-01T00:00:00Z",
                "--format",
                "bundle",
                "--key",
                key.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let bundle = export(&key);
    let listed: Vec<&str> = bundle["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(ids.iter().all(|id| listed.contains(&id.as_str())));
    assert_eq!(bundle["scope"]["process"], "event");
    let (code, out) = verify(dir.path(), &bundle, Some(&public));
    assert_eq!(code, Some(0), "{out}");

    let forged = export(&other);
    let (code, out) = verify(dir.path(), &forged, Some(&public));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("bad signature: signed by key"), "{out}");
    assert!(
        out.contains(&format!("not by the expected key {public}")),
        "{out}"
    );

    // Not a bundle at all: one plain line, exit 1.
    std::fs::write(dir.path().join("junk.json"), "{\"format\": 3}").unwrap();
    let out = opsflow(&["verify", "junk.json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("junk.json is not an evidence bundle"),
        "{out:?}"
    );
    // keygen never writes over a key.
    let out = opsflow(&["keygen", key.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}
