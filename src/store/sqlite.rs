//! The SQLite store: a file in WAL mode with `synchronous=FULL`, so a committed step is on
//! disk before the engine answers.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection as _, Row as _, SqliteConnection};
use sqlx::{QueryBuilder, Sqlite};
use tokio::sync::Mutex;

use super::batch::commit_in_savepoints;
use super::bulk::Bulk;
use super::rows::{
    answer_from_row, checkpoint_entries, checkpoints_from_rows, definition_from_row,
    delivery_from_row, earliest_due_first, head_from_row, instance_from_row, links_from_rows,
    oldest_first, version_from_row,
};
use super::sqlite_bulk::commit_bulk;
use super::sqlite_chain::{self, NEW_REC_ID, SET_TRACE_BASE, TRACE_BASE, TraceLinks, push_link};
use super::sqlite_writer::Writer;
use super::{
    Checkpoint, Claim, DefinitionVersion, Delivery, DeliveryOutcome, FactRecord, GENESIS,
    InstanceHead, InstanceQuery, InstanceRecord, InstanceWrite, Links, Step, Store, StoreError,
    StoredAnswer, StoredDefinition, StoredSnapshot, TokenRecord, TraceRecord,
};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Instances and traces in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Connections for reads.
    pub(super) pool: SqlitePool,
    /// The one connection that writes. SQLite writes one transaction at a time anyway, and
    /// a connection that always writes keeps its page cache warm: another connection's
    /// commit makes SQLite drop a connection's whole cache. Held rather than pooled: a
    /// pool pings a connection each time it comes back, one more round trip to the
    /// connection's thread per commit.
    pub(super) writer: Arc<Mutex<Writer>>,
}

/// The connection settings every opsflow SQLite connection uses.
pub(super) fn connect_options(url: &str) -> Result<SqliteConnectOptions, sqlx::Error> {
    Ok(SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        // Statement journals (a multi-row statement's undo) in memory: on disk they spilled
        // to a temporary file, a third of the bytes a batch wrote.
        .pragma("temp_store", "memory")
        .busy_timeout(Duration::from_secs(10)))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://opsflow.db`) and applies
    /// pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(connect_options(url)?)
            .await?;
        MIGRATOR.run(&pool).await?;
        let mut writer = SqliteConnection::connect_with(&connect_options(url)?).await?;
        sqlx::raw_sql(TRACE_BASE).execute(&mut writer).await?;
        let writer = Arc::new(Mutex::new(Writer::new(writer).await?));
        Ok(Self { pool, writer })
    }

    /// Applies pending migrations to the database at `url`; returns how many were applied.
    pub async fn migrate(url: &str) -> Result<usize, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect_options(url)?)
            .await?;
        let before = applied(&pool).await;
        MIGRATOR.run(&pool).await?;
        let after = applied(&pool).await;
        pool.close().await;
        Ok(after.saturating_sub(before))
    }
}

async fn applied(pool: &SqlitePool) -> usize {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .map(|n| n as usize)
        .unwrap_or(0)
}

/// A unique or primary key violation means the step lost a race.
fn conflict_on_unique(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Database(e),
    }
}

pub(super) const INSTANCE_COLUMNS: &str = "id, process, definition_hash, state, data, version, created_by, \
     created_at, updated_at, votes, slas, timers, trace_hash";

