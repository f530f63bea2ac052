//! The IAM preflight: which EC2 actions the driver needs (AmazonEBSCSIDriverPolicy, see
//! docs/dhi-images.md) and how each one is probed.
//!
//! Describe calls the inventory makes anyway (zones, volumes, snapshots) count as probes of their
//! own action. Every other action is called with `DryRun=true`, shaped like the driver's own
//! request: CreateVolume and CreateSnapshot carry the driver's tags on create, and calls on a
//! resource target a volume or snapshot of this cluster when one exists, so IAM conditions on
//! request and resource tags (which the managed policy uses) evaluate as they would for the
//! driver. `ec2:CreateTags` is granted to the driver only as part of a create (condition
//! `ec2:CreateAction`), so it is decided by the tagged CreateVolume probe, not by a bare
//! CreateTags call that the managed policy would deny.
//!
//! Probe safety: the creating probes (CreateVolume, then CreateSnapshot) are the DryRun canary.
//! Were an endpoint to perform them, they would add a 1 GiB volume or a snapshot and remove
//! nothing. Only after one of them answered `DryRunOperation` are the probes of destructive
//! actions (delete, detach, attach, modify, lock, fast restore, untag, copy) sent; an endpoint that
//! performed a DryRun call stops every further probe, and the report says so. Probes aim only at
//! volumes attached to nothing and completed snapshots (`inventory::targets`); AttachVolume aims
//! at a real instance of the cluster from a Node's providerID, so EC2 decides it.
//!
//! KMS (`kms_run`): for every key a StorageClass encrypts with (its `kmsKeyId`, or the account's
//! default EBS key from GetEbsDefaultKmsKeyId for an encrypted class without one), one DescribeKey
//! (the key exists, is enabled, in the region, the alias or ARN resolves) and the DryRun probes of
//! what EC2 asks KMS on the driver's behalf, each as the driver's identity: GenerateDataKey*
//! (the canary: performed, it changes nothing), then CreateGrant, Encrypt, Decrypt and ReEncrypt*.
//! A key of another account is probed the same way. The AWS managed key `aws/ebs` is not probed:
//! its key policy lets every principal of the account use it through EC2 and only through EC2, so
//! a direct call would be denied whatever the driver may do. A denial by the key policy is told
//! apart from one by the identity's IAM policy (KMS's message says which) and reported as such.

use std::collections::BTreeMap;

use super::api::{AwsApi, AwsError, KmsAnswer, KmsProbe, Probe, Tags, Verdict};
use super::retag;
use super::{TAG_CLUSTER, TAG_CLUSTER_NAME, TAG_CSI_SNAPSHOT_NAME, TAG_CSI_VOLUME_NAME};
use crate::crd::{KmsKeyReport, PermissionReport, UnverifiedAction};

/// Every EC2 action the driver uses, in the order they are reported.
pub const DRIVER_ACTIONS: [&str; 19] = [
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeInstances",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeSnapshots",
    "ec2:DescribeVolumes",
    "ec2:DescribeVolumesModifications",
    "ec2:DescribeVolumeStatus",
    "ec2:CreateVolume",
    "ec2:CopyVolumes",
    "ec2:DeleteVolume",
    "ec2:AttachVolume",
    "ec2:DetachVolume",
    "ec2:ModifyVolume",
    "ec2:CreateSnapshot",
    "ec2:DeleteSnapshot",
    "ec2:LockSnapshot",
    "ec2:EnableFastSnapshotRestores",
    "ec2:CreateTags",
    "ec2:DeleteTags",
];

/// Ids used when this cluster has no volume, snapshot or instance to aim a probe at. EC2 may then
/// answer `...NotFound` instead of deciding, which is reported as unverified.
pub const PLACEHOLDER_VOLUME: &str = "vol-0123456789abcdef0";
pub const PLACEHOLDER_SNAPSHOT: &str = "snap-0123456789abcdef0";
pub const PLACEHOLDER_INSTANCE: &str = "i-0123456789abcdef0";
/// The PersistentVolume / VolumeSnapshot name the probes' tags carry.
pub const PROBE_NAME: &str = "hardened-csi-operator-preflight";

