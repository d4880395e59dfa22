//! The HTTP API (axum): a thin adapter from HTTP to the engine. No business rule lives here.

mod admin;
mod audit;
mod auth;
mod clock;
mod instances;
mod json;
mod kpis;
mod problem;
mod processes;
mod reports;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::routing::get;
use tower_http::trace::TraceLayer;

pub use auth::Tokens;
pub use problem::{PROBLEM_TYPES, Problem, type_uri};

use crate::clock::SimulatedClock;
use crate::engine::Engine;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Bearer tokens.
    pub tokens: Arc<Tokens>,
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
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(processes::router())
        .merge(instances::router())
        .merge(clock::router())
        .merge(audit::router())
        .merge(admin::router())
        .merge(kpis::router())
        .merge(reports::router());
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { Problem::new("not-found", "no such resource") })
        .method_not_allowed_fallback(|| async {
            Problem::new("method-not-allowed", "this resource does not accept that method")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(state)
}
