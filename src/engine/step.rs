//! One step computed in memory: the transition's checks, its action, and the automatic
//! transitions that follow. Nothing here touches storage; the result is a [`Step`].

use serde_json::{Map, Value};

use super::Actor;
use super::catalog::Loaded;
use super::data::{Writer, apply, check_input, missing};
use super::error::EngineError;
use crate::definition::{Approval, Quorum, Script, Transition};
use crate::rules::{Context, RuleEngine, RuleError, RuleFailure};
use crate::store::{Decision, InstanceRecord, Step, TraceKind, TraceRecord, Vote};

/// Automatic transitions followed in one step, at most.
pub(crate) const MAX_AUTOMATIC_DEPTH: usize = 16;

/// An instance being advanced. `record.version` is the number of trace records written so
/// far, so the next record's number is `version + 1`.
pub(crate) struct Working<'a> {
    pub(crate) loaded: &'a Loaded,
    pub(crate) rules: &'a RuleEngine,
    pub(crate) actor: &'a Actor,
    pub(crate) record: InstanceRecord,
    pub(crate) previous_version: Option<i64>,
    pub(crate) trace: Vec<TraceRecord>,
    pub(crate) now: i64,
}

impl Working<'_> {
    fn context<'c>(&'c self, input: &'c Map<String, Value>) -> Context<'c> {
        Context {
            instance_id: &self.record.id,
            process: &self.record.process,
            state: &self.record.state,
            actor: &self.actor.name,
            roles: &self.actor.roles,
            data: &self.record.data,
            input,
        }
    }

    /// Runs an action and checks what it writes against the fields.
    pub(crate) fn run_action(
        &self,
        script: &Script,
        input: &Map<String, Value>,
    ) -> Result<Map<String, Value>, EngineError> {
        let writes = self
            .rules
            .action(&self.loaded.rules, script, &self.context(input))?;
        let problems = check_input(&self.loaded.definition, &writes, Writer::Rule);
        if let Some(p) = problems.first() {
            return Err(RuleError {
                rule: format!(
                    "action at {} {}",
                    self.loaded.definition.source.file, script.path
                ),
                function: match &script.script {
                    crate::definition::ScriptRef::Function(f) => Some(f.clone()),
                    crate::definition::ScriptRef::Inline(_) => None,
                },
                failure: RuleFailure::Runtime(format!(
                    "wrote field `{}`, which {}",
                    p.field, p.message
                )),
            }
            .into());
        }
        Ok(writes)
    }

    fn guard_holds(&self, t: &Transition, input: &Map<String, Value>) -> Result<bool, EngineError> {
        match &t.guard {
            None => Ok(true),
            Some(g) => Ok(self
                .rules
                .guard(&self.loaded.rules, g, &self.context(input))?),
        }
    }

    pub(crate) fn record(
        &mut self,
        kind: TraceKind,
        transition: Option<&str>,
        from: Option<String>,
        written: Map<String, Value>,
        comment: Option<String>,
    ) {
        self.record.version += 1;
        self.record.updated_at = self.now;
        self.trace.push(TraceRecord {
            instance_id: self.record.id.clone(),
            seq: self.record.version,
            at: self.now,
            actor: self.actor.name.clone(),
            roles: self.actor.roles.clone(),
            kind,
            transition: transition.map(str::to_owned),
            from,
            to: self.record.state.clone(),
            data: written,
            comment,
            definition_hash: self.record.definition_hash.clone(),
        });
    }

    /// Fires a caller's transition whose roles and input were already checked: guard,
    /// action, move, trace.
    pub(crate) fn fire(
        &mut self,
        t: &Transition,
        input: Map<String, Value>,
        comment: Option<String>,
    ) -> Result<(), EngineError> {
        if !self.guard_holds(t, &input)? {
            let g = t
                .guard
                .as_ref()
                .map(|g| format!("{} {}", self.loaded.definition.source.file, g.path));
            return Err(EngineError::GuardRefused {
                transition: t.name.clone(),
                rule: g.unwrap_or_default(),
            });
        }
        self.take(t, input, TraceKind::Transition, comment)
    }

    /// Records a vote on an approval transition, then takes the transition once the quorum
    /// approved, or goes to the rejection state once enough voters rejected.
    pub(crate) fn vote(
        &mut self,
        t: &Transition,
        approval: &Approval,
        decision: Decision,
        input: Map<String, Value>,
        comment: Option<String>,
    ) -> Result<(), EngineError> {
        self.record.votes.push(Vote {
            transition: t.name.clone(),
            actor: self.actor.name.clone(),
            decision,
            comment: comment.clone(),
            at: self.now,
        });
        let mut written = input;
        written.insert(
            "vote".into(),
            serde_json::to_value(decision).unwrap_or(Value::Null),
        );
        let state = self.record.state.clone();
        self.record(
            TraceKind::Vote,
            Some(&t.name),
            Some(state),
            written,
            comment,
        );

        let tally = |d: Decision| {
            self.record
                .votes
                .iter()
                .filter(|v| v.transition == t.name && v.decision == d)
                .count() as u32
        };
        let (approvals, rejections) = (tally(Decision::Approve), tally(Decision::Reject));
        if rejections >= approval.rejections {
            let mut outcome = Map::new();
            outcome.insert("outcome".into(), Value::from("rejected"));
            let from = std::mem::replace(&mut self.record.state, approval.reject_to.clone());
            self.record.votes.clear();
            self.check_entry()?;
            self.record(
                TraceKind::Transition,
                Some(&t.name),
                Some(from),
                outcome,
                None,
            );
            return Ok(());
        }
        let empty = Map::new();
        let quorum = match &approval.quorum {
            Quorum::Count(n) => *n,
            Quorum::Rule(script) => {
                self.rules
                    .count(&self.loaded.rules, script, &self.context(&empty))?
            }
        };
        if approvals >= quorum {
            if !self.guard_holds(t, &empty)? {
                let rule = t.guard.as_ref().map(|g| self.loaded.rules.describe(g));
                return Err(EngineError::GuardRefused {
                    transition: t.name.clone(),
                    rule: rule.unwrap_or_default(),
                });
            }
            let mut outcome = Map::new();
            outcome.insert("outcome".into(), Value::from("approved"));
            outcome.insert("approvals".into(), Value::from(approvals));
            self.take(t, outcome, TraceKind::Transition, None)?;
        }
        Ok(())
    }

    /// Refuses entry to the current state while a field it requires is empty.
    fn check_entry(&self) -> Result<(), EngineError> {
        let state = &self.loaded.definition.states[&self.record.state];
        let problems = missing(&self.record.data, state.requires.iter());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EngineError::InvalidData(problems))
        }
    }

    fn take(
        &mut self,
        t: &Transition,
        input: Map<String, Value>,
        kind: TraceKind,
        comment: Option<String>,
    ) -> Result<(), EngineError> {
        let mut written = input.clone();
        if let Some(action) = &t.action {
            let writes = self.run_action(action, &input)?;
            apply(&mut self.record.data, &writes);
            written.extend(writes);
        }
        let from = std::mem::replace(&mut self.record.state, t.to.clone());
        self.record.votes.clear();
        self.check_entry()?;
        self.record(kind, Some(&t.name), Some(from), written, comment);
        Ok(())
    }

    /// Follows automatic transitions from the current state: the first, in file order,
    /// whose guard holds. Refuses when the instance would rest in a state that only
    /// automatic transitions leave.
    pub(crate) fn settle(&mut self) -> Result<(), EngineError> {
        let empty = Map::new();
        for _ in 0..MAX_AUTOMATIC_DEPTH {
            let def = &self.loaded.definition;
            let state = self.record.state.clone();
            let mut only_automatic = true;
            let mut chosen = None;
            for t in def.transitions_from(&state) {
                if !t.auto {
                    only_automatic = false;
                    continue;
                }
                if self.guard_holds(t, &empty)? {
                    chosen = Some(t);
                    break;
                }
            }
            match chosen {
                Some(t) => self.take(t, Map::new(), TraceKind::Automatic, None)?,
                None if only_automatic && !def.states[&state].is_final => {
                    return Err(EngineError::Stuck(state));
                }
                None => return Ok(()),
            }
        }
        Err(EngineError::AutomaticLoop(MAX_AUTOMATIC_DEPTH))
    }

    pub(crate) fn into_step(self) -> Step {
        Step {
            instance: self.record,
            previous_version: self.previous_version,
            trace: self.trace,
        }
    }
}
