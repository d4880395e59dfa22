//! Every request gets an id (the caller's `X-Request-Id` when it is sensible, a new one
//! otherwise) that names it in every log line it causes and goes back in the answer's
//! `X-Request-Id`; each answer is counted by method, route pattern and status, and logged.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

use super::AppState;

/// The header that carries the request id both ways.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// Longest request id taken from a caller.
const MAX_ID_LEN: usize = 128;

fn request_id(req: &Request) -> HeaderValue {
    req.headers()
        .get(REQUEST_ID)
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= MAX_ID_LEN && b.iter().all(|c| c.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
                .unwrap_or(HeaderValue::from_static("unknown"))
        })
}

/// The middleware: id, span, count, access log line.
pub(crate) async fn observe(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = request_id(&req);
    req.headers_mut().insert(REQUEST_ID, id.clone());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or(""),
        method = %method,
        route = %route,
    );
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    app.engine
        .metrics()
        .request(method.as_str(), &route, status);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    // Probes and scrapes come every few seconds: logged only at debug unless they fail.
    let probe = matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics");
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(target: "opsflow::access", status, ms, "answered");
        } else if probe {
            tracing::debug!(target: "opsflow::access", status, ms, "answered");
        } else {
            tracing::info!(target: "opsflow::access", status, ms, "answered");
        }
    });
    response.headers_mut().insert(REQUEST_ID, id);
    response
}
