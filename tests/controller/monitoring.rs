//! `spec.metrics.serviceMonitor` against the local API server, as the chart's ServiceAccount: the
//! driver's ServiceMonitors follow the Prometheus Operator's CRD (absent: `ServiceMonitor=False`
//! naming what to install, nothing else affected; installed later: created without a restart),
//! are pruned when turned off and deleted with the driver.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

use super::support::{Harness, service_monitor_crd, wait_for};
use super::{DRIVER, ready, spec};

#[tokio::test]
async fn service_monitors_follow_the_prometheus_operator_crd_without_failing_anything_else() {
    let h = Harness::start(1).await;
    let mut s = spec();
    s["metrics"] = json!({"enabled": true, "serviceMonitor": {"enabled": true, "interval": "30s",
                                                                "labels": {"release": "prometheus"}}});
    h.create_driver(DRIVER, s).await;

    // No Prometheus Operator: the driver is Ready, the condition says what to install.
    ready(&h).await;
    let c = h.wait_condition(DRIVER, "ServiceMonitor", "False").await;
    assert_eq!(c["reason"], json!("NotServed"), "{c}");
    let msg = c["message"].as_str().unwrap_or_default();
    assert!(msg.contains("servicemonitors.monitoring.coreos.com") && msg.contains("Prometheus Operator"), "{msg}");
    assert_eq!(h.condition(DRIVER, "Degraded").await.expect("Degraded")["status"], json!("False"));
    let svc = h.dynamic("v1", "Service", "services", Some("kube-system"));
    assert_eq!(h.managed_names(&svc).await, ["ebs-csi-controller", "ebs-csi-node"]);

    // The CRD installed while the operator runs: the ServiceMonitors appear, no restart.
    let crds: Api<CustomResourceDefinition> = Api::all(h.client.clone());
    crds.create(&PostParams::default(), &service_monitor_crd()).await.expect("ServiceMonitor CRD");
    let c = h.wait_condition(DRIVER, "ServiceMonitor", "True").await;
    assert!(c["message"].as_str().unwrap_or_default().contains("ebs-csi-controller, ebs-csi-node"), "{c}");
    let sms = h.dynamic("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors", Some("kube-system"));
    assert_eq!(h.managed_names(&sms).await, ["ebs-csi-controller", "ebs-csi-node"]);
    let node = sms.get("ebs-csi-node").await.expect("node ServiceMonitor");
    assert_eq!(node.metadata.labels.as_ref().and_then(|l| l.get("release")), Some(&"prometheus".to_string()));
    assert_eq!(
        node.data["spec"]["endpoints"],
        json!([{"port": "metrics", "path": "/metrics", "scheme": "http",
                                                        "interval": "30s"}])
    );
    assert_eq!(node.data["spec"]["selector"]["matchLabels"]["app"], json!("ebs-csi-node"));
    h.wait_condition(DRIVER, "Ready", "True").await;

    // Turned off: pruned, and the condition goes with them.
    h.patch_spec(DRIVER, json!({"metrics": {"serviceMonitor": {"enabled": false}}})).await;
    wait_for("ServiceMonitors pruned", || async { h.managed_names(&sms).await.is_empty().then_some(Value::Null) })
        .await;
    wait_for("no ServiceMonitor condition", || async {
        h.condition(DRIVER, "ServiceMonitor").await.is_none().then_some(Value::Null)
    })
    .await;
    assert_eq!(h.managed_names(&svc).await, ["ebs-csi-controller", "ebs-csi-node"], "the Services stay");

    // On again, then the driver deleted: they go with it.
    h.patch_spec(DRIVER, json!({"metrics": {"serviceMonitor": {"enabled": true}}})).await;
    wait_for("ServiceMonitors again", || async { (h.managed_names(&sms).await.len() == 2).then_some(Value::Null) })
        .await;
    h.drivers().delete(DRIVER, &DeleteParams::default()).await.expect("delete");
    h.wait_driver_gone(DRIVER).await;
    assert!(h.managed_names(&sms).await.is_empty(), "ServiceMonitors left after the driver's deletion");
    h.stop().await;
}
