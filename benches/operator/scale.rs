//! The scale scenario (issue 20): 5,000 Nodes each running a node plugin pod, 50,000
//! PersistentVolumes (CSI and in-tree), and an AWS account of 100,000 volumes and 20,000
//! snapshots of which half are this cluster's. The operator runs as its own process (`BENCH_BIN`
//! or this profile's build), so memory and start-up are the binary's own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hardened_csi_operator::crd::HardenedCsiDriver;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use local_apiserver::{LocalApiServer, Options};
use serde_json::json;

use super::{aws_fake, breakdown, figure, wait_for, wait_until};

pub const NODES: usize = 5_000;
pub const PERSISTENT_VOLUMES: usize = 50_000;
/// Every fifth PersistentVolume is an in-tree `awsElasticBlockStore` one (CSI migration).
const IN_TREE_EVERY: usize = 5;
pub const ACCOUNT_VOLUMES: usize = 100_000;
pub const ACCOUNT_SNAPSHOTS: usize = 20_000;
/// This cluster's ID; the other half of the account belongs to "other-cluster".
const CLUSTER: &str = "bench";
pub const PULL_SECRET: &str = "dhi-login";
/// The operator asks the API server to end each watch after this long, then watches again from
/// the last resourceVersion.
const WATCH_TIMEOUT_SECS: f64 = hardened_csi_operator::aws::pv_watch::WATCH_TIMEOUT_SECS as f64;

/// The operator binary running as its own process against one API server and AWS endpoint.
pub struct Operator {
    child: tokio::process::Child,
    pub pid: u32,
    /// Where its `/metrics` are served.
    pub port: u16,
}

impl Operator {
    /// Starts `hardened-csi-operator run` and returns once `/readyz` answers 200, with the time
    /// that took.
    pub async fn start(kubeconfig: &std::path::Path, aws: std::net::SocketAddr) -> (Operator, f64) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let bin =
            std::env::var("BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_hardened-csi-operator").to_string());
        // `BENCH_OPERATOR_LOG=debug` (any `--log-level` filter) shows the operator's own timeline:
        // its log, on this process's stdout.
        let log = std::env::var("BENCH_OPERATOR_LOG").ok();
        let t0 = Instant::now();
        let child = tokio::process::Command::new(bin)
            .args(["run", "--kubeconfig", kubeconfig.to_str().expect("path")])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--aws-endpoint-url", &format!("http://{aws}")])
            .args(["--log-level", log.as_deref().unwrap_or("warn")])
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(if log.is_some() { std::process::Stdio::inherit() } else { std::process::Stdio::null() })
            .kill_on_drop(true)
            .spawn()
            .expect("operator starts");
        let pid = child.id().expect("pid");
        wait_for(Duration::from_secs(120), async || http_ok(port, "/readyz").await).await;
        (Operator { child, pid, port }, t0.elapsed().as_secs_f64() * 1000.0)
    }

    /// `VmRSS` and `VmHWM` (peak) in MiB.
    pub fn rss(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
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

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

pub async fn http_ok(port: u16, path: &str) -> bool {
    http_get(port, path).await.is_some()
}

/// The body of a 200 answer to `GET path`, None for any other answer or no answer.
async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The operator's reconciles so far: (count, seconds spent in them), from its `/metrics`.
async fn reconcile_time(port: u16) -> (f64, f64) {
    let body = http_get(port, "/metrics").await.unwrap_or_default();
    let value = |name: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
            .unwrap_or_default()
    };
    (
        value("hardened_csi_operator_reconcile_duration_seconds_count"),
        value("hardened_csi_operator_reconcile_duration_seconds_sum"),
    )
}

/// The driver's status as `(observedGeneration, Ready, node desired, node ready, aws volumes)`.
async fn driver_state(api: &Api<HardenedCsiDriver>) -> Option<(i64, bool, i32, i32, Option<u64>)> {
    let d = api.get("ebs").await.ok()?;
    let st = d.status?;
    let ready = st.condition("Ready").is_some_and(|c| c.status == "True");
    let node = st.node.clone().unwrap_or_default();
    let aws = st.aws.as_ref().filter(|a| !a.stale && a.last_success_at.is_some()).map(|a| a.volumes.count);
    Some((st.observed_generation.unwrap_or_default(), ready, node.desired, node.ready, aws))
}

