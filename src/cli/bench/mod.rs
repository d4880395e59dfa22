//! `opsflow bench`: durable transitions per second of the shipped event process, through
//! the engine and over HTTP, on SQLite and PostgreSQL, beside the raw limits of the same
//! rows written with plain SQL, plus latency, memory per stored instance and peak memory.
//! Each transition of the workload is `await` (two trace rows) or `resume` (three rows).
//! Also: how fast `opsflow conform` reads and replays a 100k-event log.

mod conform;
mod footprint;
mod http;
mod kpis;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

use crate::store::{
    GroupCommit, GroupCommitConfig, MemoryStore, PgStore, SqliteStore, Store, WriterStats,
    create_database, drop_database, raw_postgres_steps, raw_sqlite_steps,
};
use footprint::Footprint;
use http::{HttpFigures, http_run};
use workload::{engine_run, engine_with, new_event, side_by_side_run, trace_rows};

/// Parts of the bench, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Part {
    /// The engine with the in-memory store.
    Memory,
    /// One client on SQLite, one commit per transition, beside raw SQL.
    Single,
    /// SQLite with group commit: engine, raw batched, HTTP.
    Sqlite,
    /// PostgreSQL (needs `--postgres`): engine, raw, raw batched, HTTP.
    Postgres,
    /// Memory and disk per 100k stored instances.
    Footprint,
    /// Reading and replaying a 100k-event log (`opsflow conform`).
    Conform,
    /// The shipped KPIs over 50k and 100k stored instances, on SQLite and PostgreSQL.
    Kpi,
}

/// Options of `opsflow bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Transitions fired in each measurement.
    #[arg(long, default_value_t = 20_000)]
    transitions: u64,
    /// Events of the log the conformance part replays.
    #[arg(long, default_value_t = 100_000)]
    conform_events: u64,
    /// Instances created to measure memory and disk per stored instance.
    #[arg(long, default_value_t = 100_000)]
    footprint_instances: u64,
    /// Run only these parts (comma-separated); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Part>,
    /// Concurrent clients of the group-commit sweep (comma-separated); 1, 8, 16, 32 and 128
    /// by default.
    #[arg(long, value_delimiter = ',', default_values_t = SWEEP)]
    clients: Vec<u64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Folder of process files (the event process is used).
    #[arg(long, default_value = "processes")]
    processes: PathBuf,
    /// Folder of rule modules.
    #[arg(long, default_value = "rules")]
    rules: PathBuf,
    /// Folder of KPI files (the kpi part computes them).
    #[arg(long, default_value = "kpis")]
    kpis: PathBuf,
    /// Instances the kpi part computes KPIs over (half of them first).
    #[arg(long, default_value_t = 100_000)]
    kpi_instances: u64,
    /// Folder of business calendars the process files' timers count in.
    #[arg(long, default_value = "calendars")]
    calendars: PathBuf,
    /// Also measure PostgreSQL: a server URL (`postgres://postgres@127.0.0.1/test`); the
    /// bench creates databases of its own there and drops them afterwards.
    #[arg(long, env = "OPSFLOW_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
}

impl BenchArgs {
    fn runs(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }
}

/// Concurrent clients measured with group commit.
const SWEEP: [u64; 5] = [1, 8, 16, 32, 128];

/// Connections the raw PostgreSQL baseline may open (the server's default limit is 100).
const MAX_RAW_PG_CONNECTIONS: u64 = 64;

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// Every figure of one run, by name (the keys of `--json`).
#[derive(Debug, Default)]
struct Figures(Map<String, Value>);

impl Figures {
    fn put(&mut self, key: impl Into<String>, value: f64) {
        self.0.insert(key.into(), json!(value.round()));
    }

    fn put_http(&mut self, prefix: &str, c: u64, h: HttpFigures) {
        self.put(format!("{prefix}_http_{c}_clients_tps"), h.tps);
        let ms = |v: f64| json!((v * 100.0).round() / 100.0);
        self.0
            .insert(format!("{prefix}_http_{c}_clients_p50_ms"), ms(h.p50_ms));
        self.0
            .insert(format!("{prefix}_http_{c}_clients_p99_ms"), ms(h.p99_ms));
        self.put(
            format!("{prefix}_http_{c}_clients_metrics_steps"),
            h.counted_steps,
        );
        self.put(
            format!("{prefix}_http_{c}_clients_metrics_requests"),
            h.counted_requests,
        );
    }

