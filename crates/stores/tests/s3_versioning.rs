//! The bucket's versioning against a real S3 server: our SigV4 client reads it, turns
//! it on in a bucket of the test's own, and the start-up check reports what it means
//! for erasure; wrong credentials make the check "unknown", never an error.
//!
//! Needs the `PROFILESTORE_TEST_S3_*` variables (see `tests/s3.rs`); each test makes a
//! fresh bucket, since versioning once turned on can only be suspended.
#![cfg(feature = "s3")]
// Requests are signed with the real time: the server refuses a signature more than
// 15 minutes off its own clock.
#![allow(clippy::disallowed_methods)]

mod s3_support;

use profilestore_core::ids::IdSource;
use profilestore_core::time::{Clock, Timestamp};
use profilestore_runtime::{SystemClock, UuidV7Ids};
use profilestore_stores::S3Options;
use profilestore_stores::s3::{BucketConfigClient, NoncurrentExpiry, Versioning, VersioningCheck, check_versioning};
use s3_support::{Server, server};

fn now() -> Timestamp {
    SystemClock::new().now()
}

/// A bucket no other test uses (`pv-` and 32 hex digits), created on the test server.
async fn fresh_bucket(server: &Server) -> String {
    let id = UuidV7Ids.next_image_id().to_string().to_ascii_lowercase();
    let bucket = format!("pv-{}", id.replace(|c: char| !c.is_ascii_alphanumeric(), ""));
    BucketConfigClient::new(&bucket, &server.options()).unwrap().create_bucket(now()).await.expect("create a bucket");
    bucket
}

#[tokio::test]
async fn a_fresh_bucket_is_unversioned_and_one_with_versioning_on_is_reported_as_keeping_deleted_bytes() {
    let Some(server) = server() else { return };
    let bucket = fresh_bucket(&server).await;
    let client = BucketConfigClient::new(&bucket, &server.options()).unwrap();
    assert_eq!(client.versioning(now()).await.unwrap(), Versioning::Off);
    assert_eq!(check_versioning(&format!("{bucket}/photos"), &server.options(), now()).await, VersioningCheck::Off);

    client.set_versioning(true, now()).await.expect("turn versioning on");
    assert_eq!(client.versioning(now()).await.unwrap(), Versioning::Enabled);
    // No lifecycle configuration at all: the server's NoSuchLifecycleConfiguration is
    // "no rule", not a failure.
    assert_eq!(client.lifecycle(now()).await.unwrap(), []);
    assert_eq!(
        check_versioning(&format!("{bucket}/photos"), &server.options(), now()).await,
        VersioningCheck::Versioned { state: Versioning::Enabled, expiry: NoncurrentExpiry::Never }
    );

    client.set_versioning(false, now()).await.expect("suspend versioning");
    assert_eq!(client.versioning(now()).await.unwrap(), Versioning::Suspended);
    assert!(matches!(
        check_versioning(&bucket, &server.options(), now()).await,
        VersioningCheck::Versioned { state: Versioning::Suspended, .. }
    ));
}

#[tokio::test]
async fn a_check_that_cannot_be_made_is_unknown_and_never_an_error() {
    let Some(server) = server() else { return };
    let bucket = fresh_bucket(&server).await;
    let wrong_secret = S3Options { secret_access_key: Some("not-the-secret".into()), ..server.options() };
    let err = BucketConfigClient::new(&bucket, &wrong_secret).unwrap().versioning(now()).await.unwrap_err();
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{err}");
    let VersioningCheck::Unknown(why) = check_versioning(&bucket, &wrong_secret, now()).await else {
        panic!("a refused check must be unknown");
    };
    assert!(why.contains("403") && !why.contains("not-the-secret"), "{why}");

    let unknown_key = S3Options { access_key_id: Some("nobody".into()), ..server.options() };
    assert!(matches!(check_versioning(&bucket, &unknown_key, now()).await, VersioningCheck::Unknown(_)));
    // Anonymous requests are signed by nobody; the server refuses to say.
    let unsigned = S3Options { access_key_id: None, secret_access_key: None, skip_signature: true, ..server.options() };
    assert!(matches!(check_versioning(&bucket, &unsigned, now()).await, VersioningCheck::Unknown(_)));
    // A bucket that does not exist: the server answers NoSuchBucket.
    let missing = check_versioning("pv-no-such-bucket-here", &server.options(), now()).await;
    assert!(matches!(&missing, VersioningCheck::Unknown(why) if why.contains("NoSuchBucket")), "{missing:?}");
}

#[tokio::test]
async fn a_server_that_is_not_there_is_unknown_within_the_limit() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options = S3Options {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        ..S3Options::default()
    };
    let started = std::time::Instant::now();
    let found = check_versioning("some-bucket/p", &options, now()).await;
    assert!(matches!(&found, VersioningCheck::Unknown(why) if why.contains("no answer")), "{found:?}");
    assert!(started.elapsed() <= profilestore_stores::s3::CHECK_LIMIT);
}
