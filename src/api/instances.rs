//! `/api/v1/instances`: create, read, list, fire a transition, read the trace.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::AppState;
use super::auth::Caller;
use super::json::{ApiJson, ApiQuery};
use super::problem::Problem;
use crate::engine::{FireRequest, Idempotency, InstanceView};
use crate::store::{Decision, InstanceQuery};

/// Page size when the caller does not say.
const DEFAULT_PAGE: u32 = 50;
/// Largest page a caller may ask for.
const MAX_PAGE: u32 = 500;

/// The routes of this module.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/instances", post(create).get(list))
        .route("/instances/{id}", get(show))
        .route("/instances/{id}/transitions/{name}", post(fire))
        .route("/instances/{id}/trace", get(trace))
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    process: String,
    #[serde(default)]
    data: Map<String, Value>,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct FireBody {
    #[serde(default)]
    data: Map<String, Value>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    vote: Option<Decision>,
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// The answer for a view: its status (that of the first answer when replayed), `ETag`,
/// `Location` on creation, and `Idempotency-Replayed: true` on a replayed answer.
pub(super) fn with_etag(status: StatusCode, view: InstanceView) -> Response {
    let status = if view.replayed {
        StatusCode::from_u16(view.status).unwrap_or(status)
    } else {
        status
    };
    let replayed = view.replayed;
    let tag = etag(view.version);
    let location = HeaderValue::from_str(&format!("/api/v1/instances/{}", view.id)).ok();
    let mut response = (status, axum::Json(view)).into_response();
    response.headers_mut().insert(header::ETAG, tag);
    if status == StatusCode::CREATED
        && let Some(l) = location
    {
        response.headers_mut().insert(header::LOCATION, l);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotency-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// The `Idempotency-Key` of a request, with the request's fingerprint.
pub(super) fn idempotency(
    headers: &HeaderMap,
    method: &str,
    path: &str,
    body: &impl serde::Serialize,
) -> Result<Option<Idempotency>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or("").trim();
    if key.is_empty()
        || key.len() > Idempotency::MAX_KEY_LEN
        || !key.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(Problem::new(
            "malformed-request",
            format!(
                "Idempotency-Key must be 1 to {} visible ASCII characters",
                Idempotency::MAX_KEY_LEN
            ),
        ));
    }
    let body = serde_json::to_value(body).unwrap_or(Value::Null);
    Ok(Some(Idempotency::new(key, method, path, &body)))
}

/// `If-Match: "7"` → Some(7); `*` or absent → None.
pub(super) fn expected_version(headers: &HeaderMap) -> Result<Option<i64>, Problem> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| {
            Problem::new(
                "malformed-request",
                format!("If-Match must be an ETag from this API, such as \"3\"; got `{text}`"),
            )
        })
}

async fn create(
    State(app): State<AppState>,
    Caller(actor): Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, Problem> {
    let idem = idempotency(&headers, "POST", "/api/v1/instances", &body)?;
    let view = app
        .engine
        .create(&actor, &body.process, body.data, body.comment, idem)
        .await?;
    Ok(with_etag(StatusCode::CREATED, view))
}

async fn show(
    State(app): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let view = app.engine.get(&actor, &id).await?;
    Ok(with_etag(StatusCode::OK, view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    process: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(
    State(app): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, Problem> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Problem::new(
            "malformed-request",
            format!("limit must be between 1 and {MAX_PAGE}"),
        )
        .with("field", "limit"));
    }
    let query = InstanceQuery {
        process: q.process,
        state: q.state,
        after: q.cursor,
        limit,
    };
    let page = app.engine.list(&actor, &query).await?;
    Ok(axum::Json(page).into_response())
}

async fn fire(
    State(app): State<AppState>,
    Caller(actor): Caller,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<FireBody>,
) -> Result<Response, Problem> {
    let path = format!("/api/v1/instances/{id}/transitions/{name}");
    let idem = idempotency(&headers, "POST", &path, &body)?;
    let request = FireRequest {
        data: body.data,
        comment: body.comment,
        expected_version: expected_version(&headers)?,
        vote: body.vote,
        idempotency: idem,
        ..FireRequest::default()
    };
    let view = app.engine.fire(&actor, &id, &name, request).await?;
    Ok(with_etag(StatusCode::OK, view))
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum TraceFormat {
    Json,
    Csv,
    Bundle,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceQuery {
    format: Option<TraceFormat>,
}

async fn trace(
    State(app): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TraceQuery>,
) -> Result<Response, Problem> {
    let records = app.engine.trace(&id).await?;
    Ok(match q.format.unwrap_or(TraceFormat::Json) {
        TraceFormat::Json => {
            axum::Json(serde_json::json!({ "instance_id": id, "records": records })).into_response()
        }
        TraceFormat::Csv => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"trace-{id}.csv\""),
                ),
            ],
            crate::export::trace_csv(&records),
        )
            .into_response(),
        TraceFormat::Bundle => {
            let query = crate::engine::AuditQuery {
                instance: Some(id.clone()),
                ..Default::default()
            };
            let format = crate::export::ExportFormat::Bundle;
            super::audit::exported(&app, &query, format, &format!("trace-{id}")).await?
        }
    })
}
