//! The Argo CD health check's test data (`deploy/gitops/argocd/csi.hardened.dev/HardenedCsiDriver`,
//! the layout of Argo CD's `resource_customizations`), generated from statuses the health rules
//! really produce: one object per reason, and `health_test.yaml` with the health Argo CD must
//! report for each. The test fails when the files are stale; `UPDATE_GITOPS_TESTDATA=1 cargo test
//! --lib gitops_testdata` (or `make gitops-testdata`) rewrites them.

use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::conditions::*;
use crate::crd::validate::validate;
use crate::crd::{HardenedCsiDriverSpec, HardenedCsiDriverStatus, ReplicaStatus, VolumesInUse};

const T0: &str = "2026-01-01T00:00:00Z";

fn at(offset_secs: i64) -> Timestamp {
    let t0: Timestamp = T0.parse().expect("timestamp");
    t0.checked_add(jiff::SignedDuration::from_secs(offset_secs)).expect("in range")
}

fn rollout(desired: i32, ready: i32, updated: i32) -> Rollout {
    Rollout { replicas: ReplicaStatus::new(desired, ready, updated, ready), observed: true }
}

fn base() -> Observed {
    Observed {
        generation: Some(1),
        snapshot_api: true,
        kubernetes_version: Some("1.33".into()),
        controller: Some(rollout(2, 2, 2)),
        node: Some(rollout(3, 3, 3)),
        pods: Some(Vec::new()),
        degraded_after: Duration::from_secs(300),
        images: Some(ImageSource {
            registry: "dhi.io".into(),
            mirror: String::new(),
            pull_secrets: vec!["dhi-pull".into()],
            namespace: "kube-system".into(),
        }),
        missing_pull_secrets: Some(Vec::new()),
        driver_image: Some("dhi.io/aws-ebs-csi-driver:1.64.0".into()),
        storage_classes: vec!["gp3".into()],
        ..Observed::default()
    }
}

fn pod(name: &str, node: &str, since: i64, failure: Option<(Failure, &str, &str)>) -> PodFacts {
    PodFacts {
        name: name.into(),
        workload: Workload::Node,
        node: Some(node.into()),
        ready: false,
        unready_since: Some(at(since)),
        failure: failure.map(|(kind, reason, message)| ContainerFailure {
            kind,
            container: "ebs-plugin".into(),
            image: "dhi.io/aws-ebs-csi-driver:1.64.0".into(),
            reason: reason.into(),
            message: message.into(),
        }),
        terminating: false,
        review_at: None,
    }
}

/// One scenario: the observations at each step (seconds after T0), the health Argo CD reports,
/// and the condition whose reason and message it shows (None: a fixed message).
struct Scenario {
    file: &'static str,
    steps: Vec<(i64, Observed)>,
    generation: i64,
    health: &'static str,
    decided_by: Option<&'static str>,
    message: Option<&'static str>,
}

fn pull_failing() -> Observed {
    let mut o = base();
    o.node = Some(rollout(3, 0, 3));
    o.pods = Some(
        ["a1b2c", "d3e4f", "g5h6i"]
            .iter()
            .enumerate()
            .map(|(i, s)| {
                pod(
                    &format!("ebs-csi-node-{s}"),
                    &format!("node-{i}"),
                    0,
                    Some((
                        Failure::ImagePull,
                        "ImagePullBackOff",
                        "failed to authorize: 401 Unauthorized (no pull secret for dhi.io)",
                    )),
                )
            })
            .collect(),
    );
    o
}

fn crash_looping() -> Observed {
    let mut o = base();
    o.node = Some(rollout(3, 2, 3));
    o.pods = Some(vec![pod(
        "ebs-csi-node-x7y8z",
        "node-2",
        0,
        Some((Failure::CrashLoop, "CrashLoopBackOff", "exited with code 1 (Error)")),
    )]);
    o
}

