//! What only this module can reach: the guarded INSERT on its own (without the
//! commit-time trigger behind it), the write's settings staying inside its transaction,
//! and the plan of `referenced`. Needs `PROFILESTORE_TEST_POSTGRES_URL` like
//! `tests/postgres.rs`, and skips (visibly) without it.

use profilestore_testkit::test_deadline;
use std::time::Duration;

use profilestore_core::ids::{IdSource, UserId};
use profilestore_core::store::{CommitOutcome, MetadataStore, Record};
use profilestore_core::time::{Time, Timestamp};
use profilestore_runtime::UuidV7Ids;
use sqlx::{Connection, PgConnection};

use super::commit::timeout_millis;
use super::changes::PUT_BEFORE;
use super::{PostgresMetadataStore, PostgresSettings, REFERENCED};
use crate::open::OpenMode;

const URL_VAR: &str = "PROFILESTORE_TEST_POSTGRES_URL";

/// A fresh database on the test server, dropped by [`Scratch::drop`].
struct Scratch {
    admin: String,
    name: String,
    url: String,
}

async fn scratch() -> Option<Scratch> {
    let admin = profilestore_testkit::services::service_env(URL_VAR)?;
    let name = format!("ps_{}", UuidV7Ids.next_image_id().as_uuid().simple());
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
    conn.close().await.ok();
    let (base, _db) = admin.split_once('?').map_or(admin.as_str(), |(b, _)| b).rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    Some(Scratch { admin, name, url })
}

impl Scratch {
    async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }

    async fn drop(self) {
        let mut conn = PgConnection::connect(&self.admin).await.unwrap();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
        conn.close().await.ok();
    }
}

fn record(user: &str) -> Record {
    Record {
        user_id: UserId::parse(user).unwrap(),
        metadata: "{}".into(),
        image_id: UuidV7Ids.next_image_id(),
        content_type: "image/png".into(),
        image_size: 3,
        updated_at: Timestamp::from_millis(1),
    }
}

async fn db_now(conn: &mut PgConnection) -> Timestamp {
    Timestamp::from_millis(sqlx::query_scalar(concat!("SELECT ", db_now_ms!())).fetch_one(conn).await.unwrap())
}

#[test]
fn statement_timeouts_round_up_to_whole_milliseconds_and_never_to_zero() {
    assert_eq!(timeout_millis(Duration::ZERO), 1);
    assert_eq!(timeout_millis(Duration::from_micros(1)), 1);
    assert_eq!(timeout_millis(Duration::from_micros(1500)), 2);
    assert_eq!(timeout_millis(Duration::from_secs(3)), 3000);
    assert_eq!(timeout_millis(Duration::MAX), i64::from(i32::MAX));
}

/// The guard of the `DO UPDATE` reads the clock after waiting for the row lock. Run
/// without the deadline setting, so the commit-time trigger cannot be what stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_insert_rereads_the_clock_after_waiting_for_the_row() {
    let Some(scratch) = scratch().await else { return };
    let store = PostgresMetadataStore::open(&scratch.url, OpenMode::Migrate).await.unwrap();
    let original = record("held");
    store
        .put_before(&original, &test_deadline(Timestamp::from_millis(i64::MAX), Duration::from_secs(5)))
        .await
        .unwrap();
    let (mut holder, mut writer) = (scratch.conn().await, scratch.conn().await);
    sqlx::raw_sql("BEGIN; SELECT 1 FROM profiles WHERE user_id = 'held' FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();

    let mut watcher = scratch.conn().await;
    let deadline = db_now(&mut watcher).await.plus(Duration::from_millis(600));
    let late = record("held");
    let write = tokio::spawn(async move {
        // The transaction (and with it `now()`) starts before the deadline; the row
        // lock is released only after it.
        let mut tx = writer.begin().await.unwrap();
        let done = sqlx::query(PUT_BEFORE)
            .bind(late.user_id.as_str())
            .bind(&late.metadata)
            .bind(late.image_id.to_string())
            .bind(&late.content_type)
            .bind(3i64)
            .bind(1i64)
            .bind(deadline.as_millis())
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        done.rows_affected()
    });
    // The write waits for the row lock, and the deadline passes while it waits.
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(db_now(&mut watcher).await < deadline, "the write started waiting after its deadline");
    while db_now(&mut watcher).await < deadline.plus(Duration::from_millis(100)) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    assert_eq!(write.await.unwrap(), 0, "the INSERT judged the deadline by a clock read before its lock wait");
    assert_eq!(store.get(&original.user_id).await.unwrap(), Some(original));
    store.close().await;
    holder.close().await.ok();
    scratch.drop().await;
}

/// `set_config(..., true)` lasts until the transaction ends: the next user of the
/// pooled connection runs with the server's defaults.
#[tokio::test]
async fn write_limits_stay_inside_the_write_transaction() {
    let Some(scratch) = scratch().await else { return };
    let settings = PostgresSettings { max_connections: 1, ..PostgresSettings::default() };
    let store = PostgresMetadataStore::open_with(&scratch.url, OpenMode::Migrate, settings).await.unwrap();
    let deadline = Timestamp::from_millis(i64::MAX);
    let outcome = store.put_before(&record("u"), &test_deadline(deadline, Duration::from_millis(1234))).await.unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    let row: (String, String, Option<String>) = sqlx::query_as(
        "SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout'), \
         current_setting('profilestore.put_deadline_ms', true)",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!((row.0.as_str(), row.1.as_str()), ("0", "0"));
    assert!(row.2.is_none_or(|d| d.is_empty()), "the deadline setting outlived its transaction");
    store.close().await;
    scratch.drop().await;
}

/// `= ANY($1::uuid[])` compares uuids with uuids, so the index on image_id serves it.
#[tokio::test]
async fn referenced_can_probe_the_image_id_index() {
    let Some(scratch) = scratch().await else { return };
    let store = PostgresMetadataStore::open(&scratch.url, OpenMode::Migrate).await.unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    // With so few rows the planner prefers a scan; forbidding it shows the index is usable.
    sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {REFERENCED}")))
        .bind(vec![UuidV7Ids.next_image_id().to_string()])
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("profiles_image_id"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
    drop(tx);
    store.close().await;
    scratch.drop().await;
}
