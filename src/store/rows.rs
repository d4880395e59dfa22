//! Reading rows back into records, for every database: JSON columns are selected as text.

use serde_json::{Map, Value};
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{
    Channel, Checkpoint, CheckpointEntry, DefinitionVersion, Delivery, FactRecord, InstanceHead,
    InstanceRecord, LinkedInstance, Links, OutboxMessage, RuleDecision, StoreError, StoredAnswer,
    StoredDefinition, TraceKind, TraceRecord,
};

fn json_map(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("JSON object: {e}")))
}

pub(super) fn instance_from_row<'r, R>(row: &'r R) -> Result<InstanceRecord, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(InstanceRecord {
        id: row.try_get("id")?,
        process: row.try_get("process")?,
        definition_hash: row.try_get("definition_hash")?,
        state: row.try_get("state")?,
        data: std::sync::Arc::new(json_map(row.try_get("data")?)?),
        version: row.try_get("version")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        votes: serde_json::from_str(row.try_get("votes")?)
            .map_err(|e| StoreError::Corrupt(format!("votes: {e}")))?,
        slas: serde_json::from_str(row.try_get("slas")?)
            .map_err(|e| StoreError::Corrupt(format!("slas: {e}")))?,
        trace_hash: row.try_get("trace_hash")?,
        timers: serde_json::from_str(row.try_get("timers")?)
            .map_err(|e| StoreError::Corrupt(format!("timers: {e}")))?,
    })
}

pub(super) fn trace_from_row<'r, R>(row: &'r R) -> Result<TraceRecord, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let kind: &str = row.try_get("kind")?;
    let channel: &str = row.try_get("channel")?;
    let roles: &str = row.try_get("roles")?;
    let detail: Option<String> = row.try_get("detail")?;
    let detail: Detail = match detail {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("trace detail: {e}")))?,
        None => Detail::default(),
    };
    Ok(TraceRecord {
        instance_id: row.try_get("instance_id")?,
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        roles: serde_json::from_str(roles)
            .map_err(|e| StoreError::Corrupt(format!("roles: {e}")))?,
        channel: Channel::parse(channel)
            .ok_or_else(|| StoreError::Corrupt(format!("trace channel `{channel}`")))?,
        kind: TraceKind::parse(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("trace kind `{kind}`")))?,
        transition: row.try_get("transition")?,
        from: row.try_get("from_state")?,
        to: row.try_get("to_state")?,
        data: json_map(row.try_get("data")?)?,
        before: detail.before,
        rules: detail.rules,
        comment: row.try_get("comment")?,
        definition_hash: row.try_get("definition_hash")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// The parts of a trace row KPI facts read (columns `instance_id`, `at`, `actor`, `kind`,
/// `transition`, `to_state`, `data`).
pub(super) fn fact_from_row<'r, R>(row: &'r R) -> Result<FactRecord, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let kind: &str = row.try_get("kind")?;
    Ok(FactRecord {
        instance_id: row.try_get("instance_id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        kind: TraceKind::parse(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("trace kind `{kind}`")))?,
        transition: row.try_get("transition")?,
        to: row.try_get("to_state")?,
        data: json_map(row.try_get("data")?)?,
    })
}

pub(super) fn answer_from_row<'r, R>(row: &'r R) -> Result<StoredAnswer, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let status: i64 = row.try_get("status")?;
    Ok(StoredAnswer {
        actor: row.try_get("actor")?,
        key: row.try_get("key")?,
        fingerprint: row.try_get("fingerprint")?,
        status: u16::try_from(status)
            .map_err(|_| StoreError::Corrupt(format!("status {status}")))?,
        response: row.try_get("response")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Instances in the order their earliest running clocks fall due.
pub(super) fn earliest_due_first(mut instances: Vec<InstanceRecord>) -> Vec<InstanceRecord> {
    instances.sort_by(|a, b| (a.next_due_at(), &a.id).cmp(&(b.next_due_at(), &b.id)));
    instances
}

pub(super) fn delivery_from_row<'r, R>(row: &'r R) -> Result<Delivery, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Delivery {
        message: OutboxMessage {
            id: row.try_get("id")?,
            instance_id: row.try_get("instance_id")?,
            url: row.try_get("url")?,
            body: row.try_get("body")?,
            created_at: row.try_get("created_at")?,
        },
        attempts: row.try_get("attempts")?,
    })
}