#[async_trait]
impl Store for SqliteStore {
    async fn save_definition(&self, d: &StoredDefinition) -> Result<i64, StoreError> {
        // One writer at a time: the next number cannot be taken twice.
        let mut writer = self.writer.lock().await;
        let mut tx = writer.conn()?.begin().await?;
        sqlx::query(
            "INSERT INTO definitions (hash, process, source, first_seen, version)
             SELECT ?, ?, ?, ?, COALESCE(MAX(version), 0) + 1 FROM definitions WHERE process = ?
             ON CONFLICT (hash) DO NOTHING",
        )
        .bind(&d.hash)
        .bind(&d.process)
        .bind(&d.source)
        .bind(chrono::Utc::now().timestamp_millis())
        .bind(&d.process)
        .execute(&mut *tx)
        .await?;
        let version: i64 = sqlx::query_scalar("SELECT version FROM definitions WHERE hash = ?")
            .bind(&d.hash)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn save_kpi_set(&self, hash: &str, source: &str) -> Result<i64, StoreError> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.conn()?.begin().await?;
        sqlx::query(
            "INSERT INTO kpi_sets (hash, version, source, first_seen)
             SELECT ?, COALESCE(MAX(version), 0) + 1, ?, ? FROM kpi_sets WHERE true
             ON CONFLICT (hash) DO NOTHING",
        )
        .bind(hash)
        .bind(source)
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(&mut *tx)
        .await?;
        let version: i64 = sqlx::query_scalar("SELECT version FROM kpi_sets WHERE hash = ?")
            .bind(hash)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn kpi_set_source(&self, hash: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT source FROM kpi_sets WHERE hash = ?")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn save_report_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO report_snapshots (hash, instance_id, body, created_at)
             VALUES (?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING",
        )
        .bind(&snapshot.hash)
        .bind(&snapshot.instance_id)
        .bind(&snapshot.body)
        .bind(snapshot.created_at)
        .execute(self.writer.lock().await.conn()?)
        .await?;
        Ok(())
    }

    async fn report_snapshot(&self, hash: &str) -> Result<Option<StoredSnapshot>, StoreError> {
        let row = sqlx::query(
            "SELECT hash, instance_id, body, created_at FROM report_snapshots WHERE hash = ?",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| StoredSnapshot {
            hash: r.get("hash"),
            instance_id: r.get("instance_id"),
            body: r.get("body"),
            created_at: r.get("created_at"),
        }))
    }

