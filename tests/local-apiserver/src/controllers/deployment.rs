//! The deployment controller: one ReplicaSet per pod template (`<name>-<pod-template-hash>`, the
//! hash label added to its selector and template, a controller reference to the Deployment),
//! rolling updates bounded by `maxSurge`/`maxUnavailable` or Recreate, old ReplicaSets scaled
//! down and pruned to `revisionHistoryLimit`, the `deployment.kubernetes.io/revision`
//! annotation, and the status and conditions (`Available`, `Progressing` with
//! NewReplicaSetCreated / ReplicaSetUpdated / NewReplicaSetAvailable / ProgressDeadlineExceeded)
//! that kubectl rollout status, kstatus and Helm read.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::scheduling::set_condition;
use super::{
    CONTROLLER_MANAGER, Ctx, DEPLOYMENTS, REPLICASETS, Source, condition, controller_ref, owned_by, scaled,
    seconds_since, template_hash, terminating, without_nulls,
};
use crate::store::{ObjKey, key_of};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX: &str = "deployment.kubernetes.io/max-replicas";
const HASH_LABEL: &str = "pod-template-hash";

fn int(v: &Value, path: &str) -> i64 {
    v.pointer(path).and_then(Value::as_i64).unwrap_or(0)
}

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION].as_str().and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn name(v: &Value) -> String {
    v["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

/// The ReplicaSet's template without the hash label (what the Deployment's template was).
fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(l) = t["metadata"]["labels"].as_object_mut() {
        l.remove(HASH_LABEL);
        if l.is_empty()
            && let Some(m) = t["metadata"].as_object_mut()
        {
            m.remove("labels");
        }
    }
    t
}

struct Plan {
    replicas: i64,
    max_surge: i64,
    max_unavailable: i64,
    recreate: bool,
}

fn plan(d: &Value) -> Plan {
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
    let recreate = d["spec"]["strategy"]["type"] == "Recreate";
    let ru = &d["spec"]["strategy"]["rollingUpdate"];
    let (mut max_surge, mut max_unavailable) = if recreate {
        (0, 0)
    } else {
        let surge = ru.get("maxSurge").cloned().unwrap_or(json!("25%"));
        let unavailable = ru.get("maxUnavailable").cloned().unwrap_or(json!("25%"));
        (scaled(&surge, replicas, true), scaled(&unavailable, replicas, false))
    };
    if !recreate && max_surge == 0 && max_unavailable == 0 {
        // ResolveFenceposts: never a rollout that cannot move.
        max_unavailable = 1;
    }
    max_surge = max_surge.max(0);
    max_unavailable = max_unavailable.clamp(0, replicas);
    Plan { replicas, max_surge, max_unavailable, recreate }
}

pub fn reconcile(cx: &mut Ctx<'_>, key: &ObjKey) -> Option<Duration> {
    let d = cx.get(DEPLOYMENTS, key)?;
    if terminating(&d) {
        return None;
    }
    let p = plan(&d);
    let paused = d["spec"]["paused"] == true;
    let template = d["spec"]["template"].clone();
    let owned = |cx: &Ctx<'_>| -> Vec<Arc<Value>> {
        let mut v: Vec<Arc<Value>> = cx.owned(REPLICASETS, &d).into_iter().filter(|rs| !terminating(rs)).collect();
        v.sort_by_key(|rs| (rs["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_string(), name(rs)));
        v
    };
    let all = owned(cx);
    let wanted = without_nulls(&template);
    let mut new_rs = all.iter().find(|rs| without_nulls(&without_hash(&rs["spec"]["template"])) == wanted).cloned();
    let max_old_revision = all
        .iter()
        .filter(|rs| new_rs.as_ref().is_none_or(|n| n["metadata"]["uid"] != rs["metadata"]["uid"]))
        .map(|rs| revision(rs))
        .max()
        .unwrap_or(0);
    let source = Source::controller("deployment-controller");
    let mut created: Option<String> = None;
    let mut collision = d["status"]["collisionCount"].as_i64().unwrap_or(0);

    if !paused {
        // The new ReplicaSet is the newest revision (a rollback moves an old one up).
        if let Some(rs) = new_rs.clone()
            && revision(&rs) <= max_old_revision
        {
            let mut n = (*rs).clone();
            n["metadata"]["annotations"][REVISION] = json!((max_old_revision + 1).to_string());
            if let Some(stored) = cx.update(REPLICASETS, &rs, n, CONTROLLER_MANAGER) {
                new_rs = Some(Arc::new(stored));
            }
        }
        if new_rs.is_none() {
            let old_active: i64 = all.iter().map(|rs| int(rs, "/spec/replicas")).sum();
            let initial = if p.recreate {
                if old_active > 0 || all.iter().any(|rs| int(rs, "/status/replicas") > 0) { 0 } else { p.replicas }
            } else {
                (p.replicas + p.max_surge - old_active).clamp(0, p.replicas)
            };
            let hash = template_hash(&template, collision);
            let rs_name = format!("{}-{hash}", key.1);
            if cx.get(REPLICASETS, &(key.0.clone(), rs_name.clone())).is_some() {
                // A ReplicaSet of that name with another template: a hash collision.
                collision += 1;
                let mut st = d["status"].clone();
                if !st.is_object() {
                    st = json!({});
                }
                st["collisionCount"] = json!(collision);
                cx.update_status(DEPLOYMENTS, &d, st, CONTROLLER_MANAGER);
                return Some(Duration::ZERO);
            }
            let rs = replica_set(&d, &template, &hash, &rs_name, initial, max_old_revision + 1, &p);
            if let Some(stored) = cx.create(REPLICASETS, rs, CONTROLLER_MANAGER) {
                cx.event(
                    &d,
                    &source,
                    "Normal",
                    "ScalingReplicaSet",
                    &format!("Scaled up replica set {rs_name} from 0 to {initial}"),
                );
                created = Some(rs_name);
                new_rs = Some(Arc::new(stored));
            }
        }
        let olds: Vec<Arc<Value>> = all
            .iter()
            .filter(|rs| new_rs.as_ref().is_none_or(|n| n["metadata"]["uid"] != rs["metadata"]["uid"]))
            .cloned()
            .collect();
        if let Some(new) = new_rs.clone() {
            if p.recreate {
                recreate(cx, &d, &new, &olds, &p, &source);
            } else {
                rolling(cx, &d, &new, &olds, &p, &source);
            }
        }
    }

    // Status from what the ReplicaSets report now.
    let all = owned(cx);
    let new_rs = new_rs.and_then(|n| all.iter().find(|rs| rs["metadata"]["uid"] == n["metadata"]["uid"]).cloned());
    let sum = |path: &str| all.iter().map(|rs| int(rs, path)).sum::<i64>();
    let total_spec = sum("/spec/replicas");
    let replicas = sum("/status/replicas");
    let updated = new_rs.as_ref().map(|rs| int(rs, "/status/replicas")).unwrap_or(0);
    let ready = sum("/status/readyReplicas");
    let available = sum("/status/availableReplicas");
    let unavailable = (total_spec - available).max(0);
    let mut st = json!({"observedGeneration": d["metadata"]["generation"]});
    for (f, n) in [
        ("replicas", replicas),
        ("updatedReplicas", updated),
        ("readyReplicas", ready),
        ("availableReplicas", available),
        ("unavailableReplicas", unavailable),
    ] {
        if n > 0 {
            st[f] = json!(n);
        }
    }
    if collision > 0 {
        st["collisionCount"] = json!(collision);
    }
    st["conditions"] = d["status"]["conditions"].clone();
    let now = crate::meta::now();
    let min_available = p.replicas - p.max_unavailable;
    let avail = if available >= min_available {
        ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    } else {
        ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    };
    put_condition(&d, &mut st, "Available", avail.0, avail.1, avail.2.to_string(), false, &now);

    let rs_name = new_rs.as_ref().map(|rs| name(rs)).or(created.clone());
    let about = match &rs_name {
        Some(n) => format!("ReplicaSet \"{n}\""),
        None => format!("Deployment \"{}\"", key.1),
    };
    let old_cond = condition(&d, "Progressing").cloned();
    let complete = updated == p.replicas && replicas == p.replicas && available == p.replicas;
    let old_st = &d["status"];
    let progressed = updated > int(old_st, "/updatedReplicas")
        || (replicas - updated) < (int(old_st, "/replicas") - int(old_st, "/updatedReplicas"))
        || ready > int(old_st, "/readyReplicas")
        || available > int(old_st, "/availableReplicas");
    let deadline = d["spec"]["progressDeadlineSeconds"].as_i64().unwrap_or(600);
    let mut requeue = None;
    let old_reason = old_cond.as_ref().and_then(|c| c["reason"].as_str()).unwrap_or_default().to_string();
    if paused {
        put_condition(
            &d,
            &mut st,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".into(),
            false,
            &now,
        );
    } else if let Some(n) = &created {
        let msg = format!("Created new replica set \"{n}\"");
        put_condition(&d, &mut st, "Progressing", "True", "NewReplicaSetCreated", msg, true, &now);
        requeue = Some(Duration::from_secs(deadline.max(0) as u64));
    } else if old_reason == "NewReplicaSetAvailable" && replicas == updated && old_cond_about(&old_cond, &rs_name) {
        // Already complete for this ReplicaSet: the real controller leaves it.
    } else if complete {
        let msg = format!("{about} has successfully progressed.");
        put_condition(&d, &mut st, "Progressing", "True", "NewReplicaSetAvailable", msg, true, &now);
    } else if progressed || old_cond.is_none() {
        let msg = format!("{about} is progressing.");
        put_condition(&d, &mut st, "Progressing", "True", "ReplicaSetUpdated", msg, true, &now);
        requeue = Some(Duration::from_secs(deadline.max(0) as u64));
    } else if old_reason != "ProgressDeadlineExceeded" {
        let since = old_cond.as_ref().and_then(|c| seconds_since(&c["lastUpdateTime"])).unwrap_or(0);
        if since >= deadline {
            let msg = format!("{about} has timed out progressing.");
            put_condition(&d, &mut st, "Progressing", "False", "ProgressDeadlineExceeded", msg, true, &now);
        } else {
            requeue = Some(Duration::from_millis(((deadline - since) * 1000 + 200) as u64));
        }
    }
    // The revision annotation follows the new ReplicaSet.
    let mut d_now = d.clone();
    if let Some(rev) = new_rs.as_ref().map(|rs| revision(rs)).filter(|r| *r > 0)
        && d["metadata"]["annotations"][REVISION].as_str() != Some(rev.to_string().as_str())
    {
        let mut n = (*d).clone();
        n["metadata"]["annotations"][REVISION] = json!(rev.to_string());
        if let Some(stored) = cx.update(DEPLOYMENTS, &d, n, CONTROLLER_MANAGER) {
            d_now = Arc::new(stored);
        }
    }
    if st["conditions"].as_array().is_some_and(Vec::is_empty) || st["conditions"].is_null() {
        st.as_object_mut().map(|m| m.remove("conditions"));
    }
    cx.update_status(DEPLOYMENTS, &d_now, st, CONTROLLER_MANAGER);
    if complete && !paused {
        let keep = new_rs.as_ref().map(|rs| rs["metadata"]["uid"].clone()).unwrap_or(Value::Null);
        cleanup(cx, &d, key, &keep);
    }
    requeue
}

fn old_cond_about(c: &Option<Value>, rs_name: &Option<String>) -> bool {
    match (c, rs_name) {
        (Some(c), Some(n)) => c["message"].as_str().is_some_and(|m| m.contains(&format!("\"{n}\""))),
        _ => false,
    }
}

/// Sets a condition, keeping lastTransitionTime while the status holds and lastUpdateTime
/// while nothing about it changes (unless `touch`: progress was made).
#[allow(clippy::too_many_arguments)]
fn put_condition(
    d: &Value,
    st: &mut Value,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    touch: bool,
    now: &str,
) {
    let old = condition(d, type_);
    let same_status = old.is_some_and(|c| c["status"] == status);
    let same = same_status && old.is_some_and(|c| c["reason"] == reason && c["message"] == message.as_str());
    let keep = |f: &str| old.and_then(|c| c[f].as_str()).unwrap_or(now).to_string();
    let transition = if same_status { keep("lastTransitionTime") } else { now.to_string() };
    let update = if same && !touch { keep("lastUpdateTime") } else { now.to_string() };
    set_condition(
        st,
        json!({"type": type_, "status": status, "lastUpdateTime": update, "lastTransitionTime": transition,
               "reason": reason, "message": message}),
    );
}

#[allow(clippy::too_many_arguments)]
fn replica_set(
    d: &Value,
    template: &Value,
    hash: &str,
    rs_name: &str,
    replicas: i64,
    revision: i64,
    p: &Plan,
) -> Value {
    let mut tpl = template.clone();
    tpl["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = d["spec"]["selector"].clone();
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let mut spec = json!({"replicas": replicas, "selector": selector, "template": tpl});
    if let Some(m) = d["spec"].get("minReadySeconds") {
        spec["minReadySeconds"] = m.clone();
    }
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": rs_name, "namespace": d["metadata"]["namespace"],
            "labels": tpl["metadata"]["labels"],
            "annotations": {
                REVISION: revision.to_string(),
                DESIRED: p.replicas.to_string(),
                MAX: (p.replicas + p.max_surge).to_string(),
            },
            "ownerReferences": controller_ref(d),
        },
        "spec": spec,
    })
}

fn scale(cx: &mut Ctx<'_>, d: &Value, rs: &Arc<Value>, to: i64, p: &Plan, source: &Source<'_>) {
    let from = int(rs, "/spec/replicas");
    let mut n = (**rs).clone();
    n["spec"]["replicas"] = json!(to);
    n["metadata"]["annotations"][DESIRED] = json!(p.replicas.to_string());
    n["metadata"]["annotations"][MAX] = json!((p.replicas + p.max_surge).to_string());
    if cx.update(REPLICASETS, rs, n, CONTROLLER_MANAGER).is_some() && from != to {
        let dir = if to > from { "up" } else { "down" };
        let msg = format!("Scaled {dir} replica set {} from {from} to {to}", name(rs));
        cx.event(d, source, "Normal", "ScalingReplicaSet", &msg);
    }
}

fn recreate(cx: &mut Ctx<'_>, d: &Value, new: &Arc<Value>, olds: &[Arc<Value>], p: &Plan, source: &Source<'_>) {
    for rs in olds {
        if int(rs, "/spec/replicas") > 0 {
            scale(cx, d, rs, 0, p, source);
        }
    }
    // New pods only once every old pod is gone.
    let old_running = olds.iter().any(|rs| cx.owned(super::PODS, rs).iter().any(|pod| super::is_active(pod)));
    if !old_running && int(new, "/spec/replicas") != p.replicas {
        scale(cx, d, new, p.replicas, p, source);
    }
}

fn rolling(cx: &mut Ctx<'_>, d: &Value, new: &Arc<Value>, olds: &[Arc<Value>], p: &Plan, source: &Source<'_>) {
    // Scale the new ReplicaSet up as far as maxSurge allows (reconcileNewReplicaSet).
    let new_spec = int(new, "/spec/replicas");
    let old_spec: i64 = olds.iter().map(|rs| int(rs, "/spec/replicas")).sum();
    let mut new_target = new_spec;
    if new_spec > p.replicas {
        new_target = p.replicas;
    } else if new_spec < p.replicas {
        let max_total = p.replicas + p.max_surge;
        let current = new_spec + old_spec;
        if current < max_total {
            new_target = new_spec + (max_total - current).min(p.replicas - new_spec);
        }
    }
    if new_target != new_spec || new["metadata"]["annotations"][DESIRED] != p.replicas.to_string().as_str() {
        scale(cx, d, new, new_target, p, source);
    }
    // Scale old ReplicaSets down as far as maxUnavailable allows (reconcileOldReplicaSets).
    if old_spec == 0 {
        return;
    }
    let all_spec = new_target + old_spec;
    let min_available = p.replicas - p.max_unavailable;
    let new_unavailable = (new_target - int(new, "/status/availableReplicas")).max(0);
    let mut budget = all_spec - min_available - new_unavailable;
    if budget <= 0 {
        return;
    }
    let mut olds: Vec<Arc<Value>> = olds.iter().filter(|rs| int(rs, "/spec/replicas") > 0).cloned().collect();
    olds.sort_by_key(|rs| (rs["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_string(), name(rs)));
    let mut targets: Vec<i64> = olds.iter().map(|rs| int(rs, "/spec/replicas")).collect();
    // Unhealthy old replicas go first: they are unavailable anyway.
    for (i, rs) in olds.iter().enumerate() {
        if budget <= 0 {
            break;
        }
        let unhealthy = (targets[i] - int(rs, "/status/availableReplicas")).max(0);
        let cut = unhealthy.min(budget);
        targets[i] -= cut;
        budget -= cut;
    }
    // Then available ones, keeping minAvailable.
    let available: i64 = int(new, "/status/availableReplicas")
        + olds.iter().zip(&targets).map(|(rs, t)| int(rs, "/status/availableReplicas").min(*t)).sum::<i64>();
    let mut down = (available - min_available).min(budget);
    for t in targets.iter_mut() {
        if down <= 0 {
            break;
        }
        let cut = (*t).min(down);
        *t -= cut;
        down -= cut;
    }
    for (rs, t) in olds.iter().zip(targets) {
        if t != int(rs, "/spec/replicas") {
            scale(cx, d, rs, t, p, source);
        }
    }
}

/// Deletes old, empty ReplicaSets beyond revisionHistoryLimit, oldest revision first.
fn cleanup(cx: &mut Ctx<'_>, d: &Value, key: &ObjKey, new_uid: &Value) {
    let limit = d["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10).max(0) as usize;
    let mut empty: Vec<Arc<Value>> = cx
        .list(REPLICASETS, Some(&key.0))
        .into_iter()
        .filter(|rs| {
            owned_by(rs, d)
                && !terminating(rs)
                && int(rs, "/spec/replicas") == 0
                && int(rs, "/status/replicas") == 0
                && rs["metadata"]["uid"] != *new_uid
                && rs["status"]["observedGeneration"] == rs["metadata"]["generation"]
        })
        .collect();
    if empty.len() <= limit {
        return;
    }
    empty.sort_by_key(|rs| revision(rs));
    let surplus = empty.len() - limit;
    for rs in empty.into_iter().take(surplus) {
        cx.delete(REPLICASETS, &key_of(&rs));
    }
}
