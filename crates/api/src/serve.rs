//! Serving a router over HTTP/1.1 with the bounds a public listener needs: a client
//! must send its request head within a timeout (a connection that dribbles headers
//! holds no slot for long), and a shutdown waits for the requests in flight at most a
//! bounded time.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// How a listener bounds its clients and its shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// How long a client may take to send a request's head (request line and
    /// headers), on a new connection and between requests on a kept-alive one.
    pub header_timeout: Duration,
    /// After the shutdown signal, how long the requests in flight may take to finish
    /// before their connections are dropped; `None` waits for them all.
    pub shutdown_limit: Option<Duration>,
}

impl ServeOptions {
    /// The default [`header_timeout`](Self::header_timeout): 10 s.
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for ServeOptions {
    /// A 10 s head timeout; a shutdown waits for every request in flight.
    fn default() -> Self {
        ServeOptions { header_timeout: Self::DEFAULT_HEADER_TIMEOUT, shutdown_limit: None }
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
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
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
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that went away, or sent garbage, is its own business.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
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
