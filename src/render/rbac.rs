//! Identities and RBAC of the driver. The operator renders and applies the two service accounts
//! (IRSA annotation on the controller's). The driver's RBAC (the sidecars' ClusterRoles and
//! bindings, the node role, the leases Role) is installed by the chart (or kustomize), by a
//! cluster admin, for the driver version the operator carries: [`driver_rbac`] is that set, the
//! single source the chart is tested against and the operator verifies (it never writes RBAC, so
//! its token cannot grant anything). Rules follow upstream chart 2.64.0; nothing reads Secrets.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

use super::{Child, RenderCtx, controller_deployment as controller, node_daemonset as node};

pub const IRSA_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// The driver's ClusterRoles, each with its binding and the ServiceAccount it binds.
pub const CLUSTER_ROLES: &[(&str, &str, &str)] = &[
    ("ebs-external-attacher-role", "ebs-csi-attacher-binding", controller::SERVICE_ACCOUNT),
    ("ebs-csi-node-role", "ebs-csi-node-getter-binding", node::SERVICE_ACCOUNT),
    ("ebs-external-provisioner-role", "ebs-csi-provisioner-binding", controller::SERVICE_ACCOUNT),
    ("ebs-external-resizer-role", "ebs-csi-resizer-binding", controller::SERVICE_ACCOUNT),
    ("ebs-external-snapshotter-role", "ebs-csi-snapshotter-binding", controller::SERVICE_ACCOUNT),
];
/// The snapshotter's role: needed only while the snapshot API is installed.
pub const SNAPSHOTTER_ROLE: &str = "ebs-external-snapshotter-role";
pub const LEASES_ROLE: &str = "ebs-csi-leases-role";
pub const LEASES_ROLE_BINDING: &str = "ebs-csi-leases-rolebinding";
/// The driver's ServiceAccounts, the only ones the operator writes.
pub const SERVICE_ACCOUNTS: &[&str] =
    &[controller::SERVICE_ACCOUNT, node::SERVICE_ACCOUNT, super::snapshot_controller::SERVICE_ACCOUNT];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let s = |v: &[&str]| Some(v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    PolicyRule {
        api_groups: s(groups),
        resources: s(resources),
        verbs: verbs.iter().map(|x| x.to_string()).collect(),
        ..PolicyRule::default()
    }
}

const EVENTS: &[&str] = &["list", "watch", "create", "update", "patch"];
const READ: &[&str] = &["get", "list", "watch"];

fn attacher_rules() -> Vec<PolicyRule> {
    vec![
        rule(&[""], &["persistentvolumes"], &["get", "list", "watch", "patch"]),
        rule(&["storage.k8s.io"], &["csinodes"], READ),
        rule(&["storage.k8s.io"], &["volumeattachments"], &["get", "list", "watch", "patch"]),
        rule(&["storage.k8s.io"], &["volumeattachments/status"], &["patch"]),
    ]
}

fn node_rules() -> Vec<PolicyRule> {
    vec![
        rule(&["storage.k8s.io"], &["volumeattachments"], READ),
        rule(&[""], &["nodes"], &["get", "patch", "list", "watch"]),
        rule(&["storage.k8s.io"], &["csinodes"], &["get"]),
    ]
}

fn provisioner_rules() -> Vec<PolicyRule> {
    vec![
        rule(&[""], &["persistentvolumes"], &["get", "list", "watch", "create", "patch", "delete"]),
        rule(&[""], &["persistentvolumeclaims"], &["get", "list", "watch", "update"]),
        rule(&["storage.k8s.io"], &["storageclasses"], READ),
        rule(&[""], &["events"], EVENTS),
        rule(&["snapshot.storage.k8s.io"], &["volumesnapshots"], &["get", "list", "watch", "update"]),
        rule(&["snapshot.storage.k8s.io"], &["volumesnapshotcontents"], &["get", "list"]),
        rule(&["storage.k8s.io"], &["csinodes"], READ),
        rule(&[""], &["nodes"], READ),
        rule(&["storage.k8s.io"], &["volumeattachments"], READ),
        rule(&["storage.k8s.io"], &["volumeattributesclasses"], &["get"]),
    ]
}

