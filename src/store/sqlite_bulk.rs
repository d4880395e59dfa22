//! SQLite's set-based write of a batch: a few multi-row statements per kind of row, each
//! prepared once per chunk size and cached, sent in as few round trips as caching allows.
//!
//! sqlx runs a SQLite connection on a thread of its own, and every `execute` is a round
//! trip to it: about 20 µs on the development machine, as much as a step's own writing. So
//! each statement carries, in the same query text, the check of what it wrote (see
//! [`EXPECTED_ROWS`]); `BEGIN` travels with the first statement and `COMMIT` with the last.
//! A one-step commit is then a single round trip, where it took four.

use std::collections::HashSet;
use std::pin::Pin;
use std::task::Poll;

use sqlx::SqliteConnection;
use sqlx::query_builder::Separated;
use sqlx::{QueryBuilder, Sqlite};

use super::bulk::{Bulk, InstanceRow, Refused, TraceRow, chunks};
use super::sqlite::INSTANCE_COLUMNS;
use super::sqlite_chain::{Link, NEW_REC_ID, SET_TRACE_BASE, TraceLinks, push_link};

/// The JSON columns of an instance row, as text.
fn instance_texts(i: &InstanceRow<'_>) -> Result<[String; 4], Refused> {
    Ok([
        json_text(i.data)?,
        json_text(&i.votes)?,
        json_text(&i.slas)?,
        json_text(&i.timers)?,
    ])
}

/// Most rows in one multi-row statement.
const MAX_CHUNK: usize = 64;

/// JSON text of a value bound to a TEXT column.
fn json_text(value: &impl serde::Serialize) -> Result<String, Refused> {
    serde_json::to_string(value).map_err(|e| Refused::Encoding(e.to_string()))
}

/// How the statements of a commit are grouped into round trips to the connection's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trips {
    /// The whole commit in one query text: for one-step commits, whose few shapes are each
    /// prepared once and cached.
    One,
    /// One query text per statement, `BEGIN` with the first and `COMMIT` with the last: for
    /// batches, whose combinations of chunk sizes would be too many to cache as wholes.
    PerStatement,
}

/// Created on every writer connection: inserting `(changes(), n)` into `expected_rows`
/// aborts the statement unless the statement before wrote exactly `n` rows. It stores
/// nothing. With it, a statement and the check of what it wrote travel in one round trip,
/// and `COMMIT` can follow them in the same query text.
pub(super) const EXPECTED_ROWS: &str = "
    CREATE TEMP VIEW IF NOT EXISTS expected_rows (written, wanted) AS SELECT 0, 0;
    CREATE TEMP TRIGGER IF NOT EXISTS expected_rows_check INSTEAD OF INSERT ON expected_rows
        WHEN NEW.written IS NOT NEW.wanted
        BEGIN SELECT RAISE(ABORT, 'opsflow: a statement did not write exactly the rows it was given'); END;";

/// A statement on its way: the connection's thread runs it while the writer builds the
/// next one. It gives the connection back when done.
type InFlight<'a> =
    Pin<Box<dyn Future<Output = (&'a mut SqliteConnection, Result<(), sqlx::Error>)> + Send + 'a>>;

/// The query texts of one commit, sent as [`Trips`] says.
struct Script<'a> {
    /// The connection, while no statement is on its way.
    conn: Option<&'a mut SqliteConnection>,
    /// The statement sent last, while it runs.
    in_flight: Option<InFlight<'a>>,
    trips: Trips,
    query: QueryBuilder<'a, Sqlite>,
    /// Statements in `query`, not yet sent.
    queued: usize,
}

impl<'a> Script<'a> {
    fn begin(conn: &'a mut SqliteConnection, trips: Trips) -> Self {
        Self {
            conn: Some(conn),
            in_flight: None,
            trips,
            query: QueryBuilder::new("BEGIN; "),
            queued: 0,
        }
    }

    /// Waits for the statement on its way, if any, and takes the connection back.
    async fn land(&mut self) -> Result<(), Refused> {
        if let Some(sent) = self.in_flight.take() {
            let (conn, result) = sent.await;
            self.conn = Some(conn);
            result?;
        }
        Ok(())
    }

