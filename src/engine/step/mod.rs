//! One step computed in memory: the transition's checks, its action, and the automatic
//! transitions that follow. Nothing here touches storage; the result is a [`Step`].

mod timers;

use std::sync::Arc;

use serde_json::{Map, Value};

use super::Actor;
use super::catalog::{Catalog, Loaded};
use super::data::{Writer, apply, check_input, missing};
use super::error::EngineError;
use crate::definition::{Approval, Create, Quorum, Script, ScriptRef, Transition};
use crate::rules::{Context, RuleDecision, RuleEngine, RuleError, RuleFailure};
use crate::store::{
    Channel, Decision, InstanceRecord, InstanceWrite, LinkChange, Step, TraceKind, TraceRecord,
    Vote,
};

/// Automatic transitions followed in one step, at most.
pub(crate) const MAX_AUTOMATIC_DEPTH: usize = 16;

/// What every instance of a step shares: the rule engine, the served definitions (for
/// instances a step creates) and the step's time.
#[derive(Clone, Copy)]
pub(crate) struct Env<'a> {
    pub(crate) rules: &'a RuleEngine,
    pub(crate) catalog: &'a Catalog,
    pub(crate) now: i64,
}

/// A link field whose targets must exist and belong to `process` before the step commits.
pub(crate) struct LinkCheck {
    pub(crate) field: String,
    pub(crate) process: String,
    pub(crate) ids: Vec<String>,
}

/// An instance being advanced. `record.version` is the number of trace records written so
/// far, so the next record's number is `version + 1`.
pub(crate) struct Working<'a> {
    env: Env<'a>,
    loaded: &'a Loaded,
    actor: &'a Actor,
    pub(crate) record: InstanceRecord,
    previous_version: Option<i64>,
    trace: Vec<TraceRecord>,
    /// Linked instances as rules see them: link field → [{id, process, state}].
    links: Value,
    /// Link field values when the step began, to find which links changed.
    original_links: Map<String, Value>,
    /// Instances this step created.
    created: Vec<Working<'a>>,
    /// The state when the step began (`None` for a new instance).
    original_state: Option<String>,
    /// The timer whose firing this step is.
    pub(crate) fired_timer: Option<String>,
    /// The fired timer ran out without taking a transition.
    fired_alone: bool,
    /// What the process's lookups found, for timer rules (see [`Working::needs_lookups`]).
    pub(crate) lookups: Value,
    /// Notifications the step raises.
    notices: Vec<Value>,
    /// Transitions taken in this step, in order (for timers' `stop_on`).
    taken: Vec<&'a str>,
    /// How the step came in (SLA records are always `system`).
    pub(crate) channel: Channel,
    /// Values fields had before this step wrote them, until a trace record takes them.
    before: Map<String, Value>,
    /// Rule decisions taken since the last trace record.
    decisions: Vec<RuleDecision>,
}

impl<'a> Working<'a> {
    /// An existing instance about to take a step with the caller's `input` applied to its
    /// data; `links` is what rules see of its links.
    pub(crate) fn existing(
        env: Env<'a>,
        loaded: &'a Loaded,
        actor: &'a Actor,
        mut record: InstanceRecord,
        input: &Map<String, Value>,
        links: Value,
    ) -> Self {
        let original_links = link_values(loaded, &record.data);
        let before = previous_values(&record.data, input);
        apply(Arc::make_mut(&mut record.data), input);
        Self {
            env,
            loaded,
            actor,
            previous_version: Some(record.version),
            original_state: Some(record.state.clone()),
            record,
            trace: Vec::new(),
            links,
            original_links,
            created: Vec::new(),
            fired_timer: None,
            fired_alone: false,
            lookups: Value::Null,
            notices: Vec::new(),
            taken: Vec::new(),
            channel: Channel::Api,
            before,
            decisions: Vec::new(),
        }
    }

