//! Unit tests of the parts that need no server: URL parsing, credential policy, error
//! classification, time rounding. `tests/s3.rs` runs everything against a real server.

use profilestore_core::error::StoreErrorKind;
use profilestore_core::time::Timestamp;

use super::client::{self, NO_CREDENTIALS};
use super::errors::{created_rounded_up, is_missing_key, is_no_such_bucket, kind_of, s3_code};
use super::location::Location;
use crate::open::S3Options;

fn location(s: &str) -> Result<(String, String), String> {
    Location::parse(s).map(|l| (l.bucket, l.prefix.map(|p| p.to_string()).unwrap_or_default()))
}

#[test]
fn bucket_and_prefix_are_split_and_the_prefix_normalised() {
    let ok = |b: &str, p: &str| Ok((b.to_owned(), p.to_owned()));
    assert_eq!(location("bucket"), ok("bucket", ""));
    assert_eq!(location("bucket/"), ok("bucket", ""));
    assert_eq!(location("bucket//"), ok("bucket", ""));
    assert_eq!(location("bucket/images"), ok("bucket", "images"));
    assert_eq!(location("bucket/a/b.c/d_e-f/"), ok("bucket", "a/b.c/d_e-f"));
    assert_eq!(location("bucket//a/b//"), ok("bucket", "a/b"), "slashes at either end are dropped");
    assert_eq!(location("my.bucket-01/p"), ok("my.bucket-01", "p"));
}

#[test]
fn malformed_buckets_and_prefixes_are_refused() {
    for bad in [
        "",
        "/prefix",
        "ab",
        &"a".repeat(64),
        "Bucket",
        "bucket_x",
        "-bucket",
        "bucket-",
        "a..b",
        "a.-b",
        "192.168.1.1",
        "key:secret@bucket",
        "bucket/a//b",
        "bucket/a/../b",
        "bucket/./a",
        "bucket/a b",
        "bucket/a%2Fb",
        "bucket/p?region=eu",
        "bucket/p#x",
    ] {
        assert!(location(bad).is_err(), "{bad:?} accepted");
    }
    assert!(location(&"a".repeat(63)).is_ok());
}

#[test]
fn keys_live_under_the_prefix_and_listings_strip_it() {
    let loc = Location::parse("bucket/run-1/a").unwrap();
    assert_eq!(loc.path_of("ab/x/original").unwrap().as_ref(), "run-1/a/ab/x/original");
    assert_eq!(loc.relative("run-1/a/ab/x/original"), Some("ab/x/original"));
    assert_eq!(loc.relative("run-1/ab/x"), None, "a sibling whose name extends the prefix");
    assert_eq!(loc.relative("run-1/a"), None);
    let root = Location::parse("bucket").unwrap();
    assert_eq!(root.path_of("_profilestore/pairing.json").unwrap().as_ref(), "_profilestore/pairing.json");
    assert_eq!(root.relative("x/y"), Some("x/y"));
}

fn options(key: Option<&str>, secret: Option<&str>, token: Option<&str>, skip: bool) -> S3Options {
    S3Options {
        endpoint: Some("http://127.0.0.1:9".into()),
        region: None,
        access_key_id: key.map(Into::into),
        secret_access_key: secret.map(Into::into),
        session_token: token.map(Into::into),
        skip_signature: skip,
        list_concurrency: None,
    }
}

#[test]
fn credentials_must_be_explicit() {
    let refused = |o: S3Options| {
        let err = client::build("bucket", &o).expect_err("built a client");
        assert_eq!(err.kind(), StoreErrorKind::Misconfigured);
        err.to_string()
    };
    let none = refused(options(None, None, None, false));
    assert!(none.contains(NO_CREDENTIALS), "{none}");
    for needle in ["AWS_ACCESS_KEY_ID", "--s3-access-key-id", "--s3-skip-signature"] {
        assert!(none.contains(needle), "{none} does not mention {needle}");
    }
    assert!(refused(options(Some("k"), None, None, false)).contains("no secret access key"));
    assert!(refused(options(None, Some("s"), None, false)).contains("no access key id"));
    assert!(refused(options(None, None, Some("t"), false)).contains("session token"));
    assert!(refused(options(Some("k"), Some("s"), None, true)).contains("both"));
    assert!(refused(options(Some(""), Some(""), None, false)).contains(NO_CREDENTIALS), "empty values count as unset");

    assert!(client::build("bucket", &options(Some("k"), Some("s"), None, false)).is_ok());
    assert!(client::build("bucket", &options(Some("k"), Some("s"), Some("t"), false)).is_ok());
    assert!(client::build("bucket", &options(None, None, None, true)).is_ok());
}