fn scenarios() -> Vec<Scenario> {
    let ready = base();
    let mut first_rollout = base();
    first_rollout.node = Some(rollout(3, 1, 3));
    first_rollout.pods =
        Some(vec![pod("ebs-csi-node-a1b2c", "node-1", 0, None), pod("ebs-csi-node-d3e4f", "node-2", 0, None)]);
    let mut joining = base();
    joining.node = Some(rollout(4, 3, 4));
    joining.pods = Some(vec![pod("ebs-csi-node-n3w4n", "node-3", 30, None)]);
    let mut stuck = base();
    stuck.node = Some(rollout(3, 2, 3));
    stuck.pods = Some(vec![pod("ebs-csi-node-p3nd1", "node-2", 0, None)]);
    // The spec errors are the validator's own words.
    let refused = |edit: fn(&mut HardenedCsiDriverSpec)| {
        let mut spec = HardenedCsiDriverSpec::default();
        edit(&mut spec);
        validate(&spec).expect_err("refused").to_string()
    };
    let mut invalid = base();
    invalid.spec_errors = Some(refused(|s| s.inventory.interval = "30s".parse().expect("duration")));
    let mut fips = base();
    fips.spec_errors = Some(refused(|s| {
        s.fips = true;
        s.aws.region = Some("eu-west-1".into());
    }));
    fips.fips_refused = true;
    let mut other = base();
    other.other_driver = Some("ebs-eu".into());
    other.controller = None;
    other.node = None;
    other.pods = None;
    let mut foreign = base();
    foreign.foreign = vec![
        "CSIDriver/ebs.csi.aws.com is managed by the EKS managed add-on aws-ebs-csi-driver: remove the add-on but keep \
         its objects (aws eks delete-addon --addon-name aws-ebs-csi-driver --preserve), then set spec.adopt: true."
            .into(),
    ];
    foreign.controller = None;
    foreign.node = None;
    let apply = |attempts| {
        let mut o = base();
        o.apply_errors = vec![
            "applying DaemonSet/kube-system/ebs-csi-node: admission webhook \"policy.example.com\" denied the request: \
             privileged containers are not allowed (403 Forbidden)"
                .into(),
        ];
        o.failed_attempts = attempts;
        o
    };
    let mut deleting = base();
    deleting.deletion_blocked_by = Some(VolumesInUse {
        csi_persistent_volumes: 3,
        volume_attachments: 1,
        examples: vec!["PersistentVolume/pvc-0a1b".into(), "VolumeAttachment/csi-9f8e".into()],
        ..VolumesInUse::default()
    });
    let mut new_generation = base();
    new_generation.generation = Some(2);
    new_generation.node = Some(rollout(3, 3, 1));
    if let Some(n) = new_generation.node.as_mut() {
        n.observed = false;
    }

    let stack = |mode, rollout| SnapshotStack {
        mode,
        controller_image: Some("dhi.io/snapshot-controller:8.6.0".into()),
        snapshotter_image: "dhi.io/csi-snapshotter:8.6.0".into(),
        crd_bundles: super::snapshots::CRD_NAMES.iter().map(|n| (n.to_string(), "v8.6.0".to_string())).collect(),
        rollout,
        ..SnapshotStack::default()
    };
    let mut snapshot_rolling_out = base();
    snapshot_rolling_out.snapshot_stack = Some(SnapshotStack {
        crds_applied: super::snapshots::CRD_NAMES.iter().map(|n| n.to_string()).collect(),
        ..stack(SnapshotMode::Ours, Some(rollout(2, 0, 2)))
    });
    let mut snapshot_foreign = base();
    snapshot_foreign.snapshot_stack = Some(SnapshotStack {
        controller_image: Some("registry.k8s.io/sig-storage/snapshot-controller:v6.3.3".into()),
        crd_bundles: Vec::new(),
        skew: vec![
            "the snapshot-controller runs v6.3.3 (registry.k8s.io/sig-storage/snapshot-controller:v6.3.3) but \
                    the csi-snapshotter sidecar 8.6.0 (dhi.io/csi-snapshotter:8.6.0): use one external-snapshotter \
                    release for both"
                .into(),
        ],
        ..stack(SnapshotMode::Foreign(vec!["Deployment kube-system/snapshot-controller (managed by eks)".into()]), None)
    });

    let s =
        |file, steps, health, decided_by| Scenario { file, steps, generation: 1, health, decided_by, message: None };
    vec![
        Scenario {
            file: "new",
            steps: Vec::new(),
            generation: 1,
            health: "Progressing",
            decided_by: None,
            message: Some("Waiting for the operator to observe generation 1"),
        },
        Scenario {
            file: "generation-not-observed",
            steps: vec![(0, ready.clone())],
            generation: 2,
            health: "Progressing",
            decided_by: None,
            message: Some("Waiting for the operator to observe generation 2"),
        },
        s("rolling-out", vec![(0, first_rollout)], "Progressing", Some(RECONCILING)),
        s("ready", vec![(0, ready.clone())], "Healthy", Some(READY)),
        s("node-joining", vec![(0, ready.clone()), (60, joining)], "Progressing", Some(RECONCILING)),
        Scenario {
            file: "spec-change-rolling-out",
            steps: vec![(0, ready.clone()), (60, new_generation)],
            generation: 2,
            health: "Progressing",
            decided_by: Some(RECONCILING),
            message: None,
        },
        s("image-pull-starting", vec![(0, pull_failing()), (30, pull_failing())], "Progressing", Some(RECONCILING)),
        s("image-pull-failed", vec![(0, pull_failing()), (400, pull_failing())], "Degraded", Some(STALLED)),
        s("crash-loop", vec![(0, crash_looping()), (400, crash_looping())], "Degraded", Some(STALLED)),
        s("pods-unavailable", vec![(400, stuck)], "Degraded", Some(DEGRADED)),
        s("invalid-spec", vec![(0, invalid)], "Degraded", Some(STALLED)),
        s("fips-region-unsupported", vec![(0, fips)], "Degraded", Some(STALLED)),
        s("another-driver-active", vec![(0, other)], "Degraded", Some(STALLED)),
        s("ownership-conflict", vec![(0, foreign)], "Degraded", Some(STALLED)),
        s("apply-retrying", vec![(0, ready.clone()), (5, apply(0))], "Progressing", Some(RECONCILING)),
        s("apply-failed", vec![(0, ready), (30, apply(STALL_AFTER_ATTEMPTS - 1))], "Degraded", Some(STALLED)),
        s("deletion-blocked", vec![(0, deleting)], "Degraded", Some(STALLED)),
        s("snapshot-controller-rolling-out", vec![(0, snapshot_rolling_out)], "Progressing", Some(RECONCILING)),
        s("snapshot-stack-foreign", vec![(0, snapshot_foreign)], "Healthy", Some(READY)),
    ]
}

