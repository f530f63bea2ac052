//! Spec types of `HardenedCsiDriver`. Field names are the public contract; every field has a
//! description (for `kubectl explain`) and a default where one is safe.

use k8s_openapi::api::core::v1::{
    Affinity, EnvFromSource, EnvVar, PodDNSConfig, ResourceRequirements, Toleration, TopologySelectorTerm,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::duration::SpecDuration;
use super::status::HardenedCsiDriverStatus;
use super::validate::rules;
use super::validate::transition_rules::NAMESPACE_IMMUTABLE;
use super::versions;
use super::workload::{ControllerSidecars, LoggingFormat, NodeSidecars, UnhealthyPodEvictionPolicy};

/// Desired state of the AWS EBS CSI driver, run from Docker Hardened Images. One per cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "csi.hardened.dev",
    version = "v1alpha1",
    kind = "HardenedCsiDriver",
    shortname = "hcd",
    category = "storage",
    status = "HardenedCsiDriverStatus",
    derive = "PartialEq",
    validation = Rule::new(rules::NAME_LENGTH.rule).message(rules::NAME_LENGTH.message),
    doc = "The AWS EBS CSI driver run from Docker Hardened Images: one per cluster. The operator renders and owns the \
        driver's controller, node plugin, RBAC, CSIDriver, StorageClasses and VolumeSnapshotClasses, and reports what \
        AWS says in status.aws.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = "{\"name\":\"Controller\",\"type\":\"string\",\"description\":\"ready/desired controller replicas\",\
        \"jsonPath\":\".status.controller.summary\"}",
    printcolumn = "{\"name\":\"Nodes\",\"type\":\"string\",\"description\":\"ready/desired node plugin pods\",\
        \"jsonPath\":\".status.node.summary\"}",
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.version"}"#,
    printcolumn = r#"{"name":"Driver image","type":"string","priority":1,"jsonPath":".status.driverImage"}"#,
    printcolumn = "{\"name\":\"Message\",\"type\":\"string\",\"priority\":1,\"description\":\"the Ready condition's \
        message\",\"jsonPath\":\".status.conditions[?(@.type==\\\"Ready\\\")].message\"}",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(rules::FIPS_IMAGES.rule).message(rules::FIPS_IMAGES.message))]
#[x_kube(validation = Rule::new(rules::RETAG_INVENTORY.rule).message(rules::RETAG_INVENTORY.message))]
pub struct HardenedCsiDriverSpec {
    /// The driver release: selects the driver image and the six sidecar images that release was
    /// tested with (the upstream chart's pairing), from the operator's table
    /// (`hardened-csi-operator render --list-versions`). Unset: the newest release the operator
    /// knows, so upgrading the operator upgrades the driver; set it to upgrade on your own
    /// schedule. `images.<name>.tag`/`digest` still override single images.
    /// `status.version` reports the release that is rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = versions::VERSIONS))]
    pub version: Option<String>,

    /// Namespace for the driver's namespaced objects (controller Deployment, node DaemonSet,
    /// service accounts, leases Role). It must exist; the operator does not create or delete it.
    /// Must be the driver namespace the operator was installed for (chart value driverNamespace)
    /// and cannot change: moving it would leave nodes without a node plugin (README: "Moving the
    /// driver to another namespace").
    #[serde(default = "default_namespace")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    #[x_kube(validation = Rule::new(NAMESPACE_IMMUTABLE.rule).message(NAMESPACE_IMMUTABLE.message))]
    pub namespace: String,

    /// Where the images come from: Docker Hardened Images on dhi.io by default.
    #[serde(default)]
    pub images: Images,

    /// Run FIPS 140 validated variants: image tags get the `-fips` suffix, the driver uses AWS
    /// FIPS endpoints (`AWS_USE_FIPS_ENDPOINT=true`, `GODEBUG=fips140=on`). An explicit image tag
    /// must then be a FIPS tag (`-fips`), and a digest must come with one or be a FIPS digest of
    /// the operator's table, so FIPS cannot be switched off by accident. Requires `aws.region` to
    /// be a region with FIPS endpoints (US, Canada, GovCloud).
    #[serde(default)]
    pub fips: bool,

    /// AWS settings of the driver: region, cluster id, identity, tags, endpoints.
    #[serde(default)]
    pub aws: AwsSpec,

    /// The controller Deployment (`ebs-csi-controller`).
    #[serde(default)]
    pub controller: ControllerSpec,

    /// The node plugin DaemonSet (`ebs-csi-node`).
    #[serde(default)]
    pub node: NodeSpec,

    /// StorageClasses the operator manages. At most one may be the default class.
    #[serde(default = "default_storage_classes")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(rules::STORAGE_CLASS_DEFAULT.rule).message(rules::STORAGE_CLASS_DEFAULT.message))]
    #[x_kube(validation = Rule::new(rules::STORAGE_CLASS_UNIQUE.rule).message(rules::STORAGE_CLASS_UNIQUE.message))]
    pub storage_classes: Vec<StorageClassSpec>,

    /// VolumeSnapshotClasses the operator manages, when the snapshot API
    /// (snapshot.storage.k8s.io/v1) is installed. At most one may be the default class.
    #[serde(default)]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(rules::SNAPSHOT_CLASS_DEFAULT.rule).message(rules::SNAPSHOT_CLASS_DEFAULT.message))]
    #[x_kube(validation = Rule::new(rules::SNAPSHOT_CLASS_UNIQUE.rule).message(rules::SNAPSHOT_CLASS_UNIQUE.message))]
    pub volume_snapshot_classes: Vec<VolumeSnapshotClassSpec>,

    /// VolumeAttributesClasses the operator manages (storage.k8s.io, Kubernetes 1.34+, or
    /// v1beta1 where enabled): named sets of EBS volume attributes (type, IOPS, throughput, tags)
    /// that a claim switches to with `volumeAttributesClassName`, modifying the live volume. A
    /// class removed from this list is deleted, unless a claim or volume still references it
    /// (then it is kept and reported in the VolumeAttributesClasses condition).
    #[serde(default)]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(rules::VAC_UNIQUE.rule).message(rules::VAC_UNIQUE.message))]
    pub volume_attributes_classes: Vec<VolumeAttributesClassSpec>,

