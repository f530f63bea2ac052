use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::core::PartialObjectMeta;
use local_apiserver::{LocalApiServer, Options};
use serde_json::json;

use super::common::{server, status};

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": {"k": name}})).unwrap()
}

#[tokio::test]
async fn label_and_field_selectors() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    for (n, app, tier) in [("a", "web", "front"), ("b", "web", "back"), ("c", "db", "back"), ("d", "cache", "")] {
        let labels = if tier.is_empty() { json!({"app": app}) } else { json!({"app": app, "tier": tier}) };
        api.create(&PostParams::default(), &cm(n, labels)).await.unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items.into_iter().filter_map(|c| c.metadata.name).collect()
    };
    let q = |s: &str| ListParams::default().labels(s);
    assert_eq!(names(api.list(&q("app=web")).await.unwrap()), ["a", "b"]);
    assert_eq!(names(api.list(&q("app!=web")).await.unwrap()), ["c", "d"]);
    assert_eq!(names(api.list(&q("app in (db,cache)")).await.unwrap()), ["c", "d"]);
    assert_eq!(names(api.list(&q("tier notin (front),app")).await.unwrap()), ["b", "c", "d"]);
    assert_eq!(names(api.list(&q("!tier")).await.unwrap()), ["d"]);
    assert_eq!(names(api.list(&q("tier,app=web")).await.unwrap()), ["a", "b"]);
    let f = |s: &str| ListParams::default().fields(s);
    assert_eq!(names(api.list(&f("metadata.name=c")).await.unwrap()), ["c"]);
    assert_eq!(names(api.list(&f("metadata.name!=c,metadata.namespace=default")).await.unwrap()), ["a", "b", "d"]);
    let all: Api<ConfigMap> = Api::all(srv.client());
    assert_eq!(names(all.list(&f("metadata.namespace=kube-system")).await.unwrap()).len(), 0);
    let err = status(api.list(&f("data.k=a")).await);
    assert_eq!(err.code, 400);
}

#[tokio::test]
async fn five_thousand_objects_selected_and_paginated() {
    let srv = server().await;
    let client = srv.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let mut tasks = futures::stream::iter(0..5000)
        .map(|i| {
            let api = api.clone();
            async move {
                let parity = if i % 2 == 0 { "even" } else { "odd" };
                api.create(&PostParams::default(), &cm(&format!("cm-{i:05}"), json!({"parity": parity}))).await
            }
        })
        .buffer_unordered(32);
    while let Some(r) = tasks.next().await {
        r.unwrap();
    }
    assert!(srv.object_count() >= 5000);
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().labels("parity=even").limit(400);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 400);
        seen.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(t) => {
                assert!(page.metadata.remaining_item_count.unwrap_or(0) > 0);
                token = Some(t);
            }
            None => break,
        }
    }
    assert_eq!(pages, 7);
    assert_eq!(seen.len(), 2500);
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 2500, "no duplicates across pages");
    assert!(seen.iter().all(|n| n[3..].parse::<u32>().unwrap() % 2 == 0));
}

#[tokio::test]
async fn watch_from_a_resource_version_with_selector_transitions() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let first = api.create(&PostParams::default(), &cm("w1", json!({"watch": "yes"}))).await.unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    api.create(&PostParams::default(), &cm("w2", json!({"watch": "yes"}))).await.unwrap();
    api.create(&PostParams::default(), &cm("ignored", json!({"watch": "no"}))).await.unwrap();
    let mut moved = api.get("w1").await.unwrap();
    moved.metadata.labels = Some([("watch".to_string(), "no".to_string())].into());
    api.replace("w1", &PostParams::default(), &moved).await.unwrap();
    let mut back = api.get("ignored").await.unwrap();
    back.metadata.labels = Some([("watch".to_string(), "yes".to_string())].into());
    api.replace("ignored", &PostParams::default(), &back).await.unwrap();

    let wp = WatchParams::default().labels("watch=yes").timeout(5).disable_bookmarks();
    let stream = api.watch(&wp, &rv).await.unwrap();
    let events: Vec<(String, String)> = stream
        .take(3)
        .map(|e| match e.unwrap() {
            WatchEvent::Added(c) => ("ADDED".to_string(), c.metadata.name.unwrap()),
            WatchEvent::Modified(c) => ("MODIFIED".to_string(), c.metadata.name.unwrap()),
            WatchEvent::Deleted(c) => ("DELETED".to_string(), c.metadata.name.unwrap()),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
        .await;
    assert_eq!(
        events,
        [("ADDED".into(), "w2".into()), ("DELETED".into(), "w1".into()), ("ADDED".into(), "ignored".into())]
    );
}

#[tokio::test]
async fn watch_sends_bookmarks_and_ends_at_its_timeout() {
    let opts = Options { bookmark_interval: Duration::from_millis(100), ..Options::default() };
    let srv = LocalApiServer::start_with(opts).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let created = api.create(&PostParams::default(), &cm("b", json!({}))).await.unwrap();
    let rv = created.metadata.resource_version.unwrap();
    let events: Vec<WatchEvent<ConfigMap>> =
        api.watch(&WatchParams::default().timeout(1), &rv).await.unwrap().try_collect().await.unwrap();
    let bookmarks: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Bookmark(b) => Some(b.metadata.resource_version.clone()),
            _ => None,
        })
        .collect();
    assert!(!bookmarks.is_empty(), "bookmarks arrive while idle");
    assert!(bookmarks.iter().all(|b| b.parse::<u64>().unwrap() >= rv.parse::<u64>().unwrap()));
    // The stream ended by itself after timeoutSeconds=1 (try_collect returned).
}

