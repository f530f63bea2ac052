//! One refresh of the inventory: asks AWS (through `AwsApi`) and turns the answers into an
//! `AwsStatus`. Never deletes or changes anything in AWS.
//!
//! Request budget of one refresh, V volumes and S snapshots of this cluster:
//! `ceil(V/500) + ceil(S/1000) + FIXED_REQUESTS` (+1 with snapshot verification, + the role
//! assumption when assumed credentials are renewed), each times at most the retry policy's
//! attempts when AWS throttles or fails.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::api::{AwsApi, AwsError, ErrorClass, Filter, Principal, Snapshot, Verdict, Volume};
use super::preflight::{self, Targets};
use super::{TAG_CLUSTER, TAG_CLUSTER_NAME};
use crate::crd::{
    AwsStatus, OrphanReport, OrphanVolume, SnapshotInventory, SnapshotVerification, StuckAttachment, StuckReport,
    VolumeInventory,
};

/// Orphans listed by name in the status (oldest first); the count covers all.
pub const ORPHANS_LISTED: usize = 20;

/// Requests of a refresh besides the Describe pages: GetCallerIdentity, DescribeAvailabilityZones,
/// GetEbsEncryptionByDefault, GetEbsDefaultKmsKeyId and the DryRun probes.
pub fn fixed_requests() -> usize {
    4 + preflight::probe_count()
}

/// The most requests a successful refresh makes without retries (role assumption aside):
/// `ceil(V/500) + ceil(S/1000) + fixed_requests()`, +1 with snapshot verification. An empty
/// result still takes one page of each.
pub fn request_budget(volumes: usize, snapshots: usize, verify_snapshots: bool) -> usize {
    volumes.div_ceil(500).max(1) + snapshots.div_ceil(1000).max(1) + fixed_requests() + usize::from(verify_snapshots)
}

/// What a refresh looks at, from `spec.aws` and `spec.inventory`.
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshParams {
    pub cluster_id: Option<String>,
    /// An available, unreferenced volume younger than this is not (yet) an orphan.
    pub orphan_grace: Duration,
    /// An attachment attaching/detaching for longer than this is stuck.
    pub stuck_threshold: Duration,
    /// Read the newest completed snapshot through the EBS direct API.
    pub verify_snapshots: bool,
}

impl Default for RefreshParams {
    fn default() -> Self {
        Self {
            cluster_id: None,
            orphan_grace: Duration::from_secs(3600),
            stuck_threshold: Duration::from_secs(900),
            verify_snapshots: false,
        }
    }
}

impl RefreshParams {
    /// From a driver's spec.
    pub fn from_spec(spec: &crate::crd::HardenedCsiDriverSpec) -> Self {
        Self {
            cluster_id: spec.aws.cluster_id.clone().filter(|c| !c.is_empty()),
            orphan_grace: spec.inventory.orphan_grace_period.get(),
            stuck_threshold: spec.inventory.stuck_threshold.get(),
            verify_snapshots: spec.inventory.verify_snapshots,
        }
    }

    /// Server-side filters selecting this cluster's resources.
    pub fn filters(&self) -> Vec<Filter> {
        match &self.cluster_id {
            Some(id) => vec![Filter::new(format!("tag:{TAG_CLUSTER_NAME}"), id.clone())],
            None => vec![Filter::new(format!("tag:{TAG_CLUSTER}"), "true")],
        }
    }

    pub fn scope(&self) -> String {
        match &self.cluster_id {
            Some(id) => format!("cluster {id}"),
            None => "account-wide".to_string(),
        }
    }
}

/// Names that keep a volume from being an orphan: PersistentVolume names of `ebs.csi.aws.com`
/// (matched against the `CSIVolumeName` tag) and their CSI volume handles (the volume id, which
/// also covers statically provisioned volumes).
pub type PvReferences = HashSet<String>;

