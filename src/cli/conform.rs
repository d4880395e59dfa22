//! `opsflow conform`: replays an event log against a process and reports how well it fits.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{print_definition_errors, redact, rule_engine};
use crate::conform::{Mapping, from_traces, read_log, replay};
use crate::engine::{AuditQuery, Catalog};

/// Where the log comes from and how the report is written.
#[derive(Debug, clap::Args)]
pub(super) struct ConformArgs {
    /// An event log: CSV, or XES (`.xes`, `.xes.gz`); needs --mapping.
    #[arg(long, conflicts_with = "db", requires = "mapping")]
    log: Option<PathBuf>,
    /// The mapping file of the log: columns, time format, activities → transitions.
    #[arg(long)]
    mapping: Option<PathBuf>,
    /// Replay the traces a database holds instead (needs --process).
    #[arg(long, requires = "process")]
    db: Option<String>,
    /// The process whose stored traces are replayed (with --db).
    #[arg(long)]
    process: Option<String>,
    /// Folder of process files.
    #[arg(long, env = "OPSFLOW_PROCESSES", default_value = "processes")]
    processes: PathBuf,
    /// Folder of rule modules.
    #[arg(long, env = "OPSFLOW_RULES", default_value = "rules")]
    rules: PathBuf,
    /// Output: words, or the whole report as JSON.
    #[arg(long, value_enum, default_value = "text")]
    format: ReportFormat,
    /// How many of the most frequent deviations to list (text).
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// List every case with its first deviation (text).
    #[arg(long)]
    cases: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

pub(super) async fn run(args: ConformArgs) -> anyhow::Result<ExitCode> {
    let catalog = match Catalog::load(
        &rule_engine(),
        std::slice::from_ref(&args.processes),
        &args.rules,
    ) {
        Ok(c) => c,
        Err(errors) => {
            print_definition_errors(&errors);
            return Ok(ExitCode::FAILURE);
        }
    };
    let names: Vec<&str> = catalog.iter().map(|l| l.definition.id.as_str()).collect();
    let (source, report) = match (&args.log, &args.db) {
        (Some(log), _) => {
            let Some(mapping_file) = &args.mapping else {
                anyhow::bail!("--log needs --mapping");
            };
            let file = mapping_file.display().to_string();
            let yaml = std::fs::read_to_string(mapping_file)
                .with_context(|| format!("cannot read {file}"))?;
            let (mapping, def) = match Mapping::parse(
                &file,
                &yaml,
                |p| catalog.get(p).map(|l| &l.definition),
                &names,
            ) {
                Ok(m) => m,
                Err(errors) => {
                    print_definition_errors(&errors);
                    return Ok(ExitCode::FAILURE);
                }
            };
            let cases = read_log(log, &mapping)?;
            (log.display().to_string(), replay(def, &mapping, &cases))
        }
        (None, Some(db)) => {
            let process = args.process.clone().unwrap_or_default();
            let Some(loaded) = catalog.get(&process) else {
                anyhow::bail!(
                    "unknown process `{process}` (processes: {})",
                    names.join(", ")
                );
            };
            let store = crate::server::open_store(db)
                .await
                .with_context(|| format!("cannot open {}", redact(db)))?;
            let query = AuditQuery {
                process: Some(process.clone()),
                ..AuditQuery::default()
            };
            let traces = crate::engine::cases(store.as_ref(), &query)
                .await
                .with_context(|| format!("cannot read {}", redact(db)))?;
            let def = &loaded.definition;
            (
                redact(db),
                replay(def, &Mapping::identity(def), &from_traces(&traces)),
            )
        }
        (None, None) => anyhow::bail!(
            "give an event log (--log FILE --mapping FILE) or a database (--db URL --process NAME)"
        ),
    };
    match args.format {
        ReportFormat::Text => print!("{}", report.to_text(&source, args.top, args.cases)),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}
