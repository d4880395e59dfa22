//! `/api/v1/audit/export`: traces of a process or a period as an event log, for auditors.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

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
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/audit/export", get(export))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    instance: Option<String>,
    process: Option<String>,
    from: Option<String>,
    to: Option<String>,
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
