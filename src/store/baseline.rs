//! The raw baselines of the benchmark: the rows one engine step writes (an instance update
//! and its trace rows), written with plain SQL in their cheapest form and the same
//! connection settings, one transaction per step or per `depth` steps, so the engine's
//! overhead can be stated as a ratio. The rows are leaner than the engine's (no hashes, no
//! SLA records or clocks in the instance's JSON), so the limits are on the generous side.
//! On SQLite the statements go through SQLite's own interface on the calling thread, the
//! cheapest path there is (and the one the engine's writer takes), not through sqlx's
//! connection thread; on PostgreSQL a transaction is one statement over arrays.

use std::str::FromStr;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use super::StoreError;
use super::sqlite::{MIGRATOR, connect_options};

/// Writes `steps` steps against a fresh database at `url`: step `i` updates one of `depth`
/// instance rows and inserts `trace_rows(i)` trace rows carrying `data_json`; `depth`
/// consecutive steps share one transaction (1: one commit per step). Returns the time the
/// steps took (set-up excluded).
pub async fn raw_sqlite_steps(
    url: &str,
    steps: u64,
    depth: u64,
    data_json: &str,
    trace_rows: impl Fn(u64) -> u64,
) -> Result<Duration, StoreError> {
    let depth = depth.max(1);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(connect_options(url)?)
        .await?;
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    let path = SqliteConnectOptions::from_str(url)?
        .get_filename()
        .to_path_buf();
    let raw = |e: rusqlite::Error| StoreError::Corrupt(format!("raw SQLite baseline: {e}"));
    // The bench's runtimes have several threads: the others go on while this one writes.
    tokio::task::block_in_place(|| {
        let db = Connection::open(&path).map_err(raw)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
             PRAGMA temp_store = memory; PRAGMA busy_timeout = 10000;",
        )
        .map_err(raw)?;
        write_raw_steps(&db, steps, depth, data_json, trace_rows).map_err(raw)
    })
}

