//! `/api/v1/admin`: reloading the process definitions and migrating running instances to
//! a newer version (the `admin` role).

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use super::AppState;
use super::auth::Caller;
use super::json::ApiJson;
use super::problem::Problem;
use crate::engine::MigrationRequest;
use crate::reload::ReloadError;

/// The routes of this module.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/reload", post(reload))
        .route("/admin/reload/status", get(status))
        .route("/admin/migrations", post(migrate))
}

/// Reads, checks and installs the definitions now; answers what changed, or every problem
/// of a refused set (422) while the last good set keeps serving.
async fn reload(State(app): State<AppState>, caller: Caller) -> Result<impl IntoResponse, Problem> {
    match app.reloader.request(&caller.0).await {
        Ok(installation) => Ok(axum::Json(installation)),
        Err(ReloadError::Invalid(errors)) => {
            let detail = ReloadError::Invalid(errors.clone()).to_string();
            Err(Problem::invalid_definitions(detail, &errors))
        }
        Err(ReloadError::Engine(e)) => Err(e.into()),
        Err(e @ ReloadError::Interrupted(_)) => Err(Problem::internal(&e)),
    }
}

/// Where reloading stands: counts, the last attempt with its problems, what is served.
async fn status(State(app): State<AppState>, caller: Caller) -> Result<impl IntoResponse, Problem> {
    Ok(axum::Json(app.reloader.status_for(&caller.0)?))
}

/// Plans a migration of running instances to a version (a dry run unless `"apply": true`),
/// and answers per instance what happens or happened.
async fn migrate(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<MigrationRequest>,
) -> Result<impl IntoResponse, Problem> {
    Ok(axum::Json(
        app.engine.migrate_instances(&caller.0, &request).await?,
    ))
}
