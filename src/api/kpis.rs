//! `/api/v1/kpis`: the KPIs of the KPI files computed from the traces, for a period.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::audit::time;
use super::auth::Caller;
use super::json::ApiQuery;
use super::problem::Problem;
use crate::kpi::{KpiFileErrors, KpiQuery, html, load_kpis, markdown, report};

/// The routes of this module.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(kpis))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Query {
    /// Only the KPIs of this process.
    process: Option<String>,
    /// Instances created at or after this RFC 3339 time.
    #[param(format = DateTime)]
    from: Option<String>,
    /// Instances created before this RFC 3339 time; traces as they stood then.
    #[param(format = DateTime)]
    to: Option<String>,
    /// Group by a field (`priority`), or by `day`, `week` or `month`.
    group_by: Option<String>,
    /// `json` (default), `md` or `html`.
    #[param(value_type = Option<String>, pattern = "^(json|md|html)$")]
    format: Option<Format>,
}

/// How a report is answered (`?format=`).
#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub(super) enum Format {
    /// JSON (the default).
    #[default]
    Json,
    /// Markdown.
    Md,
    /// A self-contained HTML page with SVG charts.
    Html,
}

impl From<KpiFileErrors> for Problem {
    fn from(e: KpiFileErrors) -> Self {
        Problem::invalid_definitions(e.to_string(), &e.0)
    }
}

/// Reads the KPI files (so an edit applies at once) and computes them: instances created in
/// `[from, to)`, as their traces stood at `to`, optionally grouped.
#[utoipa::path(
    get, operation_id = "getKpis", path = "/kpis", tag = "kpis",
    params(Query),
    responses(
        (status = 200, description = "Each KPI with its value, target and verdict", content(
            (crate::kpi::KpiReport = "application/json"),
            (String = "text/markdown"),
            (String = "text/html"),
        )),
        (status = 404, description = "`unknown-process`"),
        (status = 422, description = "`invalid-definitions`: the KPI files have problems"),
    )
)]
async fn kpis(
    State(app): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<Query>,
) -> Result<impl IntoResponse, Problem> {
    let query = KpiQuery {
        process: q.process.clone(),
        from: time("from", q.from.as_deref())?,
        to: time("to", q.to.as_deref())?,
        group_by: q.group_by.clone(),
        ..KpiQuery::default()
    };
    let engine = app.kpi_engine.clone();
    let catalog = app.engine.catalog();
    let set = load_kpis(&app.kpis_dir, &engine, &catalog)?;
    let r = report(app.engine.store(), &catalog, &engine, &set, &query).await?;
    Ok(match q.format.unwrap_or_default() {
        Format::Json => axum::Json(r).into_response(),
        Format::Md => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            markdown(&r),
        )
            .into_response(),
        Format::Html => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html(&r),
        )
            .into_response(),
    })
}