/// What a refresh learnt before it failed: used to report permissions after a denial.
#[derive(Default)]
struct Partial {
    known: Vec<(&'static str, Verdict)>,
    principal: Option<Principal>,
}

/// Asks AWS and returns the new status. On failure the figures of `previous` are kept, marked
/// stale, with the error code; permissions are still updated when the failure is a denial.
pub async fn refresh(
    api: &dyn AwsApi,
    params: &RefreshParams,
    pvs: Option<&PvReferences>,
    previous: Option<&AwsStatus>,
    now: Timestamp,
) -> AwsStatus {
    let mut partial = Partial::default();
    match collect(api, params, pvs, now, &mut partial).await {
        Ok(mut status) => {
            status.checked_at = Some(now.to_string());
            status.last_success_at = Some(now.to_string());
            status
        }
        Err(err) => {
            tracing::warn!(operation = %err.operation, code = %err.code, attempts = err.attempts, "AWS inventory \
                refresh failed: {}", err.message);
            let mut status = failed(previous, params, &err, now);
            status.region = Some(api.region().to_string());
            status.fips_endpoints = api.fips();
            if err.class == ErrorClass::Denied {
                // What was decided before the denial is fresh; the denied call is missing.
                if let Some(action) = action_of(&err.operation) {
                    partial.known.push((action, Verdict::Denied));
                }
                let who = partial.principal.unwrap_or(Principal { description: String::new(), arn: None });
                let mut report = preflight::report(who.description, &partial.known);
                report.principal_arn = who.arn;
                status.permissions = report;
            }
            status
        }
    }
}

/// The status after a failed check: the previous figures, marked stale, with the error.
pub fn failed(previous: Option<&AwsStatus>, params: &RefreshParams, err: &AwsError, now: Timestamp) -> AwsStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.checked_at = Some(now.to_string());
    status.stale = true;
    status.last_error = Some(err.code.clone());
    status.last_error_message = Some(format!("{}: {}", err.operation, err.message));
    status.scope = params.scope();
    status
}

fn action_of(operation: &str) -> Option<&'static str> {
    preflight::DRIVER_ACTIONS.iter().copied().find(|a| a.strip_prefix("ec2:") == Some(operation))
}

async fn collect(
    api: &dyn AwsApi,
    params: &RefreshParams,
    pvs: Option<&PvReferences>,
    now: Timestamp,
    partial: &mut Partial,
) -> Result<AwsStatus, AwsError> {
    let who = api.principal().await?;
    partial.principal = Some(who.clone());

    let zones = api.availability_zones().await?;
    partial.known.push(("ec2:DescribeAvailabilityZones", Verdict::Allowed));
    // Account settings the driver itself never reads, so its role (AmazonEBSCSIDriverPolicy)
    // may lack them; moto answers 500 for the KMS key. Unknown is reported, not an error.
    let encryption = match api.encryption_by_default().await {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::debug!(code = %e.code, "EBS encryption by default unknown");
            None
        }
    };
    let kms = match api.default_kms_key_id().await {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::debug!(code = %e.code, "default EBS KMS key unknown");
            None
        }
    };

    let filters = params.filters();
    let mut volumes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = api.describe_volumes(&filters, token.clone()).await?;
        volumes.extend(page.items);
        token = next_token(token, page.next_token, "DescribeVolumes")?;
        if token.is_none() {
            break;
        }
    }
    partial.known.push(("ec2:DescribeVolumes", Verdict::Allowed));

    // OwnerIds=self is what EC2 honours; the owner-id filter is what moto honours.
    let mut snap_filters = filters.clone();
    if let Some(account) = who.arn.as_deref().and_then(account_of) {
        snap_filters.push(Filter::new("owner-id", account));
    }
    let mut snapshots = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = api.describe_snapshots(&snap_filters, token.clone()).await?;
        snapshots.extend(page.items);
        token = next_token(token, page.next_token, "DescribeSnapshots")?;
        if token.is_none() {
            break;
        }
    }
    partial.known.push(("ec2:DescribeSnapshots", Verdict::Allowed));

    let targets = Targets {
        cluster_id: params.cluster_id.clone(),
        zone: zones.first().cloned(),
        volume_id: newest(&volumes, |v| v.create_time).map(|v| v.id.clone()),
        snapshot_id: newest(&snapshots, |s| s.start_time).map(|s| s.id.clone()),
    };
    let mut permissions = preflight::run(api, &targets, &partial.known, who.description.clone()).await?;
    permissions.principal_arn = who.arn.clone();

    let mut snapshot_inventory = snapshot_inventory(&snapshots);
    if params.verify_snapshots {
        snapshot_inventory.verification = verify(api, &snapshots).await;
    }

    Ok(AwsStatus {
        checked_at: None,
        last_success_at: None,
        stale: false,
        last_error: None,
        last_error_message: None,
        scope: params.scope(),
        region: Some(api.region().to_string()),
        fips_endpoints: api.fips(),
        zones,
        encryption_by_default: encryption,
        default_kms_key_id: kms,
        volumes: volume_inventory(&volumes),
        orphaned: orphans(&volumes, pvs, params.orphan_grace, now),
        stuck: stuck(&volumes, params.stuck_threshold, now),
        snapshots: snapshot_inventory,
        permissions,
    })
}

