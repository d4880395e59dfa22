//! Timers in process files, with a moved clock: due, they fire their transition as
//! `system`; leaving their states stops them; staying keeps their due time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opsflow::clock::ManualClock;
use serde_json::{Value, json};

use crate::helpers::{TestApp, repo_path, spawn_app_on_clock};

const TICKET: &str = r#"
process: ticket
roles: [service_desk]
states:
  open: { initial: true }
  waiting: {}
  closed: { final: true }
transitions:
  wait:   { from: open, to: waiting, roles: [service_desk] }
  answer: { from: waiting, to: open, roles: [service_desk] }
  nudge:  { from: waiting, to: waiting, roles: [service_desk] }
  expire: { from: waiting, to: closed, roles: [service_desk] }
  close:  { from: open, to: closed, roles: [service_desk] }
timers:
  expiry:
    in: [waiting]
    after: 2h
    fire: expire
"#;

const MINUTE: i64 = 60_000;

/// A server on a moved clock starting at 2027-01-15 08:00 UTC, serving the ticket process.
async fn app() -> (TestApp, Arc<ManualClock>, tempfile::TempDir) {
    app_with(TICKET, 1_800_000_000_000).await
}

/// A server serving `yaml` as `ticket.yaml`, its clock starting at `start_ms`.
async fn app_with(yaml: &str, start_ms: i64) -> (TestApp, Arc<ManualClock>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ticket.yaml"), yaml).unwrap();
    let clock = ManualClock::at(start_ms);
    let app = spawn_app_on_clock(dir.path(), &repo_path("rules"), None, clock.clone()).await;
    (app, clock, dir)
}

async fn state(app: &TestApp, id: &str) -> String {
    let got = app.get(&format!("/api/v1/instances/{id}"), "desk").await;
    got.body["state"].as_str().unwrap().to_owned()
}

