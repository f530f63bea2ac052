//! Applying children: who owns what already exists, server-side apply of what changed (and only
//! that), recreation where a field is immutable, and pruning of what fell out of the spec.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{CSIDriver, StorageClass, VolumeAttributesClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};

use super::caches::{Cached, ChildCaches, ChildKind};
use super::error::{ApiMessage, Error, Result};
use crate::crd::HardenedCsiDriver;
use crate::render::{ANNOTATION_OWNER_UID, Child, LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGER, VolumeSnapshotClass};
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

/// Is this existing object one of ours: recorded as belonging to the HardenedCsiDriver with
/// `uid` (our owner-uid annotation, or an ownerReference as earlier versions set on every child),
/// or carrying our labels for `instance` (children of an earlier incarnation are ours to take back).
pub fn is_ours(meta: &ObjectMeta, instance: &str, uid: Option<&str>) -> bool {
    let referenced = meta
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == HardenedCsiDriver::kind(&()) && Some(o.uid.as_str()) == uid);
    let annotated =
        uid.is_some() && meta.annotations.as_ref().and_then(|a| a.get(ANNOTATION_OWNER_UID)).map(String::as_str) == uid;
    let owned = referenced || annotated;
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
        let who = match managers.first() {
            Some(m) => format!("field manager {m}"),
            None => "an unknown client (no field manager recorded)".into(),
        };
        (
            who,
            format!(
                "add {{kind: {kind}, name: {name}}} to spec.adoptObjects (or set spec.adopt: true) to take it over, or \
                delete it"
            ),
        )
    };
    format!("{kind}/{name} is managed by {owner}: {how}.")
}

/// An existing object the operator would render but did not create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Foreign {
    pub kind: String,
    pub name: String,
    /// As `Child::key`.
    pub key: String,
    /// Who manages it and how to hand it over.
    pub message: String,
}

impl Foreign {
    /// A class (StorageClass, VolumeSnapshotClass): someone's own class of the same name blocks
    /// only that class, the driver runs without it. Any other object is the driver's own, and a
    /// foreign one means another installation runs: the driver is blocked.
    pub fn is_class(&self) -> bool {
        self.kind == StorageClass::kind(&()) || self.kind == VolumeSnapshotClass::kind(&())
    }
}

/// What the look for existing objects found: the children that exist but are not ours, and the
/// keys of those that do not exist at all (so applying them needs no read).
#[derive(Debug, Default)]
pub struct Survey {
    pub foreign: Vec<Foreign>,
    pub absent: BTreeSet<String>,
}

/// Looks for existing objects in the way of the children. Cached objects cost nothing, nor do
/// names missing from a whole-kind cache; only children missing from a label-filtered cache are
/// looked up, metadata only, concurrently.
pub async fn survey(
    client: &Client,
    caches: &ChildCaches,
    children: &[Child],
    instance: &str,
    uid: Option<&str>,
) -> Result<Survey> {
    let metas = futures::future::join_all(children.iter().map(|c| async move {
        let ns = c.namespace();
        match caches.meta(c.kind(), ns.as_deref(), &c.name()) {
            Some(m) => Ok(Some(Some(m))),
            None => {
                let Some((kind, store)) = caches.by_kind.get(c.kind()) else { return Ok(None) };
                if kind.whole && store.synced() {
                    // The synced cache holds every object of the kind: this one does not exist.
                    return Ok(Some(None));
                }
                let api = api_for(client, kind, ns.as_deref());
                api.get_metadata_opt(&c.name())
                    .await
                    .map(|m| Some(m.map(|m| m.metadata)))
                    .map_err(|source| Error::Read { what: c.key(), source })
            }
        }
    }))
    .await;
    let mut out = Survey::default();
    for (c, meta) in children.iter().zip(metas) {
        match meta? {
            Some(Some(meta)) if !is_ours(&meta, instance, uid) => out.foreign.push(Foreign {
                kind: c.kind().to_string(),
                name: c.name(),
                key: c.key(),
                message: describe_foreign(c.kind(), &c.name(), &meta),
            }),
            Some(None) => {
                out.absent.insert(c.key());
            }
            _ => {}
        }
    }
    Ok(out)
}

