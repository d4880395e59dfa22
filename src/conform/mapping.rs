//! The mapping file: how an external event log's columns and activities map onto a
//! process.
//!
//! ```yaml
//! process: event
//! case: "case:concept:name"
//! activity: ["concept:name", "lifecycle:transition"]   # one column, or several joined by |
//! time: "time:timestamp"
//! time_format: rfc3339        # or a chrono format such as "%Y/%m/%d %H:%M:%S" (UTC)
//! activities:
//!   "Completed|Resolved": resolve
//!   "Accepted|In Progress": [classify, resume, ignore]   # the first the process allows
//!   "Queued|Awaiting Assignment": ignore
//! ```

use indexmap::IndexMap;
use serde::Deserialize;

use crate::definition::{Definition, DefinitionError, Problems, YamlPath, closest, read_yaml};

/// What an activity means: the first of these transitions the process allows where the
/// case stands; [`IGNORE`] always allows and moves nothing.
pub type Meaning = Vec<String>;

/// The word that marks an activity as not a move of the process.
pub const IGNORE: &str = "ignore";

/// A checked mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The process the log is replayed against.
    pub process: String,
    /// The case id column.
    pub case: String,
    /// The activity columns, joined by `|`.
    pub activity: Vec<String>,
    /// The time column.
    pub time: String,
    /// `rfc3339`, or a chrono format.
    pub time_format: String,
    /// Activity → meaning.
    pub activities: IndexMap<String, Meaning>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    process: String,
    case: String,
    activity: OneOrMany,
    time: String,
    #[serde(default = "rfc3339")]
    time_format: String,
    activities: IndexMap<String, OneOrMany>,
}

fn rfc3339() -> String {
    "rfc3339".to_owned()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

impl Mapping {
    /// Reads a mapping file's text; `definition_of` gives the process it names. Every
    /// problem is reported at its line and column.
    pub fn parse<'d>(
        file: &str,
        yaml: &str,
        definition_of: impl Fn(&str) -> Option<&'d Definition>,
        processes: &[&str],
    ) -> Result<(Mapping, &'d Definition), Vec<DefinitionError>> {
        let (map, value) = read_yaml(file, yaml)?;
        let mut problems = Problems::new(file, &map);
        let root = YamlPath::root();
        let Some(raw) = problems.deserialize::<RawMapping>(&root, value) else {
            return Err(problems.list);
        };
        let Some(def) = definition_of(&raw.process) else {
            let hint = closest(&raw.process, processes.iter().copied())
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_else(|| format!(" (processes: {})", processes.join(", ")));
            problems.at_value(
                &root.key("process"),
                format!("unknown process `{}`{hint}", raw.process),
            );
            return Err(problems.list);
        };
        let mut activities = IndexMap::new();
        for (activity, meaning) in raw.activities {
            let meaning = meaning.into_vec();
            let at = root.key("activities").key(activity.clone());
            if meaning.is_empty() {
                problems.at_value(
                    &at,
                    format!("activity `{activity}` maps to nothing; write `{IGNORE}` to skip it"),
                );
            }
            for (i, t) in meaning.iter().enumerate() {
                if t != IGNORE && !def.transitions.contains_key(t) {
                    let hint = closest(t, def.transitions.keys().map(String::as_str))
                        .map(|c| format!("; did you mean `{c}`?"))
                        .unwrap_or_default();
                    let place = if meaning.len() > 1 {
                        at.index(i)
                    } else {
                        at.clone()
                    };
                    problems.at_value(
                        &place,
                        format!(
                            "activity `{activity}`: unknown transition `{t}` of process `{}`{hint}",
                            def.id
                        ),
                    );
                }
            }
            activities.insert(activity, meaning);
        }
        if !problems.list.is_empty() {
            return Err(problems.list);
        }
        Ok((
            Mapping {
                process: raw.process,
                case: raw.case,
                activity: raw.activity.into_vec(),
                time: raw.time,
                time_format: raw.time_format,
                activities,
            },
            def,
        ))
    }

    /// The mapping of a process's own traces: each transition is itself.
    pub fn identity(def: &Definition) -> Mapping {
        Mapping {
            process: def.id.clone(),
            case: "instance_id".to_owned(),
            activity: vec!["transition".to_owned()],
            time: "at".to_owned(),
            time_format: rfc3339(),
            activities: def
                .transitions
                .keys()
                .map(|t| (t.clone(), vec![t.clone()]))
                .collect(),
        }
    }
}
