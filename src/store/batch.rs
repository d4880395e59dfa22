//! Committing several steps at once, each in a savepoint of one transaction.

use super::StoreError;

/// Commits `steps` in one transaction of `pool`, each inside a savepoint, writing each with
/// `apply(&mut tx, &step)`: a step that fails is rolled back to its savepoint and refused
/// alone. If the transaction itself fails, every step gets the failure. Evaluates to the
/// results in step order. (A macro because the two databases' transaction types differ
/// while the steps are the same.)
macro_rules! commit_in_savepoints {
    ($pool:expr, $steps:expr, $apply:path) => {{
        use $crate::store::batch::shared_failure;
        let steps: &[Step] = $steps;
        let everyone = |e: &sqlx::Error| -> Vec<Result<(), StoreError>> {
            let failure = shared_failure(e);
            steps.iter().map(|_| Err(failure.clone_kind())).collect()
        };
        match $pool.begin().await {
            Err(e) => everyone(&e),
            Ok(mut tx) => {
                let mut results = Vec::with_capacity(steps.len());
                let mut broken = None;
                for step in steps {
                    if let Err(e) = sqlx::query("SAVEPOINT step").execute(&mut *tx).await {
                        broken = Some(e);
                        break;
                    }
                    let outcome = $apply(&mut tx, step).await;
                    let close = if outcome.is_ok() {
                        "RELEASE SAVEPOINT step"
                    } else {
                        "ROLLBACK TO SAVEPOINT step"
                    };
                    if let Err(e) = sqlx::query(close).execute(&mut *tx).await {
                        broken = Some(e);
                        break;
                    }
                    results.push(outcome);
                }
                match broken {
                    // The transaction is unusable: nothing of the batch is written.
                    Some(e) => everyone(&e),
                    None => match tx.commit().await {
                        Ok(()) => results,
                        Err(e) => everyone(&e),
                    },
                }
            }
        }
    }};
}
pub(super) use commit_in_savepoints;

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
