//! Pure rendering: one `HardenedCsiDriver` plus the discovered cluster capabilities become every
//! object the EBS CSI driver needs, hardened, in apply order. No I/O, no clocks, no randomness:
//! the same input renders byte-identical output, which is what `render` prints, what the
//! reconciler applies and what the snapshot tests pin.

//! One file per object family: `controller_deployment` (the controller Deployment, its PDB and
//! metrics Service), `node_daemonset`, `csidriver`, `rbac` (service accounts, roles, bindings),
//! `classes` (StorageClasses, VolumeSnapshotClasses), `volume_attributes_classes`,
//! `network_policy`, `snapshot_controller`, `service_monitor`; `pod` holds what both pod
//! templates share and `images` resolves image references (the release of `spec.version`, from
//! `crd::versions`).

mod classes;
pub mod controller_deployment;
mod csidriver;
pub mod images;
pub mod network_policy;
pub mod node_daemonset;
mod pod;
pub mod rbac;
pub mod service_monitor;
pub mod snapshot_controller;
pub mod volume_attributes_classes;

pub use classes::{SNAPSHOT_CRD, VolumeSnapshotClass, VolumeSnapshotClassFields};
pub use service_monitor::ServiceMonitor;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ApiResource, DynamicObject};
use kube::{Resource, ResourceExt};
use serde::Serialize;

use crate::crd::HardenedCsiDriver;
use crate::crd::validate::{FieldErrors, validate_driver};

/// The CSI driver name the EBS driver registers; also the CSIDriver object's name.
pub const DRIVER_NAME: &str = "ebs.csi.aws.com";
/// Field manager of every write the operator makes, and the `managed-by` label value.
pub const MANAGER: &str = "hardened-csi-operator";
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const LABEL_VERSION: &str = "app.kubernetes.io/version";
/// `app.kubernetes.io/name` of the driver's objects, as upstream (selectors depend on it).
pub const APP_NAME: &str = "aws-ebs-csi-driver";
pub const PART_OF: &str = "hardened-csi-driver";
/// The uid of the HardenedCsiDriver a child belongs to. Children carry no ownerReference to the
/// driver (see `gc_may_cascade`), so this annotation, with the `managed-by`/`instance` labels,
/// is how ownership is recorded and checked.
pub const ANNOTATION_OWNER_UID: &str = "csi.hardened.dev/owner-uid";

/// What the cluster offers, discovered by the reconciler (or given on the `render` command line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Kubernetes (major, minor).
    pub kubernetes_version: (u32, u32),
    /// `snapshot.storage.k8s.io/v1` VolumeSnapshotClasses are served.
    pub snapshot_api: bool,
    /// The Prometheus Operator's `monitoring.coreos.com/v1` ServiceMonitor is served.
    pub service_monitor_api: bool,
    /// The storage.k8s.io version serving VolumeAttributesClasses (`v1`, else `v1beta1`), None
    /// when the cluster serves none (before 1.34 unless its beta API is enabled).
    pub volume_attributes_class_api: Option<&'static str>,
    /// The resourceVersion of the static-key Secret (`spec.aws.identity.secretRef`) as the
    /// reconciler last saw it (metadata only), part of the controller's identity hash: a rotated
    /// key rolls the controller. None when unknown (offline `render`, no static keys).
    pub identity_secret_version: Option<String>,
    /// The snapshot CRDs or a snapshot-controller of another installation were found: the
    /// spec's snapshot-controller is not rendered (that one is used).
    pub foreign_snapshot_stack: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            kubernetes_version: (1, 33),
            snapshot_api: true,
            service_monitor_api: true,
            volume_attributes_class_api: None,
            identity_secret_version: None,
            foreign_snapshot_stack: false,
        }
    }
}

/// The storage.k8s.io versions that can serve VolumeAttributesClass, preferred first.
pub const VOLUME_ATTRIBUTES_CLASS_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

impl Capabilities {
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.kubernetes_version >= (major, minor)
    }

    /// MutableCSINodeAllocatableCount is on by default (from 1.35; alpha in 1.33, off-by-default
    /// beta in 1.34): the CSIDriver's `nodeAllocatableUpdatePeriodSeconds` and the attacher's
    /// feature gate are rendered.
    pub fn node_allocatable_updates(&self) -> bool {
        self.at_least(1, 35)
    }

    /// Parses `1.33`, `v1.33.2`, `1.33+` (what /version's gitVersion and minor can look like).
    pub fn parse_version(s: &str) -> Option<(u32, u32)> {
        let s = s.trim().trim_start_matches('v');
        let mut parts = s.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor: String = parts.next()?.chars().take_while(char::is_ascii_digit).collect();
        Some((major, minor.parse().ok()?))
    }
}

/// One rendered object, typed when built, kept with its API resource so the reconciler can apply
/// and prune every kind through one code path.
#[derive(Clone, Debug)]
pub struct Child {
    pub resource: ApiResource,
    pub object: DynamicObject,
}

impl Child {
    fn new<K>(typed: K) -> Self
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let resource = ApiResource::erase::<K>(&());
        let mut value = serde_json::to_value(&typed).expect("typed Kubernetes objects serialise");
        if let Some(map) = value.as_object_mut() {
            map.insert("apiVersion".into(), resource.api_version.clone().into());
            map.insert("kind".into(), resource.kind.clone().into());
        }
        let object = serde_json::from_value(value).expect("a serialised object is a DynamicObject");
        Self { resource, object }
    }

    pub fn kind(&self) -> &str {
        &self.resource.kind
    }

    pub fn name(&self) -> String {
        self.object.name_any()
    }

    pub fn namespace(&self) -> Option<String> {
        self.object.namespace()
    }

    /// `Kind/name` or `Kind/namespace/name`, for messages.
    pub fn key(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{}/{}/{}", self.kind(), ns, self.name()),
            None => format!("{}/{}", self.kind(), self.name()),
        }
    }
}

