//! The controller: Deployment `ebs-csi-controller` (driver + CSI sidecars, restricted pod
//! security), its PodDisruptionBudget and, with metrics on, its metrics Service.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Affinity, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, NodeAffinity, NodeSelectorRequirement,
    NodeSelectorTerm, PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec, PreferredSchedulingTerm,
    SecretKeySelector, Service, ServicePort, ServiceSpec, Toleration, Volume, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::*;
use super::{APP_NAME, Child, LABEL_NAME, RenderCtx};
use crate::crd::{LoggingFormat, SidecarSpec};

pub const NAME: &str = "ebs-csi-controller";
pub const SERVICE_ACCOUNT: &str = "ebs-csi-controller-sa";
const SOCKET_DIR: &str = "/var/lib/csi/sockets/pluginproxy/";
const SOCKET: &str = "/var/lib/csi/sockets/pluginproxy/csi.sock";
pub const METRICS_PORT: i32 = 3301;
/// Health and metrics endpoints of the CSI sidecars (`--http-endpoint`), upstream's port numbers.
pub const SIDECAR_HEALTH_PORTS: [(&str, &str, i32); 4] = [
    ("csi-provisioner", "healthz-prov", 3302),
    ("csi-attacher", "healthz-att", 3303),
    ("csi-resizer", "healthz-rsz", 3304),
    ("csi-snapshotter", "healthz-snap", 3306),
];
/// The controller's livenessprobe metrics (`--metrics-address`), upstream's port.
pub const LIVENESS_METRICS_PORT: i32 = 3305;
/// The node plugin's metrics (`--http-endpoint`), upstream's port.
pub const NODE_METRICS_PORT: i32 = 3302;
/// Where the livenessprobe sidecar serves the driver's health.
pub const DRIVER_HEALTH_PORT: i32 = 9808;

/// Pod-template annotation holding a hash of the driver's AWS identity: which kind (IRSA, Pod
/// Identity, static keys), the IRSA role, the static-key Secret's name and resourceVersion. A
/// running pod keeps the credentials it started with (the IRSA and Pod Identity webhooks inject
/// them at pod creation, a `secretKeyRef` is resolved at container start), so any change rolls
/// the controller and no pod keeps the old credentials.
pub const IDENTITY_ANNOTATION: &str = "csi.hardened.dev/identity-hash";

/// FNV-1a (64 bit) of the identity, as hex: stable across builds and platforms (the annotation
/// is compared with what an earlier operator version wrote), and it shows no ARN or name.
fn identity_hash(ctx: &RenderCtx) -> String {
    let id = &ctx.spec.aws.identity;
    let text = if let Some(i) = &id.irsa {
        format!("irsa\0{}", i.role_arn)
    } else if let Some(s) = &id.secret_ref {
        let version = ctx.caps.identity_secret_version.as_deref().unwrap_or_default();
        format!("secret\0{}\0{version}", s.name)
    } else {
        "podIdentity".to_string()
    };
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// The pod selector, exactly upstream's: selectors are immutable, so adopting an upstream
/// install only works if ours is the same.
pub fn selector_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), NAME.to_string()), (LABEL_NAME.to_string(), APP_NAME.to_string())])
}

pub(crate) fn build(ctx: &RenderCtx) -> Vec<Child> {
    let mut out = vec![Child::new(deployment(ctx))];
    if ctx.spec.controller.pod_disruption_budget.enabled {
        out.push(Child::new(pdb(ctx)));
    }
    if ctx.spec.metrics.enabled {
        out.push(Child::new(metrics_service(ctx)));
        out.push(Child::new(node_metrics_service(ctx)));
    }
    out
}

