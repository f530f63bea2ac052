//! Test harness: a local API server with the CRD, a namespace and nodes, and the real controller
//! running against it over HTTP.

use std::sync::Arc;
use std::time::Duration;

use hardened_csi_operator::crd::HardenedCsiDriver;
use hardened_csi_operator::reconciler::{self, Options};
use hardened_csi_operator::runtime::metrics::Metrics;
use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use local_apiserver::LocalApiServer;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

pub struct Harness {
    pub server: LocalApiServer,
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub trigger: mpsc::Sender<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The registry login a user creates before installing (README: "Pull secret"): the local API
/// server's kubelet refuses to pull dhi.io images without it, as a real one does.
pub const PULL_SECRET: &str = "dhi-login";

pub async fn create_pull_secret(client: &Client) {
    let config = json!({"auths": {"dhi.io": {"username": "test", "password": "test", "auth": "dGVzdDp0ZXN0"}}});
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": PULL_SECRET},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()},
    }))
    .expect("secret");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    secrets.create(&PostParams::default(), &secret).await.expect("pull secret created");
}

pub async fn wait_for<F, Fut>(what: &str, mut f: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    // Generous: the fault tests converge through the operator's own backoff (~20 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Harness {
    /// A server with the CRD, kube-system and `nodes` ready nodes; the controller started.
    pub async fn start(nodes: usize) -> Self {
        Self::start_with(nodes, true).await
    }

    pub async fn start_with(nodes: usize, snapshot_api: bool) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        let server = LocalApiServer::start().await.expect("local API server starts");
        let client = server.client();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.create(&PostParams::default(), &HardenedCsiDriver::crd()).await.expect("CRD created");
        if snapshot_api {
            crds.create(&PostParams::default(), &snapshot_crd()).await.expect("snapshot CRD created");
        }
        let ns: Api<Namespace> = Api::all(client.clone());
        let _ = ns
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "kube-system"}})).expect("ns"),
            )
            .await;
        create_pull_secret(&client).await;
        let node_api: Api<Node> = Api::all(client.clone());
        for i in 0..nodes {
            let node: Node = serde_json::from_value(
                json!({"metadata": {"name": format!("node-{i}"), "labels": {"kubernetes.io/os": "linux"}}}),
            )
            .expect("node");
            node_api.create(&PostParams::default(), &node).await.expect("node created");
        }
        let (metrics, trigger, stop, task) = spawn_controller(client.clone()).await;
        Self { server, client, metrics, trigger, stop, task }
    }

    pub async fn stop(mut self) {
        self.stop_controller().await;
    }

    /// Stops the controller (as when the operator is down); the server and its objects stay.
    pub async fn stop_controller(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    /// Starts a fresh controller process against the same server (an operator restart): new
    /// caches, nothing remembered from the previous one. Returns once its caches synced.
    pub async fn start_controller(&mut self) {
        self.stop_controller().await;
        let (metrics, trigger, stop, task) = spawn_controller(self.client.clone()).await;
        (self.metrics, self.trigger, self.stop, self.task) = (metrics, trigger, stop, task);
    }

    /// The controller task ended (it must not while the harness is up).
    pub fn controller_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    pub fn drivers(&self) -> Api<HardenedCsiDriver> {
        Api::all(self.client.clone())
    }

    pub async fn create_driver(&self, name: &str, spec: Value) {
        let obj: HardenedCsiDriver =
            serde_json::from_value(json!({"apiVersion": "csi.hardened.dev/v1alpha1", "kind": "HardenedCsiDriver",
                                          "metadata": {"name": name}, "spec": spec}))
            .expect("driver object");
        self.drivers().create(&PostParams::default(), &obj).await.expect("driver created");
    }

    /// A PersistentVolume provided by the EBS CSI driver.
    pub async fn create_driver_pv(&self, name: &str) {
        let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(self.client.clone());
        let pv = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": format!("vol-{name}")}}
        }))
        .expect("pv");
        pvs.create(&PostParams::default(), &pv).await.expect("pv created");
    }

    pub async fn patch_spec(&self, name: &str, spec: Value) {
        self.drivers()
            .patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": spec})))
            .await
            .expect("spec patched");
    }

    /// The driver's status as JSON (Null until written). Read untyped: a stored object that
    /// bypassed validation would not deserialise into the Rust type.
    pub async fn status(&self, name: &str) -> Value {
        let api = self.dynamic("csi.hardened.dev/v1alpha1", "HardenedCsiDriver", "hardenedcsidrivers", None);
        let d = api.get(name).await.expect("driver exists");
        d.data.get("status").cloned().unwrap_or(Value::Null)
    }

    pub async fn condition(&self, name: &str, type_: &str) -> Option<Value> {
        let st = self.status(name).await;
        st["conditions"].as_array()?.iter().find(|c| c["type"] == type_).cloned()
    }

    pub async fn wait_condition(&self, name: &str, type_: &str, status: &str) -> Value {
        wait_for(&format!("{name}: {type_}={status}"), || async {
            self.condition(name, type_).await.filter(|c| c["status"] == status)
        })
        .await
    }

    pub fn dynamic(&self, api_version: &str, kind: &str, plural: &str, namespace: Option<&str>) -> Api<DynamicObject> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let ar = kube::api::ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    pub async fn exists(&self, api: &Api<DynamicObject>, name: &str) -> bool {
        api.get_opt(name).await.expect("get").is_some()
    }

    /// Names of objects of a kind carrying our managed-by label.
    pub async fn managed_names(&self, api: &Api<DynamicObject>) -> Vec<String> {
        let lp = kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=hardened-csi-operator");
        let mut v: Vec<String> = api.list(&lp).await.expect("list").items.iter().map(|o| o.name_any()).collect();
        v.sort();
        v
    }

    /// Triggers one reconcile of `name` and waits until the controller has counted it.
    pub async fn reconcile_once(&self, name: &str) {
        let before = reconciles(&self.metrics);
        self.trigger.send(name.to_string()).await.expect("trigger");
        wait_for("a reconcile", || async { (reconciles(&self.metrics) > before).then_some(Value::Null) }).await;
    }
}

