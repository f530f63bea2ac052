//! Applying children: who owns what already exists, server-side apply of what changed (and only
//! that), recreation where a field is immutable, and pruning of what fell out of the spec.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Client, Resource};

use super::caches::{Cached, ChildCaches, ChildKind};
use super::error::{Error, Result};
use crate::crd::HardenedCsiDriver;
use crate::render::{Child, LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGER, VolumeSnapshotClass};
use crate::runtime::metrics::Metrics;

/// What the operator last applied to one child, to tell an unchanged child from drift.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    hash: u64,
    /// resourceVersion (or, for workloads whose status moves, generation) right after the apply.
    version: String,
}

pub type AppliedLog = std::sync::Mutex<HashMap<String, Applied>>;

/// The generation a workload had right after our last apply of it (key as `Child::key`): a
/// cached copy older than that has not caught up with the apply yet.
pub fn applied_generation(log: &AppliedLog, key: &str) -> Option<i64> {
    let l = log.lock().ok()?;
    l.get(key)?.version.strip_prefix('g')?.parse().ok()
}

fn hash_of(child: &Child) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // Serialising our own typed objects cannot fail; a failure would only force a re-apply.
    serde_json::to_string(&child.object).unwrap_or_default().hash(&mut h);
    h.finish()
}

fn version_of(meta: &ObjectMeta, cached: Cached) -> String {
    if cached != Cached::Metadata {
        meta.generation.map(|g| format!("g{g}")).unwrap_or_default()
    } else {
        meta.resource_version.clone().unwrap_or_default()
    }
}

fn api_for(client: &Client, kind: &ChildKind, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) if kind.namespaced => Api::namespaced_with(client.clone(), ns, &kind.resource),
        _ => Api::all_with(client.clone(), &kind.resource),
    }
}

/// Is this existing object one of ours: owned by the HardenedCsiDriver with `uid`, or carrying
/// our labels for `instance` (children of an earlier incarnation are ours to take back).
pub fn is_ours(meta: &ObjectMeta, instance: &str, uid: Option<&str>) -> bool {
    let owned = meta
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == HardenedCsiDriver::kind(&()) && Some(o.uid.as_str()) == uid);
    let labels = meta.labels.as_ref();
    let labelled = labels.and_then(|l| l.get(LABEL_MANAGED_BY)).is_some_and(|v| v == MANAGER)
        && labels.and_then(|l| l.get(LABEL_INSTANCE)).is_some_and(|v| v == instance);
    owned || labelled
}

/// Who manages an object we did not create, and how to move it to the operator.
pub fn describe_foreign(kind: &str, name: &str, meta: &ObjectMeta) -> String {
    let labels = meta.labels.clone().unwrap_or_default();
    let annotations = meta.annotations.clone().unwrap_or_default();
    let managers: Vec<String> = meta.managed_fields.iter().flatten().filter_map(|m| m.manager.clone()).collect();
    let managed_by = labels.get(LABEL_MANAGED_BY).map(String::as_str).unwrap_or_default();
    let (owner, how) = if managed_by.eq_ignore_ascii_case("eks") || managers.iter().any(|m| m == "eks") {
        (
            "the EKS managed add-on aws-ebs-csi-driver".to_string(),
            "remove the add-on but keep its objects (aws eks delete-addon --addon-name aws-ebs-csi-driver \
                --preserve), then set spec.adopt: true"
                .to_string(),
        )
    } else if managed_by == "Helm" || annotations.contains_key("meta.helm.sh/release-name") {
        let release = annotations.get("meta.helm.sh/release-name").cloned().unwrap_or_else(|| "?".into());
        let ns = annotations.get("meta.helm.sh/release-namespace").cloned().unwrap_or_else(|| "?".into());
        (
            format!("Helm release {release} (namespace {ns})"),
            format!(
                "set spec.adopt: true to take the objects over, then delete the release record without uninstalling \
                    (kubectl delete secret -n {ns} -l owner=helm,name={release})"
            ),
        )
    } else if labels.get(LABEL_MANAGED_BY).is_some_and(|v| v == MANAGER) {
        let other = labels.get(LABEL_INSTANCE).cloned().unwrap_or_default();
        (format!("HardenedCsiDriver {other:?}"), format!("delete HardenedCsiDriver {other:?} first"))
    } else {
        let who = managers.first().cloned().unwrap_or_else(|| "an unknown client".into());
        (who, "set spec.adopt: true to take it over, or delete it".to_string())
    };
    format!("{kind}/{name} is managed by {owner}: {how}.")
}