fn deployment(ctx: &RenderCtx) -> Deployment {
    let c = &ctx.spec.controller;
    let mut template_labels = ctx.labels();
    template_labels.extend(selector_labels());
    let mut template_meta = template_meta(template_labels, &c.pod_labels, &c.pod_annotations);
    template_meta.annotations.get_or_insert_default().insert(IDENTITY_ANNOTATION.to_string(), identity_hash(ctx));
    let mut containers = vec![driver(ctx), provisioner(ctx), attacher(ctx)];
    if ctx.caps.snapshot_api {
        containers.push(snapshotter(ctx));
    }
    containers.push(resizer(ctx));
    containers.push(liveness_probe(ctx));
    Deployment {
        metadata: ctx.ns_meta(NAME),
        spec: DeploymentSpec {
            replicas: Some(c.replicas),
            revision_history_limit: Some(c.revision_history_limit),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(1)),
                    max_surge: None,
                }),
            }),
            selector: LabelSelector { match_labels: Some(selector_labels()), match_expressions: None },
            template: PodTemplateSpec {
                metadata: Some(template_meta),
                spec: Some(PodSpec {
                    node_selector: Some(linux_node_selector(&c.node_selector)),
                    dns_config: c.dns_config.clone(),
                    termination_grace_period_seconds: c.termination_grace_period_seconds,
                    service_account_name: Some(SERVICE_ACCOUNT.into()),
                    priority_class_name: Some(c.priority_class_name.clone()),
                    affinity: Some(c.affinity.clone().unwrap_or_else(default_affinity)),
                    tolerations: Some(c.tolerations.clone().unwrap_or_else(default_tolerations)),
                    topology_spread_constraints: (!c.topology_spread_constraints.is_empty())
                        .then(|| c.topology_spread_constraints.clone()),
                    security_context: Some(restricted_pod()),
                    automount_service_account_token: Some(false),
                    image_pull_secrets: pull_secrets(ctx),
                    containers,
                    volumes: Some(
                        [
                            Volume {
                                name: "socket-dir".into(),
                                empty_dir: Some(EmptyDirVolumeSource::default()),
                                ..Volume::default()
                            },
                            api_token_volume(),
                        ]
                        .into_iter()
                        .chain(ca_bundle_volume(ctx))
                        .collect(),
                    ),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

fn default_affinity() -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![PreferredSchedulingTerm {
                weight: 1,
                preference: NodeSelectorTerm {
                    match_expressions: Some(vec![not_special_compute()]),
                    match_fields: None,
                },
            }]),
            required_during_scheduling_ignored_during_execution: None,
        }),
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_expressions: Some(vec![LabelSelectorRequirement {
                            key: "app".into(),
                            operator: "In".into(),
                            values: Some(vec![NAME.into()]),
                        }]),
                        match_labels: None,
                    }),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..PodAffinityTerm::default()
                },
            }]),
            required_during_scheduling_ignored_during_execution: None,
        }),
        pod_affinity: None,
    }
}

/// EBS cannot attach to Fargate, EKS Auto Mode or hybrid nodes.
pub fn not_special_compute() -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: "eks.amazonaws.com/compute-type".into(),
        operator: "NotIn".into(),
        values: Some(vec!["fargate".into(), "auto".into(), "hybrid".into()]),
    }
}

fn default_tolerations() -> Vec<Toleration> {
    vec![
        Toleration { key: Some("CriticalAddonsOnly".into()), operator: Some("Exists".into()), ..Toleration::default() },
        Toleration {
            effect: Some("NoExecute".into()),
            operator: Some("Exists".into()),
            toleration_seconds: Some(300),
            ..Toleration::default()
        },
    ]
}

