//! Verifies the driver's RBAC that the chart (a cluster admin) installed: the ClusterRoles and
//! bindings of the sidecars and node plugin, and the leases Role, as `render::rbac::driver_rbac`
//! defines them for the driver version this operator carries. The operator never writes RBAC:
//! it reads these objects by name and reports what is missing, so its token cannot grant a rule.

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::Api;
use kube::{Client, Resource};

use super::error::ApiMessage;
use crate::render::rbac::{DriverRbac, SNAPSHOTTER_ROLE, driver_rbac, snapshot_controller_rbac};

/// The (group, resource, verb) triples `required` grants that `held` does not. A rule limited by
/// resourceNames covers nothing here: the driver needs its rules for every object.
pub fn missing_rules(required: &[PolicyRule], held: &[PolicyRule]) -> Vec<String> {
    let has = |list: &Option<Vec<String>>, x: &str| list.iter().flatten().any(|v| v == x || v == "*");
    let mut out = Vec::new();
    for r in required {
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                let missing: Vec<&str> = r
                    .verbs
                    .iter()
                    .filter(|v| {
                        !held.iter().any(|h| {
                            h.resource_names.as_ref().is_none_or(Vec::is_empty)
                                && has(&h.api_groups, g)
                                && has(&h.resources, res)
                                && (h.verbs.iter().any(|hv| hv == *v || hv == "*"))
                        })
                    })
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    let group = if g.is_empty() { "core" } else { g };
                    out.push(format!("{} on {group}/{res}", missing.join("/")));
                }
            }
        }
    }
    out
}

fn binds(role_ref: &RoleRef, subjects: &Option<Vec<Subject>>, want_ref: &RoleRef, want: &[Subject]) -> Vec<String> {
    let mut out = Vec::new();
    if role_ref.kind != want_ref.kind || role_ref.name != want_ref.name {
        out.push(format!(
            "refers to {} {:?} instead of {} {:?}",
            role_ref.kind, role_ref.name, want_ref.kind, want_ref.name
        ));
    }
    for w in want {
        let bound =
            subjects.iter().flatten().any(|s| s.kind == w.kind && s.name == w.name && s.namespace == w.namespace);
        if !bound {
            out.push(format!("does not bind ServiceAccount {}/{}", w.namespace.as_deref().unwrap_or_default(), w.name));
        }
    }
    out
}

async fn get<K>(api: Api<K>, name: &str, problems: &mut Vec<String>) -> Option<K>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let kind = K::kind(&());
    match api.get_opt(name).await {
        Ok(Some(o)) => Some(o),
        Ok(None) => {
            problems.push(format!("{kind} {name} is missing"));
            None
        }
        Err(e) => {
            problems.push(format!("{kind} {name} cannot be read: {}", ApiMessage(&e)));
            None
        }
    }
}

/// What is wrong with the driver's RBAC in `namespace`; empty when everything the driver needs is
/// granted. The snapshotter's role counts only while the snapshot API is installed.
pub async fn check(client: &Client, namespace: &str, snapshot_api: bool) -> Vec<String> {
    check_set(client, namespace, &driver_rbac(namespace), |name| name == SNAPSHOTTER_ROLE && !snapshot_api).await
}

/// What is wrong with the snapshot-controller's RBAC (chart value `snapshotController.rbac.create`),
/// checked while the operator runs the snapshot-controller.
pub async fn check_snapshot_controller(client: &Client, namespace: &str) -> Vec<String> {
    let mut problems = check_set(client, namespace, &snapshot_controller_rbac(namespace), |_| false).await;
    if !problems.is_empty() {
        problems.push(
            "the chart installs the snapshot-controller's RBAC with the value snapshotController.rbac.create=true"
                .to_string(),
        );
    }
    problems
}

async fn check_set(client: &Client, namespace: &str, want: &DriverRbac, skip: impl Fn(&str) -> bool) -> Vec<String> {
    let mut problems = Vec::new();
    let crs: Api<ClusterRole> = Api::all(client.clone());
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    for (role, binding) in want.cluster_roles.iter().zip(&want.cluster_role_bindings) {
        let name = role.metadata.name.clone().unwrap_or_default();
        if skip(&name) {
            continue;
        }
        if let Some(live) = get(crs.clone(), &name, &mut problems).await {
            let missing =
                missing_rules(role.rules.as_deref().unwrap_or_default(), live.rules.as_deref().unwrap_or_default());
            if !missing.is_empty() {
                problems.push(format!("ClusterRole {name} lacks {}", missing.join(", ")));
            }
        }
        let binding_name = binding.metadata.name.clone().unwrap_or_default();
        if let Some(live) = get(crbs.clone(), &binding_name, &mut problems).await {
            for p in binds(
                &live.role_ref,
                &live.subjects,
                &binding.role_ref,
                binding.subjects.as_deref().unwrap_or_default(),
            ) {
                problems.push(format!("ClusterRoleBinding {binding_name} {p}"));
            }
        }
    }
    let roles: Api<Role> = Api::namespaced(client.clone(), namespace);
    let rbs: Api<RoleBinding> = Api::namespaced(client.clone(), namespace);
    for (role, binding) in want.roles.iter().zip(&want.role_bindings) {
        let name = role.metadata.name.clone().unwrap_or_default();
        if let Some(live) = get(roles.clone(), &name, &mut problems).await {
            let missing =
                missing_rules(role.rules.as_deref().unwrap_or_default(), live.rules.as_deref().unwrap_or_default());
            if !missing.is_empty() {
                problems.push(format!("Role {namespace}/{name} lacks {}", missing.join(", ")));
            }
        }
        let binding_name = binding.metadata.name.clone().unwrap_or_default();
        if let Some(live) = get(rbs.clone(), &binding_name, &mut problems).await {
            for p in binds(
                &live.role_ref,
                &live.subjects,
                &binding.role_ref,
                binding.subjects.as_deref().unwrap_or_default(),
            ) {
                problems.push(format!("RoleBinding {namespace}/{binding_name} {p}"));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(v: serde_json::Value) -> Vec<PolicyRule> {
        serde_json::from_value(v).expect("rules")
    }

    #[test]
    fn missing_verbs_are_named_per_resource() {
        let required = rules(json!([{"apiGroups": [""], "resources": ["persistentvolumes", "nodes"],
            "verbs": ["get", "create"]}]));
        let held = rules(json!([
            {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "create"]},
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["create"], "resourceNames": ["n1"]},
        ]));
        assert_eq!(missing_rules(&required, &held), ["create on core/nodes"]);
        let wildcard = rules(json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]));
        assert!(missing_rules(&required, &wildcard).is_empty());
    }
}
