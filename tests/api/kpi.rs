//! KPIs from the traces, over HTTP: a scenario of events whose figures are worked out by
//! hand below, with business-hour SLAs, a pause and a reopen.

use std::sync::Arc;

use opsflow::clock::{ManualClock, parse_ms};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, repo_path, spawn_app_at, spawn_app_configured};

const MINUTE: i64 = 60_000;
/// Monday 2 November 2026, 09:00 in Beijing: the service desk's day starts.
const T0: &str = "2026-11-02T01:00:00Z";

struct Scenario {
    app: TestApp,
    clock: Arc<ManualClock>,
    t0: i64,
}

impl Scenario {
    /// Moves the clock to `minutes` after T0.
    fn at(&self, minutes: i64) {
        let now = opsflow::clock::Clock::now_ms(self.clock.as_ref());
        self.clock.advance(self.t0 + minutes * MINUTE - now);
    }

    async fn event(&self) -> String {
        self.app.new_event().await
    }

    async fn classify(&self, id: &str, impact: &str, urgency: &str) {
        let v = self
            .app
            .fire_ok(
                id,
                "classify",
                "desk",
                json!({"category": "order_consultation", "impact": impact, "urgency": urgency}),
            )
            .await;
        assert_eq!(v["state"], "l1");
    }

    async fn resolve(&self, id: &str, token: &str) {
        self.app
            .fire_ok(
                id,
                "resolve",
                token,
                json!({"resolution_code": "fixed", "solution": "restarted the report service"}),
            )
            .await;
    }
}

/// Four events from T0 (minutes after it):
/// - E1, P2: classified at 30, resolved at 120, confirmed at 180 with satisfaction 95.
/// - E2, P4: classified at 60, awaiting the customer from 90 to 210, escalated to L2 at
///   240, resolved at 300, reopened at 360, resolved at 420, confirmed at 480 with 80.
/// - E3, P4: classified at 90, still at L1.
/// - E5, P4: classified at 180 (09:00 to 12:00 is three business hours: its 2-hour first
///   response target is missed), still at L1.
async fn scenario() -> (Scenario, [String; 4]) {
    let t0 = parse_ms(T0).unwrap();
    let (app, clock) = spawn_app_at(T0, |_| {}).await;
    let s = Scenario { app, clock, t0 };
    let (e1, e2, e3, e5) = (
        s.event().await,
        s.event().await,
        s.event().await,
        s.event().await,
    );
    s.at(30);
    s.classify(&e1, "medium", "high").await;
    s.at(60);
    s.classify(&e2, "low", "low").await;
    s.at(90);
    s.classify(&e3, "low", "low").await;
    s.app
        .fire_ok(
            &e2,
            "await",
            "desk",
            json!({"pending_reason": "awaiting_customer"}),
        )
        .await;
    s.at(120);
    s.resolve(&e1, "desk").await;
    s.at(180);
    s.app
        .fire_ok(&e1, "confirm", "req", json!({"satisfaction": 95}))
        .await;
    s.classify(&e5, "low", "low").await;
    s.at(210);
    s.app.fire_ok(&e2, "resume", "req", json!({})).await;
    s.at(240);
    let v = s
        .app
        .fire_ok(
            &e2,
            "escalate",
            "desk",
            json!({"escalation_reason": "needs a developer"}),
        )
        .await;
    assert_eq!(v["state"], "l2");
    s.at(300);
    s.resolve(&e2, "l2").await;
    s.at(360);
    s.app
        .fire_ok(
            &e2,
            "reopen",
            "req",
            json!({"reopen_reason": "the report still times out"}),
        )
        .await;
    s.at(420);
    s.resolve(&e2, "l2").await;
    s.at(480);
    s.app
        .fire_ok(&e2, "confirm", "req", json!({"satisfaction": 80}))
        .await;
    (s, [e1, e2, e3, e5])
}

fn kpi<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["kpis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("no KPI `{name}` in {report}"))
}

fn group<'a>(k: &'a Value, key: &str) -> &'a Value {
    k["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("no group `{key}` in {k}"))
}

