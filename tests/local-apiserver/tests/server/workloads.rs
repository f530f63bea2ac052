//! Workload controllers, scheduler and kubelet stand-in, observed through kube-rs as a client of
//! a real cluster would: ReplicaSets and Pods of Deployments, rolling updates watched event by
//! event, DaemonSet placement on Nodes, image pull failures, crash loops.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Node, Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, ResourceExt};
use local_apiserver::{ImageFault, LocalApiServer};
use serde_json::{Value, json};

use super::common::{eventually, server};

fn deployment(name: &str, replicas: i32, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}}})
}

fn daemonset(name: &str, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                       "containers": [{"name": "c", "image": image}]}}}})
}

async fn apply<K>(api: &Api<K>, name: &str, obj: &Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply("test").force(), &Patch::Apply(obj)).await.expect("applied");
}

fn cond(conds: &Option<Vec<k8s_openapi::api::apps::v1::DeploymentCondition>>, t: &str) -> (String, String) {
    let v = serde_json::to_value(conds).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == t)
        .map(|c| (c["status"].as_str().unwrap_or_default().into(), c["reason"].as_str().unwrap_or_default().into()))
        .unwrap_or_default()
}

async fn rolled_out(api: &Api<Deployment>, name: &str, replicas: i32) -> Deployment {
    eventually("deployment rolled out", || async {
        let d = api.get(name).await.ok()?;
        let st = d.status.clone()?;
        let done = st.observed_generation == d.metadata.generation
            && st.updated_replicas == Some(replicas)
            && st.replicas == Some(replicas)
            && st.available_replicas == Some(replicas)
            && cond(&st.conditions, "Progressing").1 == "NewReplicaSetAvailable";
        done.then_some(d)
    })
    .await
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn waiting_reason(p: &Pod) -> Option<String> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()?.state.as_ref()?.waiting.as_ref()?.reason.clone()
}

async fn two_nodes() -> LocalApiServer {
    let srv = server().await;
    srv.add_node("n1", &[("kubernetes.io/os", "linux")], &[]).unwrap();
    srv.add_node("n2", &[("kubernetes.io/os", "linux")], &[]).unwrap();
    srv
}