/// When a child may be applied: roles before the bindings that grant them (the API server
/// checks a binding against the role it names), and ServiceAccounts, roles and bindings before
/// the workloads whose pods run with them. Children of one phase are applied concurrently.
fn phase(kind: &str) -> u8 {
    match kind {
        "ClusterRoleBinding" | "RoleBinding" => 1,
        "Deployment" | "DaemonSet" => 2,
        _ => 0,
    }
}

/// Server-side applies every child that changed since our last apply (or drifted), and nothing
/// else, phase by phase ([`phase`]), concurrently within a phase; the children in `adopting`
/// (keys, as `Child::key`) are objects of another installation the spec takes over, those in
/// `absent` do not exist. Returns the errors of children that could not be applied.
pub async fn apply(
    client: &Client,
    caches: &ChildCaches,
    log: &AppliedLog,
    metrics: &Metrics,
    children: &[Child],
    adopting: &BTreeSet<String>,
    absent: &BTreeSet<String>,
) -> Vec<Error> {
    let mut errors = Vec::new();
    for p in 0..=2 {
        let due = children.iter().filter(|c| phase(c.kind()) == p).filter_map(|c| {
            let (kind, _) = caches.by_kind.get(c.kind())?;
            let key = c.key();
            let hash = hash_of(c);
            let cached = caches.meta(c.kind(), c.namespace().as_deref(), &c.name());
            let last = log.lock().map(|l| l.get(&key).cloned()).unwrap_or(None);
            if let (Some(meta), Some(last)) = (&cached, &last)
                && last.hash == hash
                && last.version == version_of(meta, kind.cached)
            {
                return None;
            }
            Some(async move {
                let (adopt, gone) = (adopting.contains(&key), absent.contains(&key));
                let applied = apply_child(client, caches, kind, c, adopt, gone).await?;
                metrics.count_apply(c.kind());
                if let Ok(mut l) = log.lock() {
                    l.insert(key, Applied { hash, version: version_of(&applied.metadata, kind.cached) });
                }
                Ok::<(), Error>(())
            })
        });
        errors.extend(futures::future::join_all(due).await.into_iter().filter_map(Result::err));
    }
    errors
}

/// The fields of a kind that the API server refuses to update, as its refusal names them. A change
/// to one of them is the only reason the operator deletes and recreates an object: a class
/// (`ValidateStorageClassUpdate`, a VolumeAttributesClass's `ValidateVolumeAttributesClassUpdate`)
/// or the CSIDriver (`ValidateCSIDriverUpdate`: a CSIDriver from before `fsGroupPolicy`, upstream's
/// `useOldCSIDriver`, or one an earlier driver version shaped differently). Empty for every other
/// kind: a workload is never recreated, nor a VolumeSnapshotClass (external-snapshotter v8's CRD
/// lets every field of it change in place).
fn immutable_fields(kind: &str) -> &'static [&'static str] {
    if kind == StorageClass::kind(&()) {
        &["parameters", "provisioner", "reclaimPolicy", "volumeBindingMode"]
    } else if kind == VolumeAttributesClass::kind(&()) {
        &["parameters", "driverName"]
    } else if kind == CSIDriver::kind(&()) {
        &["spec.attachRequired", "spec.fsGroupPolicy", "spec.volumeLifecycleModes"]
    } else {
        &[]
    }
}

