//! `opsflow conform`: replaying event logs against the shipped processes. A synthetic
//! change log in `tests/data/conform/` covers every kind of deviation on any machine; the
//! real public logs (BPI Challenge 2013 incidents, Helpdesk) are checked against a replay
//! written here independently, when `OPSFLOW_SHARED_DATA` points at them (`.ci/run` sets
//! it to `../shared/data`).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli::opsflow;
use crate::evidence::walked_event;
use crate::helpers::{repo_path, spawn_app};

fn conform_json(args: &[&str]) -> Value {
    let mut all = vec!["conform", "--format", "json"];
    all.extend_from_slice(args);
    let out = opsflow(&all, &repo_path("."));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn synthetic(ext: &str) -> Value {
    conform_json(&[
        "--log",
        &format!("tests/data/conform/change-log.{ext}"),
        "--mapping",
        "tests/data/conform/change-log.yaml",
    ])
}

#[test]
fn a_synthetic_change_log_shows_each_kind_of_deviation_once_and_its_fitness() {
    let r = synthetic("csv");
    assert_eq!(r["process"], "change");
    assert_eq!(r["cases"], 6);
    assert_eq!(r["events"], 22);
    assert_eq!(r["ignored"], 1, "`Logged` is ignored by the mapping");
    assert_eq!(r["fitting"], 2);
    assert!((r["fitness"].as_f64().unwrap() - 2.0 / 6.0).abs() < 1e-9);

    let first: HashMap<&str, (&str, Option<i64>)> = r["case_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["case"].as_str().unwrap(),
                (
                    c["first_deviation"].as_str().unwrap_or("fits"),
                    c["at_event"].as_i64(),
                ),
            )
        })
        .collect();
    assert_eq!(first["C1"], ("fits", None));
    assert_eq!(
        first["C2"],
        (
            "`implement` from `cab_review` skips the approval `cab_approve`",
            Some(3)
        )
    );
    assert_eq!(
        first["C3"],
        ("`complete` is not allowed from `submitted`", Some(2))
    );
    assert_eq!(
        first["C4"],
        ("ended in `cab_review`, never reaching a final state", None)
    );
    // C5's events are out of order in the file: sorted by time, `Work done` comes last and
    // fits; the unknown activity is the only deviation.
    assert_eq!(
        first["C5"],
        ("activity `Coffee break` is not in the mapping", Some(2))
    );
    assert_eq!(first["C6"], ("fits", None), "withdrawn is a final state");

    let t = &r["transitions"];
    assert_eq!(t["submit"]["fitting"], 6);
    assert_eq!(t["implement"]["fitting"], 2);
    assert_eq!(t["implement"]["deviating"], 1);
    assert_eq!(t["complete"]["fitting"], 3);
    assert_eq!(t["complete"]["deviating"], 1);
    assert_eq!(t["to_review"]["automatic"], true);
    assert_eq!(r["deviations"].as_array().unwrap().len(), 4);
}

#[test]
fn the_same_log_as_xes_gives_the_same_report() {
    let (csv, xes) = (synthetic("csv"), synthetic("xes"));
    assert_same_report(&csv, &xes);
    assert_eq!(csv["case_results"], xes["case_results"]);
}

/// Two reports of one log read from different files agree on every total.
fn assert_same_report(a: &Value, b: &Value) {
    for key in [
        "cases",
        "events",
        "ignored",
        "fitting",
        "deviations",
        "transitions",
    ] {
        assert_eq!(a[key], b[key], "{key}");
    }
}

#[test]
fn the_text_report_lists_totals_deviations_transitions_and_every_case() {
    let out = opsflow(
        &[
            "conform",
            "--log",
            "tests/data/conform/change-log.csv",
            "--mapping",
            "tests/data/conform/change-log.yaml",
            "--cases",
        ],
        &repo_path("."),
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("cases: 6   fitting: 2   fitness: 33.33%"),
        "{text}"
    );
    assert!(
        text.contains("most frequent deviations (4 kinds, 4 in all)"),
        "{text}"
    );
    assert!(text.contains("to_review (automatic)"), "{text}");
    assert!(
        text.contains("  C3: event 2 (Work done): `complete` is not allowed from `submitted`"),
        "{text}"
    );
    assert!(text.contains("  C1: fits (5 events)"), "{text}");
}

