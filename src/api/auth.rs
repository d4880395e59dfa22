//! Bearer tokens: each maps to an actor name and roles.
//!
//! Two sources: `OPSFLOW_TOKENS="token1=alice:service_desk,l1_lead;token2=bob:l2_engineer"`
//! (for scripts and tests), and tokens made with `opsflow token create`, stored in the
//! database (see [`crate::tokens`]). Both are kept as SHA-256 digests only.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use super::AppState;
use super::problem::Problem;
use crate::engine::Actor;

/// The configured tokens.
#[derive(Clone, Default)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], Actor>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.by_digest.len())
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Parses `token=actor:role,role;token=actor:role`. The message names the bad entry by
    /// position, never by its token.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut by_digest = HashMap::new();
        for (i, entry) in spec
            .split(';')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let n = i + 1;
            let (token, rest) = entry
                .split_once('=')
                .ok_or_else(|| format!("token entry {n}: expected `token=actor:role,role`"))?;
            let (actor, roles) = rest
                .split_once(':')
                .ok_or_else(|| format!("token entry {n}: expected `actor:role,role` after `=`"))?;
            let token = token.trim();
            let actor = actor.trim();
            if token.is_empty() || actor.is_empty() {
                return Err(format!(
                    "token entry {n}: token and actor must not be empty"
                ));
            }
            let roles: Vec<String> = roles
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect();
            if by_digest
                .insert(digest(token), Actor::new(actor, roles))
                .is_some()
            {
                return Err(format!(
                    "token entry {n}: the same token is configured twice"
                ));
            }
        }
        Ok(Self { by_digest })
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// No token is configured.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    fn actor(&self, token: &str) -> Option<&Actor> {
        self.by_digest.get(&digest(token))
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) Actor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| Problem::new("unauthorized", "send `Authorization: Bearer <token>`"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                Problem::new(
                    "unauthorized",
                    "the Authorization header must be `Bearer <token>`",
                )
            })?;
        if let Some(actor) = state.tokens.actor(token) {
            // A copy of its own, not a clone of the configured one: the request's trace
            // records share its roles, and a reference count shared by every request of the
            // token would pass its cache line from core to core.
            let roles = actor.roles.iter().cloned();
            return Ok(Caller(Actor::new(actor.name.clone(), roles)));
        }
        let stored = state
            .directory
            .lookup(token)
            .await
            .map_err(|e| Problem::from(crate::engine::EngineError::Store(e)))?;
        match stored {
            None => Err(Problem::new("unauthorized", "unknown bearer token")),
            Some(t) if t.revoked_at.is_some() => Err(Problem::new(
                "unauthorized",
                format!("token `{}` was revoked", t.id),
            )),
            Some(t) if !t.is_valid_at(state.engine.now_ms()) => Err(Problem::new(
                "unauthorized",
                format!("token `{}` has expired", t.id),
            )),
            Some(t) => Ok(Caller(Actor::new(t.actor, t.roles))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_actors_and_roles() {
        let t = Tokens::parse("t1=alice:service_desk,l1_lead; t2=bob:l2_engineer").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.actor("t1").unwrap(),
            &Actor::new("alice", ["service_desk", "l1_lead"])
        );
        assert!(t.actor("t3").is_none());
    }

    #[test]
    fn a_malformed_entry_is_named_without_its_token() {
        let err = Tokens::parse("secret-token-value").unwrap_err();
        assert!(err.contains("entry 1"));
        assert!(!err.contains("secret-token-value"));
    }
}
