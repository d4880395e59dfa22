//! The XES export read back by a process-mining tool: pm4py, when `OPSFLOW_PM4PY_PYTHON`
//! names a Python that has it (`.ci/run` installs it into a virtual environment).

use std::io::Write;

use reqwest::StatusCode;
use serde_json::Value;

use crate::evidence::walked_event;
use crate::helpers::spawn_app;

const READ_BACK: &str = r#"
import json, sys
import pm4py
log = pm4py.read_xes(sys.argv[1])
print(json.dumps({
    "cases": int(log["case:concept:name"].nunique()),
    "events": int(len(log)),
    "activities": sorted(set(log["concept:name"])),
}))
"#;

#[tokio::test]
async fn pm4py_reads_back_the_xes_export_of_a_walked_scenario_with_every_case_and_event() {
    let Some(python) = std::env::var_os("OPSFLOW_PM4PY_PYTHON") else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped the pm4py read-back test: OPSFLOW_PM4PY_PYTHON is not set (.ci/run sets it)"
        );
        return;
    };
    let app = spawn_app().await;
    let ids = [
        walked_event(&app).await,
        walked_event(&app).await,
        app.event_at_l1().await,
    ];
    let mut events = 0;
    let mut activities = std::collections::BTreeSet::new();
    for id in &ids {
        for r in app.trace_steps(id).await {
            events += 1;
            let activity = match &r["transition"] {
                Value::String(t) => t.clone(),
                _ => r["kind"].as_str().unwrap().to_owned(),
            };
            activities.insert(activity);
        }
    }
    let a = app
        .get("/api/v1/audit/export?process=event&format=xes", "nobody")
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.xes");
    std::fs::write(&file, &a.text).unwrap();

    let out = std::process::Command::new(python)
        .args(["-c", READ_BACK, file.to_str().unwrap()])
        .output()
        .expect("the configured Python runs");
    assert!(out.status.success(), "{out:?}");
    // pm4py may greet on stdout first; the answer is the last line.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answer: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(answer["cases"], 3, "{answer}");
    assert_eq!(answer["events"], events, "{answer}");
    let read: std::collections::BTreeSet<String> = answer["activities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(read, activities);
}
