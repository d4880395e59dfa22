//! Service reports with their KPI snapshot: the collect step computes the period's KPIs and
//! SLA attainment from the traces, the report walks from scheduled to archived with the
//! snapshot attached, renders as Markdown and HTML, and is computed again to the same
//! figures later, even after the KPI files changed.

use std::path::Path;
use std::sync::Arc;

use opsflow::clock::{ManualClock, parse_ms};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::opsflow;
use crate::evidence::tamper;
use crate::helpers::{TestApp, repo_path, spawn_app_at};
use crate::service_level::active_sla;

const MINUTE: i64 = 60_000;
/// Monday 2 November 2026, 09:00 in Beijing: the service desk's day starts.
const T0: &str = "2026-11-02T01:00:00Z";
const CUSTOMER: &str = "Finance dept.";

struct Scenario {
    app: TestApp,
    clock: Arc<ManualClock>,
    t0: i64,
}

impl Scenario {
    async fn start(kpis: &Path) -> Self {
        let kpis = kpis.to_path_buf();
        let (app, clock) = spawn_app_at(T0, |s| s.kpis = kpis).await;
        Scenario {
            app,
            clock,
            t0: parse_ms(T0).unwrap(),
        }
    }

    /// Moves the clock to `minutes` after T0.
    fn at(&self, minutes: i64) {
        let now = opsflow::clock::Clock::now_ms(self.clock.as_ref());
        self.clock.advance(self.t0 + minutes * MINUTE - now);
    }

    /// An event of `customer`'s order platform whose impact and urgency are known from the
    /// start, so its clocks run on the SLA's targets for its priority.
    async fn event(&self, customer: &str, impact: &str, urgency: &str) -> String {
        self.app
            .create_id(
                "event",
                "desk",
                json!({"kind": "incident", "channel": "phone", "summary": "orders fail",
                       "impact": impact, "urgency": urgency,
                       "customer": customer, "service": "order platform"}),
            )
            .await
    }

    /// A P2 event of `customer` recording an outage of the order platform from T0.
    async fn outage_event(&self, customer: &str) -> String {
        self.app
            .create_id(
                "event",
                "desk",
                json!({"kind": "incident", "channel": "phone", "summary": "order platform down",
                       "impact": "high", "urgency": "medium", "outage_start": T0,
                       "customer": customer, "service": "order platform"}),
            )
            .await
    }

    async fn classify(&self, id: &str) {
        let v = self
            .app
            .fire_ok(
                id,
                "classify",
                "desk",
                json!({"category": "order_consultation"}),
            )
            .await;
        assert_eq!(v["state"], "l1");
    }

    async fn resolve(&self, id: &str) {
        self.app
            .fire_ok(
                id,
                "resolve",
                "desk",
                json!({"resolution_code": "fixed", "solution": "restarted the order service"}),
            )
            .await;
    }

    async fn collect(&self, id: &str, body: Value) -> crate::helpers::Answer {
        self.app
            .post(
                &format!("/api/v1/instances/{id}/report/collect"),
                "ro",
                body,
            )
            .await
    }
}

