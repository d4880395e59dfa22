//! The serde mirror of a process file: close to the YAML, no meaning checked yet.
//!
//! Every struct refuses unknown keys, so a misspelt key is an error, never silently ignored.
//! Sections that hold named entries (`fields`, `states`, `transitions`) are read as raw YAML
//! values first and each entry is deserialized on its own, so one bad entry does not hide
//! the problems of the others.

use indexmap::IndexMap;
use serde::Deserialize;

/// The top level of a process file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProcess {
    pub(crate) process: String,
    #[serde(default)]
    pub(crate) title: Option<String>,
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) rules: Vec<String>,
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    #[serde(default)]
    pub(crate) read: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) start: Option<serde_yaml::Value>,
    #[serde(default)]
    pub(crate) tables: Option<serde_yaml::Value>,
    #[serde(default)]
    pub(crate) fields: IndexMap<String, serde_yaml::Value>,
    #[serde(default)]
    pub(crate) states: IndexMap<String, serde_yaml::Value>,
    #[serde(default)]
    pub(crate) transitions: IndexMap<String, serde_yaml::Value>,
    #[serde(default)]
    pub(crate) timers: IndexMap<String, serde_yaml::Value>,
    #[serde(default)]
    pub(crate) lookups: IndexMap<String, serde_yaml::Value>,
}

/// Who may start an instance and what runs when it starts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStart {
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    #[serde(default)]
    pub(crate) action: Option<String>,
}

/// One field of the instance data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawField {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) title: Option<String>,
    #[serde(default)]
    pub(crate) required: bool,
    #[serde(default)]
    pub(crate) computed: bool,
    #[serde(default)]
    pub(crate) values: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) min: Option<f64>,
    #[serde(default)]
    pub(crate) max: Option<f64>,
    #[serde(default)]
    pub(crate) min_len: Option<usize>,
    #[serde(default)]
    pub(crate) max_len: Option<usize>,
    #[serde(default)]
    pub(crate) process: Option<String>,
}

/// One state.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    #[serde(default)]
    pub(crate) title: Option<String>,
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) initial: bool,
    #[serde(default, rename = "final")]
    pub(crate) is_final: bool,
    #[serde(default)]
    pub(crate) requires: Vec<String>,
    #[serde(default)]
    pub(crate) read_only: Vec<String>,
}

/// `from:` takes one state or a list of states.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// One transition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTransition {
    pub(crate) from: OneOrMany,
    pub(crate) to: String,
    #[serde(default)]
    pub(crate) title: Option<String>,
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    #[serde(default)]
    pub(crate) requires: Vec<String>,
    #[serde(default)]
    pub(crate) auto: bool,
    #[serde(default)]
    pub(crate) guard: Option<String>,
    #[serde(default)]
    pub(crate) action: Option<String>,
    #[serde(default)]
    pub(crate) approval: Option<RawApproval>,
    #[serde(default)]
    pub(crate) creates: Vec<RawCreate>,
    #[serde(default)]
    pub(crate) notify: Vec<String>,
}

/// An instance of another process that a transition creates and links.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCreate {
    pub(crate) process: String,
    pub(crate) link: String,
    #[serde(default)]
    pub(crate) when: Option<String>,
    #[serde(default)]
    pub(crate) data: Option<String>,
}

/// Votes a transition needs before it happens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApproval {
    pub(crate) roles: Vec<String>,
    pub(crate) quorum: RawQuorum,
    #[serde(default)]
    pub(crate) rejections: Option<u32>,
    pub(crate) reject_to: String,
}

/// A fixed number of approvals, or a rule that computes it from the instance.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawQuorum {
    Count(u32),
    Rule(String),
}
