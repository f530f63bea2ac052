//! Measures what `Authorization::Rbac` costs: start-up (CA and certificate generation, default
//! roles) and N sequential GETs of one ConfigMap by a ServiceAccount over https with RBAC, against
//! the same GETs over plain http with authorization off.
//! `cargo run -p local-apiserver --example measure_rbac -- 1000`.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};
use local_apiserver::{Authorization, LocalApiServer, Options};
use serde_json::json;

async fn gets(api: &Api<ConfigMap>, n: usize) -> Result<Duration, kube::Error> {
    let t = Instant::now();
    for _ in 0..n {
        api.get("cm").await?;
    }
    Ok(t.elapsed())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let pp = PostParams::default();
    let t = Instant::now();
    let plain = LocalApiServer::start().await?;
    println!("start (off): {:?}", t.elapsed());
    let t = Instant::now();
    let srv = LocalApiServer::start_with(Options { authorization: Authorization::Rbac, ..Options::default() }).await?;
    println!("start (RBAC): {:?}", t.elapsed());
    let admin = srv.client();
    Api::<Namespace>::all(admin.clone())
        .create(&pp, &serde_json::from_value(json!({"metadata": {"name": "team"}}))?)
        .await?;
    Api::<ServiceAccount>::namespaced(admin.clone(), "team")
        .create(&pp, &serde_json::from_value(json!({"metadata": {"name": "app"}}))?)
        .await?;
    let role = json!({"metadata": {"name": "app"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]});
    Api::<Role>::namespaced(admin.clone(), "team").create(&pp, &serde_json::from_value(role)?).await?;
    let binding = json!({"metadata": {"name": "app"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "app"},
        "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "team"}]});
    Api::<RoleBinding>::namespaced(admin.clone(), "team").create(&pp, &serde_json::from_value(binding)?).await?;
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"k": "v"}}))?;
    Api::<ConfigMap>::namespaced(admin, "team").create(&pp, &cm).await?;
    Api::<ConfigMap>::default_namespaced(plain.client()).create(&pp, &cm).await?;

    let sa = Api::<ConfigMap>::namespaced(srv.client_for_service_account("team", "app")?, "team");
    let off = Api::<ConfigMap>::default_namespaced(plain.client());
    gets(&sa, 10).await?;
    gets(&off, 10).await?;
    println!("{n} GETs, authorization off, http: {:?}", gets(&off, n).await?);
    println!("{n} GETs, ServiceAccount, RBAC, https: {:?}", gets(&sa, n).await?);
    Ok(())
}
