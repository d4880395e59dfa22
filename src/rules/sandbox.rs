//! The one Rhai engine: sandbox limits, host functions and the engine clock.

use std::sync::Arc;

use rhai::packages::{Package, StandardPackage};
use rhai::{Engine, module_resolvers::DummyModuleResolver};

use crate::clock::{self, Clock};

/// Limits every script runs under. A script that passes one is stopped and its step refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Operations per call (a loop that never ends stops here).
    pub max_operations: u64,
    /// Depth of nested function calls.
    pub max_call_levels: usize,
    /// Nesting depth of expressions at global level.
    pub max_expr_depth: usize,
    /// Nesting depth of expressions inside functions.
    pub max_function_expr_depth: usize,
    /// Length of any string, in bytes.
    pub max_string_size: usize,
    /// Items in any array.
    pub max_array_size: usize,
    /// Entries in any object map.
    pub max_map_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: 200_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_function_expr_depth: 32,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
        }
    }
}

/// Builds the sandboxed engine: standard language packages only, no module imports, no
/// `eval`, output to the log, every limit set, and time from `clock`.
pub(crate) fn build_engine(clock: Arc<dyn Clock>, limits: Limits) -> Engine {
    let mut engine = Engine::new_raw();
    StandardPackage::new().register_into_engine(&mut engine);
    engine.set_module_resolver(DummyModuleResolver::new());
    engine.disable_symbol("eval");
    engine.set_strict_variables(true);

    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(limits.max_expr_depth, limits.max_function_expr_depth);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);

    engine.on_print(|text| tracing::info!(target: "opsflow::rules", "{text}"));
    engine.on_debug(|text, source, pos| {
        tracing::debug!(target: "opsflow::rules", source = source.unwrap_or(""), %pos, "{text}")
    });

    let c = clock.clone();
    engine.register_fn("now_ms", move || c.now_ms());
    let c = clock;
    engine.register_fn("now", move || clock::format_ms(c.now_ms()));
    engine.register_fn(
        "to_ms",
        |text: &str| -> Result<i64, Box<rhai::EvalAltResult>> {
            clock::parse_ms(text).ok_or_else(|| format!("`{text}` is not an RFC 3339 time").into())
        },
    );
    engine.register_fn("format_time", clock::format_ms);
    engine.register_fn("hours", |n: i64| n * 3_600_000);
    engine.register_fn("minutes", |n: i64| n * 60_000);
    engine.register_fn(
        "duration_ms",
        |text: &str| -> Result<i64, Box<rhai::EvalAltResult>> {
            crate::definition::duration_ms(text)
                .ok_or_else(|| format!("`{text}` is not a duration such as `4h` or `1h30m`").into())
        },
    );
    engine
}
