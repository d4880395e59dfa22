//! Links between instances as the engine sees them: what rules read of linked instances,
//! and the check that every link a step writes points at an instance of the right process.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::Engine;
use super::error::{EngineError, FieldProblem};
use super::step::Working;
use crate::definition::Definition;
use crate::store::InstanceHead;

impl Engine {
    /// Linked instances as rules see them: link field → `[{id, process, state}]`, read
    /// from the link fields of `data` (so a link given with this step is already visible).
    /// A link to a missing instance, or to one of the wrong process, is refused here.
    pub(super) async fn rule_links(
        &self,
        def: &Definition,
        data: &Map<String, Value>,
    ) -> Result<Value, EngineError> {
        let fields: Vec<_> = def
            .link_fields()
            .filter_map(|f| Some((f, f.field_type.linked_process()?)))
            .collect();
        let ids: Vec<String> = fields
            .iter()
            .flat_map(|(f, _)| {
                data.get(&f.name)
                    .map(|v| f.field_type.linked_ids(v))
                    .unwrap_or_default()
            })
            .collect();
        // Most steps link nothing: the store is not asked (the in-memory one would take
        // its lock for it).
        let heads: HashMap<String, InstanceHead> = if ids.is_empty() {
            HashMap::new()
        } else {
            self.store
                .heads(&ids)
                .await?
                .into_iter()
                .map(|h| (h.id.clone(), h))
                .collect()
        };
        let mut links = Map::new();
        let mut problems = Vec::new();
        for (f, process) in fields {
            let mut items = Vec::new();
            for id in data
                .get(&f.name)
                .map(|v| f.field_type.linked_ids(v))
                .unwrap_or_default()
            {
                let head = heads.get(&id);
                match link_problem(&f.name, &id, process, head.map(|h| h.process.as_str())) {
                    Some(problem) => problems.push(problem),
                    None => items.extend(head.map(|h| serde_json::json!(h))),
                }
            }
            links.insert(f.name.clone(), Value::Array(items));
        }
        if problems.is_empty() {
            Ok(Value::Object(links))
        } else {
            Err(EngineError::InvalidData(problems))
        }
    }

    /// Refuses a step that writes a link to a missing instance or to one of the wrong
    /// process; instances created by the step itself count as existing.
    pub(super) async fn verify_links(&self, w: &Working<'_>) -> Result<(), EngineError> {
        let checks = w.link_checks();
        if !checks.is_empty() {
            let mut known: HashMap<String, String> = w.created_ids().into_iter().collect();
            let unknown: Vec<String> = checks
                .iter()
                .flat_map(|c| c.ids.iter())
                .filter(|id| !known.contains_key(*id))
                .cloned()
                .collect();
            known.extend(
                self.store
                    .heads(&unknown)
                    .await?
                    .into_iter()
                    .map(|h| (h.id, h.process)),
            );
            let problems: Vec<FieldProblem> = checks
                .iter()
                .flat_map(|c| {
                    let known = &known;
                    c.ids.iter().filter_map(move |id| {
                        link_problem(&c.field, id, &c.process, known.get(id).map(String::as_str))
                    })
                })
                .collect();
            if !problems.is_empty() {
                return Err(EngineError::InvalidData(problems));
            }
        }
        Ok(())
    }
}

/// The problem with a link from `field` to `id`, whose process is `found` (`None`: no such
/// instance), where an instance of `expected` is needed.
fn link_problem(
    field: &str,
    id: &str,
    expected: &str,
    found: Option<&str>,
) -> Option<FieldProblem> {
    let message = match found {
        Some(p) if p == expected => return None,
        Some(p) => {
            format!("links `{id}`, a `{p}` instance, where a `{expected}` instance is expected")
        }
        None => format!("links `{id}`, but no `{expected}` instance has that id"),
    };
    Some(FieldProblem {
        field: field.to_owned(),
        message,
    })
}
