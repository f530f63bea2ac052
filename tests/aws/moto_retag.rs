//! The retag of existing volumes and snapshots (`spec.aws.retagExistingVolumes`) against moto,
//! through the SDK implementation and an in-process fault proxy (`../support/moto_faults.rs`) that
//! throttles or denies CreateTags the way EC2 does and records every CreateTags moto performed.
//! The seed is `moto_inventory::seed`: cluster alpha has 3 volumes and 2 snapshots, beta 2 and 2,
//! and one volume belongs to no cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, Tag};
use hardened_csi_operator::aws::inventory::{self, RefreshParams};
use hardened_csi_operator::aws::retag::{self, Limits, RetagParams};
use hardened_csi_operator::aws::sdk::SdkAws;
use hardened_csi_operator::crd::{AwsStatus, RetagReport};
use hardened_csi_operator::reconciler::conditions::{VOLUMES_RETAGGED, aws_conditions};
use hardened_csi_operator::runtime::metrics::Metrics;

use crate::moto::Moto;
use crate::moto_faults::Faults;
use crate::moto_inventory::seed;

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn params(wanted: &[(&str, &str)], limits: Limits) -> RefreshParams {
    RefreshParams {
        cluster_id: Some("alpha".into()),
        orphan_grace: Duration::ZERO,
        retag: Some(RetagParams { wanted: tags(wanted), limits }),
        ..Default::default()
    }
}

/// Batches of 2, no pacing to wait for.
fn small() -> Limits {
    Limits { batch: 2, pacing: Duration::from_millis(1), max_calls: 50 }
}

/// A fresh SDK client on moto through `faults` (a restarted operator has nothing but AWS and the
/// status).
async fn api(moto: &Moto, faults: &Arc<Faults>) -> SdkAws {
    let mut settings = moto.settings(Arc::new(Metrics::new()));
    settings.http_client = Some(faults.client());
    SdkAws::new(settings).await.expect("SDK client builds")
}

async fn refresh(api: &SdkAws, params: &RefreshParams, previous: Option<&AwsStatus>) -> (AwsStatus, RetagReport) {
    let status = inventory::refresh(api, params, None, previous, jiff::Timestamp::now()).await;
    assert!(!status.stale, "{:?} {:?}", status.last_error, status.last_error_message);
    let report = status.retag.clone().expect("a retag report while the retag is on");
    (status, report)
}

/// Every volume and snapshot moto holds, by ID, with its tags.
async fn all_tags(moto: &Moto) -> HashMap<String, BTreeMap<String, String>> {
    let ec2 = moto.ec2().await;
    let as_map = |t: &[Tag]| -> BTreeMap<String, String> {
        t.iter().map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string())).collect()
    };
    let mut out = HashMap::new();
    let vols = ec2.describe_volumes().send().await.expect("DescribeVolumes");
    for v in vols.volumes() {
        out.insert(v.volume_id().unwrap_or_default().to_string(), as_map(v.tags()));
    }
    let snaps = ec2
        .describe_snapshots()
        .filters(Filter::builder().name("owner-id").values(crate::moto::ACCOUNT).build())
        .send()
        .await
        .expect("DescribeSnapshots");
    for s in snaps.snapshots() {
        out.insert(s.snapshot_id().unwrap_or_default().to_string(), as_map(s.tags()));
    }
    out
}

fn cluster_of(tags: &BTreeMap<String, String>) -> Option<&str> {
    tags.get("ebs.csi.aws.com/cluster-name").map(String::as_str)
}

fn condition(status: &AwsStatus) -> (String, String, String) {
    let c = aws_conditions(status).into_iter().find(|c| c.type_ == VOLUMES_RETAGGED).expect("VolumesRetagged");
    (c.status.to_string(), c.reason, c.message)
}

