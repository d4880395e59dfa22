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
use crate::store::{
    GroupCommit, GroupCommitConfig, MemoryStore, PgStore, SqliteStore, Store, create_database,
    drop_database, raw_postgres_steps, raw_sqlite_steps,
};

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
    /// Also measure PostgreSQL: a server URL (`postgres://postgres@127.0.0.1/test`); the
    /// bench creates a database of its own there and drops it afterwards.
    #[arg(long, env = "OPSFLOW_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
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

/// `clients` tasks, each driving an instance of its own through its share of
/// `transitions`, on one shared engine.
async fn engine_run_concurrent(
    engine: Arc<Engine>,
    transitions: u64,
    clients: u64,
) -> anyhow::Result<Duration> {
    let clients = clients.max(1);
    let actor = Actor::new("bench", ["service_desk", "requester"]);
    let mut ids = Vec::new();
    for _ in 0..clients {
        let created = engine
            .create(&actor, "event", new_event(), None, None)
            .await?;
        let request = FireRequest {
            data: classification(),
            ..FireRequest::default()
        };
        engine
            .fire(&actor, &created.id, "classify", request)
            .await?;
        ids.push(created.id);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, id) in ids.into_iter().enumerate() {
        let engine = engine.clone();
        let actor = actor.clone();
        let share = transitions / clients + u64::from((c as u64) < transitions % clients);
        tasks.push(tokio::spawn(async move {
            for i in 0..share {
                let (name, data) = step(i);
                let request = FireRequest {
                    data,
                    ..FireRequest::default()
                };
                engine.fire(&actor, &id, name, request).await?;
            }
            Ok::<_, crate::engine::EngineError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

/// Concurrent clients measured with group commit.
const SWEEP: [u64; 4] = [1, 8, 32, 128];

/// Connections the raw PostgreSQL baseline may open (the server's default limit is 100).
const MAX_RAW_PG_CONNECTIONS: u64 = 64;

/// Through the engine with group commit on, `c` clients, for each `c` of [`SWEEP`].
async fn engine_sweep(
    args: &BenchArgs,
    open: impl AsyncFn(u64) -> anyhow::Result<Arc<dyn Store>>,
    label: &str,
    shards: usize,
    figures: &mut Map<String, Value>,
) -> anyhow::Result<()> {
    for c in SWEEP {
        let config = GroupCommitConfig {
            shards,
            ..GroupCommitConfig::default()
        };
        let store: Arc<dyn Store> = Arc::new(GroupCommit::new(open(c).await?, config));
        let engine = Arc::new(engine_with(store, args)?);
        engine.register_definitions().await?;
        let elapsed = engine_run_concurrent(engine, args.transitions, c).await?;
        figures.insert(
            format!("{label}_engine_{c}_clients_tps"),
            json!(rate(args.transitions, elapsed).round()),
        );
    }
    Ok(())
}

/// The PostgreSQL figures: the engine (group commit) and the raw baseline (one commit per
/// transition) at each concurrency.
async fn postgres_figures(args: &BenchArgs, server: &str) -> anyhow::Result<Map<String, Value>> {
    let n = args.transitions;
    let mut made = Vec::new();
    let mut fresh = async || -> anyhow::Result<String> {
        let name = format!("opsflow_bench_{}", uuid::Uuid::now_v7().simple());
        let url = create_database(server, &name)
            .await
            .context("cannot create a database for the bench on PostgreSQL")?;
        made.push(name);
        Ok(url)
    };
    let mut figures = Map::new();
    let mut urls = Vec::new();
    for _ in SWEEP {
        urls.push(fresh().await?);
    }
    let urls = std::sync::Mutex::new(urls);
    engine_sweep(
        args,
        async |c| {
            let url = urls
                .lock()
                .map_err(|_| anyhow::anyhow!("lock"))?
                .pop()
                .unwrap_or_default();
            let pool = u32::try_from(c.min(32)).unwrap_or(32).max(2);
            Ok(Arc::new(PgStore::open(&url, pool).await?) as Arc<dyn Store>)
        },
        "postgres",
        crate::server::PG_WRITE_SHARDS,
        &mut figures,
    )
    .await?;
    let data = Value::Object(new_event()).to_string();
    for c in SWEEP {
        let c = c.min(MAX_RAW_PG_CONNECTIONS);
        let url = fresh().await?;
        let elapsed = raw_postgres_steps(&url, n, c, &data, trace_rows).await?;
        figures.insert(
            format!("postgres_raw_{c}_clients_tps"),
            json!(rate(n, elapsed).round()),
        );
    }
    for name in made {
        drop_database(server, &name).await?;
    }
    Ok(figures)
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

/// Transitions fired over HTTP by `clients` concurrent clients on a fresh server: the
/// elapsed time and each request's latency.
async fn http_run(
    args: &BenchArgs,
    db: String,
    clients: u64,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let token = "bench-token";
    let settings = Settings {
        db,
        processes: args.processes.clone(),
        rules: args.rules.clone(),
        listen: "127.0.0.1:0".parse()?,
        idempotency_ttl: 86_400,
        group_commit_max: 128,
        group_commit_wait_us: 0,
        write_shards: 0,
        write_queue: 4096,
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
    let clients = clients.max(1);
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
            let mut latencies = Vec::with_capacity(per_client as usize);
            for i in 0..per_client {
                let (name, data) = step(i);
                let sent = Instant::now();
                client
                    .post(format!("{base}/instances/{id}/transitions/{name}"))
                    .bearer_auth(token)
                    .json(&json!({ "data": data }))
                    .send()
                    .await?
                    .error_for_status()?;
                latencies.push(sent.elapsed());
            }
            Ok::<_, reqwest::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    serving.await??;
    Ok((elapsed, latencies))
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
    let (http, _) = http_run(&args, url("http.db"), args.clients).await?;
    let data_json = Value::Object(new_event()).to_string();
    let raw = raw_sqlite_steps(&url("raw.db"), n, &data_json, trace_rows).await?;

    let mut sweep = Map::new();
    let counter = std::sync::atomic::AtomicU64::new(0);
    engine_sweep(
        &args,
        async |_| {
            let i = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(
                Arc::new(SqliteStore::open(&url(&format!("group-{i}.db"))).await?)
                    as Arc<dyn Store>,
            )
        },
        "sqlite",
        1,
        &mut sweep,
    )
    .await?;
    for c in SWEEP {
        let (elapsed, mut latencies) = http_run(&args, url(&format!("http-{c}.db")), c).await?;
        latencies.sort();
        let pct = |p: f64| {
            let i =
                ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
            latencies
                .get(i)
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or(0.0)
        };
        let fired = (n / c) * c;
        sweep.insert(
            format!("sqlite_http_{c}_clients_tps"),
            json!(rate(fired, elapsed).round()),
        );
        sweep.insert(
            format!("sqlite_http_{c}_clients_p50_ms"),
            json!((pct(0.50) * 100.0).round() / 100.0),
        );
        sweep.insert(
            format!("sqlite_http_{c}_clients_p99_ms"),
            json!((pct(0.99) * 100.0).round() / 100.0),
        );
    }
    let postgres = match &args.postgres {
        Some(server) => Some(postgres_figures(&args, server).await?),
        None => None,
    };
    let mut figures = json!({
        "process": "event",
        "transitions": n,
        "http_clients": args.clients,
        "memory_tps": rate(n, memory).round(),
        "sqlite_tps": rate(n, sqlite).round(),
        "http_tps": rate(http_transitions, http).round(),
        "raw_sqlite_tps": rate(n, raw).round(),
        "engine_raw_ratio": (rate(n, sqlite) / rate(n, raw) * 100.0).round() / 100.0,
    });
    if let Value::Object(all) = &mut figures {
        all.extend(sweep.clone());
        all.insert("peak_rss_kib".into(), json!(peak_rss_kib()));
        if let Some(pg) = &postgres {
            all.extend(pg.clone());
        }
    }
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
        let f = |k: String| figures[&k].as_f64().unwrap_or(0.0);
        println!("  group commit (transitions/s; HTTP latency p50/p99 in ms):");
        println!(
            "    clients   SQLite engine   SQLite HTTP   p50/p99     PostgreSQL engine   PostgreSQL raw"
        );
        for c in SWEEP {
            let raw = c.min(MAX_RAW_PG_CONNECTIONS);
            println!(
                "    {c:>7} {:>15.0} {:>13.0}   {:.1}/{:.1} {:>19.0} {:>16.0}",
                f(format!("sqlite_engine_{c}_clients_tps")),
                f(format!("sqlite_http_{c}_clients_tps")),
                f(format!("sqlite_http_{c}_clients_p50_ms")),
                f(format!("sqlite_http_{c}_clients_p99_ms")),
                f(format!("postgres_engine_{c}_clients_tps")),
                f(format!("postgres_raw_{raw}_clients_tps")),
            );
        }
        println!(
            "  peak memory of the bench process: {} KiB",
            figures["peak_rss_kib"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The process's peak resident memory (VmHWM) in KiB, where /proc tells it; 0 elsewhere.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
