//! Storage: one [`Store`] trait, records that cross it, and its implementations.
//!
//! Steps are written in exactly one place, [`Store::commit`]: the new instance row and its
//! trace records in one transaction. A later change can group many steps into one commit
//! there without touching the engine.

mod baseline;
mod batch;
mod bulk;
#[cfg(test)]
mod bulk_tests;
mod chain;
mod group;
mod hex_digest;
mod memory;
mod memory_codec;
mod memory_instance;
mod memory_trace;
mod pg_json;
mod postgres;
mod postgres_bulk;
mod rows;
mod sla;
mod sqlite;
mod sqlite_bulk;
mod sqlite_chain;
#[cfg(test)]
mod sqlite_chain_tests;
mod sqlite_writer;
mod tokens;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use serde_json::{Map, Value};

pub use crate::rules::RuleDecision;
pub use baseline::{raw_postgres_steps, raw_sqlite_steps};
pub use chain::{
    ChainBreak, ChainReport, Checkpoint, CheckpointEntry, GENESIS, canonical_json, verify_chain,
    verify_store,
};
pub use group::{GroupCommit, GroupCommitConfig, WriterStats};
pub use memory::MemoryStore;
pub use postgres::{PgStore, create_database, drop_database};
pub use sla::{Delivery, DeliveryOutcome, OutboxMessage, SlaRecord, SlaStatus};
pub use sqlite::SqliteStore;
pub use tokens::TokenRecord;

/// An instance as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceRecord {
    /// UUID v7.
    pub id: String,
    /// Process id.
    pub process: String,
    /// Hash of the definition version the instance is pinned to.
    pub definition_hash: String,
    /// Current state.
    pub state: String,
    /// Instance data, shared with the views answered of this version of the instance (a
    /// step that writes copies it first).
    pub data: Arc<Map<String, Value>>,
    /// Incremented by every step; used for optimistic concurrency.
    pub version: i64,
    /// Who created it.
    pub created_by: String,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Time of the last step, ms since the epoch.
    pub updated_at: i64,
    /// Votes of the open approval round (cleared on every change of state).
    pub votes: Vec<Vote>,
    /// SLA records of its SLA timers.
    pub slas: Vec<SlaRecord>,
    /// The hash of its last trace record: the head of its chain.
    pub trace_hash: String,
    /// Its timers' clocks. The store also keeps the earliest running due time in an
    /// indexed column, so that nodes can claim instances with a clock due.
    pub timers: Vec<TimerState>,
}

impl InstanceRecord {
    /// When its earliest running clock is due (none while none runs).
    pub fn next_due_at(&self) -> Option<i64> {
        self.timers
            .iter()
            .filter(|t| t.paused_left_ms.is_none())
            .map(|t| t.due_at)
            .min()
    }
}

/// One clock of an instance's timers, as kept on the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TimerState {
    /// The timer's name, or its warning's (`name:warning`).
    pub name: String,
    /// When it is due, ms ([`i64::MAX`] while paused).
    pub due_at: i64,
    /// While paused: the working time it has left, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_left_ms: Option<i64>,
}

/// A voter's decision on an approval transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// For.
    Approve,
    /// Against.
    Reject,
}

/// One vote of an open approval round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Vote {
    /// The approval transition voted on.
    pub transition: String,
    /// Who voted.
    pub actor: String,
    /// For or against.
    pub decision: Decision,
    /// The voter's comment.
    pub comment: Option<String>,
    /// When, ms since the epoch.
    pub at: i64,
}

/// What kind of step a trace record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TraceKind {
    /// The instance was created.
    Created,
    /// A caller fired a transition.
    Transition,
    /// The engine followed an automatic transition.
    Automatic,
    /// A vote on an approval transition.
    Vote,
    /// A timer ran out without firing a transition (it notified, or an SLA was breached).
    Timer,
    /// An SLA record changed: started, paused, resumed, warned, breached, met or missed.
    Sla,
    /// The instance moved to another version of its process (`opsflow migrate-instances`).
    Migration,
}

