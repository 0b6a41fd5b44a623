//! The transactions every guarded write and every cleaner question start with: read
//! committed, under the timings lock (shared), with the bound timings checked, and for
//! a write its statements bounded by the request's time left.

use profilestore_core::error::StoreError;
use profilestore_core::settings::Timings;
use profilestore_core::time::Deadline;
use sqlx::PgConnection;

use super::commit::{not_written, roll_back_unchanged, timeout_millis};
use super::errors::failed;
use super::{DECODE, PostgresMetadataStore, READ_PAIRING, TIMINGS_LOCK};
use crate::decode::timings_changed;

/// Sets the write's limits for the rest of its transaction only (`is_local = true`), so
/// nothing leaks to the next user of the pooled connection. `$1` is the statement
/// timeout in whole milliseconds, `$2` the deadline in milliseconds since the epoch,
/// both built from integers.
const SET_WRITE_LIMITS: &str = "SELECT set_config('statement_timeout', $1, true), \
     set_config('idle_in_transaction_session_timeout', $1, true), \
     set_config('profilestore.put_deadline_ms', $2, true)";

/// Guarded writes and cleaner questions check the timings in a statement after the one
/// that took the timings lock, which needs a fresh snapshot per statement whatever the
/// database's default isolation is.
const READ_COMMITTED: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

impl PostgresMetadataStore {
    /// Starts a deadline-guarded write: a transaction whose statements are bounded by
    /// the request's time left and whose commit-time trigger checks the deadline.
    /// `None` when the request's time has run out already.
    pub(super) async fn begin_guarded(
        &self,
        deadline: &Deadline,
    ) -> Result<Option<sqlx::Transaction<'static, sqlx::Postgres>>, StoreError> {
        let mut tx = self.pool.begin_with(READ_COMMITTED).await.map_err(not_written("starting a transaction"))?;
        if deadline.passed() {
            roll_back_unchanged(tx).await;
            return Ok(None);
        }
        sqlx::query(SET_WRITE_LIMITS)
            .bind(timeout_millis(deadline.remaining()).to_string())
            .bind(deadline.at().as_millis().to_string())
            .execute(&mut *tx)
            .await
            .map_err(not_written("setting the write's timeout and deadline"))?;
        // In a statement of its own, so the statement timeout just set bounds the wait.
        sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
            .bind(TIMINGS_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(not_written("taking the timings lock"))?;
        if let Err(e) = self.check_timings(&mut tx, deadline.timings()).await {
            roll_back_unchanged(tx).await;
            return Err(e);
        }
        Ok(Some(tx))
    }

    /// A transaction for a cleaner's question: read committed, so each statement takes
    /// a fresh snapshot when it starts, after the timings lock is held (shared) and the
    /// bound timings are checked.
    pub(super) async fn begin_cleaner_query(&self) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, StoreError> {
        let mut tx = self.pool.begin_with(READ_COMMITTED).await.map_err(failed("starting a transaction"))?;
        sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
            .bind(TIMINGS_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(failed("taking the timings lock"))?;
        self.check_timings(&mut tx, None).await?;
        Ok(tx)
    }

    /// Fails with `TimingsChanged` when the stored timings are no longer the ones this
    /// process runs under. Called holding the timings lock (shared), in a statement
    /// after the one that took it, so its snapshot sees any change committed before.
    async fn check_timings(&self, tx: &mut PgConnection, request: Option<&Timings>) -> Result<(), StoreError> {
        let Some(bound) = *self.timings.read().unwrap_or_else(|p| p.into_inner()) else { return Ok(()) };
        // A write is judged by the timings its request started under, not by what the
        // process may have adopted since.
        let ours = request.copied().unwrap_or(bound);
        let row =
            sqlx::query(READ_PAIRING).fetch_optional(&mut *tx).await.map_err(not_written("reading the timings"))?;
        let stored = row.as_ref().map(|r| DECODE.pairing(r, failed("reading the pairing"))).transpose()?;
        match stored {
            Some(pairing) if pairing.timings == ours => Ok(()),
            Some(pairing) => Err(timings_changed(&ours, &pairing.timings)),
            // Not paired (yet): nothing to compare; opening refuses unpaired stores.
            None => Ok(()),
        }
    }
}
