//! The OpenAPI 3.1 document of the API, built from the handlers' own annotations (each
//! route is registered through `utoipa_axum::routes!`, so a route cannot be served without
//! being described), and finished here with what every operation shares: the bearer
//! scheme and the problem documents.

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoParams, OpenApi as _};

use super::problem::{PROBLEM_TYPES, type_uri};

/// The media type of error answers.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// The document's fixed parts; paths come from the routers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "opsflow",
        description = "Workflow and rules engine for IT service management. Processes are YAML \
files; each instance moves through its process's states by transitions, and every step is a \
hash-chained trace record. Every error answer is an `application/problem+json` document whose \
`type` is one of `urn:opsflow:problem:*` (see the `Problem` schema).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "processes", description = "The process definitions served"),
        (name = "instances", description = "Process instances: create, read, list, fire transitions, traces"),
        (name = "reports", description = "Service reports: the KPI snapshot, its rendering and verification"),
        (name = "kpis", description = "KPIs computed from the traces"),
        (name = "audit", description = "Trace exports and evidence bundles for auditors"),
        (name = "admin", description = "Reloading definitions, migrating instances, the clock"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
struct Fixed;

/// `Idempotency-Key`: a retry with the same key and body gets the first answer.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(crate) struct IdempotencyKey {
    /// 1 to 255 visible ASCII characters; a retry with the same key and body gets the
    /// first answer (with `Idempotency-Replayed: true`), another body with it a 422.
    #[param(
        rename = "Idempotency-Key",
        pattern = "^[!-~]{1,255}$",
        min_length = 1,
        max_length = 255
    )]
    key: Option<String>,
}

/// `If-Match`: the step applies only at that version of the instance.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(crate) struct IfMatch {
    /// An `ETag` of the instance (`"7"`), or `*`; another version gets 412 `version-mismatch`.
    #[param(rename = "If-Match", pattern = "^(\\*|(W/)?\"?[0-9]{1,18}\"?)$")]
    version: Option<String>,
}

/// The name of the bearer security scheme.
const BEARER: &str = "bearer";

/// Completes the document the routers built: the fixed parts, the bearer scheme on every
/// operation that does not opt out, and a problem document for every error answer, plus
/// the answers any operation may give (400, 401, 500, 503).
pub(crate) fn finish(paths: OpenApi, limits: &super::ApiLimits) -> OpenApi {
    let mut doc = Fixed::openapi();
    doc.merge(paths);
    if let Some(list) = doc.paths.paths.get_mut("/api/v1/instances") {
        page_limit(list.get.as_mut(), limits.max_page);
    }
    if let Some(validate) = doc.paths.paths.get_mut("/api/v1/processes/validate") {
        not_empty_body(validate.post.as_mut());
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert("Problem".into(), problem_schema().into());
    components.security_schemes.insert(
        BEARER.into(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "A token from `opsflow token create` or `OPSFLOW_TOKENS`; it names the actor and their roles",
                ))
                .build(),
        )
        .into(),
    );
    for item in doc.paths.paths.values_mut() {
        let methods = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in methods.into_iter().flatten() {
            complete(op);
        }
    }
    doc
}

/// The `limit` parameter's maximum is the server's page limit.
fn page_limit(op: Option<&mut Operation>, max_page: u32) {
    let params = op.and_then(|o| o.parameters.as_mut()).into_iter().flatten();
    for p in params {
        if let RefOr::T(p) = p
            && p.name == "limit"
        {
            p.description = Some(format!("Page size, 1 to {max_page} (default 50)."));
            if let Some(RefOr::T(Schema::Object(o))) = p.schema.as_mut() {
                o.maximum = Some(f64::from(max_page).into());
            }
        }
    }
}

/// A text body must not be empty.
fn not_empty_body(op: Option<&mut Operation>) {
    let bodies = op.and_then(|o| o.request_body.as_mut());
    if let Some(RefOr::T(body)) = bodies {
        for content in body.content.values_mut() {
            if let RefOr::T(content) = content
                && let Some(RefOr::T(Schema::Object(o))) = content.schema.as_mut()
            {
                o.min_length = Some(1);
                o.pattern = Some("\\S".into());
            }
        }
    }
}

/// A query or header parameter is absent or a text: never `null` (an `Option` field in
/// Rust, which utoipa makes nullable).
fn not_nullable(op: &mut Operation) {
    for p in op.parameters.iter_mut().flatten() {
        if let RefOr::T(p) = p
            && let Some(RefOr::T(Schema::Object(o))) = p.schema.as_mut()
            && let SchemaType::Array(types) = &o.schema_type
        {
            let kept: Vec<Type> = types
                .iter()
                .filter(|t| **t != Type::Null)
                .cloned()
                .collect();
            if let [only] = kept.as_slice() {
                o.schema_type = SchemaType::Type(only.clone());
            }
        }
    }
}

fn complete(op: &mut Operation) {
    not_nullable(op);
    let public = op
        .security
        .as_ref()
        .is_some_and(|s| s.iter().all(|r| *r == SecurityRequirement::default()));
    if !public {
        op.security = Some(vec![SecurityRequirement::new::<_, _, &str>(BEARER, [])]);
    }
    let mut common = vec![
        ("500", "`internal`: the cause is logged, never shown"),
        (
            "503",
            "`busy`: the write queue is full; retry after `Retry-After` seconds",
        ),
    ];
    if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) || op.request_body.is_some() {
        common.push(("400", "`malformed-request`: the request could not be read"));
    }
    if op.request_body.is_some() {
        common.push(("413", "`payload-too-large`"));
        common.push(("415", "`unsupported-media-type`"));
        common.push((
            "422",
            "`invalid-data`: the body does not have the documented shape; `nul-character`: \
             U+0000 in the address or the body",
        ));
    } else {
        common.push(("422", "`nul-character`: U+0000 (`%00`) in the address"));
    }
    if !public {
        common.push(("401", "`unauthorized`: no or an unknown bearer token"));
    }
    for (status, description) in common {
        op.responses
            .responses
            .entry(status.into())
            .or_insert_with(|| {
                ResponseBuilder::new()
                    .description(description)
                    .build()
                    .into()
            });
    }
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let error = status.parse::<u16>().is_ok_and(|s| s >= 400);
        if error && response.content.is_empty() {
            response.content.insert(
                PROBLEM_JSON.into(),
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build()
                    .into(),
            );
        }
    }
}

/// RFC 9457 problem details, with `type` one of the stable problem types.
fn problem_schema() -> Schema {
    let types: Vec<String> = PROBLEM_TYPES.iter().map(|(s, ..)| type_uri(s)).collect();
    let table: String = PROBLEM_TYPES
        .iter()
        .map(|(slug, status, title)| format!("\n- `{}` ({status}): {title}", type_uri(slug)))
        .collect();
    ObjectBuilder::new()
        .description(Some(format!(
            "An error answer (RFC 9457). Members beyond these name what the problem concerns: \
`field`, `rule`, `state`, `transition`, `errors`, `process`.\n\nTypes:{table}"
        )))
        .property(
            "type",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(types)),
        )
        .property("title", ObjectBuilder::new().schema_type(Type::String))
        .property(
            "status",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(400))
                .maximum(Some(599)),
        )
        .property("detail", ObjectBuilder::new().schema_type(Type::String))
        .required("type")
        .required("title")
        .required("status")
        .required("detail")
        .into()
}
