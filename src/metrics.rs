//! What the server counts, exposed at `/metrics` in the Prometheus text format: requests
//! by route and status, steps and rule failures by process with a latency histogram, how
//! late timers fire, and reloads.
//!
//! One `Metrics` belongs to one engine, so that two servers in one process (as in the
//! tests) count apart. Steps and requests are counted per thread and summed when read;
//! the rarer counts take a short lock or an atomic add.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::WriterStats;
use crate::stripes::Stripes;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
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

/// The steps of one process a stripe counted.
#[derive(Debug, Clone, Default)]
struct StepCounts {
    done: u64,
    refused: u64,
    rule_failures: u64,
    /// Done steps at or below each latency bound (not cumulative).
    latency: [u64; LATENCY_BUCKETS.len()],
    /// Done steps' latencies summed, in ns (whole numbers add up exactly).
    latency_ns: u64,
}

impl StepCounts {
    fn count(&mut self, outcome: StepOutcome, elapsed: Duration) {
        match outcome {
            StepOutcome::Done => {
                self.done += 1;
                let seconds = elapsed.as_secs_f64();
                if let Some(i) = LATENCY_BUCKETS.iter().position(|b| seconds <= *b) {
                    self.latency[i] += 1;
                }
                let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
                self.latency_ns = self.latency_ns.saturating_add(ns);
            }
            StepOutcome::RuleFailed => {
                self.refused += 1;
                self.rule_failures += 1;
            }
            StepOutcome::Refused => self.refused += 1,
        }
    }

    fn add(&mut self, other: &StepCounts) {
        self.done += other.done;
        self.refused += other.refused;
        self.rule_failures += other.rule_failures;
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a += b;
        }
        self.latency_ns = self.latency_ns.saturating_add(other.latency_ns);
    }

    fn histogram(&self) -> Histogram {
        Histogram {
            bounds: &LATENCY_BUCKETS,
            counts: self.latency.to_vec(),
            sum: self.latency_ns as f64 / 1e9,
            count: self.done,
        }
    }
}

/// Requests by method, route and status.
type RequestCounts = BTreeMap<String, BTreeMap<String, BTreeMap<u16, u64>>>;

/// What one stripe counted.
#[derive(Debug, Default)]
struct Counts {
    steps: BTreeMap<String, StepCounts>,
    requests: RequestCounts,
}

/// The entry of `key` in `map`, made empty if missing (a key is copied only then).
fn entry<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("the entry was just made")
}

/// The counters of one server.
///
/// Steps and requests are counted in stripes, one per thread (see [`Stripes`]): every step
/// and request of every client counts, and a lock or counter shared by all threads made
/// them write to one cache line in turn. `/metrics` adds the stripes up.
#[derive(Debug)]
pub struct Metrics {
    counts: Stripes<Mutex<Counts>>,
    timer_lag: Mutex<Histogram>,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            counts: Stripes::default(),
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// Counts an HTTP request: its method, its route pattern (never the path itself, so
    /// ids do not make new series) and its status.
    pub fn request(&self, method: &str, route: &str, status: u16) {
        let mut counts = lock(self.counts.mine());
        let routes = entry(&mut counts.requests, method);
        *entry(routes, route).entry(status).or_insert(0) += 1;
    }

    /// Counts a step (creation or transition, by a caller or a timer) of `process` that
    /// took `elapsed` from its start to its answer.
    pub fn step(&self, process: &str, outcome: StepOutcome, elapsed: Duration) {
        let mut counts = lock(self.counts.mine());
        entry(&mut counts.steps, process).count(outcome, elapsed);
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
        let mut requests = RequestCounts::new();
        let mut steps: BTreeMap<String, StepCounts> = BTreeMap::new();
        for stripe in self.counts.iter() {
            let counts = lock(stripe);
            for (method, routes) in &counts.requests {
                for (route, statuses) in routes {
                    let sum = entry(entry(&mut requests, method), route);
                    for (status, n) in statuses {
                        *sum.entry(*status).or_insert(0) += n;
                    }
                }
            }
            for (process, c) in &counts.steps {
                entry(&mut steps, process).add(c);
            }
        }
        for (method, routes) in &requests {
            for (route, statuses) in routes {
                for (status, n) in statuses {
                    let _ = writeln!(
                        out,
                        "opsflow_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                        escape(method),
                        escape(route)
                    );
                }
            }
        }
        let processes: Vec<(&String, [u64; 3], Histogram)> = steps
            .iter()
            .map(|(p, c)| (p, [c.done, c.refused, c.rule_failures], c.histogram()))
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
