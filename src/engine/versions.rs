//! Definition versions: the set of definitions being served, which a reload replaces in
//! one swap, and every version an instance was pinned to, stored with its number so that
//! instances keep running under the version they started with.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::Engine;
use super::catalog::{Catalog, Loaded};
use super::error::EngineError;
use crate::definition::{Definition, Source};
use crate::store::{DefinitionVersion, StoreError, StoredDefinition};

/// A process as a set of definitions put it into service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Installed {
    /// The process.
    pub process: String,
    /// Its version number.
    pub version: i64,
    /// Its content hash.
    pub hash: String,
    /// What became of it: `added`, `changed` or `unchanged`.
    pub change: &'static str,
}

/// What replacing the served set did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Installation {
    /// Every process now served.
    pub processes: Vec<Installed>,
    /// Processes no longer served: their instances still run, none can be started.
    pub removed: Vec<String>,
}

impl Installation {
    /// Some process was added, changed or removed.
    pub fn changed_anything(&self) -> bool {
        !self.removed.is_empty() || self.processes.iter().any(|p| p.change != "unchanged")
    }
}

/// What a step runs under: its instance's definition version and the served set (for the
/// instances it creates and the calendars of its clocks), as of one generation of the
/// engine's definitions. Kept with a remembered instance, so that the next step on it
/// takes neither the served set's lock nor the versions' while nothing was reloaded.
#[derive(Debug)]
pub(super) struct Pinned {
    pub(super) loaded: Arc<Loaded>,
    pub(super) catalog: Arc<Catalog>,
    generation: u64,
}

impl Engine {
    /// What a step on an instance of version `hash` runs under now.
    pub(super) async fn pin(&self, hash: &str) -> Result<Pinned, EngineError> {
        // Read before the set and the version: a reload racing with this leaves an older
        // number with newer definitions, which the next step only looks up again.
        let generation = self.generation.load(Ordering::Acquire);
        let catalog = self.catalog();
        let loaded = self.version(hash).await?;
        Ok(Pinned {
            loaded,
            catalog,
            generation,
        })
    }

    /// `pinned` still holds what a step on an instance of version `hash` would look up.
    pub(super) fn still_pinned(&self, pinned: &Pinned, hash: &str) -> bool {
        pinned.generation == self.generation.load(Ordering::Acquire)
            && pinned.loaded.definition.hash == hash
    }

    /// Counts a change to the served set or the loaded versions, after it was made.
    fn definitions_changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The definitions being served now. A reload may replace them at any moment; a step
    /// holds on to the set it started with.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stores every version of the served set (numbering the new ones), so that
    /// instances pinned to them keep running after the files change.
    pub async fn register_definitions(&self) -> Result<(), EngineError> {
        let catalog = self.catalog();
        for l in catalog.iter() {
            self.store_version(l).await?;
        }
        Ok(())
    }

    /// Serves `catalog` from now on: each of its versions is stored first, then the set
    /// replaces the current one in one swap. Running instances keep their versions; new
    /// instances start under the new ones.
    pub async fn install(&self, catalog: Catalog) -> Result<Installation, EngineError> {
        let old = self.catalog();
        let mut installation = Installation::default();
        for l in catalog.iter() {
            let d = &l.definition;
            let version = self.store_version(l).await?;
            let change = match old.get(&d.id) {
                None => "added",
                Some(o) if o.definition.hash != d.hash => "changed",
                Some(_) => "unchanged",
            };
            installation.processes.push(Installed {
                process: d.id.clone(),
                version,
                hash: d.hash.clone(),
                change,
            });
        }
        installation.removed = old
            .iter()
            .map(|l| l.definition.id.clone())
            .filter(|id| catalog.get(id).is_none())
            .collect();
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(catalog);
        self.definitions_changed();
        Ok(installation)
    }

    /// Stores one version (idempotent), keeps it loaded, and returns its number.
    async fn store_version(&self, l: &Arc<Loaded>) -> Result<i64, EngineError> {
        let d = &l.definition;
        let source = serde_json::to_string(&d.source)
            .map_err(|e| EngineError::Store(StoreError::Corrupt(e.to_string())))?;
        let version = self
            .store
            .save_definition(&StoredDefinition {
                hash: d.hash.clone(),
                process: d.id.clone(),
                source,
            })
            .await?;
        self.versions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(d.hash.clone(), l.clone());
        self.definitions_changed();
        Ok(version)
    }

    /// The number of the stored version `d` is, if it is stored.
    pub async fn version_number(&self, d: &Definition) -> Result<Option<i64>, EngineError> {
        Ok(self
            .versions_of(&d.id)
            .await?
            .into_iter()
            .find(|v| v.hash == d.hash)
            .map(|v| v.version))
    }

    /// Each process served now, with its version number (0 if not stored).
    pub async fn serving(&self) -> Result<Vec<Installed>, EngineError> {
        let catalog = self.catalog();
        let mut serving = Vec::new();
        for l in catalog.iter() {
            let d = &l.definition;
            serving.push(Installed {
                process: d.id.clone(),
                version: self.version_number(d).await?.unwrap_or(0),
                hash: d.hash.clone(),
                change: "unchanged",
            });
        }
        Ok(serving)
    }

    /// Every stored version of a process, by number.
    pub async fn versions_of(&self, process: &str) -> Result<Vec<DefinitionVersion>, EngineError> {
        Ok(self.store.definition_versions(process).await?)
    }

    /// Version `number` of a process, rebuilt from the store if not loaded.
    pub async fn numbered_version(
        &self,
        process: &str,
        number: i64,
    ) -> Result<Option<(DefinitionVersion, Arc<Loaded>)>, EngineError> {
        let versions = self.versions_of(process).await?;
        let Some(v) = versions.into_iter().find(|v| v.version == number) else {
            return Ok(None);
        };
        let loaded = self.version(&v.hash).await?;
        Ok(Some((v, loaded)))
    }

    /// The definition version with this hash: loaded, or rebuilt from the store.
    pub async fn version(&self, hash: &str) -> Result<Arc<Loaded>, EngineError> {
        if let Some(l) = self
            .versions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(hash)
        {
            return Ok(l.clone());
        }
        let stored = self
            .store
            .load_definition(hash)
            .await?
            .ok_or_else(|| EngineError::DefinitionUnavailable(hash.to_owned()))?;
        let source: Source = serde_json::from_str(&stored.source)
            .map_err(|_| EngineError::DefinitionUnavailable(hash.to_owned()))?;
        let loaded = Arc::new(Loaded::from_source(&self.rules, &source).map_err(|errors| {
            tracing::error!(
                hash,
                ?errors,
                "a stored definition version no longer builds"
            );
            EngineError::DefinitionUnavailable(hash.to_owned())
        })?);
        self.versions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hash.to_owned(), loaded.clone());
        self.definitions_changed();
        Ok(loaded)
    }
}
