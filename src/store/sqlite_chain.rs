//! How SQLite finds an instance's trace records: by links, not by an index.
//!
//! Each record has a number of its own (`rec_id`, in the order written) and names the
//! instance's record before it (`prev_rec_id`); each instance names its last record
//! (`last_rec_id`). An index on (instance, step) dirtied one leaf page per instance in every
//! commit of concurrent steps, about a third of the pages such a commit wrote; the links
//! live in rows the commit writes anyway.
//!
//! Within a transaction the new records get the numbers after the largest one stored,
//! kept in the connection's `temp.trace_base` when the transaction begins
//! ([`SET_TRACE_BASE`]); a record's link then is that base plus the position of the record
//! it follows in the transaction, or the instance's stored last record for the first of an
//! instance written before.
//!
//! A read follows the links back from the instance's last record. Where they do not lead
//! back to a first record through every step (a record deleted or renumbered by hand), it
//! reads every record the table holds for the instance instead, as a read by index would,
//! so that verification names what is missing or out of order.

use std::collections::HashMap;

use sqlx::query_builder::Separated;
use sqlx::{Row as _, Sqlite, SqlitePool};

use super::rows::trace_from_row;
use super::{FactRecord, StoreError, TraceKind, TraceRecord};

/// Created on the writer connection when it opens: one row holding the largest record
/// number stored when the current transaction began. It lives in the connection's
/// temporary (in-memory) database and stores nothing on disk.
pub(super) const TRACE_BASE: &str = "
    CREATE TEMP TABLE IF NOT EXISTS trace_base (last INTEGER NOT NULL);
    INSERT INTO trace_base SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM trace_base);";

/// Sent first in a transaction that appends records.
pub(super) const SET_TRACE_BASE: &str =
    "UPDATE temp.trace_base SET last = (SELECT coalesce(max(rec_id), 0) FROM main.trace); ";

/// The number of the transaction's `k`-th new record is this SQL followed by `k`.
pub(super) const NEW_REC_ID: &str = "(SELECT last FROM temp.trace_base) + ";

/// The columns a trace record is read from (see `trace_from_row`).
pub(super) const TRACE_COLUMNS: &str = "instance_id, seq, at, actor, roles, channel, kind, \
    transition, from_state, to_state, data, detail, comment, definition_hash, prev_hash, hash";

/// Where one new record sits in the transaction and what it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Link {
    /// Its position among the transaction's new records, from 1.
    pub(super) position: i64,
    /// The position of the instance's record before it, when that one is new too.
    pub(super) after_new: Option<i64>,
    /// Whether the record before it is the instance's stored last record.
    pub(super) after_stored: bool,
}

/// The links of a transaction's new records, in the order they are inserted.
#[derive(Debug, Default)]
pub(super) struct TraceLinks<'a> {
    pub(super) records: Vec<Link>,
    /// Each instance's last new record (position).
    last: HashMap<&'a str, i64>,
}

impl<'a> TraceLinks<'a> {
    /// The links of records of `instances` (one id per record, in insertion order);
    /// `created` says which instances the transaction creates (they have no stored record).
    pub(super) fn new(
        instances: impl IntoIterator<Item = &'a str>,
        created: impl Fn(&str) -> bool,
    ) -> Self {
        let mut links = TraceLinks::default();
        for (i, instance) in instances.into_iter().enumerate() {
            let position = i as i64 + 1;
            let after_new = links.last.insert(instance, position);
            links.records.push(Link {
                position,
                after_new,
                after_stored: after_new.is_none() && !created(instance),
            });
        }
        links
    }

    /// The position of `instance`'s last new record, if it has any.
    pub(super) fn last_of(&self, instance: &str) -> Option<i64> {
        self.last.get(instance).copied()
    }

    /// Each instance with new records and the position of its last one.
    pub(super) fn lasts(&self) -> impl Iterator<Item = (&'a str, i64)> + '_ {
        self.last.iter().map(|(i, p)| (*i, *p))
    }
}

/// Pushes the values of `rec_id` and `prev_rec_id` for a new record of `instance`.
pub(super) fn push_link<'q>(
    b: &mut Separated<'_, 'q, Sqlite, &'static str>,
    link: Link,
    instance: &'q str,
) {
    b.push(NEW_REC_ID).push_bind_unseparated(link.position);
    // The record before is new (base + its position), or the stored last one (looked up
    // by the instance's id; no id binds NULL and finds none), or there is none.
    b.push("coalesce(")
        .push_unseparated(NEW_REC_ID)
        .push_bind_unseparated(link.after_new)
        .push_unseparated(", (SELECT last_rec_id FROM instances WHERE id = ")
        .push_bind_unseparated(link.after_stored.then_some(instance))
        .push_unseparated("))");
}

/// Whether the record at `position` (from 0) of the records reached by following an
/// instance's links back, in the order written, fits a whole trace: it is step
/// `position + 1`, and it links to no record exactly when it is the first. (Each record
/// after the first was reached through its own link.)
fn fits_whole_trace(position: usize, seq: i64, unlinked: bool) -> bool {
    seq == position as i64 + 1 && unlinked == (position == 0)
}

