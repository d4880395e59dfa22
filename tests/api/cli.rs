//! The `opsflow` binary as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

use crate::helpers::{processes_copy, repo_path};

pub fn opsflow(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_opsflow"))
        .args(args)
        .current_dir(dir)
        .env_remove("OPSFLOW_DB")
        .env_remove("OPSFLOW_PROCESSES")
        .env_remove("OPSFLOW_RULES")
        .env_remove("OPSFLOW_EVIDENCE_KEY")
        .env_remove("OPSFLOW_BENCH_POSTGRES_URL")
        .output()
        .expect("opsflow runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A copy of the shipped processes with event.yaml edited by `edit`.
fn broken_copy(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo_path("processes")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap();
            let text = if name == "event.yaml" {
                edit(text)
            } else {
                text
            };
            std::fs::write(dir.path().join(name), text).unwrap();
        }
    }
    dir
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in file")
        + 1
}

#[test]
fn validate_accepts_the_shipped_processes() {
    let o = opsflow(&["validate", "processes"], &repo_path(""));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("process `event`"));
}

#[test]
fn validate_reports_an_unknown_state_a_misspelt_key_and_an_unreachable_state_at_their_positions() {
    let dir = broken_copy(|t| {
        t.replace("    to: resolved\n", "    to: resolvd\n")
            .replace(
                "    requires: [pending_reason]\n",
                "    requirs: [pending_reason]\n",
            )
            .replace("\ntransitions:", "  archived: {}\n\ntransitions:")
    });
    let file = dir.path().join("event.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let o = opsflow(
        &[
            "validate",
            file.to_str().unwrap(),
            "--rules",
            repo_path("rules").to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let f = file.display();
    let expected = [
        format!(
            "{f}:{}:3: state `archived` is unreachable",
            line_of(&text, "archived: {}")
        ),
        format!(
            "{f}:{}:5: unknown field `requirs`",
            line_of(&text, "requirs:")
        ),
        format!(
            "{f}:{}:9: unknown state `resolvd`; did you mean `resolved`?",
            line_of(&text, "to: resolvd")
        ),
    ];
    for e in &expected {
        assert!(err.contains(e.as_str()), "missing `{e}` in:\n{err}");
    }
}

#[test]
fn validate_reports_structural_problems_of_a_process_file() {
    type Edit = Box<dyn Fn(String) -> String>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "no initial state",
            Box::new(|t| t.replace("  new:\n    initial: true\n", "  new:\n")),
            "no initial state",
        ),
        (
            "two initial states",
            Box::new(|t| t.replace("  pending:\n", "  pending:\n    initial: true\n")),
            "several initial states",
        ),
        (
            "a dead end",
            Box::new(|t| {
                t.replace("\ntransitions:", "  limbo: {}\n\ntransitions:")
                    + "  drop:\n    from: new\n    to: limbo\n    roles: [service_desk]\n"
            }),
            "no final state can be reached from state `limbo`",
        ),
        (
            "a duplicate key",
            Box::new(|t| t.replace("\ntransitions:", "  l1: {}\n\ntransitions:")),
            "duplicate key `l1`",
        ),
        (
            "an unknown role",
            Box::new(|t| {
                t.replace(
                    "roles: [requester, service_desk, duty_manager]",
                    "roles: [requester, service_dsk]",
                )
            }),
            "unknown role `service_dsk`",
        ),
        (
            "an unknown field in requires",
            Box::new(|t| t.replace("requires: [cancel_reason]", "requires: [cancel_reson]")),
            "unknown field `cancel_reson` in `requires`",
        ),
        (
            "an unknown rule function",
            Box::new(|t| t.replace("action: classify", "action: clasify")),
            "unknown rule function `clasify`",
        ),
        (
            "a guard that does not compile",
            Box::new(|t| {
                t.replace(
                    "guard: 'data.requester_confirmed == true'",
                    "guard: 'data.requester_confirmed == '",
                )
            }),
            "does not compile",
        ),
        (
            "a guard naming an unknown variable",
            Box::new(|t| {
                t.replace(
                    "guard: 'data.requester_confirmed == true'",
                    "guard: 'dta.requester_confirmed == true'",
                )
            }),
            "does not compile",
        ),
        (
            "an unknown field type",
            Box::new(|t| {
                t.replace(
                    "satisfaction:    { type: integer",
                    "satisfaction:    { type: percent",
                )
            }),
            "unknown field type `percent`",
        ),
        (
            "a YAML syntax error",
            Box::new(|t| t.replace("process: event", "process: [event")),
            "",
        ),
    ];
    for (name, edit, message) in cases {
        let dir = broken_copy(edit);
        let o = opsflow(
            &[
                "validate",
                "event.yaml",
                "--rules",
                repo_path("rules").to_str().unwrap(),
            ],
            dir.path(),
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(message),
            "{name}: expected `{message}` in:\n{err}"
        );
        let first = err.lines().next().unwrap();
        let mut parts = first.splitn(4, ':');
        assert_eq!(parts.next(), Some("event.yaml"), "{name}: {first}");
        assert!(
            parts.next().unwrap().parse::<usize>().is_ok(),
            "{name}: line in {first}"
        );
        assert!(
            parts.next().unwrap().parse::<usize>().is_ok(),
            "{name}: column in {first}"
        );
    }
}

