//! Firing due timers: one step a caller (the server's loop, a test) runs when it likes.
//!
//! An instance keeps its timers' clocks, and the store indexes its earliest running one. A
//! node claims instances with a clock due for a lease and, for each, fires the due clocks
//! earliest first as the actor `system`: a timer's transition, or, for a clock without one
//! (or whose transition is refused), a `timer` step that records it ran out. Each firing is
//! an ordinary step: it commits only if the instance did not move meanwhile, and its commit
//! rewrites the instance's clocks and releases the claim. Two nodes cannot claim an
//! instance at once; if a node dies mid-way, its claim lapses and another node fires the
//! clock, and only one of two racing firings can commit.

use serde_json::{Map, Value};

use super::step::Working;
use super::{Actor, Engine, EngineError, FireRequest};
use crate::definition::WARNING_SUFFIX;
use crate::store::{Claim, InstanceRecord};

/// How long a claim on an instance with a due clock holds before another node may take it.
const LEASE_MS: i64 = 60_000;

/// Clocks fired on one claimed instance in one round, at most.
const CLOCKS_PER_INSTANCE: usize = 16;

/// The actor timers fire as.
pub(super) const SYSTEM_ACTOR: &str = "system";

impl Engine {
    /// Fires the clocks due at the engine clock's now on up to `limit` instances, claimed
    /// as `claimant`; returns how many clocks ran (a transition, or a `timer` step).
    pub async fn fire_due_timers(&self, claimant: &str, limit: u32) -> Result<usize, EngineError> {
        let now = self.clock.now_ms();
        let claim = Claim {
            claimant: claimant.to_owned(),
            now,
            until: now.saturating_add(LEASE_MS),
            limit,
        };
        let mut fired = 0;
        for claimed in self.store.claim_due_instances(&claim).await? {
            let mut record = Some(claimed);
            for _ in 0..CLOCKS_PER_INSTANCE {
                let Some(r) = record.take() else { break };
                let Some((clock, due_at)) = due_clock(&r, now) else {
                    break;
                };
                self.metrics.timer_fired(now - due_at);
                let id = r.id.clone();
                if !self.fire_timer(r, &clock).await? {
                    break;
                }
                fired += 1;
                record = self.store.get_instance(&id).await?;
            }
        }
        Ok(fired)
    }

    /// Fires the clock `name` of the claimed instance `record`; whether it ran.
    async fn fire_timer(&self, record: InstanceRecord, name: &str) -> Result<bool, EngineError> {
        let loaded = self.version(&record.definition_hash).await?;
        let def = &loaded.definition;
        let (timer, warning) = match name.strip_suffix(WARNING_SUFFIX) {
            Some(timer) => (timer, true),
            None => (name, false),
        };
        let Some(t) = def.timers.get(timer) else {
            return self.ran_out(record, name, "timer no longer defined").await;
        };
        let (fire, _) = t.on_run_out(warning);
        let what = if warning { "warning" } else { "due" };
        let comment = format!("timer `{}` {what}", t.name);
        let Some(fire) = fire else {
            return self.ran_out(record, name, &comment).await;
        };
        let roles = def
            .transitions
            .get(fire)
            .map(|tr| tr.callers().to_vec())
            .unwrap_or_default();
        let actor = Actor::new(SYSTEM_ACTOR, roles);
        let request = FireRequest {
            comment: Some(comment.clone()),
            ..FireRequest::default()
        };
        let id = record.id.clone();
        let (process, started) = (record.process.clone(), std::time::Instant::now());
        let result = self
            .fire_on(record, None, &actor, fire, &request, Some(name))
            .await;
        self.count_step(&process, started, &result);
        match result {
            Ok(view) => {
                tracing::info!(
                    instance = %view.id,
                    timer = %name,
                    transition = %fire,
                    state = %view.state,
                    "timer fired"
                );
                Ok(true)
            }
            // Another step moved the instance first; its commit decided the timers.
            Err(EngineError::Conflict | EngineError::Busy) => Ok(false),
            Err(EngineError::Store(e)) => Err(EngineError::Store(e)),
            Err(refused) => {
                tracing::warn!(
                    instance = %id,
                    timer = %t.name,
                    error = %refused,
                    "timer's transition refused; it runs out without it"
                );
                let Some(record) = self.store.get_instance(&id).await? else {
                    return Ok(false);
                };
                let comment = format!("{comment}; `{fire}` refused: {refused}");
                self.ran_out(record, name, &comment).await
            }
        }
    }

    /// Records that a timer ran out without a transition: its SLA record, its
    /// notification and a trace record, committed only if the instance did not move
    /// meanwhile.
    async fn ran_out(
        &self,
        record: InstanceRecord,
        name: &str,
        comment: &str,
    ) -> Result<bool, EngineError> {
        let loaded = self.version(&record.definition_hash).await?;
        let actor = Actor::new(SYSTEM_ACTOR, Vec::<String>::new());
        let links = Value::Object(Map::new());
        let catalog = self.catalog();
        let mut w = Working::existing(
            self.env(&catalog),
            &loaded,
            &actor,
            record,
            &Map::new(),
            links,
        );
        w.channel = crate::store::Channel::Timer;
        w.ran_out(name, comment.to_owned());
        match self.commit(w, &actor, None, 200).await {
            Ok(committed) => {
                self.remember(committed, None);
                Ok(true)
            }
            Err(EngineError::Conflict | EngineError::Busy) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The name of the earliest running clock of `record` due at `now`.
fn due_clock(record: &InstanceRecord, now: i64) -> Option<(String, i64)> {
    record
        .timers
        .iter()
        .filter(|t| t.paused_left_ms.is_none() && t.due_at <= now)
        .min_by(|a, b| (a.due_at, &a.name).cmp(&(b.due_at, &b.name)))
        .map(|t| (t.name.clone(), t.due_at))
}
