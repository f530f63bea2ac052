//! The operator's own RBAC, with the call that needs each permission. The single source for
//! `hardened-csi-operator operator-rbac`, the Helm chart and kustomize base (a test checks they
//! match) and the controller tests, which run the operator with exactly these rules. Server-side
//! apply of an object that does not exist yet is authorised as `create` of its name too, hence
//! `create` beside `patch`, limited by resourceNames like them.
//!
//! Least privilege that holds when the token leaks: no write on any RBAC object (the chart
//! installs the driver's roles; the operator watches them by name to verify), no `escalate`, no
//! `bind`, tokens only for the driver controller's ServiceAccount, namespaced writes only in the
//! driver namespace and only to the driver's objects by name, Secrets only the named pull Secrets,
//! ConfigMaps only the named CA bundles.

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde::Serialize;

use crate::reconciler::snapshots::CRD_NAMES as SNAPSHOT_CRDS;
use crate::reconciler::{SERVICE_MONITOR_CRD, SNAPSHOT_CRD};
use crate::render::rbac::{
    CLUSTER_ROLES, DriverRbac, LEASES_ROLE, LEASES_ROLE_BINDING, SERVICE_ACCOUNTS, SNAPSHOT_CONTROLLER_BINDING,
    SNAPSHOT_CONTROLLER_LEASES_ROLE, SNAPSHOT_CONTROLLER_ROLE, driver_rbac, snapshot_controller_rbac,
};
use crate::render::{DRIVER_NAME, controller_deployment, network_policy, node_daemonset, snapshot_controller};

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

const fn named(
    group: &'static str,
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
    resource_names: &'static [&'static str],
    why: &'static str,
) -> Permission {
    Permission { group, resources, verbs, resource_names, why }
}

/// Everything the operator does to an object whose name it knows: read it (`get`), create it by
/// server-side apply (authorised as `create` of that name), change it and remove it.
const BY_NAME: &[&str] = &["get", "create", "patch", "delete"];
/// The caches' list and watch (they read, never write). A label-filtered one names no object, so
/// it cannot be limited by name; a watch by `fieldSelector metadata.name` is, to that name.
const CACHE: &[&str] = &["list", "watch"];

const CSI_DRIVER: &[&str] = &[DRIVER_NAME];
const DRIVER_CLUSTER_ROLES: &[&str] =
    &[CLUSTER_ROLES[0].0, CLUSTER_ROLES[1].0, CLUSTER_ROLES[2].0, CLUSTER_ROLES[3].0, CLUSTER_ROLES[4].0];
const DRIVER_CLUSTER_ROLE_BINDINGS: &[&str] =
    &[CLUSTER_ROLES[0].1, CLUSTER_ROLES[1].1, CLUSTER_ROLES[2].1, CLUSTER_ROLES[3].1, CLUSTER_ROLES[4].1];

