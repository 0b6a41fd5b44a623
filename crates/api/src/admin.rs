//! The admin router: what operators read (`/metrics`), served on its own address so a
//! public API listener exposes only the API.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::error::ApiError;

/// Renders the current figures in the Prometheus text format (the binary installs the
/// recorder and hands its renderer here).
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// The admin routes: `GET /metrics` (Prometheus text format 0.0.4) and `GET /healthz`;
/// anything else is a JSON 404.
pub fn admin_router(render: RenderMetrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .fallback(|| async { ApiError::for_status(axum::http::StatusCode::NOT_FOUND) })
        .with_state(render)
}

async fn metrics(State(render): State<RenderMetrics>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render())
}
