//! Defaulting and validation of the RBAC kinds as the real `rbac/validation` package does them
//! (whatever the authorization mode): a rule needs verbs, and either apiGroups and resources or
//! (ClusterRoles only) nonResourceURLs alone; a binding's roleRef needs the RBAC API group, a
//! supported kind (only ClusterRole for a ClusterRoleBinding) and a name; subjects need a name and
//! a supported kind, User and Group subjects the RBAC API group, ServiceAccount subjects none (and
//! a namespace in a ClusterRoleBinding). Defaults: roleRef.apiGroup and the apiGroup of User and
//! Group subjects are `rbac.authorization.k8s.io` when empty.

use serde_json::{Value, json};

use super::rbac::GROUP;
use crate::error::Cause;
use crate::registry::ResourceInfo;

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// Go's `%#v` of a `[]string`, as the real messages print invalid lists.
fn go_list(v: &[String]) -> String {
    format!("[]string{{{}}}", v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", "))
}

fn required(field: String, detail: &str) -> Cause {
    let message = if detail.is_empty() { "Required value".to_string() } else { format!("Required value: {detail}") };
    Cause { reason: "FieldValueRequired".into(), message, field }
}

fn not_supported(field: String, value: &str, supported: &[&str]) -> Cause {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    Cause {
        reason: "FieldValueNotSupported".into(),
        message: format!("Unsupported value: {value:?}: supported values: {}", list.join(", ")),
        field,
    }
}

fn invalid(field: String, value: String, detail: &str) -> Cause {
    Cause { reason: "FieldValueInvalid".into(), message: format!("Invalid value: {value}: {detail}"), field }
}

/// The real `SetDefaults_*` of RoleBinding, ClusterRoleBinding and Subject.
pub fn default(info: &ResourceInfo, obj: &mut Value) {
    if info.group != GROUP || !matches!(info.kind.as_str(), "RoleBinding" | "ClusterRoleBinding") {
        return;
    }
    if obj["roleRef"].is_object() && obj["roleRef"]["apiGroup"].as_str().is_none_or(str::is_empty) {
        obj["roleRef"]["apiGroup"] = json!(GROUP);
    }
    if let Some(subjects) = obj["subjects"].as_array_mut() {
        for s in subjects {
            if matches!(s["kind"].as_str(), Some("User" | "Group")) && s["apiGroup"].as_str().is_none_or(str::is_empty)
            {
                s["apiGroup"] = json!(GROUP);
            }
        }
    }
}

fn rule_causes(rule: &Value, namespaced: bool, path: &str, out: &mut Vec<Cause>) {
    if strings(&rule["verbs"]).is_empty() {
        out.push(required(format!("{path}.verbs"), "verbs must contain at least one value"));
    }
    let urls = strings(&rule["nonResourceURLs"]);
    if !urls.is_empty() {
        if namespaced {
            out.push(invalid(
                format!("{path}.nonResourceURLs"),
                go_list(&urls),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if ["apiGroups", "resources", "resourceNames"].iter().any(|k| !strings(&rule[*k]).is_empty()) {
            out.push(invalid(
                format!("{path}.nonResourceURLs"),
                go_list(&urls),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if rule["apiGroups"].as_array().is_none_or(Vec::is_empty) {
        out.push(required(format!("{path}.apiGroups"), "resource rules must supply at least one api group"));
    }
    if strings(&rule["resources"]).is_empty() {
        out.push(required(format!("{path}.resources"), "resource rules must supply at least one resource"));
    }
}

fn subject_causes(subject: &Value, namespaced: bool, path: &str, out: &mut Vec<Cause>) {
    let name = subject["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        out.push(required(format!("{path}.name"), ""));
    }
    let api_group = subject["apiGroup"].as_str().unwrap_or_default();
    match subject["kind"].as_str().unwrap_or_default() {
        "ServiceAccount" => {
            if !api_group.is_empty() {
                out.push(not_supported(format!("{path}.apiGroup"), api_group, &[""]));
            }
            if !namespaced && subject["namespace"].as_str().is_none_or(str::is_empty) {
                out.push(required(format!("{path}.namespace"), ""));
            }
        }
        "User" | "Group" => {
            if api_group != GROUP {
                out.push(not_supported(format!("{path}.apiGroup"), api_group, &[GROUP]));
            }
        }
        other => out.push(not_supported(format!("{path}.kind"), other, &["ServiceAccount", "User", "Group"])),
    }
}

/// The validation problems of an RBAC object.
pub fn causes(info: &ResourceInfo, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    if info.group != GROUP {
        return out;
    }
    match info.kind.as_str() {
        "Role" | "ClusterRole" => {
            for (i, rule) in obj["rules"].as_array().into_iter().flatten().enumerate() {
                rule_causes(rule, info.kind == "Role", &format!("rules[{i}]"), &mut out);
            }
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let role_ref = &obj["roleRef"];
            if role_ref.is_object() {
                let group = role_ref["apiGroup"].as_str().unwrap_or_default();
                if group != GROUP {
                    out.push(not_supported("roleRef.apiGroup".into(), group, &[GROUP]));
                }
                let kind = role_ref["kind"].as_str().unwrap_or_default();
                let kinds: &[&str] =
                    if info.kind == "RoleBinding" { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
                if !kinds.contains(&kind) {
                    out.push(not_supported("roleRef.kind".into(), kind, kinds));
                }
                if role_ref["name"].as_str().is_none_or(str::is_empty) {
                    out.push(required("roleRef.name".into(), ""));
                }
            }
            for (i, s) in obj["subjects"].as_array().into_iter().flatten().enumerate() {
                subject_causes(s, info.kind == "RoleBinding", &format!("subjects[{i}]"), &mut out);
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn info(plural: &str) -> std::sync::Arc<ResourceInfo> {
        Registry::default().lookup(GROUP, "v1", plural).unwrap()
    }

    #[test]
    fn rules_need_verbs_and_one_kind_of_target() {
        let role = json!({"rules": [
            {"apiGroups": [""], "resources": ["pods"]},
            {"verbs": ["get"], "nonResourceURLs": ["/healthz"]},
            {"verbs": ["get"], "resources": ["pods"]},
        ]});
        let c = causes(&info("roles"), &role);
        let fields: Vec<&str> = c.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["rules[0].verbs", "rules[1].nonResourceURLs", "rules[2].apiGroups"]);
        assert_eq!(
            c[1].message,
            "Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs"
        );
        assert!(causes(&info("clusterroles"), &json!({"rules": [role["rules"][1]]})).is_empty());
    }

    #[test]
    fn bindings_are_defaulted_then_checked() {
        let mut b = json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [
            {"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "sa"}, {"kind": "Robot", "name": "x"}]});
        let crb = info("clusterrolebindings");
        default(&crb, &mut b);
        assert_eq!(b["roleRef"]["apiGroup"], GROUP);
        assert_eq!(b["subjects"][0]["apiGroup"], GROUP);
        let c = causes(&crb, &b);
        let fields: Vec<&str> = c.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["roleRef.kind", "subjects[1].namespace", "subjects[2].kind"]);
        assert_eq!(c[0].message, "Unsupported value: \"Role\": supported values: \"ClusterRole\"");
        assert!(
            causes(&info("rolebindings"), &json!({"roleRef": b["roleRef"], "subjects": [b["subjects"][1]]})).is_empty()
        );
    }
}