impl TraceKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceKind::Created => "created",
            TraceKind::Transition => "transition",
            TraceKind::Automatic => "automatic",
            TraceKind::Vote => "vote",
            TraceKind::Timer => "timer",
            TraceKind::Sla => "sla",
            TraceKind::Migration => "migration",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "created" => Some(TraceKind::Created),
            "transition" => Some(TraceKind::Transition),
            "automatic" => Some(TraceKind::Automatic),
            "vote" => Some(TraceKind::Vote),
            "timer" => Some(TraceKind::Timer),
            "sla" => Some(TraceKind::Sla),
            "migration" => Some(TraceKind::Migration),
            _ => None,
        }
    }
}

/// How a step came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A caller, over the HTTP API.
    Api,
    /// A timer that ran out.
    Timer,
    /// The engine on its own: SLA bookkeeping, instances a transition created.
    System,
}

impl Channel {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Api => "api",
            Channel::Timer => "timer",
            Channel::System => "system",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "api" => Some(Channel::Api),
            "timer" => Some(Channel::Timer),
            "system" => Some(Channel::System),
            _ => None,
        }
    }
}

/// One step of an instance's history.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TraceRecord {
    /// The instance.
    pub instance_id: String,
    /// 1, 2, 3... without gaps.
    pub seq: i64,
    /// When, ms since the epoch (UTC); serialized as RFC 3339 with milliseconds.
    #[serde(
        serialize_with = "crate::clock::serialize_ms",
        deserialize_with = "crate::clock::deserialize_ms"
    )]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    /// Who took the step.
    pub actor: String,
    /// The actor's roles at the time.
    #[schema(value_type = Vec<String>)]
    pub roles: Arc<[String]>,
    /// How the step came in.
    pub channel: Channel,
    /// What kind of step.
    pub kind: TraceKind,
    /// The transition, for transition and automatic steps.
    pub transition: Option<String>,
    /// The state before, except on creation.
    pub from: Option<String>,
    /// The state after.
    pub to: String,
    /// Fields written by this step, with their new values.
    pub data: Map<String, Value>,
    /// The values the fields of `data` had before the step (`null`: unset), for steps on
    /// an existing instance.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub before: Map<String, Value>,
    /// The rule decisions taken since the record before, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleDecision>,
    /// The caller's comment.
    pub comment: Option<String>,
    /// Definition version the step ran under.
    pub definition_hash: String,
    /// The hash of the instance's record before this one ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// SHA-256 (hex) of this record's canonical form, which includes `prev_hash`.
    pub hash: String,
}

/// The parts of a trace record that KPI facts are derived from (no hashes, roles or
/// rule decisions): what a KPI query reads of many instances.
#[derive(Debug, Clone, PartialEq)]
pub struct FactRecord {
    /// The instance.
    pub instance_id: String,
    /// When, ms since the epoch (UTC).
    pub at: i64,
    /// Who took the step.
    pub actor: String,
    /// What kind of step.
    pub kind: TraceKind,
    /// The transition, for transition and automatic steps.
    pub transition: Option<String>,
    /// The state after.
    pub to: String,
    /// Fields written by this step, with their new values.
    pub data: Map<String, Value>,
}

impl From<&TraceRecord> for FactRecord {
    fn from(r: &TraceRecord) -> Self {
        FactRecord {
            instance_id: r.instance_id.clone(),
            at: r.at,
            actor: r.actor.clone(),
            kind: r.kind,
            transition: r.transition.clone(),
            to: r.to.clone(),
            data: r.data.clone(),
        }
    }
}

/// A definition version as stored: its hash, process and source bundle (JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDefinition {
    /// Content hash.
    pub hash: String,
    /// Process id.
    pub process: String,
    /// The source bundle as JSON text.
    pub source: String,
}

