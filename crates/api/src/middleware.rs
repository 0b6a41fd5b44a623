//! Middleware applied to every route: the request id, one log line per request, and
//! the net that gives every error the JSON shape.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::client::ClientAddr;
use crate::error::ApiError;

/// The longest raw path logged for a request that matched no route; the rest is cut
/// so that a client cannot write arbitrarily long log lines.
const MAX_LOGGED_PATH: usize = 200;

/// The header a request id arrives and is answered in.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id accepted from a client.
const MAX_REQUEST_ID: usize = 64;

/// Gives every request an id: the client's `X-Request-Id` when it is well formed (1 to
/// 64 characters of `A-Z a-z 0-9 . _ -`), a fresh random one otherwise. The id is
/// answered in the same header and is a field of every log line the request writes.
pub(crate) async fn request_id(mut request: Request, next: Next) -> Response {
    use tracing::Instrument as _;
    let id = match request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()) {
        Some(id) if well_formed_request_id(id) => id.to_owned(),
        _ => uuid::Uuid::new_v4().simple().to_string(),
    };
    let value = HeaderValue::from_str(&id).expect("a well-formed request id is a valid header value");
    request.headers_mut().insert(REQUEST_ID, value.clone());
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = next.run(request).instrument(span).await;
    response.headers_mut().insert(REQUEST_ID, value);
    response
}

fn well_formed_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Logs one line per request when it is answered: method, path (the route template,
/// e.g. `/v1/profiles/{user_id}`, so user ids stay out of the access log), the client's
/// address (as the per-client limits count it; `-` when unknown), status and duration
/// in milliseconds. 5xx answers log at `warn`, the rest at `info`.
pub(crate) async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let client = request.extensions().get::<ClientAddr>().map_or_else(|| "-".to_owned(), |c| c.0.to_string());
    let path = match request.extensions().get::<MatchedPath>() {
        Some(matched) => matched.as_str().to_owned(),
        None => truncate(request.uri().path(), MAX_LOGGED_PATH).to_owned(),
    };
    // Measures latency for the log line only; no decision depends on it, so it need
    // not go through the Clock seam.
    #[allow(clippy::disallowed_methods)]
    let started = tokio::time::Instant::now();
    let response = next.run(request).await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let status = response.status().as_u16();
    if response.status().is_server_error() {
        tracing::warn!(method = %method, path = %path, client, status, duration_ms, "request answered");
    } else {
        tracing::info!(method = %method, path = %path, client, status, duration_ms, "request answered");
    }
    response
}

/// Turns any error response that is not JSON (axum's own plain-text rejections, such
/// as its body-limit 413) into the API's JSON error shape, keeping its status and its
/// other headers (e.g. `Allow`, `Retry-After`).
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(response.headers()) {
        return response;
    }
    let (mut parts, _plain_body) = response.into_parts();
    let (replacement, body) = ApiError::for_status(status).into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    // An uncatalogued status is answered as the documented one that stands for it.
    parts.status = replacement.status;
    for (name, value) in &replacement.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, body)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt as _;

    async fn through_json_errors(handler_status: StatusCode) -> Response {
        let app = Router::new()
            .route(
                "/",
                get(move || async move {
                    let mut plain = (handler_status, "plain text from axum").into_response();
                    plain.headers_mut().insert(header::ALLOW, "GET".parse().unwrap());
                    plain
                }),
            )
            .layer(axum::middleware::from_fn(json_errors));
        app.oneshot(axum::http::Request::get("/").body(Body::empty()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn plain_text_errors_become_json_and_keep_their_headers() {
        let response = through_json_errors(StatusCode::PAYLOAD_TOO_LARGE).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(response.headers()[header::ALLOW], "GET");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "payload_too_large");
    }

    #[tokio::test]
    async fn successes_pass_untouched() {
        let response = through_json_errors(StatusCode::OK).await;
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        assert_eq!(&body[..], b"plain text from axum");
    }

    #[test]
    fn request_ids_from_clients_are_kept_only_when_well_formed() {
        assert!(well_formed_request_id("abc-123_x.y"));
        assert!(well_formed_request_id(&"a".repeat(64)));
        assert!(!well_formed_request_id(""));
        assert!(!well_formed_request_id(&"a".repeat(65)));
        assert!(!well_formed_request_id("a b"));
        assert!(!well_formed_request_id("a\u{e9}"));
        assert!(!well_formed_request_id("a\nInjected: header"));
    }

    #[tokio::test]
    async fn a_request_id_is_answered_the_clients_when_well_formed_and_a_fresh_one_otherwise() {
        let app = Router::new().route("/", get(|| async { "ok" })).layer(axum::middleware::from_fn(request_id));
        let ask = |id: Option<&str>| {
            let mut request = axum::http::Request::get("/");
            if let Some(id) = id {
                request = request.header("x-request-id", id);
            }
            app.clone().oneshot(request.body(Body::empty()).unwrap())
        };
        let kept = ask(Some("client-id.1")).await.unwrap();
        assert_eq!(kept.headers()["x-request-id"], "client-id.1");
        let replaced = ask(Some("not ok")).await.unwrap();
        let fresh = replaced.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(well_formed_request_id(&fresh) && fresh != "not ok", "{fresh}");
        let other = ask(None).await.unwrap();
        assert_ne!(other.headers()["x-request-id"].to_str().unwrap(), fresh, "each request gets its own");
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("aéb", 2), "a");
        assert_eq!(truncate("aéb", 3), "aé");
    }
}
