//! The SDK implementation against moto: real HTTP, real tag filters. Two clusters' volumes and
//! snapshots, a volume the driver did not create, and PersistentVolumes in the local API server.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification, VolumeType};
use hardened_csi_operator::aws::inventory::{self, RefreshParams};
use hardened_csi_operator::aws::poller::pv_references;
use hardened_csi_operator::aws::pv_watch::{PvRef, PvReferences, PvSource};
use hardened_csi_operator::aws::sdk::SdkAws;
use hardened_csi_operator::runtime::metrics::Metrics;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, PostParams};
use local_apiserver::LocalApiServer;

use crate::moto::Moto;

/// One seeded volume: cluster id (None: not created by the driver), PV name, size, type, zone.
pub struct Seed {
    pub cluster: Option<&'static str>,
    pub pv: &'static str,
    pub size: i32,
    pub volume_type: VolumeType,
    pub zone: &'static str,
}

pub fn seeds() -> Vec<Seed> {
    use VolumeType::*;
    vec![
        Seed { cluster: Some("alpha"), pv: "pvc-a1", size: 10, volume_type: Gp3, zone: "us-east-1a" },
        Seed { cluster: Some("alpha"), pv: "pvc-a2", size: 20, volume_type: Gp3, zone: "us-east-1b" },
        Seed { cluster: Some("alpha"), pv: "pvc-a3", size: 5, volume_type: Gp2, zone: "us-east-1a" },
        Seed { cluster: Some("beta"), pv: "pvc-b1", size: 8, volume_type: Gp3, zone: "us-east-1c" },
        Seed { cluster: Some("beta"), pv: "pvc-b2", size: 100, volume_type: St1, zone: "us-east-1c" },
        Seed { cluster: None, pv: "not-ours", size: 50, volume_type: Gp3, zone: "us-east-1a" },
    ]
}

fn tags(pairs: &[(&str, &str)]) -> Vec<Tag> {
    pairs.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build()).collect()
}

/// Creates the volumes (driver tags as the driver writes them) and one snapshot per cluster
/// volume except pvc-a3; returns the volume ids in seed order.
pub async fn seed(moto: &Moto) -> Vec<String> {
    let ec2 = moto.ec2().await;
    let mut ids = Vec::new();
    for s in seeds() {
        let mut t = vec![("CSIVolumeName", s.pv)];
        if let Some(c) = s.cluster {
            t.extend([("ebs.csi.aws.com/cluster", "true"), ("ebs.csi.aws.com/cluster-name", c)]);
        }
        let out = ec2
            .create_volume()
            .availability_zone(s.zone)
            .size(s.size)
            .volume_type(s.volume_type.clone())
            .tag_specifications(
                TagSpecification::builder().resource_type(ResourceType::Volume).set_tags(Some(tags(&t))).build(),
            )
            .send()
            .await
            .expect("moto creates the volume");
        let id = out.volume_id().expect("volume id").to_string();
        if let Some(c) = s.cluster
            && s.pv != "pvc-a3"
        {
            let snap_tags = tags(&[
                ("CSIVolumeSnapshotName", &format!("snap-{}", s.pv)),
                ("ebs.csi.aws.com/cluster", "true"),
                ("ebs.csi.aws.com/cluster-name", c),
            ]);
            ec2.create_snapshot()
                .volume_id(&id)
                .tag_specifications(
                    TagSpecification::builder().resource_type(ResourceType::Snapshot).set_tags(Some(snap_tags)).build(),
                )
                .send()
                .await
                .expect("moto creates the snapshot");
        }
        ids.push(id);
    }
    ids
}

fn params(cluster: Option<&str>) -> RefreshParams {
    RefreshParams { cluster_id: cluster.map(str::to_string), orphan_grace: Duration::ZERO, ..Default::default() }
}

