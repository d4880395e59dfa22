//! SLA clocks on the shipped event process, with a moved clock: business hours, pauses,
//! holidays and make-up days, warnings, escalation on breach, the satisfaction callback,
//! auto-close, targets from the active SLA, and notifications delivered to a webhook.
//!
//! The server's own timer loop is off; each test fires due timers and delivers
//! notifications itself, as the loop would, so every step is deterministic.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use opsflow::clock::{Clock, ManualClock, parse_ms};
use opsflow::settings::Secret;
use opsflow::webhook::{DELIVERY_HEADER, SIGNATURE_HEADER, Webhooks, sign};
use serde_json::{Value, json};

use crate::helpers::{TestApp, repo_path, spawn_app_at, spawn_app_configured};
use crate::service_level::active_sla;

const MINUTE: i64 = 60_000;
const SECRET: &str = "webhook-test-secret";

/// A server on the shipped processes whose clock starts at `start` (RFC 3339), with its
/// timer loop off, delivering notifications to `webhooks`.
async fn app_at(start: &str, webhooks: Vec<String>) -> (TestApp, Arc<ManualClock>) {
    spawn_app_at(start, |s| {
        s.webhooks = webhooks;
        s.webhook_secret = Secret::new(SECRET);
    })
    .await
}

fn ms(rfc3339: &str) -> i64 {
    parse_ms(rfc3339).expect("an RFC 3339 time")
}

/// Moves the clock to `when` and fires what is due, as the server's loop would.
async fn at(app: &TestApp, clock: &ManualClock, when: &str) -> usize {
    clock.advance(ms(when) - clock.now_ms());
    app.engine
        .fire_due_timers("test-node", 1_000)
        .await
        .unwrap()
}

/// One delivery round, as the server's loop would run it.
async fn deliver(app: &TestApp) -> usize {
    Webhooks::new(Secret::new(SECRET))
        .deliver_due(&app.engine, "test-node", 100)
        .await
        .unwrap()
}

/// A P2 event (high impact, medium urgency) for `customer`'s `service`, classified at once
/// as a network maintenance event, which goes to L2.
async fn p2_event(app: &TestApp, customer: &str, service: &str) -> String {
    let id = app
        .create_id(
            "event",
            "desk",
            json!({"kind": "incident", "channel": "phone", "summary": "orders fail",
                   "impact": "high", "urgency": "medium",
                   "customer": customer, "service": service}),
        )
        .await;
    let v = app
        .fire_ok(
            &id,
            "classify",
            "desk",
            json!({"category": "network_maintenance"}),
        )
        .await;
    assert_eq!(v["data"]["priority"], "P2");
    assert_eq!(v["state"], "l2");
    id
}

async fn show(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/api/v1/instances/{id}"), "desk")
        .await
        .body
}

