//! Builds the running application from settings: definitions, store, engine, router and
//! a bound listener. `opsflow serve` and the integration tests start it the same way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::{self, AppState, Tokens};
use crate::clock::{Clock, SimulatedClock, SystemClock};
use crate::definition::DefinitionError;
use crate::engine::{Engine, EngineError};
use crate::reload::{Reloader, Sources};
use crate::rules::RuleEngine;
use crate::settings::Settings;
use crate::store::{GroupCommit, GroupCommitConfig, PgStore, SqliteStore, Store, StoreError};
use crate::webhook::Webhooks;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Process files or rule modules have problems; each is listed.
    #[error("{} problem(s) in process definitions", .0.len())]
    Definitions(Vec<DefinitionError>),
    /// The database URL is not one this build supports.
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedDatabase(String),
    /// The database could not be opened or migrated.
    #[error("cannot open the database")]
    Store(#[from] StoreError),
    /// Definitions could not be recorded in the database.
    #[error("cannot record the definitions")]
    Engine(#[from] EngineError),
    /// `OPSFLOW_TOKENS` is malformed.
    #[error("bad OPSFLOW_TOKENS: {0}")]
    Tokens(String),
    /// The evidence signing key (`OPSFLOW_EVIDENCE_KEY`) cannot be read.
    #[error("bad OPSFLOW_EVIDENCE_KEY: {0}")]
    EvidenceKey(#[from] crate::evidence::KeyError),
    /// A webhook URL in `OPSFLOW_WEBHOOKS` is not a URL.
    #[error("bad webhook URL `{0}`: {1}")]
    Webhook(String, String),
    /// The group-commit writers could not be started.
    #[error("cannot start the database writer")]
    Writer(#[source] std::io::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
}

/// The databases a URL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// `sqlite://PATH`
    Sqlite,
    /// `postgres://...` or `postgresql://...`
    Postgres,
}

impl DatabaseKind {
    /// The kind of database `url` names.
    pub fn of(url: &str) -> Result<Self, StartError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StartError::UnsupportedDatabase(url.to_owned()))
        }
    }
}

/// How often expired idempotency answers are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(300);

/// Timers claimed and fired per round.
const TIMERS_PER_ROUND: u32 = 64;

/// Connections a server keeps to PostgreSQL.
const PG_CONNECTIONS: u32 = 16;

/// Opens the store a database URL names, applying pending migrations.
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, StartError> {
    Ok(match DatabaseKind::of(url)? {
        DatabaseKind::Sqlite => Arc::new(SqliteStore::open(url).await?),
        DatabaseKind::Postgres => Arc::new(PgStore::open(url, PG_CONNECTIONS).await?),
    })
}

/// Applies pending migrations to the database `url` names; returns how many ran.
pub async fn migrate(url: &str) -> Result<usize, StartError> {
    Ok(match DatabaseKind::of(url)? {
        DatabaseKind::Sqlite => SqliteStore::migrate(url).await?,
        DatabaseKind::Postgres => PgStore::migrate(url).await?,
    })
}

/// A built, bound server that has not started serving yet.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    state: AppState,
    addr: SocketAddr,
    engine: Arc<Engine>,
    webhooks: Webhooks,
    /// The movable clock, in simulation mode.
    simulation: Option<Arc<SimulatedClock>>,
    /// How often due timers are fired and notifications delivered (zero: never).
    timer_interval: Duration,
    /// How often a checkpoint is taken (zero: never).
    checkpoint_interval: Duration,
    /// How often the definition folders are checked for changes (zero: never).
    reload_poll: Duration,
    /// Reloads the definitions.
    reloader: Arc<Reloader>,
}

