//! Deletion that keeps data safe. The finalizer holds the HardenedCsiDriver; its data-path
//! children carry no ownerReference (`render::gc_may_cascade`), so nothing but this module
//! removes them, and only after the guard has counted, from complete reads, no volume that still
//! needs the driver. Never touches PVs, PVCs, VolumeAttachments, EBS volumes or snapshots.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::{CSIDriver, VolumeAttachment};
use kube::api::{Api, DynamicObject, ListParams, ObjectList, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::FINALIZER;
use crate::crd::VolumesInUse;
use crate::reconciler::error::{Error, Result};
use crate::render::{DRIVER_NAME, children_selector};

/// Objects per list request: 100,000 PersistentVolumes are 200 pages, never one response.
pub const PAGE: u32 = 500;
/// How many volumes the status and messages name.
pub const EXAMPLES: usize = 5;

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

/// Lists every object of `api` page by page, handing each page to `each`. Returns the number of
/// requests made. Any failure (a continue token that expired included) fails the whole count:
/// a partial list is no evidence.
async fn each_page<K>(api: &Api<K>, what: &str, mut each: impl FnMut(ObjectList<K>)) -> Result<u32>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut params = ListParams::default().limit(PAGE);
    let mut requests = 0;
    loop {
        let page = api.list(&params).await.map_err(|source| Error::Read { what: what.to_string(), source })?;
        requests += 1;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        each(page);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(requests),
        }
    }
}

/// Whether a PersistentVolume needs this driver: a CSI volume of ebs.csi.aws.com, or an in-tree
/// `awsElasticBlockStore` volume (CSI migration, on by default since Kubernetes 1.23 and the only
/// way since 1.27, sends its mounts and attachments to ebs.csi.aws.com).
fn pv_need(pv: &PersistentVolume) -> Option<bool> {
    let spec = pv.spec.as_ref()?;
    if spec.csi.as_ref().is_some_and(|c| c.driver == DRIVER_NAME) {
        Some(true)
    } else if spec.aws_elastic_block_store.is_some() {
        Some(false)
    } else {
        None
    }
}

/// Every volume that needs the EBS CSI driver, from complete paged reads of PersistentVolumes and
/// VolumeAttachments. Returns the count and the number of list requests it took.
pub async fn volumes_in_use(client: &Client) -> Result<(VolumesInUse, u32)> {
    let mut found = VolumesInUse::default();
    let mut examples = Vec::new();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let mut requests = each_page(&pvs, "PersistentVolumes", |page| {
        for pv in &page.items {
            match pv_need(pv) {
                Some(true) => found.csi_persistent_volumes += 1,
                Some(false) => found.in_tree_persistent_volumes += 1,
                None => continue,
            }
            if examples.len() < EXAMPLES {
                examples.push(format!("PersistentVolume/{}", pv.name_any()));
            }
        }
    })
    .await?;
    let vas: Api<VolumeAttachment> = Api::all(client.clone());
    requests += each_page(&vas, "VolumeAttachments", |page| {
        for va in page.items.iter().filter(|va| va.spec.attacher == DRIVER_NAME) {
            found.volume_attachments += 1;
            if examples.len() < EXAMPLES {
                examples.push(format!("VolumeAttachment/{}", va.name_any()));
            }
        }
    })
    .await?;
    found.examples = examples;
    Ok((found, requests))
}

/// Whether the data-path workloads of `instance` exist, read live from the API server (not from
/// a cache): evidence that does not depend on any cache being complete. The workloads can only be
/// in the install's driver namespace (the operator's RBAC grants nothing elsewhere).
pub async fn runs_data_path_live(client: &Client, instance: &str, namespace: &str) -> Result<bool> {
    let lp = ListParams::default().labels(&children_selector(instance)).limit(1);
    let read = |what: &str| {
        let what = what.to_string();
        move |source| Error::Read { what, source }
    };
    let csid: Api<CSIDriver> = Api::all(client.clone());
    // By name (the only CSIDriver the operator may read is ebs.csi.aws.com).
    let by_name = lp.clone().fields(&format!("metadata.name={DRIVER_NAME}"));
    if !csid.list_metadata(&by_name).await.map_err(read("CSIDrivers"))?.items.is_empty() {
        return Ok(true);
    }
    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    let deploy: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    Ok(!ds.list_metadata(&lp).await.map_err(read("DaemonSets"))?.items.is_empty()
        || !deploy.list_metadata(&lp).await.map_err(read("Deployments"))?.items.is_empty())
}