fn object(generation: i64, status: Value) -> Value {
    json!({
        "apiVersion": "csi.hardened.dev/v1alpha1",
        "kind": "HardenedCsiDriver",
        "metadata": {"name": "ebs", "generation": generation, "creationTimestamp": T0},
        "spec": {"images": {"pullSecrets": ["dhi-pull"]}, "aws": {"region": "us-east-1", "clusterId": "prod-eks"}},
        "status": status,
    })
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/gitops/argocd/csi.hardened.dev/HardenedCsiDriver")
}

/// The files, by path under `dir()`.
fn generate() -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut tests = Vec::new();
    for sc in scenarios() {
        let mut status: Option<HardenedCsiDriverStatus> = None;
        for (offset, o) in &sc.steps {
            status = Some(build(status.as_ref(), o, &Time(at(*offset))));
        }
        let status_value = match &status {
            Some(s) => serde_json::to_value(s).expect("status serialises"),
            // What the API server returns for a new object: the CRD's status default.
            None => json!({"observedGeneration": -1}),
        };
        let message = match (sc.message, sc.decided_by) {
            (Some(m), _) => m.to_string(),
            (None, Some(t)) => {
                let c = status.as_ref().and_then(|s| s.condition(t)).expect("the deciding condition exists");
                assert_eq!(c.status, "True", "{}: {t} decides only when True", sc.file);
                format!("{}: {}", c.reason, c.message)
            }
            (None, None) => unreachable!("a scenario names its message"),
        };
        let obj = object(sc.generation, status_value);
        let text = format!(
            "# Generated by src/reconciler/gitops_testdata.rs from the operator's health rules; do not edit.\n{}",
            serde_yaml_ng::to_string(&obj).expect("yaml")
        );
        files.push((format!("testdata/{}.yaml", sc.file), text));
        tests.push(json!({
            "healthStatus": {"status": sc.health, "message": message},
            "inputPath": format!("testdata/{}.yaml", sc.file),
        }));
    }
    let tests = format!(
        "# Generated by src/reconciler/gitops_testdata.rs (one object per reason the operator reports); do not \
         edit.\n{}",
        serde_yaml_ng::to_string(&json!({"tests": tests})).expect("yaml")
    );
    files.push(("health_test.yaml".into(), tests));
    files
}

#[test]
fn argocd_testdata_is_current() {
    let update = std::env::var_os("UPDATE_GITOPS_TESTDATA").is_some();
    let mut stale = Vec::new();
    let files = generate();
    for (path, text) in &files {
        let full = dir().join(path);
        if std::fs::read_to_string(&full).ok().as_deref() != Some(text.as_str()) {
            if update {
                std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
                std::fs::write(&full, text).expect("write");
            } else {
                stale.push(path.clone());
            }
        }
    }
    let known: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
    for entry in std::fs::read_dir(dir().join("testdata")).expect("testdata dir").flatten() {
        let rel = format!("testdata/{}", entry.file_name().to_string_lossy());
        if !known.contains(&rel) {
            if update {
                std::fs::remove_file(entry.path()).expect("remove");
            } else {
                stale.push(format!("{rel} (no longer generated)"));
            }
        }
    }
    assert!(stale.is_empty(), "stale Argo CD test data, run `make gitops-testdata`: {stale:?}");
}

#[test]
fn every_reason_of_the_health_rules_has_an_object() {
    let text: String = generate().into_iter().map(|(_, t)| t).collect();
    for reason in [
        "RollingOut",
        "ImagePullFailed",
        "CrashLoopBackOff",
        "PodsUnavailable",
        "InvalidSpec",
        "FipsRegionUnsupported",
        "AnotherDriverActive",
        "OwnershipConflict",
        "ApplyRetrying",
        "ApplyFailed",
        "DeletionBlocked",
    ] {
        assert!(text.contains(&format!("reason: {reason}")), "no test object reports {reason}");
    }
}
