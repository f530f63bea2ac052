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
    /// What the cluster and AWS disagree about: Released PersistentVolumes whose volume still
    /// exists, volumes whose PersistentVolume is gone, snapshots whose VolumeSnapshotContent is gone.
    #[serde(default)]
    pub leaks: LeakReport,
    /// Attachments stuck attaching/detaching (seen from EC2 and from VolumeAttachments), and
    /// volumes in error.
    #[serde(default)]
    pub stuck: StuckReport,
    /// Snapshots created by this cluster's driver.
    #[serde(default)]
    pub snapshots: SnapshotInventory,
    /// The IAM preflight of the driver's identity.
    #[serde(default)]
    pub permissions: PermissionReport,
    /// The retag of existing volumes and snapshots (`spec.aws.retagExistingVolumes`); absent when
    /// it is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retag: Option<RetagReport>,
}

/// What the last retag pass did: counts of this cluster's volumes and snapshots (the inventory's
/// scope), a capped list of conflicts, and the values the operator itself applied, so that a
/// value it set earlier is told from one a person set.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RetagReport {
    /// Volumes and snapshots of this cluster looked at.
    #[serde(default)]
    pub resources: u64,
    /// Of those, the ones that lacked a wanted tag (or carried an older value the operator applied)
    /// when the pass began.
    #[serde(default)]
    pub wanted: u64,
    /// Tagged by this pass.
    #[serde(default)]
    pub tagged: u64,
    /// Still to tag: left for the next pass (the pass's call budget ran out, AWS throttled it, or
    /// the permission is missing).
    #[serde(default)]
    pub pending: u64,
    /// Whose CreateTags call failed in this pass (retried on the next one), or that cannot take
    /// the tags (EC2 allows 50 tags a resource).
    #[serde(default)]
    pub failed: u64,
    /// Carrying a wanted key with a value the operator did not apply (a person's or another
    /// tool's): never overwritten. Exact count.
    #[serde(default)]
    pub conflicts: u64,
    /// The first 20 conflicts, by resource ID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflict_list: Vec<RetagConflict>,
    /// CreateTags calls this pass made (each with up to `retag::BATCH` resources).
    #[serde(default)]
    pub calls: u64,
    /// Why the pass tagged nothing although resources want tags (the permission is missing, or
    /// the operator cannot act as the driver's identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// AWS error code of the last failed CreateTags call of this pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// That call's AWS message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_message: Option<String>,
    /// Tag values the operator applied (or the spec's extraTags had while the retag was on), by
    /// key, oldest first, at most 5 a key: a resource carrying one of them is updated to the
    /// current value; any other value is a conflict.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub applied: BTreeMap<String, Vec<String>>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RetagConflict {
    /// The volume or snapshot ID.
    pub id: String,
    pub key: String,
    /// The value it carries (left as it is).
    pub value: String,
    /// The value spec.aws.extraTags asks for.
    pub wanted: String,
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
    /// False when orphans were not looked for (see `reason`): the figures below are then zero.
    #[serde(default)]
    pub checked: bool,
    /// Why orphans were not looked for: an account-wide inventory (no spec.aws.clusterId) cannot
    /// tell this cluster's volumes from another's, or the PersistentVolumes are not known yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
    /// EC2 attachments stuck attaching or detaching, exact.
    #[serde(default)]
    pub count: u64,
    /// The first 20 of them, oldest first.
    #[serde(default)]
    pub attachments: Vec<StuckAttachment>,
    /// False when the VolumeAttachments or Nodes are not known yet (the lists below are then empty).
    #[serde(default)]
    pub volume_attachments_checked: bool,
    /// VolumeAttachments of ebs.csi.aws.com that are stuck, exact.
    #[serde(default)]
    pub volume_attachment_count: u64,
    /// The first 20 of them, by name.
    #[serde(default)]
    pub volume_attachments: Vec<StuckVolumeAttachment>,
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
    /// For `attaching`, when the attachment started; for `detaching`, when the operator first saw
    /// it detaching (EC2 keeps the attach time while detaching). Stuck means longer ago than
    /// `spec.inventory.stuckThreshold` (RFC 3339).
    pub since: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StuckVolumeAttachment {
    /// The VolumeAttachment's name.
    pub name: String,
    /// The PersistentVolume it attaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume: Option<String>,
    /// The EBS volume ID, when the PersistentVolume is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    pub node: String,
    /// AttachError, DetachError, NodeGone, or Ec2Disagrees.
    pub reason: String,
    /// The error the external-attacher recorded, or what EC2 says instead.
    pub message: String,
    /// When the operator first saw it this way (RFC 3339); for errors, since when the error stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LeakReport {
    /// False when the PersistentVolumes are not known, or the inventory is account-wide.
    #[serde(default)]
    pub checked: bool,
    /// Released PersistentVolumes (claim deleted, reclaim policy Retain) whose EBS volume still
    /// exists: billed storage nobody can mount until an administrator decides.
    #[serde(default)]
    pub released_persistent_volumes: LeakList,
    /// Volumes created for a PersistentVolume (CSIVolumeName tag) that no longer exists, in any
    /// state and past the grace period; the available ones are also orphans.
    #[serde(default)]
    pub volumes_without_persistent_volume: LeakList,
    /// False when the VolumeSnapshotContents could not be read (no snapshot API, or not known yet).
    #[serde(default)]
    pub snapshots_checked: bool,
    /// Completed snapshots of this cluster that no VolumeSnapshotContent references, past the
    /// grace period.
    #[serde(default)]
    pub snapshots_without_content: LeakList,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LeakList {
    /// Exact count.
    pub count: u64,
    pub total_gib: u64,
    /// The first 20, oldest first.
    #[serde(default)]
    pub items: Vec<LeakItem>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LeakItem {
    /// The EBS volume or snapshot ID.
    pub id: String,
    pub size_gib: u64,
    /// The PersistentVolume (existing or gone) it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume: Option<String>,
    /// The claim a Released PersistentVolume was bound to (`namespace/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// The EC2 state of the volume or snapshot.
    pub state: String,
    /// When the volume or snapshot was created (RFC 3339): the age, as a timestamp so an unchanged
    /// inventory yields an unchanged status.
    #[serde(default)]
    pub created_at: String,
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
    /// Set when the operator cannot act as the driver's identity (static keys from a Secret,
    /// which it never reads, or Pod Identity without a cluster name): what to run instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_verifiable: Option<String>,
    /// Set when probing stopped because the endpoint performed a DryRun call (or no DryRun
    /// canary could be proven before the probes of destructive actions): what happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes_stopped: Option<String>,
    /// The caller ARN AWS reported for that identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_arn: Option<String>,
    /// Actions probed.
    #[serde(default)]
    pub checked: Vec<String>,
    /// Actions the identity lacks: exact IAM action names, for example `ec2:CreateVolume`; a KMS
    /// action is followed by the key it was probed on, `kms:CreateGrant on arn:aws:kms:...`.
    #[serde(default)]
    pub missing: Vec<String>,
    /// Actions AWS did not decide (for example a DryRun answered `InvalidVolume.NotFound` because
    /// the cluster has no volume to aim it at), with the reason.
    #[serde(default)]
    pub unverified: Vec<UnverifiedAction>,
    /// The KMS keys the StorageClasses encrypt with (`kmsKeyId`, or the account's default EBS key
    /// for an encrypted class without one), each probed once as the driver's identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kms_keys: Vec<KmsKeyReport>,
}

/// One KMS key of the StorageClasses, as DescribeKey and the DryRun probes saw it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KmsKeyReport {
    /// The key as the StorageClasses name it (key ID, alias, key or alias ARN), or the account's
    /// default EBS key as GetEbsDefaultKmsKeyId answered it.
    pub key: String,
    /// Whether this is the account's default EBS key (an encrypted class without `kmsKeyId`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub account_default: bool,
    /// The StorageClasses that create volumes with it.
    #[serde(default)]
    pub storage_classes: Vec<String>,
    /// The key ARN DescribeKey resolved it to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// KeyState (Enabled, Disabled, PendingDeletion, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// KeyManager: `AWS` (the AWS managed `aws/ebs`, usable through EC2 by every principal of the
    /// account) or `CUSTOMER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// The key belongs to another account than the probed identity (a cross-account ARN).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cross_account: bool,
    /// Actions the key policy (not the identity's IAM policy) denied, as KMS said.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_by_key_policy: Vec<String>,
    /// Why volumes of these classes cannot be created with this key whatever the permissions
    /// (not found, disabled, pending deletion, another region, not a symmetric encryption key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
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
