//! The access audit: every authorised request (and every `impersonate`, `bind` or `escalate`
//! check that was allowed), per user, by verb, API group, resource, subresource, namespace and
//! name; the denied ones likewise. [`unused_grants`] compares them with what the user's bindings
//! grant, expanded to one entry per verb × API group × resource × resource name (or verb ×
//! non-resource URL), so a test can fail on a permission that was granted and never needed.
//! The cluster's own default bindings (`kubernetes.io/bootstrapping: rbac-defaults`) are not
//! reported.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::UserInfo;
use super::rbac::{self, Rule};
use super::request_info::Attrs;
use crate::store::Inner;

/// One kind of request a user made, and how often.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    pub verb: String,
    /// False for non-resource requests (`path` is set instead of group/resource/name).
    pub resource_request: bool,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    /// Empty for cluster-scoped resources and requests across all namespaces.
    pub namespace: String,
    /// Empty for lists, watches and creates (unless a `metadata.name` field selector named one).
    pub name: String,
    pub path: String,
    pub count: u64,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.resource_request {
            return write!(f, "{} path {:?}", self.verb, self.path);
        }
        let resource = if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        write!(f, "{} {resource:?} in API group {:?}", self.verb, self.api_group)?;
        if !self.name.is_empty() {
            write!(f, " named {:?}", self.name)?;
        }
        if self.namespace.is_empty() {
            write!(f, " at the cluster scope")
        } else {
            write!(f, " in the namespace {:?}", self.namespace)
        }
    }
}

/// One granted permission (a rule expanded to a single verb, API group, resource and resource
/// name, or a single verb and non-resource URL) that no recorded request used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnusedGrant {
    /// `ClusterRoleBinding "NAME"` or `RoleBinding "NAMESPACE/NAME"`.
    pub binding: String,
    /// `ClusterRole "NAME"` or `Role "NAME"`.
    pub role: String,
    /// Where the grant applies: empty for a ClusterRoleBinding (everywhere).
    pub namespace: String,
    pub verb: String,
    pub api_group: String,
    pub resource: String,
    pub resource_name: String,
    pub non_resource_url: String,
}

impl std::fmt::Display for UnusedGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.non_resource_url.is_empty() {
            write!(f, "{} path {:?}", self.verb, self.non_resource_url)?;
        } else {
            write!(f, "{} {:?} in API group {:?}", self.verb, self.resource, self.api_group)?;
            if !self.resource_name.is_empty() {
                write!(f, " named {:?}", self.resource_name)?;
            }
            if !self.namespace.is_empty() {
                write!(f, " in the namespace {:?}", self.namespace)?;
            }
        }
        write!(f, " (granted by {} of {})", self.binding, self.role)
    }
}

#[derive(Default)]
struct Records {
    allowed: BTreeMap<String, BTreeMap<Attrs, u64>>,
    denied: BTreeMap<String, BTreeMap<Attrs, u64>>,
}

#[derive(Default)]
pub struct AuditLog {
    records: Mutex<Records>,
}

fn to_access(a: &Attrs, count: u64) -> Access {
    Access {
        verb: a.verb.clone(),
        resource_request: a.resource_request,
        api_group: a.api_group.clone(),
        resource: a.resource.clone(),
        subresource: a.subresource.clone(),
        namespace: a.namespace.clone(),
        name: a.name.clone(),
        path: a.path.clone(),
        count,
    }
}

/// The attributes without the API version (rules do not look at it), so repeats fold together.
fn key(a: &Attrs) -> Attrs {
    let mut k = a.clone();
    k.api_version.clear();
    if k.resource_request {
        k.path.clear();
    }
    k
}

impl AuditLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record_allowed(&self, user: &str, a: &Attrs) {
        *self.lock().allowed.entry(user.to_string()).or_default().entry(key(a)).or_default() += 1;
    }

    pub fn record_denied(&self, user: &str, a: &Attrs) {
        *self.lock().denied.entry(user.to_string()).or_default().entry(key(a)).or_default() += 1;
    }

    pub fn allowed(&self, user: &str) -> Vec<Access> {
        self.lock().allowed.get(user).into_iter().flatten().map(|(a, n)| to_access(a, *n)).collect()
    }

    pub fn denied(&self, user: &str) -> Vec<Access> {
        self.lock().denied.get(user).into_iter().flatten().map(|(a, n)| to_access(a, *n)).collect()
    }

    pub fn reset(&self) {
        let mut r = self.lock();
        r.allowed.clear();
        r.denied.clear();
    }

    fn allowed_attrs(&self, user: &str) -> Vec<Attrs> {
        self.lock().allowed.get(user).into_iter().flatten().map(|(a, _)| a.clone()).collect()
    }
}

