//! The RBAC authorizer of kube-apiserver over the stored objects: ClusterRoleBindings apply
//! everywhere, RoleBindings in their namespace (to a Role of that namespace or a ClusterRole);
//! a rule allows a request when verb, API group, resource (or `*/subresource`), resource name
//! and non-resource URL all match (`rbac.RuleAllows`). Members of `system:masters` are allowed
//! everything before RBAC is asked, as on a real cluster. Also: the default cluster roles and
//! bindings a fresh cluster has, and the 403 body of a denial.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::UserInfo;
use super::request_info::Attrs;
use crate::error::ApiError;
use crate::store::Inner;

pub const GROUP: &str = "rbac.authorization.k8s.io";
pub const CLUSTER_ROLES: &str = "rbac.authorization.k8s.io/clusterroles";
pub const CLUSTER_ROLE_BINDINGS: &str = "rbac.authorization.k8s.io/clusterrolebindings";
pub const ROLES: &str = "rbac.authorization.k8s.io/roles";
pub const ROLE_BINDINGS: &str = "rbac.authorization.k8s.io/rolebindings";

/// One `PolicyRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

impl Rule {
    pub fn from_json(v: &Value) -> Rule {
        Rule {
            verbs: strings(&v["verbs"]),
            api_groups: strings(&v["apiGroups"]),
            resources: strings(&v["resources"]),
            resource_names: strings(&v["resourceNames"]),
            non_resource_urls: strings(&v["nonResourceURLs"]),
        }
    }

    /// `rbacv1helpers.CompactString`: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`.
    pub fn compact_string(&self) -> String {
        let q = |v: &Vec<String>| format!("[{}]", v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" "));
        let mut parts = Vec::new();
        for (label, v) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !v.is_empty() {
                parts.push(format!("{label}:{}", q(v)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }

    /// `rbac.RuleAllows`.
    pub fn allows(&self, a: &Attrs) -> bool {
        let verb = self.verbs.iter().any(|v| v == "*" || *v == a.verb);
        if !a.resource_request {
            return verb && self.non_resource_urls.iter().any(|u| non_resource_url_matches(u, &a.path));
        }
        verb && self.api_groups.iter().any(|g| g == "*" || *g == a.api_group)
            && resource_matches(&self.resources, &a.combined_resource(), &a.subresource)
            && (self.resource_names.is_empty() || self.resource_names.contains(&a.name))
    }
}

fn resource_matches(rule_resources: &[String], combined: &str, subresource: &str) -> bool {
    rule_resources.iter().any(|r| {
        r == "*"
            || r == combined
            || (!subresource.is_empty()
                && r.len() == subresource.len() + 2
                && r.starts_with("*/")
                && r.ends_with(subresource))
    })
}

pub fn non_resource_url_matches(rule_url: &str, path: &str) -> bool {
    rule_url == "*" || rule_url == path || (rule_url.ends_with('*') && path.starts_with(rule_url.trim_end_matches('*')))
}

/// A binding subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

impl Subject {
    fn from_json(v: &Value) -> Subject {
        Subject {
            kind: v["kind"].as_str().unwrap_or_default().into(),
            name: v["name"].as_str().unwrap_or_default().into(),
            namespace: v["namespace"].as_str().unwrap_or_default().into(),
        }
    }

    /// `appliesToUser`: a ServiceAccount subject without namespace means the binding's.
    pub fn applies_to(&self, user: &UserInfo, binding_namespace: &str) -> bool {
        match self.kind.as_str() {
            "User" => user.name == self.name,
            "Group" => user.groups.contains(&self.name),
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() { binding_namespace } else { &self.namespace };
                !ns.is_empty() && user.name == super::sa_username(ns, &self.name)
            }
            _ => false,
        }
    }

    fn describe(&self, binding_namespace: &str) -> String {
        match self.kind.as_str() {
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() { binding_namespace } else { &self.namespace };
                format!("{} {:?}", self.kind, format!("{}/{}", self.name, ns))
            }
            _ => format!("{} {:?}", self.kind, self.name),
        }
    }
}

