//! The profilestore HTTP API: profiles in, profiles out, over a [`ProfileService`].
//!
//! Every request is checked completely (user id, multipart framing, metadata, image
//! type, size and pixel count) **before** the service is called, so a refused upload
//! stores nothing. Every error is answered as JSON
//! `{"error": {"code": "...", "message": "..."}}`, including axum's own rejections,
//! unknown routes and wrong methods.
//!
//! # Endpoints
//!
//! | method and path | answer |
//! |---|---|
//! | `PUT /v1/profiles/{user_id}` | multipart `metadata` (a JSON object) + `image`; 200 with the stored profile |
//! | `GET /v1/profiles/{user_id}` | 200 with the profile and its image in base64, 404 when there is none |
//! | `GET /v1/profiles/{user_id}/image` | the image bytes, `ETag` = the image id, 304 on `If-None-Match` |
//! | `GET /v1/images/{image_id}` | the immutable bytes of one image, cacheable for a year |
//! | `DELETE /v1/profiles/{user_id}` | 204, 404 when there is none |
//! | `GET /healthz` | 200 `{"status":"ok"}`; touches no store |
//! | `GET /readyz` | 200 when both stores answer within 2 s, else 503 |
//!
//! Every answer carries `X-Request-Id`: the request's own when well formed (1 to 64 of
//! `A-Z a-z 0-9 . _ -`), a fresh one otherwise; every log line of the request names it.
//! `/metrics` is not here: it is on the [`admin_router`], served on its own address.
//!
//! A profile is answered as `{"user_id", "metadata" (the object itself), "image_id",
//! "image_url" (`/v1/images/{image_id}`, new with every write), "content_type",
//! "image_size", "updated_at" (RFC 3339, UTC)}`, plus `"image"` (standard base64) on
//! `GET /v1/profiles/{user_id}`.
//!
//! # Errors
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `invalid_user_id`, `invalid_image_id` | a path id is not in its documented form |
//! | 400 | `malformed_multipart` | no boundary, broken framing or part headers, zero parts, unreadable body |
//! | 400 | `missing_part`, `duplicate_part`, `unknown_part` | not exactly one `metadata` and one `image` part |
//! | 400 | `invalid_metadata` | the metadata is not JSON (syntax) |
//! | 422 | `metadata_not_object` | the metadata is JSON, but not an object (semantics) |
//! | 422 | `invalid_image` | recognised magic bytes, but a header with no usable dimensions |
//! | 422 | `image_too_many_pixels` | width × height over [`ApiConfig::max_image_pixels`] |
//! | 413 | `metadata_too_large` | metadata over 64 KiB |
//! | 413 | `image_too_large` | image over [`ApiConfig::max_image_size`] |
//! | 413 | `payload_too_large` | the whole body over image + metadata limits + 16 KiB of framing |
//! | 415 | `unsupported_media_type` | the request is not `multipart/form-data` |
//! | 415 | `unsupported_image` | the image bytes are not PNG, JPEG, GIF or WebP, whatever was declared |
//! | 404 | `profile_not_found`, `image_not_found`, `not_found` | no profile, no image, no route |
//! | 405 | `method_not_allowed` | the route exists, the method does not (`Allow` lists the methods) |
//! | 503 | `store_unavailable`, `contended`, `not_ready` | a store failed; `Retry-After: 1` |
//! | 504 | `deadline_exceeded` | the request reached its `request_timeout` |
//! | 500 | `dangling_reference` | the record names an image whose blob is missing |
//! | 500 | `internal` | anything else; details are logged, never answered |
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | `routes` | the router, the handlers and the path extractors |
//! | `upload` | reading the multipart upload part by part, with each limit enforced as bytes arrive |
//! | `image` | recognising an image by its magic bytes and reading its dimensions (never decoding) |
//! | `json` | the JSON bodies of successful answers |
//! | `error` | `ApiError`: every refusal with its status and stable code, and the mapping from [`ServiceError`](profilestore_core::error::ServiceError) |
//! | `middleware` | the request id, the per-request log line and the net that turns any non-JSON error into the JSON shape |
//! | [`metrics`] | the HTTP figures: requests, latency, bytes, in flight |
//! | `admin` | [`admin_router`]: `/metrics` and the status page for operators, on its own address |
//! | `status` | the status page: timings and rules, store contents, sweep marks, clocks, an upload form |

use std::future::Future;

use profilestore_core::service::ProfileService;

mod admin;
mod error;
mod image;
mod json;
pub mod metrics;
mod middleware;
mod routes;
mod status;
mod upload;

pub use admin::{RenderMetrics, admin_router};
pub use status::StatusPage;
pub use middleware::REQUEST_ID;

/// Limits the API enforces on uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiConfig {
    /// The largest image accepted, in bytes; larger ones are refused with 413
    /// `image_too_large` as soon as this many bytes have arrived.
    pub max_image_size: u64,
    /// The most pixels (width × height, read from the image's header) accepted; more
    /// is refused with 422 `image_too_many_pixels`.
    pub max_image_pixels: u64,
}

impl ApiConfig {
    /// The default [`max_image_size`](Self::max_image_size): 10 MiB.
    pub const DEFAULT_MAX_IMAGE_SIZE: u64 = 10 * 1024 * 1024;
    /// The default [`max_image_pixels`](Self::max_image_pixels): 40 million.
    pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 40_000_000;
}

impl Default for ApiConfig {
    /// 10 MiB and 40 million pixels.
    fn default() -> Self {
        ApiConfig { max_image_size: Self::DEFAULT_MAX_IMAGE_SIZE, max_image_pixels: Self::DEFAULT_MAX_IMAGE_PIXELS }
    }
}

/// The API's router over `service`, with `config`'s limits, the request log and the
/// JSON error shape applied to every route (and to unknown routes and methods).
pub fn router(service: ProfileService, config: ApiConfig) -> axum::Router {
    routes::router(service, config)
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting
/// connections, lets the requests in flight finish, closes idle connections, and
/// returns. Errors only if serving itself fails.
///
/// The wait for requests in flight is not bounded here: a caller that wants a limit
/// wraps this future in a timeout.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
