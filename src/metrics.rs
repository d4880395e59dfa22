//! What the server counts, exposed at `/metrics` in the Prometheus text format: requests
//! by route and status, steps and rule failures by process with a latency histogram, how
//! late timers fire, and reloads.
//!
//! One `Metrics` belongs to one engine, so that two servers in one process (as in the
//! tests) count apart. Steps are counted with atomic adds under a shared read lock (every
//! step of every client counts, so they must not queue on one lock); the rarer counts take
//! a short lock on a small map.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use crate::store::WriterStats;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Upper bounds of the timer lag buckets, in seconds.
const LAG_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];

/// A histogram with fixed buckets.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not cumulative; summed when rendered).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&self.counts) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

/// A histogram with fixed buckets that many threads add to at once without a lock; its
/// sum is kept in nanoseconds.
#[derive(Debug)]
struct SharedHistogram {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl SharedHistogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| seconds <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// What it holds now. Observations racing with the read may show in some buckets and
    /// not yet in the count; the count is raised to the buckets' total so that the
    /// rendered histogram stays cumulative.
    fn snapshot(&self) -> Histogram {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let count = self.count.load(Ordering::Relaxed);
        Histogram {
            bounds: self.bounds,
            count: count.max(counts.iter().sum()),
            counts,
            sum: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// A step's outcome, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Committed.
    Done,
    /// Refused because a rule script failed or ran over a limit.
    RuleFailed,
    /// Refused for another reason (roles, data, guard, state, race).
    Refused,
}

#[derive(Debug)]
struct ProcessCounts {
    done: AtomicU64,
    refused: AtomicU64,
    rule_failures: AtomicU64,
    latency: SharedHistogram,
}

impl ProcessCounts {
    fn new() -> Self {
        Self {
            done: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            rule_failures: AtomicU64::new(0),
            latency: SharedHistogram::new(LATENCY_BUCKETS),
        }
    }
}

/// The counters of one server.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    processes: RwLock<BTreeMap<String, ProcessCounts>>,
    timer_lag: Mutex<Histogram>,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::default(),
            processes: RwLock::default(),
            timer_lag: Mutex::new(Histogram::new(LAG_BUCKETS)),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        }
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts an HTTP request: its method, its route pattern (never the path itself, so
    /// ids do not make new series) and its status.
    pub fn request(&self, method: &str, route: &str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((method.to_owned(), route.to_owned(), status))
            .or_insert(0) += 1;
    }

    /// Counts a step (creation or transition, by a caller or a timer) of `process` that
    /// took `elapsed` from its start to its answer.
    pub fn step(&self, process: &str, outcome: StepOutcome, elapsed: Duration) {
        {
            let map = self.processes.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = map.get(process) {
                Self::count(c, outcome, elapsed);
                return;
            }
        }
        let mut map = self.processes.write().unwrap_or_else(|e| e.into_inner());
        let c = map
            .entry(process.to_owned())
            .or_insert_with(ProcessCounts::new);
        Self::count(c, outcome, elapsed);
    }

    fn count(c: &ProcessCounts, outcome: StepOutcome, elapsed: Duration) {
        match outcome {
            StepOutcome::Done => {
                c.done.fetch_add(1, Ordering::Relaxed);
                c.latency.observe(elapsed);
            }
            StepOutcome::RuleFailed => {
                c.refused.fetch_add(1, Ordering::Relaxed);
                c.rule_failures.fetch_add(1, Ordering::Relaxed);
            }
            StepOutcome::Refused => {
                c.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records how late a timer fired: `lag_ms` after it fell due.
    pub fn timer_fired(&self, lag_ms: i64) {
        let seconds = lag_ms.max(0) as f64 / 1000.0;
        self.timer_lag
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(seconds);
    }

    /// Counts a reload attempt and whether it was refused.
    pub fn reload(&self, failed: bool) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.reload_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Everything, in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP opsflow_http_requests_total HTTP requests answered, by method, route and status.\n");
        out.push_str("# TYPE opsflow_http_requests_total counter\n");
        for ((method, route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "opsflow_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(method),
                escape(route)
            );
        }
        let processes: Vec<(String, [u64; 3], Histogram)> = self
            .processes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(p, c)| {
                let n = [&c.done, &c.refused, &c.rule_failures].map(|a| a.load(Ordering::Relaxed));
                (p.clone(), n, c.latency.snapshot())
            })
            .collect();
        out.push_str("# HELP opsflow_steps_total Steps (creations and transitions) by process and outcome.\n");
        out.push_str("# TYPE opsflow_steps_total counter\n");
        for (p, [done, refused, _], _) in &processes {
            let p = escape(p);
            let _ = writeln!(
                out,
                "opsflow_steps_total{{process=\"{p}\",outcome=\"done\"}} {done}"
            );
            let _ = writeln!(
                out,
                "opsflow_steps_total{{process=\"{p}\",outcome=\"refused\"}} {refused}"
            );
        }
        out.push_str("# HELP opsflow_rule_failures_total Steps refused because a rule script failed or ran over a limit, by process.\n");
        out.push_str("# TYPE opsflow_rule_failures_total counter\n");
        for (p, [_, _, rule_failures], _) in &processes {
            let _ = writeln!(
                out,
                "opsflow_rule_failures_total{{process=\"{}\"}} {rule_failures}",
                escape(p)
            );
        }
        out.push_str("# HELP opsflow_step_duration_seconds Time from a step's start to its durable commit, by process.\n");
        out.push_str("# TYPE opsflow_step_duration_seconds histogram\n");
        for (p, _, latency) in &processes {
            latency.render(
                &mut out,
                "opsflow_step_duration_seconds",
                &format!("process=\"{}\"", escape(p)),
            );
        }
        out.push_str("# HELP opsflow_timer_lag_seconds How long after falling due timers fired.\n");
        out.push_str("# TYPE opsflow_timer_lag_seconds histogram\n");
        self.timer_lag
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .render(&mut out, "opsflow_timer_lag_seconds", "");
        out.push_str("# HELP opsflow_reloads_total Reloads of the definitions attempted.\n");
        out.push_str("# TYPE opsflow_reloads_total counter\n");
        let _ = writeln!(
            out,
            "opsflow_reloads_total {}",
            self.reloads.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP opsflow_reload_failures_total Reloads refused because the files had problems.\n",
        );
        out.push_str("# TYPE opsflow_reload_failures_total counter\n");
        let _ = writeln!(
            out,
            "opsflow_reload_failures_total {}",
            self.reload_failures.load(Ordering::Relaxed)
        );
        out
    }
}

/// Appends the group-commit writers' counters, one series per writer (none for a store
/// that commits in its callers): `opsflow_commits_total`, `opsflow_commit_steps_total`
/// (divided by the commits: steps per commit) and `opsflow_commit_busy_seconds_total`
/// (its rate near 1 means that writer is the ceiling).
pub fn render_writers(out: &mut String, writers: &[WriterStats]) {
    if writers.is_empty() {
        return;
    }
    /// A counter family: its name, its help and a writer's value.
    type Family = (&'static str, &'static str, fn(&WriterStats) -> String);
    let families: [Family; 3] = [
        (
            "opsflow_commits_total",
            "Transactions committed by each group-commit writer.",
            |w| w.commits.to_string(),
        ),
        (
            "opsflow_commit_steps_total",
            "Steps those transactions carried.",
            |w| w.steps.to_string(),
        ),
        (
            "opsflow_commit_busy_seconds_total",
            "Time each writer spent writing batches.",
            |w| format!("{:.6}", w.busy.as_secs_f64()),
        ),
    ];
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (i, w) in writers.iter().enumerate() {
            let _ = writeln!(out, "{name}{{writer=\"{i}\"}} {}", value(w));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_counted_by_many_threads_at_once_are_all_in_the_totals() {
        let m = Metrics::default();
        std::thread::scope(|s| {
            for t in 0..4 {
                let m = &m;
                s.spawn(move || {
                    for i in 0..1000 {
                        let outcome = if i % 10 == 0 {
                            StepOutcome::Refused
                        } else {
                            StepOutcome::Done
                        };
                        m.step(
                            ["event", "change"][t % 2],
                            outcome,
                            Duration::from_millis(2),
                        );
                    }
                });
            }
        });
        let text = m.render();
        for p in ["event", "change"] {
            for line in [
                format!("opsflow_steps_total{{process=\"{p}\",outcome=\"done\"}} 1800\n"),
                format!("opsflow_steps_total{{process=\"{p}\",outcome=\"refused\"}} 200\n"),
                format!(
                    "opsflow_step_duration_seconds_bucket{{process=\"{p}\",le=\"0.0025\"}} 1800\n"
                ),
                format!("opsflow_step_duration_seconds_sum{{process=\"{p}\"}} 3.6\n"),
            ] {
                assert!(text.contains(&line), "{line} in {text}");
            }
        }
    }

    #[test]
    fn a_histogram_renders_cumulative_buckets_with_sum_and_count() {
        let m = Metrics::default();
        m.step("event", StepOutcome::Done, Duration::from_micros(300));
        m.step("event", StepOutcome::Done, Duration::from_millis(3));
        m.step("event", StepOutcome::RuleFailed, Duration::from_millis(1));
        let text = m.render();
        assert!(
            text.contains(
                "opsflow_step_duration_seconds_bucket{process=\"event\",le=\"0.00025\"} 0"
            )
        );
        assert!(
            text.contains(
                "opsflow_step_duration_seconds_bucket{process=\"event\",le=\"0.0005\"} 1"
            )
        );
        assert!(
            text.contains("opsflow_step_duration_seconds_bucket{process=\"event\",le=\"0.005\"} 2")
        );
        assert!(
            text.contains("opsflow_step_duration_seconds_bucket{process=\"event\",le=\"+Inf\"} 2")
        );
        assert!(text.contains("opsflow_step_duration_seconds_count{process=\"event\"} 2"));
        assert!(text.contains("opsflow_steps_total{process=\"event\",outcome=\"refused\"} 1"));
        assert!(text.contains("opsflow_rule_failures_total{process=\"event\"} 1"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.request("GET", "/a\"b", 200);
        assert!(m.render().contains("route=\"/a\\\"b\""));
    }
}
