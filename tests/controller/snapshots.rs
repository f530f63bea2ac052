//! The snapshot stack (`spec.snapshots.controller`) against the local API server under the
//! chart's RBAC: the operator applies the snapshot CRDs of external-snapshotter v8.6.0 where the
//! cluster has none and runs a hardened, leader-elected snapshot-controller; it uses another
//! installation's stack instead of adding a second one; it reports version skew and a missing
//! RBAC rule; and it never deletes the CRDs (spec change, driver deletion).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

use super::support::{Harness, wait_for};
use super::{DRIVER, spec};

const CRDS: [&str; 3] = [
    "volumesnapshotclasses.snapshot.storage.k8s.io",
    "volumesnapshotcontents.snapshot.storage.k8s.io",
    "volumesnapshots.snapshot.storage.k8s.io",
];

fn with_controller() -> Value {
    let mut s = spec();
    s["snapshots"] = json!({"controller": {"enabled": true}});
    s
}

async fn crd(h: &Harness, name: &str) -> Option<CustomResourceDefinition> {
    Api::<CustomResourceDefinition>::all(h.client.clone()).get_opt(name).await.expect("get CRD")
}

#[tokio::test]
async fn the_operator_installs_the_snapshot_crds_and_a_hardened_leader_elected_controller() {
    // A cluster without any snapshot CRD.
    let h = Harness::start_with(2, false).await;
    h.create_driver(DRIVER, with_controller()).await;
    let c = h.wait_condition(DRIVER, "SnapshotController", "True").await;
    assert_eq!(c["reason"], "Installed", "{c}");
    assert!(c["message"].as_str().unwrap_or_default().contains("dhi.io/snapshot-controller:8.6.0"), "{c}");
    h.wait_condition(DRIVER, "Ready", "True").await;
    for name in CRDS {
        let crd = crd(&h, name).await.unwrap_or_else(|| panic!("{name} applied"));
        assert_eq!(crd.labels().get("app.kubernetes.io/managed-by").map(String::as_str), Some("hardened-csi-operator"));
        assert_eq!(crd.annotations().get("csi.hardened.dev/snapshot-crd-bundle").map(String::as_str), Some("v8.6.0"));
        assert!(crd.annotations().contains_key("api-approved.kubernetes.io"), "{name} keeps upstream's annotations");
    }
    // The CRDs make the snapshot API served: the snapshotter sidecar and the classes follow.
    h.wait_condition(DRIVER, "SnapshotApi", "True").await;
    let vsc = h.dynamic("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass", "volumesnapshotclasses", None);
    wait_for("the VolumeSnapshotClass", || async {
        (h.managed_names(&vsc).await == ["ebs-snapshots"]).then_some(Value::Null)
    })
    .await;
    let skew = h.wait_condition(DRIVER, "SnapshotVersionSkew", "False").await;
    assert_eq!(skew["reason"], "Matched", "{skew}");

    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), "kube-system");
    let d = deployments.get("snapshot-controller").await.expect("snapshot-controller Deployment");
    let spec = &d.spec;
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.clone().expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some("snapshot-controller"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let psc = pod.security_context.clone().expect("pod security");
    assert_eq!((psc.run_as_non_root, psc.run_as_user), (Some(true), Some(65532)));
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("dhi.io/snapshot-controller:8.6.0"));
    let args = c.args.clone().unwrap_or_default();
    assert!(args.contains(&"--leader-election=true".to_string()), "{args:?}");
    let sc = c.security_context.clone().expect("container security");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.and_then(|c| c.drop), Some(vec!["ALL".to_string()]));
    let pull: Vec<String> = pod.image_pull_secrets.iter().flatten().map(|s| s.name.clone()).collect();
    assert_eq!(pull, [super::support::PULL_SECRET]);
    let pdb = h.dynamic("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", Some("kube-system"));
    assert!(h.managed_names(&pdb).await.contains(&"snapshot-controller".to_string()));
    let controller = deployments.get("ebs-csi-controller").await.expect("driver controller");
    let names: Vec<String> =
        controller.spec.template.spec.iter().flat_map(|p| &p.containers).map(|c| c.name.clone()).collect();
    assert!(names.contains(&"csi-snapshotter".to_string()), "{names:?}");

    // Turned off: the controller goes, the CRDs stay and the status says so.
    h.patch_spec(DRIVER, json!({"snapshots": {"controller": {"enabled": false}}})).await;
    let c = h.wait_condition(DRIVER, "SnapshotController", "False").await;
    assert_eq!(c["reason"], "Disabled", "{c}");
    assert!(c["message"].as_str().unwrap_or_default().contains("CRDs are kept"), "{c}");
    wait_for("the snapshot-controller removed", || async {
        deployments.get_opt("snapshot-controller").await.expect("get").is_none().then_some(Value::Null)
    })
    .await;
    assert!(!h.managed_names(&pdb).await.contains(&"snapshot-controller".to_string()));
    for name in CRDS {
        assert!(crd(&h, name).await.is_some(), "{name} kept after the controller was turned off");
    }

    // On again, then the driver deleted: the CRDs outlive it.
    h.patch_spec(DRIVER, json!({"snapshots": {"controller": {"enabled": true}}})).await;
    let c = h.wait_condition(DRIVER, "SnapshotController", "True").await;
    assert_eq!(c["reason"], "Installed", "{c}");
    h.drivers().delete(DRIVER, &DeleteParams::default()).await.expect("delete");
    h.wait_driver_gone(DRIVER).await;
    assert!(deployments.get_opt("snapshot-controller").await.expect("get").is_none(), "removed with the driver");
    for name in CRDS {
        assert!(crd(&h, name).await.is_some(), "{name} kept after the driver was deleted");
    }
    h.stop().await;
}