impl Server {
    /// Loads definitions, opens the store, builds the engine and binds the listener
    /// (port 0 picks a free port).
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        if settings.simulate {
            let clock = SimulatedClock::new();
            tracing::warn!("simulation mode: callers may move the engine clock forward");
            let mut server = Self::build_with_clock(settings, clock.clone()).await?;
            server.simulation = Some(clock);
            return Ok(server);
        }
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// As [`Server::build`], with the engine reading time from `clock`.
    pub async fn build_with_clock(
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let tokens = Tokens::parse(settings.tokens.expose()).map_err(StartError::Tokens)?;
        let evidence_key = match &settings.evidence_key {
            Some(path) => Some(Arc::new(crate::evidence::read_signing_key(path)?)),
            None => None,
        };
        let rules = Arc::new(RuleEngine::new(clock.clone(), settings.rule_limits()));
        let kpi_clock = clock.clone();
        let sources = Sources {
            processes: settings.processes.clone(),
            rules: settings.rules.clone(),
            calendars: settings.calendars.clone(),
        };
        let catalog = sources.load(&rules).map_err(StartError::Definitions)?;
        for l in catalog.iter() {
            for w in crate::definition::warnings(&l.definition) {
                tracing::warn!(problem = %w, "suspicious definition");
            }
        }
        let defaults = match DatabaseKind::of(&settings.db)? {
            DatabaseKind::Sqlite => GroupCommitConfig::default(),
            DatabaseKind::Postgres => GroupCommitConfig::postgres(),
        };
        let store: Arc<dyn Store> = Arc::new(
            GroupCommit::new(
                open_store(&settings.db).await?,
                settings.group_commit(defaults),
            )
            .map_err(StartError::Writer)?,
        );
        let webhooks: Vec<String> = settings
            .webhooks
            .iter()
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        for url in &webhooks {
            reqwest::Url::parse(url)
                .map_err(|e| StartError::Webhook(url.clone(), e.to_string()))?;
        }
        let engine = Arc::new(
            Engine::new(catalog, rules, store, clock)
                .with_answer_ttl(Duration::from_secs(settings.idempotency_ttl))
                .with_instance_cache(settings.instance_cache)
                .with_webhooks(webhooks),
        );
        engine.register_definitions().await?;
        if tokens.is_empty() {
            let now = engine.now_ms();
            let stored = engine.store().tokens().await?;
            if !stored.iter().any(|t| t.is_valid_at(now)) {
                tracing::warn!(
                    "no bearer tokens: none in OPSFLOW_TOKENS and none stored (opsflow token create); every API request will be refused with 401"
                );
            }
        }
        let reloader = Arc::new(
            Reloader::new(engine.clone(), sources)
                .await?
                .with_min_interval(Duration::from_millis(settings.reload_min_interval_ms)),
        );
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| StartError::Bind(settings.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Bind(settings.listen, e))?;
        Ok(Self {
            listener,
            state: AppState {
                engine: engine.clone(),
                tokens: Arc::new(tokens),
                directory: Arc::new(crate::tokens::TokenDirectory::new(
                    engine.store().clone(),
                    Duration::from_millis(settings.token_cache_ms),
                )),
                rules_dir: Arc::new(settings.rules.clone()),
                reloader: reloader.clone(),
                kpis_dir: Arc::new(settings.kpis.clone()),
                kpi_engine: Arc::new(crate::kpi::KpiEngine::new(kpi_clock)),
                simulation: None,
                evidence_key,
                limits: settings.api_limits(),
            },
            addr,
            engine,
            webhooks: Webhooks::new(settings.webhook_secret.clone()),
            simulation: None,
            timer_interval: Duration::from_millis(settings.timer_interval_ms),
            checkpoint_interval: Duration::from_secs(settings.checkpoint_interval),
            reload_poll: Duration::from_millis(settings.reload_poll_ms),
            reloader,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The engine behind the server.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Serves until `shutdown` completes, then finishes requests in flight.
    ///
    /// Background work runs meanwhile: firing due timers and delivering notifications
    /// every second, and purging expired
    /// idempotency answers.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let engine = self.engine.clone();
        let webhooks = self.webhooks.clone();
        let interval = self.timer_interval;
        let timers = tokio::spawn(async move {
            if interval.is_zero() {
                return;
            }
            let node = format!("node-{}", uuid::Uuid::now_v7().simple());
            let mut every = tokio::time::interval(interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                // Fire in rounds until nothing more is due, then deliver notifications.
                loop {
                    match engine.fire_due_timers(&node, TIMERS_PER_ROUND).await {
                        Ok(n) if n < TIMERS_PER_ROUND as usize => break,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "firing due timers failed");
                            break;
                        }
                    }
                }
                loop {
                    match webhooks.deliver_due(&engine, &node, TIMERS_PER_ROUND).await {
                        Ok(n) if n < TIMERS_PER_ROUND as usize => break,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "delivering notifications failed");
                            break;
                        }
                    }
                }
            }
        });
        let engine = self.engine.clone();
        let every_checkpoint = self.checkpoint_interval;
        let checkpoints = tokio::spawn(async move {
            if every_checkpoint.is_zero() {
                return;
            }
            let mut every = tokio::time::interval(every_checkpoint);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await; // the first tick is immediate
            loop {
                every.tick().await;
                match engine.write_checkpoint().await {
                    Ok(Some(c)) => tracing::info!(
                        checkpoint = c.seq,
                        instances = c.entries.len(),
                        "checkpoint taken"
                    ),
                    Ok(None) => {}
                    // Another node took this one first, or the database failed: next time.
                    Err(e) => tracing::debug!(error = %e, "no checkpoint this time"),
                }
            }
        });
        let engine = self.engine.clone();
        let background = tokio::spawn(async move {
            let mut every = tokio::time::interval(PURGE_INTERVAL);
            loop {
                every.tick().await;
                match engine.purge_expired_answers().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "expired idempotency answers purged"),
                    Err(e) => tracing::warn!(error = %e, "purging idempotency answers failed"),
                }
            }
        });
        let watching = (!self.reload_poll.is_zero())
            .then(|| tokio::spawn(self.reloader.clone().watch(self.reload_poll)));
        let router = api::router(AppState {
            simulation: self.simulation,
            ..self.state
        });
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        background.abort();
        timers.abort();
        checkpoints.abort();
        if let Some(w) = watching {
            w.abort();
        }
        served
    }
}
