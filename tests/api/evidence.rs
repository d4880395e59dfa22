//! Tamper-evident traces: every record is chained to the one before it by SHA-256, and
//! `opsflow verify --db URL` names each record changed, missing or reordered.

use serde_json::{Value, json};

use crate::cli::opsflow;
use crate::helpers::{TestApp, repo_path, spawn_app};

/// An event walked to `resolved`: eight trace records or more.
pub async fn walked_event(app: &TestApp) -> String {
    let id = app.event_at_l1().await;
    app.fire_ok(
        &id,
        "await",
        "desk",
        json!({"pending_reason": "awaiting_customer"}),
    )
    .await;
    app.fire_ok(&id, "resume", "req", json!({})).await;
    app.fire_ok(
        &id,
        "resolve",
        "desk",
        json!({"resolution_code": "fixed", "solution": "restarted the spooler"}),
    )
    .await;
    id
}

/// Runs SQL statements on the database at `url`, as someone with database access would.
pub async fn tamper(url: &str, statements: &[String]) {
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        for s in statements {
            sqlx::query(s).execute(&pool).await.unwrap();
        }
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        for s in statements {
            sqlx::query(s).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
}

fn verify(url: &str) -> (Option<i32>, String) {
    let out = opsflow(&["verify", "--db", url], &repo_path("."));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn each_record_carries_the_hash_of_the_one_before_it() {
    let app = spawn_app().await;
    let id = walked_event(&app).await;
    let trace = app.trace(&id).await;
    assert!(trace.len() >= 8);
    assert_eq!(
        trace[0]["prev_hash"], "",
        "the first record starts the chain"
    );
    for pair in trace.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
        let hash = pair[0]["hash"].as_str().unwrap();
        assert_eq!(hash.len(), 64, "SHA-256 in hex");
    }
    let hashes: Vec<&Value> = trace.iter().map(|r| &r["hash"]).collect();
    let mut unique = hashes.clone();
    unique.dedup();
    assert_eq!(unique.len(), hashes.len());
}

#[tokio::test]
async fn a_record_keeps_the_values_it_replaced_and_every_rule_decision_with_its_source_hash() {
    use sha2::Digest;
    let sha = |text: &str| hex::encode(sha2::Sha256::digest(text.as_bytes()));
    let app = spawn_app().await;
    let id = walked_event(&app).await;
    let trace = app.trace_steps(&id).await;
    let by = |name: &str| {
        trace
            .iter()
            .find(|r| r["transition"] == name)
            .unwrap_or_else(|| panic!("no `{name}` record in {trace:#?}"))
    };

    let classify = by("classify");
    assert_eq!(classify["before"]["category"], Value::Null, "unset before");
    assert_eq!(classify["data"]["category"], "order_consultation");
    let decision = &classify["rules"][0];
    assert_eq!(decision["rule"], "transitions.classify.action");
    assert_eq!(decision["module"], "event");
    assert_eq!(decision["function"], "classify");
    let module = std::fs::read_to_string(repo_path("rules/event.rhai")).unwrap();
    assert_eq!(decision["source_hash"], sha(&module));
    assert_eq!(decision["result"]["tier"], classify["data"]["tier"]);
    assert_eq!(
        classify["before"]["tier"],
        Value::Null,
        "fields the action wrote have their before-values too"
    );

    let routed = by("to_l1");
    assert_eq!(routed["kind"], "automatic");
    let decision = &routed["rules"][0];
    assert_eq!(decision["rule"], "transitions.to_l1.guard");
    assert_eq!(decision["module"], "event.yaml");
    assert!(decision.get("function").is_none());
    assert_eq!(decision["source_hash"], sha(r#"data.tier == "L1""#));
    assert_eq!(decision["result"], true);

    let resumed = by("resume");
    assert_eq!(resumed["data"]["pending_reason"], Value::Null);
    assert_eq!(resumed["before"]["pending_reason"], "awaiting_customer");
    assert_eq!(resumed["rules"][0]["rule"], "transitions.resume.action");

    // The before-values and decisions are part of what the hash covers.
    let seq = resumed["seq"].as_i64().unwrap();
    let db = app.shut_down().await;
    let (code, out) = verify(&db.url);
    assert_eq!(code, Some(0), "{out}");
    tamper(
        &db.url,
        &[format!(
            "UPDATE trace SET detail = NULL WHERE instance_id = '{id}' AND seq = {seq}"
        )],
    )
    .await;
    let (code, out) = verify(&db.url);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("instance {id} record {seq}: changed")),
        "{out}"
    );
}

#[tokio::test]
async fn verify_passes_untouched_traces_and_names_each_changed_missing_or_reordered_record() {
    let app = spawn_app().await;
    let ids = [
        walked_event(&app).await,
        walked_event(&app).await,
        walked_event(&app).await,
        walked_event(&app).await,
        walked_event(&app).await,
    ];
    let db = app.shut_down().await;
    let (code, out) = verify(&db.url);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("5 instance(s)"), "{out}");
    assert!(out.contains("every chain holds"), "{out}");

    let [changed, gap, swapped, cut, intact] = &ids;
    tamper(
        &db.url,
        &[
            format!(
                "UPDATE trace SET data = '{{\"solution\": \"a better story\"}}'
                 WHERE instance_id = '{changed}' AND seq = 2"
            ),
            format!("DELETE FROM trace WHERE instance_id = '{gap}' AND seq = 3"),
            format!("UPDATE trace SET seq = 1000 WHERE instance_id = '{swapped}' AND seq = 4"),
            format!("UPDATE trace SET seq = 4 WHERE instance_id = '{swapped}' AND seq = 5"),
            format!("UPDATE trace SET seq = 5 WHERE instance_id = '{swapped}' AND seq = 1000"),
            format!(
                "DELETE FROM trace WHERE instance_id = '{cut}'
                 AND seq = (SELECT MAX(seq) FROM trace WHERE instance_id = '{cut}')"
            ),
        ],
    )
    .await;
    let (code, out) = verify(&db.url);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("instance {changed} record 2: changed")),
        "{out}"
    );
    assert!(
        out.contains(&format!("instance {gap} record 4: missing")),
        "{out}"
    );
    assert!(
        out.contains(&format!("instance {swapped} record 4: reordered")),
        "{out}"
    );
    assert!(
        out.contains(&format!("instance {swapped} record 5: reordered")),
        "{out}"
    );
    assert!(out.contains(&format!("instance {cut} record")), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("instance {cut} record")) && l.contains("missing")),
        "{out}"
    );
    assert!(
        !out.contains(intact.as_str()),
        "the untouched instance verifies: {out}"
    );
}

