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

#[path = "../tests/support/aws_fake.rs"]
mod aws_fake;
#[allow(dead_code)]
#[path = "../tests/controller/support.rs"]
mod support;

fn figure(name: &str, value: f64, unit: &str) {
    println!("{name} {value:.1} {unit}");
}

fn counter(m: &Metrics, family: &str) -> u64 {
    m.encode()
        .lines()
        .filter(|l| l.starts_with(&format!("hardened_csi_operator_{family}_total{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn wait(mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "benchmark step timed out");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn ready_generation(api: &Api<HardenedCsiDriver>, generation: i64) -> bool {
    let Ok(d) = api.get("ebs").await else { return false };
    let Some(st) = d.status else { return false };
    st.observed_generation == Some(generation) && st.condition("Ready").is_some_and(|c| c.status == "True")
}

#[tokio::main]
async fn main() {
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
    figure("api_requests_to_converge", c.total() as f64, "requests");
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

    // The deletion guard over 100,000 PersistentVolumes (every 10th one the driver's): list
    // requests, pages of 500, never one response. (No time figure: it would measure the local
    // server's paging in a debug build, not the operator.)
    let total = 100_000;
    for i in 0..total {
        let source = if i % 10 == 0 {
            json!({"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": format!("vol-{i:08}")}})
        } else {
            json!({"nfs": {"server": "nfs.example", "path": format!("/export/{i}")}})
        };
        let mut spec = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]});
        if let (Some(spec), Some(source)) = (spec.as_object_mut(), source.as_object()) {
            spec.extend(source.clone());
        }
        server.insert_raw(json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": format!("pv-{i:06}")}, "spec": spec}));
    }
    server.reset_counters();
    let (found, _) = hardened_csi_operator::reconciler::deletion::volumes_in_use(&client).await.expect("guard counts");
    assert_eq!(found.csi_persistent_volumes, total / 10, "the guard counted every volume of the driver");
    figure("pv_guard_requests_100k", server.counters().requests("list", "persistentvolumes") as f64, "requests");

    h.stop().await;

    // The operator as its own process: start-up, memory, and AWS requests per refresh.
    let idle = process_figures(0, 0).await;
    figure("startup_to_ready_ms", idle.startup_ms, "ms");
    figure("rss_idle_mib", idle.rss_mib, "MiB");
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
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB.
fn rss(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

async fn http_ok(port: u16, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return false };
    if s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    buf.starts_with(b"HTTP/1.1 200")
}

/// Runs the operator binary (`BENCH_BIN`, default: this profile's build) against a fresh local
/// API server and an AWS fake holding `volumes`/`snapshots`, with one driver.
async fn process_figures(volumes: usize, snapshots: usize) -> ProcessFigures {
    let server = LocalApiServer::start().await.expect("local API server");
    let client = server.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &HardenedCsiDriver::crd()).await.expect("crd");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let fake = Arc::new(aws_fake::Fake::new(volumes, snapshots));
    let aws = fake.clone().serve().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let bin = std::env::var("BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_hardened-csi-operator").to_string());
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(bin)
        .args([
            "run",
            "--kubeconfig",
            kubeconfig.to_str().expect("path"),
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--aws-endpoint-url", &format!("http://{aws}"), "--log-level", "warn"])
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("operator starts");
    let pid = child.id().expect("pid");
    wait(async || http_ok(port, "/readyz").await).await;
    let startup_ms = t0.elapsed().as_secs_f64() * 1000.0;

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
    let (rss_mib, peak_rss_mib) = rss(pid);
    let _ = child.kill().await;
    ProcessFigures { startup_ms, rss_mib, peak_rss_mib, aws_requests }
}
