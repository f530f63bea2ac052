//! The object store: every object by resource, namespace and name; the single resourceVersion
//! counter; and the event history that watches replay and stream from.
//!
//! One mutex guards everything, so a write, its resourceVersion and its event are atomic and a
//! watch that subscribes under the lock misses nothing. Objects are `Arc<Value>` so lists and
//! events share them instead of copying.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, as watches see it.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub storage_key: String,
    pub type_: EventType,
    pub object: Arc<Value>,
    /// The object before the change (for MODIFIED), so selector watches can turn a change that
    /// leaves or enters the selection into DELETED or ADDED like the real server.
    pub old: Option<Arc<Value>>,
}

/// (namespace, name); the namespace is empty for cluster-scoped objects.
pub type ObjKey = (String, String);

pub struct Inner {
    rv: u64,
    objects: HashMap<String, BTreeMap<ObjKey, Arc<Value>>>,
    history: VecDeque<Arc<Event>>,
    /// Events at or below this resourceVersion are no longer kept.
    compacted: u64,
    history_cap: usize,
    events: broadcast::Sender<Arc<Event>>,
    /// uid -> number of stored objects with it (one, unless raw inserts duplicate uids).
    uids: HashMap<String, usize>,
    /// Owner uid -> the objects naming it in their ownerReferences, as kube-controller-manager's
    /// informers index them: controllers and garbage collection find an object's dependents
    /// without scanning a namespace (the scale bench's kube-system holds 5,000 node plugin pods).
    dependents: HashMap<String, BTreeSet<Entry>>,
    /// The terminating objects, which garbage collection looks at on every pass.
    terminating: BTreeSet<Entry>,
    /// Objects whose owners may be gone: written with other owner references than before, or
    /// one of their owners was removed. Garbage collection takes them ([`Inner::take_gc_candidates`])
    /// instead of looking at every object under the store lock.
    suspects: BTreeSet<Entry>,
    /// Node name -> how many pods are bound to it, as kube-scheduler's NodeInfo cache counts them:
    /// picking the least loaded node does not look at every pod of the cluster.
    pods_on_node: HashMap<String, usize>,
}

/// The storage key of pods, whose `spec.nodeName` the store indexes (the controllers name it too).
pub const PODS: &str = "/pods";

/// Counts one more (`add`) or one fewer of `key`, forgetting keys that reach zero.
fn tally(counts: &mut HashMap<String, usize>, key: &str, add: bool) {
    if add {
        *counts.entry(key.to_string()).or_default() += 1;
    } else if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

/// The node a stored pod is bound to.
fn bound_node<'a>(storage_key: &str, obj: &'a Value) -> Option<&'a str> {
    (storage_key == PODS).then(|| obj["spec"]["nodeName"].as_str()).flatten().filter(|n| !n.is_empty())
}

/// One stored object: (storage key, key).
pub type Entry = (String, ObjKey);

/// The uids an object's ownerReferences name.
pub fn owner_uids(obj: &Value) -> BTreeSet<&str> {
    obj["metadata"]["ownerReferences"].as_array().into_iter().flatten().filter_map(|r| r["uid"].as_str()).collect()
}

pub struct Store {
    inner: Mutex<Inner>,
}

pub fn key_of(obj: &Value) -> ObjKey {
    (
        obj["metadata"]["namespace"].as_str().unwrap_or_default().to_string(),
        obj["metadata"]["name"].as_str().unwrap_or_default().to_string(),
    )
}

impl Store {
    pub fn new(history_cap: usize) -> Store {
        let (events, _) = broadcast::channel(65_536);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: HashMap::new(),
                history: VecDeque::new(),
                compacted: 1,
                history_cap: history_cap.max(1),
                events,
                uids: HashMap::new(),
                dependents: HashMap::new(),
                terminating: BTreeSet::new(),
                suspects: BTreeSet::new(),
                pods_on_node: HashMap::new(),
            }),
        }
    }

    /// Locks the store. A panic while holding it does not poison it: the data is still
    /// consistent because every mutation is a single map operation. The lock is parking_lot's,
    /// whose fair unlock lets the workload loop hand it to a waiting request (see
    /// `workloads::process`).
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }
}

impl Inner {
    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn compacted_rv(&self) -> u64 {
        self.compacted
    }

    /// Whether an object with this uid is stored (owner lookups for garbage collection).
    pub fn has_uid(&self, uid: &str) -> bool {
        self.uids.contains_key(uid)
    }

    fn index_uid(&mut self, obj: &Value, add: bool) {
        let Some(uid) = obj["metadata"]["uid"].as_str() else {
            return;
        };
        tally(&mut self.uids, uid, add);
    }

