//! The AWS calls the inventory makes, as an object-safe trait (`AwsApi`), with SDK-free request
//! and answer types so tests can swap in a fake, and the error every call returns.
//!
//! Pagination is the caller's job (`describe_volumes` / `describe_snapshots` return one page), so
//! the request count of a refresh is visible and bounded in one place: `inventory::refresh`.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use jiff::Timestamp;
use thiserror::Error;

/// One server-side filter of a Describe call (`Name=tag:...`, `Values=[...]`).
/// Tags as (key, value) pairs.
pub type Tags = Vec<(String, String)>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

impl Filter {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), values: vec![value.into()] }
    }
}

/// One page of a paginated Describe call.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// `NextToken` of the answer; None on the last page.
    pub next_token: Option<String>,
}

/// What the inventory needs of an EBS volume.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    pub id: String,
    pub size_gib: u64,
    pub volume_type: String,
    pub zone: String,
    /// creating, available, in-use, deleting, deleted, error.
    pub state: String,
    pub create_time: Option<Timestamp>,
    /// The `CSIVolumeName` tag (the PersistentVolume name the driver created it for).
    pub csi_volume_name: Option<String>,
    pub attachments: Vec<Attachment>,
    /// Every tag the volume carries (the retag decides from them what is missing).
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Attachment {
    pub instance_id: String,
    /// attaching, attached, detaching, detached, busy.
    pub state: String,
    pub attach_time: Option<Timestamp>,
}

/// What the inventory needs of an EBS snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub id: String,
    /// pending, completed, error, recoverable, recovering.
    pub state: String,
    pub volume_size_gib: u64,
    pub start_time: Option<Timestamp>,
    /// Every tag the snapshot carries.
    pub tags: BTreeMap<String, String>,
}

/// One IAM preflight request: an EC2 call made with `DryRun=true`, shaped like the driver's own
/// request (same tags), so that IAM conditions on request and resource tags evaluate as they do
/// for the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    DescribeInstances,
    DescribeInstanceTypes,
    DescribeVolumesModifications,
    DescribeVolumeStatus,
    /// CreateVolume with the driver's tags on create (so it also needs `ec2:CreateTags`).
    CreateVolume {
        zone: String,
        tags: Vec<(String, String)>,
    },
    CopyVolumes {
        volume_id: String,
        tags: Vec<(String, String)>,
    },
    DeleteVolume {
        volume_id: String,
    },
    AttachVolume {
        volume_id: String,
        instance_id: String,
    },
    DetachVolume {
        volume_id: String,
    },
    ModifyVolume {
        volume_id: String,
    },
    /// CreateSnapshot with the driver's snapshot tags on create.
    CreateSnapshot {
        volume_id: String,
        tags: Vec<(String, String)>,
    },
    DeleteSnapshot {
        snapshot_id: String,
    },
    LockSnapshot {
        snapshot_id: String,
    },
    EnableFastSnapshotRestores {
        zone: String,
        snapshot_id: String,
    },
    DeleteTags {
        volume_id: String,
        keys: Vec<String>,
    },
    /// CreateTags on an existing volume of this cluster with the tags a retag would add
    /// (`spec.aws.retagExistingVolumes`): a bare CreateTags, outside a create.
    CreateTags {
        volume_id: String,
        tags: Vec<(String, String)>,
    },
}

impl Probe {
    /// The EC2 API operation name (also the metrics `operation` label).
    pub fn operation(&self) -> &'static str {
        match self {
            Probe::DescribeInstances => "DescribeInstances",
            Probe::DescribeInstanceTypes => "DescribeInstanceTypes",
            Probe::DescribeVolumesModifications => "DescribeVolumesModifications",
            Probe::DescribeVolumeStatus => "DescribeVolumeStatus",
            Probe::CreateVolume { .. } => "CreateVolume",
            Probe::CopyVolumes { .. } => "CopyVolumes",
            Probe::DeleteVolume { .. } => "DeleteVolume",
            Probe::AttachVolume { .. } => "AttachVolume",
            Probe::DetachVolume { .. } => "DetachVolume",
            Probe::ModifyVolume { .. } => "ModifyVolume",
            Probe::CreateSnapshot { .. } => "CreateSnapshot",
            Probe::DeleteSnapshot { .. } => "DeleteSnapshot",
            Probe::LockSnapshot { .. } => "LockSnapshot",
            Probe::EnableFastSnapshotRestores { .. } => "EnableFastSnapshotRestores",
            Probe::DeleteTags { .. } => "DeleteTags",
            Probe::CreateTags { .. } => "CreateTags",
        }
    }
}

impl Probe {
    /// The creating probes, which prove the endpoint honours DryRun before destructive ones run
    /// (performed anyway, they add a volume or a snapshot and remove nothing).
    pub fn canary(&self) -> bool {
        matches!(self, Probe::CreateVolume { .. } | Probe::CreateSnapshot { .. })
    }

