//! The condition types of `status.conditions`, and the typed questions asked of a status.

use super::HardenedCsiDriverStatus;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// kstatus: True while the operator works towards the spec (InProgress for Helm, Flux).
pub const RECONCILING: &str = "Reconciling";
/// kstatus: True when nothing progresses without a person (Failed for Helm, Flux).
pub const STALLED: &str = "Stalled";
/// No driver pod fails to pull its image, crash-loops or cannot start its containers.
pub const PODS_HEALTHY: &str = "PodsHealthy";
pub const SPEC_VALID: &str = "SpecValid";
pub const ACTIVE: &str = "Active";
pub const OWNERSHIP: &str = "OwnershipConflict";
pub const CONTROLLER_AVAILABLE: &str = "ControllerAvailable";
pub const NODE_AVAILABLE: &str = "NodeAvailable";
pub const SNAPSHOT_API: &str = "SnapshotApi";
/// `spec.snapshots.controller`: whose snapshot-controller and CRDs the cluster runs, and whether
/// ours is rolled out.
pub const SNAPSHOT_CONTROLLER: &str = "SnapshotController";
/// The snapshot CRDs, snapshot-controller and csi-snapshotter sidecar come from different
/// external-snapshotter major releases.
pub const SNAPSHOT_VERSION_SKEW: &str = "SnapshotVersionSkew";
/// storage.k8s.io serves VolumeAttributesClass, so the spec's classes are managed.
pub const VOLUME_ATTRIBUTES_CLASSES: &str = "VolumeAttributesClasses";
pub const PULL_SECRETS: &str = "PullSecretsPresent";
/// The ServiceMonitors of `spec.metrics.serviceMonitor` exist (only when they are enabled; never
/// part of Ready or Degraded: monitoring is not the data path).
pub const SERVICE_MONITOR: &str = "ServiceMonitor";
pub const DELETION_BLOCKED: &str = "DeletionBlocked";
pub const AWS_REACHABLE: &str = "AwsReachable";
pub const AWS_PERMISSIONS: &str = "AwsPermissions";
/// `spec.aws.retagExistingVolumes`: every volume and snapshot of this cluster carries the
/// extraTags (only while the retag is on; never part of Ready or Degraded).
pub const VOLUMES_RETAGGED: &str = "VolumesRetagged";

impl HardenedCsiDriverStatus {
    pub fn condition(&self, type_: &str) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition `type_` is `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }
}
