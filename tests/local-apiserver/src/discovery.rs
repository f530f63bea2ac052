//! Discovery documents derived from the registry: `/version`, `/api`, `/api/v1`, `/apis`,
//! `/apis/{group}` and `/apis/{group}/{version}`. Plain (non-aggregated) discovery: kubectl and
//! kube-rs fall back to it when the response is not an APIGroupDiscoveryList.

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::registry::{Registry, ResourceInfo};
use crate::server::Shared;

/// Normalises a Kubernetes version given as `MAJOR.MINOR` or `MAJOR.MINOR.PATCH` (a leading `v`
/// allowed): "v1.34.2" -> "1.34.2", "1.34" -> "1.34".
pub fn parse_version(v: &str) -> Result<String, String> {
    let trimmed = v.trim();
    let parts: Vec<&str> = trimmed.trim_start_matches('v').split('.').collect();
    let numeric = parts.iter().all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()));
    if !(2..=3).contains(&parts.len()) || !numeric {
        return Err(format!(
            "{trimmed:?} is not a Kubernetes version: use MAJOR.MINOR or MAJOR.MINOR.PATCH, e.g. \"1.34\""
        ));
    }
    let n: Vec<u32> = parts.iter().filter_map(|p| p.parse().ok()).collect();
    Ok(n.iter().map(u32::to_string).collect::<Vec<_>>().join("."))
}

/// The `/version` document (version.Info) of a server of `kubernetes_version`.
pub fn version(kubernetes_version: &str) -> Value {
    let mut parts = kubernetes_version.trim_start_matches('v').split('.');
    let major = parts.next().unwrap_or("1");
    let minor = parts.next().unwrap_or("33");
    let patch = parts.next().unwrap_or("0");
    json!({
        "major": major,
        "minor": minor,
        "emulationMajor": major,
        "emulationMinor": minor,
        "gitVersion": format!("v{major}.{minor}.{patch}-local"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/local-apiserver/version`, the control endpoint for process users: GET answers the current
/// `/version` document; POST or PUT with `{"kubernetesVersion": "1.34"}` (JSON or YAML) changes
/// the version at run time, as [`crate::LocalApiServer::set_kubernetes_version`] does, and
/// answers the new `/version` document.
pub fn version_control(shared: &Shared, method: &str, body: &[u8]) -> Result<Value, ApiError> {
    match method {
        "GET" => Ok(version(&shared.kubernetes_version())),
        "POST" | "PUT" => {
            let doc: Value = serde_yaml_ng::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the body is not a JSON or YAML object: {e}")))?;
            let Some(v) = doc.get("kubernetesVersion").and_then(Value::as_str) else {
                return Err(ApiError::bad_request(
                    "kubernetesVersion: Required value: a string MAJOR.MINOR or MAJOR.MINOR.PATCH, e.g. \"1.34\"",
                ));
            };
            shared
                .set_kubernetes_version(v)
                .map_err(|e| ApiError::bad_request(format!("kubernetesVersion: Invalid value: {e}")))?;
            Ok(version(&shared.kubernetes_version()))
        }
        other => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource: {other} /local-apiserver/version \
             (GET, POST or PUT)"
        ))),
    }
}

pub fn core_versions(port: u16) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{port}")}],
    })
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    json!({
        "name": name,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn groups(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg.groups().iter().map(|(g, vs)| group_doc(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    let groups = reg.groups();
    let (g, vs) = groups.iter().find(|(g, _)| g == name)?;
    let mut doc = group_doc(g, vs);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn verbs(r: &ResourceInfo) -> Vec<&'static str> {
    if crate::auth::reviews::is_review(r) {
        return vec!["create"];
    }
    vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        .into_iter()
        .filter(|v| !(r.kind == "Namespace" && *v == "deletecollection"))
        .collect()
}

/// APIResourceList for one group/version, or None when nothing is served there.
pub fn resources(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let served = reg.served_at(group, version);
    if served.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for r in &served {
        let mut doc = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs(r),
        });
        if !r.short_names.is_empty() {
            doc["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            doc["categories"] = json!(r.categories);
        }
        list.push(doc);
        if r.status_subresource {
            list.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
                             "kind": r.kind, "verbs": ["get", "patch", "update"]}));
        }
        if r.scale_subresource {
            list.push(json!({"name": format!("{}/scale", r.plural), "singularName": "", "namespaced": r.namespaced,
                             "group": "autoscaling", "version": "v1", "kind": "Scale",
                             "verbs": ["get", "patch", "update"]}));
        }
        if r.token_subresource {
            list.push(json!({"name": "serviceaccounts/token", "singularName": "", "namespaced": true,
                             "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest",
                             "verbs": ["create"]}));
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_matches_the_registry() {
        let reg = Registry::default();
        let apps = resources(&reg, "apps", "v1").unwrap();
        let names: Vec<&str> =
            apps["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert!(
            names.contains(&"deployments") && names.contains(&"deployments/status") && names.contains(&"daemonsets")
        );
        let core = resources(&reg, "", "v1").unwrap();
        assert!(core["resources"].as_array().unwrap().iter().any(|r| r["name"] == "serviceaccounts/token"));
        let gl = groups(&reg);
        assert!(gl["groups"].as_array().unwrap().iter().any(|g| g["name"] == "storage.k8s.io"));
        assert!(resources(&reg, "example.com", "v1").is_none());
        let has_vac = |reg: &Registry| {
            resources(reg, "storage.k8s.io", "v1").unwrap()["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "volumeattributesclasses")
        };
        assert!(!has_vac(&reg), "1.33 serves no VolumeAttributesClass (v1beta1 is off by default)");
        reg.set_kubernetes_minor(34);
        assert!(has_vac(&reg), "1.34 serves storage.k8s.io/v1 VolumeAttributesClass");
        reg.set_kubernetes_minor(33);
        assert!(!has_vac(&reg));
        assert_eq!(version("1.33")["minor"], "33");
        assert_eq!(version("1.34.2")["gitVersion"], "v1.34.2-local");
        assert_eq!(parse_version("v1.34.2"), Ok("1.34.2".into()));
        assert_eq!(parse_version(" 1.34 "), Ok("1.34".into()));
        for bad in ["1", "1.x", "one.two", "1.34.2.1", "", "1..3"] {
            assert!(parse_version(bad).unwrap_err().contains("is not a Kubernetes version"), "{bad}");
        }
    }
}
