//! The router, its handlers, and the extractors that validate path parameters.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Multipart, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, middleware};
use bytes::Bytes;
use profilestore_core::error::{InvalidInput, ServiceError};
use profilestore_core::ids::{ImageId, UserId};
use profilestore_core::service::{NewProfile, ProfileService};
use profilestore_core::store::IdempotencyKey;
use utoipa::IntoParams;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};

use crate::ApiConfig;
use crate::admission::Admission;
use crate::client::identify_client;
use crate::client_limits::{Clients, limit_clients};
use crate::conditions::{change_condition, not_modified, profile_etag};
use crate::deadline::within_request_timeout;
use crate::drain::{DrainBound, drain_refused};
use crate::error::ApiError;
use crate::image::ImageFormat;
use crate::intake::Intake;
use crate::json::{ProfileBody, ProfileWithImage, StatusBody, UploadForm, profile_response};
use crate::middleware::{json_errors, log_request, request_id};
use crate::range::{self, Requested};
use crate::upload::{self, UploadError};

/// How long the readiness probe waits for both stores. Short, so that a load balancer
/// polling it notices an outage within a few seconds.
const READY_LIMIT: Duration = Duration::from_secs(2);

/// A profile's current image changes with every write: caches may keep it, but must
/// revalidate (cheap, thanks to the ETag) before reuse.
const REVALIDATE: &str = "no-cache";

#[derive(Clone)]
pub(crate) struct AppState {
    service: ProfileService,
    config: ApiConfig,
    admission: Admission,
}

impl AppState {
    /// The profile operations.
    pub(crate) fn service(&self) -> &ProfileService {
        &self.service
    }

    /// The API's settings.
    pub(crate) fn config(&self) -> &ApiConfig {
        &self.config
    }
}

/// The API's router; see the crate documentation for the endpoints.
pub(crate) fn router(service: ProfileService, config: ApiConfig) -> Router {
    let service_for_deadline = service.clone();
    let drain = DrainBound { bytes: upload::body_limit(&config).max(crate::drain::MIN_DRAIN_BYTES) };
    let body_limit = usize::try_from(upload::body_limit(&config)).unwrap_or(usize::MAX);
    let clients = Clients::new(&config.clients, config.uploads.max_concurrent);
    Router::new()
        .route(
            "/v1/profiles/{user_id}",
            get(get_profile).put(put_profile).delete(delete_profile).patch(crate::patch::patch_profile),
        )
        .route("/v1/profiles/{user_id}/image", get(get_profile_image))
        .route("/v1/images/{image_id}", get(get_image))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_document))
        .fallback(route_not_found)
        // After the routes: it applies to the routes registered before it.
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(AppState { service, admission: Admission::new(config.uploads), config })
        // Inside the drain, so that its refusals are drained too.
        .layer(middleware::from_fn_with_state(clients.clone(), limit_clients))
        // A refusal waits for the rest of the body, so the client reads it.
        .layer(middleware::from_fn_with_state(drain, drain_refused))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(log_request))
        // Outside the log, which names the client.
        .layer(middleware::from_fn_with_state(clients, identify_client))
        .layer(middleware::from_fn(crate::metrics::measure))
        .layer(middleware::from_fn_with_state(service_for_deadline, within_request_timeout))
        .layer(middleware::from_fn(request_id))
}

/// A user id from the path, validated by [`UserId::parse`].
pub(crate) struct UserPath(pub(crate) UserId);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| InvalidInput::new("invalid_user_id", "the user id in the path is not valid UTF-8"))?;
        Ok(UserPath(UserId::parse(&raw)?))
    }
}

/// An image id from the path: the canonical lowercase form of a UUIDv7.
pub(crate) struct ImagePath(ImageId);

/// How the API document describes a path parameter: its name, meaning, the pattern
/// its extractor accepts and an example.
fn path_parameter(name: &str, description: &str, pattern: &str, example: &str) -> Vec<Parameter> {
    let schema = ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern));
    vec![
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(description))
            .schema(Some(schema))
            .example(Some(example.into()))
            .build(),
    ]
}

impl IntoParams for UserPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        path_parameter("user_id", "the user's id", r"^[A-Za-z0-9._-]{1,128}$", "alice")
    }
}

impl IntoParams for ImagePath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let uuid_v7 = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$";
        path_parameter(
            "image_id",
            "an image id, as a profile's `image_id` names it",
            uuid_v7,
            "01900000-0000-7000-8000-000000000001",
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ImagePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| InvalidInput::new("invalid_image_id", "the image id in the path is not valid UTF-8"))?;
        Ok(ImagePath(raw.parse::<ImageId>()?))
    }
}