#[tokio::test]
async fn a_checkpoint_makes_a_whole_deleted_instance_and_an_edited_checkpoint_detectable() {
    let app = spawn_app().await;
    let kept = walked_event(&app).await;
    let erased = walked_event(&app).await;
    let db = app.shut_down().await;
    let out = opsflow(&["checkpoint", "--db", &db.url], &repo_path("."));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("checkpoint 1 of 2 instance(s)"), "{text}");
    let again = opsflow(&["checkpoint", "--db", &db.url], &repo_path("."));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing changed"),
        "a second checkpoint right away has nothing to add"
    );
    let (code, out) = verify(&db.url);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("1 checkpoint(s)"), "{out}");

    // Someone erases an instance and everything that points at it.
    tamper(
        &db.url,
        &[
            format!("DELETE FROM trace WHERE instance_id = '{erased}'"),
            format!("DELETE FROM links WHERE from_id = '{erased}' OR to_id = '{erased}'"),
            format!("DELETE FROM instances WHERE id = '{erased}'"),
        ],
    )
    .await;
    let (code, out) = verify(&db.url);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("instance {erased}: deleted (checkpoint 1 saw it)")),
        "{out}"
    );
    assert!(!out.contains(kept.as_str()), "{out}");

    // Hiding it in the checkpoint too breaks the checkpoint's hash.
    tamper(
        &db.url,
        &[format!(
            "DELETE FROM checkpoint_entries WHERE instance_id = '{erased}'"
        )],
    )
    .await;
    let (code, out) = verify(&db.url);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("checkpoint 1: changed"), "{out}");
}

