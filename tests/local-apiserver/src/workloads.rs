//! Simulated workload controllers (switchable): Deployments and DaemonSets get the status the
//! deployment and daemonset controllers would report once every pod is up, written through the
//! status subresource as a separate change (a new resourceVersion and watch event) by manager
//! `kube-controller-manager`. DaemonSets count the Node objects that match their node selector
//! and required node affinity and whose NoSchedule/NoExecute taints they tolerate.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::fieldpath::Scope;
use crate::managed::{self, WriteCtx};
use crate::selectors::LabelSelector;
use crate::server::Shared;
use crate::store::{EventType, Inner, key_of};

const DEPLOYMENTS: &str = "apps/deployments";
const DAEMONSETS: &str = "apps/daemonsets";
const NODES: &str = "/nodes";
const MANAGER: &str = "kube-controller-manager";

pub async fn run(shared: Arc<Shared>) {
    let mut sub = shared.store.lock().subscribe();
    reconcile_all(&shared);
    loop {
        match sub.recv().await {
            Ok(e) => {
                if !shared.simulate() {
                    continue;
                }
                match e.storage_key.as_str() {
                    DEPLOYMENTS | DAEMONSETS if e.type_ != EventType::Deleted => {
                        let mut s = shared.store.lock();
                        reconcile_one(&shared, &mut s, &e.storage_key, &key_of(&e.object));
                    }
                    NODES => {
                        let mut s = shared.store.lock();
                        for ds in s.list(DAEMONSETS, None) {
                            reconcile_one(&shared, &mut s, DAEMONSETS, &key_of(&ds));
                        }
                    }
                    _ => {}
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => reconcile_all(&shared),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Brings every workload's status up to date (on start and when switched back on).
pub fn reconcile_all(shared: &Shared) {
    if !shared.simulate() {
        return;
    }
    let mut s = shared.store.lock();
    for key in [DEPLOYMENTS, DAEMONSETS] {
        for o in s.list(key, None) {
            reconcile_one(shared, &mut s, key, &key_of(&o));
        }
    }
}

fn reconcile_one(shared: &Shared, s: &mut Inner, storage: &str, key: &crate::store::ObjKey) {
    let Some(obj) = s.get(storage, key) else {
        return;
    };
    if obj["metadata"].get("deletionTimestamp").is_some() {
        return;
    }
    let desired = if storage == DEPLOYMENTS {
        deployment_status(&obj)
    } else {
        let nodes = s.list(NODES, None);
        daemonset_status(&obj, &nodes)
    };
    if obj.get("status") == Some(&desired) {
        return;
    }
    let mut new = (*obj).clone();
    new["status"] = desired;
    let Some(info) = shared.registry.any_version(storage) else {
        return;
    };
    let ctx = WriteCtx {
        manager: MANAGER,
        api_version: "apps/v1",
        subresource: "status",
        root: info.root_node(),
        scope: Scope::StatusOnly,
    };
    managed::record_update(Some(&obj), &mut new, &ctx);
    s.put(storage, new);
}

fn keep_time(old: &Value, type_: &str, status: &str, field: &str) -> String {
    old["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_ && c["status"] == status))
        .and_then(|c| c[field].as_str().map(str::to_string))
        .unwrap_or_else(crate::meta::now)
}

pub fn deployment_status(d: &Value) -> Value {
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let name = d["metadata"]["name"].as_str().unwrap_or_default();
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
    let mut st = json!({"observedGeneration": generation});
    if replicas > 0 {
        for f in ["replicas", "updatedReplicas", "readyReplicas", "availableReplicas"] {
            st[f] = json!(replicas);
        }
    }
    st["conditions"] = json!([
        {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
         "message": "Deployment has minimum availability.",
         "lastUpdateTime": keep_time(d, "Available", "True", "lastUpdateTime"),
         "lastTransitionTime": keep_time(d, "Available", "True", "lastTransitionTime")},
        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
         "message": format!("ReplicaSet \"{name}-{}\" has successfully progressed.", template_hash(d)),
         "lastUpdateTime": keep_time(d, "Progressing", "True", "lastUpdateTime"),
         "lastTransitionTime": keep_time(d, "Progressing", "True", "lastTransitionTime")},
    ]);
    st
}

/// A stable hash of the pod template, like the pod-template-hash label.
fn template_hash(d: &Value) -> String {
    let s = d["spec"]["template"].to_string();
    let h = s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = h;
    (0..10)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// Tolerations the daemonset controller adds to every daemon pod.
const DAEMON_TOLERATED: &[&str] = &[
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/pid-pressure",
    "node.kubernetes.io/unschedulable",
    "node.kubernetes.io/network-unavailable",
];

fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    let key = taint["key"].as_str().unwrap_or_default();
    if DAEMON_TOLERATED.contains(&key) {
        return true;
    }
    let effect = taint["effect"].as_str().unwrap_or_default();
    let value = taint["value"].as_str().unwrap_or_default();
    tolerations.iter().any(|t| {
        let t_effect = t["effect"].as_str().unwrap_or_default();
        if !t_effect.is_empty() && t_effect != effect {
            return false;
        }
        let t_key = t["key"].as_str().unwrap_or_default();
        match t["operator"].as_str().unwrap_or("Equal") {
            "Exists" => t_key.is_empty() || t_key == key,
            _ => t_key == key && t["value"].as_str().unwrap_or_default() == value,
        }
    })
}

fn node_matches_term(labels: Option<&Value>, term: &Value) -> bool {
    term["matchExpressions"].as_array().into_iter().flatten().all(|e| {
        let key = e["key"].as_str().unwrap_or_default();
        let actual = labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        let values: Vec<&str> = e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        match e["operator"].as_str().unwrap_or_default() {
            "In" => actual.is_some_and(|a| values.contains(&a)),
            "NotIn" => actual.is_none_or(|a| !values.contains(&a)),
            "Exists" => actual.is_some(),
            "DoesNotExist" => actual.is_none(),
            "Gt" => actual
                .and_then(|a| a.parse::<i64>().ok())
                .zip(values.first().and_then(|v| v.parse::<i64>().ok()))
                .is_some_and(|(a, v)| a > v),
            "Lt" => actual
                .and_then(|a| a.parse::<i64>().ok())
                .zip(values.first().and_then(|v| v.parse::<i64>().ok()))
                .is_some_and(|(a, v)| a < v),
            _ => false,
        }
    })
}

/// Whether a daemon pod with this pod spec would run on `node`.
pub fn schedulable_on(pod_spec: &Value, node: &Value) -> bool {
    let labels = node["metadata"].get("labels");
    if let Some(sel) = pod_spec["nodeSelector"].as_object() {
        let s = LabelSelector::from_object(&json!({"matchLabels": sel}));
        if !s.matches(labels) {
            return false;
        }
    }
    if let Some(terms) =
        pod_spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            .as_array()
        && !terms.is_empty()
        && !terms.iter().any(|t| node_matches_term(labels, t))
    {
        return false;
    }
    let tolerations = pod_spec["tolerations"].as_array().cloned().unwrap_or_default();
    node["spec"]["taints"].as_array().into_iter().flatten().all(|taint| {
        !matches!(taint["effect"].as_str(), Some("NoSchedule" | "NoExecute")) || tolerates(&tolerations, taint)
    })
}

pub fn daemonset_status(ds: &Value, nodes: &[Arc<Value>]) -> Value {
    let pod_spec = &ds["spec"]["template"]["spec"];
    let n = nodes
        .iter()
        .filter(|node| node["metadata"].get("deletionTimestamp").is_none() && schedulable_on(pod_spec, node))
        .count();
    json!({
        "observedGeneration": ds["metadata"]["generation"].as_i64().unwrap_or(1),
        "desiredNumberScheduled": n,
        "currentNumberScheduled": n,
        "numberReady": n,
        "updatedNumberScheduled": n,
        "numberAvailable": n,
        "numberMisscheduled": 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: Value, taints: Value) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}))
    }

    #[test]
    fn daemonsets_count_matching_tolerated_nodes() {
        let nodes = vec![
            node("a", json!({"os": "linux"}), json!([])),
            node("b", json!({"os": "linux"}), json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])),
            node("c", json!({"os": "windows"}), json!([])),
            node("d", json!({"os": "linux"}), json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}])),
            node("e", json!({"os": "linux"}), json!([{"key": "soft", "effect": "PreferNoSchedule"}])),
        ];
        let ds =
            json!({"metadata": {"generation": 2}, "spec": {"template": {"spec": {"nodeSelector": {"os": "linux"}}}}});
        assert_eq!(daemonset_status(&ds, &nodes)["desiredNumberScheduled"], 3);
        let tolerant = json!({"metadata": {"generation": 2}, "spec": {"template": {"spec": {
            "nodeSelector": {"os": "linux"}, "tolerations": [{"operator": "Exists"}]}}}});
        let st = daemonset_status(&tolerant, &nodes);
        assert_eq!(st["desiredNumberScheduled"], 4);
        assert_eq!(st["numberReady"], 4);
        assert_eq!(st["observedGeneration"], 2);
        let affinity = json!({"spec": {"template": {"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "os", "operator": "In",
                "values": ["windows"]}]}]}}}}}}});
        assert_eq!(daemonset_status(&affinity, &nodes)["desiredNumberScheduled"], 1);
    }

    #[test]
    fn deployments_report_their_replicas() {
        let d = json!({"metadata": {"name": "x", "generation": 3}, "spec": {"replicas": 2, "template": {}}});
        let st = deployment_status(&d);
        assert_eq!(st["observedGeneration"], 3);
        assert_eq!(st["readyReplicas"], 2);
        assert_eq!(st["conditions"][0]["type"], "Available");
    }
}
