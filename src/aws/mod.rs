//! What AWS says about the driver's storage: the EBS inventory, orphaned and stuck volumes,
//! snapshots and the IAM preflight, behind a trait so tests can use moto or mocks.
//!
//! - `api`: the `AwsApi` trait, its SDK-free types and `AwsError`.
//! - `sdk`: the implementation on the AWS SDK (credentials, IRSA, FIPS, endpoints, retries, metrics).
//! - `inventory`: one refresh, from the calls to an `AwsStatus`.
//! - `preflight`: the EC2 actions the driver needs and how each is probed.
//! - `poller`: the background task that refreshes every driver on its interval, the store the
//!   reconciler reads, and the `AwsReachable` / `AwsPermissions` conditions.
//! - `doctor`: the `doctor` command.
//! - `status`: the `status.aws` shape.

pub mod api;
pub mod doctor;
pub mod inventory;
pub mod poller;
pub mod preflight;
pub mod sdk;
pub mod status;

pub use api::{AwsApi, AwsError};
pub use inventory::{RefreshParams, refresh};
pub use poller::{AwsStatusStore, Poller, PollerSettings, conditions};
pub use sdk::{AwsSettings, CredentialSource, SdkAws};
pub use status::AwsStatus;

/// The CSI driver name of every PersistentVolume the inventory matches against.
pub const DRIVER_NAME: &str = "ebs.csi.aws.com";
/// Tag on every volume and snapshot the driver creates.
pub const TAG_CLUSTER: &str = "ebs.csi.aws.com/cluster";
/// Tag with the cluster id (only when the driver runs with `--k8s-tag-cluster-id`).
pub const TAG_CLUSTER_NAME: &str = "ebs.csi.aws.com/cluster-name";
/// Tag with the PersistentVolume name a volume was created for.
pub const TAG_CSI_VOLUME_NAME: &str = "CSIVolumeName";
/// Tag with the VolumeSnapshot(Content) name a snapshot was created for.
pub const TAG_CSI_SNAPSHOT_NAME: &str = "CSIVolumeSnapshotName";
/// The driver's controller service account, whose role IRSA-mode probes assume.
pub const CONTROLLER_SERVICE_ACCOUNT: &str = "ebs-csi-controller-sa";
/// Audience of the projected token STS accepts for AssumeRoleWithWebIdentity.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";