#[test]
fn a_rule_module_with_a_syntax_error_is_reported_in_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/event.rhai"),
        "fn classify(ctx) {\n    let x = ;\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("event.yaml"),
        std::fs::read_to_string(repo_path("processes/event.yaml")).unwrap(),
    )
    .unwrap();
    let o = opsflow(&["validate", "event.yaml"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("rules/event.rhai:2:"), "{}", stderr(&o));
}

#[test]
fn graph_prints_the_state_diagram() {
    let o = opsflow(&["graph", "event"], &repo_path(""));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("stateDiagram-v2"));
    let o = opsflow(&["graph", "event", "--format", "dot"], &repo_path(""));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("digraph"));
    let o = opsflow(&["graph", "nope"], &repo_path(""));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).trim(), "opsflow: unknown process `nope`");
}

#[test]
fn migrate_creates_the_database_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let o = opsflow(&["migrate", "--db", "sqlite://fresh.db"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join("fresh.db").exists());
    let first = String::from_utf8_lossy(&o.stdout).into_owned();
    let applied: usize = first
        .split(": ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    let shipped = std::fs::read_dir(repo_path("migrations/sqlite"))
        .unwrap()
        .count();
    assert_eq!(applied, shipped, "{first}");
    let o = opsflow(&["migrate", "--db", "sqlite://fresh.db"], dir.path());
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 migration(s) applied"));
    let o = opsflow(&["migrate", "--db", "mysql://nowhere"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).lines().count(),
        1,
        "one plain line: {}",
        stderr(&o)
    );
}

#[test]
fn serve_refuses_to_start_on_a_broken_process_file() {
    let dir = broken_copy(|t| t.replace("    to: resolved\n", "    to: resolvd\n"));
    let o = opsflow(
        &[
            "serve",
            "--processes",
            ".",
            "--rules",
            repo_path("rules").to_str().unwrap(),
            "--db",
            "sqlite://x.db",
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("event.yaml:"), "{err}");
    assert!(err.contains("not starting"), "{err}");
}

#[test]
fn the_processes_readme_is_the_current_output_of_opsflow_doc() {
    let o = opsflow(&["doc"], &repo_path(""));
    assert!(o.status.success(), "{}", stderr(&o));
    let generated = String::from_utf8(o.stdout).unwrap();
    let committed = std::fs::read_to_string(repo_path("processes/README.md")).unwrap();
    assert!(
        generated == committed,
        "processes/README.md is out of date: run `opsflow doc > processes/README.md`"
    );
    for process in [
        "event",
        "problem",
        "change",
        "release",
        "service-level",
        "report",
    ] {
        assert!(
            generated.contains(&format!("\n## {process}\n")),
            "{process} is documented"
        );
    }
}

#[test]
fn every_shipped_process_renders_as_a_graph() {
    for process in [
        "event",
        "problem",
        "change",
        "release",
        "service-level",
        "report",
    ] {
        for format in ["mermaid", "dot"] {
            let o = opsflow(&["graph", process, "--format", format], &repo_path(""));
            assert!(o.status.success(), "{process} {format}: {}", stderr(&o));
            assert!(!o.stdout.is_empty());
        }
    }
}

#[test]
fn bench_measures_every_figure_with_the_raw_limits_beside_them() {
    let mut args = vec![
        "bench",
        // Not a multiple of the client counts: every run still fires all of them.
        "--transitions",
        "300",
        "--footprint-instances",
        "256",
        "--kpi-instances",
        "256",
        "--json",
    ];
    let pg = std::env::var("OPSFLOW_TEST_POSTGRES_URL").ok();
    if let Some(url) = &pg {
        args.extend(["--postgres", url.as_str()]);
    }
    let out = opsflow(&args, &repo_path("."));
    assert!(out.status.success(), "{}", stderr(&out));
    let figures: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON figures");
    let mut keys = vec![
        "memory_1_clients_tps".to_owned(),
        "memory_8_clients_tps".into(),
        "memory_2_engines_tps".into(),
        "sqlite_single_tps".into(),
        "sqlite_raw_tps".into(),
        "sqlite_disk_kib_per_100k_instances".into(),
        "peak_rss_kib".into(),
    ];
    // Memory growth of a small run may be nil (freed memory is reused): present, not positive.
    for key in [
        "memory_store_kib_per_100k_instances",
        "sqlite_rss_kib_per_100k_instances",
    ] {
        assert!(figures[key].as_f64().is_some(), "{key}: {:?}", figures[key]);
    }
    let databases: &[&str] = if pg.is_some() {
        &["sqlite", "postgres"]
    } else {
        &["sqlite"]
    };
    for db in databases {
        keys.push(format!("{db}_kpi_half_ms"));
        keys.push(format!("{db}_kpi_full_ms"));
        for c in [1, 8, 16, 32, 128] {
            keys.push(format!("{db}_engine_{c}_clients_tps"));
            keys.push(format!("{db}_raw_batched_{c}_tps"));
            keys.push(format!("{db}_http_{c}_clients_tps"));
            keys.push(format!("{db}_http_{c}_clients_p99_ms"));
            // The server's /metrics counted every step fired over HTTP.
            for counted in ["steps", "requests"] {
                let key = format!("{db}_http_{c}_clients_metrics_{counted}");
                assert_eq!(figures[&key], 300.0, "{key}");
            }
        }
    }
    for key in keys {
        let value = figures[&key].as_f64();
        assert!(value.is_some_and(|v| v > 0.0), "{key}: {:?}", figures[&key]);
    }
}

#[test]
fn bench_refuses_a_postgres_part_without_a_server() {
    let out = opsflow(&["bench", "--only", "postgres"], &repo_path("."));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("--postgres"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one plain line: {err}");
}

#[test]
fn validate_checks_the_business_calendars_too() {
    let out = opsflow(&["validate"], &repo_path("."));
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok: calendar `service-desk`"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("desk.yaml"),
        "calendar: desk\ntime_zone: Asia/Shanghai\nweek:\n  mon: [\"09:00-18:00\"]\n  fri: [\"9-18\"]\n",
    )
    .unwrap();
    let calendars = dir.path().display().to_string();
    let out = opsflow(&["validate", "--calendars", &calendars], &repo_path("."));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let file = dir.path().join("desk.yaml").display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:5:9: `9-18` is not a period of the day such as `08:30-12:00`"
        )),
        "{err}"
    );
}

