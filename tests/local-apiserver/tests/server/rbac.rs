//! Authentication and RBAC with `Authorization::Rbac`, through kube-rs clients holding the admin
//! token or ServiceAccount tokens minted by the server's TokenRequest.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::core::Status;
use local_apiserver::{Authorization, LocalApiServer, Options};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::common::status;

const SA_USER: &str = "system:serviceaccount:team:app";

async fn rbac_server() -> LocalApiServer {
    LocalApiServer::start_with(Options { authorization: Authorization::Rbac, ..Options::default() })
        .await
        .expect("local-apiserver starts with RBAC")
}

fn obj<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

/// Namespace `team` with ServiceAccount `app`, bound (RoleBinding `app`) to Role `app` with
/// `rules`; returns a client acting as that ServiceAccount.
async fn team_with_role(srv: &LocalApiServer, rules: Value) -> kube::Client {
    let admin = srv.client();
    let pp = PostParams::default();
    Api::<Namespace>::all(admin.clone()).create(&pp, &obj(json!({"metadata": {"name": "team"}}))).await.unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), "team")
        .create(&pp, &obj(json!({"metadata": {"name": "app"}})))
        .await
        .unwrap();
    Api::<Role>::namespaced(admin.clone(), "team")
        .create(&pp, &obj(json!({"metadata": {"name": "app"}, "rules": rules})))
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), "team")
        .create(
            &pp,
            &obj(json!({
                "metadata": {"name": "app"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "app"},
                "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "team"}],
            })),
        )
        .await
        .unwrap();
    srv.client_for_service_account("team", "app").expect("a client for the ServiceAccount")
}

fn cm(name: &str) -> ConfigMap {
    obj(json!({"metadata": {"name": name}, "data": {"k": "v"}}))
}

fn assert_forbidden(s: &Status, message: &str) {
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"), "{s:?}");
    assert_eq!(s.message, message);
}

/// A raw request through `client` with extra headers; returns (HTTP code, body).
async fn raw(client: &kube::Client, method: &str, path: &str, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
    let mut req = axum::http::Request::builder().method(method).uri(path).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = if body.is_null() { Vec::new() } else { serde_json::to_vec(&body).unwrap() };
    let resp = client.send(req.body(body.into()).unwrap()).await.expect("the request is answered");
    let code = resp.status().as_u16();
    let bytes = axum::body::to_bytes(axum::body::Body::new(resp.into_body()), usize::MAX).await.unwrap();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_service_account_is_allowed_what_its_role_grants_and_nothing_else() {
    let srv = rbac_server().await;
    let sa =
        team_with_role(&srv, json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}])).await;
    let admin_cms: Api<ConfigMap> = Api::namespaced(srv.client(), "team");
    admin_cms.create(&PostParams::default(), &cm("one")).await.unwrap();

    let cms: Api<ConfigMap> = Api::namespaced(sa.clone(), "team");
    assert_eq!(cms.list(&ListParams::default()).await.unwrap().items.len(), 1);
    assert_eq!(cms.get("one").await.unwrap().data.unwrap()["k"], "v");

    let s = status(cms.create(&PostParams::default(), &cm("two")).await);
    assert_forbidden(
        &s,
        "configmaps is forbidden: User \"system:serviceaccount:team:app\" cannot create resource \"configmaps\" in \
         API group \"\" in the namespace \"team\"",
    );
    let details = s.details.expect("details");
    assert_eq!((details.kind.as_str(), details.group.as_str(), details.name.as_str()), ("configmaps", "", ""));

    let deploys: Api<Deployment> = Api::namespaced(sa.clone(), "default");
    let d: Deployment = obj(json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}));
    assert_forbidden(
        &status(deploys.create(&PostParams::default(), &d).await),
        "deployments.apps is forbidden: User \"system:serviceaccount:team:app\" cannot create resource \
         \"deployments\" in API group \"apps\" in the namespace \"default\"",
    );
    // A Role only applies in its namespace; cluster-wide lists need a ClusterRoleBinding.
    assert_forbidden(
        &status(Api::<ConfigMap>::namespaced(sa.clone(), "default").get("x").await),
        "configmaps \"x\" is forbidden: User \"system:serviceaccount:team:app\" cannot get resource \"configmaps\" \
         in API group \"\" in the namespace \"default\"",
    );
    assert_forbidden(
        &status(Api::<ConfigMap>::all(sa.clone()).list(&ListParams::default()).await),
        "configmaps is forbidden: User \"system:serviceaccount:team:app\" cannot list resource \"configmaps\" in API \
         group \"\" at the cluster scope",
    );
    // Authorization comes before routing: an unknown resource is 403, not 404.
    let (code, body) = raw(&sa, "GET", "/apis/example.com/v1/namespaces/team/gadgets", &[], Value::Null).await;
    assert_eq!((code, body["reason"].as_str()), (403, Some("Forbidden")), "{body}");
    // Discovery and /version are open to every authenticated user (system:discovery).
    assert!(sa.apiserver_version().await.is_ok());
    let (code, _) = raw(&sa, "GET", "/apis", &[], Value::Null).await;
    assert_eq!(code, 200);
    let (code, body) = raw(&sa, "GET", "/metrics", &[], Value::Null).await;
    assert_eq!(code, 403);
    assert_eq!(body["message"], "forbidden: User \"system:serviceaccount:team:app\" cannot get path \"/metrics\"");
    // The admin identity (system:masters) may do anything.
    admin_cms.delete("one", &DeleteParams::default()).await.unwrap();
    assert_eq!(srv.counters().requests_with_code("create", "configmaps", 403), 1);
}

