//! SQLite's write of a whole batch, all or nothing, on the writer's direct side (see
//! `sqlite_writer`): one prepared statement per kind of row, run once per row on the
//! calling thread. Without a round trip to sqlx's thread per statement, a statement per
//! row costs no more than multi-row statements did, and each row's outcome is read at once
//! (a version or key check that finds nothing to write refuses the batch).

use std::collections::HashSet;

use rusqlite::{Connection, params};

use super::bulk::{Bulk, InstanceRow, Refused, TraceRow};
use super::sqlite::INSTANCE_COLUMNS;
use super::sqlite_chain::{Link, TraceLinks};
use super::sqlite_writer::Writer;

/// JSON text of a value bound to a TEXT column.
fn json_text(value: &impl serde::Serialize) -> Result<String, Refused> {
    serde_json::to_string(value).map_err(|e| Refused::Encoding(e.to_string()))
}

/// The JSON columns of an instance row, as text.
fn instance_texts(i: &InstanceRow<'_>) -> Result<[String; 4], Refused> {
    Ok([
        json_text(i.data)?,
        json_text(&i.votes)?,
        json_text(&i.slas)?,
        json_text(&i.timers)?,
    ])
}

/// The JSON columns of a trace row, as text.
fn trace_texts(t: &TraceRow<'_>) -> Result<[String; 2], Refused> {
    Ok([json_text(&t.roles)?, json_text(t.data)?])
}

/// A batch's rows with their JSON texts made, ready for the statements.
struct Prepared<'b, 'a> {
    bulk: &'b Bulk<'a>,
    links: TraceLinks<'a>,
    creates: Vec<[String; 4]>,
    updates: Vec<[String; 4]>,
    traces: Vec<[String; 2]>,
}

/// Writes a whole batch, all or nothing. The rows' JSON is made before the writer's handle
/// is taken from sqlx's thread. Not `async`: the statements and the commit's sync run on the
/// calling thread (see [`Writer::direct`]).
pub(super) fn commit_bulk(writer: &mut Writer, bulk: &Bulk<'_>) -> Result<(), Refused> {
    let prepared = prepare(bulk)?;
    writer.direct(|db| {
        let written = write(db, &prepared);
        if written.is_err() && !db.is_autocommit() {
            // A refused row ends its statement, not the transaction: end it.
            if let Err(e) = db.execute_batch("ROLLBACK") {
                tracing::warn!(%e, "a refused batch could not be rolled back");
            }
        }
        written
    })?
}

/// Checks that the batch can be written set-wise and makes its rows' JSON texts.
fn prepare<'b, 'a>(bulk: &'b Bulk<'a>) -> Result<Prepared<'b, 'a>, Refused> {
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
    Ok(Prepared {
        bulk,
        links,
        creates: bulk
            .creates
            .iter()
            .map(instance_texts)
            .collect::<Result<_, _>>()?,
        updates: bulk
            .updates
            .iter()
            .map(instance_texts)
            .collect::<Result<_, _>>()?,
        traces: bulk
            .traces
            .iter()
            .map(trace_texts)
            .collect::<Result<_, _>>()?,
    })
}

/// One row must have been written, or the batch is refused as `what` says.
fn one_row(written: usize, what: &'static str) -> Result<(), Refused> {
    if written == 1 {
        Ok(())
    } else {
        Err(Refused::Row(what))
    }
}

