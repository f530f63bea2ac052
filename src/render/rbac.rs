//! Identities and RBAC of the driver: the two service accounts (IRSA annotation on the
//! controller's), the sidecars' ClusterRoles and bindings, the node role and the leases Role.
//! Rules follow upstream chart 2.64.0; nothing reads Secrets.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use std::collections::BTreeMap;

use super::{Child, RenderCtx, controller_deployment as controller, node_daemonset as node};

pub const IRSA_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// The ClusterRole names this operator binds; the operator's own `bind`/`escalate` permissions
/// are restricted to exactly these.
pub const CLUSTER_ROLES: &[&str] = &[
    "ebs-external-attacher-role",
    "ebs-csi-node-role",
    "ebs-external-provisioner-role",
    "ebs-external-resizer-role",
    "ebs-external-snapshotter-role",
];
pub const LEASES_ROLE: &str = "ebs-csi-leases-role";

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

fn subject(ctx: &RenderCtx, sa: &str) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".into(),
        name: sa.into(),
        namespace: Some(ctx.spec.namespace.clone()),
        api_group: None,
    }]
}

fn cluster_role(ctx: &RenderCtx, name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole { metadata: ctx.cluster_meta(name), rules: Some(rules), aggregation_rule: None }
}

fn cluster_binding(ctx: &RenderCtx, name: &str, role: &str, sa: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ctx.cluster_meta(name),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(subject(ctx, sa)),
    }
}

pub(crate) fn build(ctx: &RenderCtx) -> Vec<Child> {
    let irsa = ctx
        .spec
        .aws
        .identity
        .irsa
        .as_ref()
        .map(|i| BTreeMap::from([(IRSA_ANNOTATION.to_string(), i.role_arn.clone())]));
    let csa = controller::SERVICE_ACCOUNT;
    let mut roles = vec![
        ("ebs-external-attacher-role", "ebs-csi-attacher-binding", attacher_rules(), csa),
        ("ebs-csi-node-role", "ebs-csi-node-getter-binding", node_rules(), node::SERVICE_ACCOUNT),
        ("ebs-external-provisioner-role", "ebs-csi-provisioner-binding", provisioner_rules(), csa),
        ("ebs-external-resizer-role", "ebs-csi-resizer-binding", resizer_rules(), csa),
    ];
    if ctx.caps.snapshot_api {
        roles.push(("ebs-external-snapshotter-role", "ebs-csi-snapshotter-binding", snapshotter_rules(), csa));
    }
    let mut out = vec![
        Child::new(service_account(ctx, csa, irsa)),
        Child::new(service_account(ctx, node::SERVICE_ACCOUNT, None)),
    ];
    out.extend(roles.iter().map(|(role, _, rules, _)| Child::new(cluster_role(ctx, role, rules.clone()))));
    out.extend(roles.iter().map(|(role, binding, _, sa)| Child::new(cluster_binding(ctx, binding, role, sa))));
    out.push(Child::new(Role {
        metadata: ctx.ns_meta(LEASES_ROLE),
        rules: Some(vec![rule(
            &["coordination.k8s.io"],
            &["leases"],
            &["get", "watch", "list", "delete", "update", "create"],
        )]),
    }));
    out.push(Child::new(RoleBinding {
        metadata: ctx.ns_meta("ebs-csi-leases-rolebinding"),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: LEASES_ROLE.into(),
        },
        subjects: Some(subject(ctx, csa)),
    }));
    out
}
