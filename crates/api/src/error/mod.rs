//! Every refusal the API answers, as one type with a status, a stable code and a
//! message, rendered as `{"error": {"code": "...", "message": "..."}}`.
//!
//! The mapping from causes to statuses lives here and nowhere else, so the table in
//! the crate's report and this file cannot drift apart.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use profilestore_core::error::{ErrorKind, InvalidInput, ServiceError};

mod catalogue;
pub(crate) use catalogue::{ERROR_CODES, ErrorCode, catalogued};

use crate::image::ImageError;
use crate::photo::PhotoError;
use crate::upload::UploadError;

/// How long a client should wait before retrying after a 503, in seconds. Store
/// outages are usually short blips (a failover, a lost connection); one second keeps
/// retries from hammering without making clients wait long.
const RETRY_AFTER_SECS: u64 = 1;

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
mod tests;
