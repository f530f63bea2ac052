//! APIs a cluster may not serve (the snapshot API, VolumeAttributesClasses before 1.34) cost no
//! requests while absent: their watches wait for the API instead of failing and retrying every
//! 30 s, start when it appears and stop when it goes (issue 20: a quiet hour's requests).

use std::time::Duration;

use hardened_csi_operator::aws::cluster::{ClusterWatches, VolumeSnapshotContent};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::Value;

use super::support::{Harness, operator_user, snapshot_crd, wait_for};
use super::{DRIVER, ready, spec};

/// Requests of the operator's identity to `resource` (any verb, any answer).
fn requests_to(h: &Harness, resource: &str) -> u64 {
    h.server.access_log(&operator_user()).iter().filter(|a| a.resource == resource).map(|a| a.count).sum()
}

#[tokio::test]
async fn an_api_the_cluster_does_not_serve_is_not_watched_until_it_appears() {
    // 1.33 serves no VolumeAttributesClass (v1beta1 is off by default); no snapshot CRDs.
    let h = Harness::start_on("1.33", 1, false).await;
    h.create_driver(DRIVER, spec()).await;
    ready(&h).await;
    let inventory = ClusterWatches::start(h.operator.clone());
    inventory.wait_listed(Duration::from_secs(10)).await;
    assert_eq!(inventory.view().snapshot_contents, None, "no snapshot API: the leak check is not made");
    // An ungated watch would have listed at once, and retried since.
    for resource in ["volumesnapshotclasses", "volumesnapshotcontents", "volumeattributesclasses"] {
        assert_eq!(requests_to(&h, resource), 0, "{resource}: no request while the API is absent");
    }

    // The external-snapshotter's CRDs appear: both watches start, as the operator.
    let crds: Api<CustomResourceDefinition> = Api::all(h.client.clone());
    crds.create(&PostParams::default(), &snapshot_crd()).await.expect("VolumeSnapshotClass CRD");
    crds.create(&PostParams::default(), &VolumeSnapshotContent::crd()).await.expect("VolumeSnapshotContent CRD");
    wait_for("the snapshot watches", || async {
        let log = h.server.access_log(&operator_user());
        let watching = |r: &str| log.iter().any(|a| a.resource == r && a.verb == "watch");
        (watching("volumesnapshotclasses") && watching("volumesnapshotcontents")).then_some(Value::Null)
    })
    .await;
    wait_for("the VolumeSnapshotContents listed", || async {
        inventory.view().snapshot_contents.is_some().then_some(Value::Null)
    })
    .await;
    h.wait_condition(DRIVER, "SnapshotApi", "True").await;

    // The snapshot API goes: the inventory no longer claims to know its contents.
    crds.delete("volumesnapshotclasses.snapshot.storage.k8s.io", &DeleteParams::default()).await.expect("delete");
    wait_for("the VolumeSnapshotContents no longer known", || async {
        inventory.view().snapshot_contents.is_none().then_some(Value::Null)
    })
    .await;
    h.wait_condition(DRIVER, "SnapshotApi", "False").await;
    assert_eq!(requests_to(&h, "volumeattributesclasses"), 0, "still not served");
    drop(inventory);
    h.stop().await;
}
