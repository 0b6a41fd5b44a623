//! SQLite-specific behaviour the shared suite cannot reach: opening modes, migrations,
//! the deadline against SQLite's own clock, timeouts under a held lock, corrupt rows.

use profilestore_testkit::test_deadline;
use std::sync::Arc;
use std::time::Duration;

use profilestore_core::error::StoreErrorKind;
use profilestore_core::ids::{IdSource, UserId};
use profilestore_core::store::{CommitOutcome, MetadataStore, Record};
use profilestore_core::time::{Clock, Time, Timestamp};
use profilestore_runtime::{SystemClock, UuidV7Ids};

use super::SqliteMetadataStore;
use crate::open::{OpenError, OpenMode};

pub(super) fn record(user: &str) -> Record {
    Record {
        user_id: UserId::parse(user).unwrap(),
        metadata: "{}".into(),
        image_id: UuidV7Ids.next_image_id(),
        content_type: "image/png".into(),
        image_size: 3,
        updated_at: Timestamp::from_millis(1),
    }
}

async fn fresh() -> (tempfile::TempDir, SqliteMetadataStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMetadataStore::open(dir.path().join("p.db"), OpenMode::Migrate).await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn existing_mode_never_creates_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    let err = SqliteMetadataStore::open(&path, OpenMode::Existing).await.unwrap_err();
    assert!(matches!(err, OpenError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains("profilestore init"), "{err}");
    assert!(!path.exists(), "Existing mode created the file");
}

#[tokio::test]
async fn existing_mode_refuses_an_uninitialised_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::File::create(&path).unwrap(); // an empty file is an empty SQLite database
    let err = SqliteMetadataStore::open(&path, OpenMode::Existing).await.unwrap_err();
    assert!(matches!(err, OpenError::NotInitialised { .. }), "{err:?}");
    assert!(err.to_string().contains("profilestore init"), "{err}");
    // ...and did not touch the file while looking (no schema, no switch to WAL).
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    assert!(!dir.path().join("empty.db-wal").exists());
}

#[tokio::test]
async fn existing_mode_refuses_a_database_that_left_wal_mode() {
    let (dir, store) = fresh().await;
    store.close().await;
    let path = dir.path().join("p.db");
    // Leaving WAL needs the only connection to the file.
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode = DELETE").fetch_one(&mut conn).await.unwrap();
    assert_eq!(mode, "delete");
    sqlx::Connection::close(conn).await.unwrap();
    let err = SqliteMetadataStore::open(&path, OpenMode::Existing).await.unwrap_err();
    assert!(err.to_string().contains("p.db"), "{err}");
    let OpenError::Store { source, .. } = err else { panic!("{err:?}") };
    assert!(source.to_string().contains("profilestore init"), "{source}");
    // A migrating open puts it back.
    SqliteMetadataStore::open(&path, OpenMode::Migrate).await.unwrap().close().await;
    SqliteMetadataStore::open(&path, OpenMode::Existing).await.unwrap();
}

#[tokio::test]
async fn migrate_creates_parents_and_existing_then_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/p.db");
    let store = SqliteMetadataStore::open(&path, OpenMode::Migrate).await.unwrap();
    store
        .put_before(&record("u"), &test_deadline(Timestamp::from_millis(i64::MAX), Duration::from_secs(5)))
        .await
        .unwrap();
    store.close().await;
    let again = SqliteMetadataStore::open(&path, OpenMode::Existing).await.unwrap();
    assert_eq!(again.count_records().await.unwrap(), 1);
    // Migrating an up-to-date database is a no-op that keeps the data.
    let migrated = SqliteMetadataStore::open(&path, OpenMode::Migrate).await.unwrap();
    assert_eq!(migrated.count_records().await.unwrap(), 1);
}

#[tokio::test]
async fn the_database_runs_in_wal_mode_with_full_sync() {
    let (_dir, store) = fresh().await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(store.pool()).await.unwrap();
    assert_eq!(mode, "wal");
    // 2 = FULL
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(store.pool()).await.unwrap();
    assert_eq!(sync, 2);
}