#[tokio::test]
async fn unknown_tokens_are_401_and_no_token_is_anonymous() {
    let srv = rbac_server().await;
    let bogus = srv.client_for_token("not-a-token").unwrap();
    let s = status(Api::<ConfigMap>::default_namespaced(bogus).list(&ListParams::default()).await);
    assert_eq!((s.code, s.reason.as_str(), s.message.as_str()), (401, "Unauthorized", "Unauthorized"));

    let anonymous = kube::Client::try_from(srv.client_config().unwrap()).unwrap();
    let s = status(Api::<ConfigMap>::default_namespaced(anonymous.clone()).list(&ListParams::default()).await);
    assert_forbidden(
        &s,
        "configmaps is forbidden: User \"system:anonymous\" cannot list resource \"configmaps\" in API group \"\" in \
         the namespace \"default\"",
    );
    // system:public-info-viewer is bound to system:unauthenticated too; discovery is not.
    assert!(anonymous.apiserver_version().await.is_ok());
    let (code, _) = raw(&anonymous, "GET", "/api", &[], Value::Null).await;
    assert_eq!(code, 403);
}

#[tokio::test]
async fn tokens_die_with_their_service_account() {
    let srv = rbac_server().await;
    let sa = team_with_role(&srv, json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}])).await;
    let cms: Api<ConfigMap> = Api::namespaced(sa, "team");
    cms.list(&ListParams::default()).await.unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(srv.client(), "team");
    sas.delete("app", &DeleteParams::default()).await.unwrap();
    assert_eq!(status(cms.list(&ListParams::default()).await).code, 401);
    // A new account of the same name has a new uid: the old token stays invalid.
    sas.create(&PostParams::default(), &obj(json!({"metadata": {"name": "app"}}))).await.unwrap();
    assert_eq!(status(cms.list(&ListParams::default()).await).code, 401);
    let fresh = srv.client_for_service_account("team", "app").unwrap();
    Api::<ConfigMap>::namespaced(fresh, "team").list(&ListParams::default()).await.unwrap();
    assert!(srv.client_for_service_account("team", "missing").is_err());
}

#[tokio::test]
async fn resource_names_allow_get_but_not_list_unless_the_list_names_the_object() {
    let srv = rbac_server().await;
    let sa = team_with_role(
        &srv,
        json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"],
            "verbs": ["get", "list", "watch", "update"]}]),
    )
    .await;
    let admin_cms: Api<ConfigMap> = Api::namespaced(srv.client(), "team");
    for n in ["one", "two"] {
        admin_cms.create(&PostParams::default(), &cm(n)).await.unwrap();
    }
    let cms: Api<ConfigMap> = Api::namespaced(sa, "team");
    cms.get("one").await.unwrap();
    assert_eq!(status(cms.get("two").await).code, 403);
    assert_forbidden(
        &status(cms.list(&ListParams::default()).await),
        "configmaps is forbidden: User \"system:serviceaccount:team:app\" cannot list resource \"configmaps\" in API \
         group \"\" in the namespace \"team\"",
    );
    // A list or watch with a metadata.name field selector is authorised as a request for that name.
    let one = cms.list(&ListParams::default().fields("metadata.name=one")).await.unwrap();
    assert_eq!(one.items.len(), 1);
    assert_forbidden(
        &status(cms.list(&ListParams::default().fields("metadata.name=two")).await),
        "configmaps \"two\" is forbidden: User \"system:serviceaccount:team:app\" cannot list resource \
         \"configmaps\" in API group \"\" in the namespace \"team\"",
    );
    // Also beside a label selector and a limit (what a live check by name sends), and for a watch.
    let by_name = ListParams::default().fields("metadata.name=one").labels("app!=x").limit(1);
    assert_eq!(cms.list(&by_name).await.unwrap().items.len(), 1);
    let (code, _) = raw(
        &srv.client_for_service_account("team", "app").unwrap(),
        "GET",
        "/api/v1/namespaces/team/configmaps?watch=true&fieldSelector=metadata.name%3Done&timeoutSeconds=1",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);
    // A list option that does not decode drops the name, as the real RequestInfoFactory does.
    let bad = ListParams::default().fields("metadata.name=one").labels("app in (x");
    assert_eq!(status(cms.list(&bad).await).code, 403);
    // create has no name to match.
    assert_eq!(status(cms.create(&PostParams::default(), &cm("one-more")).await).code, 403);
    let mut one = cms.get("one").await.unwrap();
    one.data = Some([("k".to_string(), "w".to_string())].into());
    cms.replace("one", &PostParams::default(), &one).await.unwrap();
}