#[tokio::test]
async fn the_event_kpis_of_a_worked_scenario_come_out_as_computed_by_hand() {
    let (s, _) = scenario().await;
    let to = "2026-11-02T11:00:00Z"; // T0 + 10 h
    let a = s
        .app
        .get(
            &format!("/api/v1/kpis?process=event&from={T0}&to={to}&group_by=priority"),
            "desk",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let r = &a.body;
    assert_eq!(r["instances"], 4);
    assert_eq!(r["kpi_hash"].as_str().unwrap().len(), 64);
    for k in r["kpis"].as_array().unwrap() {
        assert_eq!(k["failures"], 0, "{k}");
    }
    // (value, verdict, instances counted)
    for (name, value, verdict, count) in [
        ("mtta", json!(90.0), "missed", 4), // (30 + 60 + 90 + 180) / 4 min
        ("first_response_attainment", json!(75.0), "missed", 4), // E5 missed its 2 h
        ("mttr", json!(4.5), "met", 2),     // (2 h + 7 h) / 2
        ("mttr_active", json!(3.5), "met", 2), // E2 waited 2 h for the customer
        ("resolution_attainment", json!(100.0), "met", 2),
        ("reopen_rate", json!(50.0), "missed", 2), // E2 of E1, E2
        ("first_contact_resolution", json!(50.0), "missed", 2), // E2 went to L2
        ("escalation_rate", json!(25.0), "met", 4), // E2 of four
        ("mean_escalations", json!(0.25), "met", 4),
        ("backlog", json!(2.0), "met", 2),      // E3 and E5 at L1
        ("backlog_age", json!(10.0), "met", 2), // both open since T0
        ("satisfaction", json!(87.5), "missed", 2), // (95 + 80) / 2
        ("callback_within_24h", json!(100.0), "met", 2),
    ] {
        let k = kpi(r, name);
        assert_eq!(k["value"], value, "{name}: {k}");
        assert_eq!(k["verdict"], verdict, "{name}: {k}");
        assert_eq!(k["count"], count, "{name}: {k}");
    }
    let fr = kpi(r, "first_response_attainment");
    assert_eq!(group(fr, "P2")["value"], json!(100.0));
    assert_eq!(group(fr, "P4")["value"], json!(66.67));
    assert_eq!(group(fr, "P4")["count"], 3);

    let query = format!("/api/v1/kpis?process=event&from={T0}&to={to}&group_by=priority");
    let md = s.app.get(&format!("{query}&format=md"), "desk").await;
    assert_eq!(md.status, StatusCode::OK);
    assert!(
        md.content_type().starts_with("text/markdown"),
        "{}",
        md.content_type()
    );
    assert!(
        md.text.contains("| Mean customer satisfaction (客户满意度) | 87.5 | points of 100 | >= 90 | missed | 2 |"),
        "{}",
        md.text
    );
    assert!(
        md.text.contains("## First responses within their SLA target by priority\n\n| priority | value | verdict | instances |\n|---|---|---|---|\n| P2 | 100 | met | 1 |\n| P4 | 66.67 | missed | 3 |"),
        "{}",
        md.text
    );
    let page = s.app.get(&format!("{query}&format=html"), "desk").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.content_type().starts_with("text/html"));
    let html = &page.text;
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(html.contains("<td class=\"missed\">missed</td>"), "{html}");
    assert!(
        html.matches("<svg ").count() >= 10,
        "a chart per KPI with a value"
    );
    assert!(!html.contains("<script"), "no script");
    assert!(
        !html.contains(" src=") && !html.contains(" href="),
        "self-contained: nothing loaded from elsewhere"
    );
    assert!(
        html.contains(">P4</text>"),
        "the groups are the chart's bars"
    );
}