    /// The snapshot stack the csi-snapshotter sidecar needs: the snapshot.storage.k8s.io CRDs and
    /// the snapshot-controller. Off by default (most clusters already run one).
    #[serde(default)]
    pub snapshots: SnapshotsSpec,

    /// HTTP proxy for the driver's AWS calls.
    #[serde(default)]
    pub proxy: ProxySpec,

    /// Prometheus metrics of the driver controller.
    #[serde(default)]
    pub metrics: MetricsSpec,

    /// The operator's own inventory of this cluster's EBS volumes and snapshots, reported in
    /// `status.aws`.
    #[serde(default)]
    pub inventory: InventorySpec,

    /// How the operator judges the driver's health in status (Ready, Degraded, Stalled).
    #[serde(default)]
    pub health: HealthSpec,

    /// Take over existing driver objects (for example from the EKS add-on or the upstream Helm
    /// chart) that the operator did not create. Without it such objects are left alone and
    /// reported in status. To take over only some, leave this false and list them in
    /// `adoptObjects`.
    #[serde(default)]
    pub adopt: bool,

    /// Existing objects to take over, by kind and optionally name (all objects of the kind the
    /// operator renders when the name is left out), while `adopt` is false. Objects not listed
    /// stay as they are: a StorageClass or VolumeSnapshotClass that is not ours blocks only that
    /// class; any other object blocks the driver. With `adopt: true` every object is taken over.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub adopt_objects: Vec<AdoptObject>,
}

impl HardenedCsiDriverSpec {
    /// Whether the existing object `kind`/`name` may be taken over: `adopt: true`, or listed in
    /// `adoptObjects` (by kind, or kind and name).
    pub fn adopts(&self, kind: &str, name: &str) -> bool {
        self.adopt
            || self.adopt_objects.iter().any(|a| a.kind.as_str() == kind && a.name.as_deref().is_none_or(|n| n == name))
    }

    /// Whether any existing object may be taken over.
    pub fn adopts_any(&self) -> bool {
        self.adopt || !self.adopt_objects.is_empty()
    }
}

/// One object (or every object of a kind) to take over; see `adoptObjects`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdoptObject {
    /// Kind of the object, one the operator renders.
    pub kind: AdoptKind,
    /// Name of the object; every object of `kind` the operator renders when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: Option<String>,
}

/// The kinds the operator renders, which `adoptObjects` can name.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdoptKind {
    ServiceAccount,
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
    CSIDriver,
    Deployment,
    PodDisruptionBudget,
    Service,
    DaemonSet,
    NetworkPolicy,
    StorageClass,
    VolumeSnapshotClass,
}

impl AdoptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AdoptKind::ServiceAccount => "ServiceAccount",
            AdoptKind::ClusterRole => "ClusterRole",
            AdoptKind::ClusterRoleBinding => "ClusterRoleBinding",
            AdoptKind::Role => "Role",
            AdoptKind::RoleBinding => "RoleBinding",
            AdoptKind::CSIDriver => "CSIDriver",
            AdoptKind::Deployment => "Deployment",
            AdoptKind::PodDisruptionBudget => "PodDisruptionBudget",
            AdoptKind::Service => "Service",
            AdoptKind::DaemonSet => "DaemonSet",
            AdoptKind::NetworkPolicy => "NetworkPolicy",
            AdoptKind::StorageClass => "StorageClass",
            AdoptKind::VolumeSnapshotClass => "VolumeSnapshotClass",
        }
    }
}

pub fn default_namespace() -> String {
    "kube-system".into()
}

fn default_storage_classes() -> Vec<StorageClassSpec> {
    vec![StorageClassSpec::default()]
}

/// Image sources. An image is `<registry>/<repository>:<tag>[@<digest>]`, or with a mirror
/// `<mirror>/dhi-<repository>:<tag>[@<digest>]`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Images {
    /// Registry of the hardened images.
    #[serde(default = "default_registry")]
    #[schemars(
        length(min = 1, max = 255),
        regex(pattern = r"^[A-Za-z0-9-]+([.][A-Za-z0-9-]+)*(:[0-9]{1,5})?(/[a-z0-9._-]+)*$")
    )]
    pub registry: String,
    /// A mirror (registry and path, for example `registry.example.com/acme`) holding the images as
    /// `dhi-<repository>`. Empty: pull from `registry`.
    #[serde(default)]
    #[schemars(
        length(max = 255),
        regex(pattern = r"^([A-Za-z0-9-]+([.][A-Za-z0-9-]+)*(:[0-9]{1,5})?(/[a-z0-9._-]+)*)?$")
    )]
    pub mirror: String,
    /// Image pull policy of every container.
    #[serde(default)]
    pub pull_policy: PullPolicy,
    /// Names of `kubernetes.io/dockerconfigjson` Secrets in `spec.namespace`, used by every pod
    /// that pulls (dhi.io needs a login).
    #[serde(default)]
    #[schemars(length(max = 16), inner(length(max = 253)))]
    #[x_kube(validation = Rule::new(rules::PULL_SECRET_NAMES.rule).message(rules::PULL_SECRET_NAMES.message))]
    pub pull_secrets: Vec<String>,
    /// The driver image (controller and node plugin); default: the release of `spec.version`.
    #[serde(default)]
    pub driver: ImageRef,
    /// The csi-provisioner sidecar; default: the release of `spec.version`.
    #[serde(default)]
    pub provisioner: ImageRef,
    /// The csi-attacher sidecar; default: the release of `spec.version`.
    #[serde(default)]
    pub attacher: ImageRef,
    /// The csi-snapshotter sidecar; default: the release of `spec.version`.
    #[serde(default)]
    pub snapshotter: ImageRef,
    /// The csi-resizer sidecar; default: the release of `spec.version`.
    #[serde(default)]
    pub resizer: ImageRef,
    /// The livenessprobe sidecar; default: the release of `spec.version`.
    #[serde(default)]
    pub liveness_probe: ImageRef,
    /// The csi-node-driver-registrar sidecar; default: the release of `spec.version`.
    #[serde(default)]
    pub node_driver_registrar: ImageRef,
}

impl Default for Images {
    fn default() -> Self {
        Self {
            registry: default_registry(),
            mirror: String::new(),
            pull_policy: PullPolicy::default(),
            pull_secrets: Vec::new(),
            driver: ImageRef::default(),
            provisioner: ImageRef::default(),
            attacher: ImageRef::default(),
            snapshotter: ImageRef::default(),
            resizer: ImageRef::default(),
            liveness_probe: ImageRef::default(),
            node_driver_registrar: ImageRef::default(),
        }
    }
}