/// The SLA (customer Finance dept., P2: 1 h response, 8 h resolution; P4: 2 h and 72 h,
/// counted in service-desk hours from 09:00), then from T0 (minutes after it):
/// - E1, Finance, P2, an outage from T0 to 90 (its end recorded at resolution): classified at 30, resolved at 120, confirmed
///   at 180 (score 95);
/// - E2, Finance, P4: classified at 180, still at L1;
/// - E3, another customer, an outage from T0 never ended, classified at 30 and resolved at
///   60: outside the report.
///
/// A monthly report for November, at `collecting`, is returned with the events.
async fn scenario(kpis: &Path) -> (Scenario, String, [String; 3]) {
    let s = Scenario::start(kpis).await;
    let sla = active_sla(&s.app).await;
    let e1 = s.outage_event(CUSTOMER).await;
    let e2 = s.event(CUSTOMER, "low", "low").await;
    let e3 = s.outage_event("Logistics dept.").await;
    s.at(30);
    s.classify(&e1).await;
    s.classify(&e3).await;
    s.at(60);
    s.resolve(&e3).await;
    s.at(120);
    s.app
        .fire_ok(
            &e1,
            "resolve",
            "desk",
            json!({"resolution_code": "fixed", "solution": "failed over the database",
                   "outage_end": "2026-11-02T02:30:00Z"}),
        )
        .await;
    s.at(180);
    s.app
        .fire_ok(&e1, "confirm", "req", json!({"satisfaction": 95}))
        .await;
    s.classify(&e2).await;
    let report = s
        .app
        .create_id(
            "report",
            "ro",
            json!({"title": "November service report", "report_type": "monthly"}),
        )
        .await;
    s.app
        .fire_ok(
            &report,
            "start",
            "ro",
            json!({"sla": sla, "period_start": "2026-11-01T00:00:00+08:00",
                   "period_end": "2026-12-01T00:00:00+08:00"}),
        )
        .await;
    s.app
        .fire_ok(
            &report,
            "elements_identified",
            "ro",
            json!({"elements": "SLA attainment per priority, MTTA, MTTR, satisfaction"}),
        )
        .await;
    s.at(600);
    (s, report, [e1, e2, e3])
}

fn row<'a>(snapshot: &'a Value, metric: &str, priority: &str) -> &'a Value {
    snapshot["sla_attainment"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == metric && r["priority"] == priority)
        .unwrap_or_else(|| panic!("no row {metric}/{priority} in {snapshot}"))
}

fn kpi<'a>(snapshot: &'a Value, name: &str) -> &'a Value {
    snapshot["kpis"]["kpis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("no KPI `{name}`"))
}

/// Fires `transition` of the report and returns its new state.
async fn step(s: &Scenario, report: &str, transition: &str, token: &str, data: Value) -> Value {
    s.app.fire_ok(report, transition, token, data).await["state"].clone()
}