#[test]
fn a_misspelt_transition_or_column_in_a_mapping_is_one_plain_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = std::fs::read_to_string(repo_path("tests/data/conform/change-log.yaml")).unwrap();
    let mapping = dir.path().join("bad.yaml");
    std::fs::write(
        &mapping,
        yaml.replace("Work started: implement", "Work started: implemnt"),
    )
    .unwrap();
    let log = repo_path("tests/data/conform/change-log.csv");
    // Exit code and stderr of conform on the log with the mapping as now written.
    let conform = || {
        let out = opsflow(
            &[
                "conform",
                "--log",
                log.to_str().unwrap(),
                "--mapping",
                mapping.to_str().unwrap(),
            ],
            &repo_path("."),
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = conform();
    assert_eq!(code, Some(1));
    let line = yaml
        .lines()
        .position(|l| l.contains("Work started"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(
            "bad.yaml:{line}:17: activity `Work started`: unknown transition `implemnt` of process `change`; did you mean `implement`?"
        )),
        "{err}"
    );

    std::fs::write(&mapping, yaml.replace("time: when", "time: date")).unwrap();
    let (code, err) = conform();
    assert_eq!(code, Some(1));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("no column `date` (columns: ticket, step, when, who)"),
        "{err}"
    );
}

#[tokio::test]
async fn the_stored_traces_of_a_process_replay_as_fitting() {
    let app = spawn_app().await;
    walked_event(&app).await;
    app.event_at_l1().await;
    let db = app.shut_down().await;
    let r = conform_json(&["--db", &db.url, "--process", "event"]);
    assert_eq!(r["cases"], 2);
    // The walked one ended in `resolved`, the other in `l1`: neither reached a final state,
    // and every move they made fits.
    assert_eq!(r["fitting"], 0);
    let ends: HashSet<&str> = r["case_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    assert_eq!(ends, HashSet::from(["resolved", "l1"]));
    assert!(
        r["deviations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d[0].as_str().unwrap().starts_with("ended in")),
        "{r:#}"
    );
    assert_eq!(r["transitions"]["classify"]["fitting"], 2);
    // Routed to L1 on classification (twice) and again on resuming (once): stored
    // automatic moves count.
    assert_eq!(r["transitions"]["to_l1"]["fitting"], 3);
}

/// The folder of the real logs, or `None` after saying plainly that the test is skipped.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    match std::env::var_os("OPSFLOW_SHARED_DATA") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            // Written past the test harness's capture, so that it shows in every run.
            let _ = writeln!(
                std::io::stderr(),
                "skipped {test}: OPSFLOW_SHARED_DATA is not set (.ci/run sets it to ../shared/data)"
            );
            None
        }
    }
}

/// The process as this test reads it from the YAML: transitions (from, to, automatic),
/// final states and the initial state.
struct Model {
    transitions: HashMap<String, (Vec<String>, String, bool)>,
    finals: HashSet<String>,
    initial: String,
}

fn strings(v: &serde_yaml::Value) -> Vec<String> {
    match v {
        serde_yaml::Value::String(s) => vec![s.clone()],
        serde_yaml::Value::Sequence(items) => items
            .iter()
            .map(|i| i.as_str().unwrap().to_owned())
            .collect(),
        other => panic!("expected text or a list, got {other:?}"),
    }
}

fn model(process_file: &Path) -> Model {
    let y: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(process_file).unwrap()).unwrap();
    let mut m = Model {
        transitions: HashMap::new(),
        finals: HashSet::new(),
        initial: String::new(),
    };
    for (name, s) in y["states"].as_mapping().unwrap() {
        let name = name.as_str().unwrap().to_owned();
        if s.get("initial").and_then(|v| v.as_bool()) == Some(true) {
            m.initial = name.clone();
        }
        if s.get("final").and_then(|v| v.as_bool()) == Some(true) {
            m.finals.insert(name);
        }
    }
    for (name, t) in y["transitions"].as_mapping().unwrap() {
        m.transitions.insert(
            name.as_str().unwrap().to_owned(),
            (
                strings(&t["from"]),
                t["to"].as_str().unwrap().to_owned(),
                t.get("auto").and_then(|v| v.as_bool()) == Some(true),
            ),
        );
    }
    m
}

impl Model {
    /// `state` and every state automatic transitions reach from it.
    fn silent(&self, state: &str) -> HashSet<String> {
        let mut seen = HashSet::from([state.to_owned()]);
        let mut todo = vec![state.to_owned()];
        while let Some(s) = todo.pop() {
            for (from, to, auto) in self.transitions.values() {
                if *auto && from.contains(&s) && seen.insert(to.clone()) {
                    todo.push(to.clone());
                }
            }
        }
        seen
    }
}

#[derive(Debug, PartialEq)]
struct Counts {
    cases: usize,
    events: usize,
    ignored: usize,
    fitting: usize,
    moves: HashMap<String, usize>,
}

