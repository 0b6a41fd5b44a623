//! An answer is sent only until its request's deadline (the request timeout after it
//! arrived): a client that reads slowly, and so holds the answer's bytes, is cut off
//! then and its connection closed. (The handling keeps to the deadline by itself; a
//! client that stops reading altogether is dropped sooner, by the send timeout.)

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use profilestore_core::service::ProfileService;
use tokio::time::{Instant, Sleep};

/// How long an answer ready at or after its request's deadline may still take to send.
const LAST_ANSWER_GRACE: Duration = Duration::from_secs(10);

/// Sends the answer's body only until the request's deadline, or [`LAST_ANSWER_GRACE`]
/// after the answer is ready, whichever is later.
pub(crate) async fn within_request_timeout(
    State(service): State<ProfileService>,
    request: Request,
    next: Next,
) -> Response {
    // Transport timing on tokio's clock (paused in tests), not a decision about the
    // stores, which keep to the database's clock themselves.
    #[allow(clippy::disallowed_methods)]
    let deadline = Instant::now() + service.timings().request_timeout;
    // The handling keeps to the deadline itself (the service's deadlines, the upload's
    // timeout, the bounded drain of a refused body), each answering in its own terms.
    let response = next.run(request).await;
    // An answer made at the deadline (a 504 says just that) still gets a moment to go.
    #[allow(clippy::disallowed_methods)]
    let deadline = deadline.max(Instant::now() + LAST_ANSWER_GRACE);
    let (parts, body) = response.into_parts();
    let body = Body::new(UntilDeadline { inner: body, deadline: Box::pin(tokio::time::sleep_until(deadline)) });
    Response::from_parts(parts, body)
}

/// An answer's body that fails once the deadline has passed.
struct UntilDeadline {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
}

/// The error that cuts an answer off at its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the answer was not read within the request timeout")]
struct TooSlowToRead;

impl HttpBody for UntilDeadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            tracing::info!("cut off an answer its client did not read within the request timeout");
            return Poll::Ready(Some(Err(axum::Error::new(TooSlowToRead))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
