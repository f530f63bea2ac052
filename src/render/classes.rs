//! StorageClasses and VolumeSnapshotClasses from `spec.storageClasses` and
//! `spec.volumeSnapshotClasses`, plus the typed VolumeSnapshotClass kind (a CRD of the external
//! snapshotter, not in k8s-openapi).

use std::collections::BTreeMap;

use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Child, DRIVER_NAME, RenderCtx};
use crate::crd::StorageClassSpec;

pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
pub const DEFAULT_SNAPSHOT_CLASS_ANNOTATION: &str = "snapshot.storage.kubernetes.io/is-default-class";
/// The CRD whose presence means the snapshot API is installed (the external-snapshotter installs
/// the classes', contents' and snapshots' CRDs together).
pub const SNAPSHOT_CRD: &str = "volumesnapshotclasses.snapshot.storage.k8s.io";

/// snapshot.storage.k8s.io/v1 VolumeSnapshotClass: its fields sit at the top level (no spec).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(group = "snapshot.storage.k8s.io", version = "v1", kind = "VolumeSnapshotClass", no_spec)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotClassFields {
    pub driver: String,
    pub deletion_policy: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
}

pub fn build(ctx: &RenderCtx) -> Vec<Child> {
    let mut out: Vec<Child> = ctx.spec.storage_classes.iter().map(|c| Child::new(storage_class(ctx, c))).collect();
    if ctx.caps.snapshot_api {
        for c in &ctx.spec.volume_snapshot_classes {
            let mut vsc = VolumeSnapshotClass::new(
                &c.name,
                VolumeSnapshotClassFields {
                    driver: DRIVER_NAME.into(),
                    deletion_policy: c.deletion_policy.as_str().into(),
                    parameters: c.parameters.clone(),
                },
            );
            vsc.metadata =
                class_meta(ctx, &c.name, &c.labels, &c.annotations, DEFAULT_SNAPSHOT_CLASS_ANNOTATION, c.default);
            out.push(Child::new(vsc));
        }
    }
    out
}

/// A class's metadata: the user's labels under the operator's, the user's annotations and the
/// default-class annotation when it is the default.
fn class_meta(
    ctx: &RenderCtx,
    name: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    default_key: &str,
    default: bool,
) -> ObjectMeta {
    let mut meta = ctx.cluster_meta(name);
    let mut all = labels.clone();
    all.extend(meta.labels.take().unwrap_or_default());
    meta.labels = Some(all);
    let mut notes = annotations.clone();
    if default {
        notes.insert(default_key.to_string(), "true".to_string());
    }
    meta.annotations = (!notes.is_empty()).then_some(notes);
    meta
}

fn storage_class(ctx: &RenderCtx, c: &StorageClassSpec) -> StorageClass {
    let mut params = c.parameters.clone();
    params.insert("type".into(), c.volume_type.as_str().into());
    params.insert("encrypted".into(), c.encrypted.to_string());
    params.insert("csi.storage.k8s.io/fstype".into(), c.fs_type.as_str().into());
    if let Some(k) = &c.kms_key_id {
        params.insert("kmsKeyId".into(), k.clone());
    }
    if let Some(i) = c.iops {
        params.insert("iops".into(), i.to_string());
    }
    if let Some(t) = c.throughput {
        params.insert("throughput".into(), t.to_string());
    }
    let metadata = class_meta(ctx, &c.name, &c.labels, &c.annotations, DEFAULT_CLASS_ANNOTATION, c.default);
    StorageClass {
        metadata,
        provisioner: DRIVER_NAME.into(),
        parameters: Some(params),
        reclaim_policy: Some(c.reclaim_policy.as_str().into()),
        volume_binding_mode: Some(c.volume_binding_mode.as_str().into()),
        allow_volume_expansion: Some(c.allow_volume_expansion),
        mount_options: (!c.mount_options.is_empty()).then(|| c.mount_options.clone()),
        allowed_topologies: (!c.allowed_topologies.is_empty()).then(|| c.allowed_topologies.clone()),
    }
}
