//! Whether a pod may run on a node (nodeSelector, required node affinity with matchExpressions
//! and matchFields, taints and tolerations, node readiness and cordoning), and the scheduler
//! stand-in that binds pending pods to a fitting node with the `Scheduled` / `FailedScheduling`
//! events of kube-scheduler. Resources, pod (anti-)affinity and topology spread are not
//! considered.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Ctx, NODES, PODS, Source, condition};

pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Ready as its kubelet last reported (a Node nobody reported on yet counts as not ready).
pub fn node_ready(node: &Value) -> bool {
    condition(node, "Ready").is_some_and(|c| c["status"] == "True")
}

/// The node's taints plus those the node lifecycle controller keeps on it for its conditions
/// (not-ready, unschedulable), which this server implies instead of writing.
pub fn effective_taints(node: &Value) -> Vec<Value> {
    let mut taints = stored_taints(node).to_vec();
    taints.extend(implied_taints(node));
    taints
}

/// The taints the node carries in `spec.taints`.
fn stored_taints(node: &Value) -> &[Value] {
    node["spec"]["taints"].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The taints of [`effective_taints`] that the node does not carry itself.
fn implied_taints(node: &Value) -> Vec<Value> {
    let has = |k: &str| stored_taints(node).iter().any(|t| t["key"] == k);
    let mut implied = Vec::new();
    if !node_ready(node) && !has(NOT_READY_TAINT) {
        implied.push(json!({"key": NOT_READY_TAINT, "effect": "NoSchedule"}));
    }
    if node["spec"]["unschedulable"] == true && !has(UNSCHEDULABLE_TAINT) {
        implied.push(json!({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}));
    }
    implied
}

/// Whether one toleration tolerates one taint (v1helper.TolerationsTolerateTaint).
pub fn tolerates(t: &Value, taint: &Value) -> bool {
    let t_effect = t["effect"].as_str().unwrap_or_default();
    if !t_effect.is_empty() && Some(t_effect) != taint["effect"].as_str() {
        return false;
    }
    let key = taint["key"].as_str().unwrap_or_default();
    let t_key = t["key"].as_str().unwrap_or_default();
    match t["operator"].as_str().unwrap_or("Equal") {
        // An empty key with Exists tolerates everything.
        "Exists" => t_key.is_empty() || t_key == key,
        _ => t_key == key && t["value"].as_str().unwrap_or_default() == taint["value"].as_str().unwrap_or_default(),
    }
}

fn values(e: &Value) -> Vec<&str> {
    e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

fn requirement(actual: Option<&str>, e: &Value) -> bool {
    let vs = values(e);
    let num = |s: &str| s.parse::<i64>().ok();
    match e["operator"].as_str().unwrap_or_default() {
        "In" => actual.is_some_and(|a| vs.contains(&a)),
        // NotIn and DoesNotExist match a node that lacks the label.
        "NotIn" => actual.is_none_or(|a| !vs.contains(&a)),
        "Exists" => actual.is_some(),
        "DoesNotExist" => actual.is_none(),
        "Gt" => actual.and_then(num).zip(vs.first().copied().and_then(num)).is_some_and(|(a, v)| a > v),
        "Lt" => actual.and_then(num).zip(vs.first().copied().and_then(num)).is_some_and(|(a, v)| a < v),
        _ => false,
    }
}

/// One nodeSelectorTerm: every matchExpression on labels and every matchField (only
/// `metadata.name` is supported, as in Kubernetes). An empty term matches nothing.
pub fn term_matches(node: &Value, term: &Value) -> bool {
    let exprs = term["matchExpressions"].as_array().map(Vec::as_slice).unwrap_or_default();
    let fields = term["matchFields"].as_array().map(Vec::as_slice).unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node["metadata"].get("labels");
    exprs.iter().all(|e| {
        let key = e["key"].as_str().unwrap_or_default();
        requirement(labels.and_then(|l| l.get(key)).and_then(Value::as_str), e)
    }) && fields.iter().all(|e| {
        let actual = match e["key"].as_str() {
            Some("metadata.name") => node["metadata"]["name"].as_str(),
            _ => return false,
        };
        requirement(actual, e)
    })
}

/// Why a pod cannot go to a node, in kube-scheduler's words; None when it fits.
pub fn misfit(pod_spec: &Value, node: &Value) -> Option<String> {
    // Every label of the nodeSelector, with its value (matchLabels), read in place: this runs
    // for every node of the cluster per pending pod.
    let labels = &node["metadata"]["labels"];
    if let Some(sel) = pod_spec["nodeSelector"].as_object()
        && !sel.iter().all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
    {
        return Some("didn't match Pod's node affinity/selector".into());
    }
    let required = &pod_spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    if let Some(terms) = required["nodeSelectorTerms"].as_array()
        && !terms.iter().any(|t| term_matches(node, t))
    {
        return Some("didn't match Pod's node affinity/selector".into());
    }
    let tolerations = pod_spec["tolerations"].as_array().map(Vec::as_slice).unwrap_or_default();
    // The node's own taints read in place; only the implied ones (a node not ready or cordoned,
    // the exception) are built.
    let implied = implied_taints(node);
    for taint in stored_taints(node).iter().chain(&implied) {
        if !matches!(taint["effect"].as_str(), Some("NoSchedule" | "NoExecute")) {
            continue;
        }
        if !tolerations.iter().any(|t| tolerates(t, taint)) {
            let key = taint["key"].as_str().unwrap_or_default();
            let shown = match taint["value"].as_str().filter(|v| !v.is_empty()) {
                Some(v) => format!("{{{key}: {v}}}"),
                None => format!("{{{key}: }}"),
            };
            return Some(format!("had untolerated taint {shown}"));
        }
    }
    None
}

/// The nodes a pod's required node affinity names by `metadata.name` when every term names some
/// (a daemon pod's pin): kube-scheduler's NodeAffinity PreFilter narrows the nodes to these, since
/// no other node can match. None when some term does not pin.
fn pinned_nodes(pod_spec: &Value) -> Option<Vec<String>> {
    let required = &pod_spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    let terms = required["nodeSelectorTerms"].as_array().filter(|t| !t.is_empty())?;
    let mut names = Vec::new();
    for t in terms {
        let pin = t["matchFields"].as_array()?.iter().find(|f| f["key"] == "metadata.name" && f["operator"] == "In")?;
        names.extend(pin["values"].as_array()?.iter().filter_map(Value::as_str).map(str::to_string));
    }
    names.sort();
    names.dedup();
    Some(names)
}

/// Of `fits`, the node with the fewest pods bound (then the first name).
fn least_loaded<'a>(cx: &Ctx<'_>, fits: &[&'a Arc<Value>]) -> Option<&'a Arc<Value>> {
    fn name(n: &Value) -> &str {
        n["metadata"]["name"].as_str().unwrap_or_default()
    }
    fits.iter().copied().min_by_key(|n| (cx.s.pods_on_node(name(n)), name(n)))
}

/// How many fitting nodes kube-scheduler looks for before it stops filtering (its
/// `numFeasibleNodesToFind` with the default `percentageOfNodesToScore`): every node of a cluster
/// under 100 nodes; otherwise 50% less 1% per 125 nodes (10% of 5,000), at least 5% and at least
/// 100 nodes.
fn feasible_nodes_to_find(nodes: usize) -> usize {
    const MIN_NODES: usize = 100;
    if nodes < MIN_NODES {
        return nodes;
    }
    let percentage = 50usize.saturating_sub(nodes / 125).max(5);
    (nodes * percentage / 100).max(MIN_NODES)
}

/// Binds a pending pod to the fitting node with the fewest pods of those the filter pass found,
/// or records why none fits.
pub fn schedule(cx: &mut Ctx<'_>, pod: &Arc<Value>) {
    let spec = &pod["spec"];
    let live = |n: &Arc<Value>| n["metadata"].get("deletionTimestamp").is_none();
    if let Some(names) = pinned_nodes(spec) {
        let pinned: Vec<Arc<Value>> =
            names.into_iter().filter_map(|n| cx.get(NODES, &(String::new(), n))).filter(live).collect();
        let fits: Vec<&Arc<Value>> = pinned.iter().filter(|n| misfit(spec, n).is_none()).collect();
        if let Some(node) = least_loaded(cx, &fits) {
            bind(cx, pod, node);
            return;
        }
        // None fits: the reasons below look at every node.
    }
    let nodes: Vec<Arc<Value>> = cx.list(NODES, None).into_iter().filter(live).collect();
    let mut reasons: Vec<(String, usize)> = Vec::new();
    let mut fits: Vec<&Arc<Value>> = Vec::new();
    // kube-scheduler's filter pass: from where the previous pod's search stopped, until enough
    // nodes fit (or every node was looked at, which is when the reasons are complete).
    let wanted = feasible_nodes_to_find(nodes.len());
    let start = cx.mem.next_start_node % nodes.len().max(1);
    let mut processed = nodes.len();
    for i in 0..nodes.len() {
        let n = &nodes[(start + i) % nodes.len()];
        match misfit(spec, n) {
            None => fits.push(n),
            Some(r) => match reasons.iter_mut().find(|(x, _)| *x == r) {
                Some((_, c)) => *c += 1,
                None => reasons.push((r, 1)),
            },
        }
        if fits.len() >= wanted {
            processed = i + 1;
            break;
        }
    }
    cx.mem.next_start_node = (start + processed) % nodes.len().max(1);
    let source = Source::controller("default-scheduler");
    let Some(node) = least_loaded(cx, &fits) else {
        let message = if nodes.is_empty() {
            "no nodes available to schedule pods".to_string()
        } else {
            reasons.sort();
            let parts: Vec<String> = reasons.iter().map(|(r, c)| format!("{c} node(s) {r}")).collect();
            format!(
                "0/{n} nodes are available: {}. preemption: 0/{n} nodes are available: {n} Preemption is not \
                 helpful for scheduling.",
                parts.join(", "),
                n = nodes.len()
            )
        };
        let mut status = pod["status"].clone();
        let cond = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                          "lastProbeTime": null, "lastTransitionTime": keep_transition(pod, "PodScheduled", "False")});
        set_condition(&mut status, cond);
        if status["phase"].is_null() {
            status["phase"] = json!("Pending");
        }
        if cx.update_status(PODS, pod, status, "kube-scheduler").is_some() {
            cx.event(pod, &source, "Warning", "FailedScheduling", &message);
        }
        return;
    };
    bind(cx, pod, node);
}

/// The binding subresource: nodeName set, PodScheduled True, the `Scheduled` event.
fn bind(cx: &mut Ctx<'_>, pod: &Arc<Value>, node: &Arc<Value>) {
    let node_name = node["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
    let source = Source::controller("default-scheduler");
    let mut bound = (**pod).clone();
    bound["spec"]["nodeName"] = json!(node_name);
    set_condition(
        &mut bound["status"],
        json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
               "lastTransitionTime": crate::meta::now()}),
    );
    if let Some(stored) = cx.update(PODS, pod, bound.clone(), "kube-scheduler") {
        let stored = Arc::new(stored);
        let mut status = bound["status"].clone();
        if status["phase"].is_null() {
            status["phase"] = json!("Pending");
        }
        cx.update_status(PODS, &stored, status, "kube-scheduler");
        cx.event(pod, &source, "Normal", "Scheduled", &format!("Successfully assigned {ns}/{name} to {node_name}"));
        cx.follow_up.push(super::Work::Pod((ns, name)));
    }
}

