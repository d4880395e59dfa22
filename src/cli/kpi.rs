//! `opsflow kpi`: the KPIs of `kpis/` computed from a database's traces.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use crate::clock::SystemClock;
use crate::kpi::{KpiEngine, KpiQuery, KpiReport, load_kpis, report, report_over_traces};

/// Options of `opsflow kpi`.
#[derive(Debug, clap::Args)]
pub(crate) struct KpiArgs {
    /// Only the KPIs of this process.
    #[arg(long)]
    process: Option<String>,
    /// Instances created at or after this RFC 3339 time.
    #[arg(long)]
    from: Option<String>,
    /// Instances created before this RFC 3339 time; facts as they stood then.
    #[arg(long)]
    to: Option<String>,
    /// Group by `month` or a data field (`priority`, `category`, `customer`, `service`,
    /// `group`).
    #[arg(long)]
    group_by: Option<String>,
    /// Print the report as JSON (the same as `--format json`).
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// Output: a table, JSON, Markdown, or a self-contained HTML page with SVG charts.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Compute over an event log (CSV or XES) instead of the database: the cases replayed
    /// through `--mapping` into traces (times, states and transitions; a log has no data).
    #[arg(long, requires = "mapping")]
    log: Option<PathBuf>,
    /// The mapping file of `--log` (see `opsflow conform`); it names the process.
    #[arg(long, requires = "log")]
    mapping: Option<PathBuf>,
    /// Folder of KPI files.
    #[arg(long, env = "OPSFLOW_KPIS", default_value = "kpis")]
    kpis: PathBuf,
    #[command(flatten)]
    source: super::sources::SourceArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
    Md,
    Html,
}

pub(crate) async fn run(args: KpiArgs) -> anyhow::Result<ExitCode> {
    let query = KpiQuery {
        process: args.process.clone(),
        from: super::time_arg("from", args.from.as_ref())?,
        to: super::time_arg("to", args.to.as_ref())?,
        group_by: args.group_by.clone(),
        ..KpiQuery::default()
    };
    let engine = KpiEngine::new(Arc::new(SystemClock));
    let sources = args.source.sources();
    let catalog = super::load_catalog(&sources, &super::rule_engine())?;
    let set = load_kpis(&args.kpis, &engine, &catalog).map_err(|e| {
        super::print_definition_errors(&e.0);
        anyhow::anyhow!("{} problem(s) in the KPI files", e.0.len())
    })?;
    let r = match (&args.log, &args.mapping) {
        (Some(log), Some(mapping_file)) => {
            let file = mapping_file.display().to_string();
            let yaml = std::fs::read_to_string(mapping_file)
                .with_context(|| format!("cannot read {file}"))?;
            let names: Vec<&str> = catalog.iter().map(|l| l.definition.id.as_str()).collect();
            let (mapping, def) = crate::conform::Mapping::parse(
                &file,
                &yaml,
                |p| catalog.get(p).map(|l| &l.definition),
                &names,
            )
            .map_err(|errors| {
                super::print_definition_errors(&errors);
                anyhow::anyhow!("{} problem(s) in {file}", errors.len())
            })?;
            let cases = crate::conform::read_log(log, &mapping)?;
            let traces = crate::conform::case_traces(def, &mapping, &cases);
            let query = KpiQuery {
                process: Some(def.id.clone()),
                ..query
            };
            report_over_traces(&engine, &set, &query, &def.id, traces, Some(def))?
        }
        _ => {
            let store = args.source.store().await?;
            report(&store, &catalog, &engine, &set, &query).await?
        }
    };
    match if args.json { Format::Json } else { args.format } {
        Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        Format::Text => print!("{}", render(&r)),
        Format::Md => print!("{}", crate::kpi::markdown(&r)),
        Format::Html => print!("{}", crate::kpi::html(&r)),
    }
    Ok(ExitCode::SUCCESS)
}

fn number(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v}"))
}

/// The report as a table: one line per KPI (and per group under it).
pub(crate) fn render(r: &KpiReport) -> String {
    let mut out = String::new();
    let period = crate::kpi::period(r);
    let _ = writeln!(
        out,
        "KPIs, {period}: {} instance(s); KPI files {}",
        r.instances,
        r.kpi_hash.get(..12).unwrap_or_default()
    );
    for k in &r.kpis {
        let unit = k.unit.as_deref().unwrap_or("");
        let target = k
            .target
            .map_or(String::new(), |t| format!("target {} {}", t.op, t.value));
        let _ = writeln!(
            out,
            "  {:<28} {:>10} {:<8} {:<7} n={:<6} {:<14} {}",
            k.name,
            number(k.figure.value),
            unit,
            k.figure.verdict,
            k.figure.count,
            target,
            k.title.as_deref().unwrap_or("")
        );
        for g in &k.groups {
            let _ = writeln!(
                out,
                "    {:<26} {:>10} {:<8} {:<7} n={}",
                g.key,
                number(g.figure.value),
                unit,
                g.figure.verdict,
                g.figure.count
            );
        }
        if k.failures > 0 {
            let _ = writeln!(
                out,
                "    {} instance(s) left out: {}",
                k.failures,
                k.first_failure.as_deref().unwrap_or("")
            );
        }
    }
    out
}
