//! The PostgreSQL metadata store against a real server: the shared conformance suite,
//! then what only PostgreSQL can show (concurrent migrations, the deadline judged by
//! the database's clock after lock waits, statement timeouts, abandoned writes,
//! corrupt rows). Servers that are not all there: `postgres_availability.rs`.
//!
//! Needs `PROFILESTORE_TEST_POSTGRES_URL`, a superuser URL to a scratch database on
//! 127.0.0.1 (scripts/test.sh starts one). Each test creates databases of its own
//! (`ps_<hex>`) and drops them when it passes. Without the variable every test prints
//! that it is skipped and passes, unless `PROFILESTORE_REQUIRE_SERVICES=1`, which makes
//! a missing server a failure.
#![cfg(feature = "postgres")]

use profilestore_testkit::test_deadline;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use profilestore_core::error::StoreErrorKind;
use profilestore_core::ids::{IdSource, UserId};
use profilestore_core::store::{CommitOutcome, MetadataStore};
use profilestore_core::time::{Clock, Time, Timestamp};
use profilestore_runtime::{SystemClock, UuidV7Ids};
use profilestore_stores::postgres::{PostgresMetadataStore, PostgresSettings};
use profilestore_stores::{OpenError, OpenMode};
use profilestore_testkit::conformance::{MetadataUnderTest, metadata_store_conformance};
use sqlx::{Connection, PgConnection};

mod postgres_support;