fn default_registry() -> String {
    "dhi.io".into()
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// One image. Unset fields take the release's image (`spec.version`); an explicit `tag` or
/// `digest` is used as given. In FIPS mode an explicit tag must be a `-fips` tag and a digest
/// must come with one (or be a FIPS digest of the operator's table).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImageRef {
    /// Repository under the registry (or, with a mirror, the part after `dhi-`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255), regex(pattern = r"^[a-z0-9]+([._/-][a-z0-9]+)*$"))]
    pub repository: Option<String>,
    /// Tag, without a leading `v` (DHI convention), for example `1.64.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"))]
    pub tag: Option<String>,
    /// Digest pinning the image, `sha256:` and 64 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 71))]
    #[x_kube(validation = Rule::new(rules::DIGEST.rule).message(rules::DIGEST.message))]
    pub digest: Option<String>,
}

/// AWS settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(rules::RETAG_CLUSTER_ID.rule).message(rules::RETAG_CLUSTER_ID.message))]
#[x_kube(validation = Rule::new(rules::RETAG_IDENTITY.rule).message(rules::RETAG_IDENTITY.message))]
pub struct AwsSpec {
    /// AWS region (AWS_REGION on the controller). Unset: the driver asks the instance metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$"))]
    pub region: Option<String>,
    /// Cluster id (`--k8s-tag-cluster-id`): tags every volume and snapshot with the cluster and
    /// scopes the operator's AWS inventory to this cluster. Without it the inventory is
    /// account-wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100), regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub cluster_id: Option<String>,
    /// How the driver gets AWS credentials: exactly one of irsa, podIdentity, secretRef.
    #[serde(default)]
    pub identity: Identity,
    /// Extra tags on every volume and snapshot (`--extra-tags`), at most 40. Keys: 1-128 ASCII
    /// letters, digits, spaces and `+ - . _ : / @`; values: up to 256 of the same and `=`. Reserved
    /// keys are rejected: `aws:*`, `CSIVolumeName`, `CSIVolumeSnapshotName`, `kubernetes.io*`,
    /// `ebs.csi.aws.com/*`.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 40, "additionalProperties" = {"type": "string", "maxLength": 256}))]
    #[x_kube(validation = Rule::new(rules::TAGS_RESERVED.rule).message(rules::TAGS_RESERVED.message))]
    #[x_kube(validation = Rule::new(rules::TAG_KEYS.rule).message(rules::TAG_KEYS.message))]
    #[x_kube(validation = Rule::new(rules::TAG_VALUES.rule).message(rules::TAG_VALUES.message))]
    pub extra_tags: BTreeMap<String, String>,
    /// Apply the extraTags that were added or changed to this cluster's existing volumes and
    /// snapshots too (the driver tags only the ones it creates). The operator calls
    /// `ec2:CreateTags` as the driver's identity, batched and paced, on its inventory interval;
    /// it never removes a tag, and never overwrites a value it did not apply itself (reported as
    /// a conflict in `status.aws.retag`). Needs `clusterId` (the volumes must be told from other
    /// clusters'), an IRSA or Pod Identity identity (the operator never reads static keys) and
    /// the inventory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retag_existing_volumes: bool,
    /// EC2 endpoint override (AWS_EC2_ENDPOINT), for VPC endpoints or tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new(rules::EC2_ENDPOINT.rule).message(rules::EC2_ENDPOINT.message))]
    pub ec2_endpoint: Option<String>,
    /// STS endpoint override (`AWS_ENDPOINT_URL_STS` of the driver; also the operator's STS
    /// calls), for an STS VPC endpoint in a private cluster or an isolated region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new(rules::STS_ENDPOINT.rule).message(rules::STS_ENDPOINT.message))]
    pub sts_endpoint: Option<String>,
    /// KMS endpoint override of the operator's own KMS calls (DescribeKey and the DryRun probes
    /// of the keys the StorageClasses name), for a KMS VPC endpoint. Not passed to the driver:
    /// the driver never calls KMS itself, EC2 does on its behalf when it creates an encrypted
    /// volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new(rules::KMS_ENDPOINT.rule).message(rules::KMS_ENDPOINT.message))]
    pub kms_endpoint: Option<String>,
    /// Extra CA certificates (PEM, in a ConfigMap of `spec.namespace`) the driver trusts for AWS
    /// (`AWS_CA_BUNDLE`, mounted read-only) and the operator trusts for its own AWS calls, beside
    /// the system roots: for TLS-intercepting proxies and isolated regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundle>,
}