    async fn definition_versions(
        &self,
        process: &str,
    ) -> Result<Vec<DefinitionVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, hash, first_seen FROM definitions WHERE process = ? ORDER BY version",
        )
        .bind(process)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_from_row).collect()
    }

    async fn load_definition(&self, hash: &str) -> Result<Option<StoredDefinition>, StoreError> {
        let row = sqlx::query("SELECT hash, process, source FROM definitions WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(definition_from_row).transpose()
    }

    async fn save_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        super::tokens::sqlite::save(self.writer.lock().await.conn()?, token).await
    }
    async fn token_by_digest(&self, digest: &str) -> Result<Option<TokenRecord>, StoreError> {
        super::tokens::sqlite::by_digest(&self.pool, digest).await
    }
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        super::tokens::sqlite::list(&self.pool).await
    }
    async fn revoke_token(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        super::tokens::sqlite::revoke(self.writer.lock().await.conn()?, id, at).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn get_instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(instance_from_row).transpose()
    }

    async fn list_instances(
        &self,
        query: &InstanceQuery,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE 1 = 1"
        ));
        if let Some(p) = &query.process {
            q.push(" AND process = ").push_bind(p);
        }
        if let Some(s) = &query.state {
            q.push(" AND state = ").push_bind(s);
        }
        if let Some(after) = &query.after {
            q.push(" AND id > ").push_bind(after);
        }
        if let Some(v) = &query.visible {
            super::push_visibility(&mut q, v);
        }
        q.push(" ORDER BY id LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn trace(&self, id: &str) -> Result<Vec<TraceRecord>, StoreError> {
        sqlite_chain::trace(&self.pool, id).await
    }

    async fn process_facts(
        &self,
        process: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<FactRecord>)>, StoreError> {
        sqlite_chain::facts(&self.pool, process, after.unwrap_or(""), limit).await
    }

    async fn links(&self, id: &str) -> Result<Links, StoreError> {
        let rows = sqlx::query(
            "SELECT 'out' AS direction, l.relation, i.id, i.process, i.state
               FROM links l JOIN instances i ON i.id = l.to_id WHERE l.from_id = ?
             UNION ALL
             SELECT 'in', l.relation, i.id, i.process, i.state
               FROM links l JOIN instances i ON i.id = l.from_id WHERE l.to_id = ?
             ORDER BY 1, 2, 3",
        )
        .bind(id)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        links_from_rows(&rows)
    }

    async fn heads(&self, ids: &[String]) -> Result<Vec<InstanceHead>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q =
            QueryBuilder::<Sqlite>::new("SELECT id, process, state FROM instances WHERE id IN (");
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(id);
        }
        q.push(")");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(head_from_row).collect()
    }

    async fn answer(&self, actor: &str, key: &str) -> Result<Option<StoredAnswer>, StoreError> {
        let row = sqlx::query(
            "SELECT actor, key, fingerprint, status, response, created_at
             FROM idempotency_keys WHERE actor = ? AND key = ?",
        )
        .bind(actor)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(answer_from_row).transpose()
    }

    async fn purge_answers(&self, before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(before)
            .execute(self.writer.lock().await.conn()?)
            .await?;
        Ok(done.rows_affected())
    }

    async fn claim_due_instances(&self, c: &Claim) -> Result<Vec<InstanceRecord>, StoreError> {
        // One writer at a time: the claim is atomic without row locks.
        let rows = sqlx::query(&format!(
            "UPDATE instances SET claimed_by = ?1, claimed_until = ?2
             WHERE id IN (
                 SELECT id FROM instances
                 WHERE next_due_at <= ?3 AND (claimed_until IS NULL OR claimed_until <= ?3)
                 ORDER BY next_due_at LIMIT ?4)
             RETURNING {INSTANCE_COLUMNS}"
        ))
        .bind(&c.claimant)
        .bind(c.until)
        .bind(c.now)
        .bind(i64::from(c.limit))
        .fetch_all(self.writer.lock().await.conn()?)
        .await?;
        Ok(earliest_due_first(
            rows.iter()
                .map(instance_from_row)
                .collect::<Result<_, _>>()?,
        ))
    }

    async fn write_checkpoint(&self, at: i64) -> Result<Option<Checkpoint>, StoreError> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.conn()?.begin().await?;
        let last = sqlx::query("SELECT seq, at, hash FROM checkpoints ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let (seq, since, prev_hash) = match &last {
            Some(r) => (
                r.try_get::<i64, _>("seq")? + 1,
                r.try_get::<i64, _>("at")?,
                r.try_get::<String, _>("hash")?,
            ),
            None => (1, i64::MIN, GENESIS.to_owned()),
        };
        let rows = sqlx::query(
            "SELECT id, version, trace_hash FROM instances
             WHERE updated_at >= ? AND trace_hash <> '' ORDER BY id",
        )
        .bind(since)
        .fetch_all(&mut *tx)
        .await?;
        let Some(checkpoint) = Checkpoint::next(seq, at, prev_hash, checkpoint_entries(&rows)?)
        else {
            return Ok(None);
        };
        sqlx::query("INSERT INTO checkpoints (seq, at, prev_hash, hash) VALUES (?, ?, ?, ?)")
            .bind(checkpoint.seq)
            .bind(checkpoint.at)
            .bind(&checkpoint.prev_hash)
            .bind(&checkpoint.hash)
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique)?;
        for chunk in checkpoint.entries.chunks(200) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO checkpoint_entries (checkpoint, instance_id, seq, hash) ",
            );
            q.push_values(chunk, |mut b, e| {
                b.push_bind(checkpoint.seq)
                    .push_bind(&e.instance_id)
                    .push_bind(e.seq)
                    .push_bind(&e.hash);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(Some(checkpoint))
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let heads = sqlx::query("SELECT seq, at, prev_hash, hash FROM checkpoints ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        let entries = sqlx::query(
            "SELECT checkpoint, instance_id, seq, hash FROM checkpoint_entries
             ORDER BY checkpoint, instance_id",
        )
        .fetch_all(&self.pool)
        .await?;
        checkpoints_from_rows(&heads, &entries)
    }

    async fn claim_deliveries(&self, c: &Claim) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(
            "UPDATE outbox SET claimed_by = ?1, claimed_until = ?2
             WHERE id IN (
                 SELECT id FROM outbox
                 WHERE next_attempt_at <= ?3 AND (claimed_until IS NULL OR claimed_until <= ?3)
                 ORDER BY next_attempt_at, id LIMIT ?4)
             RETURNING id, instance_id, url, body, created_at, attempts",
        )
        .bind(&c.claimant)
        .bind(c.until)
        .bind(c.now)
        .bind(i64::from(c.limit))
        .fetch_all(self.writer.lock().await.conn()?)
        .await?;
        Ok(oldest_first(
            rows.iter()
                .map(delivery_from_row)
                .collect::<Result<_, _>>()?,
        ))
    }

    async fn record_delivery(&self, id: &str, outcome: &DeliveryOutcome) -> Result<(), StoreError> {
        let q = match outcome {
            DeliveryOutcome::Delivered { at } => sqlx::query(
                "UPDATE outbox SET delivered_at = ?, next_attempt_at = ?, attempts = attempts + 1,
                     claimed_by = NULL, claimed_until = NULL, last_error = NULL WHERE id = ?",
            )
            .bind(*at)
            .bind(i64::MAX),
            DeliveryOutcome::Failed { retry_at, error } => sqlx::query(
                "UPDATE outbox SET last_error = ?, next_attempt_at = ?, attempts = attempts + 1,
                     claimed_by = NULL, claimed_until = NULL WHERE id = ?",
            )
            .bind(error.as_str())
            .bind(*retry_at),
        };
        q.bind(id).execute(self.writer.lock().await.conn()?).await?;
        Ok(())
    }

    async fn commit(&self, step: Step) -> Result<(), StoreError> {
        let mut writer = self.writer.lock().await;
        // Written on the writer's handle directly when the step goes through; a refused one
        // is written again statement by statement through sqlx, which says why.
        if let Some(bulk) = Bulk::new(std::slice::from_ref(&step)) {
            match commit_bulk(&mut writer, &bulk) {
                Ok(()) => return Ok(()),
                Err(why) => {
                    tracing::debug!(%why, "one-trip commit refused; statement by statement")
                }
            }
        }
        commit_by_statements(writer.conn()?, &step).await
    }

    async fn commit_batch(&self, steps: &[Step]) -> Vec<Result<(), StoreError>> {
        let mut writer = self.writer.lock().await;
        if let Some(bulk) = Bulk::new(steps) {
            match commit_bulk(&mut writer, &bulk) {
                Ok(()) => return steps.iter().map(|_| Ok(())).collect(),
                Err(why) => tracing::debug!(%why, "set-based batch refused; step by step"),
            }
        }
        match writer.conn() {
            Ok(conn) => commit_in_savepoints!(conn, steps, apply_step),
            Err(e) => super::batch::all_failed(steps.len(), &e),
        }
    }
}

