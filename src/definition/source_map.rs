//! Where each node of a YAML document stands in its text.
//!
//! serde gives typed values but forgets positions. This module walks the same text with
//! yaml-rust2's span-aware event parser and records, for every mapping key and value, the
//! line and column at which it starts. Errors found later (a transition naming an unknown
//! state, a script that does not compile) look their position up here by YAML path.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A line and column in a text, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// One step of a YAML path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum PathSegment {
    /// A key in a mapping.
    Key(String),
    /// An index in a sequence.
    Index(usize),
}

/// A path from the document root to a node, such as `transitions.assign.to`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct YamlPath(Vec<PathSegment>);

impl YamlPath {
    /// The root of the document.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path extended by a mapping key.
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut segments = self.0.clone();
        segments.push(PathSegment::Key(key.into()));
        Self(segments)
    }

    /// This path extended by a sequence index.
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(PathSegment::Index(index));
        Self(segments)
    }

    /// Parses a dotted path (`transitions.assign.from.1`); numeric segments are indices.
    pub fn parse(dotted: &str) -> Self {
        let segments = dotted
            .split('.')
            .filter(|s| !s.is_empty())
            .map(|s| match s.parse::<usize>() {
                Ok(i) => PathSegment::Index(i),
                Err(_) => PathSegment::Key(s.to_owned()),
            })
            .collect();
        Self(segments)
    }

    fn parent(&self) -> Option<Self> {
        if self.0.is_empty() {
            None
        } else {
            Some(Self(self.0[..self.0.len() - 1].to_vec()))
        }
    }
}

impl std::fmt::Display for YamlPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match segment {
                PathSegment::Key(k) => f.write_str(k)?,
                PathSegment::Index(n) => write!(f, "{n}")?,
            }
        }
        Ok(())
    }
}

/// Positions of the keys and values of one YAML document.
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    keys: HashMap<YamlPath, Position>,
    values: HashMap<YamlPath, Position>,
}

/// A syntax error or a duplicate key found while mapping positions.
#[derive(Debug, Clone)]
pub struct MapError {
    /// Where the problem is.
    pub position: Position,
    /// What the problem is.
    pub message: String,
}

impl SourceMap {
    /// Maps a document. Syntax errors and duplicate keys are returned; a document with
    /// either cannot be loaded.
    pub fn build(text: &str) -> Result<Self, Vec<MapError>> {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if let Err(e) = parser.load(&mut builder, false) {
            let marker = e.marker();
            return Err(vec![MapError {
                position: position_of(marker),
                message: format!("YAML syntax error: {}", e.info()),
            }]);
        }
        if builder.errors.is_empty() {
            Ok(builder.map)
        } else {
            Err(builder.errors)
        }
    }

    /// Position of the key that names the node at `path`, or of the node itself for
    /// sequence items and the root.
    pub fn key_position(&self, path: &YamlPath) -> Position {
        self.keys
            .get(path)
            .or_else(|| self.values.get(path))
            .copied()
            .unwrap_or_else(|| self.nearest(path))
    }

    /// Position of the value at `path`; falls back to the nearest ancestor that exists,
    /// so that a missing key is reported where it should have been.
    pub fn value_position(&self, path: &YamlPath) -> Position {
        self.values
            .get(path)
            .copied()
            .unwrap_or_else(|| self.nearest(path))
    }

    fn nearest(&self, path: &YamlPath) -> Position {
        let mut current = path.parent();
        while let Some(p) = current {
            if let Some(pos) = self.keys.get(&p).or_else(|| self.values.get(&p)) {
                return *pos;
            }
            current = p.parent();
        }
        Position { line: 1, column: 1 }
    }
}

fn position_of(marker: &Marker) -> Position {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Position {
        line: marker.line(),
        column: marker.col() + 1,
    }
}

enum Frame {
    Mapping {
        path: YamlPath,
        pending_key: Option<(String, Position)>,
        seen: HashMap<String, Position>,
    },
    Sequence {
        path: YamlPath,
        next: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    map: SourceMap,
    errors: Vec<MapError>,
}

impl Builder {
    /// Called for each node start (scalar, alias, mapping or sequence); returns its path,
    /// or `None` when the node is a mapping key.
    fn node_path(&mut self, scalar_key: Option<&str>, position: Position) -> Option<YamlPath> {
        match self.stack.last_mut() {
            None => Some(YamlPath::root()),
            Some(Frame::Sequence { path, next }) => {
                let p = path.index(*next);
                *next += 1;
                Some(p)
            }
            Some(Frame::Mapping {
                path,
                pending_key,
                seen,
            }) => match pending_key.take() {
                Some((key, key_position)) => {
                    let p = path.key(key);
                    self.map.keys.insert(p.clone(), key_position);
                    Some(p)
                }
                None => {
                    // This node is a key. Complex (non-scalar) keys are given an empty name.
                    let key = scalar_key.unwrap_or_default().to_owned();
                    if let Some(first) = seen.get(&key) {
                        self.errors.push(MapError {
                            position,
                            message: format!(
                                "duplicate key `{key}` (first defined at line {}, column {})",
                                first.line, first.column
                            ),
                        });
                    } else {
                        seen.insert(key.clone(), position);
                    }
                    *pending_key = Some((key, position));
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, marker: Marker) {
        let position = position_of(&marker);
        match event {
            Event::Scalar(value, ..) => {
                if let Some(path) = self.node_path(Some(&value), position) {
                    self.map.values.insert(path, position);
                }
            }
            Event::Alias(_) => {
                if let Some(path) = self.node_path(None, position) {
                    self.map.values.insert(path, position);
                }
            }
            Event::MappingStart(..) => {
                let path = self.node_path(None, position).unwrap_or_default();
                self.map.values.insert(path.clone(), position);
                self.stack.push(Frame::Mapping {
                    path,
                    pending_key: None,
                    seen: HashMap::new(),
                });
            }
            Event::SequenceStart(..) => {
                let path = self.node_path(None, position).unwrap_or_default();
                self.map.values.insert(path.clone(), position);
                self.stack.push(Frame::Sequence { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_are_located_by_path() {
        let text = "process: event\nstates:\n  new: { initial: true }\n  done:\n    final: true\nroles: [a, b]\n";
        let map = SourceMap::build(text).unwrap();
        assert_eq!(
            map.key_position(&YamlPath::parse("states.done")),
            Position { line: 4, column: 3 }
        );
        assert_eq!(
            map.value_position(&YamlPath::parse("states.new.initial")),
            Position {
                line: 3,
                column: 19
            }
        );
        assert_eq!(
            map.value_position(&YamlPath::parse("roles.1")),
            Position {
                line: 6,
                column: 12
            }
        );
    }

    #[test]
    fn duplicate_keys_are_reported_with_both_positions() {
        let errors = SourceMap::build("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].position, Position { line: 3, column: 1 });
        assert!(errors[0].message.contains("line 1, column 1"));
    }

    #[test]
    fn a_missing_key_is_reported_at_its_parent() {
        let map = SourceMap::build("transitions:\n  go: { to: x }\n").unwrap();
        assert_eq!(
            map.value_position(&YamlPath::parse("transitions.go.from")),
            Position { line: 2, column: 3 }
        );
    }
}
