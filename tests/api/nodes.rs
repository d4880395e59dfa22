//! Several `opsflow serve` processes on one database: thousands of racing transitions,
//! none lost and none doubled. Runs on SQLite by default and on PostgreSQL when
//! `OPSFLOW_TEST_POSTGRES_URL` is set.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TOKENS, TestDb, repo_path};

const TOGGLE: &str = r#"
process: toggle
roles: [auditor]
fields:
  n: { type: integer }
states:
  a: { initial: true }
  done: { final: true }
transitions:
  tick: { from: a, to: a, roles: [auditor] }
  finish: { from: a, to: done, roles: [auditor] }
"#;

/// A folder holding one process file; the folder's path.
fn processes_with(name: &str, yaml: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let files = tempfile::tempdir().unwrap();
    let processes = files.path().join("processes");
    std::fs::create_dir(&processes).unwrap();
    std::fs::write(processes.join(name), yaml).unwrap();
    (files, processes)
}

/// A running `opsflow serve` child process; killed when dropped.
struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(db: &str, processes: &std::path::Path) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_opsflow"))
        .args(["serve", "--db", db, "--listen", "127.0.0.1:0", "--rules"])
        .arg(repo_path("rules"))
        .arg("--processes")
        .arg(processes)
        .env("OPSFLOW_TOKENS", TOKENS)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("opsflow serve starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let base = loop {
        let line = lines
            .next()
            .expect("serve prints where it listens")
            .unwrap();
        if let Some(rest) = line.strip_prefix("opsflow listening on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "node did not start");
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Node { child, base }
}

/// GET as the auditor, as JSON.
async fn get_json(client: &reqwest::Client, url: String) -> Value {
    client
        .get(url)
        .bearer_auth("nobody")
        .send()
        .await
        .expect("node answers")
        .json()
        .await
        .expect("a JSON answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_on_one_database_lose_and_double_no_step() {
    let (_files, processes) = processes_with("toggle.yaml", TOGGLE);
    let db = TestDb::new().await;

    // The first node migrates the database; the others start on the migrated schema.
    let first = start_node(&db.url, &processes);
    let nodes = vec![
        first,
        start_node(&db.url, &processes),
        start_node(&db.url, &processes),
    ];
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let client = reqwest::Client::new();

    const INSTANCES: usize = 12;
    let mut ids = Vec::new();
    for i in 0..INSTANCES {
        let url = format!("{}/api/v1/instances", bases[i % 3]);
        let (_, created) = post_json(&client, url, json!({"process": "toggle"})).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }

    // Twelve clients, each firing at every node in turn. `tick` is always allowed, so a fire
    // is refused only when another fire on the same instance committed between its read
    // and its write: every 409 here is a lost race.
    const CLIENTS: usize = 12;
    const REQUESTS: usize = 250;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let client = client.clone();
        let bases = bases.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (0usize, 0usize);
            for r in 0..REQUESTS {
                let id = &ids[(c + r * 7) % INSTANCES];
                let answer = client
                    .post(format!(
                        "{}/api/v1/instances/{id}/transitions/tick",
                        bases[(c + r) % 3]
                    ))
                    .bearer_auth("nobody")
                    .send()
                    .await
                    .expect("node answers");
                match answer.status().as_u16() {
                    200 => ok += 1,
                    409 => {
                        let body = answer.text().await.unwrap_or_default();
                        assert!(body.contains("urn:opsflow:problem:conflict"), "{body}");
                        refused += 1;
                    }
                    other => panic!(
                        "unexpected status {other}: {}",
                        answer.text().await.unwrap_or_default()
                    ),
                }
            }
            (ok, refused)
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (o, r) = t.await.unwrap();
        ok += o;
        refused += r;
    }
    eprintln!("three nodes: {ok} fires succeeded, {refused} refused as conflicts");
    assert_eq!(ok + refused, CLIENTS * REQUESTS);
    assert!(
        ok > 0 && refused > 0,
        "the workload must both succeed and race: {ok} ok, {refused} refused"
    );

    let mut records = 0;
    for id in &ids {
        let trace: Value =
            get_json(&client, format!("{}/api/v1/instances/{id}/trace", bases[0])).await;
        let trace = trace["records"].as_array().unwrap();
        for (i, r) in trace.iter().enumerate() {
            assert_eq!(r["seq"], i as i64 + 1, "gapless trace of {id}");
            if i > 0 {
                assert_eq!(r["from"], trace[i - 1]["to"], "{id} step {} chains", i + 1);
            }
        }
        let instance: Value =
            get_json(&client, format!("{}/api/v1/instances/{id}", bases[2])).await;
        assert_eq!(instance["version"], trace.len() as i64);
        assert_eq!(instance["state"], trace.last().unwrap()["to"]);
        records += trace.len() - 1; // less the creation record
    }
    assert_eq!(
        records, ok,
        "every successful answer is one trace record, and no record lacks one"
    );
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_under_load_loses_no_acknowledged_step() {
    let (_files, processes) = processes_with("toggle.yaml", TOGGLE);
    let db = TestDb::new().await;
    let mut node = start_node(&db.url, &processes);
    let base = node.base.clone();
    let client = reqwest::Client::new();

    const CLIENTS: usize = 8;
    let mut ids = Vec::new();
    for _ in 0..CLIENTS {
        let url = format!("{base}/api/v1/instances");
        let (_, created) = post_json(&client, url, json!({"process": "toggle"})).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }

    // Each client ticks its own instance until the server dies, remembering the highest
    // version the server acknowledged.
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let client = client.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = 1;
            loop {
                let sent = client
                    .post(format!("{base}/api/v1/instances/{id}/transitions/tick"))
                    .bearer_auth("nobody")
                    .send()
                    .await;
                let Ok(answer) = sent else { break };
                if answer.status().as_u16() != 200 {
                    break;
                }
                let Ok(body) = answer.json::<Value>().await else {
                    break;
                };
                acknowledged = body["version"].as_i64().unwrap();
            }
            (id, acknowledged)
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    node.child.kill().expect("SIGKILL the server");
    let _ = node.child.wait();
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.push(t.await.unwrap());
    }
    let total: i64 = acknowledged.iter().map(|(_, v)| v - 1).sum();
    eprintln!("killed after {total} acknowledged steps");
    assert!(total > 0, "the load ran before the kill");

    let node = start_node(&db.url, &processes);
    for (id, acked) in acknowledged {
        let trace: Value = get_json(
            &client,
            format!("{}/api/v1/instances/{id}/trace", node.base),
        )
        .await;
        let trace = trace["records"].as_array().unwrap();
        assert!(
            trace.len() as i64 >= acked,
            "{id}: acknowledged version {acked}, trace has {}",
            trace.len()
        );
        for (i, r) in trace.iter().enumerate() {
            assert_eq!(r["seq"], i as i64 + 1, "{id}: gapless after the kill");
        }
        let instance: Value =
            get_json(&client, format!("{}/api/v1/instances/{id}", node.base)).await;
        assert_eq!(
            instance["version"],
            trace.len() as i64,
            "{id}: no half-written step"
        );
    }
}

/// POSTs as the auditor; the status and the JSON answer.
async fn post_json(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let answer = client
        .post(url)
        .bearer_auth("nobody")
        .json(&body)
        .send()
        .await
        .expect("node answers");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("a JSON answer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_last_copy_is_stale_answers_from_the_database() {
    let (_files, processes) = processes_with("toggle.yaml", TOGGLE);
    let db = TestDb::new().await;
    let a = start_node(&db.url, &processes);
    let b = start_node(&db.url, &processes);
    let client = reqwest::Client::new();
    let fire = |base: &str, id: &str, t: &str| {
        post_json(
            &client,
            format!("{base}/api/v1/instances/{id}/transitions/{t}"),
            json!({}),
        )
    };

    let (_, created) = post_json(
        &client,
        format!("{}/api/v1/instances", a.base),
        json!({"process": "toggle"}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(fire(&a.base, &id, "tick").await.1["version"], 2);
    // Node B moves the instance on; node A's own copy is now one step behind.
    assert_eq!(fire(&b.base, &id, "tick").await.1["version"], 3);
    let (status, after) = fire(&a.base, &id, "tick").await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["version"], 4, "A stepped from the stored version");

    // B finishes the instance; A's copy still shows it open, yet A refuses like B would.
    assert_eq!(fire(&b.base, &id, "finish").await.0, 200);
    let (status, refused) = fire(&a.base, &id, "tick").await;
    assert_eq!(status, 409, "{refused}");

    let trace = get_json(&client, format!("{}/api/v1/instances/{id}/trace", a.base)).await;
    let seqs: Vec<i64> = trace["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5], "one record per acknowledged step");
}

/// A ticket that closes itself two seconds after it starts waiting.
const EXPIRING: &str = r#"
process: ticket
roles: [auditor]
states:
  open: { initial: true }
  waiting: {}
  closed: { final: true }
transitions:
  wait:   { from: open, to: waiting, roles: [auditor] }
  expire: { from: waiting, to: closed, roles: [auditor] }
timers:
  expiry: { in: [waiting], after: 2s, fire: expire }
"#;

/// Creates `n` tickets spread over `bases`, each set waiting; returns their ids.
async fn waiting_tickets(client: &reqwest::Client, bases: &[String], n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let base = &bases[i % bases.len()];
        let (status, created) = post_json(
            client,
            format!("{base}/api/v1/instances"),
            json!({"process": "ticket"}),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        let (status, body) = post_json(
            client,
            format!("{base}/api/v1/instances/{id}/transitions/wait"),
            json!({}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        ids.push(id);
    }
    ids
}

/// Waits until every ticket is closed; asserts each closed by exactly one timer firing.
async fn all_expired_once(client: &reqwest::Client, base: &str, ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in ids {
        loop {
            let trace = get_json(client, format!("{base}/api/v1/instances/{id}/trace")).await;
            let records = trace["records"].as_array().unwrap();
            if records.last().unwrap()["to"] == "closed" {
                let fired: Vec<&Value> =
                    records.iter().filter(|r| r["actor"] == "system").collect();
                assert_eq!(fired.len(), 1, "{id} fired once: {records:#?}");
                assert_eq!(records.len(), 3, "created, wait, expire");
                break;
            }
            assert!(Instant::now() < deadline, "{id} never expired");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timers_due_while_the_server_was_down_fire_once_after_a_restart() {
    let (_files, processes) = processes_with("ticket.yaml", EXPIRING);
    let db = TestDb::new().await;
    let client = reqwest::Client::new();
    let mut node = start_node(&db.url, &processes);
    let ids = waiting_tickets(&client, std::slice::from_ref(&node.base), 20).await;
    // SIGKILL before any timer is due, stay down past their due time, start again.
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let node = start_node(&db.url, &processes);
    all_expired_once(&client, &node.base, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_fire_each_of_hundreds_of_due_timers_once() {
    let (_files, processes) = processes_with("ticket.yaml", EXPIRING);
    let db = TestDb::new().await;
    let client = reqwest::Client::new();
    let first = start_node(&db.url, &processes);
    let nodes = [
        first,
        start_node(&db.url, &processes),
        start_node(&db.url, &processes),
    ];
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let ids = waiting_tickets(&client, &bases, 300).await;
    all_expired_once(&client, &bases[0], &ids).await;
}
