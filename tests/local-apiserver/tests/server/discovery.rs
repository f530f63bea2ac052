use kube::discovery::{Discovery, Scope};

use super::common::server;

#[tokio::test]
async fn version_and_discovery_list_what_is_served() {
    let srv = server().await;
    let client = srv.client();
    let v = client.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "33"));

    let d = Discovery::new(client.clone()).run().await.unwrap();
    let find = |group: &str, kind: &str| {
        d.groups().flat_map(|g| g.recommended_resources()).find(|(ar, _)| ar.group == group && ar.kind == kind).map(
            |(ar, caps)| {
                (
                    ar.plural.clone(),
                    caps.scope.clone(),
                    caps.subresources.iter().map(|(s, _)| s.plural.clone()).collect::<Vec<_>>(),
                )
            },
        )
    };
    let expected = [
        ("", "Namespace"),
        ("", "ServiceAccount"),
        ("", "Secret"),
        ("", "ConfigMap"),
        ("", "Service"),
        ("", "Event"),
        ("", "Pod"),
        ("", "Node"),
        ("", "PersistentVolume"),
        ("", "PersistentVolumeClaim"),
        ("apps", "Deployment"),
        ("apps", "DaemonSet"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "CSINode"),
        ("storage.k8s.io", "VolumeAttachment"),
        ("policy", "PodDisruptionBudget"),
        ("coordination.k8s.io", "Lease"),
        ("events.k8s.io", "Event"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ];
    for (g, k) in expected {
        assert!(find(g, k).is_some(), "{g}/{k} missing from discovery");
    }
    let (plural, scope, subs) = find("apps", "Deployment").unwrap();
    assert_eq!(plural, "deployments");
    assert!(matches!(scope, Scope::Namespaced));
    assert!(subs.contains(&"status".to_string()));
    assert!(matches!(find("", "Node").unwrap().1, Scope::Cluster));
    assert!(find("", "ServiceAccount").unwrap().2.contains(&"token".to_string()));
    assert!(find("snapshot.storage.k8s.io", "VolumeSnapshotClass").is_none());
}

#[tokio::test]
async fn unknown_paths_are_404_status() {
    let srv = server().await;
    let client = srv.client();
    let req = axum::http::Request::get("/apis/nope.example.com/v1/things").body(Vec::new()).unwrap();
    let err = client.request::<serde_json::Value>(req).await.unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (404, "NotFound")),
        other => panic!("{other:?}"),
    }
}
