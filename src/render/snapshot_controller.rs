//! The snapshot-controller (`spec.snapshots.controller`): its ServiceAccount, a Deployment of
//! `dhi.io/snapshot-controller` (the release of `spec.version`, restricted pod security,
//! leader-elected), a NetworkPolicy admitting only its health and metrics port and, with two
//! replicas or more, a PodDisruptionBudget like the driver controller's. Its RBAC is the chart's
//! (`rbac` here defines it; the operator verifies it).
//! Rendered only when the cluster's snapshot stack is not another installation's
//! (`Capabilities::foreign_snapshot_stack`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Affinity, Container, PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec, ServiceAccount, Toleration,
    WeightedPodAffinityTerm,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::*;
use super::{Child, LABEL_NAME, RenderCtx};
use crate::crd::{HardenedCsiDriverSpec, ImageRef};

pub const NAME: &str = "snapshot-controller";
pub const SERVICE_ACCOUNT: &str = "snapshot-controller";
/// The Lease every external-snapshotter snapshot-controller holds for leader election, in its own
/// namespace (`--leader-election-namespace` defaults to it): ours in the driver namespace, another
/// installation's wherever it runs.
pub const LEADER_LEASE: &str = "snapshot-controller-leader";
/// `--http-endpoint`: metrics and the leader-election health check.
pub const HTTP_PORT: i32 = 8080;

/// Whether the spec asks for the controller and the cluster's snapshot stack is not someone
/// else's.
fn wanted(ctx: &RenderCtx) -> bool {
    ctx.spec.snapshots.controller.enabled && !ctx.caps.foreign_snapshot_stack
}

/// Upstream's selector (`deploy/kubernetes/snapshot-controller`), so a migration keeps it.
pub fn selector_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_NAME.to_string(), NAME.to_string())])
}

/// The labels of every snapshot-controller object: ours, named after the component.
fn labels(ctx: &RenderCtx) -> BTreeMap<String, String> {
    let mut l = ctx.labels();
    l.extend(selector_labels());
    l
}

pub(crate) fn build(ctx: &RenderCtx) -> Vec<Child> {
    if !wanted(ctx) {
        return Vec::new();
    }
    let mut sa_meta = ctx.ns_meta(SERVICE_ACCOUNT);
    sa_meta.labels = Some(labels(ctx));
    let sa = ServiceAccount { metadata: sa_meta, automount_service_account_token: Some(false), ..Default::default() };
    let mut out = vec![Child::new(sa), Child::new(deployment(ctx)), Child::new(network_policy(ctx))];
    if ctx.spec.snapshots.controller.replicas >= 2 {
        out.push(Child::new(pdb(ctx)));
    }
    out
}

/// Ingress to the controller pods only on `--http-endpoint` (kubelet's liveness probe, scrapes);
/// egress open, as the driver's (the Kubernetes API has no stable address).
fn network_policy(ctx: &RenderCtx) -> NetworkPolicy {
    let mut meta = ctx.ns_meta(NAME);
    meta.labels = Some(labels(ctx));
    NetworkPolicy {
        metadata: meta,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector { match_labels: Some(selector_labels()), match_expressions: None }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: None,
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(HTTP_PORT)),
                    protocol: Some("TCP".into()),
                    end_port: None,
                }]),
            }]),
            egress: None,
        }),
    }
}

/// The container's image: the release's snapshot-controller, from the spec's registry or mirror,
/// `-fips` in FIPS mode.
pub fn image(spec: &HardenedCsiDriverSpec) -> String {
    super::images::resolve_one(spec, &ImageRef::default(), super::images::release(spec).snapshot_controller)
}

fn container(ctx: &RenderCtx) -> Container {
    let c = &ctx.spec.snapshots.controller;
    let args =
        vec![log_level_arg(c.log_level), "--leader-election=true".to_string(), format!("--http-endpoint=:{HTTP_PORT}")];
    Container {
        ports: Some(vec![port("http", HTTP_PORT)]),
        liveness_probe: Some(http_probe("/healthz/leader-election", "http", Some(10), 10, 20, Some(5))),
        // client-go's leader-election health check answers ok on a standby replica too, so both
        // replicas are Ready and a rollout is judged by them.
        readiness_probe: Some(http_probe("/healthz/leader-election", "http", Some(5), 5, 10, Some(3))),
        volume_mounts: Some(vec![api_token_mount()]),
        resources: Some(c.resources.clone().unwrap_or_else(|| resources("10m", "1", "64Mi", "256Mi"))),
        ..super::pod::container(ctx, NAME, &image(ctx.spec), args, restricted_container())
    }
}

fn deployment(ctx: &RenderCtx) -> Deployment {
    let c = &ctx.spec.snapshots.controller;
    let mut meta = ctx.ns_meta(NAME);
    meta.labels = Some(labels(ctx));
    Deployment {
        metadata: meta,
        spec: DeploymentSpec {
            replicas: Some(c.replicas),
            revision_history_limit: Some(10),
            // One at a time and no surge, as upstream: a second leader-elected pod adds nothing.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(1)),
                    max_surge: Some(IntOrString::Int(0)),
                }),
            }),
            selector: LabelSelector { match_labels: Some(selector_labels()), match_expressions: None },
            template: PodTemplateSpec {
                metadata: Some(template_meta(labels(ctx), &BTreeMap::new(), &BTreeMap::new())),
                spec: Some(PodSpec {
                    node_selector: Some(linux_node_selector(&BTreeMap::new())),
                    service_account_name: Some(SERVICE_ACCOUNT.into()),
                    priority_class_name: Some("system-cluster-critical".into()),
                    affinity: Some(spread()),
                    tolerations: Some(vec![Toleration {
                        key: Some("CriticalAddonsOnly".into()),
                        operator: Some("Exists".into()),
                        ..Toleration::default()
                    }]),
                    security_context: Some(restricted_pod()),
                    automount_service_account_token: Some(false),
                    image_pull_secrets: pull_secrets(ctx),
                    containers: vec![container(ctx)],
                    volumes: Some(vec![api_token_volume()]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

/// Replicas on different nodes where possible.
fn spread() -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some(selector_labels()),
                        match_expressions: None,
                    }),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..PodAffinityTerm::default()
                },
            }]),
            required_during_scheduling_ignored_during_execution: None,
        }),
        ..Affinity::default()
    }
}

/// Like the driver controller's default: at most one replica evicted at a time.
fn pdb(ctx: &RenderCtx) -> PodDisruptionBudget {
    let mut meta = ctx.ns_meta(NAME);
    meta.labels = Some(labels(ctx));
    PodDisruptionBudget {
        metadata: meta,
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector { match_labels: Some(selector_labels()), match_expressions: None }),
            max_unavailable: Some(IntOrString::Int(1)),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}
