//! Service reports: the report process's collect step computes the period's KPIs and SLA
//! attainment from the traces into a [`Snapshot`], stores it under the SHA-256 of its body
//! and fires the step with that hash, so the report's own trace names the figures it was
//! written from. A snapshot records the KPI files' hash and the definition versions it
//! read, so it can be computed again later ([`verify`]) and must come out the same.
//!
//! This sits beside [`crate::kpi`], above the engine and the store: the engine fires the
//! step, the KPI module computes, and the API and CLI only call in here.

mod render;
mod snapshot;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use render::{html, markdown};
pub use snapshot::{DefinitionUsed, SNAPSHOT_FIELD, SlaRef, SlaRow, SlaTally, Snapshot};

use crate::clock::{format_ms, parse_ms};
use crate::definition::{Definition, FieldType};
use crate::engine::{
    Actor, Engine, EngineError, FieldProblem, FireRequest, Idempotency, InstanceView,
};
use crate::kpi::{
    Checks, KpiEngine, KpiFileErrors, KpiQuery, KpiSet, load_kpis, report_of, visit_period,
};
use crate::store::{StoreError, StoredSnapshot};

/// Why a report could not be collected or shown.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The engine refused (unknown instance, role, state, data...).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The instance is in no state a collect step leaves.
    #[error(
        "instance `{instance}` is in state `{state}`, where no transition collects a KPI snapshot (a transition that requires `{SNAPSHOT_FIELD}`)"
    )]
    NoCollectStep {
        /// The instance.
        instance: String,
        /// Its state.
        state: String,
    },
    /// No snapshot was collected for the report (or not the one asked for).
    #[error("report `{0}` has no such KPI snapshot; collect one first")]
    NoSnapshot(String),
    /// The KPI files have problems.
    #[error(transparent)]
    Kpis(#[from] KpiFileErrors),
}

impl From<StoreError> for ReportError {
    fn from(e: StoreError) -> Self {
        ReportError::Engine(e.into())
    }
}

/// What collecting needs besides the engine.
#[derive(Debug, Clone, Copy)]
pub struct Kpis<'a> {
    /// Evaluates KPI expressions.
    pub engine: &'a KpiEngine,
    /// Where the KPI files are.
    pub dir: &'a Path,
}

/// A caller's request to collect.
#[derive(Debug, Clone, Default)]
pub struct CollectRequest {
    /// Fields to write with the step (a `data_summary` of the caller's own, say).
    pub data: Map<String, Value>,
    /// A comment for the trace.
    pub comment: Option<String>,
    /// When set, the instance must still be at this version (`If-Match`).
    pub expected_version: Option<i64>,
    /// The caller's idempotency key: a retry gets the first answer, not a new snapshot.
    pub idempotency: Option<Idempotency>,
}

