//! The Kubernetes version changes while the server runs (a control-plane upgrade): `/version`
//! follows at once, and so do the versioned built-in APIs (storage.k8s.io/v1
//! VolumeAttributesClass from 1.34), through the library call and the HTTP control endpoint.

use std::collections::BTreeMap;

use k8s_openapi::api::storage::v1::VolumeAttributesClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::discovery::Discovery;
use serde_json::{Value, json};

use super::common::{server, status};

async fn serves_vac(client: &kube::Client) -> bool {
    let d = Discovery::new(client.clone()).run().await.unwrap();
    d.groups().flat_map(|g| g.recommended_resources()).any(|(ar, _)| ar.kind == "VolumeAttributesClass")
}

fn vac(name: &str, iops: &str) -> VolumeAttributesClass {
    VolumeAttributesClass {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        driver_name: "ebs.csi.aws.com".into(),
        parameters: Some(BTreeMap::from([("iops".to_string(), iops.to_string())])),
    }
}

#[tokio::test]
async fn an_upgrade_changes_version_and_served_apis_without_a_restart() {
    let srv = server().await;
    let client = srv.client();
    let v = client.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str(), v.git_version.as_str()), ("1", "33", "v1.33.0-local"));
    assert!(!serves_vac(&client).await, "a default 1.33 server serves no VolumeAttributesClass");
    let vacs: Api<VolumeAttributesClass> = Api::all(client.clone());
    assert_eq!(status(vacs.list(&Default::default()).await).code, 404);

    srv.set_kubernetes_version("1.34").unwrap();
    assert_eq!(srv.kubernetes_version(), "1.34");
    let v = client.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str(), v.git_version.as_str()), ("1", "34", "v1.34.0-local"));
    assert!(serves_vac(&client).await, "1.34 serves storage.k8s.io/v1 VolumeAttributesClass");
    vacs.create(&PostParams::default(), &vac("fast", "6000")).await.unwrap();
    let e = status(
        vacs.patch("fast", &PatchParams::default(), &Patch::Merge(json!({"parameters": {"iops": "9000"}}))).await,
    );
    assert_eq!(e.code, 422);
    assert!(e.message.contains("parameters: Invalid value"), "{}", e.message);
    assert!(e.message.contains("field is immutable"), "{}", e.message);
    let mut nameless = vac("nameless", "1");
    nameless.driver_name = String::new();
    let e = status(vacs.create(&PostParams::default(), &nameless).await);
    assert!(e.message.ends_with("driverName: Required value"), "{}", e.message);

    // A downgrade stops serving it; the stored object comes back with the next upgrade.
    srv.set_kubernetes_version("v1.33.4").unwrap();
    let v = client.apiserver_version().await.unwrap();
    assert_eq!((v.minor.as_str(), v.git_version.as_str()), ("33", "v1.33.4-local"));
    assert_eq!(status(vacs.get("fast").await).code, 404);
    srv.set_kubernetes_version("1.35").unwrap();
    assert_eq!(vacs.get("fast").await.unwrap().parameters.unwrap()["iops"], "6000");

    let err = srv.set_kubernetes_version("1.x").unwrap_err().to_string();
    assert!(err.contains("\"1.x\" is not a Kubernetes version"), "{err}");
    assert_eq!(srv.kubernetes_version(), "1.35", "a refused version changes nothing");
}

