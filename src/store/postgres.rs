//! The PostgreSQL store: for teams and for several engine nodes sharing one database.
//!
//! Same tables as SQLite, with `json` for JSON values (written and selected as text, so
//! rows decode the same way on both). A step is one transaction; concurrent steps on one
//! instance are serialized by the row lock of `UPDATE ... WHERE version = $n`, and the
//! loser sees no row.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection as _, Row as _};
use sqlx::{Postgres, QueryBuilder};

use super::batch::commit_in_savepoints;
use super::bulk::Bulk;
use super::pg_json::JsonText;
use super::postgres_bulk::commit_bulk;
use super::rows::{
    answer_from_row, checkpoint_entries, checkpoints_from_rows, definition_from_row,
    delivery_from_row, earliest_due_first, head_from_row, instance_from_row, links_from_rows,
    oldest_first, trace_from_row, version_from_row,
};
use super::{
    Checkpoint, Claim, DefinitionVersion, Delivery, DeliveryOutcome, FactRecord, GENESIS,
    InstanceHead, InstanceQuery, InstanceRecord, InstanceWrite, Links, Step, Store, StoreError,
    StoredAnswer, StoredDefinition, StoredSnapshot, TokenRecord, TraceRecord,
};

/// A pooled connection idle this long is pinged before use, and replaced if the server no
/// longer answers on it (restarted, or the connection was cut while idle). One in steady use
/// is not: a ping on every acquire costs a round trip per batch and per read. Without it,
/// HTTP at 16 clients went from 3,900 – 4,900 to 5,000 – 5,800 transitions/s (three
/// alternating runs); the engine's own rate moved less than the runs' noise.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Instances and traces in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host/db`) and applies pending migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_AFTER_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        run_migrations(&options).await?;
        Ok(Self { pool })
    }

    /// Applies pending migrations to the database at `url`; returns how many were applied.
    pub async fn migrate(url: &str) -> Result<usize, StoreError> {
        run_migrations(&PgConnectOptions::from_str(url)?).await
    }
}

/// Applies pending migrations on a connection of their own, whose statements are not
/// logged: a migration that rewrites a table is slow on purpose, and sqlx's warning would
/// print its whole text. Returns how many were applied.
async fn run_migrations(options: &PgConnectOptions) -> Result<usize, StoreError> {
    use sqlx::ConnectOptions as _;
    let mut conn = options
        .clone()
        .disable_statement_logging()
        .connect()
        .await?;
    let applied = async |conn: &mut sqlx::PgConnection| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(conn)
            .await
            .map_or(0, |n| n as usize)
    };
    let before = applied(&mut conn).await;
    MIGRATOR.run(&mut conn).await?;
    let after = applied(&mut conn).await;
    conn.close().await?;
    Ok(after.saturating_sub(before))
}

fn conflict_on_unique(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Database(e),
    }
}

/// Tries at numbering a new definition version while other nodes number theirs.
const VERSION_ATTEMPTS: usize = 8;

/// The columns a trace record is read from (see `trace_from_row`).
const TRACE_COLUMNS: &str = "instance_id, seq, at, actor, roles::text AS roles, channel, kind, \
    transition, from_state, to_state, data::text AS data, detail::text AS detail, comment, \
    definition_hash, prev_hash, hash";

const INSTANCE_COLUMNS: &str = "id, process, definition_hash, state, data::text AS data, version, \
     created_by, created_at, updated_at, votes::text AS votes, slas::text AS slas, \
     timers::text AS timers, trace_hash";

impl PgStore {
    /// Runs `insert`, which numbers a new row `MAX(version) + 1`, until its number does
    /// not collide with one another node took at the same time (the unique index refuses
    /// the loser), then reads the number of the row with `hash` through `read`.
    async fn numbered<'q>(
        &self,
        insert: impl Fn() -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
        read: &'static str,
        hash: &str,
    ) -> Result<i64, StoreError> {
        for _ in 0..VERSION_ATTEMPTS {
            match insert().execute(&self.pool).await {
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                other => {
                    other?;
                }
            }
            let version: i64 = sqlx::query_scalar(read)
                .bind(hash)
                .fetch_one(&self.pool)
                .await?;
            return Ok(version);
        }
        Err(StoreError::Busy)
    }
}

