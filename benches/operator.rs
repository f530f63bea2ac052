//! `make bench`: the figures that show the operator is cheap, measured against the local API
//! server (and, for AWS, a local EC2 stand-in). Prints one line per figure: `name value unit`.
//! Not a test: nothing here asserts; the README records the numbers and their targets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hardened_csi_operator::crd::HardenedCsiDriver;
use hardened_csi_operator::runtime::metrics::Metrics;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use local_apiserver::LocalApiServer;
use serde_json::json;

/// The operator binary's allocator (src/main.rs), here for the local API server this process
/// hosts and the parts that run the operator in process. With glibc's allocator half of the
/// server's CPU in the scale scenario went to malloc itself (`malloc_consolidate`, `unlink_chunk`,
/// `_int_free`: perf, README), time a real API server does not spend.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[path = "../tests/support/aws_fake.rs"]
mod aws_fake;
#[path = "operator/helm.rs"]
mod helm;
#[path = "operator/scale.rs"]
mod scale;
#[allow(dead_code)]
#[path = "../tests/controller/support.rs"]
mod support;

fn figure(name: &str, value: f64, unit: &str) {
    println!("{name} {value:.1} {unit}");
}

/// With `BENCH_VERBOSE=1`, the requests behind a figure by verb, resource and code (stderr).
fn breakdown(what: &str, c: &local_apiserver::Counters) {
    if std::env::var_os("BENCH_VERBOSE").is_none() {
        return;
    }
    for (verb, resource, code, n) in c.rows() {
        eprintln!("  {what}: {n} x {verb} {resource} {code}");
    }
}