/// What the probes aim at.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    pub cluster_id: Option<String>,
    pub zone: Option<String>,
    /// A volume of this cluster (the newest), if any.
    pub volume_id: Option<String>,
    /// A completed snapshot of this cluster (the newest), if any.
    pub snapshot_id: Option<String>,
    /// An EC2 instance of this cluster (from a Node's providerID), if any.
    pub instance_id: Option<String>,
    /// With `spec.aws.retagExistingVolumes`: the tags a retag sets, and a volume of this cluster
    /// (any state) to aim the CreateTags probe at.
    pub retag: Option<(Option<String>, Tags)>,
}

/// The tags the driver puts on a volume it creates.
pub fn volume_tags(cluster_id: Option<&str>) -> Vec<(String, String)> {
    let mut tags = vec![
        (TAG_CSI_VOLUME_NAME.to_string(), PROBE_NAME.to_string()),
        (TAG_CLUSTER.to_string(), "true".to_string()),
        ("kubernetes.io/created-for/pv/name".to_string(), PROBE_NAME.to_string()),
    ];
    if let Some(id) = cluster_id {
        tags.push((TAG_CLUSTER_NAME.to_string(), id.to_string()));
        tags.push((format!("kubernetes.io/cluster/{id}"), "owned".to_string()));
    }
    tags
}

/// The tags the driver puts on a snapshot it creates.
pub fn snapshot_tags(cluster_id: Option<&str>) -> Vec<(String, String)> {
    let mut tags = vec![
        (TAG_CSI_SNAPSHOT_NAME.to_string(), PROBE_NAME.to_string()),
        (TAG_CLUSTER.to_string(), "true".to_string()),
    ];
    if let Some(id) = cluster_id {
        tags.push((TAG_CLUSTER_NAME.to_string(), id.to_string()));
    }
    tags
}

/// The DryRun probes, each with the actions its verdict decides.
pub fn plan(t: &Targets) -> Vec<(&'static [&'static str], Probe)> {
    let cluster = t.cluster_id.as_deref();
    let zone = t.zone.clone().unwrap_or_default();
    let vol = t.volume_id.clone().unwrap_or_else(|| PLACEHOLDER_VOLUME.to_string());
    let snap = t.snapshot_id.clone().unwrap_or_else(|| PLACEHOLDER_SNAPSHOT.to_string());
    let instance = t.instance_id.clone().unwrap_or_else(|| PLACEHOLDER_INSTANCE.to_string());
    let mut probes: Vec<(&'static [&'static str], Probe)> = vec![
        (&["ec2:DescribeInstances"], Probe::DescribeInstances),
        (&["ec2:DescribeInstanceTypes"], Probe::DescribeInstanceTypes),
        (&["ec2:DescribeVolumesModifications"], Probe::DescribeVolumesModifications),
        (&["ec2:DescribeVolumeStatus"], Probe::DescribeVolumeStatus),
        (
            &["ec2:CreateVolume", "ec2:CreateTags"],
            Probe::CreateVolume { zone: zone.clone(), tags: volume_tags(cluster) },
        ),
        (&["ec2:CreateSnapshot"], Probe::CreateSnapshot { volume_id: vol.clone(), tags: snapshot_tags(cluster) }),
        (&["ec2:CopyVolumes"], Probe::CopyVolumes { volume_id: vol.clone(), tags: volume_tags(cluster) }),
        (&["ec2:DeleteVolume"], Probe::DeleteVolume { volume_id: vol.clone() }),
        (&["ec2:AttachVolume"], Probe::AttachVolume { volume_id: vol.clone(), instance_id: instance }),
        (&["ec2:DetachVolume"], Probe::DetachVolume { volume_id: vol.clone() }),
        (&["ec2:ModifyVolume"], Probe::ModifyVolume { volume_id: vol.clone() }),
        (&["ec2:DeleteSnapshot"], Probe::DeleteSnapshot { snapshot_id: snap.clone() }),
        (&["ec2:LockSnapshot"], Probe::LockSnapshot { snapshot_id: snap.clone() }),
        (&["ec2:EnableFastSnapshotRestores"], Probe::EnableFastSnapshotRestores { zone, snapshot_id: snap }),
        (&["ec2:DeleteTags"], Probe::DeleteTags { volume_id: vol, keys: vec![format!("{PROBE_NAME}/probe")] }),
    ];
    // A bare CreateTags on an existing volume, which the managed policy does not grant: sent only
    // when the retag is on (performed, it would set on one volume the tags the retag sets anyway).
    if let Some((volume, tags)) = &t.retag {
        let volume_id = volume.clone().unwrap_or_else(|| PLACEHOLDER_VOLUME.to_string());
        probes.push((&[retag::ACTION], Probe::CreateTags { volume_id, tags: tags.clone() }));
    }
    probes
}

