//! The kinds of child the operator manages, and the label-filtered caches of our children that
//! the reconciler reads instead of the API server (ownership, skip-unchanged, pruning, rollouts).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::storage::v1::{CSIDriver, StorageClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::render::VolumeSnapshotClass;

/// One kind of child: how to reach it and whether its content (status) is read.
#[derive(Clone, Debug)]
pub struct ChildKind {
    pub resource: ApiResource,
    pub namespaced: bool,
    /// Workloads whose status the reconciler reads; everything else is cached metadata-only.
    pub full: bool,
}

fn kind<K: kube::Resource<DynamicType = ()>>(namespaced: bool, full: bool) -> ChildKind {
    ChildKind { resource: ApiResource::erase::<K>(&()), namespaced, full }
}

/// Every kind `render` can produce.
pub fn child_kinds() -> Vec<ChildKind> {
    vec![
        kind::<ServiceAccount>(true, false),
        kind::<ClusterRole>(false, false),
        kind::<ClusterRoleBinding>(false, false),
        kind::<Role>(true, false),
        kind::<RoleBinding>(true, false),
        kind::<CSIDriver>(false, false),
        kind::<Deployment>(true, true),
        kind::<PodDisruptionBudget>(true, false),
        kind::<Service>(true, false),
        kind::<DaemonSet>(true, true),
        kind::<NetworkPolicy>(true, false),
        kind::<StorageClass>(false, false),
        kind::<VolumeSnapshotClass>(false, false),
    ]
}

/// A reflector store of one kind: full objects for workloads, metadata for the rest.
#[derive(Clone)]
pub enum KindStore {
    Meta(Store<PartialObjectMeta<DynamicObject>>),
    Full(Store<DynamicObject>),
}

impl KindStore {
    pub fn metas(&self) -> Vec<ObjectMeta> {
        match self {
            KindStore::Meta(s) => s.state().iter().map(|o| o.metadata.clone()).collect(),
            KindStore::Full(s) => s.state().iter().map(|o| o.metadata.clone()).collect(),
        }
    }
}

/// Caches of our children, by kind name.
#[derive(Clone, Default)]
pub struct ChildCaches {
    pub by_kind: BTreeMap<String, (ChildKind, KindStore)>,
}

impl ChildCaches {
    fn find(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<ObjectMeta> {
        let (k, store) = self.by_kind.get(kind)?;
        match store {
            KindStore::Meta(s) => {
                let mut r = ObjectRef::<PartialObjectMeta<DynamicObject>>::new_with(name, k.resource.clone());
                r.namespace = namespace.map(str::to_string);
                s.get(&r).map(|o| o.metadata.clone())
            }
            KindStore::Full(s) => {
                let mut r = ObjectRef::<DynamicObject>::new_with(name, k.resource.clone());
                r.namespace = namespace.map(str::to_string);
                s.get(&r).map(|o| o.metadata.clone())
            }
        }
    }

    pub fn meta(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<ObjectMeta> {
        self.find(kind, namespace, name)
    }

    /// A cached workload (Deployment, DaemonSet) with its status.
    pub fn full(&self, kind: &str, namespace: &str, name: &str) -> Option<std::sync::Arc<DynamicObject>> {
        let (k, store) = self.by_kind.get(kind)?;
        let KindStore::Full(s) = store else { return None };
        let mut r = ObjectRef::<DynamicObject>::new_with(name, k.resource.clone());
        r.namespace = Some(namespace.to_string());
        s.get(&r)
    }
}
