//! The cluster side of the inventory, kept current by watches of compact records
//! (`pv_watch::CompactWatch`):
//! PersistentVolumes, VolumeAttachments of ebs.csi.aws.com, Nodes (their providerID) and
//! VolumeSnapshotContents (the snapshot IDs they hold). `ClusterWatches::view` turns them into
//! the `inventory::ClusterView` a refresh joins with what AWS says; a part whose watch has not
//! listed yet is None, and the checks that need it say "not checked".

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::CustomResource;
use kube::api::Api;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::inventory::{ClusterView, NodeFacts, VolumeAttachmentFacts, instance_of};
use super::pv_watch::{CompactWatch, PvWatch, Task, crd_gate};
use crate::render::{DRIVER_NAME, SNAPSHOT_CRD};

/// snapshot.storage.k8s.io/v1 VolumeSnapshotContent, the fields the inventory reads.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "snapshot.storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshotContent",
    status = "VolumeSnapshotContentStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentSpec {
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub source: VolumeSnapshotContentSource,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentSource {
    /// A pre-provisioned snapshot's ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentStatus {
    /// The snapshot's ID once the driver created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
}

/// The snapshot IDs a VolumeSnapshotContent references (spec source and status).
pub fn snapshot_handles(c: &VolumeSnapshotContent) -> impl Iterator<Item = &str> {
    c.spec
        .source
        .snapshot_handle
        .as_deref()
        .into_iter()
        .chain(c.status.as_ref().and_then(|s| s.snapshot_handle.as_deref()))
}

pub fn volume_attachment_facts(va: &VolumeAttachment) -> Option<VolumeAttachmentFacts> {
    if va.spec.attacher != DRIVER_NAME {
        return None;
    }
    let status = va.status.as_ref();
    let err = |e: Option<&k8s_openapi::api::storage::v1::VolumeError>| {
        e.map(|e| (e.message.clone().unwrap_or_default(), e.time.as_ref().map(|t| t.0.to_string())))
    };
    Some(VolumeAttachmentFacts {
        name: va.metadata.name.clone().unwrap_or_default(),
        persistent_volume: va.spec.source.persistent_volume_name.clone(),
        node: va.spec.node_name.clone(),
        attached: status.is_some_and(|s| s.attached),
        attach_error: err(status.and_then(|s| s.attach_error.as_ref())),
        detach_error: err(status.and_then(|s| s.detach_error.as_ref())),
        deleting: va.metadata.deletion_timestamp.is_some(),
    })
}

/// Every watch the inventory joins with. Started by the poller on the leader; dropping it stops
/// them all.
pub struct ClusterWatches {
    pub pvs: PvWatch,
    /// Ours only (None: another driver's).
    attachments: CompactWatch<Option<VolumeAttachmentFacts>>,
    nodes: CompactWatch<NodeFacts>,
    /// The snapshot IDs of each VolumeSnapshotContent.
    snapshot_contents: CompactWatch<Vec<String>>,
    /// The watch of the snapshot API's CRD that gates `snapshot_contents`.
    _snapshot_api: Task,
}

impl ClusterWatches {
    pub fn start(client: kube::Client) -> Self {
        let cfg = super::pv_watch::watcher_config;
        // Without the snapshot API nothing serves VolumeSnapshotContents: their watch waits for
        // the CRD (instead of failing every 30 s), and the snapshot leak check reports not checked.
        let (snapshot_api, watch_crd) = crd_gate(client.clone(), SNAPSHOT_CRD, false);
        Self {
            pvs: PvWatch::start(client.clone()),
            attachments: CompactWatch::start(Api::all(client.clone()), cfg(), |va| volume_attachment_facts(&va)),
            nodes: CompactWatch::start(Api::all(client.clone()), cfg(), |n: Node| node_facts(&n)),
            snapshot_contents: CompactWatch::start_gated(Api::all(client), cfg(), |c| handles(&c), snapshot_api),
            _snapshot_api: Task(tokio::spawn(watch_crd)),
        }
    }

    /// Waits until PersistentVolumes, VolumeAttachments and Nodes are listed, at most `limit`
    /// (VolumeSnapshotContents may never be: without the snapshot API there is nothing to list).
    pub async fn wait_listed(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        self.pvs.wait_listed(left()).await;
        self.attachments.wait_listed(left()).await;
        self.nodes.wait_listed(left()).await;
    }

    /// What the cluster says now (each part None until its watch listed).
    pub fn view(&self) -> ClusterView {
        ClusterView {
            pvs: self.pvs.references(),
            snapshot_contents: self.snapshot_contents.read(|cs| cs.values().flatten().cloned().collect()),
            attachments: self.attachments.read(|vas| vas.values().flatten().cloned().collect()),
            nodes: self.nodes.read(|ns| ns.iter().map(|(name, facts)| (name.to_string(), facts.clone())).collect()),
        }
    }
}

