//! The bench's workload: the shipped event process, classified once, then alternately
//! `await` and `resume` (which routes back to the first line by an automatic transition;
//! the two pause and resume the resolution SLA clock), driven through the engine by one or
//! many clients.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Map, Value, json};

use super::BenchArgs;
use crate::clock::SystemClock;
use crate::engine::{Actor, Catalog, Engine, FireRequest, load_calendars};
use crate::rules::{Limits, RuleEngine};
use crate::store::{MemoryStore, Store};

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The data of a new event.
pub(super) fn new_event() -> Map<String, Value> {
    object(json!({
        "kind": "incident",
        "channel": "phone",
        "summary": "Cannot print the monthly order report",
        "description": "The order report page times out for the finance team since this morning.",
        "requester": "finance.li",
    }))
}

/// The data of the classification that precedes the measured transitions.
pub(super) fn classification() -> Map<String, Value> {
    object(json!({ "category": "order_consultation", "impact": "medium", "urgency": "low" }))
}

/// The i-th transition of the workload, after classification.
pub(super) fn step(i: u64) -> (&'static str, Map<String, Value>) {
    if i.is_multiple_of(2) {
        (
            "await",
            object(json!({ "pending_reason": "awaiting_customer" })),
        )
    } else {
        ("resume", Map::new())
    }
}

/// Trace rows the i-th transition writes: `await` its transition and the resolution
/// clock's `sla` record (paused); `resume` its transition, the automatic routing and the
/// `sla` record (resumed). The raw baselines write as many.
pub(super) fn trace_rows(i: u64) -> u64 {
    if i.is_multiple_of(2) { 2 } else { 3 }
}

/// The actor of every bench request.
pub(super) fn actor() -> Actor {
    Actor::new("bench", ["service_desk", "requester"])
}

/// An engine over `store` serving the bench's process files.
pub(super) fn engine_with(store: Arc<dyn Store>, args: &BenchArgs) -> anyhow::Result<Engine> {
    let clock = Arc::new(SystemClock);
    let rules = Arc::new(RuleEngine::new(clock.clone(), Limits::default()));
    let catalog = Catalog::load(&rules, std::slice::from_ref(&args.processes), &args.rules)
        .and_then(|c| c.with_calendars(load_calendars(&args.calendars)?))
        .map_err(|errors| {
            anyhow::anyhow!(
                "{} problem(s) in process definitions; run `opsflow validate`",
                errors.len()
            )
        })?;
    if catalog.get("event").is_none() {
        bail!(
            "the bench needs the event process in {}",
            args.processes.display()
        );
    }
    Ok(Engine::new(catalog, rules, store, clock))
}

/// Creates and classifies an event; returns its id.
pub(super) async fn prepared_event(engine: &Engine) -> anyhow::Result<String> {
    let actor = actor();
    let created = engine
        .create(&actor, "event", new_event(), None, None)
        .await?;
    let request = FireRequest {
        data: classification(),
        ..FireRequest::default()
    };
    engine
        .fire(&actor, &created.id, "classify", request)
        .await?;
    Ok(created.id)
}

/// `clients` tasks, each driving an event of its own through its share of `transitions`,
/// on one shared engine. Returns the time the transitions took (set-up excluded).
pub(super) async fn engine_run(
    engine: Arc<Engine>,
    transitions: u64,
    clients: u64,
) -> anyhow::Result<Duration> {
    let clients = clients.max(1);
    let mut ids = Vec::new();
    for _ in 0..clients {
        ids.push(prepared_event(&engine).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, id) in ids.into_iter().enumerate() {
        let engine = engine.clone();
        let share = transitions / clients + u64::from((c as u64) < transitions % clients);
        tasks.push(tokio::spawn(async move {
            let actor = actor();
            for i in 0..share {
                let (name, data) = step(i);
                let request = FireRequest {
                    data,
                    ..FireRequest::default()
                };
                engine.fire(&actor, &id, name, request).await?;
            }
            Ok::<_, crate::engine::EngineError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

/// Two engines side by side, each over a store of its own with one client, started
/// together and timed as the clients of one engine are, until the last one is done: what
/// the machine's cores give to steps that share nothing, beside which the eight-client
/// figure on one engine can be read (on a machine whose second core gives less at times,
/// both drop together).
pub(super) async fn side_by_side_run(
    args: &BenchArgs,
    transitions: u64,
) -> anyhow::Result<Duration> {
    let halves = [transitions / 2, transitions - transitions / 2];
    let mut engines = Vec::new();
    for _ in halves {
        engines.push(Arc::new(engine_with(
            Arc::new(MemoryStore::default()),
            args,
        )?));
    }
    let started = Instant::now();
    let tasks: Vec<_> = (engines.into_iter().zip(halves))
        .map(|(engine, n)| tokio::spawn(engine_run(engine, n, 1)))
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}