fn counter(m: &Metrics, family: &str) -> u64 {
    m.encode()
        .lines()
        .filter(|l| l.starts_with(&format!("hardened_csi_operator_{family}_total{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn wait(done: impl AsyncFnMut() -> bool) {
    wait_for(Duration::from_secs(60), done).await;
}

async fn wait_for(timeout: Duration, done: impl AsyncFnMut() -> bool) {
    assert!(wait_until(timeout, done).await, "benchmark step timed out");
}

/// Polls `done` until it holds (true) or `timeout` passes (false). The pause between polls grows
/// with the wait (2 ms, +1% of the time waited, at most 50 ms): fine resolution for the short
/// figures, and a long wait (the scale convergence) does not load the API server with polls.
async fn wait_until(timeout: Duration, mut done: impl AsyncFnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done().await {
        if start.elapsed() >= timeout {
            return false;
        }
        let pause = Duration::from_millis(2) + start.elapsed() / 100;
        tokio::time::sleep(pause.min(Duration::from_millis(50))).await;
    }
    true
}

async fn ready_generation(api: &Api<HardenedCsiDriver>, generation: i64) -> bool {
    let Ok(d) = api.get("ebs").await else { return false };
    let Some(st) = d.status else { return false };
    st.observed_generation == Some(generation) && st.condition("Ready").is_some_and(|c| c.status == "True")
}

/// `BENCH_ONLY=small|process|helm|scale` (comma-separated) runs only those parts.
fn part(name: &str) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(only) => only.split(',').any(|p| p.trim() == name),
        Err(_) => true,
    }
}

#[tokio::main]
async fn main() {
    if part("small") {
        small_figures().await;
    }
    if part("process") {
        process_part().await;
    }
    if part("helm") {
        helm::figures().await;
    }
    if part("scale") {
        scale::figures().await;
    }
}

/// One driver on a 3-node cluster, the controller in this process.
async fn small_figures() {
    let h = support::Harness::start_with(3, false).await;
    let (server, client, metrics, trigger) = (&h.server, h.client.clone(), h.metrics.clone(), h.trigger.clone());

    // A new default driver: requests until Ready, and time until every child is applied.
    let drivers: Api<HardenedCsiDriver> = Api::all(client.clone());
    let obj: HardenedCsiDriver = serde_json::from_value(json!({"apiVersion": "csi.hardened.dev/v1alpha1",
        "kind": "HardenedCsiDriver", "metadata": {"name": "ebs"},
        // The pull secret the harness created: the local kubelet refuses dhi.io pulls without it.
        "spec": {"images": {"pullSecrets": [support::PULL_SECRET]}}}))
    .expect("driver");
    let expected_children = hardened_csi_operator::render::render(
        &obj,
        &hardened_csi_operator::render::Capabilities { snapshot_api: false, ..Default::default() },
    )
    .expect("renders")
    .len() as u64;
    server.reset_counters();
    let t0 = Instant::now();
    drivers.create(&PostParams::default(), &obj).await.expect("create");
    wait(async || counter(&metrics, "applies") >= expected_children).await;
    let applied_ms = t0.elapsed().as_secs_f64() * 1000.0;
    wait(async || ready_generation(&drivers, 1).await).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = server.counters();
    figure("children", expected_children as f64, "objects");
    // The operator's requests: the benchmark's own create and polls of the driver are left out
    // (the operator never reads a HardenedCsiDriver by GET; it watches them).
    let own = c.requests("create", "hardenedcsidrivers") + c.requests("get", "hardenedcsidrivers");
    figure("api_requests_to_converge", (c.total() - own) as f64, "requests");
    breakdown("api_requests_to_converge", &c);
    figure("cr_to_children_applied_ms", applied_ms, "ms");

    // No-op reconciles: writes per reconcile of an unchanged driver.
    server.reset_counters();
    let rounds = 20;
    for _ in 0..rounds {
        let before = counter(&metrics, "reconciles");
        trigger.send("ebs".into()).await.expect("trigger");
        wait(async || counter(&metrics, "reconciles") > before).await;
    }
    figure("writes_per_noop_reconcile", server.counters().writes() as f64 / rounds as f64, "writes");

    // Spec changes: time from the change to status reporting the new generation, Ready.
    let mut samples = Vec::new();
    for i in 0..40 {
        let level = 1 + (i % 5);
        let t = Instant::now();
        let d = drivers
            .patch("ebs", &PatchParams::default(), &Patch::Merge(json!({"spec": {"controller": {"logLevel": level}}})))
            .await
            .expect("patch");
        let generation = d.metadata.generation.unwrap_or_default();
        wait(async || ready_generation(&drivers, generation).await).await;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    figure("reconcile_p50_ms", pct(0.50), "ms");
    figure("reconcile_p99_ms", pct(0.99), "ms");

    h.stop().await;
}

/// The operator as its own process: start-up, memory, and AWS requests per refresh.
async fn process_part() {
    let idle = process_figures(0, 0).await;
    figure("startup_to_ready_ms", idle.startup_ms, "ms");
    figure("rss_idle_mib", idle.rss_mib, "MiB");
    if let Some(per_hour) = idle.requests_per_hour {
        // The same watches as the scale scenario, on a cluster of no nodes: what a quiet hour costs.
        figure("api_requests_per_hour_idle", per_hour, "requests");
    }
    let big = process_figures(10_000, 5_000).await;
    figure("aws_requests_per_refresh", big.aws_requests as f64, "requests");
    // With a clusterId each cluster tag is its own scope query (the fake tags 3 in 4 items with
    // the cluster-name tag, all with kubernetes.io/cluster/<id>).
    let named = |n: usize| (0..n).filter(|i| aws_fake::has_cluster_name_tag(*i)).count();
    figure(
        "aws_request_budget_10k_5k",
        hardened_csi_operator::aws::inventory::request_budget_scoped(
            &[named(10_000), 10_000],
            &[named(5_000), 5_000],
            false,
        ) as f64,
        "requests",
    );
    figure("rss_inventory_10k_mib", big.peak_rss_mib, "MiB");
}

struct ProcessFigures {
    startup_ms: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
    aws_requests: usize,
    requests_per_hour: Option<f64>,
}

/// Runs the operator binary (`BENCH_BIN`, default: this profile's build) against a fresh local
/// API server and an AWS fake holding `volumes`/`snapshots`, with one driver.
async fn process_figures(volumes: usize, snapshots: usize) -> ProcessFigures {
    let server = LocalApiServer::start().await.expect("local API server");
    let client = server.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &HardenedCsiDriver::crd()).await.expect("crd");
    support::install_driver_rbac(&client).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let fake = Arc::new(aws_fake::Fake::new(volumes, snapshots));
    let aws = fake.clone().serve().await;
    let (op, startup_ms) = scale::Operator::start(&kubeconfig, aws).await;

    let drivers: Api<HardenedCsiDriver> = Api::all(client.clone());
    let obj: HardenedCsiDriver = serde_json::from_value(json!({
        "apiVersion": "csi.hardened.dev/v1alpha1", "kind": "HardenedCsiDriver", "metadata": {"name": "ebs"},
        "spec": {"aws": {"region": "us-east-1", "clusterId": "bench"}, "inventory": {"interval": "1h"}}
    }))
    .expect("driver");
    drivers.create(&PostParams::default(), &obj).await.expect("create");
    wait(async || {
        let Ok(d) = drivers.get("ebs").await else { return false };
        d.status
            .and_then(|s| s.aws)
            .is_some_and(|a| !a.stale && a.volumes.count == volumes as u64 && a.last_success_at.is_some())
    })
    .await;
    let aws_requests = fake.requests().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_mib, peak_rss_mib) = op.rss();
    let requests_per_hour =
        if volumes == 0 { Some(scale::requests_per_hour(&server, &drivers, "idle").await) } else { None };
    op.stop().await;
    ProcessFigures { startup_ms, rss_mib, peak_rss_mib, aws_requests, requests_per_hour }
}
