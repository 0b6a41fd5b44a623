//! The SQLite store protocol (see the module doc): the cleaner's question waits for any
//! write between its deadline check and its commit, and no commit the cleaner did not
//! see can be replayed by a later recovery.

use std::time::Duration;

use profilestore_core::ids::UserId;
use profilestore_core::store::{CommitOutcome, MetadataStore};
use profilestore_core::time::Timestamp;

use super::SqliteMetadataStore;
use super::tests::record;
use crate::open::OpenMode;
use profilestore_testkit::test_deadline;

fn far() -> profilestore_core::time::Deadline {
    test_deadline(Timestamp::from_millis(i64::MAX), Duration::from_secs(60))
}

#[tokio::test]
async fn a_checked_but_uncommitted_write_keeps_the_cleaners_question_from_being_answered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let store = SqliteMetadataStore::open(&path, OpenMode::Migrate).await.unwrap();
    let pending = record("pending");

    // A writer of another process: its checked INSERT is done, its COMMIT not yet.
    let mut writer = store.pool().acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *writer).await.unwrap();
    sqlx::query(
        "INSERT INTO profiles (user_id, metadata, image_id, content_type, image_size, updated_at_ms) \
         VALUES (?, '{}', ?, 'image/png', 3, 1)",
    )
    .bind(pending.user_id.as_str())
    .bind(pending.image_id.to_string())
    .execute(&mut *writer)
    .await
    .unwrap();

    // While it is open the question gets no answer (an "unreferenced" now would let the
    // cleaner delete the image of a record about to land).
    let asked = tokio::time::timeout(Duration::from_millis(500), store.referenced(&[pending.image_id])).await;
    assert!(asked.is_err(), "the cleaner's question was answered during an open write: {asked:?}");

    // The abandoned question left no lock behind: the writer commits, and the next
    // question sees the record.
    sqlx::query("COMMIT").execute(&mut *writer).await.unwrap();
    drop(writer);
    let referenced = store.referenced(&[pending.image_id]).await.unwrap();
    assert!(referenced.contains(&pending.image_id), "after the commit the image is referenced");
    let other = record("other");
    assert_eq!(store.put_before(&other, &far()).await.unwrap(), CommitOutcome::Committed);
}

#[tokio::test]
async fn a_commit_the_cleaner_did_not_see_is_never_replayed_by_a_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let (wal, shm) = (dir.path().join("p.db-wal"), dir.path().join("p.db-shm"));
    let store = SqliteMetadataStore::open(&path, OpenMode::Migrate).await.unwrap();
    store.put_before(&record("first"), &far()).await.unwrap();

    // A writer killed after writing its commit frames but before updating the WAL
    // index: its frames are in the WAL file, the shared index does not count them.
    let index_before = std::fs::read(&shm).unwrap();
    let ghost = record("ghost");
    assert_eq!(store.put_before(&ghost, &far()).await.unwrap(), CommitOutcome::Committed);
    std::fs::write(&shm, &index_before).unwrap();
    assert!(store.get(&ghost.user_id).await.unwrap().is_none(), "the emulated crash hides the commit");

    let referenced = store.referenced(&[ghost.image_id]).await.unwrap();
    assert!(referenced.is_empty(), "the cleaner sees the image unreferenced");

    // Every process now crashes: a new opener recovers the index from the WAL file.
    let crashed = tempfile::tempdir().unwrap();
    std::fs::copy(&path, crashed.path().join("p.db")).unwrap();
    std::fs::copy(&wal, crashed.path().join("p.db-wal")).unwrap();
    let recovered = SqliteMetadataStore::open(crashed.path().join("p.db"), OpenMode::Existing).await.unwrap();
    assert!(recovered.get(&UserId::parse("first").unwrap()).await.unwrap().is_some(), "recovery lost a commit");
    let replayed = recovered.get(&ghost.user_id).await.unwrap();
    assert!(replayed.is_none(), "recovery replayed a commit the cleaner saw missing: {replayed:?}");
}