#[tokio::test]
async fn an_auditor_exports_a_process_or_a_period_as_json_lines_csv_and_xes() {
    let app = spawn_app().await;
    let early = walked_event(&app).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let cut = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let late = walked_event(&app).await;
    let all: Vec<Value> = [app.trace(&early).await, app.trace(&late).await].concat();
    let steps = all.iter().filter(|r| r["kind"] != "sla").count();

    let path = |q: &str| format!("/api/v1/audit/export?process=event{q}");
    let jsonl = app.get(&path("&format=jsonl"), "nobody").await;
    assert_eq!(jsonl.status, 200, "{}", jsonl.text);
    assert_eq!(jsonl.content_type(), "application/x-ndjson");
    let lines: Vec<Value> = jsonl
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), all.len());
    assert!(
        lines
            .iter()
            .all(|l| l["process"] == "event" && l["hash"].is_string())
    );

    let csv = app.get(&path("&format=csv"), "nobody").await;
    assert!(csv.content_type().starts_with("text/csv"));
    assert_eq!(csv.text.lines().count(), 1 + all.len());
    assert!(csv.text.starts_with("process,instance_id,seq,"));

    let xes = app.get(&path("&format=xes"), "nobody").await;
    assert_eq!(xes.content_type(), "application/xml");
    assert_eq!(xes.text.matches("<trace>").count(), 2);
    assert_eq!(
        xes.text.matches("<event>").count(),
        steps,
        "every step but SLA records"
    );
    assert!(
        xes.text
            .contains(r#"<string key="concept:name" value="classify"/>"#)
    );
    assert!(
        xes.text
            .contains(r#"<string key="org:resource" value="dana"/>"#)
    );

    // A period: only the records written after the cut, so only the later event.
    let period = app
        .get(&path(&format!("&format=jsonl&from={cut}")), "nobody")
        .await;
    let ids: std::collections::BTreeSet<String> = period
        .text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["instance_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), [late]);

    app.get(&path(""), "desk")
        .await
        .assert_problem(403, "forbidden");
    app.get(&path("&from=yesterday"), "nobody")
        .await
        .assert_problem(400, "malformed-request");
    app.get("/api/v1/audit/export?process=evnt", "nobody")
        .await
        .assert_problem(404, "unknown-process");

    // The CLI writes the same export from the database.
    let api_csv = csv.text.clone();
    let db = app.shut_down().await;
    let out = opsflow(
        &[
            "export",
            "--db",
            &db.url,
            "--process",
            "event",
            "--format",
            "csv",
        ],
        &repo_path("."),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), api_csv);
}

#[tokio::test]
async fn an_auditor_reads_every_trace_and_export_but_cannot_start_or_fire_anything() {
    let app = spawn_app().await;
    let id = walked_event(&app).await;
    let trace = app
        .get(&format!("/api/v1/instances/{id}/trace"), "nobody")
        .await;
    assert_eq!(trace.status, 200, "{}", trace.text);
    let shown = app.get(&format!("/api/v1/instances/{id}"), "nobody").await;
    assert_eq!(
        shown.body["allowed_transitions"],
        json!([]),
        "nothing to fire"
    );
    app.fire(&id, "confirm", "nobody", json!({"satisfaction": 100}))
        .await
        .assert_problem(403, "forbidden");
    app.post(
        "/api/v1/instances",
        "nobody",
        json!({"process": "event", "data": {"kind": "incident", "channel": "phone", "summary": "x"}}),
    )
    .await
    .assert_problem(403, "forbidden");
    let export = app.get("/api/v1/audit/export", "nobody").await;
    assert_eq!(export.status, 200);
    assert!(export.text.lines().count() >= 8);
    let steps = app.trace(&id).await.len();
    assert_eq!(
        app.get(&format!("/api/v1/instances/{id}"), "desk")
            .await
            .body["version"],
        steps as i64,
        "the auditor changed nothing"
    );
}