    fn get(&self, key: &str) -> Option<f64> {
        self.0.get(key).and_then(Value::as_f64)
    }
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.transitions == 0 {
        bail!("--transitions must be at least 1");
    }
    if args.clients.contains(&0) {
        bail!("--clients must each be at least 1");
    }
    if args.only.contains(&Part::Postgres) && args.postgres.is_none() {
        bail!("--only postgres needs --postgres URL (or OPSFLOW_BENCH_POSTGRES_URL)");
    }
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let n = args.transitions;
    let data_json = Value::Object(new_event()).to_string();
    let mut f = Figures::default();
    f.0.insert("process".into(), json!("event"));
    f.0.insert("transitions".into(), json!(n));

    let cores = crate::cli::cores();
    let sqlite_threads = crate::settings::worker_threads(0, "sqlite:", cores);
    if args.runs(Part::Memory) {
        on_threads(cores, async || {
            for c in [1, 8] {
                let engine = Arc::new(engine_with(Arc::new(MemoryStore::default()), &args)?);
                f.put(
                    format!("memory_{c}_clients_tps"),
                    rate(n, engine_run(engine, n, c).await?),
                );
            }
            f.put(
                "memory_2_engines_tps",
                rate(n, side_by_side_run(&args, n).await?),
            );
            Ok(())
        })?;
    }
    if args.runs(Part::Single) {
        on_threads(sqlite_threads, async || {
            let store = Arc::new(SqliteStore::open(&url("single.db")).await?);
            let engine = Arc::new(engine_with(store, &args)?);
            engine.register_definitions().await?;
            f.put(
                "sqlite_single_tps",
                rate(n, engine_run(engine, n, 1).await?),
            );
            let raw = raw_sqlite_steps(&url("raw.db"), n, 1, &data_json, trace_rows).await?;
            f.put("sqlite_raw_tps", rate(n, raw));
            Ok(())
        })?;
    }
    if args.runs(Part::Sqlite) {
        on_threads(sqlite_threads, async || {
            if !args.runs(Part::Single) {
                let raw = raw_sqlite_steps(&url("raw.db"), n, 1, &data_json, trace_rows).await?;
                f.put("sqlite_raw_tps", rate(n, raw));
            }
            for &c in &args.clients {
                let inner: Arc<dyn Store> =
                    Arc::new(SqliteStore::open(&url(&format!("group-{c}.db"))).await?);
                let store = Arc::new(GroupCommit::new(inner, GroupCommitConfig::default())?);
                engine_point(&mut f, "sqlite", c, store, &args).await?;
                let db = url(&format!("raw-{c}.db"));
                let raw = raw_sqlite_steps(&db, n, c, &data_json, trace_rows).await?;
                f.put(format!("sqlite_raw_batched_{c}_tps"), rate(n, raw));
                let h = http_run(&args, url(&format!("http-{c}.db")), c).await?;
                f.put_http("sqlite", c, h);
            }
            Ok(())
        })?;
    }
    if let Some(server) = args
        .postgres
        .as_deref()
        .filter(|_| args.runs(Part::Postgres))
    {
        let threads = crate::settings::worker_threads(0, server, cores);
        on_threads(threads, async || {
            postgres(&args, server, &data_json, &mut f).await
        })?;
    }
    if args.runs(Part::Conform) {
        let (events, cases, fitness, took) =
            conform::conform_run(&args, dir.path(), args.conform_events)?;
        f.put("conform_events", events as f64);
        f.put("conform_cases", cases as f64);
        f.0.insert(
            "conform_fitness".into(),
            json!((fitness * 1e4).round() / 1e4),
        );
        f.0.insert(
            "conform_ms".into(),
            json!((took.as_secs_f64() * 1e4).round() / 10.0),
        );
        f.put("conform_events_per_s", rate(events, took));
    }
    if args.runs(Part::Kpi) {
        let n = args.kpi_instances.max(2);
        on_threads(sqlite_threads, async || {
            let inner: Arc<dyn Store> = Arc::new(SqliteStore::open(&url("kpi.db")).await?);
            let store = Arc::new(GroupCommit::new(inner, GroupCommitConfig::default())?);
            let k = kpis::kpi_run(&args, store, n).await?;
            put_kpi(&mut f, "sqlite", k);
            Ok(())
        })?;
        if let Some(server) = args.postgres.as_deref() {
            let threads = crate::settings::worker_threads(0, server, cores);
            on_threads(threads, async || {
                let name = format!("opsflow_bench_{}", uuid::Uuid::now_v7().simple());
                let url = create_database(server, &name)
                    .await
                    .context("cannot create a database for the bench on PostgreSQL")?;
                let inner: Arc<dyn Store> = Arc::new(PgStore::open(&url, 16).await?);
                let store = Arc::new(GroupCommit::new(inner, GroupCommitConfig::postgres())?);
                let k = kpis::kpi_run(&args, store, n).await;
                drop_database(server, &name).await?;
                put_kpi(&mut f, "postgres", k?);
                Ok(())
            })?;
        }
    }
    f.put("peak_rss_kib", proc_status_kib("VmHWM:") as f64);
    if args.runs(Part::Footprint) {
        let Footprint {
            memory_store_kib,
            sqlite_rss_kib,
            sqlite_disk_kib,
        } = footprint::footprint(&args, dir.path()).await?;
        f.put("memory_store_kib_per_100k_instances", memory_store_kib);
        f.put("sqlite_rss_kib_per_100k_instances", sqlite_rss_kib);
        f.put("sqlite_disk_kib_per_100k_instances", sqlite_disk_kib);
    }
    if args.json {
        println!("{}", Value::Object(f.0));
    } else {
        print!("{}", report(&f, n, &args.clients));
    }
    Ok(ExitCode::SUCCESS)
}