/// The SLA record `metric` of instance `id`.
async fn sla(app: &TestApp, id: &str, metric: &str) -> Value {
    let v = show(app, id).await;
    v["slas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == metric)
        .cloned()
        .unwrap_or_else(|| panic!("no SLA record `{metric}` on {v}"))
}

#[tokio::test]
async fn a_p2_event_paused_65_minutes_while_awaiting_the_customer_breaches_65_minutes_later() {
    // Tuesday 2026-03-10, 09:00 in Shanghai: the service desk's day starts.
    let (app, clock) = app_at("2026-03-10T09:00:00+08:00", Vec::new()).await;
    let never_paused = p2_event(&app, "Retail", "web shop").await;
    let paused = p2_event(&app, "Retail", "web shop").await;

    at(&app, &clock, "2026-03-10T09:30:00+08:00").await;
    app.fire_ok(
        &paused,
        "await",
        "l2",
        json!({"pending_reason": "awaiting_customer"}),
    )
    .await;
    let r = sla(&app, &paused, "resolution").await;
    assert_eq!(r["status"], "paused");
    at(&app, &clock, "2026-03-10T10:35:00+08:00").await;
    let v = app.fire_ok(&paused, "resume", "desk", json!({})).await;
    assert_eq!(v["state"], "l2");

    // 24 business hours of 7.5 a day (09:00-12:00, 13:30-18:00) from Tuesday 09:00 end on
    // Friday 10:30; the paused one 65 working minutes later, at 11:35.
    let a = sla(&app, &never_paused, "resolution").await;
    let b = sla(&app, &paused, "resolution").await;
    assert_eq!(a["deadline"], "2026-03-13T02:30:00.000Z", "{a}");
    assert_eq!(b["deadline"], "2026-03-13T03:35:00.000Z", "{b}");
    assert_eq!(b["paused_ms"], 65 * MINUTE);
    assert_eq!(a["target_ms"], 24 * 60 * MINUTE, "the default P2 target");
    assert_eq!(a["calendar"], "service-desk");

    at(&app, &clock, "2026-03-13T10:29:00+08:00").await;
    let a = sla(&app, &never_paused, "resolution").await;
    assert_eq!(a["status"], "running");
    assert!(a["warned_at"].is_string(), "warned at 75%, on Thursday");
    at(&app, &clock, "2026-03-13T10:30:00+08:00").await;
    let a = sla(&app, &never_paused, "resolution").await;
    assert_eq!(a["status"], "breached");
    assert_eq!(a["breached_at"], "2026-03-13T02:30:00.000Z");
    assert_eq!(sla(&app, &paused, "resolution").await["status"], "running");

    at(&app, &clock, "2026-03-13T11:35:00+08:00").await;
    let b = sla(&app, &paused, "resolution").await;
    assert_eq!(b["status"], "breached");
    assert_eq!(b["breached_at"], "2026-03-13T03:35:00.000Z");
    // Both first replies were given at once (classified on arrival): met.
    assert_eq!(sla(&app, &paused, "first_response").await["status"], "met");
}

#[tokio::test]
async fn a_target_spanning_the_national_day_holiday_and_its_make_up_saturday_lands_on_the_right_minute()
 {
    // Wednesday 2026-09-30 14:00: 4 working hours left that day; 1-7 October are
    // holidays; Thursday 8 and Friday 9 give 7.5 each (19 h); Saturday 10 October is a
    // make-up working day with Friday's hours: the last 5 h end at 15:30.
    let (app, _clock) = app_at("2026-09-30T14:00:00+08:00", Vec::new()).await;
    let id = p2_event(&app, "Retail", "web shop").await;
    let r = sla(&app, &id, "resolution").await;
    assert_eq!(r["deadline"], "2026-10-10T07:30:00.000Z", "{r}");
    let shown = show(&app, &id).await;
    assert!(
        shown["timers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "resolution" && t["due_at"] == "2026-10-10T07:30:00.000Z"),
        "{shown}"
    );
}

#[tokio::test]
async fn the_targets_come_from_the_active_sla_covering_the_customer_and_service() {
    let (app, _clock) = app_at("2026-03-10T09:00:00+08:00", Vec::new()).await;
    active_sla(&app).await; // Finance dept.: order platform, reporting; P2 resolution 8 h
    let covered = p2_event(&app, "Finance dept.", "reporting").await;
    let other = p2_event(&app, "Finance dept.", "payroll").await;
    let r = sla(&app, &covered, "resolution").await;
    assert_eq!(r["target_ms"], 8 * 60 * MINUTE, "{r}");
    // 8 business hours from Tuesday 09:00: 7.5 on Tuesday, the last half hour on Wednesday.
    assert_eq!(r["deadline"], "2026-03-11T01:30:00.000Z");
    assert_eq!(
        sla(&app, &other, "resolution").await["target_ms"],
        24 * 60 * MINUTE,
        "a service the SLA does not cover gets the default"
    );
}

/// An event for the finance department's order platform at L1 (a business consultation).
async fn l1_event(app: &TestApp) -> String {
    let id = app
        .create_id(
            "event",
            "desk",
            json!({"kind": "service_request", "channel": "email", "summary": "how to export",
                   "impact": "medium", "urgency": "medium"}),
        )
        .await;
    let v = app
        .fire_ok(
            &id,
            "classify",
            "desk",
            json!({"category": "business_consultation"}),
        )
        .await;
    assert_eq!(v["state"], "l1");
    id
}

/// A webhook receiver: answers 500 to its first `failures` requests, then 200; keeps
/// every request's delivery id, signature and body.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
}

async fn receiver(failures: usize) -> Receiver {
    let seen: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let kept = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let kept = kept.clone();
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let mut seen = kept.lock().unwrap();
                seen.push((header(DELIVERY_HEADER), header(SIGNATURE_HEADER), body));
                if seen.len() <= failures {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, seen }
}

impl Receiver {
    /// Bodies accepted or not, as JSON.
    fn bodies(&self) -> Vec<Value> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .map(|(_, _, b)| serde_json::from_str(b).unwrap())
            .collect()
    }
}

