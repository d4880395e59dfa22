//! Why the engine refused a request. Each variant's doc names the HTTP status it maps to.

use crate::rules::RuleError;
use crate::store::StoreError;

/// One problem with a field of the submitted data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldProblem {
    /// The field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// A refused request. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// 404: no such process.
    #[error("unknown process `{0}`")]
    UnknownProcess(String),
    /// 404: the process has no version with this number.
    #[error("process `{0}` has no version {1}")]
    UnknownVersion(String, i64),
    /// 404: no such instance.
    #[error("unknown instance `{0}`")]
    UnknownInstance(String),
    /// 404: the process has no such transition.
    #[error("process `{process}` has no transition `{transition}`")]
    UnknownTransition {
        /// The process.
        process: String,
        /// The name asked for.
        transition: String,
    },
    /// 403: the actor holds none of the roles needed.
    #[error("`{actor}` may not {action}: it needs one of the roles {}", .needed.join(", "))]
    Forbidden {
        /// Who asked.
        actor: String,
        /// What was asked (`fire `close``).
        action: String,
        /// Roles that would allow it.
        needed: Vec<String>,
    },
    /// 409: the transition does not leave the current state.
    #[error("transition `{transition}` cannot be fired from state `{state}` (only from {})", .from.join(", "))]
    WrongState {
        /// The transition.
        transition: String,
        /// The instance's state.
        state: String,
        /// States it may be fired from.
        from: Vec<String>,
    },
    /// 409: automatic transitions are fired by the engine only.
    #[error("transition `{0}` is automatic: the engine fires it when its guard holds")]
    Automatic(String),
    /// 409: the guard returned false.
    #[error("the guard of transition `{transition}` refused the step")]
    GuardRefused {
        /// The transition.
        transition: String,
        /// The guard, in words.
        rule: String,
    },
    /// 409: a rule threw, returned the wrong type or passed a sandbox limit.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// 409: the instance would rest in a state that only automatic transitions leave, and
    /// none of their guards held.
    #[error("no automatic transition out of state `{0}` applies")]
    Stuck(String),
    /// 409: automatic transitions kept firing past the depth limit.
    #[error("automatic transitions fired more than {0} times in one step")]
    AutomaticLoop(usize),
    /// 409: the actor already voted in this approval round.
    #[error("`{actor}` has already voted on `{transition}` in this round")]
    AlreadyVoted {
        /// The approval transition.
        transition: String,
        /// The voter.
        actor: String,
    },
    /// 409: another step changed the instance first.
    #[error("the instance was changed by another step; read it again and retry")]
    Conflict,
    /// 412: the caller's expected version is not the current one.
    #[error("the instance is at version {actual}, not {expected}")]
    VersionMismatch {
        /// The version the caller expected.
        expected: i64,
        /// The current version.
        actual: i64,
    },
    /// 422: submitted data does not fit the process's fields.
    #[error("{} field problem(s)", .0.len())]
    InvalidData(Vec<FieldProblem>),
    /// 422: the idempotency key was used before with a different request.
    #[error("idempotency key `{0}` was used for a different request; use a new key")]
    KeyReused(String),
    /// 503: too many steps are waiting to be written; retry later.
    #[error("the server is busy writing other steps; retry shortly")]
    Busy,
    /// 500: the definition version an instance is pinned to cannot be loaded.
    #[error("definition version {0} of this instance cannot be loaded")]
    DefinitionUnavailable(String),
    /// 500: storage failed.
    #[error("storage failed")]
    Store(#[source] StoreError),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => EngineError::Conflict,
            StoreError::Busy => EngineError::Busy,
            other => EngineError::Store(other),
        }
    }
}