/// Whether a refusal is only about immutable fields of `kind`. kube-apiserver words them
/// `parameters: Forbidden: updates to parameters are forbidden.` (likewise provisioner and
/// reclaimPolicy), `volumeBindingMode: Invalid value: "Immediate": field is immutable` and
/// `spec.fsGroupPolicy: Invalid value: "File": field is immutable`, one cause per field; a CRD's
/// CEL transition rule names its field too. Any other cause (or none) means the change is wrong in
/// some other way, and deleting the object would not help.
pub fn only_immutable_fields(kind: &str, status: &kube::core::Status) -> bool {
    let fields = immutable_fields(kind);
    let causes = status.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or_default();
    status.code == 422
        && !causes.is_empty()
        && causes.iter().all(|c| {
            let field = c.field.trim_start_matches('.');
            let message = c.message.to_ascii_lowercase();
            fields.contains(&field) && (message.contains("forbidden") || message.contains("immutable"))
        })
}

async fn apply_one(client: &Client, kind: &ChildKind, c: &Child) -> Result<DynamicObject> {
    let api = api_for(client, kind, c.namespace().as_deref());
    let params = PatchParams::apply(MANAGER).force();
    match api.patch(&c.name(), &params, &Patch::Apply(&c.object)).await {
        Ok(o) => Ok(o),
        Err(kube::Error::Api(s)) if only_immutable_fields(c.kind(), &s) => {
            if c.kind() == VolumeAttributesClass::kind(&()) {
                let users = ClassUsers::read(client).await?;
                let users = users.of(&c.name());
                if !users.is_empty() {
                    return Err(Error::ClassInUse { child: c.key(), users });
                }
            }
            recreate(&api, c, &params, &s).await
        }
        Err(source) => Err(Error::Apply { child: c.key(), source }),
    }
}

/// Deletes and recreates an object whose immutable fields changed (a class, the CSIDriver). Only
/// reached for our own or an adopted object: the ownership check runs before any apply. Deleting
/// a class does not touch the volumes or snapshots made from it, and deleting the CSIDriver does
/// not unmount anything: kubelet and the attacher keep serving mounted volumes, and the new object
/// is there a request later (kubernetes-sigs/aws-ebs-csi-driver#1390). The object is read first
/// and deleted with its uid as a precondition (an object someone replaced meanwhile is left
/// alone), so what is put back if the create fails is exactly what was there.
async fn recreate(
    api: &Api<DynamicObject>,
    c: &Child,
    params: &PatchParams,
    why: &kube::core::Status,
) -> Result<DynamicObject> {
    let old = api.get(&c.name()).await.map_err(|source| Error::Read { what: c.key(), source })?;
    let delete = DeleteParams {
        preconditions: Some(kube::api::Preconditions { uid: old.metadata.uid.clone(), resource_version: None }),
        ..DeleteParams::default()
    };
    api.delete(&c.name(), &delete).await.map_err(|source| Error::Delete { child: c.key(), source })?;
    tracing::info!(child = %c.key(), reason = %why.message, "immutable fields changed; recreating");
    let source = match api.patch(&c.name(), params, &Patch::Apply(&c.object)).await {
        Ok(o) => return Ok(o),
        Err(source) => source,
    };
    // Never leave the object deleted: put back what was read before the delete.
    let mut back = old;
    back.metadata = ObjectMeta {
        name: back.metadata.name,
        labels: back.metadata.labels,
        annotations: back.metadata.annotations,
        owner_references: back.metadata.owner_references,
        ..ObjectMeta::default()
    };
    // By server-side apply to its name, as every write of a child: RBAC can limit that by name (a
    // POST create names no object, so a grant by resourceNames never allows it).
    let restore = api.patch(&c.name(), params, &Patch::Apply(&back)).await;
    if let Err(e) = &restore {
        tracing::error!(child = %c.key(), error = %ApiMessage(e), "could not put the old object back");
    }
    Err(Error::Recreate { child: c.key(), source, restored: restore.err().map(|e| ApiMessage(&e).to_string()) })
}

/// Which claims and volumes name each VolumeAttributesClass: a claim's
/// `spec.volumeAttributesClassName`, the class its volume has (`status.currentVolumeAttributesClassName`)
/// or is being modified to (`status.modifyVolumeStatus.targetVolumeAttributesClassName`), and a
/// PersistentVolume's `spec.volumeAttributesClassName`. One paged read of each kind.
pub struct ClassUsers(Vec<(String, String)>);

