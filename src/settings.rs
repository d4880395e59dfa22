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

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// How to run the server.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Database URL: `sqlite://PATH` (created if missing) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "OPSFLOW_DB", default_value = "sqlite://opsflow.db")]
    pub db: String,
    /// Folder (or file) of process definitions.
    #[arg(long, env = "OPSFLOW_PROCESSES", default_value = "processes")]
    pub processes: PathBuf,
    /// Folder of Rhai rule modules.
    #[arg(long, env = "OPSFLOW_RULES", default_value = "rules")]
    pub rules: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "OPSFLOW_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// How long the answer to a request with an `Idempotency-Key` is kept, in seconds.
    #[arg(long, env = "OPSFLOW_IDEMPOTENCY_TTL", default_value_t = 86_400)]
    pub idempotency_ttl: u64,
    /// Bearer tokens: `token=actor:role,role;token2=actor2:role`.
    #[arg(
        long,
        env = "OPSFLOW_TOKENS",
        hide_env_values = true,
        default_value = ""
    )]
    pub tokens: Secret,
}
