//! The SDK implementation against the in-process fake: pagination and the request budget,
//! throttling and 5xx retries, UnauthorizedOperation, FIPS endpoints.

use std::collections::HashSet;
use std::sync::Arc;

use hardened_csi_operator::aws::inventory::{self, PvReferences, RefreshParams, fixed_requests};
use hardened_csi_operator::aws::preflight;
use hardened_csi_operator::aws::sdk::{AwsSettings, SdkAws};
use hardened_csi_operator::crd::AwsStatus;
use hardened_csi_operator::reconciler::conditions::aws_conditions as conditions;
use hardened_csi_operator::runtime::metrics::Metrics;
use jiff::Timestamp;

use crate::fake::{self, Fake};
use crate::{aws_requests, sdk_on};

fn now() -> Timestamp {
    "2026-02-01T00:00:00Z".parse().expect("timestamp")
}

#[tokio::test]
async fn ten_thousand_volumes_and_five_thousand_snapshots_fit_the_request_budget() {
    let (v, s) = (10_000usize, 5_000usize);
    let fake = Arc::new(Fake::new(v, s));
    let metrics = Arc::new(Metrics::new());
    let api = sdk_on(&fake, &metrics).await;
    // Every other PV still exists: half of the available volumes are orphans.
    let pvs = PvReferences {
        names: (0..v).filter(|i| i % 20 != 0).map(|i| format!("pv-{i}")).collect(),
        ..PvReferences::default()
    };
    let params = RefreshParams { cluster_id: Some("prod".into()), verify_snapshots: true, ..Default::default() };

    let status = inventory::refresh(&api, &params, Some(&pvs), None, now()).await;

    assert!(!status.stale, "refresh failed: {:?} {:?}", status.last_error, status.last_error_message);
    // Two scope queries a kind: the cluster-name tag (3 in 4 here) and kubernetes.io/cluster (all).
    let named = |n: usize| (0..n).filter(|i| fake::has_cluster_name_tag(*i)).count();
    // +1: snapshot verification.
    let budget =
        named(v).div_ceil(500) + v.div_ceil(500) + named(s).div_ceil(1000) + s.div_ceil(1000) + fixed_requests() + 1;
    assert_eq!(budget, inventory::request_budget_scoped(&[named(v), v], &[named(s), s], true));
    let made = fake.requests().len();
    println!("aws_requests_per_refresh {made} requests (V={v}, S={s}; budget {budget})");
    assert_eq!(made, budget, "requests: {:?}", fake.requests().iter().map(|r| r.action.clone()).collect::<Vec<_>>());
    assert_eq!(metrics.aws.requests_total() as usize, made, "every request is counted once");
    assert_eq!(fake.count("DescribeVolumes"), 15 + 20);
    assert_eq!(fake.count("DescribeSnapshots"), 4 + 5);

    // Page sizes, server-side filters and the owner filter went out as specified.
    let tag_filters: HashSet<(String, String)> = fake
        .requests()
        .iter()
        .filter(|r| r.action == "DescribeVolumes")
        .inspect(|r| assert_eq!(r.params.get("MaxResults").map(String::as_str), Some("500")))
        .map(|r| (r.params["Filter.1.Name"].clone(), r.params["Filter.1.Value.1"].clone()))
        .collect();
    assert_eq!(
        tag_filters,
        [
            ("tag:ebs.csi.aws.com/cluster-name".to_string(), "prod".to_string()),
            ("tag:kubernetes.io/cluster/prod".to_string(), "owned".to_string())
        ]
        .into()
    );
    for r in fake.requests().iter().filter(|r| r.action == "DescribeSnapshots") {
        assert_eq!(r.params.get("MaxResults").map(String::as_str), Some("1000"));
        assert_eq!(r.params.get("Owner.1").map(String::as_str), Some("self"));
        assert_eq!(r.params.get("Filter.2.Name").map(String::as_str), Some("owner-id"));
        assert_eq!(r.params.get("Filter.2.Value.1").map(String::as_str), Some("123456789012"));
    }

    // Every figure, computed from the fake's own generator.
    assert_eq!(status.volumes.count, v as u64);
    assert_eq!(status.volumes.total_gib, (0..v).map(fake::volume_size).sum::<u64>());
    let available = (0..v).filter(|i| fake::volume_state(*i) == "available").count() as u64;
    assert_eq!(status.volumes.by_state.get("available"), Some(&available));
    assert_eq!(status.volumes.by_state.get("in-use"), Some(&(v as u64 - available)));
    assert_eq!(
        status.volumes.by_type.get("gp3"),
        Some(&((0..v).filter(|i| fake::volume_type(*i) == "gp3").count() as u64))
    );
    assert_eq!(
        status.volumes.by_zone.get("us-east-1b"),
        Some(&((0..v).filter(|i| fake::volume_zone(*i) == "us-east-1b").count() as u64))
    );
    let orphans: Vec<usize> = (0..v).filter(|i| fake::volume_state(*i) == "available" && i % 20 == 0).collect();
    assert_eq!(status.orphaned.count, orphans.len() as u64);
    assert_eq!(status.orphaned.volumes.len(), 20);
    assert_eq!(status.snapshots.count, s as u64);
    assert_eq!(
        status.snapshots.by_state.get("pending"),
        Some(&((0..s).filter(|j| fake::snapshot_state(*j) == "pending").count() as u64))
    );
    assert_eq!(status.snapshots.total_gib, 10 * s as u64);
    let ver = status.snapshots.verification.as_ref().expect("verification ran");
    assert!(ver.readable, "{ver:?}");
    assert_eq!(status.encryption_by_default, Some(true));
    assert_eq!(status.default_kms_key_id.as_deref(), Some("alias/aws/ebs"));
    assert_eq!(status.zones, ["us-east-1a", "us-east-1b", "us-east-1c"]);
    assert_eq!(status.permissions.checked.len(), preflight::DRIVER_ACTIONS.len());
    assert!(
        status.permissions.missing.is_empty() && status.permissions.unverified.is_empty(),
        "{:?}",
        status.permissions
    );
    assert_eq!(status.permissions.principal, "operator credentials");
    assert_eq!(status.permissions.principal_arn.as_deref(), Some(fake::CALLER_ARN));
    // DryRun probes aim at a real volume and snapshot of the cluster.
    let delete = fake.requests().into_iter().find(|r| r.action == "DeleteVolume").expect("DeleteVolume probed");
    assert_eq!(delete.params.get("DryRun").map(String::as_str), Some("true"));
    assert!(delete.params.get("VolumeId").is_some_and(|id| id.starts_with("vol-0000")), "{delete:?}");
}

