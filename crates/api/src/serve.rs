//! Serving a router over HTTP/1.1 with the bounds a public listener needs: a client
//! must send its request head within a timeout (a connection that dribbles headers
//! holds no slot for long), must keep taking the answer it is sent (one that stops
//! reading is dropped with the bytes it held), and a shutdown waits for the requests in
//! flight at most a bounded time.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use crate::tls::TlsFiles;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Sleep;

/// How a listener bounds its clients and its shutdown.
#[derive(Clone)]
pub struct ServeOptions {
    /// How long a client may take to send a request's head (request line and
    /// headers), on a new connection and between requests on a kept-alive one.
    pub header_timeout: Duration,
    /// How long a client may go without taking any of the answer being sent to it
    /// (its socket stays full); then its connection is dropped, with what it held.
    pub send_timeout: Duration,
    /// The least average pace, in bytes per second, a client that fell behind (its
    /// socket full) must take its answer at once its first 10 s behind are past; slower,
    /// its connection is dropped. 0: no minimum (the send timeout still applies).
    pub min_send_rate: u64,
    /// After the shutdown signal, how long the requests in flight may take to finish
    /// before their connections are dropped; `None` waits for them all.
    pub shutdown_limit: Option<Duration>,
    /// Serve HTTPS with this certificate (reloaded when its files change); `None`:
    /// plain HTTP.
    pub tls: Option<Arc<TlsFiles>>,
}

impl ServeOptions {
    /// The default [`header_timeout`](Self::header_timeout): 10 s.
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default [`min_send_rate`](Self::min_send_rate): 8 KiB/s.
    pub const DEFAULT_MIN_SEND_RATE: u64 = 8 * 1024;
    /// The default [`send_timeout`](Self::send_timeout): 60 s.
    pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
}

impl Default for ServeOptions {
    /// A 10 s head timeout, a 60 s send timeout; a shutdown waits for every request in
    /// flight.
    fn default() -> Self {
        ServeOptions {
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
            send_timeout: Self::DEFAULT_SEND_TIMEOUT,
            min_send_rate: Self::DEFAULT_MIN_SEND_RATE,
            shutdown_limit: None,
            tls: None,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, lets
/// the requests in flight finish (within `options.shutdown_limit`), and returns.
pub async fn serve_with(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(options.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than
                    // spin, and keep serving the connections there are.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = WithPeer { app: TowerToHyperService::new(app.clone()), peer };
        let (limit, min_rate) = (options.send_timeout, options.min_send_rate);
        match &options.tls {
            None => {
                let io = TokioIo::new(SendTimeout::new(stream, limit, min_rate));
                spawn_connection(graceful.watch(http.serve_connection(io, service)));
            }
            Some(tls) => {
                // The handshake runs in the connection's own task, within the head
                // timeout: a client that never finishes it holds nothing for long.
                let (acceptor, http, watcher) = (tls.acceptor(), http.clone(), graceful.watcher());
                let handshake_limit = options.header_timeout;
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(handshake_limit, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => return tracing::debug!("TLS handshake timed out"),
                    };
                    let io = TokioIo::new(SendTimeout::new(stream, limit, min_rate));
                    let connection = watcher.watch(http.serve_connection(io, service));
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    match options.shutdown_limit {
        None => graceful.shutdown().await,
        Some(limit) => {
            if tokio::time::timeout(limit, graceful.shutdown()).await.is_err() {
                tracing::warn!(limit_secs = limit.as_secs(), "requests still in flight at the shutdown limit were cut");
            }
        }
    }
    Ok(())
}

/// The app as one connection is served: each request carries the connection's peer
/// address as axum's [`ConnectInfo`], from which the client is told (`client`).
#[derive(Clone)]
struct WithPeer {
    app: TowerToHyperService<axum::Router>,
    peer: SocketAddr,
}

type HyperRequest = hyper::Request<hyper::body::Incoming>;
type AppService = TowerToHyperService<axum::Router>;

impl hyper::service::Service<HyperRequest> for WithPeer {
    type Response = <AppService as hyper::service::Service<HyperRequest>>::Response;
    type Error = <AppService as hyper::service::Service<HyperRequest>>::Error;
    type Future = <AppService as hyper::service::Service<HyperRequest>>::Future;

    fn call(&self, mut request: HyperRequest) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        self.app.call(request)
    }
}

/// Runs a connection to its end; a client that went away, or sent garbage, is its own
/// business.
fn spawn_connection<F, E>(connection: F)
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}

/// A connection's socket whose writes fail once they have been stalled (the client
/// reading nothing) for `limit`: hyper then drops the connection and what it held.
struct SendTimeout<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    /// The least average pace, in bytes per second, a client that fell behind must
    /// take its answer at, once [`SEND_GRACE`] has passed; 0: no minimum.
    min_rate: u64,
    /// Since when the client has been behind (its socket full), and what it took since.
    behind: Option<Behind>,
    /// Whether the last write waited for the client.
    waited: bool,
}

/// How long a client that fell behind may take before its pace is held to the minimum.
const SEND_GRACE: Duration = Duration::from_secs(10);

struct Behind {
    since: tokio::time::Instant,
    taken: u64,
    deadline: Pin<Box<Sleep>>,
}

impl<S> SendTimeout<S> {
    fn new(inner: S, limit: Duration, min_rate: u64) -> Self {
        SendTimeout { inner, limit, stalled: None, min_rate, behind: None, waited: false }
    }

    /// Passes a write's answer on, holding a client that fell behind to the minimum
    /// pace, and then to the send timeout.
    fn guard_write(&mut self, cx: &mut Context<'_>, attempt: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match &attempt {
            Poll::Ready(Ok(n)) => {
                match (&mut self.behind, self.waited) {
                    (Some(behind), true) => behind.taken += *n as u64,
                    // Written without waiting: the client keeps up.
                    _ => self.behind = None,
                }
                self.waited = false;
            }
            Poll::Ready(Err(_)) => {}
            Poll::Pending if self.min_rate > 0 => {
                self.waited = true;
                // Transport timing on tokio's clock, not a decision about the stores.
                #[allow(clippy::disallowed_methods)]
                let now = tokio::time::Instant::now();
                let behind = self.behind.get_or_insert_with(|| Behind {
                    since: now,
                    taken: 0,
                    deadline: Box::pin(tokio::time::sleep_until(now)),
                });
                let due =
                    behind.since + SEND_GRACE + Duration::from_secs_f64(behind.taken as f64 / self.min_rate as f64);
                behind.deadline.as_mut().reset(due);
                if behind.deadline.as_mut().poll(cx).is_ready() {
                    tracing::info!(
                        min_rate = self.min_rate,
                        "dropped a connection whose client takes its answer too slowly"
                    );
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client reads too slowly")));
                }
            }
            Poll::Pending => self.waited = true,
        }
        self.guard(cx, attempt)
    }

    /// Passes `attempt`'s answer on, timing how long it has been pending.
    fn guard<T>(&mut self, cx: &mut Context<'_>, attempt: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if attempt.is_ready() {
            self.stalled = None;
            return attempt;
        }
        let limit = self.limit;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            tracing::info!(limit_secs = limit.as_secs(), "dropped a connection whose client stopped reading");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let attempt = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.guard_write(cx, attempt)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let attempt = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.guard_write(cx, attempt)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let attempt = Pin::new(&mut self.inner).poll_flush(cx);
        self.guard(cx, attempt)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Over TLS, shutting down writes `close_notify`: a peer that reads nothing
        // must not hold the connection here either.
        let attempt = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.guard(cx, attempt)
    }
}
