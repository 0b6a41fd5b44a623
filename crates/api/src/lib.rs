//! The profilestore HTTP API: profiles in, profiles out, over a [`ProfileService`].
//!
//! Every request is checked completely (user id, multipart framing, metadata, image
//! type, size and pixel count) **before** the service is called, so a refused upload
//! stores nothing. Every error is answered as JSON
//! `{"error": {"code": "...", "message": "..."}}`, including axum's own rejections,
//! unknown routes and wrong methods.
//!
//! # Endpoints and errors
//!
//! The OpenAPI 3.1 document is the reference: served at `GET /openapi.json`,
//! committed as `docs/openapi.json`, generated from this crate (the handlers'
//! annotations, the bodies' types and the catalogue of every error code with its
//! status and meaning). The README's endpoint table is checked against it.
//!
//! Every answer carries `X-Request-Id`: the request's own when well formed (1 to 64 of
//! `A-Z a-z 0-9 . _ -`), a fresh one otherwise; every log line of the request names it.
//! `/metrics` is not here: it is on the [`admin_router`], served on its own address.
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | `routes` | the router, the handlers and the path extractors |
//! | `upload` | reading the multipart upload part by part, with each limit enforced as bytes arrive |
//! | `image` | recognising an image by its magic bytes and reading its dimensions (never decoding) |
//! | `photo` | the stored form of a photo: metadata removed losslessly, or the EXIF orientation applied by a re-encode under limits |
//! | `json` | the JSON bodies of successful answers (and the upload's form, for the document) |
//! | `range` | `Range` requests on image bytes: one range, 206 or 416 |
//! | `openapi` | the OpenAPI 3.1 document: derived from the handlers, with every error answer from the catalogue |
//! | `admission` | the budgets of uploads read at once and their bytes |
//! | `client` | who a request comes from: the peer, or `X-Forwarded-For` from a trusted proxy |
//! | `client_limits` | per-client limits: uploads at once and a request rate, in a bounded table |
//! | `intake` | receiving an upload's body within the budgets: in memory, or in the spool then read back |
//! | `spool` | [`Spool`]: the bounded directory on disk where large uploads are received |
//! | `deadline` | an answer is sent only until its request's deadline |
//! | `drain` | refusing a request whose body is still arriving so that the client reads the answer |
//! | `auth` | bearer tokens (JWT) and the policy: who may write which profile, whether reads need a token |
//! | `error` | `ApiError`: every refusal with its status and stable code, and the mapping from [`ServiceError`](profilestore_core::error::ServiceError) |
//! | `middleware` | the request id, the per-request log line and the net that turns any non-JSON error into the JSON shape |
//! | [`metrics`] | the HTTP figures: requests, latency, bytes, in flight |
//! | `admin` | [`admin_router`]: `/metrics` and the status page for operators, on its own address |
//! | `tls` | TLS for a listener: a certificate and key from PEM files, reloaded when they change |
//! | `status` | the status page: timings and rules, store contents, sweep marks, clocks, an upload form |

use std::future::Future;

use profilestore_core::service::ProfileService;

mod admin;
mod admission;
mod auth;
mod client;
mod client_limits;
mod conditions;
mod deadline;
mod drain;
mod error;
mod idempotency;
mod image;
mod intake;
mod json;
pub mod metrics;
mod middleware;
mod openapi;
mod patch;
mod photo;
mod range;
mod routes;
mod serve;
mod spool;
mod status;
mod tls;
mod upload;

pub use admin::{RenderMetrics, admin_router};
pub use admission::UploadLimits;
pub use auth::{AuthPolicy, KeyError, KeySource, TokenRules, TokenVerifier};
/// The router type every function here builds and takes (axum's).
pub use axum::Router;
pub use client::{ProxiesError, TrustedProxies};
pub use client_limits::ClientLimits;
pub use middleware::REQUEST_ID;
pub use openapi::openapi_json;
pub use serve::{ServeOptions, serve_with};
pub use spool::{Spool, SpoolError, SpoolSettings};
pub use status::StatusPage;
pub use tls::{TlsError, TlsFiles};