fn driver(ctx: &RenderCtx) -> Container {
    let spec = ctx.spec;
    let aws = &spec.aws;
    let mut args = vec![
        "controller".to_string(),
        "--endpoint=$(CSI_ENDPOINT)".into(),
        "--batching=true".into(),
        format!("--logging-format={}", spec.controller.logging_format.as_str()),
        "--user-agent-extra=hardened-csi-operator".into(),
        log_level_arg(spec.controller.log_level),
    ];
    if let Some(id) = &aws.cluster_id {
        args.push(literal(&format!("--k8s-tag-cluster-id={id}")));
    }
    if !aws.extra_tags.is_empty() {
        let tags: Vec<String> = aws.extra_tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        args.push(literal(&format!("--extra-tags={}", tags.join(","))));
    }
    if spec.metrics.enabled {
        args.push(format!("--http-endpoint=0.0.0.0:{METRICS_PORT}"));
    }
    args.extend(spec.controller.extra_args.iter().map(|a| literal(a)));

    let mut vars = vec![env("CSI_ENDPOINT", &format!("unix://{SOCKET}")), env_field("CSI_NODE_NAME", "spec.nodeName")];
    if let Some(s) = &aws.identity.secret_ref {
        vars.push(secret_env("AWS_ACCESS_KEY_ID", &s.name, &s.key_id));
        vars.push(secret_env("AWS_SECRET_ACCESS_KEY", &s.name, &s.access_key));
        if let Some(t) = &s.session_token {
            vars.push(secret_env("AWS_SESSION_TOKEN", &s.name, t));
        }
    }
    if let Some(r) = &aws.region {
        vars.push(user_env("AWS_REGION", r));
    }
    if let Some(e) = &aws.ec2_endpoint {
        vars.push(user_env("AWS_EC2_ENDPOINT", e));
    }
    vars.extend(driver_env(ctx));
    vars.extend(user_env_vars(&spec.controller.env));

    let mut ports = vec![port("healthz", DRIVER_HEALTH_PORT)];
    if spec.metrics.enabled {
        ports.push(port("metrics", METRICS_PORT));
    }
    Container {
        env: Some(vars),
        env_from: (!spec.controller.env_from.is_empty()).then(|| spec.controller.env_from.clone()),
        volume_mounts: Some(
            [mount("socket-dir", SOCKET_DIR), api_token_mount()].into_iter().chain(ca_bundle_mount(ctx)).collect(),
        ),
        ports: Some(ports),
        liveness_probe: Some(http_probe("/healthz", "healthz", Some(10), 60, 10, Some(10))),
        readiness_probe: Some(http_probe("/healthz", "healthz", Some(10), 60, 10, Some(5))),
        resources: Some(spec.controller.resources.clone().unwrap_or_else(default_resources)),
        ..container(ctx, "ebs-plugin", &ctx.images.driver, args, restricted_container())
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret.into(), key: key.into(), optional: Some(false) }),
            ..EnvVarSource::default()
        }),
    }
}

/// A CSI sidecar on the controller's socket, with upstream's API client tuning, then the user's
/// settings of that sidecar.
fn sidecar(ctx: &RenderCtx, name: &str, image: &str, args: &[&str], opts: Sidecar<'_>) -> Container {
    let c = &ctx.spec.controller;
    let mut vars = vec![env("ADDRESS", SOCKET)];
    if opts.vac_fallback {
        vars.push(env("ENABLE_VAC_FALLBACK", "true"));
    }
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    // Keep upstream's argument order: verbosity follows the socket address.
    let pos = all.iter().position(|a| a == "--csi-address=$(ADDRESS)").map_or(all.len(), |p| p + 1);
    all.insert(pos, log_level_arg(opts.spec.log_level.unwrap_or(c.log_level)));
    if opts.json_logs && c.logging_format == LoggingFormat::Json {
        all.push("--logging-format=json".into());
    }
    // Every sidecar serves /healthz/leader-election, so each container has its own probes.
    let (_, port_name, number) =
        SIDECAR_HEALTH_PORTS.iter().find(|(n, _, _)| *n == name).copied().unwrap_or(("", "healthz-side", 3306));
    all.push(format!("--http-endpoint=0.0.0.0:{number}"));
    Container {
        env: Some(vars),
        volume_mounts: Some(vec![mount("socket-dir", SOCKET_DIR), api_token_mount()]),
        ports: Some(vec![port(port_name, number)]),
        liveness_probe: Some(http_probe("/healthz/leader-election", port_name, Some(10), 10, 20, Some(5))),
        readiness_probe: Some(http_probe("/healthz/leader-election", port_name, None, 10, 10, Some(3))),
        resources: Some(sidecar_resources(opts.spec, default_resources)),
        ..container(ctx, name, image, merge_args(all, &opts.spec.extra_args), restricted_container())
    }
}