/// Computes the KPI snapshot of report `id` for its period, stores it and fires the
/// report's collect step (the transition out of its state that requires
/// [`SNAPSHOT_FIELD`]) with the snapshot's hash. Where the process has them and the caller
/// did not give them, `sla_attainment` gets the SLA table as Markdown and `data_summary` a
/// summary of the figures.
pub async fn collect(
    engine: &Engine,
    kpis: Kpis<'_>,
    actor: &Actor,
    id: &str,
    request: CollectRequest,
) -> Result<InstanceView, ReportError> {
    if let Some(view) = engine.replay(actor, request.idempotency.as_ref()).await? {
        return Ok(view);
    }
    let store = engine.store().as_ref();
    let record = store
        .get_instance(id)
        .await?
        .ok_or_else(|| EngineError::UnknownInstance(id.to_owned()))?;
    let loaded = engine.version(&record.definition_hash).await?;
    let def = &loaded.definition;
    let step = def
        .transitions
        .values()
        .find(|t| t.from.contains(&record.state) && t.requires.iter().any(|r| r == SNAPSHOT_FIELD))
        .ok_or_else(|| ReportError::NoCollectStep {
            instance: id.to_owned(),
            state: record.state.clone(),
        })?;
    if !actor.has_any_role(step.callers()) {
        return Err(EngineError::Forbidden {
            actor: actor.name.clone(),
            action: format!("fire `{}`", step.name),
            needed: step.callers().to_vec(),
        }
        .into());
    }
    let mut data = Map::clone(&record.data);
    data.extend(request.data.clone());
    let (from, end) = period(&data)?;
    let sla = match data.get("sla").and_then(Value::as_str) {
        Some(sla_id) => store.get_instance(sla_id).await?.map(|s| SlaRef {
            id: s.id.clone(),
            title: s
                .data
                .get("title")
                .and_then(Value::as_str)
                .map(str::to_owned),
            customer: s
                .data
                .get("customer")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }),
        None => None,
    };
    let scope: BTreeMap<String, Value> = sla
        .as_ref()
        .and_then(|s| s.customer.clone())
        .map(|c| ("customer".to_owned(), Value::from(c)))
        .into_iter()
        .collect();
    let catalog = engine.catalog();
    let set = load_kpis(kpis.dir, kpis.engine, &catalog)?;
    let now = engine.now_ms();
    let group_by = match data.get("report_type").and_then(Value::as_str) {
        Some("quarterly" | "annual") => Some("month".to_owned()),
        _ => None,
    };
    let defs: Vec<&Definition> = measured(&set)
        .iter()
        .filter_map(|p| catalog.get(p).map(|l| &l.definition))
        .collect();
    let mut definitions = Vec::new();
    for d in &defs {
        definitions.push(DefinitionUsed {
            process: d.id.clone(),
            version: engine.version_number(d).await?,
            hash: d.hash.clone(),
        });
    }
    let query = KpiQuery {
        process: None,
        from: Some(from),
        to: Some(end.min(now)),
        group_by,
        scope: scope.clone().into_iter().collect(),
    };
    let (kpi_report, rows) = figures(engine, kpis.engine, &set, &query, &defs).await?;
    let snapshot = Snapshot {
        report: id.to_owned(),
        sla,
        from: format_ms(from),
        to: format_ms(end.min(now)),
        period_end: format_ms(end),
        scope,
        collected_at: format_ms(now),
        collected_by: actor.name.clone(),
        definitions,
        kpis: kpi_report,
        sla_attainment: rows,
    };
    let (body, hash) = snapshot.sealed();
    store
        .save_report_snapshot(&StoredSnapshot {
            hash: hash.clone(),
            instance_id: id.to_owned(),
            body,
            created_at: now,
        })
        .await?;
    let mut writes = request.data;
    if def.fields.contains_key("sla_attainment") && !writes.contains_key("sla_attainment") {
        writes.insert(
            "sla_attainment".into(),
            Value::from(render::sla_table_markdown(&snapshot.sla_attainment)),
        );
    }
    if def.fields.contains_key("data_summary") && !writes.contains_key("data_summary") {
        writes.insert(
            "data_summary".into(),
            Value::from(render::summary(&snapshot)),
        );
    }
    let fire = FireRequest {
        data: writes,
        comment: request.comment,
        expected_version: request.expected_version,
        idempotency: request.idempotency,
        computed: Map::from_iter([(SNAPSHOT_FIELD.to_owned(), Value::from(hash))]),
        ..FireRequest::default()
    };
    Ok(engine.fire(actor, id, &step.name, fire).await?)
}

/// The processes `set`'s KPIs measure, sorted.
fn measured(set: &KpiSet) -> Vec<String> {
    let mut processes: Vec<String> = set.kpis.values().map(|k| k.process.clone()).collect();
    processes.sort_unstable();
    processes.dedup();
    processes
}

/// The report's period, `[period_start, period_end)` in ms.
fn period(data: &Map<String, Value>) -> Result<(i64, i64), EngineError> {
    let read = |field: &str| -> Result<i64, FieldProblem> {
        let problem = |message: &str| FieldProblem {
            field: field.to_owned(),
            message: message.to_owned(),
        };
        let text = data
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| problem("is required to collect the period's KPIs"))?;
        parse_ms(text).ok_or_else(|| problem("is not an RFC 3339 time"))
    };
    match (read("period_start"), read("period_end")) {
        (Ok(from), Ok(end)) if end > from => Ok((from, end)),
        (Ok(_), Ok(_)) => Err(EngineError::InvalidData(vec![FieldProblem {
            field: "period_end".into(),
            message: "must be after period_start".into(),
        }])),
        (a, b) => Err(EngineError::InvalidData(
            [a.err(), b.err()].into_iter().flatten().collect(),
        )),
    }
}

/// The KPIs and the SLA table of the instances `query` selects.
async fn figures(
    engine: &Engine,
    kpi_engine: &KpiEngine,
    set: &KpiSet,
    query: &KpiQuery,
    definitions: &[&Definition],
) -> Result<(crate::kpi::KpiReport, Vec<SlaRow>), EngineError> {
    let store = engine.store();
    let mut tally = kpi_engine.tally(set, query);
    let mut slas = SlaTally::default();
    let n = visit_period(store, definitions, set, query, &mut |p, f| {
        tally.add(p, f);
        slas.add(p, f);
    })
    .await?;
    let mut report = report_of(set, query, n, tally.finish());
    report.kpi_version = Some(store.save_kpi_set(&set.hash, &set.source).await?);
    Ok((report, slas.rows()))
}

/// One field of a report as shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShownField {
    /// Its name.
    pub name: String,
    /// Its title, or its name.
    pub label: String,
    /// Its value as text.
    pub text: String,
    /// Long text, shown as a section of its own.
    pub long: bool,
}

/// A report with its snapshot, as shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportView {
    /// The report instance.
    pub instance: InstanceView,
    /// The snapshot's hash.
    pub hash: String,
    /// The stored body still hashes to `hash`.
    pub intact: bool,
    /// The snapshot.
    pub snapshot: Snapshot,
    /// The report's fields in definition order (the snapshot's hash left out).
    #[serde(skip)]
    pub fields: Vec<ShownField>,
}

