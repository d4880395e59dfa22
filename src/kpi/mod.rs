//! KPIs: indicators a process owner defines in `kpis/*.yaml` and edits without a rebuild,
//! computed from the instances' traces (see [`facts`]), so that any past period can be
//! recomputed. `GET /api/v1/kpis` and `opsflow kpi` compute them.

mod compute;
mod definition;
mod facts;
mod render;

use serde::{Deserialize, Serialize};

pub use compute::{Figure, GroupFigure, KpiEngine, KpiFigure, KpiQuery, Tally};
pub use definition::{Aggregate, Checks, Kpi, KpiSet, Target, parse_kpis};
pub use facts::facts;
pub(crate) use render::{bar_chart, escape, html_body, markdown_body, page, period};
pub use render::{html, markdown};

use crate::engine::{Catalog, EngineError};
use serde_json::Value;

use crate::definition::Definition;
use std::sync::Arc;

use crate::store::{FactRecord, Store, StoreError, TraceRecord};

/// Instances whose traces are read per query.
const PAGE: u32 = 1000;

/// KPIs computed for a period.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KpiReport {
    /// The process asked for, if one.
    pub process: Option<String>,
    /// Instances created from (RFC 3339), if bounded.
    pub from: Option<String>,
    /// Instances created before (RFC 3339), if bounded.
    pub to: Option<String>,
    /// The grouping, if any.
    pub group_by: Option<String>,
    /// SHA-256 of the KPI files used: with the same traces, the same figures.
    pub kpi_hash: String,
    /// The number of that content of the KPI files, as stored (absent over a log).
    pub kpi_version: Option<i64>,
    /// Instances considered (of the KPIs' processes, in the period).
    pub instances: usize,
    /// Each KPI.
    pub kpis: Vec<KpiFigure>,
}

/// Every problem found in the KPI files.
#[derive(Debug, thiserror::Error)]
#[error("{} problem(s) in the KPI files: {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct KpiFileErrors(pub Vec<crate::definition::DefinitionError>);

/// The KPI files of `dir`, checked against the processes `catalog` serves.
pub fn load_kpis(
    dir: &std::path::Path,
    engine: &KpiEngine,
    catalog: &Catalog,
) -> Result<KpiSet, KpiFileErrors> {
    let processes: Vec<&str> = catalog.iter().map(|l| l.definition.id.as_str()).collect();
    let checks = Checks {
        compiles: &|t| engine.compiles(t),
        processes: &processes,
    };
    KpiSet::load(dir, &checks).map_err(KpiFileErrors)
}

/// Refuses a query for a process no KPI of `set` measures.
fn check_process(set: &KpiSet, query: &KpiQuery) -> Result<(), EngineError> {
    match &query.process {
        Some(p) if !set.kpis.values().any(|k| k.process == *p) => {
            Err(EngineError::UnknownProcess(p.clone()))
        }
        _ => Ok(()),
    }
}

/// Computes `set`'s KPIs over the instances in `store`, from their traces; `catalog` says
/// which keys of the records are fields.
pub async fn report(
    store: &Arc<dyn Store>,
    catalog: &Catalog,
    engine: &KpiEngine,
    set: &KpiSet,
    query: &KpiQuery,
) -> Result<KpiReport, EngineError> {
    let definitions: Vec<&Definition> = catalog.iter().map(|l| &l.definition).collect();
    let mut tally = engine.tally(set, query);
    let n = visit_period(store, &definitions, set, query, &mut |p, f| tally.add(p, f)).await?;
    let mut r = report_of(set, query, n, tally.finish());
    r.kpi_version = Some(store.save_kpi_set(&set.hash, &set.source).await?);
    Ok(r)
}

