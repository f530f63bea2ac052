//! The kinds of child the operator manages, and the label-filtered caches of our children that
//! the reconciler reads instead of the API server (ownership, skip-unchanged, pruning, rollouts).
//! Workloads are cached as typed objects (their status is read); everything else as metadata.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::storage::v1::{CSIDriver, StorageClass, VolumeAttributesClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::render::VolumeSnapshotClass;

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
}

fn kind<K: Resource<DynamicType = ()>>(namespaced: bool, cached: Cached) -> ChildKind {
    ChildKind { resource: ApiResource::erase::<K>(&()), namespaced, cached }
}

/// Every kind `render` can produce.
pub fn child_kinds() -> Vec<ChildKind> {
    use Cached::Metadata;
    vec![
        kind::<ServiceAccount>(true, Metadata),
        kind::<ClusterRole>(false, Metadata),
        kind::<ClusterRoleBinding>(false, Metadata),
        kind::<Role>(true, Metadata),
        kind::<RoleBinding>(true, Metadata),
        kind::<CSIDriver>(false, Metadata),
        kind::<Deployment>(true, Cached::Deployment),
        kind::<PodDisruptionBudget>(true, Metadata),
        kind::<Service>(true, Metadata),
        kind::<DaemonSet>(true, Cached::DaemonSet),
        kind::<NetworkPolicy>(true, Metadata),
        kind::<StorageClass>(false, Metadata),
        kind::<VolumeSnapshotClass>(false, Metadata),
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

impl KindStore {
    pub fn metas(&self) -> Vec<ObjectMeta> {
        match self {
            KindStore::Meta(s) => s.state().iter().map(|o| o.metadata.clone()).collect(),
            KindStore::Deployment(s) => s.state().iter().map(|o| o.metadata.clone()).collect(),
            KindStore::DaemonSet(s) => s.state().iter().map(|o| o.metadata.clone()).collect(),
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
