//! Process definitions: the YAML model, its validation, the state graph and the content hash.
//!
//! This module knows nothing of scripts' meaning, storage or HTTP. Rule scripts are checked
//! by [`crate::rules`], which reports through the same [`DefinitionError`].

mod calendar;
mod diff;
mod document;
mod error;
mod field;
mod graph;
mod lookup;
mod model;
mod parse;
mod problems;
mod raw;
mod schema;
mod source_map;
mod suggest;
mod timer;
mod transition;
mod warnings;

pub use calendar::{Calendar, NoWorkingTime, Period, parse_calendar};
pub use diff::{Attribute, Change, ChangeKind, diff, render_diff};
pub use document::render_markdown;
pub use error::{DefinitionError, DefinitionErrors};
pub use field::{Field, FieldType, SNAPSHOT_FIELD, describe_json};
pub use graph::GraphFormat;
pub use lookup::{LOOKUP_LIMIT, Lookup};
pub use model::{
    Approval, CREATOR, Create, Definition, Named, Quorum, Readable, RuleSource, Script, ScriptRef,
    Source, Start, State, Transition,
};
pub(crate) use parse::read_yaml;
pub use parse::{content_hash, parse};
pub(crate) use problems::Problems;
pub use schema::process_schema;
pub use source_map::{Position, SourceMap, YamlPath};
pub(crate) use suggest::closest;
pub(crate) use timer::duration_ms;
pub use timer::{Clock, Timer, TimerStatus, WARNING_SUFFIX, Warning};
pub use warnings::warnings;

impl Definition {
    /// A problem at the value found at `path` of this definition's YAML.
    pub fn error_at(&self, path: &YamlPath, message: impl Into<String>) -> DefinitionError {
        DefinitionError::new(
            self.source.file.clone(),
            self.source_map.value_position(path),
            message,
        )
    }
}
