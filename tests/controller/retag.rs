//! `spec.aws.retagExistingVolumes` end to end: the controller (as the chart's ServiceAccount,
//! under RBAC) and the AWS poller against moto, the driver on IRSA (a TokenRequest for the
//! driver's service account, then AssumeRoleWithWebIdentity at moto's STS), so the tags are set
//! as the driver's identity. What reaches the status: `status.aws.retag` and `VolumesRetagged`,
//! written once per refresh; after an operator restart the values the operator applied are still
//! told from a person's (they come back from the status).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use hardened_csi_operator::aws::AwsStatusStore;
use hardened_csi_operator::aws::poller::{Poller, PollerSettings};
use hardened_csi_operator::runtime::metrics::Metrics;
use hardened_csi_operator::runtime::shutdown::CancellationToken;
use serde_json::{Value, json};

use crate::support::{Harness, PULL_SECRET, wait_for};
use crate::{DRIVER, ready};

#[path = "../support/moto.rs"]
mod moto;
#[path = "../support/moto_faults.rs"]
mod moto_faults;

use moto::Moto;
use moto_faults::Faults;

/// Three volumes of cluster `alpha` (one with a `team` a person set), one of cluster `beta`.
async fn seed(moto: &Moto) -> Vec<String> {
    let ec2 = moto.ec2().await;
    let mut ids = Vec::new();
    for (i, (cluster, extra)) in
        [("alpha", None), ("alpha", None), ("alpha", Some(("team", "someone"))), ("beta", None)].iter().enumerate()
    {
        let mut tags = vec![
            Tag::builder().key("CSIVolumeName").value(format!("pvc-{i}")).build(),
            Tag::builder().key("ebs.csi.aws.com/cluster").value("true").build(),
            Tag::builder().key("ebs.csi.aws.com/cluster-name").value(*cluster).build(),
        ];
        if let Some((k, v)) = extra {
            tags.push(Tag::builder().key(*k).value(*v).build());
        }
        let out = ec2
            .create_volume()
            .availability_zone("us-east-1a")
            .size(1)
            .tag_specifications(
                TagSpecification::builder().resource_type(ResourceType::Volume).set_tags(Some(tags)).build(),
            )
            .send()
            .await
            .expect("moto creates the volume");
        ids.push(out.volume_id().expect("volume id").to_string());
    }
    ids
}

async fn team_of(moto: &Moto, ids: &[String]) -> BTreeMap<String, Option<String>> {
    let ec2 = moto.ec2().await;
    let out = ec2.describe_volumes().set_volume_ids(Some(ids.to_vec())).send().await.expect("DescribeVolumes");
    out.volumes()
        .iter()
        .map(|v| {
            let team = v.tags().iter().find(|t| t.key() == Some("team")).and_then(|t| t.value()).map(str::to_string);
            (v.volume_id().unwrap_or_default().to_string(), team)
        })
        .collect()
}

fn poller(h: &Harness, moto: &Moto, faults: &Arc<Faults>, store: &AwsStatusStore) -> CancellationToken {
    let settings = PollerSettings {
        endpoint_url: Some(moto.url.clone()),
        http_client: Some(faults.client()),
        credentials: moto::static_credentials(),
        retry: moto::fast_retries(),
        tick: Duration::from_millis(50),
        min_interval: Duration::from_secs(1),
        ..PollerSettings::default()
    };
    let shutdown = CancellationToken::new();
    let metrics = Metrics::new();
    let task = Poller::new(h.operator.clone(), store.clone(), metrics.aws.clone(), h.trigger.clone(), settings);
    tokio::spawn(task.run(shutdown.clone()));
    shutdown
}

fn spec(team: &str) -> Value {
    json!({
        "aws": {"region": "us-east-1", "clusterId": "alpha",
                "identity": {"irsa": {"roleArn": "arn:aws:iam::123456789012:role/ebs-csi-driver"}},
                "extraTags": {"team": team}, "retagExistingVolumes": true},
        "images": {"pullSecrets": [PULL_SECRET]},
    })
}