#[tokio::test]
async fn a_past_period_is_computed_as_the_traces_stood_then() {
    let (s, _) = scenario().await;
    // At T0 + 2 h 30 min only E1 was resolved, and E2 was still awaiting the customer.
    let to = "2026-11-02T03:30:00Z";
    let a = s
        .app
        .get(
            &format!("/api/v1/kpis?process=event&from={T0}&to={to}"),
            "desk",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(kpi(&a.body, "mttr")["value"], json!(2.0));
    assert_eq!(kpi(&a.body, "mttr")["count"], 1);
    assert_eq!(kpi(&a.body, "backlog")["value"], json!(3.0)); // E2, E3 and E5
    assert_eq!(kpi(&a.body, "satisfaction")["verdict"], "no_data");
    assert!(kpi(&a.body, "mtta")["groups"].is_null(), "not grouped");
}

#[tokio::test]
async fn a_bad_query_or_unknown_process_is_refused_with_a_problem() {
    let (s, _) = scenario().await;
    s.app
        .get("/api/v1/kpis?from=yesterday", "desk")
        .await
        .assert_problem(400, "malformed-request");
    s.app
        .get("/api/v1/kpis?process=evnt", "desk")
        .await
        .assert_problem(404, "unknown-process");
    s.app
        .request(reqwest::Method::GET, "/api/v1/kpis", None, None)
        .await
        .assert_problem(401, "unauthorized");
}

#[tokio::test]
async fn change_success_and_emergency_ratios_count_only_the_changes_they_are_about() {
    let app = crate::helpers::spawn_app().await;
    let change = |kind: &'static str| {
        let app = &app;
        async move {
            let id = app
                .create_id(
                    "change",
                    "req",
                    json!({"summary": "Rotate a certificate", "kind": kind}),
                )
                .await;
            let plans =
                json!({"implementation_plan": "swap the bundle", "backout_plan": "restore it"});
            app.fire_ok(&id, "submit", "req", plans).await;
            id
        }
    };
    let implement = |id: String, outcome: &'static str| {
        let app = &app;
        async move {
            app.fire_ok(
                &id,
                "implement",
                "impl",
                json!({"planned_start": "2026-12-01T22:00:00+08:00", "owner": "ivan"}),
            )
            .await;
            app.fire_ok(
                &id,
                "complete",
                "impl",
                json!({"outcome": outcome, "outcome_notes": "log"}),
            )
            .await;
        }
    };
    let ok = change("standard").await;
    let failed = change("standard").await;
    let _emergency = change("emergency").await;
    let _draft = app
        .create_id(
            "change",
            "req",
            json!({"summary": "Not submitted", "kind": "emergency"}),
        )
        .await;
    implement(ok, "successful").await;
    implement(failed, "failed").await;
    let a = app.get("/api/v1/kpis?process=change", "cm").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let success = kpi(&a.body, "change_success_rate");
    assert_eq!(success["value"], json!(50.0), "{success}");
    assert_eq!(success["count"], 2, "only changes with an outcome");
    assert_eq!(success["verdict"], "missed");
    let emergency = kpi(&a.body, "emergency_change_ratio");
    assert_eq!(
        emergency["value"],
        json!(33.33),
        "one of three submitted: {emergency}"
    );
    assert_eq!(emergency["verdict"], "missed");
}