#[tokio::test]
async fn the_control_endpoint_changes_the_version() {
    let srv = server().await;
    let client = srv.client();
    let post = |body: &str| {
        axum::http::Request::post("/local-apiserver/version")
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .unwrap()
    };
    let doc: Value = client.request(post(r#"{"kubernetesVersion": "1.34.2"}"#)).await.unwrap();
    assert_eq!(doc["gitVersion"], "v1.34.2-local");
    let v = client.apiserver_version().await.unwrap();
    assert_eq!((v.minor.as_str(), v.git_version.as_str()), ("34", "v1.34.2-local"));
    assert!(serves_vac(&client).await);
    let get = axum::http::Request::get("/local-apiserver/version").body(Vec::new()).unwrap();
    let doc: Value = client.request(get).await.unwrap();
    assert_eq!(doc["minor"], "34");

    for (body, want) in [
        (
            r#"{"kubernetesVersion": "latest"}"#,
            "kubernetesVersion: Invalid value: \"latest\" is not a Kubernetes version",
        ),
        (r#"{"version": "1.34"}"#, "kubernetesVersion: Required value"),
        ("{", "the body is not a JSON or YAML object"),
    ] {
        let e = status(client.request::<Value>(post(body)).await);
        assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"), "{body}");
        assert!(e.message.starts_with(want), "{body}: {}", e.message);
    }
    assert_eq!(client.apiserver_version().await.unwrap().minor, "34", "refused bodies change nothing");
}

#[tokio::test]
async fn fields_of_features_off_at_the_version_are_dropped() {
    use k8s_openapi::api::storage::v1::{CSIDriver, CSIDriverSpec};
    let srv = server().await;
    let drivers: Api<CSIDriver> = Api::all(srv.client());
    let driver = |period: Option<i64>, attach: bool| CSIDriver {
        metadata: kube::api::ObjectMeta { name: Some("ebs.csi.aws.com".into()), ..Default::default() },
        spec: CSIDriverSpec {
            attach_required: Some(attach),
            node_allocatable_update_period_seconds: period,
            ..Default::default()
        },
    };
    let apply = |d: CSIDriver| {
        let drivers = drivers.clone();
        async move { drivers.patch("ebs.csi.aws.com", &PatchParams::apply("test"), &Patch::Apply(d)).await.unwrap() }
    };
    // 1.33: MutableCSINodeAllocatableCount is alpha (off), so the server drops the field silently;
    // 1.34: beta but still off by default, dropped too.
    let made = apply(driver(Some(10), true)).await;
    assert_eq!(made.spec.node_allocatable_update_period_seconds, None);
    srv.set_kubernetes_version("1.34").unwrap();
    let made = apply(driver(Some(10), true)).await;
    assert_eq!(made.spec.node_allocatable_update_period_seconds, None, "beta, off by default in 1.34");
    srv.set_kubernetes_version("1.35").unwrap();
    let made = apply(driver(Some(10), true)).await;
    assert_eq!(made.spec.node_allocatable_update_period_seconds, Some(10), "on by default from 1.35");
    // After a downgrade an object that already uses the field keeps it, as on a real server.
    srv.set_kubernetes_version("1.34").unwrap();
    let kept = apply(driver(Some(20), true)).await;
    assert_eq!(kept.spec.node_allocatable_update_period_seconds, Some(20));
}

#[tokio::test]
async fn with_rbac_only_the_admin_changes_the_version() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use local_apiserver::{Authorization, LocalApiServer, Options};
    let srv =
        LocalApiServer::start_with(Options { authorization: Authorization::Rbac, ..Options::default() }).await.unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(srv.client(), "default");
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "app"}})).unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let app = srv.client_for_service_account("default", "app").unwrap();
    let post = || {
        axum::http::Request::post("/local-apiserver/version")
            .header("content-type", "application/json")
            .body(br#"{"kubernetesVersion": "1.34"}"#.to_vec())
            .unwrap()
    };
    // Everyone may read /version (system:public-info-viewer); changing it is a non-resource
    // "post" that only the admin (system:masters) holds.
    assert_eq!(app.apiserver_version().await.unwrap().minor, "33");
    let e = status(app.request::<Value>(post()).await);
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"), "{}", e.message);
    assert_eq!(srv.kubernetes_version(), "1.33");
    let doc: Value = srv.client().request(post()).await.unwrap();
    assert_eq!(doc["minor"], "34");
    assert_eq!(app.apiserver_version().await.unwrap().minor, "34");
}
