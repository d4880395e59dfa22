//! Collects the problems of one process file, each placed at its line and column.

use serde::de::DeserializeOwned;

use super::error::DefinitionError;
use super::source_map::{SourceMap, YamlPath};

/// Collects problems and places them in the source.
pub(crate) struct Problems<'a> {
    pub(crate) file: &'a str,
    pub(crate) map: &'a SourceMap,
    pub(crate) list: Vec<DefinitionError>,
}

impl<'a> Problems<'a> {
    /// No problems yet in `file`, whose positions `map` holds.
    pub(crate) fn new(file: &'a str, map: &'a SourceMap) -> Self {
        Problems {
            file,
            map,
            list: Vec::new(),
        }
    }

    pub(crate) fn at_key(&mut self, path: &YamlPath, message: impl Into<String>) {
        let position = self.map.key_position(path);
        self.list
            .push(DefinitionError::new(self.file, position, message));
    }

    pub(crate) fn at_value(&mut self, path: &YamlPath, message: impl Into<String>) {
        let position = self.map.value_position(path);
        self.list
            .push(DefinitionError::new(self.file, position, message));
    }

    /// Deserializes one node; a failure is reported at the node it concerns.
    pub(crate) fn deserialize<T: DeserializeOwned>(
        &mut self,
        base: &YamlPath,
        value: serde_yaml::Value,
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut path = base.clone();
                for segment in e.path().iter() {
                    match segment {
                        serde_path_to_error::Segment::Map { key } => path = path.key(key),
                        serde_path_to_error::Segment::Seq { index } => path = path.index(*index),
                        _ => {}
                    }
                }
                let message = e.into_inner().to_string();
                if let Some(key) = unknown_key(&message) {
                    self.at_key(&path.key(key), message);
                } else if message.starts_with("missing field") {
                    self.at_key(&path, message);
                } else {
                    self.at_value(&path, message);
                }
                None
            }
        }
    }
}

/// serde names an unknown key only in its message (`unknown field `gaurd`, expected ...`).
fn unknown_key(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}
