//! Hot reload: the server reads its process files, rule modules and calendars again when
//! they change on disk (checked every poll interval, and only once a change has held still
//! for a whole interval, so an editor's half-written save is not taken) or when an admin
//! asks (`POST /api/v1/admin/reload`).
//!
//! The whole set is validated first. Only a fully valid set replaces the served one, in
//! one swap; a set with any problem is refused with every problem at its file, line and
//! column, and the last good set keeps serving. Instances keep the version they started
//! with either way (see [`crate::engine::Engine::install`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::clock::format_ms;
use crate::definition::DefinitionError;
use crate::engine::load_calendars;
use crate::engine::{ADMIN_ROLE, Actor, Catalog, Engine, EngineError, Installation, Installed};
use crate::rules::RuleEngine;

/// Where a set of definitions is read from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Folder (or file) of process definitions.
    pub processes: PathBuf,
    /// Folder of rule modules.
    pub rules: PathBuf,
    /// Folder of business calendars.
    pub calendars: PathBuf,
}

impl Sources {
    /// Reads and checks the whole set: processes, the rule modules they use, and the
    /// calendars their timers count in. Every problem of every file is returned at once.
    pub fn load(&self, rules: &RuleEngine) -> Result<Catalog, Vec<DefinitionError>> {
        Catalog::load(rules, std::slice::from_ref(&self.processes), &self.rules)
            .and_then(|catalog| catalog.with_calendars(load_calendars(&self.calendars)?))
    }

    /// A digest of every file of the set (names and contents): equal digests, same set.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for (dir, extensions) in [
            (&self.processes, &["yaml", "yml"][..]),
            (&self.rules, &["rhai"][..]),
            (&self.calendars, &["yaml", "yml"][..]),
        ] {
            for path in files(dir, extensions) {
                h.update(path.to_string_lossy().as_bytes());
                h.update([0]);
                match std::fs::read(&path) {
                    Ok(bytes) => h.update(&bytes),
                    Err(e) => h.update(e.to_string().as_bytes()),
                }
                h.update([0]);
            }
        }
        h.finalize().into()
    }
}

/// The files of a folder (or the file itself) with one of `extensions`, sorted.
fn files(path: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
        })
        .collect();
    found.sort();
    found
}

/// What set off a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A file changed on disk.
    Watch,
    /// An admin asked over HTTP.
    Request,
}

/// One reload attempt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// What set it off.
    pub trigger: Trigger,
    /// The set was valid and is served now.
    pub ok: bool,
    /// What it changed, when it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installation: Option<Installation>,
    /// Every problem of the set, when it was refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<DefinitionError>,
    /// Legal but suspicious definitions of an installed set (`file:line:col: warning: ...`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<DefinitionError>,
}

/// Where reloading stands, for `GET /api/v1/admin/reload/status`.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ReloadStatus {
    /// Reloads that replaced the served set.
    pub reloads: u64,
    /// Reloads refused, the set having problems.
    pub failures: u64,
    /// The last attempt, good or bad.
    pub last_attempt: Option<Attempt>,
    /// When the served set was last replaced, RFC 3339 UTC.
    pub last_success_at: Option<String>,
    /// What is served now: each process with its version.
    pub serving: Vec<Installed>,
}

/// Why a reload did not replace the served set.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The set has problems; the last good set keeps serving.
    #[error("{} problem(s) in the definitions; the last good set keeps serving: {}", .0.len(), summary(.0))]
    Invalid(Vec<DefinitionError>),
    /// The caller may not reload, or the new versions could not be stored.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Reading the files was cut short (the reading task panicked or was cancelled).
    #[error("reading the definitions was interrupted: {0}")]
    Interrupted(String),
    /// The last requested reload was too recent; the next may come after the wait.
    #[error("a reload was requested less than {}s ago; retry in {}s", .interval.as_secs_f64(), .wait.as_secs().max(1))]
    TooSoon {
        /// The least time between two requested reloads.
        interval: Duration,
        /// How long until the next is accepted.
        wait: Duration,
    },
}