#[tokio::test]
async fn moto_retag_tags_this_clusters_volumes_and_snapshots_in_batches_and_a_restart_sends_nothing() {
    let moto = Moto::start().await;
    seed(&moto).await;
    let faults = Faults::new();
    let wanted = [("team", "platform"), ("cost-center", "42")];

    let (status, r) = refresh(&api(&moto, &faults).await, &params(&wanted, small()), None).await;

    assert_eq!((r.resources, r.wanted, r.tagged, r.pending, r.failed, r.conflicts), (5, 5, 5, 0, 0, 0), "{r:?}");
    let calls = faults.create_tags_calls();
    assert_eq!(calls.len(), 3, "5 resources in batches of 2: {calls:?}");
    assert_eq!(r.calls, 3);
    assert!(calls.iter().all(|ids| ids.len() <= 2), "{calls:?}");
    let now = all_tags(&moto).await;
    for (id, t) in &now {
        let ours = cluster_of(t) == Some("alpha");
        assert_eq!(t.get("team").is_some(), ours, "{id}: only alpha's volumes and snapshots are tagged: {t:?}");
        if ours {
            assert_eq!((t["team"].as_str(), t["cost-center"].as_str()), ("platform", "42"), "{id}");
            assert_eq!(
                t.get("ebs.csi.aws.com/cluster").map(String::as_str),
                Some("true"),
                "{id}: the driver's tags stay"
            );
        }
    }
    assert_eq!(now.values().filter(|t| t.contains_key("team")).count(), 5);
    // The permission was probed (DryRun) as the driver's identity before any tag was set.
    assert!(status.permissions.checked.iter().any(|a| a == retag::ACTION), "{:?}", status.permissions.checked);
    assert!(!status.permissions.missing.iter().any(|a| a == retag::ACTION));
    assert_eq!(
        r.applied,
        BTreeMap::from([("cost-center".into(), vec!["42".into()]), ("team".into(), vec!["platform".into()])])
    );
    assert_eq!(condition(&status).0, "True", "{:?}", condition(&status));

    // A restarted operator (new client, no previous result): AWS already says everything is tagged.
    let (status, r) = refresh(&api(&moto, &faults).await, &params(&wanted, small()), None).await;
    assert_eq!((r.resources, r.wanted, r.tagged, r.calls), (5, 0, 0, 0), "{r:?}");
    assert_eq!(faults.create_tags_calls().len(), 3, "no CreateTags for resources already carrying the tags");
    let (s, reason, message) = condition(&status);
    assert_eq!((s.as_str(), reason.as_str()), ("True", "Complete"), "{message}");
}

