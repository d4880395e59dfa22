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

use crate::engine::{AuditQuery, Catalog, EngineError, cases};
use crate::store::Store;

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
        let audit = AuditQuery {
            process: Some(p.to_owned()),
            ..AuditQuery::default()
        };
        for mut case in cases(store, &audit).await? {
            // As the instance stood at the end of the period.
            if let Some(to) = query.to {
                case.records.retain(|r| r.at < to);
            }
            if case.records.is_empty() {
                continue;
            }
            let def = catalog.get(&case.process).map(|l| &l.definition);
            let f = facts(&case.records, query.to, def);
            let created = f["created_at"].as_i64().unwrap_or(0);
            if query.from.is_some_and(|t| created < t) || query.to.is_some_and(|t| created >= t) {
                continue;
            }
            instances.push((case.process, f));
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
