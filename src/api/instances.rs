//! `/api/v1/instances`: create, read, list, fire a transition, read the trace.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Caller;
use super::json::{ApiJson, ApiQuery};
use super::problem::Problem;
use crate::engine::{FireRequest, Idempotency, InstancePage, InstanceView};
use crate::store::{Decision, InstanceQuery};

/// Page size when the caller does not say.
const DEFAULT_PAGE: u32 = 50;

/// The routes of this module.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show))
        .routes(routes!(fire))
        .routes(routes!(trace))
}

/// A new instance.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"process": "event", "data": {"kind": "incident", "channel": "phone", "summary": "VPN down"}}))]
struct CreateBody {
    /// The process to start.
    process: String,
    /// Its first field values; the process's `start` transition says which it needs.
    #[serde(default)]
    #[schema(value_type = Object)]
    data: Map<String, Value>,
    /// A comment for the trace.
    #[serde(default)]
    comment: Option<String>,
}

/// A step on an instance.
#[derive(Deserialize, Serialize, Default, ToSchema)]
#[schema(example = json!({"data": {"impact": "high", "urgency": "high"}, "comment": "affects the whole office"}))]
#[serde(deny_unknown_fields)]
struct FireBody {
    /// Field values the step writes (checked against the process's field types).
    #[serde(default)]
    #[schema(value_type = Object)]
    data: Map<String, Value>,
    /// A comment for the trace.
    #[serde(default)]
    comment: Option<String>,
    /// On an approval transition: the caller's vote.
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
    let tag = text.strip_prefix("W/").unwrap_or(text);
    Some(tag.trim_matches('"'))
        .filter(|d| !d.is_empty() && d.len() <= 18 && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| {
            Problem::new(
                "malformed-request",
                format!("If-Match must be an ETag from this API, such as \"3\"; got `{text}`"),
            )
        })
}

/// Starts an instance of a process.
#[utoipa::path(
    post, operation_id = "createInstance", path = "/instances", tag = "instances",
    request_body = CreateBody,
    params(super::openapi::IdempotencyKey),
    responses(
        (status = 201, description = "Created; `Location` names it, `ETag` is its version", body = InstanceView,
            headers(("ETag" = String), ("Location" = String))),
        (status = 403, description = "`forbidden`: the caller may not start this process"),
        (status = 404, description = "`unknown-process`"),
        (status = 409, description = "`guard-refused`, `rule-failed`, `no-way-out`, `automatic-loop`"),
        (status = 422, description = "`invalid-data`, `idempotency-key-reused`"),
    )
)]
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

/// One instance: state, data, version, what the caller may fire now, links, SLAs and timers.
#[utoipa::path(
    get, operation_id = "getInstance", path = "/instances/{id}", tag = "instances",
    params(("id" = String, Path, description = "Instance id")),
    responses(
        (status = 200, description = "The instance; `ETag` is its version", body = InstanceView,
            headers(("ETag" = String))),
        (status = 404, description = "`unknown-instance`"),
    )
)]
async fn show(
    State(app): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let view = app.engine.get(&actor, &id).await?;
    Ok(with_etag(StatusCode::OK, view))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only instances of this process.
    process: Option<String>,
    /// Only instances in this state.
    state: Option<String>,
    /// Page size, 1 to the server's `max_page` (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
}

/// Instances, oldest first, a page at a time.
#[utoipa::path(
    get, operation_id = "listInstances", path = "/instances", tag = "instances",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of instances", body = InstancePage),
        (status = 404, description = "`unknown-process`"),
    )
)]
async fn list(
    State(app): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, Problem> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    let max_page = app.limits.max_page;
    if limit == 0 || limit > max_page {
        return Err(Problem::new(
            "malformed-request",
            format!("limit must be between 1 and {max_page}"),
        )
        .with("field", "limit"));
    }
    let query = InstanceQuery {
        process: q.process,
        state: q.state,
        after: q.cursor,
        limit,
        visible: None,
    };
    let page = app.engine.list(&actor, &query).await?;
    Ok(axum::Json(page).into_response())
}

/// Fires a transition (or casts a vote on an approval transition).
#[utoipa::path(
    post, operation_id = "fireTransition", path = "/instances/{id}/transitions/{name}", tag = "instances",
    request_body = FireBody,
    params(
        ("id" = String, Path, description = "Instance id"),
        ("name" = String, Path, description = "Transition name"),
        super::openapi::IdempotencyKey,
        super::openapi::IfMatch,
    ),
    responses(
        (status = 200, description = "The instance after the step", body = InstanceView,
            headers(("ETag" = String))),
        (status = 403, description = "`forbidden`: the caller lacks a role the transition needs"),
        (status = 404, description = "`unknown-instance`, `unknown-transition`"),
        (status = 409, description = "`wrong-state`, `automatic-transition`, `guard-refused`, `rule-failed`, `no-way-out`, `automatic-loop`, `already-voted`, `conflict`"),
        (status = 412, description = "`version-mismatch`: `If-Match` names another version"),
        (status = 422, description = "`invalid-data`, `idempotency-key-reused`"),
    )
)]
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

/// How a trace is answered.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum TraceFormat {
    /// JSON: `{instance_id, records}`.
    Json,
    /// CSV, one line per record.
    Csv,
    /// An evidence bundle (see `GET /audit/export`).
    Bundle,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TraceQuery {
    /// `json` (default), `csv` or `bundle`.
    #[param(inline)]
    format: Option<TraceFormat>,
}

/// An instance's trace as JSON.
#[derive(Serialize, ToSchema)]
struct Trace {
    /// The instance.
    instance_id: String,
    /// Its records, oldest first, each chained to the one before by its hash.
    records: Vec<crate::store::TraceRecord>,
}

/// What `GET /instances/{id}/trace` answers as JSON: the trace, or with `format=bundle`
/// an evidence bundle.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum TraceAnswer {
    /// `format=json`.
    Trace(Trace),
    /// `format=bundle`.
    Bundle(Box<crate::evidence::Bundle>),
}

/// Every step of an instance, hash-chained.
#[utoipa::path(
    get, operation_id = "getTrace", path = "/instances/{id}/trace", tag = "instances",
    params(("id" = String, Path, description = "Instance id"), TraceQuery),
    responses(
        (status = 200, description = "The trace", content(
            (TraceAnswer = "application/json"),
            (String = "text/csv"),
        )),
        (status = 404, description = "`unknown-instance`"),
    )
)]
async fn trace(
    State(app): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TraceQuery>,
) -> Result<Response, Problem> {
    let records = app.engine.trace(&actor, &id).await?;
    Ok(match q.format.unwrap_or(TraceFormat::Json) {
        TraceFormat::Json => axum::Json(Trace {
            instance_id: id,
            records,
        })
        .into_response(),
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