/// Commits `step` one statement per row kind, in round trips of their own: slower than the
/// set-based form, but its refusals name the cause (a lost race, a live key).
pub(super) async fn commit_by_statements(
    writer: &mut SqliteConnection,
    step: &Step,
) -> Result<(), StoreError> {
    let mut tx = writer.begin().await?;
    apply_step(&mut tx, step).await?;
    tx.commit().await?;
    Ok(())
}

/// Writes one step inside an open transaction: its answer first (a live one under the same
/// key refuses the step), then instances, links and trace rows.
async fn apply_step(tx: &mut sqlx::Transaction<'_, Sqlite>, step: &Step) -> Result<(), StoreError> {
    if let Some(w) = &step.answer {
        let a = &w.answer;
        // Insert, or replace an expired answer; a live one means another request won.
        let done = sqlx::query(
            "INSERT INTO idempotency_keys (actor, key, fingerprint, status, response, created_at)
                 VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT (actor, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                     status = excluded.status, response = excluded.response,
                     created_at = excluded.created_at
                 WHERE idempotency_keys.created_at < ?",
        )
        .bind(&a.actor)
        .bind(&a.key)
        .bind(&a.fingerprint)
        .bind(i64::from(a.status))
        .bind(&a.response)
        .bind(a.created_at)
        .bind(w.replaces_before)
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::KeyTaken);
        }
    }
    for w in &step.writes {
        write_instance(tx, w).await?;
    }
    for change in &step.links {
        sqlx::query("DELETE FROM links WHERE from_id = ? AND relation = ?")
            .bind(&change.from)
            .bind(&change.relation)
            .execute(&mut **tx)
            .await?;
        for to in &change.to {
            sqlx::query("INSERT INTO links (from_id, relation, to_id) VALUES (?, ?, ?)")
                .bind(&change.from)
                .bind(&change.relation)
                .bind(to)
                .execute(&mut **tx)
                .await
                .map_err(conflict_on_unique)?;
        }
    }
    for m in &step.outbox {
        sqlx::query(
            "INSERT INTO outbox (id, instance_id, url, body, created_at, next_attempt_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&m.id)
        .bind(&m.instance_id)
        .bind(&m.url)
        .bind(&m.body)
        .bind(m.created_at)
        .bind(m.created_at)
        .execute(&mut **tx)
        .await
        .map_err(conflict_on_unique)?;
    }
    if !step.trace.is_empty() {
        append_trace(tx, step).await?;
    }
    Ok(())
}

