//! Checkpoints of SQLite's write-ahead log, off the commit path.
//!
//! By default SQLite checkpoints in the connection that commits: once the log holds 1,000
//! pages, the commit that crossed the mark also copies them into the database file and
//! syncs it before it returns. Every caller of that batch waits for it, and the next
//! batch cannot start. Here the writer connection checkpoints itself only as a backstop
//! ([`BACKSTOP_PAGES`]); a connection of its own checkpoints in the background
//! (`PASSIVE`: it never blocks the writer), every [`INTERVAL`] while the store lives.
//! Durability does not depend on checkpoints: a committed step is in the synced log.

use std::sync::Weak;
use std::time::Duration;

use sqlx::{Connection as _, SqliteConnection};
use tokio::sync::Mutex;

use super::StoreError;
use super::sqlite::connect_options;

/// The writer checkpoints itself when the log reaches this many pages (about 16 MiB of
/// 4 KiB pages), should the background checkpoints fall behind.
pub(super) const BACKSTOP_PAGES: u32 = 4_000;

/// How often the background connection checkpoints.
const INTERVAL: Duration = Duration::from_millis(100);

/// The writer's own checkpoints only as a backstop.
pub(super) fn backstop_pragma() -> String {
    format!("PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES};")
}

/// Starts checkpointing the database at `url` in the background, until `writer` (the
/// store's writer connection) is dropped with the store.
pub(super) async fn start_checkpoints(
    url: &str,
    writer: Weak<Mutex<SqliteConnection>>,
) -> Result<(), StoreError> {
    let mut conn = SqliteConnection::connect_with(&connect_options(url)?).await?;
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if writer.strong_count() == 0 {
                break;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut conn)
                .await
            {
                // The writer's backstop keeps the log bounded meanwhile.
                tracing::warn!(error = %e, "background WAL checkpoint failed");
            }
        }
        let _ = conn.close().await;
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::store::Store;
    use crate::store::bulk_tests::{create, define, sqlite_store};

    #[tokio::test]
    async fn committed_steps_reach_the_database_file_without_a_thousand_pages_of_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir, "wal.db").await;
        define(&store).await;
        let file = dir.path().join("wal.db");
        let size = || std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        // A checkpoint may be under way from opening; let it end before measuring.
        tokio::time::sleep(super::INTERVAL * 3).await;
        let before = size();
        for i in 0..200 {
            store.commit(create(&format!("i-{i}"))).await.unwrap();
        }
        // 200 small steps are far below the writer's own checkpoint (4,000 pages): only
        // the background checkpoints copy them into the file.
        let deadline = Instant::now() + Duration::from_secs(10);
        while size() <= before && Instant::now() < deadline {
            tokio::time::sleep(super::INTERVAL).await;
        }
        assert!(
            size() > before,
            "the database file stayed at {before} bytes"
        );
    }

    /// Files of this process open at `path` (or its `-wal` and `-shm` files).
    fn open_files(path: &std::path::Path) -> usize {
        let name = path.to_string_lossy().into_owned();
        std::fs::read_dir("/proc/self/fd")
            .map(|fds| {
                fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                    .filter(|target| target.to_string_lossy().starts_with(&name))
                    .count()
            })
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn the_background_checkpoints_end_with_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir, "wal.db").await;
        let file = dir.path().join("wal.db");
        assert!(open_files(&file) > 0, "the store has its file open");
        drop(store);
        // Every connection closes, the background one at its next turn at the latest.
        let deadline = Instant::now() + Duration::from_secs(10);
        while open_files(&file) > 0 && Instant::now() < deadline {
            tokio::time::sleep(super::INTERVAL).await;
        }
        assert_eq!(open_files(&file), 0, "a connection kept the file open");
    }
}
