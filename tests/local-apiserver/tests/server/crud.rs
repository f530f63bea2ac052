use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams};
use serde_json::{Value, json};

use super::common::{server, status};

/// One object of every built-in kind the operator touches, created, read, listed, replaced
/// and deleted through the dynamic API.
#[tokio::test]
async fn crud_for_every_builtin_kind() {
    let srv = server().await;
    let client = srv.client();
    let objects: Vec<(&str, &str, &str, &str, Value)> = vec![
        ("", "v1", "Namespace", "namespaces", json!({})),
        ("", "v1", "ServiceAccount", "serviceaccounts", json!({})),
        ("", "v1", "Secret", "secrets", json!({"type": "Opaque", "stringData": {"a": "b"}})),
        ("", "v1", "ConfigMap", "configmaps", json!({"data": {"a": "b"}})),
        ("", "v1", "Service", "services", json!({"spec": {"ports": [{"port": 80}]}})),
        (
            "",
            "v1",
            "Event",
            "events",
            json!({"involvedObject": {"kind": "Pod", "name": "x"}, "reason": "R", "message": "m"}),
        ),
        ("", "v1", "Pod", "pods", json!({"spec": {"containers": [{"name": "c", "image": "i"}]}})),
        ("", "v1", "Node", "nodes", json!({"spec": {}})),
        ("", "v1", "PersistentVolume", "persistentvolumes", json!({"spec": {"capacity": {"storage": "1Gi"}}})),
        (
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            json!({"spec": {"accessModes": ["ReadWriteOnce"]}}),
        ),
        (
            "apps",
            "v1",
            "Deployment",
            "deployments",
            json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        ),
        (
            "apps",
            "v1",
            "DaemonSet",
            "daemonsets",
            json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "x"},
                "subjects": []}),
        ),
        ("rbac.authorization.k8s.io", "v1", "Role", "roles", json!({"rules": []})),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "x"}}),
        ),
        ("storage.k8s.io", "v1", "CSIDriver", "csidrivers", json!({"spec": {"attachRequired": true}})),
        ("storage.k8s.io", "v1", "StorageClass", "storageclasses", json!({"provisioner": "ebs.csi.aws.com"})),
        ("storage.k8s.io", "v1", "CSINode", "csinodes", json!({"spec": {"drivers": []}})),
        (
            "storage.k8s.io",
            "v1",
            "VolumeAttachment",
            "volumeattachments",
            json!({"spec": {"attacher": "a", "nodeName": "n", "source": {"persistentVolumeName": "pv"}}}),
        ),
        ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", json!({"spec": {"maxUnavailable": 1}})),
        ("coordination.k8s.io", "v1", "Lease", "leases", json!({"spec": {"holderIdentity": "me"}})),
        (
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            json!({"reason": "R", "note": "n", "eventTime": "2026-01-01T00:00:00.000000Z", "action": "A",
                "reportingController": "c", "reportingInstance": "i"}),
        ),
    ];
    let mut last_rv = 0u64;
    for (group, version, kind, plural, body) in objects {
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let namespaced = !matches!(
            kind,
            "Namespace"
                | "Node"
                | "PersistentVolume"
                | "ClusterRole"
                | "ClusterRoleBinding"
                | "CSIDriver"
                | "StorageClass"
                | "CSINode"
                | "VolumeAttachment"
        );
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(client.clone(), "default", &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        let mut obj: Value = body;
        obj["apiVersion"] = json!(ar.api_version);
        obj["kind"] = json!(kind);
        obj["metadata"] = json!({"name": "crud-test", "labels": {"t": "1"}});
        let obj: DynamicObject = serde_json::from_value(obj).unwrap();
        let created = api.create(&PostParams::default(), &obj).await.unwrap_or_else(|e| panic!("create {kind}: {e}"));
        let rv: u64 = created.metadata.resource_version.as_deref().unwrap().parse().unwrap();
        assert!(rv > last_rv, "{kind}: resourceVersion is one increasing counter");
        last_rv = rv;
        assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some(), "{kind}");
        // Only kinds whose real strategy tracks generation have one.
        let tracks = matches!(kind, "Deployment" | "DaemonSet" | "PodDisruptionBudget");
        assert_eq!(created.metadata.generation, if tracks { Some(1) } else { None }, "{kind}");
        assert!(created.metadata.managed_fields.is_some(), "{kind}: managedFields");
        let got = api.get("crud-test").await.unwrap();
        assert_eq!(got.metadata.uid, created.metadata.uid);
        let listed = api.list(&ListParams::default().labels("t=1")).await.unwrap();
        assert_eq!(listed.items.len(), 1, "{kind}");
        // A workload's controller writes its status meanwhile (on its own thread, as in a real
        // cluster): a replace of a stale read is a conflict, read again as clients do.
        let mut latest = got.clone();
        let mut attempts = 0;
        let replaced = loop {
            let mut changed = latest.clone();
            changed.metadata.labels.get_or_insert_default().insert("t".into(), "2".into());
            attempts += 1;
            match api.replace("crud-test", &PostParams::default(), &changed).await {
                Err(kube::Error::Api(s)) if s.code == 409 && attempts < 5 => {
                    latest = api.get("crud-test").await.unwrap()
                }
                other => break other.unwrap_or_else(|e| panic!("replace {kind}: {e}")),
            }
        };
        assert_eq!(replaced.metadata.labels.unwrap()["t"], "2");
        let err = status(api.create(&PostParams::default(), &obj).await);
        assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"), "{kind}");
        api.delete("crud-test", &DeleteParams::default()).await.unwrap();
        if kind != "Namespace" {
            let err = status(api.get("crud-test").await);
            assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"), "{kind}");
        }
    }
}

