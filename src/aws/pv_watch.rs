//! What the cluster says about EBS volumes, kept current by watches instead of a list per
//! refresh: PersistentVolumes (CSI `ebs.csi.aws.com` and in-tree `awsElasticBlockStore`), and the
//! generic `CompactWatch` that other kinds (Nodes, VolumeAttachments) reuse.
//!
//! Each watch is a kube reflector whose transform (`trim_pv`) keeps only what the readers need
//! before an object reaches the store: for a PersistentVolume its name, the driver and volume ID
//! (an EBS volume ID, `vol-...` or `aws://zone/vol-...`), its phase and its claim. A PV of another
//! driver keeps its name only (a volume tagged with that name is still referenced). Memory is then
//! a few hundred bytes a PV, and after the initial list the API server sends only changes: no
//! periodic re-list, whatever the inventory interval.
//!
//! Readers get `None` until the initial list completed (a partial view is no evidence that a
//! volume is unreferenced), then the last known state, also while the watch re-lists after an
//! error.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    AWSElasticBlockStoreVolumeSource, CSIPersistentVolumeSource, ObjectReference, PersistentVolume,
    PersistentVolumeSpec, PersistentVolumeStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;

use crate::render::DRIVER_NAME;

/// How a PersistentVolume reaches its EBS volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PvSource {
    /// `spec.csi` with driver `ebs.csi.aws.com`.
    Csi,
    /// `spec.awsElasticBlockStore` (served by this driver through CSI migration).
    InTree,
}

/// The part of a PersistentVolume the inventory reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvRef {
    pub name: String,
    pub source: PvSource,
    /// The EBS volume ID (`vol-...`), whichever form the PV spells it in; None when the handle is
    /// not an EBS volume ID.
    pub volume_id: Option<String>,
    /// `status.phase`: Pending, Available, Bound, Released, Failed.
    pub phase: Option<String>,
    /// The bound claim as `namespace/name`.
    pub claim: Option<String>,
}

/// The EBS volume ID in a CSI volume handle or an in-tree `volumeID`: `vol-0abc` or
/// `aws://us-east-1a/vol-0abc` (the in-tree form, also found in migrated PVs). None for anything
/// else.
pub fn ebs_volume_id(handle: &str) -> Option<&str> {
    let id = handle.trim();
    let id = match id.strip_prefix("aws://") {
        Some(rest) => rest.rsplit('/').next()?,
        None => id,
    };
    let hex = id.strip_prefix("vol-")?;
    (!hex.is_empty() && hex.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(id)
}

/// The EBS part of a PersistentVolume; None for PVs of other drivers.
pub fn pv_ref(pv: &PersistentVolume) -> Option<PvRef> {
    let spec = pv.spec.as_ref()?;
    let (source, handle) = if let Some(csi) = spec.csi.as_ref().filter(|c| c.driver == DRIVER_NAME) {
        (PvSource::Csi, csi.volume_handle.as_str())
    } else if let Some(ebs) = &spec.aws_elastic_block_store {
        (PvSource::InTree, ebs.volume_id.as_str())
    } else {
        return None;
    };
    let claim = spec.claim_ref.as_ref().and_then(|c| match (&c.namespace, &c.name) {
        (Some(ns), Some(n)) => Some(format!("{ns}/{n}")),
        (None, Some(n)) => Some(n.clone()),
        _ => None,
    });
    Some(PvRef {
        name: pv.metadata.name.clone().unwrap_or_default(),
        source,
        volume_id: ebs_volume_id(handle).map(str::to_string),
        phase: pv.status.as_ref().and_then(|s| s.phase.clone()),
        claim,
    })
}

/// The transform of the PV watch: keeps name, driver and volume ID, phase and claim of EBS PVs,
/// and only the name of the others.
pub fn trim_pv(pv: &mut PersistentVolume) {
    let meta = ObjectMeta {
        name: pv.metadata.name.take(),
        resource_version: pv.metadata.resource_version.take(),
        ..ObjectMeta::default()
    };
    pv.metadata = meta;
    let Some(spec) = pv.spec.take() else {
        pv.status = None;
        return;
    };
    let csi = spec.csi.filter(|c| c.driver == DRIVER_NAME).map(|c| CSIPersistentVolumeSource {
        driver: c.driver,
        volume_handle: c.volume_handle,
        ..CSIPersistentVolumeSource::default()
    });
    let in_tree = spec.aws_elastic_block_store.map(|e| AWSElasticBlockStoreVolumeSource {
        volume_id: e.volume_id,
        ..AWSElasticBlockStoreVolumeSource::default()
    });
    if csi.is_none() && in_tree.is_none() {
        pv.status = None;
        return;
    }
    let claim_ref =
        spec.claim_ref.map(|c| ObjectReference { namespace: c.namespace, name: c.name, ..Default::default() });
    pv.spec = Some(PersistentVolumeSpec { csi, aws_elastic_block_store: in_tree, claim_ref, ..Default::default() });
    pv.status = pv.status.take().map(|s| PersistentVolumeStatus { phase: s.phase, ..Default::default() });
}

/// What keeps an EBS volume from being an orphan, from the PersistentVolumes of the cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PvReferences {
    /// Every PersistentVolume name (any driver): a volume tagged `CSIVolumeName` with one of
    /// them belongs to a live PV.
    pub names: HashSet<String>,
    /// EBS PVs by volume ID (CSI and in-tree, both ID forms).
    pub by_volume: HashMap<String, PvRef>,
    /// EBS PVs whose handle is not an EBS volume ID (counted, never matched).
    pub unparsed: u64,
}

