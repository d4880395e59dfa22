//! The `opsflow` command line (clap): thin adapters over the library.

mod bench;
mod config_file;
mod conform;
mod kpi;
mod migrate;
mod report;
mod sources;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::clock::SystemClock;
use crate::definition::{GraphFormat, render_markdown};
use crate::engine::{Catalog, load_calendars};
use crate::rules::{Limits, RuleEngine};
use crate::server::{Server, StartError};
use crate::settings::Settings;

/// `--format` of `opsflow graph`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum GraphArg {
    /// Mermaid `stateDiagram-v2`.
    Mermaid,
    /// Graphviz `digraph`.
    Dot,
}

impl From<GraphArg> for GraphFormat {
    fn from(arg: GraphArg) -> Self {
        match arg {
            GraphArg::Mermaid => GraphFormat::Mermaid,
            GraphArg::Dot => GraphFormat::Dot,
        }
    }
}

/// opsflow: a workflow and rules engine for IT service management.
#[derive(Debug, Parser)]
#[command(name = "opsflow", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve(Settings),
    /// Check process files; prints `file:line:col: message` for each problem, exit 1 if any.
    Validate {
        /// Process files or folders (default: processes).
        paths: Vec<PathBuf>,
        /// Folder of rule modules.
        #[arg(long, env = "OPSFLOW_RULES", default_value = "rules")]
        rules: PathBuf,
        /// Folder of business calendars (checked too when it exists).
        #[arg(long, env = "OPSFLOW_CALENDARS", default_value = "calendars")]
        calendars: PathBuf,
    },
    /// Print a process's state graph.
    Graph {
        /// Process id (looked up in --processes) or a process file.
        process: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphArg,
        /// Folder of process files.
        #[arg(long, env = "OPSFLOW_PROCESSES", default_value = "processes")]
        processes: PathBuf,
        /// Folder of rule modules.
        #[arg(long, env = "OPSFLOW_RULES", default_value = "rules")]
        rules: PathBuf,
    },
    /// Print a Markdown page of every process: diagram, states and transitions.
    Doc {
        /// Folder of process files.
        #[arg(long, env = "OPSFLOW_PROCESSES", default_value = "processes")]
        processes: PathBuf,
        /// Folder of rule modules.
        #[arg(long, env = "OPSFLOW_RULES", default_value = "rules")]
        rules: PathBuf,
    },
    /// Compute the KPIs of `kpis/` from a database's traces, for a period, optionally
    /// grouped; each with its target and a met/missed verdict.
    Kpi(kpi::KpiArgs),
    /// Show a service report with its KPI snapshot (SLA attainment table, KPIs, charts) as
    /// Markdown, HTML or JSON, or compute the snapshot again to check it (`--verify`).
    Report(report::ReportArgs),
    /// Show what changed between two versions of a process file: roles, fields, states,
    /// transitions, approvals, timers, tables and rule modules added (+), removed (-) or
    /// changed (~). Exit 0 when they are the same, 1 when they differ, 2 on a problem.
    Diff {
        /// The old version's file.
        old: PathBuf,
        /// The new version's file.
        new: PathBuf,
        /// Folder of rule modules both use.
        #[arg(long, env = "OPSFLOW_RULES", default_value = "rules")]
        rules: PathBuf,
        /// Print the changes as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of process files, for editors with a YAML language server
    /// (the shipped files name `schemas/process.schema.json`, the same text).
    Schema,
    /// Move running instances of a process to a newer version, with a state mapping: a
    /// dry run listing what would happen to each, or with `--apply` one transaction per
    /// instance with a `migration` trace record.
    MigrateInstances(migrate::MigrateArgs),
    /// Make, list or revoke bearer tokens stored in the database (hashed).
    Token(token::TokenArgs),
    /// Create the database if needed and apply pending migrations.
    Migrate {
        /// Database URL.
        #[arg(long, env = "OPSFLOW_DB", default_value = "sqlite://opsflow.db")]
        db: String,
    },
    /// Measure transitions per second: in memory, on SQLite, over HTTP, and raw SQLite.
    Bench(bench::BenchArgs),
    /// Write the traces of a process or a period as an event log (JSON Lines, CSV or XES).
    Export {
        /// Database URL.
        #[arg(long, env = "OPSFLOW_DB", default_value = "sqlite://opsflow.db")]
        db: String,
        /// Only this instance.
        #[arg(long)]
        instance: Option<String>,
        /// Only instances of this process.
        #[arg(long)]
        process: Option<String>,
        /// Only records at or after this RFC 3339 time.
        #[arg(long)]
        from: Option<String>,
        /// Only records before this RFC 3339 time.
        #[arg(long)]
        to: Option<String>,
        /// Output format; `bundle` is evidence that `opsflow verify BUNDLE` checks alone.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: crate::export::ExportFormat,
        /// Ed25519 key file that signs a bundle (see `opsflow keygen`).
        #[arg(long, env = "OPSFLOW_EVIDENCE_KEY")]
        key: Option<PathBuf>,
    },
    /// Replay an event log (CSV or XES with a mapping file, or the traces of a database)
    /// against a process: fitness, the most frequent deviations, per-transition counts,
    /// and each case's first deviation.
    Conform(conform::ConformArgs),
    /// Make an Ed25519 key for signing evidence bundles: writes the secret to FILE (never
    /// over an existing one) and prints the public key, which verifiers are given.
    Keygen {
        /// Where to write the secret key.
        file: PathBuf,
    },
    /// Take a checkpoint now: chain the heads of the instances' traces changed since the last
    /// one, so that deleting a whole instance is detected.
    Checkpoint {
        /// Database URL.
        #[arg(long, env = "OPSFLOW_DB", default_value = "sqlite://opsflow.db")]
        db: String,
    },
    /// Recompute every instance's trace hash chain in a database, or everything in an
    /// evidence bundle; names each record changed, missing or reordered, a definition not
    /// matching its sources, a bad signature; exit 1 if any.
    Verify {
        /// An evidence bundle to check (instead of the database).
        bundle: Option<PathBuf>,
        /// Database URL.
        #[arg(long, env = "OPSFLOW_DB", default_value = "sqlite://opsflow.db")]
        db: String,
        /// The public key (64 hex digits, or a file holding them) that must have signed the
        /// bundle.
        #[arg(long)]
        public_key: Option<String>,
    },
}

