//! What the cluster says about EBS volumes, kept current by watches instead of a list per
//! refresh: PersistentVolumes (CSI `ebs.csi.aws.com` and in-tree `awsElasticBlockStore`), and the
//! generic `CompactWatch` that other kinds (Nodes, VolumeAttachments) reuse.
//!
//! Each watch keeps, by object name, a compact record of only what the readers need, made from
//! each object as it arrives (the object itself is dropped at once): for a PersistentVolume
//! (`pv_ref`) the driver and volume ID (an EBS volume ID, `vol-...` or `aws://zone/vol-...`), its
//! phase and its claim; a PV of another driver keeps its name only (a volume tagged with that name
//! is still referenced). A k8s-openapi `PersistentVolume` is 3.5 KB before any of its strings, even
//! trimmed, so a store of them cost about 180 MB for 50,000 PVs; a record is about 200 bytes.
//! After the initial list the API server sends only changes: no periodic re-list, whatever the
//! inventory interval.
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
use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector;
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
    /// From the PV watch's records: every PV name, and the EBS PVs (`pv_ref`) by volume ID.
    pub fn from_records<'a>(records: impl IntoIterator<Item = (&'a str, &'a Option<PvRef>)>) -> Self {
        let mut out = Self::default();
        for (name, r) in records {
            out.names.insert(name.to_string());
            let Some(r) = r else { continue };
            match r.volume_id.clone() {
                Some(id) => {
                    out.by_volume.insert(id, r.clone());
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

/// A watch of one cluster-scoped kind that keeps, by object name, the record `compact` makes of
/// each object (the object is dropped at once); readable once the initial list completed. As
/// kube's reflector, a re-list builds the new records aside and swaps them in when complete, so
/// readers see the last full state meanwhile. Dropping it stops the watch.
pub struct CompactWatch<R> {
    records: Arc<Mutex<HashMap<Box<str>, R>>>,
    synced: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
    /// Watch events received (initial list items included): the watch's work, for tests and
    /// benchmarks of the request budget.
    events: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    /// Whether the kind is served (`start_gated`).
    gate: Option<watch::Receiver<bool>>,
}

impl<R: Send + 'static> CompactWatch<R> {
    /// Starts watching `api` with `cfg`, keeping `compact` of each object.
    pub fn start<K>(api: Api<K>, cfg: watcher::Config, compact: fn(K) -> R) -> Self
    where
        K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
        K::DynamicType: Default,
    {
        Self::run(watcher(api, cfg).default_backoff(), compact, None)
    }

    /// Like `start`, but watches only while `gate` is open (the kind is served); while it is
    /// closed, `read` gives None, as before the initial list.
    pub fn start_gated<K>(api: Api<K>, cfg: watcher::Config, compact: fn(K) -> R, gate: watch::Receiver<bool>) -> Self
    where
        K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
        K::DynamicType: Default,
    {
        let make = move || watcher(api.clone(), cfg.clone()).default_backoff();
        Self::run(gated(gate.clone(), make), compact, Some(gate))
    }

    fn run<K>(
        watch: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
        compact: fn(K) -> R,
        gate: Option<watch::Receiver<bool>>,
    ) -> Self
    where
        K: kube::Resource + Send + 'static,
        K::DynamicType: Default,
    {
        let records = Arc::new(Mutex::new(HashMap::new()));
        let synced = Arc::new(AtomicBool::new(false));
        let error = Arc::new(Mutex::new(None));
        let events = Arc::new(AtomicU64::new(0));
        let (store, flag, err, count) = (records.clone(), synced.clone(), error.clone(), events.clone());
        let kind = K::kind(&K::DynamicType::default()).to_string();
        let task = tokio::spawn(async move {
            let mut watch = std::pin::pin!(watch);
            // The records of a re-list in progress.
            let mut listing: Option<HashMap<Box<str>, R>> = None;
            let name = |o: &K| Box::<str>::from(o.meta().name.as_deref().unwrap_or_default());
            while let Some(ev) = watch.next().await {
                let ev = match ev {
                    Err(e) => {
                        tracing::debug!(kind, error = %e, "watch retrying");
                        if let Ok(mut slot) = err.lock() {
                            *slot = Some(e.to_string());
                        }
                        continue;
                    }
                    Ok(ev) => ev,
                };
                if !matches!(ev, watcher::Event::Init | watcher::Event::InitDone) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                match ev {
                    watcher::Event::Init => listing = Some(HashMap::new()),
                    watcher::Event::InitApply(o) => {
                        listing.get_or_insert_default().insert(name(&o), compact(o));
                    }
                    watcher::Event::InitDone => {
                        let mut fresh = listing.take().unwrap_or_default();
                        fresh.shrink_to_fit();
                        if let Ok(mut r) = store.lock() {
                            *r = fresh;
                        }
                        flag.store(true, Ordering::Release);
                    }
                    watcher::Event::Apply(o) => {
                        if let Ok(mut r) = store.lock() {
                            r.insert(name(&o), compact(o));
                        }
                    }
                    watcher::Event::Delete(o) => {
                        if let Ok(mut r) = store.lock() {
                            r.remove(o.meta().name.as_deref().unwrap_or_default());
                        }
                    }
                }
                if let Ok(mut slot) = err.lock() {
                    *slot = None;
                }
            }
        });
        Self { records, synced, error, events, task, gate }
    }

    /// `f` of the records by name; None until the initial list completed, and while the gate
    /// (if any) is closed.
    pub fn read<T>(&self, f: impl FnOnce(&HashMap<Box<str>, R>) -> T) -> Option<T> {
        let open = self.gate.as_ref().is_none_or(|g| *g.borrow());
        if !(open && self.synced.load(Ordering::Acquire)) {
            return None;
        }
        self.records.lock().ok().map(|r| f(&r))
    }

    /// The last watch error while not yet listed (why `read` gives None).
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

impl<R> Drop for CompactWatch<R> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The PersistentVolume watch: `references()` is what the inventory joins EBS volumes with.
pub struct PvWatch(CompactWatch<Option<PvRef>>);

impl PvWatch {
    /// Starts watching every PersistentVolume (they are cluster-scoped; no selector reaches the
    /// driver field, so the transform does the filtering).
    pub fn start(client: kube::Client) -> Self {
        Self(CompactWatch::start(Api::all(client), watcher_config(), |pv| pv_ref(&pv)))
    }

    /// The references, once the initial list completed.
    pub fn references(&self) -> Option<PvReferences> {
        self.0.read(|pvs| PvReferences::from_records(pvs.iter().map(|(name, r)| (&**name, r))))
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
        pvs.extend(list.items.into_iter().map(|pv| (pv.metadata.name.clone().unwrap_or_default(), pv_ref(&pv))));
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => params = params.continue_token(&c),
            None => break,
        }
    }
    Ok(PvReferences::from_records(pvs.iter().map(|(name, r)| (name.as_str(), r))))
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
    fn the_record_keeps_what_the_inventory_reads() {
        let csi = pv(serde_json::json!({
            "metadata": {"name": "pvc-1", "resourceVersion": "7", "labels": {"a": "b"},
                "annotations": {"pv.kubernetes.io/provisioned-by": "ebs.csi.aws.com"}},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1", "fsType": "ext4",
                    "volumeAttributes": {"x": "y"}},
                "claimRef": {"namespace": "db", "name": "data", "uid": "u", "resourceVersion": "3"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": []}}},
            "status": {"phase": "Bound", "lastPhaseTransitionTime": "2026-01-01T00:00:00Z"}
        }));
        let csi = pv_ref(&csi);
        assert_eq!(
            csi,
            Some(PvRef {
                name: "pvc-1".into(),
                source: PvSource::Csi,
                volume_id: Some("vol-1".into()),
                phase: Some("Bound".into()),
                claim: Some("db/data".into())
            })
        );

        let in_tree = pv_ref(&pv(serde_json::json!({
            "metadata": {"name": "gp2-old"},
            "spec": {"awsElasticBlockStore": {"volumeID": "aws://us-east-1b/vol-2", "fsType": "ext4"}},
            "status": {"phase": "Released"}
        })));
        let r = in_tree.as_ref().expect("an in-tree EBS PV");
        assert_eq!(
            (r.source, r.volume_id.as_deref(), r.phase.as_deref()),
            (PvSource::InTree, Some("vol-2"), Some("Released"))
        );

        let efs = pv_ref(&pv(serde_json::json!({
            "metadata": {"name": "shared", "labels": {"a": "b"}},
            "spec": {"csi": {"driver": "efs.csi.aws.com", "volumeHandle": "vol-3"}},
            "status": {"phase": "Bound"}
        })));
        assert_eq!(efs, None, "another driver's PV keeps its name only");

        let refs = PvReferences::from_records([("pvc-1", &csi), ("gp2-old", &in_tree), ("shared", &efs)]);
        assert!(refs.references("vol-1", None) && refs.references("vol-2", None));
        assert!(!refs.references("vol-3", None), "another driver's handle references no EBS volume");
        assert!(refs.references("vol-9", Some("shared")), "a volume created for a live PV (any driver)");
        assert!(!refs.references("vol-9", Some("gone")));
    }
}