/// Replays a CSV log with a mapping, as this test understands the rules.
fn replay_here(log: &Path, mapping: &Path) -> Counts {
    let map: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(mapping).unwrap()).unwrap();
    let m = model(&repo_path(&format!(
        "processes/{}.yaml",
        map["process"].as_str().unwrap()
    )));
    let columns = strings(&map["activity"]);
    let meaning: HashMap<String, Vec<String>> = map["activities"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), strings(v)))
        .collect();
    let mut reader = csv::Reader::from_path(log).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (case_col, time_col) = (
        col(map["case"].as_str().unwrap()),
        col(map["time"].as_str().unwrap()),
    );
    let activity_cols: Vec<usize> = columns.iter().map(|c| col(c)).collect();
    let mut order: Vec<String> = Vec::new();
    let mut cases: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for row in reader.records() {
        let row = row.unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(&row[time_col])
            .unwrap()
            .timestamp_millis();
        let activity: Vec<&str> = activity_cols.iter().map(|i| &row[*i]).collect();
        let case = row[case_col].to_owned();
        if !cases.contains_key(&case) {
            order.push(case.clone());
        }
        cases
            .entry(case)
            .or_default()
            .push((at, activity.join("|")));
    }
    let mut counts = Counts {
        cases: order.len(),
        events: 0,
        ignored: 0,
        fitting: 0,
        moves: HashMap::new(),
    };
    for case in &order {
        let mut events = cases[case].clone();
        events.sort_by_key(|(at, _)| *at);
        let mut state = m.initial.clone();
        let mut fits = true;
        for (_, activity) in &events {
            counts.events += 1;
            let Some(options) = meaning.get(activity) else {
                fits = false;
                continue;
            };
            let reach = m.silent(&state);
            let taken = options
                .iter()
                .find(|o| *o == "ignore" || m.transitions[*o].0.iter().any(|f| reach.contains(f)));
            match taken {
                Some(o) if o == "ignore" => counts.ignored += 1,
                Some(o) => {
                    *counts.moves.entry(o.clone()).or_default() += 1;
                    state = m.transitions[o].1.clone();
                }
                None => {
                    fits = false;
                    state = m.transitions[&options[0]].1.clone();
                }
            }
        }
        if m.silent(&state).is_disjoint(&m.finals) {
            fits = false;
        }
        if fits {
            counts.fitting += 1;
        }
    }
    counts
}

fn counts_of(report: &Value) -> Counts {
    Counts {
        cases: report["cases"].as_u64().unwrap() as usize,
        events: report["events"].as_u64().unwrap() as usize,
        ignored: report["ignored"].as_u64().unwrap() as usize,
        fitting: report["fitting"].as_u64().unwrap() as usize,
        moves: report["transitions"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, c)| c["fitting"].as_u64().unwrap() > 0)
            .map(|(t, c)| (t.clone(), c["fitting"].as_u64().unwrap() as usize))
            .collect(),
    }
}

#[test]
fn the_bpi_2013_incident_log_replays_with_the_counts_of_an_independent_replay() {
    let Some(data) = shared_data("the BPI 2013 incident log test") else {
        return;
    };
    let log = data.join("bpi2013-incidents/bpi_challenge_2013_incidents.flat.csv");
    let mapping = repo_path("mappings/bpi2013-incidents.yaml");
    let report = conform_json(&[
        "--log",
        log.to_str().unwrap(),
        "--mapping",
        mapping.to_str().unwrap(),
    ]);
    let expected = replay_here(&log, &mapping);
    assert_eq!(expected.cases, 7554, "the README's count");
    assert_eq!(expected.events, 65533, "the README's count");
    assert_eq!(counts_of(&report), expected);
    // The five unmatched events of the log are reported, not dropped.
    let unmatched = report["deviations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d[0] == "activity `Unmatched|Unmatched` is not in the mapping")
        .expect("unmatched events are a deviation");
    assert_eq!(unmatched[1], 5);
}

#[test]
fn the_helpdesk_log_replays_alike_from_csv_and_xes_and_as_an_independent_replay() {
    let Some(data) = shared_data("the Helpdesk log test") else {
        return;
    };
    let csv = data.join("helpdesk/helpdesk.flat.csv");
    let xes = data.join("helpdesk/helpdesk.xes.gz");
    let mapping = repo_path("mappings/helpdesk.yaml");
    let run = |log: &Path| {
        conform_json(&[
            "--log",
            log.to_str().unwrap(),
            "--mapping",
            mapping.to_str().unwrap(),
        ])
    };
    let (from_csv, from_xes) = (run(&csv), run(&xes));
    let expected = replay_here(&csv, &mapping);
    assert_eq!(expected.cases, 4580, "the README's count");
    assert_eq!(expected.events, 21348, "the README's count");
    assert_eq!(counts_of(&from_csv), expected);
    assert_same_report(&from_csv, &from_xes);
}
