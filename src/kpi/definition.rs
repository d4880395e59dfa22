//! KPI files (`kpis/*.yaml`): each KPI names its process, a per-instance value as a Rhai
//! expression over the instance's `facts`, an optional filter, how values aggregate, a
//! unit and a target. Checked like process files: every problem at its line and column.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::definition::{DefinitionError, Problems, YamlPath, read_yaml};

/// How a KPI's per-instance values become one figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Instances with a value.
    Count,
    /// The values added up.
    Sum,
    /// Their mean.
    Mean,
    /// Their median.
    Median,
    /// The value below which this share (1 to 99) of them fall.
    Percentile(u8),
    /// The share of true values, in percent.
    Ratio,
    /// The share of the period not taken by the values, in percent: each value is an
    /// instance's outage time within the period (ms). Needs a period with both ends.
    Availability,
}

/// A target a KPI's figure is held to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Target {
    /// `>=`, `>`, `<=`, `<` or `==`.
    pub op: &'static str,
    /// The value compared with.
    pub value: f64,
}

impl Target {
    /// The figure meets the target.
    pub fn met_by(&self, figure: f64) -> bool {
        match self.op {
            ">=" => figure >= self.value,
            ">" => figure > self.value,
            "<=" => figure <= self.value,
            "<" => figure < self.value,
            _ => (figure - self.value).abs() < 1e-9,
        }
    }
}

/// One KPI, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Kpi {
    /// Its id (`mttr`).
    pub name: String,
    /// A label for reports.
    pub title: Option<String>,
    /// The process whose instances it measures.
    pub process: String,
    /// Rhai expression over `facts`: the instance's value (a number or a bool), or `()` to
    /// leave the instance out.
    pub value: String,
    /// Rhai expression over `facts`: only instances for which it is true count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#where: Option<String>,
    /// How values aggregate.
    pub aggregate: Aggregate,
    /// The unit of the figure (`h`, `%`, `points`).
    pub unit: Option<String>,
    /// The target, if any.
    pub target: Option<Target>,
    /// The file it is defined in.
    pub file: String,
}

/// The KPIs of a folder, with a hash of their files' texts: a report records it so that it
/// can be reproduced exactly.
#[derive(Debug, Clone, Default)]
pub struct KpiSet {
    /// Every KPI, by name.
    pub kpis: IndexMap<String, Kpi>,
    /// SHA-256 (hex) of the files' names and texts.
    pub hash: String,
    /// The files' texts by file name, as JSON: stored with the set's number.
    pub source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    kpis: IndexMap<String, serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKpi {
    #[serde(default)]
    title: Option<String>,
    process: String,
    value: serde_yaml::Value,
    #[serde(default, rename = "where")]
    filter: Option<String>,
    aggregate: String,
    #[serde(default)]
    percentile: Option<u8>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    target: Option<IndexMap<String, f64>>,
}

/// One of `names`, as the static text it is: a name read back from a stored snapshot.
pub(crate) fn one_of(text: &str, names: &'static [&'static str]) -> Result<&'static str, String> {
    names
        .iter()
        .find(|n| **n == text)
        .copied()
        .ok_or_else(|| format!("`{text}` is not one of {}", names.join(", ")))
}

/// A target as a stored snapshot holds it.
#[derive(Deserialize)]
struct StoredTarget {
    op: String,
    value: f64,
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = StoredTarget::deserialize(d)?;
        Ok(Target {
            op: one_of(&t.op, COMPARATORS).map_err(serde::de::Error::custom)?,
            value: t.value,
        })
    }
}

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "mean",
    "median",
    "percentile",
    "ratio",
    "availability",
];
const COMPARATORS: &[&str] = &[">=", ">", "<=", "<", "=="];

/// What a KPI file is checked against.
pub struct Checks<'a> {
    /// Whether a Rhai expression compiles, and why not.
    pub compiles: &'a dyn Fn(&str) -> Result<(), String>,
    /// The processes served.
    pub processes: &'a [&'a str],
}

