//! Problems found in a process file or rule module, each with its place in the source.

use std::fmt;

use super::source_map::Position;

/// One problem in a process definition, reported as `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct DefinitionError {
    /// The file the problem is in (a process file or a rule module).
    pub file: String,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// What is wrong, in words a process owner can act on.
    pub message: String,
}

impl DefinitionError {
    /// A problem at a position of a file.
    pub fn new(file: impl Into<String>, position: Position, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: position.line,
            column: position.column,
            message: message.into(),
        }
    }
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for DefinitionError {}

/// Several problems, all found in one pass.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} problem(s) in process definitions", .0.len())]
pub struct DefinitionErrors(pub Vec<DefinitionError>);