#[tokio::test]
async fn moto_retag_cut_short_resumes_without_retagging_and_backs_off_when_throttled() {
    let moto = Moto::start().await;
    seed(&moto).await;
    let faults = Faults::new();
    let one_call = Limits { max_calls: 1, ..small() };
    let wanted = [("team", "platform")];

    // One call a pass: 2 of 5 tagged, 3 pending.
    let (status, r) = refresh(&api(&moto, &faults).await, &params(&wanted, one_call), None).await;
    assert_eq!((r.wanted, r.tagged, r.pending, r.calls), (5, 2, 3, 1), "{r:?}");
    let (s, reason, message) = condition(&status);
    assert_eq!((s.as_str(), reason.as_str()), ("False", "InProgress"), "{message}");
    assert!(message.contains("3 pending"), "{message}");

    // The next pass, after a restart (no previous status): only what AWS says is missing.
    let (_, r) = refresh(&api(&moto, &faults).await, &params(&wanted, one_call), None).await;
    assert_eq!((r.wanted, r.tagged, r.pending), (3, 2, 1), "{r:?}");
    let (status, r) = refresh(&api(&moto, &faults).await, &params(&wanted, one_call), Some(&status)).await;
    assert_eq!((r.wanted, r.tagged, r.pending), (1, 1, 0), "{r:?}");
    assert_eq!(condition(&status).1, "Complete");
    let calls = faults.create_tags_calls();
    let mut ids: Vec<&String> = calls.iter().flatten().collect();
    assert_eq!(ids.len(), 5, "{calls:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "no resource was tagged twice: {calls:?}");

    // Throttled once: the SDK backs off and retries, the pass completes.
    let faults = Faults::new();
    faults.throttle("CreateTags", 1);
    let wanted = [("team", "storage")];
    let (previous, r) = refresh(&api(&moto, &faults).await, &params(&wanted, small()), Some(&status)).await;
    assert_eq!((r.tagged, r.pending, r.calls, r.last_error.as_deref()), (5, 0, 3, None), "{r:?}");
    assert_eq!(faults.requests("CreateTags"), 1 + 3 + 1, "the DryRun, 3 calls and the one retry");

    // Throttled beyond the SDK's retries: the pass stops, nothing else is sent, all stays pending.
    let faults = Faults::new();
    faults.throttle("CreateTags", 100);
    let wanted = [("team", "data")];
    let (status, r) = refresh(&api(&moto, &faults).await, &params(&wanted, small()), Some(&previous)).await;
    assert_eq!((r.wanted, r.tagged, r.pending, r.calls), (5, 0, 5, 1), "{r:?}");
    assert_eq!(r.last_error.as_deref(), Some("RequestLimitExceeded"));
    // One call, retried by the SDK (at most max_attempts; fewer once the process's retry quota,
    // shared by every client of the partition, is spent), then the pass ends.
    let attempts = faults.requests("CreateTags") - 1;
    assert!(attempts >= 1 && attempts <= crate::moto::fast_retries().max_attempts as usize, "{attempts} attempts");
    assert_eq!(faults.create_tags_calls().len(), 0);
    let (s, reason, message) = condition(&status);
    assert_eq!((s.as_str(), reason.as_str()), ("False", "RetagFailed"), "{message}");
    assert!(message.contains("RequestLimitExceeded") && message.contains("5 are pending"), "{message}");
    faults.throttle("CreateTags", 0);
    let (_, r) = refresh(&api(&moto, &faults).await, &params(&wanted, small()), Some(&status)).await;
    assert_eq!((r.tagged, r.pending, r.last_error.as_deref()), (5, 0, None), "the next pass catches up: {r:?}");
}

#[tokio::test]
async fn moto_retag_never_removes_a_tag_nor_overwrites_a_value_it_did_not_apply() {
    let moto = Moto::start().await;
    let ids = seed(&moto).await;
    let ec2 = moto.ec2().await;
    // pvc-a1: a tag of someone else's; pvc-a2: a person set `team` by hand.
    for (id, key, value) in [(&ids[0], "owner", "finance"), (&ids[1], "team", "someone-else")] {
        ec2.create_tags()
            .resources(id)
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .expect("moto tags");
    }
    let faults = Faults::new();

    let (status, r) =
        refresh(&api(&moto, &faults).await, &params(&[("team", "platform"), ("cost", "x")], small()), None).await;
    assert_eq!((r.wanted, r.tagged, r.conflicts), (5, 5, 1), "pvc-a2 still lacks `cost`: {r:?}");
    assert_eq!(r.conflict_list.len(), 1);
    let c = &r.conflict_list[0];
    assert_eq!(
        (c.id.as_str(), c.key.as_str(), c.value.as_str(), c.wanted.as_str()),
        (ids[1].as_str(), "team", "someone-else", "platform")
    );
    let t = all_tags(&moto).await;
    assert_eq!(t[&ids[0]].get("owner").map(String::as_str), Some("finance"), "a foreign tag stays");
    assert_eq!(t[&ids[0]]["team"], "platform");
    assert_eq!(t[&ids[1]]["team"], "someone-else", "a person's value is not overwritten");
    assert_eq!(t[&ids[1]]["cost"], "x", "the missing key is still added");
    let (s, reason, message) = condition(&status);
    assert_eq!((s.as_str(), reason.as_str()), ("False", "Conflicts"), "{message}");
    assert!(message.contains(ids[1].as_str()) && message.contains("someone-else"), "{message}");

    // extraTags drops `cost` and changes `team`: the operator's own old value is updated, the
    // person's is not, and `cost` stays on every resource (nothing is ever removed).
    let (_, r) = refresh(&api(&moto, &faults).await, &params(&[("team", "blue")], small()), Some(&status)).await;
    assert_eq!((r.wanted, r.tagged, r.conflicts), (4, 4, 1), "{r:?}");
    assert_eq!(r.conflict_list[0].wanted, "blue");
    assert_eq!(r.applied["team"], ["platform", "blue"]);
    assert_eq!(r.applied["cost"], ["x"], "a dropped key's value is remembered as the operator's");
    let t = all_tags(&moto).await;
    for (id, tags) in t.iter().filter(|(_, t)| cluster_of(t) == Some("alpha")) {
        assert_eq!(tags.get("cost").map(String::as_str), Some("x"), "{id}: a removed extraTags key is left on");
        let team = if *id == ids[1] { "someone-else" } else { "blue" };
        assert_eq!(tags["team"], team, "{id}");
    }
    assert_eq!(t[&ids[0]].get("owner").map(String::as_str), Some("finance"));
    assert_eq!(faults.performed("DeleteTags"), 0, "only the preflight's DryRun: no tag is ever deleted");
    assert_eq!(faults.create_tags_calls().iter().flatten().filter(|id| **id == ids[1]).count(), 1, "only `cost`");
}

#[tokio::test]
async fn moto_retag_off_sends_no_create_tags_and_a_denied_permission_is_reported_missing_not_failed() {
    let moto = Moto::start().await;
    seed(&moto).await;
    let faults = Faults::new();
    let off = RefreshParams { cluster_id: Some("alpha".into()), ..Default::default() };
    let status = inventory::refresh(&api(&moto, &faults).await, &off, None, None, jiff::Timestamp::now()).await;
    assert!(!status.stale && status.retag.is_none(), "{status:?}");
    assert_eq!(faults.requests("CreateTags"), 0, "the switch off: not even a DryRun");
    assert!(aws_conditions(&status).iter().all(|c| c.type_ != VOLUMES_RETAGGED));

    let faults = Faults::new();
    faults.deny("CreateTags");
    let (status, r) = refresh(&api(&moto, &faults).await, &params(&[("team", "platform")], small()), None).await;
    assert!(status.permissions.missing.iter().any(|a| a == retag::ACTION), "{:?}", status.permissions);
    assert_eq!((r.wanted, r.tagged, r.pending, r.failed, r.calls), (5, 0, 5, 0, 0), "{r:?}");
    assert!(r.blocked.as_deref().is_some_and(|b| b.contains("README")), "{r:?}");
    assert_eq!(faults.requests("CreateTags"), 1, "the DryRun only");
    let conds = aws_conditions(&status);
    let perms = conds.iter().find(|c| c.type_ == "AwsPermissions").expect("AwsPermissions");
    assert_eq!((perms.status, perms.reason.as_str()), ("False", "RetagPermissionMissing"), "{}", perms.message);
    let (s, reason, message) = condition(&status);
    assert_eq!((s.as_str(), reason.as_str()), ("False", "RetagBlocked"), "{message}");
}
