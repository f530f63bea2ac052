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

use super::api::{AwsApi, AwsError, Probe, Verdict};
use super::{TAG_CLUSTER, TAG_CLUSTER_NAME, TAG_CSI_SNAPSHOT_NAME, TAG_CSI_VOLUME_NAME};
use crate::crd::{PermissionReport, UnverifiedAction};

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
    vec![
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
    ]
}

/// Number of requests `run` makes (the fixed part of a refresh's request budget).
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

/// Undecided because an earlier probe was performed by the endpoint.
const PROBING_STOPPED: &str = "ProbingStopped";
/// Undecided because no canary proved that the endpoint honours DryRun.
const NO_CANARY: &str = "NoDryRunCanary";

/// Builds the report from verdicts, in `DRIVER_ACTIONS` order.
pub fn report(principal: String, verdicts: &[(&'static str, Verdict)]) -> PermissionReport {
    let mut out = PermissionReport { principal, ..Default::default() };
    for action in DRIVER_ACTIONS {
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
