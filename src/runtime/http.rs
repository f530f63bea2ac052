//! The operator's HTTP server: `/livez`, `/readyz` and `/metrics` on `--metrics-addr`.
//!
//! - `/livez` answers 200 while the process can serve requests at all.
//! - `/readyz` answers 200 once [`Readiness`] is set and 503 before. It does not depend on
//!   leadership, so a Deployment rollout never stalls on the replica that cannot lead: the leader's
//!   controller sets it when its caches have synced, and a standby (which runs no controller) sets
//!   it once it takes part in the election (`LeaderElection::first_contact`).
//! - `/metrics` is the OpenMetrics text of [`Metrics::encode`], served with the OpenMetrics content
//!   type, which Prometheus negotiates and parses (counter `_total` samples included). Served as
//!   `text/plain; version=0.0.4` the `# EOF` trailer and counter naming would not match.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::runtime::metrics::Metrics;

/// Content type of the OpenMetrics 1.0 text format that `prometheus-client` writes.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Shared readiness flag: cheap to clone, set once the reconciler's caches have synced (or, on a
/// standby replica, once it takes part in the election).
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

/// The routes, without a listener; used by [`serve`] and usable in tests with `tower::ServiceExt`.
pub fn router(metrics: Arc<Metrics>, readiness: Readiness) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { metrics, readiness })
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: caches have not synced yet\n").into_response()
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], state.metrics.encode()).into_response()
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("--metrics-addr {addr}: cannot listen: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server on {addr} failed: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server task on {addr} ended abnormally: {source}")]
    Task {
        addr: SocketAddr,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// A running HTTP server.
pub struct HttpServer {
    local_addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl HttpServer {
    /// The address actually bound (with the real port when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the server has stopped (after `shutdown` was cancelled and open requests
    /// were answered).
    pub async fn wait(self) -> Result<(), HttpError> {
        let addr = self.local_addr;
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(HttpError::Serve { addr, source }),
            Err(source) => Err(HttpError::Task { addr, source }),
        }
    }
}

/// Binds `addr` and serves until `shutdown` is cancelled. Binding happens before this returns,
/// so a port already in use is reported at start-up, not later in a background task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<HttpServer, HttpError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| HttpError::Bind { addr, source })?;
    let local_addr = listener.local_addr().map_err(|source| HttpError::Bind { addr, source })?;
    let app = router(metrics, readiness);
    let task =
        tokio::spawn(
            async move { axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await },
        );
    tracing::info!(%local_addr, "serving /livez, /readyz and /metrics");
    Ok(HttpServer { local_addr, task })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One HTTP/1.1 GET over a fresh connection; returns (status, headers, body).
    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write request");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.expect("read response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("header/body separator");
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    async fn start() -> (HttpServer, Arc<Metrics>, Readiness, CancellationToken) {
        let metrics = Arc::new(Metrics::new());
        let readiness = Readiness::new();
        let token = CancellationToken::new();
        let server = serve("127.0.0.1:0".parse().expect("addr"), metrics.clone(), readiness.clone(), token.clone())
            .await
            .expect("serve");
        (server, metrics, readiness, token)
    }

    #[tokio::test]
    async fn livez_answers_and_readyz_follows_the_flag() {
        let (server, _metrics, readiness, token) = start().await;
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        assert_eq!(get(addr, "/livez").await.0, 200);
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert!(body.contains("caches have not synced"), "{body}");
        readiness.set_ready();
        assert_eq!(get(addr, "/readyz").await.0, 200);
        assert_eq!(get(addr, "/nope").await.0, 404);
        token.cancel();
        server.wait().await.expect("clean stop");
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_text_and_live() {
        let (server, metrics, _readiness, token) = start().await;
        metrics.leader.set(1);
        metrics.count_reconcile("ok");
        let (status, head, body) = get(server.local_addr(), "/metrics").await;
        assert_eq!(status, 200);
        assert!(head.contains(&format!("content-type: {OPENMETRICS_CONTENT_TYPE}")), "{head}");
        assert!(body.contains("hardened_csi_operator_leader 1"), "{body}");
        assert!(body.contains("hardened_csi_operator_reconciles_total{result=\"ok\"} 1"), "{body}");
        assert!(body.ends_with("# EOF\n"));
        token.cancel();
        server.wait().await.expect("clean stop");
    }

    #[tokio::test]
    async fn shutdown_stops_the_listener() {
        let (server, _metrics, _readiness, token) = start().await;
        let addr = server.local_addr();
        token.cancel();
        server.wait().await.expect("clean stop");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "nothing listens after shutdown");
    }

    #[tokio::test]
    async fn a_port_in_use_is_an_error_naming_the_flag() {
        let (server, metrics, readiness, token) = start().await;
        let err = serve(server.local_addr(), metrics, readiness, CancellationToken::new())
            .await
            .err()
            .expect("second bind fails")
            .to_string();
        assert!(err.starts_with("--metrics-addr"), "{err}");
        token.cancel();
        server.wait().await.expect("clean stop");
    }
}
