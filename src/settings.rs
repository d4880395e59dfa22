//! Server settings: command-line flags with environment fallbacks. Nothing else reads the
//! environment.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A value that must never be printed (tokens).
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret text, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Settings {
    /// Every setting at its default, except where an `OPSFLOW_*` environment variable says
    /// otherwise (an unreadable one is an error).
    pub fn defaults() -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        <Only as clap::Parser>::try_parse_from(["opsflow"]).map(|o| o.settings)
    }

    /// The sandbox limits of rule scripts.
    pub fn rule_limits(&self) -> crate::rules::Limits {
        crate::rules::Limits {
            max_operations: self.rules_max_operations,
            max_call_levels: self.rules_max_call_levels,
            max_expr_depth: self.rules_max_expr_depth,
            max_function_expr_depth: (self.rules_max_expr_depth / 2).max(1),
            max_string_size: self.rules_max_string_size,
            max_array_size: self.rules_max_array_size,
            max_map_size: self.rules_max_map_size,
        }
    }

    /// The API's request limits.
    pub fn api_limits(&self) -> crate::api::ApiLimits {
        crate::api::ApiLimits {
            max_body_bytes: self.max_body_bytes,
            max_page: self.max_page,
        }
    }

    /// The group-commit settings: the database's `defaults` with what is configured.
    pub fn group_commit(
        &self,
        defaults: crate::store::GroupCommitConfig,
    ) -> crate::store::GroupCommitConfig {
        crate::store::GroupCommitConfig {
            max_batch: self.group_commit_max.max(1),
            max_wait: std::time::Duration::from_micros(self.group_commit_wait_us),
            queue: self.write_queue.max(1),
            shards: if self.write_shards == 0 {
                defaults.shards
            } else {
                self.write_shards
            },
            ..defaults
        }
    }
}

/// The threads that run requests and the engine on a machine with `cores` cores, when
/// `requested` is 0: every core, less one when the database runs on this machine. SQLite
/// executes statements on a thread of its own and a local PostgreSQL server in processes of
/// its own; when the engine's threads keep every core busy, the database waits for one and
/// each batch's commit takes longer (measured on 2 cores: with one thread instead of two, 32
/// clients on SQLite made 13.5-15.9k instead of 11-12k transitions/s).
pub fn worker_threads(requested: usize, db: &str, cores: usize) -> usize {
    if requested > 0 {
        return requested;
    }
    let cores = cores.max(1);
    if database_is_local(db) {
        (cores - 1).max(1)
    } else {
        cores
    }
}

