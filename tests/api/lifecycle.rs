//! Instances over their whole life: the event process walked end to end, listing, traces,
//! persistence across restarts.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, processes_copy, repo_path, spawn_app, spawn_app_with};

#[tokio::test]
async fn an_event_walks_from_creation_to_closed_through_escalation() {
    let app = spawn_app().await;
    let id = app.event_at_l1().await;

    let at_l2 = app
        .fire_ok(
            &id,
            "escalate",
            "desk",
            json!({"escalation_reason": "needs a database engineer"}),
        )
        .await;
    assert_eq!(at_l2["state"], "l2");
    assert_eq!(at_l2["data"]["tier"], "L2");
    assert_eq!(at_l2["data"]["group"], "engineering");

    let at_l3 = app
        .fire_ok(
            &id,
            "escalate",
            "l2",
            json!({"escalation_reason": "vendor bug in the report module"}),
        )
        .await;
    assert_eq!(at_l3["state"], "l3");
    assert_eq!(at_l3["data"]["escalations"], 2);

    let pending = app
        .fire_ok(
            &id,
            "await",
            "l3",
            json!({"pending_reason": "awaiting_customer"}),
        )
        .await;
    assert_eq!(pending["state"], "pending");
    let back = app.fire_ok(&id, "resume", "req", json!({})).await;
    assert_eq!(
        back["state"], "l3",
        "resuming returns to the tier that had it"
    );
    assert!(back["data"].get("pending_reason").is_none());

    let resolved = app
        .fire_ok(
            &id,
            "resolve",
            "l3",
            json!({"resolution_code": "fixed", "solution": "vendor patch 4.2.1 applied"}),
        )
        .await;
    assert_eq!(resolved["state"], "resolved");
    let closed = app
        .fire_ok(&id, "confirm", "req", json!({"satisfaction": 95}))
        .await;
    assert_eq!(closed["state"], "closed");
    assert_eq!(closed["final"], true);
    assert_eq!(closed["data"]["requester_confirmed"], true);
    assert_eq!(closed["allowed_transitions"], json!([]));

    let trace = app.trace_steps(&id).await;
    let steps: Vec<(&str, &str, &str)> = trace
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap(),
                r["transition"].as_str().unwrap_or("-"),
                r["to"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            ("created", "-", "new"),
            ("transition", "classify", "routing"),
            ("automatic", "to_l1", "l1"),
            ("transition", "escalate", "routing"),
            ("automatic", "to_l2", "l2"),
            ("transition", "escalate", "routing"),
            ("automatic", "to_l3", "l3"),
            ("transition", "await", "pending"),
            ("transition", "resume", "routing"),
            ("automatic", "to_l3", "l3"),
            ("transition", "resolve", "resolved"),
            ("transition", "confirm", "closed"),
        ]
    );
    for (i, r) in app.trace(&id).await.iter().enumerate() {
        assert_eq!(r["seq"], i as i64 + 1, "sequence numbers have no gaps");
        assert!(r["actor"].as_str().is_some_and(|a| !a.is_empty()));
        let at = r["at"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(at).is_ok(),
            "time {at} is RFC 3339"
        );
        assert!(at.ends_with('Z'), "time {at} is UTC");
    }
    assert_eq!(trace[0]["actor"], "rui");
    assert_eq!(trace[3]["actor"], "dana");
    assert_eq!(trace[5]["actor"], "lee");
    assert_eq!(trace[11]["actor"], "rui");
    assert_eq!(trace[11]["data"]["satisfaction"], 95);
    let full = app.trace(&id).await;
    assert_eq!(closed["version"], full.len() as i64);
    let sla_events: Vec<(&str, &str)> = full
        .iter()
        .filter(|r| r["kind"] == "sla")
        .map(|r| {
            (
                r["data"]["metric"].as_str().unwrap(),
                r["data"]["event"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sla_events,
        [
            ("first_response", "started"),
            ("resolution", "started"),
            ("first_response", "met"),
            ("resolution", "paused"),
            ("resolution", "resumed"),
            ("resolution", "met"),
            ("callback", "started"),
            ("callback", "met"),
        ],
        "the SLA clocks' story is in the trace"
    );
    for r in &full {
        let expected = if r["kind"] == "sla" { "system" } else { "api" };
        assert_eq!(r["channel"], expected, "{r}");
    }
    app.assert_trace_consistent(&id).await;
}

#[tokio::test]
async fn classification_sets_priority_from_the_matrix_and_routes_by_category() {
    let app = spawn_app().await;
    let cases = [
        (
            "network_maintenance",
            "medium",
            "high",
            "P2",
            "l2",
            "network_ops",
        ),
        (
            "order_consultation",
            "low",
            "low",
            "P4",
            "l1",
            "service_desk",
        ),
        (
            "product_consultation",
            "high",
            "high",
            "P1",
            "l2",
            "engineering",
        ),
        (
            "system_maintenance",
            "low",
            "high",
            "P3",
            "l2",
            "system_ops",
        ),
    ];
    for (category, impact, urgency, priority, state, group) in cases {
        let id = app.new_event().await;
        let v = app
            .fire_ok(
                &id,
                "classify",
                "desk",
                json!({"category": category, "impact": impact, "urgency": urgency}),
            )
            .await;
        assert_eq!(
            v["data"]["priority"], priority,
            "{category} {impact}/{urgency}"
        );
        assert_eq!(v["state"], state, "{category}");
        assert_eq!(v["data"]["group"], group, "{category}");
        assert_eq!(v["slas"][0]["metric"], "first_response", "{category}");
    }
}

#[tokio::test]
async fn a_resolved_event_can_be_reopened_and_then_closed_after_the_callback() {
    let app = spawn_app().await;
    let id = app.event_at_l1().await;
    app.fire_ok(
        &id,
        "resolve",
        "desk",
        json!({"resolution_code": "user_guidance", "solution": "explained the export"}),
    )
    .await;
    let reopened = app
        .fire_ok(
            &id,
            "reopen",
            "req",
            json!({"reopen_reason": "still failing for large months"}),
        )
        .await;
    assert_eq!(reopened["state"], "l1");
    assert_eq!(reopened["data"]["reopens"], 1);
    assert!(
        reopened["data"].get("solution").is_none(),
        "the old resolution is cleared"
    );

    app.fire_ok(
        &id,
        "resolve",
        "desk",
        json!({"resolution_code": "fixed", "solution": "raised the export timeout"}),
    )
    .await;
    let closed = app
        .fire_ok(
            &id,
            "close_after_callback",
            "desk",
            json!({"requester_confirmed": true, "satisfaction": 90}),
        )
        .await;
    assert_eq!(closed["state"], "closed");
}

#[tokio::test]
async fn an_event_can_be_cancelled_with_a_reason() {
    let app = spawn_app().await;
    let id = app.new_event().await;
    let v = app
        .fire_ok(
            &id,
            "cancel",
            "req",
            json!({"cancel_reason": "reported twice"}),
        )
        .await;
    assert_eq!(v["state"], "cancelled");
    assert_eq!(v["final"], true);
}

#[tokio::test]
async fn an_instance_lists_only_the_transitions_its_caller_may_fire() {
    let app = spawn_app().await;
    let id = app.event_at_l1().await;
    let names = |a: &crate::helpers::Answer| -> Vec<String> {
        a.body["allowed_transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let desk = app.get(&format!("/api/v1/instances/{id}"), "desk").await;
    assert_eq!(names(&desk), ["escalate", "await", "resolve", "cancel"]);
    let requester = app.get(&format!("/api/v1/instances/{id}"), "req").await;
    assert_eq!(names(&requester), ["cancel"]);
    let auditor = app.get(&format!("/api/v1/instances/{id}"), "nobody").await;
    assert!(names(&auditor).is_empty());
    assert_eq!(
        desk.headers["etag"],
        format!("\"{}\"", desk.body["version"])
    );
}

#[tokio::test]
async fn instances_are_listed_by_process_and_state_a_page_at_a_time() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(app.new_event().await);
    }
    let at_l1 = app.event_at_l1().await;

    let in_new = app
        .get("/api/v1/instances?process=event&state=new", "desk")
        .await;
    assert_eq!(in_new.status, StatusCode::OK);
    assert_eq!(in_new.body["items"].as_array().unwrap().len(), 5);

    let mut seen = Vec::new();
    let mut path = "/api/v1/instances?process=event&limit=2".to_owned();
    loop {
        let page = app.get(&path, "desk").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        for item in page.body["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/instances?process=event&limit=2&cursor={c}"),
            None => break,
        }
    }
    created.push(at_l1);
    assert_eq!(seen, created, "every instance once, in creation order");
}

#[tokio::test]
async fn the_trace_is_also_available_as_csv() {
    let app = spawn_app().await;
    let id = app.event_at_l1().await;
    let a = app
        .get(&format!("/api/v1/instances/{id}/trace?format=csv"), "desk")
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.content_type().starts_with("text/csv"));
    let lines: Vec<&str> = a.text.lines().collect();
    assert_eq!(
        lines[0],
        "seq,at,actor,roles,channel,kind,transition,from,to,data,before,rules,comment,definition_hash,prev_hash,hash"
    );
    assert_eq!(lines.len(), 1 + app.trace(&id).await.len());
    assert!(lines.iter().any(|l| l.contains(",classify,new,routing,")));
}

