//! Test harness: a local API server enforcing authentication and RBAC, with the CRD, a namespace
//! and nodes, and the real controller running against it over HTTP as the operator's
//! ServiceAccount, holding exactly the RBAC objects `helm template` of the chart renders
//! (`chart-rbac.yaml`, generated). A permission the code needs and the chart lacks fails the test
//! with the API server's 403; `h.client` is the cluster admin that plays the user.

use std::sync::Arc;
use std::time::Duration;

use hardened_csi_operator::aws::AwsStatusStore;
use hardened_csi_operator::crd::HardenedCsiDriver;
use hardened_csi_operator::reconciler::policy::InstallPolicy;
use hardened_csi_operator::reconciler::{self, Options};
use hardened_csi_operator::runtime::metrics::Metrics;
use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use local_apiserver::LocalApiServer;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

#[path = "../support/chart_rbac.rs"]
pub mod chart_rbac;

// Re-exported for the suites (the bench that includes this file uses fewer).
#[allow(unused_imports)]
pub use chart_rbac::{DRIVER_NAMESPACE, OPERATOR_NAMESPACE, OPERATOR_SA, operator_user, rbac_server, rbac_server_on};

pub struct Harness {
    pub server: LocalApiServer,
    /// The cluster admin (plays the user and the test's observer).
    pub client: Client,
    /// The operator's identity: its ServiceAccount token, nothing more.
    pub operator: Client,
    /// The install-time settings the controller runs with.
    pub policy: InstallPolicy,
    pub metrics: Arc<Metrics>,
    pub trigger: mpsc::Sender<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The AWS facts the controller reads (a poller the test runs publishes them); None: no AWS.
    aws: Option<AwsStatusStore>,
}

/// The registry login a user creates before installing (README: "Pull secret"): the local API
/// server's kubelet refuses to pull dhi.io images without it, as a real one does.
pub const PULL_SECRET: &str = "dhi-login";

pub async fn create_pull_secret(client: &Client) {
    create_pull_secret_named(client, PULL_SECRET).await;
}

/// A dhi.io pull Secret named `name` in kube-system.
pub async fn create_pull_secret_named(client: &Client, name: &str) {
    let config = json!({"auths": {"dhi.io": {"username": "test", "password": "test", "auth": "dGVzdDp0ZXN0"}}});
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()},
    }))
    .expect("secret");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    secrets.create(&PostParams::default(), &secret).await.expect("pull secret created");
}

/// The CA-bundle ConfigMap the controller tests' RBAC names (chart value `aws.caBundleConfigMaps`,
/// tests/manifests/regenerate.py HARNESS_VALUES).
pub const CA_BUNDLE: &str = "aws-ca-bundle";

/// A ConfigMap `name` in kube-system holding `pem` under the default key of `spec.aws.caBundle`.
pub async fn create_ca_bundle_named(client: &Client, name: &str, pem: &str) {
    let cm: k8s_openapi::api::core::v1::ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"ca-bundle.crt": pem}})).expect("cm");
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    api.create(&PostParams::default(), &cm).await.expect("CA bundle ConfigMap created");
}