fn deployment(name: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c",
                     "image": image}]}}}
    }))
    .unwrap()
}

#[tokio::test]
async fn generation_moves_on_spec_changes_only() {
    let srv = server().await;
    srv.set_simulate_workloads(false);
    let api: Api<Deployment> = Api::default_namespaced(srv.client());
    let d = api.create(&PostParams::default(), &deployment("gen", "a")).await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let mut labelled = d.clone();
    labelled.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
    let labelled = api.replace("gen", &PostParams::default(), &labelled).await.unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    assert_ne!(labelled.metadata.resource_version, d.metadata.resource_version);
    let mut changed = labelled.clone();
    changed.spec.template.spec.as_mut().unwrap().containers[0].image = Some("b".into());
    let changed = api.replace("gen", &PostParams::default(), &changed).await.unwrap();
    assert_eq!(changed.metadata.generation, Some(2));
    assert_eq!(changed.metadata.uid, d.metadata.uid);
    assert_eq!(changed.metadata.creation_timestamp, d.metadata.creation_timestamp);
}

#[tokio::test]
async fn stale_put_conflicts_and_noop_put_keeps_version() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"a": "1"}})).unwrap();
    let first = api.create(&PostParams::default(), &cm).await.unwrap();
    let mut newer = first.clone();
    newer.data = Some([("a".to_string(), "2".to_string())].into());
    let newer = api.replace("c", &PostParams::default(), &newer).await.unwrap();
    let mut stale = first.clone();
    stale.data = Some([("a".to_string(), "3".to_string())].into());
    let err = status(api.replace("c", &PostParams::default(), &stale).await);
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(err.message.contains("the object has been modified"), "{}", err.message);
    let same = api.replace("c", &PostParams::default(), &newer).await.unwrap();
    assert_eq!(same.metadata.resource_version, newer.metadata.resource_version);
}

#[tokio::test]
async fn invalid_names_missing_namespaces_and_generate_name() {
    let srv = server().await;
    let client = srv.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let bad: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "Bad_Name"}})).unwrap();
    let err = status(api.create(&PostParams::default(), &bad).await);
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert_eq!(err.details.unwrap().causes[0].field, "metadata.name");
    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "does-not-exist");
    let ok: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    let err = status(elsewhere.create(&PostParams::default(), &ok).await);
    assert_eq!(err.code, 404);
    assert!(err.message.contains("namespaces \"does-not-exist\" not found"), "{}", err.message);
    let generated: ConfigMap = serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let made = api.create(&PostParams::default(), &generated).await.unwrap();
    let name = made.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
}

#[tokio::test]
async fn insert_raw_bypasses_validation() {
    let srv = server().await;
    srv.insert_raw(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_Valid",
        "namespace": "default"}, "data": {"k": 5}}));
    let api: Api<DynamicObject> = Api::namespaced_with(srv.client(), "default", &ApiResource::erase::<ConfigMap>(&()));
    let got = api.get("Not_Valid").await.unwrap();
    assert_eq!(got.data["data"]["k"], 5);
    let typed: Api<ConfigMap> = Api::default_namespaced(srv.client());
    assert!(typed.get("Not_Valid").await.is_err(), "a typed client fails to decode the bad object");
}

