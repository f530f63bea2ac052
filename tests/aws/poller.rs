//! The poller against the local API server (PersistentVolumes) and moto, fed the drivers the
//! reconciler tracks: it publishes a result and triggers a reconcile once, stays quiet while
//! nothing changes, triggers again on a change, drops disabled and untracked drivers, and stops on
//! cancellation.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use hardened_csi_operator::aws::poller::{AwsStatusStore, Poller, PollerSettings};
use hardened_csi_operator::crd::{HardenedCsiDriverSpec, Identity, SecretRef};
use hardened_csi_operator::reconciler::conditions::aws_conditions;
use hardened_csi_operator::runtime::metrics::Metrics;
use hardened_csi_operator::runtime::shutdown::CancellationToken;
use local_apiserver::LocalApiServer;
use tokio::sync::mpsc;

use crate::aws_requests;
use crate::moto::{self, Moto};
use crate::moto_inventory::seed;

/// Static keys, fast retries, a 50 ms tick and a 1 s interval floor; the AWS endpoint is the
/// caller's.
fn fast() -> PollerSettings {
    PollerSettings {
        credentials: moto::static_credentials(),
        retry: moto::fast_retries(),
        tick: Duration::from_millis(50),
        min_interval: Duration::from_secs(1),
        ..PollerSettings::default()
    }
}

