//! Delivering outbox messages to webhooks: at least once, signed, with backoff.
//!
//! A step that raises a notification writes one outbox row per configured webhook in its
//! own transaction. [`Webhooks::deliver_due`] is one round of delivery that the server's
//! loop (or a test) calls: it claims due rows for a lease, POSTs each body with its
//! delivery id and an HMAC-SHA256 signature, and records the outcome. A failed attempt is
//! tried again after 1 s, 2 s, 4 s… up to an hour; a node that dies mid-way loses its
//! claim when the lease ends and another node delivers. Receivers de-duplicate on the
//! delivery id, which is the same on every attempt.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::engine::{Engine, EngineError};
use crate::settings::Secret;
use crate::store::{Claim, DeliveryOutcome};

/// The header carrying the delivery id.
pub const DELIVERY_HEADER: &str = "Opsflow-Delivery";
/// The header carrying `sha256=<hex HMAC-SHA256 of the body>` when a secret is configured.
pub const SIGNATURE_HEADER: &str = "Opsflow-Signature";

/// How long a claim on due messages holds.
const LEASE_MS: i64 = 60_000;
/// The longest wait between two attempts.
const MAX_BACKOFF_MS: i64 = 3_600_000;
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Delivers outbox messages over HTTP.
#[derive(Debug, Clone)]
pub struct Webhooks {
    client: reqwest::Client,
    secret: Secret,
}

impl Webhooks {
    /// A sender signing with `secret` (no signature header when it is empty).
    pub fn new(secret: Secret) -> Self {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self { client, secret }
    }

    /// One round: claims up to `limit` messages due at the engine clock's now as
    /// `claimant`, tries each once; returns how many were delivered.
    pub async fn deliver_due(
        &self,
        engine: &Engine,
        claimant: &str,
        limit: u32,
    ) -> Result<usize, EngineError> {
        let now = engine.now_ms();
        let claim = Claim {
            claimant: claimant.to_owned(),
            now,
            until: now.saturating_add(LEASE_MS),
            limit,
        };
        let store = engine.store();
        let mut delivered = 0;
        for d in store.claim_deliveries(&claim).await? {
            let m = &d.message;
            let outcome = match self.post(&m.url, &m.id, &m.body).await {
                Ok(()) => {
                    delivered += 1;
                    DeliveryOutcome::Delivered {
                        at: engine.now_ms(),
                    }
                }
                Err(error) => {
                    let wait = backoff_ms(d.attempts);
                    tracing::warn!(delivery = %m.id, url = %m.url, attempt = d.attempts + 1, %error, retry_in_ms = wait, "webhook delivery failed");
                    DeliveryOutcome::Failed {
                        retry_at: engine.now_ms().saturating_add(wait),
                        error,
                    }
                }
            };
            store.record_delivery(&m.id, &outcome).await?;
        }
        Ok(delivered)
    }

    async fn post(&self, url: &str, id: &str, body: &str) -> Result<(), String> {
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, id)
            .body(body.to_owned());
        if let Some(signature) = sign(&self.secret, body) {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        let answer = request.send().await.map_err(|e| e.to_string())?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {}", answer.status()))
        }
    }
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`; none without a secret.
pub fn sign(secret: &Secret, body: &str) -> Option<String> {
    let key = secret.expose();
    if key.is_empty() {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).ok()?;
    mac.update(body.as_bytes());
    Some(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// The wait before the attempt after `attempts` failed ones: 1 s, 2 s, 4 s… up to an hour.
fn backoff_ms(attempts: i64) -> i64 {
    let doublings = u32::try_from(attempts.clamp(0, 30)).unwrap_or(30);
    (1_000_i64 << doublings).min(MAX_BACKOFF_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_a_second_up_to_an_hour() {
        let waits: Vec<i64> = (0..4).map(backoff_ms).collect();
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000]);
        assert_eq!(backoff_ms(12), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(1_000), MAX_BACKOFF_MS);
    }

    #[test]
    fn the_signature_is_the_hmac_of_the_body_and_absent_without_a_secret() {
        // RFC 4231 test case 2.
        let signature = sign(&Secret::new("Jefe"), "what do ya want for nothing?");
        assert_eq!(
            signature.as_deref(),
            Some("sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert_eq!(sign(&Secret::new(""), "body"), None);
    }
}
