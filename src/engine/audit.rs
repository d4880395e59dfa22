//! What auditors read: the traces of many instances at once, for exports.

use super::{Engine, EngineError};
use crate::store::{InstanceQuery, Store, TraceRecord};

/// One instance's trace records, as a case of an event log.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseTrace {
    /// The instance's process.
    pub process: String,
    /// The instance (the case id).
    pub instance_id: String,
    /// Its records in the period, in order.
    pub records: Vec<TraceRecord>,
}

/// Which records an export holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this instance.
    pub instance: Option<String>,
    /// Only instances of this process.
    pub process: Option<String>,
    /// Only records at or after this time (ms).
    pub from: Option<i64>,
    /// Only records before this time (ms).
    pub to: Option<i64>,
}

impl Engine {
    /// The cases with records in the period, ordered by instance id.
    pub async fn audit_cases(&self, query: &AuditQuery) -> Result<Vec<CaseTrace>, EngineError> {
        if let Some(p) = &query.process
            && self.catalog().get(p).is_none()
        {
            return Err(EngineError::UnknownProcess(p.clone()));
        }
        cases(self.store.as_ref(), query).await
    }
}

/// The cases in `store` with records in the period of `query`, ordered by instance id.
pub async fn cases(store: &dyn Store, query: &AuditQuery) -> Result<Vec<CaseTrace>, EngineError> {
    if let Some(id) = &query.instance {
        let instance = store
            .get_instance(id)
            .await?
            .filter(|i| query.process.as_ref().is_none_or(|p| *p == i.process))
            .ok_or_else(|| EngineError::UnknownInstance(id.clone()))?;
        let records = in_period(store.trace(id).await?, query);
        return Ok(if records.is_empty() {
            Vec::new()
        } else {
            vec![CaseTrace {
                process: instance.process,
                instance_id: instance.id,
                records,
            }]
        });
    }
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_instances(&InstanceQuery {
                process: query.process.clone(),
                state: None,
                after: after.clone(),
                limit: 500,
                visible: None,
            })
            .await?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        after = Some(last.id.clone());
        for i in page {
            // An instance updated before the period began has no record in it.
            if query.from.is_some_and(|from| i.updated_at < from) {
                continue;
            }
            let records = in_period(store.trace(&i.id).await?, query);
            if !records.is_empty() {
                out.push(CaseTrace {
                    process: i.process,
                    instance_id: i.id,
                    records,
                });
            }
        }
    }
}

/// The records of `trace` in the period of `query`.
fn in_period(mut trace: Vec<TraceRecord>, query: &AuditQuery) -> Vec<TraceRecord> {
    trace.retain(|r| {
        query.from.is_none_or(|from| r.at >= from) && query.to.is_none_or(|to| r.at < to)
    });
    trace
}