#[tokio::test]
async fn throttling_then_success_is_retried_and_every_attempt_counted() {
    let fake = Arc::new(Fake::new(1200, 10));
    fake.throttle.lock().expect("lock").insert("DescribeVolumes".into(), 2);
    fake.unavailable.lock().expect("lock").insert("DescribeSnapshots".into(), 1);
    let metrics = Arc::new(Metrics::new());
    let api = sdk_on(&fake, &metrics).await;

    let status = inventory::refresh(&api, &RefreshParams::default(), None, None, now()).await;

    assert!(!status.stale && status.last_error.is_none(), "{:?}", status.last_error_message);
    assert_eq!(status.volumes.count, 1200);
    assert_eq!(fake.count("DescribeVolumes"), 3 + 2, "3 pages + 2 throttled retries");
    assert_eq!(fake.count("DescribeSnapshots"), 1 + 1, "1 page + 1 retried 503");
    assert_eq!(aws_requests(&metrics, "DescribeVolumes", "throttled"), 2);
    assert_eq!(aws_requests(&metrics, "DescribeVolumes", "ok"), 3);
    assert_eq!(aws_requests(&metrics, "DescribeSnapshots", "server_error"), 1);
    assert!(!status.orphaned.checked, "no PV list was given: orphans are not looked for");
}

