//! What kube-controller-manager, kube-scheduler and the kubelets of a real cluster do to
//! workloads, run by the `workloads` loop: the deployment, replicaset and daemonset controllers,
//! the scheduler, a kubelet stand-in for every Node and the node lifecycle / pod GC rules.
//!
//! Every controller is a synchronous `reconcile` of one object under the store lock that writes
//! through [`write::finish_write`] (so defaults, admission, managed fields and watch events are
//! those of any API write) and returns when it wants to look again.

pub mod daemonset;
pub mod deployment;
pub mod kubelet;
pub mod nodes;
pub mod replicaset;
pub mod scheduling;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::deletion::{DeleteOpts, delete_locked};
use crate::handlers::Target;
use crate::meta;
use crate::server::Shared;
use crate::store::{Inner, ObjKey, key_of};
use crate::write::finish_write;

pub const DEPLOYMENTS: &str = "apps/deployments";
pub const REPLICASETS: &str = "apps/replicasets";
pub const DAEMONSETS: &str = "apps/daemonsets";
pub const REVISIONS: &str = "apps/controllerrevisions";
pub use crate::store::PODS;
pub const NODES: &str = "/nodes";
pub const EVENTS: &str = "/events";
pub const SECRETS: &str = "/secrets";

pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";

/// One unit of work of the loop.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Work {
    Deployment(ObjKey),
    ReplicaSet(ObjKey),
    DaemonSet(ObjKey),
    /// Scheduling and the kubelet's sync of one pod.
    Pod(ObjKey),
    /// A Node's kubelet status and, when it is gone, its pods.
    Node(String),
}

/// What the kubelet stand-in remembers between syncs (a real kubelet keeps it in its runtime).
#[derive(Default)]
pub struct Memory {
    pub pods: HashMap<String, kubelet::PodRun>,
    /// Images present on each node.
    pub images: HashMap<String, HashSet<String>>,
    /// Stable index of each node (for its IP addresses).
    pub node_index: BTreeMap<String, usize>,
    pub next_pod_ip: HashMap<String, u32>,
    /// Where the scheduler's next filter pass starts (kube-scheduler's `nextStartNodeIndex`).
    pub next_start_node: usize,
}

/// One reconcile's view: the server, the locked store and the loop's memory.
pub struct Ctx<'a> {
    pub shared: &'a Shared,
    pub s: &'a mut Inner,
    pub mem: &'a mut Memory,
    pub now: Instant,
    /// Other objects this reconcile wants looked at now (e.g. a Deployment after its RS).
    pub follow_up: Vec<Work>,
}

