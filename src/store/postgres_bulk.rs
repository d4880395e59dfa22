//! A batch written to PostgreSQL by one call of `opsflow_write_steps` (see its migration):
//! one array per column, so the server parses only the JSON values themselves, not the
//! keys, ids, hashes and numbers around them, and those as plain `json` text.

use serde_json::value::RawValue;
use sqlx::PgPool;

use super::bulk::{Bulk, InstanceRow, Refused};
use super::pg_json::JsonText;

/// Writes a whole batch, all or nothing: one round trip to the server, whose single
/// statement commits on its own. Instances are locked in id order first, so that two
/// nodes' batches never wait on each other in a cycle.
pub(super) async fn commit_bulk(pool: &PgPool, bulk: &Bulk<'_>) -> Result<(), Refused> {
    let a = &bulk.answers;
    let i: Vec<&InstanceRow<'_>> = bulk.creates.iter().chain(&bulk.updates).collect();
    let t = &bulk.traces;
    let (clears, adds) = (&bulk.link_clears, &bulk.link_adds);
    sqlx::query(
        "SELECT opsflow_write_steps($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
             $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29,
             $30, $31, $32, $33, $34, $35, $36, $37, $38, $39, $40, $41, $42, $43)",
    )
    .bind(a.iter().map(|r| r.actor).collect::<Vec<_>>())
    .bind(a.iter().map(|r| r.key).collect::<Vec<_>>())
    .bind(a.iter().map(|r| r.fingerprint).collect::<Vec<_>>())
    .bind(a.iter().map(|r| i32::from(r.status)).collect::<Vec<_>>())
    .bind(a.iter().map(|r| r.response).collect::<Vec<_>>())
    .bind(a.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .bind(bulk.replaces_before)
    .bind(i.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(i.iter().map(|r| r.process).collect::<Vec<_>>())
    .bind(i.iter().map(|r| r.definition_hash).collect::<Vec<_>>())
    .bind(i.iter().map(|r| r.state).collect::<Vec<_>>())
    .bind(i.iter().map(|r| JsonText(r.data)).collect::<Vec<_>>())
    .bind(i.iter().map(|r| r.version).collect::<Vec<_>>())
    .bind(i.iter().map(|r| r.previous).collect::<Vec<_>>())
    .bind(i.iter().map(|r| r.created_by).collect::<Vec<_>>())
    .bind(i.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .bind(i.iter().map(|r| r.updated_at).collect::<Vec<_>>())
    .bind(i.iter().map(|r| JsonText(r.votes)).collect::<Vec<_>>())
    .bind(i.iter().map(|r| JsonText(r.slas)).collect::<Vec<_>>())
    .bind(i.iter().map(|r| JsonText(r.timers)).collect::<Vec<_>>())
    .bind(i.iter().map(|r| r.next_due_at).collect::<Vec<_>>())
    .bind(i.iter().map(|r| r.trace_hash).collect::<Vec<_>>())
    .bind(clears.iter().map(|r| r.from_id).collect::<Vec<_>>())
    .bind(clears.iter().map(|r| r.relation).collect::<Vec<_>>())
    .bind(adds.iter().map(|r| r.from_id).collect::<Vec<_>>())
    .bind(adds.iter().map(|r| r.relation).collect::<Vec<_>>())
    .bind(
        adds.iter()
            .map(|r| r.to_id.unwrap_or_default())
            .collect::<Vec<_>>(),
    )
    .bind(t.iter().map(|r| r.instance_id).collect::<Vec<_>>())
    .bind(t.iter().map(|r| r.seq).collect::<Vec<_>>())
    .bind(t.iter().map(|r| r.at).collect::<Vec<_>>())
    .bind(t.iter().map(|r| r.actor).collect::<Vec<_>>())
    .bind(t.iter().map(|r| JsonText(r.roles)).collect::<Vec<_>>())
    .bind(t.iter().map(|r| r.channel).collect::<Vec<_>>())
    .bind(t.iter().map(|r| r.kind).collect::<Vec<_>>())
    .bind(t.iter().map(|r| r.transition).collect::<Vec<_>>())
    .bind(t.iter().map(|r| r.from_state).collect::<Vec<_>>())
    .bind(t.iter().map(|r| r.to_state).collect::<Vec<_>>())
    .bind(t.iter().map(|r| JsonText(r.data)).collect::<Vec<_>>())
    .bind(
        t.iter()
            .map(|r| r.detail.as_deref().map(JsonText::<&RawValue>))
            .collect::<Vec<_>>(),
    )
    .bind(t.iter().map(|r| r.comment).collect::<Vec<_>>())
    .bind(t.iter().map(|r| r.definition_hash).collect::<Vec<_>>())
    .bind(t.iter().map(|r| r.prev_hash).collect::<Vec<_>>())
    .bind(t.iter().map(|r| r.hash).collect::<Vec<_>>())
    .execute(pool)
    .await?;
    Ok(())
}