/// Five problems from T0 (hours after it): A resolved by accepting the risk at 10, B at 30,
/// C still being assessed, D cancelled, E a duplicate of A. Read at T0 + 48 h.
#[tokio::test]
async fn problem_resolution_counts_live_problems_and_the_share_resolved_within_a_day() {
    let t0 = parse_ms(T0).unwrap();
    let (app, clock) = spawn_app_at(T0, |_| {}).await;
    let at = |hours: i64| {
        let now = opsflow::clock::Clock::now_ms(clock.as_ref());
        clock.advance(t0 + hours * 60 * MINUTE - now);
    };
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = app
            .create_id(
                "problem",
                "pm",
                json!({"summary": "Order report times out", "source": "recurring_events"}),
            )
            .await;
        app.fire_ok(&id, "accept", "pm", json!({})).await;
        ids.push(id);
    }
    let [a, b, _c, d, e] = [0, 1, 2, 3, 4].map(|i| ids[i].clone());
    for id in [&a, &b] {
        app.fire_ok(
            id,
            "assess",
            "pm",
            json!({"priority": "P2", "assigned_group": "db_team"}),
        )
        .await;
        app.fire_ok(
            id,
            "record_known_error",
            "an",
            json!({"root_cause": "missing index", "workaround": "weekly runs", "kb_entry": "KB-1"}),
        )
        .await;
    }
    let accept = json!({"risk_acceptance_note": "the report is retired next quarter"});
    at(10);
    app.fire_ok(&a, "accept_risk", "pm", accept.clone()).await;
    at(30);
    app.fire_ok(&b, "accept_risk", "pm", accept).await;
    app.fire_ok(
        &d,
        "cancel",
        "pm",
        json!({"cancel_reason": "not a problem"}),
    )
    .await;
    app.fire_ok(&e, "mark_duplicate", "pm", json!({"duplicate_of": a}))
        .await;
    let to = "2026-11-04T01:00:00Z"; // T0 + 48 h
    let r = app
        .get(
            &format!("/api/v1/kpis?process=problem&from={T0}&to={to}"),
            "pm",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["instances"], 5);
    let rate = kpi(&r.body, "problem_resolution_rate");
    // A and B of A, B, C (D cancelled and E a duplicate are left out).
    assert_eq!(
        (&rate["value"], &rate["count"]),
        (&json!(66.67), &json!(3)),
        "{rate}"
    );
    assert_eq!(rate["verdict"], "missed", "the seeds ask for more than 95%");
    let day = kpi(&r.body, "problem_resolution_within_24h");
    // A within 10 h, B after 30 h.
    assert_eq!(
        (&day["value"], &day["count"]),
        (&json!(50.0), &json!(2)),
        "{day}"
    );
    assert_eq!(day["verdict"], "met");

    // Read as the traces stood at T0 + 20 h: only A was resolved.
    let early = app
        .get(
            &format!("/api/v1/kpis?process=problem&from={T0}&to=2026-11-02T21:00:00Z"),
            "pm",
        )
        .await;
    let rate = kpi(&early.body, "problem_resolution_rate");
    assert_eq!(
        (&rate["value"], &rate["count"]),
        (&json!(20.0), &json!(5)),
        "{rate}"
    );
}