#[tokio::test]
async fn a_missed_resolution_warns_at_75_percent_then_escalates_to_l2_and_later_to_l3() {
    let hook = receiver(0).await;
    let (app, clock) = app_at("2026-03-10T09:00:00+08:00", vec![hook.url.clone()]).await;
    let id = l1_event(&app).await;

    // 75% of 24 business hours is 18: Tuesday 7.5, Wednesday 7.5, Thursday 3 (to 12:00).
    at(&app, &clock, "2026-03-12T11:59:00+08:00").await;
    assert!(
        sla(&app, &id, "resolution")
            .await
            .get("warned_at")
            .is_none()
    );
    at(&app, &clock, "2026-03-12T13:31:00+08:00").await;
    let r = sla(&app, &id, "resolution").await;
    assert!(r["warned_at"].is_string(), "{r}");
    assert_eq!(r["status"], "running", "a warning is not a breach");
    assert_eq!(deliver(&app).await, 1);
    let warning = &hook.bodies()[0];
    assert_eq!(warning["event"], "timer_warning");
    assert_eq!(warning["timer"], "resolution");
    assert_eq!(warning["notify"], json!(["service_desk", "l1_lead"]));
    assert_eq!(warning["instance"], id);
    assert_eq!(show(&app, &id).await["state"], "l1", "warning only");

    // Due Friday 10:30: escalated to L2 by the system.
    at(&app, &clock, "2026-03-13T10:30:00+08:00").await;
    let v = show(&app, &id).await;
    assert_eq!(v["state"], "l2");
    assert_eq!(v["data"]["tier"], "L2");
    assert_eq!(v["data"]["escalations"], 1);
    assert_eq!(v["data"]["escalation_reason"], "resolution target missed");
    let r = sla(&app, &id, "resolution").await;
    assert_eq!(r["status"], "breached");
    assert_eq!(r["breached_at"], "2026-03-13T02:30:00.000Z");
    let trace = app.trace(&id).await;
    let escalation = trace
        .iter()
        .find(|t| t["transition"] == "escalate_overdue")
        .expect("escalation traced");
    assert_eq!(escalation["actor"], "system");
    assert_eq!(escalation["channel"], "timer");
    assert_eq!(deliver(&app).await, 1);
    let breach = &hook.bodies()[1];
    assert_eq!(breach["event"], "timer_due");
    assert_eq!(breach["notify"], json!(["duty_manager"]));
    assert_eq!(breach["state"], "l2");

    // A full target later (Wednesday 18 March, 12:00) it goes on to L3.
    at(&app, &clock, "2026-03-18T11:00:00+08:00").await;
    assert_eq!(show(&app, &id).await["state"], "l2");
    at(&app, &clock, "2026-03-18T14:00:00+08:00").await;
    let v = show(&app, &id).await;
    assert_eq!(v["state"], "l3");
    assert_eq!(v["data"]["escalations"], 2);

    // L3 is the last line: the next breach only notifies the duty manager.
    at(&app, &clock, "2026-03-31T14:00:00+08:00").await;
    let v = show(&app, &id).await;
    assert_eq!(v["state"], "l3");
    let trace = app.trace(&id).await;
    let last = trace.last().unwrap();
    assert_eq!(last["kind"], "timer", "{trace:#?}");
    assert_eq!(last["actor"], "system");
    assert!(
        last["comment"].as_str().unwrap().contains("refused"),
        "{last}"
    );
    deliver(&app).await;
    assert_eq!(hook.bodies().last().unwrap()["event"], "timer_due");
    // Nothing more is due: the spent timer does not fire again.
    assert_eq!(at(&app, &clock, "2026-06-30T14:00:00+08:00").await, 0);
    app.assert_trace_consistent(&id).await;
}

