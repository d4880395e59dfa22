//! What operators and tools read without a token: liveness, readiness, Prometheus metrics,
//! the OpenAPI document and its documentation page.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::AppState;
use super::problem::Problem;

/// The serialized OpenAPI document.
#[derive(Clone, Debug)]
pub(crate) struct Document(pub(crate) Arc<Vec<u8>>);

/// The routes of this module (the documentation page is added apart: it is not an API).
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
}

/// The interactive documentation page at `/docs`, reading `/openapi.json`; its assets are
/// built into the binary, so it loads without network access.
pub(crate) fn docs_page() -> Router<AppState> {
    SwaggerUi::new("/docs")
        .config(Config::new(["/openapi.json"]).try_it_out_enabled(true))
        .into()
}

/// The process is up.
#[utoipa::path(
    get, operation_id = "healthz", path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "Up", body = String, content_type = "text/plain"))
)]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers and definitions are loaded.
#[derive(Serialize, ToSchema)]
struct Ready {
    /// Always `ready`.
    status: &'static str,
    /// Processes served.
    processes: usize,
}

/// Ready to serve: the database answers and at least one process is loaded; 503
/// `not-ready` otherwise.
#[utoipa::path(
    get, operation_id = "readyz", path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "`not-ready`: the database does not answer or no process is loaded"),
    )
)]
async fn readyz(State(app): State<AppState>) -> Result<axum::Json<Ready>, Problem> {
    if let Err(e) = app.engine.store().ping().await {
        tracing::warn!(error = %e, "readiness: the database does not answer");
        return Err(Problem::new("not-ready", "the database does not answer")
            .with("retry_after_seconds", 1));
    }
    let processes = app.engine.catalog().iter().count();
    if processes == 0 {
        return Err(Problem::new("not-ready", "no process definition is loaded"));
    }
    Ok(axum::Json(Ready {
        status: "ready",
        processes,
    }))
}

/// Counters in the Prometheus text format: `opsflow_http_requests_total`,
/// `opsflow_steps_total`, `opsflow_rule_failures_total`, `opsflow_step_duration_seconds`,
/// `opsflow_timer_lag_seconds`, `opsflow_reloads_total`, `opsflow_reload_failures_total`,
/// and per group-commit writer `opsflow_commits_total`, `opsflow_commit_steps_total`,
/// `opsflow_commit_busy_seconds_total`.
#[utoipa::path(
    get, operation_id = "metrics", path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String,
        content_type = "text/plain"))
)]
async fn metrics(State(app): State<AppState>) -> Response {
    let mut text = app.engine.metrics().render();
    crate::metrics::render_writers(&mut text, &app.engine.store().writer_stats());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// This document (OpenAPI 3.1).
#[utoipa::path(
    get, operation_id = "openapi", path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
async fn openapi_json(Extension(doc): Extension<Document>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_ref().clone(),
    )
        .into_response()
}
