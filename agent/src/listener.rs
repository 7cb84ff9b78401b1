//! The agent's local HTTP listener (`--listen`, default 127.0.0.1:9090):
//!
//! * `GET /metrics`: Prometheus text format (see [`crate::metrics`]);
//! * `GET /healthz`: 200 while the process is alive (liveness);
//! * `GET /readyz`: 200 when a cycle read a valid index within the readiness window (the
//!   larger of three intervals and `--max-backoff`), 503 with the reason otherwise;
//! * `GET /status`: the current status report (the same JSON as `status.json`);
//! * `POST /sync`: runs a cycle now and answers with its outcome once it is done.
//!
//! It runs on its own runtime worker, so probes are answered while a cycle renders a
//! large bundle.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use crate::metrics;

/// A request to run a cycle now; the answer is the cycle's summary as JSON.
pub type SyncRequest = oneshot::Sender<serde_json::Value>;

/// What the listener shares with the daemon loop.
#[derive(Debug)]
pub struct Shared {
    /// The metrics registry.
    pub registry: Registry,
    /// Readiness bookkeeping.
    pub health: Mutex<Health>,
    /// The latest status report (JSON).
    pub status: Mutex<Vec<u8>>,
    /// Where `POST /sync` sends its requests.
    pub sync: mpsc::Sender<SyncRequest>,
}

/// Readiness: when a cycle last read a valid index.
#[derive(Debug, Clone)]
pub struct Health {
    /// Last cycle that read a valid index.
    pub last_success: Option<Instant>,
    /// Readiness is lost when no success happened within this window.
    pub window: Duration,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
}

impl Health {
    /// `Ok` when ready, else the reason.
    pub fn ready(&self, now: Instant) -> Result<(), String> {
        match self.last_success {
            Some(t) if now.duration_since(t) <= self.window => Ok(()),
            Some(t) => Err(format!(
                "no valid index for {}s (window {}s): {}",
                now.duration_since(t).as_secs(),
                self.window.as_secs(),
                self.last_error.as_deref().unwrap_or("no cycle finished since")
            )),
            None => Err(format!(
                "no valid index read yet: {}",
                self.last_error.as_deref().unwrap_or("first cycle still running")
            )),
        }
    }
}

/// The listener's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/sync", post(sync))
        .with_state(shared)
}

/// Binds `addr` and serves until the process exits.
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    if let Err(e) = axum::serve(listener, router(shared)).await {
        tracing::error!(error = %e, "local listener stopped");
    }
}

async fn metrics_text(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::encode(&shared.registry),
    )
        .into_response()
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let health = shared.health.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match health.ready(Instant::now()) {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()).into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    let body = shared.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if body.is_empty() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no cycle has finished yet\n").into_response();
    }
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn sync(State(shared): State<Arc<Shared>>) -> Response {
    let (tx, rx) = oneshot::channel();
    if shared.sync.send(tx).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "agent is shutting down\n").into_response();
    }
    match rx.await {
        Ok(outcome) => ([(header::CONTENT_TYPE, "application/json")], outcome.to_string()).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "agent is shutting down\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_a_recent_success() {
        let start = Instant::now();
        let mut h = Health {
            last_success: None,
            window: Duration::from_secs(180),
            last_error: Some("source down".into()),
        };
        assert!(h.ready(start).expect_err("never succeeded").contains("source down"));
        h.last_success = Some(start);
        assert!(h.ready(start + Duration::from_secs(180)).is_ok());
        assert!(h.ready(start + Duration::from_secs(181)).is_err());
    }
}