/// `id`'s trace, in order.
pub(super) async fn trace(pool: &SqlitePool, id: &str) -> Result<Vec<TraceRecord>, StoreError> {
    let rows = sqlx::query(&format!(
        "WITH RECURSIVE chain AS (
             SELECT t.* FROM instances i JOIN trace t ON t.rec_id = i.last_rec_id
             WHERE i.id = ?1 AND t.instance_id = ?1
             UNION ALL
             SELECT t.* FROM chain c JOIN trace t ON t.rec_id = c.prev_rec_id
             WHERE c.prev_rec_id < c.rec_id AND t.instance_id = c.instance_id)
         SELECT {TRACE_COLUMNS}, prev_rec_id FROM chain ORDER BY rec_id"
    ))
    .bind(id)
    .fetch_all(pool)
    .await?;
    let records = rows
        .iter()
        .map(trace_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let mut whole = !records.is_empty();
    for (i, (row, record)) in rows.iter().zip(&records).enumerate() {
        let prev: Option<i64> = row.try_get("prev_rec_id")?;
        whole &= fits_whole_trace(i, record.seq, prev.is_none());
    }
    if whole {
        return Ok(records);
    }
    every_record(pool, id).await
}

/// Every record the table holds for `id`, by step: a scan of the whole table, for traces
/// whose links are broken (or instances that are gone).
async fn every_record(pool: &SqlitePool, id: &str) -> Result<Vec<TraceRecord>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {TRACE_COLUMNS} FROM trace WHERE instance_id = ? ORDER BY seq, rec_id"
    ))
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(trace_from_row).collect()
}

/// The facts of a page of `process`'s instances (ids after `after`, at most `limit`), each
/// with its records in order; instances without records are left out.
pub(super) async fn facts(
    pool: &SqlitePool,
    process: &str,
    after: &str,
    limit: u32,
) -> Result<Vec<(String, Vec<FactRecord>)>, StoreError> {
    // One row for the whole page: SQLite builds the JSON, so no row is handed over one at
    // a time. The ids of the page's instances with records come beside it, to tell an
    // instance whose links are broken.
    let row = sqlx::query(
        "WITH RECURSIVE page AS (
             SELECT id, last_rec_id FROM instances WHERE process = ?1 AND id > ?2
             ORDER BY id LIMIT ?3),
         chain AS (
             SELECT t.rec_id, t.prev_rec_id, t.instance_id, t.seq, t.at, t.actor, t.kind,
                    t.transition, t.to_state, t.data
             FROM page p JOIN trace t ON t.rec_id = p.last_rec_id AND t.instance_id = p.id
             UNION ALL
             SELECT t.rec_id, t.prev_rec_id, t.instance_id, t.seq, t.at, t.actor, t.kind,
                    t.transition, t.to_state, t.data
             FROM chain c JOIN trace t ON t.rec_id = c.prev_rec_id
             WHERE c.prev_rec_id < c.rec_id AND t.instance_id = c.instance_id)
         SELECT
             (SELECT json_group_array(id) FROM page WHERE last_rec_id IS NOT NULL) AS ids,
             (SELECT json_group_array(json_array(instance_id, seq, prev_rec_id IS NULL, at,
                                                 actor, kind, transition, to_state, json(data))
                                      ORDER BY instance_id, seq)
              FROM chain) AS records",
    )
    .bind(process)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_one(pool)
    .await?;
    let ids: Vec<String> = serde_json::from_str(row.try_get("ids")?)
        .map_err(|e| StoreError::Corrupt(format!("instance page: {e}")))?;
    let mut chained = fact_groups(row.try_get("records")?)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let records = match chained.remove(&id) {
            Some(records) => records,
            None => every_record(pool, &id)
                .await?
                .iter()
                .map(FactRecord::from)
                .collect(),
        };
        if !records.is_empty() {
            out.push((id, records));
        }
    }
    Ok(out)
}

/// Reads the JSON of a page's chained records: an array of `[instance_id, seq, unlinked, at,
/// actor, kind, transition, to, data]` by instance and step, grouped by instance; an
/// instance whose records are not a whole trace is left out.
fn fact_groups(json: &str) -> Result<HashMap<String, Vec<FactRecord>>, StoreError> {
    type Row = (
        String,
        i64,
        u8,
        i64,
        String,
        String,
        Option<String>,
        String,
        serde_json::Map<String, serde_json::Value>,
    );
    let rows: Vec<Row> =
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("trace page: {e}")))?;
    let mut groups: HashMap<String, (bool, Vec<FactRecord>)> = HashMap::new();
    for (instance_id, seq, unlinked, at, actor, kind, transition, to, data) in rows {
        let kind = TraceKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("trace kind `{kind}`")))?;
        let (is_whole, records) = groups
            .entry(instance_id.clone())
            .or_insert_with(|| (true, Vec::new()));
        *is_whole &= fits_whole_trace(records.len(), seq, unlinked == 1);
        records.push(FactRecord {
            instance_id,
            at,
            actor,
            kind,
            transition,
            to,
            data,
        });
    }
    Ok(groups
        .into_iter()
        .filter_map(|(id, (is_whole, records))| is_whole.then_some((id, records)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_follows_the_new_record_before_it_or_the_stored_last_one_or_none() {
        let links = TraceLinks::new(["a", "b", "a", "c", "a"], |i| i == "c");
        let link = |position, after_new, after_stored| Link {
            position,
            after_new,
            after_stored,
        };
        assert_eq!(
            links.records,
            [
                link(1, None, true),
                link(2, None, true),
                link(3, Some(1), false),
                link(4, None, false),
                link(5, Some(3), false),
            ]
        );
        assert_eq!(links.last_of("a"), Some(5));
        assert_eq!(links.last_of("c"), Some(4));
        assert_eq!(links.last_of("d"), None);
    }
}