#[tokio::test]
async fn subresources_need_their_own_rules() {
    let srv = rbac_server().await;
    let sa = team_with_role(
        &srv,
        json!([
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "create"]},
            {"apiGroups": ["apps"], "resources": ["*/status"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
        ]),
    )
    .await;
    let deploys: Api<Deployment> = Api::namespaced(sa.clone(), "team");
    let d: Deployment = obj(json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}));
    deploys.create(&PostParams::default(), &d).await.unwrap();
    deploys.get_status("web").await.unwrap();
    let s = status(deploys.patch_status("web", &Default::default(), &kube::api::Patch::Merge(json!({}))).await);
    assert_forbidden(
        &s,
        "deployments.apps \"web\" is forbidden: User \"system:serviceaccount:team:app\" cannot patch resource \
         \"deployments/status\" in API group \"apps\" in the namespace \"team\"",
    );
    // serviceaccounts/token without serviceaccounts: the token subresource only.
    let (code, body) = raw(&sa, "POST", "/api/v1/namespaces/team/serviceaccounts/app/token", &[], json!({})).await;
    assert_eq!(code, 201, "{body}");
    let sas: Api<ServiceAccount> = Api::namespaced(sa, "team");
    assert_eq!(status(sas.get("app").await).code, 403);
}

fn binding(name: &str, kind: &str, role: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "team"}],
    })
}

#[tokio::test]
async fn roles_cannot_grant_what_the_requester_does_not_hold_without_escalate() {
    let srv = rbac_server().await;
    let sa = team_with_role(
        &srv,
        json!([
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["create", "update", "get"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
        ]),
    )
    .await;
    let roles: Api<Role> = Api::namespaced(sa.clone(), "team");
    let pp = PostParams::default();
    // Held rules (or a subset, or a narrower name) may be granted.
    roles
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "reader"}, "rules": [{"apiGroups": [""],
            "resources": ["configmaps"], "resourceNames": ["x"], "verbs": ["get"]}]})),
        )
        .await
        .unwrap();
    let s = status(
        roles
            .create(
                &pp,
                &obj(json!({"metadata": {"name": "wider"}, "rules": [{"apiGroups": [""],
                "resources": ["configmaps", "secrets"], "verbs": ["get", "delete"]}]})),
            )
            .await,
    );
    assert_forbidden(
        &s,
        "roles.rbac.authorization.k8s.io \"wider\" is forbidden: user \"system:serviceaccount:team:app\" \
         (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:team\" \"system:authenticated\"]) is attempting \
         to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"configmaps\"], \
         Verbs:[\"delete\"]}\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\"]}",
    );
    // Widening an existing role by update is refused the same way.
    let mut reader = roles.get("reader").await.unwrap();
    reader.rules.as_mut().unwrap()[0].verbs.push("watch".into());
    assert_eq!(status(roles.replace("reader", &pp, &reader).await).code, 403);
    // With escalate, anything goes (the admin adds it to the ServiceAccount's role).
    let admin_roles: Api<Role> = Api::namespaced(srv.client(), "team");
    let mut app = admin_roles.get("app").await.unwrap();
    app.rules.as_mut().unwrap().push(obj(json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"],
        "verbs": ["escalate"]})));
    admin_roles.replace("app", &pp, &app).await.unwrap();
    roles
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "wider"}, "rules": [{"apiGroups": [""],
            "resources": ["configmaps", "secrets"], "verbs": ["get", "delete"]}]})),
        )
        .await
        .unwrap();
    roles.replace("reader", &pp, &reader).await.unwrap();
    // The escalate check was recorded as a use of the grant.
    assert!(srv.access_log(SA_USER).iter().any(|a| a.verb == "escalate" && a.resource == "roles"));
}

