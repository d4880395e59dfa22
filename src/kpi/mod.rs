//! KPIs: indicators a process owner defines in `kpis/*.yaml` and edits without a rebuild,
//! computed from the instances' traces (see [`facts`]), so that any past period can be
//! recomputed. `GET /api/v1/kpis` and `opsflow kpi` compute them.

mod compute;
mod definition;
mod facts;

use serde::Serialize;

pub use compute::{Figure, GroupFigure, KpiEngine, KpiFigure, KpiQuery};
pub use definition::{Aggregate, Kpi, KpiSet, Target, parse_kpis};
pub use facts::facts;

use crate::engine::{Catalog, EngineError};
use crate::store::Store;

/// Instances whose traces are read per query.
const PAGE: u32 = 1000;

/// KPIs computed for a period.
#[derive(Debug, Clone, Serialize)]
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
    /// Instances considered (of the KPIs' processes, in the period).
    pub instances: usize,
    /// Each KPI.
    pub kpis: Vec<KpiFigure>,
}

/// Computes `set`'s KPIs over the instances in `store`, from their traces; `catalog` says
/// which keys of the records are fields.
pub async fn report(
    store: &dyn Store,
    catalog: &Catalog,
    engine: &KpiEngine,
    set: &KpiSet,
    query: &KpiQuery,
) -> Result<KpiReport, EngineError> {
    let mut processes: Vec<&str> = set
        .kpis
        .values()
        .map(|k| k.process.as_str())
        .filter(|p| query.process.as_deref().is_none_or(|q| q == *p))
        .collect();
    processes.sort_unstable();
    processes.dedup();
    let mut instances = Vec::new();
    for p in processes {
        let def = catalog.get(p).map(|l| &l.definition);
        let mut after: Option<String> = None;
        loop {
            let page = store.process_traces(p, after.as_deref(), PAGE).await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.clone());
            for (_, mut records) in page {
                // As the instance stood at the end of the period.
                if let Some(to) = query.to {
                    records.retain(|r| r.at < to);
                }
                let Some(first) = records.first() else {
                    continue;
                };
                let created = first.at;
                if query.from.is_some_and(|t| created < t) || query.to.is_some_and(|t| created >= t)
                {
                    continue;
                }
                instances.push((p.to_owned(), facts(&records, query.to, def)));
            }
        }
    }
    let kpis = engine.compute(set, query, &instances);
    Ok(KpiReport {
        process: query.process.clone(),
        from: query.from.map(crate::clock::format_ms),
        to: query.to.map(crate::clock::format_ms),
        group_by: query.group_by.clone(),
        kpi_hash: set.hash.clone(),
        instances: instances.len(),
        kpis,
    })
}
