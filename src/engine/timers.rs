//! Firing due timers: one step a caller (the server's loop, a test) runs when it likes.
//!
//! A node claims due timers for a lease and fires each timer's transition as the actor
//! `system`. The firing is an ordinary step: it commits only if the instance did not move
//! meanwhile, and its commit replaces the instance's timers (stopping the fired one, or
//! starting it again when its states still hold). Two nodes cannot claim a timer at once;
//! if a node dies mid-way, its claim lapses and another node fires the timer, and only one
//! of two racing firings can commit.

use serde_json::{Map, Value};

use super::step::Working;
use super::{Actor, Engine, EngineError, FireRequest};
use crate::definition::WARNING_SUFFIX;
use crate::store::{Step, TimerChange, TimerClaim, TimerRecord};

/// How long a claim on due timers holds before another node may take them.
const LEASE_MS: i64 = 60_000;

/// The actor timers fire as.
pub(super) const SYSTEM_ACTOR: &str = "system";

impl Engine {
    /// Fires up to `limit` timers due at the engine clock's now, claimed as `claimant`;
    /// returns how many fired. A timer whose transition is refused (a guard, missing
    /// data) is stopped and the refusal logged.
    pub async fn fire_due_timers(&self, claimant: &str, limit: u32) -> Result<usize, EngineError> {
        let now = self.clock.now_ms();
        let claim = TimerClaim {
            claimant: claimant.to_owned(),
            now,
            until: now.saturating_add(LEASE_MS),
            limit,
        };
        let mut fired = 0;
        for timer in self.store.claim_due_timers(&claim).await? {
            if self.fire_timer(&timer).await? {
                fired += 1;
            }
        }
        Ok(fired)
    }

    /// Fires one claimed timer; whether it ran (its transition, or its notification).
    async fn fire_timer(&self, timer: &TimerRecord) -> Result<bool, EngineError> {
        let Some(record) = self.store.get_instance(&timer.instance_id).await? else {
            return Ok(false);
        };
        let loaded = self.version(&record.definition_hash).await?;
        let def = &loaded.definition;
        let (name, warning) = match timer.name.strip_suffix(WARNING_SUFFIX) {
            Some(name) => (name, true),
            None => (timer.name.as_str(), false),
        };
        let Some(t) = def.timers.get(name).filter(|t| t.runs_in(&record.state)) else {
            // The step that left the timer's states replaced it; this is a stale row.
            self.remove_stale(timer).await?;
            return Ok(false);
        };
        let fire = match (&t.warn, warning) {
            (Some(w), true) => w.fire.as_deref(),
            _ => t.fire.as_deref(),
        };
        let what = if warning { "warning" } else { "due" };
        let comment = format!("timer `{}` {what}", t.name);
        let Some(fire) = fire else {
            return self.ran_out(record, timer, &comment).await;
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
        match self
            .fire_on(record, &actor, fire, &request, Some(&timer.name))
            .await
        {
            Ok(view) => {
                tracing::info!(instance = %view.id, timer = %timer.name, transition = %fire, state = %view.state, "timer fired");
                Ok(true)
            }
            // Another step moved the instance first; its commit decided the timers.
            Err(EngineError::Conflict | EngineError::Busy) => Ok(false),
            Err(EngineError::Store(e)) => Err(EngineError::Store(e)),
            Err(refused) => {
                tracing::warn!(instance = %timer.instance_id, timer = %t.name, error = %refused, "timer's transition refused; it runs out without it");
                let Some(record) = self.store.get_instance(&timer.instance_id).await? else {
                    return Ok(false);
                };
                let comment = format!("{comment}; `{fire}` refused: {refused}");
                self.ran_out(record, timer, &comment).await
            }
        }
    }

    /// Removes the row of a timer whose instance left its states.
    async fn remove_stale(&self, timer: &TimerRecord) -> Result<(), EngineError> {
        let timers = self
            .store
            .timers(&timer.instance_id)
            .await?
            .into_iter()
            .filter(|t| t.name != timer.name)
            .collect();
        let step = Step {
            timers: vec![TimerChange {
                instance_id: timer.instance_id.clone(),
                timers,
            }],
            ..Step::default()
        };
        Ok(self.store.commit(step).await?)
    }

    /// Records that a timer ran out without a transition: its SLA record, its
    /// notification and a trace record, committed only if the instance did not move
    /// meanwhile.
    async fn ran_out(
        &self,
        record: crate::store::InstanceRecord,
        timer: &TimerRecord,
        comment: &str,
    ) -> Result<bool, EngineError> {
        let loaded = self.version(&record.definition_hash).await?;
        let actor = Actor::new(SYSTEM_ACTOR, Vec::<String>::new());
        let links = Value::Object(Map::new());
        let mut w = Working::existing(self.env(), &loaded, &actor, record, &Map::new(), links);
        w.ran_out(&timer.name, comment.to_owned());
        match self.commit(w, &loaded.definition, &actor, None, 200).await {
            Ok(_) => Ok(true),
            Err(EngineError::Conflict | EngineError::Busy) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