    /// Probes of actions that remove, change or cost something if performed.
    pub fn destructive(&self) -> bool {
        !self.canary()
            && !matches!(
                self,
                Probe::DescribeInstances
                    | Probe::DescribeInstanceTypes
                    | Probe::DescribeVolumesModifications
                    | Probe::DescribeVolumeStatus
            )
    }

    /// Describe calls (read-only: a success despite DryRun performs nothing).
    pub fn read_only(&self) -> bool {
        !self.canary() && !self.destructive()
    }
}

/// What a DryRun probe says about one action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `DryRunOperation` (or, for a Describe call, a success: moto ignores DryRun there, and a
    /// read changes nothing).
    Allowed,
    /// A mutating call that succeeded despite DryRun: the endpoint performed it. Holds what it
    /// returned (the created resource's ID, when there is one). Every probe stops after this.
    Performed(String),
    /// `UnauthorizedOperation` / `AccessDenied`.
    Denied,
    /// Any other answer (for example `InvalidVolume.NotFound` when there is no volume of this
    /// cluster to test against): the permission could not be decided. Holds the error code.
    Undecided(String),
}

/// A KMS operation the driver's volumes need on a key, probed with `DryRun=true` as the driver's
/// identity (KMS answers `DryRunOperationException` when it would have succeeded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KmsProbe {
    /// GenerateDataKeyWithoutPlaintext, what EC2 asks for a new encrypted volume; the canary (if
    /// an endpoint performed it, it would return an encrypted data key and change nothing).
    GenerateDataKey,
    /// CreateGrant for the caller itself, with the operations EC2's own grants carry; sent only
    /// after the canary answered DryRunOperation (performed, it would leave a grant behind).
    CreateGrant,
    Encrypt,
    /// Decrypt and ReEncrypt need a ciphertext of the key: the probe sends a placeholder, and KMS
    /// may answer `InvalidCiphertextException` instead of deciding (reported as unverified).
    Decrypt,
    ReEncrypt,
}

impl KmsProbe {
    /// The KMS API operation name (also the metrics `operation` label).
    pub fn operation(self) -> &'static str {
        match self {
            KmsProbe::GenerateDataKey => "GenerateDataKeyWithoutPlaintext",
            KmsProbe::CreateGrant => "CreateGrant",
            KmsProbe::Encrypt => "Encrypt",
            KmsProbe::Decrypt => "Decrypt",
            KmsProbe::ReEncrypt => "ReEncrypt",
        }
    }

    /// The IAM action(s) the verdict decides.
    pub fn actions(self) -> &'static [&'static str] {
        match self {
            KmsProbe::GenerateDataKey => &["kms:GenerateDataKey*"],
            KmsProbe::CreateGrant => &["kms:CreateGrant"],
            KmsProbe::Encrypt => &["kms:Encrypt"],
            KmsProbe::Decrypt => &["kms:Decrypt"],
            KmsProbe::ReEncrypt => &["kms:ReEncrypt*"],
        }
    }
}

/// What DescribeKey said of a key.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KmsKey {
    pub arn: String,
    /// KeyState: Enabled, Disabled, PendingDeletion, PendingImport, Unavailable, ...
    pub state: String,
    /// KeyManager: AWS or CUSTOMER.
    pub manager: String,
    /// KeySpec (SYMMETRIC_DEFAULT for what EBS can use).
    pub spec: String,
    /// KeyUsage (ENCRYPT_DECRYPT for what EBS can use).
    pub usage: String,
}

/// A KMS answer: the verdict and, for a denial, AWS's message (which says whether an
/// identity-based or the resource-based policy, the key policy, denied it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsAnswer {
    pub verdict: Verdict,
    pub message: String,
}

/// The identity whose permissions are probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Human description, for example `irsa role arn:aws:iam::...:role/x (service account
    /// kube-system/ebs-csi-controller-sa)`.
    pub description: String,
    /// The caller ARN AWS reported (GetCallerIdentity or the assumed role user), when known.
    pub arn: Option<String>,
    /// Set when these are not the driver's credentials and cannot be (static keys the operator
    /// never reads): the preflight is skipped and this says how to verify them instead.
    pub not_verifiable: Option<String>,
}

/// Broad class of an AWS failure: decides retries, metrics outcome and condition reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// RequestLimitExceeded, Throttling, ...: retried with backoff.
    Throttled,
    /// HTTP 5xx: retried with backoff.
    Server,
    /// Timeouts and connection failures: retried with backoff.
    Transport,
    /// UnauthorizedOperation, AccessDenied: not retried.
    Denied,
    /// Missing, invalid or expired credentials, or a failed role assumption: not retried.
    Credentials,
    /// Anything else the service rejected: not retried.
    Client,
}

impl ErrorClass {
    pub fn retryable(self) -> bool {
        matches!(self, ErrorClass::Throttled | ErrorClass::Server | ErrorClass::Transport)
    }

    /// The metrics `outcome` label of a request that failed this way.
    pub fn outcome(self) -> &'static str {
        match self {
            ErrorClass::Throttled => "throttled",
            ErrorClass::Server => "server_error",
            ErrorClass::Transport => "transport_error",
            ErrorClass::Denied => "denied",
            ErrorClass::Credentials => "credentials_error",
            ErrorClass::Client => "client_error",
        }
    }
}