#[test]
fn validate_reports_a_timer_naming_an_unknown_calendar() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ticket.yaml"),
        "process: ticket\nroles: [r]\nstates:\n  open: { initial: true }\n  closed: { final: true }\ntransitions:\n  close: { from: open, to: closed, roles: [r] }\ntimers:\n  expiry: { in: [open], after: 1h, calendar: servicedesk, fire: close }\n",
    )
    .unwrap();
    let file = dir.path().join("ticket.yaml").display().to_string();
    let out = opsflow(&["validate", &file], &repo_path("."));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{file}:9:46: unknown calendar `servicedesk`: no file in the calendars folder defines it; did you mean `service-desk`?"
        )),
        "{err}"
    );
}

#[test]
fn validate_reports_a_lookup_of_a_state_the_other_process_does_not_have() {
    let (_files, processes) = processes_copy("event.yaml", |t| {
        t.replace("in: [active] }", "in: [actve] }")
    });
    let folder = processes.display().to_string();
    let out = opsflow(&["validate", &folder], &repo_path("."));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let file = processes.join("event.yaml").display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:64:40: process `service-level` has no state `actve`"
        )),
        "{err}"
    );
}

#[test]
fn diff_lists_what_a_change_review_needs_and_exits_like_diff() {
    let (_files, processes) = processes_copy("change.yaml", |t| {
        t.replace(
            "cab_quorum: { low: 1, medium: 2, high: 3 }",
            "cab_quorum: { low: 1, medium: 3, high: 3 }",
        )
        .replace(
            "    approval: { roles: [ecab_member], quorum: ecab_quorum, reject_to: draft }",
            "    approval: { roles: [ecab_member, change_manager], quorum: ecab_quorum, reject_to: draft }",
        )
    });
    let old = repo_path("processes/change.yaml").display().to_string();
    let new = processes.join("change.yaml").display().to_string();
    let out = opsflow(&["diff", &old, &new], &repo_path("."));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("approvals\n  ~ ecab_approve\n      roles: [\"ecab_member\"] → [\"ecab_member\",\"change_manager\"]\n"),
        "{text}"
    );
    assert!(
        text.contains("tables\n  ~ cab_quorum\n      medium: 2 → 3\n"),
        "{text}"
    );

    let json = opsflow(&["diff", &old, &new, "--json"], &repo_path("."));
    let changes: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(changes.as_array().unwrap().len(), 2, "{changes}");
    assert_eq!(changes[0]["section"], "approvals");
    assert_eq!(changes[0]["kind"], "changed");

    let same = opsflow(&["diff", &old, &old], &repo_path("."));
    assert_eq!(same.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&same.stdout), "no differences\n");

    let missing = opsflow(&["diff", &old, "nowhere.yaml"], &repo_path("."));
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(stderr(&missing).lines().count(), 1, "{}", stderr(&missing));

    let (_broken, bad) = processes_copy("change.yaml", |t| {
        t.replace("    to: cab_review\n", "    to: cab_reveiw\n")
    });
    let bad = bad.join("change.yaml").display().to_string();
    let broken = opsflow(&["diff", &old, &bad], &repo_path("."));
    assert_eq!(broken.status.code(), Some(2));
    assert!(
        stderr(&broken).contains("unknown state `cab_reveiw`; did you mean `cab_review`?"),
        "{}",
        stderr(&broken)
    );
}

