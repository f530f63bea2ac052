//! Issue 12: every way of deleting a HardenedCsiDriver keeps the driver (node DaemonSet,
//! controller Deployment, CSIDriver) while volumes need it, and says so in `DeletionBlocked`;
//! once the volumes are gone, deletion completes and every child is removed. Against the local
//! API server (its garbage collector cascades foreground, background and orphan deletions as
//! kube-controller-manager does), with the real reconciler; the `--cascade` variants with kubectl.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hardened_csi_operator::reconciler::caches::child_kinds;
use k8s_openapi::api::core::v1::{PersistentVolume, ServiceAccount};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::support::{Harness, OPERATOR_NAMESPACE, OPERATOR_SA, wait_for};
use super::{DRIVER, ready, spec};

const MANAGED: &str = "app.kubernetes.io/managed-by=hardened-csi-operator";

/// The three data-path objects, each of which the driver cannot work without.
async fn data_path_exists(client: &Client) -> (bool, bool, bool) {
    let h = |api_version: &str, kind: &str, plural: &str, ns: Option<&str>| {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let ar = kube::api::ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        match ns {
            Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar),
            None => Api::<DynamicObject>::all_with(client.clone(), &ar),
        }
    };
    let get = |api: Api<DynamicObject>, name: &'static str| async move {
        api.get_opt(name).await.expect("get").is_some_and(|o| o.metadata.deletion_timestamp.is_none())
    };
    (
        get(h("apps/v1", "DaemonSet", "daemonsets", Some("kube-system")), "ebs-csi-node").await,
        get(h("apps/v1", "Deployment", "deployments", Some("kube-system")), "ebs-csi-controller").await,
        get(h("storage.k8s.io/v1", "CSIDriver", "csidrivers", None), "ebs.csi.aws.com").await,
    )
}

/// Every object of every child kind that carries our label.
async fn managed_children(client: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for kind in child_kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.resource);
        if let Ok(list) = api.list(&ListParams::default().labels(MANAGED)).await {
            out.extend(list.items.iter().map(|o| format!("{}/{}", kind.resource.kind, o.name_any())));
        }
    }
    out
}