/// The token of the next page. A server answering the token it was sent would page forever:
/// that is an invalid answer, not a reason to loop.
fn next_token(sent: Option<String>, received: Option<String>, operation: &str) -> Result<Option<String>, AwsError> {
    match received {
        Some(t) if sent.as_deref() == Some(t.as_str()) => Err(AwsError::new(
            operation,
            "InvalidResponse",
            format!("the page for NextToken {t:?} named itself as the next page"),
            None,
        )),
        other => Ok(other),
    }
}

/// The account id of an ARN (`arn:aws:sts::123456789012:assumed-role/...`).
fn account_of(arn: &str) -> Option<String> {
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then(|| account.to_string())
}

fn newest<T>(items: &[T], time: impl Fn(&T) -> Option<Timestamp>) -> Option<&T> {
    items.iter().max_by_key(|i| time(i))
}

pub fn volume_inventory(volumes: &[Volume]) -> VolumeInventory {
    let mut inv = VolumeInventory::default();
    for v in volumes {
        inv.count += 1;
        inv.total_gib += v.size_gib;
        *inv.by_state.entry(v.state.clone()).or_default() += 1;
        *inv.by_type.entry(v.volume_type.clone()).or_default() += 1;
        *inv.by_zone.entry(v.zone.clone()).or_default() += 1;
    }
    inv
}

pub fn snapshot_inventory(snapshots: &[Snapshot]) -> SnapshotInventory {
    let mut by_state = BTreeMap::new();
    let mut total = 0;
    for s in snapshots {
        *by_state.entry(s.state.clone()).or_default() += 1;
        total += s.volume_size_gib;
    }
    SnapshotInventory { count: snapshots.len() as u64, total_gib: total, by_state, verification: None }
}

fn older_than(t: Option<Timestamp>, limit: Duration, now: Timestamp) -> bool {
    let Some(t) = t else { return false };
    let Ok(limit) = SignedDuration::try_from(limit) else { return false };
    now.duration_since(t) >= limit
}

/// Available volumes referenced by no PersistentVolume, older than the grace period.
pub fn orphans(volumes: &[Volume], pvs: Option<&PvReferences>, grace: Duration, now: Timestamp) -> OrphanReport {
    let Some(pvs) = pvs else { return OrphanReport::default() };
    let mut found: Vec<&Volume> = volumes
        .iter()
        .filter(|v| v.state == "available")
        .filter(|v| !pvs.contains(&v.id) && !v.csi_volume_name.as_ref().is_some_and(|n| pvs.contains(n)))
        .filter(|v| older_than(v.create_time, grace, now))
        .collect();
    found.sort_by(|a, b| a.create_time.cmp(&b.create_time).then_with(|| a.id.cmp(&b.id)));
    OrphanReport {
        checked: true,
        count: found.len() as u64,
        total_gib: found.iter().map(|v| v.size_gib).sum(),
        volumes: found
            .iter()
            .take(ORPHANS_LISTED)
            .map(|v| OrphanVolume {
                volume_id: v.id.clone(),
                size_gib: v.size_gib,
                volume_type: v.volume_type.clone(),
                zone: v.zone.clone(),
                csi_volume_name: v.csi_volume_name.clone(),
                created_at: v.create_time.map(|t| t.to_string()).unwrap_or_default(),
            })
            .collect(),
    }
}

