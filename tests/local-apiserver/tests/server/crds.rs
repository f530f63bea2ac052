use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::Discovery;
use serde_json::{Value, json};

use super::common::{eventually, server, status};

pub fn widget_crd(scope: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": scope,
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object", "required": ["size"],
                            "x-kubernetes-validations": [{"rule": "self.size <= self.maxSize", "message": "size must \
                                not exceed maxSize"}],
                            "properties": {
                                "size": {"type": "integer", "minimum": 1, "maximum": 100},
                                "maxSize": {"type": "integer", "default": 10},
                                "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
                                "name": {"type": "string", "pattern": "^[a-z]+$"},
                                "port": {"x-kubernetes-int-or-string": true},
                                "items": {"type": "array", "x-kubernetes-list-type": "map",
                                    "x-kubernetes-list-map-keys": ["name"],
                                          "items": {"type": "object", "required": ["name"],
                                              "properties": {"name": {"type": "string"}, "value": {"type": "string"}}}},
                                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                            }
                        },
                        "status": {"type": "object", "properties": {"conditions": {"type": "array",
                            "items": {"type": "object",
                            "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}}}}
                    }
                }}
            }]
        }
    })
}

/// The Widget CRD of `scope`, applied (field manager `test`).
async fn install_widgets(client: &kube::Client, scope: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch("widgets.example.com", &PatchParams::apply("test"), &Patch::Apply(widget_crd(scope))).await.unwrap();
}

fn widget_ar() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Widget"), "widgets")
}

fn widget(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn applying_a_crd_serves_it_and_deleting_it_stops() {
    let srv = server().await;
    let client = srv.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds
        .patch("widgets.example.com", &PatchParams::apply("test"), &Patch::Apply(widget_crd("Cluster")))
        .await
        .unwrap();
    let conds = crd.status.unwrap().conditions.unwrap();
    assert!(conds.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    let d = Discovery::new(client.clone()).run().await.unwrap();
    let found = d.groups().flat_map(|g| g.recommended_resources()).any(|(ar, _)| ar.kind == "Widget");
    assert!(found, "discovery lists the CRD's resource");

    let api: Api<DynamicObject> = Api::all_with(client.clone(), &widget_ar());
    let w: DynamicObject = serde_json::from_value(widget("w1", json!({"size": 3}))).unwrap();
    let created = api.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.data["spec"]["maxSize"], 10, "defaults applied");
    assert_eq!(created.data["spec"]["mode"], "fast");
    assert!(created.metadata.namespace.is_none(), "cluster scoped");

    // Status subresource: main writes ignore status, /status writes only status.
    let st = api
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"size": 50}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(st.data["spec"]["size"], 3);
    assert_eq!(st.data["status"]["conditions"][0]["status"], "True");
    let main = api
        .patch("w1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 4}, "status": null})))
        .await
        .unwrap();
    assert_eq!(main.data["status"]["conditions"][0]["status"], "True");
    assert_eq!(main.metadata.generation, Some(2));

    crds.delete("widgets.example.com", &DeleteParams::default()).await.unwrap();
    eventually("CRD gone", || async { crds.get_opt("widgets.example.com").await.unwrap().is_none().then_some(()) })
        .await;
    let err = status(api.list(&Default::default()).await);
    assert_eq!(err.code, 404, "the resource is no longer served");
    // Re-creating the CRD starts empty.
    crds.patch("widgets.example.com", &PatchParams::apply("test"), &Patch::Apply(widget_crd("Namespaced")))
        .await
        .unwrap();
    let ns_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &widget_ar());
    assert!(ns_api.list(&Default::default()).await.unwrap().items.is_empty());
    let w2: DynamicObject = serde_json::from_value(widget("w2", json!({"size": 1}))).unwrap();
    let made = ns_api.create(&PostParams::default(), &w2).await.unwrap();
    assert_eq!(made.metadata.namespace.as_deref(), Some("default"), "namespaced scope");
}