/// Appends `step`'s trace records, each linked to the one before it of its instance, and
/// makes each instance name its last record (see `sqlite_chain`).
async fn append_trace(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    step: &Step,
) -> Result<(), StoreError> {
    sqlx::query(SET_TRACE_BASE).execute(&mut **tx).await?;
    let created = |id: &str| {
        step.writes
            .iter()
            .any(|w| w.previous_version.is_none() && w.instance.id == id)
    };
    let links = TraceLinks::new(step.trace.iter().map(|t| t.instance_id.as_str()), created);
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO trace (rec_id, prev_rec_id, instance_id, seq, at, actor, roles, channel,
             kind, transition, from_state, to_state, data, detail, comment, definition_hash,
             prev_hash, hash) ",
    );
    q.push_values(step.trace.iter().zip(&links.records), |mut b, (t, link)| {
        push_link(&mut b, *link, &t.instance_id);
        b.push_bind(&t.instance_id)
            .push_bind(t.seq)
            .push_bind(t.at)
            .push_bind(&t.actor)
            .push_bind(serde_json::to_string(&t.roles).unwrap_or_else(|_| "[]".into()))
            .push_bind(t.channel.as_str())
            .push_bind(t.kind.as_str())
            .push_bind(&t.transition)
            .push_bind(&t.from)
            .push_bind(&t.to)
            .push_bind(serde_json::Value::Object(t.data.clone()).to_string())
            .push_bind(super::rows::detail_json(t).map(|d| d.get().to_owned()))
            .push_bind(&t.comment)
            .push_bind(&t.definition_hash)
            .push_bind(&t.prev_hash)
            .push_bind(&t.hash);
    });
    q.build()
        .execute(&mut **tx)
        .await
        .map_err(conflict_on_unique)?;
    for (instance, last) in links.lasts() {
        sqlx::query(&format!(
            "UPDATE instances SET last_rec_id = {NEW_REC_ID} ? WHERE id = ?"
        ))
        .bind(last)
        .bind(instance)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Inserts a new instance or updates one still at its previous version.
async fn write_instance(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    w: &InstanceWrite,
) -> Result<(), StoreError> {
    let i = &w.instance;
    let data = serde_json::to_string(&i.data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let votes = serde_json::to_string(&i.votes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let slas = serde_json::to_string(&i.slas).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let timers =
        serde_json::to_string(&i.timers).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    match w.previous_version {
        None => {
            sqlx::query(&format!(
                "INSERT INTO instances ({INSTANCE_COLUMNS}, next_due_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .bind(&i.id)
            .bind(&i.process)
            .bind(&i.definition_hash)
            .bind(&i.state)
            .bind(&data)
            .bind(i.version)
            .bind(&i.created_by)
            .bind(i.created_at)
            .bind(i.updated_at)
            .bind(&votes)
            .bind(&slas)
            .bind(&timers)
            .bind(&i.trace_hash)
            .bind(i.next_due_at())
            .execute(&mut **tx)
            .await
            .map_err(conflict_on_unique)?;
        }
        Some(previous) => {
            let done = sqlx::query(
                "UPDATE instances SET definition_hash = ?, state = ?, data = ?, version = ?,
                 updated_at = ?, votes = ?, slas = ?, timers = ?, next_due_at = ?,
                 claimed_by = NULL, claimed_until = NULL, trace_hash = ?
                 WHERE id = ? AND version = ?",
            )
            .bind(&i.definition_hash)
            .bind(&i.state)
            .bind(&data)
            .bind(i.version)
            .bind(i.updated_at)
            .bind(&votes)
            .bind(&slas)
            .bind(&timers)
            .bind(i.next_due_at())
            .bind(&i.trace_hash)
            .bind(&i.id)
            .bind(previous)
            .execute(&mut **tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict);
            }
        }
    }
    Ok(())
}
