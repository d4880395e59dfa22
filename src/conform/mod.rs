//! Conformance checking, an automated internal audit: replays an event log (an external
//! CSV or XES file through a mapping, or the traces a store holds) against a process
//! definition and reports per case whether it fits and its first deviation, with the
//! fitness, the most frequent deviations and per-transition counts.

mod log;
mod mapping;
mod replay;

pub use log::{LogCase, LogEvent, from_traces, read_log};
pub use mapping::{IGNORE, Mapping, Meaning};
pub use replay::{CaseResult, Deviation, Report, TransitionCount, case_traces, replay};

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConformError {
    /// The file could not be read or parsed.
    #[error("{0}")]
    Read(String),
    /// A column the mapping names is not in the log.
    #[error("{file}: no column `{column}` (columns: {})", available.join(", "))]
    Column {
        /// The log.
        file: String,
        /// The column asked for.
        column: String,
        /// The columns there are.
        available: Vec<String>,
    },
    /// A time that does not match the mapping's format.
    #[error("{place}: time `{text}` does not match the format `{format}`")]
    Time {
        /// File and line, or file and case.
        place: String,
        /// The text.
        text: String,
        /// The format.
        format: String,
    },
}

impl Report {
    /// The report in words: totals, the `top` most frequent deviations, per-transition
    /// counts and, with `every_case`, one line per case.
    pub fn to_text(&self, source: &str, top: usize, every_case: bool) -> String {
        let mut out = String::new();
        let pct = |n: usize, of: usize| {
            if of == 0 {
                0.0
            } else {
                100.0 * n as f64 / of as f64
            }
        };
        out.push_str(&format!(
            "{source} against process `{}` ({})\n",
            self.process,
            &self.definition_hash[..self.definition_hash.len().min(12)]
        ));
        out.push_str(&format!(
            "cases: {}   fitting: {}   fitness: {:.2}%\n",
            self.cases,
            self.fitting,
            100.0 * self.fitness
        ));
        out.push_str(&format!(
            "events: {}   ignored by the mapping: {}\n",
            self.events, self.ignored
        ));
        if !self.deviations.is_empty() {
            let total: usize = self.deviations.iter().map(|(_, n)| n).sum();
            out.push_str(&format!(
                "\nmost frequent deviations ({} kinds, {total} in all):\n",
                self.deviations.len()
            ));
            for (text, n) in self.deviations.iter().take(top) {
                out.push_str(&format!("{n:>8}  {:>5.1}%  {text}\n", pct(*n, total)));
            }
        }
        out.push_str("\nper transition:             fitting  deviating\n");
        for (t, c) in &self.transitions {
            let name = if c.automatic {
                format!("{t} (automatic)")
            } else {
                t.clone()
            };
            out.push_str(&format!(
                "  {name:<24} {:>8}  {:>9}\n",
                c.fitting, c.deviating
            ));
        }
        if every_case {
            out.push_str("\nper case:\n");
            for c in &self.case_results {
                match (&c.first_deviation, c.at_event) {
                    (None, _) => {
                        out.push_str(&format!("  {}: fits ({} events)\n", c.case, c.events))
                    }
                    (Some(d), Some(at)) => out.push_str(&format!(
                        "  {}: event {at} ({}): {d}\n",
                        c.case,
                        c.activity.as_deref().unwrap_or("")
                    )),
                    (Some(d), None) => out.push_str(&format!("  {}: {d}\n", c.case)),
                }
            }
        }
        out
    }
}