#[tokio::test]
async fn throttling_to_failure_is_bounded_and_keeps_the_previous_figures_stale() {
    let fake = Arc::new(Fake::new(50, 5));
    let metrics = Arc::new(Metrics::new());
    let api = sdk_on(&fake, &metrics).await;
    let good = inventory::refresh(&api, &RefreshParams::default(), None, None, now()).await;
    assert!(!good.stale);
    let before = fake.requests().len();

    fake.throttle.lock().expect("lock").insert("DescribeVolumes".into(), usize::MAX);
    let later: Timestamp = "2026-02-01T00:05:00Z".parse().expect("timestamp");
    let bad = inventory::refresh(&api, &RefreshParams::default(), None, Some(&good), later).await;

    let attempts = crate::moto::fast_retries().max_attempts as usize;
    assert_eq!(fake.count("DescribeVolumes"), 1 + attempts, "one good page, then exactly max_attempts throttled tries");
    // GetCallerIdentity, zones, encryption, KMS key, then the throttled DescribeVolumes: nothing after.
    assert_eq!(fake.requests().len() - before, 4 + attempts);
    assert!(bad.stale);
    assert_eq!(bad.last_error.as_deref(), Some("RequestLimitExceeded"));
    assert!(
        bad.last_error_message.as_deref().is_some_and(|m| m.starts_with("DescribeVolumes:")),
        "{:?}",
        bad.last_error_message
    );
    assert_eq!(bad.last_success_at, good.last_success_at, "lastSuccessAt stays at the last good answer");
    assert_eq!(bad.checked_at.as_deref(), Some("2026-02-01T00:05:00Z"));
    assert_eq!(bad.volumes, good.volumes, "figures are kept");
    assert_eq!(bad.permissions, good.permissions);
    let c = conditions(&bad);
    assert_eq!((c[0].status, c[0].reason.as_str()), ("False", "Throttled"));
    assert!(!bad.same_result(&good), "a newly failing check is a change worth a reconcile");
}

#[tokio::test]
async fn unauthorized_dry_run_probes_are_reported_as_missing_actions() {
    let mut f = Fake::new(3, 1);
    f.deny = ["DeleteVolume", "AttachVolume", "LockSnapshot"].map(String::from).into();
    let fake = Arc::new(f);
    let metrics = Arc::new(Metrics::new());
    let api = sdk_on(&fake, &metrics).await;

    let status = inventory::refresh(&api, &RefreshParams::default(), None, None, now()).await;

    assert!(!status.stale, "{:?}", status.last_error_message);
    assert_eq!(status.permissions.missing, ["ec2:DeleteVolume", "ec2:AttachVolume", "ec2:LockSnapshot"]);
    assert_eq!(fake.count("DeleteVolume"), 1, "a denial is not retried");
    assert_eq!(aws_requests(&metrics, "DeleteVolume", "denied"), 1);
    assert_eq!(aws_requests(&metrics, "CreateVolume", "dry_run"), 1);
    let c = conditions(&status);
    assert_eq!((c[1].type_, c[1].status, c[1].reason.as_str()), ("AwsPermissions", "False", "MissingPermissions"));
    assert!(c[1].message.contains("ec2:DeleteVolume, ec2:AttachVolume, ec2:LockSnapshot"), "{}", c[1].message);
    // The tagged CreateVolume probe carries the driver's tags.
    let create = fake.requests().into_iter().find(|r| r.action == "CreateVolume").expect("CreateVolume probed");
    let tags: Vec<&String> = create
        .params
        .iter()
        .filter(|(k, _)| k.starts_with("TagSpecification.1.Tag.") && k.ends_with(".Key"))
        .map(|(_, v)| v)
        .collect();
    assert!(
        tags.iter().any(|k| *k == "ebs.csi.aws.com/cluster") && tags.iter().any(|k| *k == "CSIVolumeName"),
        "{create:?}"
    );
}

#[tokio::test]
async fn a_denied_describe_fails_the_refresh_but_names_the_missing_action() {
    let mut f = Fake::new(3, 1);
    f.deny = ["DescribeVolumes".to_string()].into();
    let fake = Arc::new(f);
    let metrics = Arc::new(Metrics::new());
    let api = sdk_on(&fake, &metrics).await;

    let status = inventory::refresh(&api, &RefreshParams::default(), None, None, now()).await;

    assert!(status.stale);
    assert_eq!(status.last_error.as_deref(), Some("UnauthorizedOperation"));
    assert_eq!(status.permissions.missing, ["ec2:DescribeVolumes"]);
    assert_eq!(status.permissions.checked, ["ec2:DescribeAvailabilityZones", "ec2:DescribeVolumes"]);
    let c = conditions(&status);
    assert_eq!((c[0].status, c[0].reason.as_str()), ("False", "AccessDenied"));
    assert_eq!(c[1].status, "False");
}