impl Ctx<'_> {
    fn target(&self, storage: &str, ns: &str, name: &str, subresource: Option<&str>) -> Option<Target> {
        let info = self.shared.registry.any_version(storage)?;
        Some(Target {
            namespace: info.namespaced.then(|| ns.to_string()),
            info,
            name: Some(name.to_string()),
            subresource: subresource.map(str::to_string),
        })
    }

    pub fn get(&self, storage: &str, key: &ObjKey) -> Option<Arc<Value>> {
        self.s.get(storage, key)
    }

    pub fn list(&self, storage: &str, ns: Option<&str>) -> Vec<Arc<Value>> {
        self.s.list(storage, ns)
    }

    /// The objects of `storage` in the owner's namespace that `owner` controls ([`owned_by`]), in
    /// (namespace, name) order: `list` of the namespace filtered by `owned_by`, from the store's
    /// owner index.
    pub fn owned(&self, storage: &str, owner: &Value) -> Vec<Arc<Value>> {
        let (Some(uid), ns) = (owner["metadata"]["uid"].as_str(), owner["metadata"]["namespace"].as_str()) else {
            return Vec::new();
        };
        self.s
            .dependents(Some(storage), uid)
            .into_iter()
            .map(|(_, o)| o)
            .filter(|o| o["metadata"]["namespace"].as_str() == ns && owned_by(o, owner))
            .collect()
    }

    /// Creates an object (a `generateName` gets a free random suffix) as `manager`; None when the
    /// write is refused (logged: a controller's create that admission refuses is a bug or a
    /// namespace being deleted).
    pub fn create(&mut self, storage: &str, mut obj: Value, manager: &str) -> Option<Value> {
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        if obj["metadata"]["name"].as_str().is_none_or(str::is_empty) {
            let prefix = obj["metadata"]["generateName"].as_str().unwrap_or_default().to_string();
            let name = loop {
                let n = format!("{prefix}{}", meta::name_suffix());
                if self.s.get(storage, &(ns.clone(), n.clone())).is_none() {
                    break n;
                }
            };
            obj["metadata"]["name"] = json!(name);
        }
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let t = self.target(storage, &ns, &name, None)?;
        if self.s.get(storage, &t.key()).is_some() {
            return None;
        }
        if t.info.namespaced && self.s.get("/namespaces", &(String::new(), ns.clone())).is_none_or(|n| terminating(&n))
        {
            return None;
        }
        match finish_write(self.shared, self.s, &t, None, obj, false, manager, false) {
            Ok((stored, _)) => Some(stored),
            Err(e) => {
                tracing::warn!(%storage, %ns, %name, error = %e.message, "controller create refused");
                None
            }
        }
    }

    /// Replaces the main resource (status kept) with `new` as `manager`.
    pub fn update(&mut self, storage: &str, old: &Arc<Value>, new: Value, manager: &str) -> Option<Value> {
        self.write(storage, old, new, manager, None)
    }

    /// Writes `status` through the status subresource as `manager`, when it differs.
    pub fn update_status(&mut self, storage: &str, old: &Arc<Value>, status: Value, manager: &str) -> Option<Value> {
        if old.get("status") == Some(&status) {
            return None;
        }
        let mut new = (**old).clone();
        new["status"] = status;
        self.write(storage, old, new, manager, Some("status"))
    }

    fn write(
        &mut self,
        storage: &str,
        old: &Arc<Value>,
        new: Value,
        manager: &str,
        sub: Option<&str>,
    ) -> Option<Value> {
        let (ns, name) = key_of(old);
        let t = self.target(storage, &ns, &name, sub)?;
        match finish_write(self.shared, self.s, &t, Some(old), new, false, manager, false) {
            Ok((stored, changed)) => changed.then_some(stored),
            Err(e) => {
                tracing::warn!(%storage, %ns, %name, error = %e.message, "controller write refused");
                None
            }
        }
    }

    /// Deletes an object (background propagation); whether it was there.
    pub fn delete(&mut self, storage: &str, key: &ObjKey) -> bool {
        let Some(info) = self.shared.registry.any_version(storage) else {
            return false;
        };
        let opts = DeleteOpts {
            propagation: "Background".into(),
            precondition_rv: None,
            precondition_uid: None,
            dry_run: false,
        };
        delete_locked(self.shared, self.s, &info, key, &opts).is_ok()
    }

    /// Records a core/v1 Event like client-go's recorder: identical events (same object, type,
    /// reason, message and source) are folded into one with a growing `count`.
    pub fn event(&mut self, about: &Value, source: &Source<'_>, type_: &str, reason: &str, message: &str) {
        let ns = about["metadata"]["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or("default").to_string();
        let obj_name = about["metadata"]["name"].as_str().unwrap_or_default();
        let uid = about["metadata"]["uid"].as_str().unwrap_or_default();
        let ident = format!("{uid}|{}|{type_}|{reason}|{message}|{}", source.field_path, source.component);
        let name = format!("{obj_name}.{:016x}", fnv64(ident.as_bytes()));
        let now = meta::now();
        let key = (ns.clone(), name.clone());
        if let Some(old) = self.s.get(EVENTS, &key) {
            let mut new = (*old).clone();
            new["count"] = json!(old["count"].as_i64().unwrap_or(1) + 1);
            new["lastTimestamp"] = json!(now);
            self.update(EVENTS, &old, new, source.component);
            return;
        }
        let mut involved = json!({
            "kind": about["kind"], "namespace": about["metadata"]["namespace"], "name": obj_name, "uid": uid,
            "apiVersion": about["apiVersion"], "resourceVersion": about["metadata"]["resourceVersion"],
        });
        if !source.field_path.is_empty() {
            involved["fieldPath"] = json!(source.field_path);
        }
        let mut src = json!({"component": source.component});
        if !source.host.is_empty() {
            src["host"] = json!(source.host);
        }
        let ev = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": involved, "reason": reason, "message": message, "source": src,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": type_,
            "reportingComponent": source.component, "reportingInstance": source.host,
        });
        self.create(EVENTS, ev, source.component);
    }
}

/// Who writes an event, and about which part of the object.
pub struct Source<'a> {
    pub component: &'a str,
    pub host: &'a str,
    pub field_path: &'a str,
}

impl<'a> Source<'a> {
    pub fn controller(component: &'a str) -> Self {
        Source { component, host: "", field_path: "" }
    }
}

pub fn terminating(obj: &Arc<Value>) -> bool {
    obj["metadata"].get("deletionTimestamp").is_some()
}

