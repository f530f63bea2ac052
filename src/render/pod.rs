//! Pieces shared by the controller and node pod templates: security contexts, resources, env,
//! probes, sidecar containers. Kept here so both workloads harden the same way.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities as LinuxCapabilities, ConfigMapProjection, ConfigMapVolumeSource, Container, ContainerPort,
    DownwardAPIProjection, DownwardAPIVolumeFile, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, LocalObjectReference,
    ObjectFieldSelector, PodSecurityContext, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile,
    SecurityContext, ServiceAccountTokenProjection, TCPSocketAction, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::RenderCtx;
use crate::crd::SidecarSpec;
use crate::crd::validate::flag_name;

/// UID/GID of the DHI runtime images' nonroot user.
pub const NONROOT: i64 = 65532;

pub fn runtime_default() -> Option<SeccompProfile> {
    Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None })
}

/// Restricted pod security for the controller pod (and every non-node workload).
pub fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NONROOT),
        run_as_group: Some(NONROOT),
        fs_group: Some(NONROOT),
        seccomp_profile: runtime_default(),
        ..PodSecurityContext::default()
    }
}

/// Restricted container: no privilege escalation, read-only root, no capabilities, seccomp.
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(LinuxCapabilities { drop: Some(vec!["ALL".into()]), add: None }),
        seccomp_profile: runtime_default(),
        ..SecurityContext::default()
    }
}

/// A node-pod sidecar: root (it must reach root-owned host sockets) but unprivileged: no
/// escalation, no capabilities, read-only root, seccomp.
pub fn node_sidecar() -> SecurityContext {
    SecurityContext { run_as_non_root: Some(false), ..restricted_container() }
}

pub fn resources(cpu: &str, cpu_limit: &str, memory_request: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory_request.into())),
        ])),
        limits: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu_limit.into())),
            ("memory".to_string(), Quantity(memory_limit.into())),
        ])),
        ..ResourceRequirements::default()
    }
}

/// Upstream's requests and memory limit for the driver and the CSI sidecars, plus a CPU limit
/// high enough never to throttle normal work but bounding a runaway container.
pub fn default_resources() -> ResourceRequirements {
    resources("10m", "1", "40Mi", "256Mi")
}

/// Upstream's requests and memory limit for the small probe/registrar sidecars, plus a CPU limit.
pub fn small_resources() -> ResourceRequirements {
    resources("10m", "100m", "32Mi", "32Mi")
}

/// Where Kubernetes clients look for the service account credentials.
const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
pub const API_TOKEN_VOLUME: &str = "kube-api-access";

/// The service account token, CA and namespace as a projected volume: pods set
/// `automountServiceAccountToken: false` and only containers that call the API mount this.
pub fn api_token_volume() -> Volume {
    Volume {
        name: API_TOKEN_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o444),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(3607),
                        ..ServiceAccountTokenProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            ..KeyToPath::default()
                        }]),
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.namespace".into(),
                                api_version: None,
                            }),
                            ..DownwardAPIVolumeFile::default()
                        }]),
                    }),
                    ..VolumeProjection::default()
                },
            ]),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub fn api_token_mount() -> VolumeMount {
    VolumeMount { read_only: Some(true), ..mount(API_TOKEN_VOLUME, TOKEN_DIR) }
}

/// A TCP probe: for the livenessprobe sidecar, whose only HTTP endpoint reports the driver's
/// health rather than its own.
pub fn tcp_probe(port: i32, period: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(port), host: None }),
        timeout_seconds: Some(3),
        period_seconds: Some(period),
        ..Probe::default()
    }
}

pub fn env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
}

/// A user's string as the container must see it: Kubernetes expands `$(VAR)` in env values and
/// args from the container's environment (so `$(AWS_SECRET_ACCESS_KEY)` in a proxy URL would send
/// the secret key to that proxy), and `$$` is its escape for `$`. Every `$` doubled: the
/// container gets the text exactly as written, and nothing the user wrote references a variable.
pub fn literal(s: &str) -> String {
    s.replace('$', "$$")
}

/// An env var whose value comes from the spec, escaped (see `literal`).
pub fn user_env(name: &str, value: &str) -> EnvVar {
    env(name, &literal(value))
}

pub fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), api_version: None }),
            ..EnvVarSource::default()
        }),
    }
}

pub fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), ..VolumeMount::default() }
}

pub fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

/// An HTTP GET probe on a named port.
pub fn http_probe(
    path: &str,
    port: &str,
    initial_delay: Option<i32>,
    timeout: i32,
    period: i32,
    failures: Option<i32>,
) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port.into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: initial_delay,
        timeout_seconds: Some(timeout),
        period_seconds: Some(period),
        failure_threshold: failures,
        ..Probe::default()
    }
}

