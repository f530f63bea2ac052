//! The kinds of child the operator manages, and the caches the reconciler reads instead of the
//! API server (ownership, skip-unchanged, pruning, rollouts). Workloads are cached as typed
//! objects (their status is read); everything else as metadata. Most caches hold only our
//! children (label-filtered); the cluster-scoped kinds every cluster has few of (ClusterRoles
//! and their bindings, CSIDrivers, StorageClasses, VolumeSnapshotClasses) are cached whole,
//! metadata trimmed, so whether a child's name is taken by a foreign object is known without a
//! read.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::{CSIDriver, StorageClass, VolumeAttributesClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::render::{DRIVER_NAME, LABEL_MANAGED_BY, MANAGER, ServiceMonitor, VolumeSnapshotClass};

/// What a kind's cache holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cached {
    Metadata,
    Deployment,
    DaemonSet,
}

/// One kind of child: how to reach it and how it is cached.
#[derive(Clone, Debug)]
pub struct ChildKind {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub cached: Cached,
    /// Every object of the kind is cached, not only ours: an object missing from the synced
    /// cache does not exist.
    pub whole: bool,
}

impl ChildKind {
    /// A kind of an API the cluster may not serve (the snapshot API, the Prometheus Operator's
    /// ServiceMonitor): its watch fails while the CRD is absent, which is no sign of an API
    /// server restart, and its cache must not hold up readiness.
    pub fn optional_api(&self) -> bool {
        self.resource.group == VolumeSnapshotClass::group(&()) || self.resource.group == ServiceMonitor::group(&())
    }

    /// The field selector every read of this kind carries: the one CSIDriver is read by name, so
    /// RBAC (which authorises a list or watch with `fieldSelector=metadata.name=X` as a request
    /// for X) can limit even its list and watch to `ebs.csi.aws.com`.
    pub fn field_selector(&self) -> Option<String> {
        (self.resource.kind == CSIDriver::kind(&())).then(|| format!("metadata.name={DRIVER_NAME}"))
    }
}

fn kind<K: Resource<DynamicType = ()>>(namespaced: bool, cached: Cached) -> ChildKind {
    ChildKind { resource: ApiResource::erase::<K>(&()), namespaced, cached, whole: false }
}

fn whole<K: Resource<DynamicType = ()>>() -> ChildKind {
    ChildKind { whole: true, ..kind::<K>(false, Cached::Metadata) }
}

/// What a whole-kind cache keeps of a foreign object: what ownership is decided and described
/// from (labels, the owner-uid and Helm release annotations, owner references, the managers'
/// names), not the field sets of managedFields nor annotations such as last-applied copies.
pub fn trim_meta(meta: &mut ObjectMeta) {
    if let Some(a) = meta.annotations.as_mut() {
        a.retain(|k, _| KEPT_ANNOTATIONS.contains(&k.as_str()));
    }
    for m in meta.managed_fields.iter_mut().flatten() {
        m.fields_v1 = None;
    }
}

const KEPT_ANNOTATIONS: &[&str] =
    &[crate::render::ANNOTATION_OWNER_UID, "meta.helm.sh/release-name", "meta.helm.sh/release-namespace"];

/// Every kind `render` can produce. The driver's RBAC is not among them: the chart installs it
/// and the operator only verifies it (`reconciler::driver_rbac`).
pub fn child_kinds() -> Vec<ChildKind> {
    use Cached::Metadata;
    vec![
        kind::<ServiceAccount>(true, Metadata),
        whole::<CSIDriver>(),
        kind::<Deployment>(true, Cached::Deployment),
        kind::<PodDisruptionBudget>(true, Metadata),
        kind::<Service>(true, Metadata),
        kind::<DaemonSet>(true, Cached::DaemonSet),
        kind::<NetworkPolicy>(true, Metadata),
        kind::<ServiceMonitor>(true, Metadata),
        whole::<StorageClass>(),
        whole::<VolumeSnapshotClass>(),
        kind::<VolumeAttributesClass>(false, Metadata),
    ]
}

/// A reflector store of one kind.
#[derive(Clone)]
pub enum KindStore {
    Meta(Store<PartialObjectMeta<DynamicObject>>),
    Deployment(Store<Deployment>),
    DaemonSet(Store<DaemonSet>),
}

fn lookup<K>(store: &Store<K>, namespace: Option<&str>, name: &str) -> Option<Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let mut r = ObjectRef::<K>::new(name);
    r.namespace = namespace.map(str::to_string);
    store.get(&r)
}

/// Whether an object carries our managed-by label (what the label-filtered caches select).
fn labelled(meta: &ObjectMeta) -> bool {
    meta.labels.as_ref().and_then(|l| l.get(LABEL_MANAGED_BY)).is_some_and(|v| v == MANAGER)
}

impl KindStore {
    /// Whether the cache has its initial list (an API that is not served never has one).
    pub fn synced(&self) -> bool {
        use futures::FutureExt;
        let ready = match self {
            KindStore::Meta(s) => s.wait_until_ready().now_or_never(),
            KindStore::Deployment(s) => s.wait_until_ready().now_or_never(),
            KindStore::DaemonSet(s) => s.wait_until_ready().now_or_never(),
        };
        ready.is_some_and(|r| r.is_ok())
    }

    /// The metadata of the cached objects carrying our managed-by label (a whole-kind cache
    /// also holds foreign objects; they are never pruned, deleted or counted as ours).
    pub fn metas(&self) -> Vec<ObjectMeta> {
        let ours = |m: &ObjectMeta| labelled(m).then(|| m.clone());
        match self {
            KindStore::Meta(s) => s.state().iter().filter_map(|o| ours(&o.metadata)).collect(),
            KindStore::Deployment(s) => s.state().iter().filter_map(|o| ours(&o.metadata)).collect(),
            KindStore::DaemonSet(s) => s.state().iter().filter_map(|o| ours(&o.metadata)).collect(),
        }
    }
}

/// Caches of our children, by kind name.
#[derive(Clone, Default)]
pub struct ChildCaches {
    pub by_kind: BTreeMap<String, (ChildKind, KindStore)>,
}

impl ChildCaches {
    pub fn meta(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<ObjectMeta> {
        let (k, store) = self.by_kind.get(kind)?;
        match store {
            KindStore::Meta(s) => {
                let mut r = ObjectRef::<PartialObjectMeta<DynamicObject>>::new_with(name, k.resource.clone());
                r.namespace = namespace.map(str::to_string);
                s.get(&r).map(|o| o.metadata.clone())
            }
            KindStore::Deployment(s) => lookup(s, namespace, name).map(|o| o.metadata.clone()),
            KindStore::DaemonSet(s) => lookup(s, namespace, name).map(|o| o.metadata.clone()),
        }
    }

    /// A cached Deployment of ours, with its status.
    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Arc<Deployment>> {
        match self.by_kind.get(Deployment::kind(&()).as_ref())? {
            (_, KindStore::Deployment(s)) => lookup(s, Some(namespace), name),
            _ => None,
        }
    }

    /// A cached DaemonSet of ours, with its status.
    pub fn daemon_set(&self, namespace: &str, name: &str) -> Option<Arc<DaemonSet>> {
        match self.by_kind.get(DaemonSet::kind(&()).as_ref())? {
            (_, KindStore::DaemonSet(s)) => lookup(s, Some(namespace), name),
            _ => None,
        }
    }
}
