//! The operator's identity as the chart installs it, for tests against the RBAC-enforcing local
//! API server: the ServiceAccount and every RBAC object of `helm template` of the chart
//! (`chart-rbac.yaml`, written by `make crds` from the chart itself and checked current by
//! `make crds-check`), and a client holding that ServiceAccount's token and nothing more.
//!
//! Include it with `#[path = "../support/chart_rbac.rs"] mod chart_rbac;`.

#![allow(dead_code)]

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::{Client, ResourceExt};
use local_apiserver::{Authorization, LocalApiServer};

/// The operator's namespace and ServiceAccount (release `hardened-csi-operator`).
pub const OPERATOR_NAMESPACE: &str = "hardened-csi-operator";
pub const OPERATOR_SA: &str = "hardened-csi-operator";
/// The chart's default driver namespace.
pub const DRIVER_NAMESPACE: &str = "kube-system";

/// `helm template` of the chart, ServiceAccount and RBAC kinds only.
pub const CHART_RBAC: &str = include_str!("chart-rbac.yaml");

/// The operator's user name as the API server authenticates its token.
pub fn operator_user() -> String {
    format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SA}")
}

/// A local API server that authenticates and authorizes like a real cluster, with the
/// OwnerReferencesPermissionEnforcement admission plugin on (as many distributions run it): an
/// owner reference that blocks the owner's deletion then needs `update` on its finalizers.
pub async fn rbac_server() -> LocalApiServer {
    rbac_server_on(&local_apiserver::Options::default().kubernetes_version).await
}

/// As [`rbac_server`], serving Kubernetes `version` (what it serves follows it).
pub async fn rbac_server_on(version: &str) -> LocalApiServer {
    LocalApiServer::start_with(local_apiserver::Options {
        kubernetes_version: version.into(),
        authorization: Authorization::Rbac,
        admission_plugins: vec!["OwnerReferencesPermissionEnforcement".into()],
        ..local_apiserver::Options::default()
    })
    .await
    .expect("local API server starts")
}

/// The objects of [`CHART_RBAC`]; with `driver_rbac_only`, the driver's own RBAC
/// (`app.kubernetes.io/component: driver-rbac`) only.
pub fn objects(driver_rbac_only: bool) -> Vec<DynamicObject> {
    CHART_RBAC
        .split("\n---\n")
        .map(|doc| serde_yaml_ng::from_str::<DynamicObject>(doc).expect("chart-rbac.yaml holds objects"))
        .filter(|o| {
            !driver_rbac_only || o.labels().get("app.kubernetes.io/component").is_some_and(|c| c == "driver-rbac")
        })
        .collect()
}

async fn create_all(admin: &Client, objects: Vec<DynamicObject>) {
    for o in objects {
        let types = o.types.clone().expect("apiVersion and kind");
        let (group, version) = types.api_version.rsplit_once('/').unwrap_or(("", &types.api_version));
        let ar = ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: types.api_version.clone(),
            kind: types.kind.clone(),
            plural: format!("{}s", types.kind.to_lowercase()),
        };
        let api: Api<DynamicObject> = match o.namespace() {
            Some(ns) => Api::namespaced_with(admin.clone(), &ns, &ar),
            None => Api::all_with(admin.clone(), &ar),
        };
        match api.create(&PostParams::default(), &o).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("creating {} {}: {e}", types.kind, o.name_any()),
        }
    }
}

/// As the cluster admin: the operator's namespace and the driver namespace (what
/// `helm install --create-namespace` and the cluster provide), then exactly the ServiceAccount
/// and RBAC objects `helm template` renders.
pub async fn install(admin: &Client) {
    let ns: Api<Namespace> = Api::all(admin.clone());
    for n in [OPERATOR_NAMESPACE, DRIVER_NAMESPACE] {
        let obj: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": n}})).expect("ns");
        match ns.create(&PostParams::default(), &obj).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("creating namespace {n}: {e}"),
        }
    }
    create_all(admin, objects(false)).await;
}

/// The driver's ClusterRoles, bindings and leases Role, as the chart installs them.
pub async fn install_driver_rbac(admin: &Client) {
    create_all(admin, objects(true)).await;
}

/// A client with the operator's ServiceAccount token (the chart's RBAC installed first).
pub fn operator_client(server: &LocalApiServer) -> Client {
    server.client_for_service_account(OPERATOR_NAMESPACE, OPERATOR_SA).expect("operator client")
}