/// A binding that applies to the user, with the role it grants.
#[derive(Debug, Clone)]
pub struct Source {
    /// "ClusterRoleBinding" or "RoleBinding".
    pub binding_kind: &'static str,
    pub binding_name: String,
    /// Empty for ClusterRoleBindings.
    pub binding_namespace: String,
    pub role_kind: String,
    pub role_name: String,
    pub subject: Subject,
    /// Whether the binding is one of the cluster's defaults (`kubernetes.io/bootstrapping`).
    pub bootstrap: bool,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.binding_namespace.is_empty() {
            self.binding_name.clone()
        } else {
            format!("{}/{}", self.binding_name, self.binding_namespace)
        };
        write!(
            f,
            "{} {:?} of {} {:?} to {}",
            self.binding_kind,
            name,
            self.role_kind,
            self.role_name,
            self.subject.describe(&self.binding_namespace)
        )
    }
}

/// The rules of a ClusterRole (for an aggregated one, what the aggregation controller wrote).
pub fn cluster_role_rules(role: &Value) -> Vec<Rule> {
    role["rules"].as_array().into_iter().flatten().map(Rule::from_json).collect()
}

/// The rules a roleRef grants in `namespace` (`GetRoleReferenceRules`), or the error message the
/// real authorizer reports for a missing role (`clusterrole.rbac.authorization.k8s.io "x" not found`).
pub fn role_ref_rules(s: &Inner, role_ref: &Value, namespace: &str) -> Result<Vec<Rule>, String> {
    let kind = role_ref["kind"].as_str().unwrap_or_default();
    let name = role_ref["name"].as_str().unwrap_or_default();
    match kind {
        "ClusterRole" => match s.get(CLUSTER_ROLES, &(String::new(), name.to_string())) {
            Some(role) => Ok(cluster_role_rules(&role)),
            None => Err(format!("clusterrole.{GROUP} {name:?} not found")),
        },
        "Role" => match s.get(ROLES, &(namespace.to_string(), name.to_string())) {
            Some(role) => Ok(role["rules"].as_array().into_iter().flatten().map(Rule::from_json).collect()),
            None => Err(format!("role.{GROUP} {name:?} not found")),
        },
        other => Err(format!("unsupported role reference kind: {other:?}")),
    }
}

