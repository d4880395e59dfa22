//! Moving running instances to a newer version of their process.
//!
//! A migration is planned per instance first: its state is mapped (by the request's
//! mapping, else by name) and checked against the target version. An instance is `fine`
//! when the target has its state, defines every field it holds with a value that still
//! fits, and has every field the state requires; it `needs_mapping` when the target has no
//! such state; `field_missing` when a field it holds is gone or no longer fits, or the state
//! requires one it lacks; `stranded` when the state is one only automatic transitions
//! leave, where an instance cannot rest. A dry run stops there. Applied, each `fine`
//! instance moves in a transaction of its own, with a `migration` trace record; the others
//! are left as they are.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::catalog::Loaded;
use super::error::EngineError;
use super::step::Working;
use super::{Actor, Engine};
use crate::store::{InstanceQuery, InstanceRecord, TraceKind};

/// What to migrate, and where to.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationRequest {
    /// The process whose instances move.
    pub process: String,
    /// The version they move to (default: the one served now).
    #[serde(default, deserialize_with = "whole_number")]
    pub to_version: Option<i64>,
    /// Only instances of this version (default: every older one).
    #[serde(default, deserialize_with = "whole_number")]
    pub from_version: Option<i64>,
    /// Old state → state of the target version, for states it renamed or dropped.
    #[serde(default)]
    pub states: BTreeMap<String, String>,
    /// Only these instances (default: every running instance of the process).
    #[serde(default)]
    pub instances: Vec<String>,
    /// Move the instances that are fine (default: a dry run that moves nothing).
    #[serde(default)]
    pub apply: bool,
}

/// A version number: an integer, also when written as a number with no fraction (`3.0`,
/// which JSON does not tell apart from `3`).
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error as _;
    let Some(n) = <Option<serde_json::Number> as serde::Deserialize>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        _ => Err(D::Error::custom(format!(
            "expected a version number, got {n}"
        ))),
    }
}

/// What happens, or happened, to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// It can move (a dry run) or it moved.
    Fine,
    /// The target has no state for it: map its state.
    NeedsMapping,
    /// A field it holds is gone or no longer fits, or its state requires one it lacks.
    FieldMissing,
    /// Its state in the target is one only automatic transitions leave.
    Stranded,
    /// It was fine, but moving it failed (another step changed it meanwhile).
    Failed,
}

/// One instance of a migration.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InstanceMigration {
    /// The instance.
    pub id: String,
    /// The version it is pinned to.
    pub from_version: Option<i64>,
    /// Its state.
    pub from_state: String,
    /// Its state in the target version, when there is one.
    pub to_state: Option<String>,
    /// What happens to it.
    pub verdict: Verdict,
    /// Why it cannot move, in words; and what moving drops (votes of a round the target
    /// no longer has).
    pub problems: Vec<String>,
    /// It moved (applied runs only).
    pub migrated: bool,
}

/// The outcome of a migration, dry or applied.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MigrationReport {
    /// The process.
    pub process: String,
    /// The target version.
    pub to_version: i64,
    /// Its hash.
    pub to_hash: String,
    /// Whether fine instances were moved.
    pub applied: bool,
    /// Instances by verdict.
    #[schema(value_type = BTreeMap<String, usize>)]
    pub counts: BTreeMap<&'static str, usize>,
    /// Every running instance considered, oldest first.
    pub instances: Vec<InstanceMigration>,
}

/// Instances read per page while looking for the ones to migrate.
const PAGE: u32 = 500;

