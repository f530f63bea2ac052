//! A new driver converging, side by side with the real Helm 4 engine installing the upstream
//! chart: two local API servers of the same shape in one run, the operator on one (its binary,
//! already running, from the HardenedCsiDriver's creation until it reports Ready), Helm on the
//! other (helm-python-sdk's `install` with `wait="watcher"`, kstatus, until it returns). Rounds
//! alternate which goes first; the medians are reported.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hardened_csi_operator::crd::HardenedCsiDriver;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, PostParams};
use local_apiserver::{LocalApiServer, Options};
use serde_json::json;

use super::scale::Operator;
use super::{aws_fake, figure, wait_for};

const NODES: usize = 3;
const ROUNDS: usize = 3;
const PULL_SECRET: &str = "dhi-login";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn upstream_chart() -> PathBuf {
    std::env::var_os("UPSTREAM_CHART")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/reference/upstream-ebs-csi/chart/aws-ebs-csi-driver"))
}

fn python() -> PathBuf {
    std::env::var_os("BENCH_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv/bin/python"))
}

async fn cluster() -> (LocalApiServer, tempfile::TempDir, PathBuf) {
    let server = LocalApiServer::start_with(Options { nodes: NODES, ..Options::default() }).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    (server, dir, kubeconfig)
}

/// The operator: one fresh server, the binary started and ready, then the timed convergence.
async fn operator_round() -> f64 {
    let (server, _dir, kubeconfig) = cluster().await;
    let client = server.client();
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
    // The driver's RBAC, as the operator's chart installs it (Helm's side installs its own).
    super::support::install_driver_rbac(&client).await;
    let aws = Arc::new(aws_fake::Fake::new(0, 0)).serve().await;
    let (op, _) = Operator::start(&kubeconfig, aws).await;
    let drivers: Api<HardenedCsiDriver> = Api::all(client.clone());
    let obj: HardenedCsiDriver = serde_json::from_value(json!({"apiVersion": "csi.hardened.dev/v1alpha1",
        "kind": "HardenedCsiDriver", "metadata": {"name": "ebs"},
        "spec": {"images": {"pullSecrets": [PULL_SECRET]}, "inventory": {"enabled": false}}}))
    .expect("driver");
    let t = Instant::now();
    drivers.create(&PostParams::default(), &obj).await.expect("create");
    wait_for(Duration::from_secs(120), async || {
        let Ok(d) = drivers.get("ebs").await else { return false };
        d.status.is_some_and(|s| s.observed_generation == Some(1) && s.is_true("Ready"))
    })
    .await;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    op.stop().await;
    ms
}

/// Helm: one fresh server, `helm install --wait=watcher` of the upstream chart, timed by the
/// helper around the install call alone.
async fn helm_round() -> f64 {
    let (_server, _dir, kubeconfig) = cluster().await;
    let script = repo().join("benches/operator/helm_install.py");
    let out = tokio::process::Command::new(python())
        .arg(&script)
        .arg(&kubeconfig)
        .arg(upstream_chart())
        .arg("kube-system")
        .output()
        .await
        .expect("python runs (make venv)");
    assert!(out.status.success(), "helm install failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("milliseconds")
}

pub async fn figures() {
    let (mut operator, mut helm) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round.is_multiple_of(2) {
            operator.push(operator_round().await);
            helm.push(helm_round().await);
        } else {
            helm.push(helm_round().await);
            operator.push(operator_round().await);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (o, h) = (median(&mut operator), median(&mut helm));
    figure("converge_new_driver_ms", o, "ms");
    figure("helm_install_upstream_chart_ms", h, "ms");
    figure("helm_to_operator_ratio", h / o, "x");
}