#[tokio::test]
async fn bindings_need_bind_or_every_rule_of_the_role() {
    let srv = rbac_server().await;
    let sa = team_with_role(
        &srv,
        json!([
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
        ]),
    )
    .await;
    let admin = srv.client();
    let pp = PostParams::default();
    let cluster_roles: Api<ClusterRole> = Api::all(admin.clone());
    for (name, resource) in [("cm-reader", "configmaps"), ("secret-reader", "secrets"), ("pod-reader", "pods")] {
        cluster_roles
            .create(
                &pp,
                &obj(json!({"metadata": {"name": name}, "rules": [{"apiGroups": [""], "resources": [resource],
                    "verbs": ["get"]}]})),
            )
            .await
            .unwrap();
    }
    let bindings: Api<RoleBinding> = Api::namespaced(sa.clone(), "team");
    // Holding every rule of the role is enough.
    bindings.create(&pp, &obj(binding("cm", "ClusterRole", "cm-reader"))).await.unwrap();
    let s = status(bindings.create(&pp, &obj(binding("secrets", "ClusterRole", "secret-reader"))).await);
    assert_forbidden(
        &s,
        "rolebindings.rbac.authorization.k8s.io \"secrets\" is forbidden: user \"system:serviceaccount:team:app\" \
         (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:team\" \"system:authenticated\"]) is attempting \
         to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}",
    );
    // A missing role cannot be resolved: 404.
    let s = status(bindings.create(&pp, &obj(binding("ghost", "ClusterRole", "ghost"))).await);
    assert_eq!((s.code, s.message.as_str()), (404, "clusterroles.rbac.authorization.k8s.io \"ghost\" not found"));
    // bind, restricted by resource name, allows exactly that role.
    let admin_roles: Api<Role> = Api::namespaced(admin.clone(), "team");
    let mut app = admin_roles.get("app").await.unwrap();
    app.rules.as_mut().unwrap().push(obj(json!({"apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["clusterroles"], "resourceNames": ["secret-reader"], "verbs": ["bind"]})));
    admin_roles.replace("app", &pp, &app).await.unwrap();
    bindings.create(&pp, &obj(binding("secrets", "ClusterRole", "secret-reader"))).await.unwrap();
    assert_eq!(status(bindings.create(&pp, &obj(binding("pods", "ClusterRole", "pod-reader"))).await).code, 403);
    // Refused escalations show among the denials, as a bind of that role.
    let denied = srv.denied_requests(SA_USER);
    assert!(
        denied.iter().any(|a| a.verb == "bind" && a.resource == "clusterroles" && a.name == "pod-reader"),
        "{denied:?}"
    );
    // The binding took effect: the ServiceAccount now reads secrets in team.
    Api::<Secret>::namespaced(admin, "team")
        .create(&pp, &obj(json!({"metadata": {"name": "s"}, "stringData": {"a": "b"}})))
        .await
        .unwrap();
    Api::<Secret>::namespaced(sa.clone(), "team").get("s").await.unwrap();
    // A ClusterRoleBinding needs cluster-wide rights: none here.
    let crbs: Api<ClusterRoleBinding> = Api::all(sa);
    assert_eq!(status(crbs.create(&pp, &obj(binding("cm", "ClusterRole", "cm-reader"))).await).code, 403);
}

#[tokio::test]
async fn aggregated_cluster_roles_gather_the_labelled_rules() {
    let srv = rbac_server().await;
    let admin = srv.client();
    let pp = PostParams::default();
    let sa = team_with_role(&srv, json!([])).await;
    let cluster_roles: Api<ClusterRole> = Api::all(admin.clone());
    cluster_roles
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "role-creator"}, "rules": [{"apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["clusterroles"], "verbs": ["create"]}]})),
        )
        .await
        .unwrap();
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&pp, &obj(binding("role-creator", "ClusterRole", "role-creator")))
        .await
        .unwrap();
    cluster_roles
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "gathered"}, "aggregationRule": {"clusterRoleSelectors": [
                {"matchLabels": {"example.com/aggregate-to-gathered": "true"}}]}})),
        )
        .await
        .unwrap();
    cluster_roles
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "part", "labels": {"example.com/aggregate-to-gathered": "true"}},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]})),
        )
        .await
        .unwrap();
    Api::<ClusterRoleBinding>::all(admin)
        .create(&pp, &obj(binding("gathered", "ClusterRole", "gathered")))
        .await
        .unwrap();
    // The aggregation controller writes the gathered rules into the aggregated role.
    let gathered = super::common::eventually("the aggregated rules", || {
        let cluster_roles = cluster_roles.clone();
        async move { cluster_roles.get("gathered").await.ok().and_then(|r| r.rules).filter(|r| !r.is_empty()) }
    })
    .await;
    assert_eq!(gathered.len(), 1);
    assert_eq!(gathered[0].resources.as_deref(), Some(&["configmaps".to_string()][..]));
    Api::<ConfigMap>::all(sa.clone()).list(&ListParams::default()).await.unwrap();
    // Only cluster admins may create an aggregationRule (it can gather anything).
    let s = status(
        Api::<ClusterRole>::all(sa)
            .create(&pp, &obj(json!({"metadata": {"name": "mine"}, "aggregationRule": {"clusterRoleSelectors": []}})))
            .await,
    );
    assert_forbidden(
        &s,
        "clusterroles.rbac.authorization.k8s.io \"mine\" is forbidden: must have cluster-admin privileges to use the \
         aggregationRule",
    );
}