/// Waits (real time) for the server's timer loop, which runs every second.
async fn eventually_closed(app: &TestApp, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(app, id).await != "closed" {
        assert!(Instant::now() < deadline, "the timer did not fire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Long enough for the timer loop to have run twice.
async fn two_rounds() {
    tokio::time::sleep(Duration::from_millis(2_200)).await;
}

#[tokio::test]
async fn a_due_timer_fires_its_transition_as_system_once() {
    let (app, clock, _dir) = app().await;
    let id = app.create_id("ticket", "desk", json!({})).await;
    app.fire_ok(&id, "wait", "desk", json!({})).await;
    let shown = app.get(&format!("/api/v1/instances/{id}"), "desk").await;
    assert_eq!(
        shown.body["timers"],
        json!([{ "name": "expiry", "due_at": "2027-01-15T10:00:00.000Z" }]),
        "the instance shows when its timer is due"
    );
    clock.advance(119 * MINUTE);
    two_rounds().await;
    assert_eq!(state(&app, &id).await, "waiting", "not yet due");
    clock.advance(MINUTE);
    eventually_closed(&app, &id).await;
    let trace = app.trace(&id).await;
    let last: &Value = trace.last().unwrap();
    assert_eq!(last["actor"], "system");
    assert_eq!(last["transition"], "expire");
    two_rounds().await;
    assert_eq!(app.trace(&id).await.len(), 3, "fired once");
    let shown = app.get(&format!("/api/v1/instances/{id}"), "desk").await;
    assert_eq!(shown.body["timers"], json!([]), "none left");
}

#[tokio::test]
async fn leaving_its_state_stops_a_timer_and_coming_back_starts_it_afresh() {
    let (app, clock, _dir) = app().await;
    let id = app.create_id("ticket", "desk", json!({})).await;
    app.fire_ok(&id, "wait", "desk", json!({})).await;
    clock.advance(60 * MINUTE);
    app.fire_ok(&id, "answer", "desk", json!({})).await;
    clock.advance(30 * MINUTE);
    app.fire_ok(&id, "wait", "desk", json!({})).await; // due 2 h from now
    clock.advance(60 * MINUTE); // the first timer would be due now
    two_rounds().await;
    assert_eq!(state(&app, &id).await, "waiting");
    clock.advance(60 * MINUTE);
    eventually_closed(&app, &id).await;
}

#[tokio::test]
async fn a_step_that_stays_in_the_timer_s_state_keeps_its_due_time() {
    let (app, clock, _dir) = app().await;
    let id = app.create_id("ticket", "desk", json!({})).await;
    app.fire_ok(&id, "wait", "desk", json!({})).await;
    clock.advance(90 * MINUTE);
    app.fire_ok(&id, "nudge", "desk", json!({})).await;
    clock.advance(30 * MINUTE);
    eventually_closed(&app, &id).await;
}

#[tokio::test]
async fn a_transition_in_stop_on_stops_the_timer_until_its_state_is_entered_again() {
    let yaml = TICKET.replace(
        "    fire: expire\n",
        "    fire: expire\n    stop_on: [nudge]\n",
    );
    let (app, clock, _dir) = app_with(&yaml, 1_800_000_000_000).await;
    let id = app.create_id("ticket", "desk", json!({})).await;
    app.fire_ok(&id, "wait", "desk", json!({})).await;
    clock.advance(30 * MINUTE);
    app.fire_ok(&id, "nudge", "desk", json!({})).await;
    let shown = app.get(&format!("/api/v1/instances/{id}"), "desk").await;
    assert_eq!(shown.body["state"], "waiting");
    assert_eq!(shown.body["timers"], json!([]), "stopped by `nudge`");
    clock.advance(120 * MINUTE);
    two_rounds().await;
    assert_eq!(
        state(&app, &id).await,
        "waiting",
        "a stopped timer does not fire"
    );
    app.fire_ok(&id, "answer", "desk", json!({})).await;
    app.fire_ok(&id, "wait", "desk", json!({})).await;
    clock.advance(120 * MINUTE);
    eventually_closed(&app, &id).await;
}

#[tokio::test]
async fn a_timer_in_business_hours_skips_the_night_and_works_the_make_up_saturday() {
    let yaml = TICKET.replace(
        "    after: 2h\n",
        "    after: 2h\n    calendar: service-desk\n",
    );
    // Friday 2026-10-09, 17:00 in Beijing (09:00 UTC). The shipped service-desk calendar
    // works until 18:00, then on Saturday 10-10 (调休, Friday's hours) from 09:00.
    let (app, clock, _dir) = app_with(&yaml, 1_791_536_400_000).await;
    let id = app.create_id("ticket", "desk", json!({})).await;
    app.fire_ok(&id, "wait", "desk", json!({})).await;
    // Due Saturday 10:00 Beijing: 17 hours later.
    clock.advance(17 * 60 * MINUTE - MINUTE);
    two_rounds().await;
    assert_eq!(state(&app, &id).await, "waiting", "one working minute left");
    clock.advance(MINUTE);
    eventually_closed(&app, &id).await;
}

#[tokio::test]
async fn a_timer_paused_65_minutes_falls_due_65_minutes_later() {
    let yaml = TICKET
        .replace(
            "  closed: { final: true }\n",
            "  on_hold: {}\n  closed: { final: true }\n",
        )
        .replace(
            "  close:  { from: open, to: closed, roles: [service_desk] }\n",
            "  close:  { from: open, to: closed, roles: [service_desk] }\n  hold:   { from: waiting, to: on_hold, roles: [service_desk] }\n  resume: { from: on_hold, to: waiting, roles: [service_desk] }\n",
        )
        .replace("    in: [waiting]\n", "    in: [waiting]\n    pause_in: [on_hold]\n");
    let (app, clock, _dir) = app_with(&yaml, 1_800_000_000_000).await;
    let paused = app.create_id("ticket", "desk", json!({})).await;
    let straight = app.create_id("ticket", "desk", json!({})).await;
    app.fire_ok(&paused, "wait", "desk", json!({})).await;
    app.fire_ok(&straight, "wait", "desk", json!({})).await;
    clock.advance(30 * MINUTE);
    app.fire_ok(&paused, "hold", "desk", json!({})).await;
    let shown = app
        .get(&format!("/api/v1/instances/{paused}"), "desk")
        .await;
    assert_eq!(
        shown.body["timers"],
        json!([{ "name": "expiry", "paused_left_ms": 90 * MINUTE }]),
        "the instance shows its paused timer"
    );
    clock.advance(65 * MINUTE);
    app.fire_ok(&paused, "resume", "desk", json!({})).await; // 90 minutes left
    clock.advance(25 * MINUTE); // two hours after `wait`
    eventually_closed(&app, &straight).await;
    assert_eq!(state(&app, &paused).await, "waiting");
    clock.advance(64 * MINUTE);
    two_rounds().await;
    assert_eq!(state(&app, &paused).await, "waiting", "a minute left");
    clock.advance(MINUTE);
    eventually_closed(&app, &paused).await;
}

#[tokio::test]
async fn a_warning_fires_at_75_percent_before_the_breach_and_only_once() {
    let yaml = TICKET
        .replace(
            "  close:  { from: open, to: closed, roles: [service_desk] }\n",
            "  close:  { from: open, to: closed, roles: [service_desk] }\n  remind: { from: waiting, to: waiting, roles: [service_desk] }\n",
        )
        .replace(
            "    fire: expire\n",
            "    fire: expire\n    warn: { at: 75%, fire: remind }\n",
        );
    let (app, clock, _dir) = app_with(&yaml, 1_800_000_000_000).await;
    let id = app.create_id("ticket", "desk", json!({})).await;
    app.fire_ok(&id, "wait", "desk", json!({})).await;
    clock.advance(89 * MINUTE);
    two_rounds().await;
    assert_eq!(app.trace(&id).await.len(), 2, "no warning before 75%");
    clock.advance(MINUTE); // 90 of 120 minutes
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.trace(&id).await.len() < 3 {
        assert!(Instant::now() < deadline, "the warning did not fire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let trace = app.trace(&id).await;
    assert_eq!(trace[2]["transition"], "remind");
    assert_eq!(trace[2]["actor"], "system");
    assert_eq!(state(&app, &id).await, "waiting");
    let shown = app.get(&format!("/api/v1/instances/{id}"), "desk").await;
    assert_eq!(
        shown.body["timers"],
        json!([{ "name": "expiry", "due_at": "2027-01-15T10:00:00.000Z" }]),
        "the warning is given; the due time stands"
    );
    clock.advance(29 * MINUTE);
    two_rounds().await;
    assert_eq!(app.trace(&id).await.len(), 3, "warned once, not due yet");
    clock.advance(MINUTE);
    eventually_closed(&app, &id).await;
    assert_eq!(app.trace(&id).await.len(), 4);
}