/// The lastTransitionTime to write for condition `type_` with `status`: kept when unchanged.
pub fn keep_transition(obj: &Value, type_: &str, status: &str) -> String {
    condition(obj, type_)
        .filter(|c| c["status"] == status)
        .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_string))
        .unwrap_or_else(crate::meta::now)
}

/// Replaces (or adds) the condition of the same type in `status.conditions`.
pub fn set_condition(status: &mut Value, cond: Value) {
    if !status.is_object() {
        *status = json!({});
    }
    let list = status["conditions"].as_array_mut();
    match list {
        Some(cs) => match cs.iter_mut().find(|c| c["type"] == cond["type"]) {
            Some(c) => *c = cond,
            None => cs.push(cond),
        },
        None => status["conditions"] = json!([cond]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: Value, taints: Value, ready: bool) -> Value {
        json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints},
               "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    #[test]
    fn selectors_affinity_and_absent_labels() {
        let n = node(json!({"os": "linux", "gen": "5"}), json!([]), true);
        let aff = |op: &str, key: &str, vals: Value| {
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": key, "operator": op, "values": vals}]}]}}}})
        };
        assert!(misfit(&json!({"nodeSelector": {"os": "linux"}}), &n).is_none());
        assert!(misfit(&json!({"nodeSelector": {"os": "windows"}}), &n).is_some());
        assert!(misfit(&aff("In", "os", json!(["linux"])), &n).is_none());
        assert!(misfit(&aff("NotIn", "os", json!(["linux"])), &n).is_some());
        // NotIn and DoesNotExist match nodes without the label.
        assert!(misfit(&aff("NotIn", "eks.amazonaws.com/compute-type", json!(["fargate"])), &n).is_none());
        assert!(misfit(&aff("DoesNotExist", "eks.amazonaws.com/compute-type", json!([])), &n).is_none());
        assert!(misfit(&aff("Exists", "missing", json!([])), &n).is_some());
        assert!(misfit(&aff("Gt", "gen", json!(["4"])), &n).is_none());
        assert!(misfit(&aff("Lt", "gen", json!(["4"])), &n).is_some());
        let by_name = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}});
        assert!(misfit(&by_name, &n).is_some());
    }

    #[test]
    fn feasible_nodes_like_kube_scheduler() {
        // All of a small cluster, then the adaptive percentage: 50% of 100 nodes, 42% of 1,000,
        // 10% of 5,000, the 5% floor at 10,000 and beyond.
        assert_eq!(feasible_nodes_to_find(3), 3);
        assert_eq!(feasible_nodes_to_find(99), 99);
        assert_eq!(feasible_nodes_to_find(100), 100);
        assert_eq!(feasible_nodes_to_find(199), 100);
        assert_eq!(feasible_nodes_to_find(1_000), 420);
        assert_eq!(feasible_nodes_to_find(5_000), 500);
        assert_eq!(feasible_nodes_to_find(20_000), 1_000);
    }

    #[test]
    fn taints_tolerations_and_readiness() {
        let tainted = node(json!({}), json!([{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]), true);
        assert_eq!(misfit(&json!({}), &tainted).as_deref(), Some("had untolerated taint {gpu: yes}"));
        let equal = json!({"tolerations": [{"key": "gpu", "operator": "Equal", "value": "yes"}]});
        assert!(misfit(&equal, &tainted).is_none());
        let wrong_value = json!({"tolerations": [{"key": "gpu", "operator": "Equal", "value": "no"}]});
        assert!(misfit(&wrong_value, &tainted).is_some());
        let all = json!({"tolerations": [{"operator": "Exists"}]});
        assert!(misfit(&all, &tainted).is_none());
        let soft = node(json!({}), json!([{"key": "x", "effect": "PreferNoSchedule"}]), true);
        assert!(misfit(&json!({}), &soft).is_none());
        let not_ready = node(json!({}), json!([]), false);
        assert!(misfit(&json!({}), &not_ready).unwrap().contains(NOT_READY_TAINT));
        let noexec_only =
            json!({"tolerations": [{"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoExecute"}]});
        assert!(misfit(&noexec_only, &not_ready).is_some());
    }
}
