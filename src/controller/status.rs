//! Status as a pure function of what one reconcile observed. Conditions keep their
//! `lastTransitionTime` unless their status changes, so an unchanged world yields an identical
//! status and the reconciler writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::aws::status::AwsStatus;
use crate::crd::{HardenedCsiDriverStatus, ReplicaStatus};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const SPEC_VALID: &str = "SpecValid";
pub const ACTIVE: &str = "Active";
pub const OWNERSHIP: &str = "OwnershipConflict";
pub const CONTROLLER_AVAILABLE: &str = "ControllerAvailable";
pub const NODE_AVAILABLE: &str = "NodeAvailable";
pub const SNAPSHOT_API: &str = "SnapshotApi";
pub const PULL_SECRETS: &str = "PullSecretsPresent";
pub const DELETION_BLOCKED: &str = "DeletionBlocked";

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
    /// observedGeneration caught up with generation.
    pub observed: bool,
}

impl Rollout {
    /// Every desired pod updated, ready and available, for the current generation.
    pub fn complete(&self) -> bool {
        let r = &self.replicas;
        self.observed && r.updated >= r.desired && r.ready >= r.desired && r.available >= r.desired
    }
}

/// Everything one reconcile learnt, from which the status follows.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub generation: Option<i64>,
    pub spec_errors: Option<String>,
    pub other_driver: Option<String>,
    pub foreign: Vec<String>,
    pub apply_errors: Vec<String>,
    pub snapshot_api: bool,
    pub kubernetes_version: Option<String>,
    pub controller: Option<Rollout>,
    pub node: Option<Rollout>,
    /// None: not checked (no permission or no pull secrets); Some(list): the missing ones.
    pub missing_pull_secrets: Option<Vec<String>>,
    pub pull_secret_check_error: Option<String>,
    pub driver_image: Option<String>,
    pub storage_classes: Vec<String>,
    pub volume_snapshot_classes: Vec<String>,
    pub deletion_blocked_by: Option<usize>,
    pub aws: Option<AwsStatus>,
    pub aws_conditions: Vec<Cond>,
}

