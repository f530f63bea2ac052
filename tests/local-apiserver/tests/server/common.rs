//! Shared helpers for the integration tests.

use std::future::Future;
use std::time::Duration;

use kube::core::Status;
use local_apiserver::LocalApiServer;

pub async fn server() -> LocalApiServer {
    LocalApiServer::start().await.expect("local-apiserver starts")
}

/// The Status of a failed API call; panics when the call did not fail with one.
pub fn status<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error status, got {other:?}"),
    }
}

/// Polls `check` until it returns Some, for up to 10 s (background controllers are async).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..1000 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}
