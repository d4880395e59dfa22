//! `/api/v1/admin/clock`: the engine's time, and in simulation mode moving it forward.
//!
//! A server started with `--simulate` runs on a clock that callers may move forward, so that
//! a process owner can watch timers, warnings and SLA breaches play out in minutes. Moving
//! the clock fires what fell due before answering. A real-time server refuses to move.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Caller;
use super::json::ApiJson;
use super::problem::Problem;
use crate::clock::format_ms;
use crate::definition::duration_ms;

/// Due timers fired per round after the clock moves.
const ROUND: u32 = 256;

/// The routes of this module.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, advance))
}

/// The engine's time.
#[derive(Serialize, ToSchema)]
struct ClockView {
    /// The engine clock's now, RFC 3339 UTC.
    now: String,
    /// The server runs on a simulated clock (`--simulate`).
    simulated: bool,
    /// After a move: the timers that fell due and fired.
    #[serde(skip_serializing_if = "Option::is_none")]
    fired: Option<usize>,
}

/// The engine's time, and whether it is simulated.
#[utoipa::path(
    get, operation_id = "getClock", path = "/admin/clock", tag = "admin",
    responses((status = 200, description = "The clock", body = ClockView))
)]
async fn show(State(app): State<AppState>, _caller: Caller) -> Json<ClockView> {
    Json(ClockView {
        now: format_ms(app.engine.now_ms()),
        simulated: app.simulation.is_some(),
        fired: None,
    })
}

/// How far to move the clock.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AdvanceBody {
    /// How far: `90m`, `2h`, `3d`, `1h30m` (s, m, h, d; more than zero).
    #[schema(pattern = "^0*[1-9][0-9]{0,5}[smhd]([0-9]{1,6}[smhd]){0,3}$")]
    advance: String,
}

/// Moves a simulated clock forward and fires what fell due.
#[utoipa::path(
    post, operation_id = "advanceClock", path = "/admin/clock", tag = "admin",
    request_body = AdvanceBody,
    responses(
        (status = 200, description = "The clock after the move, with the timers fired", body = ClockView),
        (status = 403, description = "`real-time`: the server does not simulate time"),
    )
)]
async fn advance(
    State(app): State<AppState>,
    _caller: Caller,
    ApiJson(body): ApiJson<AdvanceBody>,
) -> Result<Json<ClockView>, Problem> {
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
    Ok(Json(ClockView {
        now: format_ms(app.engine.now_ms()),
        simulated: true,
        fired: Some(fired),
    }))
}
