//! Every refusal the API answers, as one type with a status, a stable code and a
//! message, rendered as `{"error": {"code": "...", "message": "..."}}`.
//!
//! The mapping from causes to statuses lives here and nowhere else, so the table in
//! the crate's report and this file cannot drift apart.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use profilestore_core::error::{ErrorKind, InvalidInput, ServiceError};

use crate::image::ImageError;
use crate::photo::PhotoError;
use crate::upload::UploadError;

/// How long a client should wait before retrying after a 503, in seconds. Store
/// outages are usually short blips (a failover, a lost connection); one second keeps
/// retries from hammering without making clients wait long.
const RETRY_AFTER_SECS: u64 = 1;

/// One answer a client can receive: its status, its stable code and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ErrorCode {
    /// The HTTP status it is answered with.
    pub(crate) status: u16,
    /// The stable machine-readable code in `{"error": {"code": ...}}`.
    pub(crate) code: &'static str,
    /// What it means for the client, for the API document.
    pub(crate) meaning: &'static str,
}

const fn code(status: u16, code: &'static str, meaning: &'static str) -> ErrorCode {
    ErrorCode { status, code, meaning }
}

/// Every error a client can receive, the source of the API document's error answers.
/// An answer with a status and code missing here fails debug builds (and so every
/// test that reaches it), so the document cannot fall behind the code.
pub(crate) const ERROR_CODES: &[ErrorCode] = &[
    code(400, "invalid_user_id", "the user id in the path is not 1 to 128 characters of `[A-Za-z0-9._-]`"),
    code(400, "invalid_image_id", "the image id in the path is not the lowercase hyphenated form of a UUIDv7"),
    code(400, "malformed_multipart", "no boundary, broken framing or part headers, no parts, or an unreadable body"),
    code(400, "missing_part", "the upload lacks its `metadata` or its `image` part"),
    code(400, "duplicate_part", "the upload has two `metadata` or two `image` parts"),
    code(400, "unknown_part", "the upload has a part other than `metadata` and `image`"),
    code(400, "invalid_metadata", "the metadata part is not JSON"),
    code(
        400,
        "invalid_idempotency_key",
        "`Idempotency-Key` is not 1 to 255 visible ASCII characters, or is sent twice",
    ),
    code(400, "bad_request", "the request is malformed in a way the HTTP layer refused before the API saw it"),
    code(
        400,
        "invalid_precondition",
        "an `If-Match` tag that is not a quoted string, or `If-None-Match` with tags on a change (only `*`)",
    ),
    code(401, "unauthenticated", "the request carries no bearer token and this server needs one (`WWW-Authenticate`)"),
    code(
        401,
        "invalid_token",
        "the bearer token is not valid here: bad signature or algorithm, expired, not yet valid, wrong issuer or audience",
    ),
    code(
        403,
        "forbidden",
        "the token is valid but may not write this profile (another user's, without the admin scope)",
    ),
    code(404, "profile_not_found", "there is no profile for this user"),
    code(404, "image_not_found", "there is no image with this id"),
    code(404, "not_found", "no route matches the path"),
    code(405, "method_not_allowed", "the route exists, the method does not; `Allow` lists the methods"),
    code(408, "request_timeout", "the upload's body did not arrive within the request timeout; nothing was stored"),
    code(
        412,
        "precondition_failed",
        "the profile is not a version `If-Match` names, or exists despite `If-None-Match: *`; nothing changed",
    ),
    code(413, "metadata_too_large", "the metadata (part, or patched) is over 64 KiB"),
    code(413, "image_too_large", "the image part is over the server's `max-image-size`"),
    code(413, "payload_too_large", "the whole body is over the image and metadata limits plus 16 KiB of framing"),
    code(416, "range_not_satisfiable", "the `Range` starts past the image's end (`Content-Range` gives its length)"),
    code(
        415,
        "unsupported_media_type",
        "the body is not what the operation takes: `multipart/form-data` for a PUT, JSON for a PATCH",
    ),
    code(415, "unsupported_image", "the image bytes are not PNG, JPEG, GIF or WebP, whatever was declared"),
    code(
        422,
        "idempotency_key_reused",
        "this `Idempotency-Key` names an earlier write of another request (image or metadata); nothing was written",
    ),
    code(422, "metadata_not_object", "the metadata (or the patch) is JSON, but not an object"),
    code(
        422,
        "invalid_image",
        "recognised magic bytes, but no usable dimensions in the image's header, a structure (segments, chunks, blocks) \
         that cannot be walked to remove its metadata, or pixels that do not decode when its EXIF orientation is applied",
    ),
    code(
        422,
        "image_too_many_pixels",
        "width × height is over the server's `max-image-pixels`, or applying its EXIF orientation would need more memory \
         than that many pixels allow",
    ),
    code(
        422,
        "image_too_many_frames",
        "the image has more frames (APNG, animated WebP, GIF) than the server's `max-image-frames`",
    ),
    code(429, "too_many_requests", "this client is over the server's `max-requests-per-client`; see `Retry-After`"),
    code(429, "too_many_uploads", "this client has its `max-uploads-per-client` uploads in progress; retry later"),
    code(500, "dangling_reference", "the profile names an image missing from the blob store; an operator must look"),
    code(500, "internal", "anything else; the details are logged, never answered"),
    code(503, "store_unavailable", "a store failed or did not answer; nothing is known to have changed; retry"),
    code(503, "contended", "the profile changed repeatedly while it was being read; retry"),
    code(
        503,
        "commit_unknown",
        "the write's commit was under way when it failed: read the profile to learn whether it changed (retrying is safe)",
    ),
    code(
        503,
        "clock_out_of_bounds",
        "this server's clock is off from a store's by more than the bound; writes resume by themselves",
    ),
    code(503, "timings_changed", "the cluster's timings changed while the request ran; nothing was done; retry"),
    code(503, "not_ready", "a store did not answer the readiness probe"),
    code(503, "overloaded", "the server is reading as many uploads (or upload bytes) as it may at once; retry"),
    code(504, "deadline_exceeded", "the request reached its `request-timeout`; nothing was written after it"),
];

