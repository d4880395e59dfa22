//! `/api/v1/admin/clock`: the engine's time, and in simulation mode moving it forward.
//!
//! A server started with `--simulate` runs on a clock that callers may move forward, so that
//! a process owner can watch timers, warnings and SLA breaches play out in minutes. Moving
//! the clock fires what fell due before answering. A real-time server refuses to move.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::json::ApiJson;
use super::problem::Problem;
use crate::clock::format_ms;
use crate::definition::duration_ms;

/// Due timers fired per round after the clock moves.
const ROUND: u32 = 256;

/// The routes of this module.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/admin/clock", get(show).post(advance))
}

async fn show(State(app): State<AppState>, Caller(_): Caller) -> Json<Value> {
    Json(json!({
        "now": format_ms(app.engine.now_ms()),
        "simulated": app.simulation.is_some(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceBody {
    /// How far: `90m`, `2h`, `3d`, `1h30m`.
    advance: String,
}

async fn advance(
    State(app): State<AppState>,
    Caller(_): Caller,
    ApiJson(body): ApiJson<AdvanceBody>,
) -> Result<Json<Value>, Problem> {
    let Some(clock) = &app.simulation else {
        return Err(Problem::new(
            "real-time",
            "this server runs in real time; start it with --simulate (OPSFLOW_SIMULATE=true) to move its clock",
        ));
    };
    let ms = duration_ms(&body.advance)
        .filter(|ms| *ms > 0)
        .ok_or_else(|| {
            Problem::new(
                "malformed-request",
                format!(
                    "`advance` must be a duration such as `90m`, `4h`, `3d` or `1h30m`; got `{}`",
                    body.advance
                ),
            )
        })?;
    clock.advance(ms);
    let mut fired = 0;
    loop {
        let n = app.engine.fire_due_timers("simulation", ROUND).await?;
        fired += n;
        if n < ROUND as usize {
            break;
        }
    }
    Ok(Json(json!({
        "now": format_ms(app.engine.now_ms()),
        "simulated": true,
        "fired": fired,
    })))
}
