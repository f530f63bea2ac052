//! Counts every request of the operator's Kubernetes client, by method and answer code, as a
//! tower layer on the kube client (`hardened_csi_operator_kube_requests_total`). The labels are
//! small fixed sets: HTTP methods and status codes, never paths or object names.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::metrics::{KubeRequestLabels, KubeRequests};

#[derive(Clone)]
pub struct CountRequestsLayer(pub KubeRequests);

impl<S> Layer<S> for CountRequestsLayer {
    type Service = CountRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountRequests { inner, requests: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct CountRequests<S> {
    inner: S,
    requests: KubeRequests,
}

impl<S, B, R> Service<Request<B>> for CountRequests<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let method = req.method().as_str().to_string();
        let requests = self.requests.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            let code = match &result {
                Ok(r) => r.status().as_u16().to_string(),
                Err(_) => "error".to_string(),
            };
            requests.get_or_create(&KubeRequestLabels { method, code }).inc();
            result
        })
    }
}