#[tokio::test]
async fn custom_resources_are_validated_against_the_schema() {
    let srv = server().await;
    let client = srv.client();
    install_widgets(&client, "Namespaced").await;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &widget_ar());
    let create = |spec: Value| {
        let api = api.clone();
        async move {
            let w: DynamicObject = serde_json::from_value(widget("bad", spec)).unwrap();
            status(api.create(&PostParams::default(), &w).await)
        }
    };
    let causes = |s: &kube::core::Status| -> Vec<(String, String)> {
        s.details.as_ref().unwrap().causes.iter().map(|c| (c.field.clone(), c.reason.clone())).collect()
    };
    let e = create(json!({})).await;
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    // A required field missing blocks the CEL rules, and the server says so (`hasBlockingErr`).
    assert_eq!(
        causes(&e),
        [
            ("spec.size".to_string(), "FieldValueRequired".to_string()),
            ("<nil>".to_string(), "FieldValueInvalid".to_string())
        ]
    );
    assert!(
        e.message.starts_with("Widget.example.com \"bad\" is invalid: [spec.size: Required value"),
        "{}",
        e.message
    );
    assert!(e.message.contains("<nil>: Invalid value: null: some validation rules were not checked"), "{}", e.message);
    let e = create(json!({"size": "three"})).await;
    assert_eq!(causes(&e)[0], ("spec.size".into(), "FieldValueTypeInvalid".into()));
    let e = create(json!({"size": 0})).await;
    assert!(e.message.contains("should be greater than or equal to 1"), "{}", e.message);
    let e = create(json!({"size": 101, "maxSize": 200})).await;
    assert!(e.message.contains("less than or equal to 100"), "{}", e.message);
    let e = create(json!({"size": 1, "mode": "warp"})).await;
    assert_eq!(causes(&e)[0], ("spec.mode".into(), "FieldValueNotSupported".into()));
    let e = create(json!({"size": 1, "name": "UPPER"})).await;
    assert_eq!(causes(&e)[0].0, "spec.name");
    let e = create(json!({"size": 1, "port": 1.5})).await;
    assert_eq!(causes(&e)[0].0, "spec.port");
    let e = create(json!({"size": 20})).await;
    assert!(e.message.contains("size must not exceed maxSize"), "CEL rule: {}", e.message);
    let e = create(json!({"size": 1, "items": [{"name": "a"}, {"name": "a"}]})).await;
    assert_eq!(causes(&e)[0], ("spec.items[1]".into(), "FieldValueDuplicate".into()));

    let ok: DynamicObject = serde_json::from_value(widget(
        "good",
        json!({"size": 2, "port": "http", "unknown": 1, "extra": {"free": {"form": true}}}),
    ))
    .unwrap();
    let made = api.create(&PostParams::default(), &ok).await.unwrap();
    assert!(made.data["spec"].get("unknown").is_none(), "unknown fields are pruned");
    assert_eq!(made.data["spec"]["extra"]["free"]["form"], true, "preserve-unknown-fields keeps them");
    let e = status(api.patch("good", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": -1}}))).await);
    assert_eq!(e.code, 422, "updates are validated too");
    // fieldValidation=Strict rejects undeclared fields instead of pruning them.
    let strict = PatchParams::apply("m").validation(kube::api::ValidationDirective::Strict);
    let e =
        status(api.patch("strict", &strict, &Patch::Apply(widget("strict", json!({"size": 2, "bogus": true})))).await);
    assert_eq!(e.code, 400);
    assert!(e.message.contains("strict decoding error: unknown field \"spec.bogus\""), "{}", e.message);
}

#[tokio::test]
async fn printer_columns_in_tables() {
    let srv = server().await;
    let client = srv.client();
    install_widgets(&client, "Namespaced").await;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &widget_ar());
    let w: DynamicObject = serde_json::from_value(widget("t1", json!({"size": 7}))).unwrap();
    api.create(&PostParams::default(), &w).await.unwrap();
    let req = axum::http::Request::get("/apis/example.com/v1/namespaces/default/widgets")
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
        .body(Vec::new())
        .unwrap();
    let table: Value = client.request(req).await.unwrap();
    assert_eq!(table["kind"], "Table");
    let cols: Vec<&str> =
        table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(cols, ["Name", "Size", "Ready"]);
    assert_eq!(table["rows"][0]["cells"], json!(["t1", 7, "<none>"]));
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
}

#[tokio::test]
async fn apply_merges_crd_lists_by_their_declared_keys() {
    let srv = server().await;
    let client = srv.client();
    install_widgets(&client, "Namespaced").await;
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &widget_ar());
    let a = widget("m", json!({"size": 1, "items": [{"name": "a", "value": "1"}]}));
    api.patch("m", &PatchParams::apply("alice"), &Patch::Apply(&a)).await.unwrap();
    let b = widget("m", json!({"items": [{"name": "b", "value": "2"}]}));
    let merged = api.patch("m", &PatchParams::apply("bob"), &Patch::Apply(&b)).await.unwrap();
    assert_eq!(merged.data["spec"]["items"], json!([{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]));
    // Alice drops her item; Bob's stays.
    let a2 = widget("m", json!({"size": 1}));
    let after = api.patch("m", &PatchParams::apply("alice"), &Patch::Apply(&a2)).await.unwrap();
    assert_eq!(after.data["spec"]["items"], json!([{"name": "b", "value": "2"}]));
    // Repeating the same apply changes nothing.
    let rv = after.metadata.resource_version.clone();
    let again = api.patch("m", &PatchParams::apply("alice"), &Patch::Apply(&a2)).await.unwrap();
    assert_eq!(again.metadata.resource_version, rv, "no-op apply on a custom resource");
}