/// The statements of a batch, from `BEGIN` to `COMMIT`. Trace records go after new
/// instances (which they refer to) and before instance updates (the first record of an
/// instance links to the last one the instance names until it is updated).
fn write(db: &Connection, p: &Prepared<'_, '_>) -> Result<(), Refused> {
    let bulk = p.bulk;
    db.execute_batch("BEGIN")?;
    // New records are numbered after the largest number stored (see `sqlite_chain`).
    let base: i64 = db
        .prepare_cached("SELECT coalesce(max(rec_id), 0) FROM trace")?
        .query_row([], |r| r.get(0))?;
    let last_rec = |id: &str| p.links.last_of(id).map(|position| base + position);

    if !bulk.answers.is_empty() {
        let mut answer = db.prepare_cached(
            "INSERT INTO idempotency_keys (actor, key, fingerprint, status, response, created_at)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (actor, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                 status = excluded.status, response = excluded.response,
                 created_at = excluded.created_at
             WHERE idempotency_keys.created_at < ?",
        )?;
        for a in &bulk.answers {
            let n = answer.execute(params![
                a.actor,
                a.key,
                a.fingerprint,
                a.status,
                a.response,
                a.created_at,
                bulk.replaces_before
            ])?;
            one_row(n, "a live answer holds the key")?;
        }
    }
    if !bulk.creates.is_empty() {
        let mut create = db.prepare_cached(&format!(
            "INSERT INTO instances ({INSTANCE_COLUMNS}, next_due_at, last_rec_id)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))?;
        for (i, [data, votes, slas, timers]) in bulk.creates.iter().zip(&p.creates) {
            create.execute(params![
                i.id,
                i.process,
                i.definition_hash,
                i.state,
                data,
                i.version,
                i.created_by,
                i.created_at,
                i.updated_at,
                votes,
                slas,
                timers,
                i.trace_hash,
                i.next_due_at,
                last_rec(i.id)
            ])?;
        }
    }
    if !bulk.link_clears.is_empty() {
        let mut clear =
            db.prepare_cached("DELETE FROM links WHERE from_id = ? AND relation = ?")?;
        for l in &bulk.link_clears {
            clear.execute(params![l.from_id, l.relation])?;
        }
    }
    if !bulk.link_adds.is_empty() {
        let mut add =
            db.prepare_cached("INSERT INTO links (from_id, relation, to_id) VALUES (?, ?, ?)")?;
        for l in &bulk.link_adds {
            add.execute(params![l.from_id, l.relation, l.to_id])?;
        }
    }
    if !bulk.traces.is_empty() {
        let mut record = db.prepare_cached(
            "INSERT INTO trace (rec_id, prev_rec_id, instance_id, seq, at, actor, roles, channel,
                 kind, transition, from_state, to_state, data, detail, comment, definition_hash,
                 prev_hash, hash)
             VALUES (?, coalesce(?, (SELECT last_rec_id FROM instances WHERE id = ?)),
                 ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?;
        for ((t, link), [roles, data]) in bulk.traces.iter().zip(&p.links.records).zip(&p.traces) {
            let Link {
                position,
                after_new,
                after_stored,
            } = *link;
            record.execute(params![
                base + position,
                after_new.map(|before| base + before),
                after_stored.then_some(t.instance_id),
                t.instance_id,
                t.seq,
                t.at,
                t.actor,
                roles,
                t.channel,
                t.kind,
                t.transition,
                t.from_state,
                t.to_state,
                data,
                t.detail.as_deref().map(serde_json::value::RawValue::get),
                t.comment,
                t.definition_hash,
                t.prev_hash,
                t.hash
            ])?;
        }
    }
    if !bulk.updates.is_empty() {
        let mut update = db.prepare_cached(
            "UPDATE instances SET definition_hash = ?, state = ?, data = ?, version = ?,
                 updated_at = ?, votes = ?, slas = ?, timers = ?, next_due_at = ?,
                 claimed_by = NULL, claimed_until = NULL, trace_hash = ?,
                 last_rec_id = coalesce(?, last_rec_id)
             WHERE id = ? AND version = ?",
        )?;
        for (i, [data, votes, slas, timers]) in bulk.updates.iter().zip(&p.updates) {
            let n = update.execute(params![
                i.definition_hash,
                i.state,
                data,
                i.version,
                i.updated_at,
                votes,
                slas,
                timers,
                i.next_due_at,
                i.trace_hash,
                last_rec(i.id),
                i.id,
                i.previous
            ])?;
            one_row(n, "an instance moved on since the step was computed")?;
        }
    }
    db.execute_batch("COMMIT")?;
    Ok(())
}
