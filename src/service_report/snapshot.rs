//! What a service report's collect step computes and keeps: the period's KPIs and the SLA
//! attainment table, with everything needed to compute them again (the KPI files' hash and
//! the definition versions read), hashed so that the report's trace names exactly this.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::kpi::KpiReport;

pub use crate::definition::SNAPSHOT_FIELD;

/// A service report's KPI snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Snapshot {
    /// The report instance.
    pub report: String,
    /// The SLA the report is for, if it links one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<SlaRef>,
    /// Instances created from (RFC 3339).
    pub from: String,
    /// Instances created before, and the time the traces were read as of (RFC 3339): the
    /// period's end, or the collection time if the period had not ended.
    pub to: String,
    /// The period's end as the report states it (RFC 3339).
    pub period_end: String,
    /// Only instances holding these field values (the SLA's customer), where their process
    /// has the field.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scope: BTreeMap<String, Value>,
    /// When it was collected (RFC 3339) and by whom.
    pub collected_at: String,
    /// Who collected it.
    pub collected_by: String,
    /// The definition versions whose fields the facts were read with.
    pub definitions: Vec<DefinitionUsed>,
    /// The KPIs (with the KPI files' hash and number).
    pub kpis: KpiReport,
    /// SLA attainment per process, metric and priority.
    pub sla_attainment: Vec<SlaRow>,
}

/// The SLA a report is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SlaRef {
    /// Its instance.
    pub id: String,
    /// Its title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}

/// A definition version a snapshot read traces with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DefinitionUsed {
    /// The process.
    pub process: String,
    /// Its version number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Its content hash.
    pub hash: String,
}

/// One line of the SLA attainment table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SlaRow {
    /// The process measured.
    pub process: String,
    /// The SLA metric (`first_response`, `resolution`).
    pub metric: String,
    /// The instances' priority (`(none)` without one).
    pub priority: String,
    /// The agreed time, in hours (the smallest and largest seen, when they differ).
    pub target_hours: Option<(f64, f64)>,
    /// Clocks that stopped in the period.
    pub measured: usize,
    /// Of those, within the target.
    pub met: usize,
    /// Of those, late.
    pub missed: usize,
    /// Clocks still running (or paused) at the period's end.
    pub open: usize,
    /// Of the open ones, already past their target.
    pub open_breached: usize,
    /// `met` in percent of `measured` (absent when nothing was measured).
    pub attainment: Option<f64>,
}

#[derive(Debug, Default)]
struct Tally {
    targets: Option<(f64, f64)>,
    met: usize,
    missed: usize,
    open: usize,
    open_breached: usize,
}

/// The SLA attainment table being counted: each instance's `sla` facts by process, metric
/// and the instance's `priority`.
#[derive(Debug, Default)]
pub struct SlaTally(BTreeMap<(String, String, String), Tally>);

impl SlaTally {
    /// Counts one instance of `process` with its facts.
    pub fn add(&mut self, process: &str, facts: &Value) {
        let Some(slas) = facts["sla"].as_object() else {
            return;
        };
        let priority = match &facts["data"]["priority"] {
            Value::String(p) => p.clone(),
            Value::Null => "(none)".to_owned(),
            other => other.to_string(),
        };
        for (metric, sla) in slas {
            let key = (process.to_owned(), metric.clone(), priority.clone());
            let t = self.0.entry(key).or_default();
            if let Some(ms) = sla["target_ms"].as_f64() {
                let h = ms / 3_600_000.0;
                t.targets = Some(t.targets.map_or((h, h), |(lo, hi)| (lo.min(h), hi.max(h))));
            }
            match sla["met"].as_bool() {
                Some(true) => t.met += 1,
                Some(false) => t.missed += 1,
                None => {
                    t.open += 1;
                    if sla["status"] == "breached" {
                        t.open_breached += 1;
                    }
                }
            }
        }
    }

    /// The table, by process, metric and priority.
    pub fn rows(self) -> Vec<SlaRow> {
        self.0
            .into_iter()
            .map(|((process, metric, priority), t)| {
                let measured = t.met + t.missed;
                SlaRow {
                    process,
                    metric,
                    priority,
                    target_hours: t.targets.map(|(lo, hi)| (round(lo), round(hi))),
                    measured,
                    met: t.met,
                    missed: t.missed,
                    open: t.open,
                    open_breached: t.open_breached,
                    attainment: (measured > 0)
                        .then(|| round(100.0 * t.met as f64 / measured as f64)),
                }
            })
            .collect()
    }
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

impl Snapshot {
    /// The snapshot as stored: JSON text, and the SHA-256 (hex) of that text.
    pub fn sealed(&self) -> (String, String) {
        let body = serde_json::to_string(self).unwrap_or_default();
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        (body, hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(priority: &str, sla: Value) -> (String, Value) {
        (
            "event".to_owned(),
            json!({ "data": { "priority": priority }, "sla": sla }),
        )
    }

    #[test]
    fn attainment_counts_stopped_clocks_per_metric_and_priority_and_open_ones_apart() {
        let h = 3_600_000;
        let mut tally = SlaTally::default();
        for (process, facts) in [
            event(
                "P1",
                json!({ "resolution": { "met": true, "target_ms": 4 * h } }),
            ),
            event(
                "P1",
                json!({ "resolution": { "met": false, "target_ms": 4 * h } }),
            ),
            event(
                "P1",
                json!({ "resolution": { "met": true, "target_ms": 4 * h } }),
            ),
            event(
                "P1",
                json!({ "resolution": { "status": "breached", "target_ms": 4 * h } }),
            ),
            event(
                "P2",
                json!({ "resolution": { "status": "running", "target_ms": 8 * h },
                                "first_response": { "met": true, "target_ms": h / 2 } }),
            ),
        ] {
            tally.add(&process, &facts);
        }
        let rows = tally.rows();
        let p1 = &rows[1];
        assert_eq!(
            (p1.metric.as_str(), p1.priority.as_str()),
            ("resolution", "P1")
        );
        assert_eq!((p1.measured, p1.met, p1.missed), (3, 2, 1));
        assert_eq!((p1.open, p1.open_breached), (1, 1));
        assert_eq!(p1.attainment, Some(66.67));
        assert_eq!(p1.target_hours, Some((4.0, 4.0)));
        let p2 = &rows[2];
        assert_eq!((p2.priority.as_str(), p2.measured, p2.open), ("P2", 0, 1));
        assert_eq!(p2.attainment, None);
        assert_eq!(rows[0].metric, "first_response");
        assert_eq!(rows[0].target_hours, Some((0.5, 0.5)));
        assert_eq!(rows[0].attainment, Some(100.0));
    }
}
