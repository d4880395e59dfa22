//! Extractors whose rejections are problem documents like every other error.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::problem::Problem;

/// A JSON body. An empty body reads as `{}`. Malformed JSON → 400, a content type other
/// than JSON → 415, a body of the wrong shape (e.g. `data` not an object) → 422, too large
/// → 413.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let essence = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                essence == "application/json" || essence.ends_with("+json")
            });
        let body = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(Problem::new(
                    "payload-too-large",
                    "the request body is larger than the server accepts",
                ));
            }
            Err(e) => return Err(Problem::new("malformed-request", e.body_text())),
        };
        let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            if json_type == Some(false) {
                return Err(Problem::new(
                    "unsupported-media-type",
                    "send the body with `Content-Type: application/json`",
                ));
            }
            &body
        };
        if super::nul::json_has_nul(text) {
            return Err(Problem::new(
                "nul-character",
                "the body contains \\u0000 (U+0000), which opsflow refuses in any text",
            ));
        }
        let mut de = serde_json::Deserializer::from_slice(text);
        match serde_path_to_error::deserialize::<_, T>(&mut de) {
            Ok(v) => match de.end() {
                Ok(()) => Ok(Self(v)),
                Err(e) => Err(Problem::new(
                    "malformed-request",
                    format!("the body is not valid JSON: {e}"),
                )),
            },
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if inner.is_data() {
                    Err(Problem::new(
                        "invalid-data",
                        format!("the body does not have the expected shape at `{path}`: {inner}"),
                    )
                    .with("field", path))
                } else {
                    Err(Problem::new(
                        "malformed-request",
                        format!("the body is not valid JSON: {inner}"),
                    ))
                }
            }
        }
    }
}

fn source_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

/// Query parameters. Unparseable → 400.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(Problem::new(
                "malformed-request",
                format!("bad query string: {}", source_text(&e)),
            )),
            Err(other) => Err(Problem::new("malformed-request", other.body_text())),
        }
    }
}
