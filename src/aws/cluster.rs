//! The cluster side of the inventory, kept current by trimmed watches (`pv_watch::CompactWatch`):
//! PersistentVolumes, VolumeAttachments of ebs.csi.aws.com, Nodes (their providerID) and
//! VolumeSnapshotContents (the snapshot IDs they hold). `ClusterWatches::view` turns them into
//! the `inventory::ClusterView` a refresh joins with what AWS says; a part whose watch has not
//! listed yet is None, and the checks that need it say "not checked".

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Node, NodeSpec};
use k8s_openapi::api::storage::v1::{VolumeAttachment, VolumeAttachmentSource, VolumeAttachmentSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
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

fn trim_meta(meta: &mut ObjectMeta) {
    *meta = ObjectMeta {
        name: meta.name.take(),
        resource_version: meta.resource_version.take(),
        deletion_timestamp: meta.deletion_timestamp.take(),
        ..ObjectMeta::default()
    };
}

/// Keeps a Node's name and providerID.
pub fn trim_node(n: &mut Node) {
    trim_meta(&mut n.metadata);
    let provider_id = n.spec.as_ref().and_then(|s| s.provider_id.clone());
    n.spec = Some(NodeSpec { provider_id, ..NodeSpec::default() });
    n.status = None;
}

/// Keeps what `VolumeAttachmentFacts` reads; an attachment of another driver keeps its name only.
pub fn trim_volume_attachment(va: &mut VolumeAttachment) {
    trim_meta(&mut va.metadata);
    if va.spec.attacher != DRIVER_NAME {
        va.spec = VolumeAttachmentSpec { attacher: std::mem::take(&mut va.spec.attacher), ..Default::default() };
        va.status = None;
        return;
    }
    va.spec.source = VolumeAttachmentSource {
        persistent_volume_name: va.spec.source.persistent_volume_name.take(),
        ..Default::default()
    };
    if let Some(st) = va.status.as_mut() {
        st.attachment_metadata = None;
    }
}

/// Keeps a VolumeSnapshotContent's snapshot IDs.
pub fn trim_snapshot_content(c: &mut VolumeSnapshotContent) {
    trim_meta(&mut c.metadata);
    c.spec.driver.clear();
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
    attachments: CompactWatch<VolumeAttachment>,
    nodes: CompactWatch<Node>,
    snapshot_contents: CompactWatch<VolumeSnapshotContent>,
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
            attachments: CompactWatch::start(Api::all(client.clone()), cfg(), trim_volume_attachment),
            nodes: CompactWatch::start(Api::all(client.clone()), cfg(), trim_node),
            snapshot_contents: CompactWatch::start_gated(Api::all(client), cfg(), trim_snapshot_content, snapshot_api),
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
            snapshot_contents: self.snapshot_contents.state().map(|cs| {
                cs.iter()
                    .flat_map(|c| snapshot_handles(c).map(str::to_string).collect::<Vec<_>>())
                    .collect::<HashSet<_>>()
            }),
            attachments: self
                .attachments
                .state()
                .map(|vas| vas.iter().filter_map(|va| volume_attachment_facts(va)).collect()),
            nodes: self.nodes.state().map(|ns| ns.iter().map(|n| node_entry(n)).collect::<BTreeMap<_, _>>()),
        }
    }
}

/// Every object of `api`, trimmed, in pages of 500 (for a single look: `doctor`).
async fn list_all<K>(api: Api<K>, trim: fn(&mut K)) -> Result<Vec<K>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut params = kube::api::ListParams::default().limit(500);
    loop {
        let list = api.list(&params).await?;
        out.extend(list.items.into_iter().map(|mut o| {
            trim(&mut o);
            o
        }));
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
        list_all(Api::<VolumeAttachment>::all(client.clone()), trim_volume_attachment).await,
        "VolumeAttachments",
    );
    let nodes = optional(list_all(Api::<Node>::all(client.clone()), trim_node).await, "Nodes");
    let contents = optional(
        list_all(Api::<VolumeSnapshotContent>::all(client.clone()), trim_snapshot_content).await,
        "VolumeSnapshotContents",
    );
    Ok(ClusterView {
        pvs: Some(pvs),
        snapshot_contents: contents
            .map(|cs| cs.iter().flat_map(|c| snapshot_handles(c).map(str::to_string).collect::<Vec<_>>()).collect()),
        attachments: vas.map(|vas| vas.iter().filter_map(volume_attachment_facts).collect()),
        nodes: nodes.map(|ns| ns.iter().map(node_entry).collect()),
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

fn node_entry(n: &Node) -> (String, NodeFacts) {
    let facts = n.spec.as_ref().and_then(|s| s.provider_id.as_deref()).map(instance_of).unwrap_or_default();
    (n.metadata.name.clone().unwrap_or_default(), facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_keep_what_the_stuck_check_reads() {
        let mut va: VolumeAttachment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "csi-1", "annotations": {"a": "b"},
                "finalizers": ["external-attacher/ebs-csi-aws-com"]},
            "spec": {"attacher": "ebs.csi.aws.com", "nodeName": "node-1", "source": {"persistentVolumeName": "pv-1"}},
            "status": {"attached": false, "attachmentMetadata": {"devicePath": "/dev/xvdaa"},
                "attachError": {"message": "rpc error: timeout", "time": "2026-01-01T00:00:00Z"}}
        }))
        .expect("VolumeAttachment");
        trim_volume_attachment(&mut va);
        assert!(va.metadata.annotations.is_none() && va.metadata.finalizers.is_none());
        let f = volume_attachment_facts(&va).expect("ours");
        assert_eq!(f.persistent_volume.as_deref(), Some("pv-1"));
        assert_eq!((f.node.as_str(), f.attached, f.deleting), ("node-1", false, false));
        assert_eq!(f.attach_error, Some(("rpc error: timeout".into(), Some("2026-01-01T00:00:00Z".into()))));

        let mut other: VolumeAttachment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "csi-2"},
            "spec": {"attacher": "efs.csi.aws.com", "nodeName": "node-1", "source": {"persistentVolumeName": "x"}}
        }))
        .expect("VolumeAttachment");
        trim_volume_attachment(&mut other);
        assert_eq!(volume_attachment_facts(&other), None);
        assert_eq!(other.spec.node_name, "");
    }

    #[test]
    fn nodes_and_snapshot_contents_keep_their_ids() {
        let mut n: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ip-10-0-0-1", "labels": {"topology.kubernetes.io/zone": "us-east-1a"}},
            "spec": {"providerID": "aws:///us-east-1a/i-0abc", "podCIDR": "10.0.0.0/24"},
            "status": {"capacity": {"cpu": "2"}}
        }))
        .expect("Node");
        trim_node(&mut n);
        assert_eq!(n.spec.as_ref().and_then(|s| s.provider_id.as_deref()), Some("aws:///us-east-1a/i-0abc"));
        assert!(n.status.is_none() && n.metadata.labels.is_none());

        let c: VolumeSnapshotContent = serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
            "metadata": {"name": "snapcontent-1"},
            "spec": {"driver": "ebs.csi.aws.com", "deletionPolicy": "Delete",
                "source": {"volumeHandle": "vol-1"},
                "volumeSnapshotRef": {"namespace": "db", "name": "nightly"}},
            "status": {"snapshotHandle": "snap-0abc", "readyToUse": true}
        }))
        .expect("VolumeSnapshotContent");
        assert_eq!(snapshot_handles(&c).collect::<Vec<_>>(), ["snap-0abc"]);
    }
}