#[async_trait]
impl Store for PgStore {
    async fn save_definition(&self, d: &StoredDefinition) -> Result<i64, StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        let insert = || {
            sqlx::query(
                "INSERT INTO definitions (hash, process, source, first_seen, version)
                 SELECT $1, $2, $3, $4, COALESCE(MAX(version), 0) + 1
                 FROM definitions WHERE process = $2
                 ON CONFLICT (hash) DO NOTHING",
            )
            .bind(&d.hash)
            .bind(&d.process)
            .bind(&d.source)
            .bind(now)
        };
        self.numbered(
            insert,
            "SELECT version FROM definitions WHERE hash = $1",
            &d.hash,
        )
        .await
    }

    async fn save_kpi_set(&self, hash: &str, source: &str) -> Result<i64, StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        let insert = || {
            sqlx::query(
                "INSERT INTO kpi_sets (hash, version, source, first_seen)
                 SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3 FROM kpi_sets
                 ON CONFLICT (hash) DO NOTHING",
            )
            .bind(hash)
            .bind(source)
            .bind(now)
        };
        self.numbered(insert, "SELECT version FROM kpi_sets WHERE hash = $1", hash)
            .await
    }

    async fn kpi_set_source(&self, hash: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT source FROM kpi_sets WHERE hash = $1")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn save_report_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO report_snapshots (hash, instance_id, body, created_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING",
        )
        .bind(&snapshot.hash)
        .bind(&snapshot.instance_id)
        .bind(&snapshot.body)
        .bind(snapshot.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn report_snapshot(&self, hash: &str) -> Result<Option<StoredSnapshot>, StoreError> {
        let row = sqlx::query(
            "SELECT hash, instance_id, body, created_at FROM report_snapshots WHERE hash = $1",
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
            "SELECT version, hash, first_seen FROM definitions WHERE process = $1 ORDER BY version",
        )
        .bind(process)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_from_row).collect()
    }

    async fn load_definition(&self, hash: &str) -> Result<Option<StoredDefinition>, StoreError> {
        let row = sqlx::query("SELECT hash, process, source FROM definitions WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(definition_from_row).transpose()
    }

    async fn save_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        super::tokens::postgres::save(&self.pool, token).await
    }
    async fn token_by_digest(&self, digest: &str) -> Result<Option<TokenRecord>, StoreError> {
        super::tokens::postgres::by_digest(&self.pool, digest).await
    }
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        super::tokens::postgres::list(&self.pool).await
    }
    async fn revoke_token(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        super::tokens::postgres::revoke(&self.pool, id, at).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn get_instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1"
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
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE TRUE"
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
        let rows = sqlx::query(&format!(
            "SELECT {TRACE_COLUMNS} FROM trace WHERE instance_id = $1 ORDER BY seq"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(trace_from_row).collect()
    }

    async fn process_facts(
        &self,
        process: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<FactRecord>)>, StoreError> {
        // Two plain queries (the page's ids, then their records by the (instance_id, seq)
        // index) plan well whatever the tables' statistics say; the records come back as
        // one JSON text built by the server.
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM instances WHERE process = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(process)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT instance_id, at, actor, kind, transition, to_state, data::text AS data
               FROM trace WHERE instance_id = ANY($1) ORDER BY instance_id, seq",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(String, Vec<FactRecord>)> = Vec::new();
        for row in &rows {
            let r = super::rows::fact_from_row(row)?;
            match out.last_mut() {
                Some((id, list)) if *id == r.instance_id => list.push(r),
                _ => out.push((r.instance_id.clone(), vec![r])),
            }
        }
        Ok(out)
    }

    async fn links(&self, id: &str) -> Result<Links, StoreError> {
        let rows = sqlx::query(
            "SELECT 'out' AS direction, l.relation, i.id, i.process, i.state
               FROM links l JOIN instances i ON i.id = l.to_id WHERE l.from_id = $1
             UNION ALL
             SELECT 'in', l.relation, i.id, i.process, i.state
               FROM links l JOIN instances i ON i.id = l.from_id WHERE l.to_id = $1
             ORDER BY 1, 2, 3",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        links_from_rows(&rows)
    }

    async fn heads(&self, ids: &[String]) -> Result<Vec<InstanceHead>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query("SELECT id, process, state FROM instances WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(head_from_row).collect()
    }

    async fn answer(&self, actor: &str, key: &str) -> Result<Option<StoredAnswer>, StoreError> {
        let row = sqlx::query(
            "SELECT actor, key, fingerprint, status::BIGINT AS status, response, created_at
             FROM idempotency_keys WHERE actor = $1 AND key = $2",
        )
        .bind(actor)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(answer_from_row).transpose()
    }

    async fn purge_answers(&self, before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn claim_due_instances(&self, c: &Claim) -> Result<Vec<InstanceRecord>, StoreError> {
        // Rows another node is claiming right now are skipped, not waited for.
        let columns = INSTANCE_COLUMNS
            .split(", ")
            .map(|c| format!("i.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "UPDATE instances i SET claimed_by = $1, claimed_until = $2
             FROM (SELECT id FROM instances
                   WHERE next_due_at <= $3 AND (claimed_until IS NULL OR claimed_until <= $3)
                   ORDER BY next_due_at LIMIT $4 FOR UPDATE SKIP LOCKED) d
             WHERE i.id = d.id
             RETURNING {columns}"
        ))
        .bind(&c.claimant)
        .bind(c.until)
        .bind(c.now)
        .bind(i64::from(c.limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(earliest_due_first(
            rows.iter()
                .map(instance_from_row)
                .collect::<Result<_, _>>()?,
        ))
    }

    async fn write_checkpoint(&self, at: i64) -> Result<Option<Checkpoint>, StoreError> {
        let mut tx = self.pool.begin().await?;
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
             WHERE updated_at >= $1 AND trace_hash <> '' ORDER BY id",
        )
        .bind(since)
        .fetch_all(&mut *tx)
        .await?;
        let Some(checkpoint) = Checkpoint::next(seq, at, prev_hash, checkpoint_entries(&rows)?)
        else {
            return Ok(None);
        };
        sqlx::query("INSERT INTO checkpoints (seq, at, prev_hash, hash) VALUES ($1, $2, $3, $4)")
            .bind(checkpoint.seq)
            .bind(checkpoint.at)
            .bind(&checkpoint.prev_hash)
            .bind(&checkpoint.hash)
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique)?;
        for chunk in checkpoint.entries.chunks(200) {
            let mut q = QueryBuilder::<Postgres>::new(
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
            "UPDATE outbox o SET claimed_by = $1, claimed_until = $2
             FROM (SELECT id FROM outbox
                   WHERE next_attempt_at <= $3 AND (claimed_until IS NULL OR claimed_until <= $3)
                   ORDER BY next_attempt_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) d
             WHERE o.id = d.id
             RETURNING o.id, o.instance_id, o.url, o.body, o.created_at, o.attempts",
        )
        .bind(&c.claimant)
        .bind(c.until)
        .bind(c.now)
        .bind(i64::from(c.limit))
        .fetch_all(&self.pool)
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
                "UPDATE outbox SET delivered_at = $1, next_attempt_at = $2,
                     attempts = attempts + 1, claimed_by = NULL, claimed_until = NULL,
                     last_error = NULL WHERE id = $3",
            )
            .bind(*at)
            .bind(i64::MAX),
            DeliveryOutcome::Failed { retry_at, error } => sqlx::query(
                "UPDATE outbox SET last_error = $1, next_attempt_at = $2,
                     attempts = attempts + 1, claimed_by = NULL, claimed_until = NULL
                 WHERE id = $3",
            )
            .bind(error.as_str())
            .bind(*retry_at),
        };
        q.bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn commit(&self, step: Step) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        apply_step(&mut tx, &step).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn commit_batch(&self, steps: &[Step]) -> Vec<Result<(), StoreError>> {
        if let Some(bulk) = Bulk::new(steps) {
            match commit_bulk(&self.pool, &bulk).await {
                Ok(()) => return steps.iter().map(|_| Ok(())).collect(),
                Err(why) => tracing::debug!(%why, "set-based batch refused; step by step"),
            }
        }
        commit_in_savepoints!(self.pool, steps, apply_step)
    }
}

/// Writes one step inside an open transaction: its answer first (a live one under the same
/// key refuses the step), then instances, links and trace rows.
async fn apply_step(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    step: &Step,
) -> Result<(), StoreError> {
    if let Some(w) = &step.answer {
        let a = &w.answer;
        // Insert, or replace an expired answer; a live one means another request won.
        // A concurrent insert of the same key waits for the first to commit.
        let done = sqlx::query(
            "INSERT INTO idempotency_keys (actor, key, fingerprint, status, response, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (actor, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                     status = excluded.status, response = excluded.response,
                     created_at = excluded.created_at
                 WHERE idempotency_keys.created_at < $7",
        )
        .bind(&a.actor)
        .bind(&a.key)
        .bind(&a.fingerprint)
        .bind(i32::from(a.status))
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
        sqlx::query("DELETE FROM links WHERE from_id = $1 AND relation = $2")
            .bind(&change.from)
            .bind(&change.relation)
            .execute(&mut **tx)
            .await?;
        if !change.to.is_empty() {
            let mut q =
                QueryBuilder::<Postgres>::new("INSERT INTO links (from_id, relation, to_id) ");
            q.push_values(&change.to, |mut b, to| {
                b.push_bind(&change.from)
                    .push_bind(&change.relation)
                    .push_bind(to);
            });
            q.build()
                .execute(&mut **tx)
                .await
                .map_err(conflict_on_unique)?;
        }
    }
    for m in &step.outbox {
        sqlx::query(
            "INSERT INTO outbox (id, instance_id, url, body, created_at, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&m.id)
        .bind(&m.instance_id)
        .bind(&m.url)
        .bind(&m.body)
        .bind(m.created_at)
        .execute(&mut **tx)
        .await
        .map_err(conflict_on_unique)?;
    }
    if !step.trace.is_empty() {
        // In place of a foreign key (see migration 0017): a trace record belongs to an
        // instance this step writes.
        let written = |id: &str| step.writes.iter().any(|w| w.instance.id == id);
        if let Some(t) = step.trace.iter().find(|t| !written(&t.instance_id)) {
            return Err(StoreError::Corrupt(format!(
                "trace record {} of {} without its instance",
                t.seq, t.instance_id
            )));
        }
        let mut q = QueryBuilder::<Postgres>::new(
            "INSERT INTO trace (instance_id, seq, at, actor, roles, channel, kind, transition,
                 from_state, to_state, data, detail, comment, definition_hash, prev_hash, hash) ",
        );
        q.push_values(&step.trace, |mut b, t| {
            b.push_bind(&t.instance_id)
                .push_bind(t.seq)
                .push_bind(t.at)
                .push_bind(&t.actor)
                .push_bind(JsonText(&t.roles))
                .push_bind(t.channel.as_str())
                .push_bind(t.kind.as_str())
                .push_bind(&t.transition)
                .push_bind(&t.from)
                .push_bind(&t.to)
                .push_bind(JsonText(&t.data))
                .push_bind(super::rows::detail_json(t).map(JsonText))
                .push_bind(&t.comment)
                .push_bind(&t.definition_hash)
                .push_bind(&t.prev_hash)
                .push_bind(&t.hash);
        });
        q.build()
            .execute(&mut **tx)
            .await
            .map_err(conflict_on_unique)?;
    }
    Ok(())
}

/// Inserts a new instance or updates one still at its previous version.
async fn write_instance(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    w: &InstanceWrite,
) -> Result<(), StoreError> {
    let i = &w.instance;
    let data = JsonText(&i.data);
    let votes = JsonText(&i.votes);
    let slas = JsonText(&i.slas);
    let timers = JsonText(&i.timers);
    match w.previous_version {
        None => {
            sqlx::query(
                "INSERT INTO instances (id, process, definition_hash, state, data, version,
                 created_by, created_at, updated_at, votes, slas, timers, next_due_at,
                 trace_hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(&i.id)
            .bind(&i.process)
            .bind(&i.definition_hash)
            .bind(&i.state)
            .bind(data)
            .bind(i.version)
            .bind(&i.created_by)
            .bind(i.created_at)
            .bind(i.updated_at)
            .bind(votes)
            .bind(slas)
            .bind(timers)
            .bind(i.next_due_at())
            .bind(&i.trace_hash)
            .execute(&mut **tx)
            .await
            .map_err(conflict_on_unique)?;
        }
        Some(previous) => {
            let done = sqlx::query(
                "UPDATE instances SET state = $1, data = $2, version = $3, updated_at = $4,
                 votes = $5, slas = $6, timers = $7, next_due_at = $8, claimed_by = NULL,
                 claimed_until = NULL, trace_hash = $9, definition_hash = $12
                 WHERE id = $10 AND version = $11",
            )
            .bind(&i.state)
            .bind(data)
            .bind(i.version)
            .bind(i.updated_at)
            .bind(votes)
            .bind(slas)
            .bind(timers)
            .bind(i.next_due_at())
            .bind(&i.trace_hash)
            .bind(&i.id)
            .bind(previous)
            .bind(&i.definition_hash)
            .execute(&mut **tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict);
            }
        }
    }
    Ok(())
}

/// A connection for creating and dropping databases, which may take a second or more
/// without that being worth a warning.
async fn admin_connection(server_url: &str) -> Result<sqlx::PgConnection, StoreError> {
    use sqlx::ConnectOptions;
    Ok(PgConnectOptions::from_str(server_url)?
        .disable_statement_logging()
        .connect()
        .await?)
}

/// Creates an empty database named `name` on the server `server_url` points at and returns
/// a URL for it. For benchmarks and tests that need a database of their own.
pub async fn create_database(server_url: &str, name: &str) -> Result<String, StoreError> {
    use sqlx::{Connection, Executor};
    let mut admin = admin_connection(server_url).await?;
    admin
        .execute(format!("CREATE DATABASE \"{}\"", name.replace('"', "")).as_str())
        .await?;
    admin.close().await?;
    Ok(super::database_url(server_url, name))
}

/// Drops the database `name`, closing its connections first.
pub async fn drop_database(server_url: &str, name: &str) -> Result<(), StoreError> {
    use sqlx::{Connection, Executor};
    let mut admin = admin_connection(server_url).await?;
    admin
        .execute(
            format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                name.replace('"', "")
            )
            .as_str(),
        )
        .await?;
    admin.close().await?;
    Ok(())
}

/// The PostgreSQL server the unit tests use (`OPSFLOW_TEST_POSTGRES_URL`), or `None`, said
/// on stderr, when none is set and the test is skipped.
#[cfg(test)]
pub(super) fn test_server() -> Option<String> {
    let server = std::env::var("OPSFLOW_TEST_POSTGRES_URL").ok();
    if server.is_none() {
        eprintln!("skipped: OPSFLOW_TEST_POSTGRES_URL is not set");
    }
    server
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pooled_connection_cut_while_idle_is_replaced_before_use() {
        let Some(server) = test_server() else { return };
        let name = format!("opsflow_u_{}_idle", uuid::Uuid::now_v7().simple());
        let url = create_database(&server, &name).await.unwrap();
        let store = PgStore::open(&url, 1).await.unwrap();
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        let admin = PgStore::open(&url, 1).await.unwrap();
        let cut: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(backend)
            .fetch_one(&admin.pool)
            .await
            .unwrap();
        tokio::time::sleep(PING_AFTER_IDLE + Duration::from_millis(200)).await;
        let after = store.get_instance("none").await;
        let replaced: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        store.pool.close().await;
        admin.pool.close().await;
        drop_database(&server, &name).await.unwrap();
        assert!(cut, "the idle connection's backend was terminated");
        assert!(
            matches!(after, Ok(None)),
            "the read after the cut: {after:?}"
        );
        assert_ne!(replaced, backend);
    }
}
