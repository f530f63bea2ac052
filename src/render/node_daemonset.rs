//! The node plugin: DaemonSet `ebs-csi-node`. Only the ebs-plugin container is privileged (it
//! mounts and formats devices) and only the kubelet dir propagates mounts both ways; the
//! registrar and probe sidecars are unprivileged with read-only roots.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, Container, EmptyDirVolumeSource, ExecAction, HostPathVolumeSource, Lifecycle, LifecycleHandler,
    NodeAffinity, NodeSelector, NodeSelectorTerm, PodSecurityContext, PodSpec, PodTemplateSpec, SecurityContext,
    Toleration, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::controller_deployment::not_special_compute;
use super::pod::*;
use super::{APP_NAME, DRIVER_NAME, LABEL_NAME, RenderCtx};

pub const NAME: &str = "ebs-csi-node";
pub const SERVICE_ACCOUNT: &str = "ebs-csi-node-sa";

/// checkov findings a CSI node plugin cannot avoid, each skipped with its reason on this object only.
const CHECKOV_SKIPS: &[(&str, &str)] = &[
    ("CKV_K8S_16", "the EBS node plugin must be privileged to format and mount block devices"),
    ("CKV_K8S_20", "privileged implies privilege escalation for the node plugin container"),
    ("CKV_K8S_23", "the node plugin runs as root to manage host mounts under the kubelet dir"),
    ("CKV_K8S_40", "root (UID 0) is required on the node to mount volumes for pods"),
];

pub fn selector_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), NAME.to_string()), (LABEL_NAME.to_string(), APP_NAME.to_string())])
}

pub(crate) fn build(ctx: &RenderCtx) -> DaemonSet {
    let n = &ctx.spec.node;
    let kubelet = n.kubelet_path.trim_end_matches('/');
    let plugin_dir = format!("{kubelet}/plugins/{DRIVER_NAME}/");
    let mut template_labels = ctx.labels();
    template_labels.extend(selector_labels());
    let template_meta = template_meta(template_labels, &n.pod_labels, &n.pod_annotations);
    let mut volumes = vec![
        host_path("kubelet-dir", kubelet, "Directory"),
        host_path("plugin-dir", &plugin_dir, "DirectoryOrCreate"),
        host_path("registration-dir", &format!("{kubelet}/plugins_registry/"), "Directory"),
        host_path("device-dir", "/dev", "Directory"),
    ];
    if n.selinux {
        volumes.push(host_path("selinux-sysfs", "/sys/fs/selinux", "Directory"));
        volumes.push(host_path("selinux-config", "/etc/selinux/config", "File"));
    }
    volumes.push(Volume {
        name: "probe-dir".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    });
    volumes.push(api_token_volume());
    volumes.extend(ca_bundle_volume(ctx));
    let mut meta = ctx.ns_meta(NAME);
    meta.annotations = Some(
        CHECKOV_SKIPS
            .iter()
            .enumerate()
            .map(|(i, (id, why))| (format!("checkov.io/skip{}", i + 1), format!("{id}={why}")))
            .collect(),
    );
    let tolerations = if n.tolerate_all_taints {
        vec![Toleration { operator: Some("Exists".into()), ..Toleration::default() }]
    } else {
        n.tolerations.clone()
    };
    DaemonSet {
        metadata: meta,
        spec: DaemonSetSpec {
            revision_history_limit: Some(n.revision_history_limit),
            selector: LabelSelector { match_labels: Some(selector_labels()), match_expressions: None },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(n.max_unavailable.clone()),
                    max_surge: None,
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(template_meta),
                spec: Some(PodSpec {
                    affinity: Some(Affinity {
                        node_affinity: Some(NodeAffinity {
                            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                                node_selector_terms: vec![NodeSelectorTerm {
                                    match_expressions: Some(vec![not_special_compute()]),
                                    match_fields: None,
                                }],
                            }),
                            preferred_during_scheduling_ignored_during_execution: None,
                        }),
                        ..Affinity::default()
                    }),
                    node_selector: Some(linux_node_selector(&n.node_selector)),
                    service_account_name: Some(SERVICE_ACCOUNT.into()),
                    termination_grace_period_seconds: Some(n.termination_grace_period_seconds),
                    dns_config: n.dns_config.clone(),
                    priority_class_name: Some(n.priority_class_name.clone()),
                    tolerations: (!tolerations.is_empty()).then_some(tolerations),
                    host_network: Some(n.host_network),
                    security_context: Some(PodSecurityContext {
                        fs_group: Some(0),
                        run_as_group: Some(0),
                        run_as_non_root: Some(false),
                        run_as_user: Some(0),
                        // The sidecars run confined; the privileged plugin is unconfined regardless.
                        seccomp_profile: runtime_default(),
                        ..PodSecurityContext::default()
                    }),
                    automount_service_account_token: Some(false),
                    image_pull_secrets: pull_secrets(ctx),
                    containers: vec![driver(ctx, kubelet), registrar(ctx, &plugin_dir), liveness_probe(ctx)],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DaemonSetSpec::default()
        },
        status: None,
    }
}

fn host_path(name: &str, path: &str, type_: &str) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource { path: path.into(), type_: Some(type_.into()) }),
        ..Volume::default()
    }
}