#[tokio::test]
async fn moto_inventory_of_two_clusters_counts_only_each_clusters_resources() {
    let moto = Moto::start().await;
    let ids = seed(&moto).await;
    let metrics = Arc::new(Metrics::new());
    let api = SdkAws::new(moto.settings(metrics.clone())).await.expect("SDK client builds");
    // pvc-a2 still has its PV; pvc-a1 is statically referenced by its volume id.
    let pvs = PvReferences {
        names: ["pvc-a2".to_string()].into(),
        by_volume: [(
            ids[0].clone(),
            PvRef {
                name: "static".into(),
                source: PvSource::Csi,
                volume_id: Some(ids[0].clone()),
                phase: Some("Bound".into()),
                claim: None,
            },
        )]
        .into(),
        unparsed: 0,
    };

    let alpha = inventory::refresh(&api, &params(Some("alpha")), Some(&pvs), None, jiff::Timestamp::now()).await;

    assert!(!alpha.stale, "{:?}", alpha.last_error_message);
    assert_eq!(alpha.scope, "cluster alpha");
    assert_eq!(alpha.volumes.count, 3);
    assert_eq!(alpha.volumes.total_gib, 35);
    assert_eq!(alpha.volumes.by_state.get("available"), Some(&3));
    assert_eq!(alpha.volumes.by_type.get("gp3"), Some(&2));
    assert_eq!(alpha.volumes.by_type.get("gp2"), Some(&1));
    assert_eq!(alpha.volumes.by_zone.get("us-east-1a"), Some(&2));
    assert_eq!(alpha.volumes.by_zone.get("us-east-1b"), Some(&1));
    assert_eq!(alpha.snapshots.count, 2);
    assert_eq!(alpha.snapshots.total_gib, 30);
    assert_eq!(alpha.snapshots.by_state.values().sum::<u64>(), 2);
    // Only pvc-a3 is referenced by nothing.
    assert_eq!(alpha.orphaned.count, 1);
    assert_eq!(alpha.orphaned.total_gib, 5);
    assert_eq!(alpha.orphaned.volumes[0].volume_id, ids[2]);
    assert_eq!(alpha.orphaned.volumes[0].csi_volume_name.as_deref(), Some("pvc-a3"));
    assert_eq!(
        (alpha.orphaned.volumes[0].volume_type.as_str(), alpha.orphaned.volumes[0].zone.as_str()),
        ("gp2", "us-east-1a")
    );
    assert!(alpha.stuck.attachments.is_empty() && alpha.stuck.error_volumes.is_empty());
    assert!(alpha.zones.iter().any(|z| z == "us-east-1a") && alpha.zones.len() >= 3, "{:?}", alpha.zones);
    assert_eq!(alpha.encryption_by_default, Some(false));
    assert_eq!(alpha.default_kms_key_id, None, "moto answers 500 for the KMS key: unknown, not fatal");
    assert_eq!(alpha.region.as_deref(), Some("us-east-1"));
    assert!(!alpha.fips_endpoints);
    assert!(alpha.permissions.missing.is_empty(), "{:?}", alpha.permissions);
    assert_eq!(alpha.permissions.principal_arn.as_deref(), Some("arn:aws:sts::123456789012:user/moto"));

    let beta = inventory::refresh(&api, &params(Some("beta")), Some(&pvs), None, jiff::Timestamp::now()).await;
    assert_eq!((beta.volumes.count, beta.volumes.total_gib), (2, 108));
    assert_eq!(beta.volumes.by_type.get("st1"), Some(&1));
    assert_eq!(beta.volumes.by_zone.get("us-east-1c"), Some(&2));
    assert_eq!(beta.snapshots.count, 2);
    assert_eq!(beta.orphaned.count, 2);

    let all = inventory::refresh(&api, &params(None), Some(&pvs), None, jiff::Timestamp::now()).await;
    assert_eq!(all.scope, "account-wide");
    assert_eq!(all.volumes.count, 5, "the untagged volume is not the driver's");
    assert_eq!(all.volumes.total_gib, 143);
    assert_eq!(all.snapshots.count, 4);

    // Encryption by default, turned on in the account, is seen on the next refresh.
    moto.ec2().await.enable_ebs_encryption_by_default().send().await.expect("moto enables encryption by default");
    let again =
        inventory::refresh(&api, &params(Some("alpha")), Some(&pvs), Some(&alpha), jiff::Timestamp::now()).await;
    assert_eq!(again.encryption_by_default, Some(true));
    assert!(!again.same_result(&alpha));

    // After a reset there is nothing left.
    moto.reset().await;
    let empty = inventory::refresh(&api, &params(Some("alpha")), Some(&pvs), None, jiff::Timestamp::now()).await;
    assert!(!empty.stale, "{:?}", empty.last_error_message);
    assert_eq!((empty.volumes.count, empty.snapshots.count, empty.orphaned.count), (0, 0, 0));
}

fn pv(name: &str, driver: &str, handle: &str) -> PersistentVolume {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"],
            "csi": {"driver": driver, "volumeHandle": handle},
        }
    }))
    .expect("PersistentVolume")
}

