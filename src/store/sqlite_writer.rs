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
//! statements; the writes of steps go through it.
//!
//! The writer keeps the handle lent between its direct uses, and gives it back to sqlx only
//! when a statement goes through sqlx (definitions, tokens, claims, the step-by-step
//! fallback): lending it for each commit cost two more thread wake-ups per commit
//! (measured without them: a fifth more transitions/s for one client committing each
//! transition, about a seventh more at 32 clients).

use ouroboros::self_referencing;
use sqlx::SqliteConnection;
use sqlx::sqlite::LockedSqliteHandle;

/// The connection with its handle lent out by sqlx's thread.
#[self_referencing]
struct Lent {
    conn: SqliteConnection,
    #[borrows(mut conn)]
    #[not_covariant]
    handle: LockedSqliteHandle<'this>,
}

/// Who may use the handle now.
enum Side {
    /// sqlx's thread.
    Sqlx(SqliteConnection),
    /// This writer's direct side; sqlx's thread waits.
    Direct(Box<Lent>),
    /// Neither, for a moment while the handle changes sides.
    Lost,
}

/// The writer connection: sqlx's, and the direct side over the same handle.
pub(super) struct Writer {
    /// Used only while the handle is lent out, and dropped first: its prepared statements
    /// must be finalized before sqlx closes the handle.
    direct: Option<rusqlite::Connection>,
    side: Side,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = match self.side {
            Side::Sqlx(_) => "sqlx",
            Side::Direct(_) => "direct",
            Side::Lost => "lost",
        };
        f.debug_struct("Writer").field("side", &side).finish()
    }
}

/// Prepared statements the direct side keeps: every shape its writes use, with room to
/// spare.
const DIRECT_STATEMENTS: usize = 64;

/// The connection is on neither side (it changed sides and failed half-way).
fn lost() -> sqlx::Error {
    sqlx::Error::WorkerCrashed
}

impl Writer {
    /// Wraps `conn`, opening the direct side over its handle.
    pub(super) async fn new(conn: SqliteConnection) -> Result<Self, sqlx::Error> {
        let mut lent = lend(conn).await.map_err(|(e, _)| e)?;
        let raw = lent.with_handle_mut(|h| h.as_raw_handle().as_ptr());
        // SAFETY: the handle is open and stays open as long as the connection, which this
        // writer owns and lets sqlx close only after dropping `direct` (see `Drop`).
        // `direct` is used only while sqlx's thread lends the handle out (`Writer::direct`,
        // with `Side::Direct`), so the two sides never use it at once; `from_handle` leaves
        // the handle open when dropped.
        #[allow(unsafe_code)]
        let direct = unsafe { rusqlite::Connection::from_handle(raw) }
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        direct.set_prepared_statement_cache_capacity(DIRECT_STATEMENTS);
        Ok(Self {
            direct: Some(direct),
            side: Side::Direct(lent),
        })
    }

    /// The connection, for statements through sqlx: the handle goes back to sqlx's thread
    /// if it was lent.
    pub(super) fn conn(&mut self) -> Result<&mut SqliteConnection, sqlx::Error> {
        self.side = match std::mem::replace(&mut self.side, Side::Lost) {
            Side::Direct(lent) => Side::Sqlx(lent.into_heads().conn),
            other => other,
        };
        match &mut self.side {
            Side::Sqlx(conn) => Ok(conn),
            Side::Direct(_) | Side::Lost => Err(lost()),
        }
    }

    /// Runs `write` on the direct side, on this thread, with the handle lent out (taking it
    /// from sqlx's thread first if sqlx had it). On a runtime with several threads, the
    /// others go on meanwhile; on the writer's own thread (group commit), writing is what it
    /// is for. Not `async`: a caller that went away half-way through taking the handle would
    /// drop the connection before the direct side's statements.
    pub(super) fn direct<R>(
        &mut self,
        write: impl FnOnce(&rusqlite::Connection) -> R,
    ) -> Result<R, sqlx::Error> {
        let many_threads = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let run = || {
            self.take_handle()?;
            match (&self.side, &self.direct) {
                (Side::Direct(_), Some(direct)) => Ok(write(direct)),
                _ => Err(lost()),
            }
        };
        if many_threads {
            tokio::task::block_in_place(run)
        } else {
            run()
        }
    }

    /// Takes the handle from sqlx's thread, if that thread has it, waiting for it there.
    fn take_handle(&mut self) -> Result<(), sqlx::Error> {
        let (side, failed) = match std::mem::replace(&mut self.side, Side::Lost) {
            Side::Sqlx(conn) => match futures_executor::block_on(lend(conn)) {
                Ok(lent) => (Side::Direct(lent), None),
                Err((e, conn)) => (Side::Sqlx(conn), Some(e)),
            },
            other => (other, None),
        };
        self.side = side;
        failed.map_or(Ok(()), Err)
    }
}

/// Takes the handle of `conn` from sqlx's thread; gives `conn` back when it cannot (sqlx's
/// thread has ended), so that it is not closed before the direct side's statements are
/// finalized.
async fn lend(conn: SqliteConnection) -> Result<Box<Lent>, (sqlx::Error, SqliteConnection)> {
    LentAsyncSendTryBuilder {
        conn,
        handle_builder: |conn| Box::pin(conn.lock_handle()),
    }
    .try_build_or_recover()
    .await
    .map(Box::new)
    .map_err(|(e, heads)| (e, heads.conn))
}

impl Drop for Writer {
    fn drop(&mut self) {
        // The direct side's statements are finalized with the handle lent out: sqlx's
        // thread may still be ending a transaction that a dropped sqlx `Transaction` left.
        // When it cannot lend it, its thread has ended and nothing else uses the handle.
        if let Err(e) = self.take_handle() {
            tracing::debug!(%e, "the writer's handle was not lent at closing");
        }
        drop(self.direct.take());
        // Then `side` drops: the handle goes back to sqlx's thread, which closes it.
    }
}