/// Structural defaults apply when an object is read from storage, not only on writes: a Widget
/// stored before its CRD gained defaults (on spec and on status, a default that also shows on a
/// new object whose status the create dropped) reads with them, and its stored version is
/// unchanged (nothing was written).
#[tokio::test]
async fn crd_defaults_apply_on_read_from_storage() {
    let srv = server().await;
    let client = srv.client();
    let crds: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<CustomResourceDefinition>(&()));
    let mut crd = widget_crd("Cluster");
    crds.create(&PostParams::default(), &serde_json::from_value(crd.clone()).expect("crd")).await.expect("crd");
    let widgets: Api<DynamicObject> = Api::all_with(client.clone(), &widget_ar());
    let w: DynamicObject = serde_json::from_value(widget("old", json!({"size": 1}))).expect("widget");
    let created = eventually("the CRD is served", || {
        let (widgets, w) = (widgets.clone(), w.clone());
        async move { widgets.create(&PostParams::default(), &w).await.ok() }
    })
    .await;
    assert!(created.data.get("status").is_none(), "no status default yet: {:?}", created.data);
    let rv = created.metadata.resource_version.clone();

    let schema = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    schema["status"]["default"] = json!({"observedGeneration": -1});
    schema["status"]["properties"]["observedGeneration"] = json!({"type": "integer", "format": "int64"});
    schema["spec"]["properties"]["size"]["default"] = json!(5);
    schema["spec"]["properties"]["zone"] = json!({"type": "string", "default": "a"});
    crds.patch("widgets.example.com", &PatchParams::apply("test").force(), &Patch::Apply(&crd)).await.expect("update");

    let read = eventually("the new defaults are served", || {
        let widgets = widgets.clone();
        async move { widgets.get("old").await.ok().filter(|o| o.data.get("status").is_some()) }
    })
    .await;
    assert_eq!(read.data["status"], json!({"observedGeneration": -1}));
    assert_eq!(read.data["spec"]["zone"], json!("a"), "a spec default the object lacked");
    assert_eq!(read.data["spec"]["size"], json!(1), "a set field keeps its value");
    assert_eq!(read.metadata.resource_version, rv, "reading wrote nothing");
    let listed = widgets.list(&Default::default()).await.expect("list");
    assert_eq!(listed.items[0].data["status"], json!({"observedGeneration": -1}));

    // A new Widget: the create drops status (status subresource), the read shows the default.
    let w: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "new"}, "spec": {"size": 2}, "status": {"observedGeneration": 7}}))
    .expect("widget");
    let created = widgets.create(&PostParams::default(), &w).await.expect("create");
    assert_eq!(created.data["status"], json!({"observedGeneration": -1}));
    assert_eq!(widgets.get("new").await.expect("get").data["status"], json!({"observedGeneration": -1}));
}

#[tokio::test]
async fn deleting_a_crd_waits_for_the_finalizers_of_its_resources() {
    // As apiextensions-apiserver: every custom resource is deleted, and the CRD stays until they
    // are gone; a finalizer on one holds the CRD (Terminating) until it is removed.
    let srv = server().await;
    let client = srv.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    install_widgets(&client, "Cluster").await;
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &widget_ar());
    let mut held = widget("held", json!({"size": 1}));
    held["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
    api.create(&PostParams::default(), &serde_json::from_value(held).unwrap()).await.unwrap();
    let free: DynamicObject = serde_json::from_value(widget("free", json!({"size": 1}))).unwrap();
    api.create(&PostParams::default(), &free).await.unwrap();
    crds.delete("widgets.example.com", &DeleteParams::default()).await.unwrap();
    eventually("the free widget is deleted", || async { api.get_opt("free").await.unwrap().is_none().then_some(()) })
        .await;
    let w = api.get("held").await.expect("a widget with a finalizer stays, and is still served");
    assert!(w.metadata.deletion_timestamp.is_some());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let crd = crds.get("widgets.example.com").await.expect("the CRD waits");
    assert!(crd.metadata.deletion_timestamp.is_some());
    api.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    eventually("the CRD goes", || async { crds.get_opt("widgets.example.com").await.unwrap().is_none().then_some(()) })
        .await;
}
