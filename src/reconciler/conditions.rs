//! Status as a pure function of what one reconcile observed, the previous status and the time.
//! Conditions keep their `lastTransitionTime` unless their status changes, so an unchanged world
//! yields an identical status and the reconciler writes nothing.
//!
//! The health rules (README "Health"), decided here and nowhere else:
//! - `Stalled=True` when nothing progresses without a person: an invalid spec (or a FIPS region
//!   refused), another HardenedCsiDriver in charge, foreign objects in the way, applying that
//!   keeps failing ([`STALL_AFTER_ATTEMPTS`] reconciles in a row), deletion waiting on volumes, or
//!   driver pods that have failed to pull or kept crashing for `spec.health.degradedAfter`.
//! - `Reconciling=True` (and `Progressing=True`) while the operator works towards the spec and is
//!   not stalled: a rollout or a node join in progress, pods starting, failures still within the
//!   grace period, an apply being retried. kstatus (Helm `--wait`, Flux) reads InProgress.
//! - `Degraded=True` only for what persists: every Stalled cause, and pods unready for longer
//!   than `degradedAfter`. A node joining or a rolling update is never Degraded by itself.
//! - `Ready=True` once everything is rolled out. Once Ready, it stays True through a rollout or a
//!   node join while the controller has an available replica and no pod has been unready or
//!   failing for `degradedAfter`: one new node's pod starting does not drop it. A first install
//!   is Ready only when fully rolled out.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::aws::api::{ErrorClass, classify};
use crate::crd::{AwsStatus, HardenedCsiDriverStatus, ReplicaStatus, RetagReport, VolumesInUse};

pub use crate::crd::conditions::*;

/// Consecutive failed reconciles with apply errors after which the driver is Stalled.
pub const STALL_AFTER_ATTEMPTS: u32 = 3;
/// The grace period when the spec cannot be read (it is invalid): the spec's default.
pub const DEFAULT_DEGRADED_AFTER: Duration = Duration::from_secs(300);
/// At most this many pods are named in one message.
const PODS_NAMED: usize = 3;

/// One condition as decided by the reconciler, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

impl Cond {
    pub fn new(type_: &'static str, ok: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self { type_, status: if ok { "True" } else { "False" }, reason: reason.into(), message: message.into() }
    }

    pub fn unknown(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self { type_, status: "Unknown", reason: reason.into(), message: message.into() }
    }
}

/// A workload's rollout as read from its status.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Rollout {
    pub replicas: ReplicaStatus,
    /// The workload controller reported on the generation the operator last applied.
    pub observed: bool,
}

impl Rollout {
    /// Every desired pod updated, ready and available, for the current generation.
    pub fn complete(&self) -> bool {
        let r = &self.replicas;
        self.observed && r.updated >= r.desired && r.ready >= r.desired && r.available >= r.desired
    }
}

/// Which of the driver's workloads a pod belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    Controller,
    Node,
}

/// What keeps a container from running, most actionable first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// ErrImagePull, ImagePullBackOff, InvalidImageName, ErrImageNeverPull.
    ImagePull,
    /// CrashLoopBackOff, or restarted after a crash and not yet running steadily.
    CrashLoop,
    /// CreateContainerConfigError, CreateContainerError, RunContainerError.
    CannotStart,
}

impl Failure {
    /// The condition reason.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::ImagePull => "ImagePullFailed",
            Failure::CrashLoop => "CrashLoopBackOff",
            Failure::CannotStart => "ContainerCannotStart",
        }
    }
}

/// One failing container of a pod, in the kubelet's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerFailure {
    pub kind: Failure,
    pub container: String,
    pub image: String,
    /// The kubelet's reason: ErrImagePull, ImagePullBackOff, CrashLoopBackOff, ...
    pub reason: String,
    /// The kubelet's message, without the parts that change on every retry.
    pub message: String,
}

/// One driver pod as the operator saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    pub name: String,
    pub workload: Workload,
    pub node: Option<String>,
    pub ready: bool,
    /// Since when it is not ready: its Ready condition's transition, else its creation.
    pub unready_since: Option<Timestamp>,
    pub failure: Option<ContainerFailure>,
    pub terminating: bool,
    /// When this pod's classification changes by itself (a restarted container becomes steady).
    pub review_at: Option<Timestamp>,
}

/// Where the images come from, for the messages about pulls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSource {
    pub registry: String,
    pub mirror: String,
    pub pull_secrets: Vec<String>,
    pub namespace: String,
}

/// Whose snapshot stack the cluster runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SnapshotMode {
    /// The operator's: it applies the CRDs where absent and runs the snapshot-controller.
    #[default]
    Ours,
    /// Another installation's, with what was found (CRDs not labelled ours, a Deployment).
    Foreign(Vec<String>),
}

/// The snapshot stack as one reconcile saw it (`spec.snapshots.controller.enabled`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotStack {
    pub mode: SnapshotMode,
    /// The snapshot-controller image running (ours as rendered, or the other installation's).
    pub controller_image: Option<String>,
    /// The csi-snapshotter sidecar image of the driver controller.
    pub snapshotter_image: String,
    /// The bundle (external-snapshotter release) of each CRD that says it.
    pub crd_bundles: Vec<(String, String)>,
    /// CRDs this reconcile applied.
    pub crds_applied: Vec<String>,
    /// Version skew found, one sentence each.
    pub skew: Vec<String>,
    /// Our snapshot-controller's rollout (Ours only).
    pub rollout: Option<Rollout>,
}

/// Everything one reconcile learnt, from which the status follows.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The generation this reconcile acted on (the object it read).
    pub generation: Option<i64>,
    pub spec_errors: Option<String>,
    /// What the install-time guardrails refuse (driver namespace, registry allowlist).
    pub install_refusals: Vec<String>,
    /// What is missing from the driver's RBAC the chart installs.
    pub driver_rbac: Vec<String>,
    /// The spec asks for FIPS in a region without FIPS endpoints (one of the spec errors).
    pub fips_refused: bool,
    pub other_driver: Option<String>,
    pub foreign: Vec<String>,
    /// Classes of the spec held back because an object of that name is someone else's (and the
    /// spec does not adopt it): each with its manager and what to do. The rest is applied.
    pub foreign_classes: Vec<String>,
    /// Objects of an adopted Helm release the operator does not render, each with what to do.
    pub release_leftovers: Vec<String>,
    pub apply_errors: Vec<String>,
    /// Reconciles of this driver that failed in a row before this one.
    pub failed_attempts: u32,
    pub snapshot_api: bool,
    /// The snapshot stack, when `spec.snapshots.controller.enabled`.
    pub snapshot_stack: Option<SnapshotStack>,
    /// `spec.snapshots.controller.enabled` is false (a previous SnapshotController condition then
    /// says the CRDs are kept).
    pub snapshot_controller_disabled: bool,
    /// `spec.metrics.serviceMonitor` is enabled: whether the cluster serves ServiceMonitors, and
    /// the ServiceMonitors rendered. None when they are not asked for.
    pub service_monitors: Option<(bool, Vec<String>)>,
    /// The storage.k8s.io version serving VolumeAttributesClass, None when none does.
    pub volume_attributes_class_api: Option<&'static str>,
    /// Classes the spec asks for, those rendered, and those kept after removal (with their users).
    pub requested_volume_attributes_classes: usize,
    pub volume_attributes_classes: Vec<String>,
    pub kept_volume_attributes_classes: Vec<String>,
    pub kubernetes_version: Option<String>,
    pub controller: Option<Rollout>,
    pub node: Option<Rollout>,
    /// The driver's pods; None when they could not be read (see `pod_watch_error`).
    pub pods: Option<Vec<PodFacts>>,
    pub pod_watch_error: Option<String>,
    /// `spec.health.degradedAfter`; zero means the default.
    pub degraded_after: Duration,
    pub images: Option<ImageSource>,
    /// None: not checked (no permission or no pull secrets); Some(list): the missing ones.
    pub missing_pull_secrets: Option<Vec<String>>,
    pub pull_secret_check_error: Option<String>,
    pub driver_image: Option<String>,
    /// The release the applied children run (`spec.version` or the default).
    pub version: Option<String>,
    pub storage_classes: Vec<String>,
    pub volume_snapshot_classes: Vec<String>,
    /// Deletion waits for these volumes.
    pub deletion_blocked_by: Option<VolumesInUse>,
    /// The AWS poller's facts for this driver; None while the inventory is off or not yet run.
    pub aws: Option<AwsStatus>,
}