#[test]
fn endpoints_must_be_http_or_https() {
    let mut o = options(Some("k"), Some("s"), None, false);
    o.endpoint = Some("127.0.0.1:9000".into());
    let err = client::build("bucket", &o).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Misconfigured);
    assert!(err.to_string().contains("http://"), "{err}");
    o.endpoint = Some("https://s3.example.test".into());
    assert!(client::build("bucket", &o).is_ok());
}

#[test]
fn creation_times_move_to_the_next_whole_second() {
    let at = |secs: i64| created_rounded_up(secs);
    // 12:00:07.392 (millisecond precision, as RGW lists) and 12:00:07.000 (truncated,
    // as AWS lists an object stored any time in that second) both become 12:00:08.
    assert_eq!(at(1_700_000_007), Timestamp::from_millis(1_700_000_008_000));
    assert_eq!(at(0), Timestamp::from_millis(1000));
    assert_eq!(at(i64::MAX).as_millis(), i64::MAX, "saturates instead of wrapping");
}

fn generic(text: &str) -> object_store::Error {
    object_store::Error::Generic { store: "S3", source: text.to_owned().into() }
}

#[test]
fn s3_errors_map_by_what_the_caller_can_do() {
    let path = || "k".to_owned();
    let source = || "x".into();
    use object_store::Error as E;
    assert_eq!(kind_of(&E::AlreadyExists { path: path(), source: source() }), StoreErrorKind::AlreadyExists);
    assert_eq!(kind_of(&E::Precondition { path: path(), source: source() }), StoreErrorKind::AlreadyExists);
    assert_eq!(kind_of(&E::PermissionDenied { path: path(), source: source() }), StoreErrorKind::Misconfigured);
    assert_eq!(kind_of(&E::Unauthenticated { path: path(), source: source() }), StoreErrorKind::Misconfigured);
    assert_eq!(kind_of(&E::NotFound { path: path(), source: source() }), StoreErrorKind::Misconfigured);
    // List and DeleteObjects failures come wrapped as Generic.
    let list_403 = "Error performing list request: Error performing GET http://h/b in 1ms - Server returned \
                    non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>AccessDenied</Code></Error>";
    assert_eq!(kind_of(&generic(list_403)), StoreErrorKind::Misconfigured);
    let list_no_bucket = "Server returned non-2xx status code: 404 Not Found: <Error><Code>NoSuchBucket</Code></Error>";
    assert_eq!(kind_of(&generic(list_no_bucket)), StoreErrorKind::Misconfigured);
    let per_key = "DeleteObjects request failed for key p/k: Access Denied (code: AccessDenied)";
    assert_eq!(kind_of(&generic(per_key)), StoreErrorKind::Misconfigured);
    let refused =
        "Error performing GET http://127.0.0.1:9/b in 1s, after 3 retries - HTTP error: error sending request";
    assert_eq!(kind_of(&generic(refused)), StoreErrorKind::Unavailable);
    let server = "Server returned non-2xx status code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>";
    assert_eq!(kind_of(&generic(server)), StoreErrorKind::Unavailable);
    let throttled = "Server returned non-2xx status code: 429 Too Many Requests: ";
    assert_eq!(kind_of(&generic(throttled)), StoreErrorKind::Unavailable);
}

#[test]
fn missing_keys_and_missing_buckets_are_told_apart() {
    let not_found = |body: &str| object_store::Error::NotFound { path: "k".into(), source: body.to_owned().into() };
    assert!(is_no_such_bucket(&not_found("404 Not Found: <Error><Code>NoSuchBucket</Code></Error>")));
    assert!(!is_no_such_bucket(&not_found("404 Not Found: <Error><Code>NoSuchKey</Code></Error>")));
    assert!(!is_no_such_bucket(&not_found("")), "a 404 without a body is a missing key");
    assert!(is_missing_key(&generic("DeleteObjects request failed for key k: gone (code: NoSuchKey)")));
    assert!(!is_missing_key(&generic("DeleteObjects request failed for key k: no (code: AccessDenied)")));
    assert_eq!(s3_code("x <Code>SlowDown</Code> y"), Some("SlowDown"));
    assert_eq!(s3_code("no code here"), None);
}

#[test]
fn list_concurrency_defaults_to_eight_and_is_capped() {
    use std::num::NonZeroUsize;
    assert_eq!(super::list_concurrency(None).unwrap(), super::DEFAULT_LIST_CONCURRENCY);
    assert_eq!(super::list_concurrency(NonZeroUsize::new(1)).unwrap(), 1);
    assert_eq!(super::list_concurrency(NonZeroUsize::new(64)).unwrap(), 64);
    let err = super::list_concurrency(NonZeroUsize::new(65)).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Misconfigured);
    assert!(err.to_string().contains("1 to 64"), "{err}");
}
