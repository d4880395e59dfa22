//! `opsflow serve` as an operator runs it: settings from a TOML file below the environment
//! and flags, problems in the file as `file:line:col`, JSON logs naming each request's id.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cli::opsflow;
use crate::helpers::repo_path;

#[tokio::test]
async fn serve_takes_settings_from_a_toml_file_below_the_environment_and_logs_json_with_request_ids()
 {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("opsflow.toml");
    std::fs::write(
        &config,
        format!(
            "# opsflow settings\ndb = \"sqlite://{}\"\nlisten = \"127.0.0.1:0\"\nsimulate = true\n\
             max_page = 5\nreload_poll_ms = 0\ntokens = \"cfg-token=carl:admin,service_desk\"\n",
            dir.path().join("o.db").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_opsflow"))
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(repo_path(""))
        .env_remove("OPSFLOW_DB")
        .env_remove("OPSFLOW_TOKENS")
        .env_remove("RUST_LOG")
        .env("OPSFLOW_MAX_PAGE", "7")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let client = reqwest::Client::new();
    let clock = client
        .get(format!("http://{addr}/api/v1/admin/clock"))
        .bearer_auth("cfg-token")
        .header("x-request-id", "cfg-check-1")
        .send()
        .await
        .unwrap();
    assert_eq!(clock.headers()["x-request-id"], "cfg-check-1");
    let clock: serde_json::Value = clock.json().await.unwrap();
    assert_eq!(
        clock["simulated"], true,
        "simulate = true came from the file"
    );
    let page: serde_json::Value = client
        .get(format!("http://{addr}/api/v1/instances?limit=8"))
        .bearer_auth("cfg-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        page["detail"].as_str().unwrap().contains("between 1 and 7"),
        "the environment wins over the file: {page}"
    );
    // The access log line of the first request, as JSON with its request id.
    let logged = tokio::task::spawn_blocking(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("cfg-check-1") {
                return line;
            }
        }
        String::new()
    });
    let line = tokio::time::timeout(Duration::from_secs(10), logged)
        .await
        .expect("the request is logged")
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let entry: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(entry["span"]["request_id"], "cfg-check-1", "{line}");
    assert_eq!(entry["span"]["route"], "/api/v1/admin/clock", "{line}");
    assert_eq!(entry["status"], 200, "{line}");
    assert!(!line.contains("cfg-token"), "no secret is logged");
}

#[test]
fn a_problem_in_the_configuration_file_is_one_line_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("opsflow.toml");
    let config_arg = config.to_str().unwrap();
    for (text, expected) in [
        (
            "db = \"sqlite://x.db\"\nlisen = 1\n",
            ":2:1: unknown setting `lisen`",
        ),
        (
            "\n\nlisten = \"nowhere\"\n",
            ":3:1: `listen`: invalid value 'nowhere'",
        ),
        (
            "simulate = \"yes\"\n",
            ":1:1: `simulate` must be true or false",
        ),
        ("group_commit_max = [1\n", ":1:"),
        (
            "webhook_secret = \"s3cret\"\ntokens = { a = 1 }\n",
            ":2:1: `tokens` must be a string",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let o = opsflow(&["serve", "--config", config_arg], dir.path());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{text}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("{config_arg}{expected}")),
            "{text} → {err}"
        );
        assert!(!err.contains("s3cret"));
    }
}

#[test]
fn the_readme_lists_every_setting_with_its_environment_variable() {
    use clap::Args as _;
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let command = opsflow::settings::Settings::augment_args(clap::Command::new("serve"));
    let mut checked = 0;
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let env = arg.get_env().expect("every setting has a variable");
        let row = format!("| `{id}` | `{}` |", env.to_string_lossy());
        assert!(
            readme.contains(&row),
            "README's configuration table lacks {row}"
        );
        checked += 1;
    }
    assert!(checked > 30, "{checked}");
}