/// The steps of [`raw_sqlite_steps`] on `db`.
fn write_raw_steps(
    db: &Connection,
    steps: u64,
    depth: u64,
    data_json: &str,
    trace_rows: impl Fn(u64) -> u64,
) -> Result<Duration, rusqlite::Error> {
    db.execute(
        "INSERT INTO definitions (hash, process, source, first_seen) VALUES ('raw', 'raw', '{}', 0)",
        [],
    )?;
    for d in 0..depth {
        db.execute(
            "INSERT INTO instances (id, process, definition_hash, state, data, version, created_by, created_at, updated_at)
             VALUES (?, 'raw', 'raw', 'a', ?, 0, 'bench', 0, 0)",
            params![format!("raw-{d}"), data_json],
        )?;
    }
    let started = Instant::now();
    let mut versions = vec![0_i64; depth as usize];
    let mut i = 0;
    while i < steps {
        db.execute_batch("BEGIN")?;
        let mut update = db.prepare_cached(
            "UPDATE instances SET state = ?, data = ?, version = ?, updated_at = ? WHERE id = ? AND version = ?",
        )?;
        let mut insert = db.prepare_cached(
            "INSERT INTO trace (instance_id, seq, at, actor, roles, kind, transition, from_state,
             to_state, data, comment, definition_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?;
        for _ in 0..depth.min(steps - i) {
            let d = (i % depth) as usize;
            let (id, version) = (format!("raw-{d}"), versions[d]);
            let rows = trace_rows(i / depth) as i64;
            let state = if (i / depth).is_multiple_of(2) {
                "b"
            } else {
                "a"
            };
            let updated = update.execute(params![
                state,
                data_json,
                version + rows,
                i as i64,
                id,
                version
            ])?;
            if updated != 1 {
                return Err(rusqlite::Error::StatementChangedRows(updated));
            }
            for r in 0..rows {
                insert.execute(params![
                    id,
                    version + r + 1,
                    i as i64,
                    "bench",
                    "[\"service_desk\"]",
                    "transition",
                    "t",
                    "a",
                    "b",
                    "{\"pending_reason\":\"awaiting_customer\"}",
                    Option::<String>::None,
                    "raw"
                ])?;
            }
            versions[d] = version + rows;
            i += 1;
        }
        db.execute_batch("COMMIT")?;
    }
    Ok(started.elapsed())
}

/// The PostgreSQL baseline: `clients` connections, each writing its share of `steps` steps
/// to `depth` instances of its own, `depth` steps per transaction, with the rows of the
/// SQLite baseline. Each transaction is the cheapest honest form of its rows: one statement
/// that updates all its instances and inserts all their trace rows, from arrays, and
/// commits on its own, one round trip as the engine's batch is (a statement per row, or
/// BEGIN and COMMIT of their own, would make the limit a measure of round trips). `url`
/// must name an empty database; the schema is migrated first.
pub async fn raw_postgres_steps(
    url: &str,
    steps: u64,
    clients: u64,
    depth: u64,
    data_json: &str,
    trace_rows: impl Fn(u64) -> u64 + Copy + Send + 'static,
) -> Result<Duration, StoreError> {
    use sqlx::postgres::PgPoolOptions;
    let clients = clients.max(1);
    let depth = depth.max(1);
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(clients).unwrap_or(u32::MAX))
        .connect(url)
        .await?;
    super::postgres::MIGRATOR.run(&pool).await?;
    sqlx::query("INSERT INTO definitions (hash, process, source, first_seen) VALUES ('raw', 'raw', '{}', 0) ON CONFLICT DO NOTHING")
        .execute(&pool)
        .await?;
    for c in 0..clients * depth {
        sqlx::query(
            "INSERT INTO instances (id, process, definition_hash, state, data, version, created_by, created_at, updated_at)
             VALUES ($1, 'raw', 'raw', 'a', $2::json, 0, 'bench', 0, 0)",
        )
        .bind(format!("raw-{c}"))
        .bind(data_json)
        .execute(&pool)
        .await?;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let pool = pool.clone();
        let data = data_json.to_owned();
        let share = steps / clients + u64::from(c < steps % clients);
        tasks.push(tokio::spawn(async move {
            let mut versions = vec![0_i64; depth as usize];
            let mut i = 0;
            while i < share {
                let round = i / depth;
                let n = depth.min(share - i) as usize;
                let rows = trace_rows(round) as i64;
                let ids: Vec<String> = (0..n)
                    .map(|d| format!("raw-{}", c * depth + d as u64))
                    .collect();
                let previous = versions[..n].to_vec();
                // One statement, committed on its own: a single round trip, as the engine's
                // batch is. Trace rows are written only for the instances updated.
                let written = sqlx::query(
                    "WITH done AS (
                         UPDATE instances i SET state = $1, data = $2::json,
                             version = u.previous + $3, updated_at = $4
                         FROM unnest($5::text[], $6::int8[]) AS u(id, previous)
                         WHERE i.id = u.id AND i.version = u.previous
                         RETURNING i.id, u.previous)
                     INSERT INTO trace (instance_id, seq, at, actor, roles, kind, transition,
                         from_state, to_state, data, comment, definition_hash)
                     SELECT done.id, done.previous + r, $4, 'bench', '[\"service_desk\"]',
                         'transition', 't', 'a', 'b',
                         '{\"pending_reason\":\"awaiting_customer\"}', NULL, 'raw'
                     FROM done CROSS JOIN generate_series(1, $3) AS r",
                )
                .bind(if round.is_multiple_of(2) { "b" } else { "a" })
                .bind(&data)
                .bind(rows)
                .bind(i as i64)
                .bind(&ids)
                .bind(&previous)
                .execute(&pool)
                .await?;
                if written.rows_affected() != n as u64 * rows as u64 {
                    return Err(StoreError::Conflict);
                }
                for v in &mut versions[..n] {
                    *v += rows;
                }
                i += n as u64;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| StoreError::Corrupt(format!("benchmark task failed: {e}")))??;
    }
    let elapsed = started.elapsed();
    pool.close().await;
    Ok(elapsed)
}

#[cfg(test)]
mod tests {
    use super::super::postgres::{create_database, drop_database, test_server};
    use super::*;

    /// Trace rows per step for the tests: 1, 2, 3, 1, ... by round.
    fn rows(round: u64) -> u64 {
        1 + round % 3
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sqlite_baseline_writes_every_row_of_every_step() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("raw.db").display());
        // Ten steps over four instances: rounds of 4, 4 and 2 steps, 1, 2 and 3 rows each.
        raw_sqlite_steps(&url, 10, 4, "{}", rows).await.unwrap();
        let db = Connection::open(dir.path().join("raw.db")).unwrap();
        let count: i64 = db
            .query_row("SELECT COUNT(*) FROM trace", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 4 + 4 * 2 + 2 * 3);
        let versions: i64 = db
            .query_row("SELECT SUM(version) FROM instances", [], |r| r.get(0))
            .unwrap();
        assert_eq!(versions, count, "each instance's version counts its rows");
    }

    #[tokio::test]
    async fn the_postgres_baseline_writes_every_row_of_every_step() {
        let Some(server) = test_server() else {
            return;
        };
        let name = format!("opsflow_u_{}_raw", uuid::Uuid::now_v7().simple());
        let url = create_database(&server, &name).await.unwrap();
        // Two connections, five steps each over four instances of their own: a round of
        // 4 steps of 1 row, then one step of 2 rows.
        let outcome = raw_postgres_steps(&url, 10, 2, 4, "{}", rows).await;
        let counted = async {
            let pool = sqlx::PgPool::connect(&url).await?;
            let trace: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM trace")
                .fetch_one(&pool)
                .await?;
            let versions: i64 = sqlx::query_scalar(
                "SELECT SUM(version)::int8 FROM instances WHERE id LIKE 'raw-%'",
            )
            .fetch_one(&pool)
            .await?;
            pool.close().await;
            Ok::<_, sqlx::Error>((trace, versions))
        }
        .await;
        drop_database(&server, &name).await.unwrap();
        outcome.unwrap();
        let (trace, versions) = counted.unwrap();
        assert_eq!(trace, 2 * (4 + 2));
        assert_eq!(versions, trace, "each instance's version counts its rows");
    }
}