/// `PUT /v1/profiles/{user_id}`: validates the whole upload, then writes it.
#[utoipa::path(
    put,
    path = "/v1/profiles/{user_id}",
    tag = "profiles",
    summary = "Write a profile: its metadata and its image, together",
    description = "The whole upload is checked before anything is stored: a refused upload stores nothing. \
        Each write stores the image under a fresh id, so `image_id` and `image_url` change with every write. \
        The image is stored without its EXIF, XMP and IPTC metadata and comments, with its EXIF orientation applied \
        to the pixels and its ICC profile kept (unless the server runs with `keep-image-metadata`): the answer's \
        `image_size` and `image_sha256` name the stored bytes, which every read returns. \
        `If-Match` with a read's `ETag` writes only over that version, `If-None-Match: *` only where there is \
        no profile (412 otherwise).",
    params(UserPath),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "the profile as stored", body = ProfileBody)),
)]
pub(crate) async fn put_profile(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    request: Request,
) -> Result<Response, ApiError> {
    // Before the body: a client that may not write costs no buffer.
    state.config.auth.authorize_write(request.headers(), &user)?;
    let condition = change_condition(request.headers())?;
    let key_name = crate::idempotency::requested_key(request.headers())?;
    let may_hold = upload::check_headers(request.headers(), &state.config)?;
    // In memory or in the spool (see `intake`); what it holds in memory is held until
    // the write is done: the image's bytes live that long.
    let intake = Intake::admit(&state.admission, &state.config, may_hold)?;
    let multipart = Multipart::from_request(request, &())
        .await
        .map_err(|_| UploadError::Malformed("the multipart boundary is missing or invalid"))?;
    // A slow client must not hold a connection and a buffer forever: the body gets the
    // same allowance as the request it is part of.
    let allowance = state.service.timings().request_timeout;
    let (upload, _held) = tokio::time::timeout(allowance, intake.receive(multipart, &state.config, &state.admission))
        .await
        .map_err(|_| UploadError::TooSlow)??;
    // The stored form: metadata removed, orientation applied (see `photo`).
    let stored = crate::photo::prepare(upload.image, &state.config, &state.admission).await?;
    let key = key_name.map(|key| IdempotencyKey {
        key,
        fingerprint: crate::idempotency::fingerprint(&stored.sha256, &upload.metadata),
        keep_for: state.config.idempotency_key_ttl,
    });
    let profile = NewProfile {
        metadata: upload.metadata,
        image: stored.image,
        content_type: upload.format.content_type().to_owned(),
    };
    let written = state.service.write_keyed(user, profile, &condition, key.as_ref()).await?;
    crate::idempotency::answer(written, key.as_ref(), stored.sha256)
}

/// `GET /v1/profiles/{user_id}`: metadata and image together, or 404.
#[utoipa::path(
    get,
    path = "/v1/profiles/{user_id}",
    tag = "profiles",
    summary = "Read a profile: its metadata and its image (base64), always from one write",
    params(UserPath),
    responses((status = 200, description = "the profile and its image", body = ProfileWithImage)),
)]
pub(crate) async fn get_profile(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.config.auth.authorize_read(&headers)?;
    let profile = state.service.read(&user).await?.ok_or_else(ApiError::profile_not_found)?;
    // The version is a digest of the metadata: made once per read, for both uses.
    let etag = profile_etag(&profile.record);
    let mut response = if not_modified(&headers, etag.to_str().unwrap_or_default()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        profile_response(&profile.record, profile.image)?
    };
    response.headers_mut().insert(header::ETAG, etag);
    Ok(response)
}

/// `GET /v1/profiles/{user_id}/image`: the current image's bytes with the type
/// recorded at upload.
#[utoipa::path(
    get,
    path = "/v1/profiles/{user_id}/image",
    tag = "profiles",
    summary = "The current image's bytes, typed as recorded at upload",
    params(UserPath),
    responses((status = 200, description = "the image's bytes; caches must revalidate (`Cache-Control: no-cache`)")),
)]
pub(crate) async fn get_profile_image(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.config.auth.authorize_read(&headers)?;
    let profile = state.service.read(&user).await?.ok_or_else(ApiError::profile_not_found)?;
    let content_type = HeaderValue::from_str(&profile.record.content_type).unwrap_or_else(|_| {
        tracing::error!(user = %user, "stored content type is not a valid header value");
        HeaderValue::from_static("application/octet-stream")
    });
    Ok(image_response(
        &headers,
        profile.record.image_id,
        content_type,
        profile.image,
        HeaderValue::from_static(REVALIDATE),
    ))
}