pub async fn wait_for<F, Fut>(what: &str, mut f: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    // A deadline, not a performance check: the fault tests converge through the operator's own
    // backoff (~20 s), with TLS and RBAC on every request, on a loaded 2-core machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
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
        Self::start_on("1.33", nodes, snapshot_api).await
    }

    /// As `start_with`, on a server of Kubernetes `version` (what it serves follows it).
    pub async fn start_on(version: &str, nodes: usize, snapshot_api: bool) -> Self {
        Self::start_with_policy(version, nodes, snapshot_api, InstallPolicy::default()).await
    }

    /// As `start_on`, the operator installed with `policy` (driver namespace, registries).
    pub async fn start_with_policy(version: &str, nodes: usize, snapshot_api: bool, policy: InstallPolicy) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        let server = rbac_server_on(version).await;
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
        install_operator_rbac(&client).await;
        let operator = server.client_for_service_account(OPERATOR_NAMESPACE, OPERATOR_SA).expect("operator client");
        create_pull_secret(&client).await;
        let node_api: Api<Node> = Api::all(client.clone());
        for i in 0..nodes {
            let node: Node = serde_json::from_value(
                json!({"metadata": {"name": format!("node-{i}"), "labels": {"kubernetes.io/os": "linux"}}}),
            )
            .expect("node");
            node_api.create(&PostParams::default(), &node).await.expect("node created");
        }
        let (metrics, trigger, stop, task) = spawn_controller(operator.clone(), policy.clone()).await;
        Self { server, client, operator, policy, metrics, trigger, stop, task, aws: None }
    }

    /// Stops the controller, then fails the test if the API server refused the operator anything:
    /// every request the code makes must be covered by the chart's RBAC.
    pub async fn stop(mut self) {
        self.stop_controller().await;
    }

    /// Stops the controller without the refusal check (for a test that checked refusals itself).
    pub async fn stop_controller_unchecked(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    /// Stops the controller (as when the operator is down); the server and its objects stay.
    pub async fn stop_controller(&mut self) {
        self.stop_controller_unchecked().await;
        let denied = self.server.denied_requests(&operator_user());
        assert!(denied.is_empty(), "the chart's RBAC refused the operator: {denied:#?}");
    }

    /// Starts a fresh controller process against the same server (an operator restart): new
    /// caches, nothing remembered from the previous one. Returns once its caches synced.
    pub async fn start_controller(&mut self) {
        self.stop_controller().await;
        let (metrics, trigger, stop, task) =
            spawn_controller_with(self.operator.clone(), self.policy.clone(), self.aws.clone()).await;
        (self.metrics, self.trigger, self.stop, self.task) = (metrics, trigger, stop, task);
    }

    /// Restarts the controller reading its AWS facts from `store` (what a poller publishes), as
    /// `run` wires them; later restarts keep it.
    #[allow(dead_code)]
    pub async fn start_controller_with_aws(&mut self, store: AwsStatusStore) {
        self.aws = Some(store);
        self.start_controller().await;
    }

    /// The operator installed again after its namespace and ServiceAccount were deleted: its RBAC
    /// re-created, a token for the new ServiceAccount (the old one died with the old account), and
    /// a fresh controller process with it.
    pub async fn reinstall_operator(&mut self) {
        self.stop_controller_unchecked().await;
        let ns: Api<Namespace> = Api::all(self.client.clone());
        wait_for("the operator's namespace gone", || async {
            ns.get_opt(OPERATOR_NAMESPACE).await.ok()?.is_none().then_some(Value::Null)
        })
        .await;
        install_operator_rbac(&self.client).await;
        self.operator =
            self.server.client_for_service_account(OPERATOR_NAMESPACE, OPERATOR_SA).expect("operator client");
        self.start_controller().await;
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

    /// Asks for the driver's removal although volumes hold it: the annotation the deletion guard
    /// honours (README, "Deleting a driver").
    pub async fn force_delete(&self, name: &str) {
        self.drivers()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"csi.hardened.dev/force-delete": "true"}}})),
            )
            .await
            .expect("force-delete annotation");
    }

    /// Waits until the driver object is gone (the operator removed its finalizer).
    pub async fn wait_driver_gone(&self, name: &str) {
        wait_for(&format!("driver {name} gone"), || async {
            self.drivers().get_opt(name).await.ok()?.is_none().then_some(Value::Null)
        })
        .await;
    }

    /// What an earlier version left: our CSIDriver (by its labels, for the driver `instance`)
    /// without fsGroupPolicy, which is immutable, so the next apply must recreate it.
    pub async fn apply_old_csidriver(&self, instance: &str) {
        let csid = self.dynamic("storage.k8s.io/v1", "CSIDriver", "csidrivers", None);
        let old: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
            "metadata": {"name": "ebs.csi.aws.com", "labels": {
                "app.kubernetes.io/managed-by": "hardened-csi-operator", "app.kubernetes.io/instance": instance}},
            "spec": {"attachRequired": true, "podInfoOnMount": false}
        }))
        .expect("csidriver");
        csid.patch("ebs.csi.aws.com", &PatchParams::apply("hardened-csi-operator"), &Patch::Apply(&old))
            .await
            .expect("old CSIDriver");
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

    /// Waits for a condition with `status` computed from `generation` of the spec.
    pub async fn wait_condition_at(&self, name: &str, type_: &str, status: &str, generation: i64) -> Value {
        wait_for(&format!("{name}: {type_}={status} at generation {generation}"), || async {
            self.condition(name, type_).await.filter(|c| c["status"] == status && c["observedGeneration"] == generation)
        })
        .await
    }

    pub fn dynamic(&self, api_version: &str, kind: &str, plural: &str, namespace: Option<&str>) -> Api<DynamicObject> {
        dynamic_api(&self.client, api_version, kind, plural, namespace)
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

/// A dynamic Api of one kind, all namespaces or one, for `client`.
pub fn dynamic_api(
    client: &Client,
    api_version: &str,
    kind: &str,
    plural: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let ar = kube::api::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// What the chart installs for the operator, as the cluster admin: exactly the ServiceAccount and
/// RBAC objects `helm template` renders (`tests/support/chart-rbac.yaml`).
pub async fn install_operator_rbac(admin: &Client) {
    chart_rbac::install(admin).await;
}

/// The driver's ClusterRoles, bindings and leases Role, as the chart installs them.
pub async fn install_driver_rbac(admin: &Client) {
    chart_rbac::install_driver_rbac(admin).await;
}

type Spawned = (Arc<Metrics>, mpsc::Sender<String>, Option<oneshot::Sender<()>>, Option<tokio::task::JoinHandle<()>>);

/// The real controller against `client`, returned once its caches synced.
pub async fn spawn_controller(client: Client, policy: InstallPolicy) -> Spawned {
    spawn_controller_with(client, policy, None).await
}

/// As `spawn_controller`, reading the AWS facts from `aws`.
pub async fn spawn_controller_with(client: Client, policy: InstallPolicy, aws: Option<AwsStatusStore>) -> Spawned {
    let metrics = Arc::new(Metrics::new());
    let (trigger, rx) = mpsc::channel(16);
    let (stop, stopped) = oneshot::channel::<()>();
    let ready = hardened_csi_operator::runtime::http::Readiness::new();
    let opts = Options {
        metrics: metrics.clone(),
        aws,
        triggers: Some(rx),
        ready: Some(ready.clone()),
        shutdown: Box::pin(async move {
            let _ = stopped.await;
        }),
        reporter: "test".into(),
        policy,
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

/// The Prometheus Operator's ServiceMonitor CRD (monitoring.coreos.com/v1), as its bundle installs
/// it (schema reduced to an open object: the operator's objects are checked against the real one
/// in tests/manifests/test_monitoring.py).
pub fn service_monitor_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {"kind": "ServiceMonitor", "listKind": "ServiceMonitorList", "plural": "servicemonitors",
                      "singular": "servicemonitor", "categories": ["prometheus-operator"], "shortNames": ["smon"]},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}
            }]
        }
    }))
    .expect("ServiceMonitor CRD")
}