impl ClassUsers {
    pub async fn read(client: &Client) -> Result<Self> {
        let mut out = Vec::new();
        let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
        for pvc in list_all(&claims, "PersistentVolumeClaims").await? {
            let who = format!(
                "PersistentVolumeClaim/{}/{}",
                pvc.metadata.namespace.clone().unwrap_or_default(),
                pvc.metadata.name.clone().unwrap_or_default()
            );
            let spec = pvc.spec.as_ref().and_then(|s| s.volume_attributes_class_name.clone());
            let status = pvc.status.as_ref();
            let current = status.and_then(|s| s.current_volume_attributes_class_name.clone());
            let target = status
                .and_then(|s| s.modify_volume_status.as_ref())
                .and_then(|m| m.target_volume_attributes_class_name.clone());
            let names: BTreeSet<String> = [spec, current, target].into_iter().flatten().collect();
            out.extend(names.into_iter().map(|n| (n, who.clone())));
        }
        let volumes: Api<PersistentVolume> = Api::all(client.clone());
        for pv in list_all(&volumes, "PersistentVolumes").await? {
            if let Some(n) = pv.spec.as_ref().and_then(|s| s.volume_attributes_class_name.clone()) {
                out.push((n, format!("PersistentVolume/{}", pv.metadata.name.clone().unwrap_or_default())));
            }
        }
        Ok(Self(out))
    }

    /// Who uses class `name`, the first five and how many more.
    pub fn of(&self, name: &str) -> Vec<String> {
        let all: Vec<&String> = self.0.iter().filter(|(n, _)| n == name).map(|(_, w)| w).collect();
        let mut shown: Vec<String> = all.iter().take(5).map(|w| w.to_string()).collect();
        if all.len() > 5 {
            shown.push(format!("and {} more", all.len() - 5));
        }
        shown
    }
}

