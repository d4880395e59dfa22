//! SLA records: what an instance's SLA timers measured, kept on the instance itself so that
//! every step that changes them is written with the step, and outbox messages that carry
//! notifications out of a step's transaction to webhooks.

use serde::{Deserialize, Serialize};

/// One SLA metric of an instance (a timer marked `sla: true`): when it started, how long
/// it was paused, its deadline, the working time it used, and whether it was met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaRecord {
    /// The timer's name (`first_response`, `resolution`).
    pub metric: String,
    /// The working time allowed, in ms.
    pub target_ms: i64,
    /// The business calendar it counts in (all time when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    /// When it started, ms.
    pub started_at: i64,
    /// When it runs out (ms) while it runs; `None` while paused or stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<i64>,
    /// Working time used so far, in ms (up to the last pause or stop).
    pub elapsed_ms: i64,
    /// Since when it has been counting (ms), while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_since: Option<i64>,
    /// Wall-clock time spent paused, in ms (closed pauses).
    pub paused_ms: i64,
    /// Since when it has been paused (ms), while paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_since: Option<i64>,
    /// When its warning was given, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warned_at: Option<i64>,
    /// When it was breached, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breached_at: Option<i64>,
    /// When it stopped, ms; a stopped record does not start again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<i64>,
}

/// Where an SLA record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlaStatus {
    /// Counting down, not yet breached.
    Running,
    /// Paused, not yet breached.
    Paused,
    /// Breached and not yet stopped.
    Breached,
    /// Stopped within its target.
    Met,
    /// Stopped after its deadline.
    Missed,
}

impl SlaRecord {
    /// Where it stands.
    pub fn status(&self) -> SlaStatus {
        match (self.stopped_at, self.breached_at) {
            (Some(_), None) => SlaStatus::Met,
            (Some(_), Some(_)) => SlaStatus::Missed,
            (None, Some(_)) => SlaStatus::Breached,
            (None, None) if self.paused_since.is_some() => SlaStatus::Paused,
            (None, None) => SlaStatus::Running,
        }
    }
}

/// A notification to deliver to one webhook, written in the transaction of the step that
/// raised it and delivered at least once afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// The delivery id (UUID v7): the same on every attempt, so receivers can drop repeats.
    pub id: String,
    /// The instance the notification is about.
    pub instance_id: String,
    /// Where it goes.
    pub url: String,
    /// The JSON body.
    pub body: String,
    /// When it was raised, ms.
    pub created_at: i64,
}

/// A message due for a delivery attempt, as claimed by a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message.
    pub message: OutboxMessage,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// The outcome of a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver accepted it; it is done.
    Delivered {
        /// When, ms.
        at: i64,
    },
    /// It failed; try again at `retry_at` (ms).
    Failed {
        /// When to try again, ms.
        retry_at: i64,
        /// What went wrong, for operators.
        error: String,
    },
}