/// A container with the fields every container of ours shares.
pub fn container(ctx: &RenderCtx, name: &str, image: &str, args: Vec<String>, security: SecurityContext) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        image_pull_policy: Some(ctx.spec.images.pull_policy.as_str().into()),
        args: Some(args),
        security_context: Some(security),
        resources: Some(default_resources()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    }
}

/// Where the driver containers find `spec.aws.caBundle`.
pub const CA_BUNDLE_VOLUME: &str = "aws-ca-bundle";
const CA_BUNDLE_DIR: &str = "/etc/hardened-csi/aws-ca";
const CA_BUNDLE_FILE: &str = "ca-bundle.crt";

/// The CA bundle ConfigMap as a volume of the driver's pods, when one is set.
pub fn ca_bundle_volume(ctx: &RenderCtx) -> Option<Volume> {
    let b = ctx.spec.aws.ca_bundle.as_ref()?;
    Some(Volume {
        name: CA_BUNDLE_VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: b.name.clone(),
            items: Some(vec![KeyToPath { key: b.key.clone(), path: CA_BUNDLE_FILE.into(), ..KeyToPath::default() }]),
            default_mode: Some(0o444),
            optional: Some(false),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    })
}

/// The CA bundle mounted read-only into a driver container, when one is set.
pub fn ca_bundle_mount(ctx: &RenderCtx) -> Option<VolumeMount> {
    ctx.spec
        .aws
        .ca_bundle
        .as_ref()
        .map(|_| VolumeMount { read_only: Some(true), ..mount(CA_BUNDLE_VOLUME, CA_BUNDLE_DIR) })
}

/// Env of the driver container in both pods: region endpoints, CA bundle, FIPS and proxy settings.
pub fn driver_env(ctx: &RenderCtx) -> Vec<EnvVar> {
    let mut out = Vec::new();
    if let Some(e) = &ctx.spec.aws.sts_endpoint {
        out.push(user_env("AWS_ENDPOINT_URL_STS", e));
    }
    if ctx.spec.aws.ca_bundle.is_some() {
        out.push(env("AWS_CA_BUNDLE", &format!("{CA_BUNDLE_DIR}/{CA_BUNDLE_FILE}")));
    }
    if ctx.spec.fips {
        out.push(env("AWS_USE_FIPS_ENDPOINT", "true"));
        out.push(env("GODEBUG", "fips140=on"));
    }
    if let Some(p) = &ctx.spec.proxy.http_proxy {
        out.push(user_env("HTTP_PROXY", p));
        out.push(user_env("HTTPS_PROXY", p));
    }
    if let Some(n) = &ctx.spec.proxy.no_proxy {
        out.push(user_env("NO_PROXY", n));
    }
    out
}

pub fn pull_secrets(ctx: &RenderCtx) -> Option<Vec<LocalObjectReference>> {
    let s = &ctx.spec.images.pull_secrets;
    (!s.is_empty()).then(|| s.iter().map(|n| LocalObjectReference { name: n.clone() }).collect())
}

/// `kubernetes.io/os: linux` plus the user's node selector.
pub fn linux_node_selector(extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut s = BTreeMap::from([("kubernetes.io/os".to_string(), "linux".to_string())]);
    s.extend(extra.clone());
    s
}

pub fn log_level_arg(level: i32) -> String {
    format!("--v={level}")
}

/// The operator's flags with a user's extra flags applied: one of the same name replaces the
/// default where it stands (`--timeout=120s` for `--timeout=60s`), any other is appended. Every
/// user string is escaped (see `literal`); validation has refused the flags the operator manages.
pub fn merge_args(defaults: Vec<String>, extra: &[String]) -> Vec<String> {
    let mut out = defaults;
    for a in extra {
        let name = flag_name(a);
        match out.iter().position(|d| d.starts_with('-') && flag_name(d) == name) {
            Some(i) => out[i] = literal(a),
            None => out.push(literal(a)),
        }
    }
    out
}

/// A user's extra environment, values escaped (see `literal`); `valueFrom` kept as written.
pub fn user_env_vars(vars: &[EnvVar]) -> Vec<EnvVar> {
    vars.iter().map(|e| EnvVar { value: e.value.as_deref().map(literal), ..e.clone() }).collect()
}

/// Pod template metadata: the user's labels and annotations, then the operator's labels (which
/// validation keeps the user from naming).
pub fn template_meta(
    ours: BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> ObjectMeta {
    let mut all = labels.clone();
    all.extend(ours);
    ObjectMeta {
        labels: Some(all),
        annotations: (!annotations.is_empty()).then(|| annotations.clone()),
        ..ObjectMeta::default()
    }
}

/// A sidecar's resources: the user's, else the role's default.
pub fn sidecar_resources(s: &SidecarSpec, default: fn() -> ResourceRequirements) -> ResourceRequirements {
    s.resources.clone().unwrap_or_else(default)
}
