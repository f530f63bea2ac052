//! A NetworkPolicy for the driver's pods: ingress only on their health and metrics ports
//! (kubelet probes and scrapes), egress left open (the AWS APIs, instance metadata and the
//! Kubernetes API have no stable addresses). Pods on the host network are unaffected.

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

use super::controller_deployment::{DRIVER_HEALTH_PORT, LIVENESS_METRICS_PORT, METRICS_PORT, SIDECAR_HEALTH_PORTS};
use super::{APP_NAME, LABEL_NAME, RenderCtx};

pub const NAME: &str = "ebs-csi-driver";
const REGISTRAR_HEALTH_PORT: i32 = 9809;

pub(crate) fn build(ctx: &RenderCtx) -> NetworkPolicy {
    let mut ports: Vec<i32> = vec![DRIVER_HEALTH_PORT, REGISTRAR_HEALTH_PORT];
    ports.extend(SIDECAR_HEALTH_PORTS.iter().map(|(_, _, p)| *p));
    if ctx.spec.metrics.enabled {
        // The node plugin's metrics port (3302) is the provisioner's number, already listed.
        ports.extend([METRICS_PORT, LIVENESS_METRICS_PORT]);
    }
    NetworkPolicy {
        metadata: ctx.ns_meta(NAME),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(LABEL_NAME.to_string(), APP_NAME.to_string())])),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: None,
                ports: Some(
                    ports
                        .into_iter()
                        .map(|p| NetworkPolicyPort {
                            port: Some(IntOrString::Int(p)),
                            protocol: Some("TCP".into()),
                            end_port: None,
                        })
                        .collect(),
                ),
            }]),
            egress: None,
        }),
    }
}