impl Engine {
    /// Plans, and with `apply` performs, the migration `request` describes; `actor` must
    /// hold the admin role and is named in the trace.
    pub async fn migrate_instances(
        &self,
        actor: &Actor,
        request: &MigrationRequest,
    ) -> Result<MigrationReport, EngineError> {
        actor.require(super::ADMIN_ROLE, "migrate instances")?;
        let process = &request.process;
        let versions = self.versions_of(process).await?;
        if versions.is_empty() {
            return Err(EngineError::UnknownProcess(process.clone()));
        }
        let number_of = |hash: &str| versions.iter().find(|v| v.hash == hash).map(|v| v.version);
        let (to_version, target) = match request.to_version {
            Some(n) => {
                let (v, loaded) = self
                    .numbered_version(process, n)
                    .await?
                    .ok_or_else(|| EngineError::UnknownVersion(process.clone(), n))?;
                (v.version, loaded)
            }
            None => {
                let loaded = self
                    .catalog()
                    .get(process)
                    .cloned()
                    .ok_or_else(|| EngineError::UnknownProcess(process.clone()))?;
                let n = number_of(&loaded.definition.hash).unwrap_or(0);
                (n, loaded)
            }
        };
        if let Some(n) = request.from_version
            && !versions.iter().any(|v| v.version == n)
        {
            return Err(EngineError::UnknownVersion(process.clone(), n));
        }
        for (old, new) in &request.states {
            if !target.definition.states.contains_key(new) {
                return Err(EngineError::InvalidData(vec![super::FieldProblem {
                    field: format!("states.{old}"),
                    message: format!("names `{new}`, which is not a state of version {to_version}"),
                }]));
            }
        }
        let mut report = MigrationReport {
            process: process.clone(),
            to_version,
            to_hash: target.definition.hash.clone(),
            applied: request.apply,
            counts: BTreeMap::new(),
            instances: Vec::new(),
        };
        for record in self.running_instances(request, &target).await? {
            let from_version = number_of(&record.definition_hash);
            if request
                .from_version
                .is_some_and(|n| from_version != Some(n))
            {
                continue;
            }
            let mut plan = plan(&record, &target, &request.states, to_version);
            plan.from_version = from_version;
            if request.apply && plan.verdict == Verdict::Fine {
                let comment = format!(
                    "migrated from version {} to version {to_version}",
                    from_version.map_or("?".into(), |n| n.to_string())
                );
                match self
                    .migrate_one(actor, record, &target, &plan, comment)
                    .await
                {
                    Ok(()) => plan.migrated = true,
                    Err(e) => {
                        plan.verdict = Verdict::Failed;
                        plan.problems.push(e.to_string());
                    }
                }
            }
            *report.counts.entry(plan.verdict.as_str()).or_default() += 1;
            report.instances.push(plan);
        }
        Ok(report)
    }

    /// The instances of the request's process that are not final and not on the target.
    async fn running_instances(
        &self,
        request: &MigrationRequest,
        target: &Loaded,
    ) -> Result<Vec<InstanceRecord>, EngineError> {
        let mut found = Vec::new();
        let mut query = InstanceQuery {
            process: Some(request.process.clone()),
            state: None,
            after: None,
            limit: PAGE,
            visible: None,
        };
        loop {
            let page = self.store.list_instances(&query).await?;
            let last = page.last().map(|r| r.id.clone());
            for r in page {
                if r.definition_hash == target.definition.hash
                    || (!request.instances.is_empty() && !request.instances.contains(&r.id))
                {
                    continue;
                }
                let pinned = self.version(&r.definition_hash).await?;
                let finished = pinned
                    .definition
                    .states
                    .get(&r.state)
                    .is_some_and(|s| s.is_final);
                if !finished {
                    found.push(r);
                }
            }
            match last {
                Some(id) => query.after = Some(id),
                None => break,
            }
        }
        Ok(found)
    }

