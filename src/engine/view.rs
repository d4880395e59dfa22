//! What callers see of an instance: its record plus what they may do next.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use super::Actor;
use super::catalog::Loaded;
use crate::clock::Moment;
use crate::store::{InstanceRecord, Links, SlaRecord, SlaStatus, TimerState, Vote};

/// A transition the caller may fire now.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AllowedTransition {
    /// Its name.
    pub name: String,
    /// Its title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The state it leads to.
    pub to: String,
    /// Fields that must hold a value once the input is applied.
    pub requires: Vec<String>,
    /// It has a guard that may still refuse it.
    pub guarded: bool,
    /// Firing it casts a vote (send `"vote": "approve"` or `"reject"`).
    pub approval: bool,
}

/// A timer of an instance as answered to a caller.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TimerView {
    /// The timer's name in the process file.
    pub name: String,
    /// When it is due, RFC 3339 UTC; absent while paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub due_at: Option<Moment>,
    /// While paused: the working time it has left, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_left_ms: Option<i64>,
}

impl From<&TimerState> for TimerView {
    fn from(t: &TimerState) -> Self {
        Self {
            name: t.name.clone(),
            due_at: t.paused_left_ms.is_none().then_some(Moment(t.due_at)),
            paused_left_ms: t.paused_left_ms,
        }
    }
}

/// An SLA record as answered to a caller; times are RFC 3339 UTC.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct SlaView {
    /// The SLA timer (`first_response`, `resolution`).
    pub metric: String,
    /// `running`, `paused`, `breached` (not yet stopped), `met` or `missed`.
    pub status: SlaStatus,
    /// The working time allowed, in ms.
    pub target_ms: i64,
    /// The business calendar it counts in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    /// When it started.
    #[schema(value_type = String)]
    pub started_at: Moment,
    /// When it runs out, while it runs and is not yet breached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub deadline: Option<Moment>,
    /// Working time used up to its last pause or stop, in ms.
    pub elapsed_ms: i64,
    /// Wall-clock time spent paused (closed pauses), in ms.
    pub paused_ms: i64,
    /// Paused since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub paused_since: Option<Moment>,
    /// When its warning was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub warned_at: Option<Moment>,
    /// When it was breached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub breached_at: Option<Moment>,
    /// When it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub stopped_at: Option<Moment>,
}

impl From<&SlaRecord> for SlaView {
    fn from(r: &SlaRecord) -> Self {
        Self {
            status: r.status(),
            metric: r.metric.clone(),
            target_ms: r.target_ms,
            calendar: r.calendar.clone(),
            started_at: Moment(r.started_at),
            deadline: r.deadline.map(Moment),
            elapsed_ms: r.elapsed_ms,
            paused_ms: r.paused_ms,
            paused_since: r.paused_since.map(Moment),
            warned_at: r.warned_at.map(Moment),
            breached_at: r.breached_at.map(Moment),
            stopped_at: r.stopped_at.map(Moment),
        }
    }
}

/// An instance as answered to a caller.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct InstanceView {
    /// Instance id.
    pub id: String,
    /// Process id.
    pub process: String,
    /// Hash of the pinned definition version.
    pub definition_hash: String,
    /// Current state.
    pub state: String,
    /// The state is final: nothing more can happen.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Version, incremented by each step (the `ETag`).
    pub version: i64,
    /// Instance data.
    #[schema(value_type = Map<String, Value>)]
    pub data: Arc<Map<String, Value>>,
    /// Who created it.
    pub created_by: String,
    /// When, RFC 3339 UTC.
    #[schema(value_type = String)]
    pub created_at: Moment,
    /// Last step, RFC 3339 UTC.
    #[schema(value_type = String)]
    pub updated_at: Moment,
    /// Transitions the caller may fire now.
    #[schema(value_type = Vec<AllowedTransition>)]
    pub allowed_transitions: Arc<[AllowedTransition]>,
    /// Votes cast in the open approval round of the current state.
    pub votes: Vec<Vote>,
    /// Linked instances both ways (on `GET` of one instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Links>,
    /// SLA records of its SLA timers.
    #[serde(default)]
    pub slas: Vec<SlaView>,
    /// Timers running or paused (on `GET` of one instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timers: Option<Vec<TimerView>>,
    /// This is the stored answer to an earlier request with the same idempotency key.
    #[serde(skip)]
    pub replayed: bool,
    /// The HTTP status of the answer, when it is a stored one.
    #[serde(skip)]
    pub status: u16,
}

impl InstanceView {
    /// The view of `record`, a version of `loaded`, for `actor`.
    pub(crate) fn new(record: &InstanceRecord, loaded: &Loaded, actor: &Actor) -> Self {
        let def = &loaded.definition;
        Self {
            is_final: def.states.get(&record.state).is_some_and(|s| s.is_final),
            allowed_transitions: loaded.offers.allowed(&record.state, actor),
            id: record.id.clone(),
            process: record.process.clone(),
            definition_hash: record.definition_hash.clone(),
            state: record.state.clone(),
            version: record.version,
            data: record.data.clone(),
            created_by: record.created_by.clone(),
            created_at: Moment(record.created_at),
            updated_at: Moment(record.updated_at),
            votes: record.votes.clone(),
            slas: record.slas.iter().map(SlaView::from).collect(),
            links: None,
            timers: None,
            replayed: false,
            status: 0,
        }
    }
}
