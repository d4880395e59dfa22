//! `opsflow token`: make, list and revoke the bearer tokens stored in the database.

use std::process::ExitCode;

use anyhow::Context as _;

use super::redact;
use crate::clock::{format_ms, parse_ms};
use crate::definition::duration_ms;

/// What to do with tokens.
#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    action: Action,
    /// Database URL.
    #[arg(
        long,
        env = "OPSFLOW_DB",
        default_value = "sqlite://opsflow.db",
        global = true
    )]
    db: String,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Make a token; prints it once on stdout (only its SHA-256 is stored).
    Create {
        /// The actor the token acts as (recorded in every trace record it writes).
        #[arg(long)]
        actor: String,
        /// Its roles, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// When it stops working: a duration from now (`90d`, `12h`) or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List the stored tokens (never their secrets).
    List,
    /// Revoke a token by its id (`tok_...`); servers stop taking it within their token
    /// cache time (`token_cache_ms`, 5 s by default).
    Revoke {
        /// The token's id, as `create` and `list` show it.
        id: String,
    },
}

/// When `--expires` ends, ms.
fn expiry(text: &str, now: i64) -> anyhow::Result<i64> {
    if let Some(ms) = duration_ms(text).filter(|ms| *ms > 0) {
        return now
            .checked_add(ms)
            .context("--expires is too far in the future");
    }
    let at = parse_ms(text).with_context(|| {
        format!("--expires must be a duration such as 90d or an RFC 3339 time; got `{text}`")
    })?;
    anyhow::ensure!(at > now, "--expires {text} is in the past");
    Ok(at)
}

pub(crate) async fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let store = crate::server::open_store(&args.db)
        .await
        .with_context(|| format!("cannot open {}", redact(&args.db)))?;
    let now = chrono::Utc::now().timestamp_millis();
    match args.action {
        Action::Create {
            actor,
            roles,
            expires,
        } => {
            let actor = actor.trim();
            anyhow::ensure!(!actor.is_empty(), "--actor must not be empty");
            let roles: Vec<String> = roles
                .iter()
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .collect();
            anyhow::ensure!(!roles.is_empty(), "--roles must name at least one role");
            let expires_at = expires.as_deref().map(|e| expiry(e, now)).transpose()?;
            let issued = crate::tokens::issue(store.as_ref(), actor, roles, expires_at, now)
                .await
                .context("cannot store the token")?;
            let r = &issued.record;
            eprintln!(
                "token {} for {} ({}), {}; it is shown only now",
                r.id,
                r.actor,
                r.roles.join(", "),
                r.expires_at
                    .map_or("does not expire".to_owned(), |e| format!(
                        "expires {}",
                        format_ms(e)
                    )),
            );
            println!("{}", issued.secret.expose());
        }
        Action::List => {
            let tokens = store.tokens().await.context("cannot read the tokens")?;
            if tokens.is_empty() {
                eprintln!("no stored tokens");
            }
            for t in tokens {
                let status = match (t.revoked_at, t.expires_at) {
                    (Some(at), _) => format!("revoked {}", format_ms(at)),
                    (None, Some(e)) if e <= now => format!("expired {}", format_ms(e)),
                    (None, Some(e)) => format!("expires {}", format_ms(e)),
                    (None, None) => "no expiry".to_owned(),
                };
                println!(
                    "{}\t{}\t{}\tcreated {}\t{status}",
                    t.id,
                    t.actor,
                    t.roles.join(","),
                    format_ms(t.created_at)
                );
            }
        }
        Action::Revoke { id } => {
            let done = store
                .revoke_token(&id, now)
                .await
                .context("cannot revoke the token")?;
            anyhow::ensure!(done, "no token `{id}` that is not already revoked");
            println!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
