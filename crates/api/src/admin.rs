//! The admin router: what operators read (`/metrics`, the status page), served on its
//! own address so a public API listener exposes only the API.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::error::ApiError;
use crate::status::{self, StatusPage};

/// Renders the current figures in the Prometheus text format (the binary installs the
/// recorder and hands its renderer here).
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// The admin routes: `GET /metrics` (Prometheus text format 0.0.4) and, given a
/// status page, `GET /` and `GET /status` (HTML) with `api` beside them (the page's
/// form uploads through it). `api` is the API's own [`router`](crate::router), shared:
/// its upload budgets then bound both listeners together. Without a page, anything
/// else is a JSON 404.
pub fn admin_router(render: RenderMetrics, page: Option<(StatusPage, Router)>) -> Router {
    let metrics = Router::new().route("/metrics", get(metrics)).with_state(render);
    match page {
        None => metrics.fallback(|| async { ApiError::for_status(axum::http::StatusCode::NOT_FOUND) }),
        Some((page, api)) => {
            let status =
                Router::new().route("/", get(status::page)).route("/status", get(status::page)).with_state(page);
            metrics.merge(status).merge(api)
        }
    }
}

async fn metrics(State(render): State<RenderMetrics>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render())
}
