//! The SQLite writer connection, usable two ways: through sqlx, like every other connection,
//! and directly, through SQLite's own interface on the calling thread.
//!
//! sqlx runs each SQLite connection on a thread of its own: every statement is a message to
//! that thread and an answer back, two thread wake-ups. A batch of steps written as a few
//! statements paid for about ten such round trips, which measured as a large part of a
//! commit and as the writer's ceiling (`opsflow bench`, SQLite at 32 clients). sqlx lends a
//! connection's handle out for direct use ([`SqliteConnection::lock_handle`]): its thread
//! then waits, and the handle is the caller's until the lock is given back. The direct side
//! is a `rusqlite` connection over that same handle, with its own cache of prepared
//! statements; the set-based write of a batch goes through it, one round trip for the lock
//! instead of one per statement.

use sqlx::SqliteConnection;

/// The writer connection: sqlx's, and the direct side over the same handle.
pub(super) struct Writer {
    /// Used only while sqlx's thread lends the handle out, and dropped first: its prepared
    /// statements must be finalized before sqlx closes the handle. Always there until then.
    direct: Option<rusqlite::Connection>,
    conn: SqliteConnection,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("conn", &self.conn).finish()
    }
}

/// Prepared statements the direct side keeps: every shape the set-based write uses, with
/// room to spare.
const DIRECT_STATEMENTS: usize = 64;

impl Writer {
    /// Wraps `conn`, opening the direct side over its handle.
    pub(super) async fn new(mut conn: SqliteConnection) -> Result<Self, sqlx::Error> {
        let direct = {
            let mut handle = conn.lock_handle().await?;
            let raw = handle.as_raw_handle().as_ptr();
            // SAFETY: the handle is open and stays open as long as `conn`, which this
            // writer owns and lets sqlx close only after dropping `direct` (see `Drop`).
            // `direct` is used only while sqlx's thread lends the handle out
            // (`Writer::direct`), so the two sides never use it at once; `from_handle`
            // leaves the handle open when dropped.
            #[allow(unsafe_code)]
            let direct = unsafe { rusqlite::Connection::from_handle(raw) }
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            direct.set_prepared_statement_cache_capacity(DIRECT_STATEMENTS);
            direct
        };
        Ok(Self {
            direct: Some(direct),
            conn,
        })
    }

    /// The connection, for statements through sqlx.
    pub(super) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// Runs `write` on the direct side, on this thread, while sqlx's thread waits. On a
    /// runtime with several threads, the others go on meanwhile; on the writer's own
    /// thread (group commit), writing is what it is for.
    pub(super) async fn direct<R>(
        &mut self,
        write: impl FnOnce(&rusqlite::Connection) -> R,
    ) -> Result<R, sqlx::Error> {
        let _lent = self.conn.lock_handle().await?;
        let Some(direct) = &self.direct else {
            return Err(sqlx::Error::WorkerCrashed);
        };
        let many_threads = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        Ok(if many_threads {
            tokio::task::block_in_place(|| write(direct))
        } else {
            write(direct)
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // The direct side's statements are finalized with the handle lent out: sqlx's
        // thread may still be ending a transaction that a dropped sqlx `Transaction` left.
        // When it cannot lend it, its thread has ended and nothing else uses the handle.
        let lent = futures_executor::block_on(self.conn.lock_handle()).ok();
        drop(self.direct.take());
        drop(lent);
    }
}