impl Observed {
    fn grace(&self) -> Duration {
        if self.degraded_after.is_zero() { DEFAULT_DEGRADED_AFTER } else { self.degraded_after }
    }
}

/// What the health rules conclude, before they become conditions.
struct Health {
    /// Stalled: reason and message.
    stalled: Option<(String, String)>,
    /// Failing pods (pulls, crashes), and since when PodsHealthy has been False.
    failing: Vec<PodFacts>,
    failing_since: Timestamp,
    failing_persists: bool,
    /// Pods unready (not failing) for longer than the grace period.
    stuck: Vec<PodFacts>,
    rolled_out: bool,
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or_default()
}

/// The previous status's condition `type_`, when it had `status`.
fn previous<'a>(old: Option<&'a HardenedCsiDriverStatus>, type_: &str, status: &str) -> Option<&'a Condition> {
    old.and_then(|s| s.condition(type_)).filter(|c| c.status == status)
}

fn live_pods(o: &Observed) -> impl Iterator<Item = &PodFacts> {
    o.pods.iter().flatten().filter(|p| !p.terminating)
}

fn assess(o: &Observed, old: Option<&HardenedCsiDriverStatus>, now: Timestamp) -> Health {
    let grace = o.grace();
    let failing: Vec<PodFacts> = live_pods(o).filter(|p| p.failure.is_some()).cloned().collect();
    // Pods recovering from a failure (a pull retried, a container restarting) are still failing
    // until they are ready, so one retry does not restart the clock.
    let recovering =
        failing.is_empty() && previous(old, PODS_HEALTHY, "False").is_some() && live_pods(o).any(|p| !p.ready);
    let failing_since = previous(old, PODS_HEALTHY, "False").map(|c| c.last_transition_time.0).unwrap_or(now);
    let failing_persists = (!failing.is_empty() || recovering) && elapsed(failing_since, now) >= grace;
    let stuck: Vec<PodFacts> = live_pods(o)
        .filter(|p| !p.ready && p.failure.is_none())
        .filter(|p| p.unready_since.is_some_and(|t| elapsed(t, now) >= grace))
        .cloned()
        .collect();
    let snapshot_controller_done =
        o.snapshot_stack.as_ref().and_then(|s| s.rollout.as_ref()).is_none_or(Rollout::complete);
    let rolled_out = o.controller.as_ref().is_some_and(Rollout::complete)
        && o.node.as_ref().is_some_and(Rollout::complete)
        && snapshot_controller_done;

    let stalled = if let Some(e) = &o.spec_errors {
        let reason = if o.fips_refused { "FipsRegionUnsupported" } else { "InvalidSpec" };
        Some((reason.to_string(), format!("Fix the spec; nothing running was changed: {e}")))
    } else if !o.install_refusals.is_empty() {
        Some((
            "NotAllowedByInstallation".to_string(),
            format!(
                "This installation of the operator does not allow this spec; nothing running was changed: {}",
                o.install_refusals.join("; ")
            ),
        ))
    } else if let Some(first) = &o.other_driver {
        Some((
            "AnotherDriverActive".to_string(),
            format!(
                "HardenedCsiDriver {first:?} already manages the EBS CSI driver (one per cluster); delete this one or \
                {first:?} first."
            ),
        ))
    } else if !o.foreign.is_empty() {
        Some((
            "OwnershipConflict".to_string(),
            format!(
                "Existing objects not created by this operator block the install; nothing was changed. {}",
                o.foreign.join(" ")
            ),
        ))
    } else if !o.apply_errors.is_empty() && o.failed_attempts + 1 >= STALL_AFTER_ATTEMPTS {
        Some((
            "ApplyFailed".to_string(),
            format!(
                "Applying the driver's objects failed {STALL_AFTER_ATTEMPTS} times in a row or more (retried with \
                back-off): {}",
                o.apply_errors.join("; ")
            ),
        ))
    } else if !o.driver_rbac.is_empty() {
        Some((
            "DriverRbacIncomplete".to_string(),
            format!(
                "The driver's RBAC, which the chart installs (the operator never writes RBAC), is incomplete: {}. \
                Install or upgrade the operator's chart (or kustomize base) for this driver version.",
                o.driver_rbac.join("; ")
            ),
        ))
    } else if let Some(v) = &o.deletion_blocked_by {
        Some((
            "DeletionBlocked".to_string(),
            format!("Deletion waits for {} that need the driver; see DeletionBlocked.", v.summary()),
        ))
    } else if failing_persists {
        let reason = failing.first().and_then(|p| p.failure.as_ref()).map(|f| f.kind.reason());
        let old = previous(old, PODS_HEALTHY, "False");
        let reason = reason.map(str::to_string).or_else(|| old.map(|c| c.reason.clone())).unwrap_or_default();
        let message = if failing.is_empty() {
            old.map(|c| c.message.clone()).unwrap_or_default()
        } else {
            failing_message(o, &failing)
        };
        Some((reason, format!("For more than {}: {message}", show(grace))))
    } else {
        None
    };
    Health { stalled, failing, failing_since, failing_persists, stuck, rolled_out }
}

/// `5m`, `90s`, `1h30m`.
fn show(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

fn pod_names(pods: &[&PodFacts]) -> String {
    let mut names: Vec<String> = pods
        .iter()
        .take(PODS_NAMED)
        .map(|p| match &p.node {
            Some(n) => format!("{} (node {n})", p.name),
            None => p.name.clone(),
        })
        .collect();
    if pods.len() > PODS_NAMED {
        names.push(format!("and {} more", pods.len() - PODS_NAMED));
    }
    names.join(", ")
}

/// Which pods fail, grouped by image and kubelet message, and what to check.
fn failing_message(o: &Observed, failing: &[PodFacts]) -> String {
    let mut groups: Vec<(&ContainerFailure, Vec<&PodFacts>)> = Vec::new();
    for p in failing {
        let Some(f) = &p.failure else { continue };
        match groups.iter_mut().find(|(g, _)| g.kind == f.kind && g.image == f.image && g.message == f.message) {
            Some((_, pods)) => pods.push(p),
            None => groups.push((f, vec![p])),
        }
    }
    groups.sort_by(|a, b| a.0.kind.cmp(&b.0.kind).then(a.0.image.cmp(&b.0.image)));
    let mut parts = Vec::new();
    for (f, pods) in &groups {
        let who = pod_names(pods);
        let what = match f.kind {
            Failure::ImagePull => format!("{who}: container {} cannot pull {} ({})", f.container, f.image, f.reason),
            Failure::CrashLoop => format!("{who}: container {} ({}) keeps crashing", f.container, f.image),
            Failure::CannotStart => {
                format!("{who}: container {} ({}) cannot start ({})", f.container, f.image, f.reason)
            }
        };
        parts.push(if f.message.is_empty() { format!("{what}.") } else { format!("{what}: {}.", f.message) });
    }
    if groups.iter().any(|(f, _)| f.kind == Failure::ImagePull) {
        parts.push(pull_hint(o));
    }
    if groups.iter().any(|(f, _)| f.kind == Failure::CrashLoop) {
        parts.push(
            "Check the container's log (kubectl logs --previous) and the driver's AWS identity and region.".to_string(),
        );
    }
    parts.join(" ")
}

fn pull_hint(o: &Observed) -> String {
    let Some(i) = &o.images else {
        return "Check the image pull Secret and the registry.".to_string();
    };
    let registry = if i.mirror.is_empty() { i.registry.as_str() } else { i.mirror.as_str() };
    let host = registry.split('/').next().unwrap_or(registry);
    let secrets = if i.pull_secrets.is_empty() {
        format!(
            "spec.images.pullSecrets is empty: create a docker-registry Secret for {host} in {} and list it there \
            (kubectl -n {} create secret docker-registry dhi-pull --docker-server={host} ...)",
            i.namespace, i.namespace
        )
    } else {
        format!(
            "check that the pull Secret(s) {} in {} exist and hold a login for {host} with access to the images",
            i.pull_secrets.join(", "),
            i.namespace
        )
    };
    let mirror = if i.mirror.is_empty() {
        "or set spec.images.mirror to a registry that mirrors them".to_string()
    } else {
        format!("and that the mirror {} holds every image as dhi-<repository>", i.mirror)
    };
    format!("To fix: {secrets}, {mirror}.")
}

fn rollout_message(o: &Observed) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &o.controller {
        let r = &c.replicas;
        parts.push(format!("ebs-csi-controller {}/{} ready, {} updated", r.ready, r.desired, r.updated));
    }
    if let Some(n) = &o.node {
        let r = &n.replicas;
        parts.push(format!("ebs-csi-node {}/{} ready, {} updated", r.ready, r.desired, r.updated));
    }
    if let Some(r) = o.snapshot_stack.as_ref().and_then(|s| s.rollout.as_ref()) {
        let r = &r.replicas;
        parts.push(format!("snapshot-controller {}/{} ready, {} updated", r.ready, r.desired, r.updated));
    }
    if parts.is_empty() { "waiting for the controller and node workloads".to_string() } else { parts.join("; ") }
}

