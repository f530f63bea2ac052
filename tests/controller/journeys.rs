//! The mechanisms under the journeys of issue 14, with the local API server's counters and faults:
//! the version re-discovered after a watch error, named Secrets watched (not polled), a CSIDriver
//! recreate that fails put back as it was.

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use local_apiserver::Match;
use serde_json::{Value, json};

use super::support::{Harness, wait_for};
use super::{DRIVER, ready, spec};

/// The harness re-discovers on the default interval (a minute): a version change is only seen
/// this fast through a watch error, as when the API server restarts during a control-plane upgrade.
#[tokio::test]
async fn a_watch_error_rediscovers_the_kubernetes_version() {
    let h = Harness::start(1).await;
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    let csid = h.dynamic("storage.k8s.io/v1", "CSIDriver", "csidrivers", None);
    assert!(
        csid.get("ebs.csi.aws.com").await.expect("csidriver").data["spec"]["nodeAllocatableUpdatePeriodSeconds"]
            .is_null()
    );
    h.server.set_kubernetes_version("1.35").expect("version");
    // Every watch ends; the re-watch of Deployments fails once.
    h.server.faults().fail_next(1, Match::new("watch", "deployments"), 500);
    h.server.faults().drop_watches();
    wait_for("status.kubernetesVersion 1.35", || async {
        (h.status(DRIVER).await["kubernetesVersion"] == json!("1.35")).then_some(Value::Null)
    })
    .await;
    let d = csid.get("ebs.csi.aws.com").await.expect("csidriver");
    assert_eq!(d.data["spec"]["nodeAllocatableUpdatePeriodSeconds"], json!(10), "rendered for 1.35");
    h.stop().await;
}

/// With no node, no pod changes trigger a reconcile: only the Secret's watch can tell the
/// operator that the pull Secret appeared. It is watched by name, never read again. The name is
/// one the chart's install-time values grant (`pullSecretCheck.secretNames`).
#[tokio::test]
async fn a_pull_secret_created_later_is_seen_from_its_watch() {
    let h = Harness::start(0).await;
    let mut s = spec();
    s["images"]["pullSecrets"] = json!(["dhi-pull"]);
    h.create_driver(DRIVER, s).await;
    let c = h.wait_condition(DRIVER, "PullSecretsPresent", "False").await;
    assert!(c["message"].as_str().unwrap_or_default().contains("dhi-pull"), "{c}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.server.reset_counters();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(h.client.clone(), "kube-system");
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "dhi-pull"}, "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": "{\"auths\": {\"dhi.io\": {\"auth\": \"dTpw\"}}}"}}))
    .expect("secret");
    secrets.create(&kube::api::PostParams::default(), &secret).await.expect("secret");
    h.wait_condition(DRIVER, "PullSecretsPresent", "True").await;
    let counters = h.server.counters();
    assert_eq!(counters.requests("get", "secrets"), 0, "seen from the watch, not read");
    h.stop().await;
}

/// The CSIDriver recreate shares the class recreate's mechanism: the old object is read, deleted
/// with its uid as precondition and, when creating the new one fails, put back as it was.
#[tokio::test]
async fn a_failed_csidriver_recreate_puts_the_old_one_back() {
    let h = Harness::start(1).await;
    let csid = h.dynamic("storage.k8s.io/v1", "CSIDriver", "csidrivers", None);
    h.apply_old_csidriver(DRIVER).await;
    // The first apply meets the real refusal (fsGroupPolicy is immutable); the create after the
    // delete fails once (the old object is put back by the apply after it), and every later
    // attempt fails at its delete, until cleared, so the old object stays to be looked at.
    h.server.faults().fail_after(1, 1, Match::new("patch", "csidrivers"), 500);
    h.server.faults().fail_after(1, u64::MAX, Match::new("delete", "csidrivers"), 500);
    h.create_driver(DRIVER, spec()).await;
    let events: Api<DynamicObject> = h.dynamic("events.k8s.io/v1", "Event", "events", None);
    let note = wait_for("an event saying the CSIDriver was put back", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .map(|e| e.data["note"].as_str().unwrap_or_default().to_string())
            .find(|n| n.contains("recreating CSIDriver/ebs.csi.aws.com") && n.contains("old object"))
            .map(Value::String)
    })
    .await;
    let note = note.as_str().unwrap_or_default();
    assert!(note.contains("the old object was put back unchanged"), "{note}");
    let back = csid.get("ebs.csi.aws.com").await.expect("the CSIDriver is never left deleted");
    assert_eq!(back.data["spec"]["fsGroupPolicy"], json!("ReadWriteOnceWithFSType"), "the old one, as it was");
    h.server.faults().clear();
    wait_for("the CSIDriver recreated with fsGroupPolicy File", || async {
        let d = csid.get_opt("ebs.csi.aws.com").await.ok()??;
        (d.data["spec"]["fsGroupPolicy"] == json!("File") && d.labels().contains_key("app.kubernetes.io/instance"))
            .then_some(Value::Null)
    })
    .await;
    ready(&h).await;
    h.stop().await;
}