    /// How many pods are bound to `node`.
    pub fn pods_on_node(&self, node: &str) -> usize {
        self.pods_on_node.get(node).copied().unwrap_or(0)
    }

    fn index_node(&mut self, storage_key: &str, old: Option<&Value>, new: Option<&Value>) {
        let (before, after) =
            (old.and_then(|o| bound_node(storage_key, o)), new.and_then(|n| bound_node(storage_key, n)));
        if before == after {
            return;
        }
        if let Some(n) = before {
            tally(&mut self.pods_on_node, n, false);
        }
        if let Some(n) = after {
            tally(&mut self.pods_on_node, n, true);
        }
    }

    /// Keeps the dependents, terminating and suspects indexes for a write (`new` None: a removal).
    fn index_gc(&mut self, storage_key: &str, key: &ObjKey, old: Option<&Value>, new: Option<&Value>) {
        let entry = (storage_key.to_string(), key.clone());
        let before = old.map(owner_uids).unwrap_or_default();
        let after = new.map(owner_uids).unwrap_or_default();
        for u in before.difference(&after) {
            if let Some(d) = self.dependents.get_mut(*u) {
                d.remove(&entry);
                if d.is_empty() {
                    self.dependents.remove(*u);
                }
            }
        }
        for u in after.difference(&before) {
            self.dependents.entry(u.to_string()).or_default().insert(entry.clone());
        }
        if new.is_some() && before != after && !after.is_empty() {
            self.suspects.insert(entry.clone());
        }
        if new.is_some_and(|n| n["metadata"].get("deletionTimestamp").is_some()) {
            self.terminating.insert(entry);
        } else {
            self.terminating.remove(&entry);
        }
    }

    /// The objects of `storage_key` whose owner references name `owner_uid`, in (namespace,
    /// name) order.
    pub fn dependents(&self, storage_key: Option<&str>, owner_uid: &str) -> Vec<(String, Arc<Value>)> {
        let Some(entries) = self.dependents.get(owner_uid) else { return Vec::new() };
        entries
            .iter()
            .filter(|(k, _)| storage_key.is_none_or(|s| s == k))
            .filter_map(|(k, key)| self.get(k, key).map(|o| (k.clone(), o)))
            .collect()
    }

    /// Makes an object a suspect again (garbage collection could not act on it yet).
    pub fn suspect(&mut self, storage_key: &str, key: ObjKey) {
        self.suspects.insert((storage_key.to_string(), key));
    }

    /// What a garbage collection pass looks at: the terminating objects, and the suspects (taken:
    /// each is looked at once per write that made it one).
    pub fn take_gc_candidates(&mut self) -> Vec<(String, Arc<Value>)> {
        let suspects = std::mem::take(&mut self.suspects);
        let entries: BTreeSet<&Entry> = self.terminating.iter().chain(&suspects).collect();
        entries.into_iter().filter_map(|(k, key)| self.get(k, key).map(|o| (k.clone(), o))).collect()
    }

    pub fn get(&self, storage_key: &str, key: &ObjKey) -> Option<Arc<Value>> {
        self.objects.get(storage_key)?.get(key).cloned()
    }

    /// Objects of a resource, optionally in one namespace, in (namespace, name) order.
    pub fn list(&self, storage_key: &str, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let Some(map) = self.objects.get(storage_key) else {
            return Vec::new();
        };
        match namespace {
            Some(ns) => map
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            None => map.values().cloned().collect(),
        }
    }

    /// Objects after `after` (exclusive) for pagination, up to `limit`, plus whether more remain.
    pub fn list_page(
        &self,
        storage_key: &str,
        namespace: Option<&str>,
        after: Option<&ObjKey>,
        mut keep: impl FnMut(&Value) -> bool,
        limit: usize,
    ) -> (Vec<Arc<Value>>, Option<ObjKey>, usize) {
        let Some(map) = self.objects.get(storage_key) else {
            return (Vec::new(), None, 0);
        };
        let start = match (after, namespace) {
            (Some(k), _) => std::ops::Bound::Excluded(k.clone()),
            (None, Some(ns)) => std::ops::Bound::Included((ns.to_string(), String::new())),
            (None, None) => std::ops::Bound::Unbounded,
        };
        let mut out = Vec::new();
        let mut last = None;
        let mut remaining = 0usize;
        for ((ns, name), obj) in map.range((start, std::ops::Bound::Unbounded)) {
            if namespace.is_some_and(|want| want != ns) {
                break;
            }
            if !keep(obj) {
                continue;
            }
            if out.len() < limit {
                out.push(obj.clone());
                last = Some((ns.clone(), name.clone()));
            } else {
                remaining += 1;
            }
        }
        let cont = if remaining > 0 { last } else { None };
        (out, cont, remaining)
    }

