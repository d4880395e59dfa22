//! How long the shipped KPIs take over many stored instances, and how that grows: computed
//! over half the instances, then over all of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::BenchArgs;
use super::footprint::create_events;
use super::workload::engine_with;
use crate::clock::SystemClock;
use crate::kpi::{KpiEngine, KpiQuery, load_kpis, report};
use crate::store::Store;

/// KPI timings over `n / 2` and `n` instances.
#[derive(Debug, Clone, Copy)]
pub(super) struct KpiFigures {
    /// Instances in the full run.
    pub(super) instances: u64,
    /// Time over half of them.
    pub(super) half: Duration,
    /// Time over all of them.
    pub(super) full: Duration,
}

/// Creates `n` events on `store` through the engine, computing the KPIs of `args.kpis` over
/// the first half and then over all.
pub(super) async fn kpi_run(
    args: &BenchArgs,
    store: Arc<dyn Store>,
    n: u64,
) -> anyhow::Result<KpiFigures> {
    let engine = Arc::new(engine_with(store.clone(), args)?);
    engine.register_definitions().await?;
    let kpi = KpiEngine::new(Arc::new(SystemClock));
    let catalog = engine.catalog();
    let set = load_kpis(&args.kpis, &kpi, &catalog).map_err(|e| anyhow::anyhow!("{e}"))?;
    let query = KpiQuery::default();
    let timed = async || -> anyhow::Result<Duration> {
        let started = Instant::now();
        let r = report(&store, &catalog, &kpi, &set, &query).await?;
        if let Some(k) = r.kpis.iter().find(|k| k.failures > 0) {
            anyhow::bail!(
                "KPI `{}` failed on {} instance(s): {}",
                k.name,
                k.failures,
                k.first_failure.as_deref().unwrap_or("")
            );
        }
        Ok(started.elapsed())
    };
    create_events(engine.clone(), n / 2).await?;
    let half = timed().await?;
    create_events(engine.clone(), n - n / 2).await?;
    let full = timed().await?;
    Ok(KpiFigures {
        instances: n,
        half,
        full,
    })
}