/// Number of requests `run` makes (the fixed part of a refresh's request budget), +1 with the
/// retag on.
pub fn probe_count() -> usize {
    plan(&Targets::default()).len()
}

/// Runs every DryRun probe and merges their verdicts with those already known from real calls
/// (`known`: action and verdict). Throttling and outages that outlast the retries fail the whole
/// preflight: a permission that could not be asked is not reported as missing.
pub async fn run(
    api: &dyn AwsApi,
    targets: &Targets,
    known: &[(&'static str, Verdict)],
    principal: String,
) -> Result<PermissionReport, AwsError> {
    let mut verdicts: Vec<(&'static str, Verdict)> = known.to_vec();
    let mut dry_run_proven = false;
    let mut stopped: Option<String> = None;
    for (actions, probe) in plan(targets) {
        let verdict = if stopped.is_some() {
            Verdict::Undecided(PROBING_STOPPED.to_string())
        } else if probe.destructive() && !dry_run_proven {
            Verdict::Undecided(NO_CANARY.to_string())
        } else {
            let verdict = api.probe(&probe).await?;
            match &verdict {
                Verdict::Performed(what) => {
                    stopped = Some(format!(
                        "the EC2 endpoint performed {} despite DryRun ({what}); no further probe was sent. Check \
                            spec.aws.ec2Endpoint / --aws-endpoint-url: it is not EC2, or it ignores DryRun{}",
                        probe.operation(),
                        if what.is_empty() { String::new() } else { format!("; {what} was created by the probe") },
                    ));
                }
                Verdict::Allowed if probe.canary() => dry_run_proven = true,
                _ => {}
            }
            verdict
        };
        for action in actions {
            verdicts.push((action, verdict.clone()));
        }
    }
    let mut out = report(principal, &verdicts);
    if stopped.is_none() && !dry_run_proven {
        stopped = Some(
            "no DryRun canary (CreateVolume, CreateSnapshot) answered DryRunOperation, so the probes of destructive \
                actions were not sent"
                .to_string(),
        );
    }
    out.probes_stopped = stopped;
    Ok(out)
}

/// The keys the StorageClasses encrypt with (from `spec.storageClasses`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KmsUse {
    /// Key as named (`kmsKeyId`) -> the StorageClasses naming it.
    pub keys: BTreeMap<String, Vec<String>>,
    /// Encrypted StorageClasses without `kmsKeyId`: they use the account's default EBS key.
    pub default_key_classes: Vec<String>,
}

impl KmsUse {
    /// From the StorageClasses of a spec.
    pub fn from_classes(classes: &[crate::crd::StorageClassSpec]) -> Self {
        let mut out = KmsUse::default();
        for c in classes.iter().filter(|c| c.encrypted) {
            match c.kms_key_id.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
                Some(key) => out.keys.entry(key.to_string()).or_default().push(c.name.clone()),
                None => out.default_key_classes.push(c.name.clone()),
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.default_key_classes.is_empty()
    }
}

/// The KMS DryRun probes of one key, in the order they are sent (the canary first).
pub const KMS_PROBES: [KmsProbe; 5] =
    [KmsProbe::GenerateDataKey, KmsProbe::CreateGrant, KmsProbe::Encrypt, KmsProbe::Decrypt, KmsProbe::ReEncrypt];

/// Requests `kms_run` makes for a customer managed key that DescribeKey found usable.
pub fn kms_requests_per_key() -> usize {
    1 + KMS_PROBES.len()
}

/// Whether `key` names the AWS managed EBS key (`alias/aws/ebs`, or its alias ARN).
pub fn is_aws_managed_ebs_alias(key: &str) -> bool {
    key == "alias/aws/ebs" || (key.starts_with("arn:") && key.ends_with(":alias/aws/ebs"))
}

/// The region and account of a KMS ARN (`arn:aws:kms:REGION:ACCOUNT:key/...` or `:alias/...`).
fn arn_region_account(key: &str) -> Option<(&str, &str)> {
    let mut parts = key.split(':');
    let (arn, _partition, service, region, account) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (arn == "arn" && service == "kms").then_some((region, account))
}

/// `action on key`, the form KMS entries take in `missing` and `unverified`.
fn on(action: &str, key: &str) -> String {
    format!("{action} on {key}")
}

/// Whether a KMS AccessDenied message blames the key policy (resource-based), not IAM.
fn key_policy_denial(message: &str) -> bool {
    message.contains("resource-based policy") || message.contains("key policy")
}

/// Probes every key of `kms` as the identity of `api` and adds the verdicts to `report`:
/// `checked`, `missing` and `unverified` entries `kms:Action on <key>`, and one `kmsKeys` entry
/// per distinct key. `default_key` is GetEbsDefaultKmsKeyId's answer (an error code when it
/// failed); `caller_arn` is the probed identity (the CreateGrant probe's grantee).
pub async fn kms_run(
    api: &dyn AwsApi,
    kms: &KmsUse,
    default_key: Result<&str, &str>,
    caller_arn: Option<&str>,
    report: &mut PermissionReport,
) -> Result<(), AwsError> {
    let mut keys: BTreeMap<String, (Vec<String>, bool)> =
        kms.keys.iter().map(|(k, classes)| (k.clone(), (classes.clone(), false))).collect();
    if !kms.default_key_classes.is_empty() {
        match default_key {
            Ok(key) => {
                let entry = keys.entry(key.to_string()).or_default();
                entry.0.extend(kms.default_key_classes.iter().cloned());
                entry.1 = true;
            }
            Err(code) => {
                report.kms_keys.push(KmsKeyReport {
                    key: "account default EBS key".to_string(),
                    account_default: true,
                    storage_classes: kms.default_key_classes.clone(),
                    ..KmsKeyReport::default()
                });
                report.unverified.push(UnverifiedAction {
                    action: on("kms:*", "the account's default EBS key"),
                    reason: format!(
                        "the key StorageClass {} encrypts with is unknown: ec2:GetEbsDefaultKmsKeyId answered {code} \
                            to the probed identity (the driver itself never calls it); grant it, or name the key in \
                            kmsKeyId, to have the key probed",
                        kms.default_key_classes.join(", ")
                    ),
                });
            }
        }
    }
    let caller_account = caller_arn.and_then(|a| a.split(':').nth(4)).filter(|a| !a.is_empty());
    for (key, (classes, account_default)) in keys {
        let mut entry =
            KmsKeyReport { key: key.clone(), account_default, storage_classes: classes, ..Default::default() };
        probe_key(api, &key, caller_arn, caller_account, &mut entry, report).await?;
        report.kms_keys.push(entry);
    }
    Ok(())
}

async fn probe_key(
    api: &dyn AwsApi,
    key: &str,
    caller_arn: Option<&str>,
    caller_account: Option<&str>,
    entry: &mut KmsKeyReport,
    report: &mut PermissionReport,
) -> Result<(), AwsError> {
    if is_aws_managed_ebs_alias(key) {
        entry.manager = Some("AWS".to_string());
        return Ok(());
    }
    if let Some((region, account)) = arn_region_account(key) {
        if region != api.region() {
            entry.problem = Some(format!(
                "the key is in region {region}: EBS volumes in {} can only be encrypted with a key of {}",
                api.region(),
                api.region()
            ));
            return Ok(());
        }
        entry.cross_account = caller_account.is_some_and(|c| c != account);
    }
    let described = match api.describe_key(key).await? {
        Ok(k) => k,
        Err(answer) => {
            let action = on("kms:DescribeKey", key);
            report.checked.push(action.clone());
            match &answer.verdict {
                Verdict::Undecided(code) if code == "NotFoundException" => {
                    entry.problem =
                        Some(format!("KMS has no key {key} in {} ({code}: {})", api.region(), answer.message));
                }
                verdict => record(report, entry, "kms:DescribeKey", &action, verdict, &answer.message),
            }
            return Ok(());
        }
    };
    report.checked.push(on("kms:DescribeKey", &described.arn));
    entry.arn = Some(described.arn.clone());
    entry.state = Some(described.state.clone());
    entry.manager = Some(described.manager.clone());
    if let Some((_, account)) = arn_region_account(&described.arn) {
        entry.cross_account = caller_account.is_some_and(|c| c != account);
    }
    if described.state != "Enabled" {
        entry.problem = Some(format!("the key is {}: EBS cannot create or attach volumes with it", described.state));
        return Ok(());
    }
    if (!described.spec.is_empty() && described.spec != "SYMMETRIC_DEFAULT")
        || (!described.usage.is_empty() && described.usage != "ENCRYPT_DECRYPT")
    {
        entry.problem = Some(format!(
            "the key is {} for {}: EBS needs a symmetric encryption key (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT)",
            described.spec, described.usage
        ));
        return Ok(());
    }
    if described.manager == "AWS" {
        return Ok(());
    }
    let arn = described.arn.as_str();
    let mut canary_proven = false;
    let mut stopped = false;
    for probe in KMS_PROBES {
        let answer = if stopped {
            KmsAnswer { verdict: Verdict::Undecided(PROBING_STOPPED.to_string()), message: String::new() }
        } else if probe == KmsProbe::CreateGrant && !canary_proven {
            KmsAnswer { verdict: Verdict::Undecided(NO_KMS_CANARY.to_string()), message: String::new() }
        } else if probe == KmsProbe::CreateGrant && caller_arn.is_none() {
            KmsAnswer { verdict: Verdict::Undecided(NO_GRANTEE.to_string()), message: String::new() }
        } else {
            let answer = api.kms_probe(probe, arn, caller_arn.unwrap_or_default()).await?;
            match &answer.verdict {
                Verdict::Performed(_) => {
                    stopped = true;
                    report.probes_stopped.get_or_insert_with(|| {
                        format!(
                            "the KMS endpoint performed {} on {arn} despite DryRun; no further KMS probe was sent. \
                                Check spec.aws.kmsEndpoint / --aws-endpoint-url: it is not KMS, or it ignores DryRun",
                            probe.operation()
                        )
                    });
                }
                Verdict::Allowed if probe == KmsProbe::GenerateDataKey => canary_proven = true,
                _ => {}
            }
            answer
        };
        for action in probe.actions() {
            let label = on(action, arn);
            report.checked.push(label.clone());
            record(report, entry, action, &label, &answer.verdict, &answer.message);
        }
    }
    Ok(())
}

/// Files one KMS verdict. A denial the key policy made is listed in `deniedByKeyPolicy` and
/// reported unverified (a key policy may allow an action only through EC2, `kms:ViaService`,
/// which a direct probe cannot be); so is a denied CreateGrant (a policy may allow it only for
/// grants EC2 makes, `kms:GrantIsForAWSResource`, as upstream's example policy does). Any other
/// denial is missing.
fn record(
    report: &mut PermissionReport,
    entry: &mut KmsKeyReport,
    action: &str,
    label: &str,
    verdict: &Verdict,
    message: &str,
) {
    match verdict {
        Verdict::Allowed | Verdict::Performed(_) => {}
        Verdict::Denied if key_policy_denial(message) => {
            entry.denied_by_key_policy.push(action.to_string());
            report.unverified.push(UnverifiedAction {
                action: label.to_string(),
                reason: format!(
                    "the key policy denied a direct {action} ({message}); if it allows {action} only through EC2 \
                        (kms:ViaService ec2.<region>.amazonaws.com) the driver's volumes still work, otherwise allow \
                        the driver's role in the key policy"
                ),
            });
        }
        Verdict::Denied if action == "kms:CreateGrant" => report.unverified.push(UnverifiedAction {
            action: label.to_string(),
            reason: format!(
                "KMS denied a direct CreateGrant ({message}); EC2 creates the driver's grants on its behalf, which an \
                    IAM policy may allow only then (kms:GrantIsForAWSResource, as upstream's example KMS policy does). \
                    If the role has no kms:CreateGrant on the key at all, encrypted volumes cannot be created"
            ),
        }),
        Verdict::Denied => report.missing.push(label.to_string()),
        Verdict::Undecided(code) => {
            report.unverified.push(UnverifiedAction { action: label.to_string(), reason: kms_undecided_reason(code) })
        }
    }
}

fn kms_undecided_reason(code: &str) -> String {
    match code {
        PROBING_STOPPED => "not probed: the endpoint performed an earlier DryRun call (see probesStopped)".to_string(),
        NO_KMS_CANARY => "not probed: GenerateDataKeyWithoutPlaintext (the KMS canary) did not answer \
            DryRunOperation, and a performed CreateGrant would leave a grant behind"
            .to_string(),
        NO_GRANTEE => "not probed: the probed identity's ARN is unknown (GetCallerIdentity failed), and a grant \
            names its grantee"
            .to_string(),
        "InvalidCiphertextException" => "KMS answered InvalidCiphertextException: a DryRun of this action needs a \
            ciphertext of the key, and the operator makes none (it encrypts nothing)"
            .to_string(),
        other => format!("KMS answered {other} instead of deciding the DryRun"),
    }
}

/// Undecided: the KMS canary (GenerateDataKeyWithoutPlaintext) did not prove DryRun.
const NO_KMS_CANARY: &str = "NoKmsDryRunCanary";
/// Undecided: no caller ARN to name as the grantee.
const NO_GRANTEE: &str = "NoGrantee";

/// Undecided because an earlier probe was performed by the endpoint.
const PROBING_STOPPED: &str = "ProbingStopped";
/// Undecided because no canary proved that the endpoint honours DryRun.
const NO_CANARY: &str = "NoDryRunCanary";

/// Builds the report from verdicts, in `DRIVER_ACTIONS` order.
pub fn report(principal: String, verdicts: &[(&'static str, Verdict)]) -> PermissionReport {
    let mut out = PermissionReport { principal, ..Default::default() };
    for action in DRIVER_ACTIONS.into_iter().chain([retag::ACTION]) {
        let Some((_, verdict)) = verdicts.iter().find(|(a, _)| *a == action) else { continue };
        out.checked.push(action.to_string());
        match verdict {
            Verdict::Allowed | Verdict::Performed(_) => {}
            Verdict::Denied => out.missing.push(action.to_string()),
            Verdict::Undecided(code) => {
                out.unverified.push(UnverifiedAction { action: action.to_string(), reason: undecided_reason(code) })
            }
        }
    }
    out
}

fn undecided_reason(code: &str) -> String {
    if code == PROBING_STOPPED {
        "not probed: the endpoint performed an earlier DryRun call (see probesStopped)".to_string()
    } else if code == NO_CANARY {
        "not probed: no DryRun canary proved the endpoint honours DryRun, and this action is destructive".to_string()
    } else if code.ends_with(".NotFound") || code.ends_with(".Malformed") {
        format!(
            "EC2 answered {code}: no resource of this cluster to aim the DryRun at; it is decided once the cluster \
                has one"
        )
    } else {
        format!("EC2 answered {code} instead of deciding the DryRun")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_driver_action_is_decided_by_exactly_one_source() {
        let planned: Vec<&str> = plan(&Targets::default()).iter().flat_map(|(a, _)| a.iter().copied()).collect();
        let real = ["ec2:DescribeAvailabilityZones", "ec2:DescribeVolumes", "ec2:DescribeSnapshots"];
        for action in DRIVER_ACTIONS {
            let n = planned.iter().filter(|a| **a == action).count() + real.iter().filter(|a| **a == action).count();
            assert_eq!(n, 1, "{action} is decided {n} times");
        }
        assert_eq!(probe_count(), 15);
        // The canaries come before every destructive probe.
        let order: Vec<Probe> = plan(&Targets::default()).into_iter().map(|(_, p)| p).collect();
        let last_canary = order.iter().rposition(Probe::canary).expect("a canary");
        let first_destructive = order.iter().position(Probe::destructive).expect("a destructive probe");
        assert!(last_canary < first_destructive, "{order:?}");
    }

    #[test]
    fn storage_classes_name_each_key_once_and_unencrypted_classes_none() {
        use crate::crd::StorageClassSpec;
        let class = |name: &str, key: Option<&str>, encrypted: bool| StorageClassSpec {
            name: name.into(),
            kms_key_id: key.map(str::to_string),
            encrypted,
            ..StorageClassSpec::default()
        };
        let kms = KmsUse::from_classes(&[
            class("a", Some("alias/k"), true),
            class("b", Some("alias/k"), true),
            class("c", None, true),
            class("d", None, false),
            class("e", Some(" "), true),
        ]);
        assert_eq!(kms.keys.len(), 1);
        assert_eq!(kms.keys["alias/k"], ["a", "b"]);
        assert_eq!(kms.default_key_classes, ["c", "e"], "an empty kmsKeyId is the account's default key");
        assert!(KmsUse::from_classes(&[class("d", None, false)]).is_empty());
        assert!(is_aws_managed_ebs_alias("alias/aws/ebs"));
        assert!(is_aws_managed_ebs_alias("arn:aws:kms:us-east-1:111122223333:alias/aws/ebs"));
        assert!(!is_aws_managed_ebs_alias("alias/aws/ebs-custom"));
        assert_eq!(
            arn_region_account("arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/k"),
            Some(("us-gov-west-1", "111122223333"))
        );
        assert_eq!(arn_region_account("alias/k"), None);
        assert!(key_policy_denial("... because no resource-based policy allows the kms:Encrypt action"));
        assert!(!key_policy_denial("... because no identity-based policy allows the kms:Encrypt action"));
    }

    #[test]
    fn report_lists_missing_and_unverified_in_policy_order() {
        let verdicts = vec![
            ("ec2:DeleteVolume", Verdict::Denied),
            ("ec2:DescribeVolumes", Verdict::Allowed),
            ("ec2:AttachVolume", Verdict::Undecided("InvalidInstanceID.NotFound".into())),
            ("ec2:CreateVolume", Verdict::Denied),
        ];
        let r = report("operator credentials".into(), &verdicts);
        assert_eq!(r.checked, ["ec2:DescribeVolumes", "ec2:CreateVolume", "ec2:DeleteVolume", "ec2:AttachVolume"]);
        assert_eq!(r.missing, ["ec2:CreateVolume", "ec2:DeleteVolume"]);
        assert_eq!(r.unverified.len(), 1);
        assert_eq!(r.unverified[0].action, "ec2:AttachVolume");
        assert!(r.unverified[0].reason.contains("InvalidInstanceID.NotFound"), "{}", r.unverified[0].reason);
    }

    #[test]
    fn probes_carry_the_driver_tags_and_cluster_targets() {
        let t = Targets {
            cluster_id: Some("prod".into()),
            zone: Some("us-east-1a".into()),
            volume_id: Some("vol-1".into()),
            snapshot_id: None,
            instance_id: Some("i-0real".into()),
            retag: None,
        };
        let p = plan(&t);
        let create = p.iter().find(|(a, _)| a.contains(&"ec2:CreateVolume")).map(|(_, p)| p.clone());
        let Some(Probe::CreateVolume { zone, tags }) = create else { panic!("no CreateVolume probe") };
        assert_eq!(zone, "us-east-1a");
        assert!(tags.contains(&(TAG_CLUSTER.to_string(), "true".to_string())));
        assert!(tags.contains(&(TAG_CLUSTER_NAME.to_string(), "prod".to_string())));
        assert!(p.iter().any(|(_, p)| *p == Probe::DeleteVolume { volume_id: "vol-1".into() }));
        assert!(p.iter().any(|(_, p)| *p == Probe::DeleteSnapshot { snapshot_id: PLACEHOLDER_SNAPSHOT.into() }));
        assert!(
            p.iter()
                .any(|(_, p)| *p == Probe::AttachVolume { volume_id: "vol-1".into(), instance_id: "i-0real".into() }),
            "AttachVolume aims at the cluster's instance"
        );
    }
}
