//! `object_store` S3 errors as [`StoreError`]s, and S3 times as [`Timestamp`]s.
//!
//! `object_store` types its errors by HTTP status for single-object requests (404 →
//! `NotFound`, 403 → `PermissionDenied`, 412 → `Precondition`, ...), but wraps list
//! and per-key DeleteObjects failures as `Generic`, and its retry error type is not
//! public. For those, the S3 error code (`<Code>NoSuchBucket</Code>`, `(code:
//! AccessDenied)`) or the status line in the rendered error decides the kind. S3 error
//! codes are part of S3's documented API, so they are stable to match on.

use profilestore_core::error::{StoreError, StoreErrorKind};
use profilestore_core::time::Timestamp;

/// S3 error codes that say the setup is wrong (bucket, credentials, region), so
/// retrying will not help.
const MISCONFIGURED_CODES: &[&str] = &[
    "NoSuchBucket",
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AuthorizationHeaderMalformed",
    "InvalidToken",
    "ExpiredToken",
    "InvalidBucketName",
    "PermanentRedirect",
    "RequestTimeTooSkewed",
];

/// The error code of an S3 error body (`<Code>X</Code>`) or of a DeleteObjects per-key
/// error as object_store renders it (`(code: X)`), found in `text`.
pub(super) fn s3_code(text: &str) -> Option<&str> {
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let len = text[start..].find(close)?;
        Some(&text[start..start + len])
    };
    between("<Code>", "</Code>").or_else(|| between("(code: ", ")"))
}

/// The HTTP status of a failed request as object_store renders it
/// (`... status code: 403 Forbidden ...`).
fn status_code(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    text.get(at..at + 3)?.parse().ok()
}

/// Whether `e` says the bucket does not exist (as opposed to the key).
pub(super) fn is_no_such_bucket(e: &object_store::Error) -> bool {
    s3_code(&e.to_string()) == Some("NoSuchBucket")
}

/// Whether `e`, from a DeleteObjects request, only says the key was already gone.
pub(super) fn is_missing_key(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. }) || s3_code(&e.to_string()) == Some("NoSuchKey")
}

/// The kind of an S3 failure: what the caller can do about it.
pub(super) fn kind_of(e: &object_store::Error) -> StoreErrorKind {
    use object_store::Error as E;
    match e {
        E::AlreadyExists { .. } | E::Precondition { .. } => StoreErrorKind::AlreadyExists,
        // A key under our prefix that object_store cannot represent (e.g. `a//b`).
        E::InvalidPath { .. } => StoreErrorKind::Corrupt,
        // Callers turn the NotFound they expect (a missing key on get or head) into an
        // answer before this; any other one means the bucket is missing.
        E::NotFound { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::UnknownConfigurationKey { .. } => StoreErrorKind::Misconfigured,
        _ => {
            let text = e.to_string();
            let refused_code = s3_code(&text).is_some_and(|code| MISCONFIGURED_CODES.contains(&code));
            // 4xx other than timeouts and throttling: the request itself is refused.
            let refused_status = status_code(&text).is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429);
            // object_store's words for a redirect without a location: a wrong region.
            let bare_redirect = text.contains("Received redirect without LOCATION");
            if refused_code || refused_status || bare_redirect {
                StoreErrorKind::Misconfigured
            } else {
                // Connection refused or reset, timeouts, 5xx after retries, truncated
                // bodies: the server may answer later.
                StoreErrorKind::Unavailable
            }
        }
    }
}

/// A hint at the usual cause of a misconfiguration, to put before the server's answer.
fn hint(e: &object_store::Error, kind: StoreErrorKind) -> Option<&'static str> {
    if kind != StoreErrorKind::Misconfigured {
        return None;
    }
    let text = e.to_string();
    let code = s3_code(&text);
    if code == Some("NoSuchBucket") || matches!(e, object_store::Error::NotFound { .. }) {
        return Some("the bucket does not exist (profilestore never creates buckets: create it with your S3 tools)");
    }
    let auth_status = matches!(status_code(&text), Some(401 | 403));
    let auth_error =
        matches!(e, object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. });
    if auth_status || auth_error || code.is_some_and(|c| MISCONFIGURED_CODES.contains(&c)) {
        return Some(
            "the server refused our credentials or their permissions (check the access key id, secret access key, \
             session token and region)",
        );
    }
    None
}

/// The innermost cause of `e` when `e`'s own text does not show it: object_store's
/// transport errors say "error sending request" and hide why (connection refused,
/// timed out, reset), which is what an operator needs.
fn hidden_cause(e: &object_store::Error) -> Option<String> {
    let mut cause: &(dyn std::error::Error + 'static) = std::error::Error::source(e)?;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let cause = cause.to_string();
    (!cause.is_empty() && !e.to_string().contains(&cause)).then_some(cause)
}

/// `e` as a store error, saying what was being done at `location` (a redacted URL).
pub(super) fn store_error(location: &str, doing: &str, e: object_store::Error) -> StoreError {
    let kind = kind_of(&e);
    let mut message = match hint(&e, kind) {
        Some(hint) => format!("S3 blob store {location}, {doing}: {hint}: {e}"),
        None => format!("S3 blob store {location}, {doing}: {e}"),
    };
    if let Some(cause) = hidden_cause(&e) {
        message.push_str(&format!(" ({cause})"));
    }
    StoreError::new(kind, message)
}

/// The creation time to report for an object whose `LastModified` falls in the second
/// starting `secs` after the epoch: the start of the next whole second, so always
/// strictly later than `LastModified` itself.
///
/// Why not the time itself: many servers report `LastModified` truncated to the second
/// (AWS in listings, `…T12:00:07.000Z`, for an object stored at 12:00:07.9), so the
/// reported time can be up to a second *earlier* than the object's, and a blob must
/// never look older than it is (the cleaner's age rule). Why not rounding up only
/// sub-second values: a `.000` value cannot tell "truncated" from "exactly on the
/// second", so it, too, moves to the next second. Servers with millisecond precision
/// (Ceph RGW) lose nothing but up to a second of apparent age. Either way the time is
/// when the server stamped the PUT, which some servers do when the request starts and
/// others when it finishes: both are no earlier than the writer's request start, which
/// is what the cleaner's `min_blob_age` is measured from.
pub(super) fn created_rounded_up(secs: i64) -> Timestamp {
    Timestamp::from_millis(secs.saturating_add(1).saturating_mul(1000))
}