/// The database at `url` runs on this machine: an SQLite file, or a PostgreSQL server on a
/// loopback address or a Unix socket.
fn database_is_local(url: &str) -> bool {
    if url.starts_with("sqlite:") {
        return true;
    }
    use std::str::FromStr as _;
    match sqlx::postgres::PgConnectOptions::from_str(url) {
        Ok(options) => {
            let host = options.get_host();
            host.starts_with('/')
                || host == "localhost"
                || host
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Err(_) => false,
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, with the request's span (id, method, route).
    Json,
    /// Human-readable lines.
    Text,
}

/// How to run the server. Each setting comes from, in this order: its flag, its
/// environment variable, the configuration file (`--config`), its default.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Configuration file (TOML): `key = value` for any setting below, named as its flag
    /// without dashes (`group_commit_max = 64`). Flags and environment variables win over it.
    #[arg(long, env = "OPSFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL: `sqlite://PATH` (created if missing) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "OPSFLOW_DB", default_value = "sqlite://opsflow.db")]
    pub db: String,
    /// Folder (or file) of process definitions.
    #[arg(long, env = "OPSFLOW_PROCESSES", default_value = "processes")]
    pub processes: PathBuf,
    /// Folder of Rhai rule modules.
    #[arg(long, env = "OPSFLOW_RULES", default_value = "rules")]
    pub rules: PathBuf,
    /// Folder of business calendars (none when it does not exist).
    #[arg(long, env = "OPSFLOW_CALENDARS", default_value = "calendars")]
    pub calendars: PathBuf,
    /// Folder of KPI files (`GET /api/v1/kpis` reads them on each request).
    #[arg(long, env = "OPSFLOW_KPIS", default_value = "kpis")]
    pub kpis: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "OPSFLOW_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// How long the answer to a request with an `Idempotency-Key` is kept, in seconds.
    #[arg(long, env = "OPSFLOW_IDEMPOTENCY_TTL", default_value_t = 86_400)]
    pub idempotency_ttl: u64,
    /// Most steps committed together by the group-commit writer (1 turns grouping off).
    #[arg(long, env = "OPSFLOW_GROUP_COMMIT_MAX", default_value_t = 128)]
    pub group_commit_max: usize,
    /// Microseconds the writer waits for more steps after the first of a batch (0: it
    /// takes only what is already queued, so a lone client never waits).
    #[arg(long, env = "OPSFLOW_GROUP_COMMIT_WAIT_US", default_value_t = 0)]
    pub group_commit_wait_us: u64,
    /// Group-commit writers (0: 1 on SQLite, 2 on PostgreSQL).
    #[arg(long, env = "OPSFLOW_WRITE_SHARDS", default_value_t = 0)]
    pub write_shards: usize,
    /// Threads that run requests and the engine (0: every core, less one when the database
    /// runs on this machine: SQLite, or PostgreSQL on localhost).
    #[arg(long, env = "OPSFLOW_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,
    /// Steps that may queue for the writer; beyond that, requests get 503 and Retry-After.
    #[arg(long, env = "OPSFLOW_WRITE_QUEUE", default_value_t = 4096)]
    pub write_queue: usize,
    /// Instances the engine remembers as it last wrote them, so that the next step on one
    /// need not read it back (0: always read).
    #[arg(long, env = "OPSFLOW_INSTANCE_CACHE", default_value_t = 16_384)]
    pub instance_cache: usize,
    /// How often this node fires due timers and delivers notifications, in ms (0: never;
    /// a node that only serves requests, or a test that runs those steps itself).
    #[arg(long, env = "OPSFLOW_TIMER_INTERVAL_MS", default_value_t = 1_000)]
    pub timer_interval_ms: u64,
    /// How often the process, rule and calendar folders are checked for changes, in ms; a
    /// change is reloaded once it has held still that long (0: never; reload with
    /// `POST /api/v1/admin/reload`).
    #[arg(long, env = "OPSFLOW_RELOAD_POLL_MS", default_value_t = 1_000)]
    pub reload_poll_ms: u64,
    /// How often this node takes a checkpoint chaining the instances' traces together, in
    /// seconds (0: never).
    #[arg(long, env = "OPSFLOW_CHECKPOINT_INTERVAL", default_value_t = 300)]
    pub checkpoint_interval: u64,
    /// Webhook URLs notifications are delivered to, comma-separated (none: only logged).
    #[arg(
        long,
        env = "OPSFLOW_WEBHOOKS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub webhooks: Vec<String>,
    /// The key webhook bodies are signed with (HMAC-SHA256, `Opsflow-Signature` header).
    #[arg(
        long,
        env = "OPSFLOW_WEBHOOK_SECRET",
        hide_env_values = true,
        default_value = ""
    )]
    pub webhook_secret: Secret,
    /// Ed25519 key file (64 hex digits, made by `opsflow keygen`) that signs evidence
    /// bundles; unset: bundles carry their digest but no signature.
    #[arg(long, env = "OPSFLOW_EVIDENCE_KEY")]
    pub evidence_key: Option<PathBuf>,
    /// Simulation: `POST /api/v1/admin/clock` moves the engine clock forward (for trying
    /// out timers and SLAs; never on a production server).
    #[arg(long, env = "OPSFLOW_SIMULATE", default_value_t = false)]
    pub simulate: bool,
    /// How log lines are written (to stderr); `RUST_LOG` sets what is logged.
    #[arg(long, env = "OPSFLOW_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
    /// Largest request body accepted, in bytes (413 beyond).
    #[arg(long, env = "OPSFLOW_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest page of instances a caller may ask for (`limit`).
    #[arg(long, env = "OPSFLOW_MAX_PAGE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_page: u32,
    /// Least time between two reloads requested with `POST /api/v1/admin/reload`, in ms
    /// (429 with Retry-After sooner).
    #[arg(long, env = "OPSFLOW_RELOAD_MIN_INTERVAL_MS", default_value_t = 1_000)]
    pub reload_min_interval_ms: u64,
    /// Rhai: operations one script call may run.
    #[arg(long, env = "OPSFLOW_RULES_MAX_OPERATIONS", default_value_t = 200_000)]
    pub rules_max_operations: u64,
    /// Rhai: depth of nested function calls.
    #[arg(long, env = "OPSFLOW_RULES_MAX_CALL_LEVELS", default_value_t = 32)]
    pub rules_max_call_levels: usize,
    /// Rhai: nesting depth of expressions (at global level; half of it inside functions).
    #[arg(long, env = "OPSFLOW_RULES_MAX_EXPR_DEPTH", default_value_t = 64)]
    pub rules_max_expr_depth: usize,
    /// Rhai: length of any string, in bytes.
    #[arg(long, env = "OPSFLOW_RULES_MAX_STRING_SIZE", default_value_t = 64 * 1024)]
    pub rules_max_string_size: usize,
    /// Rhai: items in any array.
    #[arg(long, env = "OPSFLOW_RULES_MAX_ARRAY_SIZE", default_value_t = 10_000)]
    pub rules_max_array_size: usize,
    /// Rhai: entries in any object map.
    #[arg(long, env = "OPSFLOW_RULES_MAX_MAP_SIZE", default_value_t = 10_000)]
    pub rules_max_map_size: usize,
    /// How long the server reuses what it read of a stored token, in ms: a revoked token
    /// stops working on every node within this time (0: read on every request).
    #[arg(long, env = "OPSFLOW_TOKEN_CACHE_MS", default_value_t = 5_000)]
    pub token_cache_ms: u64,
    /// Bearer tokens: `token=actor:role,role;token2=actor2:role`.
    #[arg(
        long,
        env = "OPSFLOW_TOKENS",
        hide_env_values = true,
        default_value = ""
    )]
    pub tokens: Secret,
}

#[cfg(test)]
mod tests {
    use super::worker_threads;

    #[test]
    fn a_local_database_is_left_a_core_and_a_remote_one_is_not() {
        assert_eq!(worker_threads(0, "sqlite://opsflow.db", 2), 1);
        assert_eq!(worker_threads(0, "sqlite://opsflow.db", 8), 7);
        assert_eq!(worker_threads(0, "sqlite://opsflow.db", 1), 1);
        assert_eq!(
            worker_threads(0, "postgres://postgres@127.0.0.1:5432/test", 4),
            3
        );
        assert_eq!(
            worker_threads(0, "postgres://postgres@localhost/test", 4),
            3
        );
        assert_eq!(worker_threads(0, "postgres://u@[::1]:5432/test", 4), 3);
        assert_eq!(worker_threads(0, "postgres://u@db.internal:5432/ops", 4), 4);
        assert_eq!(worker_threads(0, "postgres://u@10.0.0.7/ops", 4), 4);
        assert_eq!(worker_threads(3, "sqlite://opsflow.db", 2), 3);
    }
}