#[tokio::test]
async fn fips_mode_sends_the_operators_calls_to_fips_endpoints() {
    let fake = Arc::new(Fake::new(1, 1));
    let metrics = Arc::new(Metrics::new());
    let api = SdkAws::new(AwsSettings { fips: true, ..crate::sdk_settings(&fake, &metrics) })
        .await
        .expect("SDK client builds");

    let status = inventory::refresh(&api, &RefreshParams::default(), None, None, now()).await;

    assert!(!status.stale, "{:?}", status.last_error_message);
    assert!(status.fips_endpoints);
    let hosts: HashSet<String> = fake.requests().into_iter().map(|r| r.host).collect();
    assert!(hosts.contains("ec2-fips.us-east-1.amazonaws.com"), "{hosts:?}");
    assert!(hosts.contains("sts-fips.us-east-1.amazonaws.com"), "{hosts:?}");
    assert!(hosts.iter().all(|h| h.contains("fips")), "every call on a FIPS endpoint: {hosts:?}");
}

#[tokio::test]
async fn an_unchanged_answer_is_the_same_result_and_a_changed_one_is_not() {
    let fake = Arc::new(Fake::new(20, 2));
    let metrics = Arc::new(Metrics::new());
    let api = sdk_on(&fake, &metrics).await;
    let a = inventory::refresh(&api, &RefreshParams::default(), None, None, now()).await;
    let b = inventory::refresh(
        &api,
        &RefreshParams::default(),
        None,
        Some(&a),
        "2026-02-01T00:05:00Z".parse().expect("ts"),
    )
    .await;
    assert_ne!(a.checked_at, b.checked_at);
    assert!(a.same_result(&b));
    let fake2 = Arc::new(Fake::new(21, 2));
    let api2 = sdk_on(&fake2, &metrics).await;
    let c: AwsStatus = inventory::refresh(&api2, &RefreshParams::default(), None, Some(&b), now()).await;
    assert!(!b.same_result(&c));
}

#[tokio::test]
async fn account_settings_and_caller_identity_the_role_may_lack_are_unknown_not_fatal() {
    let mut f = Fake::new(4, 1);
    f.deny = ["GetEbsEncryptionByDefault", "GetEbsDefaultKmsKeyId", "GetCallerIdentity"].map(String::from).into();
    let fake = Arc::new(f);
    let metrics = Arc::new(Metrics::new());
    let api = sdk_on(&fake, &metrics).await;

    let status = inventory::refresh(&api, &RefreshParams::default(), None, None, now()).await;

    assert!(!status.stale, "{:?}", status.last_error_message);
    assert_eq!(status.encryption_by_default, None);
    assert_eq!(status.default_kms_key_id, None);
    assert_eq!(status.permissions.principal_arn, None);
    assert_eq!(status.volumes.count, 4);
    assert!(status.permissions.missing.is_empty(), "not actions of the driver: {:?}", status.permissions.missing);
}

#[tokio::test]
async fn a_server_repeating_its_page_token_cannot_make_the_refresh_loop() {
    let mut f = Fake::new(2000, 1);
    f.repeat_token = true;
    let fake = Arc::new(f);
    let metrics = Arc::new(Metrics::new());
    let api = sdk_on(&fake, &metrics).await;

    let status = inventory::refresh(&api, &RefreshParams::default(), None, None, now()).await;

    assert!(status.stale);
    assert_eq!(status.last_error.as_deref(), Some("InvalidResponse"));
    assert_eq!(fake.count("DescribeVolumes"), 2, "first page, then the page naming itself: stop");
}

/// An endpoint that performs a DryRun call (not EC2, or a proxy dropping the flag) must never
/// receive a destructive probe: the canary (CreateVolume) comes first and stops everything.
#[tokio::test]
async fn an_endpoint_that_performs_a_dry_run_stops_every_probe_after_the_canary() {
    let mut f = Fake::new(5, 2);
    f.ignore_dry_run = ["CreateVolume".to_string()].into();
    let fake = Arc::new(f);
    let metrics = Arc::new(Metrics::new());
    let api = sdk_on(&fake, &metrics).await;

    let status = inventory::refresh(&api, &RefreshParams::default(), None, None, now()).await;

    assert!(!status.stale, "{:?}", status.last_error_message);
    let sent: Vec<String> = fake.requests().into_iter().map(|r| r.action).collect();
    let create = sent.iter().position(|a| a == "CreateVolume").expect("the canary was sent");
    for destructive in ["DeleteVolume", "DetachVolume", "AttachVolume", "ModifyVolume", "DeleteSnapshot", "DeleteTags"]
    {
        assert!(!sent.contains(&destructive.to_string()), "{destructive} sent after a performed DryRun: {sent:?}");
    }
    assert_eq!(sent.len(), create + 1, "nothing after the canary: {sent:?}");
    let stopped = status.permissions.probes_stopped.as_deref().expect("probing stopped");
    assert!(stopped.contains("performed CreateVolume") && stopped.contains("vol-0performed000000"), "{stopped}");
    assert!(status.permissions.unverified.iter().any(|u| u.action == "ec2:DeleteVolume"));
    let c = conditions(&status);
    assert_eq!((c[1].status, c[1].reason.as_str()), ("Unknown", "ProbesStopped"));
}

