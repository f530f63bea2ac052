//! VolumeAttributesClasses from `spec.volumeAttributesClasses`, in the storage.k8s.io version
//! the cluster serves (`v1` from Kubernetes 1.34, `v1beta1` where enabled before), and the
//! sidecars' feature gate when it serves none (as upstream's chart decides it).

use std::collections::BTreeMap;

use k8s_openapi::api::storage::v1::VolumeAttributesClass;

use super::{Child, DRIVER_NAME, RenderCtx};
use crate::crd::VolumeAttributesClassSpec;

/// The provisioner's and resizer's `--feature-gates` value for the cluster: upstream's chart
/// turns VolumeAttributesClass off when neither storage.k8s.io/v1 nor v1beta1 serves it (the
/// sidecars would otherwise fail to list the kind), and leaves the sidecars' default otherwise.
pub(crate) fn feature_gate(ctx: &RenderCtx) -> Option<&'static str> {
    ctx.caps.volume_attributes_class_api.is_none().then_some("VolumeAttributesClass=false")
}

pub(crate) fn build(ctx: &RenderCtx) -> Vec<Child> {
    let Some(version) = ctx.caps.volume_attributes_class_api else { return Vec::new() };
    ctx.spec.volume_attributes_classes.iter().map(|c| served_as(Child::new(class(ctx, c)), version)).collect()
}

/// v1beta1 has the same fields as v1 (driverName, parameters); only the version differs.
fn served_as(mut child: Child, version: &str) -> Child {
    if child.resource.version != version {
        child.resource.version = version.to_string();
        child.resource.api_version = format!("{}/{version}", child.resource.group);
        child.object.types = Some(kube::api::TypeMeta {
            api_version: child.resource.api_version.clone(),
            kind: child.resource.kind.clone(),
        });
    }
    child
}

fn class(ctx: &RenderCtx, c: &VolumeAttributesClassSpec) -> VolumeAttributesClass {
    let mut parameters = c.parameters.clone();
    if let Some(t) = c.volume_type {
        parameters.insert("type".into(), t.as_str().into());
    }
    if let Some(i) = c.iops {
        parameters.insert("iops".into(), i.to_string());
    }
    if let Some(t) = c.throughput {
        parameters.insert("throughput".into(), t.to_string());
    }
    let mut metadata = ctx.cluster_meta(&c.name);
    // The operator's labels win: pruning and ownership select on them.
    let mut labels: BTreeMap<String, String> = c.labels.clone();
    labels.extend(metadata.labels.take().unwrap_or_default());
    metadata.labels = Some(labels);
    metadata.annotations = (!c.annotations.is_empty()).then(|| c.annotations.clone());
    VolumeAttributesClass { metadata, driver_name: DRIVER_NAME.into(), parameters: Some(parameters) }
}