/// The controller ownerReference: (kind, name, uid).
pub fn controller_of(obj: &Value) -> Option<(&str, &str, &str)> {
    obj["metadata"]["ownerReferences"].as_array()?.iter().find(|r| r["controller"] == true).map(|r| {
        (
            r["kind"].as_str().unwrap_or_default(),
            r["name"].as_str().unwrap_or_default(),
            r["uid"].as_str().unwrap_or_default(),
        )
    })
}

pub fn owned_by(obj: &Value, owner: &Value) -> bool {
    controller_of(obj).is_some_and(|(_, _, uid)| Some(uid) == owner["metadata"]["uid"].as_str())
}

/// An ownerReference to `owner` as a controller (blocking foreground deletion of the owner).
pub fn controller_ref(owner: &Value) -> Value {
    json!([{
        "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
    }])
}

/// An int-or-percent (`maxSurge`, `maxUnavailable`) against `total`, rounded up or down like
/// `intstr.GetScaledValueFromIntOrPercent`.
pub fn scaled(v: &Value, total: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) if round_up => (p * total + 99) / 100,
            Some(p) => p * total / 100,
            None => s.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

pub fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// A copy without null-valued object keys: the API server's Go types read a null field as an
/// absent one (`creationTimestamp: null` in a template kubectl sends back is no change).
pub fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(_, x)| !x.is_null()).map(|(k, x)| (k.clone(), without_nulls(x))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// JSON with object keys sorted (and null-valued keys left out), so equal values hash equally
/// whatever their key order.
pub fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.iter().filter(|(_, x)| !x.is_null()).map(|(k, _)| k).collect();
            keys.sort();
            let parts: Vec<String> =
                keys.iter().map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&m[*k]))).collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// A pod template's hash as the controllers spell it: FNV-32a, its decimal digits mapped
/// through the alphabet of `rand.SafeEncodeString` (no vowels, no look-alike characters).
pub fn template_hash(template: &Value, collision_count: i64) -> String {
    let mut text = canonical(template);
    if collision_count > 0 {
        text.push_str(&collision_count.to_string());
    }
    let h = text.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193));
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string().bytes().map(|b| ALPHABET[b as usize % ALPHABET.len()] as char).collect()
}

/// Seconds since an RFC 3339 time (negative never; None when absent or unparsable).
pub fn seconds_since(ts: &Value) -> Option<i64> {
    let t = ts.as_str()?.parse::<jiff::Timestamp>().ok()?;
    Some((jiff::Timestamp::now() - t).get_seconds().max(0))
}

pub fn is_pod_ready(pod: &Value) -> bool {
    condition(pod, "Ready").is_some_and(|c| c["status"] == "True")
}

pub fn condition<'v>(obj: &'v Value, type_: &str) -> Option<&'v Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

/// Ready for at least `min_ready` seconds; the second value is how long until it will be.
pub fn pod_available(pod: &Value, min_ready: i64) -> (bool, Option<Duration>) {
    if !is_pod_ready(pod) {
        return (false, None);
    }
    if min_ready <= 0 {
        return (true, None);
    }
    let since = condition(pod, "Ready").and_then(|c| seconds_since(&c["lastTransitionTime"])).unwrap_or(0);
    if since >= min_ready { (true, None) } else { (false, Some(Duration::from_secs((min_ready - since) as u64))) }
}

/// A pod that still counts for its controller (not being deleted, not finished).
pub fn is_active(pod: &Value) -> bool {
    pod["metadata"].get("deletionTimestamp").is_none()
        && !matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

/// Whole-object labels as a map value (empty object when absent).
pub fn labels(obj: &Value) -> Value {
    obj["metadata"].get("labels").filter(|l| l.is_object()).cloned().unwrap_or_else(|| json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_or_percent_rounding() {
        assert_eq!(scaled(&json!("25%"), 3, true), 1);
        assert_eq!(scaled(&json!("25%"), 3, false), 0);
        assert_eq!(scaled(&json!("50%"), 4, false), 2);
        assert_eq!(scaled(&json!(2), 10, false), 2);
    }

    #[test]
    fn template_hashes_ignore_key_order_and_use_the_safe_alphabet() {
        let a = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": 1}});
        let b = json!({"spec": {"x": 1}, "metadata": {"labels": {"b": "2", "a": "1"}}});
        assert_eq!(template_hash(&a, 0), template_hash(&b, 0));
        assert_ne!(template_hash(&a, 0), template_hash(&a, 1));
        let with_null =
            json!({"spec": {"x": 1}, "metadata": {"creationTimestamp": null, "labels": {"b": "2", "a": "1"}}});
        assert_eq!(template_hash(&a, 0), template_hash(&with_null, 0));
        assert_eq!(without_nulls(&with_null), b);
        let h = template_hash(&a, 0);
        assert!(!h.is_empty() && h.len() <= 10 && h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{h}");
    }
}
