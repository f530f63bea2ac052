//! The writing verbs (create, update, patch, server-side apply) and [`finish_write`], the one
//! path every write takes: status rules, metadata, managed fields, admission, no-op detection
//! and the store commit.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::admission::{
    admit, align_identity, check_namespace, check_strict, create_defaults, initial_status, scope_for,
};
use crate::deletion::{has_spec_finalizers, remove_object};
use crate::error::{ApiError, ApiResult};
use crate::handlers::{CRD_KEY, NAMESPACE_KEY, Query, Reply, Target, dry_run, parse_body, present};
use crate::managed::{self, WriteCtx};
use crate::meta;
use crate::patch::{self, PatchType};
use crate::server::Shared;
use crate::store::Inner;

pub fn manager_of(q: &Query, user_agent: &str, default_suffix: &str) -> String {
    match q.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(m) => m.clone(),
        None => {
            // The real server derives the manager from the User-Agent's first segment.
            let base = user_agent.split('/').next().unwrap_or_default();
            if base.is_empty() { format!("unknown{default_suffix}") } else { base.to_string() }
        }
    }
}

/// Finishes any write: status rules, metadata, admission, no-op detection, commit, and a wake
/// of the garbage collector when the change may have left an owner missing.
/// Returns the stored (or would-be) object and whether state changed.
#[allow(clippy::too_many_arguments)]
pub fn finish_write(
    shared: &Shared,
    s: &mut Inner,
    t: &Target,
    old: Option<&Arc<Value>>,
    mut new: Value,
    managed_done: bool,
    manager: &str,
    dry: bool,
) -> ApiResult<(Value, bool)> {
    crate::auth::validation::default(&t.info, &mut new);
    crate::auth::escalation::check(shared, s, t, old, &new)?;
    crate::auth::owner_references::check(shared, s, t, old, &new)?;
    let (stored, changed) = commit_write(shared, s, t, old, new, managed_done, manager, dry)?;
    if changed {
        wake_gc_for(shared, s, &stored);
    }
    Ok((stored, changed))
}

