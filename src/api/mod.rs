//! The HTTP API (axum): a thin adapter from HTTP to the engine. No business rule lives here.

mod admin;
mod audit;
mod auth;
mod clock;
mod instances;
mod json;
mod kpis;
mod nul;
mod observe;
mod openapi;
mod operations;
mod problem;
mod processes;
mod reports;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa_axum::router::OpenApiRouter;

pub use auth::Tokens;
pub use problem::{PROBLEM_TYPES, Problem, type_uri};

use crate::clock::SimulatedClock;
use crate::engine::Engine;

/// What the API refuses beyond (each with a problem document).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest request body, in bytes (413 `payload-too-large`).
    pub max_body_bytes: usize,
    /// Largest page of instances a caller may ask for (400 `malformed-request`).
    pub max_page: u32,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_page: 500,
        }
    }
}

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Bearer tokens from the configuration.
    pub tokens: Arc<Tokens>,
    /// Bearer tokens stored in the database.
    pub directory: Arc<crate::tokens::TokenDirectory>,
    /// Where rule modules are read from, for `POST /processes/validate`.
    pub rules_dir: Arc<PathBuf>,
    /// Where KPI files are read from (`/kpis`).
    pub kpis_dir: Arc<PathBuf>,
    /// Evaluates KPI expressions.
    pub kpi_engine: Arc<crate::kpi::KpiEngine>,
    /// Reloads the definitions (`/admin/reload`).
    pub reloader: Arc<crate::reload::Reloader>,
    /// The engine's clock when the server simulates time (`--simulate`); `None` in real time.
    pub simulation: Option<Arc<SimulatedClock>>,
    /// The key that signs evidence bundles, if the operator configured one.
    pub evidence_key: Option<Arc<ed25519_dalek::SigningKey>>,
    /// Request size limits.
    pub limits: ApiLimits,
}

/// Every documented route, with the OpenAPI document they make under `limits`.
fn documented(limits: &ApiLimits) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let api = OpenApiRouter::new()
        .merge(processes::router())
        .merge(instances::router())
        .merge(clock::router())
        .merge(audit::router())
        .merge(admin::router())
        .merge(kpis::router())
        .merge(reports::router());
    let (routes, doc) = OpenApiRouter::new()
        .nest("/api/v1", api)
        .merge(operations::router())
        .split_for_parts();
    (routes, openapi::finish(doc, limits))
}

/// The OpenAPI 3.1 document served at `/openapi.json` by a server with `limits`.
pub fn openapi_document(limits: &ApiLimits) -> utoipa::openapi::OpenApi {
    documented(limits).1
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (routes, doc) = documented(&state.limits);
    let doc = Arc::new(serde_json::to_vec(&doc).unwrap_or_else(|_| b"{}".to_vec()));
    routes
        .merge(operations::docs_page())
        .layer(axum::Extension(operations::Document(doc)))
        .fallback(|| async { Problem::new("not-found", "no such resource") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                "method-not-allowed",
                "this resource does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(axum::middleware::from_fn(nul::refuse_in_address))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}
