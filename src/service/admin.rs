//! The admin HTTP API (SPEC §6): `/healthz`, `/readyz`, `/metrics`,
//! `/status`. Binds 127.0.0.1 by default; mutating endpoints (later issues)
//! require the bearer token.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use super::metrics::Metrics;

/// What the handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// Live metrics.
    pub metrics: Arc<Metrics>,
    /// Consumer group.
    pub group: String,
    /// Input topics.
    pub input_topics: Vec<String>,
    /// Output target as configured.
    pub output: String,
}

/// The router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(state)
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.metrics.assigned_partitions.load(Relaxed) > 0 {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no partitions assigned yet\n",
        )
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

/// The JSON that `/status` and the `status` command show.
pub fn status_json(s: &AdminState) -> serde_json::Value {
    let m = &s.metrics;
    serde_json::json!({
        "group": s.group,
        "input_topics": s.input_topics,
        "output": s.output,
        "ready": m.assigned_partitions.load(Relaxed) > 0,
        "output_down": m.output_down.load(Relaxed) == 1,
        "searches": m.searches.load(Relaxed),
        "searches_version": 1,
        "documents_in": m.documents_in.load(Relaxed),
        "documents_bad": m.documents_bad.load(Relaxed),
        "documents_matched": m.documents_matched.load(Relaxed),
        "match_records_out": m.records_out.load(Relaxed),
        "consumer_lag": m.lag_total.load(Relaxed),
        "checkpoint_age_seconds": m.checkpoint_age_secs(),
        "partitions": *m.partitions.lock().expect("status lock"),
    })
}

async fn status(State(s): State<AdminState>) -> impl IntoResponse {
    Json(status_json(&s))
}

/// Binds `addr` and serves until `shutdown` resolves; returns the bound
/// address (port 0 picks one) through `bound`.
///
/// # Errors
///
/// When the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    state: AdminState,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let _ = bound.send(listener.local_addr()?);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
