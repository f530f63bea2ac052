//! Deletion: DeleteOptions (propagation policy, preconditions, dry run), finalizers and
//! deletionTimestamp, immediate removal with its side effects (a removed CRD stops serving),
//! and delete collection.

use serde_json::{Value, json};

use crate::admission::admit_crd;
use crate::error::{ApiError, ApiResult, Target as ErrTarget};
use crate::handlers::{CRD_KEY, NAMESPACE_KEY, Query, Reply, Target, dry_run, parse_body, present, selectors};
use crate::meta;
use crate::registry::ResourceInfo;
use crate::server::Shared;
use crate::store::{Inner, ObjKey};

pub fn has_spec_finalizers(ns: &Value) -> bool {
    ns["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
}

/// Removes an object from the store, with the side effects of removal (a CRD stops serving).
pub fn remove_object(shared: &Shared, s: &mut Inner, storage_key: &str, key: &ObjKey) -> Option<Value> {
    let gone = s.remove(storage_key, key)?;
    if storage_key == CRD_KEY
        && let Some(name) = gone["metadata"]["name"].as_str()
    {
        let group = gone["spec"]["group"].as_str().unwrap_or_default();
        let plural = gone["spec"]["names"]["plural"].as_str().unwrap_or_default();
        s.drop_resource(&format!("{group}/{plural}"));
        shared.registry.unregister_crd(name);
    }
    shared.gc_wake.notify_one();
    Some((*gone).clone())
}

/// Deletion options from the query and an optional DeleteOptions body.
pub struct DeleteOpts {
    pub propagation: String,
    pub precondition_rv: Option<String>,
    pub precondition_uid: Option<String>,
    pub dry_run: bool,
}

pub fn delete_opts(q: &Query, body: &[u8]) -> ApiResult<DeleteOpts> {
    let b: Value = if body.is_empty() { json!({}) } else { parse_body(body, "application/json")? };
    let propagation = q
        .get("propagationPolicy")
        .cloned()
        .or_else(|| b["propagationPolicy"].as_str().map(str::to_string))
        .or_else(|| if b["orphanDependents"] == json!(true) { Some("Orphan".into()) } else { None })
        .unwrap_or_else(|| "Background".into());
    if !matches!(propagation.as_str(), "Background" | "Foreground" | "Orphan") {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: \"{propagation}\": supported values: \"Foreground\", \
                \"Background\", \"Orphan\""
        )));
    }
    Ok(DeleteOpts {
        propagation,
        precondition_rv: b["preconditions"]["resourceVersion"].as_str().map(str::to_string),
        precondition_uid: b["preconditions"]["uid"].as_str().map(str::to_string),
        dry_run: dry_run(q) || b["dryRun"].as_array().is_some_and(|d| d.iter().any(|x| x == "All")),
    })
}

/// Deletes one object under the lock: marks it terminating when finalizers (including the
/// ones the propagation policy adds) hold it, removes it otherwise.
/// Returns (object or final state, removed, changed).
pub fn delete_locked(
    shared: &Shared,
    s: &mut Inner,
    info: &ResourceInfo,
    key: &ObjKey,
    opts: &DeleteOpts,
) -> ApiResult<(Value, bool, bool)> {
    let storage = info.storage_key();
    let t = ErrTarget { group: &info.group, resource: &info.plural, name: &key.1 };
    let old = s.get(&storage, key).ok_or_else(|| ApiError::not_found(&t))?;
    if storage == NAMESPACE_KEY && matches!(key.1.as_str(), "default" | "kube-system" | "kube-public") {
        return Err(ApiError::forbidden(format!(
            "namespaces \"{}\" is forbidden: this namespace may not be deleted",
            key.1
        )));
    }
    if let Some(rv) = &opts.precondition_rv
        && old["metadata"]["resourceVersion"].as_str() != Some(rv.as_str())
    {
        return Err(ApiError::conflict(
            &t,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                old["metadata"]["resourceVersion"].as_str().unwrap_or_default()
            ),
        ));
    }
    if let Some(uid) = &opts.precondition_uid
        && old["metadata"]["uid"].as_str() != Some(uid.as_str())
    {
        return Err(ApiError::conflict(
            &t,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                old["metadata"]["uid"].as_str().unwrap_or_default()
            ),
        ));
    }
    let mut new = (*old).clone();
    let mut finalizers: Vec<Value> = new["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
    let already_terminating = new["metadata"].get("deletionTimestamp").is_some();
    if !already_terminating {
        let add = match opts.propagation.as_str() {
            "Foreground" => Some("foregroundDeletion"),
            "Orphan" => Some("orphan"),
            _ => None,
        };
        if let Some(f) = add
            && !finalizers.iter().any(|x| x == f)
        {
            finalizers.push(json!(f));
        }
    }
    let held = !finalizers.is_empty() || (storage == NAMESPACE_KEY && has_spec_finalizers(&new));
    if !held {
        if opts.dry_run {
            return Ok(((*old).clone(), true, false));
        }
        let gone = remove_object(shared, s, &storage, key).unwrap_or_else(|| (*old).clone());
        return Ok((gone, true, true));
    }
    if already_terminating {
        return Ok(((*old).clone(), false, false));
    }
    new["metadata"]["finalizers"] = Value::Array(finalizers.clone());
    if finalizers.is_empty()
        && let Some(m) = new["metadata"].as_object_mut()
    {
        m.remove("finalizers");
    }
    new["metadata"]["deletionTimestamp"] = json!(meta::now());
    new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    if storage == NAMESPACE_KEY {
        new["status"]["phase"] = json!("Terminating");
    }
    if storage == CRD_KEY {
        let _ = admit_crd(&mut new);
    }
    if opts.dry_run {
        return Ok((new, false, false));
    }
    let stored = s.put(&storage, new);
    shared.gc_wake.notify_one();
    Ok(((*stored).clone(), false, true))
}

pub fn success_status(info: &ResourceInfo, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": obj["metadata"]["name"],
            "group": info.group,
            "kind": info.plural,
            "uid": obj["metadata"]["uid"],
        }
    })
}

pub fn delete(shared: &Shared, t: &Target, q: &Query, body: &[u8]) -> ApiResult<Reply> {
    let opts = delete_opts(q, body)?;
    let mut s = shared.store.lock();
    let (obj, removed, changed) = delete_locked(shared, &mut s, &t.info, &t.key(), &opts)?;
    drop(s);
    let body = if removed { success_status(&t.info, &obj) } else { present(&obj, &t.info) };
    Ok(Reply { code: if removed { 200 } else { 202 }, body, changed })
}

pub fn delete_collection(shared: &Shared, t: &Target, q: &Query, body: &[u8]) -> ApiResult<Reply> {
    let opts = delete_opts(q, body)?;
    let (labels, fields) = selectors(t, q)?;
    let mut s = shared.store.lock();
    let storage = t.info.storage_key();
    let targets: Vec<ObjKey> = s
        .list(&storage, t.namespace.as_deref())
        .iter()
        .filter(|o| labels.matches(o["metadata"].get("labels")) && fields.matches(o))
        .map(|o| crate::store::key_of(o))
        .collect();
    let mut items = Vec::new();
    let mut changed = false;
    for key in targets {
        if let Ok((obj, _, c)) = delete_locked(shared, &mut s, &t.info, &key, &opts) {
            changed |= c;
            items.push(present(&obj, &t.info));
        }
    }
    let rv = s.current_rv();
    drop(s);
    Ok(Reply {
        code: 200,
        body: json!({"kind": format!("{}List", t.info.kind), "apiVersion": t.info.api_version(),
            "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
        changed,
    })
}
