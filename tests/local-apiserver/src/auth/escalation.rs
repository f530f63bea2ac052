//! The RBAC storage's privilege-escalation checks, run on the final object of every create,
//! update, patch and apply of a Role, ClusterRole, RoleBinding or ClusterRoleBinding:
//! - a Role/ClusterRole needs `escalate` on it (checked with the request's name, so none on a
//!   create), or the requester must already hold every rule it contains (`ConfirmNoEscalation`
//!   with `Covers`); an aggregationRule needs full authority;
//! - a binding needs `bind` on the referenced role (in the binding's namespace), or the requester
//!   must hold every rule of that role; a missing role is then 404;
//! - members of `system:masters` skip both, and so does a change of finalizers or ownerReferences
//!   only. Server-internal writes have no user and are not checked.

use std::sync::Arc;

use serde_json::Value;

use super::rbac::{self, Rule};
use super::request_info::Attrs;
use super::{UserInfo, current};
use crate::error::{ApiError, ApiResult, Target as ErrTarget};
use crate::handlers::Target;
use crate::server::Shared;
use crate::store::Inner;

fn has(set: &[String], s: &str) -> bool {
    set.iter().any(|x| x == s)
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| has(set, w))
}

fn resource_covers_all(owner: &[String], wanted: &[String]) -> bool {
    if has(owner, "*") || has_all(owner, wanted) {
        return true;
    }
    wanted
        .iter()
        .all(|path| has(owner, path) || path.split_once('/').is_some_and(|(_, sub)| has(owner, &format!("*/{sub}"))))
}

fn non_resource_urls_cover_all(owner: &[String], wanted: &[String]) -> bool {
    wanted
        .iter()
        .all(|path| owner.iter().any(|o| o == path || (o.ends_with('*') && path.starts_with(o.trim_end_matches('*')))))
}

/// `ruleCovers`: whether `owner` covers `sub` (a rule from [`super::audit::breakdown`]).
fn rule_covers(owner: &Rule, sub: &Rule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, "*") || has_all(&owner.api_groups, &sub.api_groups);
    let resources = resource_covers_all(&owner.resources, &sub.resources);
    let urls = non_resource_urls_cover_all(&owner.non_resource_urls, &sub.non_resource_urls);
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && urls && names
}

/// `Covers`: whether `owner` holds every rule of `wanted`, and the single rules it misses.
pub fn covers(owner: &[Rule], wanted: &[Rule]) -> (bool, Vec<Rule>) {
    let missing: Vec<Rule> = wanted
        .iter()
        .flat_map(super::audit::breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect();
    (missing.is_empty(), missing)
}

/// `CompactRules`: single-resource rules that differ only by verb are merged.
fn compact(rules: Vec<Rule>) -> Vec<Rule> {
    let mut simple: Vec<Rule> = Vec::new();
    let mut out = Vec::new();
    for r in rules {
        let is_simple = r.resource_names.len() <= 1
            && r.non_resource_urls.is_empty()
            && r.api_groups.len() == 1
            && r.resources.len() == 1;
        if !is_simple {
            out.push(r);
            continue;
        }
        match simple.iter_mut().find(|s| {
            s.api_groups == r.api_groups && s.resources == r.resources && s.resource_names == r.resource_names
        }) {
            Some(s) => s.verbs.extend(r.verbs),
            None => simple.push(r),
        }
    }
    out.extend(simple);
    out
}

/// `ConfirmNoEscalation`: the requester's rules in `namespace` must cover `rules`.
fn confirm_no_escalation(s: &Inner, user: &UserInfo, namespace: &str, rules: &[Rule]) -> Result<(), String> {
    let (owner, errors) = rbac::rules_for(s, user, namespace);
    let (ok, missing) = covers(&owner, rules);
    if ok {
        return Ok(());
    }
    let mut lines: Vec<String> = compact(missing).iter().map(Rule::compact_string).collect();
    lines.sort();
    lines.dedup();
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let mut msg = format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        groups.join(" "),
        lines.join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: {}", rbac::aggregate(&errors)));
    }
    Err(msg)
}

/// Asks the authorizer about a verb on an RBAC object (`escalate`, `bind`), recording it in the
/// audit when allowed.
fn authorized(shared: &Shared, s: &Inner, user: &UserInfo, a: &Attrs) -> bool {
    let allowed = rbac::authorize(s, user, a).allowed;
    if allowed {
        shared.auth.audit.record_allowed(&user.name, a);
    }
    allowed
}

/// Whether the change touches only what garbage collection needs (`IsOnlyMutatingGCFields`).
fn only_gc_fields(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v["metadata"].as_object_mut() {
            for k in ["finalizers", "ownerReferences", "managedFields", "resourceVersion", "generation"] {
                m.remove(k);
            }
        }
        v
    };
    strip(old) == strip(new)
}

fn rules_of(obj: &Value) -> Vec<Rule> {
    obj["rules"].as_array().into_iter().flatten().map(Rule::from_json).collect()
}