/// A service report's KPI snapshot as stored: the SHA-256 (hex) of its body names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// SHA-256 (hex) of `body`.
    pub hash: String,
    /// The report instance it was collected for.
    pub instance_id: String,
    /// The snapshot as JSON text, exactly as hashed.
    pub body: String,
    /// When it was collected (ms).
    pub created_at: i64,
}

/// A stored version of a process, without its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefinitionVersion {
    /// Its number within the process: 1 for the first content seen, then 2, 3...
    pub version: i64,
    /// Content hash.
    pub hash: String,
    /// When it was first stored, ms since the epoch (UTC).
    #[serde(serialize_with = "crate::clock::serialize_ms")]
    pub first_seen: i64,
}

/// One instance written by a step.
#[derive(Debug, Clone)]
pub struct InstanceWrite {
    /// The instance after the step (its `version` already incremented); shared, so that
    /// the engine can keep it after the commit without copying it.
    pub instance: std::sync::Arc<InstanceRecord>,
    /// `None` to create the instance; otherwise the version it must still have.
    pub previous_version: Option<i64>,
}

/// The new targets of one link field of an instance (they replace the old ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkChange {
    /// The instance holding the link field.
    pub from: String,
    /// The link field.
    pub relation: String,
    /// The linked instances.
    pub to: Vec<String>,
}

/// One step to make durable, all or nothing: the instances it writes (the one fired on,
/// and any it created), their trace records and link changes, and the answer to keep for
/// retries of the request.
#[derive(Debug, Clone, Default)]
pub struct Step {
    /// Instances written, the fired one first.
    pub writes: Vec<InstanceWrite>,
    /// Trace records of every instance written, in order.
    pub trace: Vec<TraceRecord>,
    /// Link fields whose targets changed.
    pub links: Vec<LinkChange>,
    /// Notifications to deliver once the step is durable.
    pub outbox: Vec<OutboxMessage>,
    /// The answer to a request sent with an `Idempotency-Key`.
    pub answer: Option<AnswerWrite>,
}

/// A claim on due background work (instances with a clock due, outbox messages to
/// deliver): who claims, and until when no one else may take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The claiming node.
    pub claimant: String,
    /// Work due at or before this time (ms) is claimed.
    pub now: i64,
    /// The claim lapses at this time (ms), so the work of a node that died is taken again.
    pub until: i64,
    /// At most this many.
    pub limit: u32,
}

/// Adds ` AND (...)` keeping the instances `v` admits to a query on `instances`.
pub(super) fn push_visibility<'args, DB: sqlx::Database>(
    q: &mut sqlx::QueryBuilder<'args, DB>,
    v: &Visibility,
) where
    String: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
{
    if v.hidden.is_empty() && v.own_only.is_empty() {
        return;
    }
    q.push(" AND (process NOT IN (");
    let mut listed = q.separated(", ");
    for p in v.hidden.iter().chain(&v.own_only) {
        listed.push_bind(p.clone());
    }
    q.push(")");
    if !v.own_only.is_empty() {
        q.push(" OR (created_by = ")
            .push_bind(v.actor.clone())
            .push(" AND process IN (");
        let mut own = q.separated(", ");
        for p in &v.own_only {
            own.push_bind(p.clone());
        }
        q.push("))");
    }
    q.push(")");
}

/// Which instances a caller may read, by process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visibility {
    /// The caller.
    pub actor: String,
    /// Processes none of whose instances the caller may read.
    pub hidden: Vec<String>,
    /// Processes of whose instances the caller may read only those it created.
    pub own_only: Vec<String>,
}

impl Visibility {
    /// The caller may read an instance of `process` created by `created_by`.
    pub fn admits(&self, process: &str, created_by: &str) -> bool {
        if self.hidden.iter().any(|p| p == process) {
            return false;
        }
        !self.own_only.iter().any(|p| p == process) || created_by == self.actor
    }
}

