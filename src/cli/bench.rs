//! `opsflow bench`: transitions per second of the shipped event process, measured four ways
//! in one run: (a) the engine in memory, (b) the engine on a durable SQLite file, (c) the
//! HTTP API on loopback with concurrent clients, (d) the same rows as (b) written with plain
//! SQL. Each transition of the workload is `await` (one trace row) or `resume` (two rows:
//! the transition and the automatic routing back to the first line).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

use crate::clock::SystemClock;
use crate::engine::{Actor, Catalog, Engine, FireRequest};
use crate::rules::{Limits, RuleEngine};
use crate::server::Server;
use crate::settings::{Secret, Settings};
use crate::store::{MemoryStore, SqliteStore, Store, raw_sqlite_steps};

/// Options of `opsflow bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Transitions fired in each of the four measurements.
    #[arg(long, default_value_t = 5_000)]
    transitions: u64,
    /// Concurrent HTTP clients (each drives its own instance).
    #[arg(long, default_value_t = 8)]
    clients: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Folder of process files (the event process is used).
    #[arg(long, default_value = "processes")]
    processes: PathBuf,
    /// Folder of rule modules.
    #[arg(long, default_value = "rules")]
    rules: PathBuf,
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn new_event() -> Map<String, Value> {
    object(json!({
        "kind": "incident",
        "channel": "phone",
        "summary": "Cannot print the monthly order report",
        "description": "The order report page times out for the finance team since this morning.",
        "requester": "finance.li",
    }))
}

fn classification() -> Map<String, Value> {
    object(json!({ "category": "order_consultation", "impact": "medium", "urgency": "low" }))
}

/// The i-th transition of the workload, after classification.
fn step(i: u64) -> (&'static str, Map<String, Value>) {
    if i.is_multiple_of(2) {
        (
            "await",
            object(json!({ "pending_reason": "awaiting_customer" })),
        )
    } else {
        ("resume", Map::new())
    }
}

fn trace_rows(i: u64) -> u64 {
    if i.is_multiple_of(2) { 1 } else { 2 }
}

async fn engine_run(engine: &Engine, transitions: u64) -> anyhow::Result<Duration> {
    let actor = Actor::new("bench", ["service_desk", "requester"]);
    let created = engine
        .create(&actor, "event", new_event(), None, None)
        .await?;
    let fire = |name: &'static str, data| {
        engine.fire(
            &actor,
            &created.id,
            name,
            FireRequest {
                data,
                ..FireRequest::default()
            },
        )
    };
    fire("classify", classification()).await?;
    let started = Instant::now();
    for i in 0..transitions {
        let (name, data) = step(i);
        fire(name, data).await?;
    }
    Ok(started.elapsed())
}

fn engine_with(store: Arc<dyn Store>, args: &BenchArgs) -> anyhow::Result<Engine> {
    let clock = Arc::new(SystemClock);
    let rules = Arc::new(RuleEngine::new(clock.clone(), Limits::default()));
    let catalog = Catalog::load(&rules, std::slice::from_ref(&args.processes), &args.rules)
        .map_err(|errors| {
            anyhow::anyhow!(
                "{} problem(s) in process definitions; run `opsflow validate`",
                errors.len()
            )
        })?;
    if catalog.get("event").is_none() {
        bail!(
            "the bench needs the event process in {}",
            args.processes.display()
        );
    }
    Ok(Engine::new(catalog, rules, store, clock))
}

async fn http_run(args: &BenchArgs, db: String) -> anyhow::Result<Duration> {
    let token = "bench-token";
    let settings = Settings {
        db,
        processes: args.processes.clone(),
        rules: args.rules.clone(),
        listen: "127.0.0.1:0".parse()?,
        idempotency_ttl: 86_400,
        tokens: Secret::new(format!("{token}=bench:service_desk,requester")),
    };
    let server = Server::build(&settings).await?;
    let base = format!("http://{}/api/v1", server.addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let clients = args.clients.max(1);
    let per_client = args.transitions / clients;

    // Create and classify every client's instance first, then time the transitions only.
    let mut ids = Vec::new();
    for _ in 0..clients {
        let created: Value = client
            .post(format!("{base}/instances"))
            .bearer_auth(token)
            .json(&json!({ "process": "event", "data": new_event() }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = created["id"]
            .as_str()
            .context("no id in answer")?
            .to_owned();
        client
            .post(format!("{base}/instances/{id}/transitions/classify"))
            .bearer_auth(token)
            .json(&json!({ "data": classification() }))
            .send()
            .await?
            .error_for_status()?;
        ids.push(id);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for id in ids {
        let client = client.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_client {
                let (name, data) = step(i);
                client
                    .post(format!("{base}/instances/{id}/transitions/{name}"))
                    .bearer_auth(token)
                    .json(&json!({ "data": data }))
                    .send()
                    .await?
                    .error_for_status()?;
            }
            Ok::<_, reqwest::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    serving.await??;
    Ok(elapsed)
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.transitions == 0 {
        bail!("--transitions must be at least 1");
    }
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let n = args.transitions;

    let memory = engine_run(&engine_with(Arc::new(MemoryStore::default()), &args)?, n).await?;
    let sqlite_store = Arc::new(SqliteStore::open(&url("engine.db")).await?);
    let sqlite_engine = engine_with(sqlite_store, &args)?;
    sqlite_engine.register_definitions().await?;
    let sqlite = engine_run(&sqlite_engine, n).await?;
    let http_transitions = (n / args.clients.max(1)) * args.clients.max(1);
    let http = http_run(&args, url("http.db")).await?;
    let data_json = Value::Object(new_event()).to_string();
    let raw = raw_sqlite_steps(&url("raw.db"), n, &data_json, trace_rows).await?;

    let figures = json!({
        "process": "event",
        "transitions": n,
        "http_clients": args.clients,
        "memory_tps": rate(n, memory).round(),
        "sqlite_tps": rate(n, sqlite).round(),
        "http_tps": rate(http_transitions, http).round(),
        "raw_sqlite_tps": rate(n, raw).round(),
        "engine_raw_ratio": (rate(n, sqlite) / rate(n, raw) * 100.0).round() / 100.0,
    });
    if args.json {
        println!("{figures}");
    } else {
        println!("opsflow bench: event process, {n} transitions per measurement");
        println!(
            "  (a) engine, in memory             {:>10.0} transitions/s",
            rate(n, memory)
        );
        println!(
            "  (b) engine, durable SQLite        {:>10.0} transitions/s",
            rate(n, sqlite)
        );
        println!(
            "  (c) HTTP on loopback, {:>2} clients  {:>10.0} transitions/s",
            args.clients,
            rate(http_transitions, http)
        );
        println!(
            "  (d) raw SQLite, same rows         {:>10.0} transitions/s",
            rate(n, raw)
        );
        println!(
            "  engine/raw (b/d)                  {:>10.2}",
            figures["engine_raw_ratio"]
        );
    }
    Ok(ExitCode::SUCCESS)
}