#[allow(clippy::too_many_arguments)]
fn commit_write(
    shared: &Shared,
    s: &mut Inner,
    t: &Target,
    old: Option<&Arc<Value>>,
    mut new: Value,
    managed_done: bool,
    manager: &str,
    dry: bool,
) -> ApiResult<(Value, bool)> {
    let info = &t.info;
    let scope = scope_for(t);
    match old {
        Some(old) => {
            // Status rules: main writes keep the stored status, status writes keep the rest.
            if t.is_status() {
                let status = new.get("status").cloned();
                // The rest is the stored object as the storage decoder reads it (for a custom
                // resource: pruned and with its CRD's defaults), as the status strategy copies it.
                let mut kept = match &info.schema {
                    crate::registry::SchemaSource::Crd { schema: Some(schema), .. } => {
                        crate::validation::decode_stored(old, schema)
                    }
                    _ => (**old).clone(),
                };
                if let Some(m) = kept.as_object_mut() {
                    match status {
                        Some(st) => m.insert("status".into(), st),
                        None => m.remove("status"),
                    };
                }
                kept["metadata"]["managedFields"] =
                    new["metadata"].get("managedFields").cloned().unwrap_or(Value::Null);
                new = kept;
            } else if info.status_subresource {
                match old.get("status") {
                    Some(st) => new["status"] = st.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            new["apiVersion"] = json!(info.api_version());
            new["kind"] = json!(info.kind);
            // Defaults before comparing specs, so a PUT that omits defaulted fields does not
            // look like a spec change.
            crate::defaults::apply(info, &mut new);
            meta::carry_over(old, &mut new);
            if let crate::registry::SchemaSource::Crd { schema: Some(schema), .. } = &info.schema
                && let Some(g) = old["metadata"].get("generation").and_then(Value::as_i64)
            {
                // The custom resource strategy bumps generation when the spec changes, comparing
                // both as decoded (defaulted, pruned); the status strategy never does.
                let changed = !t.is_status()
                    && meta::spec_changed(
                        &crate::validation::decode_stored(old, schema),
                        &crate::validation::decode_stored(&new, schema),
                    );
                new["metadata"]["generation"] = json!(g + i64::from(changed));
            }
            if !managed_done {
                let ctx = WriteCtx {
                    manager,
                    api_version: &info.api_version(),
                    subresource: t.subresource.as_deref().unwrap_or_default(),
                    root: info.root_node(),
                    scope,
                };
                managed::record_update(Some(old), &mut new, &ctx);
            }
            if new["metadata"].get("managedFields").is_some_and(Value::is_null)
                && let Some(m) = new["metadata"].as_object_mut()
            {
                m.remove("managedFields");
            }
            admit(shared, info, Some(old), &mut new, t.is_status())?;
            // An object being deleted goes away when its last finalizer does.
            let terminating = new["metadata"].get("deletionTimestamp").is_some();
            let no_finalizers = new["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty);
            if terminating && no_finalizers && !(info.storage_key() == NAMESPACE_KEY && has_spec_finalizers(&new)) {
                if dry {
                    return Ok((new, false));
                }
                let gone = remove_object(shared, s, &info.storage_key(), &t.key());
                return Ok((gone.unwrap_or(new), true));
            }
            if meta::same_content(old, &new) {
                return Ok(((**old).clone(), false));
            }
            if dry {
                return Ok((new, false));
            }
            let stored = s.put(&info.storage_key(), new);
            if info.storage_key() == CRD_KEY {
                shared.registry.register_crd(&stored);
            }
            Ok(((*stored).clone(), true))
        }
        None => {
            if t.is_status() {
                return Err(t.not_found());
            }
            initial_status(info, &mut new);
            meta::stamp_create(&mut new, &info.api_version(), &info.kind, info.tracks_generation());
            create_defaults(shared, s, info, &mut new);
            crate::defaults::apply(info, &mut new);
            if !managed_done {
                let ctx = WriteCtx {
                    manager,
                    api_version: &info.api_version(),
                    subresource: "",
                    root: info.root_node(),
                    scope,
                };
                managed::record_update(None, &mut new, &ctx);
            }
            admit(shared, info, None, &mut new, false)?;
            if dry {
                return Ok((new, false));
            }
            let stored = s.put(&info.storage_key(), new);
            if info.storage_key() == CRD_KEY {
                shared.registry.register_crd(&stored);
            }
            Ok(((*stored).clone(), true))
        }
    }
}

/// Wakes the garbage collector when a written object may need it: it is being deleted, or one
/// of its owners does not exist. Other writes skip the O(objects) collector pass.
pub fn wake_gc_for(shared: &Shared, s: &Inner, obj: &Value) {
    let meta = &obj["metadata"];
    let owner_missing = meta["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["uid"].as_str().is_none_or(|uid| !s.has_uid(uid)));
    if meta.get("deletionTimestamp").is_some() || owner_missing {
        shared.gc_wake.notify_one();
    }
}

pub fn create(shared: &Shared, t: &Target, q: &Query, body: &[u8], content_type: &str, ua: &str) -> ApiResult<Reply> {
    let mut obj = parse_body(body, content_type)?;
    let mut t = t.clone();
    align_identity(&t, &mut obj, false)?;
    check_strict(&t, q, &obj)?;
    let manager = manager_of(q, ua, "");
    if obj["metadata"].get("name").and_then(Value::as_str).is_none_or(str::is_empty)
        && let Some(prefix) = obj["metadata"].get("generateName").and_then(Value::as_str)
    {
        obj["metadata"]["name"] = json!(format!("{prefix}{}", meta::name_suffix()));
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    t.name = Some(name.clone());
    let mut s = shared.store.lock();
    check_namespace(&s, &t, true)?;
    if s.get(&t.info.storage_key(), &t.key()).is_some() {
        return Err(ApiError::already_exists(&t.err_target()));
    }
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    let (stored, changed) = finish_write(shared, &mut s, &t, None, obj, false, &manager, dry_run(q))?;
    drop(s);
    Ok(Reply { code: 201, body: present(&stored, &t.info), changed })
}

pub fn check_preconditions(t: &Target, current: &Value, wanted: &Value) -> ApiResult<()> {
    if let Some(rv) = wanted["metadata"].get("resourceVersion").and_then(Value::as_str).filter(|r| !r.is_empty())
        && current["metadata"]["resourceVersion"].as_str() != Some(rv)
    {
        return Err(ApiError::conflict(
            &t.err_target(),
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    if let Some(uid) = wanted["metadata"].get("uid").and_then(Value::as_str).filter(|u| !u.is_empty())
        && current["metadata"]["uid"].as_str() != Some(uid)
    {
        return Err(ApiError::conflict(
            &t.err_target(),
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                current["metadata"]["uid"].as_str().unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

pub fn update(shared: &Shared, t: &Target, q: &Query, body: &[u8], content_type: &str, ua: &str) -> ApiResult<Reply> {
    let mut obj = parse_body(body, content_type)?;
    align_identity(t, &mut obj, true)?;
    check_strict(t, q, &obj)?;
    let manager = manager_of(q, ua, "");
    let mut s = shared.store.lock();
    check_namespace(&s, t, false)?;
    let old = s.get(&t.info.storage_key(), &t.key()).ok_or_else(|| t.not_found())?;
    check_preconditions(t, &old, &obj)?;
    let (stored, changed) = finish_write(shared, &mut s, t, Some(&old), obj, false, &manager, dry_run(q))?;
    drop(s);
    Ok(Reply { code: 200, body: present(&stored, &t.info), changed })
}

pub fn patch(shared: &Shared, t: &Target, q: &Query, body: &[u8], content_type: &str, ua: &str) -> ApiResult<Reply> {
    let Some(type_) = PatchType::from_content_type(content_type) else {
        return Err(ApiError::unsupported_media(format!(
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, \
             application/strategic-merge-patch+json (got {content_type:?})"
        )));
    };
    if type_ == PatchType::Apply {
        return apply(shared, t, q, body, content_type);
    }
    let manager = manager_of(q, ua, "");
    let mut s = shared.store.lock();
    check_namespace(&s, t, false)?;
    let old = s.get(&t.info.storage_key(), &t.key()).ok_or_else(|| t.not_found())?;
    let mut patched = patch::apply_patch(&old, body, type_, t.info.root_node())?;
    if !patched.is_object() {
        return Err(ApiError::bad_request("the patch did not produce an object"));
    }
    // A resourceVersion in the patch is a precondition; otherwise the patch applies to the
    // current version.
    let wanted_rv = patched["metadata"]["resourceVersion"].clone();
    if wanted_rv != old["metadata"]["resourceVersion"] {
        check_preconditions(t, &old, &patched)?;
    }
    align_identity(t, &mut patched, true)?;
    check_strict(t, q, &patched)?;
    let (stored, changed) = finish_write(shared, &mut s, t, Some(&old), patched, false, &manager, dry_run(q))?;
    drop(s);
    Ok(Reply { code: 200, body: present(&stored, &t.info), changed })
}

pub fn apply(shared: &Shared, t: &Target, q: &Query, body: &[u8], content_type: &str) -> ApiResult<Reply> {
    let manager = q
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .cloned()
        .ok_or_else(|| ApiError::bad_request("PATCH requests with apply content type require fieldManager"))?;
    let force = q.get("force").is_some_and(|f| f == "true");
    let mut applied = parse_body(body, content_type)?;
    if applied.get("apiVersion").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(ApiError::bad_request("apiVersion must be set in an apply configuration"));
    }
    if applied.get("kind").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(ApiError::bad_request("kind must be set in an apply configuration"));
    }
    align_identity(t, &mut applied, true)?;
    check_strict(t, q, &applied)?;
    let info = &t.info;
    let scope = scope_for(t);
    let ctx = WriteCtx {
        manager: &manager,
        api_version: &info.api_version(),
        subresource: t.subresource.as_deref().unwrap_or_default(),
        root: info.root_node(),
        scope,
    };
    let mut s = shared.store.lock();
    check_namespace(&s, t, true)?;
    let old = s.get(&info.storage_key(), &t.key());
    if let Some(o) = &old {
        check_preconditions(t, o, &applied)?;
    } else if !t.is_status() {
        crate::auth::authorize_create_by_apply(shared, &s, t)?;
    }
    let mut merged = managed::apply(old.as_deref(), &applied, force, &ctx)?;
    if old.is_none() {
        // The apply configuration's identity becomes the new object's.
        merged["metadata"]["name"] = applied["metadata"]["name"].clone();
        if info.namespaced {
            merged["metadata"]["namespace"] = applied["metadata"]["namespace"].clone();
        }
    }
    let (stored, changed) = finish_write(shared, &mut s, t, old.as_ref(), merged, true, &manager, dry_run(q))?;
    drop(s);
    let code = if old.is_none() && changed { 201 } else { 200 };
    Ok(Reply { code, body: present(&stored, info), changed })
}

/// Stores an object as given, bypassing validation (for tests of bad cluster state).
pub fn insert_raw(shared: &Shared, obj: Value) -> Result<(), String> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let info = shared
        .registry
        .by_kind(api_version, kind)
        .ok_or_else(|| format!("no served resource for apiVersion {api_version:?} kind {kind:?}"))?;
    let mut obj = obj;
    if obj["metadata"].get("uid").is_none() {
        obj["metadata"]["uid"] = json!(meta::new_uid());
    }
    if obj["metadata"].get("creationTimestamp").is_none() {
        obj["metadata"]["creationTimestamp"] = json!(meta::now());
    }
    let mut s = shared.store.lock();
    let stored = s.put(&info.storage_key(), obj);
    wake_gc_for(shared, &s, &stored);
    drop(s);
    Ok(())
}
