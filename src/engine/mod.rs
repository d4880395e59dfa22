//! The engine: creates instances and fires transitions.
//!
//! A step runs in this order: load the instance and its pinned definition → check the
//! actor's roles → check the data → guard → action → automatic transitions (bounded) →
//! commit the new state and its trace records in one store transaction → answer.

mod admission;
mod audit;
mod catalog;
mod data;
mod error;
mod idempotency;
mod links;
mod migration;
mod offers;
mod recent;
mod step;
mod timers;
mod versions;
mod view;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde_json::{Map, Value};
use tracing::Instrument as _;

pub use audit::{AuditQuery, CaseTrace, cases};
pub use catalog::{Catalog, Loaded, load_calendars, read_rule_library};
pub use error::{EngineError, FieldProblem};
pub use idempotency::Idempotency;
pub use migration::{InstanceMigration, MigrationReport, MigrationRequest, Verdict};
pub use versions::{Installation, Installed};
pub use view::{AllowedTransition, InstanceView, SlaView, TimerView};

use crate::clock::Clock;
use crate::definition::Definition;
use crate::definition::Readable;
use crate::rules::RuleEngine;
use crate::store::{
    Channel, Decision, InstanceQuery, InstanceRecord, Store, StoreError, TraceRecord, Visibility,
};
use data::{Writer, check_input, missing};
use recent::RecentInstances;
use step::{Env, Working};
use versions::Pinned;

/// Who is acting, with which roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The actor's name, recorded in the trace.
    pub name: String,
    /// The roles the actor holds; shared with the trace records of its steps.
    pub roles: Arc<[String]>,
}

impl Actor {
    /// An actor with roles.
    pub fn new(
        name: impl Into<String>,
        roles: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            roles: roles.into_iter().map(Into::into).collect(),
        }
    }

    /// Holds at least one of `roles`.
    pub fn has_any_role(&self, roles: &[String]) -> bool {
        roles.iter().any(|r| self.roles.contains(r))
    }

    /// Refuses `action` unless the actor holds `role`.
    pub fn require(&self, role: &str, action: &str) -> Result<(), EngineError> {
        if self.roles.iter().any(|r| r == role) {
            Ok(())
        } else {
            Err(EngineError::Forbidden {
                actor: self.name.clone(),
                action: action.to_owned(),
                needed: vec![role.to_owned()],
            })
        }
    }
}

/// The role that may reload definitions, read the reload status and migrate instances.
pub const ADMIN_ROLE: &str = "admin";

/// How long answers to requests with an idempotency key are kept unless configured.
pub const DEFAULT_ANSWER_TTL_MS: i64 = 24 * 3600 * 1000;

/// A request to fire a transition.
#[derive(Debug, Clone, Default)]
pub struct FireRequest {
    /// Fields to write.
    pub data: Map<String, Value>,
    /// A comment for the trace.
    pub comment: Option<String>,
    /// When set, the instance must still be at this version (`If-Match`).
    pub expected_version: Option<i64>,
    /// The caller's vote, for an approval transition.
    pub vote: Option<Decision>,
    /// The caller's idempotency key and the request's fingerprint.
    pub idempotency: Option<Idempotency>,
    /// Fields opsflow itself writes with the step on the caller's behalf (a service
    /// report's KPI snapshot): checked like a rule's writes, so computed fields may be
    /// among them. Adapters fill it; it is never read from a request body.
    pub computed: Map<String, Value>,
}

impl FireRequest {
    /// What the step writes: the caller's data, then the computed fields.
    pub(crate) fn writes(&self) -> std::borrow::Cow<'_, Map<String, Value>> {
        if self.computed.is_empty() {
            return std::borrow::Cow::Borrowed(&self.data);
        }
        let mut all = self.data.clone();
        all.extend(self.computed.iter().map(|(k, v)| (k.clone(), v.clone())));
        std::borrow::Cow::Owned(all)
    }
}

