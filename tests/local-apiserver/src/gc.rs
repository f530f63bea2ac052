//! The controllers that finish deletions, run in the background like kube-controller-manager's:
//! - garbage collection by ownerReferences: a dependent whose owners (by uid) are all gone is
//!   deleted (background propagation), whatever the owner's scope;
//! - `foregroundDeletion`: dependents go first, then the owner;
//! - `orphan`: dependents lose their reference to the owner, then the owner goes;
//! - namespace deletion: every object in a terminating namespace is deleted, then the namespace;
//! - CRD deletion: every custom resource of the CRD is removed, then the CRD.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::deletion::{DeleteOpts, delete_locked, remove_object};
use crate::handlers::{CRD_CLEANUP_FINALIZER, CRD_KEY, NAMESPACE_KEY};
use crate::server::Shared;
use crate::store::{Inner, key_of, owner_uids};

pub async fn run(shared: Arc<Shared>) {
    loop {
        // Writes that can need collection wake the loop (Notify keeps the permit, so no wake-up
        // is lost); a slow poll covers raw inserts.
        let _ = tokio::time::timeout(Duration::from_secs(2), shared.gc_wake.notified()).await;
        // Passes until nothing changes, so cascades (owner -> dependent -> its dependents)
        // finish promptly.
        for _ in 0..64 {
            let mut s = shared.store.lock();
            if !pass(&shared, &mut s) {
                break;
            }
        }
    }
}

fn background() -> DeleteOpts {
    DeleteOpts { propagation: "Background".into(), precondition_rv: None, precondition_uid: None, dry_run: false }
}

/// Whether the object has owners and none of them is stored: garbage.
fn orphaned(s: &Inner, obj: &Value) -> bool {
    let owners = owner_uids(obj);
    !owners.is_empty() && owners.iter().all(|u| !s.has_uid(u))
}

fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj["metadata"]["finalizers"].as_array().is_some_and(|fs| fs.iter().any(|x| x == f))
}

fn without_finalizer(obj: &Value, f: &str) -> Value {
    let mut o = obj.clone();
    if let Some(fs) = o["metadata"]["finalizers"].as_array_mut() {
        fs.retain(|x| x != f);
    }
    o
}

/// Stores `new` as an update by the controller, removing the object when it is terminating and
/// has no finalizers left.
fn controller_update(shared: &Shared, s: &mut Inner, storage_key: &str, new: Value) {
    let terminating = new["metadata"].get("deletionTimestamp").is_some();
    let no_fins = new["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty);
    let ns_held = storage_key == NAMESPACE_KEY && new["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
    if terminating && no_fins && !ns_held {
        remove_object(shared, s, storage_key, &key_of(&new));
    } else {
        s.put(storage_key, new);
    }
}

/// One pass; returns whether anything changed. It looks only at the objects the store names as
/// candidates (terminating, or whose owners may be gone since their last write), as
/// kube-controller-manager's garbage collector works from its dependency graph: the store holds
/// tens of thousands of other objects in the scale bench, and a pass runs under its lock.
fn pass(shared: &Shared, s: &mut Inner) -> bool {
    let mut changed = false;
    let candidates: Vec<_> = s
        .take_gc_candidates()
        .into_iter()
        .filter(|(_, o)| o["metadata"].get("deletionTimestamp").is_some() || orphaned(s, o))
        .collect();

    for (storage, obj) in &candidates {
        let uid = obj["metadata"]["uid"].as_str().unwrap_or_default();
        let terminating = obj["metadata"].get("deletionTimestamp").is_some();
        let dependents = |s: &Inner| s.dependents(None, uid);
        if terminating && has_finalizer(obj, "foregroundDeletion") {
            let mut any = false;
            for (dk, d) in dependents(s) {
                any = true;
                if d["metadata"].get("deletionTimestamp").is_none()
                    && let Some(info) = shared.registry.any_version(&dk)
                {
                    changed |= delete_locked(
                        shared,
                        s,
                        &info,
                        &key_of(&d),
                        &DeleteOpts { propagation: "Foreground".into(), ..background() },
                    )
                    .map(|r| r.2)
                    .unwrap_or(false);
                }
            }
            if !any {
                controller_update(shared, s, storage, without_finalizer(obj, "foregroundDeletion"));
                changed = true;
            }
            continue;
        }
        if terminating && has_finalizer(obj, "orphan") {
            for (dk, d) in dependents(s) {
                let mut nd = (*d).clone();
                if let Some(refs) = nd["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"].as_str() != Some(uid));
                }
                s.put(&dk, nd);
            }
            controller_update(shared, s, storage, without_finalizer(obj, "orphan"));
            changed = true;
            continue;
        }
        if terminating && storage == CRD_KEY && has_finalizer(obj, CRD_CLEANUP_FINALIZER) {
            let group = obj["spec"]["group"].as_str().unwrap_or_default();
            let plural = obj["spec"]["names"]["plural"].as_str().unwrap_or_default();
            let resource = format!("{group}/{plural}");
            // As apiextensions' finalizer: delete every custom resource, and keep the CRD
            // (Terminating) until they are gone, their own finalizers included.
            let remaining = s.list(&resource, None);
            if !remaining.is_empty() {
                if let Some(info) = shared.registry.any_version(&resource) {
                    for cr in remaining.iter().filter(|o| o["metadata"].get("deletionTimestamp").is_none()) {
                        changed |=
                            delete_locked(shared, s, &info, &key_of(cr), &background()).map(|r| r.2).unwrap_or(false);
                    }
                }
                continue;
            }
            s.drop_resource(&resource);
            if let Some(name) = obj["metadata"]["name"].as_str() {
                shared.registry.unregister_crd(name);
            }
            controller_update(shared, s, storage, without_finalizer(obj, CRD_CLEANUP_FINALIZER));
            changed = true;
            continue;
        }
        if terminating && storage == NAMESPACE_KEY {
            let ns = obj["metadata"]["name"].as_str().unwrap_or_default();
            let contents = s.select(|k, o| k != NAMESPACE_KEY && o["metadata"]["namespace"].as_str() == Some(ns));
            let remaining = contents.len();
            for (k, o) in &contents {
                if o["metadata"].get("deletionTimestamp").is_none()
                    && let Some(info) = shared.registry.any_version(k)
                {
                    changed |= delete_locked(shared, s, &info, &key_of(o), &background()).map(|r| r.2).unwrap_or(false);
                }
            }
            if remaining == 0 {
                let mut n = (**obj).clone();
                n["spec"]["finalizers"] = json!([]);
                controller_update(shared, s, storage, n);
                changed = true;
            }
            continue;
        }
        if !terminating && orphaned(s, obj) {
            let deleted = shared
                .registry
                .any_version(storage)
                .and_then(|info| delete_locked(shared, s, &info, &key_of(obj), &background()).map(|r| r.2).ok());
            match deleted {
                Some(c) => changed |= c,
                // Not deletable now: looked at again on the next pass that wakes.
                None => s.suspect(storage, key_of(obj)),
            }
        }
    }
    changed
}