#[tokio::test]
async fn deployments_run_replica_sets_and_ready_pods() {
    let srv = two_nodes().await;
    let client = srv.client();
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    apply(&api, "web", &deployment("web", 3, "nginx:1")).await;
    let d = rolled_out(&api, "web", 3).await;
    let st = d.status.clone().unwrap();
    assert_eq!((st.ready_replicas, st.unavailable_replicas), (Some(3), None));
    assert_eq!(cond(&st.conditions, "Available"), ("True".into(), "MinimumReplicasAvailable".into()));
    assert_eq!(d.annotations().get("deployment.kubernetes.io/revision").map(String::as_str), Some("1"));

    let rss: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let list = rss.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(list.len(), 1);
    let rs = &list[0];
    let hash = rs.labels()["pod-template-hash"].clone();
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(rs.spec.selector.match_labels.as_ref().unwrap()["pod-template-hash"], hash);
    let owner = &rs.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("Deployment", "web", Some(true)));
    assert_eq!(owner.uid, d.uid().unwrap());
    assert_eq!(rs.annotations()["deployment.kubernetes.io/revision"], "1");
    assert_eq!(rs.status.as_ref().unwrap().ready_replicas, Some(3));

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let list = pods.list(&ListParams::default().labels(&format!("pod-template-hash={hash}"))).await.unwrap().items;
    assert_eq!(list.len(), 3);
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in &list {
        assert!(p.name_any().starts_with(&format!("web-{hash}-")), "{}", p.name_any());
        assert_eq!(p.owner_references()[0].kind, "ReplicaSet");
        assert_eq!(p.owner_references()[0].uid, rs.uid().unwrap());
        let st = p.status.as_ref().unwrap();
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert!(st.pod_ip.as_deref().is_some_and(|ip| ip.starts_with("10.244.")), "{st:?}");
        assert!(st.host_ip.is_some());
        let types: Vec<&str> = st.conditions.iter().flatten().map(|c| c.type_.as_str()).collect();
        for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
            assert!(types.contains(&t), "{types:?}");
        }
        let c = &st.container_statuses.as_ref().unwrap()[0];
        assert!(c.ready && c.started == Some(true) && c.state.as_ref().unwrap().running.is_some(), "{c:?}");
        assert!(c.image_id.starts_with("docker.io/library/nginx@sha256:"), "{}", c.image_id);
        *per_node.entry(p.spec.as_ref().unwrap().node_name.clone().unwrap()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 2, "spread over both nodes: {per_node:?}");

    // The kubelet's and the scheduler's events, as `kubectl describe pod` reads them.
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let first = list[0].name_any();
    let fs = format!("involvedObject.name={first}");
    let reasons: Vec<String> = events
        .list(&ListParams::default().fields(&fs))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for r in ["Scheduled", "Pulling", "Pulled", "Created", "Started"] {
        assert!(reasons.iter().any(|x| x == r), "{r} missing from {reasons:?}");
    }
    let for_deploy = events.list(&ListParams::default().fields("involvedObject.name=web")).await.unwrap().items;
    assert!(for_deploy.iter().any(|e| e.reason.as_deref() == Some("ScalingReplicaSet")
        && e.message.as_deref() == Some(&format!("Scaled up replica set web-{hash} from 0 to 3"))));

    // Deleting the Deployment takes its ReplicaSets and Pods with it.
    api.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("pods collected", || async {
        pods.list(&ListParams::default()).await.ok()?.items.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn deployments_roll_out_to_observed_generation() {
    let srv = server().await;
    srv.add_node("n1", &[], &[]).unwrap();
    let api: Api<Deployment> = Api::default_namespaced(srv.client());
    let d = deployment("ctl", 2, "i:1");
    apply(&api, "ctl", &d).await;
    rolled_out(&api, "ctl", 2).await;

    // Switched off, a spec change is not observed; switched back on, it is.
    srv.set_simulate_workloads(false);
    let mut d2 = d.clone();
    d2["spec"]["template"]["spec"]["containers"][0]["image"] = json!("i:2");
    apply(&api, "ctl", &d2).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let frozen = api.get("ctl").await.unwrap();
    assert_eq!(frozen.metadata.generation, Some(2));
    assert_eq!(frozen.status.unwrap().observed_generation, Some(1));
    let rss: Api<ReplicaSet> = Api::default_namespaced(srv.client());
    assert_eq!(rss.list(&ListParams::default()).await.unwrap().items.len(), 1, "no new ReplicaSet while off");
    srv.set_simulate_workloads(true);
    let d = rolled_out(&api, "ctl", 2).await;
    assert_eq!(d.metadata.generation, Some(2));
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "2");
}

/// The pods labelled `app=APP`, by name, and the list's resourceVersion to watch from.
async fn list_pods(pods: &Api<Pod>, app: &str) -> (BTreeMap<String, Pod>, String) {
    let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap();
    let rv = list.metadata.resource_version.clone().unwrap();
    (list.items.into_iter().map(|p| (p.name_any(), p)).collect(), rv)
}

/// The watch of the pods labelled `app=APP` from `rv`.
async fn watch_pods(
    pods: &Api<Pod>,
    app: &str,
    rv: &str,
) -> futures::stream::BoxStream<'static, Result<WatchEvent<Pod>, kube::Error>> {
    let wp = WatchParams::default().labels(&format!("app={app}")).timeout(30);
    pods.watch(&wp, rv).await.unwrap().boxed()
}

