//! The reconciler against the local API server over HTTP: every behaviour of the reconciler issue.

mod absent_apis;
mod deletion;
mod failover;
mod faults;
mod hostile;
mod journeys;
mod least_privilege;
mod monitoring;
mod retag;
mod snapshots;
mod storage;
mod support;

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{Harness, snapshot_crd, wait_for};

pub const DRIVER: &str = "ebs";

pub fn spec() -> Value {
    json!({"aws": {"region": "us-east-1", "clusterId": "test"}, "images": {"pullSecrets": [support::PULL_SECRET]},
           "volumeSnapshotClasses": [{"name": "ebs-snapshots", "default": true}]})
}

/// Waits until the controller Deployment and node DaemonSet exist and the driver is Ready (the
/// local server runs their ReplicaSets and Pods).
pub async fn ready(h: &Harness) {
    h.wait_condition(DRIVER, "Ready", "True").await;
}

#[tokio::test]
async fn creates_every_child_and_reports_ready() {
    let h = Harness::start(3).await;
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    let deploy = h.dynamic("apps/v1", "Deployment", "deployments", Some("kube-system"));
    let ds = h.dynamic("apps/v1", "DaemonSet", "daemonsets", Some("kube-system"));
    assert_eq!(h.managed_names(&deploy).await, ["ebs-csi-controller"]);
    assert_eq!(h.managed_names(&ds).await, ["ebs-csi-node"]);
    let sas = h.dynamic("v1", "ServiceAccount", "serviceaccounts", Some("kube-system"));
    assert_eq!(h.managed_names(&sas).await, ["ebs-csi-controller-sa", "ebs-csi-node-sa"]);
    // The driver's RBAC is the chart's: the operator writes none.
    for (kind, plural) in [("ClusterRole", "clusterroles"), ("ClusterRoleBinding", "clusterrolebindings")] {
        let api = h.dynamic("rbac.authorization.k8s.io/v1", kind, plural, None);
        assert!(h.managed_names(&api).await.is_empty(), "the operator wrote a {kind}");
    }
    let csid = h.dynamic("storage.k8s.io/v1", "CSIDriver", "csidrivers", None);
    assert!(h.exists(&csid, "ebs.csi.aws.com").await);
    let vsc = h.dynamic("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass", "volumesnapshotclasses", None);
    assert_eq!(h.managed_names(&vsc).await, ["ebs-snapshots"]);

    let st = h.status(DRIVER).await;
    assert_eq!(st["observedGeneration"], json!(1));
    assert_eq!(st["controller"]["summary"], json!("2/2"));
    assert_eq!(st["node"]["summary"], json!("3/3"));
    assert_eq!(st["driverImage"], json!("dhi.io/aws-ebs-csi-driver:1.64.0"));
    assert_eq!(st["storageClasses"], json!(["gp3"]));
    // The data path carries no owner reference (the garbage collector must not cascade it away
    // behind the deletion guard); the driver's uid annotation records ownership instead.
    let uid = h.drivers().get(DRIVER).await.expect("driver").metadata.uid.expect("uid");
    let d = deploy.get("ebs-csi-controller").await.expect("deployment");
    assert!(d.metadata.owner_references.is_none(), "{:?}", d.metadata.owner_references);
    assert_eq!(d.annotations().get("csi.hardened.dev/owner-uid"), Some(&uid));
    let svc = h.dynamic("v1", "Service", "services", Some("kube-system"));
    for s in svc.list(&Default::default()).await.expect("services").items {
        let owners = s.metadata.owner_references.expect("the metrics Service keeps its owner reference");
        assert_eq!((owners[0].kind.as_str(), owners[0].name.as_str()), ("HardenedCsiDriver", DRIVER));
    }
    h.stop().await;
}

#[tokio::test]
async fn no_writes_when_nothing_changed() {
    let h = Harness::start(2).await;
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    // Let the last watch events settle, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.server.reset_counters();
    for _ in 0..5 {
        h.reconcile_once(DRIVER).await;
    }
    let c = h.server.counters();
    assert_eq!(c.write_attempts(), 0, "a reconcile of an unchanged driver must not even try to write: {:?}", c.rows());
    h.stop().await;
}