/// Children that exist but are not ours. Cached children cost nothing; only children missing
/// from our label-filtered caches are looked up, metadata only.
pub async fn foreign(
    client: &Client,
    caches: &ChildCaches,
    children: &[Child],
    instance: &str,
    uid: Option<&str>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for c in children {
        let ns = c.namespace();
        let meta = match caches.meta(c.kind(), ns.as_deref(), &c.name()) {
            Some(m) => Some(m),
            None => {
                let Some((kind, _)) = caches.by_kind.get(c.kind()) else { continue };
                let api = api_for(client, kind, ns.as_deref());
                api.get_metadata_opt(&c.name())
                    .await
                    .map_err(|source| Error::Read { what: c.key(), source })?
                    .map(|m| m.metadata)
            }
        };
        if let Some(meta) = meta
            && !is_ours(&meta, instance, uid)
        {
            out.push(describe_foreign(c.kind(), &c.name(), &meta));
        }
    }
    Ok(out)
}

/// Server-side applies every child that changed since our last apply (or drifted), and nothing
/// else. Returns the errors of children that could not be applied.
pub async fn apply(
    client: &Client,
    caches: &ChildCaches,
    log: &AppliedLog,
    metrics: &Metrics,
    children: &[Child],
) -> Vec<Error> {
    let mut errors = Vec::new();
    for c in children {
        let Some((kind, _)) = caches.by_kind.get(c.kind()) else { continue };
        let key = c.key();
        let hash = hash_of(c);
        let cached = caches.meta(c.kind(), c.namespace().as_deref(), &c.name());
        let last = log.lock().map(|l| l.get(&key).cloned()).unwrap_or(None);
        if let (Some(meta), Some(last)) = (&cached, &last)
            && last.hash == hash
            && last.version == version_of(meta, kind.cached)
        {
            continue;
        }
        match apply_one(client, kind, c).await {
            Ok(applied) => {
                metrics.count_apply(c.kind());
                if let Ok(mut l) = log.lock() {
                    l.insert(key, Applied { hash, version: version_of(&applied.metadata, kind.cached) });
                }
            }
            Err(e) => errors.push(e),
        }
    }
    errors
}

/// StorageClasses and VolumeSnapshotClasses: parameters are immutable, so a change recreates them.
fn is_class(kind: &str) -> bool {
    kind == StorageClass::kind(&()) || kind == VolumeSnapshotClass::kind(&())
}

async fn apply_one(client: &Client, kind: &ChildKind, c: &Child) -> Result<DynamicObject> {
    let api = api_for(client, kind, c.namespace().as_deref());
    let params = PatchParams::apply(MANAGER).force();
    match api.patch(&c.name(), &params, &Patch::Apply(&c.object)).await {
        Ok(o) => Ok(o),
        // StorageClass and VolumeSnapshotClass parameters are immutable. Deleting a class does
        // not touch volumes or snapshots made from it, so recreate it.
        Err(kube::Error::Api(s)) if s.code == 422 && is_class(c.kind()) => {
            api.delete(&c.name(), &DeleteParams::default())
                .await
                .map_err(|source| Error::Delete { child: c.key(), source })?;
            api.patch(&c.name(), &params, &Patch::Apply(&c.object))
                .await
                .map_err(|source| Error::Apply { child: c.key(), source })
        }
        Err(source) => Err(Error::Apply { child: c.key(), source }),
    }
}

/// Deletes our children of `instance` that are not in `keep` (by `Child::key`). Selected from the
/// label-filtered caches and checked for our ownership again, never by name alone.
pub async fn prune(
    client: &Client,
    caches: &ChildCaches,
    instance: &str,
    uid: Option<&str>,
    keep: &BTreeSet<String>,
) -> Vec<Error> {
    let mut errors = Vec::new();
    for (kind_name, (kind, store)) in &caches.by_kind {
        for meta in store.metas() {
            let name = meta.name.clone().unwrap_or_default();
            let key = match &meta.namespace {
                Some(ns) => format!("{kind_name}/{ns}/{name}"),
                None => format!("{kind_name}/{name}"),
            };
            if keep.contains(&key) || !is_ours(&meta, instance, uid) || meta.deletion_timestamp.is_some() {
                continue;
            }
            let api = api_for(client, kind, meta.namespace.as_deref());
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => tracing::info!(child = %key, "pruned"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => errors.push(Error::Delete { child: key, source }),
            }
        }
    }
    errors
}

/// Whether any cached child belongs to `instance`.
pub fn owns_any(caches: &ChildCaches, instance: &str, uid: Option<&str>) -> bool {
    caches.by_kind.values().any(|(_, store)| store.metas().iter().any(|m| is_ours(m, instance, uid)))
}

/// Deletes every child of `instance` (the finalizer's cleanup).
pub async fn delete_all(client: &Client, caches: &ChildCaches, instance: &str, uid: Option<&str>) -> Vec<Error> {
    prune(client, caches, instance, uid, &BTreeSet::new()).await
}