    /// The objects (with their resource) for which `keep` holds, in one scan that copies
    /// nothing else: the garbage collector's passes select the few objects they act on.
    pub fn select(&self, keep: impl Fn(&str, &Value) -> bool) -> Vec<(String, Arc<Value>)> {
        self.objects
            .iter()
            .flat_map(|(k, map)| map.values().filter(|o| keep(k, o)).map(move |o| (k.clone(), o.clone())))
            .collect()
    }

    pub fn count(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    /// Stores `obj` (whose metadata the caller has prepared), stamping the next resourceVersion,
    /// and records the event. Returns the stored object.
    pub fn put(&mut self, storage_key: &str, mut obj: Value) -> Arc<Value> {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let key = key_of(&obj);
        let obj = Arc::new(obj);
        let old = self.objects.entry(storage_key.to_string()).or_default().insert(key.clone(), obj.clone());
        self.index_gc(storage_key, &key, old.as_deref(), Some(&obj));
        self.index_node(storage_key, old.as_deref(), Some(&obj));
        if let Some(o) = &old {
            self.index_uid(o, false);
        }
        self.index_uid(&obj, true);
        let type_ = if old.is_some() { EventType::Modified } else { EventType::Added };
        self.record(storage_key, type_, obj.clone(), old);
        obj
    }

    /// Removes an object, recording a DELETED event carrying a new resourceVersion.
    pub fn remove(&mut self, storage_key: &str, key: &ObjKey) -> Option<Arc<Value>> {
        let old = self.objects.get_mut(storage_key)?.remove(key)?;
        self.index_uid(&old, false);
        self.index_gc(storage_key, key, Some(&old), None);
        self.index_node(storage_key, Some(&old), None);
        // Its dependents may have lost their last owner.
        if let Some(uid) = old["metadata"]["uid"].as_str()
            && !self.has_uid(uid)
            && let Some(d) = self.dependents.get(uid)
        {
            self.suspects.extend(d.iter().cloned());
        }
        self.rv += 1;
        let mut gone = (*old).clone();
        gone["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let gone = Arc::new(gone);
        self.record(storage_key, EventType::Deleted, gone.clone(), Some(old));
        Some(gone)
    }

    /// Drops every object of a resource (CRD deletion), with DELETED events.
    pub fn drop_resource(&mut self, storage_key: &str) {
        let keys: Vec<ObjKey> = self.objects.get(storage_key).map(|m| m.keys().cloned().collect()).unwrap_or_default();
        for k in keys {
            self.remove(storage_key, &k);
        }
        self.objects.remove(storage_key);
    }

    fn record(&mut self, storage_key: &str, type_: EventType, object: Arc<Value>, old: Option<Arc<Value>>) {
        let event = Arc::new(Event { rv: self.rv, storage_key: storage_key.to_string(), type_, object, old });
        self.history.push_back(event.clone());
        while self.history.len() > self.history_cap {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event);
    }

    /// Events of a resource after `rv`, or `None` when `rv` is older than the kept history.
    pub fn events_since(&self, storage_key: &str, rv: u64) -> Option<Vec<Arc<Event>>> {
        if rv < self.compacted {
            return None;
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Some(self.history.range(start..).filter(|e| e.storage_key == storage_key).cloned().collect())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(ns: &str, name: &str) -> Value {
        json!({"metadata": {"namespace": ns, "name": name}})
    }

    fn owned(name: &str, uid: &str, owners: &[&str]) -> Value {
        let refs: Vec<Value> = owners.iter().map(|u| json!({"uid": u, "controller": true})).collect();
        json!({"metadata": {"namespace": "ns", "name": name, "uid": uid, "ownerReferences": refs}})
    }

    fn names(v: &[(String, Arc<Value>)]) -> Vec<&str> {
        v.iter().map(|(_, o)| o["metadata"]["name"].as_str().unwrap_or_default()).collect()
    }

    #[test]
    fn owner_index_and_gc_candidates_follow_every_write() {
        let store = Store::new(100);
        let mut s = store.lock();
        s.put("rs", owned("rs-a", "u-rs-a", &[]));
        s.put("rs", owned("rs-b", "u-rs-b", &[]));
        s.put("pods", owned("p1", "u-p1", &["u-rs-a"]));
        s.put("pods", owned("p2", "u-p2", &["u-rs-a", "u-rs-b"]));
        assert_eq!(names(&s.dependents(Some("pods"), "u-rs-a")), ["p1", "p2"]);
        assert_eq!(names(&s.dependents(None, "u-rs-b")), ["p2"]);
        // New owner references make a suspect once; an unchanged write does not.
        assert_eq!(names(&s.take_gc_candidates()), ["p1", "p2"]);
        s.put("pods", owned("p1", "u-p1", &["u-rs-a"]));
        assert!(s.take_gc_candidates().is_empty());
        // An owner removed: its dependents are suspects.
        s.remove("rs", &("ns".into(), "rs-a".into()));
        assert_eq!(names(&s.take_gc_candidates()), ["p1", "p2"]);
        // Changed references move the object in the index.
        s.put("pods", owned("p1", "u-p1", &["u-rs-b"]));
        assert_eq!(names(&s.dependents(None, "u-rs-b")), ["p1", "p2"]);
        assert_eq!(names(&s.dependents(None, "u-rs-a")), ["p2"]);
        // Terminating objects are candidates on every pass until they go.
        let mut t = owned("rs-b", "u-rs-b", &[]);
        t["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        s.put("rs", t);
        s.take_gc_candidates();
        assert_eq!(names(&s.take_gc_candidates()), ["rs-b"]);
        s.remove("rs", &("ns".into(), "rs-b".into()));
        assert_eq!(names(&s.take_gc_candidates()), ["p1", "p2"]);
        s.remove("pods", &("ns".into(), "p1".into()));
        assert_eq!(names(&s.dependents(None, "u-rs-b")), ["p2"]);
    }

    #[test]
    fn one_counter_and_history_compaction() {
        let store = Store::new(3);
        let mut s = store.lock();
        let a = s.put("/configmaps", obj("a", "x"));
        let b = s.put("apps/deployments", obj("a", "y"));
        let a_rv: u64 = a["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
        let b_rv: u64 = b["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
        assert!(b_rv > a_rv);
        assert_eq!(s.events_since("/configmaps", 1).map(|e| e.len()), Some(1));
        s.put("/configmaps", obj("a", "z"));
        s.put("/configmaps", obj("b", "z"));
        // History holds 3 events; the first was compacted away.
        assert!(s.events_since("/configmaps", a_rv - 1).is_none());
        assert_eq!(s.events_since("/configmaps", a_rv).map(|e| e.len()), Some(2));
    }

    #[test]
    fn pods_per_node_follow_binding_rebinding_and_removal() {
        let pod = |name: &str, node: Option<&str>| {
            let mut p = obj("ns", name);
            if let Some(n) = node {
                p["spec"] = json!({"nodeName": n});
            }
            p
        };
        let s = Store::new(100);
        let mut s = s.lock();
        s.put(PODS, pod("a", None));
        assert_eq!(s.pods_on_node("n1"), 0);
        s.put(PODS, pod("a", Some("n1")));
        s.put(PODS, pod("b", Some("n1")));
        s.put(PODS, pod("c", Some("")));
        // Another kind's nodeName is not a binding.
        s.put("/other", pod("d", Some("n1")));
        assert_eq!((s.pods_on_node("n1"), s.pods_on_node("")), (2, 0));
        s.put(PODS, pod("b", Some("n2")));
        assert_eq!((s.pods_on_node("n1"), s.pods_on_node("n2")), (1, 1));
        s.remove(PODS, &("ns".into(), "a".into()));
        s.drop_resource(PODS);
        assert_eq!((s.pods_on_node("n1"), s.pods_on_node("n2")), (0, 0));
        assert!(s.pods_on_node.is_empty());
    }

    #[test]
    fn uid_index_follows_writes_and_removals() {
        let store = Store::new(10);
        let mut s = store.lock();
        s.put("/configmaps", json!({"metadata": {"namespace": "a", "name": "x", "uid": "u1"}}));
        assert!(s.has_uid("u1"));
        s.put("/configmaps", json!({"metadata": {"namespace": "a", "name": "x", "uid": "u2"}}));
        assert!(!s.has_uid("u1") && s.has_uid("u2"));
        s.remove("/configmaps", &("a".into(), "x".into()));
        assert!(!s.has_uid("u2"));
    }

    #[test]
    fn pages_stay_within_a_namespace() {
        let store = Store::new(100);
        let mut s = store.lock();
        for ns in ["a", "b"] {
            for i in 0..5 {
                s.put("/configmaps", obj(ns, &format!("c{i}")));
            }
        }
        let (page, cont, remaining) = s.list_page("/configmaps", Some("a"), None, |_| true, 3);
        assert_eq!(page.len(), 3);
        assert_eq!(remaining, 2);
        let (page2, cont2, _) = s.list_page("/configmaps", Some("a"), cont.as_ref(), |_| true, 3);
        assert_eq!(page2.len(), 2);
        assert!(cont2.is_none());
    }
}