    /// A new instance of `loaded` with checked `data`: the start action runs, the creation
    /// is traced, and automatic transitions from the initial state are followed.
    pub(crate) fn start(
        env: Env<'a>,
        loaded: &'a Loaded,
        actor: &'a Actor,
        data: Map<String, Value>,
        comment: Option<String>,
        channel: Channel,
    ) -> Result<Self, EngineError> {
        let def = &loaded.definition;
        let mut record = InstanceRecord {
            id: uuid::Uuid::now_v7().to_string(),
            process: def.id.clone(),
            definition_hash: def.hash.clone(),
            state: def.initial_state().to_owned(),
            data: Arc::default(),
            version: 0,
            created_by: actor.name.clone(),
            created_at: env.now,
            updated_at: env.now,
            votes: Vec::new(),
            slas: Vec::new(),
            trace_hash: crate::store::GENESIS.to_owned(),
            timers: Vec::new(),
        };
        apply(Arc::make_mut(&mut record.data), &data);
        let mut w = Self {
            env,
            loaded,
            actor,
            record,
            previous_version: None,
            trace: Vec::new(),
            links: Value::Object(Map::new()),
            original_links: Map::new(),
            created: Vec::new(),
            original_state: None,
            fired_timer: None,
            fired_alone: false,
            lookups: Value::Null,
            notices: Vec::new(),
            taken: Vec::new(),
            channel,
            before: Map::new(),
            decisions: Vec::new(),
        };
        let mut written = data.clone();
        if let Some(action) = &def.start.action {
            let writes = w.run_action(action, &data)?;
            apply(Arc::make_mut(&mut w.record.data), &writes);
            written.extend(writes);
        }
        w.record(TraceKind::Created, None, None, written, comment);
        w.settle()?;
        Ok(w)
    }