    /// Sends the queued query text and returns once the connection's thread has it,
    /// without waiting for its outcome (see [`Script::land`]).
    async fn launch(&mut self) -> Result<(), Refused> {
        self.land().await?;
        // Only a statement on its way holds the connection, and none is now.
        let Some(conn) = self.conn.take() else {
            return Err(Refused::Encoding("the writer connection was lost".into()));
        };
        let mut query = std::mem::replace(&mut self.query, QueryBuilder::new(""));
        self.queued = 0;
        let mut sent: InFlight<'a> = Box::pin(async move {
            let result = query.build().execute(&mut *conn).await.map(|_| ());
            (conn, result)
        });
        // The first poll hands the statement to the connection's thread.
        let first = std::future::poll_fn(|cx| Poll::Ready(sent.as_mut().poll(cx))).await;
        match first {
            Poll::Ready((conn, result)) => {
                self.conn = Some(conn);
                result?;
            }
            Poll::Pending => self.in_flight = Some(sent),
        }
        Ok(())
    }

    /// Sends the queued query text and waits for its outcome.
    async fn send(&mut self) -> Result<(), Refused> {
        self.launch().await?;
        self.land().await
    }

    /// Makes room for a statement: one at a time, the one before is sent first, and runs
    /// while this one is built.
    async fn next_statement(&mut self) -> Result<(), Refused> {
        if self.trips == Trips::PerStatement && self.queued > 0 {
            self.launch().await?;
        }
        self.queued += 1;
        Ok(())
    }

    /// Appends `rows` as multi-row statements `head VALUES (...), (...) tail`, in chunks of
    /// cached sizes; `tail` may end with a parameter bound to its value. `bind` binds one
    /// row, given the JSON texts `texts` made of it. With `checked`, each chunk must write
    /// as many rows as it holds, or the commit is refused.
    async fn push_chunks<T, const N: usize>(
        &mut self,
        head: &str,
        (tail, tail_value): (&str, Option<i64>),
        checked: bool,
        rows: &'a [T],
        texts: impl Fn(&T) -> Result<[String; N], Refused>,
        bind: impl Fn(&mut Separated<'_, 'a, Sqlite, &'static str>, &'a T, [String; N]),
    ) -> Result<(), Refused> {
        for chunk in chunks(rows, MAX_CHUNK) {
            let texts = chunk.iter().map(&texts).collect::<Result<Vec<_>, _>>()?;
            self.next_statement().await?;
            let q = &mut self.query;
            q.push(head);
            q.push_values(chunk.iter().zip(texts), |mut b, (row, texts)| {
                bind(&mut b, row, texts)
            });
            q.push(tail);
            if let Some(v) = tail_value {
                q.push_bind(v);
            }
            q.push("; ");
            if checked {
                q.push(format_args!(
                    "INSERT INTO expected_rows VALUES (changes(), {}); ",
                    chunk.len()
                ));
            }
        }
        Ok(())
    }

    /// Sends what is queued, with `COMMIT`.
    async fn commit(mut self) -> Result<(), Refused> {
        self.query.push("COMMIT;");
        self.send().await
    }
}

/// Writes a whole batch with a few multi-row statements per kind of row, all or nothing, in
/// round trips grouped as `trips` says.
pub(super) async fn commit_bulk(
    conn: &mut SqliteConnection,
    bulk: &Bulk<'_>,
    trips: Trips,
) -> Result<(), Refused> {
    let written = write(conn, bulk, trips).await;
    if written.is_err() {
        // A refused row aborts its statement, not the transaction: end it. When BEGIN itself
        // failed, or a failing COMMIT already rolled back, there is none, and the refusal
        // of ROLLBACK says so.
        if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
            tracing::trace!(%e, "no transaction left to roll back");
        }
    }
    written
}

