//! Rules: the sandboxed Rhai engine, compiled scripts per definition, and their evaluation.
//!
//! Inline scripts see the variables `data`, `input`, `state`, `actor`, `roles`, `instance`,
//! `tables` and `process`; rule functions receive the same names as one map argument
//! (`fn classify(ctx) { ctx.data.impact ... }`). Host functions: `now()`, `now_ms()`,
//! `to_ms(text)`, `format_time(ms)`, `hours(n)`, `minutes(n)`, `duration_ms("1h30m")`.

mod compiled;
mod decision;
mod error;
mod reads;
mod sandbox;

pub(crate) use compiled::to_dynamic;
pub use compiled::{CompiledRules, Context, RuleEngine};
pub use decision::RuleDecision;
pub use error::{RuleError, RuleFailure};
pub use sandbox::Limits;
pub(crate) use sandbox::build_engine;

/// A context for the rule tests: instance `i` of process `t` in state `a`, with `data` as
/// both its data and the step's input.
#[cfg(test)]
fn test_context(data: &serde_json::Map<String, serde_json::Value>) -> Context<'_> {
    Context {
        instance_id: "i",
        process: "t",
        state: "a",
        actor: "x",
        roles: &[],
        data,
        input: data,
        links: &serde_json::Value::Null,
        lookups: &serde_json::Value::Null,
    }
}

#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod reads_tests;
#[cfg(test)]
mod tables_tests;
