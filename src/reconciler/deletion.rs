//! Deletion that keeps data safe: the finalizer removes the children, but waits while
//! PersistentVolumes of the driver exist unless the force-delete annotation says otherwise.
//! Never touches PVs, PVCs, EBS volumes or snapshots.

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::FINALIZER;
use crate::reconciler::error::{Error, Result};
use crate::render::DRIVER_NAME;

pub fn has_finalizer(obj: &DynamicObject) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds or removes our finalizer with the object's resourceVersion as a precondition, so a
/// concurrent edit of the list is never overwritten.
pub async fn set_finalizer(api: &Api<DynamicObject>, obj: &DynamicObject, present: bool) -> Result<()> {
    let mut list: Vec<String> = obj.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    if present {
        list.push(FINALIZER.to_string());
    }
    let patch = json!({"metadata": {"finalizers": list, "resourceVersion": obj.resource_version()}});
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|source| Error::Finalizer { name: obj.name_any(), source })
}

/// How many PersistentVolumes the EBS CSI driver provides.
pub async fn driver_volumes(client: &Client) -> Result<usize> {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let pvs = api
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::Read { what: "PersistentVolumes".into(), source })?;
    Ok(pvs
        .items
        .iter()
        .filter(|pv| pv.spec.as_ref().and_then(|s| s.csi.as_ref()).is_some_and(|c| c.driver == DRIVER_NAME))
        .count())
}