fn resizer_rules() -> Vec<PolicyRule> {
    vec![
        rule(&[""], &["persistentvolumes"], &["get", "list", "watch", "patch"]),
        rule(&[""], &["persistentvolumeclaims"], READ),
        rule(&[""], &["pods"], READ),
        rule(&[""], &["persistentvolumeclaims/status"], &["patch"]),
        rule(&[""], &["events"], EVENTS),
        rule(&["storage.k8s.io"], &["volumeattributesclasses"], READ),
    ]
}

fn snapshotter_rules() -> Vec<PolicyRule> {
    vec![
        rule(&[""], &["events"], EVENTS),
        rule(&["snapshot.storage.k8s.io"], &["volumesnapshotclasses"], READ),
        rule(&["snapshot.storage.k8s.io"], &["volumesnapshotcontents"], &["get", "list", "watch", "update", "patch"]),
        rule(&["snapshot.storage.k8s.io"], &["volumesnapshotcontents/status"], &["update", "patch"]),
        rule(&["groupsnapshot.storage.k8s.io"], &["volumegroupsnapshotclasses"], READ),
        rule(
            &["groupsnapshot.storage.k8s.io"],
            &["volumegroupsnapshotcontents"],
            &["get", "list", "watch", "update", "patch"],
        ),
        rule(&["groupsnapshot.storage.k8s.io"], &["volumegroupsnapshotcontents/status"], &["update", "patch"]),
    ]
}

fn service_account(ctx: &RenderCtx, name: &str, annotations: Option<BTreeMap<String, String>>) -> ServiceAccount {
    let mut metadata = ctx.ns_meta(name);
    metadata.annotations = annotations;
    ServiceAccount { metadata, automount_service_account_token: Some(true), ..ServiceAccount::default() }
}

fn rules_of(role: &str) -> Vec<PolicyRule> {
    match role {
        "ebs-external-attacher-role" => attacher_rules(),
        "ebs-csi-node-role" => node_rules(),
        "ebs-external-provisioner-role" => provisioner_rules(),
        "ebs-external-resizer-role" => resizer_rules(),
        _ => snapshotter_rules(),
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef { api_group: Some("rbac.authorization.k8s.io".into()), kind: kind.into(), name: name.into() }
}

fn subject(namespace: &str, sa: &str) -> Vec<Subject> {
    vec![Subject { kind: "ServiceAccount".into(), name: sa.into(), namespace: Some(namespace.into()), api_group: None }]
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), namespace: namespace.map(str::to_string), ..ObjectMeta::default() }
}

/// The driver's RBAC for a driver in `namespace`, as the chart installs it.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverRbac {
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub roles: Vec<Role>,
    pub role_bindings: Vec<RoleBinding>,
}

pub fn driver_rbac(namespace: &str) -> DriverRbac {
    DriverRbac {
        cluster_roles: CLUSTER_ROLES
            .iter()
            .map(|(role, _, _)| ClusterRole {
                metadata: meta(role, None),
                rules: Some(rules_of(role)),
                aggregation_rule: None,
            })
            .collect(),
        cluster_role_bindings: CLUSTER_ROLES
            .iter()
            .map(|(role, binding, sa)| ClusterRoleBinding {
                metadata: meta(binding, None),
                role_ref: role_ref("ClusterRole", role),
                subjects: Some(subject(namespace, sa)),
            })
            .collect(),
        roles: vec![Role {
            metadata: meta(LEASES_ROLE, Some(namespace)),
            rules: Some(vec![rule(
                &["coordination.k8s.io"],
                &["leases"],
                &["get", "watch", "list", "delete", "update", "create"],
            )]),
        }],
        role_bindings: vec![RoleBinding {
            metadata: meta(LEASES_ROLE_BINDING, Some(namespace)),
            role_ref: role_ref("Role", LEASES_ROLE),
            subjects: Some(subject(namespace, controller::SERVICE_ACCOUNT)),
        }],
    }
}

