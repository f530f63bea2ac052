//! The daemonset controller: one pod per Node the pod may run on (nodeSelector, required node
//! affinity, taints against the template's tolerations plus the ones every daemon pod gets,
//! node readiness), each pinned to its node by a `metadata.name` matchFields affinity for the
//! scheduler; ControllerRevisions and the `controller-revision-hash` label; RollingUpdate by
//! `maxUnavailable` or `maxSurge`, and OnDelete; the status kubectl and kstatus read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::scheduling::{effective_taints, misfit, tolerates};
use super::{
    CONTROLLER_MANAGER, Ctx, DAEMONSETS, NODES, PODS, REVISIONS, Source, controller_ref, is_pod_ready, owned_by,
    pod_available, scaled, template_hash, terminating,
};
use crate::store::{ObjKey, key_of};

pub const HASH_LABEL: &str = "controller-revision-hash";
const GENERATION_LABEL: &str = "pod-template-generation";

/// Tolerations the controller adds to every daemon pod (AddOrUpdateDaemonPodTolerations).
fn daemon_tolerations(spec: &Value) -> Vec<Value> {
    let mut out = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec["hostNetwork"] == true {
        out.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    out.into_iter().map(|(key, effect)| json!({"key": key, "operator": "Exists", "effect": effect})).collect()
}

/// The template's pod spec with the daemon tolerations added (those it lacks).
fn daemon_spec(template: &Value) -> Value {
    let mut spec = template["spec"].clone();
    let mut tols: Vec<Value> = spec["tolerations"].as_array().cloned().unwrap_or_default();
    for t in daemon_tolerations(&spec) {
        if !tols.iter().any(|x| x["key"] == t["key"] && x["effect"] == t["effect"]) {
            tols.push(t);
        }
    }
    spec["tolerations"] = Value::Array(tols);
    spec
}

/// The node a daemon pod is for: its nodeName, or the node its matchFields affinity names.
fn target_node(pod: &Value) -> Option<String> {
    if let Some(n) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms =
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            .as_array()?;
    terms.iter().find_map(|t| {
        t["matchFields"].as_array()?.iter().find_map(|f| {
            (f["key"] == "metadata.name" && f["operator"] == "In")
                .then(|| f["values"][0].as_str().map(str::to_string))?
        })
    })
}

/// Whether pods already on the node may stay: only untolerated NoExecute taints (and no longer
/// matching selector or affinity) evict them.
fn may_continue(spec: &Value, node: &Value) -> bool {
    let mut relaxed = spec.clone();
    relaxed["tolerations"] = json!([]);
    let mut n = node.clone();
    n["spec"]["taints"] = json!([]);
    n["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    n["spec"]["unschedulable"] = json!(false);
    if misfit(&relaxed, &n).is_some() {
        return false;
    }
    let tols = spec["tolerations"].as_array().map(Vec::as_slice).unwrap_or_default();
    effective_taints(node)
        .iter()
        .filter(|t| t["effect"] == "NoExecute")
        .all(|taint| tols.iter().any(|t| tolerates(t, taint)))
}

fn pod_for(ds: &Value, template: &Value, hash: &str, node: &str) -> Value {
    let mut pod = super::replicaset::pod_from_template(ds, template);
    pod["metadata"]["labels"][HASH_LABEL] = json!(hash);
    pod["metadata"]["labels"][GENERATION_LABEL] = json!(ds["metadata"]["generation"].as_i64().unwrap_or(1).to_string());
    pod["spec"] = daemon_spec(template);
    let pin =
        json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]});
    pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = pin;
    pod
}

