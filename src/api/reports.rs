//! `/api/v1/instances/{id}/report`: a service report's collect step, its KPI snapshot as
//! JSON, Markdown or HTML, and the snapshot computed again.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::AppState;
use super::auth::Caller;
use super::instances::{expected_version, idempotency, with_etag};
use super::json::{ApiJson, ApiQuery};
use super::kpis::Format;
use super::problem::Problem;
use crate::service_report::{self, CollectRequest, Kpis, ReportError};

/// The routes of this module.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/instances/{id}/report", get(show))
        .route("/instances/{id}/report/collect", post(collect))
        .route("/instances/{id}/report/verify", get(verify))
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

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct CollectBody {
    #[serde(default)]
    data: Map<String, Value>,
    #[serde(default)]
    comment: Option<String>,
}

/// Computes the report's KPI snapshot for its period and fires its collect step.
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShowQuery {
    format: Option<Format>,
    snapshot: Option<String>,
}

/// The report with its snapshot (the one its data names unless `snapshot` says).
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyQuery {
    snapshot: Option<String>,
}

/// Computes the snapshot again from the traces and says whether the figures agree.
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