async fn list_all<K>(api: &Api<K>, what: &str) -> Result<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut lp = kube::api::ListParams::default().limit(500);
    loop {
        let page = api.list(&lp).await.map_err(|source| Error::Read { what: what.to_string(), source })?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// What pruning left: errors, and VolumeAttributesClasses kept because something references them
/// (each `name (used by ...)`).
#[derive(Debug, Default)]
pub struct Pruned {
    pub errors: Vec<Error>,
    pub kept_classes: Vec<String>,
}

/// The key of a cached or listed child, as `Child::key` spells it.
fn child_key(kind_name: &str, meta: &ObjectMeta) -> String {
    let name = meta.name.as_deref().unwrap_or_default();
    match &meta.namespace {
        Some(ns) => format!("{kind_name}/{ns}/{name}"),
        None => format!("{kind_name}/{name}"),
    }
}

/// Deletes one child in the background (its dependents go with it). One already gone (404) or
/// already being deleted is not an error; `done` is what the log says when it went.
async fn delete_child(
    client: &Client,
    kind_name: &str,
    kind: &ChildKind,
    meta: &ObjectMeta,
    done: &str,
) -> Option<Error> {
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    let key = child_key(kind_name, meta);
    let api = api_for(client, kind, meta.namespace.as_deref());
    match api.delete(meta.name.as_deref().unwrap_or_default(), &DeleteParams::background()).await {
        Ok(_) => {
            tracing::info!(child = %key, "{done}");
            None
        }
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(source) => Some(Error::Delete { child: key, source }),
    }
}

/// Deletes our children of `instance` that are not in `keep` (by `Child::key`). Selected from the
/// label-filtered caches and checked for our ownership again, never by name alone. A
/// VolumeAttributesClass a claim or volume still references is kept and reported: deleting it
/// would leave those claims naming a class that no longer exists.
pub async fn prune(
    client: &Client,
    caches: &ChildCaches,
    instance: &str,
    uid: Option<&str>,
    keep: &BTreeSet<String>,
) -> Pruned {
    let mut out = Pruned::default();
    let mut users: Option<ClassUsers> = None;
    for (kind_name, (kind, store)) in &caches.by_kind {
        for meta in store.metas() {
            if keep.contains(&child_key(kind_name, &meta)) || !is_ours(&meta, instance, uid) {
                continue;
            }
            if *kind_name == VolumeAttributesClass::kind(&()) && meta.deletion_timestamp.is_none() {
                if users.is_none() {
                    match ClassUsers::read(client).await {
                        Ok(u) => users = Some(u),
                        Err(e) => {
                            out.errors.push(e);
                            continue;
                        }
                    }
                }
                let name = meta.name.clone().unwrap_or_default();
                let using = users.as_ref().map(|u| u.of(&name)).unwrap_or_default();
                if !using.is_empty() {
                    out.kept_classes.push(format!("{name} (used by {})", using.join(", ")));
                    continue;
                }
            }
            out.errors.extend(delete_child(client, kind_name, kind, &meta, "pruned").await);
        }
    }
    out
}

/// Whether any cached child belongs to `instance`.
pub fn owns_any(caches: &ChildCaches, instance: &str, uid: Option<&str>) -> bool {
    caches.by_kind.values().any(|(_, store)| store.metas().iter().any(|m| is_ours(m, instance, uid)))
}

/// Deletes every child of `instance` (the finalizer's cleanup, after the guard passed). Reads each
/// kind live by label rather than from the caches: with no ownerReference on the data path, a
/// child missed here would be left running with nobody to remove it. A kind the cluster does not
/// serve (the snapshot API) has nothing to delete. Reads where the caches read: namespaced kinds
/// in the install's driver namespace (the only one the operator can write to), the CSIDriver by
/// name.
pub async fn delete_all(
    client: &Client,
    caches: &ChildCaches,
    driver_namespace: &str,
    instance: &str,
    uid: Option<&str>,
) -> Vec<Error> {
    let selector = crate::render::children_selector(instance);
    let mut errors = Vec::new();
    for (kind_name, (kind, _)) in &caches.by_kind {
        let mut lp = kube::api::ListParams::default().labels(&selector);
        if let Some(fields) = kind.field_selector() {
            lp = lp.fields(&fields);
        }
        let api: Api<DynamicObject> = if kind.namespaced {
            Api::namespaced_with(client.clone(), driver_namespace, &kind.resource)
        } else {
            Api::all_with(client.clone(), &kind.resource)
        };
        let list = match api.list_metadata(&lp).await {
            Ok(l) => l,
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(source) => {
                errors.push(Error::Read { what: format!("{kind_name}s of {instance}"), source });
                continue;
            }
        };
        for o in list.items {
            if is_ours(&o.metadata, instance, uid) {
                errors.extend(delete_child(client, kind_name, kind, &o.metadata, "deleted").await);
            }
        }
    }
    errors
}

/// Applies one child, keeping what an adopted object makes immutable: a Deployment's or
/// DaemonSet's existing `spec.selector` (the pod template then carries the selector's labels).
/// An object whose immutable fields must change (the CSIDriver, a class) is recreated by
/// `apply_one`. `absent`: this reconcile's survey found no such object, so there is no existing
/// selector to read.
async fn apply_child(
    client: &Client,
    caches: &ChildCaches,
    kind: &ChildKind,
    c: &Child,
    adopting: bool,
    absent: bool,
) -> Result<DynamicObject> {
    let kept;
    let selector = if absent { None } else { adopted_selector(client, caches, kind, c).await? };
    let c = match selector {
        Some(selector) => {
            kept = keep_selector(c, &selector);
            &kept
        }
        None => c,
    };
    if adopting {
        replace_adopted(client, kind, c).await?;
    }
    apply_one(client, kind, c).await
}

/// Takes over an object of another installation that the spec adopts, before the first apply:
/// server-side apply keeps every field another field manager owns, so the upstream chart's or the
/// add-on's own containers, env, volumes, args, tolerations (list items we do not render) would
/// survive it, and so would the add-on's IRSA annotation when the spec uses another identity. A
/// JSON merge patch of what we render replaces each list as a whole and drops that annotation;
/// labels and annotations we do not render are kept (Helm's `meta.helm.sh/release-*` name the
/// release whose leftovers are reported). A refusal for immutable fields (the CSIDriver, a class)
/// is left to the apply that follows, which recreates the object.
async fn replace_adopted(client: &Client, kind: &ChildKind, c: &Child) -> Result<()> {
    use crate::render::rbac::IRSA_ANNOTATION;
    let mut patch = serde_json::to_value(&c.object).map_err(|e| Error::Serialize { what: c.key(), source: e })?;
    if let Some(obj) = patch.as_object_mut() {
        obj.remove("apiVersion");
        obj.remove("kind");
        let mut meta = serde_json::Map::new();
        for field in ["labels", "annotations"] {
            if let Some(v) = obj.get("metadata").and_then(|m| m.get(field)) {
                meta.insert(field.into(), v.clone());
            }
        }
        if !c.object.annotations().contains_key(IRSA_ANNOTATION) {
            let annotations = meta.entry("annotations").or_insert_with(|| serde_json::json!({}));
            if let Some(a) = annotations.as_object_mut() {
                a.insert(IRSA_ANNOTATION.into(), serde_json::Value::Null);
            }
        }
        obj.insert("metadata".into(), serde_json::Value::Object(meta));
    }
    let api = api_for(client, kind, c.namespace().as_deref());
    tracing::info!(child = %c.key(), "adopting: replacing what another installation set with what the spec renders");
    match api
        .patch(
            &c.name(),
            &PatchParams { field_manager: Some(MANAGER.into()), ..PatchParams::default() },
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || only_immutable_fields(c.kind(), &s) => Ok(()),
        Err(source) => Err(Error::Apply { child: c.key(), source }),
    }
}

/// The `spec.selector` of the existing Deployment/DaemonSet `c`, when it differs from ours (an
/// object adopted from the upstream chart selects on `app.kubernetes.io/instance: <release>`).
/// Selectors are immutable, so the existing one is kept.
async fn adopted_selector(
    client: &Client,
    caches: &ChildCaches,
    kind: &ChildKind,
    c: &Child,
) -> Result<Option<serde_json::Value>> {
    if kind.cached == Cached::Metadata {
        return Ok(None);
    }
    let ns = c.namespace();
    let cached = match kind.cached {
        Cached::Deployment => caches
            .deployment(ns.as_deref().unwrap_or_default(), &c.name())
            .map(|d| serde_json::to_value(&d.spec.selector)),
        Cached::DaemonSet => caches
            .daemon_set(ns.as_deref().unwrap_or_default(), &c.name())
            .map(|d| serde_json::to_value(&d.spec.selector)),
        Cached::Metadata => None,
    };
    let existing = match cached {
        Some(v) => v.ok(),
        // Not in our caches: not created by us (yet). One read, only until we have applied it.
        None => api_for(client, kind, ns.as_deref())
            .get_opt(&c.name())
            .await
            .map_err(|source| Error::Read { what: c.key(), source })?
            .and_then(|o| o.data.pointer("/spec/selector").cloned()),
    };
    let ours = c.object.data.pointer("/spec/selector");
    Ok(existing.filter(|e| !e.is_null() && Some(e) != ours))
}

/// `c` with `selector` as its selector and the selector's `matchLabels` added to its pod
/// template labels (taking precedence over ours, so the template satisfies the selector).
fn keep_selector(c: &Child, selector: &serde_json::Value) -> Child {
    let mut out = c.clone();
    let data = &mut out.object.data;
    if let Some(spec) = data.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.insert("selector".into(), selector.clone());
    }
    if let (Some(want), Some(labels)) = (
        selector.get("matchLabels").and_then(|m| m.as_object()),
        data.pointer_mut("/spec/template/metadata").and_then(|m| m.as_object_mut()),
    ) {
        let labels = labels.entry("labels").or_insert_with(|| serde_json::json!({}));
        if let Some(labels) = labels.as_object_mut() {
            for (k, v) in want {
                labels.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// Objects of an installation we adopted from that the operator does not render (the upstream
/// chart's or the EKS add-on's Windows node DaemonSet, extra metrics Services, ...): each named
/// with what to do. Helm releases are read from the `meta.helm.sh/release-*` annotations our
/// children kept from Helm; the EKS add-on's objects carry `app.kubernetes.io/managed-by: EKS`
/// (ours lost that label when we adopted them, what is left still has it).
pub async fn release_leftovers(
    client: &Client,
    caches: &ChildCaches,
    children: &[Child],
    instance: &str,
    uid: Option<&str>,
) -> Result<Vec<String>> {
    let mut releases = BTreeSet::new();
    for (_, store) in caches.by_kind.values() {
        for meta in store.metas().iter().filter(|m| is_ours(m, instance, uid)) {
            let a = meta.annotations.clone().unwrap_or_default();
            if let (Some(r), Some(ns)) = (a.get(HELM_RELEASE_NAME), a.get(HELM_RELEASE_NAMESPACE)) {
                releases.insert((r.clone(), ns.clone()));
            }
        }
    }
    let mut sources: Vec<Source> =
        releases.into_iter().map(|(release, namespace)| Source::Helm { release, namespace }).collect();
    sources.push(Source::EksAddon);
    let rendered: BTreeSet<String> = children.iter().map(Child::key).collect();
    let driver_ns = children.iter().find_map(Child::namespace);
    let mut out = Vec::new();
    for source in &sources {
        let selector = source.selector();
        for (kind_name, (kind, _)) in &caches.by_kind {
            let ns = if kind.namespaced { driver_ns.as_deref() } else { None };
            let api = api_for(client, kind, ns);
            let mut lp = kube::api::ListParams::default().labels(&selector);
            if let Some(fields) = kind.field_selector() {
                lp = lp.fields(&fields);
            }
            let list = match api.list_metadata(&lp).await {
                Ok(list) => list.items,
                // A kind the cluster does not serve (no snapshot API) holds nothing of the release.
                Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
                Err(source_err) => {
                    return Err(Error::Read { what: format!("{kind_name} of {}", source.what()), source: source_err });
                }
            };
            for o in list {
                let meta = o.metadata;
                let name = meta.name.clone().unwrap_or_default();
                let key = match &meta.namespace {
                    Some(n) => format!("{kind_name}/{n}/{name}"),
                    None => format!("{kind_name}/{name}"),
                };
                if rendered.contains(&key) || is_ours(&meta, instance, uid) || !source.holds(&meta) {
                    continue;
                }
                out.push(leftover_advice(kind_name, &meta, &source.what()));
            }
        }
    }
    Ok(out)
}

const HELM_RELEASE_NAME: &str = "meta.helm.sh/release-name";
const HELM_RELEASE_NAMESPACE: &str = "meta.helm.sh/release-namespace";

/// An installation the driver's objects can come from.
enum Source {
    Helm {
        release: String,
        namespace: String,
    },
    /// The EKS managed add-on `aws-ebs-csi-driver`.
    EksAddon,
}

impl Source {
    fn selector(&self) -> String {
        match self {
            Source::Helm { release, .. } => format!("{LABEL_INSTANCE}={release}"),
            Source::EksAddon => {
                format!("{LABEL_MANAGED_BY}=EKS,{}={}", crate::render::LABEL_NAME, crate::render::APP_NAME)
            }
        }
    }

    fn holds(&self, meta: &ObjectMeta) -> bool {
        match self {
            Source::Helm { release, .. } => {
                meta.annotations.as_ref().and_then(|a| a.get(HELM_RELEASE_NAME)).is_some_and(|r| r == release)
            }
            Source::EksAddon => true,
        }
    }

    fn what(&self) -> String {
        match self {
            Source::Helm { release, namespace } => format!("Helm release {release} (namespace {namespace})"),
            Source::EksAddon => "the EKS add-on aws-ebs-csi-driver".to_string(),
        }
    }
}

fn leftover_advice(kind: &str, meta: &ObjectMeta, source: &str) -> String {
    let name = meta.name.clone().unwrap_or_default();
    let ns_flag = meta.namespace.as_ref().map(|n| format!(" -n {n}")).unwrap_or_default();
    let delete = format!("kubectl{ns_flag} delete {} {name}", kind.to_lowercase());
    let what = if kind == "DaemonSet" && name.ends_with("-windows") {
        "the upstream Windows node plugin, still running the upstream images (this operator runs no Windows \
            node plugin): keep it while Windows nodes mount EBS volumes, else delete it"
    } else {
        "not rendered by this operator and still left as that installation created it: delete it once nothing uses it"
    };
    format!("{kind}/{name} of {source} is {what} ({delete}).")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;
    use serde_json::json;

    fn refusal(causes: &[(&str, &str, &str)]) -> Status {
        let causes: Vec<_> = causes
            .iter()
            .map(|(reason, field, message)| json!({"reason": reason, "field": field, "message": message}))
            .collect();
        serde_json::from_value(json!({"status": "Failure", "code": 422, "reason": "Invalid",
            "message": "StorageClass.storage.k8s.io \"gp3\" is invalid", "details": {"causes": causes}}))
        .expect("status")
    }

    #[test]
    fn only_immutable_field_refusals_recreate_a_class() {
        let sc = StorageClass::kind(&());
        // kube-apiserver's words (ValidateStorageClassUpdate).
        let params = ("FieldValueForbidden", "parameters", "Forbidden: updates to parameters are forbidden.");
        let binding = ("FieldValueInvalid", "volumeBindingMode", "Invalid value: \"Immediate\": field is immutable");
        assert!(only_immutable_fields(&sc, &refusal(&[params])));
        assert!(only_immutable_fields(&sc, &refusal(&[params, binding])));
        // Anything else in the refusal, no causes, another code or another kind: no recreate.
        let other = ("FieldValueNotSupported", "allowedTopologies[0]", "Unsupported value: \"x\"");
        assert!(!only_immutable_fields(&sc, &refusal(&[params, other])));
        assert!(!only_immutable_fields(&sc, &refusal(&[])));
        assert!(!only_immutable_fields(&sc, &refusal(&[params]).with_code(409)));
        assert!(!only_immutable_fields("Deployment", &refusal(&[params])));
        let vsc = VolumeSnapshotClass::kind(&());
        let driver = ("FieldValueInvalid", ".driver", "Invalid value: \"string\": driver is immutable");
        // external-snapshotter v8's VolumeSnapshotClass has no immutable field: never recreated.
        assert!(!only_immutable_fields(&vsc, &refusal(&[driver])));
        // ValidateCSIDriverUpdate: the CSIDriver is recreated for its immutable spec fields only.
        let csi = CSIDriver::kind(&());
        let fs_group = ("FieldValueInvalid", "spec.fsGroupPolicy", "Invalid value: \"File\": field is immutable");
        let attach = ("FieldValueInvalid", "spec.attachRequired", "Invalid value: false: field is immutable");
        assert!(only_immutable_fields(&csi, &refusal(&[fs_group, attach])));
        let tokens = ("FieldValueInvalid", "spec.tokenRequests[0].audience", "Invalid value: \"\": must not be empty");
        assert!(!only_immutable_fields(&csi, &refusal(&[fs_group, tokens])));
        assert!(!only_immutable_fields(&csi, &refusal(&[params])));
        assert!(!only_immutable_fields(&sc, &refusal(&[fs_group])));
    }
}
