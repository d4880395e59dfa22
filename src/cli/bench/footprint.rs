//! What stored instances cost: resident memory of the process and bytes on disk, per
//! 100,000 instances created through the engine.

use std::sync::Arc;

use super::BenchArgs;
use super::workload::{actor, engine_with, new_event};
use crate::engine::Engine;
use crate::store::{GroupCommit, GroupCommitConfig, MemoryStore, SqliteStore, Store};

/// Memory and disk held per 100k stored instances.
#[derive(Debug, Clone, Copy)]
pub(super) struct Footprint {
    /// Resident memory added, in KiB, with the in-memory store.
    pub(super) memory_store_kib: f64,
    /// Resident memory added, in KiB, with SQLite.
    pub(super) sqlite_rss_kib: f64,
    /// Size of the SQLite files (database and WAL), in KiB.
    pub(super) sqlite_disk_kib: f64,
}

/// Creates `args.footprint_instances` events on SQLite (in `dir`), then in memory, and
/// scales what they took to 100k. Resident memory is measured as growth of the process, so
/// memory freed earlier and reused shows as less.
pub(super) async fn footprint(
    args: &BenchArgs,
    dir: &std::path::Path,
) -> anyhow::Result<Footprint> {
    let n = args.footprint_instances.max(1);
    let per_100k = |kib: u64| kib as f64 * 100_000.0 / n as f64;

    let path = dir.join("footprint.db");
    let url = format!("sqlite://{}", path.display());
    let inner: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await?);
    let store = Arc::new(GroupCommit::new(inner, GroupCommitConfig::default())?);
    let engine = Arc::new(engine_with(store, args)?);
    engine.register_definitions().await?;
    let before = current_rss_kib();
    create_events(engine.clone(), n).await?;
    let sqlite_rss_kib = per_100k(current_rss_kib().saturating_sub(before));
    let disk: u64 = ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", path.display())).ok())
        .map(|m| m.len() / 1024)
        .sum();
    drop(engine);

    let engine = Arc::new(engine_with(Arc::new(MemoryStore::default()), args)?);
    let before = current_rss_kib();
    create_events(engine.clone(), n).await?;
    let memory_store_kib = per_100k(current_rss_kib().saturating_sub(before));

    Ok(Footprint {
        memory_store_kib,
        sqlite_rss_kib,
        sqlite_disk_kib: per_100k(disk),
    })
}

/// Creates `n` events with 64 concurrent clients.
pub(super) async fn create_events(engine: Arc<Engine>, n: u64) -> anyhow::Result<()> {
    const CLIENTS: u64 = 64;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let engine = engine.clone();
        let share = n / CLIENTS + u64::from(c < n % CLIENTS);
        tasks.push(tokio::spawn(async move {
            let actor = actor();
            for _ in 0..share {
                engine
                    .create(&actor, "event", new_event(), None, None)
                    .await?;
            }
            Ok::<_, crate::engine::EngineError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// The process's resident memory (VmRSS) in KiB, where /proc tells it; 0 elsewhere.
fn current_rss_kib() -> u64 {
    super::proc_status_kib("VmRSS:")
}