use postgres_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_metadata_store_conforms() {
    let Some(server) = server() else { return };
    let created = Mutex::new(Vec::new());
    let report = metadata_store_conformance(|| async {
        let scratch = server.scratch().await;
        let store = scratch.open().await;
        created.lock().unwrap().push(scratch.name);
        // The database runs on this machine: its clock is the system clock.
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        MetadataUnderTest { store: Arc::new(store), clock }
    })
    .await;
    report.assert_passed();
    server.drop_databases(&created.into_inner().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_ids_page_in_byte_order_in_a_database_that_collates_otherwise() {
    let Some(server) = server() else { return };
    let scratch = server.scratch().await;
    if !scratch.icu {
        scratch.drop(&server).await;
        return profilestore_testkit::services::missing(
            "the PostgreSQL test server has no ICU collation to contrast with",
        )
        .unwrap_or(());
    }
    let mut conn = scratch.conn().await;
    // The database's own collation sorts "a" before "A" and "_x" before "0"; bytes put
    // "A" (0x41) before "a" (0x61) and "0" (0x30) before "_" (0x5f).
    let sorted: Vec<String> = sqlx::query_scalar("SELECT s FROM unnest(ARRAY['A', 'a', '0', '_x']) s ORDER BY s")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(sorted, ["_x", "0", "a", "A"], "the scratch database's collation is not the one this test contrasts");
    let store = scratch.open().await;
    for user in ["a", "A", "_x", "0", "Z", "a-"] {
        store.put_before(&record(user, "{}"), &test_deadline(FAR, LONG)).await.unwrap();
    }
    let all = store.records_after(None, 10).await.unwrap();
    let order: Vec<&str> = all.iter().map(|r| r.user_id.as_str()).collect();
    assert_eq!(order, ["0", "A", "Z", "_x", "a", "a-"]);
    let after = store.records_after(Some(&UserId::parse("Z").unwrap()), 10).await.unwrap();
    let order: Vec<&str> = after.iter().map(|r| r.user_id.as_str()).collect();
    assert_eq!(order, ["_x", "a", "a-"]);
    store.close().await;
    conn.close().await.ok();
    scratch.drop(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_opens_migrate_exactly_once() {
    let Some(server) = server() else { return };
    for _ in 0..3 {
        let scratch = server.scratch().await;
        let opens = (0..8).map(|_| {
            let url = scratch.url.clone();
            tokio::spawn(async move { PostgresMetadataStore::open(&url, OpenMode::Migrate).await })
        });
        for open in futures::future::join_all(opens).await {
            open.unwrap().unwrap().close().await;
        }
        let mut conn = scratch.conn().await;
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM schema_version").fetch_all(&mut conn).await.unwrap();
        assert_eq!(versions, [1, 2, 3, 4]);
        conn.close().await.ok();
        scratch.drop(&server).await;
    }
}

#[tokio::test]
async fn existing_mode_refuses_an_empty_database_and_creates_nothing() {
    let Some(server) = server() else { return };
    let scratch = server.scratch().await;
    let err = PostgresMetadataStore::open(&scratch.url, OpenMode::Existing).await.unwrap_err();
    assert!(matches!(err, OpenError::NotInitialised { .. }), "{err:?}");
    assert!(err.to_string().contains("profilestore init"), "{err}");
    assert!(err.to_string().contains(&scratch.name), "{err}");
    let mut conn = scratch.conn().await;
    let objects: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public') \
              + (SELECT COUNT(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(objects, 0, "an Existing open created tables or functions");

    // Once initialised, Existing opens it and sees what was written; migrating again
    // is a no-op that keeps the data.
    let store = scratch.open().await;
    store.put_before(&record("kept", "{}"), &test_deadline(FAR, LONG)).await.unwrap();
    store.close().await;
    let again = PostgresMetadataStore::open(&scratch.url, OpenMode::Existing).await.unwrap();
    assert_eq!(again.count_records().await.unwrap(), 1);
    again.close().await;
    let migrated = scratch.open().await;
    assert_eq!(migrated.count_records().await.unwrap(), 1);
    migrated.close().await;
    conn.close().await.ok();
    scratch.drop(&server).await;
}

#[tokio::test]
async fn a_newer_schema_is_refused_in_both_modes() {
    let Some(server) = server() else { return };
    let scratch = server.scratch().await;
    scratch.open().await.close().await;
    let mut conn = scratch.conn().await;
    sqlx::query("INSERT INTO schema_version (version, applied_at_ms) VALUES (99, 0)").execute(&mut conn).await.unwrap();
    for mode in [OpenMode::Existing, OpenMode::Migrate] {
        let err = PostgresMetadataStore::open(&scratch.url, mode).await.unwrap_err();
        assert!(matches!(err, OpenError::SchemaTooNew { found: 99, .. }), "{mode:?}: {err:?}");
    }
    conn.close().await.ok();
    scratch.drop(&server).await;
}

#[tokio::test]
async fn deadlines_are_judged_by_the_database_clock() {
    let Some(server) = server() else { return };
    let scratch = server.scratch().await;
    let store = scratch.open().await;
    let mut conn = scratch.conn().await;
    let r = record("timed", r#"{"v":1}"#);
    let past = Timestamp::from_millis(db_now(&mut conn).await.as_millis() - 1);
    assert_eq!(store.put_before(&r, &test_deadline(past, LONG)).await.unwrap(), CommitOutcome::DeadlineExceeded);
    assert_eq!(store.get(&r.user_id).await.unwrap(), None);
    assert!(store.referenced(&[r.image_id]).await.unwrap().is_empty());
    let soon = db_now(&mut conn).await.plus(Duration::from_secs(60));
    assert_eq!(store.put_before(&r, &test_deadline(soon, LONG)).await.unwrap(), CommitOutcome::Committed);
    // A replace already past its deadline leaves the stored record alone.
    let late = record("timed", r#"{"v":2}"#);
    let past = Timestamp::from_millis(db_now(&mut conn).await.as_millis() - 1);
    assert_eq!(store.put_before(&late, &test_deadline(past, LONG)).await.unwrap(), CommitOutcome::DeadlineExceeded);
    assert_eq!(store.get(&r.user_id).await.unwrap(), Some(r));
    store.close().await;
    conn.close().await.ok();
    scratch.drop(&server).await;
}

/// How a blocker holds up a write of user `held`: the write waits for the blocker's
/// transaction, which then ends as `release` says.
#[derive(Debug, Clone, Copy)]
enum Blocker {
    /// `SELECT ... FOR UPDATE` on the existing row; commit.
    LocksTheRow,
    /// An uncommitted INSERT of the same user id; roll back (so the write's INSERT
    /// proceeds after the wait, the case an INSERT's own condition cannot see).
    InsertsTheSameUser,
    /// An uncommitted DELETE of the existing row; commit (the row is gone after the
    /// wait, so the write inserts).
    DeletesTheRow,
}

impl Blocker {
    async fn hold(self, conn: &mut PgConnection) {
        let held = UuidV7Ids.next_image_id().to_string();
        sqlx::raw_sql("BEGIN").execute(&mut *conn).await.unwrap();
        let statement = match self {
            Blocker::LocksTheRow => sqlx::query("SELECT 1 FROM profiles WHERE user_id = 'held' FOR UPDATE"),
            Blocker::InsertsTheSameUser => sqlx::query(INSERT_RAW).bind("held").bind(held).bind(1i64),
            Blocker::DeletesTheRow => sqlx::query("DELETE FROM profiles WHERE user_id = 'held'"),
        };
        assert_eq!(statement.execute(&mut *conn).await.unwrap().rows_affected(), 1, "{self:?}");
    }

    async fn release(self, conn: &mut PgConnection) {
        let end = if matches!(self, Blocker::InsertsTheSameUser) { "ROLLBACK" } else { "COMMIT" };
        sqlx::raw_sql(end).execute(conn).await.unwrap();
    }

    /// Whether the user's row exists before the blocker starts.
    fn needs_existing_row(self) -> bool {
        !matches!(self, Blocker::InsertsTheSameUser)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deadline_that_passes_during_a_lock_wait_stops_the_write() {
    let Some(server) = server() else { return };
    for blocker in [Blocker::LocksTheRow, Blocker::InsertsTheSameUser, Blocker::DeletesTheRow] {
        for deadline_passes in [true, false] {
            let scratch = server.scratch().await;
            let store = Arc::new(scratch.open().await);
            let original = record("held", r#"{"v":"original"}"#);
            if blocker.needs_existing_row() {
                store.put_before(&original, &test_deadline(FAR, LONG)).await.unwrap();
            }
            let (mut holder, mut watcher) = (scratch.conn().await, scratch.conn().await);
            blocker.hold(&mut holder).await;

            // Long enough for the write to reach its lock wait first on a busy machine.
            let wait = if deadline_passes { Duration::from_millis(1500) } else { Duration::from_secs(30) };
            let deadline = db_now(&mut watcher).await.plus(wait);
            let late = record("held", r#"{"v":"late"}"#);
            let write = tokio::spawn({
                let (store, late) = (store.clone(), late.clone());
                async move { store.put_before(&late, &test_deadline(deadline, LONG)).await }
            });
            // The write is waiting for the lock before its deadline...
            until_someone_waits(&mut watcher, &scratch.name).await;
            assert!(db_now(&mut watcher).await < deadline, "{blocker:?}: the write started waiting too late");
            // ...and is still waiting when the deadline passes (or, in the control
            // case, for a while).
            if deadline_passes {
                until_db_clock_passes(&mut watcher, deadline, Duration::from_millis(200)).await;
            } else {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let waiting = lock_waiters(&mut watcher, &scratch.name).await;
            assert_eq!(waiting, 1, "{blocker:?}: the write is not waiting for the lock any more");
            blocker.release(&mut holder).await;

            let outcome = write.await.unwrap().unwrap();
            let stored = store.get(&original.user_id).await.unwrap();
            if deadline_passes {
                assert_eq!(outcome, CommitOutcome::DeadlineExceeded, "{blocker:?}");
                let expected = match blocker {
                    Blocker::LocksTheRow => Some(original.clone()),
                    Blocker::InsertsTheSameUser | Blocker::DeletesTheRow => None,
                };
                assert_eq!(stored, expected, "{blocker:?}: a write landed after its deadline");
                assert!(store.referenced(&[late.image_id]).await.unwrap().is_empty(), "{blocker:?}");
            } else {
                assert_eq!(outcome, CommitOutcome::Committed, "{blocker:?} (control)");
                assert_eq!(stored, Some(late), "{blocker:?} (control)");
            }
            store.close().await;
            holder.close().await.ok();
            watcher.close().await.ok();
            scratch.drop(&server).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_statement_timeout_shorter_than_a_lock_wait_is_unavailable_and_writes_nothing() {
    let Some(server) = server() else { return };
    let scratch = server.scratch().await;
    let store = scratch.open().await;
    let original = record("held", r#"{"v":"original"}"#);
    store.put_before(&original, &test_deadline(FAR, LONG)).await.unwrap();
    let (mut holder, mut watcher) = (scratch.conn().await, scratch.conn().await);
    Blocker::LocksTheRow.hold(&mut holder).await;

    let blocked = record("held", r#"{"v":"blocked"}"#);
    let short = test_deadline(FAR, Duration::from_millis(300));
    let timed = tokio::time::timeout(Duration::from_secs(5), store.put_before(&blocked, &short));
    let err = timed.await.expect("put_before outlived its statement timeout").unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    // The server cancelled the waiting statement itself (statement_timeout): it does
    // not wait on for the lock behind the abandoned client.
    let mut gone = false;
    for _ in 0..100 {
        if lock_waiters(&mut watcher, &scratch.name).await == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone, "the abandoned write still waits for the lock on the server");
    Blocker::LocksTheRow.release(&mut holder).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.get(&original.user_id).await.unwrap(), Some(original));
    // The pool is healthy afterwards.
    assert_eq!(store.put_before(&blocked, &test_deadline(FAR, LONG)).await.unwrap(), CommitOutcome::Committed);
    store.close().await;
    holder.close().await.ok();
    watcher.close().await.ok();
    scratch.drop(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abandoned_write_rolls_back_even_when_its_statement_goes_on() {
    let Some(server) = server() else { return };
    let scratch = server.scratch().await;
    let settings = PostgresSettings { max_connections: 1, ..PostgresSettings::default() };
    let store = PostgresMetadataStore::open_with(&scratch.url, OpenMode::Migrate, settings).await.unwrap();
    let (mut holder, mut watcher) = (scratch.conn().await, scratch.conn().await);
    Blocker::InsertsTheSameUser.hold(&mut holder).await;
    // The caller gives up (its own timeout, a dropped request) while the INSERT waits.
    let abandoned = record("held", "{}");
    let dropped =
        tokio::time::timeout(Duration::from_millis(300), store.put_before(&abandoned, &test_deadline(FAR, LONG))).await;
    assert!(dropped.is_err(), "the write finished while the row was held: {dropped:?}");
    assert_eq!(lock_waiters(&mut watcher, &scratch.name).await, 1, "the abandoned INSERT should still be waiting");
    // The blocker rolls back, so the abandoned INSERT goes ahead on the server; the
    // ROLLBACK sqlx queued when the transaction was dropped must follow it.
    Blocker::InsertsTheSameUser.release(&mut holder).await;
    let again = record("after", "{}");
    // With one pooled connection this waits until the abandoned one is back.
    assert_eq!(store.put_before(&again, &test_deadline(FAR, LONG)).await.unwrap(), CommitOutcome::Committed);
    assert_eq!(store.get(&abandoned.user_id).await.unwrap(), None, "an abandoned write committed");
    assert_eq!(store.count_records().await.unwrap(), 1);
    store.close().await;
    holder.close().await.ok();
    watcher.close().await.ok();
    scratch.drop(&server).await;
}

#[tokio::test]
async fn referenced_answers_thousands_of_ids() {
    let Some(server) = server() else { return };
    let scratch = server.scratch().await;
    let store = scratch.open().await;
    let mut asked: Vec<_> = (0..3000).map(|_| UuidV7Ids.next_image_id()).collect();
    let mut expected = std::collections::HashSet::new();
    for (n, at) in [0usize, 999, 1000, 2047, 2999].into_iter().enumerate() {
        let mut r = record(&format!("u{n}"), "{}");
        r.image_id = asked[at];
        store.put_before(&r, &test_deadline(FAR, LONG)).await.unwrap();
        expected.insert(asked[at]);
    }
    // A record naming an image nobody asks about is not in the answer.
    store.put_before(&record("other", "{}"), &test_deadline(FAR, LONG)).await.unwrap();
    asked.extend_from_within(..10);
    assert_eq!(store.referenced(&asked).await.unwrap(), expected);
    store.close().await;
    scratch.drop(&server).await;
}

#[tokio::test]
async fn corrupt_rows_are_reported_not_panicked_on() {
    let Some(server) = server() else { return };
    let scratch = server.scratch().await;
    let store = scratch.open().await;
    let good = record("good", "{}");
    store.put_before(&good, &test_deadline(FAR, LONG)).await.unwrap();
    let mut conn = scratch.conn().await;
    // The CHECK refuses a negative size; only tampering can store one.
    let v7 = || UuidV7Ids.next_image_id().to_string();
    let refused = sqlx::query(INSERT_RAW).bind("negative").bind(v7()).bind(-1i64).execute(&mut conn).await;
    assert!(refused.is_err(), "the CHECK constraint let a negative size in");
    sqlx::query("ALTER TABLE profiles DROP CONSTRAINT profiles_image_size_check").execute(&mut conn).await.unwrap();
    for (user, image, size) in [
        ("v4-image", "6f1c2a4e-8f1b-4c2d-9e3f-0a1b2c3d4e5f".to_owned(), 1i64),
        ("bad user!", v7(), 1),
        ("negative", v7(), -1),
    ] {
        sqlx::query(INSERT_RAW).bind(user).bind(image).bind(size).execute(&mut conn).await.unwrap();
    }
    for user in ["v4-image", "negative"] {
        let err = store.get(&UserId::parse(user).unwrap()).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{user}: {err}");
    }
    // "bad user!" sorts first in byte order: the listing meets it at once.
    let err = store.records_after(None, 10).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("bad user!"), "{err}");
    assert_eq!(store.get(&good.user_id).await.unwrap(), Some(good));

    sqlx::query("INSERT INTO pairing VALUES (1, '6f1c2a4e-8f1b-4c2d-9e3f-0a1b2c3d4e5f', '{\"nope\": 1}', 0)")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(store.read_pairing().await.unwrap_err().kind(), StoreErrorKind::Corrupt);
    store.close().await;
    conn.close().await.ok();
    scratch.drop(&server).await;
}