fn persistent_volume(i: usize) -> serde_json::Value {
    // PersistentVolume i uses volume 2i, one of this cluster's (even numbers, see aws_fake).
    let volume = format!("vol-{:017x}", 2 * i);
    let source = if i.is_multiple_of(IN_TREE_EVERY) {
        json!({"awsElasticBlockStore": {"volumeID": format!("aws://us-east-1a/{volume}"), "fsType": "ext4"}})
    } else {
        json!({"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": volume, "fsType": "ext4"}})
    };
    let mut spec = json!({"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "gp3"});
    if let (Some(spec), Some(source)) = (spec.as_object_mut(), source.as_object()) {
        spec.extend(source.clone());
    }
    json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": format!("pvc-{i:08}"), "uid": format!("00000000-0000-0000-0000-{i:012}"),
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec, "status": {"phase": "Bound"}})
}

async fn prepare_cluster(client: &Client, server: &LocalApiServer) {
    install_crd_and_pull_secret(client).await;
    for i in 0..PERSISTENT_VOLUMES {
        server.insert_raw(persistent_volume(i));
    }
}

/// The HardenedCsiDriver CRD, the `dhi.io` pull Secret the bench drivers name and the driver's RBAC.
pub async fn install_crd_and_pull_secret(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &HardenedCsiDriver::crd()).await.expect("crd");
    let config = json!({"auths": {"dhi.io": {"username": "bench", "password": "bench", "auth": "YmVuY2g6YmVuY2g="}}});
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": PULL_SECRET},
        "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": config.to_string()}}))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), "kube-system")
        .create(&PostParams::default(), &secret)
        .await
        .expect("pull secret");
    // What the chart installs with the operator (the operator verifies it and never writes it).
    super::support::install_driver_rbac(client).await;
}

fn driver() -> HardenedCsiDriver {
    serde_json::from_value(json!({"apiVersion": "csi.hardened.dev/v1alpha1", "kind": "HardenedCsiDriver",
        "metadata": {"name": "ebs"},
        "spec": {"images": {"pullSecrets": [PULL_SECRET]}, "aws": {"region": "us-east-1", "clusterId": CLUSTER}}}))
    .expect("driver")
}

