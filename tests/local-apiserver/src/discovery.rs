//! Discovery documents derived from the registry: `/version`, `/api`, `/api/v1`, `/apis`,
//! `/apis/{group}` and `/apis/{group}/{version}`. Plain (non-aggregated) discovery: kubectl and
//! kube-rs fall back to it when the response is not an APIGroupDiscoveryList.

use serde_json::{Value, json};

use crate::registry::{Registry, ResourceInfo};

pub fn version(kubernetes_version: &str) -> Value {
    let (major, minor) = kubernetes_version.trim_start_matches('v').split_once('.').unwrap_or(("1", "33"));
    let minor = minor.split('.').next().unwrap_or(minor);
    json!({
        "major": major,
        "minor": minor,
        "emulationMajor": major,
        "emulationMinor": minor,
        "gitVersion": format!("v{major}.{minor}.0-local"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
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
        if r.token_subresource {
            list.push(json!({"name": "serviceaccounts/token", "singularName": "", "namespaced": true,
                "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]}));
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
        assert_eq!(version("1.33")["minor"], "33");
    }
}