#[tokio::test]
async fn repairs_drift() {
    let h = Harness::start(1).await;
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    let deploy = h.dynamic("apps/v1", "Deployment", "deployments", Some("kube-system"));
    // Someone scales the controller down: put back.
    deploy
        .patch(
            "ebs-csi-controller",
            &PatchParams::apply("intruder").force(),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 0}})),
        )
        .await
        .expect("scale down");
    wait_for("replicas restored", || async {
        let d = deploy.get("ebs-csi-controller").await.ok()?;
        (d.data["spec"]["replicas"] == json!(2)).then_some(Value::Null)
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn reports_what_the_driver_rbac_lacks_and_never_writes_it() {
    let h = Harness::start(1).await;
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    // Someone deletes one of the chart's ClusterRoles and narrows another.
    let crs = h.dynamic("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", None);
    crs.delete("ebs-external-attacher-role", &DeleteParams::default()).await.expect("delete");
    crs.patch(
        "ebs-csi-node-role",
        &PatchParams::default(),
        &Patch::Merge(json!({"rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]})),
    )
    .await
    .expect("narrow");
    // No other trigger: the watches of the driver's RBAC by name report both changes.
    let c = wait_for("Ready=False naming both changes", || async {
        h.condition(DRIVER, "Ready").await.filter(|c| {
            let msg = c["message"].as_str().unwrap_or_default();
            c["status"] == "False" && msg.contains("ebs-external-attacher-role") && msg.contains("ebs-csi-node-role")
        })
    })
    .await;
    assert_eq!(c["reason"], json!("DriverRbacIncomplete"), "{c}");
    let msg = c["message"].as_str().unwrap_or_default();
    assert!(msg.contains("ClusterRole ebs-external-attacher-role is missing"), "{msg}");
    assert!(
        msg.contains(
            "ClusterRole ebs-csi-node-role lacks get/list/watch on storage.k8s.io/volumeattachments, \
                patch/list/watch on core/nodes, get on storage.k8s.io/csinodes"
        ),
        "{msg}"
    );
    let degraded = h.wait_condition(DRIVER, "Degraded", "True").await;
    assert_eq!(degraded["reason"], json!("DriverRbacIncomplete"));
    // The operator did not put it back: it cannot (no write on RBAC), an admin does.
    assert!(crs.get_opt("ebs-external-attacher-role").await.expect("get").is_none());
    crs.delete("ebs-csi-node-role", &DeleteParams::default()).await.expect("delete");
    support::install_driver_rbac(&h.client).await;
    h.wait_condition(DRIVER, "Ready", "True").await;
    // A reconcile reads the driver's RBAC from those watches: not one request for it.
    h.server.reset_access_log();
    h.reconcile_once(DRIVER).await;
    let reads: Vec<_> = h
        .server
        .access_log(&support::operator_user())
        .into_iter()
        .filter(|a| a.api_group == "rbac.authorization.k8s.io")
        .collect();
    assert!(reads.is_empty(), "{reads:#?}");
    h.stop().await;
}

#[tokio::test]
async fn prunes_what_falls_out_of_the_spec() {
    let h = Harness::start(1).await;
    let mut s = spec();
    s["storageClasses"] = json!([{"name": "gp3"}, {"name": "io2", "type": "io2", "iops": 4000}]);
    h.create_driver(DRIVER, s).await;
    ready(&h).await;
    let sc = h.dynamic("storage.k8s.io/v1", "StorageClass", "storageclasses", None);
    assert_eq!(h.managed_names(&sc).await, ["gp3", "io2"]);
    // An unrelated StorageClass with the same name pattern is never touched.
    let foreign: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "standard"},
        "provisioner": "kubernetes.io/no-provisioner"
    }))
    .expect("sc");
    sc.create(&PostParams::default(), &foreign).await.expect("create foreign sc");
    h.patch_spec(DRIVER, json!({"storageClasses": [{"name": "gp3"}]})).await;
    wait_for("io2 pruned", || async { (!h.exists(&sc, "io2").await).then_some(Value::Null) }).await;
    assert!(h.exists(&sc, "gp3").await && h.exists(&sc, "standard").await);
    // Pruning happens before the status write: wait for the status of generation 2.
    h.wait_condition_at(DRIVER, "Ready", "True", 2).await;
    assert_eq!(h.status(DRIVER).await["storageClasses"], json!(["gp3"]));
    h.stop().await;
}

#[tokio::test]
async fn follows_the_snapshot_api() {
    let h = Harness::start_with(1, false).await;
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    assert_eq!(h.condition(DRIVER, "SnapshotApi").await.expect("condition")["status"], json!("False"));
    let deploy = h.dynamic("apps/v1", "Deployment", "deployments", Some("kube-system"));
    let containers = |d: &kube::api::DynamicObject| -> Vec<String> {
        d.data["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["name"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    assert!(!containers(&deploy.get("ebs-csi-controller").await.expect("d")).contains(&"csi-snapshotter".to_string()));

    let crds: kube::Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        kube::Api::all(h.client.clone());
    crds.create(&PostParams::default(), &snapshot_crd()).await.expect("snapshot CRD");
    h.wait_condition(DRIVER, "SnapshotApi", "True").await;
    wait_for("snapshotter added", || async {
        containers(&deploy.get("ebs-csi-controller").await.ok()?)
            .contains(&"csi-snapshotter".to_string())
            .then_some(Value::Null)
    })
    .await;
    let vsc = h.dynamic("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass", "volumesnapshotclasses", None);
    wait_for("VolumeSnapshotClass created", || async { h.exists(&vsc, "ebs-snapshots").await.then_some(Value::Null) })
        .await;

    crds.delete("volumesnapshotclasses.snapshot.storage.k8s.io", &DeleteParams::default()).await.expect("delete CRD");
    h.wait_condition(DRIVER, "SnapshotApi", "False").await;
    wait_for("snapshotter removed", || async {
        (!containers(&deploy.get("ebs-csi-controller").await.ok()?).contains(&"csi-snapshotter".to_string()))
            .then_some(Value::Null)
    })
    .await;
    // The snapshotter's binding is the chart's: left alone (it grants nothing without the API).
    let crb = h.dynamic("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", None);
    assert!(h.exists(&crb, "ebs-csi-snapshotter-binding").await);
    h.stop().await;
}

#[tokio::test]
async fn refuses_foreign_objects_until_adopt() {
    let h = Harness::start(1).await;
    // The EKS add-on left a CSIDriver and a controller Deployment.
    let csid = h.dynamic("storage.k8s.io/v1", "CSIDriver", "csidrivers", None);
    let addon: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
        "metadata": {"name": "ebs.csi.aws.com", "labels": {"app.kubernetes.io/managed-by": "EKS"}},
        "spec": {"attachRequired": true, "podInfoOnMount": false, "fsGroupPolicy": "File"}
    }))
    .expect("csidriver");
    csid.patch("ebs.csi.aws.com", &PatchParams::apply("eks").force(), &Patch::Apply(&addon))
        .await
        .expect("add-on CSIDriver");
    h.create_driver(DRIVER, spec()).await;
    let cond = h.wait_condition(DRIVER, "OwnershipConflict", "True").await;
    let msg = cond["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("CSIDriver/ebs.csi.aws.com") && msg.contains("EKS managed add-on") && msg.contains("adopt"),
        "{msg}"
    );
    assert_eq!(h.condition(DRIVER, "Ready").await.expect("ready")["reason"], json!("OwnershipConflict"));
    // Nothing was created or changed.
    let deploy = h.dynamic("apps/v1", "Deployment", "deployments", Some("kube-system"));
    assert!(h.managed_names(&deploy).await.is_empty());
    let d = csid.get("ebs.csi.aws.com").await.expect("csidriver");
    assert!(d.metadata.owner_references.is_none());

    h.patch_spec(DRIVER, json!({"adopt": true})).await;
    ready(&h).await;
    let d = csid.get("ebs.csi.aws.com").await.expect("csidriver");
    assert_eq!(d.labels().get("app.kubernetes.io/instance").map(String::as_str), Some(DRIVER), "adopted");
    assert!(d.annotations().contains_key("csi.hardened.dev/owner-uid"), "adopted");
    assert_eq!(h.condition(DRIVER, "OwnershipConflict").await.expect("c")["status"], json!("False"));
    h.stop().await;
}