/// Reads and checks one KPI file.
pub fn parse_kpis(
    file: &str,
    yaml: &str,
    checks: &Checks<'_>,
) -> Result<Vec<Kpi>, Vec<DefinitionError>> {
    let (map, value) = read_yaml(file, yaml)?;
    let mut p = Problems::new(file, &map);
    let root = YamlPath::root();
    let Some(raw) = p.deserialize::<RawFile>(&root, value) else {
        return Err(p.list);
    };
    let mut out = Vec::new();
    for (name, value) in raw.kpis {
        let path = root.key("kpis").key(name.as_str());
        let Some(k) = p.deserialize::<RawKpi>(&path, value) else {
            continue;
        };
        if !checks.processes.contains(&k.process.as_str()) {
            let hint = crate::definition::closest(&k.process, checks.processes.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            p.at_value(
                &path.key("process"),
                format!("unknown process `{}`{hint}", k.process),
            );
        }
        // A constant (`value: 1`) is an expression too.
        let value_text = match &k.value {
            serde_yaml::Value::String(s) => Some(s.clone()),
            serde_yaml::Value::Number(n) => Some(n.to_string()),
            serde_yaml::Value::Bool(b) => Some(b.to_string()),
            _ => {
                p.at_value(
                    &path.key("value"),
                    "`value` is an expression: text, a number or a bool",
                );
                None
            }
        };
        let Some(value_text) = value_text else {
            continue;
        };
        let aggregate = match (k.aggregate.as_str(), k.percentile) {
            ("count", _) => Some(Aggregate::Count),
            ("sum", _) => Some(Aggregate::Sum),
            ("mean", _) => Some(Aggregate::Mean),
            ("median", _) => Some(Aggregate::Median),
            ("ratio", _) => Some(Aggregate::Ratio),
            ("availability", _) => Some(Aggregate::Availability),
            ("percentile", Some(n)) if (1..=99).contains(&n) => Some(Aggregate::Percentile(n)),
            ("percentile", _) => {
                p.at_key(
                    &path.key("aggregate"),
                    "`percentile` needs `percentile: N` (1 to 99)",
                );
                None
            }
            (other, _) => {
                let hint = crate::definition::closest(other, AGGREGATES.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                p.at_value(
                    &path.key("aggregate"),
                    format!(
                        "unknown aggregate `{other}`; expected one of {}{hint}",
                        AGGREGATES.join(", ")
                    ),
                );
                None
            }
        };
        let mut target = None;
        if let Some(t) = &k.target {
            match t.iter().next() {
                Some((op, v)) if t.len() == 1 => match COMPARATORS.iter().find(|c| **c == op) {
                    Some(op) => target = Some(Target { op, value: *v }),
                    None => p.at_key(
                        &path.key("target").key(op.as_str()),
                        format!(
                            "unknown comparator `{op}`; expected one of {}",
                            COMPARATORS.join(", ")
                        ),
                    ),
                },
                _ => p.at_value(
                    &path.key("target"),
                    "a target is one comparator and a number, such as `{ \">=\": 90 }`",
                ),
            }
        }
        for (key, script) in [("value", Some(&value_text)), ("where", k.filter.as_ref())] {
            if let Some(script) = script
                && let Err(e) = (checks.compiles)(script)
            {
                p.at_value(&path.key(key), format!("`{key}` does not compile: {e}"));
            }
        }
        if let Some(aggregate) = aggregate {
            out.push(Kpi {
                name,
                title: k.title,
                process: k.process,
                value: value_text,
                r#where: k.filter,
                aggregate,
                unit: k.unit,
                target,
                file: file.to_owned(),
            });
        }
    }
    if p.list.is_empty() {
        Ok(out)
    } else {
        Err(p.list)
    }
}

impl KpiSet {
    /// Reads every `*.yaml` file of `dir` (a missing folder holds no KPIs). Every problem of
    /// every file is returned at once, as is a name defined twice.
    pub fn load(dir: &std::path::Path, checks: &Checks<'_>) -> Result<Self, Vec<DefinitionError>> {
        let mut errors = Vec::new();
        let mut files = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut paths: Vec<_> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            paths.sort();
            for path in paths {
                let file = path.display().to_string();
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                match std::fs::read_to_string(&path) {
                    Ok(text) => files.push((file, name, text)),
                    Err(e) => errors.push(DefinitionError::new(
                        &file,
                        crate::definition::Position { line: 1, column: 1 },
                        format!("cannot read: {e}"),
                    )),
                }
            }
        }
        match Self::from_files(files, checks) {
            Ok(set) if errors.is_empty() => Ok(set),
            Ok(_) => Err(errors),
            Err(mut more) => {
                errors.append(&mut more);
                Err(errors)
            }
        }
    }

    /// The set as stored in `source` (file name → text, see [`KpiSet::source`]): the KPIs
    /// exactly as a report used them.
    pub fn from_source(source: &str, checks: &Checks<'_>) -> Result<Self, Vec<DefinitionError>> {
        let texts: serde_json::Map<String, serde_json::Value> = serde_json::from_str(source)
            .map_err(|e| {
                vec![DefinitionError::new(
                    "(stored KPI files)",
                    crate::definition::Position { line: 1, column: 1 },
                    format!("cannot read: {e}"),
                )]
            })?;
        let mut files: Vec<(String, String, String)> = texts
            .into_iter()
            .map(|(name, text)| {
                let text = text.as_str().unwrap_or_default().to_owned();
                (name.clone(), name, text)
            })
            .collect();
        files.sort_by(|a, b| a.1.cmp(&b.1));
        Self::from_files(files, checks)
    }

    /// The set of `files` (label for messages, file name, text), in order: the hash covers
    /// names and texts.
    fn from_files(
        files: Vec<(String, String, String)>,
        checks: &Checks<'_>,
    ) -> Result<Self, Vec<DefinitionError>> {
        let mut set = KpiSet::default();
        let mut errors = Vec::new();
        let mut hash = Sha256::new();
        let mut texts = serde_json::Map::new();
        for (file, name, text) in files {
            hash.update(&name);
            hash.update([0]);
            hash.update(text.as_bytes());
            hash.update([0]);
            match parse_kpis(&file, &text, checks) {
                Ok(kpis) => {
                    for k in kpis {
                        if let Some(first) = set.kpis.get(&k.name) {
                            errors.push(DefinitionError::new(
                                &file,
                                crate::definition::Position { line: 1, column: 1 },
                                format!("KPI `{}` is already defined in {}", k.name, first.file),
                            ));
                        } else {
                            set.kpis.insert(k.name.clone(), k);
                        }
                    }
                }
                Err(mut e) => errors.append(&mut e),
            }
            texts.insert(name, serde_json::Value::from(text));
        }
        set.hash = hex::encode(hash.finalize());
        set.source = serde_json::Value::Object(texts).to_string();
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let compiles = |t: &str| {
            if t.contains("((") {
                Err("unbalanced".to_owned())
            } else {
                Ok(())
            }
        };
        let checks = Checks {
            compiles: &compiles,
            processes: &["event"],
        };
        match parse_kpis("k.yaml", yaml, &checks) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn mistakes_in_a_kpi_file_are_reported_at_their_line_and_column() {
        let yaml = "kpis:\n  a:\n    process: evnt\n    value: ((1\n    aggregate: meen\n    target: { \"=>\": 3 }\n  b:\n    process: event\n    value: 1\n    agregate: count\n";
        assert_eq!(
            problems(yaml),
            [
                "k.yaml:3:14: unknown process `evnt`; did you mean `event`?",
                "k.yaml:5:16: unknown aggregate `meen`; expected one of count, sum, mean, median, percentile, ratio, availability; did you mean `mean`?",
                "k.yaml:6:15: unknown comparator `=>`; expected one of >=, >, <=, <, ==",
                "k.yaml:4:12: `value` does not compile: unbalanced",
                "k.yaml:10:5: unknown field `agregate`, expected one of `title`, `process`, `value`, `where`, `aggregate`, `percentile`, `unit`, `target`",
            ]
        );
    }

    #[test]
    fn a_target_holds_its_comparator() {
        let t = Target {
            op: ">=",
            value: 90.0,
        };
        assert!(t.met_by(90.0) && !t.met_by(89.99));
        let t = Target {
            op: "<",
            value: 5.0,
        };
        assert!(t.met_by(4.9) && !t.met_by(5.0));
    }
}
