use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::common::{server, status};

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let srv = server().await;
    let pods: Api<Pod> = Api::default_namespaced(srv.client());
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}},
        "spec": {"containers": [{"name": "c1", "image": "i1"}, {"name": "c2", "image": "i2"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let pp = PatchParams::default();
    let merged =
        pods.patch("p", &pp, &Patch::Merge(json!({"metadata": {"labels": {"a": null, "c": "3"}}}))).await.unwrap();
    let labels = merged.metadata.labels.unwrap();
    assert_eq!(labels.keys().collect::<Vec<_>>(), ["b", "c"]);
    let ops: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/containers/1/image", "value": "i3"}])).unwrap();
    let jp = pods.patch("p", &pp, &Patch::<()>::Json(ops)).await.unwrap();
    assert_eq!(jp.spec.unwrap().containers[1].image.as_deref(), Some("i3"));
    let sp = pods
        .patch("p", &pp, &Patch::Strategic(json!({"spec": {"containers": [{"name": "c1", "image": "new"}]}})))
        .await
        .unwrap();
    let cs = sp.spec.unwrap().containers;
    assert_eq!(cs.len(), 2, "strategic merge keeps c2");
    assert_eq!(cs[0].image.as_deref(), Some("new"));
    let failed: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/metadata/name", "value": "other"}])).unwrap();
    assert_eq!(status(pods.patch("p", &pp, &Patch::<()>::Json(failed)).await).code, 422);
    assert_eq!(status(pods.patch("missing", &pp, &Patch::Merge(json!({}))).await).code, 404);
}

#[tokio::test]
async fn patch_with_stale_resource_version_conflicts() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"a": "1"}})).unwrap();
    let c = api.create(&PostParams::default(), &cm).await.unwrap();
    let rv = c.metadata.resource_version.unwrap();
    api.patch("c", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": "2"}}))).await.unwrap();
    let err = status(
        api.patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": rv}, "data": {"a": "3"}})),
        )
        .await,
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
}

#[tokio::test]
async fn status_subresource_writes_only_status_and_main_writes_ignore_it() {
    let srv = server().await;
    srv.set_simulate_workloads(false);
    let api: Api<Deployment> = Api::default_namespaced(srv.client());
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {"replicas": 1,
        "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        "status": {"replicas": 9}}))
    .unwrap();
    let created = api.create(&PostParams::default(), &d).await.unwrap();
    assert!(created.status.is_none_or(|s| s.replicas.is_none()), "status is reset on create");
    let st = api
        .patch_status(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}, "status": {"replicas": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.as_ref().unwrap().replicas, Some(4));
    assert_eq!(st.spec.replicas, Some(1), "a status write ignores spec");
    assert_eq!(st.metadata.generation, Some(1));
    let main = api
        .patch("d", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}, "status": {"replicas": 0}})))
        .await
        .unwrap();
    assert_eq!(main.status.unwrap().replicas, Some(4), "a main write ignores status");
    assert_eq!(main.spec.replicas, Some(2));
    let mut replaced = api.get_status("d").await.unwrap();
    replaced.status.as_mut().unwrap().replicas = Some(6);
    let r = api.replace_status("d", &PostParams::default(), &replaced).await.unwrap();
    assert_eq!(r.status.unwrap().replicas, Some(6));
}