#[tokio::test]
async fn second_driver_changes_nothing() {
    let h = Harness::start(1).await;
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    h.server.reset_counters();
    h.create_driver("second", json!({"namespace": "other", "storageClasses": [{"name": "other-gp3"}]})).await;
    let c = h.wait_condition("second", "Active", "False").await;
    assert!(c["message"].as_str().unwrap_or_default().contains("\"ebs\""), "{c}");
    let sc = h.dynamic("storage.k8s.io/v1", "StorageClass", "storageclasses", None);
    assert!(!h.exists(&sc, "other-gp3").await);
    assert_eq!(h.condition(DRIVER, "Active").await.expect("active")["status"], json!("True"));
    // The second driver runs nothing, so the volumes of the first do not hold its deletion.
    h.create_driver_pv("pv-1").await;
    h.drivers().delete("second", &DeleteParams::default()).await.expect("delete second");
    h.wait_driver_gone("second").await;
    assert_eq!(h.condition(DRIVER, "Ready").await.expect("ready")["status"], json!("True"));
    h.stop().await;
}

#[tokio::test]
async fn invalid_spec_leaves_running_children_alone() {
    let h = Harness::start(1).await;
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    let deploy = h.dynamic("apps/v1", "Deployment", "deployments", Some("kube-system"));
    let before = deploy.get("ebs-csi-controller").await.expect("d").metadata.resource_version;
    // A spec that the CRD's CEL would refuse, stored directly (as if admission had been bypassed).
    let mut obj = serde_json::to_value(h.drivers().get(DRIVER).await.expect("driver")).expect("json");
    obj["spec"]["aws"]["identity"] = json!({"podIdentity": {}, "secretRef": {"name": "x"}});
    obj["spec"]["controller"] = json!({"replicas": "three"});
    obj["metadata"]["generation"] = json!(2);
    h.server.insert_raw(obj);
    let c = h.wait_condition(DRIVER, "SpecValid", "False").await;
    assert!(c["message"].as_str().unwrap_or_default().contains("spec.controller.replicas"), "{c}");
    assert_eq!(h.condition(DRIVER, "Ready").await.expect("ready")["reason"], json!("InvalidSpec"));
    let after = deploy.get("ebs-csi-controller").await.expect("d").metadata.resource_version;
    assert_eq!(before, after, "the running controller was not touched");
    h.stop().await;
}