type Spawned = (Arc<Metrics>, mpsc::Sender<String>, Option<oneshot::Sender<()>>, Option<tokio::task::JoinHandle<()>>);

/// The real controller against `client`, returned once its caches synced.
async fn spawn_controller(client: Client) -> Spawned {
    let metrics = Arc::new(Metrics::new());
    let (trigger, rx) = mpsc::channel(16);
    let (stop, stopped) = oneshot::channel::<()>();
    let ready = hardened_csi_operator::runtime::http::Readiness::new();
    let opts = Options {
        metrics: metrics.clone(),
        aws: None,
        triggers: Some(rx),
        ready: Some(ready.clone()),
        shutdown: Box::pin(async move {
            let _ = stopped.await;
        }),
        reporter: "test".into(),
        discovery_interval: reconciler::DEFAULT_DISCOVERY_INTERVAL,
    };
    let task = tokio::spawn(async move {
        reconciler::run(client, opts).await.expect("controller runs");
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ready.is_ready() {
        assert!(tokio::time::Instant::now() < deadline, "controller caches never synced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (metrics, trigger, Some(stop), Some(task))
}

fn reconciles(m: &Metrics) -> u64 {
    m.encode()
        .lines()
        .filter(|l| l.starts_with("hardened_csi_operator_reconciles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A minimal VolumeSnapshotClass CRD, as the external-snapshotter installs it.
pub fn snapshot_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "volumesnapshotclasses.snapshot.storage.k8s.io"},
        "spec": {
            "group": "snapshot.storage.k8s.io",
            "names": {"kind": "VolumeSnapshotClass", "listKind": "VolumeSnapshotClassList",
                      "plural": "volumesnapshotclasses", "singular": "volumesnapshotclass"},
            "scope": "Cluster",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    }))
    .expect("snapshot CRD")
}