/// Hands `visit` the facts of each instance `set`'s KPIs measure (of the query's process,
/// if one), created in the query's period, as their traces stood at its end, one page of
/// instances at a time; answers how many there were. `definitions` say which keys of the
/// records are fields.
pub async fn visit_period(
    store: &Arc<dyn Store>,
    definitions: &[&Definition],
    set: &KpiSet,
    query: &KpiQuery,
    visit: &mut (dyn FnMut(&str, &Value) + Send),
) -> Result<usize, EngineError> {
    check_process(set, query)?;
    let mut processes: Vec<String> = set
        .kpis
        .values()
        .map(|k| k.process.clone())
        .filter(|p| query.process.as_deref().is_none_or(|q| q == *p))
        .collect();
    processes.sort_unstable();
    processes.dedup();
    let mut n = 0;
    for p in processes {
        let def = definitions.iter().find(|d| d.id == p).copied();
        // The next page is read while this one is worked on.
        let mut next = fetch(store, &p, None);
        loop {
            // A read task that did not finish (the runtime shutting down) is a failed read.
            let page = next
                .await
                .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))??;
            let Some((last, _)) = page.last() else {
                break;
            };
            next = fetch(store, &p, Some(last.clone()));
            // Let the read start (on a one-thread runtime too) before this page is worked on.
            tokio::task::yield_now().await;
            for (process, facts) in in_period(&p, page, query, def) {
                visit(&process, &facts);
                n += 1;
            }
        }
    }
    Ok(n)
}

type Page = Vec<(String, Vec<FactRecord>)>;

/// Starts reading the page of `process`'s instances after `after`.
fn fetch(
    store: &Arc<dyn Store>,
    process: &str,
    after: Option<String>,
) -> tokio::task::JoinHandle<Result<Page, StoreError>> {
    let (store, process) = (store.clone(), process.to_owned());
    tokio::spawn(async move { store.process_facts(&process, after.as_deref(), PAGE).await })
}

/// Computes `set`'s KPIs of `process` over cases given as traces (an imported event log
/// replayed into traces, see [`crate::conform::case_traces`]).
pub fn report_over_traces(
    engine: &KpiEngine,
    set: &KpiSet,
    query: &KpiQuery,
    process: &str,
    traces: Vec<(String, Vec<TraceRecord>)>,
    def: Option<&Definition>,
) -> Result<KpiReport, EngineError> {
    check_process(set, query)?;
    let traces = traces
        .into_iter()
        .map(|(id, records)| (id, records.iter().map(FactRecord::from).collect()))
        .collect();
    let instances: Vec<(String, Value)> = in_period(process, traces, query, def).collect();
    Ok(summarize(engine, set, query, &instances))
}

/// The facts of the cases created in the period, as they stood at its end.
fn in_period<'a>(
    process: &'a str,
    traces: Vec<(String, Vec<FactRecord>)>,
    query: &'a KpiQuery,
    def: Option<&'a Definition>,
) -> impl Iterator<Item = (String, Value)> + 'a {
    traces.into_iter().filter_map(move |(_, mut records)| {
        if let Some(to) = query.to {
            records.retain(|r| r.at < to);
        }
        let created = records.first()?.at;
        if query.from.is_some_and(|t| created < t) || query.to.is_some_and(|t| created >= t) {
            return None;
        }
        let mut facts = facts(&records, query.to, def);
        if let Value::Object(m) = &mut facts {
            let period = serde_json::json!({ "from": query.from, "to": query.to });
            m.insert("period".into(), period);
        }
        in_scope(&facts, query, def).then(|| (process.to_owned(), facts))
    })
}

/// The instance holds the query's scope values, in the fields its process has.
fn in_scope(facts: &Value, query: &KpiQuery, def: Option<&Definition>) -> bool {
    let data = &facts["data"];
    query.scope.iter().all(|(field, value)| {
        let has_field = match def {
            Some(d) => d.fields.contains_key(field),
            None => data.get(field).is_some(),
        };
        !has_field || data.get(field) == Some(value)
    })
}

/// The KPIs of `set` over the facts of `instances` ((process, facts)).
fn summarize(
    engine: &KpiEngine,
    set: &KpiSet,
    query: &KpiQuery,
    instances: &[(String, Value)],
) -> KpiReport {
    let kpis = engine.compute(set, query, instances);
    report_of(set, query, instances.len(), kpis)
}

/// The report of `kpis` computed over `instances` instances.
pub fn report_of(
    set: &KpiSet,
    query: &KpiQuery,
    instances: usize,
    kpis: Vec<KpiFigure>,
) -> KpiReport {
    KpiReport {
        process: query.process.clone(),
        from: query.from.map(crate::clock::format_ms),
        to: query.to.map(crate::clock::format_ms),
        group_by: query.group_by.clone(),
        kpi_hash: set.hash.clone(),
        kpi_version: None,
        instances,
        kpis,
    }
}
