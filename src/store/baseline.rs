//! The raw SQLite baseline of the benchmark: the rows one engine step writes (an instance
//! update and its trace rows, one transaction per step), written with plain SQL and the
//! same connection settings, so the engine's overhead can be stated as a ratio.

use std::time::{Duration, Instant};

use sqlx::sqlite::SqlitePoolOptions;

use super::StoreError;
use super::sqlite::{MIGRATOR, connect_options};

/// Writes `steps` steps against a fresh database at `url`: step `i` updates one instance
/// row and inserts `trace_rows(i)` trace rows carrying `data_json`, in one transaction.
/// Returns the time the steps took (set-up excluded).
pub async fn raw_sqlite_steps(
    url: &str,
    steps: u64,
    data_json: &str,
    trace_rows: impl Fn(u64) -> u64,
) -> Result<Duration, StoreError> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(connect_options(url)?)
        .await?;
    MIGRATOR.run(&pool).await?;
    sqlx::query("INSERT INTO definitions (hash, process, source, first_seen) VALUES ('raw', 'raw', '{}', 0)")
        .execute(&pool)
        .await?;
    sqlx::query(
        "INSERT INTO instances (id, process, definition_hash, state, data, version, created_by, created_at, updated_at)
         VALUES ('raw-1', 'raw', 'raw', 'a', ?, 0, 'bench', 0, 0)",
    )
    .bind(data_json)
    .execute(&pool)
    .await?;
    let started = Instant::now();
    let mut version: i64 = 0;
    for i in 0..steps {
        let mut tx = pool.begin().await?;
        let rows = trace_rows(i) as i64;
        sqlx::query(
            "UPDATE instances SET state = ?, data = ?, version = ?, updated_at = ? WHERE id = ? AND version = ?",
        )
        .bind(if i % 2 == 0 { "b" } else { "a" })
        .bind(data_json)
        .bind(version + rows)
        .bind(i as i64)
        .bind("raw-1")
        .bind(version)
        .execute(&mut *tx)
        .await?;
        for r in 0..rows {
            sqlx::query(
                "INSERT INTO trace (instance_id, seq, at, actor, roles, kind, transition, from_state,
                 to_state, data, comment, definition_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind("raw-1")
            .bind(version + r + 1)
            .bind(i as i64)
            .bind("bench")
            .bind("[\"service_desk\"]")
            .bind("transition")
            .bind("t")
            .bind("a")
            .bind("b")
            .bind("{\"pending_reason\":\"awaiting_customer\"}")
            .bind(Option::<String>::None)
            .bind("raw")
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        version += rows;
    }
    let elapsed = started.elapsed();
    pool.close().await;
    Ok(elapsed)
}
