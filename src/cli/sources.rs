//! The options every command that reads a database with the definition files shares.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::reload::Sources;
use crate::store::Store;

/// Where a command finds the database and the process, rule and calendar files.
#[derive(Debug, clap::Args)]
pub(crate) struct SourceArgs {
    /// Database URL.
    #[arg(long, env = "OPSFLOW_DB", default_value = "sqlite://opsflow.db")]
    pub(crate) db: String,
    /// Folder (or file) of process definitions.
    #[arg(long, env = "OPSFLOW_PROCESSES", default_value = "processes")]
    pub(crate) processes: PathBuf,
    /// Folder of rule modules.
    #[arg(long, env = "OPSFLOW_RULES", default_value = "rules")]
    pub(crate) rules: PathBuf,
    /// Folder of business calendars.
    #[arg(long, env = "OPSFLOW_CALENDARS", default_value = "calendars")]
    pub(crate) calendars: PathBuf,
}

impl SourceArgs {
    /// The definition folders.
    pub(crate) fn sources(&self) -> Sources {
        Sources {
            processes: self.processes.clone(),
            rules: self.rules.clone(),
            calendars: self.calendars.clone(),
        }
    }

    /// The database, migrated.
    pub(crate) async fn store(&self) -> anyhow::Result<Arc<dyn Store>> {
        crate::server::open_store(&self.db)
            .await
            .with_context(|| format!("cannot open {}", super::redact(&self.db)))
    }
}
