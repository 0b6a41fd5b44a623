//! How a guarded write's `COMMIT` is bounded: timeouts set from the request's time
//! left when it is sent, and a watchdog that cancels a synchronous-standby wait (which
//! no timeout covers) at the request's deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use profilestore_core::error::{StoreError, StoreErrorKind};
use profilestore_core::time::Deadline;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

use super::errors::{DEADLINE_PASSED, sqlstate, store_error};

/// Bounds the statements still to come in this transaction by the request's time left
/// (`$1`, whole milliseconds): sent again just before `COMMIT`, so the commit, its
/// trigger and any synchronous-standby wait end by the request's deadline.
const SET_COMMIT_LIMITS: &str = "SELECT set_config('statement_timeout', $1, true), \
     set_config('idle_in_transaction_session_timeout', $1, true), pg_backend_pid()";

/// The error of a step that leaves nothing written (the transaction rolls back).
pub(super) fn not_written(doing: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| store_error(&format!("{doing}; nothing was written"), e)
}

/// Rolls back a transaction that changed nothing: the outcome is settled whether or
/// not the rollback succeeds.
pub(super) async fn roll_back_unchanged(tx: sqlx::Transaction<'static, sqlx::Postgres>) {
    if let Err(e) = tx.rollback().await {
        tracing::warn!(error = %e, "rolling back an empty transaction failed");
    }
}

/// Commits a guarded write; `Ok(false)` when the deadline refused it (nothing written).
///
/// The statement and idle timeouts are set from the time left *now*, as the commit is
/// sent. PostgreSQL turns the statement timeout off while it commits, so a
/// synchronous-standby wait is bounded by [`cancel_wait_at_deadline`] instead: the
/// cancelled wait leaves the transaction committed locally with a warning, and
/// `COMMIT` succeeds, which counts as committed (it is, on the primary the cleaners
/// query).
pub(super) async fn commit_guarded(
    pool: &PgPool,
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    deadline: &Deadline,
    commit_sent: &AtomicBool,
) -> Result<bool, StoreError> {
    if deadline.passed() {
        roll_back_unchanged(tx).await;
        return Ok(false);
    }
    let (_, _, backend): (String, String, i32) = sqlx::query_as(SET_COMMIT_LIMITS)
        .bind(timeout_millis(deadline.remaining()).to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(not_written("bounding the commit by the request's time left"))?;
    commit_sent.store(true, Ordering::SeqCst);
    let settled = Arc::new(AtomicBool::new(false));
    let watchdog = cancel_wait_at_deadline(pool.connect_options(), backend, deadline.remaining(), settled.clone());
    let committed = tx.commit().await;
    // Only an answer from the server settles the commit; after a lost connection the
    // backend may still be waiting for its standby, so the watchdog stays.
    if matches!(committed, Ok(()) | Err(sqlx::Error::Database(_))) {
        settled.store(true, Ordering::SeqCst);
        watchdog.abort();
    }
    match committed {
        Ok(()) => Ok(true),
        // The commit-time trigger: the database's clock reached the deadline during a
        // wait after the statement's own checks; the commit failed.
        Err(e) if sqlstate(&e).as_deref() == Some(DEADLINE_PASSED) => Ok(false),
        // Operator intervention (a terminated backend, a shutdown) can strike after the
        // transaction committed locally, during its standby wait.
        Err(e) if sqlstate(&e).is_some_and(|code| code.starts_with("57P")) => Err(StoreError::new(
            StoreErrorKind::CommitUnknown,
            format!("PostgreSQL, committing: {e}; the change may or may not have been made"),
        )
        .with_source(e)),
        // The server answered COMMIT with an error: it rolled back.
        Err(e @ sqlx::Error::Database(_)) => Err(store_error("committing; the server refused, nothing was written", e)),
        // No answer to COMMIT: it may or may not have happened.
        Err(e) => Err(StoreError::new(
            StoreErrorKind::CommitUnknown,
            format!("PostgreSQL, committing: {e}; the change may or may not have been made"),
        )
        .with_source(e)),
    }
}

/// From the request's deadline on, until the commit has settled (the server answered,
/// or the backend is idle or gone), cancels `backend`'s wait for a synchronous
/// standby whenever it is in one, looking every 250 ms for up to 2 minutes on a
/// connection of its own.
///
/// Why: `statement_timeout` does not cover a `COMMIT`'s wait for a synchronous
/// standby (PostgreSQL disables it before committing; seen here on PostgreSQL 15: a
/// commit waited 10 s under a 500 ms timeout), and until that wait ends the row is
/// invisible to the cleaners though its deadline check passed. A cancel ends the wait
/// with a warning and the transaction is then visible, committed locally. The task is
/// detached, so a caller that gave up on the commit does not take the bound with it,
/// and it only ever cancels a standby wait, so a reused connection's next statement is
/// never hit. A frozen, killed or shut-down client process leaves the wait unbounded
/// (see `docs/decisions.md`).
fn cancel_wait_at_deadline(
    options: Arc<PgConnectOptions>,
    backend: i32,
    left: Duration,
    settled: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    /// How often the watchdog looks, and for how long at most.
    const EVERY: Duration = Duration::from_millis(250);
    const LOOKS: u32 = 480;
    tokio::spawn(async move {
        tokio::time::sleep(left).await;
        // A connection of its own: the pool may be full of commits waiting the same way.
        let mut conn: Option<PgConnection> = None;
        for _ in 0..LOOKS {
            if settled.load(Ordering::SeqCst) {
                return;
            }
            if conn.is_none() {
                conn = PgConnection::connect_with(&options).await.ok();
            }
            if let Some(c) = conn.as_mut() {
                match sqlx::query_as::<_, (Option<String>, Option<bool>)>(WAITING_COMMIT)
                    .bind(backend)
                    .fetch_optional(c)
                    .await
                {
                    // Gone, or idle: the commit has settled on the server.
                    Ok(None) | Ok(Some((Some(_), None))) => return,
                    Ok(Some((_, Some(true)))) => tracing::warn!(
                        backend,
                        "a commit was still waiting for a synchronous standby at its deadline: cancelled the wait, it is visible locally"
                    ),
                    // Still committing (flushing, in its trigger): look again.
                    Ok(Some(_)) => {}
                    Err(e) => {
                        tracing::warn!(backend, error = %e, "watching a commit past its deadline failed; retrying");
                        conn = None;
                    }
                }
            }
            tokio::time::sleep(EVERY).await;
        }
        tracing::error!(
            backend,
            "a commit still waits for its standby long after its deadline: cancel it and run `profilestore audit`"
        );
    })
}

/// `$1`'s state: `(Some('idle'…), None)` once it is idle; `(_, Some(true))` when it was
/// waiting for a synchronous standby and that wait was just cancelled (cancelling any
/// other wait, or any statement, is never done here).
const WAITING_COMMIT: &str = "SELECT CASE WHEN state LIKE 'idle%' THEN state END, \
     CASE WHEN wait_event = 'SyncRep' THEN pg_cancel_backend(pid) \
          WHEN state LIKE 'idle%' THEN NULL ELSE false END \
     FROM pg_stat_activity WHERE pid = $1";

/// The statement timeout in whole milliseconds, rounded up, at least 1 (0 would mean
/// "no timeout" to PostgreSQL) and at most what the setting holds.
pub(super) fn timeout_millis(timeout: Duration) -> i64 {
    let ms = timeout.as_nanos().div_ceil(1_000_000).max(1);
    i64::try_from(ms).unwrap_or(i64::MAX).min(i64::from(i32::MAX))
}