/// Decides the conditions from what was observed.
pub fn conditions(o: &Observed) -> Vec<Cond> {
    let mut out = Vec::new();
    let applied = o.spec_errors.is_none() && o.other_driver.is_none() && o.foreign.is_empty();

    out.push(match &o.spec_errors {
        None => Cond::new(SPEC_VALID, true, "Valid", "The spec passes every rule."),
        Some(e) => {
            Cond::new(SPEC_VALID, false, "InvalidSpec", format!("Fix the spec; nothing running was changed: {e}"))
        }
    });
    out.push(match &o.other_driver {
        None => Cond::new(ACTIVE, true, "InCharge", "This HardenedCsiDriver manages the cluster's EBS CSI driver."),
        Some(first) => Cond::new(
            ACTIVE,
            false,
            "AnotherDriverActive",
            format!("HardenedCsiDriver {first:?} already manages the EBS CSI driver (one per cluster); delete this one or {first:?} first."),
        ),
    });
    out.push(if o.foreign.is_empty() {
        Cond::new(OWNERSHIP, false, "NoConflict", "Every driver object is owned by this HardenedCsiDriver.")
    } else {
        Cond::new(
            OWNERSHIP,
            true,
            "ForeignObjects",
            format!(
                "Existing objects not created by this operator block the install; nothing was changed. {}",
                o.foreign.join(" ")
            ),
        )
    });
    out.push(if o.snapshot_api {
        Cond::new(SNAPSHOT_API, true, "Installed", "snapshot.storage.k8s.io/v1 is served: the csi-snapshotter sidecar and VolumeSnapshotClasses are managed.")
    } else {
        Cond::new(
            SNAPSHOT_API,
            false,
            "NotInstalled",
            "snapshot.storage.k8s.io/v1 is not served: the csi-snapshotter sidecar and VolumeSnapshotClasses are left out. Install the external-snapshotter CRDs and snapshot-controller to enable snapshots.",
        )
    });
    match (&o.missing_pull_secrets, &o.pull_secret_check_error) {
        (_, Some(err)) => out.push(Cond::unknown(PULL_SECRETS, "CannotCheck", format!("Could not check the image pull Secrets: {err}"))),
        (Some(missing), None) if !missing.is_empty() => out.push(Cond::new(
            PULL_SECRETS,
            false,
            "Missing",
            format!("Image pull Secrets not found in the driver namespace: {}. Create them (kubectl create secret docker-registry NAME --docker-server=dhi.io ...) or fix spec.images.pullSecrets.", missing.join(", ")),
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
    if let Some(pvs) = o.deletion_blocked_by {
        out.push(Cond::new(
            DELETION_BLOCKED,
            true,
            "VolumesExist",
            format!("{pvs} PersistentVolume(s) of ebs.csi.aws.com still exist; deleting the driver would strand them. Delete them first, or annotate this object with csi.hardened.dev/force-delete=\"true\" to remove the driver anyway (volumes and EBS data are kept)."),
        ));
    }
    out.extend(o.aws_conditions.iter().cloned());

    let rolled_out = ctrl.is_some_and(Rollout::complete) && node.is_some_and(Rollout::complete);
    let (ready, reason, message) = if let Some(e) = &o.spec_errors {
        (false, "InvalidSpec", format!("Invalid spec: {e}"))
    } else if let Some(first) = &o.other_driver {
        (false, "AnotherDriverActive", format!("HardenedCsiDriver {first:?} manages the driver."))
    } else if !o.foreign.is_empty() {
        (
            false,
            "OwnershipConflict",
            "Objects from another installation block the install; see the OwnershipConflict condition.".to_string(),
        )
    } else if !o.apply_errors.is_empty() {
        (false, "ApplyFailed", o.apply_errors.join("; "))
    } else if o.deletion_blocked_by.is_some() {
        (
            false,
            "DeletionBlocked",
            "Deletion waits for the driver's PersistentVolumes; see DeletionBlocked.".to_string(),
        )
    } else if !rolled_out {
        (false, "RollingOut", "Children applied; waiting for the controller and node rollouts to complete.".to_string())
    } else {
        (true, "Ready", "Every child is applied and the controller and node plugin are rolled out.".to_string())
    };
    out.push(Cond::new(READY, ready, reason, message.clone()));
    let progressing = applied && o.apply_errors.is_empty() && !rolled_out;
    out.push(Cond::new(
        PROGRESSING,
        progressing,
        if progressing {
            "RollingOut"
        } else if rolled_out {
            "Complete"
        } else {
            "Blocked"
        },
        if progressing {
            "Rolling out the driver."
        } else if rolled_out {
            "The rollout is complete."
        } else {
            "Nothing can progress until the Ready condition's cause is fixed."
        },
    ));
    let degraded_reason = if !applied {
        Some(reason)
    } else if !o.apply_errors.is_empty() {
        Some("ApplyFailed")
    } else if ctrl.is_some_and(|c| c.complete_but_short()) || node.is_some_and(|n| n.complete_but_short()) {
        Some("PodsUnavailable")
    } else {
        None
    };
    out.push(match degraded_reason {
        Some(r) => Cond::new(
            DEGRADED,
            true,
            r,
            if r == "PodsUnavailable" {
                "Some driver pods are not ready; see ControllerAvailable and NodeAvailable.".to_string()
            } else {
                message.clone()
            },
        ),
        None => Cond::new(DEGRADED, false, "AsExpected", "Nothing is degraded."),
    });
    out
}

impl Rollout {
    /// Rolled out to the current generation, yet fewer pods ready than desired.
    fn complete_but_short(&self) -> bool {
        let r = &self.replicas;
        self.observed && r.updated >= r.desired && r.ready < r.desired
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

/// The whole status from what was observed and the previous status.
pub fn build(old: Option<&HardenedCsiDriverStatus>, o: &Observed, now: &Time) -> HardenedCsiDriverStatus {
    let old_conditions = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    HardenedCsiDriverStatus {
        observed_generation: o.generation,
        conditions: merge_conditions(old_conditions, &conditions(o), o.generation, now),
        controller: o.controller.as_ref().map(|r| r.replicas.clone()),
        node: o.node.as_ref().map(|r| r.replicas.clone()),
        driver_image: o.driver_image.clone(),
        storage_classes: o.storage_classes.clone(),
        volume_snapshot_classes: o.volume_snapshot_classes.clone(),
        kubernetes_version: o.kubernetes_version.clone(),
        aws: o.aws.clone(),
    }
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
            conditions(o).into_iter().find(|c| c.type_ == READY).map(|c| (c.status, c.reason)).expect("ready")
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
}
