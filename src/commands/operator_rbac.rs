//! The operator's own RBAC, with the call that needs each permission. The single source for
//! `hardened-csi-operator operator-rbac`, the Helm chart and kustomize base (a test checks they
//! match) and the test that every request the operator makes is covered. Server-side apply of an
//! object that does not exist yet is authorised as `create` too, hence `create` beside `patch`.

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde::Serialize;

use crate::render::rbac::{CLUSTER_ROLES, LEASES_ROLE};

/// One permission and why the code needs it.
pub struct Permission {
    pub group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub resource_names: &'static [&'static str],
    pub why: &'static str,
}

const fn p(
    group: &'static str,
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
    why: &'static str,
) -> Permission {
    Permission { group, resources, verbs, resource_names: &[], why }
}

/// Cluster-wide permissions (ClusterRole).
pub const CLUSTER: &[Permission] = &[
    p(
        "csi.hardened.dev",
        &["hardenedcsidrivers"],
        &["get", "list", "watch", "patch"],
        "watch drivers; patch adds/removes the cleanup finalizer",
    ),
    p("csi.hardened.dev", &["hardenedcsidrivers/status"], &["patch"], "server-side apply of status"),
    p(
        "csi.hardened.dev",
        &["hardenedcsidrivers/finalizers"],
        &["update"],
        "owner references with blockOwnerDeletion, under the OwnerReferencesPermissionEnforcement admission plugin",
    ),
    p(
        "",
        &["serviceaccounts"],
        &["get", "list", "watch", "create", "patch", "delete"],
        "driver service accounts: apply, cache, prune",
    ),
    p(
        "apps",
        &["deployments", "daemonsets"],
        &["get", "list", "watch", "create", "patch", "delete"],
        "controller Deployment and node DaemonSet: apply, cache (rollout status), prune",
    ),
    p(
        "policy",
        &["poddisruptionbudgets"],
        &["get", "list", "watch", "create", "patch", "delete"],
        "controller PodDisruptionBudget",
    ),
    p("", &["services"], &["get", "list", "watch", "create", "patch", "delete"], "driver metrics Service"),
    p(
        "networking.k8s.io",
        &["networkpolicies"],
        &["get", "list", "watch", "create", "patch", "delete"],
        "the driver pods' NetworkPolicy",
    ),
    p(
        "rbac.authorization.k8s.io",
        &["clusterroles", "clusterrolebindings", "roles", "rolebindings"],
        &["get", "list", "watch", "create", "patch", "delete"],
        "the sidecars' and node plugin's RBAC",
    ),
    Permission {
        group: "rbac.authorization.k8s.io",
        resources: &["clusterroles"],
        verbs: &["bind", "escalate"],
        resource_names: CLUSTER_ROLES,
        why: "grant the driver's ClusterRoles without holding their permissions, only these by name",
    },
    Permission {
        group: "rbac.authorization.k8s.io",
        resources: &["roles"],
        verbs: &["bind", "escalate"],
        resource_names: &[LEASES_ROLE],
        why: "grant the driver's leases Role without holding its permissions",
    },
    p(
        "storage.k8s.io",
        &["csidrivers", "storageclasses"],
        &["get", "list", "watch", "create", "patch", "delete"],
        "the CSIDriver and StorageClasses",
    ),
    p(
        "snapshot.storage.k8s.io",
        &["volumesnapshotclasses"],
        &["get", "list", "watch", "create", "patch", "delete"],
        "VolumeSnapshotClasses",
    ),
    p(
        "apiextensions.k8s.io",
        &["customresourcedefinitions"],
        &["get", "list", "watch"],
        "detect the snapshot API (read only)",
    ),
    p(
        "",
        &["persistentvolumes"],
        &["list", "watch"],
        "deletion guard; the inventory's PersistentVolume watch (orphans, leaks; read only)",
    ),
    p(
        "storage.k8s.io",
        &["volumeattachments"],
        &["list", "watch"],
        "deletion guard; the inventory's stuck-attachment watch (read only)",
    ),
    p(
        "",
        &["nodes"],
        &["list", "watch"],
        "the inventory: Nodes' providerID (instances to probe, gone nodes; read only)",
    ),
    p(
        "snapshot.storage.k8s.io",
        &["volumesnapshotcontents"],
        &["list", "watch"],
        "the inventory: snapshots no VolumeSnapshotContent references (read only)",
    ),
    p(
        "",
        &["serviceaccounts/token"],
        &["create"],
        "IAM preflight as the driver: a token for its service account (IRSA via STS, Pod Identity via EKS Auth)",
    ),
    p("events.k8s.io", &["events"], &["create", "patch"], "events on condition transitions"),
];

/// Permissions in the driver's namespace (`spec.namespace`, a Role there).
pub const DRIVER_NAMESPACE: &[Permission] = &[
    p(
        "",
        &["secrets"],
        &["get", "list", "watch"],
        "the named image pull Secrets and static-key Secret, each watched by name (fieldSelector metadata.name) \
            for PullSecretsPresent and the controller's identity hash; metadata-only requests, secret data is never \
            fetched",
    ),
    p(
        "",
        &["pods"],
        &["list", "watch"],
        "PodsHealthy and the health grace rules: the driver pods' container statuses (pull failures, crash loops), \
        one label-filtered watch",
    ),
];

/// Permissions in the operator's own namespace (a Role there).
pub const OPERATOR_NAMESPACE: &[Permission] =
    &[p("coordination.k8s.io", &["leases"], &["get", "create", "update"], "leader election")];

pub fn rules(perms: &[Permission]) -> Vec<PolicyRule> {
    let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    perms
        .iter()
        .map(|p| PolicyRule {
            api_groups: Some(vec![p.group.to_string()]),
            resources: Some(v(p.resources)),
            verbs: v(p.verbs),
            resource_names: (!p.resource_names.is_empty()).then(|| v(p.resource_names)),
            non_resource_urls: None,
        })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorRbac {
    pub cluster_rules: Vec<PolicyRule>,
    pub driver_namespace_rules: Vec<PolicyRule>,
    pub operator_namespace_rules: Vec<PolicyRule>,
}

pub fn operator_rbac() -> OperatorRbac {
    OperatorRbac {
        cluster_rules: rules(CLUSTER),
        driver_namespace_rules: rules(DRIVER_NAMESPACE),
        operator_namespace_rules: rules(OPERATOR_NAMESPACE),
    }
}

/// Whether `verb` on `group`/`resource` is granted anywhere above (ignoring resource names).
pub fn allows(group: &str, resource: &str, verb: &str) -> bool {
    CLUSTER
        .iter()
        .chain(DRIVER_NAMESPACE)
        .chain(OPERATOR_NAMESPACE)
        .any(|p| p.group == group && p.resources.contains(&resource) && p.verbs.contains(&verb))
}

/// `hardened-csi-operator operator-rbac`: the rules as YAML.
pub fn run() -> std::process::ExitCode {
    match serde_yaml_ng::to_string(&operator_rbac()) {
        Ok(yaml) => {
            print!("{yaml}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: serialising the rules: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