/// What the API enforces: who may write, and the limits on uploads.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The largest image accepted, in bytes; larger ones are refused with 413
    /// `image_too_large` as soon as this many bytes have arrived.
    pub max_image_size: u64,
    /// The most pixels (width × height, read from the image's header) accepted; more
    /// is refused with 422 `image_too_many_pixels`.
    pub max_image_pixels: u64,
    /// The most frames an animated image (APNG, animated WebP, GIF) may have, counted
    /// from its structure before anything is decoded; more is refused with 422
    /// `image_too_many_frames`.
    pub max_image_frames: u64,
    /// Store images exactly as sent, metadata and all. Off by default: images are
    /// stored without EXIF, XMP, IPTC and comments, with the EXIF orientation applied
    /// to the pixels and the ICC profile kept. The limits apply either way.
    pub keep_image_metadata: bool,
    /// Who may write and read; [`AuthPolicy::open`] by default.
    pub auth: AuthPolicy,
    /// How many uploads are read at once, and their bytes; beyond either, 503
    /// `overloaded`.
    pub uploads: UploadLimits,
    /// What one client (by address, see [`TrustedProxies`]) may hold and how fast it
    /// may ask; beyond it, 429.
    pub clients: ClientLimits,
    /// The slowest average pace, in bytes per second, an upload's body may arrive at
    /// once its first 10 s are past; slower is refused with 408 `request_timeout`.
    /// 0: no minimum (the request timeout still bounds it).
    pub min_upload_rate: u64,
    /// How long caches may keep an image served by id (`Cache-Control: max-age`): the
    /// bound on how long a deleted or replaced photo can still be seen in a cache.
    pub image_cache_max_age: std::time::Duration,
    /// How long the database keeps a write's `Idempotency-Key`: a retry within it is
    /// answered with the first write's result instead of writing again.
    pub idempotency_key_ttl: std::time::Duration,
    /// Where uploads larger than its threshold are received: on disk, so a slow one
    /// holds no memory while its body arrives. `None` (the default): every upload is
    /// held in memory.
    pub spool: Option<Spool>,
}

impl ApiConfig {
    /// The default [`max_image_size`](Self::max_image_size): 10 MiB.
    pub const DEFAULT_MAX_IMAGE_SIZE: u64 = 10 * 1024 * 1024;
    /// The default [`min_upload_rate`](Self::min_upload_rate): 8 KiB/s (64 kbit/s), a
    /// poor mobile link.
    pub const DEFAULT_MIN_UPLOAD_RATE: u64 = 8 * 1024;
    /// The default [`image_cache_max_age`](Self::image_cache_max_age): 5 minutes.
    pub const DEFAULT_IMAGE_CACHE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(300);
    /// The default [`max_image_pixels`](Self::max_image_pixels): 40 million.
    pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 40_000_000;
    /// The default [`max_image_frames`](Self::max_image_frames): 1000, a 30 s
    /// animation at 30 frames per second with room to spare.
    pub const DEFAULT_MAX_IMAGE_FRAMES: u64 = 1000;
    /// The default [`idempotency_key_ttl`](Self::idempotency_key_ttl): 24 hours, as
    /// long as any client keeps retrying one request.
    pub const DEFAULT_IDEMPOTENCY_KEY_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
}

impl Default for ApiConfig {
    /// 10 MiB, 40 million pixels, 1000 frames, metadata stripped.
    fn default() -> Self {
        ApiConfig {
            max_image_size: Self::DEFAULT_MAX_IMAGE_SIZE,
            max_image_pixels: Self::DEFAULT_MAX_IMAGE_PIXELS,
            max_image_frames: Self::DEFAULT_MAX_IMAGE_FRAMES,
            keep_image_metadata: false,
            auth: AuthPolicy::open(),
            uploads: UploadLimits::default(),
            clients: ClientLimits::default(),
            min_upload_rate: Self::DEFAULT_MIN_UPLOAD_RATE,
            image_cache_max_age: Self::DEFAULT_IMAGE_CACHE_MAX_AGE,
            idempotency_key_ttl: Self::DEFAULT_IDEMPOTENCY_KEY_TTL,
            spool: None,
        }
    }
}

/// The API's router over `service`, with `config`'s limits, the request log and the
/// JSON error shape applied to every route (and to unknown routes and methods).
pub fn router(service: ProfileService, config: ApiConfig) -> axum::Router {
    routes::router(service, config)
}

/// Serves `app` on `listener` until `shutdown` completes, with
/// [`ServeOptions::default`]: a 10 s head timeout, and a shutdown that waits for every
/// request in flight (a caller that wants a limit uses [`serve_with`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, shutdown, ServeOptions::default()).await
}
