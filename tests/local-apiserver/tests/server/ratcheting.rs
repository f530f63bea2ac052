//! Validation ratcheting (KEP-4008) through the API, as a real kube-apiserver does it: an object
//! stored under an older, laxer schema (here: stored with `insert_raw`) stays writable where a
//! write leaves its invalid values unchanged, and a changed invalid value is refused, on the main
//! resource and on the status subresource. Status writes check only `status` against the schema
//! but every CEL rule; they ratchet from 1.33, main resource writes from 1.30.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use local_apiserver::LocalApiServer;
use serde_json::{Value, json};

use super::common::{server, status};

fn gadget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object",
                        "x-kubernetes-validations": [
                            {"rule": "self.size <= self.maxSize", "message": "size must not exceed maxSize"}],
                        "properties": {
                            "size": {"type": "integer", "maximum": 100},
                            "maxSize": {"type": "integer", "default": 10},
                            "name": {"type": "string", "maxLength": 16, "pattern": "^[a-z]+$"}}},
                    "status": {"type": "object", "properties": {
                        "phase": {"type": "string", "enum": ["Ready", "Failed"]},
                        "replicas": {"type": "integer", "minimum": 0}}}}}}
            }]
        }
    })
}

async fn gadgets(srv: &LocalApiServer) -> Api<DynamicObject> {
    let crds: Api<CustomResourceDefinition> = Api::all(srv.client());
    crds.patch("gadgets.example.com", &PatchParams::apply("test"), &Patch::Apply(gadget_crd())).await.unwrap();
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Gadget"), "gadgets");
    Api::namespaced_with(srv.client(), "default", &ar)
}

/// Stores a Gadget as-is, as if written before the CRD's rules tightened.
fn store(srv: &LocalApiServer, name: &str, spec: Value, status: Value) {
    srv.insert_raw(json!({"apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": {"name": name, "namespace": "default", "generation": 1}, "spec": spec, "status": status}));
}

fn merge(v: Value) -> Patch<Value> {
    Patch::Merge(v)
}

/// The 422 message of a refused write.
async fn refused(r: Result<DynamicObject, kube::Error>) -> String {
    let s = status(r);
    assert_eq!(s.code, 422, "{s:?}");
    s.message
}

#[tokio::test]
async fn writes_that_leave_invalid_values_unchanged_pass_and_changed_ones_are_refused() {
    let srv = server().await;
    let api = gadgets(&srv).await;
    // Invalid by the schema (size over 100, name not lower case) and by the rule (maxSize
    // defaults to 10 on read), with an invalid status.
    store(&srv, "old", json!({"size": 500, "name": "BAD"}), json!({"replicas": -1}));
    let pp = PatchParams::default();

    // The status subresource: a merge patch and a server-side apply (what controllers send).
    let written = api.patch_status("old", &pp, &merge(json!({"status": {"phase": "Ready"}}))).await.unwrap();
    assert_eq!(written.data["status"], json!({"replicas": -1, "phase": "Ready"}));
    // The stored spec lacks its default (maxSize); reading it with the default is no spec change,
    // and a status write never moves the generation.
    assert_eq!(written.metadata.generation, Some(1));
    let apply = json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "old"},
        "status": {"phase": "Failed"}});
    api.patch_status("old", &PatchParams::apply("controller").force(), &Patch::Apply(apply)).await.unwrap();
    // A changed invalid status value is refused; a changed valid one next to it is not enough.
    let e = refused(api.patch_status("old", &pp, &merge(json!({"status": {"replicas": -2}}))).await).await;
    assert!(
        e.contains("status.replicas: Invalid value: -2: status.replicas in body should be greater than or equal to 0"),
        "{e}"
    );
    let e = refused(api.patch_status("old", &pp, &merge(json!({"status": {"phase": "Gone"}}))).await).await;
    assert!(e.contains("status.phase: Unsupported value: \"Gone\""), "{e}");

    // The main resource: a label leaves the spec unchanged.
    let labelled = api.patch("old", &pp, &merge(json!({"metadata": {"labels": {"team": "storage"}}}))).await.unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    // Changing an invalid value to another invalid one is refused, and so is the rule of the
    // changed spec.
    let e = refused(api.patch("old", &pp, &merge(json!({"spec": {"size": 600}}))).await).await;
    assert!(e.contains("spec.size: Invalid value: 600: spec.size in body should be less than or equal to 100"), "{e}");
    assert!(e.contains("size must not exceed maxSize"), "{e}");
    let e = refused(api.patch("old", &pp, &merge(json!({"spec": {"name": "WORSE"}}))).await).await;
    assert!(e.contains("spec.name: Invalid value: \"WORSE\""), "{e}");
    // Fixing the spec is accepted, and the stored object reads with its defaults.
    let fixed = api.patch("old", &pp, &merge(json!({"spec": {"size": 5, "name": "good"}}))).await.unwrap();
    assert_eq!(fixed.data["spec"], json!({"size": 5, "name": "good", "maxSize": 10}));
    assert_eq!(fixed.metadata.generation, Some(2));
    // A new object gets no ratcheting at all.
    let created = json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "new"},
        "spec": {"size": 500}});
    let e = status(api.create(&Default::default(), &serde_json::from_value(created).unwrap()).await);
    assert!(e.message.contains("spec.size: Invalid value: 500"), "{e:?}");
}

#[tokio::test]
async fn before_1_33_status_writes_check_status_and_every_rule_in_full() {
    let srv = server().await;
    let api = gadgets(&srv).await;
    srv.set_kubernetes_version("1.32").unwrap();
    let pp = PatchParams::default();
    let phase = merge(json!({"status": {"phase": "Ready"}}));
    // The spec breaks its rule: every status write is refused until the spec is fixed.
    store(&srv, "rule", json!({"size": 50}), json!({}));
    let e = refused(api.patch_status("rule", &pp, &phase).await).await;
    assert!(e.contains("spec: Invalid value: size must not exceed maxSize"), "{e}");
    // An invalid stored status is checked again on each status write.
    store(&srv, "status", json!({"size": 1}), json!({"replicas": -1}));
    let e = refused(api.patch_status("status", &pp, &phase).await).await;
    assert!(e.contains("status.replicas"), "{e}");
    // The spec schema is not checked on status writes, whatever the version.
    store(&srv, "schema", json!({"size": 1, "name": "BAD"}), json!({}));
    api.patch_status("schema", &pp, &phase).await.unwrap();
    // Main resource writes ratchet from 1.30 (CRDValidationRatcheting beta, on by default)...
    api.patch("schema", &pp, &merge(json!({"metadata": {"labels": {"a": "b"}}}))).await.unwrap();
    // ...and not before: the unchanged invalid name is refused again.
    srv.set_kubernetes_version("1.29").unwrap();
    let e = refused(api.patch("schema", &pp, &merge(json!({"metadata": {"labels": {"a": "c"}}}))).await).await;
    assert!(e.contains("spec.name: Invalid value: \"BAD\""), "{e}");
    // From 1.33 the same status writes pass.
    srv.set_kubernetes_version("1.33").unwrap();
    api.patch_status("rule", &pp, &phase).await.unwrap();
    api.patch_status("status", &pp, &phase).await.unwrap();
}
