//! Evidence bundles: one instance's or one period's trace records together with the
//! definition YAML and rule sources they ran under, a digest over all of it and, when the
//! operator configured a key, an Ed25519 signature of that digest. A bundle stands on its
//! own: `opsflow verify BUNDLE` recomputes every hash without the database.
//!
//! The digest is the SHA-256 of the canonical JSON (keys sorted, no spaces) of the bundle
//! without its `digest` and `signature`; the signature signs the digest's 64 hex digits.

mod signing;

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use signing::{KeyError, generate_key, public_hex, read_public_key, read_signing_key};

use crate::clock::format_ms;
use crate::definition::{Source, content_hash};
use crate::store::{ChainBreak, Store, StoreError, TraceRecord, canonical_json, verify_chain};

/// The format name a bundle carries.
pub const FORMAT: &str = "opsflow-evidence/1";

/// An evidence bundle.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`FORMAT`].
    pub format: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// What was asked for.
    pub scope: Scope,
    /// Every definition version a record names.
    pub definitions: Vec<BundleDefinition>,
    /// The instances, each with its whole trace.
    pub instances: Vec<BundleInstance>,
    /// SHA-256 (hex) of the canonical form of everything above.
    pub digest: String,
    /// The operator's signature of `digest`, if a key was configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<BundleSignature>,
}

/// What a bundle was made of: one instance, or the instances with records in a period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// One instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Only instances of this process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// Only instances with records at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Only instances with records before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// A definition version with the texts its hash is taken of.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleDefinition {
    /// The content hash records name.
    pub hash: String,
    /// The process.
    pub process: String,
    /// The YAML and rule sources.
    pub source: Source,
}

/// An instance and its whole trace (a chain can only be checked from its first record).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleInstance {
    /// The instance.
    pub id: String,
    /// Its process.
    pub process: String,
    /// Its state when the bundle was made.
    pub state: String,
    /// How many records it had then.
    pub version: i64,
    /// The hash of its last record then.
    pub trace_hash: String,
    /// Its records, in order.
    pub trace: Vec<TraceRecord>,
}

/// An Ed25519 signature of a bundle's digest.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleSignature {
    /// Always `ed25519`.
    pub algorithm: String,
    /// The signer's public key (hex).
    pub public_key: String,
    /// The signature (hex).
    pub value: String,
}

impl Bundle {
    /// The bundle of the instances `ids` (those that exist) as `store` holds them now.
    pub async fn build(
        store: &dyn Store,
        ids: &[String],
        scope: Scope,
        now_ms: i64,
        key: Option<&SigningKey>,
    ) -> Result<Bundle, StoreError> {
        let mut instances = Vec::with_capacity(ids.len());
        let mut hashes = BTreeSet::new();
        for id in ids {
            let Some(i) = store.get_instance(id).await? else {
                continue;
            };
            let trace = store.trace(id).await?;
            hashes.insert(i.definition_hash.clone());
            hashes.extend(trace.iter().map(|r| r.definition_hash.clone()));
            instances.push(BundleInstance {
                id: i.id.clone(),
                process: i.process.clone(),
                state: i.state.clone(),
                version: i.version,
                trace_hash: i.trace_hash.clone(),
                trace,
            });
        }
        let mut definitions = Vec::with_capacity(hashes.len());
        for hash in hashes {
            // A version the store lost is left out; verification then names what needs it.
            if let Some(d) = store.load_definition(&hash).await? {
                let source: Source = serde_json::from_str(&d.source).map_err(|e| {
                    StoreError::Corrupt(format!("definition {hash}'s sources: {e}"))
                })?;
                definitions.push(BundleDefinition {
                    hash: d.hash,
                    process: d.process,
                    source,
                });
            }
        }
        let mut bundle = Bundle {
            format: FORMAT.to_owned(),
            created_at: format_ms(now_ms),
            scope,
            definitions,
            instances,
            digest: String::new(),
            signature: None,
        };
        bundle.digest = bundle.compute_digest();
        if let Some(key) = key {
            bundle.signature = Some(BundleSignature {
                algorithm: "ed25519".to_owned(),
                public_key: public_hex(key),
                value: signing::sign(key, bundle.digest.as_bytes()),
            });
        }
        Ok(bundle)
    }