#[tokio::test]
async fn instances_survive_a_restart_on_the_same_database_file() {
    let app = spawn_app().await;
    let id = app.event_at_l1().await;
    let dir = app.shut_down().await;

    let app: TestApp =
        spawn_app_with(&repo_path("processes"), &repo_path("rules"), Some(dir)).await;
    let v = app.get(&format!("/api/v1/instances/{id}"), "desk").await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.body["state"], "l1");
    assert_eq!(app.trace_steps(&id).await.len(), 3);
    app.fire_ok(
        &id,
        "resolve",
        "desk",
        json!({"resolution_code": "fixed", "solution": "done"}),
    )
    .await;
}

#[tokio::test]
async fn a_running_instance_keeps_its_definition_version_after_the_file_changes() {
    let (_files, processes) = processes_copy("event.yaml", |t| t);
    let original = std::fs::read_to_string(repo_path("processes/event.yaml")).unwrap();

    let app = spawn_app_with(&processes, &repo_path("rules"), None).await;
    let id = app.event_at_l1().await;
    let pinned = app
        .get(&format!("/api/v1/instances/{id}"), "desk")
        .await
        .body["definition_hash"]
        .clone();
    let dir = app.shut_down().await;

    // The process owner removes the `await` transition; the running instance still has it.
    let edited = original.replace(
        "  await:\n    title: Wait for the requester or for information\n    from: [l1, l2, l3]\n    to: pending\n    roles: [service_desk, l2_engineer, l3_vendor]\n    requires: [pending_reason]\n",
        "",
    )
    .replace("  resume:\n    title: Resume work\n    from: pending\n    to: routing\n    roles: [service_desk, requester]\n    action: '#{ pending_reason: () }'\n", "")
    .replace("  pending:\n    title: 挂起\n    description: Waiting for the requester or for information, with a reason; resuming routes it back to its tier.\n", "")
    .replace("from: [new, l1, l2, l3, pending]", "from: [new, l1, l2, l3]")
    .replace("    pause_in: [pending]\n", "");
    assert_ne!(edited, original);
    std::fs::write(processes.join("event.yaml"), &edited).unwrap();

    let app = spawn_app_with(&processes, &repo_path("rules"), Some(dir)).await;
    let v = app
        .fire_ok(
            &id,
            "await",
            "desk",
            json!({"pending_reason": "awaiting_customer"}),
        )
        .await;
    assert_eq!(v["state"], "pending");
    assert_eq!(v["definition_hash"], pinned);

    let fresh = app.new_event().await;
    let f = app.get(&format!("/api/v1/instances/{fresh}"), "desk").await;
    assert_ne!(
        f.body["definition_hash"], pinned,
        "new instances get the new version"
    );
}

