//! Nodes: the kubelet's registration and status (labels, Ready and pressure conditions,
//! addresses, capacity, nodeInfo) for every Node object that has none yet, the node lifecycle
//! controller's marking of pods on a node that is not ready, and pod GC of pods bound to a node
//! that no longer exists. Library helpers create, remove and flip nodes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::scheduling::{node_ready, set_condition};
use super::{Ctx, Memory, NODES, PODS, Work};
use crate::error::Error;
use crate::store::key_of;

pub fn node_index(mem: &mut Memory, name: &str) -> usize {
    let next = mem.node_index.len();
    *mem.node_index.entry(name.to_string()).or_insert(next)
}

pub fn node_ip(index: usize) -> String {
    format!("10.0.{}.{}", index / 250, index % 250 + 10)
}

fn kubelet_status(node: &Value, index: usize, version: &str) -> Value {
    let now = crate::meta::now();
    let name = node["metadata"]["name"].as_str().unwrap_or_default();
    let os = node["metadata"]["labels"]["kubernetes.io/os"].as_str().unwrap_or("linux");
    let arch = node["metadata"]["labels"]["kubernetes.io/arch"].as_str().unwrap_or("amd64");
    let cond = |t: &str, s: &str, reason: &str, message: &str| {
        json!({"type": t, "status": s, "lastHeartbeatTime": now, "lastTransitionTime": now,
               "reason": reason, "message": message})
    };
    let mut st = node["status"].clone();
    if !st.is_object() {
        st = json!({});
    }
    if st["conditions"].as_array().is_none_or(|cs| !cs.iter().any(|c| c["type"] == "Ready")) {
        let mut cs: Vec<Value> = st["conditions"].as_array().cloned().unwrap_or_default();
        for c in [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ] {
            if !cs.iter().any(|x| x["type"] == c["type"]) {
                cs.push(c);
            }
        }
        st["conditions"] = Value::Array(cs);
    }
    let resources = json!({"cpu": "4", "memory": "16393220Ki", "pods": "110", "ephemeral-storage": "104845292Ki"});
    for (k, v) in [
        (
            "addresses",
            json!([{"type": "InternalIP", "address": node_ip(index)}, {"type": "Hostname", "address": name}]),
        ),
        ("capacity", resources.clone()),
        ("allocatable", resources),
        ("daemonEndpoints", json!({"kubeletEndpoint": {"Port": 10250}})),
        (
            "nodeInfo",
            json!({"kubeletVersion": format!("v{}", version.trim_start_matches('v')), "kubeProxyVersion": "",
                   "operatingSystem": os, "architecture": arch, "containerRuntimeVersion": "containerd://1.7.27",
                   "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0-local",
                   "machineID": format!("{:032x}", index + 1), "systemUUID": format!("{:032x}", index + 1),
                   "bootID": format!("{:032x}", index + 1)}),
        ),
    ] {
        if st.get(k).is_none_or(Value::is_null) {
            st[k] = v;
        }
    }
    st
}

/// Registration labels the kubelet puts on its Node.
fn kubelet_labels(node: &Value) -> Value {
    let mut labels = super::labels(node);
    let name = node["metadata"]["name"].as_str().unwrap_or_default();
    for (k, v) in [("kubernetes.io/hostname", name), ("kubernetes.io/os", "linux"), ("kubernetes.io/arch", "amd64")] {
        if labels.get(k).is_none() {
            labels[k] = json!(v);
        }
    }
    for k in ["os", "arch"] {
        let beta = format!("beta.kubernetes.io/{k}");
        if labels.get(&beta).is_none() {
            labels[beta] = labels[format!("kubernetes.io/{k}")].clone();
        }
    }
    labels
}