fn put_kpi(f: &mut Figures, db: &str, k: kpis::KpiFigures) {
    f.put("kpi_instances", k.instances as f64);
    f.0.insert(
        format!("{db}_kpi_half_ms"),
        json!((k.half.as_secs_f64() * 1e4).round() / 10.0),
    );
    f.0.insert(
        format!("{db}_kpi_full_ms"),
        json!((k.full.as_secs_f64() * 1e4).round() / 10.0),
    );
}

/// Runs `work` on a runtime of its own with `threads` worker threads, the number a server on
/// the same database would run with (see [`crate::settings::worker_threads`]); the bench's
/// own runtime waits meanwhile, using no core.
fn on_threads(
    threads: usize,
    work: impl AsyncFnOnce() -> anyhow::Result<()> + Send,
) -> anyhow::Result<()> {
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(threads.max(1))
                        .enable_all()
                        .build()
                        .context("cannot start a runtime for the bench")?
                        .block_on(work())
                })
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a part of the bench failed")))
        })
    })
}

/// Drives the engine over `store` with `c` clients; records the rate and what the store's
/// writers did meanwhile: steps per commit, and the share of the run they were busy (near
/// 100 %: the writers are the ceiling), both over the run and the clients' set-up (two
/// steps per client).
async fn engine_point(
    f: &mut Figures,
    db: &str,
    c: u64,
    store: Arc<GroupCommit>,
    args: &BenchArgs,
) -> anyhow::Result<()> {
    let n = args.transitions;
    let engine = Arc::new(engine_with(store.clone(), args)?);
    engine.register_definitions().await?;
    let before = WriterStats::total(&store.writer_stats());
    let wall = std::time::Instant::now();
    let elapsed = engine_run(engine, n, c).await?;
    let wall = wall.elapsed();
    let writers = store.writer_stats();
    let during = WriterStats::total(&writers).since(&before);
    f.put(format!("{db}_engine_{c}_clients_tps"), rate(n, elapsed));
    let tenths = (during.steps_per_commit() * 10.0).round() / 10.0;
    f.0.insert(format!("{db}_engine_{c}_steps_per_commit"), json!(tenths));
    let capacity = wall.as_secs_f64() * writers.len().max(1) as f64;
    f.put(
        format!("{db}_engine_{c}_writer_busy_pct"),
        100.0 * during.busy.as_secs_f64() / capacity.max(1e-9),
    );
    Ok(())
}