#[tokio::test]
async fn a_monthly_report_walks_from_scheduled_to_archived_with_its_kpi_snapshot() {
    let (s, report, _) = scenario(&repo_path("kpis")).await;
    let a = s.collect(&report, json!({})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["state"], "drafting");
    let hash = a.body["data"]["kpi_snapshot"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 64);
    // The SLA table and a summary were written into the report for the owner to work on.
    let table = a.body["data"]["sla_attainment"].as_str().unwrap();
    assert!(
        table.contains("| event | first_response | P4 | 2 h | 1 | 0 | 1 | 0 (0) | 0% |"),
        "{table}"
    );
    let summary = a.body["data"]["data_summary"].as_str().unwrap();
    assert!(summary.contains("2 instance(s)"), "{summary}");
    assert!(
        summary.contains("3 of 4 SLA clocks met their target (75.0%)"),
        "{summary}"
    );

    let shown = s
        .app
        .get(&format!("/api/v1/instances/{report}/report"), "ro")
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert_eq!(shown.body["hash"], hash);
    assert_eq!(shown.body["intact"], true);
    s.app.assert_documented("ReportView", &shown.body).await;
    let snap = &shown.body["snapshot"];
    assert_eq!(snap["sla"]["customer"], CUSTOMER);
    assert_eq!(snap["from"], "2026-10-31T16:00:00.000Z");
    assert_eq!(snap["period_end"], "2026-11-30T16:00:00.000Z");
    // The month had not ended: the traces were read as they stood at collection.
    assert_eq!(snap["to"], "2026-11-02T11:00:00.000Z");
    assert_eq!(snap["collected_by"], "ron");
    assert_eq!(snap["kpis"]["kpi_version"], 1);
    assert_eq!(snap["kpis"]["kpi_hash"].as_str().unwrap().len(), 64);
    let defs: Vec<&str> = snap["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["process"].as_str().unwrap())
        .collect();
    assert_eq!(defs, ["change", "event", "problem"]);

    // E1 and E2 only: E3 is another customer's.
    assert_eq!(snap["kpis"]["instances"], 2);
    // (metric, priority) → (target hours, measured, met, missed, open, attainment)
    for (metric, priority, hours, measured, met, missed, open, attainment) in [
        ("callback", "P2", 24.0, 1, 1, 0, 0, json!(100.0)), // confirmed 1 h after resolution
        ("first_response", "P2", 1.0, 1, 1, 0, 0, json!(100.0)), // classified at 30 min
        ("first_response", "P4", 2.0, 1, 0, 1, 0, json!(0.0)), // classified after 3 h
        ("resolution", "P2", 8.0, 1, 1, 0, 0, json!(100.0)), // resolved at 2 h
        ("resolution", "P4", 72.0, 0, 0, 0, 1, Value::Null), // still at L1
    ] {
        let r = row(snap, metric, priority);
        assert_eq!(r["target_hours"], json!([hours, hours]), "{r}");
        assert_eq!(
            (&r["measured"], &r["met"], &r["missed"], &r["open"]),
            (&json!(measured), &json!(met), &json!(missed), &json!(open)),
            "{r}"
        );
        assert_eq!(r["attainment"], attainment, "{r}");
    }
    assert_eq!(snap["sla_attainment"].as_array().unwrap().len(), 5);
    for (name, value, verdict) in [
        ("mtta", json!(105.0), "missed"), // (30 + 180) / 2 min
        ("mttr", json!(2.0), "met"),      // E1 only
        ("first_response_attainment", json!(50.0), "missed"),
        ("satisfaction", json!(95.0), "met"),
        ("backlog", json!(1.0), "met"), // E2
        ("change_success_rate", Value::Null, "no_data"),
        ("outages", json!(1.0), "met"),
        ("outage_hours", json!(1.5), "missed"), // 09:00 to 10:30
        // Out 1.5 h of the 43 h from 1 November 00:00 (Beijing) to the collection.
        ("availability", json!(96.51), "missed"),
    ] {
        let k = kpi(snap, name);
        assert_eq!(
            (&k["value"], k["verdict"].as_str().unwrap()),
            (&value, verdict),
            "{k}"
        );
    }

    // The collect step is in the report's own trace with the snapshot's hash.
    let trace = s.app.trace(&report).await;
    let collected = trace
        .iter()
        .find(|r| r["transition"] == "data_collected")
        .expect("the collect step is traced");
    assert_eq!(collected["data"]["kpi_snapshot"], hash);

    // Drafting, review, submission and archive keep the snapshot attached.
    let content = json!({"content": "1. Service overview\n2. SLA attainment (see table)"});
    assert_eq!(
        step(&s, &report, "submit_for_review", "ro", content).await,
        "manager_review"
    );
    let v = s
        .app
        .vote(&report, "manager_approve", "dm", "approve")
        .await;
    assert_eq!(v.body["state"], "ready", "{}", v.text);
    let to = json!({"submitted_to": "Finance dept. IT manager"});
    assert_eq!(step(&s, &report, "submit", "ro", to).await, "submitted");
    let archive = json!({"archive_ref": "RPT-2026-11"});
    assert_eq!(
        step(&s, &report, "archive", "ro", archive).await,
        "archived"
    );
    s.app.assert_trace_consistent(&report).await;

    let shown = s
        .app
        .get(&format!("/api/v1/instances/{report}/report"), "ro")
        .await;
    assert_eq!(shown.body["instance"]["state"], "archived");
    assert_eq!(shown.body["hash"], hash);

    let html = s
        .app
        .get(
            &format!("/api/v1/instances/{report}/report?format=html"),
            "ro",
        )
        .await;
    assert_eq!(html.status, StatusCode::OK);
    assert!(
        html.content_type().starts_with("text/html"),
        "{}",
        html.content_type()
    );
    let page = &html.text;
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(
        page.contains("<h1>Service report: November service report</h1>"),
        "{page}"
    );
    assert!(page.contains("<h2>SLA attainment</h2>"));
    assert!(
        page.contains(
            "<td>first_response</td><td>P4</td><td>2 h</td><td>1</td><td>0</td><td>1</td>"
        ),
        "{page}"
    );
    assert!(page.contains("event first_response attainment (%) by priority"));
    assert!(
        page.matches("<svg").count() >= 3,
        "charts for SLA metrics and KPIs"
    );
    assert!(page.contains("RPT-2026-11") && page.contains(&hash));
    assert!(page.contains("1. Service overview"));
    assert!(
        !page.contains("<script") && !page.contains("src=\"http"),
        "self-contained"
    );

    let md = s
        .app
        .get(
            &format!("/api/v1/instances/{report}/report?format=md"),
            "ro",
        )
        .await;
    assert!(md.content_type().starts_with("text/markdown"));
    assert!(
        md.text
            .starts_with("# Service report: November service report")
    );
    assert!(md.text.contains("## SLA attainment"));
    assert!(
        md.text
            .contains("| event | resolution | P4 | 72 h | 0 | 0 | 0 | 1 (0) | – |"),
        "{}",
        md.text
    );
    assert!(md.text.contains("## KPIs"));
}

#[tokio::test]
async fn a_snapshot_is_computed_again_to_the_same_figures_after_the_kpi_files_changed() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["event.yaml", "change.yaml", "problem.yaml"] {
        std::fs::copy(repo_path("kpis").join(f), dir.path().join(f)).unwrap();
    }
    let (s, report, [_, e2, _]) = scenario(dir.path()).await;
    let a = s.collect(&report, json!({})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let hash = a.body["data"]["kpi_snapshot"].as_str().unwrap().to_owned();

    // Later: the process owner tightens a target, and the open event moves on.
    let event = dir.path().join("event.yaml");
    let text = std::fs::read_to_string(&event).unwrap();
    std::fs::write(
        &event,
        text.replace(r#"target: { "<=": 60 }"#, r#"target: { "<=": 30 }"#),
    )
    .unwrap();
    s.at(700);
    s.resolve(&e2).await;

    let v = s
        .app
        .get(
            &format!("/api/v1/instances/{report}/report/verify"),
            "nobody",
        )
        .await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    assert_eq!(v.body["hash"], hash);
    assert_eq!(v.body["intact"], true);
    assert_eq!(v.body["reproduced"], true, "{}", v.text);
    assert_eq!(v.body["differences"], json!([]));

    // Today's KPIs over the same period differ: the new target, and E2 resolved.
    let now = s
        .app
        .get(
            "/api/v1/kpis?process=event&from=2026-10-31T16:00:00Z&to=2026-11-30T16:00:00Z",
            "ro",
        )
        .await;
    assert_eq!(now.body["kpi_version"], 2);
    let mttr = now.body["kpis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "mttr")
        .unwrap();
    assert_eq!(
        mttr["count"], 3,
        "E2 and the other customer's E3 now count: {mttr}"
    );
}

#[tokio::test]
async fn a_snapshot_altered_in_the_database_is_reported_as_no_longer_intact() {
    let (s, report, _) = scenario(&repo_path("kpis")).await;
    let a = s.collect(&report, json!({})).await;
    let hash = a.body["data"]["kpi_snapshot"].as_str().unwrap().to_owned();
    tamper(
        &s.app.db.url,
        &[format!(
            "UPDATE report_snapshots SET body = replace(body, '\"met\":0,', '\"met\":1,') WHERE hash = '{hash}'"
        )],
    )
    .await;
    let shown = s
        .app
        .get(&format!("/api/v1/instances/{report}/report"), "ro")
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert_eq!(shown.body["intact"], false);
    let v = s
        .app
        .get(&format!("/api/v1/instances/{report}/report/verify"), "ro")
        .await;
    assert_eq!(v.body["intact"], false);
    assert_eq!(v.body["reproduced"], false);
    s.app.assert_documented("Verification", &v.body).await;
    assert_eq!(
        v.body["differences"],
        json!(["sla_attainment"]),
        "{}",
        v.text
    );
    let html = s
        .app
        .get(
            &format!("/api/v1/instances/{report}/report?format=html"),
            "ro",
        )
        .await;
    assert!(html.text.contains("ALTERED"), "{}", html.text);
}

#[tokio::test]
async fn only_the_collect_step_writes_the_snapshot_and_it_refuses_cleanly() {
    let (s, report, _) = scenario(&repo_path("kpis")).await;
    // Not by hand: the snapshot's hash is written by opsflow only.
    let forged = "0".repeat(64);
    let a = s
        .app
        .fire(
            &report,
            "data_collected",
            "ro",
            json!({"kpi_snapshot": forged, "data_summary": "x", "sla_attainment": "y"}),
        )
        .await;
    a.assert_problem(422, "invalid-data");
    let a = s
        .app
        .fire(
            &report,
            "data_collected",
            "ro",
            json!({"data_summary": "x", "sla_attainment": "y"}),
        )
        .await;
    a.assert_problem(422, "invalid-data");
    assert!(a.text.contains("kpi_snapshot"), "{}", a.text);

    // Nothing collected yet.
    let none = s
        .app
        .get(&format!("/api/v1/instances/{report}/report"), "ro")
        .await;
    none.assert_problem(404, "no-report-snapshot");
    // The wrong role, an instance with no collect step, no such instance, bad bodies.
    let a = s
        .app
        .post(
            &format!("/api/v1/instances/{report}/report/collect"),
            "desk",
            json!({}),
        )
        .await;
    a.assert_problem(403, "forbidden");
    let event = s.event(CUSTOMER, "low", "low").await;
    let a = s.collect(&event, json!({})).await;
    a.assert_problem(409, "no-collect-step");
    assert_eq!(a.body["state"], "new");
    s.collect("no-such-report", json!({}))
        .await
        .assert_problem(404, "unknown-instance");
    let a = s
        .collect(&report, json!({"data": {"no_such_field": 1}}))
        .await;
    a.assert_problem(422, "invalid-data");
    let a = s.collect(&report, json!({"snapshot": "x"})).await;
    a.assert_problem(422, "invalid-data");
}

#[tokio::test]
async fn a_retried_collect_gets_the_first_answer_with_the_same_snapshot() {
    let (s, report, _) = scenario(&repo_path("kpis")).await;
    let path = format!("/api/v1/instances/{report}/report/collect");
    let body = json!({"data": {"data_summary": "Quiet month; see the table."}});
    let first = s
        .app
        .post_with_key(&path, "ro", "collect-nov", body.clone())
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(
        first.body["data"]["data_summary"],
        "Quiet month; see the table."
    );
    s.at(650);
    let again = s.app.post_with_key(&path, "ro", "collect-nov", body).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body, first.body);
    let other = s
        .app
        .post_with_key(&path, "ro", "collect-nov", json!({}))
        .await;
    other.assert_problem(422, "idempotency-key-reused");
    // Without the key, the report has moved on: no second collection.
    s.collect(&report, json!({}))
        .await
        .assert_problem(409, "no-collect-step");
}

#[tokio::test]
async fn the_cli_writes_the_report_as_html_and_markdown_and_verifies_its_snapshot() {
    let (s, report, _) = scenario(&repo_path("kpis")).await;
    let a = s.collect(&report, json!({})).await;
    let hash = a.body["data"]["kpi_snapshot"].as_str().unwrap().to_owned();
    let db = s.app.db.url.clone();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("report.html");
    let file_arg = file.display().to_string();
    let html = opsflow(
        &[
            "report", &report, "--db", &db, "--format", "html", "-o", &file_arg,
        ],
        &repo_path("."),
    );
    assert!(
        html.status.success(),
        "{}",
        String::from_utf8_lossy(&html.stderr)
    );
    let page = std::fs::read_to_string(&file).unwrap();
    assert!(page.contains("<h2>SLA attainment</h2>") && page.contains(&hash));

    let md = opsflow(&["report", &report, "--db", &db], &repo_path("."));
    let text = String::from_utf8_lossy(&md.stdout);
    assert!(
        text.contains("| event | first_response | P2 | 1 h | 1 | 1 | 0 | 0 (0) | 100% |"),
        "{text}"
    );

    let verified = opsflow(
        &["report", &report, "--db", &db, "--verify"],
        &repo_path("."),
    );
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&verified.stdout),
        format!("snapshot {hash}: intact; computed again to the same figures\n")
    );

    let missing = opsflow(&["report", "no-such-report", "--db", &db], &repo_path("."));
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no-such-report"), "{err}");
}
