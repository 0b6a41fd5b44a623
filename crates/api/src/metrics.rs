//! The HTTP figures: requests by route, method and status, latency histograms by
//! route, body bytes in and out, requests in flight. Recorded through the `metrics`
//! facade (nothing happens until the binary installs a recorder).
//!
//! Routes are the router's templates (`/v1/profiles/{user_id}`), never raw paths, so
//! user ids stay out of the figures and the label set stays bounded; a request that
//! matched no route is `unmatched`.

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

/// Requests answered, by `route`, `method` and `status`.
pub const REQUESTS: &str = "profilestore_http_requests_total";
/// Time from a request's arrival to its answer's headers, in seconds, by `route` and
/// `method`.
pub const REQUEST_DURATION: &str = "profilestore_http_request_duration_seconds";
/// Request body bytes received, by `route`.
pub const BYTES_IN: &str = "profilestore_http_request_body_bytes_total";
/// Response body bytes sent, by `route`.
pub const BYTES_OUT: &str = "profilestore_http_response_body_bytes_total";
/// Requests being handled now.
pub const IN_FLIGHT: &str = "profilestore_http_requests_in_flight";

/// Every figure this module records, by name.
pub const NAMES: &[&str] = &[REQUESTS, REQUEST_DURATION, BYTES_IN, BYTES_OUT, IN_FLIGHT];

/// The buckets of [`REQUEST_DURATION`], in seconds: from a cached read to a request cut
/// at a long `request_timeout`.
pub const REQUEST_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Registers the help text of the HTTP figures with the installed recorder.
pub fn describe() {
    describe_counter!(REQUESTS, "HTTP requests answered, by route, method and status.");
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "Time to answer an HTTP request's headers, by route.");
    describe_counter!(BYTES_IN, Unit::Bytes, "HTTP request body bytes received, by route.");
    describe_counter!(BYTES_OUT, Unit::Bytes, "HTTP response body bytes sent, by route.");
    describe_gauge!(IN_FLIGHT, "HTTP requests being handled now.");
}

/// Measures every request (see the module documentation).
pub(crate) async fn measure(request: Request, next: Next) -> Response {
    let route = match request.extensions().get::<MatchedPath>() {
        Some(matched) => matched.as_str().to_owned(),
        None => "unmatched".to_owned(),
    };
    let method = method_label(request.method());
    let in_flight = InFlight::enter();
    // Latency for the figures only: no decision depends on it, so it need not go
    // through the Clock seam.
    #[allow(clippy::disallowed_methods)]
    let started = tokio::time::Instant::now();
    let request = request.map(|body| counted(body, counter!(BYTES_IN, "route" => route.clone())));
    let response = next.run(request).await;
    histogram!(REQUEST_DURATION, "route" => route.clone(), "method" => method).record(started.elapsed().as_secs_f64());
    let status = response.status().as_str().to_owned();
    counter!(REQUESTS, "route" => route.clone(), "method" => method, "status" => status).increment(1);
    drop(in_flight);
    response.map(|body| counted(body, counter!(BYTES_OUT, "route" => route)))
}

/// `body`, adding the length of each data frame to `bytes` as it passes; its size
/// hint is kept, so an answer of known length keeps its `Content-Length`.
fn counted(body: Body, bytes: Counter) -> Body {
    Body::new(Counted { inner: body, bytes })
}

struct Counted {
    inner: Body,
    bytes: Counter,
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.bytes.increment(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A bounded label for the method: the API's own, or `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// One request counted in [`IN_FLIGHT`] until dropped (also when the client goes away
/// mid-request and the handler is dropped).
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        gauge!(IN_FLIGHT).increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!(IN_FLIGHT).decrement(1.0);
    }
}