/// `GET /v1/images/{image_id}`: one image's bytes, typed by their content, while a
/// profile shows it.
#[utoipa::path(
    get,
    path = "/v1/images/{image_id}",
    tag = "images",
    summary = "One image's bytes, typed by their content, served only while a profile shows it",
    params(ImagePath),
    responses((status = 200, description = "the image's bytes; caches may keep them for the server's `image-cache-max-age` (default 5 minutes), the bound on how long a deleted or replaced photo can still be seen")),
)]
pub(crate) async fn get_image(
    State(state): State<AppState>,
    ImagePath(image_id): ImagePath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.config.auth.authorize_read(&headers)?;
    let bytes = state.service.image(image_id).await?.ok_or_else(ApiError::image_not_found)?;
    let content_type = ImageFormat::sniff(&bytes).map_or("application/octet-stream", ImageFormat::content_type);
    // An id names one upload forever, but it is served only while a profile shows it:
    // caches keep it for the stated bound, after which a deleted photo is gone.
    let max_age = state.config.image_cache_max_age.as_secs();
    // Behind a token, no shared cache may keep it for others.
    let audience = if state.config.auth.reads_need_token() { "private" } else { "public" };
    let cache_control = HeaderValue::from_str(&format!("{audience}, max-age={max_age}")).expect("a valid header");
    Ok(image_response(&headers, image_id, HeaderValue::from_static(content_type), bytes, cache_control))
}

/// `DELETE /v1/profiles/{user_id}`: 204, or 404 when there was no profile.
#[utoipa::path(
    delete,
    path = "/v1/profiles/{user_id}",
    tag = "profiles",
    summary = "Delete a profile; its image is left for the cleaner",
    description = "`If-Match` with a read's `ETag` deletes only that version (412 otherwise).",
    params(UserPath),
    responses((status = 204, description = "the profile was deleted")),
)]
pub(crate) async fn delete_profile(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    state.config.auth.authorize_write(&headers, &user)?;
    let condition = change_condition(&headers)?;
    if state.service.delete_if(&user, &condition).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::profile_not_found())
    }
}

/// `GET /healthz`: the process is up. Touches no store, so a store outage does not
/// get healthy servers restarted.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "probes",
    summary = "Liveness: the process is up (touches no store)",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = StatusBody)),
)]
pub(crate) async fn healthz() -> Json<StatusBody> {
    Json(StatusBody { status: "ok" })
}

/// `GET /readyz`: both stores answer within [`READY_LIMIT`] and the clocks agree. A
/// store's failure is logged, not answered (the probe is often reachable by more people
/// than the logs are); a clock out of bounds is named with its offset.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "probes",
    summary = "Readiness: both stores answer within 2 s and the clocks agree",
    responses((status = 200, description = "`{\"status\": \"ready\"}`", body = StatusBody)),
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<StatusBody>, ApiError> {
    match state.service.ready(READY_LIMIT).await {
        Ok(()) => Ok(Json(StatusBody { status: "ready" })),
        Err(e @ ServiceError::ClockOutOfBounds(_)) => Err(e.into()),
        Err(e) => {
            tracing::warn!(code = e.code(), error = %e, "readiness check failed");
            Err(ApiError::not_ready())
        }
    }
}

/// `GET /openapi.json`: the API document (`docs/openapi.json` is the same text).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "probes",
    summary = "This API as an OpenAPI 3.1 document",
    responses((status = 200, description = "the document", content_type = "application/json", body = Object)),
)]
pub(crate) async fn openapi_document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::openapi_json()).into_response()
}

async fn route_not_found() -> ApiError {
    ApiError::route_not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// An image answer: the bytes (or 304 when `If-None-Match` names this image), with
/// the image id as a strong ETag and headers that stop browsers from treating the
/// bytes as anything but the declared image.
fn image_response(
    request_headers: &HeaderMap,
    image_id: ImageId,
    content_type: HeaderValue,
    bytes: Bytes,
    cache_control: HeaderValue,
) -> Response {
    let etag = format!("\"{image_id}\"");
    let len = bytes.len() as u64;
    let mut response = if not_modified(request_headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match range::requested(request_headers, &etag, len) {
            Requested::Whole => {
                let mut ok = bytes.into_response();
                ok.headers_mut().insert(header::CONTENT_TYPE, content_type);
                ok.headers_mut().insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                ok
            }
            Requested::Part { first, last } => {
                // Both ends lie within the image (`range::requested` clamps them).
                let part = bytes.slice(first as usize..=last as usize);
                let mut partial = (StatusCode::PARTIAL_CONTENT, part).into_response();
                partial.headers_mut().insert(header::CONTENT_TYPE, content_type);
                let content_range = HeaderValue::from_str(&format!("bytes {first}-{last}/{len}"));
                partial.headers_mut().extend(content_range.ok().map(|v| (header::CONTENT_RANGE, v)));
                partial
            }
            Requested::Unsatisfiable => {
                let mut refused = ApiError::range_not_satisfiable().into_response();
                let content_range = HeaderValue::from_str(&format!("bytes */{len}"));
                refused.headers_mut().extend(content_range.ok().map(|v| (header::CONTENT_RANGE, v)));
                refused
            }
        }
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::CACHE_CONTROL, cache_control);
    response
}