/// Report `id` with its snapshot: the one its data names, or `hash`.
pub async fn show(
    engine: &Engine,
    actor: &Actor,
    id: &str,
    hash: Option<&str>,
) -> Result<ReportView, ReportError> {
    let instance = engine.get(actor, id).await?;
    let hash = match hash {
        Some(h) => h.to_owned(),
        None => instance
            .data
            .get(SNAPSHOT_FIELD)
            .and_then(Value::as_str)
            .ok_or_else(|| ReportError::NoSnapshot(id.to_owned()))?
            .to_owned(),
    };
    let stored = engine
        .store()
        .report_snapshot(&hash)
        .await?
        .filter(|s| s.instance_id == id)
        .ok_or_else(|| ReportError::NoSnapshot(id.to_owned()))?;
    let snapshot: Snapshot = serde_json::from_str(&stored.body)
        .map_err(|e| StoreError::Corrupt(format!("report snapshot {hash}: {e}")))?;
    let intact = hex::encode(Sha256::digest(stored.body.as_bytes())) == hash;
    let loaded = engine.version(&instance.definition_hash).await?;
    let fields = shown_fields(&loaded.definition, &instance.data);
    Ok(ReportView {
        instance,
        hash,
        intact,
        snapshot,
        fields,
    })
}

/// Text fields longer than this are shown as sections.
const LONG_TEXT: usize = 2000;

fn shown_fields(def: &Definition, data: &Map<String, Value>) -> Vec<ShownField> {
    def.fields
        .values()
        .filter(|f| f.name != SNAPSHOT_FIELD)
        .filter_map(|f| {
            let text = match data.get(&f.name)? {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let long = matches!(f.field_type, FieldType::String { max_len, .. }
                if max_len.is_none_or(|m| m > LONG_TEXT));
            Some(ShownField {
                name: f.name.clone(),
                label: f.title.clone().unwrap_or_else(|| f.name.clone()),
                text,
                long,
            })
        })
        .collect()
}

/// A snapshot computed again.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// The snapshot's hash.
    pub hash: String,
    /// The stored body still hashes to it.
    pub intact: bool,
    /// Computing again from the traces, with the same KPI files and definition versions,
    /// gave the same figures.
    pub reproduced: bool,
    /// What came out different (KPI names, `sla_attainment`), or why it could not be
    /// computed again.
    pub differences: Vec<String>,
}

/// Computes report `id`'s snapshot again with the KPI files and definition versions it
/// names, over the traces as they stood at its `to`, and compares the figures.
pub async fn verify(
    engine: &Engine,
    kpi_engine: &KpiEngine,
    actor: &Actor,
    id: &str,
    hash: Option<&str>,
) -> Result<Verification, ReportError> {
    let view = show(engine, actor, id, hash).await?;
    let s = &view.snapshot;
    let mut verification = Verification {
        hash: view.hash.clone(),
        intact: view.intact,
        reproduced: false,
        differences: Vec::new(),
    };
    let store = engine.store().as_ref();
    let Some(source) = store.kpi_set_source(&s.kpis.kpi_hash).await? else {
        verification
            .differences
            .push(format!("the KPI files {} are not stored", s.kpis.kpi_hash));
        return Ok(verification);
    };
    let stored_set = {
        let processes: Vec<&str> = s.definitions.iter().map(|d| d.process.as_str()).collect();
        let checks = Checks {
            compiles: &|t| kpi_engine.compiles(t),
            processes: &processes,
        };
        KpiSet::from_source(&source, &checks)
    };
    let set = match stored_set {
        Ok(set) => set,
        Err(errors) => {
            verification.differences.push(format!(
                "the stored KPI files no longer load: {}",
                errors[0]
            ));
            return Ok(verification);
        }
    };
    let mut loaded = Vec::new();
    for d in &s.definitions {
        loaded.push(engine.version(&d.hash).await?);
    }
    let defs: Vec<&Definition> = loaded.iter().map(|l| &l.definition).collect();
    let query = KpiQuery {
        process: None,
        from: parse_ms(&s.from),
        to: parse_ms(&s.to),
        group_by: s.kpis.group_by.clone(),
        scope: s.scope.clone().into_iter().collect(),
    };
    let (kpis, rows) = figures(engine, kpi_engine, &set, &query, &defs).await?;
    for (old, new) in s.kpis.kpis.iter().zip(&kpis.kpis) {
        if serde_json::to_value(old).ok() != serde_json::to_value(new).ok() {
            verification.differences.push(old.name.clone());
        }
    }
    if s.kpis.kpis.len() != kpis.kpis.len() {
        verification.differences.push("the list of KPIs".into());
    }
    if s.kpis.instances != kpis.instances {
        verification.differences.push("instances".into());
    }
    if s.sla_attainment != rows {
        verification.differences.push("sla_attainment".into());
    }
    verification.reproduced = verification.differences.is_empty();
    Ok(verification)
}