#[tokio::test]
async fn another_installations_snapshot_stack_is_used_without_a_second_controller() {
    // The harness's VolumeSnapshotClass CRD is not ours (another installation's), and a
    // snapshot-controller of an older external-snapshotter runs in the driver namespace.
    let h = Harness::start(2).await;
    let theirs: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "snapshot-controller", "namespace": "kube-system",
                     "labels": {"app.kubernetes.io/managed-by": "eks"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "snapshot-controller"}},
                 "template": {"metadata": {"labels": {"app": "snapshot-controller"}},
                              "spec": {"containers": [{"name": "snapshot-controller",
                                  "image": "registry.k8s.io/sig-storage/snapshot-controller:v6.3.3"}]}}}
    }))
    .expect("deployment");
    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), "kube-system");
    deployments.create(&PostParams::default(), &theirs).await.expect("their snapshot-controller");
    h.create_driver(DRIVER, with_controller()).await;
    let c = h.wait_condition(DRIVER, "SnapshotController", "True").await;
    assert_eq!(c["reason"], "Foreign", "{c}");
    let msg = c["message"].as_str().unwrap_or_default();
    assert!(msg.contains("CustomResourceDefinition volumesnapshotclasses.snapshot.storage.k8s.io"), "{msg}");
    assert!(msg.contains("Deployment kube-system/snapshot-controller (managed by eks)"), "{msg}");
    let skew = h.wait_condition(DRIVER, "SnapshotVersionSkew", "True").await;
    let skew = skew["message"].as_str().unwrap_or_default();
    assert!(skew.contains("v6.3.3") && skew.contains("8.6.0"), "{skew}");
    h.wait_condition(DRIVER, "Ready", "True").await;
    // Nothing of theirs was touched, and nothing of ours added.
    let d = deployments.get("snapshot-controller").await.expect("theirs");
    assert_eq!(
        d.spec.template.spec.as_ref().and_then(|p| p.containers[0].image.clone()).as_deref(),
        Some("registry.k8s.io/sig-storage/snapshot-controller:v6.3.3")
    );
    assert_eq!(d.labels().get("app.kubernetes.io/managed-by").map(String::as_str), Some("eks"));
    assert!(crd(&h, CRDS[2]).await.is_none(), "no CRD applied beside another installation's");
    let sas = h.dynamic("v1", "ServiceAccount", "serviceaccounts", Some("kube-system"));
    assert!(!h.managed_names(&sas).await.contains(&"snapshot-controller".to_string()));
    h.stop().await;
}