/// The snapshot-controller's ClusterRole and binding, and its leader-election Role and binding.
pub const SNAPSHOT_CONTROLLER_ROLE: &str = "snapshot-controller-runner";
pub const SNAPSHOT_CONTROLLER_BINDING: &str = "snapshot-controller-role";
pub const SNAPSHOT_CONTROLLER_LEASES_ROLE: &str = "snapshot-controller-leaderelection";

/// The snapshot-controller's rules, as external-snapshotter v8.6.0's
/// `deploy/kubernetes/snapshot-controller/rbac-snapshot-controller.yaml`.
fn snapshot_controller_rules() -> Vec<PolicyRule> {
    const SNAP: &str = "snapshot.storage.k8s.io";
    const GROUP: &str = "groupsnapshot.storage.k8s.io";
    const ALL: &[&str] = &["create", "get", "list", "watch", "update", "delete", "patch"];
    vec![
        rule(&[""], &["persistentvolumes"], READ),
        rule(&[""], &["persistentvolumeclaims"], &["get", "list", "watch", "update"]),
        rule(&[""], &["events"], EVENTS),
        rule(&[SNAP], &["volumesnapshotclasses"], READ),
        rule(&[SNAP], &["volumesnapshotcontents"], ALL),
        rule(&[SNAP], &["volumesnapshotcontents/status"], &["patch"]),
        rule(&[SNAP], &["volumesnapshots"], &["create", "get", "list", "watch", "update", "patch", "delete"]),
        rule(&[SNAP], &["volumesnapshots/status"], &["update", "patch"]),
        rule(&[GROUP], &["volumegroupsnapshotclasses"], READ),
        rule(&[GROUP], &["volumegroupsnapshotcontents"], ALL),
        rule(&[GROUP], &["volumegroupsnapshotcontents/status"], &["patch"]),
        rule(&[GROUP], &["volumegroupsnapshots"], &["get", "list", "watch", "update", "patch"]),
        rule(&[GROUP], &["volumegroupsnapshots/status"], &["update", "patch"]),
    ]
}

/// The snapshot-controller's RBAC for a controller in `namespace`, as the chart installs it
/// (value `snapshotController.rbac.create`) and the operator verifies it while it runs the
/// controller.
pub fn snapshot_controller_rbac(namespace: &str) -> DriverRbac {
    let sa = super::snapshot_controller::SERVICE_ACCOUNT;
    DriverRbac {
        cluster_roles: vec![ClusterRole {
            metadata: meta(SNAPSHOT_CONTROLLER_ROLE, None),
            rules: Some(snapshot_controller_rules()),
            aggregation_rule: None,
        }],
        cluster_role_bindings: vec![ClusterRoleBinding {
            metadata: meta(SNAPSHOT_CONTROLLER_BINDING, None),
            role_ref: role_ref("ClusterRole", SNAPSHOT_CONTROLLER_ROLE),
            subjects: Some(subject(namespace, sa)),
        }],
        roles: vec![Role {
            metadata: meta(SNAPSHOT_CONTROLLER_LEASES_ROLE, Some(namespace)),
            rules: Some(vec![rule(
                &["coordination.k8s.io"],
                &["leases"],
                &["get", "watch", "list", "delete", "update", "create"],
            )]),
        }],
        role_bindings: vec![RoleBinding {
            metadata: meta(SNAPSHOT_CONTROLLER_LEASES_ROLE, Some(namespace)),
            role_ref: role_ref("Role", SNAPSHOT_CONTROLLER_LEASES_ROLE),
            subjects: Some(subject(namespace, sa)),
        }],
    }
}

/// The driver's ServiceAccounts; its RBAC is the chart's ([`driver_rbac`]).
pub(crate) fn build(ctx: &RenderCtx) -> Vec<Child> {
    let irsa = ctx
        .spec
        .aws
        .identity
        .irsa
        .as_ref()
        .map(|i| BTreeMap::from([(IRSA_ANNOTATION.to_string(), i.role_arn.clone())]));
    vec![
        Child::new(service_account(ctx, controller::SERVICE_ACCOUNT, irsa)),
        Child::new(service_account(ctx, node::SERVICE_ACCOUNT, None)),
    ]
}