/// The entries of a new checkpoint from rows of `id, version, trace_hash`.
pub(super) fn checkpoint_entries<R>(rows: &[R]) -> Result<Vec<CheckpointEntry>, StoreError>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    rows.iter()
        .map(|r| {
            Ok(CheckpointEntry {
                instance_id: r.try_get("id")?,
                seq: r.try_get("version")?,
                hash: r.try_get("trace_hash")?,
            })
        })
        .collect()
}

/// Checkpoints from their rows and their entries' rows (both ordered by checkpoint).
pub(super) fn checkpoints_from_rows<R>(
    heads: &[R],
    entries: &[R],
) -> Result<Vec<Checkpoint>, StoreError>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut out: Vec<Checkpoint> = Vec::with_capacity(heads.len());
    for h in heads {
        out.push(Checkpoint {
            seq: h.try_get("seq")?,
            at: h.try_get("at")?,
            prev_hash: h.try_get("prev_hash")?,
            hash: h.try_get("hash")?,
            entries: Vec::new(),
        });
    }
    for e in entries {
        let checkpoint: i64 = e.try_get("checkpoint")?;
        if let Some(c) = out.iter_mut().find(|c| c.seq == checkpoint) {
            c.entries.push(CheckpointEntry {
                instance_id: e.try_get("instance_id")?,
                seq: e.try_get("seq")?,
                hash: e.try_get("hash")?,
            });
        }
    }
    Ok(out)
}

/// Deliveries in the order their messages were raised.
pub(super) fn oldest_first(mut deliveries: Vec<Delivery>) -> Vec<Delivery> {
    deliveries.sort_by(|a, b| {
        (a.message.created_at, &a.message.id).cmp(&(b.message.created_at, &b.message.id))
    });
    deliveries
}

pub(super) fn definition_from_row<'r, R>(row: &'r R) -> Result<StoredDefinition, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(StoredDefinition {
        hash: row.try_get("hash")?,
        process: row.try_get("process")?,
        source: row.try_get("source")?,
    })
}

pub(super) fn version_from_row<'r, R>(row: &'r R) -> Result<DefinitionVersion, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(DefinitionVersion {
        version: row.try_get("version")?,
        hash: row.try_get("hash")?,
        first_seen: row.try_get("first_seen")?,
    })
}

pub(super) fn head_from_row<'r, R>(row: &'r R) -> Result<InstanceHead, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(InstanceHead {
        id: row.try_get("id")?,
        process: row.try_get("process")?,
        state: row.try_get("state")?,
    })
}

/// Links from rows of `direction` (`out` or `in`), `relation`, `id`, `process`, `state`.
pub(super) fn links_from_rows<'r, R>(rows: &'r [R]) -> Result<Links, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut links = Links::default();
    for r in rows {
        let linked = LinkedInstance {
            relation: r.try_get("relation")?,
            id: r.try_get("id")?,
            process: r.try_get("process")?,
            state: r.try_get("state")?,
        };
        let direction: &str = r.try_get("direction")?;
        if direction == "out" {
            links.outgoing.push(linked);
        } else {
            links.incoming.push(linked);
        }
    }
    Ok(links)
}

/// The `detail` column of a trace row: what a record holds beyond its fields' new values.
#[derive(Debug, Default, serde::Deserialize)]
struct Detail {
    #[serde(default)]
    before: Map<String, Value>,
    #[serde(default)]
    rules: Vec<RuleDecision>,
}

/// The `detail` column of `record` as JSON; `None` when it has nothing to add.
pub(super) fn detail_json(record: &TraceRecord) -> Option<Box<serde_json::value::RawValue>> {
    if record.before.is_empty() && record.rules.is_empty() {
        return None;
    }
    #[derive(serde::Serialize)]
    struct Borrowed<'a> {
        before: &'a Map<String, Value>,
        rules: &'a [RuleDecision],
    }
    serde_json::value::to_raw_value(&Borrowed {
        before: &record.before,
        rules: &record.rules,
    })
    .ok()
}
