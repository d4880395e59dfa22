//! Computing KPIs over instances' facts: each KPI's filter and value per instance, then
//! the aggregate overall and per group, and the verdict against its target.

use std::collections::BTreeMap;
use std::sync::Arc;

use rhai::{AST, Dynamic, Scope};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::definition::{Aggregate, Kpi, KpiSet, Target};
use crate::clock::Clock;
use crate::rules::{Limits, build_engine, to_dynamic};

/// Which instances, and how to group them.
#[derive(Debug, Clone, Default)]
pub struct KpiQuery {
    /// Only KPIs of this process.
    pub process: Option<String>,
    /// Only instances created at or after this time (ms).
    pub from: Option<i64>,
    /// Only instances created before this time (ms).
    pub to: Option<i64>,
    /// Group by `month` or by a field of the instance data (`priority`, `category`,
    /// `customer`, `service`, `group`, ...).
    pub group_by: Option<String>,
    /// Only instances whose data holds these values; an instance whose process has no
    /// such field is not held to it (a service report for one customer still counts the
    /// changes, which serve every customer).
    pub scope: Vec<(String, Value)>,
}

/// One figure: overall, or of one group.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figure {
    /// The aggregate (absent without values).
    pub value: Option<f64>,
    /// Instances with a value.
    pub count: usize,
    /// `met`, `missed`, `no_data` or `no_target`.
    pub verdict: &'static str,
}

/// One group's figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupFigure {
    /// The group (`P1`, `2026-11`; `(none)` for instances without the field).
    pub key: String,
    /// Its figure.
    #[serde(flatten)]
    pub figure: Figure,
}

/// One KPI computed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KpiFigure {
    /// Its id.
    pub name: String,
    /// Its title.
    pub title: Option<String>,
    /// Its process.
    pub process: String,
    /// Its unit.
    pub unit: Option<String>,
    /// How it aggregates.
    pub aggregate: Aggregate,
    /// Its target.
    pub target: Option<Target>,
    /// The figure over every instance.
    #[serde(flatten)]
    pub figure: Figure,
    /// Per group, when grouped, by key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupFigure>,
    /// Instances whose filter or value failed (left out), and the first failure.
    pub failures: usize,
    /// The first failure's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
}

/// The verdicts a figure can have.
const VERDICTS: &[&str] = &["met", "missed", "no_data", "no_target"];

/// A figure as a stored snapshot holds it.
#[derive(Deserialize)]
struct StoredFigure {
    value: Option<f64>,
    count: usize,
    verdict: String,
}

impl<'de> Deserialize<'de> for Figure {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = StoredFigure::deserialize(d)?;
        Ok(Figure {
            value: f.value,
            count: f.count,
            verdict: super::definition::one_of(&f.verdict, VERDICTS)
                .map_err(serde::de::Error::custom)?,
        })
    }
}

/// Evaluates KPI expressions in the rules sandbox.
pub struct KpiEngine {
    engine: rhai::Engine,
}

impl std::fmt::Debug for KpiEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KpiEngine")
    }
}

fn scope_with(facts: Dynamic) -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push_dynamic("facts", facts);
    scope
}

/// A KPI's compiled expressions.
struct Compiled<'k> {
    kpi: &'k Kpi,
    value: AST,
    filter: Option<AST>,
}

/// KPIs being computed: each KPI's values so far, by group.
pub struct Tally<'a> {
    engine: &'a KpiEngine,
    query: &'a KpiQuery,
    compiled: Vec<Compiled<'a>>,
    /// Per KPI: (group number, value).
    values: Vec<Vec<(u32, f64)>>,
    /// Per KPI: instances whose filter or value failed, and the first failure.
    failures: Vec<(usize, Option<String>)>,
    /// Group keys by number.
    groups: Vec<String>,
    group_index: std::collections::HashMap<String, u32>,
}

impl std::fmt::Debug for Tally<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tally")
            .field("kpis", &self.compiled.len())
            .finish_non_exhaustive()
    }
}

