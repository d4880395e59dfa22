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
