use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, Patch, PatchParams, WatchParams};
use serde_json::{Value, json};

use super::common::{server, status};

fn dep(containers: Value, extra_spec: Value) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": containers}}
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
        "spec": spec})
}

fn pp(manager: &str) -> PatchParams {
    PatchParams::apply(manager)
}

#[tokio::test]
async fn apply_creates_merges_by_key_and_removes_omitted_fields() {
    let srv = server().await;
    srv.set_simulate_workloads(false);
    let api: Api<Deployment> = Api::default_namespaced(srv.client());
    let v1 = dep(
        json!([{"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "ports": [{"containerPort": 80}], "volumeMounts": [{"name": "v", "mountPath": "/a"}]}]),
        json!({"replicas": 2}),
    );
    let created = api.patch("d", &pp("operator"), &Patch::Apply(&v1)).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let mf = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("operator"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

    // Another manager adds a sidecar container and an env var on the app container.
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "INJECTED", "value": "x"}]},
            {"name": "sidecar", "image": "side:1"}]}}}});
    api.patch("d", &pp("injector"), &Patch::Apply(&other)).await.unwrap();

    // The operator drops env B, the port and replicas.
    let v2 = dep(
        json!([{"name": "app", "image": "app:2", "env": [{"name": "A", "value": "1"}], "volumeMounts": [{"name": "v",
            "mountPath": "/a"}]}]),
        json!({}),
    );
    let after = api.patch("d", &pp("operator"), &Patch::Apply(&v2)).await.unwrap();
    let spec = after.spec;
    assert_eq!(
        spec.replicas,
        Some(1),
        "an omitted field the manager owned alone is removed (then defaulted, as on a real server)"
    );
    let containers = spec.template.spec.unwrap().containers;
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app", "sidecar"], "containers merge by name");
    let app = &containers[0];
    assert_eq!(app.image.as_deref(), Some("app:2"));
    let env: Vec<&str> = app.env.as_ref().unwrap().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(env, ["A", "INJECTED"], "env merges by name; B removed, the other manager's var survives");
    assert!(app.ports.is_none());
    assert_eq!(after.metadata.generation, Some(3));
}

#[tokio::test]
async fn conflicts_name_the_other_manager_unless_forced() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let mine = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"key": "mine"}});
    api.patch("c", &pp("alice"), &Patch::Apply(&mine)).await.unwrap();
    let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"key": "theirs"}});
    let err = status(api.patch("c", &pp("bob"), &Patch::Apply(&theirs)).await);
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(err.message.contains("conflict with \"alice\""), "{}", err.message);
    assert_eq!(err.details.unwrap().causes[0].field, ".data.key");
    let forced = api.patch("c", &pp("bob").force(), &Patch::Apply(&theirs)).await.unwrap();
    assert_eq!(forced.data.unwrap()["key"], "theirs");
    let owners: Vec<String> = forced.metadata.managed_fields.unwrap().into_iter().filter_map(|m| m.manager).collect();
    assert_eq!(owners, ["bob"], "forcing takes ownership away from alice");
    // A plain update conflicts with the applier too.
    let merge =
        api.patch("c", &PatchParams::default(), &Patch::Merge(json!({"data": {"key": "edited"}}))).await.unwrap();
    assert_eq!(merge.data.unwrap()["key"], "edited");
    let err = status(api.patch("c", &pp("bob"), &Patch::Apply(&theirs)).await);
    assert_eq!(err.code, 409);
}

#[tokio::test]
async fn a_no_op_apply_keeps_the_resource_version_and_emits_nothing() {
    let srv = server().await;
    srv.set_simulate_workloads(false);
    let api: Api<Deployment> = Api::default_namespaced(srv.client());
    let d = dep(json!([{"name": "app", "image": "app:1"}]), json!({"replicas": 1}));
    let first = api.patch("d", &pp("operator").force(), &Patch::Apply(&d)).await.unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    srv.reset_counters();
    let mut stream = api.watch(&WatchParams::default().timeout(2).disable_bookmarks(), &rv).await.unwrap().boxed();
    for _ in 0..3 {
        let again = api.patch("d", &pp("operator").force(), &Patch::Apply(&d)).await.unwrap();
        assert_eq!(again.metadata.resource_version.as_deref(), Some(rv.as_str()));
        assert_eq!(again.metadata.managed_fields, first.metadata.managed_fields);
    }
    let c = srv.counters();
    assert_eq!(c.requests("patch", "deployments"), 3);
    assert_eq!(c.writes(), 0, "no-op applies are not writes");
    assert_eq!(c.write_attempts(), 3);
    let next = tokio::time::timeout(Duration::from_secs(3), stream.next()).await.unwrap();
    assert!(next.is_none(), "the watch saw no event before its timeout: {next:?}");
}

#[tokio::test]
async fn rbac_rules_are_atomic_and_status_apply_is_separate() {
    let srv = server().await;
    let roles: Api<ClusterRole> = Api::all(srv.client());
    let r = |verbs: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": verbs}]})
    };
    roles.patch("r", &pp("a"), &Patch::Apply(r(json!(["get", "list"])))).await.unwrap();
    let after = roles.patch("r", &pp("a"), &Patch::Apply(r(json!(["get"])))).await.unwrap();
    assert_eq!(after.rules.unwrap()[0].verbs, ["get"]);

    srv.set_simulate_workloads(false);
    let deps: Api<Deployment> = Api::default_namespaced(srv.client());
    let d = dep(json!([{"name": "app", "image": "app:1"}]), json!({}));
    let mut with_status = d.clone();
    with_status["status"] = json!({"replicas": 7});
    let created = deps.patch("d", &pp("operator"), &Patch::Apply(&with_status)).await.unwrap();
    assert!(created.status.is_none_or(|s| s.replicas.is_none()), "main-resource apply ignores status");
    let st = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
        "status": {"replicas": 3}});
    let s = deps.patch_status("d", &pp("status-writer"), &Patch::Apply(&st)).await.unwrap();
    assert_eq!(s.status.unwrap().replicas, Some(3));
    let entry =
        s.metadata.managed_fields.unwrap().into_iter().find(|m| m.manager.as_deref() == Some("status-writer")).unwrap();
    assert_eq!(entry.subresource.as_deref(), Some("status"));
    assert_eq!(s.metadata.generation, Some(1));
}
