//! What AWS says about the driver's storage: the EBS inventory, orphaned and stuck volumes,
//! snapshots and the IAM preflight, behind a trait so tests can use moto or mocks.
//!
//! - `api`: the `AwsApi` trait, its SDK-free types and `AwsError`.
//! - `sdk`: the implementation on the AWS SDK (credentials, IRSA, FIPS, endpoints, retries, metrics).
//! - `inventory`: one refresh, from the calls to an `AwsStatus`.
//! - `preflight`: the EC2 actions the driver needs and how each is probed.
//! - `cluster`: the VolumeAttachment, Node and VolumeSnapshotContent watches beside it, joined
//!   into the `ClusterView` a refresh reads.
//! - `pv_watch`: the PersistentVolume watch (a trimmed reflector) and the references it yields.
//! - `poller`: the background task that refreshes each tracked driver on its own interval, and
//!   the store it shares with the reconciler.
//! - `metrics`: the Prometheus families of AWS requests and the inventory gauges.
//! - `retag`: the opt-in retag of existing volumes and snapshots with the spec's extraTags (the
//!   only AWS write the operator makes), run by a refresh after the preflight.
//!
//! The facts land in `crd::AwsStatus` (the `status.aws` shape); the reconciler turns them into
//! conditions. The `doctor` command lives in `commands::doctor`.

pub mod api;
pub mod cluster;
pub mod inventory;
pub mod metrics;
pub mod poller;
pub mod preflight;
pub mod pv_watch;
pub mod retag;
pub mod sdk;

pub use api::{AwsApi, AwsError};
pub use inventory::{RefreshParams, refresh};
pub use poller::{AwsStatusStore, Poller, PollerSettings};
pub use sdk::{AwsSettings, CredentialSource, SdkAws};

/// Tag on every volume and snapshot the driver creates.
pub const TAG_CLUSTER: &str = "ebs.csi.aws.com/cluster";
/// Tag with the cluster id (only when the driver runs with `--k8s-tag-cluster-id`).
pub const TAG_CLUSTER_NAME: &str = "ebs.csi.aws.com/cluster-name";
/// Tag with the PersistentVolume name a volume was created for.
pub const TAG_CSI_VOLUME_NAME: &str = "CSIVolumeName";
/// Tag with the VolumeSnapshot(Content) name a snapshot was created for.
pub const TAG_CSI_SNAPSHOT_NAME: &str = "CSIVolumeSnapshotName";
/// Audience of the projected token STS accepts for AssumeRoleWithWebIdentity.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";
/// Audience of the token the EKS Pod Identity Agent exchanges with the EKS Auth API.
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";
