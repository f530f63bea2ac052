//! One refresh of the inventory: asks AWS (through `AwsApi`) and turns the answers into an
//! `AwsStatus`. Never deletes or changes anything in AWS.
//!
//! Scope: a volume or snapshot is this cluster's when it carries either cluster tag the driver
//! writes with `--k8s-tag-cluster-id` (`ebs.csi.aws.com/cluster-name=<id>`, added by drivers
//! from 2026, or `kubernetes.io/cluster/<id>=owned`, written by every driver and the EKS add-on):
//! one Describe query per tag, merged by ID. Without `clusterId` the inventory is account-wide
//! (`ebs.csi.aws.com/cluster=true`, every cluster's driver) and reports no orphans or leaks: it
//! cannot tell this cluster's volumes from another's.
//!
//! Request budget of one refresh, V volumes and S snapshots returned per scope query (Q queries:
//! 2 with clusterId, else 1): `sum ceil(V/500) + sum ceil(S/1000) + fixed_requests()` (+1 with
//! snapshot verification, + the role assumption when assumed credentials are renewed), each
//! times at most the retry strategy's attempts when AWS throttles or fails.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::api::{AwsApi, AwsError, ErrorClass, Filter, Principal, Snapshot, Verdict, Volume};
use super::preflight::{self, KmsUse, Targets};
use super::retag::{self, RetagParams};
use super::{TAG_CLUSTER, TAG_CLUSTER_NAME};
use crate::crd::PermissionReport;
use crate::crd::{
    AwsStatus, LeakItem, LeakList, LeakReport, OrphanReport, OrphanVolume, SnapshotInventory, SnapshotVerification,
    StuckAttachment, StuckReport, StuckVolumeAttachment, VolumeInventory,
};

/// Orphans listed by name in the status (oldest first); the count covers all.
pub const ORPHANS_LISTED: usize = 20;
/// Every other list in the status (leaks, stuck attachments) is capped alike; counts are exact.
pub const LISTED: usize = 20;

/// Requests of a refresh besides the Describe pages: GetCallerIdentity, DescribeAvailabilityZones,
/// GetEbsEncryptionByDefault, GetEbsDefaultKmsKeyId and the DryRun probes. The KMS preflight adds
/// at most `preflight::kms_requests_per_key()` per distinct customer managed key the
/// StorageClasses name (none for the AWS managed `aws/ebs`).
pub fn fixed_requests() -> usize {
    4 + preflight::probe_count()
}

/// The most requests a successful refresh makes without retries (role assumption aside) with one
/// scope query (account-wide): `ceil(V/500) + ceil(S/1000) + fixed_requests()`, +1 with snapshot
/// verification. An empty result still takes one page of each.
pub fn request_budget(volumes: usize, snapshots: usize, verify_snapshots: bool) -> usize {
    request_budget_scoped(&[volumes], &[snapshots], verify_snapshots)
}

/// The same with one entry per scope query (what each query returns; a volume carrying both
/// cluster tags is returned by both).
pub fn request_budget_scoped(volumes: &[usize], snapshots: &[usize], verify_snapshots: bool) -> usize {
    volumes.iter().map(|v| v.div_ceil(500).max(1)).sum::<usize>()
        + snapshots.iter().map(|s| s.div_ceil(1000).max(1)).sum::<usize>()
        + fixed_requests()
        + usize::from(verify_snapshots)
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
    /// The KMS keys the StorageClasses encrypt with, probed with the preflight.
    pub kms: KmsUse,
    /// The retag of existing volumes and snapshots (`spec.aws.retagExistingVolumes`), when on.
    pub retag: Option<RetagParams>,
}

impl Default for RefreshParams {
    fn default() -> Self {
        Self {
            cluster_id: None,
            orphan_grace: Duration::from_secs(3600),
            stuck_threshold: Duration::from_secs(900),
            verify_snapshots: false,
            kms: KmsUse::default(),
            retag: None,
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
            kms: KmsUse::from_classes(&spec.storage_classes),
            // Only scoped to this cluster: an account-wide inventory holds other clusters' volumes.
            retag: RetagParams::from_spec(spec)
                .filter(|_| spec.aws.cluster_id.as_deref().is_some_and(|c| !c.is_empty())),
        }
    }

    /// The scope queries: one set of server-side filters each (EC2 ANDs filters, so "either
    /// tag" takes two queries, merged by ID).
    pub fn scope_queries(&self) -> Vec<Vec<Filter>> {
        match &self.cluster_id {
            Some(id) => vec![
                vec![Filter::new(format!("tag:{TAG_CLUSTER_NAME}"), id.clone())],
                vec![Filter::new(format!("tag:{}", cluster_owned_tag(id)), "owned")],
            ],
            None => vec![vec![Filter::new(format!("tag:{TAG_CLUSTER}"), "true")]],
        }
    }

    /// The first scope query (kept for callers that need one filter set).
    pub fn filters(&self) -> Vec<Filter> {
        self.scope_queries().into_iter().next().unwrap_or_default()
    }

    /// Whether orphans and leaks can be told: only with a cluster ID.
    pub fn scoped(&self) -> bool {
        self.cluster_id.is_some()
    }