/// `compact` of every object of `api`, in pages of 500 (for a single look: `doctor`).
async fn list_all<K, R>(api: Api<K>, compact: impl Fn(K) -> R) -> Result<Vec<R>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut params = kube::api::ListParams::default().limit(500);
    loop {
        let list = api.list(&params).await?;
        out.extend(list.items.into_iter().map(&compact));
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => params = params.continue_token(&c),
            None => return Ok(out),
        }
    }
}

/// The same view as `ClusterWatches::view`, from one paged list of each kind. PersistentVolumes
/// must be readable; the other kinds are None when they cannot be listed (no snapshot API, no
/// permission), which the report shows as not checked.
pub async fn list_view(client: &kube::Client) -> Result<ClusterView, kube::Error> {
    let pvs = super::pv_watch::list_pv_references(client).await?;
    let vas = optional(
        list_all(Api::<VolumeAttachment>::all(client.clone()), |va| volume_attachment_facts(&va)).await,
        "VolumeAttachments",
    );
    let nodes = optional(
        list_all(Api::<Node>::all(client.clone()), |n| (n.metadata.name.clone().unwrap_or_default(), node_facts(&n)))
            .await,
        "Nodes",
    );
    let contents = optional(
        list_all(Api::<VolumeSnapshotContent>::all(client.clone()), |c| handles(&c)).await,
        "VolumeSnapshotContents",
    );
    Ok(ClusterView {
        pvs: Some(pvs),
        snapshot_contents: contents.map(|cs| cs.into_iter().flatten().collect()),
        attachments: vas.map(|vas| vas.into_iter().flatten().collect()),
        nodes: nodes.map(|ns| ns.into_iter().collect()),
    })
}

fn optional<T>(r: Result<T, kube::Error>, what: &str) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "listing {what} failed; the checks that need them are not made");
            None
        }
    }
}

/// The EC2 instance and zone of a Node's providerID.
fn node_facts(n: &Node) -> NodeFacts {
    n.spec.as_ref().and_then(|s| s.provider_id.as_deref()).map(instance_of).unwrap_or_default()
}

/// The snapshot IDs a VolumeSnapshotContent references, as the watch keeps them.
fn handles(c: &VolumeSnapshotContent) -> Vec<String> {
    snapshot_handles(c).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_keep_what_the_stuck_check_reads() {
        let va: VolumeAttachment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "csi-1", "annotations": {"a": "b"},
                "finalizers": ["external-attacher/ebs-csi-aws-com"]},
            "spec": {"attacher": "ebs.csi.aws.com", "nodeName": "node-1", "source": {"persistentVolumeName": "pv-1"}},
            "status": {"attached": false, "attachmentMetadata": {"devicePath": "/dev/xvdaa"},
                "attachError": {"message": "rpc error: timeout", "time": "2026-01-01T00:00:00Z"}}
        }))
        .expect("VolumeAttachment");
        let f = volume_attachment_facts(&va).expect("ours");
        assert_eq!(f.persistent_volume.as_deref(), Some("pv-1"));
        assert_eq!((f.node.as_str(), f.attached, f.deleting), ("node-1", false, false));
        assert_eq!(f.attach_error, Some(("rpc error: timeout".into(), Some("2026-01-01T00:00:00Z".into()))));

        let other: VolumeAttachment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "csi-2"},
            "spec": {"attacher": "efs.csi.aws.com", "nodeName": "node-1", "source": {"persistentVolumeName": "x"}}
        }))
        .expect("VolumeAttachment");
        assert_eq!(volume_attachment_facts(&other), None, "another driver's attachment keeps nothing");
    }

    #[test]
    fn nodes_and_snapshot_contents_keep_their_ids() {
        let n: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ip-10-0-0-1", "labels": {"topology.kubernetes.io/zone": "us-east-1a"}},
            "spec": {"providerID": "aws:///us-east-1a/i-0abc", "podCIDR": "10.0.0.0/24"},
            "status": {"capacity": {"cpu": "2"}}
        }))
        .expect("Node");
        assert_eq!(node_facts(&n), NodeFacts { instance_id: Some("i-0abc".into()), zone: Some("us-east-1a".into()) });

        let c: VolumeSnapshotContent = serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
            "metadata": {"name": "snapcontent-1"},
            "spec": {"driver": "ebs.csi.aws.com", "deletionPolicy": "Delete",
                "source": {"volumeHandle": "vol-1"},
                "volumeSnapshotRef": {"namespace": "db", "name": "nightly"}},
            "status": {"snapshotHandle": "snap-0abc", "readyToUse": true}
        }))
        .expect("VolumeSnapshotContent");
        assert_eq!(handles(&c), ["snap-0abc"]);
    }
}
