//! The wrong answers of issue #18, each a test that would have failed before: moto holds the
//! volumes (real tag filters), the local API server holds CSI and in-tree PersistentVolumes,
//! VolumeAttachments and Nodes, read with the same code the operator and `doctor` use.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification, VolumeType};
use hardened_csi_operator::aws::cluster;
use hardened_csi_operator::aws::inventory::{self, Memory, RefreshParams};
use hardened_csi_operator::aws::pv_watch::PvWatch;
use hardened_csi_operator::aws::sdk::SdkAws;
use hardened_csi_operator::runtime::metrics::Metrics;
use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use local_apiserver::LocalApiServer;
use serde_json::json;

use crate::moto::Moto;

async fn volume(moto: &Moto, zone: &str, size: i32, tags: &[(&str, &str)]) -> String {
    let tags: Vec<Tag> = tags.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build()).collect();
    moto.ec2()
        .await
        .create_volume()
        .availability_zone(zone)
        .size(size)
        .volume_type(VolumeType::Gp2)
        .tag_specifications(
            TagSpecification::builder().resource_type(ResourceType::Volume).set_tags(Some(tags)).build(),
        )
        .send()
        .await
        .expect("moto creates the volume")
        .volume_id()
        .expect("volume id")
        .to_string()
}

async fn create<K>(client: &kube::Client, obj: serde_json::Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    let obj: K = serde_json::from_value(obj).expect("object");
    api.create(&PostParams::default(), &obj).await.expect("created")
}

async fn set_status<K>(client: &kube::Client, name: &str, status: serde_json::Value)
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
        .await
        .expect("status patched");
}

fn csi_pv(name: &str, handle: &str) -> serde_json::Value {
    json!({"metadata": {"name": name}, "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Retain",
        "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": handle}}})
}