    /// The definition version the instance runs.
    pub(crate) fn loaded(&self) -> &'a Loaded {
        self.loaded
    }

    fn context<'c>(&'c self, input: &'c Map<String, Value>) -> Context<'c> {
        Context {
            instance_id: &self.record.id,
            process: &self.record.process,
            state: &self.record.state,
            actor: &self.actor.name,
            roles: &self.actor.roles,
            data: &self.record.data,
            input,
            links: &self.links,
            lookups: &self.lookups,
        }
    }

    fn rule_error(&self, script: &Script, message: String) -> EngineError {
        RuleError {
            rule: self.loaded.rules.describe(script),
            function: match &script.script {
                ScriptRef::Function(f) => Some(f.clone()),
                ScriptRef::Inline(_) => None,
            },
            failure: RuleFailure::Runtime(message),
        }
        .into()
    }

    /// Runs an action and checks what it writes against the fields.
    pub(crate) fn run_action(
        &mut self,
        script: &Script,
        input: &Map<String, Value>,
    ) -> Result<Map<String, Value>, EngineError> {
        let writes = self
            .env
            .rules
            .action(&self.loaded.rules, script, &self.context(input))?;
        self.decided(script, Value::Object(writes.clone()));
        let problems = check_input(&self.loaded.definition, &writes, Writer::Rule);
        if let Some(p) = problems.first() {
            return Err(self.rule_error(
                script,
                format!("wrote field `{}`, which {}", p.field, p.message),
            ));
        }
        Ok(writes)
    }

    fn guard_holds(
        &mut self,
        t: &Transition,
        input: &Map<String, Value>,
    ) -> Result<bool, EngineError> {
        match &t.guard {
            None => Ok(true),
            Some(g) => self.guard(g, input),
        }
    }

    /// Runs a guard (or a creation's condition) and keeps the decision.
    fn guard(&mut self, script: &Script, input: &Map<String, Value>) -> Result<bool, EngineError> {
        let holds = self
            .env
            .rules
            .guard(&self.loaded.rules, script, &self.context(input))?;
        self.decided(script, Value::Bool(holds));
        Ok(holds)
    }

    /// Keeps the decision `script` took, for the next trace record.
    pub(crate) fn decided(&mut self, script: &Script, result: Value) {
        let decision = self.loaded.rules.decision(script, result);
        self.decisions.push(decision);
    }

    /// Applies fields a rule or a created instance wrote, keeping the values they replace.
    fn write(&mut self, writes: &Map<String, Value>) {
        for (k, v) in previous_values(&self.record.data, writes) {
            self.before.entry(k).or_insert(v);
        }
        apply(Arc::make_mut(&mut self.record.data), writes);
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
        self.record.updated_at = self.env.now;
        let before: Map<String, Value> = if self.before.is_empty() {
            Map::new()
        } else {
            written
                .keys()
                .filter_map(|k| self.before.remove(k).map(|v| (k.clone(), v)))
                .collect()
        };
        let mut r = TraceRecord {
            instance_id: self.record.id.clone(),
            seq: self.record.version,
            at: self.env.now,
            actor: self.actor.name.clone(),
            roles: self.actor.roles.clone(),
            channel: if kind == TraceKind::Sla {
                Channel::System
            } else {
                self.channel
            },
            kind,
            transition: transition.map(str::to_owned),
            from,
            to: self.record.state.clone(),
            data: written,
            before,
            rules: std::mem::take(&mut self.decisions),
            comment,
            definition_hash: self.record.definition_hash.clone(),
            prev_hash: String::new(),
            hash: String::new(),
        };
        r.chain_after(std::mem::take(&mut self.record.trace_hash));
        self.record.trace_hash.clone_from(&r.hash);
        self.trace.push(r);
    }

    /// Fires a caller's transition whose roles and input were already checked: guard,
    /// action, move, trace.
    pub(crate) fn fire(
        &mut self,
        t: &'a Transition,
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

    /// Records that timer clock `name` ran out without taking a transition (it has none, or
    /// its transition was refused): the instance stays where it is.
    pub(crate) fn ran_out(&mut self, name: &str, comment: String) {
        self.fired_timer = Some(name.to_owned());
        self.fired_alone = true;
        let state = self.record.state.clone();
        self.record(
            TraceKind::Timer,
            None,
            Some(state),
            Map::new(),
            Some(comment),
        );
    }

    /// Records a vote on an approval transition, then takes the transition once the quorum
    /// approved, or goes to the rejection state once enough voters rejected.
    pub(crate) fn vote(
        &mut self,
        t: &'a Transition,
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
            at: self.env.now,
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
                let n = self
                    .env
                    .rules
                    .count(&self.loaded.rules, script, &self.context(&empty))?;
                self.decided(script, Value::from(n));
                n
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
        t: &'a Transition,
        input: Map<String, Value>,
        kind: TraceKind,
        comment: Option<String>,
    ) -> Result<(), EngineError> {
        // What the action and the created instances write, after the caller's input.
        let mut further = Map::new();
        if let Some(action) = &t.action {
            let writes = self.run_action(action, &input)?;
            self.write(&writes);
            further.extend(writes);
        }
        for c in &t.creates {
            if let Some((field, value)) = self.create_linked(c, &input)? {
                let mut link = Map::new();
                link.insert(field, value);
                self.write(&link);
                further.extend(link);
            }
        }
        let mut written = input;
        written.extend(further);
        let from = std::mem::replace(&mut self.record.state, t.to.clone());
        self.record.votes.clear();
        self.check_entry()?;
        self.taken.push(&t.name);
        if !t.notify.is_empty() {
            let notice = serde_json::json!({
                "event": "transition",
                "transition": t.name,
                "title": t.title,
                "from": from,
                "to": t.to,
                "notify": t.notify,
            });
            self.raise(notice, self.env.now);
        }
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
            let mut only_automatic = true;
            let mut chosen = None;
            for t in def.transitions_from(&self.record.state) {
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
                None if only_automatic && !def.states[&self.record.state].is_final => {
                    return Err(EngineError::Stuck(self.record.state.clone()));
                }
                None => return Ok(()),
            }
        }
        Err(EngineError::AutomaticLoop(MAX_AUTOMATIC_DEPTH))
    }

    /// Creates the instance `c` describes when its condition holds; returns the link field
    /// of this instance and its new value.
    fn create_linked(
        &mut self,
        c: &Create,
        input: &Map<String, Value>,
    ) -> Result<Option<(String, Value)>, EngineError> {
        if let Some(when) = &c.when
            && !self.guard(when, input)?
        {
            return Ok(None);
        }
        let data = match &c.data {
            Some(script) => {
                let data =
                    self.env
                        .rules
                        .action(&self.loaded.rules, script, &self.context(input))?;
                self.decided(script, Value::Object(data.clone()));
                data
            }
            None => Map::new(),
        };
        let target: &'a Loaded = self
            .env
            .catalog
            .get(&c.process)
            .ok_or_else(|| EngineError::UnknownProcess(c.process.clone()))?;
        let tdef = &target.definition;
        let mut problems = check_input(tdef, &data, Writer::Caller);
        problems.extend(missing(
            &data,
            tdef.fields.values().filter(|f| f.required).map(|f| &f.name),
        ));
        if let Some(p) = problems.first() {
            let message = format!(
                "the new `{}` instance's field `{}` {}",
                c.process, p.field, p.message
            );
            return Err(match &c.data {
                Some(script) => self.rule_error(script, message),
                None => EngineError::InvalidData(problems),
            });
        }
        let comment = Some(format!(
            "created by {} {}",
            self.record.process, self.record.id
        ));
        let child = Working::start(self.env, target, self.actor, data, comment, Channel::System)?;
        let id = Value::String(child.record.id.clone());
        self.created.push(child);
        let value = match &self.loaded.definition.fields[&c.link].field_type {
            crate::definition::FieldType::Links { .. } => {
                let mut ids = match self.record.data.get(&c.link) {
                    Some(Value::Array(a)) => a.clone(),
                    _ => Vec::new(),
                };
                ids.push(id);
                Value::Array(ids)
            }
            _ => id,
        };
        Ok(Some((c.link.clone(), value)))
    }

    /// Link fields whose targets changed in this step, for every instance it writes.
    pub(crate) fn link_checks(&self) -> Vec<LinkCheck> {
        let mut checks = Vec::new();
        let current = link_values(self.loaded, &self.record.data);
        for f in self.loaded.definition.link_fields() {
            let (field, Some(process)) = (&f.name, f.field_type.linked_process()) else {
                continue;
            };
            if current.get(field) != self.original_links.get(field) {
                checks.push(LinkCheck {
                    field: field.clone(),
                    process: process.to_owned(),
                    ids: current
                        .get(field)
                        .map(|v| f.field_type.linked_ids(v))
                        .unwrap_or_default(),
                });
            }
        }
        for c in &self.created {
            checks.extend(c.link_checks());
        }
        checks
    }

    /// The instances of this step created in it, by id, with their process.
    pub(crate) fn created_ids(&self) -> Vec<(String, String)> {
        let mut ids = Vec::new();
        for c in &self.created {
            ids.push((c.record.id.clone(), c.record.process.clone()));
            ids.extend(c.created_ids());
        }
        ids
    }

    /// The notifications the step raises (of the instances it created too).
    pub(crate) fn take_notices(&mut self) -> Vec<Value> {
        let mut notices = std::mem::take(&mut self.notices);
        for c in &mut self.created {
            notices.extend(c.take_notices());
        }
        notices
    }

    /// Everything the step writes, this instance first.
    pub(crate) fn into_step(self) -> Step {
        let mut step = Step::default();
        self.collect(&mut step);
        step
    }

    fn collect(self, step: &mut Step) {
        let current = link_values(self.loaded, &self.record.data);
        for f in self.loaded.definition.link_fields() {
            let field = &f.name;
            if current.get(field) != self.original_links.get(field) {
                step.links.push(LinkChange {
                    from: self.record.id.clone(),
                    relation: field.clone(),
                    to: current
                        .get(field)
                        .map(|v| f.field_type.linked_ids(v))
                        .unwrap_or_default(),
                });
            }
        }
        step.writes.push(InstanceWrite {
            instance: std::sync::Arc::new(self.record),
            previous_version: self.previous_version,
        });
        step.trace.extend(self.trace);
        for c in self.created {
            c.collect(step);
        }
    }
}

/// The values of a definition's link fields in `data`.
fn link_values(loaded: &Loaded, data: &Map<String, Value>) -> Map<String, Value> {
    (loaded.definition.link_fields())
        .filter_map(|f| data.get(&f.name).map(|v| (f.name.clone(), v.clone())))
        .collect()
}

/// The values `data` holds for the keys of `writes` (`null` where it holds none).
fn previous_values(data: &Map<String, Value>, writes: &Map<String, Value>) -> Map<String, Value> {
    writes
        .keys()
        .map(|k| (k.clone(), data.get(k).cloned().unwrap_or(Value::Null)))
        .collect()
}
