use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::common::{eventually, server};

#[tokio::test]
async fn deployments_roll_out_to_observed_generation() {
    let srv = server().await;
    let api: Api<Deployment> = Api::default_namespaced(srv.client());
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ctl"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c",
                     "image": "i:1"}]}}}});
    api.patch("ctl", &PatchParams::apply("op"), &Patch::Apply(&d)).await.unwrap();
    let ready = eventually("deployment available", || async {
        let d = api.get("ctl").await.unwrap();
        let st = d.status.clone()?;
        (st.observed_generation == Some(1) && st.ready_replicas == Some(2)).then_some(d)
    })
    .await;
    let st = ready.status.unwrap();
    assert_eq!((st.replicas, st.updated_replicas, st.available_replicas), (Some(2), Some(2), Some(2)));
    let conds: Vec<String> = st
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| format!("{}={}", c.type_.unwrap_or_default(), c.status.unwrap_or_default()))
        .collect();
    assert_eq!(conds, ["Available=True", "Progressing=True"]);

    // Switched off, a spec change is not observed; switched back on, it is.
    srv.set_simulate_workloads(false);
    let mut d2 = d.clone();
    d2["spec"]["template"]["spec"]["containers"][0]["image"] = json!("i:2");
    api.patch("ctl", &PatchParams::apply("op"), &Patch::Apply(&d2)).await.unwrap();
    let frozen = api.get("ctl").await.unwrap();
    assert_eq!(frozen.metadata.generation, Some(2));
    assert_eq!(frozen.status.unwrap().observed_generation, Some(1));
    srv.set_simulate_workloads(true);
    eventually("new generation observed", || async {
        let d = api.get("ctl").await.unwrap();
        (d.status?.observed_generation == Some(2)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn daemonsets_count_nodes_matching_selector_and_tolerations() {
    let srv = server().await;
    let client = srv.client();
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, os, taint) in [("n1", "linux", None), ("n2", "linux", Some("dedicated")), ("n3", "windows", None)] {
        let mut n = json!({"metadata": {"name": name, "labels": {"kubernetes.io/os": os}}, "spec": {}});
        if let Some(key) = taint {
            n["spec"]["taints"] = json!([{"key": key, "value": "x", "effect": "NoSchedule"}]);
        }
        nodes.create(&PostParams::default(), &serde_json::from_value(n).unwrap()).await.unwrap();
    }
    let api: Api<DaemonSet> = Api::default_namespaced(client.clone());
    let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {
                     "nodeSelector": {"kubernetes.io/os": "linux"},
                     "containers": [{"name": "c", "image": "i"}]}}}});
    api.patch("node", &PatchParams::apply("op"), &Patch::Apply(&ds)).await.unwrap();
    let desired = |n: i32| {
        let api = api.clone();
        async move {
            let d = api.get("node").await.unwrap();
            let st = d.status?;
            (st.desired_number_scheduled == n
                && st.number_ready == n
                && st.observed_generation == d.metadata.generation)
                .then_some(())
        }
    };
    eventually("one untainted linux node", || desired(1)).await;
    let mut tolerant = ds.clone();
    tolerant["spec"]["template"]["spec"]["tolerations"] =
        json!([{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]);
    api.patch("node", &PatchParams::apply("op"), &Patch::Apply(&tolerant)).await.unwrap();
    eventually("the tainted node is tolerated", || desired(2)).await;
    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    eventually("node removal is counted", || desired(1)).await;
}
