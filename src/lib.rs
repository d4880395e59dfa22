//! opsflow: a workflow and rules engine for IT service management.
//!
//! Layers, each depending only on those above it:
//! [`definition`] (YAML → checked model → state graph) → [`rules`] (sandboxed Rhai) →
//! [`engine`] (create instances, fire transitions) → [`store`] (SQLite) →
//! [`api`] and [`cli`] (thin adapters).

pub mod api;
pub mod cli;
pub mod clock;
pub mod conform;
pub mod definition;
pub mod engine;
pub mod evidence;
pub mod export;
pub mod kpi;
pub mod metrics;
pub mod reload;
pub mod rules;
pub mod server;
pub mod service_report;
pub mod settings;
pub mod store;
pub(crate) mod stripes;
pub mod tokens;
pub mod webhook;
