//! The conformance part of the bench: a synthetic 100k-event incident log written as CSV,
//! read through a mapping and replayed against the event process.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::BenchArgs;
use crate::conform::{Mapping, read_log, replay};
use crate::engine::Catalog;

const MAPPING: &str = r#"
process: event
case: case
activity: activity
time: time
activities:
  Logged: classify
  Waiting: await
  Working: [resume, ignore]
  Note: ignore
  Solved: resolve
  Closed: close_after_callback
"#;

/// One case's activities; every seventh case is solved while it waits (a deviation).
fn activities(case: u64) -> Vec<&'static str> {
    if case.is_multiple_of(7) {
        vec![
            "Logged", "Working", "Note", "Waiting", "Note", "Solved", "Closed",
        ]
    } else {
        vec![
            "Logged", "Working", "Note", "Waiting", "Working", "Note", "Solved", "Note", "Closed",
        ]
    }
}

/// Times for reading and replaying a log of at least `events` events: (events, cases,
/// fitness, time).
pub(super) fn conform_run(
    args: &BenchArgs,
    dir: &Path,
    events: u64,
) -> anyhow::Result<(u64, u64, f64, Duration)> {
    let file = dir.join("conform-log.csv");
    let mut text = String::from("case,activity,time\n");
    let (mut written, mut case) = (0u64, 0u64);
    let start = 1_767_225_600_000_i64; // 2026-01-01
    while written < events {
        for (i, a) in activities(case).into_iter().enumerate() {
            let at = start + (case as i64) * 60_000 + (i as i64) * 1_000;
            text.push_str(&format!("C{case},{a},{}\n", crate::clock::format_ms(at)));
            written += 1;
        }
        case += 1;
    }
    std::fs::write(&file, text).context("cannot write the bench's log")?;
    let catalog = Catalog::load(
        &super::super::rule_engine(),
        std::slice::from_ref(&args.processes),
        &args.rules,
    )
    .map_err(|e| anyhow::anyhow!("{} problem(s) in process definitions", e.len()))?;
    let (mapping, def) = Mapping::parse(
        "bench mapping",
        MAPPING,
        |p| catalog.get(p).map(|l| &l.definition),
        &[],
    )
    .map_err(|e| anyhow::anyhow!("bench mapping: {}", e[0]))?;
    let began = Instant::now();
    let cases = read_log(&file, &mapping)?;
    let report = replay(def, &mapping, &cases);
    let took = began.elapsed();
    Ok((
        report.events as u64,
        report.cases as u64,
        report.fitness,
        took,
    ))
}
