use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchParams};
use local_apiserver::Match;
use serde_json::json;

use super::common::{server, status};

#[tokio::test]
async fn fail_next_n_and_a_share_with_chosen_status() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    srv.faults().fail_next(2, Match::new("list", "configmaps"), 500);
    assert_eq!(status(api.list(&ListParams::default()).await).code, 500);
    assert_eq!(status(api.list(&ListParams::default()).await).code, 500);
    api.list(&ListParams::default()).await.unwrap();

    srv.faults().fail_next(1, Match::new("create", "configmaps"), 409);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    let e = status(api.create(&PostParams::default(), &cm).await);
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    api.create(&PostParams::default(), &cm).await.unwrap();

    srv.reset_counters();
    srv.faults().fail_share(0.5, Match::new("get", "configmaps"), 500);
    let mut failed = 0u64;
    for _ in 0..20 {
        if let Err(kube::Error::Api(s)) = api.get("x").await {
            assert_eq!((s.code, s.reason.as_str()), (500, "InternalError"));
            failed += 1;
        }
    }
    assert!((3..=17).contains(&failed), "about half of 20 failed: {failed}");
    let c = srv.counters();
    assert_eq!(c.requests("get", "configmaps"), 20);
    assert_eq!(c.requests_with_code("get", "configmaps", 500), failed);
    assert_eq!(c.by_code(200), 20 - failed);
    assert_eq!(c.total(), 20);
    srv.faults().clear();
}

/// kube-rs 5 retries 429 (honouring Retry-After), 503 and 504 by itself: the caller sees
/// success and the counters show the extra request.
#[tokio::test]
async fn kube_clients_retry_injected_throttling() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    srv.faults().fail_next(1, Match::new("list", "configmaps"), 429);
    api.list(&ListParams::default()).await.unwrap();
    let c = srv.counters();
    assert_eq!(c.requests_with_code("list", "configmaps", 429), 1);
    assert_eq!(c.requests_with_code("list", "configmaps", 200), 1);
}

#[tokio::test]
async fn throttling_sends_retry_after_and_latency_delays() {
    let srv = server().await;
    srv.faults().fail_next(1, Match::any(), 429);
    let resp = reqwest_like_get(&srv.url(), "/api/v1/namespaces/default/configmaps").await;
    assert!(resp.starts_with("HTTP/1.1 429"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("retry-after: 1"), "{resp}");
    srv.faults().add_latency(Match::new("list", "configmaps"), Duration::from_millis(300));
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let started = Instant::now();
    api.list(&ListParams::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn dropping_watches_ends_open_streams() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let mut stream = api.watch(&WatchParams::default().timeout(60).disable_bookmarks(), "0").await.unwrap().boxed();
    srv.faults().drop_watches();
    let next = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("stream ended promptly");
    assert!(next.is_none());
}

/// A raw HTTP/1.1 GET, to see headers kube-rs does not expose.
async fn reqwest_like_get(base: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
