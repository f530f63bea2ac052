//! `status.aws`: the shape the inventory reports, shared by the CRD status and `doctor --output json`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AwsStatus {
    /// When AWS was last asked (RFC 3339). In the resource's status it moves only when the answer
    /// changed, because an unchanged answer is not written (no status write per poll).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    /// When AWS last answered every question (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    /// True when the last check failed and the figures below are from an earlier one.
    #[serde(default)]
    pub stale: bool,
    /// AWS error code of the last failure (for example RequestLimitExceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The AWS call that failed last and AWS's message, for example
    /// `DescribeVolumes: Request limit exceeded.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_message: Option<String>,
    /// What the inventory covers: `cluster <id>` or `account-wide` (no spec.aws.clusterId).
    #[serde(default)]
    pub scope: String,
    /// Region asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Whether AWS FIPS endpoints were used.
    #[serde(default)]
    pub fips_endpoints: bool,
    /// Availability zones of the region.
    #[serde(default)]
    pub zones: Vec<String>,
    /// The account's EBS encryption-by-default setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_by_default: Option<bool>,
    /// The account's default EBS KMS key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_kms_key_id: Option<String>,
    /// Volumes created by this cluster's driver.
    #[serde(default)]
    pub volumes: VolumeInventory,
    /// Available volumes of this cluster that no PersistentVolume references.
    #[serde(default)]
    pub orphaned: OrphanReport,
    /// Attachments stuck attaching/detaching, and volumes in error.
    #[serde(default)]
    pub stuck: StuckReport,
    /// Snapshots created by this cluster's driver.
    #[serde(default)]
    pub snapshots: SnapshotInventory,
    /// The IAM preflight of the driver's identity.
    #[serde(default)]
    pub permissions: PermissionReport,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VolumeInventory {
    pub count: u64,
    pub total_gib: u64,
    #[serde(default)]
    pub by_state: BTreeMap<String, u64>,
    #[serde(default)]
    pub by_type: BTreeMap<String, u64>,
    #[serde(default)]
    pub by_zone: BTreeMap<String, u64>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OrphanReport {
    /// False when the cluster's PersistentVolumes could not be listed (or `doctor` ran without a
    /// kubeconfig): orphans were then not looked for and the figures below are zero.
    #[serde(default)]
    pub checked: bool,
    pub count: u64,
    pub total_gib: u64,
    /// The first 20, oldest first.
    #[serde(default)]
    pub volumes: Vec<OrphanVolume>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OrphanVolume {
    pub volume_id: String,
    pub size_gib: u64,
    pub volume_type: String,
    pub zone: String,
    /// The PersistentVolume name it was created for (CSIVolumeName tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi_volume_name: Option<String>,
    /// When the volume was created (RFC 3339). A timestamp rather than an age, so an unchanged
    /// inventory yields an unchanged status.
    pub created_at: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StuckReport {
    #[serde(default)]
    pub attachments: Vec<StuckAttachment>,
    /// Volumes in the `error` state.
    #[serde(default)]
    pub error_volumes: Vec<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StuckAttachment {
    pub volume_id: String,
    pub instance_id: String,
    pub state: String,
    /// When the attachment started (RFC 3339); stuck means longer ago than
    /// `spec.inventory.stuckThreshold`.
    pub since: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInventory {
    pub count: u64,
    pub total_gib: u64,
    #[serde(default)]
    pub by_state: BTreeMap<String, u64>,
    /// Result of reading the newest completed snapshot through the EBS direct API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<SnapshotVerification>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotVerification {
    pub snapshot_id: String,
    pub readable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PermissionReport {
    /// Whose permissions were probed, for example `irsa role arn:aws:iam::123456789012:role/ebs-csi
    /// (service account kube-system/ebs-csi-controller-sa)` or `operator credentials`.
    #[serde(default)]
    pub principal: String,
    /// The caller ARN AWS reported for that identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_arn: Option<String>,
    /// Actions probed.
    #[serde(default)]
    pub checked: Vec<String>,
    /// Actions the identity lacks (exact IAM action names, for example `ec2:CreateVolume`).
    #[serde(default)]
    pub missing: Vec<String>,
    /// Actions EC2 did not decide (for example a DryRun answered `InvalidVolume.NotFound` because
    /// the cluster has no volume to aim it at), with the reason.
    #[serde(default)]
    pub unverified: Vec<UnverifiedAction>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct UnverifiedAction {
    /// IAM action name, for example `ec2:AttachVolume`.
    pub action: String,
    /// Why it could not be decided.
    pub reason: String,
}

impl AwsStatus {
    /// Equal but for `checkedAt` / `lastSuccessAt`: an unchanged answer from AWS. The poller
    /// publishes (and triggers a reconcile) only when this is false.
    pub fn same_result(&self, other: &AwsStatus) -> bool {
        let strip = |s: &AwsStatus| AwsStatus { checked_at: None, last_success_at: None, ..s.clone() };
        strip(self) == strip(other)
    }
}