#[tokio::test]
async fn access_reviews_answer_for_the_requester_and_for_others() {
    let srv = rbac_server().await;
    let sa = team_with_role(&srv, json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}])).await;
    let pp = PostParams::default();
    let ssar = |verb: &str| -> SelfSubjectAccessReview {
        obj(json!({"spec": {"resourceAttributes": {"namespace": "team", "verb": verb, "resource": "configmaps"}}}))
    };
    let reviews: Api<SelfSubjectAccessReview> = Api::all(sa.clone());
    let yes = reviews.create(&pp, &ssar("list")).await.unwrap().status.unwrap();
    assert!(yes.allowed);
    assert_eq!(
        yes.reason.as_deref(),
        Some("RBAC: allowed by RoleBinding \"app/team\" of Role \"app\" to ServiceAccount \"app/team\"")
    );
    assert!(!reviews.create(&pp, &ssar("delete")).await.unwrap().status.unwrap().allowed);
    let non_resource: SelfSubjectAccessReview =
        obj(json!({"spec": {"nonResourceAttributes": {"path": "/apis/apps", "verb": "get"}}}));
    assert!(reviews.create(&pp, &non_resource).await.unwrap().status.unwrap().allowed);
    let s = status(reviews.create(&pp, &obj(json!({"spec": {}}))).await);
    assert_eq!(s.code, 422, "{s:?}");

    // SubjectAccessReview needs create on subjectaccessreviews: the admin asks for the SA.
    let sar: SubjectAccessReview = obj(json!({"spec": {"user": SA_USER, "groups": ["system:serviceaccounts"],
        "resourceAttributes": {"namespace": "team", "verb": "list", "resource": "configmaps"}}}));
    assert_eq!(status(Api::<SubjectAccessReview>::all(sa.clone()).create(&pp, &sar).await).code, 403);
    let answer = Api::<SubjectAccessReview>::all(srv.client()).create(&pp, &sar).await.unwrap();
    assert!(answer.status.unwrap().allowed);
    let other_ns: LocalSubjectAccessReview =
        obj(json!({"metadata": {"namespace": "default"}, "spec": {"user": SA_USER,
        "resourceAttributes": {"namespace": "default", "verb": "list", "resource": "configmaps"}}}));
    let answer =
        Api::<LocalSubjectAccessReview>::namespaced(srv.client(), "default").create(&pp, &other_ns).await.unwrap();
    assert!(!answer.status.unwrap().allowed);

    let rules: SelfSubjectRulesReview = obj(json!({"spec": {"namespace": "team"}}));
    let st = Api::<SelfSubjectRulesReview>::all(sa).create(&pp, &rules).await.unwrap().status.unwrap();
    assert!(!st.incomplete);
    assert!(
        st.resource_rules
            .iter()
            .any(|r| r.resources.as_deref() == Some(&["configmaps".to_string()][..]) && r.verbs == ["list"])
    );
    assert!(st.resource_rules.iter().any(|r| r.resources.iter().flatten().any(|x| x == "selfsubjectaccessreviews")));
    assert!(st.non_resource_rules.iter().any(|r| r.non_resource_urls.iter().flatten().any(|u| u == "/api/*")));
}

#[tokio::test]
async fn impersonation_needs_the_impersonate_verb() {
    let srv = rbac_server().await;
    let sa = team_with_role(&srv, json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}])).await;
    let admin = srv.client();
    let as_sa = [("Impersonate-User", SA_USER)];
    let (code, body) = raw(&admin, "GET", "/api/v1/namespaces/team/configmaps", &as_sa, Value::Null).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = raw(&admin, "GET", "/api/v1/namespaces/team/secrets", &as_sa, Value::Null).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "secrets is forbidden: User \"system:serviceaccount:team:app\" cannot list resource \"secrets\" in API \
         group \"\" in the namespace \"team\""
    );
    // Impersonated groups replace the ServiceAccount groups.
    let as_masters = [("Impersonate-User", "bob"), ("Impersonate-Group", "system:masters")];
    let (code, _) = raw(&admin, "GET", "/api/v1/namespaces/team/secrets", &as_masters, Value::Null).await;
    assert_eq!(code, 200);
    // The ServiceAccount itself may not impersonate.
    let as_bob = [("Impersonate-User", "bob")];
    let (code, body) = raw(&sa, "GET", "/api/v1/namespaces/team/configmaps", &as_bob, Value::Null).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "users \"bob\" is forbidden: User \"system:serviceaccount:team:app\" cannot impersonate resource \
         \"users\" in API group \"\" at the cluster scope"
    );
    let as_other_sa = [("Impersonate-User", "system:serviceaccount:team:x")];
    let (code, body) = raw(&sa, "GET", "/api/v1/namespaces/team/configmaps", &as_other_sa, Value::Null).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "serviceaccounts \"x\" is forbidden: User \"system:serviceaccount:team:app\" cannot impersonate \
         resource \"serviceaccounts\" in API group \"\" in the namespace \"team\""
    );
}