#[tokio::test]
async fn a_newer_schema_is_refused_in_both_modes() {
    let (dir, store) = fresh().await;
    sqlx::query("INSERT INTO schema_version (version, applied_at_ms) VALUES (99, 0)")
        .execute(store.pool())
        .await
        .unwrap();
    store.close().await;
    let path = dir.path().join("p.db");
    for mode in [OpenMode::Existing, OpenMode::Migrate] {
        let err = SqliteMetadataStore::open(&path, mode).await.unwrap_err();
        assert!(matches!(err, OpenError::SchemaTooNew { found: 99, .. }), "{mode:?}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_opens_migrate_exactly_once() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("race.db");
        let opens = (0..8).map(|_| {
            let path = path.clone();
            tokio::spawn(async move { SqliteMetadataStore::open(path, OpenMode::Migrate).await })
        });
        let mut stores = Vec::new();
        for open in futures::future::join_all(opens).await {
            stores.push(open.unwrap().unwrap());
        }
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM schema_version").fetch_all(stores[0].pool()).await.unwrap();
        let all: Vec<i64> = super::schema::MIGRATIONS.iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, all);
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_reported_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let err = SqliteMetadataStore::open(&path, OpenMode::Existing).await.unwrap_err();
    match err {
        OpenError::Store { source, .. } => assert_eq!(source.kind(), StoreErrorKind::Corrupt, "{source}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sqlite_now_has_millisecond_precision_and_matches_the_system_clock() {
    let (_dir, store) = fresh().await;
    let clock = SystemClock::new();
    let before = clock.now().as_millis();
    let db_now: i64 = sqlx::query_scalar(concat!("SELECT ", db_now_ms!())).fetch_one(store.pool()).await.unwrap();
    let after = clock.now().as_millis();
    assert!(before - 5 <= db_now && db_now <= after + 5, "{before} <= {db_now} <= {after}");
    // julianday('now') is stable within one statement.
    let same: i64 = sqlx::query_scalar(concat!("SELECT ", db_now_ms!(), " = ", db_now_ms!()))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(same, 1);
    // ROUND recovers exact milliseconds that truncation would lose one of.
    let exact: i64 = sqlx::query_scalar(
        "SELECT CAST(ROUND((julianday(1700000000.001, 'unixepoch') - 2440587.5) * 86400000.0) AS INTEGER)",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(exact, 1_700_000_000_001);
    let truncated: i64 =
        sqlx::query_scalar("SELECT CAST((julianday(1700000000.001, 'unixepoch') - 2440587.5) * 86400000.0 AS INTEGER)")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(truncated, 1_700_000_000_000, "without ROUND the clock reads a millisecond early");
}

#[tokio::test]
async fn deadlines_are_judged_by_the_database_clock() {
    let (_dir, store) = fresh().await;
    let now = SystemClock::new().now();
    let past = Timestamp::from_millis(now.as_millis() - 50);
    let r = record("late");
    assert_eq!(
        store.put_before(&r, &test_deadline(past, Duration::from_secs(5))).await.unwrap(),
        CommitOutcome::DeadlineExceeded
    );
    assert_eq!(store.get(&r.user_id).await.unwrap(), None);
    let future = now.plus(Duration::from_secs(60));
    assert_eq!(
        store.put_before(&r, &test_deadline(future, Duration::from_secs(5))).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(store.get(&r.user_id).await.unwrap(), Some(r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_times_out_behind_a_held_lock_writes_nothing() {
    let (_dir, store) = fresh().await;
    // Another writer holds SQLite's write lock for longer than the statement timeout.
    let mut blocker = store.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("DELETE FROM profiles").execute(&mut *blocker).await.unwrap();
    let r = record("blocked");
    let deadline = SystemClock::new().now().plus(Duration::from_secs(60));
    let err = store.put_before(&r, &test_deadline(deadline, Duration::from_millis(200))).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable);
    assert!(err.to_string().contains("nothing was written"), "{err}");
    // The withdrawn write is still in the writer's hands, waiting for the lock; once
    // the lock frees it must be skipped, never committed. A later write queues behind
    // it, so once that one is answered the writer is past the withdrawn one.
    blocker.commit().await.unwrap();
    let later = record("later");
    assert_eq!(
        store.put_before(&later, &test_deadline(deadline, Duration::from_secs(5))).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(store.get(&r.user_id).await.unwrap(), None);
    assert_eq!(store.count_records().await.unwrap(), 1);
    // The writer is healthy afterwards.
    assert_eq!(
        store.put_before(&r, &test_deadline(deadline, Duration::from_secs(5))).await.unwrap(),
        CommitOutcome::Committed
    );
}

#[tokio::test]
async fn referenced_probes_the_image_id_index() {
    let (_dir, store) = fresh().await;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {}", super::REFERENCED)))
        .bind("[]")
        .fetch_all(store.pool())
        .await
        .unwrap();
    let plan: Vec<String> = rows.iter().map(|row| sqlx::Row::get::<String, _>(row, "detail")).collect();
    let plan = plan.join("\n");
    assert!(plan.contains("USING COVERING INDEX profiles_image_id"), "{plan}");
    assert!(!plan.contains("SCAN profiles"), "{plan}");
}

#[tokio::test]
async fn corrupt_rows_are_reported_not_panicked_on() {
    let (_dir, store) = fresh().await;
    let good = record("good");
    store.put_before(&good, &test_deadline(Timestamp::from_millis(i64::MAX), Duration::from_secs(5))).await.unwrap();
    let insert = "INSERT INTO profiles (user_id, metadata, image_id, content_type, image_size, updated_at_ms) \
                  VALUES (?, '{}', ?, 'image/png', ?, 0)";
    // The schema's CHECK refuses a negative size; only tampering with the checks off
    // could store one, which is exactly the corruption reads must survive.
    let mut conn = store.pool().acquire().await.unwrap();
    let refused = sqlx::query(insert).bind("negative").bind(UuidV7Ids.next_image_id().to_string()).bind(-1i64);
    assert!(refused.execute(&mut *conn).await.is_err(), "the CHECK constraint let a negative size in");
    sqlx::query("PRAGMA ignore_check_constraints = ON").execute(&mut *conn).await.unwrap();
    for (user, image, size) in [
        ("bad-image", "not-a-uuid", 1i64),
        ("bad user!", &UuidV7Ids.next_image_id().to_string(), 1),
        ("negative", &UuidV7Ids.next_image_id().to_string(), -1),
    ] {
        sqlx::query(insert).bind(user).bind(image).bind(size).execute(&mut *conn).await.unwrap();
    }
    sqlx::query("PRAGMA ignore_check_constraints = OFF").execute(&mut *conn).await.unwrap();
    drop(conn);
    for user in ["bad-image", "negative"] {
        let err = store.get(&UserId::parse(user).unwrap()).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{user}: {err}");
    }
    let err = store.records_after(None, 10).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
    // Healthy rows stay readable.
    assert_eq!(store.get(&good.user_id).await.unwrap(), Some(good));

    sqlx::query("INSERT INTO pairing VALUES (1, 'nope', '{}', 0)").execute(store.pool()).await.unwrap();
    assert_eq!(store.read_pairing().await.unwrap_err().kind(), StoreErrorKind::Corrupt);
}

#[tokio::test]
async fn an_image_size_sqlite_cannot_hold_is_refused_without_writing() {
    let (_dir, store) = fresh().await;
    let mut r = record("huge");
    r.image_size = u64::MAX;
    let err = store
        .put_before(&r, &test_deadline(Timestamp::from_millis(i64::MAX), Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt);
    assert_eq!(store.count_records().await.unwrap(), 0);
}

#[tokio::test]
async fn a_missing_table_is_misconfigured() {
    let (_dir, store) = fresh().await;
    sqlx::query("DROP TABLE profiles").execute(store.pool()).await.unwrap();
    assert_eq!(store.count_records().await.unwrap_err().kind(), StoreErrorKind::Misconfigured);
}

#[tokio::test]
async fn a_closed_store_is_unavailable() {
    let (_dir, store) = fresh().await;
    let shared: Arc<dyn MetadataStore> = Arc::new(store.clone());
    store.close().await;
    assert_eq!(shared.ping().await.unwrap_err().kind(), StoreErrorKind::Unavailable);
}
