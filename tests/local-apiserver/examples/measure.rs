//! Measures the local API server: start-up time, creating N ConfigMaps, listing them with a
//! selector, paginating, and a no-op server-side apply. `cargo run -p local-apiserver
//! --example measure --release -- 5000`.

use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use local_apiserver::LocalApiServer;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(5000);
    let t = Instant::now();
    let srv = LocalApiServer::start().await?;
    println!("start: {:?}", t.elapsed());
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let t = Instant::now();
    let mut tasks = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("cm-{i:05}"),
                    "labels": {"parity": if i % 2 == 0 { "even" } else { "odd" }}}, "data": {"k": "v"}}))
                .expect("valid ConfigMap");
                api.create(&PostParams::default(), &cm).await
            }
        })
        .buffer_unordered(32);
    while let Some(r) = tasks.next().await {
        r?;
    }
    println!("create {n}: {:?}", t.elapsed());
    let t = Instant::now();
    let even = api.list(&ListParams::default().labels("parity=even")).await?;
    println!("list {} with selector: {:?}", even.items.len(), t.elapsed());
    let t = Instant::now();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(c) = &token {
            lp = lp.continue_token(c);
        }
        let page = api.list(&lp).await?;
        pages += 1;
        token = page.metadata.continue_.filter(|c| !c.is_empty());
        if token.is_none() {
            break;
        }
    }
    println!("paginate all in {pages} pages of 500: {:?}", t.elapsed());
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-00000"}, "data": {"k": "v"}});
    api.patch("cm-00000", &PatchParams::apply("m").force(), &Patch::Apply(&cm)).await?;
    let t = Instant::now();
    for _ in 0..100 {
        api.patch("cm-00000", &PatchParams::apply("m").force(), &Patch::Apply(&cm)).await?;
    }
    println!("100 no-op applies: {:?}; writes counted: {}", t.elapsed(), srv.counters().writes());
    Ok(())
}
