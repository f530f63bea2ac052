//! Status as a pure function of what one reconcile observed. Conditions keep their
//! `lastTransitionTime` unless their status changes, so an unchanged world yields an identical
//! status and the reconciler writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::aws::api::{ErrorClass, classify};
use crate::crd::{AwsStatus, HardenedCsiDriverStatus, ReplicaStatus, VolumesInUse};

pub use crate::crd::conditions::*;

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
    /// What the install-time guardrails refuse (driver namespace, registry allowlist).
    pub install_refusals: Vec<String>,
    /// What is missing from the driver's RBAC the chart installs.
    pub driver_rbac: Vec<String>,
    pub other_driver: Option<String>,
    pub foreign: Vec<String>,
    /// Objects of an adopted Helm release the operator does not render, each with what to do.
    pub release_leftovers: Vec<String>,
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
    /// Deletion waits for these volumes.
    pub deletion_blocked_by: Option<VolumesInUse>,
    /// The AWS poller's facts for this driver; None while the inventory is off or not yet run.
    pub aws: Option<AwsStatus>,
}

/// Decides the conditions from what was observed.
pub fn conditions(o: &Observed) -> Vec<Cond> {
    let mut out = Vec::new();
    let applied =
        o.spec_errors.is_none() && o.install_refusals.is_empty() && o.other_driver.is_none() && o.foreign.is_empty();

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
            format!(
                "HardenedCsiDriver {first:?} already manages the EBS CSI driver (one per cluster); delete this \
                one or {first:?} first."
            ),
        ),
    });
    out.push(if o.foreign.is_empty() && !o.release_leftovers.is_empty() {
        Cond::new(
            OWNERSHIP,
            true,
            "UnmanagedReleaseObjects",
            format!(
                "Every driver object is owned by this HardenedCsiDriver, but objects of the adopted Helm release are \
                not managed by it and were left as they are: {}",
                o.release_leftovers.join(" ")
            ),
        )
    } else if o.foreign.is_empty() {
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

    let rolled_out = ctrl.is_some_and(Rollout::complete) && node.is_some_and(Rollout::complete);
    let (ready, reason, message) = if let Some(e) = &o.spec_errors {
        (false, "InvalidSpec", format!("Invalid spec: {e}"))
    } else if !o.install_refusals.is_empty() {
        (false, "NotAllowedByInstallation", format!("Not allowed: {}", o.install_refusals.join("; ")))
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
    } else if !o.driver_rbac.is_empty() {
        (
            false,
            "DriverRbacIncomplete",
            format!(
                "The driver's RBAC, which the chart installs (the operator never writes RBAC), is incomplete: {}. \
                    Install or upgrade the operator's chart (or kustomize base) for this driver version.",
                o.driver_rbac.join("; ")
            ),
        )
    } else if o.deletion_blocked_by.is_some() {
        (
            false,
            "DeletionBlocked",
            "Deletion waits for the volumes that need the driver; see DeletionBlocked.".to_string(),
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
    } else if !o.driver_rbac.is_empty() {
        Some("DriverRbacIncomplete")
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
            } else if r == "DriverRbacIncomplete" {
                format!("The driver's RBAC is incomplete: {}.", o.driver_rbac.join("; "))
            } else {
                message.clone()
            },
        ),
        None => Cond::new(DEGRADED, false, "AsExpected", "Nothing is degraded."),
    });
    out
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
                "AWS answered ({}, region {}): {} volumes, {} snapshots, {} orphaned.",
                s.scope,
                s.region.as_deref().unwrap_or("?"),
                s.volumes.count,
                s.snapshots.count,
                s.orphaned.count
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
    out.push(if p.checked.is_empty() {
        Cond::unknown(
            AWS_PERMISSIONS,
            "NotChecked",
            "The driver's IAM permissions have not been probed yet (see \
            AwsReachable).",
        )
    } else if !p.missing.is_empty() {
        Cond::new(
            AWS_PERMISSIONS,
            false,
            "MissingPermissions",
            format!(
                "{who} lacks {}. Grant them to the driver's IAM role (the AWS managed policy AmazonEBSCSIDriverPolicy \
                    has all of them); volumes cannot be provisioned, attached or snapshotted reliably until then.",
                p.missing.join(", ")
            ),
        )
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
            format!("{who} has all {} EC2 actions the driver needs.", p.checked.len()),
        )
    });
    out
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
        deletion_blocked_by: o.deletion_blocked_by.clone(),
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
