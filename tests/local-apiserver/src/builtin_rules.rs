//! The validation and immutability rules of built-in kinds that operators trip over on real
//! clusters: workload selectors matching their templates and being immutable, containers with
//! a name and image, StorageClass and CSIDriver fields that cannot change, a binding's roleRef,
//! immutable ConfigMaps/Secrets, PVC and VolumeAttachment specs. Messages follow the real
//! server's wording so error handling can be tested.

use serde_json::Value;

use crate::error::Cause;
use crate::registry::ResourceInfo;
use crate::selectors::LabelSelector;

fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause { reason: reason.into(), message, field: field.into() }
}

fn required(field: &str) -> Cause {
    cause("FieldValueRequired", field, "Required value".into())
}

fn immutable(field: &str, v: &Value) -> Cause {
    cause("FieldValueInvalid", field, format!("Invalid value: {}: field is immutable", short(v)))
}

fn short(v: &Value) -> String {
    match v {
        Value::Object(_) | Value::Array(_) => "\"object\"".into(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn at<'v>(v: &'v Value, path: &str) -> &'v Value {
    path.split('.').fold(v, |cur, k| cur.get(k).unwrap_or(&Value::Null))
}

fn containers(spec: &Value, prefix: &str, out: &mut Vec<Cause>) {
    match spec["containers"].as_array() {
        Some(cs) if !cs.is_empty() => {
            for (i, c) in cs.iter().enumerate() {
                if c["name"].as_str().is_none_or(str::is_empty) {
                    out.push(required(&format!("{prefix}.containers[{i}].name")));
                }
                if c["image"].as_str().is_none_or(str::is_empty) {
                    out.push(required(&format!("{prefix}.containers[{i}].image")));
                }
            }
        }
        _ => out.push(required(&format!("{prefix}.containers"))),
    }
}

fn unchanged(old: &Value, new: &Value, path: &str, out: &mut Vec<Cause>) {
    let (o, n) = (at(old, path), at(new, path));
    if o != n {
        out.push(immutable(path, n));
    }
}

/// Problems with `new` (an update of `old` when given).
pub fn validate(info: &ResourceInfo, old: Option<&Value>, new: &Value) -> Vec<Cause> {
    let mut out = crate::auth::validation::causes(info, new);
    match (info.group.as_str(), info.kind.as_str()) {
        ("apps", "Deployment" | "DaemonSet" | "ReplicaSet") => {
            let sel = &new["spec"]["selector"];
            if !sel.is_object() {
                out.push(required("spec.selector"));
            } else {
                let labels = new["spec"]["template"]["metadata"].get("labels");
                let empty = sel.get("matchLabels").is_none_or(|m| m.as_object().is_none_or(|m| m.is_empty()))
                    && sel.get("matchExpressions").is_none_or(|m| m.as_array().is_none_or(|m| m.is_empty()));
                if empty {
                    out.push(cause(
                        "FieldValueInvalid",
                        "spec.selector",
                        "Invalid value: \"object\": empty selector is invalid for deployment".into(),
                    ));
                } else if !LabelSelector::from_object(sel).matches(labels) {
                    out.push(cause(
                        "FieldValueInvalid",
                        "spec.template.metadata.labels",
                        "Invalid value: \"object\": `selector` does not match template `labels`".into(),
                    ));
                }
            }
            containers(&new["spec"]["template"]["spec"], "spec.template.spec", &mut out);
            if let Some(old) = old {
                unchanged(old, new, "spec.selector", &mut out);
            }
            let strategy = if info.kind == "Deployment" { "strategy" } else { "updateStrategy" };
            let ru = &new["spec"][strategy]["rollingUpdate"];
            let zero = |v: &Value| matches!(v.as_i64(), Some(0)) || matches!(v.as_str(), Some("0" | "0%"));
            // Defaults: maxSurge 25% / maxUnavailable 25% (Deployment), 0 / 1 (DaemonSet).
            let surge_zero = ru.get("maxSurge").map_or(info.kind == "DaemonSet", zero);
            if ru.is_object() && surge_zero && ru.get("maxUnavailable").is_some_and(zero) {
                out.push(cause(
                    "FieldValueInvalid",
                    &format!("spec.{strategy}.rollingUpdate.maxUnavailable"),
                    format!("Invalid value: {}: may not be 0 when `maxSurge` is 0", ru["maxUnavailable"]),
                ));
            }
        }
        ("", "Pod") => containers(&new["spec"], "spec", &mut out),
        ("", "Service") => {
            let type_ = new["spec"]["type"].as_str().unwrap_or("ClusterIP");
            let headless = new["spec"]["clusterIP"].as_str() == Some("None");
            if type_ != "ExternalName" && !headless && new["spec"]["ports"].as_array().is_none_or(Vec::is_empty) {
                out.push(required("spec.ports"));
            }
            if let Some(old) = old
                && at(old, "spec.clusterIP").is_string()
                && at(new, "spec.clusterIP").is_string()
            {
                unchanged(old, new, "spec.clusterIP", &mut out);
            }
        }
        ("storage.k8s.io", "StorageClass") => {
            if new["provisioner"].as_str().is_none_or(str::is_empty) {
                out.push(required("provisioner"));
            }
            if let Some(old) = old {
                // As ValidateStorageClassUpdate words them: three Forbidden, and volumeBindingMode
                // through ValidateImmutableField.
                for f in ["parameters", "provisioner", "reclaimPolicy"] {
                    if at(old, f) != at(new, f) {
                        out.push(cause("FieldValueForbidden", f, format!("Forbidden: updates to {f} are forbidden.")));
                    }
                }
                unchanged(old, new, "volumeBindingMode", &mut out);
            }
        }
        ("storage.k8s.io", "CSIDriver") => {
            if let Some(old) = old {
                for f in ["spec.attachRequired", "spec.fsGroupPolicy", "spec.volumeLifecycleModes"] {
                    unchanged(old, new, f, &mut out);
                }
            }
        }
        ("storage.k8s.io", "VolumeAttributesClass") => {
            if new["driverName"].as_str().is_none_or(str::is_empty) {
                out.push(required("driverName"));
            }
            if let Some(old) = old {
                unchanged(old, new, "driverName", &mut out);
                unchanged(old, new, "parameters", &mut out);
            }
        }
        ("storage.k8s.io", "VolumeAttachment") => {
            if let Some(old) = old {
                unchanged(old, new, "spec", &mut out);
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            if !new["roleRef"].is_object() {
                out.push(required("roleRef"));
            }
            if let Some(old) = old
                && old["roleRef"] != new["roleRef"]
            {
                out.push(cause(
                    "FieldValueInvalid",
                    "roleRef",
                    format!("Invalid value: {}: cannot change roleRef", short(&new["roleRef"])),
                ));
            }
        }
        ("", "ConfigMap" | "Secret") => {
            if let Some(old) = old
                && old["immutable"] == Value::Bool(true)
            {
                for f in ["data", "binaryData", "stringData", "immutable"] {
                    if at(old, f) != at(new, f) && !(f == "stringData" && new.get(f).is_none()) {
                        out.push(cause(
                            "FieldValueForbidden",
                            f,
                            "Forbidden: field is immutable when `immutable` is set".into(),
                        ));
                    }
                }
            }
        }
        ("", "PersistentVolumeClaim") => {
            if let Some(old) = old {
                let strip = |v: &Value| {
                    let mut s = v["spec"].clone();
                    if let Some(m) = s.as_object_mut() {
                        m.remove("resources");
                        m.remove("volumeAttributesClassName");
                        // The binder fills volumeName once; setting it from empty is allowed.
                        if v["spec"]["volumeName"].as_str().is_none_or(str::is_empty) {
                            m.remove("volumeName");
                        }
                    }
                    s
                };
                let mut new_s = strip(new);
                if old["spec"]["volumeName"].as_str().is_none_or(str::is_empty)
                    && let Some(m) = new_s.as_object_mut()
                {
                    m.remove("volumeName");
                }
                if strip(old) != new_s {
                    out.push(cause(
                        "FieldValueForbidden",
                        "spec",
                        "Forbidden: spec is immutable after creation except resources.requests and \
                         volumeAttributesClassName for bound claims"
                            .into(),
                    ));
                }
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
    use serde_json::json;

    fn info(group: &str, plural: &str) -> std::sync::Arc<ResourceInfo> {
        Registry::default().lookup(group, "v1", plural).unwrap()
    }

    #[test]
    fn deployment_selector_must_match_and_is_immutable() {
        let d = json!({"spec": {"selector": {"matchLabels": {"a": "b"}},
                                "template": {"metadata": {"labels": {"a": "c"}},
                                             "spec": {"containers": [{"name": "x", "image": "i"}]}}}});
        let c = validate(&info("apps", "deployments"), None, &d);
        assert_eq!(c[0].field, "spec.template.metadata.labels");
        let ok = json!({"spec": {"selector": {"matchLabels": {"a": "b"}},
                                 "template": {"metadata": {"labels": {"a": "b"}},
                                              "spec": {"containers": [{"name": "x"}]}}}});
        assert_eq!(
            validate(&info("apps", "deployments"), None, &ok)[0].field,
            "spec.template.spec.containers[0].image"
        );
        let mut moved = ok.clone();
        moved["spec"]["selector"]["matchLabels"]["z"] = json!("1");
        moved["spec"]["template"]["metadata"]["labels"]["z"] = json!("1");
        moved["spec"]["template"]["spec"]["containers"][0]["image"] = json!("i");
        let c = validate(&info("apps", "deployments"), Some(&ok), &moved);
        assert!(c.iter().any(|c| c.field == "spec.selector" && c.message.contains("immutable")));
    }

    #[test]
    fn a_rollout_must_be_able_to_move() {
        let d = |ru: Value| {
            json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "strategy": {"type": "RollingUpdate",
                "rollingUpdate": ru}, "template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "x", "image": "i"}]}}}})
        };
        let c = validate(&info("apps", "deployments"), None, &d(json!({"maxSurge": 0, "maxUnavailable": "0%"})));
        assert_eq!(c[0].field, "spec.strategy.rollingUpdate.maxUnavailable");
        assert!(c[0].message.contains("may not be 0 when `maxSurge` is 0"), "{}", c[0].message);
        assert!(
            validate(&info("apps", "deployments"), None, &d(json!({"maxSurge": 1, "maxUnavailable": 0}))).is_empty()
        );
    }

    #[test]
    fn storage_class_and_role_ref_cannot_change() {
        let sc = json!({"provisioner": "a", "parameters": {"type": "gp3"}});
        let mut sc2 = sc.clone();
        sc2["parameters"]["type"] = json!("io2");
        let c = validate(&info("storage.k8s.io", "storageclasses"), Some(&sc), &sc2);
        assert_eq!((c[0].field.as_str(), c[0].reason.as_str()), ("parameters", "FieldValueForbidden"));
        let rb = json!({"roleRef": {"kind": "ClusterRole", "name": "a", "apiGroup": "rbac.authorization.k8s.io"}});
        let mut rb2 = rb.clone();
        rb2["roleRef"]["name"] = json!("b");
        let c = validate(&info("rbac.authorization.k8s.io", "clusterrolebindings"), Some(&rb), &rb2);
        assert!(c[0].message.contains("cannot change roleRef"));
        let cm = json!({"immutable": true, "data": {"a": "1"}});
        let cm2 = json!({"immutable": true, "data": {"a": "2"}});
        assert_eq!(validate(&info("", "configmaps"), Some(&cm), &cm2)[0].field, "data");
    }
}
