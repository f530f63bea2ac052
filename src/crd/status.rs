//! Status of `HardenedCsiDriver`: what the operator observed, in the shape GitOps tools read
//! (`observedGeneration`, `conditions` keyed by type), then the facts.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::AwsStatus;

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HardenedCsiDriverStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded and the specific conditions (ControllerAvailable,
    /// NodeAvailable, SnapshotApi, OwnershipConflict, SpecValid, ...), each with a reason and a
    /// message that says what to do.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Controller Deployment replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<ReplicaStatus>,
    /// Node plugin DaemonSet pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ReplicaStatus>,
    /// The driver image the children run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_image: Option<String>,
    /// StorageClasses the operator manages.
    #[serde(default)]
    pub storage_classes: Vec<String>,
    /// VolumeSnapshotClasses the operator manages.
    #[serde(default)]
    pub volume_snapshot_classes: Vec<String>,
    /// Kubernetes version the children were rendered for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// What AWS says about this cluster's EBS storage and the driver's permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsStatus>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// Pods wanted.
    pub desired: i32,
    /// Pods ready.
    pub ready: i32,
    /// Pods running the current template.
    pub updated: i32,
    /// Pods available.
    pub available: i32,
    /// `ready/desired`, for `kubectl get`.
    pub summary: String,
}

impl ReplicaStatus {
    pub fn new(desired: i32, ready: i32, updated: i32, available: i32) -> Self {
        Self { desired, ready, updated, available, summary: format!("{ready}/{desired}") }
    }
}
