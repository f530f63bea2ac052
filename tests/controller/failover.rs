//! Two operator replicas with leader election, the real controller as the leader-only work:
//! a graceful hand-over changes nothing that the first leader made.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hardened_csi_operator::crd::HardenedCsiDriver;
use hardened_csi_operator::reconciler::{self, Options};
use hardened_csi_operator::runtime::config::LeaseSettings;
use hardened_csi_operator::runtime::http::Readiness;
use hardened_csi_operator::runtime::leader::{LeaderElection, run_while_leader};
use hardened_csi_operator::runtime::metrics::Metrics;
use hardened_csi_operator::runtime::shutdown::CancellationToken;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use serde_json::{Value, json};

use super::support::{OPERATOR_NAMESPACE, OPERATOR_SA, install_operator_rbac, rbac_server, wait_for};
use super::{DRIVER, spec};

pub(super) fn replica(client: Client, id: &str, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let settings = LeaseSettings {
        name: "hardened-csi-operator".into(),
        namespace: OPERATOR_NAMESPACE.into(),
        identity: id.into(),
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(300),
    };
    let metrics = Arc::new(Metrics::new());
    let election = LeaderElection::start(client.clone(), settings, metrics.clone());
    let reporter = id.to_string();
    tokio::spawn(async move {
        let work = move |token: CancellationToken| {
            let opts = Options {
                metrics: metrics.clone(),
                aws: None,
                triggers: None,
                ready: Some(Readiness::new()),
                shutdown: Box::pin(token.cancelled_owned()),
                reporter: reporter.clone(),
                policy: Default::default(),
                discovery_interval: reconciler::DEFAULT_DISCOVERY_INTERVAL,
            };
            let client = client.clone();
            async move {
                let _ = reconciler::run(client, opts).await;
            }
        };
        run_while_leader(election.subscribe(), stop, Duration::from_secs(5), work).await;
        election.release_within(Duration::from_secs(2)).await;
    })
}

/// resourceVersion of every object the operator manages, and of the driver itself.
async fn versions(client: &Client) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for kind in reconciler::caches::child_kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.resource);
        let Ok(list) =
            api.list(&ListParams::default().labels("app.kubernetes.io/managed-by=hardened-csi-operator")).await
        else {
            continue;
        };
        for o in list.items {
            out.insert(format!("{}/{}", kind.resource.kind, o.name_any()), o.resource_version().unwrap_or_default());
        }
    }
    let drivers: Api<DynamicObject> = Api::all_with(client.clone(), &reconciler::driver_resource());
    let d = drivers.get(DRIVER).await.expect("driver");
    out.insert("HardenedCsiDriver".into(), d.resource_version().unwrap_or_default());
    out
}

pub(super) async fn holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    leases.get_opt("hardened-csi-operator").await.ok()??.spec?.holder_identity.filter(|h| !h.is_empty())
}

#[tokio::test]
async fn graceful_failover_between_two_replicas_writes_nothing() {
    let server = rbac_server().await;
    let client = server.client();
    install_operator_rbac(&client).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &HardenedCsiDriver::crd()).await.expect("crd");
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": "node-0", "labels": {"kubernetes.io/os": "linux"}}}))
            .expect("node");
    nodes.create(&PostParams::default(), &node).await.expect("node");
    super::support::create_pull_secret(&client).await;

    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    // Both replicas run as the operator's ServiceAccount with the chart's RBAC.
    let operator = || server.client_for_service_account(OPERATOR_NAMESPACE, OPERATOR_SA).expect("operator client");
    let a = replica(operator(), "replica-a", stop_a.clone());
    let b = replica(operator(), "replica-b", stop_b.clone());
    let first = wait_for("a leader", || async { holder(&client).await.map(Value::String) }).await;

    let drivers: Api<HardenedCsiDriver> = Api::all(client.clone());
    let obj: HardenedCsiDriver =
        serde_json::from_value(json!({"apiVersion": "csi.hardened.dev/v1alpha1", "kind": "HardenedCsiDriver",
                                      "metadata": {"name": DRIVER}, "spec": spec()}))
        .expect("driver");
    drivers.create(&PostParams::default(), &obj).await.expect("create");
    wait_for("Ready", || async {
        let d = drivers.get(DRIVER).await.ok()?;
        d.status?.condition("Ready").filter(|c| c.status == "True").map(|_| Value::Null)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = versions(&client).await;
    server.reset_counters();

    // The leader stops gracefully: it releases the lease and the other replica takes over.
    let (stop_leader, leader_task, other) =
        if first == "replica-a" { (stop_a, a, "replica-b") } else { (stop_b, b, "replica-a") };
    stop_leader.cancel();
    tokio::time::timeout(Duration::from_secs(10), leader_task).await.expect("leader stops").expect("leader task");
    wait_for("the other replica leads", || async {
        (holder(&client).await.as_deref() == Some(other)).then_some(Value::Null)
    })
    .await;
    // Give the new leader time to sync its caches and reconcile the driver.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let after = versions(&client).await;
    assert_eq!(before, after, "the new leader changed objects the first one had already made");
    // It did reconcile: a fresh process applies every child once (no-op applies on the server).
    assert!(
        server.counters().requests("patch", "deployments") >= 1,
        "the new leader never reconciled: {:?}",
        server.counters().rows()
    );
}