#[tokio::test]
async fn destructive_probes_wait_for_a_canary_that_answered_dry_run() {
    let mut f = Fake::new(5, 2);
    f.deny = ["CreateVolume", "CreateSnapshot"].map(String::from).into();
    let fake = Arc::new(f);
    let metrics = Arc::new(Metrics::new());
    let api = sdk_on(&fake, &metrics).await;

    let status = inventory::refresh(&api, &RefreshParams::default(), None, None, now()).await;

    assert!(!status.stale, "{:?}", status.last_error_message);
    assert_eq!(status.permissions.missing, ["ec2:CreateVolume", "ec2:CreateSnapshot", "ec2:CreateTags"]);
    assert_eq!(fake.count("DeleteVolume") + fake.count("DetachVolume") + fake.count("AttachVolume"), 0);
    assert!(status.permissions.probes_stopped.as_deref().is_some_and(|m| m.contains("no DryRun canary")));
    let u = status.permissions.unverified.iter().find(|u| u.action == "ec2:DeleteVolume").expect("unverified");
    assert!(u.reason.contains("destructive"), "{}", u.reason);
}

/// Probes aim at a volume attached to nothing: the newest volume of the fake is in use.
#[tokio::test]
async fn probes_never_target_a_volume_in_use() {
    let fake = Arc::new(Fake::new(25, 2));
    let metrics = Arc::new(Metrics::new());
    let api = sdk_on(&fake, &metrics).await;

    let status = inventory::refresh(&api, &RefreshParams::default(), None, None, now()).await;

    assert!(!status.stale, "{:?}", status.last_error_message);
    let available: HashSet<String> =
        (0..25).filter(|i| fake::volume_state(*i) == "available").map(|i| format!("vol-{i:017x}")).collect();
    for r in fake.requests() {
        if let Some(id) = r.params.get("VolumeId").or_else(|| r.params.get("SourceVolumeId")) {
            assert!(available.contains(id), "{} aimed at {id}, which is in use", r.action);
        }
    }
    assert!(fake.count("DeleteVolume") == 1 && fake.count("ModifyVolume") == 1);
}

/// AttachVolume was probed against a placeholder instance, so EC2 never decided it: it now aims
/// at an instance of the cluster, from a Node's providerID, in the volume's zone.
#[tokio::test]
async fn attach_volume_is_probed_on_an_instance_of_the_cluster() {
    let fake = Arc::new(Fake::new(11, 2));
    let metrics = Arc::new(Metrics::new());
    let api = sdk_on(&fake, &metrics).await;
    let nodes = [
        ("ip-a".to_string(), inventory::instance_of("aws:///us-east-1a/i-0aaaaaaaaaaaaaaaa")),
        ("ip-b".to_string(), inventory::instance_of("aws:///us-east-1b/i-0bbbbbbbbbbbbbbbb")),
    ]
    .into();
    let cluster = inventory::ClusterView { nodes: Some(nodes), ..Default::default() };

    let status = inventory::refresh_with(
        &api,
        &RefreshParams::default(),
        &cluster,
        None,
        &mut inventory::Memory::default(),
        now(),
    )
    .await;

    assert!(!status.stale, "{:?}", status.last_error_message);
    let attach = fake.requests().into_iter().find(|r| r.action == "AttachVolume").expect("AttachVolume probed");
    // Volume 10 is the newest available one (volumes 0 and 10 are available; 10 is in us-east-1b).
    assert_eq!(attach.params.get("VolumeId").map(String::as_str), Some("vol-0000000000000000a"));
    assert_eq!(attach.params.get("InstanceId").map(String::as_str), Some("i-0bbbbbbbbbbbbbbbb"));
    assert!(status.permissions.unverified.is_empty(), "{:?}", status.permissions.unverified);
}