impl Access {
    fn attrs(&self) -> Attrs {
        Attrs {
            verb: self.verb.clone(),
            resource_request: self.resource_request,
            api_group: self.api_group.clone(),
            api_version: String::new(),
            resource: self.resource.clone(),
            subresource: self.subresource.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            path: self.path.clone(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({"verb": self.verb, "resourceRequest": self.resource_request, "apiGroup": self.api_group,
            "resource": self.resource, "subresource": self.subresource, "namespace": self.namespace,
            "name": self.name, "path": self.path, "count": self.count, "description": self.to_string()})
    }
}

impl UnusedGrant {
    pub fn to_json(&self) -> Value {
        json!({"binding": self.binding, "role": self.role, "namespace": self.namespace, "verb": self.verb,
            "apiGroup": self.api_group, "resource": self.resource, "resourceName": self.resource_name,
            "nonResourceURL": self.non_resource_url, "description": self.to_string()})
    }
}

/// `GET /local-apiserver/access-log?user=USER` (admin only under RBAC, like any non-resource
/// path): the user's allowed and denied requests and unused grants, for process users.
pub fn report(shared: &crate::server::Shared, user: Option<&String>) -> Result<Value, crate::error::ApiError> {
    let user = user.filter(|u| !u.is_empty()).ok_or_else(|| {
        crate::error::ApiError::bad_request(
            "the user query parameter is required, e.g. ?user=system:serviceaccount:NS:NAME",
        )
    })?;
    let log = &shared.auth.audit;
    let unused = {
        let s = shared.store.lock();
        unused_grants(&s, log, &identity_for(user), &[])
    };
    Ok(json!({
        "user": user,
        "allowed": log.allowed(user).iter().map(Access::to_json).collect::<Vec<_>>(),
        "denied": log.denied(user).iter().map(Access::to_json).collect::<Vec<_>>(),
        "unusedGrants": unused.iter().map(UnusedGrant::to_json).collect::<Vec<_>>(),
    }))
}

/// A rule split into single-verb, single-group, single-resource, single-name rules
/// (`BreakdownRule`).
pub fn breakdown(rule: &Rule) -> Vec<Rule> {
    let mut out = Vec::new();
    for g in &rule.api_groups {
        for r in &rule.resources {
            for v in &rule.verbs {
                let one = |names: Vec<String>| Rule {
                    verbs: vec![v.clone()],
                    api_groups: vec![g.clone()],
                    resources: vec![r.clone()],
                    resource_names: names,
                    non_resource_urls: Vec::new(),
                };
                if rule.resource_names.is_empty() {
                    out.push(one(Vec::new()));
                } else {
                    out.extend(rule.resource_names.iter().map(|n| one(vec![n.clone()])));
                }
            }
        }
    }
    for u in &rule.non_resource_urls {
        for v in &rule.verbs {
            out.push(Rule { verbs: vec![v.clone()], non_resource_urls: vec![u.clone()], ..Default::default() });
        }
    }
    out
}

/// The identity the audit assumes for a user name: a ServiceAccount's groups for
/// `system:serviceaccount:NS:NAME`, `system:authenticated` otherwise.
pub fn identity_for(user: &str) -> UserInfo {
    match super::split_sa_username(user) {
        Some((ns, name)) => UserInfo::service_account(ns, name, ""),
        None => UserInfo { name: user.into(), groups: vec![super::AUTHENTICATED.into()], ..Default::default() },
    }
}

/// The permissions granted to `user` by non-default bindings that none of its recorded
/// requests, nor `also_used` (accesses recorded elsewhere, e.g. by other test servers), used.
pub fn unused_grants(s: &Inner, log: &AuditLog, user: &UserInfo, also_used: &[Access]) -> Vec<UnusedGrant> {
    let mut used = log.allowed_attrs(&user.name);
    used.extend(also_used.iter().map(|a| key(&a.attrs())));
    let mut namespaces: Vec<String> = vec![String::new()];
    namespaces.extend(
        s.list(crate::handlers::NAMESPACE_KEY, None)
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string)),
    );
    let mut out = Vec::new();
    for ns in &namespaces {
        rbac::visit_rules_for(s, user, ns, &mut |source, rule| {
            let Ok(rule) = rule else {
                return true;
            };
            // ClusterRoleBindings are visited once, with the cluster-wide pass.
            if source.bootstrap || (!ns.is_empty() && source.binding_kind == "ClusterRoleBinding") {
                return true;
            }
            for one in breakdown(rule) {
                let hit =
                    used.iter().any(|a| (source.binding_namespace.is_empty() || a.namespace == *ns) && one.allows(a));
                if hit {
                    continue;
                }
                let binding = if source.binding_namespace.is_empty() {
                    format!("{} {:?}", source.binding_kind, source.binding_name)
                } else {
                    format!(
                        "{} {:?}",
                        source.binding_kind,
                        format!("{}/{}", source.binding_namespace, source.binding_name)
                    )
                };
                let grant = UnusedGrant {
                    binding,
                    role: format!("{} {:?}", source.role_kind, source.role_name),
                    namespace: source.binding_namespace.clone(),
                    verb: one.verbs[0].clone(),
                    api_group: one.api_groups.first().cloned().unwrap_or_default(),
                    resource: one.resources.first().cloned().unwrap_or_default(),
                    resource_name: one.resource_names.first().cloned().unwrap_or_default(),
                    non_resource_url: one.non_resource_urls.first().cloned().unwrap_or_default(),
                };
                if !out.contains(&grant) {
                    out.push(grant);
                }
            }
            true
        });
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_break_down_to_single_permissions() {
        let r = Rule::from_json(&serde_json::json!({
            "apiGroups": ["", "apps"], "resources": ["configmaps"], "resourceNames": ["a", "b"], "verbs": ["get"],
        }));
        assert_eq!(breakdown(&r).len(), 4);
        let u = Rule::from_json(&serde_json::json!({"nonResourceURLs": ["/metrics"], "verbs": ["get", "head"]}));
        assert_eq!(breakdown(&u).len(), 2);
    }
}