fn summary(errors: &[DefinitionError]) -> String {
    let shown: Vec<String> = errors.iter().take(3).map(ToString::to_string).collect();
    let more = errors.len().saturating_sub(3);
    if more > 0 {
        format!("{}; and {more} more", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

/// Reloads the served definitions from their sources, one reload at a time.
#[derive(Debug)]
pub struct Reloader {
    engine: Arc<Engine>,
    sources: Sources,
    /// The fingerprint of the set last attempted; held across a reload, so reloads never
    /// overlap.
    attempted: tokio::sync::Mutex<[u8; 32]>,
    status: Mutex<ReloadStatus>,
    /// The least time between two reloads requested over the API.
    min_interval: Duration,
    /// When the last requested reload was accepted.
    last_request: Mutex<Option<std::time::Instant>>,
}

impl Reloader {
    /// A reloader for an engine serving the set read from `sources` as it is now.
    pub async fn new(engine: Arc<Engine>, sources: Sources) -> Result<Self, EngineError> {
        let fingerprint = sources.fingerprint();
        let serving = engine.serving().await?;
        Ok(Self {
            engine,
            sources,
            attempted: tokio::sync::Mutex::new(fingerprint),
            status: Mutex::new(ReloadStatus {
                serving,
                ..ReloadStatus::default()
            }),
            min_interval: Duration::ZERO,
            last_request: Mutex::new(None),
        })
    }

    /// Accepts at most one requested reload per `interval` (the file watcher is not
    /// limited: it reloads only what changed and held still).
    pub fn with_min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// Where reloading stands; `actor` must hold the admin role.
    pub fn status_for(&self, actor: &Actor) -> Result<ReloadStatus, EngineError> {
        actor.require(ADMIN_ROLE, "read the reload status")?;
        Ok(self.status())
    }

    /// Where reloading stands.
    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reloads at an admin's request.
    pub async fn request(&self, actor: &Actor) -> Result<Installation, ReloadError> {
        actor.require(ADMIN_ROLE, "reload the process definitions")?;
        {
            let mut last = self.last_request.lock().unwrap_or_else(|e| e.into_inner());
            let now = std::time::Instant::now();
            if let Some(at) = *last {
                let since = now.duration_since(at);
                if since < self.min_interval {
                    return Err(ReloadError::TooSoon {
                        interval: self.min_interval,
                        wait: self.min_interval - since,
                    });
                }
            }
            *last = Some(now);
        }
        tracing::info!(actor = %actor.name, "reload requested");
        self.reload(Trigger::Request).await
    }

    /// Reads, checks and (if valid) installs the whole set.
    pub async fn reload(&self, trigger: Trigger) -> Result<Installation, ReloadError> {
        let mut attempted = self.attempted.lock().await;
        let now = format_ms(self.engine.now_ms());
        // Reading the files and compiling their scripts takes a while: off the threads
        // that serve requests.
        let (engine, sources) = (self.engine.clone(), self.sources.clone());
        let read = tokio::task::spawn_blocking(move || {
            (sources.fingerprint(), sources.load(engine.rule_engine()))
        })
        .await;
        let outcome = match read {
            Ok((fingerprint, loaded)) => {
                *attempted = fingerprint;
                match loaded {
                    Ok(catalog) => self
                        .engine
                        .install(catalog)
                        .await
                        .map_err(ReloadError::from),
                    Err(errors) => Err(ReloadError::Invalid(errors)),
                }
            }
            Err(e) => Err(ReloadError::Interrupted(e.to_string())),
        };
        let serving = self.engine.serving().await.unwrap_or_default();
        let mut attempt = Attempt {
            at: now,
            trigger,
            ok: outcome.is_ok(),
            installation: None,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        match &outcome {
            Ok(installation) => {
                for p in installation
                    .processes
                    .iter()
                    .filter(|p| p.change != "unchanged")
                {
                    tracing::info!(process = %p.process, version = p.version, change = p.change, "definition reloaded");
                }
                for p in &installation.removed {
                    tracing::warn!(process = %p, "process no longer defined: its instances run on, none can start");
                }
                attempt.installation = Some(installation.clone());
                attempt.warnings = self
                    .engine
                    .catalog()
                    .iter()
                    .flat_map(|l| crate::definition::warnings(&l.definition))
                    .collect();
                for w in &attempt.warnings {
                    tracing::warn!(problem = %w, "suspicious definition");
                }
            }
            Err(ReloadError::Invalid(errors)) => {
                for e in errors {
                    tracing::warn!(problem = %e, "reload refused; the last good definitions keep serving");
                }
                attempt.errors = errors.clone();
            }
            Err(e) => {
                tracing::error!(error = %e, "reload failed; the last good definitions keep serving");
            }
        }
        self.engine.metrics().reload(!attempt.ok);
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if attempt.ok {
            status.reloads += 1;
            status.last_success_at = Some(attempt.at.clone());
        } else {
            status.failures += 1;
        }
        status.last_attempt = Some(attempt);
        if !serving.is_empty() {
            status.serving = serving;
        }
        outcome
    }

    /// Watches the sources every `every`, reloading once a change has held still for one
    /// whole interval. A set already attempted (good or refused) is not attempted again.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut seen = self.sources.fingerprint();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let sources = self.sources.clone();
            let Ok(now) = tokio::task::spawn_blocking(move || sources.fingerprint()).await else {
                continue;
            };
            if now != seen {
                seen = now; // still changing, perhaps: look again next time
                continue;
            }
            if now == *self.attempted.lock().await {
                continue;
            }
            // Errors are in the log and the status already.
            let _ = self.reload(Trigger::Watch).await;
        }
    }
}