#[tokio::test]
async fn moto_either_cluster_tag_in_tree_pvs_leaks_and_attachments_from_both_sides() {
    let moto = Moto::start().await;
    let owned = ("kubernetes.io/cluster/alpha", "owned");
    let named = ("ebs.csi.aws.com/cluster-name", "alpha");
    // A new driver's volume (both tags), bound to a CSI PV.
    let v_new = volume(&moto, "us-east-1a", 10, &[named, owned, ("CSIVolumeName", "pvc-new")]).await;
    // An older driver's or the EKS add-on's (only kubernetes.io/cluster), bound to an in-tree
    // gp2 PV that spells the ID aws://zone/vol-...: invisible, then a false orphan, before.
    let v_old = volume(&moto, "us-east-1a", 20, &[owned, ("kubernetes.io/created-for/pv/name", "gp2-old")]).await;
    // A Released PV's volume (Retain policy, claim deleted): a leak candidate, not an orphan.
    let v_released = volume(&moto, "us-east-1b", 30, &[named, owned, ("CSIVolumeName", "pvc-released")]).await;
    // A volume whose PV was deleted: an orphan and a leak candidate.
    let v_gone = volume(&moto, "us-east-1b", 40, &[owned, ("CSIVolumeName", "pvc-deleted")]).await;
    // Another cluster's.
    volume(&moto, "us-east-1c", 50, &[("ebs.csi.aws.com/cluster-name", "beta"), ("CSIVolumeName", "pvc-b")]).await;

    let server = LocalApiServer::start().await.expect("local API server");
    let client = server.client();
    create::<PersistentVolume>(&client, csi_pv("pvc-new", &v_new)).await;
    create::<PersistentVolume>(
        &client,
        json!({"metadata": {"name": "gp2-old"}, "spec": {"capacity": {"storage": "20Gi"},
            "accessModes": ["ReadWriteOnce"],
            "awsElasticBlockStore": {"volumeID": format!("aws://us-east-1a/{v_old}")}}}),
    )
    .await;
    create::<PersistentVolume>(&client, csi_pv("pvc-released", &v_released)).await;
    set_status::<PersistentVolume>(&client, "pvc-released", json!({"phase": "Released"})).await;
    create::<Node>(
        &client,
        json!({"metadata": {"name": "ip-10-0-1-1"}, "spec": {"providerID": "aws:///us-east-1a/i-0abc"}}),
    )
    .await;
    let va = |name: &str, node: &str, pv: &str| {
        json!({"metadata": {"name": name}, "spec": {"attacher": "ebs.csi.aws.com", "nodeName": node,
            "source": {"persistentVolumeName": pv}}})
    };
    create::<VolumeAttachment>(&client, va("csi-err", "ip-10-0-1-1", "pvc-new")).await;
    set_status::<VolumeAttachment>(
        &client,
        "csi-err",
        json!({"attached": false, "attachError": {"message": "rpc error: AttachVolume.Attach failed: volume limit",
            "time": "2026-01-01T00:00:00Z"}}),
    )
    .await;
    create::<VolumeAttachment>(&client, va("csi-gone-node", "ip-10-0-9-9", "gp2-old")).await;

    let view = cluster::list_view(&client).await.expect("the cluster is readable");
    assert!(view.attachments.is_some() && view.nodes.is_some());
    let api = SdkAws::new(moto.settings(Arc::new(Metrics::new()))).await.expect("SDK client builds");
    let params = RefreshParams {
        cluster_id: Some("alpha".into()),
        orphan_grace: Duration::ZERO,
        stuck_threshold: Duration::ZERO,
        ..Default::default()
    };
    let now = jiff::Timestamp::now();
    let s = inventory::refresh_with(&api, &params, &view, None, &mut Memory::default(), now).await;

    assert!(!s.stale, "{:?} {:?}", s.last_error, s.last_error_message);
    assert_eq!((s.volumes.count, s.volumes.total_gib), (4, 100), "either cluster tag, merged once: {:?}", s.volumes);
    assert!(s.orphaned.checked);
    let orphans: Vec<&str> = s.orphaned.volumes.iter().map(|v| v.volume_id.as_str()).collect();
    assert_eq!(orphans, [v_gone.as_str()], "the in-tree and the Released PV's volumes are referenced");
    let released = &s.leaks.released_persistent_volumes;
    assert_eq!((released.count, released.total_gib), (1, 30));
    assert_eq!(released.items[0].id, v_released);
    assert_eq!(released.items[0].persistent_volume.as_deref(), Some("pvc-released"));
    let gone = &s.leaks.volumes_without_persistent_volume;
    assert_eq!((gone.count, gone.items[0].id.as_str()), (1, v_gone.as_str()));
    assert!(!gone.items[0].created_at.is_empty(), "age is given as the creation time");
    assert!(!s.leaks.snapshots_checked, "no snapshot API in this cluster: not checked, not 'none'");
    let stuck: Vec<(&str, &str)> =
        s.stuck.volume_attachments.iter().map(|v| (v.name.as_str(), v.reason.as_str())).collect();
    assert_eq!(stuck, [("csi-err", "AttachError"), ("csi-gone-node", "NodeGone")]);
    assert_eq!(s.stuck.volume_attachments[0].volume_id.as_deref(), Some(v_new.as_str()));
    assert_eq!(s.stuck.volume_attachments[1].volume_id.as_deref(), Some(v_old.as_str()), "in-tree ID form joined");

    // Without clusterId: every cluster's volumes, and not one of them called an orphan.
    let account = RefreshParams { cluster_id: None, ..params.clone() };
    let all = inventory::refresh_with(&api, &account, &view, None, &mut Memory::default(), now).await;
    assert_eq!(all.scope, "account-wide");
    assert!(!all.orphaned.checked && all.orphaned.count == 0, "{:?}", all.orphaned);
    assert!(!all.leaks.checked);
}

/// The PV references come from a watch: listed once, then kept current by events, whatever the
/// number of reads (the request budget issue #20 measures).
#[tokio::test]
async fn the_pv_watch_lists_once_and_follows_changes() {
    let server = LocalApiServer::start().await.expect("local API server");
    let client = server.client();
    create::<PersistentVolume>(&client, csi_pv("pvc-1", "vol-0aaa")).await;
    create::<PersistentVolume>(
        &client,
        json!({"metadata": {"name": "legacy"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "awsElasticBlockStore": {"volumeID": "aws://us-east-1a/vol-0bbb"}}}),
    )
    .await;
    server.reset_counters();
    let watch = PvWatch::start(client.clone());
    let refs = wait_for(|| watch.references().filter(|r| r.by_volume.len() == 2)).await;
    assert!(refs.references("vol-0aaa", None) && refs.references("vol-0bbb", None));
    assert_eq!(refs.by_volume["vol-0bbb"].name, "legacy");

    create::<PersistentVolume>(&client, csi_pv("pvc-2", "vol-0ccc")).await;
    let refs = wait_for(|| watch.references().filter(|r| r.by_volume.len() == 3)).await;
    assert!(refs.references("vol-0ccc", None));
    Api::<PersistentVolume>::all(client.clone()).delete("pvc-1", &Default::default()).await.expect("deleted");
    let refs = wait_for(|| watch.references().filter(|r| !r.by_volume.contains_key("vol-0aaa"))).await;
    assert_eq!(refs.by_volume.len(), 2);
    for _ in 0..10 {
        assert!(watch.references().is_some());
    }
    assert_eq!(server.counters().requests("list", "persistentvolumes"), 1, "one initial list, then events");
}

async fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the watch did not catch up within 6 s");
}