#[tokio::test]
async fn the_audit_reports_unused_grants_and_denials() {
    let srv = rbac_server().await;
    let sa = team_with_role(
        &srv,
        json!([
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["creds"], "verbs": ["get"]},
        ]),
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(sa.clone(), "team");
    cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(status(Api::<Secret>::namespaced(sa, "team").get("other").await).code, 403);

    let used = srv.access_log(SA_USER);
    assert!(used.iter().any(|a| a.verb == "list" && a.resource == "configmaps" && a.namespace == "team"), "{used:?}");
    let denied = srv.denied_requests(SA_USER);
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].to_string(), "get \"secrets\" in API group \"\" named \"other\" in the namespace \"team\"");
    let unused: Vec<String> = srv.unused_grants(SA_USER).iter().map(ToString::to_string).collect();
    assert_eq!(
        unused,
        [
            "get \"configmaps\" in API group \"\" in the namespace \"team\" (granted by RoleBinding \"team/app\" of \
             Role \"app\")",
            "get \"secrets\" in API group \"\" named \"creds\" in the namespace \"team\" (granted by RoleBinding \
             \"team/app\" of Role \"app\")",
        ]
    );
    let first_server_log = srv.access_log(SA_USER);
    srv.reset_access_log();
    assert!(srv.access_log(SA_USER).is_empty());
    assert_eq!(srv.unused_grants(SA_USER).len(), 3);
    // Accesses collected elsewhere (another test's server) count as uses too.
    assert_eq!(srv.unused_grants_with(SA_USER, &first_server_log).len(), 2);
}

#[tokio::test]
async fn authorization_is_off_by_default() {
    let srv = super::common::server().await;
    let anonymous = kube::Client::try_from(srv.client_config().unwrap()).unwrap();
    Api::<Secret>::all(anonymous.clone()).list(&ListParams::default()).await.unwrap();
    let review: SelfSubjectAccessReview =
        obj(json!({"spec": {"resourceAttributes": {"verb": "delete", "resource": "nodes"}}}));
    let answer = Api::<SelfSubjectAccessReview>::all(anonymous).create(&PostParams::default(), &review).await.unwrap();
    assert!(answer.status.unwrap().allowed);
    assert!(srv.access_log("system:anonymous").is_empty());
    assert!(Api::<ClusterRole>::all(srv.client()).list(&ListParams::default()).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn escalate_restricted_by_name_allows_updates_of_that_role_only() {
    let srv = rbac_server().await;
    let sa = team_with_role(
        &srv,
        json!([
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["create", "get", "update"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "resourceNames": ["open"],
                "verbs": ["escalate"]},
        ]),
    )
    .await;
    let pp = PostParams::default();
    let wide = |name: &str| -> Role {
        obj(json!({"metadata": {"name": name}, "rules": [{"apiGroups": [""], "resources": ["secrets"],
            "verbs": ["delete"]}]}))
    };
    let empty = |name: &str| -> Role { obj(json!({"metadata": {"name": name}, "rules": []})) };
    let roles: Api<Role> = Api::namespaced(sa, "team");
    // A create names no object in its path, so a name-restricted escalate does not apply to it.
    assert_eq!(status(roles.create(&pp, &wide("open")).await).code, 403);
    roles.create(&pp, &empty("open")).await.unwrap();
    roles.create(&pp, &empty("closed")).await.unwrap();
    let mut open = wide("open");
    open.metadata.resource_version = roles.get("open").await.unwrap().metadata.resource_version;
    roles.replace("open", &pp, &open).await.unwrap();
    let mut closed = wide("closed");
    closed.metadata.resource_version = roles.get("closed").await.unwrap().metadata.resource_version;
    assert_eq!(status(roles.replace("closed", &pp, &closed).await).code, 403);
}

#[tokio::test]
async fn service_account_kubeconfigs_work_for_kube_rs_and_kubectl() {
    let srv = rbac_server().await;
    let _ = team_with_role(&srv, json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}])).await;
    let path = std::env::temp_dir().join(format!("local-apiserver-sa-kubeconfig-{}.yaml", std::process::id()));
    srv.write_kubeconfig_for_service_account(&path, "team", "app").unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    assert_eq!(config.default_namespace, "team");
    let client = kube::Client::try_from(config).unwrap();
    Api::<ConfigMap>::default_namespaced(client.clone()).list(&ListParams::default()).await.unwrap();
    assert_eq!(status(Api::<Secret>::default_namespaced(client).list(&ListParams::default()).await).code, 403);
    // tokio::process: the server runs on this test's runtime and must keep serving meanwhile.
    let out = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&path)
        .args(["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])
        .output()
        .await
        .expect("kubectl is installed and on PATH");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), SA_USER);
}