/// Exactly one way to get AWS credentials.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(rules::IDENTITY_ONE_OF.rule).message(rules::IDENTITY_ONE_OF.message))]
pub struct Identity {
    /// IAM Roles for Service Accounts: annotates the controller service account with the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irsa: Option<Irsa>,
    /// EKS Pod Identity: create an association for `ebs-csi-controller-sa` in `spec.namespace`;
    /// nothing is annotated. Without an association the driver falls back to the node's role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_identity: Option<PodIdentity>,
    /// Static keys from a Secret in `spec.namespace` (keys `key_id` and `access_key` unless
    /// renamed, and optionally a session token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

impl Default for Identity {
    fn default() -> Self {
        Self { irsa: None, pod_identity: Some(PodIdentity {}), secret_ref: None }
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Irsa {
    /// ARN of the IAM role the driver assumes, `arn:aws:iam::<account>:role/<name>`.
    #[schemars(length(max = 2048), regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$"))]
    pub role_arn: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct PodIdentity {}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Secret name in `spec.namespace`.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key of the access key id in the Secret (upstream `awsAccessSecret.keyId`).
    #[serde(default = "default_key_id")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key_id: String,
    /// Key of the secret access key in the Secret (upstream `awsAccessSecret.accessKey`).
    #[serde(default = "default_access_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub access_key: String,
    /// Key of a session token in the Secret, for temporary credentials (`AWS_SESSION_TOKEN`).
    /// Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub session_token: Option<String>,
}

fn default_key_id() -> String {
    "key_id".into()
}
fn default_access_key() -> String {
    "access_key".into()
}

/// A PEM bundle of CA certificates in a ConfigMap.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaBundle {
    /// ConfigMap in `spec.namespace` holding the bundle.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key of the bundle in the ConfigMap.
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca-bundle.crt".into()
}

/// The controller Deployment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ControllerSpec {
    /// Replicas of the controller (leader-elected sidecars).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 10))]
    pub replicas: i32,
    /// Log verbosity (`--v`) of the driver and sidecars.
    #[serde(default = "default_log_level")]
    #[schemars(range(min = 0, max = 10))]
    pub log_level: i32,
    /// Resources of the ebs-plugin container. Default: requests cpu 10m, memory 40Mi; limit memory 256Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node selector, added to `kubernetes.io/os: linux`.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 32))]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations. Unset: CriticalAddonsOnly and NoExecute for 300s, as upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub tolerations: Option<Vec<Toleration>>,
    /// Affinity. Unset: avoid Fargate/auto/hybrid nodes and spread replicas across hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Topology spread constraints of the controller pods.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Priority class of the controller pods.
    #[serde(default = "default_controller_priority")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub priority_class_name: String,
    /// Extra arguments for the driver's controller (`--name=value`), at most 32. Flags the
    /// operator sets itself are refused (use their spec fields).
    #[serde(default)]
    #[schemars(length(max = 32), inner(length(max = 1024)))]
    #[x_kube(validation = Rule::new(rules::EXTRA_ARGS_FORM.rule).message(rules::EXTRA_ARGS_FORM.message))]
    #[x_kube(validation = Rule::new(rules::EXTRA_ARGS_MANAGED.rule).message(rules::EXTRA_ARGS_MANAGED.message))]
    pub extra_args: Vec<String>,
    /// PodDisruptionBudget of the controller.
    #[serde(default)]
    pub pod_disruption_budget: PdbSpec,
    /// Default filesystem of provisioned volumes (`--default-fstype` of csi-provisioner).
    #[serde(default)]
    pub default_fs_type: FsType,
    /// Annotations of the controller pods (for example for a log shipper or a service mesh), at most 64.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(validation = Rule::new(rules::ANNOTATION_KEYS.rule).message(rules::ANNOTATION_KEYS.message))]
    pub pod_annotations: BTreeMap<String, String>,
    /// Labels of the controller pods, at most 32, besides the operator's own (`app`,
    /// `app.kubernetes.io/{name,instance,managed-by,part-of,version}`), which cannot be replaced.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    #[x_kube(validation = Rule::new(rules::POD_LABELS_RESERVED.rule).message(rules::POD_LABELS_RESERVED.message))]
    #[x_kube(validation = Rule::new(rules::LABEL_KEYS.rule).message(rules::LABEL_KEYS.message))]
    #[x_kube(validation = Rule::new(rules::LABEL_VALUES.rule).message(rules::LABEL_VALUES.message))]
    pub pod_labels: BTreeMap<String, String>,
    /// Extra environment variables of the ebs-plugin container, at most 64. Values are passed
    /// literally (`$(VAR)` is not expanded). Variables the operator sets (endpoints, region,
    /// credentials, proxy, FIPS) are refused: use their spec fields.
    #[serde(default)]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(rules::ENV_MANAGED.rule).message(rules::ENV_MANAGED.message))]
    pub env: Vec<EnvVar>,
    /// Extra environment of the ebs-plugin container from ConfigMaps or Secrets, at most 16.
    /// Variables the operator sets take precedence over these (Kubernetes: `env` wins).
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub env_from: Vec<EnvFromSource>,
    /// DNS settings of the controller pods (nameservers, searches, options).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(rules::DNS_CONFIG.rule).message(rules::DNS_CONFIG.message))]
    pub dns_config: Option<PodDNSConfig>,
    /// Log format of the driver and of the sidecars that support it (csi-provisioner,
    /// csi-resizer, csi-snapshotter): `text` or `json`.
    #[serde(default)]
    pub logging_format: LoggingFormat,
    /// Old ReplicaSets/ControllerRevisions kept for rollback, 0 to 100.
    #[serde(default = "default_revision_history")]
    #[schemars(range(min = 0, max = 100))]
    pub revision_history_limit: i32,
    /// Seconds a controller pod gets to stop, 0 to 3600. Unset: Kubernetes' default (30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub termination_grace_period_seconds: Option<i64>,
    /// The CSI sidecars: resources, extra flags and log level of each.
    #[serde(default)]
    pub sidecars: ControllerSidecars,
}

impl Default for ControllerSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            log_level: default_log_level(),
            resources: None,
            node_selector: BTreeMap::new(),
            tolerations: None,
            affinity: None,
            topology_spread_constraints: Vec::new(),
            priority_class_name: default_controller_priority(),
            extra_args: Vec::new(),
            pod_disruption_budget: PdbSpec::default(),
            default_fs_type: FsType::default(),
            pod_annotations: BTreeMap::new(),
            pod_labels: BTreeMap::new(),
            env: Vec::new(),
            env_from: Vec::new(),
            dns_config: None,
            logging_format: LoggingFormat::default(),
            revision_history_limit: default_revision_history(),
            termination_grace_period_seconds: None,
            sidecars: ControllerSidecars::default(),
        }
    }
}

fn default_replicas() -> i32 {
    2
}
fn default_log_level() -> i32 {
    2
}
fn default_controller_priority() -> String {
    "system-cluster-critical".into()
}
fn default_node_priority() -> String {
    "system-node-critical".into()
}
fn default_true() -> bool {
    true
}
fn default_revision_history() -> i32 {
    10
}
fn default_node_grace() -> i64 {
    30
}

/// The controller's PodDisruptionBudget. Neither `maxUnavailable` nor `minAvailable` set:
/// `maxUnavailable: 1`, as upstream.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(rules::PDB_EXCLUSIVE.rule).message(rules::PDB_EXCLUSIVE.message))]
pub struct PdbSpec {
    /// Create a PodDisruptionBudget for the controller.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Controller pods a disruption may take down at once: a number (at least 0) or a percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(rules::PDB_VALUE.rule).message(rules::PDB_VALUE.message))]
    pub max_unavailable: Option<IntOrString>,
    /// Controller pods that must stay available: a number (at least 0) or a percentage. Exclusive
    /// with `maxUnavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(rules::PDB_VALUE.rule).message(rules::PDB_VALUE.message))]
    pub min_available: Option<IntOrString>,
    /// Whether running but unready pods may be evicted whatever the budget (`AlwaysAllow`) or only
    /// while the budget holds (`IfHealthyBudget`). Unset: the API server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_pod_eviction_policy: Option<UnhealthyPodEvictionPolicy>,
}