#[tokio::test]
async fn builtin_validation_and_immutable_fields() {
    use k8s_openapi::api::storage::v1::StorageClass;
    use kube::api::{Patch, PatchParams};
    let srv = server().await;
    let client = srv.client();
    let scs: Api<StorageClass> = Api::all(client.clone());
    let sc = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "gp3"},
                    "provisioner": "ebs.csi.aws.com", "parameters": {"type": "gp3"}});
    scs.patch("gp3", &PatchParams::apply("op"), &Patch::Apply(&sc)).await.unwrap();
    let mut changed = sc.clone();
    changed["parameters"]["type"] = json!("io2");
    let err = status(scs.patch("gp3", &PatchParams::apply("op"), &Patch::Apply(&changed)).await);
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert!(err.message.contains("parameters: Forbidden: updates to parameters are forbidden."), "{}", err.message);

    let deps: Api<Deployment> = Api::default_namespaced(client);
    let mut bad = serde_json::to_value(deployment("mismatch", "i")).unwrap();
    bad["spec"]["template"]["metadata"]["labels"] = json!({"other": "x"});
    let err = status(deps.create(&PostParams::default(), &serde_json::from_value(bad).unwrap()).await);
    assert_eq!(err.code, 422);
    assert_eq!(err.details.unwrap().causes[0].field, "spec.template.metadata.labels");
}

#[tokio::test]
async fn delete_collection_and_dry_run() {
    use kube::api::{DeleteParams, Patch, PatchParams};
    let srv = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    for (n, l) in [("a", "x"), ("b", "x"), ("c", "y")] {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": n, "labels": {"g": l}}})).unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let dry = PostParams { dry_run: true, ..Default::default() };
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "dry"}})).unwrap();
    let would = api.create(&dry, &cm).await.unwrap();
    assert_eq!(would.metadata.name.as_deref(), Some("dry"));
    assert!(api.get_opt("dry").await.unwrap().is_none(), "dry-run stores nothing");
    let before = api.get("c").await.unwrap();
    let pp = PatchParams { dry_run: true, ..PatchParams::apply("m") };
    let patched = api
        .patch(
            "c",
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["k"], "v");
    assert_eq!(api.get("c").await.unwrap().metadata.resource_version, before.metadata.resource_version);

    let deleted = api.delete_collection(&DeleteParams::default(), &ListParams::default().labels("g=x")).await.unwrap();
    let names: Vec<String> = deleted.left().unwrap().items.into_iter().filter_map(|c| c.metadata.name).collect();
    assert_eq!(names, ["a", "b"]);
    let left: Vec<String> =
        api.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|c| c.metadata.name).collect();
    assert_eq!(left, ["c"]);
}

#[tokio::test]
async fn builtin_defaults_are_filled_in() {
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::api::storage::v1::CSIDriver;
    use kube::api::{Patch, PatchParams};
    let srv = server().await;
    let client = srv.client();
    let deps: Api<Deployment> = Api::default_namespaced(client.clone());
    let mut d = serde_json::to_value(deployment("defaults", "nginx:1.27")).unwrap();
    d["spec"].as_object_mut().unwrap().remove("replicas");
    let made = deps.create(&PostParams::default(), &serde_json::from_value(d).unwrap()).await.unwrap();
    assert_eq!(made.spec.replicas, Some(1));
    assert_eq!(made.spec.revision_history_limit, Some(10));
    let pod = made.spec.template.spec.unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Always"));
    assert_eq!(pod.containers[0].image_pull_policy.as_deref(), Some("IfNotPresent"));

    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "hi"}});
    let stored = secrets.patch("s", &PatchParams::apply("op"), &Patch::Apply(&s)).await.unwrap();
    assert!(stored.string_data.is_none());
    assert_eq!(stored.data.unwrap()["k"].0, b"hi".to_vec());
    assert_eq!(stored.type_.as_deref(), Some("Opaque"));
    let again = secrets.patch("s", &PatchParams::apply("op"), &Patch::Apply(&s)).await.unwrap();
    assert_eq!(again.metadata.resource_version, stored.metadata.resource_version, "re-applying stringData is a no-op");

    let drivers: Api<CSIDriver> = Api::all(client);
    let drv = json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": "ebs.csi.aws.com"},
        "spec": {"attachRequired": true}});
    let made = drivers.patch("ebs.csi.aws.com", &PatchParams::apply("op"), &Patch::Apply(&drv)).await.unwrap();
    assert_eq!(made.spec.fs_group_policy.as_deref(), Some("ReadWriteOnceWithFSType"));
    let mut changed = drv.clone();
    changed["spec"]["fsGroupPolicy"] = json!("File");
    let err = status(drivers.patch("ebs.csi.aws.com", &PatchParams::apply("op"), &Patch::Apply(&changed)).await);
    assert_eq!(err.code, 422, "fsGroupPolicy is immutable once defaulted");
}
