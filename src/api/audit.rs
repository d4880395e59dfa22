//! `/api/v1/audit/export`: traces of a process or a period as an event log, for auditors.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Caller;
use super::json::ApiQuery;
use super::problem::Problem;
use crate::clock::parse_ms;
use crate::engine::AuditQuery;
use crate::export::{ExportFormat, render};

/// The role that may export.
pub(crate) const AUDITOR: &str = "auditor";

/// The routes of this module.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ExportQuery {
    /// Only this instance.
    instance: Option<String>,
    /// Only instances of this process.
    process: Option<String>,
    /// Only records at or after this RFC 3339 time.
    #[param(format = DateTime)]
    from: Option<String>,
    /// Only records before this RFC 3339 time.
    #[param(format = DateTime)]
    to: Option<String>,
    /// `jsonl` (default), `csv`, `xes` or `bundle` (an evidence bundle).
    #[param(value_type = Option<String>, pattern = "^(jsonl|csv|xes|bundle)$")]
    format: Option<ExportFormat>,
}

pub(super) fn time(name: &str, text: Option<&str>) -> Result<Option<i64>, Problem> {
    text.map(|t| {
        parse_ms(t).ok_or_else(|| {
            Problem::new(
                "malformed-request",
                format!(
                    "`{name}` must be an RFC 3339 time such as 2026-11-01T00:00:00Z; got `{t}`"
                ),
            )
        })
    })
    .transpose()
}

/// The traces selected, as an event log or an evidence bundle (the `auditor` role).
#[utoipa::path(
    get, operation_id = "exportAudit", path = "/audit/export", tag = "audit",
    params(ExportQuery),
    responses(
        (status = 200, description = "The records, as a download", content(
            (String = "application/x-ndjson"),
            (String = "text/csv"),
            (String = "application/xml"),
            (crate::evidence::Bundle = "application/json"),
        )),
        (status = 403, description = "`forbidden`: the `auditor` role is needed"),
        (status = 404, description = "`unknown-process`, `unknown-instance`"),
    )
)]
async fn export(
    State(app): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, Problem> {
    if !actor.roles.iter().any(|r| r == AUDITOR) {
        return Err(Problem::new(
            "forbidden",
            format!(
                "exports are for the `{AUDITOR}` role; `{}` does not hold it",
                actor.name
            ),
        ));
    }
    let query = AuditQuery {
        instance: q.instance,
        process: q.process,
        from: time("from", q.from.as_deref())?,
        to: time("to", q.to.as_deref())?,
    };
    let format = q.format.unwrap_or(ExportFormat::Jsonl);
    exported(&app, &query, format, "opsflow-export").await
}

/// The records `query` selects in `format`, as a download named `name` plus the format's
/// extension; bundles are signed with the server's evidence key, if it has one.
pub(super) async fn exported(
    app: &AppState,
    query: &AuditQuery,
    format: ExportFormat,
    name: &str,
) -> Result<Response, Problem> {
    let cases = app.engine.audit_cases(query).await?;
    let body = render(
        app.engine.store().as_ref(),
        query,
        &cases,
        format,
        app.engine.now_ms(),
        app.evidence_key.as_deref(),
    )
    .await
    .map_err(crate::engine::EngineError::from)?;
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.{}\"", format.extension()),
            ),
        ],
        body,
    )
        .into_response())
}
