//! Shared by the PostgreSQL tests: the scratch server and databases, records, and
//! waits on the database's own clock and lock table.
#![allow(dead_code)]

use std::io::Write as _;
use std::time::Duration;

use profilestore_core::ids::{IdSource, UserId};
use profilestore_core::store::Record;
use profilestore_core::time::{Time, Timestamp};
use profilestore_runtime::UuidV7Ids;
use profilestore_stores::OpenMode;
use profilestore_stores::postgres::PostgresMetadataStore;
use sqlx::{Connection, PgConnection};

pub const URL_VAR: &str = "PROFILESTORE_TEST_POSTGRES_URL";

/// The test server's admin URL, or `None` after saying (outside the test harness's
/// output capture, so it shows in a passing run) that the test is skipped.
pub fn server() -> Option<Server> {
    profilestore_testkit::services::service_env(URL_VAR).map(|admin| Server { admin })
}

/// `url` with its database name replaced by `db` (query string kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_at = base.find("://").map_or(0, |i| i + 3);
    let base = base[authority_at..].find('/').map_or(base, |i| &base[..authority_at + i]);
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

pub struct Server {
    pub admin: String,
}

/// A database of one test's own, made empty.
pub struct Scratch {
    pub name: String,
    pub url: String,
    /// Whether its default collation is ICU's en-US (which does not sort by bytes).
    pub icu: bool,
}

impl Server {
    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.admin).await.expect("connect to the test server's admin URL")
    }

    /// A fresh empty database whose default collation is en-US where the server has
    /// ICU, so the store's own `COLLATE "C"` is what keeps byte order.
    pub async fn scratch(&self) -> Scratch {
        let name = format!("ps_{}", UuidV7Ids.next_image_id().as_uuid().simple());
        let mut admin = self.admin().await;
        let icu = format!("CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'");
        let icu = match sqlx::raw_sql(sqlx::AssertSqlSafe(icu)).execute(&mut admin).await {
            Ok(_) => true,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "note: no ICU collation ({e}); using the server's default");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("create a scratch database");
                false
            }
        };
        admin.close().await.ok();
        Scratch { url: with_database(&self.admin, &name), name, icu }
    }

    pub async fn drop_databases(&self, names: &[String]) {
        let mut admin = self.admin().await;
        for name in names {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.expect("drop a scratch database");
        }
        admin.close().await.ok();
    }
}

impl Scratch {
    pub async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.expect("connect to the scratch database")
    }

    pub async fn open(&self) -> PostgresMetadataStore {
        PostgresMetadataStore::open(&self.url, OpenMode::Migrate).await.expect("open the scratch database")
    }

    pub async fn drop(self, server: &Server) {
        server.drop_databases(&[self.name]).await;
    }
}

pub fn record(user: &str, metadata: &str) -> Record {
    Record {
        user_id: UserId::parse(user).unwrap(),
        metadata: metadata.into(),
        image_id: UuidV7Ids.next_image_id(),
        content_type: "image/png".into(),
        image_size: 3,
        updated_at: Timestamp::from_millis(1),
    }
}

pub const FAR: Timestamp = Timestamp::from_millis(i64::MAX);
pub const LONG: Duration = Duration::from_secs(30);

/// The database's clock, in milliseconds since the epoch.
pub async fn db_now(conn: &mut PgConnection) -> Timestamp {
    let ms: i64 = sqlx::query_scalar("SELECT CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT)")
        .fetch_one(conn)
        .await
        .unwrap();
    Timestamp::from_millis(ms)
}

/// How many backends of database `db` wait for a heavyweight lock right now.
pub async fn lock_waiters(conn: &mut PgConnection, db: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'")
        .bind(db)
        .fetch_one(conn)
        .await
        .unwrap()
}

/// Polls until some backend of `db` waits for a lock; panics after 5 s.
pub async fn until_someone_waits(conn: &mut PgConnection, db: &str) {
    for _ in 0..500 {
        if lock_waiters(conn, db).await > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no backend started waiting for the held lock");
}

/// Sleeps until the database's clock is at least `margin` past `t`.
pub async fn until_db_clock_passes(conn: &mut PgConnection, t: Timestamp, margin: Duration) {
    let target = t.plus(margin);
    loop {
        let now = db_now(conn).await;
        if now >= target {
            return;
        }
        let left = u64::try_from(target.as_millis() - now.as_millis()).unwrap_or(1);
        tokio::time::sleep(Duration::from_millis(left)).await;
    }
}

pub const INSERT_RAW: &str = "INSERT INTO profiles (user_id, metadata, image_id, content_type, image_size, updated_at_ms) \
                          VALUES ($1, '{}', $2::uuid, 'image/png', $3, 0)";
