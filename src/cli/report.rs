//! `opsflow report`: a service report with its KPI snapshot, as Markdown, HTML or JSON, or
//! the snapshot computed again from the traces (`--verify`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use crate::clock::SystemClock;
use crate::engine::{Actor, Engine};
use crate::kpi::KpiEngine;
use crate::service_report::{html, markdown, show, verify};

/// Options of `opsflow report`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    /// The report instance.
    id: String,
    /// Output: Markdown, a self-contained HTML page with SVG charts, or JSON.
    #[arg(long, value_enum, default_value = "md")]
    format: Format,
    /// Write it to this file instead of standard output.
    #[arg(long, short = 'o')]
    out: Option<PathBuf>,
    /// This snapshot (its hash) instead of the one the report names.
    #[arg(long)]
    snapshot: Option<String>,
    /// Compute the snapshot again from the traces with the KPI files and definition
    /// versions it names, and say whether the figures agree (exit 1 when they do not, or
    /// when the stored snapshot no longer matches its hash).
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    source: super::sources::SourceArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Md,
    Html,
    Json,
}

pub(crate) async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let sources = args.source.sources();
    let rules = Arc::new(super::rule_engine());
    let catalog = super::load_catalog(&sources, &rules)?;
    let store = args.source.store().await?;
    let engine = Engine::new(catalog, rules, store, Arc::new(SystemClock));
    let actor = Actor::new(super::operator(), Vec::<String>::new());
    let snapshot = args.snapshot.as_deref();
    if args.verify {
        let kpi_engine = KpiEngine::new(Arc::new(SystemClock));
        let v = verify(&engine, &kpi_engine, &actor, &args.id, snapshot).await?;
        let text = if args.format == Format::Json {
            serde_json::to_string_pretty(&v)? + "\n"
        } else {
            let mut text = format!(
                "snapshot {}: {}; {}\n",
                v.hash,
                if v.intact {
                    "intact"
                } else {
                    "ALTERED (the body no longer matches its hash)"
                },
                if v.reproduced {
                    "computed again to the same figures"
                } else {
                    "NOT reproduced"
                }
            );
            for d in &v.differences {
                text.push_str(&format!("  differs: {d}\n"));
            }
            text
        };
        write(args.out.as_ref(), &text)?;
        return Ok(if v.intact && v.reproduced {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let view = show(&engine, &actor, &args.id, snapshot).await?;
    let text = match args.format {
        Format::Md => markdown(&view),
        Format::Html => html(&view),
        Format::Json => serde_json::to_string_pretty(&view)? + "\n",
    };
    write(args.out.as_ref(), &text)?;
    Ok(ExitCode::SUCCESS)
}

fn write(out: Option<&PathBuf>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}
