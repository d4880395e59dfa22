//! `/api/v1/processes`: the definitions being served, their graphs, and validation of a
//! process file sent in the body.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Caller;
use super::json::ApiQuery;
use super::problem::Problem;
use crate::definition::{Definition, DefinitionError, GraphFormat};
use crate::engine::{EngineError, Loaded, read_rule_library};

/// The routes of this module.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(validate))
        .routes(routes!(show))
        .routes(routes!(graph))
}

/// A process as served, in brief.
#[derive(Serialize, ToSchema)]
struct Summary {
    /// Process id.
    id: String,
    /// Its title.
    title: Option<String>,
    /// Its version number (1, 2, ...: each stored content gets the next).
    version: Option<i64>,
    /// SHA-256 of its texts.
    hash: String,
    /// The state a new instance starts in.
    initial: String,
    /// Its states.
    states: Vec<String>,
    /// Its transitions.
    transitions: Vec<String>,
}

/// The processes served.
#[derive(Serialize, ToSchema)]
struct ProcessList {
    /// One per process.
    items: Vec<Summary>,
}

fn summary(d: &Definition, version: Option<i64>) -> Summary {
    Summary {
        id: d.id.clone(),
        title: d.title.clone(),
        version,
        hash: d.hash.clone(),
        initial: d.initial_state().to_owned(),
        states: d.states.keys().cloned().collect(),
        transitions: d.transitions.keys().cloned().collect(),
    }
}

/// A stored version of a process.
#[derive(Serialize, ToSchema)]
struct VersionSummary {
    /// Its number.
    version: i64,
    /// Its content hash.
    hash: String,
    /// When it was first stored, RFC 3339 UTC.
    first_seen: String,
    /// It is the version served now.
    serving: bool,
}

/// Everything a client needs to build forms and diagrams.
#[derive(Serialize, ToSchema)]
struct ProcessDetail {
    /// Process id.
    id: String,
    /// Its title.
    title: Option<String>,
    /// What it is for.
    description: Option<String>,
    /// SHA-256 of its texts.
    hash: String,
    /// The rule modules it uses.
    rules: Vec<String>,
    /// Every role it knows.
    roles: Vec<String>,
    /// Who may read its instances (absent: every caller).
    read: Option<Vec<String>>,
    /// Who may start an instance.
    start: crate::definition::Start,
    /// Its fields, by name.
    #[schema(value_type = indexmap::IndexMap<String, crate::definition::Field>)]
    fields: crate::definition::Named<crate::definition::Field>,
    /// The state a new instance starts in.
    initial: String,
    /// Its states, in file order.
    states: Vec<crate::definition::State>,
    /// Its transitions, in file order.
    transitions: Vec<crate::definition::Transition>,
    /// Data tables its rules read.
    #[schema(value_type = Object)]
    tables: Value,
    /// The number of the version shown.
    version: Option<i64>,
    /// The version shown is the one served now.
    serving: bool,
    /// Every stored version.
    versions: Vec<VersionSummary>,
}

/// The processes served now.
#[utoipa::path(
    get, operation_id = "listProcesses", path = "/processes", tag = "processes",
    responses((status = 200, description = "Every process served", body = ProcessList))
)]
async fn list(State(app): State<AppState>, _caller: Caller) -> Result<impl IntoResponse, Problem> {
    let catalog = app.engine.catalog();
    let mut items = Vec::new();
    for l in catalog.iter() {
        let version = app.engine.version_number(&l.definition).await?;
        items.push(summary(&l.definition, version));
    }
    Ok(axum::Json(ProcessList { items }))
}