/// The catalogued entry for `status` and `code`, if there is one.
pub(crate) fn catalogued(status: StatusCode, code: &str) -> Option<&'static ErrorCode> {
    ERROR_CODES.iter().find(|c| c.status == status.as_u16() && c.code == code)
}

/// A refused or failed request, ready to be answered.
///
/// Promises: the message never carries store internals (connection strings, backend
/// error texts); those are logged where the error is made.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
    /// The `WWW-Authenticate` challenge of a 401.
    challenge: Option<&'static str>,
}

impl ApiError {
    /// An error answered with `status`, the stable `code` and a human `message`.
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None, challenge: None }
    }

    /// Asks the client to retry after `secs` seconds (`Retry-After`).
    fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The status this error is answered with.
    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable machine-readable code.
    #[cfg(test)]
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    /// The `Retry-After` it is answered with, in seconds.
    #[cfg(test)]
    pub(crate) fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
    }

    /// 401 `unauthenticated`: no bearer token where one is needed.
    pub(crate) fn unauthenticated() -> Self {
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "this request needs a bearer token");
        e.challenge = Some(r#"Bearer realm="profilestore""#);
        e
    }

    /// 401 `invalid_token`: a bearer token that is not valid here. Why is logged, not
    /// answered: the answer must not help forge a token.
    pub(crate) fn invalid_token() -> Self {
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", "the bearer token is not valid");
        e.challenge = Some(r#"Bearer realm="profilestore", error="invalid_token""#);
        e
    }

    /// 403 `forbidden`: a valid token without the right to this profile.
    pub(crate) fn forbidden() -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this token may not change this profile")
    }

    /// 404 `profile_not_found`.
    pub(crate) fn profile_not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "profile_not_found", "there is no profile for this user")
    }

    /// 404 `image_not_found`.
    pub(crate) fn image_not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "image_not_found", "there is no image with this id")
    }

    /// 404 `not_found`: no route matches the path.
    pub(crate) fn route_not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// 405 `method_not_allowed`: the route exists, the method does not.
    pub(crate) fn method_not_allowed() -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this method is not allowed on this resource",
        )
    }

    /// 503 `not_ready`: a store did not answer the readiness probe. The cause is
    /// logged, never answered.
    pub(crate) fn not_ready() -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "a store is not answering")
            .retry_after(RETRY_AFTER_SECS)
    }

    /// 503 `overloaded`: the upload budgets are spent.
    pub(crate) fn overloaded() -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many uploads at once; retry shortly")
            .retry_after(RETRY_AFTER_SECS)
    }

    /// 429 `too_many_requests`: the client's request rate is spent; it may send again
    /// in `secs` seconds.
    pub(crate) fn too_many_requests(secs: u64) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many requests from this client; slow down",
        )
        .retry_after(secs)
    }

    /// 429 `too_many_uploads`: the client has as many uploads being read as it may.
    pub(crate) fn too_many_uploads() -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_uploads",
            "this client has as many uploads in progress as it may; retry once one ends",
        )
        .retry_after(RETRY_AFTER_SECS)
    }

    /// 416 `range_not_satisfiable`: the `Range` starts past the end; the caller adds
    /// `Content-Range`.
    pub(crate) fn range_not_satisfiable() -> Self {
        ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable", "the range starts past the end")
    }

    /// 400 `invalid_precondition`: a change's `If-Match` / `If-None-Match` that cannot
    /// be honoured as sent.
    pub(crate) fn invalid_precondition(message: &'static str) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_precondition", message)
    }

    /// 400 `invalid_idempotency_key`.
    pub(crate) fn invalid_idempotency_key(message: &'static str) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_idempotency_key", message)
    }

    /// 422 `idempotency_key_reused`.
    pub(crate) fn idempotency_key_reused() -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key names an earlier write of another request; nothing was written: use a new key",
        )
    }

    /// 500 `internal` with a fixed message; the caller logs the cause.
    pub(crate) fn internal() -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }

    /// The error a response of `status` that is not yet JSON stands for: used for the
    /// rejections axum makes itself (body limit, routing), which answer plain text.
    pub(crate) fn for_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("not_found", "no such resource"),
            StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this method is not allowed on this resource"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ("unsupported_media_type", "the request's content type is not accepted")
            }
            s if s.is_server_error() => ("internal", "internal error"),
            _ => ("bad_request", "the request is malformed"),
        };
        // Only catalogued statuses are answered: any other refusal of the HTTP layer
        // becomes a plain 400 or 500, each documented.
        let status = match catalogued(status, code) {
            Some(_) => status,
            None if status.is_server_error() => StatusCode::INTERNAL_SERVER_ERROR,
            None => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, code, message)
    }
}

