//! Helpers for committing several steps at once.

use super::StoreError;

/// The error every step of a batch gets when the batch's transaction itself failed.
pub(super) fn shared_failure(e: &sqlx::Error) -> StoreError {
    StoreError::Batch(e.to_string())
}

impl StoreError {
    /// A copy of this error for another step of the same failed batch.
    pub(super) fn clone_kind(&self) -> StoreError {
        match self {
            StoreError::Conflict => StoreError::Conflict,
            StoreError::KeyTaken => StoreError::KeyTaken,
            StoreError::Busy => StoreError::Busy,
            other => StoreError::Batch(other.to_string()),
        }
    }
}
