//! URLs to stores: every scheme, both modes, and errors that say what to do without
//! printing secrets.

use profilestore_testkit::test_deadline;
use std::sync::Arc;
use std::time::Duration;

use profilestore_core::ids::{IdSource, UserId};
use profilestore_core::store::{CommitOutcome, Record};
use profilestore_core::time::{Clock, Timestamp};
use profilestore_runtime::{SystemClock, UuidV7Ids};
use profilestore_stores::{OpenError, OpenMode, S3Options, open_blobs, open_metadata};

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock::new())
}

fn record() -> Record {
    Record {
        user_id: UserId::parse("u").unwrap(),
        metadata: "{}".into(),
        image_id: UuidV7Ids.next_image_id(),
        content_type: "image/png".into(),
        image_size: 1,
        updated_at: Timestamp::from_millis(0),
    }
}

#[tokio::test]
async fn sqlite_urls_open_the_named_file_in_either_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let url = format!("sqlite://{}", path.display());
    // Existing refuses to create it...
    let err = open_metadata(&url, OpenMode::Existing, clock()).await.err().expect("opened a missing database");
    assert!(matches!(err, OpenError::Missing { .. }), "{err:?}");
    assert!(!path.exists());
    // ...Migrate creates it, and the short spelling opens the same file.
    let store = open_metadata(&url, OpenMode::Migrate, clock()).await.unwrap();
    let outcome = store
        .put_before(&record(), &test_deadline(Timestamp::from_millis(i64::MAX), Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    let same = open_metadata(&format!("sqlite:{}", path.display()), OpenMode::Existing, clock()).await.unwrap();
    assert_eq!(same.count_records().await.unwrap(), 1);
}

#[tokio::test]
async fn file_urls_open_a_directory_only_existing_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs");
    let url = format!("file://{}", blobs.display());
    let err = open_blobs(&url, OpenMode::Existing, clock(), &S3Options::default())
        .await
        .err()
        .expect("opened a missing directory");
    assert!(matches!(err, OpenError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains("profilestore init"), "{err}");
    assert!(!blobs.exists(), "Existing mode created the directory");
    let store = open_blobs(&url, OpenMode::Migrate, clock(), &S3Options::default()).await.unwrap();
    store.ping().await.unwrap();
    assert!(blobs.is_dir());
    open_blobs(&url, OpenMode::Existing, clock(), &S3Options::default()).await.unwrap();
}

#[tokio::test]
async fn memory_urls_give_a_fresh_store_each_time() {
    let a = open_metadata("memory://", OpenMode::Migrate, clock()).await.unwrap();
    let b = open_metadata("memory://", OpenMode::Migrate, clock()).await.unwrap();
    a.put_before(&record(), &test_deadline(Timestamp::from_millis(i64::MAX), Duration::from_secs(1))).await.unwrap();
    assert_eq!(a.count_records().await.unwrap(), 1);
    assert_eq!(b.count_records().await.unwrap(), 0);
    open_blobs("memory://", OpenMode::Existing, clock(), &S3Options::default()).await.unwrap().ping().await.unwrap();
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn a_postgres_backend_not_built_in_is_named_and_secrets_are_not_printed() {
    let err = open_metadata("postgres://alice:hunter2@db.example/profiles", OpenMode::Existing, clock())
        .await
        .err()
        .expect("postgres opened");
    let msg = err.to_string();
    assert!(matches!(err, OpenError::NotCompiled { backend: "postgres", .. }), "{err:?}");
    assert!(msg.contains("backend 'postgres' is not compiled into this build"), "{msg}");
    assert!(!msg.contains("hunter2") && !msg.contains("alice"), "{msg}");
    for url in ["postgresql://db/p", "POSTGRES://db/p"] {
        let err = open_metadata(url, OpenMode::Existing, clock()).await.err().expect("opened");
        assert!(matches!(err, OpenError::NotCompiled { backend: "postgres", .. }), "{url}: {err:?}");
    }
}

#[cfg(not(feature = "s3"))]
#[tokio::test]
async fn an_s3_backend_not_built_in_is_named_and_secrets_are_not_printed() {
    let err =
        open_blobs("s3://bucket/prefix?secret_access_key=shh", OpenMode::Existing, clock(), &S3Options::default())
            .await
            .err()
            .expect("s3 opened");
    assert!(err.to_string().contains("backend 's3' is not compiled into this build"), "{err}");
    assert!(!err.to_string().contains("shh"), "{err}");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn an_unreachable_postgres_is_an_error_naming_the_url_without_its_password() {
    for url in ["postgres://alice:hunter2@127.0.0.1:1/profiles", "POSTGRESQL://alice:hunter2@127.0.0.1:1/profiles"] {
        let err = open_metadata(url, OpenMode::Existing, clock()).await.err().expect("opened a closed port");
        let msg = err.to_string();
        assert!(msg.contains("127.0.0.1:1/profiles"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn s3_without_credentials_is_refused_without_printing_secrets() {
    let err =
        open_blobs("s3://bucket/prefix?secret_access_key=shh", OpenMode::Existing, clock(), &S3Options::default())
            .await
            .err()
            .expect("s3 opened without credentials");
    assert!(!err.to_string().contains("shh"), "{err}");
}

#[tokio::test]
async fn unknown_and_missing_schemes_list_the_supported_ones() {
    let err = open_metadata("redis://cache/0", OpenMode::Migrate, clock()).await.err().expect("redis opened");
    let msg = err.to_string();
    assert!(msg.contains("'redis'") && msg.contains("sqlite://") && msg.contains("memory://"), "{msg}");
    let err =
        open_blobs("ftp://host/x", OpenMode::Migrate, clock(), &S3Options::default()).await.err().expect("ftp opened");
    assert!(err.to_string().contains("file://"), "{err}");
    let err = open_metadata("profiles.db", OpenMode::Migrate, clock()).await.err().expect("bare path opened");
    assert!(matches!(err, OpenError::NoScheme { .. }), "{err:?}");
    assert!(!std::path::Path::new("profiles.db").exists());
}

#[tokio::test]
async fn a_url_of_the_other_store_kind_is_refused() {
    let err = open_blobs("sqlite://x.db", OpenMode::Migrate, clock(), &S3Options::default())
        .await
        .err()
        .expect("sqlite opened as blobs");
    assert!(matches!(err, OpenError::WrongKind { found: "metadata", expected: "blob", .. }), "{err:?}");
    let err = open_metadata("file://./blobs", OpenMode::Migrate, clock()).await.err().expect("dir opened as db");
    assert!(matches!(err, OpenError::WrongKind { found: "blob", expected: "metadata", .. }), "{err:?}");
    assert!(!std::path::Path::new("x.db").exists() && !std::path::Path::new("blobs").exists());
}