#[tokio::test]
async fn rbac_objects_are_defaulted_and_validated_like_the_real_server() {
    let srv = super::common::server().await;
    let pp = PostParams::default();
    let roles: Api<Role> = Api::default_namespaced(srv.client());
    let s = status(
        roles
            .create(
                &pp,
                &obj(json!({"metadata": {"name": "bad"}, "rules": [{"nonResourceURLs": ["/healthz"],
                "verbs": ["get"]}]})),
            )
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        s.message,
        "Role.rbac.authorization.k8s.io \"bad\" is invalid: rules[0].nonResourceURLs: Invalid value: \
         []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs"
    );
    let bindings: Api<RoleBinding> = Api::default_namespaced(srv.client());
    let b = bindings
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": "", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "User", "name": "alice"}]})),
        )
        .await
        .unwrap();
    assert_eq!(b.role_ref.api_group.as_deref(), Some("rbac.authorization.k8s.io"));
    assert_eq!(b.subjects.unwrap()[0].api_group.as_deref(), Some("rbac.authorization.k8s.io"));
    let s = status(
        Api::<ClusterRoleBinding>::all(srv.client())
            .create(
                &pp,
                &obj(json!({"metadata": {"name": "c"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "ServiceAccount", "name": "sa"}]})),
            )
            .await,
    );
    assert_eq!(
        s.message,
        "ClusterRoleBinding.rbac.authorization.k8s.io \"c\" is invalid: subjects[0].namespace: Required value"
    );
}

#[tokio::test]
async fn a_service_account_watches_over_https_with_list_and_watch_only() {
    use futures::{StreamExt, TryStreamExt};
    use kube::runtime::watcher;

    let srv = rbac_server().await;
    let sa =
        team_with_role(&srv, json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]}]))
            .await;
    let stream = watcher(Api::<ConfigMap>::namespaced(sa.clone(), "team"), watcher::Config::default());
    let mut events = std::pin::pin!(stream);
    Api::<ConfigMap>::namespaced(srv.client(), "team").create(&PostParams::default(), &cm("seen")).await.unwrap();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(e) = events.try_next().await.expect("the watch is allowed") {
            let objects = match e {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => vec![o],
                _ => Vec::new(),
            };
            if objects.iter().any(|o| o.metadata.name.as_deref() == Some("seen")) {
                return true;
            }
        }
        false
    })
    .await
    .expect("the watch delivers the new ConfigMap");
    assert!(seen);
    // Without watch, the same watcher fails with 403 on its watch request.
    let srv2 = rbac_server().await;
    let sa2 = team_with_role(&srv2, json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}])).await;
    let mut stream2 = std::pin::pin!(watcher(Api::<ConfigMap>::namespaced(sa2, "team"), watcher::Config::default()));
    let first_error = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match stream2.next().await {
                Some(Err(e)) => return e.to_string(),
                Some(Ok(_)) => continue,
                None => return String::new(),
            }
        }
    })
    .await
    .expect("the watch is refused");
    assert!(first_error.contains("403") || first_error.contains("forbidden"), "{first_error}");
    assert!(srv2.denied_requests(SA_USER).iter().any(|a| a.verb == "watch"));
}

#[tokio::test]
async fn tokens_for_another_audience_do_not_authenticate_to_the_api_server() {
    use k8s_openapi::api::authentication::v1::TokenReview;

    let srv = rbac_server().await;
    let _ = team_with_role(&srv, json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}])).await;
    let admin = srv.client();
    let request = json!({"spec": {"audiences": ["sts.amazonaws.com"]}});
    let (code, body) = raw(&admin, "POST", "/api/v1/namespaces/team/serviceaccounts/app/token", &[], request).await;
    assert_eq!(code, 201, "{body}");
    let sts_token = body["status"]["token"].as_str().unwrap().to_string();
    let client = srv.client_for_token(&sts_token).unwrap();
    let s = status(Api::<ConfigMap>::namespaced(client, "team").list(&ListParams::default()).await);
    assert_eq!((s.code, s.reason.as_str()), (401, "Unauthorized"));
    // TokenReview for that audience accepts it (what STS would check), for the default one not.
    let reviews: Api<TokenReview> = Api::all(admin);
    let pp = PostParams::default();
    let for_sts: TokenReview = obj(json!({"spec": {"token": sts_token, "audiences": ["sts.amazonaws.com"]}}));
    let st = reviews.create(&pp, &for_sts).await.unwrap().status.unwrap();
    assert_eq!(st.authenticated, Some(true));
    assert_eq!(st.user.unwrap().username.as_deref(), Some(SA_USER));
    assert_eq!(st.audiences.as_deref(), Some(&["sts.amazonaws.com".to_string()][..]));
    let for_api: TokenReview = obj(json!({"spec": {"token": sts_token}}));
    assert_eq!(reviews.create(&pp, &for_api).await.unwrap().status.unwrap().authenticated, Some(false));
}