impl Tally<'_> {
    /// Adds one instance of `process` with its facts.
    pub fn add(&mut self, process: &str, facts: &Value) {
        if !self.compiled.iter().any(|c| c.kpi.process == process) {
            return;
        }
        let key = group_key(facts, self.query.group_by.as_deref());
        let group = match self.group_index.get(&key) {
            Some(g) => *g,
            None => {
                let g = self.groups.len() as u32;
                self.groups.push(key.clone());
                self.group_index.insert(key, g);
                g
            }
        };
        let mut scope = scope_with(to_dynamic(facts));
        for (i, c) in self.compiled.iter().enumerate() {
            if c.kpi.process != process {
                continue;
            }
            match self.engine.value_of(c, &mut scope) {
                Ok(Some(v)) => self.values[i].push((group, v)),
                Ok(None) => {}
                Err(e) => {
                    self.failures[i].0 += 1;
                    self.failures[i].1.get_or_insert(e);
                }
            }
        }
    }

    /// Each KPI's figure, overall and per group.
    pub fn finish(self) -> Vec<KpiFigure> {
        let span = match (self.query.from, self.query.to) {
            (Some(from), Some(to)) => Some((to - from) as f64),
            _ => None,
        };
        let grouped = self.query.group_by.is_some();
        let groups = &self.groups;
        self.compiled
            .iter()
            .zip(self.values)
            .zip(self.failures)
            .map(|((c, vals), (failed, first))| {
                let all: Vec<f64> = vals.iter().map(|(_, v)| *v).collect();
                let mut by_group: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
                if grouped {
                    for (g, v) in &vals {
                        by_group
                            .entry(groups[*g as usize].as_str())
                            .or_default()
                            .push(*v);
                    }
                }
                KpiFigure {
                    name: c.kpi.name.clone(),
                    title: c.kpi.title.clone(),
                    process: c.kpi.process.clone(),
                    unit: c.kpi.unit.clone(),
                    aggregate: c.kpi.aggregate,
                    target: c.kpi.target,
                    figure: figure(c.kpi, &all, span),
                    groups: by_group
                        .into_iter()
                        .map(|(key, vs)| GroupFigure {
                            key: key.to_owned(),
                            figure: figure(c.kpi, &vs, span),
                        })
                        .collect(),
                    failures: failed,
                    first_failure: first,
                }
            })
            .collect()
    }
}

impl KpiEngine {
    /// An engine whose `now()` reads `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            engine: build_engine(clock, Limits::default()),
        }
    }

    fn compile(&self, text: &str) -> Result<AST, String> {
        self.engine
            .compile_with_scope(&scope_with(Dynamic::UNIT), text)
            .map_err(|e| e.to_string())
    }

    /// Whether an expression over `facts` compiles, and why not.
    pub fn compiles(&self, text: &str) -> Result<(), String> {
        self.compile(text).map(|_| ())
    }

    /// Evaluates `ast` in `scope` (which holds `facts`), then drops what the script added,
    /// so that one scope serves every KPI of an instance without copying its facts.
    fn eval(&self, ast: &AST, scope: &mut Scope<'static>) -> Result<Dynamic, String> {
        let r = self
            .engine
            .eval_ast_with_scope::<Dynamic>(scope, ast)
            .map_err(|e| e.to_string());
        scope.rewind(1);
        r
    }

    /// Computes the set's KPIs (those of `query.process`, or all) over `instances`: each
    /// one's process name and facts, already those of the query's period.
    pub fn compute(
        &self,
        set: &KpiSet,
        query: &KpiQuery,
        instances: &[(String, Value)],
    ) -> Vec<KpiFigure> {
        let mut tally = self.tally(set, query);
        for (process, facts) in instances {
            tally.add(process, facts);
        }
        tally.finish()
    }

    /// A tally of the set's KPIs (those of `query.process`, or all) that instances are
    /// added to one at a time, so that their facts need not be held all at once.
    pub fn tally<'a>(&'a self, set: &'a KpiSet, query: &'a KpiQuery) -> Tally<'a> {
        let compiled: Vec<Compiled<'_>> = set
            .kpis
            .values()
            .filter(|k| query.process.as_ref().is_none_or(|p| *p == k.process))
            .filter_map(|kpi| {
                Some(Compiled {
                    kpi,
                    value: self.compile(&kpi.value).ok()?,
                    filter: match &kpi.r#where {
                        Some(w) => Some(self.compile(w).ok()?),
                        None => None,
                    },
                })
            })
            .collect();
        let n = compiled.len();
        Tally {
            engine: self,
            query,
            compiled,
            values: vec![Vec::new(); n],
            failures: vec![(0, None); n],
            groups: Vec::new(),
            group_index: std::collections::HashMap::new(),
        }
    }

    /// The instance's value for a KPI: `None` when filtered out or `()`.
    fn value_of(
        &self,
        c: &Compiled<'_>,
        scope: &mut Scope<'static>,
    ) -> Result<Option<f64>, String> {
        if let Some(f) = &c.filter {
            let keep = self.eval(f, scope)?;
            if !keep
                .as_bool()
                .map_err(|t| format!("`where` gave a {t}, not a bool"))?
            {
                return Ok(None);
            }
        }
        let v = self.eval(&c.value, scope)?;
        if v.is_unit() {
            return Ok(None);
        }
        if let Ok(b) = v.as_bool() {
            return Ok(Some(if b { 1.0 } else { 0.0 }));
        }
        if let Ok(i) = v.as_int() {
            return Ok(Some(i as f64));
        }
        v.as_float()
            .map(Some)
            .map_err(|t| format!("`value` gave a {t}, not a number or a bool"))
    }
}