/// SnapshotController and SnapshotVersionSkew, while `spec.snapshots.controller` is on (and
/// SnapshotController once more after it is turned off, to say the CRDs are kept).
fn snapshot_controller(o: &Observed, old: Option<&HardenedCsiDriverStatus>) -> Vec<Cond> {
    let Some(s) = &o.snapshot_stack else {
        let had = old.and_then(|st| st.condition(SNAPSHOT_CONTROLLER));
        return match had {
            Some(_) if o.snapshot_controller_disabled => vec![Cond::new(
                SNAPSHOT_CONTROLLER,
                false,
                "Disabled",
                "spec.snapshots.controller is off: the operator's snapshot-controller is removed. The \
                snapshot.storage.k8s.io CRDs are kept (the operator never deletes them: that would delete every \
                VolumeSnapshot and VolumeSnapshotContent); remove them yourself once no snapshot needs them.",
            )],
            _ => Vec::new(),
        };
    };
    let mut out = Vec::new();
    out.push(match &s.mode {
        SnapshotMode::Foreign(found) => Cond::new(
            SNAPSHOT_CONTROLLER,
            true,
            "Foreign",
            format!(
                "Another installation provides the snapshot stack, which the driver uses; the operator installs no \
                second snapshot-controller and no CRD. Found: {}.",
                found.join(", ")
            ),
        ),
        SnapshotMode::Ours => {
            let image = s.controller_image.as_deref().unwrap_or_default();
            let crds = if s.crds_applied.is_empty() {
                String::new()
            } else {
                format!(" Applied the snapshot CRDs {}.", s.crds_applied.join(", "))
            };
            match &s.rollout {
                Some(r) if r.complete() => Cond::new(
                    SNAPSHOT_CONTROLLER,
                    true,
                    "Installed",
                    format!(
                        "snapshot-controller ({image}) {}/{} ready; the snapshot.storage.k8s.io CRDs are the \
                        operator's (external-snapshotter v8.6.0).{crds}",
                        r.replicas.ready, r.replicas.desired
                    ),
                ),
                r => {
                    let r = r.clone().unwrap_or_default().replicas;
                    Cond::new(
                        SNAPSHOT_CONTROLLER,
                        false,
                        "RollingOut",
                        format!(
                            "snapshot-controller ({image}) {}/{} ready, {} updated; waiting for the rollout.{crds}",
                            r.ready, r.desired, r.updated
                        ),
                    )
                }
            }
        }
    });
    out.push(if s.skew.is_empty() {
        Cond::new(
            SNAPSHOT_VERSION_SKEW,
            false,
            "Matched",
            "The snapshot CRDs, snapshot-controller and csi-snapshotter sidecar are of one external-snapshotter major \
            release.",
        )
    } else {
        Cond::new(SNAPSHOT_VERSION_SKEW, true, "Skew", format!("{}.", s.skew.join("; ")))
    });
    out
}