#[tokio::test]
async fn a_missing_snapshot_controller_rule_is_reported_with_the_chart_value() {
    let h = Harness::start_with(1, false).await;
    Api::<ClusterRole>::all(h.client.clone())
        .delete("snapshot-controller-runner", &DeleteParams::default())
        .await
        .expect("delete the ClusterRole");
    h.create_driver(DRIVER, with_controller()).await;
    let c = wait_for("Ready=False DriverRbacIncomplete", || async {
        h.condition(DRIVER, "Ready").await.filter(|c| c["reason"] == "DriverRbacIncomplete")
    })
    .await;
    let msg = c["message"].as_str().unwrap_or_default();
    assert!(msg.contains("ClusterRole snapshot-controller-runner is missing"), "{msg}");
    assert!(msg.contains("snapshotController.rbac.create=true"), "{msg}");
    h.stop().await;
}

/// A Lease `snapshot-controller-leader` in `namespace`, held by `holder` and renewed now, as a
/// running snapshot-controller keeps it.
fn leader_lease(namespace: &str, holder: &str) -> k8s_openapi::api::coordination::v1::Lease {
    let now = jiff::Timestamp::now().to_string();
    serde_json::from_value(json!({
        "metadata": {"name": "snapshot-controller-leader", "namespace": namespace},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "acquireTime": now, "renewTime": now}
    }))
    .expect("lease")
}

#[tokio::test]
async fn a_snapshot_controller_in_another_namespace_is_found_by_its_lease_and_ours_steps_aside() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Namespace;
    // Ours runs first, on the CRDs it applied.
    let h = Harness::start_with(1, false).await;
    h.create_driver(DRIVER, with_controller()).await;
    let c = h.wait_condition(DRIVER, "SnapshotController", "True").await;
    assert_eq!(c["reason"], "Installed", "{c}");
    // Someone installs another snapshot-controller in its own namespace: it holds its Lease there.
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "snapshot-system"}})).expect("ns");
    Api::<Namespace>::all(h.client.clone()).create(&PostParams::default(), &ns).await.expect("namespace");
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), "snapshot-system");
    let lease = leader_lease("snapshot-system", "snapshot-controller-5d8c7-x2x9q");
    leases.create(&PostParams::default(), &lease).await.expect("their lease");
    // A Lease of that name in the driver namespace is our own controller's: not another one.
    let own: Api<Lease> = Api::namespaced(h.client.clone(), "kube-system");
    own.create(&PostParams::default(), &leader_lease("kube-system", "snapshot-controller-ours"))
        .await
        .expect("our lease");
    h.reconcile_once(DRIVER).await;
    let c = wait_for("SnapshotController Foreign", || async {
        h.condition(DRIVER, "SnapshotController").await.filter(|c| c["reason"] == "Foreign")
    })
    .await;
    let msg = c["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("a snapshot-controller in namespace snapshot-system (leader snapshot-controller-5d8c7-x2x9q"),
        "{msg}"
    );
    assert!(!msg.contains("kube-system"), "our own Lease is not another controller: {msg}");
    // Ours steps aside (no second controller fighting over the same objects); the CRDs stay.
    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), "kube-system");
    wait_for("our snapshot-controller removed", || async {
        deployments.get_opt("snapshot-controller").await.ok()?.is_none().then_some(Value::Null)
    })
    .await;
    for name in CRDS {
        assert!(crd(&h, name).await.is_some(), "{name} kept");
    }
    // Their controller goes away (its Lease with it): ours comes back.
    leases.delete("snapshot-controller-leader", &DeleteParams::default()).await.expect("lease deleted");
    h.reconcile_once(DRIVER).await;
    let c = wait_for("SnapshotController Installed", || async {
        h.condition(DRIVER, "SnapshotController").await.filter(|c| c["reason"] == "Installed")
    })
    .await;
    assert_eq!(c["status"], "True");
    h.stop().await;
}