    pub fn scope(&self) -> String {
        match &self.cluster_id {
            Some(id) => format!("cluster {id}"),
            None => "account-wide".to_string(),
        }
    }
}

pub use super::pv_watch::PvReferences;

/// What the cluster says, joined with what AWS says. Each part is None when it is not known
/// (not listed yet, not readable): the checks that need it are then reported as not checked,
/// never as "nothing found".
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    /// PersistentVolumes (CSI and in-tree EBS, every name).
    pub pvs: Option<PvReferences>,
    /// Snapshot IDs that VolumeSnapshotContents reference (`status.snapshotHandle`,
    /// `spec.source.snapshotHandle`).
    pub snapshot_contents: Option<HashSet<String>>,
    /// VolumeAttachments of ebs.csi.aws.com.
    pub attachments: Option<Vec<VolumeAttachmentFacts>>,
    /// Nodes by name, with the EC2 instance ID of their `spec.providerID` (None when it is not an
    /// EC2 provider ID).
    pub nodes: Option<BTreeMap<String, NodeFacts>>,
}

/// What the inventory reads of a VolumeAttachment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VolumeAttachmentFacts {
    pub name: String,
    pub persistent_volume: Option<String>,
    pub node: String,
    /// `status.attached`.
    pub attached: bool,
    /// `status.attachError` / `status.detachError`: message and time.
    pub attach_error: Option<(String, Option<String>)>,
    pub detach_error: Option<(String, Option<String>)>,
    /// Being deleted (a detach was asked for).
    pub deleting: bool,
}

/// What the inventory reads of a Node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeFacts {
    /// `i-...` from `aws:///<zone>/i-...`.
    pub instance_id: Option<String>,
    pub zone: Option<String>,
}

/// The EC2 instance and zone of a Node's `spec.providerID` (`aws:///us-east-1a/i-0abc`).
pub fn instance_of(provider_id: &str) -> NodeFacts {
    let Some(rest) = provider_id.strip_prefix("aws://") else { return NodeFacts::default() };
    let mut parts = rest.trim_start_matches('/').split('/');
    let (zone, id) = match (parts.next(), parts.next()) {
        (Some(z), Some(i)) => (Some(z), i),
        (Some(i), None) => (None, i),
        _ => return NodeFacts::default(),
    };
    if !id.starts_with("i-") || id.len() < 3 {
        return NodeFacts::default();
    }
    NodeFacts { instance_id: Some(id.to_string()), zone: zone.filter(|z| !z.is_empty()).map(str::to_string) }
}

/// What a refresh remembers for the next one: since when an attachment has been seen detaching
/// (EC2 reports only the attach time) and since when a VolumeAttachment has disagreed with EC2.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Memory {
    pub detaching_since: HashMap<(String, String), Timestamp>,
    pub disagreeing_since: HashMap<String, Timestamp>,
}

/// The tag key every driver (and the EKS add-on) writes with `--k8s-tag-cluster-id=<id>`.
pub fn cluster_owned_tag(cluster_id: &str) -> String {
    format!("kubernetes.io/cluster/{cluster_id}")
}

/// Why orphans and leaks are not looked for in an account-wide inventory.
pub const ACCOUNT_WIDE: &str = "account-wide inventory (no spec.aws.clusterId): the volumes of other clusters in \
    this account cannot be told from this cluster's, so none is called an orphan; set spec.aws.clusterId to the \
    driver's --k8s-tag-cluster-id";