/// Decides the conditions from what was observed, the previous status and the time.
pub fn conditions(o: &Observed, old: Option<&HardenedCsiDriverStatus>, now: Timestamp) -> Vec<Cond> {
    let mut out = Vec::new();
    let grace = o.grace();
    let h = assess(o, old, now);

    out.push(match &o.spec_errors {
        None if !o.install_refusals.is_empty() => Cond::new(
            SPEC_VALID,
            false,
            "NotAllowedByInstallation",
            format!(
                "This installation of the operator does not allow this spec; nothing running was changed: {}",
                o.install_refusals.join("; ")
            ),
        ),
        None => Cond::new(SPEC_VALID, true, "Valid", "The spec passes every rule."),
        Some(e) => Cond::new(
            SPEC_VALID,
            false,
            if o.fips_refused { "FipsRegionUnsupported" } else { "InvalidSpec" },
            format!("Fix the spec; nothing running was changed: {e}"),
        ),
    });
    out.push(match &o.other_driver {
        None => Cond::new(ACTIVE, true, "InCharge", "This HardenedCsiDriver manages the cluster's EBS CSI driver."),
        Some(first) => Cond::new(
            ACTIVE,
            false,
            "AnotherDriverActive",
            format!(
                "HardenedCsiDriver {first:?} already manages the EBS CSI driver (one per cluster); delete this \
                one or {first:?} first."
            ),
        ),
    });
    out.push(if !o.foreign.is_empty() {
        Cond::new(
            OWNERSHIP,
            true,
            "ForeignObjects",
            format!(
                "Existing objects not created by this operator block the install; nothing was changed. {}",
                o.foreign.join(" ")
            ),
        )
    } else if !o.foreign_classes.is_empty() {
        let leftovers = if o.release_leftovers.is_empty() {
            String::new()
        } else {
            format!(" Objects of the adopted release left as they are: {}", o.release_leftovers.join(" "))
        };
        Cond::new(
            OWNERSHIP,
            true,
            "ForeignClasses",
            format!(
                "The driver runs, but classes of the spec are held back: an object of that name is not this \
                operator's and was left as it is. {} Rename the class in the spec, delete that object, or take it over \
                (spec.adoptObjects).{leftovers}",
                o.foreign_classes.join(" ")
            ),
        )
    } else if !o.release_leftovers.is_empty() {
        Cond::new(
            OWNERSHIP,
            true,
            "UnmanagedReleaseObjects",
            format!(
                "Every driver object is owned by this HardenedCsiDriver, but objects of the adopted installation are \
                not managed by it and were left as they are: {}",
                o.release_leftovers.join(" ")
            ),
        )
    } else {
        Cond::new(OWNERSHIP, false, "NoConflict", "Every driver object is owned by this HardenedCsiDriver.")
    });
    out.push(if o.snapshot_api {
        Cond::new(
            SNAPSHOT_API,
            true,
            "Installed",
            "snapshot.storage.k8s.io/v1 is served: the csi-snapshotter sidecar \
            and VolumeSnapshotClasses are managed.",
        )
    } else {
        Cond::new(
            SNAPSHOT_API,
            false,
            "NotInstalled",
            "snapshot.storage.k8s.io/v1 is not served: the csi-snapshotter sidecar and VolumeSnapshotClasses are left \
                out. Install the external-snapshotter CRDs and snapshot-controller to enable snapshots.",
        )
    });
    out.extend(snapshot_controller(o, old));
    out.push(volume_attributes_classes(o));
    match &o.service_monitors {
        Some((true, names)) => out.push(Cond::new(
            SERVICE_MONITOR,
            true,
            "Created",
            format!(
                "monitoring.coreos.com/v1 is served: ServiceMonitors {} scrape the driver's metrics Services.",
                names.join(", ")
            ),
        )),
        Some((false, _)) => out.push(Cond::new(
            SERVICE_MONITOR,
            false,
            "NotServed",
            "spec.metrics.serviceMonitor.enabled is true but the cluster serves no monitoring.coreos.com/v1 \
            ServiceMonitor: install the Prometheus Operator's CRDs (prometheus-operator's bundle.yaml or the \
            kube-prometheus-stack chart); the ServiceMonitors are created as soon as \
            servicemonitors.monitoring.coreos.com exists. Nothing else is affected: the metrics Services and their \
            prometheus.io annotations are in place.",
        )),
        None => {}
    }
    match (&o.missing_pull_secrets, &o.pull_secret_check_error) {
        (_, Some(err)) => out.push(Cond::unknown(
            PULL_SECRETS,
            "CannotCheck",
            format!(
                "Could not check the image pull \
            Secrets: {err}"
            ),
        )),
        (Some(missing), None) if !missing.is_empty() => out.push(Cond::new(
            PULL_SECRETS,
            false,
            "Missing",
            format!(
                "Image pull Secrets not found in the driver namespace: {}. Create them (kubectl create secret \
                docker-registry NAME --docker-server=dhi.io ...) or fix spec.images.pullSecrets.",
                missing.join(", ")
            ),
        )),
        (Some(_), None) => out.push(Cond::new(PULL_SECRETS, true, "Present", "Every image pull Secret exists.")),
        (None, None) => {}
    }
    let ctrl = o.controller.as_ref();
    let node = o.node.as_ref();
    if let Some(c) = ctrl {
        let r = &c.replicas;
        out.push(Cond::new(
            CONTROLLER_AVAILABLE,
            r.available > 0,
            if r.available > 0 { "Available" } else { "Unavailable" },
            format!(
                "ebs-csi-controller: {}/{} ready, {} updated, {} available.",
                r.ready, r.desired, r.updated, r.available
            ),
        ));
    }
    if let Some(n) = node {
        let r = &n.replicas;
        let ok = r.ready >= r.desired;
        out.push(Cond::new(
            NODE_AVAILABLE,
            ok,
            if r.desired == 0 {
                "NoNodes"
            } else if ok {
                "Available"
            } else {
                "Unavailable"
            },
            if r.desired == 0 {
                "ebs-csi-node: no node matches the node selector and tolerations.".to_string()
            } else {
                format!("ebs-csi-node: {}/{} ready, {} updated.", r.ready, r.desired, r.updated)
            },
        ));
    }
    match (&o.pods, &o.pod_watch_error) {
        (None, Some(err)) => out.push(Cond::unknown(
            PODS_HEALTHY,
            "CannotWatchPods",
            format!(
                "Could not watch the driver's pods: {err}. Grant the operator list and watch on pods in the driver \
                namespace (operator-rbac)."
            ),
        )),
        // The pod watch has not listed yet (a new leader): keep what was known.
        (None, None) => {
            if let Some(c) = old.and_then(|s| s.condition(PODS_HEALTHY)) {
                let status = match c.status.as_str() {
                    "True" => "True",
                    "False" => "False",
                    _ => "Unknown",
                };
                out.push(Cond { type_: PODS_HEALTHY, status, reason: c.reason.clone(), message: c.message.clone() });
            }
        }
        (Some(_), _) if !h.failing.is_empty() => {
            let reason = h.failing[0].failure.as_ref().map(|f| f.kind.reason()).unwrap_or_default();
            let message = failing_message(o, &h.failing);
            let message = if h.failing_persists {
                message
            } else {
                format!("{message} Reported as Stalled if it lasts {}.", show(grace))
            };
            out.push(Cond::new(PODS_HEALTHY, false, reason, message));
        }
        (Some(_), _) => match previous(old, PODS_HEALTHY, "False") {
            // Recovering: keep what failed until every pod is ready.
            Some(c) if live_pods(o).any(|p| !p.ready) => {
                out.push(Cond::new(PODS_HEALTHY, false, c.reason.clone(), c.message.clone()))
            }
            _ => out.push(Cond::new(
                PODS_HEALTHY,
                true,
                "Healthy",
                "No driver pod fails to pull its images, crash-loops or cannot start.",
            )),
        },
    }
    if let Some(v) = &o.deletion_blocked_by {
        out.push(Cond::new(
            DELETION_BLOCKED,
            true,
            "VolumesExist",
            format!(
                "Deletion waits: {} still need the driver, and removing it would leave them unable to attach, mount \
                or detach. The driver keeps running. Delete those volumes (or move them to another EBS CSI driver) \
                first, or annotate this object with csi.hardened.dev/force-delete=\"true\" to remove the driver \
                anyway (volumes and EBS data are kept).",
                v.summary()
            ),
        ));
    }
    out.extend(o.aws.as_ref().map(aws_conditions).unwrap_or_default());

    let rollout = rollout_message(o);
    let was_ready = previous(old, READY, "True").is_some();
    let serving = ctrl.is_some_and(|c| c.replicas.available > 0)
        && node.is_some_and(|n| n.replicas.ready > 0 || n.replicas.desired == 0);
    let stuck_message = || {
        let refs: Vec<&PodFacts> = h.stuck.iter().collect();
        format!("{} not ready for more than {}; {rollout}.", pod_names(&refs), show(grace))
    };
    let (ready, reason, message) = if let Some((reason, message)) = &h.stalled {
        (false, reason.clone(), message.clone())
    } else if !h.stuck.is_empty() {
        (false, "PodsUnavailable".to_string(), stuck_message())
    } else if h.rolled_out {
        (
            true,
            "Ready".to_string(),
            "Every child is applied and the controller and node plugin are rolled out.".to_string(),
        )
    } else if was_ready && serving {
        (true, "Ready".to_string(), format!("Serving while pods start ({rollout}); see Progressing."))
    } else if !o.apply_errors.is_empty() {
        (false, "ApplyFailed".to_string(), format!("Retrying: {}", o.apply_errors.join("; ")))
    } else {
        (false, "RollingOut".to_string(), format!("Children applied; waiting for the rollout: {rollout}."))
    };
    out.push(Cond::new(READY, ready, reason, message));

    let (reconciling, reason, message) = if h.stalled.is_some() {
        (false, "Stalled".to_string(), "Nothing progresses until the Stalled condition's cause is fixed.".to_string())
    } else if !o.apply_errors.is_empty() {
        (
            true,
            "ApplyRetrying".to_string(),
            format!("Applying failed; retrying with back-off: {}", o.apply_errors.join("; ")),
        )
    } else if !h.failing.is_empty() {
        let reason = h.failing[0].failure.as_ref().map(|f| f.kind.reason()).unwrap_or_default();
        (
            true,
            reason.to_string(),
            format!("{} Stalled if it lasts {}; {rollout}.", failing_message(o, &h.failing), show(grace)),
        )
    } else if !h.stuck.is_empty() {
        (true, "PodsUnavailable".to_string(), stuck_message())
    } else if !h.rolled_out {
        (true, "RollingOut".to_string(), format!("Rolling out the driver: {rollout}."))
    } else {
        (false, "Complete".to_string(), "The driver is rolled out and every pod is ready.".to_string())
    };
    out.push(Cond::new(RECONCILING, reconciling, reason.clone(), message.clone()));
    out.push(Cond::new(PROGRESSING, reconciling, reason, message));
    out.push(match &h.stalled {
        Some((reason, message)) => Cond::new(STALLED, true, reason.clone(), message.clone()),
        None => Cond::new(STALLED, false, "NotStalled", "The operator can make progress on its own."),
    });
    out.push(match (&h.stalled, h.stuck.is_empty()) {
        (Some((reason, message)), _) => Cond::new(DEGRADED, true, reason.clone(), message.clone()),
        (None, false) => Cond::new(DEGRADED, true, "PodsUnavailable", stuck_message()),
        (None, true) => Cond::new(DEGRADED, false, "AsExpected", "Nothing is degraded."),
    });
    out
}

/// When the status would change with no new observation: a grace period running out, a restarted
/// container becoming steady. The reconciler requeues then.
pub fn next_review(o: &Observed, old: Option<&HardenedCsiDriverStatus>, now: Timestamp) -> Option<Duration> {
    let grace = o.grace();
    let h = assess(o, old, now);
    let mut due: Vec<Timestamp> = Vec::new();
    if !h.failing.is_empty() && !h.failing_persists {
        due.extend(h.failing_since.checked_add(grace).ok());
    }
    for p in live_pods(o) {
        if !p.ready && p.failure.is_none() {
            due.extend(p.unready_since.and_then(|t| t.checked_add(grace).ok()));
        }
        due.extend(p.review_at);
    }
    due.into_iter().filter(|t| *t > now).min().map(|t| elapsed(now, t))
}