/// What differs between the controller's sidecars besides their flags.
struct Sidecar<'a> {
    spec: &'a SidecarSpec,
    /// Sets ENABLE_VAC_FALLBACK (VolumeAttributesClass support in the provisioner and resizer).
    vac_fallback: bool,
    /// Understands `--logging-format=json`.
    json_logs: bool,
}

fn provisioner(ctx: &RenderCtx) -> Container {
    let fs = format!("--default-fstype={}", ctx.spec.controller.default_fs_type.as_str());
    // One --feature-gates flag: upstream's chart repeats the flag for VolumeAttributesClass.
    let gates = match super::volume_attributes_classes::feature_gate(ctx) {
        Some(g) => format!("--feature-gates=Topology=true,{g}"),
        None => "--feature-gates=Topology=true".to_string(),
    };
    sidecar(
        ctx,
        "csi-provisioner",
        &ctx.images.provisioner,
        &[
            "--timeout=60s",
            "--csi-address=$(ADDRESS)",
            &gates,
            "--extra-create-metadata",
            "--leader-election=true",
            &fs,
            "--kube-api-qps=20",
            "--kube-api-burst=100",
            "--worker-threads=100",
            "--retry-interval-max=30m",
        ],
        Sidecar { spec: &ctx.spec.controller.sidecars.provisioner, vac_fallback: true, json_logs: true },
    )
}

fn attacher(ctx: &RenderCtx) -> Container {
    let mut args = vec![
        "--timeout=6m",
        "--csi-address=$(ADDRESS)",
        "--leader-election=true",
        "--kube-api-qps=20",
        "--kube-api-burst=100",
        "--worker-threads=100",
        "--retry-interval-max=5m",
    ];
    // The attacher's half of the node attach-limit refresh (it reports ResourceExhausted attaches
    // in a VolumeAttachment field of the same gate): on where the cluster's gate is on by default,
    // with the CSIDriver's nodeAllocatableUpdatePeriodSeconds (see `csidriver`).
    if ctx.caps.node_allocatable_updates() {
        args.push("--feature-gates=MutableCSINodeAllocatableCount=true");
    }
    let opts = Sidecar { spec: &ctx.spec.controller.sidecars.attacher, vac_fallback: false, json_logs: false };
    sidecar(ctx, "csi-attacher", &ctx.images.attacher, &args, opts)
}

fn snapshotter(ctx: &RenderCtx) -> Container {
    sidecar(
        ctx,
        "csi-snapshotter",
        &ctx.images.snapshotter,
        &[
            "--csi-address=$(ADDRESS)",
            "--leader-election=true",
            "--extra-create-metadata",
            "--kube-api-qps=20",
            "--kube-api-burst=100",
            "--worker-threads=100",
            "--retry-interval-max=30m",
        ],
        Sidecar { spec: &ctx.spec.controller.sidecars.snapshotter, vac_fallback: false, json_logs: true },
    )
}

fn resizer(ctx: &RenderCtx) -> Container {
    let mut args = vec![
        "--timeout=60s",
        "--extra-modify-metadata",
        "--csi-address=$(ADDRESS)",
        "--handle-volume-inuse-error=false",
        "--leader-election=true",
        "--kube-api-qps=20",
        "--kube-api-burst=100",
        "--workers=100",
        "--retry-interval-max=30m",
    ];
    let gate = super::volume_attributes_classes::feature_gate(ctx).map(|g| format!("--feature-gates={g}"));
    args.extend(gate.as_deref());
    let opts = Sidecar { spec: &ctx.spec.controller.sidecars.resizer, vac_fallback: true, json_logs: true };
    sidecar(ctx, "csi-resizer", &ctx.images.resizer, &args, opts)
}