/// Attachments attaching/detaching for longer than the threshold, and volumes in `error`.
pub fn stuck(volumes: &[Volume], threshold: Duration, now: Timestamp) -> StuckReport {
    let mut out = StuckReport::default();
    for v in volumes {
        if v.state == "error" {
            out.error_volumes.push(v.id.clone());
        }
        for a in &v.attachments {
            if (a.state == "attaching" || a.state == "detaching") && older_than(a.attach_time, threshold, now) {
                out.attachments.push(StuckAttachment {
                    volume_id: v.id.clone(),
                    instance_id: a.instance_id.clone(),
                    state: a.state.clone(),
                    since: a.attach_time.map(|t| t.to_string()).unwrap_or_default(),
                });
            }
        }
    }
    out.error_volumes.sort();
    out.attachments.sort_by(|a, b| a.since.cmp(&b.since).then_with(|| a.volume_id.cmp(&b.volume_id)));
    out
}

/// Reads the newest completed snapshot's block list through the EBS direct API.
async fn verify(api: &dyn AwsApi, snapshots: &[Snapshot]) -> Option<SnapshotVerification> {
    let newest = snapshots.iter().filter(|s| s.state == "completed").max_by_key(|s| s.start_time)?;
    Some(match api.list_snapshot_blocks(&newest.id).await {
        Ok(_) => SnapshotVerification { snapshot_id: newest.id.clone(), readable: true, message: None },
        Err(e) => SnapshotVerification {
            snapshot_id: newest.id.clone(),
            readable: false,
            message: Some(format!(
                "ListSnapshotBlocks failed with {}: {} (needs ebs:ListSnapshotBlocks)",
                e.code, e.message
            )),
        },
    })
}