async fn retag_status(h: &Harness, reason: &str) -> Value {
    wait_for(&format!("VolumesRetagged reason {reason}"), || async {
        let c = h.condition(DRIVER, "VolumesRetagged").await?;
        (c["reason"] == reason).then_some(c)
    })
    .await
}

#[tokio::test]
async fn retag_counts_and_conflicts_reach_the_status_and_an_operator_restart_keeps_its_own_values() {
    let moto = Moto::start().await;
    let ids = seed(&moto).await;
    let mut h = Harness::start(1).await;
    let store = AwsStatusStore::default();
    h.start_controller_with_aws(store.clone()).await;
    let faults = Faults::new();
    let stop_poller = poller(&h, &moto, &faults, &store);

    // The retag is turned on for a running driver (its service account exists: the poller's
    // TokenRequest for it succeeds on the refresh the spec change starts at once).
    let mut off = spec("platform");
    off["aws"]["retagExistingVolumes"] = json!(false);
    h.create_driver(DRIVER, off).await;
    ready(&h).await;
    assert!(h.condition(DRIVER, "VolumesRetagged").await.is_none());
    assert!(faults.create_tags_calls().is_empty(), "off: nothing is tagged");
    h.patch_spec(DRIVER, json!({"aws": {"retagExistingVolumes": true}})).await;
    let c = retag_status(&h, "Conflicts").await;
    assert_eq!(c["status"], "False");
    let message = c["message"].as_str().unwrap_or_default();
    assert!(message.contains(&ids[2]) && message.contains("someone"), "{message}");
    let st = h.status(DRIVER).await;
    let r = &st["aws"]["retag"];
    assert_eq!((r["resources"].clone(), r["wanted"].clone(), r["tagged"].clone()), (json!(3), json!(2), json!(2)));
    assert_eq!((r["pending"].clone(), r["conflicts"].clone(), r["calls"].clone()), (json!(0), json!(1), json!(1)));
    assert_eq!(r["conflictList"][0]["id"], json!(ids[2]));
    assert_eq!(r["applied"], json!({"team": ["platform"]}));
    let mut alpha = vec![ids[0].clone(), ids[1].clone()];
    alpha.sort();
    assert_eq!(faults.create_tags_calls(), [alpha.clone()], "one batched call, alpha's volumes only (by ID)");
    let teams = team_of(&moto, &ids).await;
    assert_eq!(teams[&ids[2]].as_deref(), Some("someone"));
    assert_eq!(teams[&ids[3]], None, "beta's volume is not this cluster's");

    // The operator restarts (new controller, new poller, nothing in memory) and extraTags changes:
    // the value it applied comes back from the status and is updated; the person's is not.
    stop_poller.cancel();
    let store = AwsStatusStore::default();
    h.start_controller_with_aws(store.clone()).await;
    let faults = Faults::new();
    let stop_poller = poller(&h, &moto, &faults, &store);
    h.patch_spec(DRIVER, json!({"aws": {"extraTags": {"team": "blue"}}})).await;
    wait_for("status.aws.retag applied blue", || async {
        let st = h.status(DRIVER).await;
        (st["aws"]["retag"]["applied"] == json!({"team": ["platform", "blue"]})).then_some(st)
    })
    .await;
    let teams = team_of(&moto, &ids).await;
    assert_eq!(
        [&teams[&ids[0]], &teams[&ids[1]], &teams[&ids[2]]].map(|t| t.as_deref()),
        [Some("blue"), Some("blue"), Some("someone")]
    );
    assert_eq!(faults.create_tags_calls(), [alpha]);
    let c = retag_status(&h, "Conflicts").await;
    assert!(c["message"].as_str().unwrap_or_default().contains("\"blue\""), "{c}");

    // Off: the report and the condition go, the tags stay, nothing more is sent.
    h.patch_spec(DRIVER, json!({"aws": {"retagExistingVolumes": false}})).await;
    wait_for("status.aws.retag gone", || async {
        let st = h.status(DRIVER).await;
        (st["aws"].is_object() && st["aws"].get("retag").is_none()).then_some(st)
    })
    .await;
    assert_eq!(faults.create_tags_calls().len(), 1);
    stop_poller.cancel();
    h.stop().await;
}
