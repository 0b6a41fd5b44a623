//! `Idempotency-Key` on `PUT /v1/profiles/{user_id}`: a client that did not learn
//! whether its write landed (a 5xx, a lost connection) retries with the same key and
//! gets the first write's result instead of writing twice.
//!
//! The key is stored with the record in the commit's own transaction (see
//! `MetadataStore::put_keyed_before`), with a fingerprint of the request: the SHA-256
//! of the stored image and of the metadata. A retry carries the same (stripping is
//! deterministic); another request reusing the key does not, and is refused.

use axum::Json;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use profilestore_core::service::Written;
use profilestore_core::store::IdempotencyKey;

use crate::conditions::with_etag;
use crate::error::ApiError;
use crate::json::ProfileBody;

/// The request header naming a write's key.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on an answer that repeats an earlier write's result.
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// The longest key accepted.
const MAX_KEY_LEN: usize = 255;

/// The request's `Idempotency-Key`, if any: 1 to 255 visible ASCII characters.
pub(crate) fn requested_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::invalid_idempotency_key("send one `Idempotency-Key`, not several"));
    }
    let key =
        value.to_str().ok().filter(|k| (1..=MAX_KEY_LEN).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()));
    match key {
        Some(key) => Ok(Some(key.to_owned())),
        None => Err(ApiError::invalid_idempotency_key(
            "`Idempotency-Key` must be 1 to 255 visible ASCII characters (no spaces)",
        )),
    }
}

/// What identifies a write's request: the stored image's SHA-256 (hex), a dot, and the
/// metadata's.
pub(crate) fn fingerprint(image_sha256: &str, metadata: &str) -> String {
    format!("{image_sha256}.{}", crate::photo::sha256_hex(metadata.as_bytes()))
}

/// The answer to a (possibly keyed) write: this write's record, or the earlier one its
/// key names (`Idempotent-Replayed: true`), or 422 when the key was used for another
/// request. `image_sha256` is this write's stored image's.
pub(crate) fn answer(
    written: Written,
    key: Option<&IdempotencyKey>,
    image_sha256: String,
) -> Result<Response, ApiError> {
    match written {
        Written::New(record) => {
            Ok(with_etag(Json(ProfileBody::new(&record, Some(image_sha256))?).into_response(), &record))
        }
        Written::Earlier { record, fingerprint } => {
            if key.is_some_and(|k| k.fingerprint != fingerprint) {
                return Err(ApiError::idempotency_key_reused());
            }
            let earlier_sha256 = fingerprint.split_once('.').map(|(image, _)| image.to_owned());
            let mut replayed = with_etag(Json(ProfileBody::new(&record, earlier_sha256)?).into_response(), &record);
            replayed.headers_mut().insert(REPLAYED, HeaderValue::from_static("true"));
            Ok(replayed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_visible_characters() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(IDEMPOTENCY_KEY, HeaderValue::from_str(v).unwrap());
            requested_key(&h)
        };
        assert_eq!(with("a-Key_1.2").unwrap().as_deref(), Some("a-Key_1.2"));
        assert_eq!(with(&"k".repeat(255)).unwrap().map(|k| k.len()), Some(255));
        for refused in ["", "has space", &"k".repeat(256)] {
            assert!(with(refused).is_err(), "{refused:?}");
        }
        assert_eq!(requested_key(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn the_fingerprint_names_the_stored_image_and_the_metadata() {
        let a = fingerprint("00ff", "{}");
        assert!(a.starts_with("00ff."));
        assert_ne!(a, fingerprint("00ff", r#"{"x":1}"#));
        assert_ne!(a, fingerprint("ff00", "{}"));
    }
}