#[tokio::test]
async fn a_first_reply_not_given_in_two_business_hours_notifies_the_duty_manager() {
    let hook = receiver(0).await;
    let (app, clock) = app_at("2026-03-10T17:00:00+08:00", vec![hook.url.clone()]).await;
    let id = app
        .create_id(
            "event",
            "desk",
            json!({"kind": "incident", "channel": "wechat", "summary": "VPN down"}),
        )
        .await;
    // No priority yet: the default 2 h, counted 17:00-18:00 and Wednesday 09:00-10:00.
    let r = sla(&app, &id, "first_response").await;
    assert_eq!(r["deadline"], "2026-03-11T02:00:00.000Z", "{r}");
    at(&app, &clock, "2026-03-11T09:59:00+08:00").await;
    assert_eq!(sla(&app, &id, "first_response").await["status"], "running");
    at(&app, &clock, "2026-03-11T10:00:00+08:00").await;
    let r = sla(&app, &id, "first_response").await;
    assert_eq!(r["status"], "breached");
    let v = show(&app, &id).await;
    assert_eq!(v["state"], "new", "the event itself does not move");
    assert_eq!(deliver(&app).await, 1);
    let notice = &hook.bodies()[0];
    assert_eq!(notice["timer"], "first_response");
    assert_eq!(notice["notify"], json!(["duty_manager"]));
    // The late reply stops the clock: missed.
    at(&app, &clock, "2026-03-11T10:20:00+08:00").await;
    app.fire_ok(
        &id,
        "classify",
        "desk",
        json!({"category": "network_maintenance", "impact": "low", "urgency": "low"}),
    )
    .await;
    let r = sla(&app, &id, "first_response").await;
    assert_eq!(r["status"], "missed");
    assert_eq!(r["stopped_at"], "2026-03-11T02:20:00.000Z");
    assert_eq!(r["breached_at"], "2026-03-11T02:00:00.000Z");
    assert_eq!(r["elapsed_ms"], 140 * MINUTE, "2 h 20 min of business time");
}

#[tokio::test]
async fn a_resolved_event_hands_the_callback_task_to_the_service_desk_and_closes_itself_after_a_week()
 {
    let hook = receiver(0).await;
    let (app, clock) = app_at("2026-03-10T09:00:00+08:00", vec![hook.url.clone()]).await;
    let confirmed = l1_event(&app).await;
    let forgotten = l1_event(&app).await;
    at(&app, &clock, "2026-03-10T10:00:00+08:00").await;
    for id in [&confirmed, &forgotten] {
        app.fire_ok(
            id,
            "resolve",
            "desk",
            json!({"resolution_code": "user_guidance", "solution": "explained"}),
        )
        .await;
    }
    assert_eq!(deliver(&app).await, 2);
    let task = &hook.bodies()[0];
    assert_eq!(task["event"], "transition");
    assert_eq!(task["transition"], "resolve");
    assert_eq!(task["notify"], json!(["service_desk"]));
    assert_eq!(
        task["data"]["callback_due"], "2026-03-11T02:00:00.000Z",
        "within 24 hours of resolution"
    );
    let r = sla(&app, &confirmed, "callback").await;
    assert_eq!(r["deadline"], "2026-03-11T02:00:00.000Z");

    at(&app, &clock, "2026-03-10T15:00:00+08:00").await;
    app.fire_ok(&confirmed, "confirm", "req", json!({"satisfaction": 95}))
        .await;
    assert_eq!(sla(&app, &confirmed, "callback").await["status"], "met");
    assert_eq!(sla(&app, &confirmed, "resolution").await["status"], "met");

    at(&app, &clock, "2026-03-11T10:01:00+08:00").await;
    assert_eq!(
        sla(&app, &forgotten, "callback").await["status"],
        "breached"
    );
    at(&app, &clock, "2026-03-17T09:59:00+08:00").await;
    assert_eq!(show(&app, &forgotten).await["state"], "resolved");
    at(&app, &clock, "2026-03-17T10:00:00+08:00").await;
    let v = show(&app, &forgotten).await;
    assert_eq!(v["state"], "closed", "closed seven days after resolution");
    assert_eq!(v["data"]["auto_closed"], true);
    assert_eq!(sla(&app, &forgotten, "callback").await["status"], "missed");
}