#[tokio::test]
async fn a_process_owner_reroutes_a_category_by_editing_the_routing_table() {
    let (_files, processes) = processes_copy("event.yaml", |yaml| {
        let edited = yaml.replace(
            "order_consultation:    { tier: L1, group: service_desk }",
            "order_consultation:    { tier: L2, group: order_team }",
        );
        assert_ne!(yaml, edited);
        edited
    });
    let app = spawn_app_with(&processes, &repo_path("rules"), None).await;
    let id = app.new_event().await;
    let v = app
        .fire_ok(
            &id,
            "classify",
            "desk",
            json!({"category": "order_consultation", "impact": "low", "urgency": "low"}),
        )
        .await;
    assert_eq!(v["state"], "l2");
    assert_eq!(v["data"]["group"], "order_team");
}

#[tokio::test]
async fn a_process_owner_changes_the_priority_matrix_by_editing_yaml() {
    let (_files, processes) = processes_copy("event.yaml", |yaml| {
        let edited = yaml.replace(
            "low:    { high: P3, medium: P4, low: P4 }",
            "low:    { high: P3, medium: P4, low: P3 }",
        );
        assert_ne!(yaml, edited);
        edited
    });
    let app = spawn_app_with(&processes, &repo_path("rules"), None).await;
    let id = app.new_event().await;
    let v = app
        .fire_ok(
            &id,
            "classify",
            "desk",
            json!({"category": "order_consultation", "impact": "low", "urgency": "low"}),
        )
        .await;
    assert_eq!(v["data"]["priority"], "P3");
}

#[tokio::test]
async fn a_process_owner_changes_escalation_in_rhai_without_a_rebuild() {
    let files = tempfile::tempdir().unwrap();
    let rules = files.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    for entry in std::fs::read_dir(repo_path("rules")).unwrap() {
        let path = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&path).unwrap();
        if path.file_name().unwrap() == "event.rhai" {
            // Escalation skips the second line and goes straight to the vendor.
            let edited = text.replace(
                r#"let next = if ctx.data.tier == "L1" { "L2" } else { "L3" };"#,
                r#"let next = "L3";"#,
            );
            assert_ne!(text, edited);
            text = edited;
        }
        std::fs::write(rules.join(path.file_name().unwrap()), text).unwrap();
    }
    let app = spawn_app_with(&repo_path("processes"), &rules, None).await;
    let id = app.event_at_l1().await;
    let v = app
        .fire_ok(
            &id,
            "escalate",
            "desk",
            json!({"escalation_reason": "vendor product"}),
        )
        .await;
    assert_eq!(v["state"], "l3");
}