/// `AwsReachable` and `AwsPermissions` from an inventory, with messages that say what to do.
/// Messages carry no timestamps that move while the answer stays the same.
pub fn aws_conditions(s: &AwsStatus) -> Vec<Cond> {
    let mut out = Vec::with_capacity(2);
    out.push(match &s.last_error {
        None if s.last_success_at.is_some() => Cond::new(
            AWS_REACHABLE,
            true,
            "Reachable",
            format!(
                "AWS answered ({}, region {}): {} volumes, {} snapshots, {}.",
                s.scope,
                s.region.as_deref().unwrap_or("?"),
                s.volumes.count,
                s.snapshots.count,
                if s.orphaned.checked {
                    format!("{} orphaned", s.orphaned.count)
                } else {
                    "orphans not checked (see status.aws.orphaned.reason)".to_string()
                }
            ),
        ),
        None => Cond::unknown(AWS_REACHABLE, "NotChecked", "AWS has not been asked yet."),
        Some(code) => {
            let since = match &s.last_success_at {
                Some(t) => format!("the figures in status.aws are from {t} and marked stale"),
                None => "there are no figures yet".to_string(),
            };
            let detail = s.last_error_message.as_deref().unwrap_or("");
            Cond::new(
                AWS_REACHABLE,
                false,
                reachable_reason(code),
                format!("The last AWS check failed with {code} ({detail}); {since}. {}", hint(code)),
            )
        }
    });
    let p = &s.permissions;
    let who = if p.principal.is_empty() { "the probed identity".to_string() } else { p.principal.clone() };
    out.push(if let Some(why) = &p.not_verifiable {
        Cond::unknown(
            AWS_PERMISSIONS,
            "NotVerifiable",
            format!("The operator cannot act as the driver's identity: {why}."),
        )
    } else if p.checked.is_empty() {
        Cond::unknown(
            AWS_PERMISSIONS,
            "NotChecked",
            "The driver's IAM permissions have not been probed yet (see \
            AwsReachable).",
        )
    } else if !p.missing.is_empty() {
        let kms = p.missing.iter().any(|a| a.starts_with("kms:"));
        let driver_missing: Vec<&str> =
            p.missing.iter().map(String::as_str).filter(|a| *a != crate::aws::retag::ACTION).collect();
        if driver_missing.is_empty() {
            Cond::new(
                AWS_PERMISSIONS,
                false,
                "RetagPermissionMissing",
                format!(
                    "{who} lacks {} (spec.aws.retagExistingVolumes): AmazonEBSCSIDriverPolicy grants CreateTags only \
                        while creating a volume or snapshot. Add the statement of README \"Retagging existing \
                        volumes\" to the driver's role, or turn the retag off; the driver itself is not affected.",
                    crate::aws::retag::ACTION
                ),
            )
        } else {
            Cond::new(
            AWS_PERMISSIONS,
            false,
            "MissingPermissions",
            format!(
                "{who} lacks {}. Grant them to the driver's IAM role ({}); volumes cannot be provisioned, attached \
                    or snapshotted reliably until then.",
                p.missing.join(", "),
                if kms {
                    "the AWS managed policy AmazonEBSCSIDriverPolicy has the ec2: ones; the kms: ones on their key, \
                        as in upstream's example KMS policy, and the key policy must allow the role"
                } else {
                    "the AWS managed policy AmazonEBSCSIDriverPolicy has all of them"
                }
            ),
        )
        }
    } else if let Some(k) = p.kms_keys.iter().find(|k| k.problem.is_some()) {
        Cond::new(
            AWS_PERMISSIONS,
            false,
            "KmsKeyUnusable",
            format!(
                "KMS key {} of StorageClass {} cannot encrypt volumes: {}. Fix the key or the class's kmsKeyId; new \
                    volumes of that class fail to provision until then.",
                k.key,
                k.storage_classes.join(", "),
                k.problem.as_deref().unwrap_or_default()
            ),
        )
    } else if let Some(why) = &p.probes_stopped {
        Cond::unknown(AWS_PERMISSIONS, "ProbesStopped", format!("{who}: probing stopped: {why}."))
    } else if !p.unverified.is_empty() {
        let list: Vec<&str> = p.unverified.iter().map(|u| u.action.as_str()).collect();
        Cond::unknown(
            AWS_PERMISSIONS,
            "PartlyVerified",
            format!(
                "{who} has every probed action; {} could not be decided ({}).",
                list.join(", "),
                p.unverified[0].reason
            ),
        )
    } else {
        Cond::new(
            AWS_PERMISSIONS,
            true,
            "AllGranted",
            match p.checked.iter().filter(|a| a.starts_with("kms:")).count() {
                0 => format!("{who} has all {} EC2 actions the driver needs.", p.checked.len()),
                kms => format!(
                    "{who} has all {} EC2 actions the driver needs and the {kms} KMS actions probed on the \
                        StorageClasses' keys.",
                    p.checked.len() - kms
                ),
            },
        )
    });
    if let Some(r) = &s.retag {
        out.push(retag_condition(r));
    }
    out
}

/// `VolumesRetagged` from the last retag pass (`status.aws.retag`).
pub fn retag_condition(r: &RetagReport) -> Cond {
    let conflicts = || match r.conflict_list.first() {
        Some(c) => format!(
            "; {} resource(s) carry a wanted key with a value the operator did not apply (first: {} has {}={:?}, \
                extraTags asks {:?}), left as they are (see status.aws.retag.conflictList): change the tag by hand \
                or the value in spec.aws.extraTags",
            r.conflicts, c.id, c.key, c.value, c.wanted
        ),
        None => String::new(),
    };
    if let Some(why) = &r.blocked {
        Cond::new(
            VOLUMES_RETAGGED,
            false,
            "RetagBlocked",
            format!("{} of {} volumes and snapshots lack extraTags and none is tagged: {why}.", r.pending, r.resources),
        )
    } else if r.failed > 0 || (r.pending > 0 && r.last_error.is_some()) {
        Cond::new(
            VOLUMES_RETAGGED,
            false,
            "RetagFailed",
            format!(
                "Tagged {} of {} volumes and snapshots that lacked extraTags; {} failed and {} are pending, retried on \
                    the next inventory refresh: {}: {}{}.",
                r.tagged,
                r.wanted,
                r.failed,
                r.pending,
                r.last_error.as_deref().unwrap_or("?"),
                r.last_error_message.as_deref().unwrap_or(""),
                conflicts()
            ),
        )
    } else if r.pending > 0 {
        Cond::new(
            VOLUMES_RETAGGED,
            false,
            "InProgress",
            format!(
                "Tagged {} of {} volumes and snapshots that lacked extraTags in {} call(s); {} pending, continued on \
                    the next inventory refresh (spec.aws.extraTags, spec.inventory.interval){}.",
                r.tagged,
                r.wanted,
                r.calls,
                r.pending,
                conflicts()
            ),
        )
    } else if r.conflicts > 0 {
        Cond::new(
            VOLUMES_RETAGGED,
            false,
            "Conflicts",
            format!("The other volumes and snapshots of this cluster carry the extraTags{}.", conflicts()),
        )
    } else {
        Cond::new(
            VOLUMES_RETAGGED,
            true,
            "Complete",
            format!("All {} volumes and snapshots of this cluster carry spec.aws.extraTags.", r.resources),
        )
    }
}

fn reachable_reason(code: &str) -> &'static str {
    match classify(code, None) {
        ErrorClass::Throttled => "Throttled",
        ErrorClass::Denied => "AccessDenied",
        ErrorClass::Credentials => "CredentialsFailed",
        ErrorClass::Server => "AwsServerError",
        ErrorClass::Transport => "Unreachable",
        ErrorClass::Client => "AwsError",
    }
}