fn full_authority() -> Vec<Rule> {
    let all = || vec!["*".to_string()];
    vec![
        Rule { verbs: all(), api_groups: all(), resources: all(), ..Default::default() },
        Rule { verbs: all(), non_resource_urls: all(), ..Default::default() },
    ]
}

/// The escalation check for a write of `new` (replacing `old`) to `t`, for the request's user.
pub fn check(shared: &Shared, s: &Inner, t: &Target, old: Option<&Arc<Value>>, new: &Value) -> ApiResult<()> {
    if !shared.auth.enabled() || t.info.group != rbac::GROUP || t.subresource.is_some() {
        return Ok(());
    }
    let Some(requester) = current() else {
        return Ok(());
    };
    let user = &requester.user;
    if user.is_privileged() {
        return Ok(());
    }
    if let Some(old) = old
        && only_gc_fields(old, new)
    {
        return Ok(());
    }
    let namespace = t.namespace.clone().unwrap_or_default();
    let name = new["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let resource = t.info.plural.as_str();
    let forbidden = |msg: &str| rbac::forbidden_error(rbac::GROUP, resource, &name, msg);
    match resource {
        "roles" | "clusterroles" => {
            let escalate = Attrs::resource("escalate", rbac::GROUP, resource, &namespace, &requester.request_name);
            if authorized(shared, s, user, &escalate) {
                return Ok(());
            }
            // A refusal is recorded as a denied `escalate` (the request itself was authorised).
            let refused = |msg: &str| {
                shared.auth.audit.record_denied(&user.name, &escalate);
                forbidden(msg)
            };
            confirm_no_escalation(s, user, &namespace, &rules_of(new)).map_err(|m| refused(&m))?;
            let aggregation = new.get("aggregationRule").filter(|a| !a.is_null());
            let changed = old.map(|o| o.get("aggregationRule").filter(|a| !a.is_null()) != aggregation).unwrap_or(true);
            if resource == "clusterroles" && aggregation.is_some() && changed {
                confirm_no_escalation(s, user, "", &full_authority())
                    .map_err(|_| refused("must have cluster-admin privileges to use the aggregationRule"))?;
            }
            Ok(())
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_ref = &new["roleRef"];
            let role_kind = role_ref["kind"].as_str().unwrap_or_default();
            let role_name = role_ref["name"].as_str().unwrap_or_default();
            let role_resource = match role_kind {
                "ClusterRole" => "clusterroles",
                "Role" => "roles",
                // Validation rejects other kinds.
                _ => return Ok(()),
            };
            let group = role_ref["apiGroup"].as_str().unwrap_or(rbac::GROUP);
            let bind = Attrs::resource("bind", group, role_resource, &namespace, role_name);
            if authorized(shared, s, user, &bind) {
                return Ok(());
            }
            let rules = match role_kind {
                "ClusterRole" => s
                    .get(rbac::CLUSTER_ROLES, &(String::new(), role_name.to_string()))
                    .map(|r| rbac::cluster_role_rules(&r)),
                _ => s.get(rbac::ROLES, &(namespace.clone(), role_name.to_string())).map(|r| rules_of(&r)),
            }
            .ok_or_else(|| {
                ApiError::not_found(&ErrTarget { group: rbac::GROUP, resource: role_resource, name: role_name })
            })?;
            confirm_no_escalation(s, user, &namespace, &rules).map_err(|m| {
                shared.auth.audit.record_denied(&user.name, &bind);
                forbidden(&m)
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(v: Value) -> Vec<Rule> {
        v.as_array().unwrap().iter().map(Rule::from_json).collect()
    }

    #[test]
    fn covering_like_the_policy_comparator() {
        let owner = rules(json!([
            {"apiGroups": [""], "resources": ["configmaps", "*/status"], "verbs": ["get", "list"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"], "verbs": ["*"]},
            {"nonResourceURLs": ["/api/*"], "verbs": ["get"]},
        ]));
        let ok = |w: Value| covers(&owner, &rules(w)).0;
        assert!(ok(json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}])));
        assert!(ok(json!([{"apiGroups": [""], "resources": ["pods/status"], "verbs": ["list"]}])));
        assert!(ok(
            json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["x"], "verbs": ["get"]}])
        ));
        assert!(!ok(json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["watch"]}])));
        assert!(ok(json!([{"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"],
            "verbs": ["update"]}])));
        assert!(!ok(json!([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["update"]}])));
        assert!(ok(json!([{"nonResourceURLs": ["/api/v1"], "verbs": ["get"]}])));
        assert!(!ok(json!([{"nonResourceURLs": ["/apis"], "verbs": ["get"]}])));
        let (_, missing) = covers(
            &owner,
            &rules(json!([{"apiGroups": [""], "resources": ["secrets"],
            "verbs": ["get", "list"]}])),
        );
        let compacted = compact(missing);
        assert_eq!(compacted.len(), 1);
        assert_eq!(compacted[0].compact_string(), r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}"#);
    }
}
