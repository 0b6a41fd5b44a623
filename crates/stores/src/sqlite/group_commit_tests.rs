//! Group commit (see `writer`): concurrent changes share one transaction, each is
//! still judged by its own deadline, and a closed store writes nothing more.

use std::time::Duration;

use profilestore_core::error::StoreErrorKind;
use profilestore_core::store::{CommitOutcome, DeleteOutcome, MetadataStore};
use profilestore_core::time::{Clock, Time, Timestamp};
use profilestore_runtime::SystemClock;
use profilestore_testkit::test_deadline;

use super::SqliteMetadataStore;
use super::tests::record;
use crate::open::OpenMode;

async fn fresh() -> (tempfile::TempDir, SqliteMetadataStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMetadataStore::open(dir.path().join("p.db"), OpenMode::Migrate).await.unwrap();
    (dir, store)
}

fn far() -> profilestore_core::time::Deadline {
    test_deadline(SystemClock::new().now().plus(Duration::from_secs(60)), Duration::from_secs(30))
}

/// A deadline whose request time is left on the tick clock but whose instant has
/// passed on the database's clock: only the statement's own check refuses it.
fn passed_on_the_database_clock() -> profilestore_core::time::Deadline {
    test_deadline(Timestamp::from_millis(SystemClock::new().now().as_millis() - 1_000), Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_and_a_late_one_is_refused_alone() {
    let (_dir, store) = fresh().await;
    // Hold the write lock so that every change queues, then let them all go at once.
    let mut blocker = store.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("DELETE FROM profiles").execute(&mut *blocker).await.unwrap();
    let before = store.write_transactions();

    let records: Vec<_> = (0..40).map(|n| record(&format!("user-{n}"))).collect();
    let late = record("late");
    let mut writes: Vec<_> = records
        .iter()
        .map(|r| {
            let (store, r) = (store.clone(), r.clone());
            tokio::spawn(async move { store.put_before(&r, &far()).await })
        })
        .collect();
    let late_write = {
        let (store, late) = (store.clone(), late.clone());
        tokio::spawn(async move { store.put_before(&late, &passed_on_the_database_clock()).await })
    };
    writes.push(late_write);
    blocker.commit().await.unwrap();

    let outcomes: Vec<_> = futures::future::join_all(writes).await.into_iter().map(|j| j.unwrap().unwrap()).collect();
    let (late_outcome, outcomes) = outcomes.split_last().unwrap();
    assert_eq!(*late_outcome, CommitOutcome::DeadlineExceeded, "the late write is refused");
    assert!(outcomes.iter().all(|o| *o == CommitOutcome::Committed), "{outcomes:?}");
    for r in &records {
        assert_eq!(store.get(&r.user_id).await.unwrap().as_ref(), Some(r), "{} is stored", r.user_id);
    }
    assert_eq!(store.get(&late.user_id).await.unwrap(), None, "the late record is not stored");
    let commits = store.write_transactions() - before;
    assert!(
        commits < records.len() as u64 / 2,
        "{} writes took {commits} commits: they did not share transactions",
        records.len()
    );
}

#[tokio::test]
async fn puts_and_deletes_of_one_batch_keep_their_order() {
    let (_dir, store) = fresh().await;
    let r = record("ordered");
    let mut blocker = store.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("DELETE FROM profiles").execute(&mut *blocker).await.unwrap();
    // Queued in this order behind the lock: put, delete, delete, put.
    let put = |store: SqliteMetadataStore| {
        let r = r.clone();
        async move { store.put_before(&r, &far()).await.unwrap() }
    };
    let delete = |store: SqliteMetadataStore| {
        let user = r.user_id.clone();
        async move { store.delete_before(&user, &far()).await.unwrap() }
    };
    let first = tokio::spawn(put(store.clone()));
    tokio::task::yield_now().await;
    let second = tokio::spawn(delete(store.clone()));
    tokio::task::yield_now().await;
    let third = tokio::spawn(delete(store.clone()));
    tokio::task::yield_now().await;
    let fourth = tokio::spawn(put(store.clone()));
    tokio::task::yield_now().await;
    blocker.commit().await.unwrap();
    assert_eq!(first.await.unwrap(), CommitOutcome::Committed);
    assert_eq!(second.await.unwrap(), DeleteOutcome::Deleted);
    assert_eq!(third.await.unwrap(), DeleteOutcome::NotFound);
    assert_eq!(fourth.await.unwrap(), CommitOutcome::Committed);
    assert_eq!(store.get(&r.user_id).await.unwrap(), Some(r));
}

#[tokio::test]
async fn a_closed_store_writes_nothing() {
    let (_dir, store) = fresh().await;
    let r = record("after-close");
    store.close().await;
    let err = store.put_before(&r, &far()).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("nothing was written"), "{err}");
}