fn hint(code: &str) -> &'static str {
    match code {
        "ServiceAccountToken" => {
            "The operator requests a token for the driver's service account (audience sts.amazonaws.com) to check the \
                IRSA role: give it `create` on serviceaccounts/token in the driver namespace, and make sure the \
                service account exists."
        }
        "ResourceNotFoundException" => {
            "EKS Auth found no Pod Identity association for the driver's service account: create one for \
                <namespace>/ebs-csi-controller-sa in the cluster named by spec.aws.clusterId."
        }
        "InvalidTokenException" => {
            "EKS Auth rejected the service account token: spec.aws.clusterId must be the EKS cluster's name, and the \
                operator must run in that cluster."
        }
        "AccessDeniedException" => {
            "The operator's own role may not call eks-auth:AssumeRoleForPodIdentity (the only AWS permission the \
                operator needs for Pod Identity), or the call was denied: grant it to the operator's role."
        }
        "InvalidIdentityToken" | "IDPRejectedClaim" | "IDPCommunicationError" => {
            "STS rejected the service account token: check the cluster's OIDC provider is registered in IAM and the \
                role's trust policy allows system:serviceaccount:<namespace>:ebs-csi-controller-sa with audience \
                sts.amazonaws.com."
        }
        "AccessDenied" | "UnauthorizedOperation" => {
            "The identity may not make this call: grant it (AmazonEBSCSIDriverPolicy), or for IRSA check the role's \
                trust policy names the driver's service account."
        }
        "NoCredentials" | "InvalidClientTokenId" | "AuthFailure" | "ExpiredToken" | "SignatureDoesNotMatch" => {
            "The operator has no valid AWS credentials: give its own service account an IAM role (IRSA or EKS Pod \
                Identity)."
        }
        "MissingRegion" => "Set spec.aws.region (or run the operator with --aws-region).",
        _ if classify(code, None) == ErrorClass::Throttled => {
            "EC2 is throttling this account; the operator backs off and tries again on its next interval."
        }
        _ if classify(code, None) == ErrorClass::Transport => {
            "Check network access from the operator to the EC2 endpoint (VPC endpoints, proxies, spec.aws.ec2Endpoint)."
        }
        _ => "The operator tries again on its next interval.",
    }
}