/// KPIs of the real Helpdesk log, computed by `opsflow kpi --log` and independently here
/// from the CSV rows: time to the first resolution, the share of cases closed, and the
/// mean number of waits per case.
#[test]
fn kpis_over_the_real_helpdesk_log_agree_with_an_independent_computation() {
    let Some(data) = crate::conform::shared_data("kpis_over_the_real_helpdesk_log") else {
        return;
    };
    let log = data.join("helpdesk/helpdesk.flat.csv");
    let kpis = tempfile::tempdir().unwrap();
    std::fs::write(
        kpis.path().join("log.yaml"),
        r#"kpis:
  first_resolution:
    process: event
    where: facts.first_taken.resolve != ()
    value: (facts.first_taken.resolve - facts.created_at) / 3600000.0
    aggregate: mean
    unit: h
  closed_share:
    process: event
    value: facts.taken.close_after_callback != ()
    aggregate: ratio
    unit: "%"
  waits:
    process: event
    value: if facts.taken["await"] == () { 0 } else { facts.taken["await"] }
    aggregate: mean
  median_first_resolution:
    process: event
    where: facts.first_taken.resolve != ()
    value: (facts.first_taken.resolve - facts.created_at) / 3600000.0
    aggregate: median
"#,
    )
    .unwrap();
    let out = crate::cli::opsflow(
        &[
            "kpi",
            "--log",
            log.to_str().unwrap(),
            "--mapping",
            "mappings/helpdesk.yaml",
            "--kpis",
            kpis.path().to_str().unwrap(),
            "--json",
        ],
        &repo_path("."),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();

    // Independently: each case's events by time (file order breaks ties).
    let mut cases: std::collections::BTreeMap<String, Vec<(i64, usize, String)>> =
        std::collections::BTreeMap::new();
    let mut reader = csv::Reader::from_path(&log).unwrap();
    for (i, row) in reader.records().enumerate() {
        let row = row.unwrap();
        let at = parse_ms(&row[3]).unwrap();
        cases
            .entry(row[0].to_owned())
            .or_default()
            .push((at, i, row[1].to_owned()));
    }
    let (mut resolution_h, mut closed, mut waits) = (Vec::new(), 0usize, 0usize);
    for events in cases.values_mut() {
        events.sort();
        let created = events[0].0;
        if let Some((at, ..)) = events.iter().find(|e| e.2 == "Resolve ticket") {
            resolution_h.push((at - created) as f64 / 3_600_000.0);
        }
        closed += usize::from(events.iter().any(|e| e.2 == "Closed"));
        waits += events.iter().filter(|e| e.2 == "Wait").count();
    }
    let n = cases.len() as f64;
    let mean = resolution_h.iter().sum::<f64>() / resolution_h.len() as f64;
    resolution_h.sort_by(f64::total_cmp);
    let mid = resolution_h.len() / 2;
    let median = if resolution_h.len() % 2 == 0 {
        (resolution_h[mid - 1] + resolution_h[mid]) / 2.0
    } else {
        resolution_h[mid]
    };
    let close = |name: &str, expected: f64, count: usize| {
        let k = kpi(&r, name);
        let got = k["value"].as_f64().unwrap();
        assert!(
            (got - expected).abs() <= 0.006,
            "{name}: {got} against {expected}"
        );
        assert_eq!(k["count"], count, "{name}");
        assert_eq!(k["failures"], 0, "{name}");
    };
    assert_eq!(r["instances"], cases.len());
    close("first_resolution", mean, resolution_h.len());
    close("median_first_resolution", median, resolution_h.len());
    close("closed_share", 100.0 * closed as f64 / n, cases.len());
    close("waits", waits as f64 / n, cases.len());
}

#[tokio::test]
async fn each_content_of_the_kpi_files_gets_a_number_and_an_edit_applies_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("event.yaml");
    let kpi = |target: u32| {
        format!(
            "kpis:\n  backlog:\n    process: event\n    where: facts.state != \"closed\"\n    value: 1\n    aggregate: count\n    target: {{ \"<=\": {target} }}\n"
        )
    };
    std::fs::write(&file, kpi(0)).unwrap();
    let kpis = dir.path().to_path_buf();
    let app = spawn_app_configured(
        &repo_path("processes"),
        &repo_path("rules"),
        None,
        Arc::new(opsflow::clock::SystemClock),
        move |s| s.kpis = kpis,
    )
    .await;
    app.new_event().await;
    let first = app.get("/api/v1/kpis", "desk").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.body["kpi_version"], 1);
    assert_eq!(kpi_of(&first.body)["verdict"], "missed");
    let again = app.get("/api/v1/kpis", "desk").await;
    assert_eq!(
        again.body["kpi_version"], 1,
        "the same content keeps its number"
    );

    std::fs::write(&file, kpi(5)).unwrap();
    let edited = app.get("/api/v1/kpis", "desk").await;
    assert_eq!(edited.body["kpi_version"], 2);
    assert_ne!(edited.body["kpi_hash"], first.body["kpi_hash"]);
    assert_eq!(
        kpi_of(&edited.body)["verdict"],
        "met",
        "the edited target applies at once"
    );

    std::fs::write(
        &file,
        "kpis:\n  backlog:\n    process: event\n    value: 1\n    aggregate: cont\n",
    )
    .unwrap();
    let broken = app.get("/api/v1/kpis", "desk").await;
    broken.assert_problem(422, "invalid-definitions");
    assert!(
        broken.body["messages"][0]
            .as_str()
            .unwrap()
            .ends_with("event.yaml:5:16: unknown aggregate `cont`; expected one of count, sum, mean, median, percentile, ratio, availability; did you mean `count`?"),
        "{}",
        broken.text
    );
}

fn kpi_of(report: &Value) -> &Value {
    kpi(report, "backlog")
}