/// What a refresh learnt before it failed: used to report permissions after a denial.
#[derive(Default)]
struct Partial {
    known: Vec<(&'static str, Verdict)>,
    principal: Option<Principal>,
}

/// Asks AWS and returns the new status, with what the cluster says reduced to PersistentVolume
/// references (no snapshot contents, attachments or nodes: those checks report not checked).
pub async fn refresh(
    api: &dyn AwsApi,
    params: &RefreshParams,
    pvs: Option<&PvReferences>,
    previous: Option<&AwsStatus>,
    now: Timestamp,
) -> AwsStatus {
    let cluster = ClusterView { pvs: pvs.cloned(), ..ClusterView::default() };
    refresh_with(api, params, &cluster, previous, &mut Memory::default(), now).await
}

/// Asks AWS and returns the new status. On failure the figures of `previous` are kept, marked
/// stale, with the error code; permissions are still updated when the failure is a denial.
/// `memory` carries first-seen times from one refresh to the next.
pub async fn refresh_with(
    api: &dyn AwsApi,
    params: &RefreshParams,
    cluster: &ClusterView,
    previous: Option<&AwsStatus>,
    memory: &mut Memory,
    now: Timestamp,
) -> AwsStatus {
    let mut partial = Partial::default();
    let applied = previous.and_then(|p| p.retag.as_ref()).map(|r| r.applied.clone()).unwrap_or_default();
    match collect(api, params, cluster, memory, now, &mut partial, &applied).await {
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
                let who = partial.principal.unwrap_or(Principal {
                    description: String::new(),
                    arn: None,
                    not_verifiable: None,
                });
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

/// Keeps, of an item's tags, only those the retag compares (the keys of `extraTags` it applies);
/// none when it is off. The inventory itself reads its tags when the page arrives (`CSIVolumeName`
/// and the cluster tags are in the filters and fields), and every tag of 100,000 volumes held
/// for the whole refresh was a third of the operator's memory at that scale.
fn keep_retag_tags(params: &RefreshParams, tags: &mut BTreeMap<String, String>) {
    match &params.retag {
        Some(r) => tags.retain(|k, _| r.wanted.contains_key(k)),
        None => tags.clear(),
    }
}

async fn collect(
    api: &dyn AwsApi,
    params: &RefreshParams,
    cluster: &ClusterView,
    memory: &mut Memory,
    now: Timestamp,
    partial: &mut Partial,
    applied: &std::collections::BTreeMap<String, Vec<String>>,
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
    let kms = api.default_kms_key_id().await.map_err(|e| {
        tracing::debug!(code = %e.code, "default EBS KMS key unknown");
        e.code
    });

    let queries = params.scope_queries();
    let mut volumes = Vec::new();
    let mut seen = HashSet::new();
    for filters in &queries {
        let mut token: Option<String> = None;
        loop {
            let page = api.describe_volumes(filters, token.clone()).await?;
            volumes.extend(page.items.into_iter().filter(|v| seen.insert(v.id.clone())).map(|mut v| {
                keep_retag_tags(params, &mut v.tags);
                v
            }));
            token = next_token(token, page.next_token, "DescribeVolumes")?;
            if token.is_none() {
                break;
            }
        }
    }
    partial.known.push(("ec2:DescribeVolumes", Verdict::Allowed));

    let mut snapshots = Vec::new();
    let mut seen = HashSet::new();
    for filters in &queries {
        // OwnerIds=self is what EC2 honours; the owner-id filter is what moto honours.
        let mut snap_filters = filters.clone();
        if let Some(account) = who.arn.as_deref().and_then(account_of) {
            snap_filters.push(Filter::new("owner-id", account));
        }
        let mut token: Option<String> = None;
        loop {
            let page = api.describe_snapshots(&snap_filters, token.clone()).await?;
            snapshots.extend(page.items.into_iter().filter(|s| seen.insert(s.id.clone())).map(|mut s| {
                keep_retag_tags(params, &mut s.tags);
                s
            }));
            token = next_token(token, page.next_token, "DescribeSnapshots")?;
            if token.is_none() {
                break;
            }
        }
    }
    partial.known.push(("ec2:DescribeSnapshots", Verdict::Allowed));

    let permissions = match &who.not_verifiable {
        Some(reason) => PermissionReport {
            principal: who.description.clone(),
            principal_arn: who.arn.clone(),
            not_verifiable: Some(reason.clone()),
            ..PermissionReport::default()
        },
        None => {
            let targets = targets(params, &zones, &volumes, &snapshots, cluster);
            let mut report = preflight::run(api, &targets, &partial.known, who.description.clone()).await?;
            report.principal_arn = who.arn.clone();
            if !params.kms.is_empty() {
                let default_key = kms.as_deref().map_err(String::as_str);
                preflight::kms_run(api, &params.kms, default_key, who.arn.as_deref(), &mut report).await?;
            }
            report
        }
    };

    let retag = match &params.retag {
        Some(r) => {
            let permission = if let Some(why) = &permissions.not_verifiable {
                retag::Permission::Blocked(format!("the operator cannot act as the driver's identity: {why}"))
            } else if permissions.missing.iter().any(|a| a == retag::ACTION) {
                retag::Permission::Blocked(format!(
                    "{} may not call CreateTags on existing resources (the DryRun was denied): add the statement of \
                        README \"Retagging existing volumes\" to the driver's role",
                    if permissions.principal.is_empty() { "the driver's identity" } else { &permissions.principal }
                ))
            } else {
                retag::Permission::Go
            };
            Some(retag::run(api, r, applied, &volumes, &snapshots, permission).await)
        }
        None => None,
    };

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
        default_kms_key_id: kms.ok(),
        volumes: volume_inventory(&volumes),
        orphaned: orphan_report(&volumes, params, cluster, now),
        leaks: leaks(&volumes, &snapshots, params, cluster, now),
        stuck: stuck_report(&volumes, cluster, params.stuck_threshold, memory, now),
        snapshots: snapshot_inventory,
        permissions,
        retag,
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

/// What the probes aim at: never a volume or snapshot in use. Volume probes target the newest
/// `available` volume (attached to nothing), snapshot probes the newest `completed` snapshot;
/// AttachVolume targets an instance of this cluster (a Node's providerID), in the volume's zone
/// when one is there.
pub fn targets(
    params: &RefreshParams,
    zones: &[String],
    volumes: &[Volume],
    snapshots: &[Snapshot],
    cluster: &ClusterView,
) -> Targets {
    let volume =
        newest(&volumes.iter().filter(|v| v.state == "available").cloned().collect::<Vec<_>>(), |v| v.create_time)
            .cloned();
    let snapshot_id =
        newest(&snapshots.iter().filter(|s| s.state == "completed").cloned().collect::<Vec<_>>(), |s| s.start_time)
            .map(|s| s.id.clone());
    let instances: Vec<&NodeFacts> =
        cluster.nodes.iter().flat_map(|n| n.values()).filter(|n| n.instance_id.is_some()).collect();
    let zone_of_volume = volume.as_ref().map(|v| v.zone.as_str());
    let instance = instances
        .iter()
        .find(|n| zone_of_volume.is_some() && n.zone.as_deref() == zone_of_volume)
        .or_else(|| instances.first())
        .and_then(|n| n.instance_id.clone());
    let retag = params.retag.as_ref().map(|r| {
        let volume = volumes.iter().find(|v| v.state == "available" || v.state == "in-use").map(|v| v.id.clone());
        (volume, r.wanted.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    });
    Targets {
        retag,
        cluster_id: params.cluster_id.clone(),
        zone: volume.as_ref().map(|v| v.zone.clone()).or_else(|| zones.first().cloned()),
        volume_id: volume.map(|v| v.id),
        snapshot_id,
        instance_id: instance,
    }
}

/// The orphan report of a refresh: not checked account-wide or without PersistentVolumes.
pub fn orphan_report(
    volumes: &[Volume],
    params: &RefreshParams,
    cluster: &ClusterView,
    now: Timestamp,
) -> OrphanReport {
    if !params.scoped() {
        return OrphanReport { reason: Some(ACCOUNT_WIDE.to_string()), ..OrphanReport::default() };
    }
    match &cluster.pvs {
        Some(pvs) => orphans(volumes, Some(pvs), params.orphan_grace, now),
        None => OrphanReport {
            reason: Some("the cluster's PersistentVolumes are not known yet (watch not listed)".to_string()),
            ..OrphanReport::default()
        },
    }
}

/// Available volumes referenced by no PersistentVolume, older than the grace period.
pub fn orphans(volumes: &[Volume], pvs: Option<&PvReferences>, grace: Duration, now: Timestamp) -> OrphanReport {
    let Some(pvs) = pvs else { return OrphanReport::default() };
    let mut found: Vec<&Volume> = volumes
        .iter()
        .filter(|v| v.state == "available")
        .filter(|v| !pvs.references(&v.id, v.csi_volume_name.as_deref()))
        .filter(|v| older_than(v.create_time, grace, now))
        .collect();
    found.sort_by(|a, b| a.create_time.cmp(&b.create_time).then_with(|| a.id.cmp(&b.id)));
    OrphanReport {
        checked: true,
        reason: None,
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

fn leak_list<T>(items: Vec<T>, item: impl Fn(&T) -> LeakItem) -> LeakList {
    let mut items: Vec<LeakItem> = items.iter().map(item).collect();
    items.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
    LeakList {
        count: items.len() as u64,
        total_gib: items.iter().map(|i| i.size_gib).sum(),
        items: items.into_iter().take(LISTED).collect(),
    }
}

fn volume_item(v: &Volume, pv: Option<String>, claim: Option<String>) -> LeakItem {
    LeakItem {
        id: v.id.clone(),
        size_gib: v.size_gib,
        persistent_volume: pv,
        claim,
        state: v.state.clone(),
        created_at: v.create_time.map(|t| t.to_string()).unwrap_or_default(),
    }
}

/// Leak candidates from both sides: Released PVs whose volume still exists, volumes created for a
/// PV that is gone, completed snapshots no VolumeSnapshotContent references. Only with a cluster
/// ID and known PersistentVolumes.
pub fn leaks(
    volumes: &[Volume],
    snapshots: &[Snapshot],
    params: &RefreshParams,
    cluster: &ClusterView,
    now: Timestamp,
) -> LeakReport {
    let Some(pvs) = cluster.pvs.as_ref().filter(|_| params.scoped()) else { return LeakReport::default() };
    let released: Vec<(&Volume, &super::pv_watch::PvRef)> = volumes
        .iter()
        .filter_map(|v| pvs.by_volume.get(&v.id).map(|pv| (v, pv)))
        .filter(|(_, pv)| pv.phase.as_deref() == Some("Released"))
        .collect();
    let without_pv: Vec<&Volume> = volumes
        .iter()
        .filter(|v| v.csi_volume_name.is_some() && !pvs.references(&v.id, v.csi_volume_name.as_deref()))
        .filter(|v| older_than(v.create_time, params.orphan_grace, now))
        .collect();
    let (snapshots_checked, without_content) = match &cluster.snapshot_contents {
        Some(contents) => (
            true,
            snapshots
                .iter()
                .filter(|s| s.state == "completed" && !contents.contains(&s.id))
                .filter(|s| older_than(s.start_time, params.orphan_grace, now))
                .collect::<Vec<_>>(),
        ),
        None => (false, Vec::new()),
    };
    LeakReport {
        checked: true,
        released_persistent_volumes: leak_list(released, |(v, pv)| {
            volume_item(v, Some(pv.name.clone()), pv.claim.clone())
        }),
        volumes_without_persistent_volume: leak_list(without_pv, |v| volume_item(v, v.csi_volume_name.clone(), None)),
        snapshots_checked,
        snapshots_without_content: leak_list(without_content, |s| LeakItem {
            id: s.id.clone(),
            size_gib: s.volume_size_gib,
            persistent_volume: None,
            claim: None,
            state: s.state.clone(),
            created_at: s.start_time.map(|t| t.to_string()).unwrap_or_default(),
        }),
    }
}

/// Stuck attachments from both sides, and volumes in `error`.
///
/// EC2: `attaching` for longer than the threshold since the attach started; `detaching` for
/// longer than the threshold since the operator first saw it detaching (EC2 keeps the attach time
/// while detaching, so a detach in progress is not stuck). VolumeAttachments of ebs.csi.aws.com:
/// an attach or detach error, a Node that no longer exists, or an `attached` status EC2 disagrees
/// with for longer than the threshold.
pub fn stuck_report(
    volumes: &[Volume],
    cluster: &ClusterView,
    threshold: Duration,
    memory: &mut Memory,
    now: Timestamp,
) -> StuckReport {
    let mut out = StuckReport::default();
    let mut ec2 = Vec::new();
    let mut detaching = HashMap::new();
    for v in volumes {
        if v.state == "error" {
            out.error_volumes.push(v.id.clone());
        }
        for a in &v.attachments {
            let since = match a.state.as_str() {
                "attaching" => a.attach_time,
                "detaching" => {
                    let key = (v.id.clone(), a.instance_id.clone());
                    let first = memory.detaching_since.get(&key).copied().unwrap_or(now);
                    detaching.insert(key, first);
                    Some(first)
                }
                _ => continue,
            };
            if older_than(since, threshold, now) {
                ec2.push(StuckAttachment {
                    volume_id: v.id.clone(),
                    instance_id: a.instance_id.clone(),
                    state: a.state.clone(),
                    since: since.map(|t| t.to_string()).unwrap_or_default(),
                });
            }
        }
    }
    memory.detaching_since = detaching;
    out.error_volumes.sort();
    ec2.sort_by(|a, b| a.since.cmp(&b.since).then_with(|| a.volume_id.cmp(&b.volume_id)));
    out.count = ec2.len() as u64;
    out.attachments = ec2.into_iter().take(LISTED).collect();

    let (Some(vas), Some(nodes)) = (&cluster.attachments, &cluster.nodes) else {
        memory.disagreeing_since.clear();
        return out;
    };
    out.volume_attachments_checked = true;
    let by_id: HashMap<&str, &Volume> = volumes.iter().map(|v| (v.id.as_str(), v)).collect();
    let volume_of_pv: HashMap<&str, &str> =
        cluster.pvs.iter().flat_map(|p| p.by_volume.iter()).map(|(id, pv)| (pv.name.as_str(), id.as_str())).collect();
    let mut disagreeing = HashMap::new();
    let mut found = Vec::new();
    for va in vas {
        let volume_id = va.persistent_volume.as_deref().and_then(|pv| volume_of_pv.get(pv)).map(|s| s.to_string());
        let mut first_seen = |key: String| {
            let first = memory.disagreeing_since.get(&key).copied().unwrap_or(now);
            disagreeing.insert(key, first);
            first
        };
        let (reason, message, since) = if let Some((m, t)) = &va.attach_error {
            ("AttachError", m.clone(), t.clone())
        } else if let Some((m, t)) = &va.detach_error {
            ("DetachError", m.clone(), t.clone())
        } else if !nodes.contains_key(&va.node) {
            let first = first_seen(format!("{}/NodeGone", va.name));
            if !older_than(Some(first), threshold, now) {
                continue;
            }
            (
                "NodeGone",
                format!("node {} no longer exists; the attachment is left to the attach-detach controller", va.node),
                Some(first.to_string()),
            )
        } else {
            let node = &nodes[&va.node];
            let (Some(id), Some(instance)) = (volume_id.as_deref(), node.instance_id.as_deref()) else { continue };
            let Some(volume) = by_id.get(id) else { continue };
            let ec2_state = volume.attachments.iter().find(|a| a.instance_id == instance).map(|a| a.state.as_str());
            let ec2_attached = ec2_state == Some("attached");
            if va.attached == ec2_attached {
                continue;
            }
            let first = first_seen(format!("{}/Ec2Disagrees", va.name));
            if !older_than(Some(first), threshold, now) {
                continue;
            }
            let says = match ec2_state {
                Some(s) => format!("EC2 says {id} is {s} on {instance}"),
                None => format!("EC2 shows {id} not attached to {instance}"),
            };
            let va_says = if va.attached { "attached" } else { "not attached" };
            ("Ec2Disagrees", format!("the VolumeAttachment says {va_says}; {says}"), Some(first.to_string()))
        };
        found.push(StuckVolumeAttachment {
            name: va.name.clone(),
            persistent_volume: va.persistent_volume.clone(),
            volume_id,
            node: va.node.clone(),
            reason: reason.to_string(),
            message,
            since,
        });
    }
    memory.disagreeing_since = disagreeing;
    found.sort_by(|a, b| a.name.cmp(&b.name));
    out.volume_attachment_count = found.len() as u64;
    out.volume_attachments = found.into_iter().take(LISTED).collect();
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
    use crate::aws::pv_watch::{PvRef, pv_ref};
    use k8s_openapi::api::core::v1::PersistentVolume;

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
            tags: BTreeMap::new(),
        }
    }

    /// PersistentVolumes: (name, CSI handle or in-tree volumeID, in_tree, phase).
    fn refs(pvs: &[(&str, &str, bool, &str)]) -> PvReferences {
        let objs: Vec<PersistentVolume> = pvs
            .iter()
            .map(|(name, handle, in_tree, phase)| {
                let source = if *in_tree {
                    serde_json::json!({"awsElasticBlockStore": {"volumeID": handle}})
                } else {
                    serde_json::json!({"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": handle}})
                };
                let mut spec = source;
                spec["claimRef"] = serde_json::json!({"namespace": "db", "name": format!("data-{name}")});
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name}, "spec": spec, "status": {"phase": phase}
                }))
                .expect("PersistentVolume")
            })
            .collect();
        let records: Vec<(String, Option<PvRef>)> =
            objs.iter().map(|pv| (pv.metadata.name.clone().unwrap_or_default(), pv_ref(pv))).collect();
        PvReferences::from_records(records.iter().map(|(n, r)| (n.as_str(), r)))
    }