#[test]
fn validate_warns_of_legal_but_suspicious_definitions_and_still_succeeds() {
    let shipped = opsflow(&["validate"], &repo_path("."));
    assert!(shipped.status.success());
    assert_eq!(
        stderr(&shipped),
        "",
        "the shipped processes raise no warning"
    );

    let (_files, processes) = processes_copy("change.yaml", |t| {
        t.replacen(
            "roles:\n",
            "roles:\n  - auditor             # nobody uses it\n",
            1,
        )
    });
    let file = processes.join("change.yaml").display().to_string();
    let out = opsflow(&["validate", &file], &repo_path("."));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&file).unwrap();
    let line = text.lines().position(|l| l.contains("- auditor")).unwrap() + 1;
    assert!(
        stderr(&out).contains(&format!(
            "{file}:{line}:5: warning: role `auditor` is declared but no start, transition, approval or notification uses it"
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validate_suggests_the_role_field_or_rule_function_a_misspelt_name_meant() {
    let (_files, processes) = processes_copy("change.yaml", |t| {
        t.replacen(
            "    roles: [change_manager]\n",
            "    roles: [change_manger]\n",
            1,
        )
        .replacen(
            "    requires: [review_notes]",
            "    requires: [review_note]",
            1,
        )
    });
    let file = processes.join("change.yaml").display().to_string();
    let out = opsflow(&["validate", &file], &repo_path("."));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("unknown role `change_manger`; did you mean `change_manager`?"),
        "{err}"
    );
    assert!(
        err.contains("unknown field `review_note` in `requires`; did you mean `review_notes`?"),
        "{err}"
    );

    let (_files, processes) = processes_copy("change.yaml", |t| {
        t.replacen(
            "action: count_submission\n",
            "action: count_submissions\n",
            1,
        )
    });
    let file = processes.join("change.yaml").display().to_string();
    let err = stderr(&opsflow(&["validate", &file], &repo_path(".")));
    assert!(
        err.contains("unknown rule function `count_submissions` (rule modules: change); did you mean `count_submission`?"),
        "{err}"
    );
}

#[tokio::test]
async fn kpi_prints_each_kpi_with_its_figure_target_and_verdict() {
    let app = crate::helpers::spawn_app().await;
    let id = app.event_at_l1().await;
    assert!(!id.is_empty());
    let db = app.db.url.clone();
    let out = opsflow(
        &[
            "kpi",
            "--db",
            &db,
            "--process",
            "event",
            "--group-by",
            "priority",
        ],
        &repo_path("."),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("KPIs, all time: 1 instance(s); KPI files "),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("backlog ")
            && l.contains(" 1 events ")
            && l.contains("met")),
        "{text}"
    );
    let json = opsflow(
        &["kpi", "--db", &db, "--process", "event", "--json"],
        &repo_path("."),
    );
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["instances"], 1);
    let bad = opsflow(&["kpi", "--db", &db, "--from", "monday"], &repo_path("."));
    assert!(!bad.status.success());
    assert_eq!(stderr(&bad).lines().count(), 1, "{}", stderr(&bad));
}