pub async fn figures() {
    let t_setup = Instant::now();
    // kube-apiserver compacts etcd by time (every 5 minutes), so a list's continue token stays
    // valid for minutes; this server compacts by event count. 5,000 node plugin pods starting make
    // more than the default 10,000 events within seconds, and the 100-page lists of the
    // PersistentVolumes then got 410 and re-listed, again and again, for as long as that lasted.
    // The whole run makes fewer than 200,000 events, about what a real server keeps for it.
    let opts = Options { nodes: NODES, watch_history: 200_000, ..Options::default() };
    let server = LocalApiServer::start_with(opts).await.expect("server");
    let client = server.client();
    prepare_cluster(&client, &server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let fake = Arc::new(aws_fake::Fake::shared(ACCOUNT_VOLUMES, ACCOUNT_SNAPSHOTS, CLUSTER, "other-cluster"));
    let aws = fake.clone().serve().await;
    figure("scale_setup_s", t_setup.elapsed().as_secs_f64(), "s");

    let (op, _) = Operator::start(&kubeconfig, aws).await;
    let drivers: Api<HardenedCsiDriver> = Api::all(client.clone());
    server.reset_counters();
    let t0 = Instant::now();
    drivers.create(&PostParams::default(), &driver()).await.expect("create");
    let this_cluster = (ACCOUNT_VOLUMES / 2) as u64;
    // The last state seen, printed every 10 s with BENCH_VERBOSE and named when the wait times out.
    let mut last = None;
    let mut shown = Instant::now();
    let converged = wait_until(Duration::from_secs(600), async || {
        last = driver_state(&drivers).await;
        if std::env::var_os("BENCH_VERBOSE").is_some() && shown.elapsed() > Duration::from_secs(10) {
            shown = Instant::now();
            eprintln!("  converging after {:.0} s: {last:?}", t0.elapsed().as_secs_f64());
        }
        last.is_some_and(|(g, ready, desired, nready, aws)| {
            g == 1 && ready && desired == NODES as i32 && nready == desired && aws == Some(this_cluster)
        })
    })
    .await;
    assert!(
        converged,
        "no convergence in 600 s; last (generation, Ready, node desired, node ready, AWS volumes): {last:?}"
    );
    figure("converge_scale_s", t0.elapsed().as_secs_f64(), "s");
    breakdown("scale convergence", &server.counters());
    figure("aws_requests_per_refresh_100k", fake.requests().len() as f64, "requests");
    figure(
        "aws_request_budget_100k",
        // One query per cluster tag; this cluster's volumes carry both, so each query returns them all.
        hardened_csi_operator::aws::inventory::request_budget_scoped(
            &[ACCOUNT_VOLUMES / 2, ACCOUNT_VOLUMES / 2],
            &[ACCOUNT_SNAPSHOTS / 2, ACCOUNT_SNAPSHOTS / 2],
            false,
        ) as f64,
        "requests",
    );

    // Steady state: nothing changes. The requests of a quiet window, then memory: convergence
    // ends while the last node plugin pods turn ready and a refresh's pages are being freed, so
    // memory is read once the quiet window has passed (31 s later: the wait for the last coalesced
    // status write, the window, the renewals and the no-op reconcile).
    let per_hour = requests_per_hour(&server, &drivers, "scale").await;
    figure("api_requests_per_hour_scale", per_hour, "requests");
    let (rss, peak) = op.rss();
    figure("rss_scale_mib", rss, "MiB");
    figure("rss_scale_peak_mib", peak, "MiB");

    status_writes_per_node_join(&server, &drivers).await;
    reconcile_latency(&client, &drivers, op.port).await;

    // A restart: the new process lists what it caches, then reports ready.
    op.stop().await;
    let (op, startup_ms) = Operator::start(&kubeconfig, aws).await;
    figure("startup_to_ready_ms_scale", startup_ms, "ms");
    op.stop().await;

    // The deletion guard over the 50,000 PersistentVolumes: pages of 500.
    server.reset_counters();
    let (found, _) = hardened_csi_operator::reconciler::deletion::volumes_in_use(&client).await.expect("guard counts");
    let in_tree = PERSISTENT_VOLUMES.div_ceil(IN_TREE_EVERY) as u64;
    assert_eq!(found.csi_persistent_volumes, PERSISTENT_VOLUMES as u64 - in_tree, "every CSI volume counted");
    assert_eq!(found.in_tree_persistent_volumes, in_tree, "every in-tree volume counted");
    figure("pv_guard_requests_50k", server.counters().requests("list", "persistentvolumes") as f64, "requests");
}

/// Requests per hour of the quiet scale scenario: a measured quiet window extrapolated, plus the
/// periodic work a short window cannot see, each measured once: every watch ending after
/// `WATCH_TIMEOUT_SECS` and being renewed, the resync of the driver every `RESYNC`, the version
/// re-discovery (one GET of /version every `DEFAULT_DISCOVERY_INTERVAL`; left out of the quiet
/// window, which would count one as 180 an hour). The inventory reads the cluster from watches
/// (PersistentVolumes, Nodes, VolumeAttachments, VolumeSnapshotContents): their renewals are in
/// the watch term, and a refresh reads nothing else from the API server. Each term is printed as
/// `api_requests_per_hour_{scenario}_{term}`.
pub async fn requests_per_hour(server: &LocalApiServer, drivers: &Api<HardenedCsiDriver>, scenario: &str) -> f64 {
    let window = Duration::from_secs(20);
    // What the convergence still sends once it is seen: the last coalesced status write and the
    // event that follows it. The quiet window starts after them.
    tokio::time::sleep(hardened_csi_operator::reconciler::STATUS_COALESCE + Duration::from_secs(1)).await;
    server.reset_counters();
    tokio::time::sleep(window).await;
    breakdown("quiet window", &server.counters());
    let version_reads = server.counters().requests("get", "");
    let quiet = (server.counters().total() - version_reads) as f64 * 3600.0 / window.as_secs_f64();
    let discovery = 3600.0 / hardened_csi_operator::reconciler::DEFAULT_DISCOVERY_INTERVAL.as_secs_f64();

    server.reset_counters();
    server.faults().drop_watches();
    tokio::time::sleep(Duration::from_secs(3)).await;
    breakdown("watch renewals", &server.counters());
    let renewals = server.counters().total() as f64;
    let watches = renewals * 3600.0 / WATCH_TIMEOUT_SECS;

    // A no-op reconcile (what a resync is), triggered by a metadata change the operator ignores.
    server.reset_counters();
    let patch = json!({"metadata": {"annotations": {"bench.hardened.dev/touch": "1"}}});
    drivers.patch("ebs", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("touch");
    tokio::time::sleep(Duration::from_secs(2)).await;
    breakdown("no-op reconcile", &server.counters());
    let resync = server.counters().total().saturating_sub(1) as f64;
    let resyncs = resync * 3600.0 / hardened_csi_operator::reconciler::RESYNC.as_secs_f64();

    figure(&format!("api_requests_per_hour_{scenario}_quiet"), quiet, "requests");
    figure(&format!("api_requests_per_hour_{scenario}_watch_renewals"), watches, "requests");
    figure(&format!("api_requests_per_hour_{scenario}_resyncs"), resyncs, "requests");
    figure(&format!("api_requests_per_hour_{scenario}_version"), discovery, "requests");
    quiet + watches + resyncs + discovery
}

/// 100 Nodes join one by one over a minute; status writes per join, until the status counts
/// every new node plugin pod ready.
async fn status_writes_per_node_join(server: &LocalApiServer, drivers: &Api<HardenedCsiDriver>) {
    let joins = 100;
    server.reset_counters();
    for i in 0..joins {
        server.add_node(&format!("joined-{i}"), &[("kubernetes.io/os", "linux")], &[]).expect("node joins");
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let want = (NODES + joins) as i32;
    wait_for(Duration::from_secs(120), async || {
        driver_state(drivers)
            .await
            .is_some_and(|(_, ready, desired, nready, _)| ready && desired == want && nready == want)
    })
    .await;
    breakdown("node joins", &server.counters());
    let writes = server.counters().requests("patch", "hardenedcsidrivers/status");
    figure("status_writes_per_node_join", writes as f64 / joins as f64, "writes");
}

/// Spec changes in the scale scenario (the controller Deployment rolls; the node DaemonSet is
/// unchanged). Per change, from the patch:
/// - `spec_to_apply_*_ms_scale`: until the controller Deployment carries it (the operator's apply);
/// - `reconcile_*_ms_scale`: until the status reports the new generation (`observedGeneration`),
///   written once every child is applied. The driver stays Ready while the new controller pods
///   start, so that is also when the benchmark sees the generation Ready.
///
/// And `reconcile_mean_ms_scale`: the time the operator spent in one reconcile meanwhile (its
/// `reconcile_duration_seconds`, every reconcile the rollout triggered, their API requests included).
async fn reconcile_latency(client: &Client, drivers: &Api<HardenedCsiDriver>, port: u16) {
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), "kube-system");
    let generation_of = async || deployments.get("ebs-csi-controller").await.ok().and_then(|d| d.metadata.generation);
    let (count0, sum0) = reconcile_time(port).await;
    let (mut applied, mut observed) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let level = 1 + (i % 5);
        let before = generation_of().await;
        let t = Instant::now();
        let patch = json!({"spec": {"controller": {"logLevel": level}}});
        let d = drivers.patch("ebs", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
        let generation = d.metadata.generation.unwrap_or_default();
        let mut apply = None;
        wait_for(Duration::from_secs(60), async || {
            if apply.is_none() && generation_of().await != before {
                apply = Some(t.elapsed());
            }
            driver_state(drivers).await.is_some_and(|(g, ..)| g == generation)
        })
        .await;
        observed.push(t.elapsed().as_secs_f64() * 1000.0);
        applied.push(apply.unwrap_or_else(|| t.elapsed()).as_secs_f64() * 1000.0);
        // The next change once this generation is Ready, as before.
        wait_for(Duration::from_secs(60), async || {
            driver_state(drivers).await.is_some_and(|(g, ready, ..)| g == generation && ready)
        })
        .await;
    }
    let (count, sum) = reconcile_time(port).await;
    figure("reconcile_mean_ms_scale", (sum - sum0) * 1000.0 / (count - count0).max(1.0), "ms");
    for (name, mut samples) in [("spec_to_apply", applied), ("reconcile", observed)] {
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            let shown: Vec<String> = samples.iter().map(|s| format!("{s:.0}")).collect();
            eprintln!("  {name} per change (ms, in order): {}", shown.join(" "));
        }
        samples.sort_by(f64::total_cmp);
        let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
        figure(&format!("{name}_p50_ms_scale"), pct(0.50), "ms");
        figure(&format!("{name}_p99_ms_scale"), pct(0.99), "ms");
    }
}
