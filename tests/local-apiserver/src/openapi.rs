//! A minimal OpenAPI v3 surface: the `/openapi/v3` index and one document per group/version
//! listing each served path with its operations, the `x-kubernetes-group-version-kind` of the
//! resource and the `fieldValidation` query parameter. That is what kubectl reads to learn that
//! the server validates fields itself, so `kubectl create -f` and `kubectl apply` work without
//! `--validate=false`. Component schemas are not served (client-side apply's strategic merge
//! needs them; server-side apply does not).

use serde_json::{Map, Value, json};

use crate::registry::{Registry, ResourceInfo};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// A hash of what is served, so clients re-fetch documents after a CRD change.
fn served_hash(reg: &Registry) -> String {
    let mut names: Vec<String> = reg.all().iter().map(|r| format!("{}/{}/{}", r.group, r.version, r.plural)).collect();
    names.sort();
    let h = names.join(",").bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    format!("{h:016X}")
}

pub fn index(reg: &Registry) -> Value {
    let hash = served_hash(reg);
    let mut paths = Map::new();
    let mut gvs: Vec<(String, String)> = reg.all().iter().map(|r| (r.group.clone(), r.version.clone())).collect();
    gvs.sort();
    gvs.dedup();
    for (g, v) in gvs {
        let p = gv_path(&g, &v);
        paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}));
    }
    json!({"paths": paths})
}

fn operation(r: &ResourceInfo, id: &str, with_validation: bool) -> Value {
    let mut params = vec![json!({"name": "dryRun", "in": "query", "schema": {"type": "string"}})];
    if with_validation {
        params.push(json!({"name": "fieldManager", "in": "query", "schema": {"type": "string"}}));
        params.push(json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}));
    }
    json!({
        "operationId": id,
        "parameters": params,
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": id,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    })
}

/// The document for one group/version, or None when nothing is served there.
pub fn document(reg: &Registry, group: &str, version: &str, kubernetes_version: &str) -> Option<Value> {
    let served = reg.served_at(group, version);
    if served.is_empty() {
        return None;
    }
    let base = format!("/{}", gv_path(group, version));
    let mut paths = Map::new();
    for r in &served {
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        paths.insert(
            collection.clone(),
            json!({"get": operation(r, "list", false), "post": operation(r, "post", true), "delete": operation(r,
                "deletecollection", false)}),
        );
        let item = format!("{collection}/{{name}}");
        paths.insert(
            item.clone(),
            json!({"get": operation(r, "get", false), "put": operation(r, "put", true), "patch": operation(r, "patch",
                true), "delete": operation(r, "delete", false)}),
        );
        if r.status_subresource {
            paths.insert(
                format!("{item}/status"),
                json!({"get": operation(r, "get", false), "put": operation(r,
                "put", true), "patch": operation(r, "patch", true)}),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v{kubernetes_version}.0")},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_follow_the_registry() {
        let reg = Registry::default();
        let idx = index(&reg);
        assert!(
            idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/apps/v1?hash=")
        );
        let doc = document(&reg, "apps", "v1", "1.33").unwrap();
        let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        assert!(document(&reg, "nope", "v1", "1.33").is_none());
    }
}
