use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::common::{eventually, server, status};

fn cm(name: &str, meta_extra: serde_json::Value) -> ConfigMap {
    let mut meta = json!({"name": name});
    if let (Some(m), Some(e)) = (meta.as_object_mut(), meta_extra.as_object()) {
        m.extend(e.clone());
    }
    serde_json::from_value(json!({"metadata": meta})).unwrap()
}

#[tokio::test]
async fn finalizers_hold_objects_until_removed() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    api.create(&PostParams::default(), &cm("f", json!({"finalizers": ["example.com/hold"]}))).await.unwrap();
    let pending = api.delete("f", &DeleteParams::default()).await.unwrap();
    let held = pending.left().expect("the object is returned while finalizers hold it");
    assert!(held.metadata.deletion_timestamp.is_some());
    let again = api.get("f").await.unwrap();
    assert!(again.metadata.deletion_timestamp.is_some());
    // A second delete changes nothing.
    let rv = again.metadata.resource_version.clone();
    api.delete("f", &DeleteParams::default()).await.unwrap();
    assert_eq!(api.get("f").await.unwrap().metadata.resource_version, rv);
    api.patch("f", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert_eq!(status(api.get("f").await).code, 404);
}

#[tokio::test]
async fn owner_references_garbage_collect_in_the_background() {
    let srv = server().await;
    let client = srv.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let owner = cms.create(&PostParams::default(), &cm("owner", json!({}))).await.unwrap();
    let oref =
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid.clone().unwrap()}]);
    cms.create(&PostParams::default(), &cm("dep", json!({"ownerReferences": oref}))).await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let s: Secret =
        serde_json::from_value(json!({"metadata": {"name": "dep-secret", "ownerReferences": oref}})).unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();

    // A namespaced dependent of a cluster-scoped owner.
    let scs: Api<StorageClass> = Api::all(client.clone());
    let sc: StorageClass = serde_json::from_value(json!({"metadata": {"name": "sc"}, "provisioner": "x"})).unwrap();
    let sc = scs.create(&PostParams::default(), &sc).await.unwrap();
    let sref = json!([{"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "name": "sc",
        "uid": sc.metadata.uid.unwrap()}]);
    cms.create(&PostParams::default(), &cm("of-cluster-owner", json!({"ownerReferences": sref}))).await.unwrap();

    cms.delete("owner", &DeleteParams::background()).await.unwrap();
    eventually("dependents collected", || async {
        let a = cms.get_opt("dep").await.unwrap();
        let b = secrets.get_opt("dep-secret").await.unwrap();
        (a.is_none() && b.is_none()).then_some(())
    })
    .await;
    assert!(cms.get_opt("of-cluster-owner").await.unwrap().is_some());
    scs.delete("sc", &DeleteParams::default()).await.unwrap();
    eventually("namespaced dependent of a cluster-scoped owner collected", || async {
        cms.get_opt("of-cluster-owner").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn foreground_and_orphan_propagation() {
    let srv = server().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let fg = cms.create(&PostParams::default(), &cm("fg", json!({}))).await.unwrap();
    let fref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "fg", "uid": fg.metadata.uid.unwrap(),
        "blockOwnerDeletion": true}]);
    cms.create(&PostParams::default(), &cm("fg-dep", json!({"ownerReferences": fref}))).await.unwrap();
    cms.delete("fg", &DeleteParams::foreground()).await.unwrap();
    eventually("foreground deletion finishes", || async {
        (cms.get_opt("fg").await.unwrap().is_none() && cms.get_opt("fg-dep").await.unwrap().is_none()).then_some(())
    })
    .await;

    let or = cms.create(&PostParams::default(), &cm("or", json!({}))).await.unwrap();
    let oref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "or", "uid": or.metadata.uid.unwrap()}]);
    cms.create(&PostParams::default(), &cm("or-dep", json!({"ownerReferences": oref}))).await.unwrap();
    cms.delete("or", &DeleteParams::orphan()).await.unwrap();
    eventually("orphaning finishes", || async { cms.get_opt("or").await.unwrap().is_none().then_some(()) }).await;
    let orphan = cms.get("or-dep").await.unwrap();
    assert!(orphan.metadata.owner_references.is_none_or(|r| r.is_empty()));
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_contents() {
    let srv = server().await;
    let client = srv.client();
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    for i in 0..3 {
        cms.create(&PostParams::default(), &cm(&format!("c{i}"), json!({}))).await.unwrap();
    }
    cms.create(&PostParams::default(), &cm("held", json!({"finalizers": ["example.com/x"]}))).await.unwrap();
    nss.delete("doomed", &DeleteParams::default()).await.unwrap();
    let terminating = nss.get("doomed").await.unwrap();
    assert_eq!(terminating.status.unwrap().phase.as_deref(), Some("Terminating"));
    let err = status(cms.create(&PostParams::default(), &cm("late", json!({}))).await);
    assert_eq!(err.code, 403, "no new content in a terminating namespace");
    eventually("contents deleted", || async {
        let left = cms.list(&Default::default()).await.unwrap();
        (left.items.len() == 1).then_some(())
    })
    .await;
    assert!(nss.get_opt("doomed").await.unwrap().is_some(), "a finalizer inside holds the namespace");
    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    eventually("namespace gone", || async { nss.get_opt("doomed").await.unwrap().is_none().then_some(()) }).await;
    let err = status(nss.delete("kube-system", &DeleteParams::default()).await);
    assert_eq!(err.code, 403, "system namespaces may not be deleted");
}

#[tokio::test]
async fn foreground_deletion_removes_dependents_whatever_the_owners_finalizers() {
    // A finalizer holds only the object that carries it: kube-controller-manager's garbage
    // collector deletes the dependents of a foreground deletion while the owner waits.
    let srv = server().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let owner = cms
        .create(&PostParams::default(), &cm("held-owner", json!({"finalizers": ["example.com/hold"]})))
        .await
        .unwrap();
    let oref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "held-owner",
        "uid": owner.metadata.uid.unwrap(), "blockOwnerDeletion": true}]);
    cms.create(&PostParams::default(), &cm("held-dep", json!({"ownerReferences": oref}))).await.unwrap();
    cms.create(&PostParams::default(), &cm("unowned", json!({}))).await.unwrap();
    cms.delete("held-owner", &DeleteParams::foreground()).await.unwrap();
    eventually("the dependent is deleted", || async { cms.get_opt("held-dep").await.unwrap().is_none().then_some(()) })
        .await;
    let o = cms.get("held-owner").await.expect("the owner waits for its own finalizer");
    assert_eq!(o.metadata.finalizers, Some(vec!["example.com/hold".to_string()]), "foregroundDeletion is done");
    assert!(cms.get_opt("unowned").await.unwrap().is_some());
    cms.patch("held-owner", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .unwrap();
    assert_eq!(status(cms.get("held-owner").await).code, 404);
}
