//! Rule decisions as trace records keep them.

use serde_json::Value;

/// One rule decision a step took: which script ran, from which source, and what it gave.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RuleDecision {
    /// Where the script stands in the process file (`transitions.close.guard`).
    pub rule: String,
    /// The rule module (`event`) for a rule function, the process file's name (`event.yaml`)
    /// for an inline script.
    pub module: String,
    /// The rule function, for a rule function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// SHA-256 (hex) of the module's source, or of the inline script.
    pub source_hash: String,
    /// What it gave: a guard's boolean, a count, a duration in ms, the fields an action set.
    pub result: Value,
}