/// Applies a watch event to `live`; false for events that change no pod (bookmarks, errors).
fn track(live: &mut BTreeMap<String, Pod>, ev: WatchEvent<Pod>) -> bool {
    match ev {
        WatchEvent::Added(p) | WatchEvent::Modified(p) => {
            live.insert(p.name_any(), p);
        }
        WatchEvent::Deleted(p) => {
            live.remove(&p.name_any());
        }
        _ => return false,
    }
    true
}

/// Makes `change`, then follows every pod event of the rollout it starts (from a list taken
/// before it) and checks maxSurge/maxUnavailable at each step.
async fn watch_rollout(
    client: &Client,
    app: &str,
    max_total: usize,
    min_ready: usize,
    change: impl std::future::Future<Output = ()>,
    done: impl Fn(&[Pod]) -> bool,
) {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let (mut live, rv) = list_pods(&pods, app).await;
    change.await;
    let mut stream = watch_pods(&pods, app, &rv).await;
    let mut steps = 0;
    while let Some(ev) = stream.try_next().await.unwrap() {
        if !track(&mut live, ev) {
            continue;
        }
        steps += 1;
        let all: Vec<Pod> = live.values().cloned().collect();
        let ready = all.iter().filter(|p| pod_ready(p)).count();
        assert!(all.len() <= max_total, "{} pods at once (max {max_total})", all.len());
        assert!(ready >= min_ready, "only {ready} ready pods (min {min_ready})");
        if done(&all) {
            assert!(steps > 3, "the rollout was observed step by step");
            return;
        }
    }
    panic!("the watch ended before the rollout finished");
}

#[tokio::test]
async fn rolling_updates_honour_max_surge_and_max_unavailable() {
    let srv = two_nodes().await;
    let client = srv.client();
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let mut d = deployment("roll", 4, "nginx:1");
    d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    apply(&api, "roll", &d).await;
    rolled_out(&api, "roll", 4).await;
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    let new_image = |ps: &[Pod]| {
        ps.len() == 4
            && ps
                .iter()
                .all(|p| pod_ready(p) && p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("nginx:2"))
    };
    watch_rollout(&client, "roll", 5, 4, apply(&api, "roll", &d), new_image).await;
    let d2 = rolled_out(&api, "roll", 4).await;
    assert_eq!(d2.annotations()["deployment.kubernetes.io/revision"], "2");
    // The old ReplicaSet is kept, scaled to zero, for rollbacks.
    let rss: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let mut sets: Vec<(String, i32)> = rss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|rs| (rs.annotations()["deployment.kubernetes.io/revision"].clone(), rs.spec.replicas.unwrap()))
        .collect();
    sets.sort();
    assert_eq!(sets, [("1".to_string(), 0), ("2".to_string(), 4)]);

    // maxUnavailable 2, no surge: never more than 4 pods, never fewer than 2 ready.
    d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 2}});
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:3");
    let third = |ps: &[Pod]| {
        ps.len() == 4
            && ps
                .iter()
                .all(|p| pod_ready(p) && p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("nginx:3"))
    };
    watch_rollout(&client, "roll", 4, 2, apply(&api, "roll", &d), third).await;
    rolled_out(&api, "roll", 4).await;
}

#[tokio::test]
async fn recreate_and_revision_history_limit() {
    let srv = two_nodes().await;
    let client = srv.client();
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let mut d = deployment("rec", 2, "nginx:1");
    d["spec"]["strategy"] = json!({"type": "Recreate"});
    d["spec"]["revisionHistoryLimit"] = json!(1);
    apply(&api, "rec", &d).await;
    rolled_out(&api, "rec", 2).await;
    for image in ["nginx:2", "nginx:3"] {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
        apply(&api, "rec", &d).await;
        // Recreate: the old pods are all gone before a new one exists (two images never coexist).
        let pods: Api<Pod> = Api::default_namespaced(client.clone());
        let (mut live, rv) = list_pods(&pods, "rec").await;
        let mut stream = watch_pods(&pods, "rec", &rv).await;
        while let Some(ev) = stream.try_next().await.unwrap() {
            if !track(&mut live, ev) {
                continue;
            }
            let images: std::collections::BTreeSet<String> =
                live.values().filter_map(|p| p.spec.as_ref()?.containers[0].image.clone()).collect();
            assert!(images.len() <= 1, "old and new pods at once: {images:?}");
            if live.len() == 2 && live.values().all(|p| pod_ready(p) && images.contains(image)) {
                break;
            }
        }
        rolled_out(&api, "rec", 2).await;
    }
    let rss: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    eventually("history pruned to one old ReplicaSet", || async {
        let mut revs: Vec<String> = rss
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .iter()
            .map(|rs| rs.annotations()["deployment.kubernetes.io/revision"].clone())
            .collect();
        revs.sort();
        (revs == ["2", "3"]).then_some(())
    })
    .await;
}