/// A page of instances.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct InstancePage {
    /// The instances.
    pub items: Vec<InstanceView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A committed step: its answer, and the instances it wrote (none when the answer is a
/// replay).
struct Committed {
    view: InstanceView,
    written: Vec<Arc<InstanceRecord>>,
}

/// Creates and advances instances.
#[derive(Debug)]
pub struct Engine {
    /// The definitions served now; a reload swaps in another set.
    catalog: RwLock<Arc<Catalog>>,
    rules: Arc<RuleEngine>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Definition versions pinned by running instances, by hash (every step looks its
    /// version up; the hashes are SHA-256s opsflow computed, so a fast hash suits them).
    versions: RwLock<foldhash::HashMap<String, Arc<Loaded>>>,
    /// Changes to `catalog` and `versions` counted (see [`versions::Pinned`]).
    generation: AtomicU64,
    /// How long answers to requests with an idempotency key are kept, in ms.
    answer_ttl_ms: i64,
    /// Instances as this engine last wrote them.
    recent: RecentInstances,
    /// Where notifications go: one outbox message per URL.
    webhooks: Vec<String>,
    /// What this engine counts (`/metrics`).
    metrics: Arc<crate::metrics::Metrics>,
}

impl Engine {
    /// An engine serving `catalog`. Call [`Engine::register_definitions`] before serving so
    /// that every current version is stored.
    pub fn new(
        catalog: Catalog,
        rules: Arc<RuleEngine>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let versions = catalog
            .iter()
            .map(|l| (l.definition.hash.clone(), l.clone()))
            .collect();
        Self {
            catalog: RwLock::new(Arc::new(catalog)),
            rules,
            store,
            clock,
            versions: RwLock::new(versions),
            generation: AtomicU64::new(0),
            answer_ttl_ms: DEFAULT_ANSWER_TTL_MS,
            recent: RecentInstances::with_capacity(recent::DEFAULT_CAPACITY),
            webhooks: Vec::new(),
            metrics: Arc::default(),
        }
    }

    /// What this engine counts.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Counts a step of `process` that started at `started`.
    pub(crate) fn count_step<T>(
        &self,
        process: &str,
        started: Instant,
        result: &Result<T, EngineError>,
    ) {
        use crate::metrics::StepOutcome;
        let outcome = match result {
            Ok(_) => StepOutcome::Done,
            Err(EngineError::Rule(_)) => StepOutcome::RuleFailed,
            Err(_) => StepOutcome::Refused,
        };
        self.metrics.step(process, outcome, started.elapsed());
    }

    /// Sends notifications (timer warnings and breaches, transitions that notify) to these
    /// webhook URLs, through the outbox; with none they are only logged.
    pub fn with_webhooks(mut self, urls: Vec<String>) -> Self {
        self.webhooks = urls;
        self
    }

    /// The engine clock's now, ms.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Takes a checkpoint of the instances' chain heads changed since the last one (see
    /// [`crate::store::Checkpoint`]); `None` when nothing changed.
    pub async fn write_checkpoint(&self) -> Result<Option<crate::store::Checkpoint>, EngineError> {
        Ok(self.store.write_checkpoint(self.clock.now_ms()).await?)
    }

    /// Keeps answers to requests with an idempotency key for `ttl` (default 24 hours).
    pub fn with_answer_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.answer_ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Remembers up to `capacity` instances as this engine last wrote them, rounded up to
    /// a multiple of 32 (default 16,384; 0 turns the memory off, so every step reads its
    /// instance).
    pub fn with_instance_cache(mut self, capacity: usize) -> Self {
        self.recent = RecentInstances::with_capacity(capacity);
        self
    }

    /// The rule engine.
    pub fn rule_engine(&self) -> &RuleEngine {
        &self.rules
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Creates an instance of `process` with `data`, runs the start action and follows
    /// automatic transitions from the initial state.
    #[tracing::instrument(level = "debug", skip_all, fields(process, actor = %actor.name))]
    pub async fn create(
        &self,
        actor: &Actor,
        process: &str,
        data: Map<String, Value>,
        comment: Option<String>,
        idempotency: Option<Idempotency>,
    ) -> Result<InstanceView, EngineError> {
        if let Some(view) = self.replay(actor, idempotency.as_ref()).await? {
            return Ok(view);
        }
        let catalog = self.catalog();
        let loaded = catalog
            .get(process)
            .ok_or_else(|| EngineError::UnknownProcess(process.to_owned()))?;
        let started = Instant::now();
        let result = self
            .create_from(&catalog, loaded, actor, data, comment, idempotency)
            .await;
        self.count_step(process, started, &result);
        result
    }

    async fn create_from(
        &self,
        catalog: &Catalog,
        loaded: &Arc<Loaded>,
        actor: &Actor,
        data: Map<String, Value>,
        comment: Option<String>,
        idempotency: Option<Idempotency>,
    ) -> Result<InstanceView, EngineError> {
        let def = &loaded.definition;
        let process = def.id.as_str();
        let starters = if def.start.roles.is_empty() {
            &def.roles
        } else {
            &def.start.roles
        };
        if !actor.has_any_role(starters) {
            return Err(EngineError::Forbidden {
                actor: actor.name.clone(),
                action: format!("start a `{process}` instance"),
                needed: starters.clone(),
            });
        }
        let mut problems = check_input(def, &data, Writer::Caller);
        let mut required = missing(
            &data,
            def.fields.values().filter(|f| f.required).map(|f| &f.name),
        );
        required.retain(|r| !problems.iter().any(|p| p.field == r.field));
        problems.extend(required);
        if !problems.is_empty() {
            return Err(EngineError::InvalidData(problems));
        }

        tracing::Span::current().record("process", process);
        let w = Working::start(
            self.env(catalog),
            loaded,
            actor,
            data,
            comment,
            Channel::Api,
        )?;
        let committed = self.commit(w, actor, idempotency, 201).await?;
        let view = self.remember(committed, None);
        tracing::debug!(instance = %view.id, state = %view.state, "instance created");
        Ok(view)
    }

    /// Fires `transition` on instance `id`.
    ///
    /// When this engine wrote the instance last, the step starts from that copy instead of
    /// reading it back; if the copy proves stale (another node moved the instance, so the
    /// commit or a check refuses), the step is computed again from a fresh read, so no
    /// answer ever rests on a stale copy.
    pub async fn fire(
        &self,
        actor: &Actor,
        id: &str,
        transition: &str,
        request: FireRequest,
    ) -> Result<InstanceView, EngineError> {
        // The span by hand, not `#[tracing::instrument]`: its two branches (span on, span
        // off) each keep a copy of the step's future, which doubled the future's size.
        let span = tracing::debug_span!(
            "fire",
            actor = %actor.name,
            id,
            transition,
            process = tracing::field::Empty
        );
        self.fire_replayed(actor, id, transition, request)
            .instrument(span)
            .await
    }

    /// [`Engine::fire`] inside its span.
    async fn fire_replayed(
        &self,
        actor: &Actor,
        id: &str,
        transition: &str,
        request: FireRequest,
    ) -> Result<InstanceView, EngineError> {
        if let Some(view) = self.replay(actor, request.idempotency.as_ref()).await? {
            return Ok(view);
        }
        let started = Instant::now();
        let mut process = None;
        let result = self
            .fire_counted(actor, id, transition, &request, &mut process)
            .await;
        if let Some(p) = process {
            self.count_step(&p, started, &result);
        }
        result
    }

    /// [`Engine::fire`] after the replay check; `process` learns the instance's process.
    /// One call of [`Engine::fire_on`] serves both the remembered copy and a fresh read, so
    /// that this future holds one of its futures, not two.
    async fn fire_counted(
        &self,
        actor: &Actor,
        id: &str,
        transition: &str,
        request: &FireRequest,
        process: &mut Option<String>,
    ) -> Result<InstanceView, EngineError> {
        let mut remembered = self.recent.take(id);
        loop {
            let from_memory = remembered.is_some();
            let (record, pinned) = match remembered.take() {
                Some((record, pinned)) => {
                    let pinned = pinned.filter(|p| self.still_pinned(p, &record.definition_hash));
                    (record, pinned)
                }
                None => {
                    let record = self
                        .store
                        .get_instance(id)
                        .await?
                        .ok_or_else(|| EngineError::UnknownInstance(id.to_owned()))?;
                    (record, None)
                }
            };
            *process = Some(record.process.clone());
            match self
                .fire_on(record, pinned, actor, transition, request, None)
                .await
            {
                Err(e)
                    if from_memory && !matches!(e, EngineError::Busy | EngineError::Store(_)) =>
                {
                    tracing::debug!(instance = id, error = %e, "remembered copy refused; reading");
                }
                result => return result,
            }
        }
    }

    /// Fires `transition` on `record`, the instance as last known, under `pinned` (looked
    /// up when `None`); `timer` names the timer whose firing this is.
    async fn fire_on(
        &self,
        record: crate::store::InstanceRecord,
        pinned: Option<Pinned>,
        actor: &Actor,
        transition: &str,
        request: &FireRequest,
        timer: Option<&str>,
    ) -> Result<InstanceView, EngineError> {
        tracing::Span::current().record("process", record.process.as_str());
        let pinned = match pinned {
            Some(p) => p,
            None => self.pin(&record.definition_hash).await?,
        };
        let def = &pinned.loaded.definition;
        let t = admission::admit(def, &record, actor, transition, request)?;
        let writes = request.writes();
        let links = if def.has_link_fields() {
            // The link fields as this step leaves them: all that `rule_links` reads.
            let mut merged: Map<String, Value> = def
                .link_fields()
                .filter_map(|f| Some((f.name.clone(), record.data.get(&f.name)?.clone())))
                .collect();
            data::apply(&mut merged, &writes);
            self.rule_links(def, &merged).await?
        } else {
            Value::Object(Map::new())
        };
        let env = self.env(&pinned.catalog);
        let mut w = Working::existing(env, &pinned.loaded, actor, record, &writes, links);
        w.fired_timer = timer.map(str::to_owned);
        if timer.is_some() {
            w.channel = Channel::Timer;
        }
        let (data, comment) = (writes.into_owned(), request.comment.clone());
        match (&t.approval, request.vote) {
            (Some(approval), Some(decision)) => w.vote(t, approval, decision, data, comment)?,
            _ => w.fire(t, data, comment)?,
        }
        w.settle()?;
        let committed = self
            .commit(w, actor, request.idempotency.clone(), 200)
            .await?;
        let view = self.remember(committed, Some(pinned));
        tracing::debug!(instance = %view.id, transition, state = %view.state, "transition fired");
        Ok(view)
    }

    /// One instance as `actor` sees it, with its links both ways and its timers.
    pub async fn get(&self, actor: &Actor, id: &str) -> Result<InstanceView, EngineError> {
        let record = self.readable(actor, id).await?;
        let loaded = self.version(&record.definition_hash).await?;
        let links = self.store.links(id).await?;
        let mut clocks: Vec<_> = record.timers.iter().collect();
        clocks.sort_by(|a, b| (a.due_at, &a.name).cmp(&(b.due_at, &b.name)));
        let timers = clocks.into_iter().map(TimerView::from).collect();
        let mut view = InstanceView::new(&record, &loaded, actor);
        view.links = Some(links);
        view.timers = Some(timers);
        Ok(view)
    }

    fn env<'c>(&'c self, catalog: &'c Catalog) -> Env<'c> {
        Env {
            rules: &self.rules,
            catalog,
            now: self.clock.now_ms(),
        }
    }

    /// Checks the step's links and commits it, with the answer when the request carries an
    /// idempotency key. `status` is the HTTP status of a first answer. The caller passes
    /// what it returns to [`Engine::remember`].
    async fn commit(
        &self,
        mut w: Working<'_>,
        actor: &Actor,
        idempotency: Option<Idempotency>,
        status: u16,
    ) -> Result<Committed, EngineError> {
        self.verify_links(&w).await?;
        let statuses = w.timer_statuses();
        if w.needs_lookups(&statuses) {
            w.lookups = self.lookups(&w.loaded().definition).await?;
        }
        w.plan_timers(statuses)?;
        let notices = w.take_notices();
        let view = InstanceView::new(&w.record, w.loaded(), actor);
        let mut step = w.into_step();
        step.outbox = self.outbox(notices);
        if let Some(idem) = &idempotency {
            step.answer = Some(self.answer_write(actor, idem, status, &view)?);
        }
        let written: Vec<_> = step.writes.iter().map(|w| w.instance.clone()).collect();
        match self.store.commit(step).await {
            Ok(()) => Ok(Committed { view, written }),
            Err(e) => {
                for record in &written {
                    self.recent.forget(&record.id);
                }
                match e {
                    // A concurrent request with the same key committed first: answer as
                    // it did.
                    StoreError::KeyTaken => {
                        let view = self.replay(actor, idempotency.as_ref()).await?;
                        let view = view.ok_or(EngineError::Conflict)?;
                        Ok(Committed {
                            view,
                            written: Vec::new(),
                        })
                    }
                    e => Err(e.into()),
                }
            }
        }
    }

    /// Remembers the instances a step wrote, the first (the one it was on) with what the
    /// step ran under; returns the answer.
    fn remember(&self, committed: Committed, mut pinned: Option<Pinned>) -> InstanceView {
        for record in committed.written {
            self.recent.put(record, pinned.take());
        }
        committed.view
    }

    /// What `def`'s lookups find, as timer rules see it: lookup name → `[{id, state, data}]`.
    async fn lookups(&self, def: &Definition) -> Result<Value, EngineError> {
        let mut found = Map::new();
        for l in def.lookups.values() {
            let mut items = Vec::new();
            for state in &l.states {
                let query = InstanceQuery {
                    process: Some(l.process.clone()),
                    state: Some(state.clone()),
                    after: None,
                    limit: crate::definition::LOOKUP_LIMIT,
                    visible: None,
                };
                for r in self.store.list_instances(&query).await? {
                    items.push(serde_json::json!({ "id": r.id, "state": r.state, "data": r.data }));
                }
            }
            found.insert(l.name.clone(), Value::Array(items));
        }
        Ok(Value::Object(found))
    }

    /// One outbox message per webhook for each notification.
    fn outbox(&self, notices: Vec<Value>) -> Vec<crate::store::OutboxMessage> {
        if notices.is_empty() {
            return Vec::new();
        }
        let now = self.clock.now_ms();
        let mut messages = Vec::new();
        for mut notice in notices {
            if self.webhooks.is_empty() {
                tracing::info!(%notice, "notification (no webhook configured)");
                continue;
            }
            let instance_id = notice["instance"].as_str().unwrap_or_default().to_owned();
            for url in &self.webhooks {
                let id = uuid::Uuid::now_v7().to_string();
                notice["delivery_id"] = Value::from(id.clone());
                messages.push(crate::store::OutboxMessage {
                    id,
                    instance_id: instance_id.clone(),
                    url: url.clone(),
                    body: notice.to_string(),
                    created_at: now,
                });
            }
        }
        messages
    }

    /// A page of instances, ordered by id (creation time).
    pub async fn list(
        &self,
        actor: &Actor,
        query: &InstanceQuery,
    ) -> Result<InstancePage, EngineError> {
        if let Some(p) = &query.process
            && self.catalog().get(p).is_none()
        {
            return Err(EngineError::UnknownProcess(p.clone()));
        }
        let mut q = query.clone();
        q.limit = query.limit.saturating_add(1);
        q.visible = self.visibility(actor);
        let mut records = self.store.list_instances(&q).await?;
        let more = records.len() > query.limit as usize;
        records.truncate(query.limit as usize);
        let next_cursor = if more {
            records.last().map(|r| r.id.clone())
        } else {
            None
        };
        let mut items = Vec::with_capacity(records.len());
        for r in records {
            let loaded = self.version(&r.definition_hash).await?;
            items.push(InstanceView::new(&r, &loaded, actor));
        }
        Ok(InstancePage { items, next_cursor })
    }

    /// The trace of an instance, in order, for `actor`.
    pub async fn trace(&self, actor: &Actor, id: &str) -> Result<Vec<TraceRecord>, EngineError> {
        self.readable(actor, id).await?;
        Ok(self.store.trace(id).await?)
    }

    /// Instance `id`, when it exists and `actor` may read it.
    async fn readable(&self, actor: &Actor, id: &str) -> Result<InstanceRecord, EngineError> {
        let record = self
            .store
            .get_instance(id)
            .await?
            .ok_or_else(|| EngineError::UnknownInstance(id.to_owned()))?;
        self.may_read(actor, &record)?;
        Ok(record)
    }

    /// Refuses when `actor` may not read `record`: its process's `read:` list, as served
    /// now, names none of the actor's roles (nor `creator`, for the actor's own instance).
    /// Instances of a process no longer served have no such list.
    pub fn may_read(&self, actor: &Actor, record: &InstanceRecord) -> Result<(), EngineError> {
        let catalog = self.catalog();
        let Some(l) = catalog.get(&record.process) else {
            return Ok(());
        };
        match l.definition.readable_by(&actor.roles) {
            Readable::All => Ok(()),
            Readable::Own if record.created_by == actor.name => Ok(()),
            _ => Err(EngineError::Forbidden {
                actor: actor.name.clone(),
                action: format!("read `{}` instances", record.process),
                needed: l.definition.read.clone().unwrap_or_default(),
            }),
        }
    }

    /// What `actor` may read, as a filter for listing instances.
    fn visibility(&self, actor: &Actor) -> Option<Visibility> {
        let catalog = self.catalog();
        let mut v = Visibility {
            actor: actor.name.clone(),
            ..Visibility::default()
        };
        for l in catalog.iter() {
            match l.definition.readable_by(&actor.roles) {
                Readable::All => {}
                Readable::Own => v.own_only.push(l.definition.id.clone()),
                Readable::None => v.hidden.push(l.definition.id.clone()),
            }
        }
        (!v.hidden.is_empty() || !v.own_only.is_empty()).then_some(v)
    }
}
