//! `PATCH /v1/profiles/{user_id}`: a metadata-only update that keeps the image, as a
//! JSON Merge Patch (RFC 7396) of the stored metadata.
//!
//! The service commits it as a compare-and-set of the record it read, so the image it
//! keeps is never re-attached after another write replaced it, and a concurrent
//! change is read again rather than overwritten.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use profilestore_core::error::InvalidInput;
use serde_json::{Map, Value};

use crate::conditions::{change_condition, profile_etag};
use crate::error::ApiError;
use crate::json::ProfileBody;
use crate::routes::{AppState, UserPath};
use crate::upload::MAX_METADATA_SIZE;

/// The media types a patch may be sent as: RFC 7396's, and plain JSON (read the same way).
const PATCH_TYPES: [&str; 2] = ["application/merge-patch+json", "application/json"];

/// `PATCH /v1/profiles/{user_id}`: merges the body into the profile's metadata.
#[utoipa::path(
    patch,
    path = "/v1/profiles/{user_id}",
    tag = "profiles",
    summary = "Update a profile's metadata, keeping its image (JSON Merge Patch, RFC 7396)",
    description = "The body is a JSON object merged into the stored metadata: members with `null` are removed, \
        objects merge recursively, anything else replaces. The image stays; `ETag` changes. \
        `If-Match` with a read's `ETag` makes it apply only to that version (412 otherwise).",
    params(UserPath),
    request_body(content = Object, content_type = "application/merge-patch+json"),
    responses((status = 200, description = "the profile as stored", body = ProfileBody)),
)]
pub(crate) async fn patch_profile(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    request: Request,
) -> Result<Response, ApiError> {
    state.config().auth.authorize_write(request.headers(), &user)?;
    let condition = change_condition(request.headers())?;
    check_content_type(request.headers())?;
    let limit = usize::try_from(MAX_METADATA_SIZE).unwrap_or(usize::MAX);
    let body = axum::body::to_bytes(request.into_body(), limit).await.map_err(|_| too_large())?;
    let patch: Value = serde_json::from_slice(&body)
        .map_err(|e| InvalidInput::new("invalid_metadata", format!("the patch is not valid JSON: {e}")))?;
    if !patch.is_object() {
        return Err(InvalidInput::new("metadata_not_object", "the patch must be a JSON object").into());
    }
    let record = state
        .service()
        .update_metadata(&user, &condition, |current| merged(current, &patch))
        .await?
        .ok_or_else(ApiError::profile_not_found)?;
    // The image did not change: its hash is not recomputed (a read names it).
    let mut answer = Json(ProfileBody::new(&record, None)?).into_response();
    answer.headers_mut().insert(header::ETAG, profile_etag(&record));
    Ok(answer)
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = declared.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if PATCH_TYPES.contains(&essence.as_str()) {
        return Ok(());
    }
    Err(ApiError::new(
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "a patch is `application/merge-patch+json` (or `application/json`)",
    ))
}

fn too_large() -> InvalidInput {
    InvalidInput::new("metadata_too_large", format!("the metadata is larger than {MAX_METADATA_SIZE} bytes"))
}

/// The stored metadata `current` with `patch` merged in, within the metadata limit.
fn merged(current: &str, patch: &Value) -> Result<String, InvalidInput> {
    // The API stores only JSON objects; anything else is replaced as RFC 7396 says.
    let mut target: Value = serde_json::from_str(current).unwrap_or(Value::Object(Map::new()));
    merge(&mut target, patch);
    let text = target.to_string();
    if text.len() as u64 > MAX_METADATA_SIZE {
        return Err(too_large());
    }
    Ok(text)
}

/// RFC 7396's MergePatch(target, patch), in place.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(fields) = target else { unreachable!("made an object above") };
    for (name, value) in members {
        if value.is_null() {
            fields.remove(name);
        } else {
            merge(fields.entry(name.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_as_rfc_7396_says() {
        // The RFC's own example (section 3).
        let current = json!({"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
            "tags": ["example", "sample"], "content": "This will be unchanged"});
        let patch = json!({"title": "Hello!", "phoneNumber": "+01-123-456-7890",
            "author": {"familyName": null}, "tags": ["example"]});
        let expected = json!({"title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
            "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"});
        let out: Value = serde_json::from_str(&merged(&current.to_string(), &patch).unwrap()).unwrap();
        assert_eq!(out, expected);
    }

    #[test]
    fn a_merge_over_the_metadata_limit_is_refused() {
        let big = "x".repeat(MAX_METADATA_SIZE as usize);
        let error = merged("{}", &json!({ "bio": big })).unwrap_err();
        assert_eq!(error.code, "metadata_too_large");
    }
}
