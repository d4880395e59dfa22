//! `opsflow migrate-instances`: moves running instances of a process to a newer version,
//! as `POST /api/v1/admin/migrations` does; a dry run unless `--apply`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;

use crate::clock::SystemClock;
use crate::engine::{ADMIN_ROLE, Actor, Engine, MigrationReport, MigrationRequest, Verdict};

/// Options of `opsflow migrate-instances`.
#[derive(Debug, clap::Args)]
pub(crate) struct MigrateArgs {
    /// The process whose instances move.
    #[arg(long)]
    process: String,
    /// The version they move to (default: the one in the process files, stored first if new).
    #[arg(long)]
    to_version: Option<i64>,
    /// Only instances of this version (default: every older one).
    #[arg(long)]
    from_version: Option<i64>,
    /// A state of the old version and the state of the target it becomes: `OLD=NEW`
    /// (repeat for several).
    #[arg(long = "map", value_name = "OLD=NEW")]
    map: Vec<String>,
    /// Only this instance (repeat for several).
    #[arg(long = "instance", value_name = "ID")]
    instances: Vec<String>,
    /// Move the instances that are fine; without it nothing is written.
    #[arg(long)]
    apply: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    source: super::sources::SourceArgs,
}

pub(crate) async fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let mut states = std::collections::BTreeMap::new();
    for m in &args.map {
        let Some((old, new)) = m.split_once('=') else {
            bail!("--map `{m}`: expected OLD=NEW");
        };
        states.insert(old.trim().to_owned(), new.trim().to_owned());
    }
    let sources = args.source.sources();
    let rules = Arc::new(super::rule_engine());
    let catalog = super::load_catalog(&sources, &rules)?;
    let store = args.source.store().await?;
    let engine = Engine::new(catalog, rules, store, Arc::new(SystemClock));
    engine.register_definitions().await?;
    let actor = Actor::new(super::operator(), [ADMIN_ROLE]);
    let request = MigrationRequest {
        process: args.process.clone(),
        to_version: args.to_version,
        from_version: args.from_version,
        states,
        instances: args.instances.clone(),
        apply: args.apply,
    };
    let report = engine.migrate_instances(&actor, &request).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    let failed = report
        .instances
        .iter()
        .any(|i| i.verdict == Verdict::Failed);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn render(r: &MigrationReport) -> String {
    let mut out = format!(
        "{}: {} running instance(s) to version {}{}\n",
        r.process,
        r.instances.len(),
        r.to_version,
        if r.applied {
            ""
        } else {
            " (dry run: nothing written; add --apply)"
        }
    );
    for i in &r.instances {
        let from = i.from_version.map_or("v?".into(), |n| format!("v{n}"));
        let to = i.to_state.as_deref().unwrap_or("?");
        let done = if i.migrated { " (moved)" } else { "" };
        let verdict = i.verdict.as_str();
        out.push_str(&format!(
            "  {}  {from} {} -> {to}  {verdict}{done}\n",
            i.id, i.from_state
        ));
        for p in &i.problems {
            out.push_str(&format!("      {p}\n"));
        }
    }
    let counts: Vec<String> = r.counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if !counts.is_empty() {
        out.push_str(&format!("{}\n", counts.join(", ")));
    }
    out
}
