//! The Prometheus Operator ServiceMonitors of `spec.metrics.serviceMonitor`: one per driver
//! metrics Service (`ebs-csi-controller`, `ebs-csi-node`), as upstream's chart renders them, each
//! scraping every metrics port of its Service. Rendered only where the cluster serves
//! `monitoring.coreos.com/v1` ServiceMonitors (`Capabilities::service_monitor_api`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use kube::{CustomResource, ResourceExt};
use serde::{Deserialize, Serialize};

use super::controller_deployment::{SERVICE_APP_LABEL, metrics_service, node_metrics_service};
use super::{LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGER, RenderCtx};

/// The CRD whose presence decides whether ServiceMonitors are rendered.
pub const SERVICE_MONITOR_CRD: &str = "servicemonitors.monitoring.coreos.com";

/// monitoring.coreos.com/v1 ServiceMonitor: the fields the operator sets (the Prometheus
/// Operator's CRD has many more; a server-side apply owns only these).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(group = "monitoring.coreos.com", version = "v1", kind = "ServiceMonitor", namespaced, schema = "disabled")]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorFields {
    pub selector: MatchLabels,
    pub namespace_selector: NamespaceSelector,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MatchLabels {
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    pub match_names: Vec<String>,
}

/// One scraped port of the Service, by its name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub port: String,
    pub path: String,
    pub scheme: String,
    pub interval: String,
}

/// The ServiceMonitors of the spec: none unless metrics and their ServiceMonitors are enabled and
/// the cluster serves the kind.
pub(crate) fn build(ctx: &RenderCtx) -> Vec<ServiceMonitor> {
    let m = &ctx.spec.metrics;
    if !(m.enabled && m.service_monitor.enabled && ctx.caps.service_monitor_api) {
        return Vec::new();
    }
    [metrics_service(ctx), node_metrics_service(ctx)].iter().map(|svc| monitor(ctx, svc)).collect()
}

fn monitor(ctx: &RenderCtx, svc: &Service) -> ServiceMonitor {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let sm = &ctx.spec.metrics.service_monitor;
    let mut meta = ctx.ns_meta(&name);
    let labels = meta.labels.get_or_insert_default();
    for (k, v) in &sm.labels {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let selector = BTreeMap::from([
        (SERVICE_APP_LABEL.to_string(), name.clone()),
        (LABEL_INSTANCE.to_string(), ctx.hcd.name_any()),
        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
    ]);
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref()).into_iter().flatten();
    let endpoints = ports
        .filter_map(|p| p.name.clone())
        .map(|port| Endpoint { port, path: "/metrics".into(), scheme: "http".into(), interval: sm.interval.clone() })
        .collect();
    let mut out = ServiceMonitor::new(
        &name,
        ServiceMonitorFields {
            selector: MatchLabels { match_labels: selector },
            namespace_selector: NamespaceSelector { match_names: vec![ctx.spec.namespace.clone()] },
            endpoints,
        },
    );
    out.metadata = meta;
    out
}