#[tokio::test]
async fn deletion_waits_for_volumes_unless_forced() {
    let h = Harness::start(1).await;
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    // Without volumes: the finalizer removes the children and the driver goes.
    h.create_driver_pv("pv-1").await;
    h.drivers().delete(DRIVER, &DeleteParams::default()).await.expect("delete");
    let c = h.wait_condition(DRIVER, "DeletionBlocked", "True").await;
    assert!(c["message"].as_str().unwrap_or_default().contains("1 CSI PersistentVolume"), "{c}");
    let deploy = h.dynamic("apps/v1", "Deployment", "deployments", Some("kube-system"));
    assert!(h.exists(&deploy, "ebs-csi-controller").await, "children stay while volumes exist");

    h.force_delete(DRIVER).await;
    h.wait_driver_gone(DRIVER).await;
    wait_for("children gone", || async { (!h.exists(&deploy, "ebs-csi-controller").await).then_some(Value::Null) })
        .await;
    let pvs: kube::Api<k8s_openapi::api::core::v1::PersistentVolume> = kube::Api::all(h.client.clone());
    assert!(pvs.get_opt("pv-1").await.expect("get").is_some(), "PVs are never deleted");
    h.stop().await;
}

#[tokio::test]
async fn status_follows_a_rollout() {
    let h = Harness::start(2).await;
    h.server.set_simulate_workloads(false);
    h.create_driver(DRIVER, spec()).await;
    let c = h.wait_condition(DRIVER, "Progressing", "True").await;
    assert_eq!(c["reason"], json!("RollingOut"));
    assert_eq!(h.condition(DRIVER, "Ready").await.expect("ready")["status"], json!("False"));
    h.server.set_simulate_workloads(true);
    ready(&h).await;
    assert_eq!(h.condition(DRIVER, "Progressing").await.expect("p")["status"], json!("False"));
    assert_eq!(h.condition(DRIVER, "Degraded").await.expect("d")["status"], json!("False"));
    h.stop().await;
}

#[tokio::test]
async fn storage_class_parameter_changes_recreate_the_class() {
    let h = Harness::start(1).await;
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    let sc = h.dynamic("storage.k8s.io/v1", "StorageClass", "storageclasses", None);
    let before = sc.get("gp3").await.expect("gp3").metadata.uid;
    // StorageClass parameters are immutable: the operator deletes and recreates the class.
    h.patch_spec(DRIVER, json!({"storageClasses": [{"name": "gp3", "type": "io2", "iops": 4000}]})).await;
    wait_for("gp3 recreated as io2", || async {
        let c = sc.get("gp3").await.ok()?;
        (c.data["parameters"]["type"] == json!("io2") && c.metadata.uid != before).then_some(Value::Null)
    })
    .await;
    // Pruning happens before the status write: wait for the status of generation 2.
    h.wait_condition_at(DRIVER, "Ready", "True", 2).await;
    h.stop().await;
}
