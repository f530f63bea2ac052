//! The reconciler under API server faults and bad input: it converges, creates no duplicates,
//! backs off (bounded requests) and keeps serving the other drivers.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use local_apiserver::Match;
use serde_json::{Value, json};

use super::support::{Harness, wait_for};
use super::{DRIVER, ready, spec};

#[tokio::test]
async fn converges_through_500s_429s_latency_and_dropped_watches() {
    let h = Harness::start(2).await;
    let faults = h.server.faults();
    // The operator's writes fail (500s, then a 429 burst) and everything is slow; the test's own
    // create and reads are not faulted, only what the operator does.
    faults.fail_share(0.2, Match::new("patch", "*"), 500);
    faults.fail_next(10, Match::new("patch", "*"), 429);
    faults.add_latency(Match::any(), Duration::from_millis(15));
    h.server.reset_counters();
    h.create_driver(DRIVER, spec()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Watches drop and their re-lists are throttled.
    faults.fail_next(5, Match::new("list", "*"), 429);
    faults.drop_watches();
    ready(&h).await;
    faults.clear();
    let requests = h.server.counters().total();
    // Children plus retries with backoff: bounded, no hot loop.
    assert!(requests < 600, "{requests} requests to converge under faults");
    let deploy = h.dynamic("apps/v1", "Deployment", "deployments", Some("kube-system"));
    let ds = h.dynamic("apps/v1", "DaemonSet", "daemonsets", Some("kube-system"));
    let all = kube::api::ListParams::default();
    assert_eq!(deploy.list(&all).await.expect("list").items.len(), 1, "no duplicate Deployments");
    assert_eq!(ds.list(&all).await.expect("list").items.len(), 1, "no duplicate DaemonSets");
    // Once the faults stop, the operator settles: no-op reconciles write nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.server.reset_counters();
    h.reconcile_once(DRIVER).await;
    assert_eq!(h.server.counters().write_attempts(), 0);
    h.stop().await;
}

#[tokio::test]
async fn conflicts_on_writes_are_retried() {
    let h = Harness::start(1).await;
    h.server.faults().fail_next(6, Match::new("patch", "*"), 409);
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    let st = h.status(DRIVER).await;
    assert_eq!(st["observedGeneration"], json!(1));
    h.stop().await;
}

#[tokio::test]
async fn a_broken_stored_driver_does_not_stop_the_others() {
    let h = Harness::start(1).await;
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    // Stored directly, bypassing admission: types the Rust API cannot even deserialise. (Fields
    // no CEL rule reads: a wrong type under a rule makes the rule fail to evaluate, and the API
    // server then refuses every status write of the object, as a real one does; the hostile test
    // covers that case.)
    h.server.insert_raw(json!({
        "apiVersion": "csi.hardened.dev/v1alpha1", "kind": "HardenedCsiDriver",
        "metadata": {"name": "broken", "generation": 1},
        "spec": {"controller": {"replicas": "many"}, "fips": "sure"}
    }));
    let c = h.wait_condition("broken", "Active", "False").await;
    assert!(c["message"].as_str().unwrap_or_default().contains("\"ebs\""), "{c}");
    // The good driver is still reconciled: a spec change reaches status.
    h.patch_spec(DRIVER, json!({"controller": {"logLevel": 4}})).await;
    wait_for("generation 2 observed", || async {
        let st = h.status(DRIVER).await;
        (st["observedGeneration"] == json!(2)).then_some(Value::Null)
    })
    .await;
    let deploy = h.dynamic("apps/v1", "Deployment", "deployments", Some("kube-system"));
    let d = deploy.get("ebs-csi-controller").await.expect("deployment");
    let args = d.data["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--v=4"), "{args}");
    h.stop().await;
}

#[tokio::test]
async fn reports_missing_pull_secrets_by_name() {
    let h = Harness::start(1).await;
    let mut s = spec();
    s["images"] = json!({"pullSecrets": ["dhi-pull"]});
    h.create_driver(DRIVER, s).await;
    let c = h.wait_condition(DRIVER, "PullSecretsPresent", "False").await;
    assert!(c["message"].as_str().unwrap_or_default().contains("dhi-pull"), "{c}");
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), "kube-system");
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "dhi-pull"},
        "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}}))
    .expect("secret");
    secrets.create(&PostParams::default(), &secret).await.expect("secret created");
    h.reconcile_once(DRIVER).await;
    h.wait_condition(DRIVER, "PullSecretsPresent", "True").await;
    h.stop().await;
}
