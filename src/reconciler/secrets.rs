//! The Secrets a driver names (its image pull Secrets, the static-key Secret of
//! `spec.aws.identity.secretRef`), each watched on its own by name (`fieldSelector
//! metadata.name=NAME`, which RBAC authorises as that name, so a Role limited by `resourceNames`
//! to exactly these Secrets grants it) and as metadata only: the operator never receives secret
//! data. A Secret created, rotated or deleted triggers a reconcile of the driver that named it, so
//! `PullSecretsPresent` follows within a watch event and a rotated static key rolls the
//! controller (its resourceVersion is part of the controller's identity hash).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;

use crate::aws::pv_watch::watcher_config;

/// What the watch of one named Secret knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The watch has not listed yet.
    Unknown,
    /// Listed: no Secret of that name.
    Absent,
    /// Listed: it exists, at this resourceVersion.
    Present(String),
    /// The first list failed (the API server's words, e.g. 403 without the RBAC grant).
    Error(String),
}

#[derive(Default)]
struct State {
    /// None until the first list completed; then the resourceVersion, or None when absent.
    listed: Option<Option<String>>,
    error: Option<String>,
}

struct Running {
    /// The driver to reconcile when the Secret changes.
    instance: Arc<Mutex<String>>,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One metadata watch per named Secret, started when a driver names it and stopped when no driver
/// in charge names it any more.
pub struct SecretWatch {
    client: Client,
    triggers: mpsc::Sender<String>,
    running: Mutex<BTreeMap<(String, String), Running>>,
}

impl SecretWatch {
    pub fn new(client: Client, triggers: mpsc::Sender<String>) -> Self {
        Self { client, triggers, running: Mutex::new(BTreeMap::new()) }
    }

    /// What is known of the Secrets `names` in `namespace`, watching exactly these from now on
    /// (for the driver `instance`, the one in charge): watches of other Secrets are stopped.
    pub fn observe(&self, instance: &str, namespace: &str, names: &[String]) -> Vec<(String, Seen)> {
        let Ok(mut running) = self.running.lock() else {
            return names.iter().map(|n| (n.clone(), Seen::Unknown)).collect();
        };
        running.retain(|(ns, name), _| ns == namespace && names.contains(name));
        names
            .iter()
            .map(|name| {
                let key = (namespace.to_string(), name.clone());
                let r = running.entry(key).or_insert_with(|| self.start(instance, namespace, name));
                if let Ok(mut i) = r.instance.lock()
                    && *i != instance
                {
                    *i = instance.to_string();
                }
                let seen = match r.state.lock() {
                    Ok(s) => match (&s.listed, &s.error) {
                        (Some(Some(rv)), _) => Seen::Present(rv.clone()),
                        (Some(None), _) => Seen::Absent,
                        (None, Some(e)) => Seen::Error(e.clone()),
                        (None, None) => Seen::Unknown,
                    },
                    Err(_) => Seen::Unknown,
                };
                (name.clone(), seen)
            })
            .collect()
    }

    /// Stops every watch (the driver is no longer in charge, or names no Secret).
    pub fn clear(&self) {
        if let Ok(mut running) = self.running.lock() {
            running.clear();
        }
    }

    fn start(&self, instance: &str, namespace: &str, name: &str) -> Running {
        let api: Api<PartialObjectMeta<Secret>> = Api::namespaced(self.client.clone(), namespace);
        let cfg = watcher_config().fields(&format!("metadata.name={name}"));
        let stream = watcher(api, cfg).default_backoff();
        let state = Arc::new(Mutex::new(State::default()));
        let instance = Arc::new(Mutex::new(instance.to_string()));
        let (st, who, triggers) = (state.clone(), instance.clone(), self.triggers.clone());
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            // What the list in progress has found (a re-list after an error replaces the state
            // only once complete, so a dropped watch does not flip the condition).
            let mut listing: Option<String> = None;
            while let Some(ev) = stream.next().await {
                let next = match ev {
                    Err(e) => {
                        tracing::debug!(error = %e, "secret watch retrying");
                        if let Ok(mut s) = st.lock() {
                            s.error = Some(super::pods::watch_error(&e));
                        }
                        continue;
                    }
                    Ok(watcher::Event::Init) => {
                        listing = None;
                        continue;
                    }
                    Ok(watcher::Event::InitApply(o)) => {
                        listing = o.metadata.resource_version;
                        continue;
                    }
                    Ok(watcher::Event::InitDone) => listing.take(),
                    Ok(watcher::Event::Apply(o)) => o.metadata.resource_version,
                    Ok(watcher::Event::Delete(_)) => None,
                };
                let changed = st
                    .lock()
                    .map(|mut s| {
                        s.error = None;
                        s.listed.replace(next.clone()) != Some(next)
                    })
                    .unwrap_or(false);
                if changed && let Some(n) = who.lock().ok().map(|i| i.clone()) {
                    // A full queue already holds a trigger; the reconcile reads the latest state.
                    let _ = triggers.try_send(n);
                }
            }
        });
        Running { instance, state, task }
    }
}
