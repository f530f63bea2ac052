//! The CSIDriver object `ebs.csi.aws.com`. Its immutable spec fields (attachRequired,
//! fsGroupPolicy, volumeLifecycleModes) stay exactly upstream's. The node attach-limit refresh
//! (`nodeAllocatableUpdatePeriodSeconds`, feature gate MutableCSINodeAllocatableCount) is set from
//! the Kubernetes version where that gate is on by default: alpha in 1.33, beta but off by default
//! in 1.34 (kubernetes/kubernetes `pkg/features/kube_features.go` at v1.34.0), on by default from
//! 1.35 (kubernetes/kubernetes#134647). Upstream's chart sets it from 1.33, where the API server
//! drops it silently. The field is mutable, so a cluster upgrade or downgrade changes it in place.

use k8s_openapi::api::storage::v1::{CSIDriver, CSIDriverSpec};

use super::{DRIVER_NAME, RenderCtx};

pub fn build(ctx: &RenderCtx) -> CSIDriver {
    CSIDriver {
        metadata: ctx.cluster_meta(DRIVER_NAME),
        spec: CSIDriverSpec {
            attach_required: Some(true),
            pod_info_on_mount: Some(false),
            fs_group_policy: Some("File".into()),
            node_allocatable_update_period_seconds: ctx.caps.node_allocatable_updates().then_some(10),
            se_linux_mount: ctx.spec.node.selinux.then_some(true),
            ..CSIDriverSpec::default()
        },
    }
}
