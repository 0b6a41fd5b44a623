//! The PostgreSQL metadata store against a real server that is not all there: a
//! dropped table, a missing database, a server that is down or goes away, and a
//! commit waiting for a synchronous standby. (`postgres.rs` holds the conformance
//! suite and the rest.)
//!
//! Needs `PROFILESTORE_TEST_POSTGRES_URL`, as `postgres.rs` does: without it every
//! test prints that it is skipped and passes, unless `PROFILESTORE_REQUIRE_SERVICES=1`.
#![cfg(feature = "postgres")]

use profilestore_testkit::test_deadline;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use profilestore_core::error::StoreErrorKind;
use profilestore_core::ids::IdSource;
use profilestore_core::store::{CommitOutcome, MetadataStore};
use profilestore_core::time::Clock;
use profilestore_runtime::{SystemClock, UuidV7Ids};
use profilestore_stores::postgres::{PostgresMetadataStore, PostgresSettings};
use profilestore_stores::{OpenError, OpenMode, open_metadata};
use sqlx::{Connection, PgConnection};

mod postgres_support;

use postgres_support::*;

#[tokio::test]
async fn a_dropped_table_and_a_missing_database_are_misconfigured() {
    let Some(server) = server() else { return };
    let scratch = server.scratch().await;
    let store = scratch.open().await;
    let mut conn = scratch.conn().await;
    sqlx::query("DROP TABLE profiles").execute(&mut conn).await.unwrap();
    assert_eq!(store.count_records().await.unwrap_err().kind(), StoreErrorKind::Misconfigured);
    store.close().await;
    conn.close().await.ok();
    let missing = with_database(&server.admin, "ps_no_such_database");
    let err = PostgresMetadataStore::open(&missing, OpenMode::Existing).await.unwrap_err();
    let OpenError::Store { source, location, .. } = &err else { panic!("{err:?}") };
    assert_eq!(source.kind(), StoreErrorKind::Misconfigured, "{source}");
    assert!(location.contains("ps_no_such_database"), "{err}");
    scratch.drop(&server).await;
}

/// A closed port on loopback: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_server_that_is_down_is_unavailable_and_named_without_its_password() {
    // Needs no server, but runs with the others so it is not reported twice as skipped.
    let Some(_server) = server() else { return };
    let url = format!("postgres://alice:hunter2@127.0.0.1:{}/profiles", closed_port());
    let settings = PostgresSettings { connect_timeout: Duration::from_secs(1), ..PostgresSettings::default() };
    let timed = tokio::time::timeout(
        Duration::from_secs(5),
        PostgresMetadataStore::open_with(&url, OpenMode::Migrate, settings),
    );
    let err = timed.await.expect("opening a closed port hung").unwrap_err();
    let OpenError::Store { source, location, .. } = &err else { panic!("{err:?}") };
    assert_eq!(source.kind(), StoreErrorKind::Unavailable, "{source}");
    assert!(location.contains("***@127.0.0.1"), "{location}");
    let everything = format!("{err} / {source} / {err:?}");
    assert!(!everything.contains("hunter2"), "the password leaked: {everything}");
    // The same through the URL resolver, with the default settings.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let timed = tokio::time::timeout(Duration::from_secs(10), open_metadata(&url, OpenMode::Existing, clock));
    let err = match timed.await.expect("open_metadata of a closed port hung") {
        Ok(_) => panic!("opened a closed port"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("***@127.0.0.1") && !err.to_string().contains("hunter2"), "{err}");
}

/// A TCP relay to the test server that can be cut, like a server going away.
struct Relay {
    port: u16,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(port: u16, upstream: String) -> Relay {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let tasks = tasks.clone();
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let upstream = upstream.clone();
                    let relay = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    tasks.lock().unwrap().push(relay);
                }
            }
        });
        tasks.lock().unwrap().push(accept);
        Relay { port, tasks }
    }

    /// Closes the listener and every relayed connection.
    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_is_unavailable_until_it_returns() {
    let Some(server) = server() else { return };
    let scratch = server.scratch().await;
    let options: sqlx::postgres::PgConnectOptions = scratch.url.parse().unwrap();
    let upstream = format!("{}:{}", options.get_host(), options.get_port());
    let relay = Relay::start(0, upstream.clone()).await;
    let via_relay = format!("postgres://{}@127.0.0.1:{}/{}", options.get_username(), relay.port, scratch.name);
    let settings = PostgresSettings { acquire_timeout: Duration::from_secs(1), ..PostgresSettings::default() };
    let store = PostgresMetadataStore::open_with(&via_relay, OpenMode::Migrate, settings).await.unwrap();
    store.put_before(&record("before", "{}"), &test_deadline(FAR, LONG)).await.unwrap();

    relay.cut();
    let timed = tokio::time::timeout(Duration::from_secs(5), store.ping()).await.expect("ping hung");
    assert_eq!(timed.unwrap_err().kind(), StoreErrorKind::Unavailable);
    let during = record("during", "{}");
    let far = test_deadline(FAR, LONG);
    let timed = tokio::time::timeout(Duration::from_secs(5), store.put_before(&during, &far));
    assert_eq!(timed.await.expect("put_before hung").unwrap_err().kind(), StoreErrorKind::Unavailable);
    let asked = [UuidV7Ids.next_image_id()];
    let timed = tokio::time::timeout(Duration::from_secs(5), store.referenced(&asked));
    assert_eq!(timed.await.expect("referenced hung").unwrap_err().kind(), StoreErrorKind::Unavailable);

    let back = Relay::start(relay.port, upstream).await;
    store.ping().await.unwrap();
    assert_eq!(store.count_records().await.unwrap(), 1);
    store.close().await;
    back.cut();
    scratch.drop(&server).await;
}

/// `statement_timeout` does not cut a `COMMIT`'s wait for a synchronous standby, and
/// while it waits the row is invisible though its deadline check passed. The store
/// cancels that wait at the request's deadline, so the record is visible (committed
/// locally) by then, and the caller is never told nothing was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_waiting_for_a_synchronous_standby_is_visible_by_its_deadline() {
    let Some(pg) = profilestore_testkit::postgres::PrivateServer::start() else { return };
    let store = PostgresMetadataStore::open(&pg.url, OpenMode::Migrate).await.unwrap();
    let mut admin = PgConnection::connect(&pg.url).await.unwrap();
    let set_standbys = async |admin: &mut PgConnection, names: &str| {
        let sql = format!("ALTER SYSTEM SET synchronous_standby_names = '{names}'");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *admin).await.unwrap();
        sqlx::query("SELECT pg_reload_conf()").execute(&mut *admin).await.unwrap();
    };
    // A standby that never answers: every commit waits for it.
    set_standbys(&mut admin, "nobody").await;

    let r = record("standby", "{}");
    #[allow(clippy::disallowed_methods)] // real time against a real server
    let started = std::time::Instant::now();
    let deadline = test_deadline(FAR, Duration::from_secs(1));
    let outcome = tokio::time::timeout(Duration::from_secs(10), store.put_before(&r, &deadline)).await;
    let outcome = outcome.expect("put_before outlived its request by far");
    match &outcome {
        Ok(CommitOutcome::Committed) => {}
        Err(e) if e.kind() == StoreErrorKind::CommitUnknown => {}
        other => panic!("a commit waiting for a standby answered {other:?}"),
    }
    loop {
        if store.get(&r.user_id).await.unwrap().is_some() {
            break;
        }
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(3), "the record is still invisible {waited:?} after a 1 s request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    set_standbys(&mut admin, "").await;
    store.close().await;
    admin.close().await.ok();
}
