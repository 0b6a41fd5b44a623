//! Refusing a request whose body is still arriving, so that the client reads the
//! answer: the unread rest is read and discarded, up to a bound of bytes and time,
//! before the answer goes out.
//!
//! A server that answers and closes while a client is still sending has unread data
//! in its socket: closing then sends a reset, and ordinary clients (curl, browsers,
//! HTTP libraries) report "connection reset" instead of the 413 or 400. Draining costs
//! bandwidth, never memory (each piece is dropped as it arrives), and is bounded: past
//! the bound the connection is closed, which only a client sending far beyond any
//! limit sees.
//!
//! With `Expect: 100-continue` and a body the handler never touched, the client has
//! not been told to send it: nothing is drained, the answer goes out at once, and the
//! connection closes. Neither is a body drained whose declared rest is over the bound,
//! nor one refused for arriving too slowly (408).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};

/// How long a refused body may take to drain before the connection is closed.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The least a refused body is drained by, whatever the body limit: more than the
/// socket buffers on both sides hold (a few MiB each), so that a client which sends a
/// body somewhat over the limit without waiting finishes sending and reads the answer.
pub(crate) const MIN_DRAIN_BYTES: u64 = 32 * 1024 * 1024;

/// How much of a refused body is read and discarded, at most: `bytes` after the
/// refusal (the body limit, and at least [`MIN_DRAIN_BYTES`]), within [`DRAIN_TIME`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct DrainBound {
    pub(crate) bytes: u64,
}

/// What a handler left of the request body when it dropped it, and whether it ever
/// asked for any of it.
#[derive(Default)]
struct Leftover {
    body: Option<Body>,
    touched: bool,
}

/// The request body, handing what is left of it back to [`drain_refused`] when dropped.
struct Reclaimable {
    inner: Option<Body>,
    leftover: Arc<Mutex<Leftover>>,
}

impl HttpBody for Reclaimable {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.leftover.lock().unwrap_or_else(|e| e.into_inner()).touched = true;
        match self.inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Reclaimable {
    fn drop(&mut self) {
        if let Some(body) = self.inner.take().filter(|body| !body.is_end_stream()) {
            self.leftover.lock().unwrap_or_else(|e| e.into_inner()).body = Some(body);
        }
    }
}

/// Answers an error only after the unread rest of the request body has been read and
/// discarded (within `bound` and [`DRAIN_TIME`]); past the bound, or after a refused
/// `Expect: 100-continue`, the answer says `Connection: close`.
pub(crate) async fn drain_refused(State(bound): State<DrainBound>, request: Request, next: Next) -> Response {
    let expects_continue = request
        .headers()
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let leftover = Arc::new(Mutex::new(Leftover::default()));
    let (parts, body) = request.into_parts();
    let body = Body::new(Reclaimable { inner: Some(body), leftover: leftover.clone() });
    let mut response = next.run(Request::from_parts(parts, body)).await;
    let Leftover { body, touched } = std::mem::take(&mut *leftover.lock().unwrap_or_else(|e| e.into_inner()));
    let Some(rest) = body else { return response };
    if !response.status().is_client_error() && !response.status().is_server_error() {
        // A success that left body unread is the handler's business; close to be safe.
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    // Nothing to gain: a client that was never told to send, one too slow to finish
    // in its request's time, or one that declared more than the bound drains.
    let hopeless = (expects_continue && !touched)
        || response.status() == StatusCode::REQUEST_TIMEOUT
        || rest.size_hint().lower() > bound.bytes;
    let drained = !hopeless && discard(rest, bound.bytes).await;
    if !drained {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads and drops `body` to its end, unless it holds more than `max` bytes or takes
/// longer than [`DRAIN_TIME`]; whether it reached the end.
async fn discard(mut body: Body, max: u64) -> bool {
    let reading = async {
        let mut seen = 0u64;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            let Ok(frame) = frame else { return false };
            seen += frame.data_ref().map_or(0, |data| data.len() as u64);
            if seen > max {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, reading).await.unwrap_or(false)
}
