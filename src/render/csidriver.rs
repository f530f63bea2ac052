//! The CSIDriver object `ebs.csi.aws.com`. Its spec fields are immutable once created, so they
//! stay exactly upstream's; the node attach-limit refresh exists from Kubernetes 1.33.

use k8s_openapi::api::storage::v1::{CSIDriver, CSIDriverSpec};

use super::{DRIVER_NAME, RenderCtx};

pub fn build(ctx: &RenderCtx) -> CSIDriver {
    CSIDriver {
        metadata: ctx.cluster_meta(DRIVER_NAME),
        spec: CSIDriverSpec {
            attach_required: Some(true),
            pod_info_on_mount: Some(false),
            fs_group_policy: Some("File".into()),
            node_allocatable_update_period_seconds: ctx.caps.at_least(1, 33).then_some(10),
            se_linux_mount: ctx.spec.node.selinux.then_some(true),
            ..CSIDriverSpec::default()
        },
    }
}
