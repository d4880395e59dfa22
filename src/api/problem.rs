//! Every error answer is an RFC 9457 `application/problem+json` document with a stable
//! `type`, a `title`, the `status`, a human `detail`, and where it applies the field, rule,
//! state or transition concerned. 5xx answers never show internals; the cause is logged.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::engine::{EngineError, FieldProblem};
use crate::rules::RuleFailure;

/// A problem document (boxed: it travels in `Err` through every handler).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Problem(Box<Body>);

#[derive(Debug, Clone, Serialize)]
struct Body {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// The stable problem types: slug, status and title.
pub const PROBLEM_TYPES: &[(&str, u16, &str)] = &[
    ("malformed-request", 400, "The request could not be read"),
    ("unauthorized", 401, "A valid bearer token is required"),
    ("forbidden", 403, "The caller lacks the role needed"),
    (
        "real-time",
        403,
        "The clock can be moved only in simulation mode",
    ),
    ("not-found", 404, "No such resource"),
    ("unknown-process", 404, "No such process"),
    ("unknown-instance", 404, "No such instance"),
    ("unknown-transition", 404, "No such transition"),
    ("unknown-version", 404, "No such version of the process"),
    (
        "no-report-snapshot",
        404,
        "The report has no such KPI snapshot",
    ),
    (
        "method-not-allowed",
        405,
        "Method not allowed on this resource",
    ),
    (
        "wrong-state",
        409,
        "Transition not allowed from the current state",
    ),
    (
        "automatic-transition",
        409,
        "Automatic transitions are fired by the engine",
    ),
    (
        "guard-refused",
        409,
        "The transition's guard refused the step",
    ),
    ("rule-failed", 409, "A rule failed and the step was refused"),
    ("no-way-out", 409, "No automatic transition applies"),
    ("automatic-loop", 409, "Automatic transitions looped"),
    (
        "no-collect-step",
        409,
        "No transition from the current state collects a KPI snapshot",
    ),
    (
        "already-voted",
        409,
        "The caller has already voted in this round",
    ),
    ("conflict", 409, "The instance was changed by another step"),
    (
        "version-mismatch",
        412,
        "The instance is not at the expected version",
    ),
    ("payload-too-large", 413, "The request body is too large"),
    (
        "unsupported-media-type",
        415,
        "The request body must be JSON",
    ),
    (
        "invalid-data",
        422,
        "The data does not fit the process's fields",
    ),
    (
        "invalid-definitions",
        422,
        "The definition files have problems; nothing was changed",
    ),
    (
        "idempotency-key-reused",
        422,
        "The idempotency key was used for another request",
    ),
    (
        "nul-character",
        422,
        "The request holds the character U+0000, which is refused in any text",
    ),
    (
        "too-many-requests",
        429,
        "Too many requests of this kind; retry later",
    ),
    ("internal", 500, "Internal error"),
    ("busy", 503, "The server is busy; retry shortly"),
    (
        "not-ready",
        503,
        "The server cannot serve yet: its database or definitions are missing",
    ),
];

/// The URI of a problem type.
pub fn type_uri(slug: &str) -> String {
    format!("urn:opsflow:problem:{slug}")
}

impl Problem {
    /// A problem of a known type.
    pub fn new(slug: &'static str, detail: impl Into<String>) -> Self {
        let known = PROBLEM_TYPES.iter().find(|(s, ..)| *s == slug).copied();
        // Every slug used in the code must be listed above; tests run with debug asserts.
        debug_assert!(
            known.is_some(),
            "problem type `{slug}` is not in PROBLEM_TYPES"
        );
        let (_, status, title) = known.unwrap_or(("internal", 500, "Internal error"));
        Self(Box::new(Body {
            kind: type_uri(slug),
            title,
            status,
            detail: detail.into(),
            extra: Map::new(),
        }))
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        if let Ok(v) = serde_json::to_value(value) {
            self.0.extra.insert(key.to_owned(), v);
        }
        self
    }

    /// 422 `invalid-definitions`: every problem of a set of files, as `errors` (file,
    /// line, column, message) and as `messages` (`file:line:col: message`).
    pub fn invalid_definitions(
        detail: impl Into<String>,
        errors: &[crate::definition::DefinitionError],
    ) -> Self {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        Problem::new("invalid-definitions", detail)
            .with("errors", errors)
            .with("messages", lines)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// A 500 that logs `cause` with its chain and tells the client nothing of it.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "request failed");
        Self::new(
            "internal",
            "the server could not complete the request; the cause is logged",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self
            .0
            .extra
            .get("retry_after_seconds")
            .and_then(Value::as_u64)
            .and_then(|s| HeaderValue::from_str(&s.to_string()).ok());
        let mut response = (status, axum::Json(self)).into_response();
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

fn field_problems(problems: &[FieldProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("`{}` {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<EngineError> for Problem {
    fn from(e: EngineError) -> Self {
        let detail = e.to_string();
        match e {
            EngineError::UnknownProcess(p) => {
                Problem::new("unknown-process", detail).with("process", p)
            }
            EngineError::UnknownVersion(p, n) => Problem::new("unknown-version", detail)
                .with("process", p)
                .with("version", n),
            EngineError::UnknownInstance(i) => {
                Problem::new("unknown-instance", detail).with("instance_id", i)
            }
            EngineError::UnknownTransition {
                process,
                transition,
            } => Problem::new("unknown-transition", detail)
                .with("process", process)
                .with("transition", transition),
            EngineError::Forbidden { needed, .. } => {
                Problem::new("forbidden", detail).with("roles_needed", needed)
            }
            EngineError::WrongState {
                transition,
                state,
                from,
            } => Problem::new("wrong-state", detail)
                .with("transition", transition)
                .with("state", state)
                .with("allowed_from", from),
            EngineError::Automatic(t) => {
                Problem::new("automatic-transition", detail).with("transition", t)
            }
            EngineError::GuardRefused { transition, rule } => Problem::new("guard-refused", detail)
                .with("transition", transition)
                .with("rule", rule),
            EngineError::Rule(r) => {
                let reason = match &r.failure {
                    RuleFailure::Threw(_) => "threw",
                    RuleFailure::WrongType { .. } => "wrong-type",
                    RuleFailure::Limit(_) => "limit",
                    RuleFailure::Runtime(_) => "runtime",
                };
                Problem::new("rule-failed", detail)
                    .with("rule", &r.rule)
                    .with("function", &r.function)
                    .with("reason", reason)
            }
            EngineError::Stuck(state) => Problem::new("no-way-out", detail).with("state", state),
            EngineError::AutomaticLoop(_) => Problem::new("automatic-loop", detail),
            EngineError::AlreadyVoted { transition, .. } => {
                Problem::new("already-voted", detail).with("transition", transition)
            }
            EngineError::Conflict => Problem::new("conflict", detail),
            EngineError::VersionMismatch { expected, actual } => {
                Problem::new("version-mismatch", detail)
                    .with("expected_version", expected)
                    .with("current_version", actual)
            }
            EngineError::InvalidData(problems) => {
                let field = problems.first().map(|p| p.field.clone());
                Problem::new("invalid-data", field_problems(&problems))
                    .with("field", field)
                    .with("errors", problems)
            }
            EngineError::KeyReused(key) => {
                Problem::new("idempotency-key-reused", detail).with("idempotency_key", key)
            }
            EngineError::Busy => Problem::new("busy", detail).with("retry_after_seconds", 1),
            EngineError::DefinitionUnavailable(_) | EngineError::Store(_) => Problem::internal(&e),
        }
    }
}
