//! kube-runtime's watcher, reflector and a small Controller running against the server.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams, Resource};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector};
use serde_json::json;

use super::common::{eventually, server};

#[tokio::test]
async fn watcher_sees_changes_and_recovers_from_dropped_streams() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher::watcher(api.clone(), watcher::Config::default()))
        .applied_objects()
        .boxed();
    let handle = tokio::spawn(stream.try_for_each(|_| async { Ok(()) }));
    reader.wait_until_ready().await.unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "seen"}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    eventually("reflector has the object", || async {
        reader.state().iter().any(|c| c.metadata.name.as_deref() == Some("seen")).then_some(())
    })
    .await;
    srv.faults().drop_watches();
    let cm2: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "after-drop"}})).unwrap();
    api.create(&PostParams::default(), &cm2).await.unwrap();
    eventually("reflector recovered after the drop", || async {
        reader.state().iter().any(|c| c.metadata.name.as_deref() == Some("after-drop")).then_some(())
    })
    .await;
    assert!(srv.counters().requests("watch", "configmaps") >= 2, "the watcher watched again after the drop");
    handle.abort();
}

#[tokio::test]
async fn watcher_initial_list_has_init_events() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "pre"}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    for config in [watcher::Config::default(), watcher::Config::default().streaming_lists()] {
        let mut s = watcher::watcher(api.clone(), config).boxed();
        let mut saw_pre = false;
        while let Some(ev) = s.try_next().await.unwrap() {
            match ev {
                Event::Init => {}
                Event::InitApply(c) => saw_pre |= c.metadata.name.as_deref() == Some("pre"),
                Event::InitDone => break,
                other => panic!("unexpected before InitDone: {other:?}"),
            }
        }
        assert!(saw_pre);
    }
}

struct Ctx {
    client: kube::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ReconcileError(#[from] kube::Error);

/// Mirrors every ConfigMap labelled mirror=yes into a Secret it owns.
async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let name = cm.metadata.name.clone().unwrap_or_default();
    let ns = cm.metadata.namespace.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = cm.controller_owner_ref(&()).into_iter().collect();
    let secret = Secret {
        metadata: ObjectMeta { name: Some(name.clone()), owner_references: Some(owner), ..Default::default() },
        string_data: cm.data.clone(),
        ..Default::default()
    };
    let mut value = serde_json::to_value(&secret).unwrap_or_default();
    value["apiVersion"] = json!("v1");
    value["kind"] = json!("Secret");
    secrets.patch(&name, &PatchParams::apply("mirror").force(), &Patch::Apply(value)).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn error_policy(_: Arc<ConfigMap>, _: &ReconcileError, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(50))
}

#[tokio::test]
async fn a_small_controller_reconciles_owned_objects() {
    let srv = server().await;
    let client = srv.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let controller = Controller::new(cms.clone(), watcher::Config::default().labels("mirror=yes"))
        .owns(secrets.clone(), watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(Ctx { client: client.clone() }))
        .for_each(|_| async {});
    let handle = tokio::spawn(controller);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "m", "labels": {"mirror": "yes"}}, "data": {"k": "v"}}))
            .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let s = eventually("secret mirrored", || async { secrets.get_opt("m").await.unwrap() }).await;
    assert_eq!(s.metadata.owner_references.unwrap()[0].name, "m");
    // The controller converges: further reconciles are no-op applies.
    let rv = s.metadata.resource_version.clone();
    srv.reset_counters();
    cms.patch("m", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"poke": "1"}}})))
        .await
        .unwrap();
    eventually("reconciled again", || async { (srv.counters().requests("patch", "secrets") >= 1).then_some(()) }).await;
    assert_eq!(secrets.get("m").await.unwrap().metadata.resource_version, rv, "no hot loop: nothing rewritten");
    // Deleting the owner garbage-collects the mirror.
    cms.delete("m", &Default::default()).await.unwrap();
    eventually("mirror collected", || async { secrets.get_opt("m").await.unwrap().is_none().then_some(()) }).await;
    handle.abort();
}

#[tokio::test]
async fn event_recorder_creates_then_patches_a_series() {
    use k8s_openapi::api::events::v1::Event as KEvent;
    use kube::runtime::events::{Event as REvent, EventType, Recorder, Reporter};
    let srv = server().await;
    let client = srv.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "subject"}})).unwrap();
    let cm = cms.create(&PostParams::default(), &cm).await.unwrap();
    let recorder = Recorder::new(client.clone(), Reporter { controller: "test-ctl".into(), instance: None });
    let ev = REvent {
        type_: EventType::Normal,
        reason: "Reconciled".into(),
        note: Some("all good".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let reference = cm.object_ref(&());
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let events: Api<KEvent> = Api::default_namespaced(client);
    let list = events.list(&Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let e = &list.items[0];
    assert_eq!(e.reason.as_deref(), Some("Reconciled"));
    assert_eq!(e.regarding.as_ref().and_then(|r| r.name.as_deref()), Some("subject"));
    assert_eq!(e.series.as_ref().map(|s| s.count), Some(2));
}

#[tokio::test]
async fn watcher_relists_after_410_gone() {
    use local_apiserver::{LocalApiServer, Match, Options};
    let srv = LocalApiServer::start_with(Options { watch_history: 3, ..Options::default() }).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher::watcher(api.clone(), watcher::Config::default()))
        .applied_objects()
        .boxed();
    // The 410 surfaces as one error item; the watcher itself recovers, so keep consuming.
    let handle = tokio::spawn(stream.for_each(|_| async {}));
    reader.wait_until_ready().await.unwrap();
    assert_eq!(srv.counters().requests("list", "configmaps"), 1);
    // Hold the re-watch back while more changes than the history keeps go by.
    srv.faults().add_latency(Match::new("watch", "configmaps"), Duration::from_millis(300));
    srv.faults().drop_watches();
    for i in 0..10 {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("gone-{i}")}})).unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    eventually("reflector re-listed and has every object", || async { (reader.state().len() == 10).then_some(()) })
        .await;
    assert!(srv.counters().requests("list", "configmaps") >= 2, "the 410 made the watcher list again");
    handle.abort();
}
