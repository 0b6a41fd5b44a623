//! Every refusal the API answers, as one type with a status, a stable code and a
//! message, rendered as `{"error": {"code": "...", "message": "..."}}`.
//!
//! The mapping from causes to statuses lives here and nowhere else, so the table in
//! the crate's report and this file cannot drift apart.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use profilestore_core::error::{ErrorKind, InvalidInput, ServiceError};

use crate::image::ImageError;
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
}

impl ApiError {
    /// An error answered with `status`, the stable `code` and a human `message`.
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
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
        ApiError::new(status, code, message)
    }
}

impl From<InvalidInput> for ApiError {
    fn from(e: InvalidInput) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, e.code, e.message)
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

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        let status = match e {
            UploadError::Image(image) => return image.into(),
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
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: &self.message } };
        let mut response = (self.status, axum::Json(body)).into_response();
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
        assert_eq!(ApiError::for_status(StatusCode::BAD_GATEWAY).code(), "internal");
        assert_eq!(ApiError::for_status(StatusCode::CONFLICT).code(), "bad_request");
    }
}