#[tokio::test]
async fn moto_orphans_are_checked_against_the_persistent_volumes_in_the_cluster() {
    let moto = Moto::start().await;
    let ids = seed(&moto).await;
    let server = LocalApiServer::start().await.expect("local API server");
    let pvs_api: Api<PersistentVolume> = Api::all(server.client());
    // pvc-a1: a live EBS PV by name. pvc-a2: only a PV of another driver with that name's handle
    // (does not count). pvc-a3: statically provisioned, referenced by its volume id.
    for p in [
        pv("pvc-a1", "ebs.csi.aws.com", &ids[0]),
        pv("other", "efs.csi.aws.com", &ids[1]),
        pv("static-data", "ebs.csi.aws.com", &ids[2]),
    ] {
        pvs_api.create(&PostParams::default(), &p).await.expect("PV created");
    }

    let refs = pv_references(&server.client()).await.expect("PVs listed");
    assert!(
        refs.references("vol-x", Some("pvc-a1")) && refs.references(&ids[2], None) && !refs.references(&ids[1], None),
        "{refs:?}"
    );
    assert!(refs.references("vol-x", Some("other")), "a volume created for a live PV of any driver is referenced");

    let api = SdkAws::new(moto.settings(Arc::new(Metrics::new()))).await.expect("SDK client builds");
    let alpha = inventory::refresh(&api, &params(Some("alpha")), Some(&refs), None, jiff::Timestamp::now()).await;

    assert!(alpha.orphaned.checked);
    assert_eq!(alpha.orphaned.count, 1);
    assert_eq!(alpha.orphaned.volumes[0].volume_id, ids[1]);
    assert_eq!(alpha.orphaned.volumes[0].csi_volume_name.as_deref(), Some("pvc-a2"));
    assert_eq!(alpha.orphaned.volumes[0].size_gib, 20);

    // Inside the grace period nothing is an orphan yet.
    let young = RefreshParams { orphan_grace: Duration::from_secs(3600), ..params(Some("alpha")) };
    let status = inventory::refresh(&api, &young, Some(&refs), None, jiff::Timestamp::now()).await;
    assert_eq!(status.orphaned.count, 0);
    assert!(status.orphaned.checked);
}

#[tokio::test]
async fn moto_snapshot_verification_lists_blocks_of_the_newest_completed_snapshot() {
    let moto = Moto::start().await;
    // gamma: a snapshot written through the EBS direct API, which moto can list blocks of.
    let ebs = moto.ebs().await;
    let started = ebs
        .start_snapshot()
        .volume_size(1)
        .tags(aws_sdk_ebs::types::Tag::builder().key("ebs.csi.aws.com/cluster").value("true").build())
        .tags(aws_sdk_ebs::types::Tag::builder().key("ebs.csi.aws.com/cluster-name").value("gamma").build())
        .send()
        .await
        .expect("moto starts the snapshot");
    let id = started.snapshot_id().expect("snapshot id").to_string();
    ebs.complete_snapshot().snapshot_id(&id).changed_blocks_count(0).send().await.expect("moto completes the snapshot");
    // alpha: EC2-created snapshots, whose blocks moto cannot list (it answers 500).
    seed(&moto).await;
    let api = SdkAws::new(moto.settings(Arc::new(Metrics::new()))).await.expect("SDK client builds");
    let verify = |cluster| RefreshParams { verify_snapshots: true, ..params(Some(cluster)) };

    let gamma = inventory::refresh(&api, &verify("gamma"), None, None, jiff::Timestamp::now()).await;
    assert!(!gamma.stale, "{:?}", gamma.last_error_message);
    assert_eq!(gamma.snapshots.count, 1);
    let v = gamma.snapshots.verification.expect("verified");
    assert_eq!(v.snapshot_id, id);
    assert!(v.readable, "{v:?}");

    let alpha = inventory::refresh(&api, &verify("alpha"), None, None, jiff::Timestamp::now()).await;
    assert!(!alpha.stale, "an unreadable snapshot is reported, the refresh still succeeds");
    let v = alpha.snapshots.verification.expect("verified");
    assert!(!v.readable);
    assert!(v.message.as_deref().is_some_and(|m| m.starts_with("ListSnapshotBlocks failed")), "{v:?}");

    let unverified = inventory::refresh(&api, &params(Some("alpha")), None, None, jiff::Timestamp::now()).await;
    assert_eq!(unverified.snapshots.verification, None, "verification only when asked");
}
