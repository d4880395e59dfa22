//! Whether a caller may take a step at all: the transition exists and is not automatic,
//! the caller holds a role for it, the instance is at the expected version and in a state
//! the transition leaves, the data fits, a vote is given exactly for approvals and only once.
//! Everything here refuses before any rule runs.

use super::data::{self, Writer, check_input, missing_after};
use super::error::{EngineError, FieldProblem};
use super::{Actor, FireRequest};
use crate::definition::{Definition, Transition};
use crate::store::InstanceRecord;

/// Admits a request to fire `transition` on `record`; returns the transition. The checks of
/// required fields see the instance data with the request's data applied.
pub(super) fn admit<'d>(
    def: &'d Definition,
    record: &InstanceRecord,
    actor: &Actor,
    transition: &str,
    request: &FireRequest,
) -> Result<&'d Transition, EngineError> {
    let t = def
        .transitions
        .get(transition)
        .ok_or_else(|| EngineError::UnknownTransition {
            process: def.id.clone(),
            transition: transition.to_owned(),
        })?;
    if t.auto {
        return Err(EngineError::Automatic(t.name.clone()));
    }
    if !actor.has_any_role(t.callers()) {
        let action = if t.approval.is_some() {
            "vote on"
        } else {
            "fire"
        };
        return Err(EngineError::Forbidden {
            actor: actor.name.clone(),
            action: format!("{action} `{}`", t.name),
            needed: t.callers().to_vec(),
        });
    }
    if let Some(expected) = request.expected_version
        && expected != record.version
    {
        return Err(EngineError::VersionMismatch {
            expected,
            actual: record.version,
        });
    }
    if !t.from.contains(&record.state) {
        return Err(EngineError::WrongState {
            transition: t.name.clone(),
            state: record.state.clone(),
            from: t.from.clone(),
        });
    }
    let mut problems = check_input(def, &request.data, Writer::Caller);
    problems.extend(check_input(def, &request.computed, Writer::Rule));
    let writes = request.writes();
    problems.extend(data::read_only(def, &record.state, &writes));
    match (&t.approval, request.vote) {
        (Some(_), None) => problems.push(FieldProblem {
            field: "vote".into(),
            message: format!(
                "`{}` is an approval: send `\"vote\": \"approve\"` or `\"reject\"`",
                t.name
            ),
        }),
        (None, Some(_)) => problems.push(FieldProblem {
            field: "vote".into(),
            message: format!("`{}` is not an approval; votes are not taken", t.name),
        }),
        _ => {}
    }
    let entering = def
        .states
        .get(&t.to)
        .map(|s| s.requires.iter())
        .into_iter()
        .flatten();
    let mut required = missing_after(&record.data, &writes, t.requires.iter().chain(entering));
    required.retain(|r| !problems.iter().any(|p| p.field == r.field));
    problems.extend(required);
    if !problems.is_empty() {
        return Err(EngineError::InvalidData(problems));
    }
    if t.approval.is_some()
        && record
            .votes
            .iter()
            .any(|v| v.transition == t.name && v.actor == actor.name)
    {
        return Err(EngineError::AlreadyVoted {
            transition: t.name.clone(),
            actor: actor.name.clone(),
        });
    }
    Ok(t)
}