#[tokio::test]
async fn a_webhook_that_fails_twice_gets_the_same_signed_delivery_until_it_accepts() {
    let hook = receiver(2).await;
    let (app, clock) = app_at("2026-03-10T09:00:00+08:00", vec![hook.url.clone()]).await;
    let id = l1_event(&app).await;
    app.fire_ok(
        &id,
        "resolve",
        "desk",
        json!({"resolution_code": "fixed", "solution": "restarted"}),
    )
    .await;
    assert_eq!(deliver(&app).await, 0, "first attempt refused");
    assert_eq!(deliver(&app).await, 0, "not retried before its backoff");
    assert_eq!(hook.seen.lock().unwrap().len(), 1);
    clock.advance(1_000);
    assert_eq!(deliver(&app).await, 0, "second attempt refused");
    clock.advance(1_000);
    assert_eq!(deliver(&app).await, 0, "the next wait is two seconds");
    clock.advance(1_000);
    assert_eq!(deliver(&app).await, 1, "third attempt accepted");
    clock.advance(3_600_000);
    assert_eq!(deliver(&app).await, 0, "delivered once accepted");

    let seen = hook.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    let (first_id, _, first_body) = &seen[0];
    assert!(!first_id.is_empty());
    for (delivery, signature, body) in &seen {
        assert_eq!(delivery, first_id, "one delivery id on every attempt");
        assert_eq!(body, first_body);
        assert_eq!(
            Some(signature.clone()),
            sign(&Secret::new(SECRET), body),
            "signed with the configured secret"
        );
    }
    let body: Value = serde_json::from_str(first_body).unwrap();
    assert_eq!(body["delivery_id"], *first_id);
}

#[tokio::test]
async fn a_simulating_server_moves_its_clock_and_fires_what_fell_due_and_a_real_one_refuses() {
    let clock = ManualClock::at(0);
    let app = spawn_app_configured(
        &repo_path("processes"),
        &repo_path("rules"),
        None,
        clock,
        |s| {
            s.simulate = true;
            s.timer_interval_ms = 0;
        },
    )
    .await;
    let id = app
        .create_id(
            "event",
            "desk",
            json!({"kind": "incident", "channel": "wechat", "summary": "VPN down"}),
        )
        .await;
    let before = app.get("/api/v1/admin/clock", "desk").await;
    assert_eq!(before.body["simulated"], true);
    let moved = app
        .post("/api/v1/admin/clock", "desk", json!({"advance": "30d"}))
        .await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    let days = (ms(moved.body["now"].as_str().unwrap()) - ms(before.body["now"].as_str().unwrap()))
        / (24 * 60 * MINUTE);
    assert_eq!(days, 30);
    assert!(moved.body["fired"].as_u64().unwrap() >= 1, "{}", moved.text);
    assert_eq!(sla(&app, &id, "first_response").await["status"], "breached");
    app.post("/api/v1/admin/clock", "desk", json!({"advance": "soon"}))
        .await
        .assert_problem(400, "malformed-request");

    let real = crate::helpers::spawn_app().await;
    let refused = real
        .post("/api/v1/admin/clock", "desk", json!({"advance": "1h"}))
        .await;
    refused.assert_problem(403, "real-time");
    assert_eq!(
        real.get("/api/v1/admin/clock", "desk").await.body["simulated"],
        false
    );
}