impl PvReferences {
    pub fn from_pvs<'a>(pvs: impl IntoIterator<Item = &'a PersistentVolume>) -> Self {
        let mut out = Self::default();
        for pv in pvs {
            if let Some(name) = &pv.metadata.name {
                out.names.insert(name.clone());
            }
            let Some(r) = pv_ref(pv) else { continue };
            match r.volume_id.clone() {
                Some(id) => {
                    out.by_volume.insert(id, r);
                }
                None => out.unparsed += 1,
            }
        }
        out
    }

    /// Whether a volume is referenced: by its ID, or by the PV name it was created for.
    pub fn references(&self, volume_id: &str, created_for: Option<&str>) -> bool {
        self.by_volume.contains_key(volume_id) || created_for.is_some_and(|n| self.names.contains(n))
    }
}

/// A reflector of one kind whose objects are trimmed before they are stored; readable once the
/// initial list completed. Dropping it stops the watch.
pub struct CompactWatch<K: kube::Resource + Clone + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    synced: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
    /// Watch events received (initial list items included): the watch's work, for tests and
    /// benchmarks of the request budget.
    events: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> CompactWatch<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    /// Starts watching `api` with `cfg`, storing each object as `trim` leaves it.
    pub fn start(api: Api<K>, cfg: watcher::Config, trim: fn(&mut K)) -> Self {
        let writer = reflector::store::Writer::<K>::default();
        let store = writer.as_reader();
        let synced = Arc::new(AtomicBool::new(false));
        let error = Arc::new(Mutex::new(None));
        let events = Arc::new(AtomicU64::new(0));
        let stream = reflector::reflector(writer, watcher(api, cfg).default_backoff().modify(trim));
        let (flag, err, count) = (synced.clone(), error.clone(), events.clone());
        let kind = K::kind(&K::DynamicType::default()).to_string();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Err(e) => {
                        tracing::debug!(kind, error = %e, "watch retrying");
                        if let Ok(mut slot) = err.lock() {
                            *slot = Some(e.to_string());
                        }
                        continue;
                    }
                    Ok(watcher::Event::InitDone) => flag.store(true, Ordering::Release),
                    Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitApply(_)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(watcher::Event::Init) => {}
                }
                if let Ok(mut slot) = err.lock() {
                    *slot = None;
                }
            }
        });
        Self { store, synced, error, events, task }
    }

    /// The stored (trimmed) objects; None until the initial list completed.
    pub fn state(&self) -> Option<Vec<Arc<K>>> {
        self.synced.load(Ordering::Acquire).then(|| self.store.state())
    }

    /// The last watch error while not yet listed (why `state` is None).
    pub fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }

    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Waits until the initial list completed, at most `limit`; returns whether it did.
    pub async fn wait_listed(&self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.synced.load(Ordering::Acquire) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        true
    }
}

impl<K: kube::Resource + Clone + 'static> Drop for CompactWatch<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The PersistentVolume watch: `references()` is what the inventory joins EBS volumes with.
pub struct PvWatch(CompactWatch<PersistentVolume>);

impl PvWatch {
    /// Starts watching every PersistentVolume (they are cluster-scoped; no selector reaches the
    /// driver field, so the transform does the filtering).
    pub fn start(client: kube::Client) -> Self {
        Self(CompactWatch::start(Api::all(client), watcher::Config::default(), trim_pv))
    }

    /// The references, once the initial list completed.
    pub fn references(&self) -> Option<PvReferences> {
        self.0.state().map(|pvs| PvReferences::from_pvs(pvs.iter().map(|p| p.as_ref())))
    }

