//! `/api/v1/instances/{id}/report`: a service report's collect step, its KPI snapshot as
//! JSON, Markdown or HTML, and the snapshot computed again.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Caller;
use super::instances::{expected_version, idempotency, with_etag};
use super::json::{ApiJson, ApiQuery};
use super::kpis::Format;
use super::problem::Problem;
use crate::service_report::{self, CollectRequest, Kpis, ReportError};

/// The routes of this module.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(show))
        .routes(routes!(collect))
        .routes(routes!(verify))
}

impl From<ReportError> for Problem {
    fn from(e: ReportError) -> Self {
        let detail = e.to_string();
        match e {
            ReportError::Engine(e) => e.into(),
            ReportError::NoCollectStep { state, .. } => {
                Problem::new("no-collect-step", detail).with("state", state)
            }
            ReportError::NoSnapshot(_) => Problem::new("no-report-snapshot", detail),
            ReportError::Kpis(e) => e.into(),
        }
    }
}

/// What the collect step writes besides the snapshot.
#[derive(Deserialize, Serialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct CollectBody {
    /// Field values of the step (`sla_attainment` and `data_summary` are filled in when absent).
    #[serde(default)]
    #[schema(value_type = Object)]
    data: Map<String, Value>,
    /// A comment for the trace.
    #[serde(default)]
    comment: Option<String>,
}

/// Computes the report's KPI snapshot for its period and fires its collect step.
#[utoipa::path(
    post, operation_id = "collectReport", path = "/instances/{id}/report/collect", tag = "reports",
    request_body = CollectBody,
    params(
        ("id" = String, Path, description = "The service report's instance id"),
        super::openapi::IdempotencyKey,
        super::openapi::IfMatch,
    ),
    responses(
        (status = 200, description = "The report after its collect step; `kpi_snapshot` holds the snapshot's hash",
            body = crate::engine::InstanceView, headers(("ETag" = String))),
        (status = 403, description = "`forbidden`"),
        (status = 404, description = "`unknown-instance`"),
        (status = 409, description = "`no-collect-step`, `wrong-state`, `guard-refused`, `rule-failed`, `conflict`"),
        (status = 412, description = "`version-mismatch`"),
        (status = 422, description = "`invalid-data`, `invalid-definitions`, `idempotency-key-reused`"),
    )
)]
async fn collect(
    State(app): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CollectBody>,
) -> Result<Response, Problem> {
    let path = format!("/api/v1/instances/{id}/report/collect");
    let request = CollectRequest {
        idempotency: idempotency(&headers, "POST", &path, &body)?,
        expected_version: expected_version(&headers)?,
        data: body.data,
        comment: body.comment,
    };
    let kpis = Kpis {
        engine: &app.kpi_engine,
        dir: &app.kpis_dir,
    };
    let view = service_report::collect(&app.engine, kpis, &actor, &id, request).await?;
    Ok(with_etag(StatusCode::OK, view))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ShowQuery {
    /// `json` (default), `md` or `html`.
    #[param(value_type = Option<String>, pattern = "^(json|md|html)$")]
    format: Option<Format>,
    /// A snapshot hash other than the one the report's data names.
    snapshot: Option<String>,
}

/// The report with its snapshot (the one its data names unless `snapshot` says).
#[utoipa::path(
    get, operation_id = "getReport", path = "/instances/{id}/report", tag = "reports",
    params(("id" = String, Path, description = "The service report's instance id"), ShowQuery),
    responses(
        (status = 200, description = "The report's fields with its KPI snapshot: SLA attainment, KPIs, charts", content(
            (crate::service_report::ReportView = "application/json"),
            (String = "text/markdown"),
            (String = "text/html"),
        )),
        (status = 404, description = "`unknown-instance`, `no-report-snapshot`"),
    )
)]
async fn show(
    State(app): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ShowQuery>,
) -> Result<Response, Problem> {
    let view = service_report::show(&app.engine, &actor, &id, q.snapshot.as_deref()).await?;
    let file = |ext: &str| format!("inline; filename=\"report-{id}.{ext}\"");
    Ok(match q.format.unwrap_or_default() {
        Format::Json => axum::Json(view).into_response(),
        Format::Md => (
            [
                (
                    header::CONTENT_TYPE,
                    "text/markdown; charset=utf-8".to_owned(),
                ),
                (header::CONTENT_DISPOSITION, file("md")),
            ],
            service_report::markdown(&view),
        )
            .into_response(),
        Format::Html => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, file("html")),
            ],
            service_report::html(&view),
        )
            .into_response(),
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct VerifyQuery {
    /// A snapshot hash other than the one the report's data names.
    snapshot: Option<String>,
}

/// Computes the snapshot again from the traces and says whether the figures agree.
#[utoipa::path(
    get, operation_id = "verifyReport", path = "/instances/{id}/report/verify", tag = "reports",
    params(("id" = String, Path, description = "The service report's instance id"), VerifyQuery),
    responses(
        (status = 200, description = "Whether the stored snapshot is intact and computed again gives the same figures",
            body = crate::service_report::Verification),
        (status = 404, description = "`unknown-instance`, `no-report-snapshot`"),
        (status = 422, description = "`invalid-definitions`"),
    )
)]
async fn verify(
    State(app): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<VerifyQuery>,
) -> Result<Response, Problem> {
    let v = service_report::verify(
        &app.engine,
        &app.kpi_engine,
        &actor,
        &id,
        q.snapshot.as_deref(),
    )
    .await?;
    Ok(axum::Json(v).into_response())
}