fn liveness_probe(ctx: &RenderCtx) -> Container {
    let s = &ctx.spec.controller.sidecars.liveness_probe;
    let mut args = vec!["--csi-address=/csi/csi.sock".to_string(), "--probe-timeout=60s".into()];
    if let Some(l) = s.log_level {
        args.push(log_level_arg(l));
    }
    let metrics = ctx.spec.metrics.enabled;
    if metrics {
        args.push(format!("--metrics-address=0.0.0.0:{LIVENESS_METRICS_PORT}"));
    }
    Container {
        ports: metrics.then(|| vec![port("metrics-lp", LIVENESS_METRICS_PORT)]),
        volume_mounts: Some(vec![mount("socket-dir", "/csi")]),
        resources: Some(sidecar_resources(s, small_resources)),
        liveness_probe: Some(tcp_probe(DRIVER_HEALTH_PORT, 20)),
        readiness_probe: Some(tcp_probe(DRIVER_HEALTH_PORT, 10)),
        ..container(
            ctx,
            "liveness-probe",
            &ctx.images.liveness_probe,
            merge_args(args, &s.extra_args),
            restricted_container(),
        )
    }
}

fn pdb(ctx: &RenderCtx) -> PodDisruptionBudget {
    let p = &ctx.spec.controller.pod_disruption_budget;
    PodDisruptionBudget {
        metadata: ctx.ns_meta(NAME),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector { match_labels: Some(selector_labels()), match_expressions: None }),
            max_unavailable: match (&p.max_unavailable, &p.min_available) {
                (None, None) => Some(IntOrString::Int(1)),
                (m, _) => m.clone(),
            },
            min_available: p.min_available.clone(),
            unhealthy_pod_eviction_policy: p.unhealthy_pod_eviction_policy.map(|u| u.as_str().to_string()),
        }),
        status: None,
    }
}

/// `prometheus.io/*` annotations of a metrics Service, when wanted.
fn scrape_annotations(ctx: &RenderCtx, port: i32) -> Option<BTreeMap<String, String>> {
    ctx.spec.metrics.prometheus_annotations.then(|| {
        BTreeMap::from([
            ("prometheus.io/scrape".to_string(), "true".to_string()),
            ("prometheus.io/port".to_string(), port.to_string()),
        ])
    })
}

fn service_port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::Int(number)),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// The controller's metrics: the driver (3301, what the annotations point at) and each sidecar.
/// The label that tells the two metrics Services apart (upstream's `app: <Service name>`), which
/// their ServiceMonitors select.
pub const SERVICE_APP_LABEL: &str = "app";

fn service_meta(ctx: &RenderCtx, name: &str, port: i32) -> ObjectMeta {
    let mut meta = ObjectMeta { annotations: scrape_annotations(ctx, port), ..ctx.ns_meta(name) };
    meta.labels.get_or_insert_default().insert(SERVICE_APP_LABEL.to_string(), name.to_string());
    meta
}

pub(crate) fn metrics_service(ctx: &RenderCtx) -> Service {
    let mut ports = vec![service_port("metrics", METRICS_PORT)];
    for (name, _, number) in SIDECAR_HEALTH_PORTS {
        if name == "csi-snapshotter" && !ctx.caps.snapshot_api {
            continue;
        }
        let short = name.trim_start_matches("csi-");
        ports.push(service_port(&format!("metrics-{short}"), number));
    }
    ports.push(service_port("metrics-liveness", LIVENESS_METRICS_PORT));
    Service {
        metadata: service_meta(ctx, NAME, METRICS_PORT),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels()),
            ports: Some(ports),
            type_: Some("ClusterIP".into()),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The node plugin's metrics, answered by the pod on the scraping node only.
pub(crate) fn node_metrics_service(ctx: &RenderCtx) -> Service {
    let name = super::node_daemonset::NAME;
    Service {
        metadata: service_meta(ctx, name, NODE_METRICS_PORT),
        spec: Some(ServiceSpec {
            selector: Some(super::node_daemonset::selector_labels()),
            ports: Some(vec![service_port("metrics", NODE_METRICS_PORT)]),
            type_: Some("ClusterIP".into()),
            internal_traffic_policy: Some("Local".into()),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