/// Turns decided conditions into API conditions, keeping `lastTransitionTime` of every condition
/// whose status did not change.
pub fn merge_conditions(old: &[Condition], new: &[Cond], generation: Option<i64>, now: &Time) -> Vec<Condition> {
    new.iter()
        .map(|c| {
            let prev = old.iter().find(|o| o.type_ == c.type_);
            let last_transition_time = match prev {
                Some(p) if p.status == c.status => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: c.type_.to_string(),
                status: c.status.to_string(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

fn volume_attributes_classes(o: &Observed) -> Cond {
    let Some(version) = o.volume_attributes_class_api else {
        let skipped = match o.requested_volume_attributes_classes {
            0 => String::new(),
            n => format!(" The {n} class(es) of spec.volumeAttributesClasses are not created."),
        };
        return Cond::new(
            VOLUME_ATTRIBUTES_CLASSES,
            false,
            "NotServed",
            format!(
                "The cluster serves no VolumeAttributesClass API (storage.k8s.io/v1 from Kubernetes 1.34; v1beta1 on \
                1.31-1.33 only with --runtime-config=storage.k8s.io/v1beta1=true and the VolumeAttributesClass \
                feature gate): the csi-provisioner and csi-resizer run with VolumeAttributesClass=false.{skipped}"
            ),
        );
    };
    let managed = match o.volume_attributes_classes.as_slice() {
        [] => "no classes in the spec".to_string(),
        names => format!("managing {}", names.join(", ")),
    };
    if o.kept_volume_attributes_classes.is_empty() {
        return Cond::new(
            VOLUME_ATTRIBUTES_CLASSES,
            true,
            "Served",
            format!("storage.k8s.io/{version} serves VolumeAttributesClass; {managed}."),
        );
    }
    Cond::new(
        VOLUME_ATTRIBUTES_CLASSES,
        true,
        "RemovedClassesInUse",
        format!(
            "storage.k8s.io/{version} serves VolumeAttributesClass; {managed}. Removed from the spec but kept because \
            they are in use: {}. Move those claims to another class (spec.volumeAttributesClassName); the operator \
            deletes each class once nothing uses it.",
            o.kept_volume_attributes_classes.join("; ")
        ),
    )
}

/// The whole status from what was observed and the previous status.
pub fn build(old: Option<&HardenedCsiDriverStatus>, o: &Observed, now: &Time) -> HardenedCsiDriverStatus {
    let old_conditions = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    HardenedCsiDriverStatus {
        observed_generation: o.generation,
        conditions: merge_conditions(old_conditions, &conditions(o, old, now.0), o.generation, now),
        controller: o.controller.as_ref().map(|r| r.replicas.clone()),
        node: o.node.as_ref().map(|r| r.replicas.clone()),
        // The release counts as running once both workloads rolled it out; until then the last one.
        version: match (&o.version, o.controller.as_ref(), o.node.as_ref()) {
            (Some(v), Some(c), Some(n)) if c.complete() && n.complete() => Some(v.clone()),
            _ => old.and_then(|s| s.version.clone()),
        },
        driver_image: o.driver_image.clone(),
        storage_classes: o.storage_classes.clone(),
        volume_snapshot_classes: o.volume_snapshot_classes.clone(),
        volume_attributes_classes: o.volume_attributes_classes.clone(),
        kept_volume_attributes_classes: o.kept_volume_attributes_classes.clone(),
        kubernetes_version: o.kubernetes_version.clone(),
        aws: o.aws.clone(),
        deletion_blocked_by: o.deletion_blocked_by.clone(),
    }
}

/// Equal statuses, whatever the order of their conditions: a condition type added later sits at
/// the end of the stored list (the API server merges the list by type), not where `build` puts it.
pub fn same_status(a: &HardenedCsiDriverStatus, b: &HardenedCsiDriverStatus) -> bool {
    let sorted = |s: &HardenedCsiDriverStatus| {
        let mut s = s.clone();
        s.conditions.sort_by(|x, y| x.type_.cmp(&y.type_));
        s
    };
    a.conditions.len() == b.conditions.len() && sorted(a) == sorted(b)
}

/// Whether `new` differs from `old` only in what a rollout or a node joining moves on its own:
/// the replica counts, the messages that quote them, `ControllerAvailable`/`NodeAvailable`, and
/// `Reconciling`/`Progressing` between `RollingOut` and `Complete`. Such a change may wait a few
/// seconds and be written together with the next ones (a node joining must not cost a status
/// write per node). Everything else (a new generation, `Ready`, `Stalled`, `Degraded` or any
/// other condition changing status or reason, the AWS facts, a retried apply) is written at once.
pub fn progress_only(old: &HardenedCsiDriverStatus, new: &HardenedCsiDriverStatus) -> bool {
    let rest = |s: &HardenedCsiDriverStatus| HardenedCsiDriverStatus {
        conditions: Vec::new(),
        controller: None,
        node: None,
        ..s.clone()
    };
    if rest(old) != rest(new) {
        return false;
    }
    let types: std::collections::BTreeSet<&str> =
        old.conditions.iter().chain(&new.conditions).map(|c| c.type_.as_str()).collect();
    types.into_iter().all(|t| match (old.condition(t), new.condition(t)) {
        (Some(a), Some(b)) => match t {
            CONTROLLER_AVAILABLE | NODE_AVAILABLE => true,
            RECONCILING | PROGRESSING => {
                let moving = |r: &str| r == "RollingOut" || r == "Complete";
                moving(&a.reason) && moving(&b.reason)
            }
            READY => a.status == b.status && a.reason == b.reason,
            _ => a.status == b.status && a.reason == b.reason && a.message == b.message,
        },
        _ => false,
    })
}

/// The conditions whose status differs between two statuses: what deserves an event.
pub fn transitions<'a>(old: Option<&HardenedCsiDriverStatus>, new: &'a HardenedCsiDriverStatus) -> Vec<&'a Condition> {
    new.conditions
        .iter()
        .filter(|c| old.and_then(|o| o.condition(&c.type_)).is_none_or(|p| p.status != c.status))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{PermissionReport, UnverifiedAction};

    fn t(s: &str) -> Time {
        Time(s.parse().expect("timestamp"))
    }

    fn rolled(desired: i32) -> Rollout {
        Rollout { replicas: ReplicaStatus::new(desired, desired, desired, desired), observed: true }
    }

    #[test]
    fn ready_only_when_rolled_out() {
        let mut o =
            Observed { controller: Some(rolled(2)), node: Some(rolled(3)), snapshot_api: true, ..Observed::default() };
        let ready = |o: &Observed| {
            conditions(o, None, t("2026-01-01T00:00:00Z").0)
                .into_iter()
                .find(|c| c.type_ == READY)
                .map(|c| (c.status, c.reason))
                .expect("ready")
        };
        assert_eq!(ready(&o), ("True", "Ready".to_string()));
        o.node = Some(Rollout { replicas: ReplicaStatus::new(3, 1, 3, 1), observed: true });
        assert_eq!(ready(&o), ("False", "RollingOut".to_string()));
        o.node = Some(Rollout { replicas: ReplicaStatus::new(3, 3, 3, 3), observed: false });
        assert_eq!(ready(&o), ("False", "RollingOut".to_string()));
        o.spec_errors = Some("spec.aws.identity: exactly one".into());
        assert_eq!(ready(&o), ("False", "InvalidSpec".to_string()));
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let o = Observed { controller: Some(rolled(2)), node: Some(rolled(1)), ..Observed::default() };
        let first = build(None, &o, &t("2026-01-01T00:00:00Z"));
        let again = build(Some(&first), &o, &t("2026-01-01T01:00:00Z"));
        assert_eq!(first, again, "an unchanged world yields an identical status");
        assert!(transitions(Some(&first), &again).is_empty());
        let worse =
            Observed { node: Some(Rollout { replicas: ReplicaStatus::new(1, 0, 1, 0), observed: true }), ..o.clone() };
        let next = build(Some(&first), &worse, &t("2026-01-01T02:00:00Z"));
        let ready = next.condition(READY).expect("ready");
        assert_eq!(ready.last_transition_time, t("2026-01-01T02:00:00Z"));
        let spec = next.condition(SPEC_VALID).expect("spec");
        assert_eq!(spec.last_transition_time, t("2026-01-01T00:00:00Z"));
        let changed: Vec<&str> = transitions(Some(&first), &next).iter().map(|c| c.type_.as_str()).collect();
        assert!(
            changed.contains(&READY) && changed.contains(&NODE_AVAILABLE) && !changed.contains(&SPEC_VALID),
            "{changed:?}"
        );
    }

    fn at(secs: i64) -> Timestamp {
        t("2026-01-01T00:00:00Z").0.checked_add(jiff::SignedDuration::from_secs(secs)).expect("in range")
    }

    fn node_pod(name: &str, since: i64, failure: Option<Failure>) -> PodFacts {
        PodFacts {
            name: name.into(),
            workload: Workload::Node,
            node: Some("node-3".into()),
            ready: false,
            unready_since: Some(at(since)),
            failure: failure.map(|kind| ContainerFailure {
                kind,
                container: "ebs-plugin".into(),
                image: "dhi.io/aws-ebs-csi-driver:1.64.0".into(),
                reason: "ImagePullBackOff".into(),
                message: "401 Unauthorized".into(),
            }),
            terminating: false,
            review_at: None,
        }
    }

    fn healthy() -> Observed {
        Observed {
            generation: Some(4),
            controller: Some(rolled(2)),
            node: Some(rolled(3)),
            pods: Some(Vec::new()),
            degraded_after: Duration::from_secs(300),
            images: Some(ImageSource {
                registry: "dhi.io".into(),
                mirror: String::new(),
                pull_secrets: vec!["dhi-pull".into()],
                namespace: "kube-system".into(),
            }),
            ..Observed::default()
        }
    }

    /// (status, reason) of each kstatus-relevant condition after `steps` (seconds, observation).
    fn run(steps: &[(i64, &Observed)]) -> HardenedCsiDriverStatus {
        let mut status = None;
        for (secs, o) in steps {
            status = Some(build(status.as_ref(), o, &Time(at(*secs))));
        }
        status.expect("one step")
    }

    fn get(s: &HardenedCsiDriverStatus, type_: &str) -> (String, String) {
        let c = s.condition(type_).unwrap_or_else(|| panic!("{type_} missing"));
        (c.status.clone(), c.reason.clone())
    }

    fn is(status: &str, reason: &str) -> (String, String) {
        (status.to_string(), reason.to_string())
    }

    #[test]
    fn a_first_install_is_reconciling_until_rolled_out() {
        let mut o = healthy();
        o.node = Some(Rollout { replicas: ReplicaStatus::new(3, 1, 3, 1), observed: true });
        o.pods = Some(vec![node_pod("ebs-csi-node-a", 0, None)]);
        let s = run(&[(0, &o)]);
        assert_eq!(get(&s, READY), is("False", "RollingOut"));
        assert_eq!(get(&s, RECONCILING), is("True", "RollingOut"));
        assert_eq!(get(&s, PROGRESSING), is("True", "RollingOut"));
        assert_eq!(get(&s, STALLED), is("False", "NotStalled"));
        assert_eq!(get(&s, DEGRADED), is("False", "AsExpected"));
        let done = run(&[(0, &o), (20, &healthy())]);
        assert_eq!(get(&done, READY), is("True", "Ready"));
        assert_eq!(get(&done, RECONCILING), is("False", "Complete"));
        assert!(done.conditions.iter().all(|c| c.observed_generation == Some(4)), "{:?}", done.conditions);
        assert_eq!(done.observed_generation, Some(4));
    }

    #[test]
    fn a_node_joining_keeps_ready_and_is_never_degraded_within_the_grace() {
        let mut joined = healthy();
        joined.node = Some(Rollout { replicas: ReplicaStatus::new(4, 3, 4, 3), observed: true });
        joined.pods = Some(vec![node_pod("ebs-csi-node-new", 60, None)]);
        let s = run(&[(0, &healthy()), (60, &joined), (300, &joined)]);
        assert_eq!(get(&s, READY), is("True", "Ready"), "one new node's pod starting does not drop Ready");
        assert_eq!(get(&s, RECONCILING), is("True", "RollingOut"), "kstatus waits for the join");
        assert_eq!(get(&s, DEGRADED), is("False", "AsExpected"));
        let ready_since = s.condition(READY).map(|c| c.last_transition_time.clone());
        assert_eq!(ready_since, Some(Time(at(0))), "Ready never flipped");
        // The same pod still unready past the grace period: now it counts.
        let late = run(&[(0, &healthy()), (60, &joined), (361, &joined)]);
        assert_eq!(get(&late, READY), is("False", "PodsUnavailable"));
        assert_eq!(get(&late, DEGRADED), is("True", "PodsUnavailable"));
        assert_eq!(get(&late, STALLED), is("False", "NotStalled"), "a pod that may still start is not Stalled");
        let msg = &late.condition(DEGRADED).expect("degraded").message;
        assert!(msg.contains("ebs-csi-node-new (node node-3)") && msg.contains("5m"), "{msg}");
    }

    #[test]
    fn a_node_joining_changes_progress_only_while_decisions_are_written_at_once() {
        let before = run(&[(0, &healthy())]);
        let mut joined = healthy();
        joined.node = Some(Rollout { replicas: ReplicaStatus::new(4, 3, 4, 3), observed: true });
        joined.pods = Some(vec![node_pod("ebs-csi-node-new", 60, None)]);
        let joining = build(Some(&before), &joined, &Time(at(60)));
        assert!(!same_status(&before, &joining));
        assert!(progress_only(&before, &joining), "counts, NodeAvailable and Reconciling may wait");
        let mut more = joined.clone();
        more.node = Some(Rollout { replicas: ReplicaStatus::new(5, 3, 5, 3), observed: true });
        assert!(progress_only(&joining, &build(Some(&joining), &more, &Time(at(61)))));
        let done = build(Some(&joining), &healthy(), &Time(at(62)));
        assert!(progress_only(&joining, &done), "the join finishing is progress too");
        // A new generation, Ready or Degraded changing, or a pod failing: written at once.
        let next = Observed { generation: Some(5), ..healthy() };
        assert!(!progress_only(&before, &build(Some(&before), &next, &Time(at(60)))));
        let late = build(Some(&joining), &joined, &Time(at(361)));
        assert_eq!(get(&late, READY), is("False", "PodsUnavailable"));
        assert!(!progress_only(&joining, &late));
        let mut failing = joined.clone();
        failing.pods = Some(vec![node_pod("ebs-csi-node-new", 60, Some(Failure::ImagePull))]);
        assert!(!progress_only(&before, &build(Some(&before), &failing, &Time(at(60)))));
        let first = Observed { controller: None, node: None, ..healthy() };
        let fresh = build(None, &first, &Time(at(0)));
        assert!(!progress_only(&fresh, &before), "conditions appearing are written at once");
    }

    #[test]
    fn pull_failures_are_reported_at_once_and_stall_after_the_grace() {
        let mut o = healthy();
        o.node = Some(Rollout { replicas: ReplicaStatus::new(3, 2, 3, 2), observed: true });
        o.pods = Some(vec![node_pod("ebs-csi-node-x", 0, Some(Failure::ImagePull))]);
        let s = run(&[(0, &o)]);
        let pods = s.condition(PODS_HEALTHY).expect("pods");
        assert_eq!((pods.status.as_str(), pods.reason.as_str()), ("False", "ImagePullFailed"));
        for needle in ["ebs-csi-node-x", "dhi.io/aws-ebs-csi-driver:1.64.0", "401 Unauthorized", "dhi-pull", "mirror"] {
            assert!(pods.message.contains(needle), "{needle} missing from {}", pods.message);
        }
        assert_eq!(get(&s, RECONCILING), is("True", "ImagePullFailed"));
        assert_eq!(get(&s, STALLED), is("False", "NotStalled"));
        assert_eq!(get(&s, DEGRADED), is("False", "AsExpected"));
        assert_eq!(next_review(&o, Some(&s), at(0)), Some(Duration::from_secs(300)));
        // A retry in between (the kubelet pulling again) does not restart the clock.
        let mut retrying = o.clone();
        retrying.pods = Some(vec![node_pod("ebs-csi-node-x", 0, None)]);
        let s = run(&[(0, &o), (100, &retrying), (200, &o), (300, &retrying)]);
        assert_eq!(get(&s, STALLED), is("True", "ImagePullFailed"));
        assert_eq!(get(&s, DEGRADED), is("True", "ImagePullFailed"));
        assert_eq!(get(&s, READY), is("False", "ImagePullFailed"));
        assert_eq!(get(&s, RECONCILING), is("False", "Stalled"));
        assert_eq!(get(&s, PODS_HEALTHY), is("False", "ImagePullFailed"));
        // Fixed: every pod ready again.
        let s = run(&[(0, &o), (300, &o), (400, &healthy())]);
        assert_eq!(get(&s, PODS_HEALTHY), is("True", "Healthy"));
        assert_eq!(get(&s, STALLED), is("False", "NotStalled"));
        assert_eq!(get(&s, READY), is("True", "Ready"));
    }

    #[test]
    fn what_needs_a_person_is_stalled_at_once_and_apply_errors_after_retries() {
        type Edit = Box<dyn Fn(&mut Observed)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("InvalidSpec", Box::new(|o| o.spec_errors = Some("spec.inventory.interval: too short".into()))),
            (
                "FipsRegionUnsupported",
                Box::new(|o| {
                    o.spec_errors = Some("spec.aws.region: no FIPS".into());
                    o.fips_refused = true;
                }),
            ),
            ("AnotherDriverActive", Box::new(|o| o.other_driver = Some("first".into()))),
            (
                "OwnershipConflict",
                Box::new(|o| o.foreign = vec!["CSIDriver/ebs.csi.aws.com is managed by eks.".into()]),
            ),
            (
                "DeletionBlocked",
                Box::new(|o| {
                    o.deletion_blocked_by = Some(VolumesInUse { csi_persistent_volumes: 2, ..VolumesInUse::default() })
                }),
            ),
        ];
        for (reason, edit) in cases {
            let mut o = healthy();
            edit(&mut o);
            let s = run(&[(0, &healthy()), (1, &o)]);
            assert_eq!(get(&s, STALLED), is("True", reason));
            assert_eq!(get(&s, READY), is("False", reason));
            assert_eq!(get(&s, DEGRADED), is("True", reason));
            assert_eq!(get(&s, RECONCILING), is("False", "Stalled"));
        }
        let mut o = healthy();
        o.apply_errors = vec!["applying DaemonSet/kube-system/ebs-csi-node: denied (403 Forbidden)".into()];
        let s = run(&[(0, &healthy()), (1, &o)]);
        assert_eq!(get(&s, STALLED), is("False", "NotStalled"), "the first failure is retried");
        assert_eq!(get(&s, RECONCILING), is("True", "ApplyRetrying"));
        assert_eq!(get(&s, READY), is("True", "Ready"), "the running driver still serves");
        o.failed_attempts = STALL_AFTER_ATTEMPTS - 1;
        let s = run(&[(0, &healthy()), (1, &o)]);
        assert_eq!(get(&s, STALLED), is("True", "ApplyFailed"));
        assert!(s.condition(STALLED).expect("stalled").message.contains("403 Forbidden"));
    }

    #[test]
    fn reconciling_and_stalled_are_never_both_true() {
        let mut all = vec![healthy()];
        let mut o = healthy();
        o.node = Some(Rollout { replicas: ReplicaStatus::new(3, 0, 3, 0), observed: false });
        all.push(o.clone());
        o.pods = Some(vec![node_pod("p", 0, Some(Failure::CrashLoop))]);
        all.push(o.clone());
        o.spec_errors = Some("x".into());
        all.push(o);
        for o in &all {
            for late in [0, 1000] {
                let s = run(&[(0, o), (late, o)]);
                assert!(!(s.is_true(RECONCILING) && s.is_true(STALLED)), "{:?}", s.conditions);
            }
        }
    }

    #[test]
    fn a_stale_cached_rollout_is_not_complete() {
        let mut o = healthy();
        o.controller = Some(Rollout { replicas: ReplicaStatus::new(2, 2, 2, 2), observed: false });
        let s = run(&[(0, &healthy()), (10, &o)]);
        assert_eq!(get(&s, RECONCILING), is("True", "RollingOut"));
    }

    fn ok_status() -> AwsStatus {
        AwsStatus {
            last_success_at: Some("2026-01-01T00:00:00Z".into()),
            scope: "cluster prod".into(),
            region: Some("us-east-1".into()),
            permissions: PermissionReport {
                principal: "operator credentials".into(),
                checked: vec!["ec2:CreateVolume".into(), "ec2:DeleteVolume".into()],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn conditions_say_reachable_and_granted() {
        let c = aws_conditions(&ok_status());
        assert_eq!((c[0].type_, c[0].status, c[0].reason.as_str()), (AWS_REACHABLE, "True", "Reachable"));
        assert_eq!((c[1].type_, c[1].status, c[1].reason.as_str()), (AWS_PERMISSIONS, "True", "AllGranted"));
    }

    #[test]
    fn conditions_name_missing_actions_and_the_failure() {
        let mut s = ok_status();
        s.permissions.missing = vec!["ec2:DeleteVolume".into()];
        s.last_error = Some("RequestLimitExceeded".into());
        s.last_error_message = Some("DescribeVolumes: Request limit exceeded.".into());
        s.stale = true;
        let c = aws_conditions(&s);
        assert_eq!((c[0].status, c[0].reason.as_str()), ("False", "Throttled"));
        assert!(c[0].message.contains("RequestLimitExceeded") && c[0].message.contains("stale"), "{}", c[0].message);
        assert_eq!((c[1].status, c[1].reason.as_str()), ("False", "MissingPermissions"));
        assert!(
            c[1].message.contains("ec2:DeleteVolume") && c[1].message.contains("operator credentials"),
            "{}",
            c[1].message
        );
    }

    #[test]
    fn conditions_before_any_answer_and_with_unverified_actions() {
        let c = aws_conditions(&AwsStatus::default());
        assert_eq!((c[0].status, c[1].status), ("Unknown", "Unknown"));
        let mut s = ok_status();
        s.permissions.unverified =
            vec![UnverifiedAction { action: "ec2:AttachVolume".into(), reason: "no instance".into() }];
        let c = aws_conditions(&s);
        assert_eq!((c[1].status, c[1].reason.as_str()), ("Unknown", "PartlyVerified"));
        let mut s = ok_status();
        s.last_error = Some("ServiceAccountToken".into());
        let c = aws_conditions(&s);
        assert_eq!(c[0].reason, "CredentialsFailed");
        assert!(c[0].message.contains("serviceaccounts/token"), "{}", c[0].message);
    }
}
