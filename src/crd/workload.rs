//! Day-2 knobs the controller and the node plugin share: per-sidecar tuning, log format, pod
//! metadata, extra environment, DNS and termination settings. Upstream chart names are kept where
//! one exists (`podAnnotations`, `podLabels`, `env`, `envFrom`, `dnsConfig`, `loggingFormat`,
//! `terminationGracePeriodSeconds`, `revisionHistoryLimit`); the chart's `additionalArgs` is
//! `extraArgs`, as on the driver containers.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::rules;

/// One CSI sidecar container's tuning. Every field is optional: unset takes the operator's
/// default (upstream's arguments and resources).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    /// Resources of this sidecar. Default: requests cpu 10m, memory 40Mi, limits cpu 1, memory
    /// 256Mi (livenessProbe and nodeDriverRegistrar: requests 10m/32Mi, limits 100m/32Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra flags of this sidecar (`--name=value`), at most 32, for example `--worker-threads=50`,
    /// `--kube-api-qps=50`, `--timeout=120s`. A flag the operator sets by default is replaced by
    /// yours (same position); flags the operator manages are refused.
    #[serde(default)]
    #[schemars(length(max = 32), inner(length(max = 1024)))]
    #[x_kube(validation = Rule::new(rules::SIDECAR_ARGS_FORM.rule).message(rules::SIDECAR_ARGS_FORM.message))]
    #[x_kube(validation = Rule::new(rules::SIDECAR_ARGS_MANAGED.rule).message(rules::SIDECAR_ARGS_MANAGED.message))]
    pub extra_args: Vec<String>,
    /// Log verbosity (`--v`) of this sidecar, 0 to 10. Unset: the workload's `logLevel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub log_level: Option<i32>,
}

/// The controller's CSI sidecars (upstream `sidecars.<name>`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ControllerSidecars {
    /// csi-provisioner.
    #[serde(default)]
    pub provisioner: SidecarSpec,
    /// csi-attacher.
    #[serde(default)]
    pub attacher: SidecarSpec,
    /// csi-snapshotter (runs when the snapshot API is served).
    #[serde(default)]
    pub snapshotter: SidecarSpec,
    /// csi-resizer.
    #[serde(default)]
    pub resizer: SidecarSpec,
    /// livenessprobe.
    #[serde(default)]
    pub liveness_probe: SidecarSpec,
}

/// The node plugin's sidecars (upstream `sidecars.nodeDriverRegistrar`, `sidecars.livenessProbe`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeSidecars {
    /// csi-node-driver-registrar.
    #[serde(default)]
    pub node_driver_registrar: SidecarSpec,
    /// livenessprobe.
    #[serde(default)]
    pub liveness_probe: SidecarSpec,
}

/// Log format of the driver and of the sidecars that support one (csi-provisioner, csi-resizer,
/// csi-snapshotter); csi-attacher, the registrar and livenessprobe log text.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LoggingFormat {
    #[default]
    Text,
    Json,
}

impl LoggingFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LoggingFormat::Text => "text",
            LoggingFormat::Json => "json",
        }
    }
}

/// What the PodDisruptionBudget does with pods that are running but not ready.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnhealthyPodEvictionPolicy {
    IfHealthyBudget,
    AlwaysAllow,
}

impl UnhealthyPodEvictionPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            UnhealthyPodEvictionPolicy::IfHealthyBudget => "IfHealthyBudget",
            UnhealthyPodEvictionPolicy::AlwaysAllow => "AlwaysAllow",
        }
    }
}