/// `timeoutSeconds=0` means unset on kube-apiserver (it picks a time from --min-request-timeout):
/// the watch stays open and delivers what happens after it started.
#[tokio::test]
async fn a_watch_asking_timeout_zero_stays_open() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let created = api.create(&PostParams::default(), &cm("z0", json!({}))).await.unwrap();
    let rv = created.metadata.resource_version.unwrap();
    let mut stream = api.watch(&WatchParams::default().timeout(0), &rv).await.unwrap().boxed();
    // Let a watch that ended at once (a zero deadline) close its stream first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.create(&PostParams::default(), &cm("z1", json!({}))).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(20), stream.try_next()).await.expect("an event or the end");
    match next.unwrap() {
        Some(WatchEvent::Added(c)) => assert_eq!(c.metadata.name.as_deref(), Some("z1")),
        other => panic!("the watch ended or sent something else: {other:?}"),
    }
}

#[tokio::test]
async fn watch_from_a_compacted_version_is_gone() {
    let opts = Options { watch_history: 5, ..Options::default() };
    let srv = LocalApiServer::start_with(opts).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let first = api.create(&PostParams::default(), &cm("g0", json!({}))).await.unwrap();
    for i in 1..10 {
        api.create(&PostParams::default(), &cm(&format!("g{i}"), json!({}))).await.unwrap();
    }
    let rv = first.metadata.resource_version.unwrap();
    let mut stream = api.watch(&WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

#[tokio::test]
async fn metadata_only_list_and_watch() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    api.create(&PostParams::default(), &cm("m1", json!({"owned": "yes"}))).await.unwrap();
    let list = api.list_metadata(&ListParams::default().labels("owned=yes")).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let item: &PartialObjectMeta<ConfigMap> = &list.items[0];
    assert_eq!(item.metadata.name.as_deref(), Some("m1"));
    let rv = list.metadata.resource_version.clone().unwrap();
    api.create(&PostParams::default(), &cm("m2", json!({"owned": "yes"}))).await.unwrap();
    let mut stream =
        api.watch_metadata(&WatchParams::default().labels("owned=yes").timeout(5), &rv).await.unwrap().boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Added(m))) => assert_eq!(m.metadata.name.as_deref(), Some("m2")),
        other => panic!("{other:?}"),
    }
    let one = api.get_metadata("m1").await.unwrap();
    assert_eq!(one.metadata.labels.unwrap()["owned"], "yes");
}

#[tokio::test]
async fn continue_tokens_expire_with_the_history() {
    let srv = LocalApiServer::start_with(Options { watch_history: 5, ..Options::default() }).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(srv.client());
    for i in 0..3 {
        api.create(&PostParams::default(), &cm(&format!("p{i}"), json!({}))).await.unwrap();
    }
    let first = api.list(&ListParams::default().limit(1)).await.unwrap();
    let token = first.metadata.continue_.unwrap();
    let second = api.list(&ListParams::default().limit(1).continue_token(&token)).await.unwrap();
    assert_eq!(second.items[0].metadata.name.as_deref(), Some("p1"));
    for i in 3..10 {
        api.create(&PostParams::default(), &cm(&format!("p{i}"), json!({}))).await.unwrap();
    }
    let err = status(api.list(&ListParams::default().limit(1).continue_token(&token)).await);
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));
}
