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

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    AWSElasticBlockStoreVolumeSource, CSIPersistentVolumeSource, ObjectReference, PersistentVolume,
    PersistentVolumeSpec, PersistentVolumeStatus,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::render::DRIVER_NAME;

/// How long the API server keeps each of the operator's watches open before the watcher renews
/// it from its last resourceVersion (`timeoutSeconds`). kube's default is 290 s: with about 20
/// watches that is 250 requests an hour for nothing. kube-apiserver honours the value a client
/// asks for (it picks a random one of `--min-request-timeout`, default 1800 s, to 3600 s only for a
/// watch that asks none), and kube 5's client has no read timeout that would cut a long watch
/// short. The cost: the watcher treats a watch that delivered nothing, not even the BOOKMARK a
/// real API server sends about every minute, for this long plus 5 s as a dead connection, so a
/// connection dropped without a TCP reset is noticed only after that long.
pub const WATCH_TIMEOUT_SECS: u32 = 1800;

/// The watcher configuration every watch of the operator starts from: bookmarks on (kube's
/// default), pages of 500 for the initial list, and [`WATCH_TIMEOUT_SECS`].
pub fn watcher_config() -> watcher::Config {
    watcher::Config::default().timeout(WATCH_TIMEOUT_SECS)
}

/// Whether a CRD exists, kept current by a metadata watch of it by name, as a gate for the
/// watches of the kinds it serves: a watch of a kind nobody serves fails and retries every 30 s
/// (kube's backoff), 120 requests an hour for each absent API. `initially` is the value until the
/// watch listed. The returned future runs the watch; dropping it stops it.
pub fn crd_gate(
    client: kube::Client,
    name: &str,
    initially: bool,
) -> (watch::Receiver<bool>, impl std::future::Future<Output = ()> + Send + 'static) {
    let api: Api<PartialObjectMeta<CustomResourceDefinition>> = Api::all(client);
    let cfg = watcher_config().fields(&format!("metadata.name={name}"));
    let (tx, rx) = watch::channel(initially);
    let run = async move {
        let (reader, writer) = reflector::store();
        let mut events = std::pin::pin!(reflector::reflector(writer, watcher(api, cfg)).default_backoff());
        while let Some(ev) = events.next().await {
            if let Ok(watcher::Event::InitDone | watcher::Event::Apply(_) | watcher::Event::Delete(_)) = ev {
                let present = !reader.state().is_empty();
                tx.send_if_modified(|open| std::mem::replace(open, present) != present);
            }
        }
    };
    (rx, run)
}

/// The watch `make` starts, run only while `gate` is open. It starts when the gate opens, stops
/// when it closes (then reports an empty list, so a reflector behind it holds nothing of a kind
/// no longer served), and starts afresh when it opens again.
pub fn gated<K, S, F>(
    gate: watch::Receiver<bool>,
    make: F,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: Send + 'static,
    S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
    F: FnMut() -> S + Send + 'static,
{
    struct Gated<S, F> {
        gate: watch::Receiver<bool>,
        make: F,
        current: Option<std::pin::Pin<Box<S>>>,
        /// The watch just stopped: the empty list still to report (Init, then InitDone).
        emptied: u8,
    }
    enum Next<T> {
        Item(Option<T>),
        /// The gate closed (true), or its sender is gone (false).
        Closed(bool),
    }
    let state = Gated { gate, make, current: None, emptied: 0 };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if st.emptied > 0 {
                st.emptied -= 1;
                let ev = if st.emptied == 1 { watcher::Event::Init } else { watcher::Event::InitDone };
                return Some((Ok(ev), st));
            }
            let Gated { gate, make, current, emptied } = &mut st;
            match current {
                None => {
                    // The sender lives as long as the watch of the CRD: if it ends, so does this.
                    if gate.wait_for(|open| *open).await.map(|_| ()).is_err() {
                        return None;
                    }
                    *current = Some(Box::pin(make()));
                }
                Some(stream) => {
                    let next = tokio::select! {
                        item = stream.next() => Next::Item(item),
                        closed = gate.wait_for(|open| !*open) => Next::Closed(closed.is_ok()),
                    };
                    match next {
                        Next::Item(Some(item)) => return Some((item, st)),
                        Next::Item(None) => *current = None,
                        Next::Closed(false) => return None,
                        Next::Closed(true) => {
                            *current = None;
                            *emptied = 2;
                        }
                    }
                }
            }
        }
    })
}

/// A spawned task, aborted when dropped.
pub struct Task(pub tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

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
    /// Whether the kind is served (`start_gated`).
    gate: Option<watch::Receiver<bool>>,
}

impl<K> CompactWatch<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    /// Starts watching `api` with `cfg`, storing each object as `trim` leaves it.
    pub fn start(api: Api<K>, cfg: watcher::Config, trim: fn(&mut K)) -> Self {
        Self::run(watcher(api, cfg).default_backoff().modify(trim), None)
    }

    /// Like `start`, but watches only while `gate` is open (the kind is served); while it is
    /// closed, `state` is None, as before the initial list.
    pub fn start_gated(api: Api<K>, cfg: watcher::Config, trim: fn(&mut K), gate: watch::Receiver<bool>) -> Self {
        let make = move || watcher(api.clone(), cfg.clone()).default_backoff();
        Self::run(gated(gate.clone(), make).modify(trim), Some(gate))
    }

    fn run(
        watch: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
        gate: Option<watch::Receiver<bool>>,
    ) -> Self {
        let writer = reflector::store::Writer::<K>::default();
        let store = writer.as_reader();
        let synced = Arc::new(AtomicBool::new(false));
        let error = Arc::new(Mutex::new(None));
        let events = Arc::new(AtomicU64::new(0));
        let stream = reflector::reflector(writer, watch);
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
        Self { store, synced, error, events, task, gate }
    }

    /// The stored (trimmed) objects; None until the initial list completed, and while the gate
    /// (if any) is closed.
    pub fn state(&self) -> Option<Vec<Arc<K>>> {
        let open = self.gate.as_ref().is_none_or(|g| *g.borrow());
        (open && self.synced.load(Ordering::Acquire)).then(|| self.store.state())
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
        Self(CompactWatch::start(Api::all(client), watcher_config(), trim_pv))
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