fn dockerconfig(registry: &str) -> Secret {
    let cfg = json!({"auths": {registry: {"username": "u", "password": "p", "auth": "dTpw"}}}).to_string();
    serde_json::from_value(json!({"metadata": {"name": "dhi"}, "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": cfg}}))
    .unwrap()
}

#[tokio::test]
async fn private_registry_images_need_a_pull_secret() {
    let srv = two_nodes().await;
    let client = srv.client();
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let image = "dhi.io/aws-ebs-csi-driver:1.64.0";
    let mut d = deployment("dhi", 1, image);
    d["spec"]["progressDeadlineSeconds"] = json!(1);
    d["spec"]["template"]["spec"]["imagePullSecrets"] = json!([{"name": "dhi"}]);
    apply(&api, "dhi", &d).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for reason in ["ErrImagePull", "ImagePullBackOff"] {
        let p = eventually(reason, || async {
            let ps = pods.list(&ListParams::default().labels("app=dhi")).await.ok()?.items;
            ps.into_iter().find(|p| waiting_reason(p).as_deref() == Some(reason))
        })
        .await;
        let c = &p.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0];
        let msg = c.state.as_ref().unwrap().waiting.as_ref().unwrap().message.clone().unwrap_or_default();
        assert!(!c.ready && c.restart_count == 0);
        if reason == "ImagePullBackOff" {
            assert!(msg.starts_with(&format!("Back-off pulling image \"{image}\"")), "{msg}");
        } else {
            assert!(msg.contains("failed to pull and unpack image") && msg.contains("401 Unauthorized"), "{msg}");
        }
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Pending"));
    }
    // Once failed, a pull retried after its back-off keeps reading as a pull failure (a real
    // kubelet reports its last sync's reason until the retry ends), never ContainerCreating.
    let (_, rv) = list_pods(&pods, "dhi").await;
    let mut events = watch_pods(&pods, "dhi", &rv).await;
    let mut reasons = Vec::new();
    while reasons.len() < 4 {
        let Ok(Some(ev)) = tokio::time::timeout(std::time::Duration::from_secs(10), events.try_next()).await.unwrap()
        else {
            panic!("the pull is not retried: {reasons:?}")
        };
        let WatchEvent::Modified(p) = ev else { continue };
        reasons.push(waiting_reason(&p).unwrap_or_default());
    }
    assert!(reasons.iter().all(|r| r == "ErrImagePull" || r == "ImagePullBackOff"), "{reasons:?}");
    let stalled = eventually("progress deadline exceeded", || async {
        let d = api.get("dhi").await.ok()?;
        (cond(&d.status.clone()?.conditions, "Progressing").1 == "ProgressDeadlineExceeded").then_some(d)
    })
    .await;
    let st = stalled.status.unwrap();
    assert_eq!(cond(&st.conditions, "Progressing").0, "False");
    assert_eq!(cond(&st.conditions, "Available"), ("False".into(), "MinimumReplicasUnavailable".into()));
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let all = events.list(&ListParams::default()).await.unwrap().items;
    let said = |reason: &str, needle: &str| {
        all.iter()
            .any(|e| e.reason.as_deref() == Some(reason) && e.message.as_deref().is_some_and(|m| m.contains(needle)))
    };
    assert!(said("Failed", "401 Unauthorized"), "{all:?}");
    assert!(said("Failed", "Error: ErrImagePull") && said("Failed", "Error: ImagePullBackOff"));
    assert!(said("BackOff", "Back-off pulling image"));
    assert!(said("FailedToRetrieveImagePullSecret", "(dhi)"));

    // A secret for another registry does not help; one for dhi.io does, at the next retry.
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    secrets.create(&PostParams::default(), &dockerconfig("ghcr.io")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(pods.list(&ListParams::default().labels("app=dhi")).await.unwrap().items.iter().all(|p| !pod_ready(p)));
    secrets.delete("dhi", &DeleteParams::default()).await.unwrap();
    secrets.create(&PostParams::default(), &dockerconfig("dhi.io")).await.unwrap();
    let d = rolled_out(&api, "dhi", 1).await;
    assert_eq!(cond(&d.status.unwrap().conditions, "Progressing").0, "True");
}

