//! The workload over HTTP: a real server on loopback, driven by concurrent clients.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

use super::BenchArgs;
use super::workload::{classification, new_event, step};
use crate::server::Server;
use crate::settings::{Secret, Settings};

/// Throughput and latency of one HTTP run.
#[derive(Debug, Clone, Copy)]
pub(super) struct HttpFigures {
    /// Transitions per second.
    pub(super) tps: f64,
    /// Median latency, ms.
    pub(super) p50_ms: f64,
    /// 99th percentile latency, ms.
    pub(super) p99_ms: f64,
    /// How far the server's `/metrics` moved while the steps were fired: steps committed.
    pub(super) counted_steps: f64,
    /// ... and transition requests answered 200.
    pub(super) counted_requests: f64,
}

/// The series of `/metrics` the bench reads: (steps done, transition requests answered).
async fn counters(client: &reqwest::Client, server: &str) -> anyhow::Result<(f64, f64)> {
    let text = client
        .get(format!("{server}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let value = |series: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((
        value(r#"opsflow_steps_total{process="event",outcome="done"}"#),
        value(
            r#"opsflow_http_requests_total{method="POST",route="/api/v1/instances/{id}/transitions/{name}",status="200"}"#,
        ),
    ))
}

/// Transitions fired over HTTP by `clients` concurrent clients on a fresh server over the
/// database at `db`, each client driving an event of its own.
pub(super) async fn http_run(
    args: &BenchArgs,
    db: String,
    clients: u64,
) -> anyhow::Result<HttpFigures> {
    let token = "bench-token";
    let settings = Settings {
        db,
        processes: args.processes.clone(),
        rules: args.rules.clone(),
        calendars: args.calendars.clone(),
        kpis: args.processes.with_file_name("kpis"),
        listen: "127.0.0.1:0".parse()?,
        reload_poll_ms: 0,
        tokens: Secret::new(format!("{token}=bench:service_desk,requester")),
        ..Settings::defaults()?
    };
    let server = Server::build(&settings).await?;
    let server_url = format!("http://{}", server.addr());
    let base = format!("{server_url}/api/v1");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let clients = clients.max(1);

    // Create and classify every client's instance first, then time the transitions only.
    let mut ids = Vec::new();
    for _ in 0..clients {
        let created: Value = client
            .post(format!("{base}/instances"))
            .bearer_auth(token)
            .json(&json!({ "process": "event", "data": new_event() }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = created["id"]
            .as_str()
            .context("no id in answer")?
            .to_owned();
        client
            .post(format!("{base}/instances/{id}/transitions/classify"))
            .bearer_auth(token)
            .json(&json!({ "data": classification() }))
            .send()
            .await?
            .error_for_status()?;
        ids.push(id);
    }
    let before = counters(&client, &server_url).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, id) in ids.into_iter().enumerate() {
        let client = client.clone();
        let base = base.clone();
        // The same shares as the engine's run: every measurement fires all the transitions.
        let share = args.transitions / clients + u64::from((c as u64) < args.transitions % clients);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share as usize);
            for i in 0..share {
                let (name, data) = step(i);
                let sent = Instant::now();
                client
                    .post(format!("{base}/instances/{id}/transitions/{name}"))
                    .bearer_auth(token)
                    .json(&json!({ "data": data }))
                    .send()
                    .await?
                    .error_for_status()?;
                latencies.push(sent.elapsed());
            }
            Ok::<_, reqwest::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    let after = counters(&client, &server_url).await?;
    let _ = stop.send(());
    serving.await??;
    latencies.sort();
    Ok(HttpFigures {
        tps: super::rate(args.transitions, elapsed),
        p50_ms: percentile_ms(&latencies, 0.50),
        p99_ms: percentile_ms(&latencies, 0.99),
        counted_steps: after.0 - before.0,
        counted_requests: after.1 - before.1,
    })
}

/// The `p` quantile of sorted latencies, in ms rounded to 0.01.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    (sorted[i].as_secs_f64() * 100_000.0).round() / 100.0
}