impl Default for PdbSpec {
    fn default() -> Self {
        Self { enabled: true, max_unavailable: None, min_available: None, unhealthy_pod_eviction_policy: None }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    #[default]
    Ext4,
    Ext3,
    Ext2,
    Xfs,
}

impl FsType {
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Ext3 => "ext3",
            FsType::Ext2 => "ext2",
            FsType::Xfs => "xfs",
        }
    }
}

/// The node plugin DaemonSet.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(rules::ATTACH_EXCLUSIVE.rule).message(rules::ATTACH_EXCLUSIVE.message))]
pub struct NodeSpec {
    /// Tolerate every taint, so volumes keep working on tainted nodes (upstream default).
    #[serde(default = "default_true")]
    pub tolerate_all_taints: bool,
    /// Tolerations used when `tolerateAllTaints` is false.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub tolerations: Vec<Toleration>,
    /// Node selector, added to `kubernetes.io/os: linux`.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 32))]
    pub node_selector: BTreeMap<String, String>,
    /// Resources of the ebs-plugin container. Default: requests cpu 10m, memory 40Mi; limit memory 256Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Priority class of the node pods.
    #[serde(default = "default_node_priority")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub priority_class_name: String,
    /// The kubelet's root directory on the nodes: `/var/lib/kubelet` (k0s: `/var/lib/k0s/kubelet`,
    /// MicroK8s: `/var/snap/microk8s/common/var/lib/kubelet`). A plain absolute path, never a
    /// system directory: it is mounted Bidirectional into a privileged container.
    #[serde(default = "default_kubelet_path")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new(rules::KUBELET_PATH_FORM.rule).message(rules::KUBELET_PATH_FORM.message))]
    #[x_kube(validation = Rule::new(rules::KUBELET_PATH_SYSTEM.rule).message(rules::KUBELET_PATH_SYSTEM.message))]
    pub kubelet_path: String,
    /// Override the number of EBS volumes a node may attach (`--volume-attach-limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 128))]
    pub volume_attach_limit: Option<i32>,
    /// Attachment slots to keep free for non-CSI volumes (`--reserved-volume-attachments`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 127))]
    pub reserved_volume_attachments: Option<i32>,
    /// Run the node pods in the host network namespace.
    #[serde(default)]
    pub host_network: bool,
    /// DaemonSet rolling update maxUnavailable (count or percentage).
    #[serde(default = "default_max_unavailable")]
    #[x_kube(validation = Rule::new(rules::MAX_UNAVAILABLE.rule).message(rules::MAX_UNAVAILABLE.message))]
    pub max_unavailable: IntOrString,
    /// Log verbosity (`--v`) of the node plugin and sidecars.
    #[serde(default = "default_log_level")]
    #[schemars(range(min = 0, max = 10))]
    pub log_level: i32,
    /// Annotations of the node plugin pods (for example for a log shipper or a service mesh), at most 64.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(validation = Rule::new(rules::ANNOTATION_KEYS.rule).message(rules::ANNOTATION_KEYS.message))]
    pub pod_annotations: BTreeMap<String, String>,
    /// Labels of the node plugin pods, at most 32, besides the operator's own (`app`,
    /// `app.kubernetes.io/{name,instance,managed-by,part-of,version}`), which cannot be replaced.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    #[x_kube(validation = Rule::new(rules::POD_LABELS_RESERVED.rule).message(rules::POD_LABELS_RESERVED.message))]
    #[x_kube(validation = Rule::new(rules::LABEL_KEYS.rule).message(rules::LABEL_KEYS.message))]
    #[x_kube(validation = Rule::new(rules::LABEL_VALUES.rule).message(rules::LABEL_VALUES.message))]
    pub pod_labels: BTreeMap<String, String>,
    /// Extra environment variables of the node ebs-plugin container, at most 64. Values are passed
    /// literally (`$(VAR)` is not expanded). Variables the operator sets (endpoints, region,
    /// credentials, proxy, FIPS) are refused: use their spec fields.
    #[serde(default)]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(rules::ENV_MANAGED.rule).message(rules::ENV_MANAGED.message))]
    pub env: Vec<EnvVar>,
    /// Extra environment of the node ebs-plugin container from ConfigMaps or Secrets, at most 16.
    /// Variables the operator sets take precedence over these (Kubernetes: `env` wins).
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub env_from: Vec<EnvFromSource>,
    /// DNS settings of the node plugin pods (nameservers, searches, options).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(rules::DNS_CONFIG.rule).message(rules::DNS_CONFIG.message))]
    pub dns_config: Option<PodDNSConfig>,
    /// Log format of the driver and of the sidecars that support it (csi-provisioner,
    /// csi-resizer, csi-snapshotter): `text` or `json`.
    #[serde(default)]
    pub logging_format: LoggingFormat,
    /// Old ReplicaSets/ControllerRevisions kept for rollback, 0 to 100.
    #[serde(default = "default_revision_history")]
    #[schemars(range(min = 0, max = 100))]
    pub revision_history_limit: i32,
    /// Seconds a node plugin pod gets to stop (its pre-stop hook waits for volumes to detach), 0
    /// to 3600.
    #[serde(default = "default_node_grace")]
    #[schemars(range(min = 0, max = 3600))]
    pub termination_grace_period_seconds: i64,
    /// The node plugin's sidecars: resources, extra flags and log level of each.
    #[serde(default)]
    pub sidecars: NodeSidecars,
    /// Extra arguments of the node plugin (`--name=value`), at most 32, for example
    /// `--metadata-sources=kubernetes` or `--legacy-xfs=true`. Flags the operator sets are refused
    /// (use their spec fields).
    #[serde(default)]
    #[schemars(length(max = 32), inner(length(max = 1024)))]
    #[x_kube(validation = Rule::new(rules::EXTRA_ARGS_FORM.rule).message(rules::EXTRA_ARGS_FORM.message))]
    #[x_kube(validation = Rule::new(rules::NODE_ARGS_MANAGED.rule).message(rules::NODE_ARGS_MANAGED.message))]
    pub extra_args: Vec<String>,
    /// SELinux mount support: mounts the host's `/sys/fs/selinux` and `/etc/selinux/config` into
    /// the node plugin and sets `seLinuxMount: true` on the CSIDriver, so volumes are mounted with
    /// the pod's SELinux context (SELinux-enforcing nodes such as Bottlerocket or RHEL).
    #[serde(default)]
    pub selinux: bool,
}