/// Error codes AWS uses for throttling (EC2 says `RequestLimitExceeded`).
const THROTTLING_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "EC2ThrottledException",
    "BandwidthLimitExceeded",
];

const DENIED_CODES: &[&str] =
    &["UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "Client.UnauthorizedOperation"];

const CREDENTIAL_CODES: &[&str] = &[
    "AuthFailure",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidIdentityToken",
    "IDPRejectedClaim",
    "InvalidTokenException",
    "IDPCommunicationError",
    "NoCredentials",
    "ServiceAccountToken",
    "OptInRequired",
];

/// Classifies an AWS error code and HTTP status.
pub fn classify(code: &str, http_status: Option<u16>) -> ErrorClass {
    if THROTTLING_CODES.contains(&code) || http_status == Some(429) {
        ErrorClass::Throttled
    } else if DENIED_CODES.contains(&code) {
        ErrorClass::Denied
    } else if CREDENTIAL_CODES.contains(&code) {
        ErrorClass::Credentials
    } else if http_status.is_some_and(|s| s >= 500)
        || code == "InternalError"
        || code == "ServiceUnavailable"
        || code == "Unavailable"
    {
        ErrorClass::Server
    } else if code == "Timeout" || code == "ConnectionError" {
        ErrorClass::Transport
    } else {
        ErrorClass::Client
    }
}

/// A failed AWS call: which operation, the AWS error code (or `Timeout`, `ConnectionError`,
/// `InvalidResponse`, `NoCredentials`) and AWS's message.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{operation}: {code}: {message}")]
pub struct AwsError {
    pub operation: String,
    pub code: String,
    pub message: String,
    pub class: ErrorClass,
    /// Requests made before giving up (1 when not retried).
    pub attempts: u32,
}

impl AwsError {
    pub fn new(
        operation: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
        http_status: Option<u16>,
    ) -> Self {
        let code = code.into();
        let class = classify(&code, http_status);
        Self { operation: operation.into(), code, message: message.into(), class, attempts: 1 }
    }

    pub fn with_class(mut self, class: ErrorClass) -> Self {
        self.class = class;
        self
    }
}

/// The AWS calls of one refresh. Object-safe so the poller holds `Arc<dyn AwsApi>`; every
/// implementation counts each request in the metrics by operation and outcome.
pub trait AwsApi: Send + Sync {
    /// Region the calls go to.
    fn region(&self) -> &str;
    /// Whether AWS FIPS endpoints are used.
    fn fips(&self) -> bool;
    /// Resolves the credentials (assuming a role where configured) and says whose they are.
    fn principal(&self) -> BoxFuture<'_, Result<Principal, AwsError>>;
    /// One page of DescribeVolumes (at most 500 volumes) with these filters.
    fn describe_volumes(
        &self,
        filters: &[Filter],
        next_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<Volume>, AwsError>>;
    /// One page of DescribeSnapshots (at most 1000) of snapshots owned by this account.
    fn describe_snapshots(
        &self,
        filters: &[Filter],
        next_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<Snapshot>, AwsError>>;
    /// Availability zones of the region (state available).
    fn availability_zones(&self) -> BoxFuture<'_, Result<Vec<String>, AwsError>>;
    /// The account's EBS encryption-by-default setting.
    fn encryption_by_default(&self) -> BoxFuture<'_, Result<bool, AwsError>>;
    /// The account's default EBS KMS key. Best effort: one attempt, no retries.
    fn default_kms_key_id(&self) -> BoxFuture<'_, Result<String, AwsError>>;
    /// One DryRun probe.
    fn probe(&self, probe: &Probe) -> BoxFuture<'_, Result<Verdict, AwsError>>;
    /// DescribeKey of a key ID, alias or ARN, as the probed identity. A denial is an `Ok` answer
    /// with `Verdict::Denied` (the key's metadata stays unknown).
    fn describe_key(&self, key: &str) -> BoxFuture<'_, Result<Result<KmsKey, KmsAnswer>, AwsError>>;
    /// One KMS DryRun probe on `key` (a key ARN) as the probed identity; `grantee` is the
    /// principal a CreateGrant probe names (the caller itself).
    fn kms_probe(&self, probe: KmsProbe, key: &str, grantee: &str) -> BoxFuture<'_, Result<KmsAnswer, AwsError>>;
    /// First page of ListSnapshotBlocks (EBS direct API): the number of blocks listed.
    /// Best effort: one attempt, no retries.
    fn list_snapshot_blocks(&self, snapshot_id: &str) -> BoxFuture<'_, Result<u64, AwsError>>;
    /// One CreateTags call: adds (or sets) `tags` on every resource of `resource_ids` (volumes and
    /// snapshots), retried by the SDK on throttling like every call. The only call that changes
    /// anything in AWS, made by the retag of existing volumes alone.
    fn create_tags(&self, resource_ids: &[String], tags: &[(String, String)]) -> BoxFuture<'_, Result<(), AwsError>>;
}
