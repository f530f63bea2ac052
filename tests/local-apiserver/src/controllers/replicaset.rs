//! The replicaset controller: keeps `spec.replicas` active pods (created from the template,
//! owned by the ReplicaSet), deletes the surplus in the real controller's order (unscheduled,
//! pending, not ready and most restarted first, newest first), and reports replicas,
//! fullyLabeledReplicas, readyReplicas, availableReplicas and observedGeneration.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{
    Ctx, PODS, REPLICASETS, Source, Work, controller_ref, is_active, is_pod_ready, pod_available, terminating,
};
use crate::selectors::LabelSelector;
use crate::store::{ObjKey, key_of};

pub fn reconcile(cx: &mut Ctx<'_>, key: &ObjKey) -> Option<Duration> {
    let rs = cx.get(REPLICASETS, key)?;
    if let Some(("Deployment", name, _)) = super::controller_of(&rs) {
        cx.follow_up.push(Work::Deployment((key.0.clone(), name.to_string())));
    }
    if terminating(&rs) {
        return None;
    }
    let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
    let mut active: Vec<Arc<Value>> = cx.owned(PODS, &rs).into_iter().filter(|p| is_active(p)).collect();
    let source = Source::controller("replicaset-controller");
    let count = active.len() as i64;
    let mut retry = None;
    if count < want {
        for _ in count..want {
            let pod = pod_from_template(&rs, &rs["spec"]["template"]);
            match cx.create(PODS, pod, super::CONTROLLER_MANAGER) {
                Some(p) => {
                    let name = p["metadata"]["name"].as_str().unwrap_or_default().to_string();
                    cx.event(&rs, &source, "Normal", "SuccessfulCreate", &format!("Created pod: {name}"));
                    active.push(Arc::new(p));
                }
                None => {
                    cx.event(&rs, &source, "Warning", "FailedCreate", "Error creating: the pod was refused");
                    // Tried again later, as the real controller's rate-limited queue does.
                    retry = Some(Duration::from_secs(1));
                    break;
                }
            }
        }
    } else if count > want {
        active.sort_by_key(deletion_rank);
        let surplus = (count - want) as usize;
        for p in active.drain(..surplus) {
            let name = p["metadata"]["name"].as_str().unwrap_or_default().to_string();
            if cx.delete(PODS, &key_of(&p)) {
                cx.event(&rs, &source, "Normal", "SuccessfulDelete", &format!("Deleted pod: {name}"));
            }
        }
    }
    let min_ready = rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let template_labels =
        LabelSelector::from_object(&json!({"matchLabels": rs["spec"]["template"]["metadata"]["labels"]}));
    let mut status = json!({"replicas": active.len()});
    let mut next: Option<Duration> = retry;
    let (mut ready, mut available, mut labelled) = (0, 0, 0);
    for p in &active {
        if template_labels.matches(p["metadata"].get("labels")) {
            labelled += 1;
        }
        if is_pod_ready(p) {
            ready += 1;
        }
        match pod_available(p, min_ready) {
            (true, _) => available += 1,
            (false, Some(wait)) => next = Some(next.map_or(wait, |n: Duration| n.min(wait))),
            _ => {}
        }
    }
    for (field, n) in [("fullyLabeledReplicas", labelled), ("readyReplicas", ready), ("availableReplicas", available)] {
        if n > 0 {
            status[field] = json!(n);
        }
    }
    status["observedGeneration"] = rs["metadata"]["generation"].clone();
    cx.update_status(REPLICASETS, &rs, status, super::CONTROLLER_MANAGER);
    next
}

/// A pod of `owner` from `template` (generateName `<owner>-`, the template's labels and
/// annotations, a controller reference).
pub fn pod_from_template(owner: &Value, template: &Value) -> Value {
    let mut metadata = json!({
        "generateName": format!("{}-", owner["metadata"]["name"].as_str().unwrap_or_default()),
        "namespace": owner["metadata"]["namespace"],
        "ownerReferences": controller_ref(owner),
    });
    for f in ["labels", "annotations"] {
        if let Some(v) = template["metadata"].get(f).filter(|v| v.is_object()) {
            metadata[f] = v.clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]})
}

/// Deletion order of surplus pods (controller.ActivePods ordering): unassigned before
/// assigned, Pending before Unknown before Running, not ready before ready, more restarts
/// before fewer, newer before older.
fn deletion_rank(p: &Arc<Value>) -> (bool, u8, bool, i64, std::cmp::Reverse<String>) {
    let phase = match p["status"]["phase"].as_str() {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    let restarts: i64 = p["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["restartCount"].as_i64())
        .sum();
    (
        p["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty()),
        phase,
        is_pod_ready(p),
        -restarts,
        std::cmp::Reverse(p["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_string()),
    )
}
