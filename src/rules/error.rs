//! What goes wrong when a rule runs.

use std::fmt;

/// Why a rule failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleFailure {
    /// The script refused with `throw`.
    Threw(String),
    /// The script returned a value of the wrong type.
    WrongType {
        /// What the engine expected.
        expected: &'static str,
        /// What the script returned.
        got: String,
    },
    /// The script passed a sandbox limit (operations, call depth, data size).
    Limit(String),
    /// Any other runtime error (unknown variable or function, bad operand...).
    Runtime(String),
}

/// A rule failed; the step that ran it is refused and the instance left untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// The script that failed, in words (`guard of transition `close` in processes/event.yaml`).
    pub rule: String,
    /// The rule function that failed, when the failure happened inside one.
    pub function: Option<String>,
    /// What went wrong.
    pub failure: RuleFailure,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.rule)?;
        if let Some(func) = &self.function {
            write!(f, " (in function `{func}`)")?;
        }
        match &self.failure {
            RuleFailure::Threw(m) => write!(f, " refused: {m}"),
            RuleFailure::WrongType { expected, got } => {
                write!(f, " returned {got}, expected {expected}")
            }
            RuleFailure::Limit(m) => write!(f, " stopped by a sandbox limit: {m}"),
            RuleFailure::Runtime(m) => write!(f, " failed: {m}"),
        }
    }
}

/// Turns a Rhai error into a failure, naming the innermost function it happened in.
pub(crate) fn classify(err: &rhai::EvalAltResult) -> (RuleFailure, Option<String>) {
    use rhai::EvalAltResult as E;
    match err {
        E::ErrorInFunctionCall(name, _, inner, _) => {
            let (failure, innermost) = classify(inner);
            (failure, innermost.or_else(|| Some(name.clone())))
        }
        E::ErrorRuntime(value, _) => (RuleFailure::Threw(value.to_string()), None),
        E::ErrorTooManyOperations(_) => (
            RuleFailure::Limit("too many operations (does a loop never end?)".into()),
            None,
        ),
        E::ErrorStackOverflow(_) => (
            RuleFailure::Limit("function calls nested too deeply".into()),
            None,
        ),
        E::ErrorDataTooLarge(what, _) => (RuleFailure::Limit(format!("{what} too large")), None),
        E::ErrorTooManyVariables(_) => (RuleFailure::Limit("too many variables".into()), None),
        E::ErrorTerminated(_, _) => (RuleFailure::Limit("terminated".into()), None),
        other => (RuleFailure::Runtime(other.to_string()), None),
    }
}
