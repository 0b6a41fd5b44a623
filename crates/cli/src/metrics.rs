//! The process's figures: the Prometheus recorder every part records into, installed
//! once at start, and the admin listener that serves them at `/metrics`.
//!
//! The exporter opens no socket of its own (no default features): the figures are
//! served by our router, on the address the operator chose.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use profilestore_api::RenderMetrics;

/// How often histograms are compacted (the exporter needs its upkeep run).
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the recorder with explicit buckets for every histogram (none is ever
/// rendered as a summary), registers every figure's help text, and answers the
/// renderer. Call once, before any store is opened.
pub fn install() -> anyhow::Result<RenderMetrics> {
    let buckets = |name: &str, buckets: &[f64]| (Matcher::Full(name.to_owned()), buckets.to_vec());
    let mut builder = PrometheusBuilder::new()
        // Any histogram without buckets of its own gets the store call's.
        .set_buckets(profilestore_stores::measured::CALL_BUCKETS)
        .context("histogram buckets")?;
    for (matcher, values) in [
        buckets(profilestore_api::metrics::REQUEST_DURATION, profilestore_api::metrics::REQUEST_BUCKETS),
        buckets(profilestore_stores::measured::CALL_DURATION, profilestore_stores::measured::CALL_BUCKETS),
        buckets(profilestore_cleaner::metrics::CYCLE_DURATION, profilestore_cleaner::metrics::CYCLE_BUCKETS),
    ] {
        builder = builder.set_buckets_for_metric(matcher, &values).context("histogram buckets")?;
    }
    let handle = builder.install_recorder().context("installing the metrics recorder")?;
    profilestore_core::metrics::describe();
    profilestore_stores::measured::describe();
    profilestore_api::metrics::describe();
    profilestore_cleaner::metrics::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP).await;
            upkeep.run_upkeep();
        }
    });
    Ok(Arc::new(move || handle.render()))
}

/// The admin listener, bound and not yet serving.
pub struct AdminListener {
    listener: tokio::net::TcpListener,
    /// The address it is bound to (the port chosen, for port 0).
    pub addr: SocketAddr,
}

impl AdminListener {
    /// Binds `addr`.
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<AdminListener> {
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (admin)"))?;
        let addr = listener.local_addr()?;
        Ok(AdminListener { listener, addr })
    }

    /// Serves `/metrics` (rendered by `render`) and, given one, the status page with
    /// the API, in the background until `shutdown`, with `options` (timeouts, TLS).
    pub fn serve(
        self,
        render: RenderMetrics,
        page: Option<(profilestore_api::StatusPage, profilestore_api::Router)>,
        options: profilestore_api::ServeOptions,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        tracing::info!(address = %self.addr, status_page = page.is_some(), "serving /metrics");
        let app = profilestore_api::admin_router(render, page);
        tokio::spawn(async move {
            if let Err(e) = profilestore_api::serve_with(self.listener, app, shutdown, options).await {
                tracing::error!(error = %e, "the admin listener failed");
            }
        });
    }
}

/// Prints `lines` on stdout in one write, so a reader that takes the first line and
/// closes the pipe never makes a later print fail.
pub fn announce(lines: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(lines.as_bytes())?;
    out.flush()
}
