//! Committing several steps at once, each in a savepoint of one transaction.

use super::StoreError;

/// Commits `steps` in one transaction of `pool`, each inside a savepoint, writing each with
/// `apply(&mut tx, &step)`: a step that fails is rolled back to its savepoint and refused
/// alone. If the transaction itself fails, every step gets the failure. Evaluates to the
/// results in step order. (A macro because the two databases' transaction types differ
/// while the steps are the same.)
macro_rules! commit_in_savepoints {
    ($pool:expr, $steps:expr, $apply:path) => {{
        let steps: &[Step] = $steps;
        let everyone = |e: &sqlx::Error| $crate::store::batch::all_failed(steps.len(), e);
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

/// The outcomes of a batch of `steps` steps whose transaction itself failed: each step gets
/// the failure.
pub(super) fn all_failed(steps: usize, e: &sqlx::Error) -> Vec<Result<(), StoreError>> {
    (0..steps)
        .map(|_| Err(StoreError::Batch(e.to_string())))
        .collect()
}