    /// SHA-256 (hex) of the canonical JSON of the bundle without `digest` and `signature`.
    pub fn compute_digest(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut value {
            m.remove("digest");
            m.remove("signature");
        }
        hex::encode(Sha256::digest(canonical_json(&value).as_bytes()))
    }

    /// Recomputes everything: each definition's hash from its sources, each instance's
    /// chain, that every record's definition is in the bundle, the digest and, when there
    /// is one, the signature (by `expected` when given).
    pub fn verify(&self, expected: Option<&VerifyingKey>) -> BundleReport {
        let mut report = BundleReport {
            instances: self.instances.len() as u64,
            definitions: self.definitions.len() as u64,
            ..BundleReport::default()
        };
        let problems = &mut report.problems;
        if self.format != FORMAT {
            problems.push(format!(
                "bundle: format `{}`, expected `{FORMAT}`",
                self.format
            ));
        }
        let mut known = BTreeMap::new();
        for d in &self.definitions {
            if content_hash(&d.source.yaml, &d.source.rules) != d.hash {
                problems.push(format!(
                    "definition {} ({}): does not match its sources",
                    d.hash, d.process
                ));
            }
            known.insert(d.hash.as_str(), d);
        }
        for i in &self.instances {
            report.records += i.trace.len() as u64;
            for (seq, what) in verify_chain(&i.trace, i.version, &i.trace_hash) {
                problems.push(format!("instance {} record {seq}: {what}", i.id));
            }
            for r in &i.trace {
                if r.instance_id != i.id {
                    problems.push(format!(
                        "instance {} record {}: {} (it names instance {})",
                        i.id,
                        r.seq,
                        ChainBreak::Changed,
                        r.instance_id
                    ));
                }
                match known.get(r.definition_hash.as_str()) {
                    None => problems.push(format!(
                        "instance {} record {}: ran under definition {}, which the bundle does not hold",
                        i.id, r.seq, r.definition_hash
                    )),
                    Some(d) if d.process != i.process => problems.push(format!(
                        "instance {} record {}: definition {} is of process `{}`, not `{}`",
                        i.id, r.seq, r.definition_hash, d.process, i.process
                    )),
                    Some(_) => {}
                }
            }
        }
        if self.compute_digest() != self.digest {
            problems.push(
                "bundle: digest does not match its content (edited after it was made)".to_owned(),
            );
        }
        match (&self.signature, expected) {
            (None, None) => {}
            (None, Some(_)) => {
                problems.push("bundle: not signed, but a signer's key was given".to_owned())
            }
            (Some(s), expected) => {
                let expected_hex = expected.map(|k| hex::encode(k.as_bytes()));
                if s.algorithm != "ed25519" {
                    problems.push(format!(
                        "bundle: bad signature: unknown algorithm `{}`",
                        s.algorithm
                    ));
                } else if !signing::signature_holds(&s.public_key, &s.value, self.digest.as_bytes())
                {
                    problems.push("bundle: bad signature: it does not match the digest".to_owned());
                } else if let Some(e) = expected_hex.filter(|e| *e != s.public_key) {
                    problems.push(format!(
                        "bundle: bad signature: signed by key {}, not by the expected key {e}",
                        s.public_key
                    ));
                } else {
                    report.signed_by = Some(s.public_key.clone());
                }
            }
        }
        report
    }
}

/// What [`Bundle::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleReport {
    /// Instances checked.
    pub instances: u64,
    /// Trace records checked.
    pub records: u64,
    /// Definition versions checked.
    pub definitions: u64,
    /// The public key whose valid signature the bundle carries.
    pub signed_by: Option<String>,
    /// Each problem, naming the instance and record, or the definition, or the bundle.
    pub problems: Vec<String>,
}
