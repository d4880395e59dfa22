//! The operator's Ed25519 key: a file holding the 32-byte secret seed as 64 hex digits.
//! A bundle signed with it names the public key; a verifier who knows which key to expect
//! passes it to `opsflow verify BUNDLE --public-key`.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand_core::RngCore;

/// Why a key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The key file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The text is not a key.
    #[error("{0}")]
    Malformed(String),
}

/// Reads a secret key file (64 hex digits, surrounding white space ignored).
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeyError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let bytes = key_bytes(text.trim()).map_err(|m| {
        KeyError::Malformed(format!(
            "{}: {m}; `opsflow keygen` writes a key file",
            path.display()
        ))
    })?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// A public key given as 64 hex digits, or as a file holding them.
pub fn read_public_key(text_or_path: &str) -> Result<VerifyingKey, KeyError> {
    let text = match std::fs::read_to_string(text_or_path) {
        Ok(t) => t,
        Err(_) => text_or_path.to_owned(),
    };
    let bytes = key_bytes(text.trim()).map_err(|m| {
        KeyError::Malformed(format!(
            "public key `{text_or_path}`: {m} (give 64 hex digits or a file holding them)"
        ))
    })?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| KeyError::Malformed(format!("`{text_or_path}` is not an Ed25519 public key")))
}

fn key_bytes(text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text).map_err(|_| "not hexadecimal".to_owned())?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("{} bytes where a key has 32", bytes.len()))
}

/// Makes a new key and writes its secret to `path` (readable by its owner only, and never
/// over an existing file); returns it.
pub fn generate_key(path: &Path) -> Result<SigningKey, KeyError> {
    let io = |e: std::io::Error| KeyError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut seed = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut file, format!("{}\n", hex::encode(seed)).as_bytes())
        .map_err(io)?;
    Ok(key)
}

/// The public key of `key` in hex.
pub fn public_hex(key: &SigningKey) -> String {
    hex::encode(key.verifying_key().as_bytes())
}

/// Signs `message`; the signature in hex.
pub(super) fn sign(key: &SigningKey, message: &[u8]) -> String {
    hex::encode(key.sign(message).to_bytes())
}

/// Whether `signature_hex` is `public_hex`'s signature of `message`.
pub(super) fn signature_holds(public_hex: &str, signature_hex: &str, message: &[u8]) -> bool {
    let Ok(public) = key_bytes(public_hex) else {
        return false;
    };
    let Ok(public) = VerifyingKey::from_bytes(&public) else {
        return false;
    };
    let Some(signature) = hex::decode(signature_hex)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
    else {
        return false;
    };
    public
        .verify(message, &Signature::from_bytes(&signature))
        .is_ok()
}