#[tokio::test]
async fn server_side_apply_that_creates_needs_create_of_that_name() {
    let srv = rbac_server().await;
    // patch on every ConfigMap, create only of "allowed": as on kube-apiserver, an apply that
    // creates is authorised as `create` of the object's name too.
    let sa = team_with_role(
        &srv,
        json!([
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["patch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"], "resourceNames": ["allowed"]},
        ]),
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(sa, "team");
    let pp = kube::api::PatchParams::apply("test");
    let body = |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
    cms.patch("allowed", &pp, &kube::api::Patch::Apply(body("allowed"))).await.expect("create of a granted name");
    // Updating an existing object needs patch only.
    cms.patch(
        "allowed",
        &pp,
        &kube::api::Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "allowed"}, "data": {"k": "v"}})),
    )
    .await
    .expect("update by apply");
    let err = cms.patch("other", &pp, &kube::api::Patch::Apply(body("other"))).await.expect_err("create refused");
    let kube::Error::Api(s) = err else { panic!("{err}") };
    assert_eq!(s.code, 403, "{s:?}");
    assert!(
        s.message.contains(r#"User "system:serviceaccount:team:app" cannot create resource "configmaps""#),
        "{}",
        s.message
    );
    let denied = srv.denied_requests(SA_USER);
    assert!(denied.iter().any(|a| a.verb == "create" && a.name == "other"), "{denied:?}");
}

#[tokio::test]
async fn owner_references_permission_enforcement_guards_block_owner_deletion() {
    let srv = LocalApiServer::start_with(Options {
        authorization: Authorization::Rbac,
        admission_plugins: vec!["OwnerReferencesPermissionEnforcement".into()],
        ..Options::default()
    })
    .await
    .expect("local-apiserver starts");
    let rules = json!([
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "update"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    ]);
    let sa = team_with_role(&srv, rules).await;
    let owner = Api::<Secret>::namespaced(srv.client(), "team")
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": "owner"}})))
        .await
        .unwrap();
    let uid = owner.metadata.uid.clone().unwrap();
    let with_ref = |name: &str, block: bool| -> ConfigMap {
        obj(json!({"metadata": {"name": name, "ownerReferences": [{"apiVersion": "v1", "kind": "Secret",
            "name": "owner", "uid": uid, "blockOwnerDeletion": block}]}}))
    };
    let cms: Api<ConfigMap> = Api::namespaced(sa.clone(), "team");
    // A create may set an owner reference; blocking the owner's deletion needs its finalizers.
    cms.create(&PostParams::default(), &with_ref("plain", false)).await.unwrap();
    assert_forbidden(
        &status(cms.create(&PostParams::default(), &with_ref("blocking", true)).await),
        "configmaps \"blocking\" is forbidden: cannot set blockOwnerDeletion if an ownerReference refers to a \
         resource you can't set finalizers on: , <nil>",
    );
    // Changing the references of an existing object needs delete on it.
    let mut plain = cms.get("plain").await.unwrap();
    plain.metadata.owner_references = None;
    assert_forbidden(
        &status(cms.replace("plain", &PostParams::default(), &plain).await),
        "configmaps \"plain\" is forbidden: cannot set an ownerRef on a resource you can't delete: , <nil>",
    );
    // With update on secrets/finalizers of that owner (by name) and delete: allowed.
    let roles: Api<Role> = Api::namespaced(srv.client(), "team");
    roles
        .patch(
            "app",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "update", "delete"]},
                {"apiGroups": [""], "resources": ["secrets/finalizers"], "resourceNames": ["owner"],
                    "verbs": ["update"]},
            ]})),
        )
        .await
        .unwrap();
    cms.create(&PostParams::default(), &with_ref("blocking", true)).await.unwrap();
    let mut plain = cms.get("plain").await.unwrap();
    plain.metadata.owner_references = None;
    cms.replace("plain", &PostParams::default(), &plain).await.unwrap();
    let used: Vec<String> = srv.access_log(SA_USER).iter().map(ToString::to_string).collect();
    assert!(used.iter().any(|a| a.contains("update") && a.contains("secrets/finalizers")), "{used:#?}");
    // Off unless enabled, and only with RBAC.
    let err = LocalApiServer::start_with(Options {
        admission_plugins: vec!["OwnerReferencesPermissionEnforcement".into()],
        ..Options::default()
    })
    .await
    .err()
    .expect("refused without RBAC");
    assert!(err.to_string().contains("needs the RBAC authorization mode"), "{err}");
}