#[tokio::test]
async fn service_account_pull_secrets_reach_the_pod() {
    let srv = two_nodes().await;
    let client = srv.client();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    secrets.create(&PostParams::default(), &dockerconfig("https://dhi.io/v1/")).await.unwrap();
    let sas: Api<ServiceAccount> = Api::default_namespaced(client.clone());
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "puller"}, "imagePullSecrets": [{"name": "dhi"}]})).unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let mut d = deployment("sa", 1, "dhi.io/busybox:1");
    d["spec"]["template"]["spec"]["serviceAccountName"] = json!("puller");
    apply(&api, "sa", &d).await;
    rolled_out(&api, "sa", 1).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let p = &pods.list(&ListParams::default().labels("app=sa")).await.unwrap().items[0];
    let names: Vec<&str> =
        p.spec.as_ref().unwrap().image_pull_secrets.iter().flatten().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["dhi"]);
}

#[tokio::test]
async fn crashing_and_never_ready_images() {
    let srv = two_nodes().await;
    let client = srv.client();
    srv.set_image_fault("app:crash", ImageFault::Crash);
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    apply(&api, "crash", &deployment("crash", 1, "app:crash")).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let p = eventually("restarted twice in CrashLoopBackOff", || async {
        let p = pods.list(&ListParams::default().labels("app=crash")).await.ok()?.items.pop()?;
        let c = p.status.as_ref()?.container_statuses.as_ref()?.first()?.clone();
        (c.restart_count >= 2 && waiting_reason(&p).as_deref() == Some("CrashLoopBackOff")).then_some(p)
    })
    .await;
    let c = &p.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0];
    let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    let msg = c.state.as_ref().unwrap().waiting.as_ref().unwrap().message.clone().unwrap();
    assert!(msg.contains("restarting failed container=c pod="), "{msg}");
    assert!(!pod_ready(&p));
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    // Fixed image behaviour: the next restart stays up.
    srv.clear_image_fault("app:crash");
    rolled_out(&api, "crash", 1).await;

    // With a readiness probe, a crashing container is never ready, not even between its start
    // and its exit: every status the kubelet writes, seen through a watch, says not ready.
    srv.set_image_fault("app:crash-probed", ImageFault::Crash);
    let (_, rv) = list_pods(&pods, "probed").await;
    let mut events = watch_pods(&pods, "probed", &rv).await;
    let mut probed = deployment("probed", 1, "app:crash-probed");
    probed["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] =
        json!({"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1});
    apply(&api, "probed", &probed).await;
    let mut statuses = 0;
    while let Some(ev) = events.try_next().await.unwrap() {
        let (WatchEvent::Added(p) | WatchEvent::Modified(p)) = ev else { continue };
        assert!(!pod_ready(&p), "a crashing container passed its readiness probe: {:?}", p.status);
        statuses += 1;
        let restarts = p.status.and_then(|s| s.container_statuses).and_then(|c| c.first().map(|c| c.restart_count));
        if restarts >= Some(2) {
            break;
        }
    }
    assert!(statuses >= 4, "pending, running, crashed and restarted: {statuses} statuses");

    srv.set_image_fault("app:stuck", ImageFault::NeverReady);
    apply(&api, "stuck", &deployment("stuck", 1, "app:stuck")).await;
    let p = eventually("running but not ready", || async {
        let p = pods.list(&ListParams::default().labels("app=stuck")).await.ok()?.items.pop()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let p = pods.get(&p.name_any()).await.unwrap();
    assert!(!pod_ready(&p));
    let st = api.get("stuck").await.unwrap().status.unwrap();
    assert_eq!((st.ready_replicas, st.unavailable_replicas), (None, Some(1)));
}

async fn ds_status(api: &Api<DaemonSet>, name: &str, desired: i32) -> DaemonSet {
    eventually(&format!("{name}: {desired} scheduled and available"), || async {
        let d = api.get(name).await.ok()?;
        let st = d.status.clone()?;
        (st.observed_generation == d.metadata.generation
            && st.desired_number_scheduled == desired
            && st.current_number_scheduled == desired
            && st.number_ready == desired
            && st.updated_number_scheduled.unwrap_or(0) == desired
            && st.number_available.unwrap_or(0) == desired)
            .then_some(d)
    })
    .await
}

async fn ds_pod_nodes(client: &Client, app: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut nodes: Vec<String> = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    nodes.sort();
    nodes
}

#[tokio::test]
async fn daemonsets_place_a_pod_on_every_fitting_node() {
    let srv = server().await;
    let client = srv.client();
    srv.add_node("a", &[("kubernetes.io/os", "linux")], &[]).unwrap();
    srv.add_node("b", &[("kubernetes.io/os", "linux"), ("pool", "gpu")], &["dedicated=gpu:NoSchedule"]).unwrap();
    srv.add_node("c", &[("kubernetes.io/os", "windows")], &[]).unwrap();
    srv.add_node("d", &[("kubernetes.io/os", "linux")], &["spot:NoExecute"]).unwrap();
    srv.add_node("e", &[("kubernetes.io/os", "linux")], &["soft:PreferNoSchedule"]).unwrap();
    srv.add_node("f", &[("kubernetes.io/os", "linux")], &[]).unwrap();
    srv.set_node_ready("f", false).unwrap();
    let api: Api<DaemonSet> = Api::default_namespaced(client.clone());
    let mut ds = daemonset("agent", "agent:1");
    apply(&api, "agent", &ds).await;
    ds_status(&api, "agent", 2).await;
    assert_eq!(ds_pod_nodes(&client, "agent").await, ["a", "e"]);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let p = &pods.list(&ListParams::default().labels("app=agent")).await.unwrap().items[0];
    assert!(p.labels().contains_key("controller-revision-hash"));
    assert_eq!(p.owner_references()[0].kind, "DaemonSet");
    let aff = serde_json::to_value(p.spec.as_ref().unwrap().affinity.clone()).unwrap();
    let terms = &aff["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    let field = &terms[0]["matchFields"][0];
    assert_eq!(
        (field["key"].as_str(), field["values"][0].as_str()),
        (Some("metadata.name"), p.spec.as_ref().unwrap().node_name.as_deref())
    );

    // `operator: Exists` without a key tolerates every taint, even a not-ready node's.
    ds["spec"]["template"]["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
    apply(&api, "agent", &ds).await;
    eventually("every linux node, the not-ready one too", || async {
        let d = api.get("agent").await.ok()?;
        let st = d.status?;
        (st.observed_generation == d.metadata.generation && st.desired_number_scheduled == 5).then_some(())
    })
    .await;
    // NotIn and DoesNotExist match nodes that lack the label.
    ds["spec"]["template"]["spec"]["affinity"] = json!({"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "pool", "operator": "NotIn", "values": ["gpu"]},
            {"key": "eks.amazonaws.com/compute-type", "operator": "DoesNotExist"}]}]}}});
    apply(&api, "agent", &ds).await;
    let st = eventually("gpu node dropped", || async {
        let d = api.get("agent").await.ok()?;
        let st = d.status?;
        (st.observed_generation == d.metadata.generation
            && st.desired_number_scheduled == 4
            && st.number_ready == 3
            && ds_pod_nodes(&client, "agent").await.len() == 4)
            .then_some(st)
    })
    .await;
    assert_eq!(st.number_misscheduled, 0);
    // The not-ready node has a pod, which does not run until the node is ready.
    assert_eq!(ds_pod_nodes(&client, "agent").await, ["a", "d", "e", "f"]);
    assert_eq!(st.number_unavailable, Some(1));
    srv.set_node_ready("f", true).unwrap();
    ds_status(&api, "agent", 4).await;

    // Nodes join and leave while running; pods follow.
    let nodes: Api<Node> = Api::all(client.clone());
    let n: Node =
        serde_json::from_value(json!({"metadata": {"name": "g", "labels": {"kubernetes.io/os": "linux"}}})).unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();
    ds_status(&api, "agent", 5).await;
    assert!(srv.remove_node("a"));
    ds_status(&api, "agent", 4).await;
    assert_eq!(ds_pod_nodes(&client, "agent").await, ["d", "e", "f", "g"]);
    let g = nodes.get("g").await.unwrap();
    assert_eq!(g.labels()["kubernetes.io/hostname"], "g");
    let ready = g.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("True", Some("KubeletReady")));
}