/// The PostgreSQL figures, each on a database of its own on `server`.
async fn postgres(
    args: &BenchArgs,
    server: &str,
    data_json: &str,
    f: &mut Figures,
) -> anyhow::Result<()> {
    let n = args.transitions;
    let mut made = Vec::new();
    let outcome = async {
        let mut fresh = async || -> anyhow::Result<String> {
            let name = format!("opsflow_bench_{}", uuid::Uuid::now_v7().simple());
            let url = create_database(server, &name)
                .await
                .context("cannot create a database for the bench on PostgreSQL")?;
            made.push(name);
            Ok(url)
        };
        for &c in &args.clients {
            let pool = u32::try_from(c.min(32)).unwrap_or(32).max(2);
            let inner: Arc<dyn Store> = Arc::new(PgStore::open(&fresh().await?, pool).await?);
            let store = Arc::new(GroupCommit::new(inner, GroupCommitConfig::postgres())?);
            engine_point(f, "postgres", c, store, args).await?;
            let conns = c.min(MAX_RAW_PG_CONNECTIONS);
            let url = fresh().await?;
            let raw = raw_postgres_steps(&url, n, conns, 1, data_json, trace_rows).await?;
            f.put(format!("postgres_raw_{c}_clients_tps"), rate(n, raw));
            let url = fresh().await?;
            let raw = raw_postgres_steps(&url, n, 1, c, data_json, trace_rows).await?;
            f.put(format!("postgres_raw_batched_{c}_tps"), rate(n, raw));
            let h = http_run(args, fresh().await?, c).await?;
            f.put_http("postgres", c, h);
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    for name in made {
        drop_database(server, &name).await?;
    }
    outcome
}

/// The figures as text, in tables with the raw limits beside the engine's.
fn report(f: &Figures, n: u64, sweep: &[u64]) -> String {
    use std::fmt::Write as _;
    let num = |key: &str| match f.get(key) {
        Some(v) => format!("{v:.0}"),
        None => "-".into(),
    };
    let ms = |key: &str| f.get(key).map(|v| format!("{v:.1}")).unwrap_or("-".into());
    let mut out = format!("opsflow bench: event process, {n} transitions per measurement\n");
    if f.get("memory_1_clients_tps").is_some() {
        let _ = writeln!(
            out,
            "  engine in memory:    {} transitions/s with 1 client, {} with 8; two engines \
             side by side, one client each: {} together",
            num("memory_1_clients_tps"),
            num("memory_8_clients_tps"),
            num("memory_2_engines_tps")
        );
    }
    if f.get("sqlite_single_tps").is_some() {
        let _ = writeln!(
            out,
            "  SQLite, 1 client, one commit per transition: engine {} transitions/s, raw SQL {}",
            num("sqlite_single_tps"),
            num("sqlite_raw_tps")
        );
    }
    for (db, label) in [("sqlite", "SQLite"), ("postgres", "PostgreSQL")] {
        let measured = |c: &u64| f.get(&format!("{db}_engine_{c}_clients_tps")).is_some();
        if !sweep.iter().any(measured) {
            continue;
        }
        let _ = writeln!(
            out,
            "  {label}, group commit (transitions/s; HTTP latency in ms; the engine's steps per \
             commit and writers' busy share):\n    \
             clients    engine  steps/commit  busy  raw 1/commit  raw batched      HTTP  p50/p99  \
             /metrics steps/requests"
        );
        for &c in sweep {
            let raw = match db {
                "sqlite" => num("sqlite_raw_tps"),
                _ => num(&format!("postgres_raw_{c}_clients_tps")),
            };
            let _ = writeln!(
                out,
                "    {c:>7} {:>9} {:>13.1} {:>4}% {:>13} {:>12} {:>9}  {}/{}  +{}/+{}",
                num(&format!("{db}_engine_{c}_clients_tps")),
                f.get(&format!("{db}_engine_{c}_steps_per_commit"))
                    .unwrap_or(0.0),
                num(&format!("{db}_engine_{c}_writer_busy_pct")),
                raw,
                num(&format!("{db}_raw_batched_{c}_tps")),
                num(&format!("{db}_http_{c}_clients_tps")),
                ms(&format!("{db}_http_{c}_clients_p50_ms")),
                ms(&format!("{db}_http_{c}_clients_p99_ms")),
                num(&format!("{db}_http_{c}_clients_metrics_steps")),
                num(&format!("{db}_http_{c}_clients_metrics_requests")),
            );
        }
    }
    if f.get("sqlite_disk_kib_per_100k_instances").is_some() {
        let _ = writeln!(
            out,
            "  per 100k stored instances: in-memory store {} KiB; SQLite: process {} KiB, \
             disk {} KiB",
            num("memory_store_kib_per_100k_instances"),
            num("sqlite_rss_kib_per_100k_instances"),
            num("sqlite_disk_kib_per_100k_instances")
        );
    }
    if f.get("conform_events").is_some() {
        let _ = writeln!(
            out,
            "  conformance: {} events in {} cases read (CSV) and replayed in {} ms, \
             {} events/s (fitness {})",
            num("conform_events"),
            num("conform_cases"),
            ms("conform_ms"),
            num("conform_events_per_s"),
            f.get("conform_fitness").unwrap_or(0.0)
        );
    }
    for db in ["sqlite", "postgres"] {
        if f.get(&format!("{db}_kpi_full_ms")).is_some() {
            let _ = writeln!(
                out,
                "  shipped KPIs on {db}: {} ms over {} instances, {} ms over {}",
                ms(&format!("{db}_kpi_half_ms")),
                f.get("kpi_instances").map_or(0, |n| n as u64 / 2),
                ms(&format!("{db}_kpi_full_ms")),
                num("kpi_instances"),
            );
        }
    }
    let _ = writeln!(
        out,
        "  peak memory of the bench process before the footprint run: {} KiB",
        num("peak_rss_kib")
    );
    out
}

/// A `/proc/self/status` field in KiB (`VmRSS:`, `VmHWM:`); 0 where /proc does not tell.
fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