/// Runs the command line; the return value is the process's exit code.
pub fn main() -> ExitCode {
    let args = match config_file::with_file(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("opsflow: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(args);
    init_logging(
        match &cli.command {
            Command::Serve(settings) => settings.log_format,
            _ => crate::settings::LogFormat::Text,
        },
        // The bench's servers answer tens of thousands of requests: their access lines
        // would bury its report (RUST_LOG=info brings them back).
        if matches!(cli.command, Command::Bench(_)) {
            "info,opsflow::access=warn,sqlx::postgres::notice=warn"
        } else {
            "info,sqlx::postgres::notice=warn"
        },
    );
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(settings) = &cli.command {
        builder.worker_threads(crate::settings::worker_threads(
            settings.worker_threads,
            &settings.db,
            cores(),
        ));
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("opsflow: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("opsflow: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The cores this process may run on.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Logs go to stderr at `info` unless `RUST_LOG` says otherwise; PostgreSQL's notices
/// (such as "relation already exists, skipping" while migrating) only from `warn`. As
/// JSON, each line carries the spans it was logged in (a request's id, method, route).
fn init_logging(format: crate::settings::LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        crate::settings::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        crate::settings::LogFormat::Text => builder.try_init(),
    };
}

pub(crate) fn rule_engine() -> RuleEngine {
    RuleEngine::new(Arc::new(SystemClock), Limits::default())
}

/// `opsflow diff`: both files are read with the same rule modules.
fn diff_files(
    old: &std::path::Path,
    new: &std::path::Path,
    rules: &std::path::Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut errors = Vec::new();
    let library = crate::engine::read_rule_library(rules, &mut errors);
    let mut read =
        |path: &std::path::Path| -> anyhow::Result<Option<crate::definition::Definition>> {
            let file = path.display().to_string();
            let yaml =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {file}"))?;
            match crate::definition::parse(&file, &yaml, &library) {
                Ok(d) => Ok(Some(d)),
                Err(mut e) => {
                    errors.append(&mut e);
                    Ok(None)
                }
            }
        };
    let (old, new) = match (read(old), read(new)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(e), _) | (_, Err(e)) => {
            // Exit 1 means "they differ": trouble is 2, as for diff(1).
            eprintln!("opsflow: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let (Some(old), Some(new)) = (old, new) else {
        print_definition_errors(&errors);
        eprintln!("{} problem(s) found", errors.len());
        return Ok(ExitCode::from(2));
    };
    let changes = crate::definition::diff(&old, &new);
    if json {
        println!("{}", serde_json::to_string_pretty(&changes)?);
    } else if changes.is_empty() {
        println!("no differences");
    } else {
        print!("{}", crate::definition::render_diff(&changes));
    }
    Ok(if changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The process, rule and calendar files read and checked with `rules`; problems are printed
/// and become one error.
pub(crate) fn load_catalog(
    sources: &crate::reload::Sources,
    rules: &RuleEngine,
) -> anyhow::Result<Catalog> {
    sources.load(rules).map_err(|errors| {
        print_definition_errors(&errors);
        anyhow::anyhow!(
            "{} problem(s) in the process definitions; run `opsflow validate`",
            errors.len()
        )
    })
}

/// An RFC 3339 option (`--from`, `--to`) as ms.
pub(crate) fn time_arg(name: &str, t: Option<&String>) -> anyhow::Result<Option<i64>> {
    t.map(|t| {
        crate::clock::parse_ms(t).with_context(|| {
            format!("--{name} must be an RFC 3339 time such as 2026-11-01T00:00:00Z; got `{t}`")
        })
    })
    .transpose()
}

fn print_definition_errors(errors: &[crate::definition::DefinitionError]) {
    for e in errors {
        eprintln!("{e}");
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(settings) => serve(settings).await,
        Command::Validate {
            paths,
            rules,
            calendars,
        } => {
            let paths = if paths.is_empty() {
                vec![PathBuf::from("processes")]
            } else {
                paths
            };
            let loaded = Catalog::load(&rule_engine(), &paths, &rules);
            let calendars = load_calendars(&calendars);
            let checked = match (loaded, calendars) {
                (Ok(catalog), Ok(calendars)) => catalog
                    .with_calendars(calendars.clone())
                    .map(|catalog| (catalog, calendars)),
                (loaded, calendars) => Err(loaded
                    .err()
                    .into_iter()
                    .chain(calendars.err())
                    .flatten()
                    .collect()),
            };
            match checked {
                Ok((catalog, calendars)) => {
                    let warnings: Vec<_> = catalog
                        .iter()
                        .flat_map(|l| crate::definition::warnings(&l.definition))
                        .collect();
                    print_definition_errors(&warnings);
                    for l in catalog.iter() {
                        println!(
                            "{}: ok: process `{}` ({} states, {} transitions), hash {}",
                            l.definition.source.file,
                            l.definition.id,
                            l.definition.states.len(),
                            l.definition.transitions.len(),
                            &l.definition.hash[..12]
                        );
                    }
                    for c in calendars.values() {
                        println!("ok: calendar `{}` ({})", c.id, c.time_zone);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    print_definition_errors(&errors);
                    eprintln!("{} problem(s) found", errors.len());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Graph {
            process,
            format,
            processes,
            rules,
        } => {
            let as_file = PathBuf::from(&process);
            let source = if as_file.is_file() {
                as_file
            } else {
                processes
            };
            let catalog = match Catalog::load(&rule_engine(), &[source], &rules) {
                Ok(c) => c,
                Err(errors) => {
                    print_definition_errors(&errors);
                    return Ok(ExitCode::FAILURE);
                }
            };
            let loaded = catalog
                .get(&process)
                .or_else(|| {
                    catalog
                        .iter()
                        .next()
                        .filter(|_| PathBuf::from(&process).is_file())
                })
                .with_context(|| format!("unknown process `{process}`"))?;
            print!("{}", loaded.definition.render_graph(format.into()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Doc { processes, rules } => {
            match Catalog::load(&rule_engine(), &[processes], &rules) {
                Ok(catalog) => {
                    print!("{}", render_markdown(catalog.iter().map(|l| &l.definition)));
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    print_definition_errors(&errors);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::MigrateInstances(args) => migrate::run(args).await,
        Command::Kpi(args) => kpi::run(args).await,
        Command::Report(args) => report::run(args).await,
        Command::Diff {
            old,
            new,
            rules,
            json,
        } => diff_files(&old, &new, &rules, json),
        Command::Schema => {
            let schema = crate::definition::process_schema();
            match serde_json::to_string_pretty(&schema) {
                Ok(text) => {
                    println!("{text}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Migrate { db } => {
            let applied = crate::server::migrate(&db)
                .await
                .with_context(|| format!("cannot migrate {}", redact(&db)))?;
            println!(
                "{}: {applied} migration(s) applied, schema up to date",
                redact(&db)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => bench::run(args).await,
        Command::Token(args) => token::run(args).await,
        Command::Export {
            db,
            instance,
            process,
            from,
            to,
            format,
            key,
        } => {
            let time = |name: &str, t: Option<String>| time_arg(name, t.as_ref());
            let key = key
                .map(|k| crate::evidence::read_signing_key(&k))
                .transpose()?;
            let query = crate::engine::AuditQuery {
                instance,
                process,
                from: time("from", from)?,
                to: time("to", to)?,
            };
            let store = crate::server::open_store(&db)
                .await
                .with_context(|| format!("cannot open {}", redact(&db)))?;
            let cases = crate::engine::cases(store.as_ref(), &query)
                .await
                .with_context(|| format!("cannot read {}", redact(&db)))?;
            let now = chrono::Utc::now().timestamp_millis();
            let text =
                crate::export::render(store.as_ref(), &query, &cases, format, now, key.as_ref())
                    .await
                    .with_context(|| format!("cannot read {}", redact(&db)))?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Conform(args) => conform::run(args).await,
        Command::Keygen { file } => {
            let key = crate::evidence::generate_key(&file)?;
            println!("{}", crate::evidence::public_hex(&key));
            Ok(ExitCode::SUCCESS)
        }
        Command::Checkpoint { db } => {
            let store = crate::server::open_store(&db)
                .await
                .with_context(|| format!("cannot open {}", redact(&db)))?;
            let now = chrono::Utc::now().timestamp_millis();
            match store
                .write_checkpoint(now)
                .await
                .with_context(|| format!("cannot take a checkpoint in {}", redact(&db)))?
            {
                Some(c) => println!(
                    "checkpoint {} of {} instance(s), hash {}",
                    c.seq,
                    c.entries.len(),
                    c.hash
                ),
                None => println!("nothing changed since the last checkpoint"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            bundle: Some(path),
            public_key,
            ..
        } => verify_bundle(&path, public_key.as_deref()),
        Command::Verify { db, .. } => {
            let store = crate::server::open_store(&db)
                .await
                .with_context(|| format!("cannot open {}", redact(&db)))?;
            let report = crate::store::verify_store(store.as_ref())
                .await
                .with_context(|| format!("cannot read {}", redact(&db)))?;
            for line in &report.breaks {
                println!("{line}");
            }
            if report.breaks.is_empty() {
                println!(
                    "{}: {} instance(s), {} trace record(s), {} checkpoint(s): every chain holds",
                    redact(&db),
                    report.instances,
                    report.records,
                    report.checkpoints
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "{}: {} problem(s) in {} instance(s), {} trace record(s)",
                    redact(&db),
                    report.breaks.len(),
                    report.instances,
                    report.records
                );
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// `opsflow verify BUNDLE`: prints each problem, or one line saying what holds.
fn verify_bundle(path: &std::path::Path, public_key: Option<&str>) -> anyhow::Result<ExitCode> {
    let expected = public_key
        .map(crate::evidence::read_public_key)
        .transpose()?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bundle: crate::evidence::Bundle = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an evidence bundle", path.display()))?;
    let report = bundle.verify(expected.as_ref());
    for line in &report.problems {
        println!("{line}");
    }
    if !report.problems.is_empty() {
        eprintln!(
            "{}: {} problem(s) in {} instance(s), {} trace record(s)",
            path.display(),
            report.problems.len(),
            report.instances,
            report.records
        );
        return Ok(ExitCode::FAILURE);
    }
    let signed = match &report.signed_by {
        Some(k) if expected.is_some() => format!("signed by the expected key {k}"),
        Some(k) => format!("signed by key {k} (pass --public-key to require a signer)"),
        None => "not signed".to_owned(),
    };
    println!(
        "{}: {} instance(s), {} trace record(s), {} definition(s): every hash holds; {signed}",
        path.display(),
        report.instances,
        report.records,
        report.definitions
    );
    Ok(ExitCode::SUCCESS)
}

async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    let server = match Server::build(&settings).await {
        Ok(s) => s,
        Err(StartError::Definitions(errors)) => {
            print_definition_errors(&errors);
            anyhow::bail!(
                "{} problem(s) in process definitions; not starting",
                errors.len()
            );
        }
        Err(e) => return Err(e.into()),
    };
    let processes: Vec<String> = server
        .engine()
        .catalog()
        .iter()
        .map(|l| l.definition.id.clone())
        .collect();
    tracing::info!(addr = %server.addr(), db = %redact(&settings.db), processes = ?processes, "opsflow listening");
    eprintln!(
        "opsflow listening on http://{} ({})",
        server.addr(),
        processes.join(", ")
    );
    server
        .run_until(shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("opsflow stopped");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// A database URL without its password, for messages.
/// Who the trace names: the operating system user running the command.
fn operator() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
