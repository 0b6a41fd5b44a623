//! The transaction of a cleaner's question (`referenced`, the queue's claim), under
//! the store protocol of the module doc, and the turns these questions take within
//! one process.
//!
//! Why turns: each question takes SQLite's write lock. Two at once from one process
//! (the cleaner pipelines its pages) would have the second wait in SQLite's busy
//! handler, which polls with growing sleeps, so it starts well after the first has
//! finished. Waiting on an in-process lock instead hands the turn over the moment the
//! first commits. Writers and other processes still meet the question at SQLite's
//! lock, as before; the protocol does not change.

use std::ops::{Deref, DerefMut};

use profilestore_core::error::StoreError;
use sqlx::SqliteConnection;
use tokio::sync::OwnedMutexGuard;

use super::SqliteMetadataStore;
use super::errors::{self, failed};

/// A cleaner question's transaction: it holds the write lock and this process's turn
/// until it commits or is dropped. Dereferences to its connection.
pub(super) struct Fenced<'a> {
    tx: sqlx::Transaction<'a, sqlx::Sqlite>,
    _turn: OwnedMutexGuard<()>,
}

impl Fenced<'_> {
    /// Commits, then gives the turn to the next question.
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl Deref for Fenced<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl DerefMut for Fenced<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

impl SqliteMetadataStore {
    /// A transaction for a cleaner's question, under the store protocol (see the
    /// module doc): it holds the write lock, so no write is between its deadline check
    /// and its commit; the bound timings are checked; and the fence row is written,
    /// whose commit overwrites any commit frames a killed writer left beyond the WAL's
    /// last valid frame. Dropping the transaction (the cleaner's call timeout) queues
    /// its ROLLBACK, which releases the lock. It waits for this process's earlier
    /// questions first (see above).
    pub(super) async fn begin_fenced(&self, why: &str) -> Result<Fenced<'_>, StoreError> {
        let turn = self.cleaner_turn.clone().lock_owned().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| errors::store_error(&format!("taking the write lock {why}"), e))?;
        self.check_timings(&mut tx).await?;
        sqlx::query("UPDATE cleaner_fence SET queries = queries + 1 WHERE singleton = 1")
            .execute(&mut *tx)
            .await
            .map_err(failed("writing the cleaner's fence row"))?;
        Ok(Fenced { tx, _turn: turn })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use profilestore_core::store::MetadataStore;
    use profilestore_core::time::Timestamp;
    use profilestore_testkit::test_deadline;

    use super::super::tests::record;
    use super::*;
    use crate::open::OpenMode;

    #[tokio::test]
    async fn a_question_waits_for_the_turn_of_an_earlier_one_and_gets_it_when_that_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteMetadataStore::open(dir.path().join("p.db"), OpenMode::Migrate).await.unwrap();
        let named = record("alice");
        let far = test_deadline(Timestamp::from_millis(i64::MAX), Duration::from_secs(5));
        store.put_before(&named, &far).await.unwrap();

        let first = store.begin_fenced("for the test").await.unwrap();
        let ids = [named.image_id];
        let mut second = Box::pin(store.referenced(&ids));
        assert!(futures::poll!(&mut second).is_pending());
        assert!(store.cleaner_turn.try_lock().is_err(), "the first holds the turn");
        first.commit().await.unwrap();
        assert_eq!(second.await.unwrap(), [named.image_id].into_iter().collect());

        // A question abandoned before its commit (the call timeout) gives the turn back.
        let abandoned = store.begin_fenced("for the test").await.unwrap();
        drop(abandoned);
        assert!(store.cleaner_turn.try_lock().is_ok());
        assert_eq!(store.referenced(&[named.image_id]).await.unwrap().len(), 1);
    }
}