fn driver(ctx: &RenderCtx, kubelet: &str) -> Container {
    let n = &ctx.spec.node;
    let mut args = vec![
        "node".to_string(),
        "--endpoint=$(CSI_ENDPOINT)".into(),
        literal(&format!("--csi-mount-point-prefix={kubelet}/plugins/kubernetes.io/csi/{DRIVER_NAME}/")),
        format!("--logging-format={}", n.logging_format.as_str()),
        log_level_arg(n.log_level),
    ];
    if let Some(l) = n.volume_attach_limit {
        args.push(format!("--volume-attach-limit={l}"));
    }
    if let Some(r) = n.reserved_volume_attachments {
        args.push(format!("--reserved-volume-attachments={r}"));
    }
    let metrics = ctx.spec.metrics.enabled;
    if metrics {
        args.push(format!("--http-endpoint=0.0.0.0:{}", super::controller_deployment::NODE_METRICS_PORT));
    }
    let args = merge_args(args, &n.extra_args);
    let mut vars = vec![env("CSI_ENDPOINT", "unix:/csi/csi.sock"), env_field("CSI_NODE_NAME", "spec.nodeName")];
    // Without it the node plugin asks the instance metadata (IMDS), which a hop limit of 1 or
    // IMDS turned off makes fail.
    if let Some(r) = &ctx.spec.aws.region {
        vars.push(user_env("AWS_REGION", r));
    }
    vars.extend(driver_env(ctx));
    vars.extend(user_env_vars(&n.env));
    let mut mounts = vec![
        k8s_openapi::api::core::v1::VolumeMount {
            mount_propagation: Some("Bidirectional".into()),
            ..mount("kubelet-dir", kubelet)
        },
        mount("plugin-dir", "/csi"),
        mount("device-dir", "/dev"),
    ];
    if n.selinux {
        mounts.push(mount("selinux-sysfs", "/sys/fs/selinux"));
        mounts.push(k8s_openapi::api::core::v1::VolumeMount {
            read_only: Some(true),
            ..mount("selinux-config", "/etc/selinux/config")
        });
    }
    // The node plugin reads its Node and updates CSINode; the sidecars never call the API.
    mounts.push(api_token_mount());
    mounts.extend(ca_bundle_mount(ctx));
    // Runtimes grant a privileged container every capability whatever `drop` says; dropping ALL
    // states the intent and takes effect should the container ever stop being privileged.
    let security = SecurityContext {
        privileged: Some(true),
        read_only_root_filesystem: Some(true),
        capabilities: Some(k8s_openapi::api::core::v1::Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        ..SecurityContext::default()
    };
    Container {
        env: Some(vars),
        env_from: (!n.env_from.is_empty()).then(|| n.env_from.clone()),
        volume_mounts: Some(mounts),
        ports: Some(
            [port("healthz", 9808)]
                .into_iter()
                .chain(metrics.then(|| port("metrics", super::controller_deployment::NODE_METRICS_PORT)))
                .collect(),
        ),
        liveness_probe: Some(http_probe("/healthz", "healthz", Some(10), 3, 10, Some(5))),
        readiness_probe: Some(http_probe("/healthz", "healthz", None, 3, 5, Some(3))),
        resources: Some(n.resources.clone().unwrap_or_else(default_resources)),
        // No shell in DHI images: the hook calls the driver binary directly.
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["/bin/aws-ebs-csi-driver".into(), "pre-stop-hook".into()]),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        ..container(ctx, "ebs-plugin", &ctx.images.driver, args, security)
    }
}

fn registrar(ctx: &RenderCtx, plugin_dir: &str) -> Container {
    let s = &ctx.spec.node.sidecars.node_driver_registrar;
    Container {
        env: Some(vec![
            env("ADDRESS", "/csi/csi.sock"),
            user_env("DRIVER_REG_SOCK_PATH", &format!("{plugin_dir}csi.sock")),
        ]),
        ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort { protocol: None, ..port("healthz-ndr", 9809) }]),
        liveness_probe: Some(http_probe("/healthz", "healthz-ndr", Some(30), 15, 90, None)),
        readiness_probe: Some(http_probe("/healthz", "healthz-ndr", None, 15, 30, None)),
        volume_mounts: Some(vec![
            mount("plugin-dir", "/csi"),
            mount("registration-dir", "/registration"),
            mount("probe-dir", plugin_dir),
        ]),
        resources: Some(sidecar_resources(s, small_resources)),
        ..container(
            ctx,
            "node-driver-registrar",
            &ctx.images.node_driver_registrar,
            merge_args(
                vec![
                    "--csi-address=$(ADDRESS)".into(),
                    "--kubelet-registration-path=$(DRIVER_REG_SOCK_PATH)".into(),
                    "--http-endpoint=0.0.0.0:9809".into(),
                    log_level_arg(s.log_level.unwrap_or(ctx.spec.node.log_level)),
                ],
                &s.extra_args,
            ),
            node_sidecar(),
        )
    }
}

fn liveness_probe(ctx: &RenderCtx) -> Container {
    let s = &ctx.spec.node.sidecars.liveness_probe;
    let mut args = vec!["--csi-address=/csi/csi.sock".to_string()];
    if let Some(l) = s.log_level {
        args.push(log_level_arg(l));
    }
    Container {
        volume_mounts: Some(vec![mount("plugin-dir", "/csi")]),
        resources: Some(sidecar_resources(s, small_resources)),
        liveness_probe: Some(tcp_probe(super::controller_deployment::DRIVER_HEALTH_PORT, 20)),
        readiness_probe: Some(tcp_probe(super::controller_deployment::DRIVER_HEALTH_PORT, 10)),
        ..container(ctx, "liveness-probe", &ctx.images.liveness_probe, merge_args(args, &s.extra_args), node_sidecar())
    }
}