impl Default for NodeSpec {
    fn default() -> Self {
        Self {
            tolerate_all_taints: true,
            tolerations: Vec::new(),
            node_selector: BTreeMap::new(),
            resources: None,
            priority_class_name: default_node_priority(),
            kubelet_path: default_kubelet_path(),
            volume_attach_limit: None,
            reserved_volume_attachments: None,
            host_network: false,
            max_unavailable: default_max_unavailable(),
            log_level: default_log_level(),
            pod_annotations: BTreeMap::new(),
            pod_labels: BTreeMap::new(),
            env: Vec::new(),
            env_from: Vec::new(),
            dns_config: None,
            logging_format: LoggingFormat::default(),
            revision_history_limit: default_revision_history(),
            termination_grace_period_seconds: default_node_grace(),
            sidecars: NodeSidecars::default(),
            extra_args: Vec::new(),
            selinux: false,
        }
    }
}

fn default_kubelet_path() -> String {
    "/var/lib/kubelet".into()
}
fn default_max_unavailable() -> IntOrString {
    IntOrString::String("10%".into())
}

/// One StorageClass of the driver.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(rules::IOPS_TYPE.rule).message(rules::IOPS_TYPE.message))]
#[x_kube(validation = Rule::new(rules::IOPS_RANGE.rule).message(rules::IOPS_RANGE.message))]
#[x_kube(validation = Rule::new(rules::THROUGHPUT_TYPE.rule).message(rules::THROUGHPUT_TYPE.message))]
#[x_kube(validation = Rule::new(rules::KMS_NEEDS_ENCRYPTION.rule).message(rules::KMS_NEEDS_ENCRYPTION.message))]
pub struct StorageClassSpec {
    /// StorageClass name.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
    /// Mark as the cluster's default class (storageclass.kubernetes.io/is-default-class).
    #[serde(default)]
    pub default: bool,
    /// EBS volume type.
    #[serde(default, rename = "type")]
    pub volume_type: VolumeType,
    /// Encrypt volumes.
    #[serde(default = "default_true")]
    pub encrypted: bool,
    /// KMS key (id, alias or ARN) for encryption; empty: the account's default EBS key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub kms_key_id: Option<String>,
    /// Provisioned IOPS: gp3 3,000-80,000, io1 100-64,000, io2 100-256,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 256000))]
    pub iops: Option<i64>,
    /// Throughput in MiB/s, gp3 only: 125-2,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 125, max = 2000))]
    pub throughput: Option<i64>,
    /// Filesystem of new volumes.
    #[serde(default)]
    pub fs_type: FsType,
    /// What happens to a volume when its claim is deleted.
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
    /// When volumes are bound and provisioned.
    #[serde(default)]
    pub volume_binding_mode: VolumeBindingMode,
    /// Allow claims to grow.
    #[serde(default = "default_true")]
    pub allow_volume_expansion: bool,
    /// Other driver parameters (for example `tagSpecification_1`, `blockAttachUntilInitialized`,
    /// `ext4EncryptionSupport`), checked against those driver 1.64 accepts (keys compared
    /// case-insensitively, as the driver does).
    #[serde(default)]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 1024}))]
    pub parameters: BTreeMap<String, String>,
    /// Mount options of volumes of this class.
    #[serde(default)]
    #[schemars(length(max = 32), inner(length(max = 256)))]
    pub mount_options: Vec<String>,
    /// Restrict provisioning to these topologies.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub allowed_topologies: Vec<TopologySelectorTerm>,
    /// Labels of the StorageClass, at most 32, besides the operator's own
    /// (`app.kubernetes.io/{name,instance,managed-by,part-of,version}`), which cannot be replaced.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    #[x_kube(validation = Rule::new(rules::POD_LABELS_RESERVED.rule).message(rules::POD_LABELS_RESERVED.message))]
    #[x_kube(validation = Rule::new(rules::LABEL_KEYS.rule).message(rules::LABEL_KEYS.message))]
    #[x_kube(validation = Rule::new(rules::LABEL_VALUES.rule).message(rules::LABEL_VALUES.message))]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the StorageClass, at most 64. The default-class annotation is `default`'s.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(validation = Rule::new(rules::ANNOTATION_KEYS.rule).message(rules::ANNOTATION_KEYS.message))]
    #[x_kube(validation = Rule::new(rules::CLASS_ANNOTATIONS.rule).message(rules::CLASS_ANNOTATIONS.message))]
    pub annotations: BTreeMap<String, String>,
}

impl Default for StorageClassSpec {
    fn default() -> Self {
        Self {
            name: "gp3".into(),
            default: false,
            volume_type: VolumeType::default(),
            encrypted: true,
            kms_key_id: None,
            iops: None,
            throughput: None,
            fs_type: FsType::default(),
            reclaim_policy: ReclaimPolicy::default(),
            volume_binding_mode: VolumeBindingMode::default(),
            allow_volume_expansion: true,
            parameters: BTreeMap::new(),
            mount_options: Vec::new(),
            allowed_topologies: Vec::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    #[default]
    Gp3,
    Gp2,
    Io1,
    Io2,
    Sc1,
    St1,
    Standard,
}

impl VolumeType {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeType::Gp3 => "gp3",
            VolumeType::Gp2 => "gp2",
            VolumeType::Io1 => "io1",
            VolumeType::Io2 => "io2",
            VolumeType::Sc1 => "sc1",
            VolumeType::St1 => "st1",
            VolumeType::Standard => "standard",
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReclaimPolicy {
    #[default]
    Delete,
    Retain,
}

impl ReclaimPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ReclaimPolicy::Delete => "Delete",
            ReclaimPolicy::Retain => "Retain",
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VolumeBindingMode {
    #[default]
    WaitForFirstConsumer,
    Immediate,
}

impl VolumeBindingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeBindingMode::WaitForFirstConsumer => "WaitForFirstConsumer",
            VolumeBindingMode::Immediate => "Immediate",
        }
    }
}