/// A short age like `3d4h`, `2h5m`, `45s` for people (doctor's text report).
pub fn human_age(since: &str, now: Timestamp) -> String {
    let Ok(t) = since.parse::<Timestamp>() else { return "?".to_string() };
    let secs = now.duration_since(t).as_secs().max(0);
    let (d, h, m, s) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::api::Attachment;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("valid timestamp")
    }

    fn vol(id: &str, state: &str, pv: Option<&str>, created: &str) -> Volume {
        Volume {
            id: id.into(),
            size_gib: 10,
            volume_type: "gp3".into(),
            zone: "us-east-1a".into(),
            state: state.into(),
            create_time: Some(ts(created)),
            csi_volume_name: pv.map(str::to_string),
            attachments: vec![],
        }
    }

    #[test]
    fn orphans_are_unreferenced_available_volumes_past_the_grace_period_oldest_first() {
        let now = ts("2026-01-10T00:00:00Z");
        let volumes = vec![
            vol("vol-new", "available", Some("pv-gone-1"), "2026-01-09T23:30:00Z"),
            vol("vol-b", "available", Some("pv-gone-2"), "2026-01-05T00:00:00Z"),
            vol("vol-a", "available", None, "2026-01-01T00:00:00Z"),
            vol("vol-used", "available", Some("pv-live"), "2026-01-01T00:00:00Z"),
            vol("vol-static", "available", None, "2026-01-01T00:00:00Z"),
            vol("vol-inuse", "in-use", Some("pv-gone-3"), "2026-01-01T00:00:00Z"),
        ];
        let pvs: PvReferences = ["pv-live".to_string(), "vol-static".to_string()].into();
        let r = orphans(&volumes, Some(&pvs), Duration::from_secs(3600), now);
        assert!(r.checked);
        assert_eq!(r.count, 2);
        assert_eq!(r.total_gib, 20);
        let ids: Vec<&str> = r.volumes.iter().map(|v| v.volume_id.as_str()).collect();
        assert_eq!(ids, ["vol-a", "vol-b"]);
        assert_eq!(r.volumes[1].csi_volume_name.as_deref(), Some("pv-gone-2"));
        assert_eq!(r.volumes[0].created_at, "2026-01-01T00:00:00Z");
        assert_eq!(orphans(&volumes, None, Duration::from_secs(3600), now), OrphanReport::default());
    }

    #[test]
    fn orphan_list_is_capped_but_the_count_is_not() {
        let now = ts("2026-01-10T00:00:00Z");
        let volumes: Vec<Volume> = (0..30)
            .map(|i| vol(&format!("vol-{i:02}"), "available", None, &format!("2026-01-01T00:{i:02}:00Z")))
            .collect();
        let r = orphans(&volumes, Some(&PvReferences::new()), Duration::from_secs(60), now);
        assert_eq!(r.count, 30);
        assert_eq!(r.volumes.len(), ORPHANS_LISTED);
        assert_eq!(r.volumes[0].volume_id, "vol-00");
    }

    #[test]
    fn stuck_reports_long_attaching_and_error_volumes() {
        let now = ts("2026-01-10T00:00:00Z");
        let mut a = vol("vol-a", "in-use", None, "2026-01-01T00:00:00Z");
        a.attachments.push(Attachment {
            instance_id: "i-1".into(),
            state: "attaching".into(),
            attach_time: Some(ts("2026-01-09T23:00:00Z")),
        });
        let mut b = vol("vol-b", "in-use", None, "2026-01-01T00:00:00Z");
        b.attachments.push(Attachment {
            instance_id: "i-2".into(),
            state: "detaching".into(),
            attach_time: Some(ts("2026-01-09T23:58:00Z")),
        });
        let mut c = vol("vol-c", "in-use", None, "2026-01-01T00:00:00Z");
        c.attachments.push(Attachment {
            instance_id: "i-3".into(),
            state: "attached".into(),
            attach_time: Some(ts("2026-01-01T00:00:00Z")),
        });
        let e = vol("vol-e", "error", None, "2026-01-01T00:00:00Z");
        let r = stuck(&[a, b, c, e], Duration::from_secs(900), now);
        assert_eq!(r.attachments.len(), 1);
        assert_eq!((r.attachments[0].volume_id.as_str(), r.attachments[0].state.as_str()), ("vol-a", "attaching"));
        assert_eq!(r.error_volumes, ["vol-e"]);
    }

    #[test]
    fn filters_and_scope_follow_the_cluster_id() {
        let p = RefreshParams { cluster_id: Some("prod".into()), ..Default::default() };
        assert_eq!(p.filters(), [Filter::new("tag:ebs.csi.aws.com/cluster-name", "prod")]);
        assert_eq!(p.scope(), "cluster prod");
        let p = RefreshParams::default();
        assert_eq!(p.filters(), [Filter::new("tag:ebs.csi.aws.com/cluster", "true")]);
        assert_eq!(p.scope(), "account-wide");
    }

    #[test]
    fn account_and_age_helpers() {
        assert_eq!(account_of("arn:aws:sts::123456789012:assumed-role/r/s").as_deref(), Some("123456789012"));
        assert_eq!(account_of("arn:aws:iam::notanaccount:role/r"), None);
        let now = ts("2026-01-10T00:00:00Z");
        assert_eq!(human_age("2026-01-06T20:00:00Z", now), "3d4h");
        assert_eq!(human_age("2026-01-09T21:55:00Z", now), "2h5m");
        assert_eq!(human_age("2026-01-09T23:59:15Z", now), "45s");
    }
}
