//! Safe retries: the first answer to a request sent with an `Idempotency-Key` is stored
//! with its step, in the same transaction, and given again to every retry with the same
//! key and the same request. The same key with another request is refused. Keys are per
//! caller and expire after the configured time.

use sha2::{Digest, Sha256};

use super::error::EngineError;
use super::view::InstanceView;
use super::{Actor, Engine};
use crate::store::{AnswerWrite, StoredAnswer};

/// A caller's idempotency key with the fingerprint of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The key the caller chose.
    pub key: String,
    /// SHA-256 (hex) of the request: method, path and canonical body.
    pub fingerprint: String,
}

impl Idempotency {
    /// Longest key accepted.
    pub const MAX_KEY_LEN: usize = 255;

    /// A key for a request; `body` is canonicalized (object keys sorted), so the same JSON
    /// with its keys in another order is the same request.
    pub fn new(key: impl Into<String>, method: &str, path: &str, body: &serde_json::Value) -> Self {
        let mut h = Sha256::new();
        h.update(method.as_bytes());
        h.update(b" ");
        h.update(path.as_bytes());
        h.update(b"\n");
        h.update(canonical(body).as_bytes());
        Self {
            key: key.into(),
            fingerprint: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// JSON text with object keys sorted at every level.
fn canonical(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        serde_json::Value::String(k.clone()),
                        canonical(&map[k])
                    )
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
        serde_json::Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(canonical).collect::<Vec<_>>().join(",")
            )
        }
        other => other.to_string(),
    }
}

impl Engine {
    /// The stored answer to an earlier request with the same key, if one is live.
    pub async fn replay(
        &self,
        actor: &Actor,
        idempotency: Option<&Idempotency>,
    ) -> Result<Option<InstanceView>, EngineError> {
        let Some(idem) = idempotency else {
            return Ok(None);
        };
        let Some(stored) = self.store.answer(&actor.name, &idem.key).await? else {
            return Ok(None);
        };
        if stored.created_at < self.clock.now_ms() - self.answer_ttl_ms {
            return Ok(None);
        }
        if stored.fingerprint != idem.fingerprint {
            return Err(EngineError::KeyReused(idem.key.clone()));
        }
        let mut view: InstanceView = serde_json::from_str(&stored.response)
            .map_err(|e| EngineError::Store(crate::store::StoreError::Corrupt(e.to_string())))?;
        view.replayed = true;
        view.status = stored.status;
        Ok(Some(view))
    }

    pub(super) fn answer_write(
        &self,
        actor: &Actor,
        idem: &Idempotency,
        status: u16,
        view: &InstanceView,
    ) -> Result<AnswerWrite, EngineError> {
        let now = self.clock.now_ms();
        let response = serde_json::to_string(view)
            .map_err(|e| EngineError::Store(crate::store::StoreError::Corrupt(e.to_string())))?;
        Ok(AnswerWrite {
            answer: StoredAnswer {
                actor: actor.name.clone(),
                key: idem.key.clone(),
                fingerprint: idem.fingerprint.clone(),
                status,
                response,
                created_at: now,
            },
            replaces_before: now - self.answer_ttl_ms,
        })
    }

    /// Deletes answers older than the configured time; returns how many. Safe to run on
    /// every node at once.
    pub async fn purge_expired_answers(&self) -> Result<u64, EngineError> {
        let cutoff = self.clock.now_ms() - self.answer_ttl_ms;
        Ok(self.store.purge_answers(cutoff).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_same_json_with_keys_in_another_order_is_the_same_request() {
        let a = Idempotency::new(
            "k",
            "POST",
            "/p",
            &json!({"a": 1, "b": {"c": 2, "d": [1, 2]}}),
        );
        let b = Idempotency::new(
            "k",
            "POST",
            "/p",
            &json!({"b": {"d": [1, 2], "c": 2}, "a": 1}),
        );
        let c = Idempotency::new(
            "k",
            "POST",
            "/p",
            &json!({"a": 2, "b": {"c": 2, "d": [1, 2]}}),
        );
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_ne!(
            a.fingerprint,
            Idempotency::new("k", "POST", "/q", &json!({"a": 1})).fingerprint
        );
    }
}
