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
    hash: &'a str,
    initial: &'a str,
    states: Vec<&'a str>,
    transitions: Vec<&'a str>,
}

fn summary(d: &Definition) -> Summary<'_> {
    Summary {
        id: &d.id,
        title: &d.title,
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

async fn list(State(app): State<AppState>, _caller: Caller) -> impl IntoResponse {
    let items: Vec<_> = app
        .engine
        .catalog()
        .iter()
        .map(|l| summary(&l.definition))
        .collect();
    axum::Json(json!({ "items": items }))
}

fn find(app: &AppState, id: &str) -> Result<std::sync::Arc<Loaded>, Problem> {
    app.engine
        .catalog()
        .get(id)
        .cloned()
        .ok_or_else(|| EngineError::UnknownProcess(id.to_owned()).into())
}

async fn show(
    State(app): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    let loaded = find(&app, &id)?;
    Ok(axum::Json(detail(&loaded.definition)))
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
        },
        Ok(_) => Validation {
            valid: false,
            process: None,
            hash: None,
            errors,
        },
        Err(mut e) => {
            errors.append(&mut e);
            Validation {
                valid: false,
                process: None,
                hash: None,
                errors,
            }
        }
    };
    axum::Json(answer)
}