/// Cluster-wide permissions (ClusterRole). Nothing here writes RBAC, namespaced objects or
/// tokens: a stolen token can change the driver's CSIDriver and the storage/snapshot classes, and
/// read what is listed.
pub const CLUSTER: &[Permission] = &[
    p(
        "csi.hardened.dev",
        &["hardenedcsidrivers"],
        &["list", "watch", "patch"],
        "watch drivers; patch adds/removes the cleanup finalizer",
    ),
    p("csi.hardened.dev", &["hardenedcsidrivers/status"], &["patch"], "server-side apply of status"),
    named("storage.k8s.io", &["csidrivers"], BY_NAME, CSI_DRIVER, "the CSIDriver ebs.csi.aws.com, by name only"),
    named(
        "storage.k8s.io",
        &["csidrivers"],
        CACHE,
        CSI_DRIVER,
        "the CSIDriver cache watches with fieldSelector metadata.name, so even the watch is by name",
    ),
    p(
        "storage.k8s.io",
        &["storageclasses"],
        &["get", "list", "watch", "create", "patch", "delete"],
        "StorageClasses: their names come from each spec, so by kind",
    ),
    p(
        "snapshot.storage.k8s.io",
        &["volumesnapshotclasses"],
        &["list", "watch", "create", "patch", "delete"],
        "VolumeSnapshotClasses: their names come from each spec, so by kind",
    ),
    p(
        "storage.k8s.io",
        &["volumeattributesclasses"],
        &["get", "list", "watch", "create", "patch", "delete"],
        "VolumeAttributesClasses: their names come from each spec, so by kind",
    ),
    named(
        "rbac.authorization.k8s.io",
        &["clusterroles"],
        CACHE,
        &[SNAPSHOT_CONTROLLER_ROLE],
        "verify the snapshot-controller's ClusterRole the chart installs: a watch by metadata.name (read only)",
    ),
    named(
        "rbac.authorization.k8s.io",
        &["clusterrolebindings"],
        CACHE,
        &[SNAPSHOT_CONTROLLER_BINDING],
        "verify the snapshot-controller's ClusterRoleBinding the chart installs: a watch by metadata.name (read only)",
    ),
    named(
        "rbac.authorization.k8s.io",
        &["clusterroles"],
        CACHE,
        DRIVER_CLUSTER_ROLES,
        "verify the driver's ClusterRoles the chart installs: one watch by metadata.name each (read only)",
    ),
    named(
        "rbac.authorization.k8s.io",
        &["clusterrolebindings"],
        CACHE,
        DRIVER_CLUSTER_ROLE_BINDINGS,
        "verify the driver's ClusterRoleBindings the chart installs: one watch by metadata.name each (read only)",
    ),
    named(
        "apiextensions.k8s.io",
        &["customresourcedefinitions"],
        &["get", "list", "watch"],
        &[SNAPSHOT_CRD, SERVICE_MONITOR_CRD],
        "detect the snapshot API and the Prometheus Operator's ServiceMonitor: get and a watch by metadata.name of \
        their CRDs",
    ),
    named(
        "apiextensions.k8s.io",
        &["customresourcedefinitions"],
        &["get", "create", "patch"],
        &SNAPSHOT_CRDS,
        "spec.snapshots.controller: read the three snapshot CRDs (whose they are, their bundle) and apply the \
        shipped ones where absent, server-side by name; never delete (that would delete every VolumeSnapshot)",
    ),
    named(
        "coordination.k8s.io",
        &["leases"],
        &["list"],
        &[snapshot_controller::LEADER_LEASE],
        "spec.snapshots.controller: find a snapshot-controller of another installation in any namespace by the \
        leader-election Lease it holds: a list by metadata.name (read only; no Deployment is read cluster-wide)",
    ),
    p(
        "",
        &["persistentvolumes"],
        &["list", "watch"],
        "deletion guard; the inventory's PersistentVolume watch (orphans, leaks); VolumeAttributesClasses in use \
        (read only)",
    ),
    p(
        "",
        &["persistentvolumeclaims"],
        &["list"],
        "a VolumeAttributesClass is kept while a claim names it (read only, before deleting one)",
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
        "events.k8s.io",
        &["events"],
        &["create", "patch"],
        "events on condition transitions; a cluster-scoped object's events go to the default namespace",
    ),
];

const CONTROLLER: &[&str] = &[controller_deployment::NAME];
const SNAPSHOT_CONTROLLER: &[&str] = &[snapshot_controller::NAME];
const NODE: &[&str] = &[node_daemonset::NAME];
const NETWORK_POLICY: &[&str] = &[network_policy::NAME, snapshot_controller::NAME];
const METRICS_SERVICES: &[&str] = &[controller_deployment::NAME, node_daemonset::NAME];