/// Waits for `DeletionBlocked=True` naming `names`, then checks the driver is whole and stays so
/// (the garbage collector has had time to cascade whatever it could).
async fn assert_held(h: &Harness, names: &[&str]) -> Value {
    let c = h.wait_condition(DRIVER, "DeletionBlocked", "True").await;
    let msg = c["message"].as_str().unwrap_or_default().to_string();
    for n in names {
        assert!(msg.contains(n), "DeletionBlocked does not name {n}: {msg}");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(data_path_exists(&h.client).await, (true, true, true), "the driver lost its data path");
    let d = h.drivers().get(DRIVER).await.expect("the driver object stays while volumes need it");
    assert!(d.metadata.deletion_timestamp.is_some());
    assert!(d.finalizers().iter().any(|f| f == "csi.hardened.dev/cleanup"), "{:?}", d.finalizers());
    c
}

async fn delete_pv(h: &Harness, name: &str) {
    let pvs: Api<PersistentVolume> = Api::all(h.client.clone());
    pvs.delete(name, &DeleteParams::default()).await.expect("delete pv");
}

/// The volumes are gone: deletion completes and nothing of the driver is left.
async fn assert_completes(h: &Harness) {
    h.trigger.send(DRIVER.to_string()).await.expect("trigger");
    h.wait_driver_gone(DRIVER).await;
    wait_for("every child removed", || async { managed_children(&h.client).await.is_empty().then_some(Value::Null) })
        .await;
}

async fn driver_with_pv(h: &Harness) {
    h.create_driver(DRIVER, spec()).await;
    ready(h).await;
    h.create_driver_pv("pv-data").await;
}

#[tokio::test]
async fn foreground_deletion_keeps_the_driver_while_a_volume_exists() {
    // Also what Argo CD does on app deletion and prune (its default propagation is foreground).
    let h = Harness::start(1).await;
    driver_with_pv(&h).await;
    h.drivers().delete(DRIVER, &DeleteParams::foreground()).await.expect("delete");
    let c = assert_held(&h, &["PersistentVolume/pv-data", "1 CSI PersistentVolume"]).await;
    assert_eq!(c["reason"], json!("VolumesExist"));
    let st = h.status(DRIVER).await;
    assert_eq!(st["deletionBlockedBy"]["csiPersistentVolumes"], json!(1), "{st}");
    assert_eq!(st["deletionBlockedBy"]["examples"], json!(["PersistentVolume/pv-data"]));
    delete_pv(&h, "pv-data").await;
    assert_completes(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn background_deletion_keeps_the_driver_while_a_volume_exists() {
    // Also Flux's prune and `helm uninstall` (both delete with background propagation).
    let h = Harness::start(1).await;
    driver_with_pv(&h).await;
    h.drivers().delete(DRIVER, &DeleteParams::background()).await.expect("delete");
    assert_held(&h, &["PersistentVolume/pv-data"]).await;
    delete_pv(&h, "pv-data").await;
    assert_completes(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn orphan_deletion_keeps_the_driver_then_removes_it() {
    let h = Harness::start(1).await;
    driver_with_pv(&h).await;
    h.drivers().delete(DRIVER, &DeleteParams::orphan()).await.expect("delete");
    assert_held(&h, &["PersistentVolume/pv-data"]).await;
    delete_pv(&h, "pv-data").await;
    assert_completes(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn in_tree_volumes_and_attachments_hold_deletion_too() {
    let h = Harness::start(1).await;
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    let pvs: Api<PersistentVolume> = Api::all(h.client.clone());
    let in_tree = serde_json::from_value(json!({"metadata": {"name": "gp2-legacy"}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
        "awsElasticBlockStore": {"volumeID": "aws://us-east-1a/vol-0123456789abcdef0", "fsType": "ext4"}}}))
    .expect("pv");
    pvs.create(&PostParams::default(), &in_tree).await.expect("in-tree pv");
    let vas: Api<VolumeAttachment> = Api::all(h.client.clone());
    let va = serde_json::from_value(json!({"metadata": {"name": "csi-0a1b2c"}, "spec": {
        "attacher": "ebs.csi.aws.com", "nodeName": "node-0", "source": {"persistentVolumeName": "gp2-legacy"}}}))
    .expect("va");
    vas.create(&PostParams::default(), &va).await.expect("va");
    // An attachment of another driver needs nothing of ours.
    let other = serde_json::from_value(json!({"metadata": {"name": "csi-efs"}, "spec": {
        "attacher": "efs.csi.aws.com", "nodeName": "node-0", "source": {"persistentVolumeName": "efs"}}}))
    .expect("va");
    vas.create(&PostParams::default(), &other).await.expect("va");

    h.drivers().delete(DRIVER, &DeleteParams::foreground()).await.expect("delete");
    let c = assert_held(&h, &["PersistentVolume/gp2-legacy", "VolumeAttachment/csi-0a1b2c", "in-tree"]).await;
    assert!(!c["message"].as_str().unwrap_or_default().contains("csi-efs"), "{c}");
    let st = h.status(DRIVER).await;
    assert_eq!(st["deletionBlockedBy"]["inTreePersistentVolumes"], json!(1), "{st}");
    assert_eq!(st["deletionBlockedBy"]["volumeAttachments"], json!(1), "{st}");
    assert_eq!(st["deletionBlockedBy"]["csiPersistentVolumes"], json!(0), "{st}");

    // The PV goes first: the attachment alone still holds.
    delete_pv(&h, "gp2-legacy").await;
    h.reconcile_once(DRIVER).await;
    wait_for("only the attachment holds", || async {
        let st = h.status(DRIVER).await;
        (st["deletionBlockedBy"]["inTreePersistentVolumes"] == json!(0)).then_some(Value::Null)
    })
    .await;
    assert_eq!(data_path_exists(&h.client).await, (true, true, true));
    vas.delete("csi-0a1b2c", &DeleteParams::default()).await.expect("delete va");
    assert_completes(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn force_delete_removes_the_driver_keeps_volumes_and_says_what_was_stranded() {
    let h = Harness::start(1).await;
    driver_with_pv(&h).await;
    h.drivers().delete(DRIVER, &DeleteParams::foreground()).await.expect("delete");
    assert_held(&h, &["PersistentVolume/pv-data"]).await;
    h.force_delete(DRIVER).await;
    assert_completes(&h).await;
    let pvs: Api<PersistentVolume> = Api::all(h.client.clone());
    assert!(pvs.get_opt("pv-data").await.expect("get").is_some(), "PVs are never deleted");
    let events: Api<DynamicObject> = h.dynamic("events.k8s.io/v1", "Event", "events", None);
    let note = wait_for("a ForceDeleted event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| e.data["reason"] == json!("ForceDeleted")).map(|e| e.data["note"].clone())
    })
    .await;
    let note = note.as_str().unwrap_or_default();
    assert!(note.contains("1 CSI PersistentVolume") && note.contains("PersistentVolume/pv-data"), "{note}");
    h.stop().await;
}

#[tokio::test]
async fn deletion_while_the_operator_is_down_waits_for_it_and_its_guard() {
    let mut h = Harness::start(1).await;
    driver_with_pv(&h).await;
    h.stop_controller().await;
    h.drivers().delete(DRIVER, &DeleteParams::foreground()).await.expect("delete");
    // Nobody runs the guard, and nothing else may remove the driver.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(data_path_exists(&h.client).await, (true, true, true), "the GC cascaded the driver away");
    assert!(h.drivers().get_opt(DRIVER).await.expect("get").is_some());
    // The operator comes back (a restart: fresh caches) and guards.
    h.start_controller().await;
    assert_held(&h, &["PersistentVolume/pv-data"]).await;
    // And again, while blocked.
    h.start_controller().await;
    h.reconcile_once(DRIVER).await;
    assert_held(&h, &["PersistentVolume/pv-data"]).await;
    delete_pv(&h, "pv-data").await;
    assert_completes(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn a_driver_that_never_ran_anything_is_not_held() {
    // Positive evidence: its record says another driver was in charge, no cache and no live
    // read finds any child of it.
    let h = Harness::start(1).await;
    driver_with_pv(&h).await;
    h.create_driver("second", json!({"namespace": "other"})).await;
    h.wait_condition("second", "Active", "False").await;
    h.drivers().delete("second", &DeleteParams::foreground()).await.expect("delete second");
    h.wait_driver_gone("second").await;
    assert_eq!(data_path_exists(&h.client).await, (true, true, true));
    h.stop().await;
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output().expect("kubectl runs");
    assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn kubectl_delete_cascade(cascade: &'static str) {
    let h = Harness::start(1).await;
    driver_with_pv(&h).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = dir.path().join("kubeconfig");
    h.server.write_kubeconfig(&kc).expect("kubeconfig");
    let arg = format!("--cascade={cascade}");
    let kc2 = kc.clone();
    let out = tokio::task::spawn_blocking(move || kubectl(&kc2, &["delete", "hcd", DRIVER, &arg, "--wait=false"]))
        .await
        .expect("kubectl");
    assert!(out.contains("deleted"), "{out}");
    assert_held(&h, &["PersistentVolume/pv-data"]).await;
    // What a user sees.
    let kc2 = kc.clone();
    let shown = tokio::task::spawn_blocking(move || {
        kubectl(
            &kc2,
            &["get", "hcd", DRIVER, "-o", "jsonpath={.status.conditions[?(@.type==\"DeletionBlocked\")].message}"],
        )
    })
    .await
    .expect("kubectl");
    assert!(shown.contains("csi.hardened.dev/force-delete"), "{shown}");
    delete_pv(&h, "pv-data").await;
    assert_completes(&h).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_cascade_foreground() {
    kubectl_delete_cascade("foreground").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_cascade_background() {
    kubectl_delete_cascade("background").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_cascade_orphan() {
    kubectl_delete_cascade("orphan").await;
}

#[tokio::test]
async fn a_failed_class_recreate_puts_the_old_class_back_and_says_why() {
    let h = Harness::start(1).await;
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    let sc = h.dynamic("storage.k8s.io/v1", "StorageClass", "storageclasses", None);
    // The first apply meets the API server's real refusal (parameters are immutable); the
    // recreate after the delete fails once (the old class is put back by the apply after it), and
    // every later attempt fails at its delete, until cleared, so the old class stays to be looked at.
    h.server.faults().fail_after(1, 1, local_apiserver::Match::new("patch", "storageclasses"), 500);
    h.server.faults().fail_after(1, u64::MAX, local_apiserver::Match::new("delete", "storageclasses"), 500);
    h.patch_spec(DRIVER, json!({"storageClasses": [{"name": "gp3", "type": "io2", "iops": 4000}]})).await;
    let events: Api<DynamicObject> = h.dynamic("events.k8s.io/v1", "Event", "events", None);
    let note = wait_for("an event saying the class was put back", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .map(|e| e.data["note"].as_str().unwrap_or_default().to_string())
            .find(|n| n.contains("recreating StorageClass/gp3"))
            .map(Value::String)
    })
    .await;
    let note = note.as_str().unwrap_or_default();
    assert!(note.contains("the old object was put back unchanged") && note.contains("injected"), "{note}");
    let c = sc.get("gp3").await.expect("gp3 is never left deleted");
    assert_eq!(c.data["parameters"]["type"], json!("gp3"), "the old class, as it was");
    assert_eq!(c.labels().get("app.kubernetes.io/managed-by").map(String::as_str), Some("hardened-csi-operator"));
    // The API server accepts again: the new class replaces the old one.
    h.server.faults().clear();
    wait_for("gp3 recreated as io2", || async {
        let c = sc.get_opt("gp3").await.ok()??;
        (c.data["parameters"]["type"] == json!("io2")).then_some(Value::Null)
    })
    .await;
    h.wait_condition(DRIVER, "Ready", "True").await;
    h.stop().await;
}

#[tokio::test]
async fn a_class_is_never_recreated_for_any_other_422() {
    let h = Harness::start(1).await;
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    let sc = h.dynamic("storage.k8s.io/v1", "StorageClass", "storageclasses", None);
    let uid = sc.get("gp3").await.expect("gp3").metadata.uid;
    h.server.reset_counters();
    // A 422 that is not about immutable fields (no such causes).
    h.server.faults().fail_next(u64::MAX, local_apiserver::Match::new("patch", "storageclasses"), 422);
    h.patch_spec(DRIVER, json!({"storageClasses": [{"name": "gp3", "type": "io2", "iops": 4000}]})).await;
    let c = h.wait_condition(DRIVER, "Ready", "False").await;
    assert_eq!(c["reason"], json!("ApplyFailed"), "{c}");
    assert!(c["message"].as_str().unwrap_or_default().contains("StorageClass/gp3"), "{c}");
    assert_eq!(h.server.counters().requests("delete", "storageclasses"), 0, "{:?}", h.server.counters().rows());
    assert_eq!(sc.get("gp3").await.expect("gp3").metadata.uid, uid);
    h.server.faults().clear();
    h.stop().await;
}

#[tokio::test]
async fn deletion_during_a_failover_is_guarded_by_the_next_leader() {
    use hardened_csi_operator::runtime::shutdown::CancellationToken;

    use super::failover::{holder, replica};
    let h = Harness::start(1).await;
    driver_with_pv(&h).await;
    // The harness's controller steps aside; two replicas with leader election take over.
    let mut h = h;
    h.stop_controller().await;
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let a = replica(h.client.clone(), "replica-a", stop_a.clone());
    let b = replica(h.client.clone(), "replica-b", stop_b.clone());
    let first = wait_for("a leader", || async { holder(&h.client).await.map(Value::String) }).await;
    let (stop_leader, leader_task, other) =
        if first == "replica-a" { (stop_a.clone(), a, "replica-b") } else { (stop_b.clone(), b, "replica-a") };
    // The leader goes away, and the driver is deleted before the other replica leads.
    stop_leader.cancel();
    tokio::time::timeout(Duration::from_secs(10), leader_task).await.expect("leader stops").expect("leader task");
    h.drivers().delete(DRIVER, &DeleteParams::foreground()).await.expect("delete");
    wait_for("the other replica leads", || async {
        (holder(&h.client).await.as_deref() == Some(other)).then_some(Value::Null)
    })
    .await;
    assert_held(&h, &["PersistentVolume/pv-data"]).await;
    delete_pv(&h, "pv-data").await;
    // The new leader recounts on its own timer (no trigger channel here).
    h.wait_driver_gone(DRIVER).await;
    wait_for("every child removed", || async { managed_children(&h.client).await.is_empty().then_some(Value::Null) })
        .await;
    stop_a.cancel();
    stop_b.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_k_deploy_keeps_the_driver_until_its_volumes_are_gone() {
    // `kubectl delete -k deploy/` deletes the CRD too, which deletes every HardenedCsiDriver, and
    // the operator itself: its namespace and ServiceAccount, so its token stops authenticating at
    // once (a real API server checks a bound token's ServiceAccount). Nothing then removes the
    // driver: the CRD waits (Terminating) for the driver's finalizer and the data path stays. Once
    // the operator is installed again, it resumes the deletion, which waits for the volumes.
    let mut h = Harness::start(1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = dir.path().join("kubeconfig");
    h.server.write_kubeconfig(&kc).expect("kubeconfig");
    let deploy = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let (kc2, d2) = (kc.clone(), deploy.clone());
    tokio::task::spawn_blocking(move || {
        kubectl(&kc2, &["apply", "--server-side", "--force-conflicts", "-k", d2.to_str().expect("path")])
    })
    .await
    .expect("kubectl apply -k");
    // The base's RBAC now applies, which names the pull Secret dhi-pull (its default).
    super::support::create_pull_secret_named(&h.client, "dhi-pull").await;
    let mut s = spec();
    s["images"] = json!({"pullSecrets": ["dhi-pull"]});
    h.create_driver(DRIVER, s).await;
    ready(&h).await;
    h.create_driver_pv("pv-data").await;
    let (kc2, d2) = (kc.clone(), deploy.clone());
    tokio::task::spawn_blocking(move || {
        kubectl(&kc2, &["delete", "-k", d2.to_str().expect("path"), "--wait=false", "--ignore-not-found"])
    })
    .await
    .expect("kubectl delete -k");
    let sas: Api<ServiceAccount> = Api::namespaced(h.client.clone(), OPERATOR_NAMESPACE);
    wait_for("the operator's ServiceAccount gone", || async {
        sas.get_opt(OPERATOR_SA).await.ok()?.is_none().then_some(Value::Null)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(data_path_exists(&h.client).await, (true, true, true), "the driver lost its data path");
    let d = h.drivers().get(DRIVER).await.expect("the driver object stays while volumes need it");
    assert!(d.metadata.deletion_timestamp.is_some());
    assert!(d.finalizers().iter().any(|f| f == "csi.hardened.dev/cleanup"), "{:?}", d.finalizers());
    let crds: Api<CustomResourceDefinition> = Api::all(h.client.clone());
    let crd = crds.get("hardenedcsidrivers.csi.hardened.dev").await.expect("the CRD waits for the driver");
    assert!(crd.metadata.deletion_timestamp.is_some());

    // The operator comes back (its chart or kustomize base installed again): the guard holds.
    h.reinstall_operator().await;
    assert_held(&h, &["PersistentVolume/pv-data"]).await;
    delete_pv(&h, "pv-data").await;
    assert_completes(&h).await;
    wait_for("the CRD gone", || async {
        crds.get_opt("hardenedcsidrivers.csi.hardened.dev").await.ok()?.is_none().then_some(Value::Null)
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn an_upgrade_drops_the_owner_references_earlier_versions_set() {
    // Earlier versions applied every child with an ownerReference to the driver. The upgraded
    // operator's first apply (same field manager) no longer sets it, so server-side apply removes
    // it, and a foreground deletion afterwards cannot cascade the data path away.
    let mut h = Harness::start(1).await;
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    let uid = h.drivers().get(DRIVER).await.expect("driver").metadata.uid.expect("uid");
    let ds = h.dynamic("apps/v1", "DaemonSet", "daemonsets", Some("kube-system"));
    h.stop_controller().await;
    let mut old = serde_json::to_value(ds.get("ebs-csi-node").await.expect("ds")).expect("json");
    for k in ["managedFields", "resourceVersion", "uid", "creationTimestamp", "generation"] {
        old["metadata"].as_object_mut().expect("meta").remove(k);
    }
    old.as_object_mut().expect("obj").remove("status");
    old["metadata"]["ownerReferences"] = json!([{"apiVersion": "csi.hardened.dev/v1alpha1",
        "kind": "HardenedCsiDriver", "name": DRIVER, "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
    ds.patch("ebs-csi-node", &PatchParams::apply("hardened-csi-operator").force(), &Patch::Apply(&old))
        .await
        .expect("apply as the old version");
    assert!(ds.get("ebs-csi-node").await.expect("ds").metadata.owner_references.is_some());
    h.start_controller().await;
    wait_for("the owner reference dropped", || async {
        ds.get("ebs-csi-node").await.ok()?.metadata.owner_references.is_none_or(|r| r.is_empty()).then_some(Value::Null)
    })
    .await;
    h.create_driver_pv("pv-data").await;
    h.drivers().delete(DRIVER, &DeleteParams::foreground()).await.expect("delete");
    assert_held(&h, &["PersistentVolume/pv-data"]).await;
    delete_pv(&h, "pv-data").await;
    assert_completes(&h).await;
    h.stop().await;
}
