//! `/api/v1/admin`: reloading the process definitions and migrating running instances to
//! a newer version (the `admin` role).

use axum::extract::State;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Caller;
use super::json::ApiJson;
use super::problem::Problem;
use crate::engine::MigrationRequest;
use crate::reload::ReloadError;

/// The routes of this module.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(reload))
        .routes(routes!(status))
        .routes(routes!(migrate))
}

/// Reads, checks and installs the definitions now; answers what changed, or every problem
/// of a refused set (422) while the last good set keeps serving.
#[utoipa::path(
    post, operation_id = "reload", path = "/admin/reload", tag = "admin",
    responses(
        (status = 200, description = "Installed: each process with its version and what changed",
            body = crate::engine::Installation),
        (status = 403, description = "`forbidden`: the `admin` role is needed"),
        (status = 422, description = "`invalid-definitions`: every problem is in `errors`; nothing changed"),
        (status = 429, description = "`too-many-requests`: a reload was requested too recently"),
    )
)]
async fn reload(State(app): State<AppState>, caller: Caller) -> Result<impl IntoResponse, Problem> {
    match app.reloader.request(&caller.0).await {
        Ok(installation) => Ok(axum::Json(installation)),
        Err(ReloadError::Invalid(errors)) => {
            let detail = ReloadError::Invalid(errors.clone()).to_string();
            Err(Problem::invalid_definitions(detail, &errors))
        }
        Err(ReloadError::Engine(e)) => Err(e.into()),
        Err(e @ ReloadError::Interrupted(_)) => Err(Problem::internal(&e)),
        Err(e @ ReloadError::TooSoon { wait, .. }) => {
            Err(Problem::new("too-many-requests", e.to_string())
                .with("retry_after_seconds", wait.as_secs().max(1)))
        }
    }
}

/// Where reloading stands: counts, the last attempt with its problems, what is served.
#[utoipa::path(
    get, operation_id = "getReloadStatus", path = "/admin/reload/status", tag = "admin",
    responses(
        (status = 200, description = "Counts, the last attempt with its problems, what is served",
            body = crate::reload::ReloadStatus),
        (status = 403, description = "`forbidden`: the `admin` role is needed"),
    )
)]
async fn status(State(app): State<AppState>, caller: Caller) -> Result<impl IntoResponse, Problem> {
    Ok(axum::Json(app.reloader.status_for(&caller.0)?))
}

/// Plans a migration of running instances to a version (a dry run unless `"apply": true`),
/// and answers per instance what happens or happened.
#[utoipa::path(
    post, operation_id = "migrateInstances", path = "/admin/migrations", tag = "admin",
    request_body = crate::engine::MigrationRequest,
    responses(
        (status = 200, description = "Per instance: its verdict and, when applied, whether it moved",
            body = crate::engine::MigrationReport),
        (status = 403, description = "`forbidden`: the `admin` role is needed"),
        (status = 404, description = "`unknown-process`, `unknown-version`"),
        (status = 422, description = "`invalid-data`: the request does not fit"),
    )
)]
async fn migrate(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<MigrationRequest>,
) -> Result<impl IntoResponse, Problem> {
    Ok(axum::Json(
        app.engine.migrate_instances(&caller.0, &request).await?,
    ))
}