#[tokio::test]
async fn daemonsets_without_nodes_report_zero() {
    let srv = server().await;
    let api: Api<DaemonSet> = Api::default_namespaced(srv.client());
    apply(&api, "lonely", &daemonset("lonely", "agent:1")).await;
    let st = ds_status(&api, "lonely", 0).await.status.unwrap();
    assert_eq!((st.number_unavailable, st.number_available), (None, None));
}

/// Applies `ds`, then follows its pods and checks availability and pod count at every step.
async fn watch_ds_rollout(
    api: &Api<DaemonSet>,
    ds: &Value,
    image: &str,
    nodes: usize,
    max_pods: usize,
    min_ready: usize,
) {
    let done = |ps: &[Pod]| {
        ps.len() == nodes
            && ps.iter().all(|p| pod_ready(p) && p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some(image))
    };
    let name = ds["metadata"]["name"].as_str().unwrap();
    watch_rollout(&api.clone().into_client(), name, max_pods, min_ready, apply(api, name, ds), done).await;
}

#[tokio::test]
async fn daemonset_rolling_updates_and_on_delete() {
    let srv = server().await;
    let client = srv.client();
    for n in ["n1", "n2", "n3", "n4"] {
        srv.add_node(n, &[], &[]).unwrap();
    }
    let api: Api<DaemonSet> = Api::default_namespaced(client.clone());
    let mut ds = daemonset("node", "agent:1");
    ds["spec"]["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}});
    apply(&api, "node", &ds).await;
    ds_status(&api, "node", 4).await;
    ds["spec"]["template"]["spec"]["containers"][0]["image"] = json!("agent:2");
    watch_ds_rollout(&api, &ds, "agent:2", 4, 4, 2).await;
    ds_status(&api, "node", 4).await;
    let revs: Api<ControllerRevision> = Api::default_namespaced(client.clone());
    let mut numbers: Vec<i64> =
        revs.list(&ListParams::default()).await.unwrap().items.iter().filter_map(|r| r.revision).collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2]);

    // maxSurge: a new pod starts beside the old one; availability never drops.
    ds["spec"]["updateStrategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}});
    ds["spec"]["template"]["spec"]["containers"][0]["image"] = json!("agent:3");
    watch_ds_rollout(&api, &ds, "agent:3", 4, 5, 4).await;
    ds_status(&api, "node", 4).await;

    // OnDelete: nothing changes until a pod is deleted.
    ds["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    ds["spec"]["template"]["spec"]["containers"][0]["image"] = json!("agent:4");
    apply(&api, "node", &ds).await;
    eventually("generation observed", || async {
        let d = api.get("node").await.ok()?;
        let st = d.status?;
        (st.observed_generation == d.metadata.generation && st.updated_number_scheduled.is_none()).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let victim = pods.list(&ListParams::default().labels("app=node")).await.unwrap().items[0].name_any();
    pods.delete(&victim, &DeleteParams::default()).await.unwrap();
    eventually("one pod replaced with the new template", || async {
        let st = api.get("node").await.ok()?.status?;
        (st.updated_number_scheduled == Some(1) && st.number_available == Some(4)).then_some(())
    })
    .await;
    let images: Vec<String> = pods
        .list(&ListParams::default().labels("app=node"))
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|p| p.spec.as_ref()?.containers[0].image.clone())
        .collect();
    assert_eq!(images.iter().filter(|i| *i == "agent:4").count(), 1, "{images:?}");
}

#[tokio::test]
async fn pending_pods_wait_for_a_fitting_node() {
    let srv = server().await;
    let client = srv.client();
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let mut d = deployment("picky", 1, "nginx:1");
    d["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "ssd"});
    apply(&api, "picky", &d).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let unscheduled = |want: &'static str| {
        let pods = pods.clone();
        async move {
            let p = pods.list(&ListParams::default().labels("app=picky")).await.ok()?.items.pop()?;
            let c = p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "PodScheduled")?.clone();
            (c.status == "False" && c.message.as_deref().is_some_and(|m| m.contains(want))).then_some(p)
        }
    };
    eventually("no nodes", || unscheduled("no nodes available to schedule pods")).await;
    srv.add_node("hdd", &[("disk", "hdd")], &[]).unwrap();
    eventually("no fitting node", || {
        unscheduled("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector")
    })
    .await;
    srv.add_node("ssd", &[("disk", "ssd")], &[]).unwrap();
    rolled_out(&api, "picky", 1).await;
    let p = pods.list(&ListParams::default().labels("app=picky")).await.unwrap().items.pop().unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("ssd"));
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let evs = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={}", p.metadata.name.unwrap())))
        .await
        .unwrap();
    assert!(evs.items.iter().any(|e| e.reason.as_deref() == Some("FailedScheduling")));
    assert!(evs.items.iter().any(
        |e| e.reason.as_deref() == Some("Scheduled") && e.message.as_deref().is_some_and(|m| m.ends_with("to ssd"))
    ));
}

#[tokio::test]
async fn bad_taints_are_refused_with_the_field() {
    let srv = server().await;
    let e = srv.add_node("x", &[], &["key=value:Sometimes"]).unwrap_err().to_string();
    assert!(e.contains("taints") && e.contains("NoSchedule, PreferNoSchedule, NoExecute"), "{e}");
    assert!(srv.set_node_ready("missing", true).is_err());
}

#[tokio::test]
async fn a_settled_cluster_writes_nothing() {
    let srv = two_nodes().await;
    let client = srv.client();
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    apply(&deploys, "calm", &deployment("calm", 3, "nginx:1")).await;
    let daemons: Api<DaemonSet> = Api::default_namespaced(client.clone());
    apply(&daemons, "calm-agent", &daemonset("calm-agent", "agent:1")).await;
    rolled_out(&deploys, "calm", 3).await;
    ds_status(&daemons, "calm-agent", 2).await;
    // No hot loop: once everything is up, the controllers and kubelets change nothing.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = srv.resource_version();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(srv.resource_version(), before, "writes while nothing changed");
}
