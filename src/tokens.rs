//! Bearer tokens made with `opsflow token create`: a random secret shown once, stored only
//! as its SHA-256, looked up by the server with a short cache so that a request does not
//! cost a database read, while a revocation reaches every node within the cache's time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore as _};
use sha2::{Digest as _, Sha256};

use crate::settings::Secret;
use crate::store::{Store, StoreError, TokenRecord};

/// What a stored token's secret starts with, so that one found in a log or a file is
/// recognised for what it is.
pub const PREFIX: &str = "opsflow_";

/// Entries the cache holds before it starts over (unknown tokens are cached too, so a
/// caller trying many cannot make it grow without end).
const CACHE_CAPACITY: usize = 10_000;

/// SHA-256 (hex) of a token.
pub fn digest_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A token just made: its secret (shown once) and what is stored of it.
#[derive(Debug)]
pub struct Issued {
    /// The token to give the caller.
    pub secret: Secret,
    /// What the database keeps.
    pub record: TokenRecord,
}

/// Makes and stores a token for `actor` with `roles`, valid until `expires_at` (ms).
pub async fn issue(
    store: &dyn Store,
    actor: &str,
    roles: Vec<String>,
    expires_at: Option<i64>,
    now: i64,
) -> Result<Issued, StoreError> {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let secret = format!("{PREFIX}{}", hex::encode(bytes));
    let record = TokenRecord {
        id: format!("tok_{}", &uuid::Uuid::now_v7().simple().to_string()[..20]),
        digest: digest_hex(&secret),
        actor: actor.to_owned(),
        roles,
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    store.save_token(&record).await?;
    Ok(Issued {
        secret: Secret::new(secret),
        record,
    })
}

/// Stored tokens as the server sees them: each lookup is remembered for `ttl`.
#[derive(Debug)]
pub struct TokenDirectory {
    store: Arc<dyn Store>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Option<TokenRecord>)>>,
}

impl TokenDirectory {
    /// A directory over `store` whose answers are reused for `ttl`.
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            cache: Mutex::default(),
        }
    }

    /// The stored token `token` is, if any (revoked and expired ones too: the caller says
    /// why it is refused).
    pub async fn lookup(&self, token: &str) -> Result<Option<TokenRecord>, StoreError> {
        let digest = digest_hex(token);
        if !self.ttl.is_zero() {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, found)) = cache.get(&digest)
                && at.elapsed() < self.ttl
            {
                return Ok(found.clone());
            }
        }
        let found = self.store.token_by_digest(&digest).await?;
        if !self.ttl.is_zero() {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(digest, (Instant::now(), found.clone()));
        }
        Ok(found)
    }
}
