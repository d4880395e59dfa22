//! Integration tests: the real server over HTTP on loopback, the shipped process files and
//! a real SQLite file per test.

// Helpers are shared by the test modules of this one binary.
#![allow(unreachable_pub)]

mod bundle;
mod change;
mod cli;
mod config;
mod conform;
mod errors;
mod evidence;
mod helpers;
mod idempotency;
mod kpi;
mod lifecycle;
mod migration;
mod nodes;
mod operations;
mod problem;
mod process_mining;
mod processes;
mod release;
mod reload;
mod report;
mod rules;
mod schema;
mod service_level;
mod service_report;
mod sla;
mod store_contract;
mod timers;
mod tokens;
mod visibility;