pub fn reconcile(cx: &mut Ctx<'_>, name: &str) -> Option<Duration> {
    let key = (String::new(), name.to_string());
    let Some(node) = cx.get(NODES, &key) else {
        // Pod GC: pods bound to a node that no longer exists are deleted.
        for p in cx.list(PODS, None) {
            if p["spec"]["nodeName"] == name {
                cx.delete(PODS, &key_of(&p));
            }
        }
        cx.mem.images.remove(name);
        return None;
    };
    if super::terminating(&node) {
        return None;
    }
    let index = node_index(cx.mem, name);
    let labels = kubelet_labels(&node);
    let mut node = node;
    if node["metadata"]["labels"] != labels {
        let mut n = (*node).clone();
        n["metadata"]["labels"] = labels;
        if let Some(stored) = cx.update(NODES, &node, n, "kubelet") {
            node = Arc::new(stored);
        }
    }
    let v = cx.shared.kubernetes_version();
    let version = if v.trim_start_matches('v').split('.').count() < 3 { format!("{v}.0") } else { v };
    let st = kubelet_status(&node, index, &version);
    if let Some(stored) = cx.update_status(NODES, &node, st, "kubelet") {
        node = Arc::new(stored);
    }
    let ready = node_ready(&node);
    for p in cx.list(PODS, None) {
        if p["spec"]["nodeName"] != name {
            continue;
        }
        if ready {
            cx.follow_up.push(Work::Pod(key_of(&p)));
        } else {
            super::kubelet::mark_not_ready(cx, &p);
        }
    }
    None
}

/// Parses a taint as kubectl spells it: `key=value:Effect` or `key:Effect`.
pub fn parse_taint(spec: &str) -> Result<Value, Error> {
    let bad = |message: String| Error::InvalidOption { field: "taints", message };
    let (kv, effect) = spec
        .rsplit_once(':')
        .ok_or_else(|| bad(format!("{spec:?} is not key[=value]:Effect, e.g. \"dedicated=gpu:NoSchedule\"")))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(bad(format!("{spec:?}: effect {effect:?} is not one of NoSchedule, PreferNoSchedule, NoExecute")));
    }
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    if key.is_empty() {
        return Err(bad(format!("{spec:?}: the taint key is empty")));
    }
    let mut t = json!({"key": key, "effect": effect});
    if !value.is_empty() {
        t["value"] = json!(value);
    }
    Ok(t)
}

/// A Node as a joining kubelet registers it.
pub fn node_object(name: &str, labels: &[(&str, &str)], taints: &[&str]) -> Result<Value, Error> {
    let mut l = json!({});
    for (k, v) in labels {
        l[*k] = json!(v);
    }
    let taints: Vec<Value> = taints.iter().map(|t| parse_taint(t)).collect::<Result<_, _>>()?;
    let mut node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": l}, "spec": {}});
    if !taints.is_empty() {
        node["spec"]["taints"] = Value::Array(taints);
    }
    Ok(node)
}

/// The Ready condition a kubelet (or, when it stops posting, the node controller) writes.
pub fn with_ready(node: &Value, ready: bool) -> Value {
    let mut st = node["status"].clone();
    let now = crate::meta::now();
    let (status, reason, message) = if ready {
        ("True", "KubeletReady", "kubelet is posting ready status")
    } else {
        ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
    };
    let transition = super::scheduling::keep_transition(node, "Ready", status);
    set_condition(
        &mut st,
        json!({"type": "Ready", "status": status, "lastHeartbeatTime": now, "lastTransitionTime": transition,
               "reason": reason, "message": message}),
    );
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_in_kubectl_syntax() {
        assert_eq!(
            parse_taint("dedicated=gpu:NoSchedule").unwrap(),
            json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})
        );
        assert_eq!(parse_taint("spot:NoExecute").unwrap(), json!({"key": "spot", "effect": "NoExecute"}));
        let e = parse_taint("x=y:Sometimes").unwrap_err().to_string();
        assert!(e.contains("NoSchedule, PreferNoSchedule, NoExecute"), "{e}");
        assert!(parse_taint("novalue").is_err());
    }
}
