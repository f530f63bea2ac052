//! Status of `HardenedCsiDriver`: what the operator observed, in the shape GitOps tools read
//! (`observedGeneration`, `conditions` keyed by type), then the facts.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::AwsStatus;

// The schema's default (`observedGeneration: -1`) is what a new object reads before the operator
// has written anything: the API server applies it when it decodes the object from storage, so
// every reader (kstatus in Helm `--wait` and Flux, the Argo CD health check) sees a generation
// not yet observed, InProgress, instead of a status-less object that kstatus calls Current.
/// What the operator observed. A new object reads `observedGeneration: -1` until the operator has
/// seen it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {"observedGeneration": -1}))]
pub struct HardenedCsiDriverStatus {
    /// The spec generation (metadata.generation) this status describes: the one the operator's
    /// last reconcile acted on. -1 until the operator has seen the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded, kstatus's Reconciling and Stalled, and the specific conditions
    /// (SpecValid, Active, OwnershipConflict, PodsHealthy, ControllerAvailable, NodeAvailable,
    /// SnapshotApi, ...), each with the generation it describes, a reason and a message that says
    /// what to do.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Controller Deployment replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<ReplicaStatus>,
    /// Node plugin DaemonSet pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ReplicaStatus>,
    /// The driver release (`spec.version`) rolled out: set when every controller and node pod
    /// runs that release's images, so during an upgrade it still names the release running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The driver image the children run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_image: Option<String>,
    /// StorageClasses the operator manages.
    #[serde(default)]
    pub storage_classes: Vec<String>,
    /// VolumeSnapshotClasses the operator manages.
    #[serde(default)]
    pub volume_snapshot_classes: Vec<String>,
    /// VolumeAttributesClasses the operator manages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_attributes_classes: Vec<String>,
    /// VolumeAttributesClasses removed from the spec but kept because claims or volumes still use
    /// them, each with its users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_volume_attributes_classes: Vec<String>,
    /// Kubernetes version the children were rendered for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// What AWS says about this cluster's EBS storage and the driver's permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsStatus>,
    /// While deletion waits: the volumes that still need the driver (see DeletionBlocked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_blocked_by: Option<VolumesInUse>,
}

/// The volumes that need the EBS CSI driver, as counted by the deletion guard.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VolumesInUse {
    /// PersistentVolumes of the CSI driver ebs.csi.aws.com.
    pub csi_persistent_volumes: u64,
    /// In-tree awsElasticBlockStore PersistentVolumes: CSI migration serves them with this driver.
    pub in_tree_persistent_volumes: u64,
    /// VolumeAttachments whose attacher is ebs.csi.aws.com.
    pub volume_attachments: u64,
    /// The first few of them, as `PersistentVolume/name` or `VolumeAttachment/name`.
    #[serde(default)]
    pub examples: Vec<String>,
}

impl VolumesInUse {
    pub fn total(&self) -> u64 {
        self.csi_persistent_volumes + self.in_tree_persistent_volumes + self.volume_attachments
    }

    /// `2 CSI PersistentVolume(s), 1 in-tree ..., 1 VolumeAttachment(s) (PersistentVolume/a, ...)`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.csi_persistent_volumes > 0 {
            parts.push(format!("{} CSI PersistentVolume(s) of ebs.csi.aws.com", self.csi_persistent_volumes));
        }
        if self.in_tree_persistent_volumes > 0 {
            parts.push(format!(
                "{} in-tree awsElasticBlockStore PersistentVolume(s) (served by this driver through CSI migration)",
                self.in_tree_persistent_volumes
            ));
        }
        if self.volume_attachments > 0 {
            parts.push(format!("{} VolumeAttachment(s) of ebs.csi.aws.com", self.volume_attachments));
        }
        let more = self.total().saturating_sub(self.examples.len() as u64);
        let names = match more {
            0 => self.examples.join(", "),
            n => format!("{}, and {n} more", self.examples.join(", ")),
        };
        format!("{} ({names})", parts.join(", "))
    }
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
