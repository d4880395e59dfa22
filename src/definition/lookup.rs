//! Lookups: instances of another process that a process's timer rules read, such as the
//! active SLAs an event's targets come from.
//!
//! ```yaml
//! lookups:
//!   slas: { process: service-level, in: [active] }   # ctx.lookups.slas in timer rules
//! ```

use indexmap::IndexMap;
use serde::Deserialize;

use super::model::Named;
use super::problems::Problems;
use super::source_map::YamlPath;

/// Instances of `process` in one of `states`, which timer rules see under `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The name rules see it under (`ctx.lookups.<name>`).
    pub name: String,
    /// The other process.
    pub process: String,
    /// Only its instances in these states.
    pub states: Vec<String>,
}

/// The most instances one lookup hands to a rule.
pub const LOOKUP_LIMIT: u32 = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLookup {
    process: String,
    #[serde(rename = "in")]
    states: Vec<String>,
}

/// Reads the `lookups` of a process; the processes and states they name are checked
/// against the other process files when the whole set is loaded.
pub(crate) fn check_lookups(
    p: &mut Problems<'_>,
    raw: IndexMap<String, serde_yaml::Value>,
) -> Named<Lookup> {
    let mut lookups = Named::default();
    for (name, value) in raw {
        let path = YamlPath::root().key("lookups").key(name.as_str());
        let Some(raw) = p.deserialize::<RawLookup>(&path, value) else {
            continue;
        };
        if raw.states.is_empty() {
            p.at_key(&path.key("in"), format!("lookup `{name}` names no state"));
            continue;
        }
        lookups.insert(
            name.clone(),
            Lookup {
                name,
                process: raw.process,
                states: raw.states,
            },
        );
    }
    lookups
}