    /// Moves one instance to `target` in a transaction of its own: pinned to the target,
    /// in its mapped state, its timers planned under the target, with a `migration`
    /// record. The store refuses it if another step changed the instance meanwhile.
    async fn migrate_one(
        &self,
        actor: &Actor,
        mut record: InstanceRecord,
        target: &Loaded,
        plan: &InstanceMigration,
        comment: String,
    ) -> Result<(), EngineError> {
        let Some(to_state) = plan.to_state.clone() else {
            return Ok(());
        };
        record.definition_hash = target.definition.hash.clone();
        record
            .votes
            .retain(|v| keeps_round(&target.definition, &to_state, &v.transition));
        let catalog = self.catalog();
        let from = record.state.clone();
        let mut w = Working::existing(
            self.env(&catalog),
            target,
            actor,
            record,
            &Map::new(),
            Value::Object(Map::new()),
        );
        w.record.state = to_state;
        w.record(
            TraceKind::Migration,
            None,
            Some(from),
            Map::new(),
            Some(comment),
        );
        self.recent.forget(&w.record.id);
        let committed = self.commit(w, actor, None, 200).await?;
        self.remember(committed, None);
        Ok(())
    }
}

impl Verdict {
    /// Its name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Fine => "fine",
            Verdict::NeedsMapping => "needs_mapping",
            Verdict::FieldMissing => "field_missing",
            Verdict::Stranded => "stranded",
            Verdict::Failed => "failed",
        }
    }
}

/// A vote on `transition` stays open in `state` of `def` only if that transition is still
/// an approval leaving that state.
fn keeps_round(def: &crate::definition::Definition, state: &str, transition: &str) -> bool {
    def.transitions_from(state)
        .any(|t| t.name == transition && t.approval.is_some())
}

/// What migrating `record` to `target` would do.
fn plan(
    record: &InstanceRecord,
    target: &Loaded,
    states: &BTreeMap<String, String>,
    to_version: i64,
) -> InstanceMigration {
    let def = &target.definition;
    let mapped = states.get(&record.state).unwrap_or(&record.state);
    let mut out = InstanceMigration {
        id: record.id.clone(),
        from_version: None,
        from_state: record.state.clone(),
        to_state: None,
        verdict: Verdict::Fine,
        problems: Vec::new(),
        migrated: false,
    };
    let Some(state) = def.states.get(mapped) else {
        out.verdict = Verdict::NeedsMapping;
        let hint = crate::definition::closest(mapped, def.states.keys().map(String::as_str))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        out.problems.push(format!(
            "version {to_version} has no state `{mapped}`: map it in `states`{hint}"
        ));
        return out;
    };
    out.to_state = Some(mapped.clone());
    for (name, value) in record.data.iter() {
        match def.fields.get(name) {
            None if !value.is_null() => out.problems.push(format!(
                "field `{name}` is not in version {to_version}: its value would be lost"
            )),
            Some(f) if !value.is_null() => {
                if let Err(e) = f.field_type.check(value) {
                    out.problems.push(format!(
                        "field `{name}` no longer fits version {to_version}: {e}"
                    ));
                }
            }
            _ => {}
        }
    }
    for required in &state.requires {
        if record.data.get(required).is_none_or(Value::is_null) {
            out.problems.push(format!(
                "state `{mapped}` of version {to_version} requires field `{required}`, which the instance lacks"
            ));
        }
    }
    if !out.problems.is_empty() {
        out.verdict = Verdict::FieldMissing;
        return out;
    }
    let leaving: Vec<_> = def.transitions_from(mapped).collect();
    if !state.is_final && !leaving.is_empty() && leaving.iter().all(|t| t.auto) {
        out.verdict = Verdict::Stranded;
        out.problems.push(format!(
            "state `{mapped}` of version {to_version} is left only by automatic transitions: an instance cannot rest there; map it to another state"
        ));
        return out;
    }
    let dropped: Vec<&str> = record
        .votes
        .iter()
        .filter(|v| !keeps_round(def, mapped, &v.transition))
        .map(|v| v.transition.as_str())
        .collect();
    if !dropped.is_empty() {
        out.problems.push(format!(
            "the open votes on `{}` are dropped: version {to_version} has no such approval in `{mapped}`",
            dropped.join("`, `")
        ));
    }
    out
}