/// One VolumeSnapshotClass of the driver.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotClassSpec {
    /// VolumeSnapshotClass name.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
    /// Mark as the default class (snapshot.storage.kubernetes.io/is-default-class).
    #[serde(default)]
    pub default: bool,
    /// What happens to the EBS snapshot when its VolumeSnapshotContent is deleted.
    #[serde(default)]
    pub deletion_policy: ReclaimPolicy,
    /// Driver snapshot parameters (for example `tagSpecification_1`,
    /// `fastSnapshotRestoreAvailabilityZones`), checked against the known list.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 1024}))]
    pub parameters: BTreeMap<String, String>,
    /// Labels of the VolumeSnapshotClass, at most 32, besides the operator's own
    /// (`app.kubernetes.io/{name,instance,managed-by,part-of,version}`), which cannot be replaced.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    #[x_kube(validation = Rule::new(rules::POD_LABELS_RESERVED.rule).message(rules::POD_LABELS_RESERVED.message))]
    #[x_kube(validation = Rule::new(rules::LABEL_KEYS.rule).message(rules::LABEL_KEYS.message))]
    #[x_kube(validation = Rule::new(rules::LABEL_VALUES.rule).message(rules::LABEL_VALUES.message))]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the VolumeSnapshotClass, at most 64. The default-class annotation is `default`'s.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(validation = Rule::new(rules::ANNOTATION_KEYS.rule).message(rules::ANNOTATION_KEYS.message))]
    #[x_kube(validation = Rule::new(rules::CLASS_ANNOTATIONS.rule).message(rules::CLASS_ANNOTATIONS.message))]
    pub annotations: BTreeMap<String, String>,
}

/// One VolumeAttributesClass of the driver: what a claim's volume is modified to when the claim
/// names it. At least one of `type`, `iops`, `throughput` or a tag parameter.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(rules::VAC_NOT_EMPTY.rule).message(rules::VAC_NOT_EMPTY.message))]
#[x_kube(validation = Rule::new(rules::VAC_IOPS_TYPE.rule).message(rules::VAC_IOPS_TYPE.message))]
#[x_kube(validation = Rule::new(rules::VAC_IOPS_RANGE.rule).message(rules::VAC_IOPS_RANGE.message))]
#[x_kube(validation = Rule::new(rules::VAC_THROUGHPUT_TYPE.rule).message(rules::VAC_THROUGHPUT_TYPE.message))]
pub struct VolumeAttributesClassSpec {
    /// VolumeAttributesClass name.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
    /// EBS volume type to modify the volume to. Unset: the volume keeps its type, and `iops` and
    /// `throughput` are checked against every type that has them.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<VolumeType>,
    /// Provisioned IOPS: gp3 3,000-80,000, io1 100-64,000, io2 100-256,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 256000))]
    pub iops: Option<i64>,
    /// Throughput in MiB/s, gp3 only: 125-2,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 125, max = 2000))]
    pub throughput: Option<i64>,
    /// Tag parameters: `tagSpecification_<n>: "key=value"` adds or overwrites a tag on the volume,
    /// `tagDeletion_<n>: "key"` removes one (the driver needs ec2:CreateTags/DeleteTags).
    #[serde(default)]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 1024}))]
    #[x_kube(validation = Rule::new(rules::VAC_PARAMETERS.rule).message(rules::VAC_PARAMETERS.message))]
    pub parameters: BTreeMap<String, String>,
    /// Labels of the VolumeAttributesClass, at most 32, besides the operator's own
    /// (`app.kubernetes.io/{name,instance,managed-by,part-of,version}`), which cannot be replaced.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    #[x_kube(validation = Rule::new(rules::POD_LABELS_RESERVED.rule).message(rules::POD_LABELS_RESERVED.message))]
    #[x_kube(validation = Rule::new(rules::LABEL_KEYS.rule).message(rules::LABEL_KEYS.message))]
    #[x_kube(validation = Rule::new(rules::LABEL_VALUES.rule).message(rules::LABEL_VALUES.message))]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the VolumeAttributesClass, at most 64.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(validation = Rule::new(rules::ANNOTATION_KEYS.rule).message(rules::ANNOTATION_KEYS.message))]
    #[x_kube(validation = Rule::new(rules::CLASS_ANNOTATIONS.rule).message(rules::CLASS_ANNOTATIONS.message))]
    pub annotations: BTreeMap<String, String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    /// HTTP(S) proxy URL for the driver's AWS calls (HTTP_PROXY and HTTPS_PROXY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new(rules::HTTP_PROXY.rule).message(rules::HTTP_PROXY.message))]
    pub http_proxy: Option<String>,
    /// Hosts that bypass the proxy (NO_PROXY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    #[x_kube(validation = Rule::new(rules::NO_PROXY.rule).message(rules::NO_PROXY.message))]
    pub no_proxy: Option<String>,
}

/// The snapshot stack (`spec.snapshots`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotsSpec {
    /// The snapshot-controller (`dhi.io/snapshot-controller`, the release of `spec.version`'s
    /// csi-snapshotter) and, when the cluster has none, the snapshot.storage.k8s.io CRDs of the
    /// same external-snapshotter release. When another installation already provides the CRDs
    /// or a snapshot-controller, those are used and nothing is installed (condition
    /// SnapshotController, reason Foreign).
    #[serde(default)]
    pub controller: SnapshotControllerSpec,
}

