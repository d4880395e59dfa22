//! `/api/v1/processes`: the definitions being served, their graphs, and validation of a
//! process file sent in the body.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::json::ApiQuery;
use super::problem::Problem;
use crate::definition::{Definition, DefinitionError, GraphFormat};
use crate::engine::{EngineError, Loaded, read_rule_library};

/// The routes of this module.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/processes", get(list))
        .route("/processes/validate", post(validate))
        .route("/processes/{id}", get(show))
        .route("/processes/{id}/graph", get(graph))
}

#[derive(Serialize)]
struct Summary<'a> {
    id: &'a str,
    title: &'a Option<String>,
    version: Option<i64>,
    hash: &'a str,
    initial: &'a str,
    states: Vec<&'a str>,
    transitions: Vec<&'a str>,
}

fn summary(d: &Definition, version: Option<i64>) -> Summary<'_> {
    Summary {
        id: &d.id,
        title: &d.title,
        version,
        hash: &d.hash,
        initial: d.initial_state(),
        states: d.states.keys().map(String::as_str).collect(),
        transitions: d.transitions.keys().map(String::as_str).collect(),
    }
}

/// Everything a client needs to build forms and diagrams.
fn detail(d: &Definition) -> Value {
    json!({
        "id": d.id,
        "title": d.title,
        "description": d.description,
        "hash": d.hash,
        "rules": d.source.rules.keys().collect::<Vec<_>>(),
        "roles": d.roles,
        "start": d.start,
        "fields": d.fields,
        "initial": d.initial_state(),
        "states": d.states.values().collect::<Vec<_>>(),
        "transitions": d.transitions.values().collect::<Vec<_>>(),
        "tables": d.tables,
    })
}

async fn list(State(app): State<AppState>, _caller: Caller) -> Result<impl IntoResponse, Problem> {
    let catalog = app.engine.catalog();
    let mut items = Vec::new();
    for l in catalog.iter() {
        let version = app.engine.version_number(&l.definition).await?;
        items.push(summary(&l.definition, version));
    }
    Ok(axum::Json(json!({ "items": items })))
}

fn find(app: &AppState, id: &str) -> Result<std::sync::Arc<Loaded>, Problem> {
    app.engine
        .catalog()
        .get(id)
        .cloned()
        .ok_or_else(|| EngineError::UnknownProcess(id.to_owned()).into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShowQuery {
    /// A version number: that version instead of the one served now.
    version: Option<i64>,
}

/// A process as served now, with the list of its stored versions; `?version=N` shows
/// version N instead (one that running instances may still be pinned to).
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
    let mut body = detail(d);
    let number = versions
        .iter()
        .find(|v| v.hash == d.hash)
        .map(|v| v.version);
    body["version"] = json!(number);
    body["serving"] = json!(serving.as_deref() == Some(d.hash.as_str()));
    body["versions"] = versions
        .iter()
        .map(|v| {
            json!({
                "version": v.version,
                "hash": v.hash,
                "first_seen": crate::clock::format_ms(v.first_seen),
                "serving": serving.as_deref() == Some(v.hash.as_str()),
            })
        })
        .collect();
    Ok(axum::Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphQuery {
    format: Option<GraphFormat>,
}

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

#[derive(Serialize)]
struct Validation {
    valid: bool,
    process: Option<String>,
    hash: Option<String>,
    errors: Vec<DefinitionError>,
    warnings: Vec<DefinitionError>,
}

/// Validates the YAML in the body against the server's rule modules. Always 200: the
/// answer says whether the file is valid and lists every problem.
async fn validate(State(app): State<AppState>, _caller: Caller, body: String) -> impl IntoResponse {
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
    axum::Json(answer)
}