/// Every child of `hcd`, in apply order (identities and RBAC before the workloads that use them).
/// An invalid spec renders nothing and names every broken field.
pub fn render(hcd: &HardenedCsiDriver, caps: &Capabilities) -> Result<Vec<Child>, FieldErrors> {
    validate_driver(hcd)?;
    let ctx = RenderCtx::new(hcd, caps);
    let mut children = Vec::new();
    children.extend(rbac::build(&ctx));
    children.push(Child::new(csidriver::build(&ctx)));
    children.extend(controller_deployment::build(&ctx));
    children.extend(snapshot_controller::build(&ctx));
    children.push(Child::new(node_daemonset::build(&ctx)));
    children.push(Child::new(network_policy::build(&ctx)));
    children.extend(service_monitor::build(&ctx).into_iter().map(Child::new));
    children.extend(classes::build(&ctx));
    children.extend(volume_attributes_classes::build(&ctx));
    for c in &mut children {
        ctx.stamp_owner(c);
    }
    Ok(children)
}

/// Whether the garbage collector may remove a child of this kind by cascading from the
/// HardenedCsiDriver, i.e. whether the child carries an ownerReference to it.
///
/// A finalizer holds only the owner: on `--cascade=foreground` (Argo CD's default for app
/// deletion and prune) the garbage collector deletes every dependent first, whatever our
/// finalizer and volume guard decide. So a kind gets an ownerReference only when losing it while
/// deletion waits for volumes harms nothing:
/// - DaemonSet, Deployment, CSIDriver: the data path itself (mount, attach, provision).
/// - ServiceAccount, ClusterRole(Binding), Role(Binding): without them the driver's pods lose
///   their API access (attacher, provisioner, resizer, leader Leases) and stop working.
/// - PodDisruptionBudget: without it a drain may evict every controller replica at once while
///   volumes still need attaching and detaching.
/// - NetworkPolicy: the controller keeps running for as long as deletion waits; removing its
///   policy first would leave it unisolated for that time.
/// - StorageClass, VolumeSnapshotClass: new claims and snapshots of a driver that is still
///   running would fail, and a default class would silently vanish; the operator removes them
///   with the rest, after the guard.
/// - Service (the controller's metrics endpoint): observability only, nothing reads it on the
///   data path, so it keeps its ownerReference (and shows under the driver in tools that draw
///   ownership trees).
pub fn gc_may_cascade(kind: &str) -> bool {
    kind == "Service"
}

/// What every builder needs: the spec, the capabilities and the common metadata.
pub(crate) struct RenderCtx<'a> {
    pub hcd: &'a HardenedCsiDriver,
    pub spec: &'a crate::crd::HardenedCsiDriverSpec,
    pub caps: &'a Capabilities,
    pub images: images::ResolvedImages,
    owner: Option<OwnerReference>,
}

impl<'a> RenderCtx<'a> {
    fn new(hcd: &'a HardenedCsiDriver, caps: &'a Capabilities) -> Self {
        // Only a stored object has a uid; `render -f` of a file renders without an owner.
        let owner = hcd.meta().uid.as_ref().and_then(|_| hcd.controller_owner_ref(&()));
        Self { hcd, spec: &hcd.spec, caps, images: images::resolve(&hcd.spec), owner }
    }

    /// The labels every child carries; pruning selects on `managed-by` and `instance`.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_string(), APP_NAME.to_string()),
            (LABEL_INSTANCE.to_string(), self.hcd.name_any()),
            (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
            (LABEL_PART_OF.to_string(), PART_OF.to_string()),
            (LABEL_VERSION.to_string(), self.images.version_label.clone()),
        ])
    }

    /// Metadata of a cluster-scoped child.
    pub fn cluster_meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta { name: Some(name.to_string()), labels: Some(self.labels()), ..ObjectMeta::default() }
    }

    /// Records which driver a child belongs to: the owner-uid annotation on every child of a
    /// stored driver, and an ownerReference only where `gc_may_cascade` allows it.
    fn stamp_owner(&self, child: &mut Child) {
        let (Some(owner), Some(uid)) = (&self.owner, self.hcd.meta().uid.as_ref()) else { return };
        let meta = &mut child.object.metadata;
        meta.annotations.get_or_insert_with(BTreeMap::new).insert(ANNOTATION_OWNER_UID.to_string(), uid.clone());
        if gc_may_cascade(&child.resource.kind) {
            meta.owner_references = Some(vec![owner.clone()]);
        }
    }

    /// Metadata of a child in `spec.namespace`.
    pub fn ns_meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta { namespace: Some(self.spec.namespace.clone()), ..self.cluster_meta(name) }
    }
}

/// The label selector that finds every child of the driver named `instance`.
pub fn children_selector(instance: &str) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGER},{LABEL_INSTANCE}={instance}")
}

/// Multi-document YAML of the children, as `render` prints it.
pub fn to_yaml(children: &[Child]) -> String {
    let mut out = String::new();
    for c in children {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&c.object).expect("objects serialise to YAML"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(Capabilities::parse_version("1.33"), Some((1, 33)));
        assert_eq!(Capabilities::parse_version("v1.34.2-eks-1234"), Some((1, 34)));
        assert_eq!(Capabilities::parse_version("1.30+"), Some((1, 30)));
        assert_eq!(Capabilities::parse_version("one"), None);
    }
}