/// The group an instance falls in.
fn group_key(facts: &Value, by: Option<&str>) -> String {
    let v = match by {
        None => return String::new(),
        Some("month") => &facts["month"],
        Some(field) => &facts["data"][field],
    };
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// To two decimals; `-0` (an empty sum) becomes `0`.
fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0 + 0.0
}

/// The aggregate of `values` and its verdict; `span` is the period's length (ms).
fn figure(kpi: &Kpi, values: &[f64], span: Option<f64>) -> Figure {
    let value = aggregate(kpi.aggregate, values, span).map(round);
    let verdict = match (value, kpi.target) {
        (None, _) => "no_data",
        (Some(_), None) => "no_target",
        (Some(v), Some(t)) if t.met_by(v) => "met",
        (Some(_), Some(_)) => "missed",
    };
    Figure {
        value,
        count: values.len(),
        verdict,
    }
}

fn aggregate(a: Aggregate, values: &[f64], span: Option<f64>) -> Option<f64> {
    let n = values.len() as f64;
    let sorted = || {
        let mut s = values.to_vec();
        s.sort_by(f64::total_cmp);
        s
    };
    match a {
        Aggregate::Availability => {
            let span = span.filter(|s| *s > 0.0)?;
            let out: f64 = values.iter().map(|v| v.max(0.0)).sum();
            Some(100.0 * (1.0 - out.min(span) / span))
        }
        Aggregate::Count => Some(n),
        Aggregate::Sum => Some(values.iter().sum()),
        _ if values.is_empty() => None,
        Aggregate::Mean => Some(values.iter().sum::<f64>() / n),
        Aggregate::Ratio => Some(100.0 * values.iter().filter(|v| **v != 0.0).count() as f64 / n),
        Aggregate::Median => Some(percentile(&sorted(), 50.0)),
        Aggregate::Percentile(p) => Some(percentile(&sorted(), f64::from(p))),
    }
}

/// Linear interpolation between the closest ranks.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_are_worked_out_as_by_hand() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(aggregate(Aggregate::Count, &v, None), Some(4.0));
        assert_eq!(aggregate(Aggregate::Sum, &v, None), Some(10.0));
        assert_eq!(aggregate(Aggregate::Mean, &v, None), Some(2.5));
        assert_eq!(aggregate(Aggregate::Median, &v, None), Some(2.5));
        assert_eq!(aggregate(Aggregate::Percentile(90), &v, None), Some(3.7));
        assert_eq!(
            aggregate(Aggregate::Ratio, &[1.0, 0.0, 1.0, 1.0], None),
            Some(75.0)
        );
        // 1 h and 2 h out in a 30-day month: 99.58% available.
        let month = 30.0 * 24.0 * 3_600_000.0;
        let out = [3_600_000.0, 7_200_000.0];
        let a = aggregate(Aggregate::Availability, &out, Some(month)).unwrap();
        assert!((a - 99.583_333).abs() < 1e-5, "{a}");
        assert_eq!(
            aggregate(Aggregate::Availability, &[], Some(month)),
            Some(100.0)
        );
        assert_eq!(
            aggregate(Aggregate::Availability, &out, None),
            None,
            "needs a period"
        );
        assert_eq!(aggregate(Aggregate::Mean, &[], None), None);
        assert_eq!(aggregate(Aggregate::Count, &[], None), Some(0.0));
        let empty_sum = round(aggregate(Aggregate::Sum, &[], None).unwrap());
        assert!(empty_sum.is_sign_positive(), "an empty sum reads 0, not -0");
    }
}