fn find(app: &AppState, id: &str) -> Result<std::sync::Arc<Loaded>, Problem> {
    app.engine
        .catalog()
        .get(id)
        .cloned()
        .ok_or_else(|| EngineError::UnknownProcess(id.to_owned()).into())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ShowQuery {
    /// A version number: that version instead of the one served now.
    version: Option<i64>,
}

/// A process as served now, with the list of its stored versions; `?version=N` shows
/// version N instead (one that running instances may still be pinned to).
#[utoipa::path(
    get, operation_id = "getProcess", path = "/processes/{id}", tag = "processes",
    params(("id" = String, Path, description = "Process id"), ShowQuery),
    responses(
        (status = 200, description = "The definition, with its stored versions", body = ProcessDetail),
        (status = 404, description = "`unknown-process`, `unknown-version`"),
    )
)]
async fn show(
    State(app): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ShowQuery>,
) -> Result<impl IntoResponse, Problem> {
    let current = app.engine.catalog().get(&id).cloned();
    let versions = app.engine.versions_of(&id).await?;
    if current.is_none() && versions.is_empty() {
        return Err(EngineError::UnknownProcess(id).into());
    }
    let serving = current.as_ref().map(|l| l.definition.hash.clone());
    let loaded = match q.version {
        None => current.ok_or_else(|| {
            Problem::new(
                "unknown-process",
                format!("process `{id}` is no longer served; ask for one of its versions with ?version=N"),
            )
            .with("process", &id)
        })?,
        Some(n) => match app.engine.numbered_version(&id, n).await? {
            Some((_, loaded)) => loaded,
            None => {
                return Err(Problem::new(
                    "unknown-version",
                    format!("process `{id}` has no version {n}"),
                )
                .with("process", &id)
                .with("versions", versions.iter().map(|v| v.version).collect::<Vec<_>>()));
            }
        },
    };
    let d = &loaded.definition;
    let number = versions
        .iter()
        .find(|v| v.hash == d.hash)
        .map(|v| v.version);
    Ok(axum::Json(ProcessDetail {
        id: d.id.clone(),
        title: d.title.clone(),
        description: d.description.clone(),
        hash: d.hash.clone(),
        rules: d.source.rules.keys().cloned().collect(),
        roles: d.roles.clone(),
        read: d.read.clone(),
        start: d.start.clone(),
        fields: d.fields.clone(),
        initial: d.initial_state().to_owned(),
        states: d.states.values().cloned().collect(),
        transitions: d.transitions.values().cloned().collect(),
        tables: d.tables.clone(),
        version: number,
        serving: serving.as_deref() == Some(d.hash.as_str()),
        versions: versions
            .iter()
            .map(|v| VersionSummary {
                version: v.version,
                hash: v.hash.clone(),
                first_seen: crate::clock::format_ms(v.first_seen),
                serving: serving.as_deref() == Some(v.hash.as_str()),
            })
            .collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct GraphQuery {
    /// `mermaid` (default) or `dot`.
    #[param(value_type = Option<String>, pattern = "^(mermaid|dot)$")]
    format: Option<GraphFormat>,
}

/// The process's state graph as Mermaid or Graphviz text.
#[utoipa::path(
    get, operation_id = "getProcessGraph", path = "/processes/{id}/graph", tag = "processes",
    params(("id" = String, Path, description = "Process id"), GraphQuery),
    responses(
        (status = 200, description = "The graph", content(
            (String = "text/vnd.mermaid"),
            (String = "text/vnd.graphviz"),
        )),
        (status = 404, description = "`unknown-process`"),
    )
)]
async fn graph(
    State(app): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<GraphQuery>,
) -> Result<impl IntoResponse, Problem> {
    let loaded = find(&app, &id)?;
    let format = q.format.unwrap_or(GraphFormat::Mermaid);
    let content_type = match format {
        GraphFormat::Mermaid => "text/vnd.mermaid; charset=utf-8",
        GraphFormat::Dot => "text/vnd.graphviz; charset=utf-8",
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        loaded.definition.render_graph(format),
    ))
}

/// What a process file sent for validation is worth.
#[derive(Serialize, ToSchema)]
struct Validation {
    /// It has no problem.
    valid: bool,
    /// Its process id, when valid.
    process: Option<String>,
    /// Its hash, when valid.
    hash: Option<String>,
    /// Every problem, as file, line, column and message.
    errors: Vec<DefinitionError>,
    /// Legal but suspicious parts, when valid.
    warnings: Vec<DefinitionError>,
}

/// Validates the YAML in the body against the server's rule modules. Always 200: the
/// answer says whether the file is valid and lists every problem.
#[utoipa::path(
    post, operation_id = "validateProcess", path = "/processes/validate", tag = "processes",
    request_body(content = String, content_type = "text/plain",
        description = "A process file's YAML text (sent under any text content type, `application/yaml` too)"),
    responses((status = 200, description = "Whether it is valid, with every problem", body = Validation))
)]
async fn validate(
    State(app): State<AppState>,
    _caller: Caller,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<impl IntoResponse, Problem> {
    let body = body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                "payload-too-large",
                "the process file is larger than the server accepts",
            )
        } else {
            Problem::new("malformed-request", e.body_text())
        }
    })?;
    if body.trim().is_empty() {
        return Err(Problem::new(
            "malformed-request",
            "send the process file (YAML) as the request body",
        ));
    }
    let mut errors = Vec::new();
    let library = read_rule_library(&app.rules_dir, &mut errors);
    let built = Loaded::build(app.engine.rule_engine(), "request", &body, &library);
    if let Ok(l) = &built {
        errors.extend(app.engine.catalog().unknown_calendars(&l.definition));
    }
    let answer = match built {
        Ok(l) if errors.is_empty() => Validation {
            valid: true,
            process: Some(l.definition.id.clone()),
            hash: Some(l.definition.hash.clone()),
            errors,
            warnings: crate::definition::warnings(&l.definition),
        },
        Ok(_) => Validation {
            valid: false,
            process: None,
            hash: None,
            errors,
            warnings: Vec::new(),
        },
        Err(mut e) => {
            errors.append(&mut e);
            Validation {
                valid: false,
                process: None,
                hash: None,
                errors,
                warnings: Vec::new(),
            }
        }
    };
    Ok(axum::Json(answer))
}