impl From<InvalidInput> for ApiError {
    /// Answered with the status the catalogue gives its code (400 when it has none).
    fn from(e: InvalidInput) -> Self {
        let status = ERROR_CODES
            .iter()
            .find(|c| c.code == e.code)
            .and_then(|c| StatusCode::from_u16(c.status).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
        ApiError::new(status, e.code, e.message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let code = e.code();
        match e.kind() {
            ErrorKind::InvalidInput => match e {
                ServiceError::InvalidInput(invalid) => invalid.into(),
                other => ApiError::new(StatusCode::BAD_REQUEST, code, other.to_string()),
            },
            ErrorKind::Unavailable => {
                // The store's own message may name hosts or carry backend detail: log it, answer plainly.
                tracing::warn!(code, error = %e, "store unavailable");
                if let ServiceError::ClockOutOfBounds(fault) = &e {
                    // Clock offsets are no secret, and they tell the operator what to fix.
                    let message = format!("{fault}; writes resume by themselves once the clocks agree");
                    return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message).retry_after(RETRY_AFTER_SECS);
                }
                let message = match e {
                    ServiceError::Contended => "the profile changed repeatedly while it was being read; retry",
                    ServiceError::TimingsChanged(_) => {
                        "the cluster's timings changed while this request ran; nothing was done: retry"
                    }
                    ServiceError::CommitUnknown(_) => {
                        "the write's commit was under way when it failed: the profile may or may not have changed; \
                         read it to find out (retrying the write is safe)"
                    }
                    _ => "storage is temporarily unavailable; retry later",
                };
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message).retry_after(RETRY_AFTER_SECS)
            }
            ErrorKind::Conflict => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                code,
                "the profile is not in the state the request's condition names; nothing was changed: read it again",
            ),
            ErrorKind::DeadlineExceeded => {
                tracing::warn!(code, "request reached its deadline");
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, code, "the request did not finish within its deadline")
            }
            ErrorKind::Internal => match e {
                // The service has already logged this loudly with the user and image id.
                ServiceError::DanglingReference { .. } => ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    code,
                    "the profile names an image that is missing from the blob store; an operator must look",
                ),
                other => {
                    tracing::error!(code, error = %other, "internal error");
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code, "internal error")
                }
            },
        }
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        let status = match e {
            ImageError::Unrecognised => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ImageError::Unreadable { .. } | ImageError::TooManyPixels { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<PhotoError> for ApiError {
    fn from(e: PhotoError) -> Self {
        let status = match e {
            PhotoError::Header(image) => return image.into(),
            PhotoError::Overloaded => return ApiError::overloaded(),
            PhotoError::Malformed { .. }
            | PhotoError::TooManyFrames { .. }
            | PhotoError::Undecodable { .. }
            | PhotoError::DecodingLimit { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        let status = match e {
            UploadError::Image(image) => return image.into(),
            UploadError::Spool(ref e) if e.kind() == std::io::ErrorKind::StorageFull => {
                tracing::warn!(error = %e, "an upload was refused: the spool is full");
                return ApiError::overloaded();
            }
            UploadError::Spool(ref e) => {
                // A disk's failure is the operator's to read, not the client's.
                tracing::error!(error = %e, "an upload could not be spooled to disk");
                return ApiError::internal();
            }
            UploadError::NotMultipart => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            UploadError::TooSlow => StatusCode::REQUEST_TIMEOUT,
            UploadError::MetadataNotObject => StatusCode::UNPROCESSABLE_ENTITY,
            UploadError::BodyTooLarge { .. }
            | UploadError::MetadataTooLarge { .. }
            | UploadError::ImageTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UploadError::Malformed(_)
            | UploadError::MissingPart(_)
            | UploadError::DuplicatePart(_)
            | UploadError::UnknownPart
            | UploadError::MetadataNotJson(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(serde::Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        debug_assert!(
            catalogued(self.status, self.code).is_some(),
            "{} {} is not in ERROR_CODES: document it",
            self.status,
            self.code
        );
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: &self.message } };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use profilestore_core::error::StoreError;

    #[test]
    fn service_errors_map_to_statuses_by_kind() {
        let unavailable: ApiError = ServiceError::Unavailable(StoreError::unavailable("db host 10.1.2.3 down")).into();
        assert_eq!((unavailable.status(), unavailable.code()), (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"));
        assert!(!unavailable.message.contains("10.1.2.3"), "store detail leaked: {}", unavailable.message);
        assert_eq!(unavailable.retry_after, Some(RETRY_AFTER_SECS));

        let late: ApiError = ServiceError::DeadlineExceeded.into();
        assert_eq!((late.status(), late.code()), (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"));
        let unknown = ApiError::from(ServiceError::CommitUnknown("ran out of time".into()));
        assert_eq!((unknown.status(), unknown.code()), (StatusCode::SERVICE_UNAVAILABLE, "commit_unknown"));
        assert!(unknown.to_string().contains("may or may not"), "{unknown}");

        let internal: ApiError = ServiceError::Internal("row 7 unreadable".into()).into();
        assert_eq!((internal.status(), internal.code()), (StatusCode::INTERNAL_SERVER_ERROR, "internal"));
        assert!(!internal.message.contains("row 7"));

        let invalid: ApiError = ServiceError::InvalidInput(InvalidInput::new("invalid_user_id", "bad")).into();
        assert_eq!((invalid.status(), invalid.code()), (StatusCode::BAD_REQUEST, "invalid_user_id"));
    }

    #[test]
    fn statuses_axum_answers_itself_get_a_code() {
        assert_eq!(ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE).code(), "payload_too_large");
        let conflict = ApiError::for_status(StatusCode::CONFLICT);
        assert_eq!((conflict.status(), conflict.code()), (StatusCode::BAD_REQUEST, "bad_request"));
        let bad_gateway = ApiError::for_status(StatusCode::BAD_GATEWAY);
        assert_eq!((bad_gateway.status(), bad_gateway.code()), (StatusCode::INTERNAL_SERVER_ERROR, "internal"));
    }

    /// Every refusal the API can make, one per variant of each cause.
    fn every_refusal() -> Vec<ApiError> {
        let json_error = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let uploads = [
            UploadError::NotMultipart,
            UploadError::Malformed("x"),
            UploadError::BodyTooLarge { limit: 1 },
            UploadError::MissingPart("image"),
            UploadError::DuplicatePart("image"),
            UploadError::UnknownPart,
            UploadError::MetadataTooLarge { limit: 1 },
            UploadError::MetadataNotJson(json_error),
            UploadError::MetadataNotObject,
            UploadError::ImageTooLarge { limit: 1 },
            UploadError::Image(ImageError::Unrecognised),
            UploadError::Image(ImageError::Unreadable { format: "image/png" }),
            UploadError::Image(ImageError::TooManyPixels { width: 2, height: 2, limit: 1 }),
            UploadError::TooSlow,
        ];
        let photos = [
            PhotoError::Header(ImageError::Unrecognised),
            PhotoError::Malformed { format: "image/png", why: "x" },
            PhotoError::TooManyFrames { frames: 2, limit: 1 },
            PhotoError::Undecodable { format: "image/jpeg" },
            PhotoError::DecodingLimit { format: "image/jpeg" },
            PhotoError::Overloaded,
        ];
        let user = profilestore_core::ids::UserId::parse("u").unwrap();
        let image_id = "01900000-0000-7000-8000-000000000001".parse().unwrap();
        let services = [
            ServiceError::InvalidInput(InvalidInput::new("invalid_user_id", "x")),
            ServiceError::InvalidInput(InvalidInput::new("invalid_image_id", "x")),
            ServiceError::DeadlineExceeded,
            ServiceError::Unavailable(StoreError::unavailable("x")),
            ServiceError::DanglingReference { user, image_id },
            ServiceError::CommitUnknown("x".into()),
            ServiceError::ClockOutOfBounds("x".into()),
            ServiceError::TimingsChanged("x".into()),
            ServiceError::Contended,
            ServiceError::Internal("x".into()),
            ServiceError::PreconditionFailed,
        ];
        let statuses = (400..600).filter_map(|s| StatusCode::from_u16(s).ok()).map(ApiError::for_status);
        let named = [
            ApiError::profile_not_found(),
            ApiError::image_not_found(),
            ApiError::route_not_found(),
            ApiError::method_not_allowed(),
            ApiError::not_ready(),
            ApiError::internal(),
            ApiError::unauthenticated(),
            ApiError::invalid_token(),
            ApiError::forbidden(),
            ApiError::overloaded(),
            ApiError::too_many_requests(1),
            ApiError::too_many_uploads(),
            ApiError::range_not_satisfiable(),
            ApiError::invalid_precondition("x"),
            ApiError::invalid_idempotency_key("x"),
            ApiError::idempotency_key_reused(),
        ];
        uploads
            .into_iter()
            .map(ApiError::from)
            .chain(photos.into_iter().map(ApiError::from))
            .chain(services.into_iter().map(ApiError::from))
            .chain(statuses)
            .chain(named)
            .collect()
    }

    #[test]
    fn every_refusal_is_catalogued_and_every_catalogued_code_is_made() {
        let refusals = every_refusal();
        for refusal in &refusals {
            assert!(
                catalogued(refusal.status, refusal.code).is_some(),
                "{} {} is not catalogued",
                refusal.status,
                refusal.code
            );
        }
        for entry in ERROR_CODES {
            let made = refusals.iter().any(|r| r.status.as_u16() == entry.status && r.code == entry.code);
            assert!(made, "{} {} is catalogued but nothing answers it", entry.status, entry.code);
        }
    }
}