/// Permissions in the driver namespace, fixed at install time (`run --driver-namespace`, chart
/// value `driverNamespace`): a Role there. Every write is limited to the driver's objects by name.
pub const DRIVER_NAMESPACE: &[Permission] = &[
    named("", &["serviceaccounts"], BY_NAME, SERVICE_ACCOUNTS, "the driver's two ServiceAccounts"),
    p("", &["serviceaccounts"], CACHE, "ServiceAccount cache (metadata)"),
    named(
        "",
        &["serviceaccounts/token"],
        &["create"],
        &[controller_deployment::SERVICE_ACCOUNT],
        "IAM preflight as the driver: a token for the controller's ServiceAccount only (IRSA via STS, Pod Identity \
        via EKS Auth)",
    ),
    named("apps", &["deployments"], BY_NAME, CONTROLLER, "the controller Deployment"),
    named(
        "apps",
        &["deployments"],
        BY_NAME,
        SNAPSHOT_CONTROLLER,
        "the snapshot-controller Deployment (spec.snapshots.controller); get also tells whether another \
        installation runs one there",
    ),
    named("apps", &["daemonsets"], BY_NAME, NODE, "the node DaemonSet"),
    p("apps", &["deployments", "daemonsets"], CACHE, "workload caches (rollout status)"),
    named("policy", &["poddisruptionbudgets"], BY_NAME, CONTROLLER, "the controller PodDisruptionBudget"),
    named(
        "policy",
        &["poddisruptionbudgets"],
        BY_NAME,
        SNAPSHOT_CONTROLLER,
        "the snapshot-controller PodDisruptionBudget",
    ),
    p("policy", &["poddisruptionbudgets"], CACHE, "PodDisruptionBudget cache (metadata)"),
    named("", &["services"], BY_NAME, METRICS_SERVICES, "the driver metrics Services (controller, node)"),
    p("", &["services"], CACHE, "Service cache (metadata)"),
    named(
        "monitoring.coreos.com",
        &["servicemonitors"],
        BY_NAME,
        METRICS_SERVICES,
        "the driver's ServiceMonitors (spec.metrics.serviceMonitor), one per metrics Service",
    ),
    p("monitoring.coreos.com", &["servicemonitors"], CACHE, "ServiceMonitor cache (metadata)"),
    named(
        "networking.k8s.io",
        &["networkpolicies"],
        BY_NAME,
        NETWORK_POLICY,
        "the driver and snapshot-controller pods' NetworkPolicies",
    ),
    p("networking.k8s.io", &["networkpolicies"], CACHE, "NetworkPolicy cache (metadata)"),
    p(
        "",
        &["pods"],
        CACHE,
        "PodsHealthy and the health grace rules: the driver pods' container statuses (pull failures, crash loops), \
        one label-filtered watch (read only)",
    ),
    named(
        "rbac.authorization.k8s.io",
        &["roles"],
        CACHE,
        &[LEASES_ROLE],
        "verify the driver's leases Role the chart installs: a watch by metadata.name (read only)",
    ),
    named(
        "rbac.authorization.k8s.io",
        &["rolebindings"],
        CACHE,
        &[LEASES_ROLE_BINDING],
        "verify the driver's leases RoleBinding the chart installs: a watch by metadata.name (read only)",
    ),
    named(
        "rbac.authorization.k8s.io",
        &["roles", "rolebindings"],
        CACHE,
        &[SNAPSHOT_CONTROLLER_LEASES_ROLE],
        "verify the snapshot-controller's leader-election Role and RoleBinding the chart installs: a watch by \
        metadata.name each (read only)",
    ),
];

/// Permissions on the image pull Secrets in the driver namespace (their own Role; the names are
/// install-time values, `pullSecretCheck.secretNames`).
pub const PULL_SECRETS: &[Permission] = &[p(
    "",
    &["secrets"],
    &["get", "list", "watch"],
    "the named image pull Secrets and static-key Secret, each watched by name (fieldSelector metadata.name) for \
        PullSecretsPresent and the controller's identity hash; metadata-only requests, secret data is never \
        fetched; limited by resourceNames to the Secrets named at install time",
)];

/// Permissions on the ConfigMaps holding `spec.aws.caBundle` in the driver namespace (their own
/// Role; the names are install-time values, chart value `aws.caBundleConfigMaps`).
pub const CA_BUNDLES: &[Permission] = &[p(
    "",
    &["configmaps"],
    &["get"],
    "the CA bundle (spec.aws.caBundle) the operator trusts for its own AWS calls: one get of its ConfigMap when \
        the driver's AWS client is built; limited by resourceNames to the ConfigMaps named at install time",
)];

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
    /// Without resourceNames: the chart fills in the pull Secret names.
    pub pull_secret_rules: Vec<PolicyRule>,
    /// Without resourceNames: the chart fills in the CA-bundle ConfigMap names.
    pub ca_bundle_rules: Vec<PolicyRule>,
    pub operator_namespace_rules: Vec<PolicyRule>,
    /// The driver's own RBAC (for the default driver namespace, kube-system), which the chart
    /// installs and the operator verifies.
    pub driver_rbac: DriverRbac,
    /// The snapshot-controller's RBAC (kube-system), which the chart installs with
    /// `snapshotController.rbac.create` and the operator verifies while it runs the controller.
    pub snapshot_controller_rbac: DriverRbac,
}

/// The default driver namespace (`run --driver-namespace`).
pub const DEFAULT_DRIVER_NAMESPACE: &str = "kube-system";

pub fn operator_rbac() -> OperatorRbac {
    OperatorRbac {
        cluster_rules: rules(CLUSTER),
        driver_namespace_rules: rules(DRIVER_NAMESPACE),
        pull_secret_rules: rules(PULL_SECRETS),
        ca_bundle_rules: rules(CA_BUNDLES),
        operator_namespace_rules: rules(OPERATOR_NAMESPACE),
        driver_rbac: driver_rbac(DEFAULT_DRIVER_NAMESPACE),
        snapshot_controller_rbac: snapshot_controller_rbac(DEFAULT_DRIVER_NAMESPACE),
    }
}

/// Whether `verb` on `group`/`resource` is granted anywhere above (ignoring resource names).
pub fn allows(group: &str, resource: &str, verb: &str) -> bool {
    CLUSTER
        .iter()
        .chain(DRIVER_NAMESPACE)
        .chain(PULL_SECRETS)
        .chain(CA_BUNDLES)
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