/// The snapshot-controller Deployment (`snapshot-controller`, in `spec.namespace`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotControllerSpec {
    /// Install the snapshot-controller (and the snapshot CRDs when the cluster has none). The
    /// chart's value `snapshotController.rbac.create` installs its RBAC. Turning it off removes
    /// the Deployment; the CRDs are kept (deleting them would delete every VolumeSnapshot).
    #[serde(default)]
    pub enabled: bool,
    /// Replicas (leader-elected: one works, the others wait), 1 to 5. A
    /// PodDisruptionBudget keeps one available when there are two or more.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i32,
    /// Log verbosity (`--v`).
    #[serde(default = "default_log_level")]
    #[schemars(range(min = 0, max = 10))]
    pub log_level: i32,
    /// Resources of the snapshot-controller container (default: 10m CPU, 64Mi memory
    /// requested; 256Mi memory limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for SnapshotControllerSpec {
    fn default() -> Self {
        Self { enabled: false, replicas: default_replicas(), log_level: default_log_level(), resources: None }
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(rules::SERVICE_MONITOR_METRICS.rule).message(rules::SERVICE_MONITOR_METRICS.message))]
pub struct MetricsSpec {
    /// Expose the driver's Prometheus metrics on upstream's ports: the controller's driver on
    /// 3301 and its sidecars on 3302 (provisioner), 3303 (attacher), 3304 (resizer), 3305
    /// (livenessprobe), 3306 (snapshotter), behind the Service `ebs-csi-controller`; the node
    /// plugin on 3302 behind `ebs-csi-node` (internalTrafficPolicy Local).
    #[serde(default)]
    pub enabled: bool,
    /// Annotate the metrics Services with `prometheus.io/scrape` and `prometheus.io/port` (for
    /// Prometheus' annotation-based discovery), as upstream does by default.
    #[serde(default = "default_true")]
    pub prometheus_annotations: bool,
    /// Prometheus Operator ServiceMonitors (monitoring.coreos.com/v1) for the metrics Services,
    /// `ebs-csi-controller` and `ebs-csi-node` (upstream's `controller.serviceMonitor` and
    /// `node.serviceMonitor`). Needs `enabled: true`.
    #[serde(default)]
    pub service_monitor: ServiceMonitorSpec,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        Self { enabled: false, prometheus_annotations: true, service_monitor: ServiceMonitorSpec::default() }
    }
}

/// The driver's ServiceMonitors. Created only where the Prometheus Operator's ServiceMonitor CRD
/// is served; otherwise the `ServiceMonitor` condition says what to install, and nothing else is
/// affected.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Create the ServiceMonitors.
    #[serde(default)]
    pub enabled: bool,
    /// How often Prometheus scrapes each endpoint (upstream's `interval`, default `15s`): hours,
    /// minutes and seconds like `30s`, `1m` or `1m30s`.
    #[serde(default = "default_scrape_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(rules::SCRAPE_INTERVAL.rule).message(rules::SCRAPE_INTERVAL.message))]
    pub interval: String,
    /// Labels of the ServiceMonitors, at most 32, for the `serviceMonitorSelector` of your
    /// Prometheus (for example `release: prometheus`), besides the operator's own
    /// (`app.kubernetes.io/{name,instance,managed-by,part-of,version}`), which cannot be replaced.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    #[x_kube(validation = Rule::new(rules::POD_LABELS_RESERVED.rule).message(rules::POD_LABELS_RESERVED.message))]
    #[x_kube(validation = Rule::new(rules::LABEL_KEYS.rule).message(rules::LABEL_KEYS.message))]
    #[x_kube(validation = Rule::new(rules::LABEL_VALUES.rule).message(rules::LABEL_VALUES.message))]
    pub labels: BTreeMap<String, String>,
}

impl Default for ServiceMonitorSpec {
    fn default() -> Self {
        Self { enabled: false, interval: default_scrape_interval(), labels: BTreeMap::new() }
    }
}

fn default_scrape_interval() -> String {
    "15s".into()
}

/// The operator's AWS inventory (status.aws).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InventorySpec {
    /// Poll AWS for this cluster's volumes, snapshots and the driver's permissions.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often to poll (a duration like `5m`, from `1m` to `24h`). Jittered.
    #[serde(default = "default_interval")]
    #[x_kube(validation = Rule::new(rules::INTERVAL.rule).message(rules::INTERVAL.message))]
    pub interval: SpecDuration,
    /// How long an available, unreferenced volume must exist before it is reported as orphaned
    /// (`1m` to `8760h`).
    #[serde(default = "default_orphan_grace")]
    #[x_kube(validation = Rule::new(rules::ORPHAN_GRACE.rule).message(rules::ORPHAN_GRACE.message))]
    pub orphan_grace_period: SpecDuration,
    /// How long an attachment may be attaching/detaching before it is reported as stuck (`1m` to
    /// `168h`).
    #[serde(default = "default_stuck_threshold")]
    #[x_kube(validation = Rule::new(rules::STUCK_THRESHOLD.rule).message(rules::STUCK_THRESHOLD.message))]
    pub stuck_threshold: SpecDuration,
    /// Check that the newest completed snapshot is readable through the EBS direct API.
    #[serde(default)]
    pub verify_snapshots: bool,
}

impl Default for InventorySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: default_interval(),
            orphan_grace_period: default_orphan_grace(),
            stuck_threshold: default_stuck_threshold(),
            verify_snapshots: false,
        }
    }
}

/// Health reporting: how long a problem must last before it counts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HealthSpec {
    /// How long a driver pod may be unready, or fail to pull its image or crash, before the driver
    /// is reported Degraded (failures also Stalled) and Ready turns False. Pods starting within
    /// this time (a node joining, a rolling update) only make the driver Progressing. A duration
    /// like `5m`; at least `10s`, the kubelet's first back-off.
    #[serde(default = "default_degraded_after")]
    pub degraded_after: SpecDuration,
}

impl Default for HealthSpec {
    fn default() -> Self {
        Self { degraded_after: default_degraded_after() }
    }
}

fn default_degraded_after() -> SpecDuration {
    duration("5m")
}

fn duration(text: &str) -> SpecDuration {
    text.parse().unwrap_or_else(|e| unreachable!("built-in default: {e}"))
}
fn default_interval() -> SpecDuration {
    duration("5m")
}
fn default_orphan_grace() -> SpecDuration {
    duration("1h")
}
fn default_stuck_threshold() -> SpecDuration {
    duration("15m")
}

impl Default for HardenedCsiDriverSpec {
    fn default() -> Self {
        Self {
            version: None,
            namespace: default_namespace(),
            images: Images::default(),
            fips: false,
            aws: AwsSpec::default(),
            controller: ControllerSpec::default(),
            node: NodeSpec::default(),
            storage_classes: default_storage_classes(),
            volume_snapshot_classes: Vec::new(),
            volume_attributes_classes: Vec::new(),
            snapshots: SnapshotsSpec::default(),
            proxy: ProxySpec::default(),
            metrics: MetricsSpec::default(),
            inventory: InventorySpec::default(),
            health: HealthSpec::default(),
            adopt: false,
            adopt_objects: Vec::new(),
        }
    }
}