    fn scoped() -> RefreshParams {
        RefreshParams { cluster_id: Some("prod".into()), orphan_grace: Duration::from_secs(3600), ..Default::default() }
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
        let pvs = refs(&[("pv-live", "vol-elsewhere", false, "Bound"), ("static", "vol-static", false, "Bound")]);
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

    /// The EKS gp2 class and CSI migration: an in-tree PV (`aws://zone/vol-...`) references its
    /// volume like a CSI PV does. Reported as an orphan before (false orphan).
    #[test]
    fn in_tree_and_migrated_persistent_volumes_are_references_in_both_id_forms() {
        let now = ts("2026-01-10T00:00:00Z");
        let volumes = vec![
            vol("vol-0aaa", "available", None, "2026-01-01T00:00:00Z"),
            vol("vol-0bbb", "available", Some("pvc-migrated"), "2026-01-01T00:00:00Z"),
            vol("vol-0ccc", "available", None, "2026-01-01T00:00:00Z"),
        ];
        let pvs = refs(&[
            ("gp2-legacy", "aws://us-east-1a/vol-0aaa", true, "Bound"),
            ("pvc-migrated", "vol-0bbb", true, "Bound"),
            ("csi-zoned", "aws://us-east-1a/vol-0ccc", false, "Bound"),
        ]);
        let cluster = ClusterView { pvs: Some(pvs), ..Default::default() };
        let r = orphan_report(&volumes, &scoped(), &cluster, now);
        assert!(r.checked);
        assert_eq!(r.count, 0, "{r:?}");
    }

    /// Without clusterId other clusters' volumes are in the inventory: none is an orphan.
    #[test]
    fn an_account_wide_inventory_reports_no_orphans_and_says_why() {
        let now = ts("2026-01-10T00:00:00Z");
        let volumes = vec![vol("vol-other-cluster", "available", Some("their-pv"), "2026-01-01T00:00:00Z")];
        let cluster = ClusterView { pvs: Some(refs(&[])), ..Default::default() };
        let params = RefreshParams { cluster_id: None, orphan_grace: Duration::ZERO, ..Default::default() };
        let r = orphan_report(&volumes, &params, &cluster, now);
        assert!(!r.checked);
        assert_eq!(r.count, 0);
        assert!(r.reason.as_deref().is_some_and(|m| m.contains("spec.aws.clusterId")), "{r:?}");
        assert_eq!(leaks(&volumes, &[], &params, &cluster, now), LeakReport::default());
        let unknown = orphan_report(&volumes, &scoped(), &ClusterView::default(), now);
        assert!(!unknown.checked && unknown.reason.is_some(), "PVs not known yet: not checked, {unknown:?}");
    }

    #[test]
    fn orphan_list_is_capped_but_the_count_is_not() {
        let now = ts("2026-01-10T00:00:00Z");
        let volumes: Vec<Volume> = (0..30)
            .map(|i| vol(&format!("vol-{i:02}"), "available", None, &format!("2026-01-01T00:{i:02}:00Z")))
            .collect();
        let r = orphans(&volumes, Some(&PvReferences::default()), Duration::from_secs(60), now);
        assert_eq!(r.count, 30);
        assert_eq!(r.volumes.len(), ORPHANS_LISTED);
        assert_eq!(r.volumes[0].volume_id, "vol-00");
    }

    #[test]
    fn leak_candidates_are_joined_from_both_sides_capped_with_exact_counts() {
        let now = ts("2026-01-10T00:00:00Z");
        let mut volumes = vec![
            vol("vol-released", "available", Some("pv-released"), "2026-01-02T00:00:00Z"),
            vol("vol-bound", "in-use", Some("pv-bound"), "2026-01-02T00:00:00Z"),
            vol("vol-young", "in-use", Some("pv-deleted-now"), "2026-01-09T23:30:00Z"),
        ];
        volumes
            .extend((0..25).map(|i| vol(&format!("vol-gone-{i:02}"), "in-use", Some("pv-x"), "2026-01-01T00:00:00Z")));
        let pvs = refs(&[("pv-released", "vol-released", false, "Released"), ("pv-bound", "vol-bound", true, "Bound")]);
        let snap = |id: &str, state: &str| Snapshot {
            id: id.into(),
            state: state.into(),
            volume_size_gib: 8,
            start_time: Some(ts("2026-01-03T00:00:00Z")),
            tags: BTreeMap::new(),
        };
        let snapshots =
            vec![snap("snap-kept", "completed"), snap("snap-leaked", "completed"), snap("snap-new", "pending")];
        let mut cluster = ClusterView { pvs: Some(pvs), ..Default::default() };
        let r = leaks(&volumes, &snapshots, &scoped(), &cluster, now);
        assert!(r.checked);
        let rel = &r.released_persistent_volumes;
        assert_eq!((rel.count, rel.total_gib), (1, 10));
        assert_eq!(rel.items[0].persistent_volume.as_deref(), Some("pv-released"));
        assert_eq!(rel.items[0].claim.as_deref(), Some("db/data-pv-released"));
        let gone = &r.volumes_without_persistent_volume;
        assert_eq!(gone.count, 25, "the young one is inside the grace period");
        assert_eq!(gone.total_gib, 250);
        assert_eq!(gone.items.len(), LISTED);
        assert_eq!(gone.items[0].state, "in-use");
        assert!(!r.snapshots_checked, "no VolumeSnapshotContents known: not checked");
        assert_eq!(r.snapshots_without_content.count, 0);

        cluster.snapshot_contents = Some(["snap-kept".to_string()].into());
        let r = leaks(&volumes, &snapshots, &scoped(), &cluster, now);
        assert!(r.snapshots_checked);
        let s = &r.snapshots_without_content;
        assert_eq!((s.count, s.total_gib, s.items[0].id.as_str()), (1, 8, "snap-leaked"));
        assert_eq!(s.items[0].created_at, "2026-01-03T00:00:00Z");
    }

    fn attached(v: &mut Volume, instance: &str, state: &str, at: &str) {
        v.attachments.push(Attachment { instance_id: instance.into(), state: state.into(), attach_time: Some(ts(at)) });
    }

    #[test]
    fn stuck_reports_long_attaching_and_error_volumes() {
        let now = ts("2026-01-10T00:00:00Z");
        let mut a = vol("vol-a", "in-use", None, "2026-01-01T00:00:00Z");
        attached(&mut a, "i-1", "attaching", "2026-01-09T23:00:00Z");
        let mut c = vol("vol-c", "in-use", None, "2026-01-01T00:00:00Z");
        attached(&mut c, "i-3", "attached", "2026-01-01T00:00:00Z");
        let e = vol("vol-e", "error", None, "2026-01-01T00:00:00Z");
        let r =
            stuck_report(&[a, c, e], &ClusterView::default(), Duration::from_secs(900), &mut Memory::default(), now);
        assert_eq!((r.count, r.attachments.len()), (1, 1));
        assert_eq!((r.attachments[0].volume_id.as_str(), r.attachments[0].state.as_str()), ("vol-a", "attaching"));
        assert_eq!(r.error_volumes, ["vol-e"]);
        assert!(!r.volume_attachments_checked);
    }

    /// A volume attached for days and detaching for a minute is not stuck: EC2's attach time is
    /// not when the detach began. Flagged as stuck before.
    #[test]
    fn detaching_is_measured_from_when_it_was_first_seen() {
        let threshold = Duration::from_secs(900);
        let mut v = vol("vol-d", "in-use", None, "2026-01-01T00:00:00Z");
        attached(&mut v, "i-1", "detaching", "2026-01-01T00:00:00Z");
        let mut memory = Memory::default();
        let first = ts("2026-01-10T00:00:00Z");
        let r = stuck_report(std::slice::from_ref(&v), &ClusterView::default(), threshold, &mut memory, first);
        assert_eq!(r.count, 0, "just seen detaching: {r:?}");
        let later = ts("2026-01-10T00:10:00Z");
        assert_eq!(
            stuck_report(std::slice::from_ref(&v), &ClusterView::default(), threshold, &mut memory, later).count,
            0
        );
        let much_later = ts("2026-01-10T00:16:00Z");
        let r = stuck_report(std::slice::from_ref(&v), &ClusterView::default(), threshold, &mut memory, much_later);
        assert_eq!(r.count, 1);
        assert_eq!(r.attachments[0].since, "2026-01-10T00:00:00Z");
        // Once it is no longer detaching it is forgotten: a new detach starts a new clock.
        let mut done = v.clone();
        done.attachments.clear();
        stuck_report(&[done], &ClusterView::default(), threshold, &mut memory, much_later);
        assert!(memory.detaching_since.is_empty());
    }

    fn va(name: &str, pv: &str, node: &str, attached: bool) -> VolumeAttachmentFacts {
        VolumeAttachmentFacts {
            name: name.into(),
            persistent_volume: Some(pv.into()),
            node: node.into(),
            attached,
            ..Default::default()
        }
    }

    #[test]
    fn stuck_volume_attachments_errors_gone_nodes_and_disagreement_with_ec2() {
        let threshold = Duration::from_secs(900);
        let mut ok = vol("vol-ok", "in-use", Some("pv-ok"), "2026-01-01T00:00:00Z");
        attached(&mut ok, "i-1", "attached", "2026-01-01T00:00:00Z");
        let lost = vol("vol-lost", "available", Some("pv-lost"), "2026-01-01T00:00:00Z");
        let volumes = vec![ok, lost, vol("vol-err", "available", Some("pv-err"), "2026-01-01T00:00:00Z")];
        let pvs = refs(&[
            ("pv-ok", "vol-ok", false, "Bound"),
            ("pv-lost", "vol-lost", false, "Bound"),
            ("pv-err", "aws://us-east-1a/vol-err", true, "Bound"),
        ]);
        let nodes: BTreeMap<String, NodeFacts> = [("node-1".to_string(), instance_of("aws:///us-east-1a/i-1"))].into();
        let mut err = va("csi-err", "pv-err", "node-1", false);
        err.attach_error = Some(("rpc error: AttachVolume.Attach failed".into(), Some("2026-01-09T23:00:00Z".into())));
        let cluster = ClusterView {
            pvs: Some(pvs),
            attachments: Some(vec![
                va("csi-ok", "pv-ok", "node-1", true),
                va("csi-lost", "pv-lost", "node-1", true),
                va("csi-gone", "pv-ok", "node-deleted", true),
                err,
            ]),
            nodes: Some(nodes),
            ..Default::default()
        };
        let mut memory = Memory::default();
        let t0 = ts("2026-01-10T00:00:00Z");
        let r = stuck_report(&volumes, &cluster, threshold, &mut memory, t0);
        assert!(r.volume_attachments_checked);
        let names: Vec<(&str, &str)> =
            r.volume_attachments.iter().map(|s| (s.name.as_str(), s.reason.as_str())).collect();
        assert_eq!(names, [("csi-err", "AttachError")], "disagreement and a gone node wait for the threshold");
        assert_eq!(r.volume_attachments[0].volume_id.as_deref(), Some("vol-err"));
        let t1 = ts("2026-01-10T00:15:00Z");
        let r = stuck_report(&volumes, &cluster, threshold, &mut memory, t1);
        let names: Vec<(&str, &str)> =
            r.volume_attachments.iter().map(|s| (s.name.as_str(), s.reason.as_str())).collect();
        assert_eq!(names, [("csi-err", "AttachError"), ("csi-gone", "NodeGone"), ("csi-lost", "Ec2Disagrees")]);
        assert_eq!(r.volume_attachment_count, 3);
        let lost = &r.volume_attachments[2];
        assert!(lost.message.contains("vol-lost") && lost.message.contains("i-1"), "{}", lost.message);
        assert_eq!(lost.since.as_deref(), Some("2026-01-10T00:00:00Z"));
    }

    #[test]
    fn probes_aim_at_volumes_not_in_use_and_a_real_instance_in_their_zone() {
        let mut in_use = vol("vol-newest-in-use", "in-use", None, "2026-01-09T00:00:00Z");
        in_use.zone = "us-east-1a".into();
        let mut free = vol("vol-free", "available", None, "2026-01-02T00:00:00Z");
        free.zone = "us-east-1b".into();
        let nodes: BTreeMap<String, NodeFacts> = [
            ("a".to_string(), instance_of("aws:///us-east-1a/i-0aaa")),
            ("b".to_string(), instance_of("aws:///us-east-1b/i-0bbb")),
            ("fargate".to_string(), instance_of("kind://docker/x")),
        ]
        .into();
        let cluster = ClusterView { nodes: Some(nodes), ..Default::default() };
        let snap = |id: &str, state: &str, day: &str| Snapshot {
            id: id.into(),
            state: state.into(),
            volume_size_gib: 1,
            start_time: Some(ts(day)),
            tags: BTreeMap::new(),
        };
        let snapshots = [
            snap("snap-done", "completed", "2026-01-02T00:00:00Z"),
            snap("snap-busy", "pending", "2026-01-03T00:00:00Z"),
        ];
        let t = targets(&scoped(), &["us-east-1a".to_string()], &[in_use, free], &snapshots, &cluster);
        assert_eq!(t.volume_id.as_deref(), Some("vol-free"));
        assert_eq!(t.zone.as_deref(), Some("us-east-1b"));
        assert_eq!(t.instance_id.as_deref(), Some("i-0bbb"));
        assert_eq!(t.snapshot_id.as_deref(), Some("snap-done"));
        let none = targets(
            &scoped(),
            &[],
            &[vol("vol-busy", "in-use", None, "2026-01-01T00:00:00Z")],
            &[],
            &ClusterView::default(),
        );
        assert_eq!((none.volume_id, none.instance_id), (None, None));
        assert_eq!(instance_of("aws:///us-east-1a/i-0abc").instance_id.as_deref(), Some("i-0abc"));
        assert_eq!(instance_of("aws://i-0abc").instance_id.as_deref(), Some("i-0abc"));
        assert_eq!(instance_of("gce://p/z/n"), NodeFacts::default());
    }

    #[test]
    fn scope_takes_either_cluster_tag_and_is_account_wide_without_a_cluster_id() {
        let p = RefreshParams { cluster_id: Some("prod".into()), ..Default::default() };
        assert_eq!(
            p.scope_queries(),
            [
                vec![Filter::new("tag:ebs.csi.aws.com/cluster-name", "prod")],
                vec![Filter::new("tag:kubernetes.io/cluster/prod", "owned")]
            ]
        );
        assert_eq!(p.scope(), "cluster prod");
        let p = RefreshParams::default();
        assert_eq!(p.scope_queries(), [vec![Filter::new("tag:ebs.csi.aws.com/cluster", "true")]]);
        assert_eq!(p.scope(), "account-wide");
        assert_eq!(request_budget_scoped(&[1200, 0], &[0, 2500], false), 3 + 1 + 1 + 3 + fixed_requests());
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