/// Queues and sends the statements of `bulk`, from `BEGIN` to `COMMIT`. Trace records go
/// after new instances (which they refer to) and before instance updates (the first record
/// of an instance links to the last one the instance names until it is updated).
async fn write(conn: &mut SqliteConnection, bulk: &Bulk<'_>, trips: Trips) -> Result<(), Refused> {
    let created: HashSet<&str> = bulk.creates.iter().map(|i| i.id).collect();
    let links = TraceLinks::new(bulk.traces.iter().map(|t| t.instance_id), |id| {
        created.contains(id)
    });
    let written: HashSet<&str> = bulk.updates.iter().map(|i| i.id).chain(created).collect();
    if links.lasts().any(|(id, _)| !written.contains(id)) {
        // Without the instance's row in the batch its last record would not be recorded,
        // nor its version checked.
        return Err(Refused::Encoding(
            "a trace record of an instance the batch does not write".into(),
        ));
    }
    let linked: Vec<(&TraceRow<'_>, Link)> = bulk
        .traces
        .iter()
        .zip(links.records.iter().copied())
        .collect();
    let mut script = Script::begin(conn, trips);
    // Statements run while the next ones are built: when building one fails, the one on
    // its way is waited for before the caller rolls back.
    match queue(&mut script, bulk, &links, &linked).await {
        Ok(()) => script.commit().await,
        Err(why) => {
            let _ = script.land().await;
            Err(why)
        }
    }
}

/// Queues the statements of `bulk` after `BEGIN`, sending each as the next is queued.
async fn queue<'a>(
    script: &mut Script<'a>,
    bulk: &'a Bulk<'_>,
    links: &'a TraceLinks<'_>,
    linked: &'a [(&'a TraceRow<'_>, Link)],
) -> Result<(), Refused> {
    if !linked.is_empty() {
        script.query.push(SET_TRACE_BASE);
    }
    script
        .push_chunks(
            "INSERT INTO idempotency_keys (actor, key, fingerprint, status, response, created_at) ",
            (
                " ON CONFLICT (actor, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                 status = excluded.status, response = excluded.response,
                 created_at = excluded.created_at
             WHERE idempotency_keys.created_at < ",
                Some(bulk.replaces_before),
            ),
            true,
            &bulk.answers,
            |_| Ok([]),
            |b, a, []| {
                b.push_bind(a.actor)
                    .push_bind(a.key)
                    .push_bind(a.fingerprint)
                    .push_bind(i64::from(a.status))
                    .push_bind(a.response)
                    .push_bind(a.created_at);
            },
        )
        .await?;
    script
        .push_chunks(
            &format!("INSERT INTO instances ({INSTANCE_COLUMNS}, next_due_at, last_rec_id) "),
            ("", None),
            true,
            &bulk.creates,
            instance_texts,
            |b, i, [data, votes, slas, timers]| {
                b.push_bind(i.id)
                    .push_bind(i.process)
                    .push_bind(i.definition_hash)
                    .push_bind(i.state)
                    .push_bind(data)
                    .push_bind(i.version)
                    .push_bind(i.created_by)
                    .push_bind(i.created_at)
                    .push_bind(i.updated_at)
                    .push_bind(votes)
                    .push_bind(slas)
                    .push_bind(timers)
                    .push_bind(i.trace_hash)
                    .push_bind(i.next_due_at)
                    .push(NEW_REC_ID)
                    .push_bind_unseparated(links.last_of(i.id));
            },
        )
        .await?;
    script
        .push_chunks(
        "WITH j (from_id, relation) AS (",
        (
            ") DELETE FROM links WHERE (from_id, relation) IN (SELECT from_id, relation FROM j)",
            None,
        ),
        false,
        &bulk.link_clears,
        |_| Ok([]),
        |b, l, []| {
            b.push_bind(l.from_id).push_bind(l.relation);
        },
    )
    .await?;
    script
        .push_chunks(
            "INSERT INTO links (from_id, relation, to_id) ",
            ("", None),
            true,
            &bulk.link_adds,
            |_| Ok([]),
            |b, l, []| {
                b.push_bind(l.from_id)
                    .push_bind(l.relation)
                    .push_bind(l.to_id);
            },
        )
        .await?;
    script
        .push_chunks(
            "INSERT INTO trace (rec_id, prev_rec_id, instance_id, seq, at, actor, roles, channel,
             kind, transition, from_state, to_state, data, detail, comment, definition_hash,
             prev_hash, hash) ",
            ("", None),
            true,
            linked,
            |(t, _)| Ok([json_text(&t.roles)?, json_text(t.data)?]),
            |b, (t, link), [roles, data]| {
                push_link(b, *link, t.instance_id);
                b.push_bind(t.instance_id)
                    .push_bind(t.seq)
                    .push_bind(t.at)
                    .push_bind(t.actor)
                    .push_bind(roles)
                    .push_bind(t.channel)
                    .push_bind(t.kind)
                    .push_bind(t.transition)
                    .push_bind(t.from_state)
                    .push_bind(t.to_state)
                    .push_bind(data)
                    .push_bind(t.detail.as_deref().map(serde_json::value::RawValue::get))
                    .push_bind(t.comment)
                    .push_bind(t.definition_hash)
                    .push_bind(t.prev_hash)
                    .push_bind(t.hash);
            },
        )
        .await?;
    script
        .push_chunks(
            "WITH j (id, definition_hash, state, data, version, previous, updated_at, votes, slas,
             timers, next_due_at, trace_hash, last_new_rec) AS (",
            (
                ") UPDATE instances SET definition_hash = j.definition_hash, state = j.state,
                   data = j.data, version = j.version,
                   updated_at = j.updated_at, votes = j.votes, slas = j.slas, timers = j.timers,
                   next_due_at = j.next_due_at, claimed_by = NULL, claimed_until = NULL,
                   trace_hash = j.trace_hash,
                   last_rec_id = coalesce((SELECT last FROM temp.trace_base) + j.last_new_rec,
                                          instances.last_rec_id)
               FROM j WHERE instances.id = j.id AND instances.version = j.previous",
                None,
            ),
            true,
            &bulk.updates,
            instance_texts,
            |b, i, [data, votes, slas, timers]| {
                b.push_bind(i.id)
                    .push_bind(i.definition_hash)
                    .push_bind(i.state)
                    .push_bind(data)
                    .push_bind(i.version)
                    .push_bind(i.previous)
                    .push_bind(i.updated_at)
                    .push_bind(votes)
                    .push_bind(slas)
                    .push_bind(timers)
                    .push_bind(i.next_due_at)
                    .push_bind(i.trace_hash)
                    .push_bind(links.last_of(i.id));
            },
        )
        .await?;
    Ok(())
}
