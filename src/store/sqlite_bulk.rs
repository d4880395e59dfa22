//! SQLite's set-based write of a batch: a few multi-row statements per kind of row, each
//! prepared once per chunk size and cached.

use sqlx::query_builder::Separated;
use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Sqlite};

use super::bulk::{Bulk, InstanceRow, Refused, chunks, expect_rows};
use super::sqlite::INSTANCE_COLUMNS;

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

/// Writes `rows` with multi-row statements `head VALUES (...), (...) tail`, in chunks of
/// cached sizes; `tail` may end with a parameter bound to its value. `bind` binds one row,
/// given the JSON texts `texts` made of it. Returns the rows affected.
async fn write_chunks<'r, T, const N: usize>(
    tx: &mut sqlx::SqliteConnection,
    head: &str,
    (tail, tail_value): (&str, Option<i64>),
    rows: &'r [T],
    texts: impl Fn(&T) -> Result<[String; N], Refused>,
    bind: impl Fn(&mut Separated<'_, 'r, Sqlite, &'static str>, &'r T, [String; N]),
) -> Result<u64, Refused> {
    let mut done = 0;
    for chunk in chunks(rows, MAX_CHUNK) {
        let texts = chunk.iter().map(&texts).collect::<Result<Vec<_>, _>>()?;
        let mut q = QueryBuilder::<Sqlite>::new(head);
        q.push_values(chunk.iter().zip(texts), |mut b, (row, texts)| {
            bind(&mut b, row, texts)
        });
        q.push(tail);
        if let Some(v) = tail_value {
            q.push_bind(v);
        }
        done += q.build().execute(&mut *tx).await?.rows_affected();
    }
    Ok(done)
}

/// Writes a whole batch with a few multi-row statements per kind of row, all or nothing.
pub(super) async fn commit_bulk(pool: &SqlitePool, bulk: &Bulk<'_>) -> Result<(), Refused> {
    let mut tx = pool.begin().await?;
    let done = write_chunks(
        &mut tx,
        "INSERT INTO idempotency_keys (actor, key, fingerprint, status, response, created_at) ",
        (
            " ON CONFLICT (actor, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                 status = excluded.status, response = excluded.response,
                 created_at = excluded.created_at
             WHERE idempotency_keys.created_at < ",
            Some(bulk.replaces_before),
        ),
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
    expect_rows("answers", done, &bulk.answers)?;
    let done = write_chunks(
        &mut tx,
        &format!("INSERT INTO instances ({INSTANCE_COLUMNS}, next_due_at) "),
        ("", None),
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
                .push_bind(i.next_due_at);
        },
    )
    .await?;
    expect_rows("new instances", done, &bulk.creates)?;
    let done = write_chunks(
        &mut tx,
        "WITH j (id, definition_hash, state, data, version, previous, updated_at, votes, slas,
             timers, next_due_at, trace_hash) AS (",
        (
            ") UPDATE instances SET definition_hash = j.definition_hash, state = j.state,
                   data = j.data, version = j.version,
                   updated_at = j.updated_at, votes = j.votes, slas = j.slas, timers = j.timers,
                   next_due_at = j.next_due_at, claimed_by = NULL, claimed_until = NULL,
                   trace_hash = j.trace_hash
               FROM j WHERE instances.id = j.id AND instances.version = j.previous",
            None,
        ),
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
                .push_bind(i.trace_hash);
        },
    )
    .await?;
    expect_rows("instance updates", done, &bulk.updates)?;
    write_chunks(
        &mut tx,
        "WITH j (from_id, relation) AS (",
        (
            ") DELETE FROM links WHERE (from_id, relation) IN (SELECT from_id, relation FROM j)",
            None,
        ),
        &bulk.link_clears,
        |_| Ok([]),
        |b, l, []| {
            b.push_bind(l.from_id).push_bind(l.relation);
        },
    )
    .await?;
    let done = write_chunks(
        &mut tx,
        "INSERT INTO links (from_id, relation, to_id) ",
        ("", None),
        &bulk.link_adds,
        |_| Ok([]),
        |b, l, []| {
            b.push_bind(l.from_id)
                .push_bind(l.relation)
                .push_bind(l.to_id);
        },
    )
    .await?;
    expect_rows("links", done, &bulk.link_adds)?;
    let done = write_chunks(
        &mut tx,
        "INSERT INTO trace (instance_id, seq, at, actor, roles, channel, kind, transition,
             from_state, to_state, data, detail, comment, definition_hash, prev_hash, hash) ",
        ("", None),
        &bulk.traces,
        |t| Ok([json_text(&t.roles)?, json_text(t.data)?]),
        |b, t, [roles, data]| {
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
    expect_rows("trace records", done, &bulk.traces)?;
    tx.commit().await?;
    Ok(())
}
