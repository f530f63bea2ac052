//! Storage features against the local API server: one driver version (`spec.version`) and
//! VolumeAttributesClasses (served version, feature gates, pruning guarded by the claims that use
//! a class, immutable parameters).

use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use serde_json::{Value, json};

use super::support::Harness;
use super::{DRIVER, spec};

/// Waits for `f` to give a value (the harness's `wait_for`, for any type).
async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn with(extra: Value) -> Value {
    let mut s = spec();
    if let (Some(s), Some(e)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    s
}

fn images(workload: &DynamicObject) -> Vec<(String, String)> {
    workload.data["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (c["name"].as_str().unwrap_or_default().into(), c["image"].as_str().unwrap_or_default().into()))
        .collect()
}

fn image_of(workload: &DynamicObject, container: &str) -> String {
    images(workload).into_iter().find(|(n, _)| n == container).map(|(_, i)| i).unwrap_or_default()
}

fn args_of(workload: &DynamicObject, container: &str) -> Vec<String> {
    let c = workload.data["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == container).cloned())
        .unwrap_or_default();
    c["args"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
}

#[tokio::test]
async fn the_version_selects_every_image_and_status_reports_the_release_rolled_out() {
    let h = Harness::start(2).await;
    h.create_driver(DRIVER, with(json!({"version": "1.62.0"}))).await;
    h.wait_condition(DRIVER, "Ready", "True").await;
    let deploy = h.dynamic("apps/v1", "Deployment", "deployments", Some("kube-system"));
    let ds = h.dynamic("apps/v1", "DaemonSet", "daemonsets", Some("kube-system"));
    let d = deploy.get("ebs-csi-controller").await.expect("controller");
    assert_eq!(image_of(&d, "ebs-plugin"), "dhi.io/aws-ebs-csi-driver:1.62.0");
    assert_eq!(image_of(&d, "csi-resizer"), "dhi.io/csi-resizer:2.2.0");
    let n = ds.get("ebs-csi-node").await.expect("node plugin");
    assert_eq!(image_of(&n, "ebs-plugin"), "dhi.io/aws-ebs-csi-driver:1.62.0");
    wait_for("status.version 1.62.0", || async { (h.status(DRIVER).await["version"] == "1.62.0").then_some(()) }).await;

    // An upgrade: while the new pods are not rolled out, status still names the running release.
    h.server.set_simulate_workloads(false);
    h.patch_spec(DRIVER, json!({"version": "1.64.0"})).await;
    let st = wait_for("generation 2 observed", || async {
        let st = h.status(DRIVER).await;
        (st["observedGeneration"] == 2).then_some(st)
    })
    .await;
    assert_eq!(st["version"], "1.62.0", "the new release is not rolled out yet: {st}");
    assert_eq!(st["driverImage"], "dhi.io/aws-ebs-csi-driver:1.64.0");
    let d = deploy.get("ebs-csi-controller").await.expect("controller");
    assert_eq!(image_of(&d, "csi-resizer"), "dhi.io/csi-resizer:2.2.1");
    h.server.set_simulate_workloads(true);
    wait_for("status.version 1.64.0 once rolled out", || async {
        (h.status(DRIVER).await["version"] == "1.64.0").then_some(())
    })
    .await;
    let n = ds.get("ebs-csi-node").await.expect("node plugin");
    assert_eq!(image_of(&n, "ebs-plugin"), "dhi.io/aws-ebs-csi-driver:1.64.0");
    h.stop().await;
}

#[tokio::test]
async fn an_unknown_version_is_refused_by_the_api_server_with_the_supported_ones() {
    let h = Harness::start(0).await;
    let obj: hardened_csi_operator::crd::HardenedCsiDriver = serde_json::from_value(json!({
        "apiVersion": "csi.hardened.dev/v1alpha1", "kind": "HardenedCsiDriver", "metadata": {"name": DRIVER},
        "spec": with(json!({"version": "1.99.0"}))}))
    .expect("object");
    let err = h.drivers().create(&PostParams::default(), &obj).await.expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("spec.version") && text.contains("\"1.64.0\""), "{text}");
    h.stop().await;
}

fn vac_api(h: &Harness) -> Api<DynamicObject> {
    h.dynamic("storage.k8s.io/v1", "VolumeAttributesClass", "volumeattributesclasses", None)
}

async fn claim(h: &Harness, name: &str, class: &str) {
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::namespaced(h.client.clone(), "default");
    let pvc = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "volumeAttributesClassName": class,
                 "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .expect("pvc");
    pvcs.create(&PostParams::default(), &pvc).await.expect("claim created");
}

#[tokio::test]
async fn volume_attributes_classes_are_served_pruned_and_kept_while_claims_use_them() {
    let h = Harness::start_on("1.34", 1, true).await;
    let classes = json!([
        {"name": "fast", "type": "gp3", "iops": 16000, "throughput": 1000},
        {"name": "tagged", "parameters": {"tagSpecification_1": "team=storage"}}
    ]);
    h.create_driver(DRIVER, with(json!({"volumeAttributesClasses": classes}))).await;
    let c = h.wait_condition(DRIVER, "VolumeAttributesClasses", "True").await;
    assert_eq!(c["reason"], "Served", "{c}");
    assert!(c["message"].as_str().is_some_and(|m| m.contains("storage.k8s.io/v1") && m.contains("fast")), "{c}");
    let vacs = vac_api(&h);
    let fast = wait_for("VolumeAttributesClass fast", || async { vacs.get_opt("fast").await.expect("get") }).await;
    assert_eq!(fast.data["driverName"], "ebs.csi.aws.com");
    assert_eq!(fast.data["parameters"], json!({"type": "gp3", "iops": "16000", "throughput": "1000"}));
    assert!(h.exists(&vacs, "tagged").await);
    // Served: the sidecars keep their default (on), as upstream's chart renders it.
    let deploy = h.dynamic("apps/v1", "Deployment", "deployments", Some("kube-system"));
    let d = deploy.get("ebs-csi-controller").await.expect("controller");
    for sidecar in ["csi-provisioner", "csi-resizer"] {
        assert!(!args_of(&d, sidecar).iter().any(|a| a.contains("VolumeAttributesClass")), "{sidecar}");
    }

    // A claim uses `fast`; both classes leave the spec: `tagged` goes, `fast` stays and is reported.
    claim(&h, "data", "fast").await;
    h.patch_spec(DRIVER, json!({"volumeAttributesClasses": []})).await;
    wait_for("tagged pruned", || async { (!h.exists(&vacs, "tagged").await).then_some(()) }).await;
    let c = wait_for("fast kept and reported", || async {
        h.condition(DRIVER, "VolumeAttributesClasses").await.filter(|c| c["reason"] == "RemovedClassesInUse")
    })
    .await;
    assert!(
        c["message"].as_str().is_some_and(|m| m.contains("fast (used by PersistentVolumeClaim/default/data)")),
        "{c}"
    );
    assert!(h.exists(&vacs, "fast").await, "a class a claim uses is never deleted");
    let st = h.status(DRIVER).await;
    assert_eq!(st["keptVolumeAttributesClasses"], json!(["fast (used by PersistentVolumeClaim/default/data)"]));
    assert_eq!(h.condition(DRIVER, "Ready").await.expect("Ready")["status"], "True", "keeping a class is no failure");

    // Once nothing uses it, the next reconcile deletes it.
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::namespaced(h.client.clone(), "default");
    pvcs.delete("data", &DeleteParams::default()).await.expect("claim deleted");
    wait_for("claim gone", || async { pvcs.get_opt("data").await.expect("get").is_none().then_some(()) }).await;
    h.reconcile_once(DRIVER).await;
    wait_for("fast pruned", || async { (!h.exists(&vacs, "fast").await).then_some(()) }).await;
    // The class is deleted before the status saying so is written: wait for that status.
    let c = wait_for("VolumeAttributesClasses Served again", || async {
        h.condition(DRIVER, "VolumeAttributesClasses").await.filter(|c| c["reason"] == "Served")
    })
    .await;
    assert_eq!(c["status"], "True", "{c}");
    h.stop().await;
}

#[tokio::test]
async fn changed_parameters_recreate_an_unused_class_and_are_refused_for_one_in_use() {
    let h = Harness::start_on("1.34", 1, true).await;
    h.create_driver(DRIVER, with(json!({"volumeAttributesClasses": [{"name": "fast", "iops": 4000}]}))).await;
    let vacs = vac_api(&h);
    let old = wait_for("fast", || async { vacs.get_opt("fast").await.expect("get") }).await;
    // Unused: parameters are immutable, so the class is deleted and created anew.
    h.patch_spec(DRIVER, json!({"volumeAttributesClasses": [{"name": "fast", "iops": 5000}]})).await;
    let new = wait_for("fast recreated", || async {
        vacs.get_opt("fast").await.expect("get").filter(|v| v.data["parameters"]["iops"] == "5000")
    })
    .await;
    assert_ne!(old.metadata.uid, new.metadata.uid, "a new object");

    // In use: never deleted under the claim; the refusal names the claim and what to do.
    claim(&h, "data", "fast").await;
    h.patch_spec(DRIVER, json!({"volumeAttributesClasses": [{"name": "fast", "iops": 6000}]})).await;
    let ready = wait_for("the refusal in Ready", || async {
        h.condition(DRIVER, "Ready")
            .await
            .filter(|c| c["status"] == "False" && c["message"].as_str().is_some_and(|m| m.contains("in use by")))
    })
    .await;
    let m = ready["message"].as_str().unwrap_or_default();
    assert!(m.contains("PersistentVolumeClaim/default/data") && m.contains("new name"), "{m}");
    let kept = vacs.get("fast").await.expect("still there");
    assert_eq!(kept.metadata.uid, new.metadata.uid, "the class in use was not recreated");
    assert_eq!(kept.data["parameters"]["iops"], "5000");
    h.stop().await;
}

#[tokio::test]
async fn without_the_api_the_classes_wait_and_the_sidecars_turn_the_gate_off() {
    let h = Harness::start(1).await;
    h.create_driver(DRIVER, with(json!({"volumeAttributesClasses": [{"name": "fast", "iops": 4000}]}))).await;
    h.wait_condition(DRIVER, "Ready", "True").await;
    let c = h.wait_condition(DRIVER, "VolumeAttributesClasses", "False").await;
    assert_eq!(c["reason"], "NotServed", "{c}");
    assert!(c["message"].as_str().is_some_and(|m| m.contains("1 class(es)")), "{c}");
    let deploy = h.dynamic("apps/v1", "Deployment", "deployments", Some("kube-system"));
    let d = deploy.get("ebs-csi-controller").await.expect("controller");
    assert!(
        args_of(&d, "csi-provisioner").contains(&"--feature-gates=Topology=true,VolumeAttributesClass=false".into())
    );
    assert!(args_of(&d, "csi-resizer").contains(&"--feature-gates=VolumeAttributesClass=false".into()));
    h.stop().await;
}