fn is_bootstrap(obj: &Value) -> bool {
    obj["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
}

/// `VisitRulesFor`: every rule granted to `user` in `namespace` ("" = cluster-wide only), with
/// its source; `visit` returns false to stop. Resolution errors are passed as `Err`.
pub fn visit_rules_for(
    s: &Inner,
    user: &UserInfo,
    namespace: &str,
    visit: &mut dyn FnMut(&Source, Result<&Rule, &str>) -> bool,
) {
    let mut bindings: Vec<(&'static str, std::sync::Arc<Value>)> =
        s.list(CLUSTER_ROLE_BINDINGS, None).into_iter().map(|b| ("ClusterRoleBinding", b)).collect();
    if !namespace.is_empty() {
        bindings.extend(s.list(ROLE_BINDINGS, Some(namespace)).into_iter().map(|b| ("RoleBinding", b)));
    }
    for (binding_kind, b) in bindings {
        let binding_namespace = if binding_kind == "RoleBinding" { namespace } else { "" };
        let subjects: Vec<Subject> = b["subjects"].as_array().into_iter().flatten().map(Subject::from_json).collect();
        let Some(subject) = subjects.into_iter().find(|sub| sub.applies_to(user, binding_namespace)) else {
            continue;
        };
        let role_ref = &b["roleRef"];
        let source = Source {
            binding_kind,
            binding_name: b["metadata"]["name"].as_str().unwrap_or_default().into(),
            binding_namespace: binding_namespace.into(),
            role_kind: role_ref["kind"].as_str().unwrap_or_default().into(),
            role_name: role_ref["name"].as_str().unwrap_or_default().into(),
            subject,
            bootstrap: is_bootstrap(&b),
        };
        // A ClusterRoleBinding may only reference a ClusterRole.
        let rules = if binding_kind == "ClusterRoleBinding" && source.role_kind != "ClusterRole" {
            Err(format!("invalid ClusterRoleBinding roleRef kind {:?}", source.role_kind))
        } else {
            role_ref_rules(s, role_ref, binding_namespace)
        };
        match rules {
            Ok(rules) => {
                for r in &rules {
                    if !visit(&source, Ok(r)) {
                        return;
                    }
                }
            }
            Err(e) => {
                if !visit(&source, Err(&e)) {
                    return;
                }
            }
        }
    }
}

/// `RulesFor`: the rules granted in `namespace`, and the resolution errors.
pub fn rules_for(s: &Inner, user: &UserInfo, namespace: &str) -> (Vec<Rule>, Vec<String>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    visit_rules_for(s, user, namespace, &mut |_, r| {
        match r {
            Ok(r) => rules.push(r.clone()),
            Err(e) => errors.push(e.to_string()),
        }
        true
    });
    (rules, errors)
}

/// An authorization decision with the reason the real authorizers give.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// Errors joined like `utilerrors.NewAggregate`.
pub fn aggregate(errors: &[String]) -> String {
    match errors {
        [] => String::new(),
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// The union authorizer of a real control plane: `system:masters`, then RBAC.
pub fn authorize(s: &Inner, user: &UserInfo, a: &Attrs) -> Decision {
    if user.is_privileged() {
        return Decision { allowed: true, reason: String::new() };
    }
    let mut decision = Decision::default();
    let mut errors = Vec::new();
    visit_rules_for(s, user, &a.namespace, &mut |source, r| match r {
        Ok(rule) if rule.allows(a) => {
            decision = Decision { allowed: true, reason: format!("RBAC: allowed by {source}") };
            false
        }
        Ok(_) => true,
        Err(e) => {
            errors.push(e.to_string());
            true
        }
    });
    if !decision.allowed && !errors.is_empty() {
        decision.reason = format!("RBAC: {}", aggregate(&errors));
    }
    decision
}

/// The 403 the real server sends (`responsewriters.Forbidden` through `NewForbidden`).
pub fn forbidden(user: &UserInfo, a: &Attrs, reason: &str) -> ApiError {
    let mut msg = String::new();
    if !a.resource_request {
        let _ = write!(msg, "User {:?} cannot {} path {:?}", user.name, a.verb, a.path);
    } else if !a.namespace.is_empty() {
        let _ = write!(
            msg,
            "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
            user.name,
            a.verb,
            a.combined_resource(),
            a.api_group,
            a.namespace
        );
    } else {
        let _ = write!(
            msg,
            "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
            user.name,
            a.verb,
            a.combined_resource(),
            a.api_group
        );
    }
    if !reason.is_empty() {
        let _ = write!(msg, ": {reason}");
    }
    let group = if a.resource_request { a.api_group.as_str() } else { "" };
    let resource = if a.resource_request { a.resource.as_str() } else { "" };
    forbidden_error(group, resource, &a.name, &msg)
}

/// `apierrors.NewForbidden(groupResource, name, err)`.
pub fn forbidden_error(group: &str, resource: &str, name: &str, msg: &str) -> ApiError {
    let qualified = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
    let message = if resource.is_empty() && group.is_empty() {
        format!("forbidden: {msg}")
    } else if name.is_empty() {
        format!("{qualified} is forbidden: {msg}")
    } else {
        format!("{qualified} {name:?} is forbidden: {msg}")
    };
    let mut e = ApiError::forbidden(message);
    let mut details = serde_json::Map::new();
    for (k, v) in [("name", name), ("group", group), ("kind", resource)] {
        if !v.is_empty() {
            details.insert(k.into(), json!(v));
        }
    }
    e.details = Some(Value::Object(details));
    e
}

fn bootstrap_meta(name: &str) -> Value {
    json!({
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

/// The default ClusterRoles and ClusterRoleBindings of a fresh cluster that clients rely on
/// (bootstrap policy): `cluster-admin` for `system:masters`, discovery, public info and the
/// self-reviews for everyone authenticated, public info also for the unauthenticated.
pub fn bootstrap_objects() -> Vec<Value> {
    let role = |name: &str, rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": bootstrap_meta(name),
            "rules": rules})
    };
    let binding = |name: &str, groups: &[&str]| {
        let subjects: Vec<Value> =
            groups.iter().map(|g| json!({"apiGroup": GROUP, "kind": "Group", "name": g})).collect();
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": bootstrap_meta(name), "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": name},
            "subjects": subjects})
    };
    let public_info = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    let discovery = [
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/openapi",
        "/openapi/*",
        "/readyz",
        "/version",
        "/version/",
    ];
    vec![
        role(
            "cluster-admin",
            json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ]),
        ),
        role("system:discovery", json!([{"nonResourceURLs": discovery, "verbs": ["get"]}])),
        role("system:public-info-viewer", json!([{"nonResourceURLs": public_info, "verbs": ["get"]}])),
        role(
            "system:basic-user",
            json!([
                {"apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
            ]),
        ),
        binding("cluster-admin", &[super::MASTERS]),
        binding("system:discovery", &[super::AUTHENTICATED]),
        binding("system:basic-user", &[super::AUTHENTICATED]),
        binding("system:public-info-viewer", &[super::AUTHENTICATED, super::UNAUTHENTICATED]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(v: Value) -> Rule {
        Rule::from_json(&v)
    }

    #[test]
    fn rules_match_like_rule_allows() {
        let r = rule(json!({"apiGroups": [""], "resources": ["pods", "*/status"], "verbs": ["get"]}));
        assert!(r.allows(&Attrs::resource("get", "", "pods", "ns", "p")));
        let mut status = Attrs::resource("get", "apps", "deployments", "ns", "d");
        status.subresource = "status".into();
        assert!(!r.allows(&status), "the API group must match too");
        status.api_group = "".into();
        assert!(r.allows(&status));
        let mut log = Attrs::resource("get", "", "pods", "ns", "p");
        log.subresource = "log".into();
        assert!(!r.allows(&log), "pods does not grant pods/log");
        let named =
            rule(json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["*"]}));
        assert!(named.allows(&Attrs::resource("update", "", "configmaps", "ns", "a")));
        assert!(!named.allows(&Attrs::resource("list", "", "configmaps", "ns", "")));
        let urls = rule(json!({"nonResourceURLs": ["/api/*", "/healthz"], "verbs": ["get"]}));
        assert!(urls.allows(&Attrs::non_resource("get", "/api/v1")));
        assert!(urls.allows(&Attrs::non_resource("get", "/healthz")));
        assert!(!urls.allows(&Attrs::non_resource("get", "/healthz/etcd")));
        assert!(!urls.allows(&Attrs::non_resource("post", "/healthz")));
    }

    #[test]
    fn compact_strings_like_client_go() {
        let r = rule(json!({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create", "get"]}));
        assert_eq!(r.compact_string(), r#"{APIGroups:["apps"], Resources:["deployments"], Verbs:["create" "get"]}"#);
    }

    #[test]
    fn forbidden_messages_like_the_real_server() {
        let u = UserInfo::service_account("ns", "sa", "");
        let e = forbidden(&u, &Attrs::resource("create", "apps", "deployments", "default", ""), "");
        assert_eq!(
            e.message,
            "deployments.apps is forbidden: User \"system:serviceaccount:ns:sa\" cannot create resource \
             \"deployments\" in API group \"apps\" in the namespace \"default\""
        );
        let e = forbidden(&u, &Attrs::resource("get", "", "nodes", "", "n1"), "");
        assert_eq!(
            e.message,
            "nodes \"n1\" is forbidden: User \"system:serviceaccount:ns:sa\" cannot get resource \"nodes\" in API \
             group \"\" at the cluster scope"
        );
        let e = forbidden(&u, &Attrs::non_resource("get", "/metrics"), "");
        assert_eq!(e.message, "forbidden: User \"system:serviceaccount:ns:sa\" cannot get path \"/metrics\"");
    }
}