async fn next_trigger(rx: &mut mpsc::Receiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a reconcile trigger within 30 s")
        .expect("channel open")
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn poller_publishes_changes_once_stays_quiet_when_unchanged_and_stops_on_cancel() {
    let moto = Moto::start().await;
    seed(&moto).await;
    let server = LocalApiServer::start().await.expect("local API server");
    let client = server.client();
    let mut spec = HardenedCsiDriverSpec::default();
    spec.aws.region = Some(moto::REGION.into());
    spec.aws.cluster_id = Some("alpha".into());
    // Static keys: the inventory runs with the operator's credentials, the preflight does not.
    spec.aws.identity = Identity {
        irsa: None,
        pod_identity: None,
        secret_ref: Some(serde_json::from_value::<SecretRef>(serde_json::json!({"name": "keys"})).expect("SecretRef")),
    };
    spec.inventory.interval = "1s".parse().expect("duration");

    let store = AwsStatusStore::default();
    store.track("ebs", &spec);
    let metrics = Arc::new(Metrics::new());
    let (tx, mut rx) = mpsc::channel(8);
    let settings = PollerSettings { endpoint_url: Some(moto.url.clone()), ..fast() };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(
        Poller::new(client.clone(), store.clone(), metrics.aws.clone(), tx, settings).run(shutdown.clone()),
    );

    // First result: published with one trigger.
    assert_eq!(next_trigger(&mut rx).await, "ebs");
    let first = store.get("ebs").expect("published");
    assert!(!first.stale, "{:?}", first.last_error_message);
    assert_eq!(first.volumes.count, 3);
    assert!(first.orphaned.checked, "PVs were listed");
    assert_eq!(first.orphaned.count, 0, "inside the default 1h grace period");
    assert_eq!(first.permissions.principal, "static keys from a Secret (not read by the operator)");
    assert!(first.permissions.not_verifiable.as_deref().is_some_and(|m| m.contains("kube-system/keys")));
    let conds = aws_conditions(&first);
    assert_eq!((conds[0].type_, conds[0].status), ("AwsReachable", "True"));
    assert!(metrics.encode().contains("hardened_csi_operator_ebs_volumes{state=\"available\"} 3"));

    // Two more refreshes with the same answer: nothing published, no trigger.
    wait_until("two more refreshes", || aws_requests(&metrics, "DescribeVolumes", "ok") >= 3).await;
    assert!(rx.try_recv().is_err(), "an unchanged result triggers nothing");
    assert_eq!(
        store.get("ebs").expect("still published").checked_at,
        first.checked_at,
        "the published status is not rewritten"
    );

    // A new volume of the cluster: one trigger, new figures.
    let tags = vec![
        Tag::builder().key("ebs.csi.aws.com/cluster").value("true").build(),
        Tag::builder().key("ebs.csi.aws.com/cluster-name").value("alpha").build(),
        Tag::builder().key("CSIVolumeName").value("pvc-a4").build(),
    ];
    moto.ec2()
        .await
        .create_volume()
        .availability_zone("us-east-1a")
        .size(7)
        .tag_specifications(
            TagSpecification::builder().resource_type(ResourceType::Volume).set_tags(Some(tags)).build(),
        )
        .send()
        .await
        .expect("volume created");
    assert_eq!(next_trigger(&mut rx).await, "ebs");
    assert_eq!(store.get("ebs").expect("published").volumes.count, 4);

    // Inventory disabled: the entry goes, with a trigger so the reconciler clears status.aws.
    spec.inventory.enabled = false;
    store.track("ebs", &spec);
    assert_eq!(next_trigger(&mut rx).await, "ebs");
    assert!(store.get("ebs").is_none());

    // Enabled again, then untracked (another driver took charge, or the spec became invalid).
    spec.inventory.enabled = true;
    store.track("ebs", &spec);
    assert_eq!(next_trigger(&mut rx).await, "ebs");
    assert!(store.get("ebs").is_some());
    store.untrack("ebs");
    assert_eq!(next_trigger(&mut rx).await, "ebs");
    assert!(store.get("ebs").is_none());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("poller stops within 5 s of cancellation")
        .expect("poller task did not panic");
}

#[tokio::test]
async fn poller_marks_an_outage_stale_once_and_recovers_without_repeating_itself() {
    let server = LocalApiServer::start().await.expect("local API server");
    let client = server.client();
    let mut spec = HardenedCsiDriverSpec::default();
    spec.aws.region = Some("us-east-1".into());
    spec.inventory.interval = "1s".parse().expect("duration");

    let fake = Arc::new(crate::fake::Fake::new(7, 2));
    let store = AwsStatusStore::default();
    store.track("ebs", &spec);
    let metrics = Arc::new(Metrics::new());
    let (tx, mut rx) = mpsc::channel(8);
    let settings = PollerSettings { http_client: Some(fake.client()), ..fast() };
    let shutdown = CancellationToken::new();
    let task =
        tokio::spawn(Poller::new(client, store.clone(), metrics.aws.clone(), tx, settings).run(shutdown.clone()));

    assert_eq!(next_trigger(&mut rx).await, "ebs");
    let good = store.get("ebs").expect("published");
    assert!(!good.stale && good.volumes.count == 7);

    // Throttled beyond the retries: published once as stale, old figures kept.
    fake.throttle.lock().expect("lock").insert("DescribeVolumes".into(), usize::MAX);
    assert_eq!(next_trigger(&mut rx).await, "ebs");
    let bad = store.get("ebs").expect("published");
    assert!(bad.stale);
    assert_eq!(bad.last_error.as_deref(), Some("RequestLimitExceeded"));
    assert_eq!(bad.volumes, good.volumes);
    assert_eq!(bad.last_success_at, good.last_success_at);
    assert_eq!(aws_conditions(&bad)[0].reason, "Throttled");
    let throttled = aws_requests(&metrics, "DescribeVolumes", "throttled");
    let attempts = moto::fast_retries().max_attempts as u64;
    wait_until("two more failing refreshes", || {
        aws_requests(&metrics, "DescribeVolumes", "throttled") >= throttled + 2 * attempts
    })
    .await;
    assert!(rx.try_recv().is_err(), "the same failure again triggers nothing");

    // AWS recovers: fresh figures, one trigger.
    fake.throttle.lock().expect("lock").clear();
    assert_eq!(next_trigger(&mut rx).await, "ebs");
    let recovered = store.get("ebs").expect("published");
    assert!(!recovered.stale && recovered.last_error.is_none());
    assert_ne!(recovered.last_success_at, good.last_success_at);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("poller stops").expect("no panic");
}

#[tokio::test]
async fn a_failed_refresh_is_retried_before_the_interval_and_a_success_waits_it() {
    let server = LocalApiServer::start().await.expect("local API server");
    let mut spec = HardenedCsiDriverSpec::default();
    spec.aws.region = Some("us-east-1".into());
    // An hour between refreshes: only the failure retry can bring the next one within the test.
    spec.inventory.interval = "1h".parse().expect("duration");
    let fake = Arc::new(crate::fake::Fake::new(7, 2));
    // AWS unavailable for the whole first refresh (every retry of its first call), then back.
    let attempts = moto::fast_retries().max_attempts as usize;
    fake.unavailable.lock().expect("lock").insert("DescribeAvailabilityZones".into(), attempts);
    let store = AwsStatusStore::default();
    store.track("ebs", &spec);
    let metrics = Arc::new(Metrics::new());
    let (tx, mut rx) = mpsc::channel(8);
    let settings =
        PollerSettings { http_client: Some(fake.client()), failure_retry: Duration::from_millis(200), ..fast() };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(
        Poller::new(server.client(), store.clone(), metrics.aws.clone(), tx, settings).run(shutdown.clone()),
    );

    assert_eq!(next_trigger(&mut rx).await, "ebs");
    let failed = store.get("ebs").expect("published");
    assert!(failed.stale, "the first refresh failed");
    assert_eq!(failed.last_error.as_deref(), Some("Unavailable"));
    // Retried long before the hour: fresh figures.
    assert_eq!(next_trigger(&mut rx).await, "ebs");
    let good = store.get("ebs").expect("published");
    assert!(!good.stale, "{:?}", good.last_error_message);
    assert_eq!(good.volumes.count, 7);
    // After a success the hour holds: no further DescribeVolumes while the poller keeps ticking.
    let described = aws_requests(&metrics, "DescribeVolumes", "ok");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(aws_requests(&metrics, "DescribeVolumes", "ok"), described, "no refresh before the interval");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("poller stops").expect("no panic");
}