    /// The EBS PersistentVolumes, once the initial list completed.
    pub fn ebs_volumes(&self) -> Option<Vec<PvRef>> {
        self.0.state().map(|pvs| pvs.iter().filter_map(|p| pv_ref(p)).collect())
    }

    pub fn error(&self) -> Option<String> {
        self.0.error()
    }

    /// Waits until the initial list completed, at most `limit`; returns whether it did.
    pub async fn wait_listed(&self, limit: std::time::Duration) -> bool {
        self.0.wait_listed(limit).await
    }

    pub fn events(&self) -> u64 {
        self.0.events()
    }
}

/// One paged list of every PersistentVolume (500 a page), reduced at once: for a single look
/// (`doctor`), where a watch would cost more than it saves.
pub async fn list_pv_references(client: &kube::Client) -> Result<PvReferences, kube::Error> {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let mut pvs = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let list = api.list(&params).await?;
        for mut pv in list.items {
            trim_pv(&mut pv);
            pvs.push(pv);
        }
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => params = params.continue_token(&c),
            None => break,
        }
    }
    Ok(PvReferences::from_pvs(&pvs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(v: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(v).expect("PersistentVolume")
    }

    #[test]
    fn both_volume_id_forms_are_read() {
        assert_eq!(ebs_volume_id("vol-0abc123"), Some("vol-0abc123"));
        assert_eq!(ebs_volume_id("aws://us-east-1a/vol-0abc123"), Some("vol-0abc123"));
        assert_eq!(ebs_volume_id("aws:///vol-0abc123"), Some("vol-0abc123"));
        assert_eq!(ebs_volume_id("fs-123"), None);
        assert_eq!(ebs_volume_id("vol-"), None);
        assert_eq!(ebs_volume_id("aws://us-east-1a/"), None);
    }

    #[test]
    fn the_transform_keeps_what_the_inventory_reads_and_nothing_else() {
        let mut csi = pv(serde_json::json!({
            "metadata": {"name": "pvc-1", "resourceVersion": "7", "labels": {"a": "b"},
                "annotations": {"pv.kubernetes.io/provisioned-by": "ebs.csi.aws.com"}},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1", "fsType": "ext4",
                    "volumeAttributes": {"x": "y"}},
                "claimRef": {"namespace": "db", "name": "data", "uid": "u", "resourceVersion": "3"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": []}}},
            "status": {"phase": "Bound", "lastPhaseTransitionTime": "2026-01-01T00:00:00Z"}
        }));
        trim_pv(&mut csi);
        let expected = pv(serde_json::json!({
            "metadata": {"name": "pvc-1", "resourceVersion": "7"},
            "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"},
                "claimRef": {"namespace": "db", "name": "data"}},
            "status": {"phase": "Bound"}
        }));
        assert_eq!(csi, expected);
        let r = pv_ref(&csi).expect("an EBS PV");
        assert_eq!(
            r,
            PvRef {
                name: "pvc-1".into(),
                source: PvSource::Csi,
                volume_id: Some("vol-1".into()),
                phase: Some("Bound".into()),
                claim: Some("db/data".into())
            }
        );

        let mut in_tree = pv(serde_json::json!({
            "metadata": {"name": "gp2-old"},
            "spec": {"awsElasticBlockStore": {"volumeID": "aws://us-east-1b/vol-2", "fsType": "ext4"}},
            "status": {"phase": "Released"}
        }));
        trim_pv(&mut in_tree);
        let r = pv_ref(&in_tree).expect("an in-tree EBS PV");
        assert_eq!(
            (r.source, r.volume_id.as_deref(), r.phase.as_deref()),
            (PvSource::InTree, Some("vol-2"), Some("Released"))
        );

        let mut efs = pv(serde_json::json!({
            "metadata": {"name": "shared", "labels": {"a": "b"}},
            "spec": {"csi": {"driver": "efs.csi.aws.com", "volumeHandle": "vol-3"}},
            "status": {"phase": "Bound"}
        }));
        trim_pv(&mut efs);
        assert_eq!(efs, pv(serde_json::json!({"metadata": {"name": "shared"}})));
        assert_eq!(pv_ref(&efs), None);

        let refs = PvReferences::from_pvs([&csi, &in_tree, &efs]);
        assert!(refs.references("vol-1", None) && refs.references("vol-2", None));
        assert!(!refs.references("vol-3", None), "another driver's handle references no EBS volume");
        assert!(refs.references("vol-9", Some("shared")), "a volume created for a live PV (any driver)");
        assert!(!refs.references("vol-9", Some("gone")));
    }
}