/// An answer to store with a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerWrite {
    /// The answer.
    pub answer: StoredAnswer,
    /// An answer already stored under the same key is replaced only when it was given
    /// before this time (ms): it has expired.
    pub replaces_before: i64,
}

/// The first answer to a request sent with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// The caller.
    pub actor: String,
    /// The caller's key.
    pub key: String,
    /// SHA-256 of the request's method, path and body.
    pub fingerprint: String,
    /// The answer's HTTP status.
    pub status: u16,
    /// The answer's JSON body.
    pub response: String,
    /// When it was given, ms since the epoch.
    pub created_at: i64,
}

/// An instance at the other end of a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LinkedInstance {
    /// The link field (of the linking instance).
    pub relation: String,
    /// The other instance.
    pub id: String,
    /// Its process.
    pub process: String,
    /// Its current state.
    pub state: String,
}

/// Who an instance is and where it stands, without its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceHead {
    /// Instance id.
    pub id: String,
    /// Its process.
    pub process: String,
    /// Its current state.
    pub state: String,
}

/// An instance's links both ways.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Links {
    /// Instances this one links to.
    pub outgoing: Vec<LinkedInstance>,
    /// Instances that link to this one.
    pub incoming: Vec<LinkedInstance>,
}

/// Filters and paging for listing instances.
#[derive(Debug, Clone, Default)]
pub struct InstanceQuery {
    /// Only this process.
    pub process: Option<String>,
    /// Only instances in this state.
    pub state: Option<String>,
    /// Only ids after this one (the cursor).
    pub after: Option<String>,
    /// At most this many.
    pub limit: u32,
    /// Only what a caller may read (none: everything).
    pub visible: Option<Visibility>,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The instance changed since it was read (another step won the race), or an instance
    /// with that id already exists.
    #[error("the instance was changed by another step")]
    Conflict,
    /// Another request with the same idempotency key committed first.
    #[error("the idempotency key was used by another request")]
    KeyTaken,
    /// The database failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// The database could not be prepared.
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The transaction of a batch of steps failed; none of its steps was written.
    #[error("the batch's commit failed: {0}")]
    Batch(String),
    /// The write queue is full; the step was not accepted.
    #[error("too many steps are waiting to be written")]
    Busy,
    /// A stored value could not be read back.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

/// Persistence for definitions, instances and traces.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Answers when the database can be reached (`/readyz`).
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Records a new bearer token (its digest, never the token).
    async fn save_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// The token with this digest, revoked or expired ones too.
    async fn token_by_digest(&self, digest: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Every stored token, oldest first.
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Revokes the token `id` at `at`; false when there is no such token not yet revoked.
    async fn revoke_token(&self, id: &str, at: i64) -> Result<bool, StoreError>;
    /// Records a definition version (idempotent) and returns its number within its
    /// process: a content seen before keeps its number, a new one gets the next.
    async fn save_definition(&self, definition: &StoredDefinition) -> Result<i64, StoreError>;
    /// Every stored version of a process, by number.
    async fn definition_versions(
        &self,
        process: &str,
    ) -> Result<Vec<DefinitionVersion>, StoreError>;
    /// Records a content of the KPI files (idempotent) and returns its number: a content
    /// seen before keeps its number, a new one gets the next.
    async fn save_kpi_set(&self, hash: &str, source: &str) -> Result<i64, StoreError>;
    /// The files' texts (JSON) of a content of the KPI files, by hash.
    async fn kpi_set_source(&self, hash: &str) -> Result<Option<String>, StoreError>;
    /// Keeps a service report's snapshot (idempotent: a hash stored before is kept as is).
    async fn save_report_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError>;
    /// A service report's snapshot by hash.
    async fn report_snapshot(&self, hash: &str) -> Result<Option<StoredSnapshot>, StoreError>;
    /// A definition version by hash.
    async fn load_definition(&self, hash: &str) -> Result<Option<StoredDefinition>, StoreError>;
    /// One instance.
    async fn get_instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError>;
    /// Instances by filter, ordered by id.
    async fn list_instances(
        &self,
        query: &InstanceQuery,
    ) -> Result<Vec<InstanceRecord>, StoreError>;
    /// An instance's trace, in order.
    async fn trace(&self, id: &str) -> Result<Vec<TraceRecord>, StoreError>;
    /// What KPI facts read of the traces of a page of a process's instances: those with
    /// ids after `after`, at most `limit` of them, in id order, each with its records in
    /// order. One query per page where the database allows, for KPIs over many instances.
    async fn process_facts(
        &self,
        process: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<FactRecord>)>, StoreError> {
        let page = self
            .list_instances(&InstanceQuery {
                process: Some(process.to_owned()),
                state: None,
                after: after.map(str::to_owned),
                limit,
                visible: None,
            })
            .await?;
        let mut out = Vec::with_capacity(page.len());
        for i in page {
            let trace = self.trace(&i.id).await?;
            out.push((i.id, trace.iter().map(FactRecord::from).collect()));
        }
        Ok(out)
    }
    /// An instance's links both ways, with the other ends' current states.
    async fn links(&self, id: &str) -> Result<Links, StoreError>;
    /// Id, process and state of the instances with these ids that exist.
    async fn heads(&self, ids: &[String]) -> Result<Vec<InstanceHead>, StoreError>;
    /// The stored answer for a caller's idempotency key.
    async fn answer(&self, actor: &str, key: &str) -> Result<Option<StoredAnswer>, StoreError>;
    /// Deletes stored answers given before `before` (ms); returns how many.
    async fn purge_answers(&self, before: i64) -> Result<u64, StoreError>;
    /// Claims instances with a clock due at `claim.now` that no one else holds (or whose
    /// claim lapsed), earliest due first, and returns them as stored; concurrent claimants
    /// never get the same instance while its claim holds. Any write of an instance
    /// releases its claim.
    async fn claim_due_instances(&self, claim: &Claim) -> Result<Vec<InstanceRecord>, StoreError>;
    /// Claims outbox messages due for a delivery attempt (never delivered, next attempt
    /// due, no live claim), oldest first; `claim.now` and `claim.until` as for timers.
    async fn claim_deliveries(&self, claim: &Claim) -> Result<Vec<Delivery>, StoreError>;
    /// Takes a checkpoint at `at` (ms) of the instances updated since the last one (none:
    /// nothing changed, nothing written); concurrent takers cannot both write one.
    async fn write_checkpoint(&self, at: i64) -> Result<Option<Checkpoint>, StoreError>;
    /// Every checkpoint with its entries, in order.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;
    /// Records the outcome of an attempt to deliver message `id`.
    async fn record_delivery(&self, id: &str, outcome: &DeliveryOutcome) -> Result<(), StoreError>;
    /// Makes one step durable, all or nothing. Fails with [`StoreError::Conflict`] when an
    /// instance no longer has its `previous_version` (or already exists, on creation), and
    /// with [`StoreError::KeyTaken`] when its answer's key already holds an answer that has
    /// not expired.
    async fn commit(&self, step: Step) -> Result<(), StoreError>;
    /// Makes several steps durable in one commit, each all or nothing on its own: a step
    /// that fails is refused alone and the others are written. Results are in step order.
    async fn commit_batch(&self, steps: &[Step]) -> Vec<Result<(), StoreError>> {
        let mut results = Vec::with_capacity(steps.len());
        for step in steps {
            results.push(self.commit(step.clone()).await);
        }
        results
    }
    /// What each writer of a group-commit store has done (none for a store that commits
    /// each step in its caller).
    fn writer_stats(&self) -> Vec<WriterStats> {
        Vec::new()
    }
}

/// A PostgreSQL `url` naming database `name` instead of its own.
pub fn database_url(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{root}/{name}{query}")
}