fn created_at(p: &Arc<Value>) -> (String, String) {
    (
        p["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_string(),
        p["metadata"]["name"].as_str().unwrap_or_default().to_string(),
    )
}

pub fn reconcile(cx: &mut Ctx<'_>, key: &ObjKey) -> Option<Duration> {
    let ds = cx.get(DAEMONSETS, key)?;
    if terminating(&ds) {
        return None;
    }
    let template = ds["spec"]["template"].clone();
    let collision = ds["status"]["collisionCount"].as_i64().unwrap_or(0);
    let hash = template_hash(&template, collision);
    ensure_revision(cx, &ds, &template, &hash);
    let spec = daemon_spec(&template);
    let source = Source::controller("daemonset-controller");
    let nodes: Vec<Arc<Value>> = cx.list(NODES, None).into_iter().filter(|n| !terminating(n)).collect();
    let mut by_node: BTreeMap<String, Vec<Arc<Value>>> = BTreeMap::new();
    for p in cx.owned(PODS, &ds) {
        if terminating(&p) {
            continue;
        }
        if p["status"]["phase"] == "Failed" {
            // A failed daemon pod is replaced.
            let name = p["metadata"]["name"].as_str().unwrap_or_default().to_string();
            if cx.delete(PODS, &key_of(&p)) {
                let msg = format!(
                    "Found failed daemon pod {}/{name} on node {}, will try to kill it",
                    key.0,
                    target_node(&p).unwrap_or_default()
                );
                cx.event(&ds, &source, "Warning", "FailedDaemonPod", &msg);
            }
            continue;
        }
        by_node.entry(target_node(&p).unwrap_or_default()).or_default().push(p);
    }
    for pods in by_node.values_mut() {
        pods.sort_by_key(created_at);
    }
    let rolling = ds["spec"]["updateStrategy"]["type"].as_str().unwrap_or("RollingUpdate") == "RollingUpdate";
    let ru = &ds["spec"]["updateStrategy"]["rollingUpdate"];
    let min_ready = ds["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    // Each node looked at once (a cluster of thousands of nodes: no scan of the nodes per pod).
    let mut fit: HashMap<String, (&Arc<Value>, bool)> = HashMap::with_capacity(nodes.len());
    let mut should_run: Vec<&Arc<Value>> = Vec::new();
    for n in &nodes {
        let fits = misfit(&spec, n).is_none();
        if fits {
            should_run.push(n);
        }
        fit.insert(n["metadata"]["name"].as_str().unwrap_or_default().to_string(), (n, fits));
    }
    let desired = should_run.len() as i64;
    let max_surge = if rolling { scaled(ru.get("maxSurge").unwrap_or(&json!(0)), desired, true) } else { 0 };
    let mut max_unavailable =
        if rolling { scaled(ru.get("maxUnavailable").unwrap_or(&json!(1)), desired, true) } else { 0 };
    if rolling && max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    let mut create_on: Vec<String> = Vec::new();
    let mut delete: Vec<Arc<Value>> = Vec::new();
    let mut requeue: Option<Duration> = None;
    let mut wake = |d: Option<Duration>| {
        if let Some(d) = d {
            requeue = Some(requeue.map_or(d, |r: Duration| r.min(d)));
        }
    };
    for (node_name, pods) in &by_node {
        let Some((node, fits)) = fit.get(node_name) else {
            // The node is gone: pod GC removes its pods; nothing to place here.
            delete.extend(pods.iter().cloned());
            continue;
        };
        if !fits && !may_continue(&spec, node) {
            delete.extend(pods.iter().cloned());
        }
    }
    let mut num_unavailable = 0;
    let mut replaceable: Vec<Arc<Value>> = Vec::new();
    let mut surging = 0;
    let mut surge_candidates: Vec<String> = Vec::new();
    for node in &should_run {
        let node_name = node["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let pods = by_node.get(&node_name).cloned().unwrap_or_default();
        if pods.is_empty() {
            create_on.push(node_name);
            num_unavailable += 1;
            continue;
        }
        let (new, old): (Vec<_>, Vec<_>) =
            pods.iter().cloned().partition(|p| p["metadata"]["labels"][HASH_LABEL] == hash.as_str());
        let allow_two = rolling && max_surge > 0;
        // Extra pods on one node go (keeping the oldest), except one old beside one new while surging.
        let keep_new = new.first().cloned();
        let keep_old = if keep_new.is_none() || allow_two { old.first().cloned() } else { None };
        for p in new.iter().skip(1).chain(old.iter().filter(|p| keep_old.as_ref().is_none_or(|k| !Arc::ptr_eq(k, p)))) {
            delete.push(p.clone());
        }
        if !rolling {
            continue;
        }
        let avail = |p: &Arc<Value>| {
            let (ok, wait) = pod_available(p, min_ready);
            (ok, wait)
        };
        match (keep_new, keep_old) {
            (Some(n), None) => {
                let (ok, wait) = avail(&n);
                wake(wait);
                if !ok {
                    num_unavailable += 1;
                }
            }
            (Some(n), Some(o)) => {
                // Surging: the old pod goes once the new one is available.
                let (ok, wait) = avail(&n);
                wake(wait);
                if ok {
                    delete.push(o);
                } else {
                    surging += 1;
                }
            }
            (None, Some(o)) => {
                let (ok, wait) = avail(&o);
                wake(wait);
                if max_surge > 0 {
                    if !ok {
                        create_on.push(node_name.clone());
                    } else {
                        surge_candidates.push(node_name.clone());
                    }
                } else if !ok {
                    delete.push(o);
                    num_unavailable += 1;
                } else {
                    replaceable.push(o);
                }
            }
            (None, None) => {}
        }
    }
    if rolling && max_surge > 0 {
        let room = (max_surge - surging).max(0) as usize;
        create_on.extend(surge_candidates.into_iter().take(room));
    } else if rolling {
        let room = (max_unavailable - num_unavailable).max(0) as usize;
        delete.extend(replaceable.into_iter().take(room));
    }
    for p in &delete {
        let name = p["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if cx.delete(PODS, &key_of(p)) {
            cx.event(&ds, &source, "Normal", "SuccessfulDelete", &format!("Deleted pod: {name}"));
        }
    }
    for node in &create_on {
        if let Some(p) = cx.create(PODS, pod_for(&ds, &template, &hash, node), CONTROLLER_MANAGER) {
            let name = p["metadata"]["name"].as_str().unwrap_or_default();
            cx.event(&ds, &source, "Normal", "SuccessfulCreate", &format!("Created pod: {name}"));
        }
    }
    // Status from the pods as they are now.
    let mut by_node: BTreeMap<String, Vec<Arc<Value>>> = BTreeMap::new();
    for p in cx.owned(PODS, &ds) {
        if !terminating(&p) && p["status"]["phase"] != "Failed" {
            by_node.entry(target_node(&p).unwrap_or_default()).or_default().push(p);
        }
    }
    let (mut current, mut misscheduled, mut ready, mut available, mut updated) = (0, 0, 0, 0, 0);
    for (node_name, pods) in by_node.iter_mut() {
        pods.sort_by_key(created_at);
        match fit.get(node_name) {
            Some((_, true)) => {}
            Some((_, false)) => {
                misscheduled += 1;
                continue;
            }
            None => continue,
        }
        current += 1;
        let pod = &pods[0];
        if is_pod_ready(pod) {
            ready += 1;
            let (ok, wait) = pod_available(pod, min_ready);
            wake(wait);
            if ok {
                available += 1;
            }
        }
        if pod["metadata"]["labels"][HASH_LABEL] == hash.as_str() {
            updated += 1;
        }
    }
    let mut st = json!({
        "currentNumberScheduled": current, "numberMisscheduled": misscheduled, "desiredNumberScheduled": desired,
        "numberReady": ready, "observedGeneration": ds["metadata"]["generation"],
    });
    for (f, n) in [
        ("updatedNumberScheduled", updated),
        ("numberAvailable", available),
        ("numberUnavailable", desired - available),
    ] {
        if n > 0 {
            st[f] = json!(n);
        }
    }
    if collision > 0 {
        st["collisionCount"] = json!(collision);
    }
    cx.update_status(DAEMONSETS, &ds, st, CONTROLLER_MANAGER);
    requeue
}

/// The ControllerRevision of the current template (`<name>-<hash>`), its revision number the
/// highest; older ones beyond revisionHistoryLimit that no pod uses are deleted.
fn ensure_revision(cx: &mut Ctx<'_>, ds: &Arc<Value>, template: &Value, hash: &str) {
    let ns = ds["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
    let revisions: Vec<Arc<Value>> = cx.list(REVISIONS, Some(&ns)).into_iter().filter(|r| owned_by(r, ds)).collect();
    let name = format!("{}-{hash}", ds["metadata"]["name"].as_str().unwrap_or_default());
    let max = revisions
        .iter()
        .filter(|r| r["metadata"]["name"] != name.as_str())
        .filter_map(|r| r["revision"].as_i64())
        .max();
    let next = max.unwrap_or(0) + 1;
    let mut data_template = template.clone();
    data_template["$patch"] = json!("replace");
    match revisions.iter().find(|r| r["metadata"]["name"] == name.as_str()) {
        Some(r) if r["revision"].as_i64().unwrap_or(0) < next && max.is_some() => {
            let mut n = (**r).clone();
            n["revision"] = json!(next);
            cx.update(REVISIONS, r, n, CONTROLLER_MANAGER);
        }
        Some(_) => {}
        None => {
            let mut labels = template["metadata"]["labels"].clone();
            if !labels.is_object() {
                labels = json!({});
            }
            labels[HASH_LABEL] = json!(hash);
            let rev = json!({
                "apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": controller_ref(ds)},
                "data": {"spec": {"template": data_template}},
                "revision": next,
            });
            cx.create(REVISIONS, rev, CONTROLLER_MANAGER);
        }
    }
    let limit = ds["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10).max(0) as usize;
    let in_use: Vec<String> = cx
        .owned(PODS, ds)
        .iter()
        .filter_map(|p| p["metadata"]["labels"][HASH_LABEL].as_str().map(str::to_string))
        .collect();
    let mut old: Vec<Arc<Value>> = cx
        .list(REVISIONS, Some(&ns))
        .into_iter()
        .filter(|r| owned_by(r, ds) && r["metadata"]["name"] != name.as_str())
        .filter(|r| r["metadata"]["labels"][HASH_LABEL].as_str().is_none_or(|h| !in_use.iter().any(|u| u == h)))
        .collect();
    if old.len() > limit {
        old.sort_by_key(|r| r["revision"].as_i64().unwrap_or(0));
        let surplus = old.len() - limit;
        for r in old.into_iter().take(surplus) {
            cx.delete(REVISIONS, &key_of(&r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_pods_tolerate_node_conditions_and_are_pinned() {
        let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "d", "namespace": "ns", "uid": "u", "generation": 3},
            "spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "x", "operator": "Exists"}]}]}}},
                "containers": [{"name": "c", "image": "i"}]}}}});
        let p = pod_for(&ds, &ds["spec"]["template"], "h1", "n1");
        assert_eq!(target_node(&p).as_deref(), Some("n1"));
        assert_eq!(p["metadata"]["labels"][HASH_LABEL], "h1");
        assert_eq!(p["metadata"]["labels"][GENERATION_LABEL], "3");
        let tols = p["spec"]["tolerations"].as_array().unwrap();
        assert!(tols.iter().any(|t| t["key"] == "node.kubernetes.io/not-ready" && t["effect"] == "NoExecute"));
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
    }
}
