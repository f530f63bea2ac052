//! Watch streams: newline-delimited `{"type":..,"object":..}` events from a resourceVersion,
//! with synthetic ADDED events for a watch from "now" (or `sendInitialEvents=true`), BOOKMARK
//! events when `allowWatchBookmarks=true`, the `timeoutSeconds` deadline, selector transitions
//! (an object leaving the selection is DELETED, entering it is ADDED), and an ERROR event with a
//! 410 Expired status for a resourceVersion older than the kept history.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::handlers::{Query, Target, present, selectors};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::Shared;
use crate::store::{Event, EventType};
use crate::table::{self, Format};

struct Filter {
    storage_key: String,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj["metadata"]["namespace"].as_str() != Some(ns.as_str())
        {
            return false;
        }
        self.labels.matches(obj["metadata"].get("labels")) && self.fields.matches(obj)
    }

    /// Whether `e` removes the CRD that serves this watch's resource.
    fn serving_crd_removed(&self, e: &Event) -> bool {
        e.type_ == EventType::Deleted
            && e.storage_key == crate::handlers::CRD_KEY
            && format!(
                "{}/{}",
                e.object["spec"]["group"].as_str().unwrap_or_default(),
                e.object["spec"]["names"]["plural"].as_str().unwrap_or_default()
            ) == self.storage_key
    }

    /// The event this watcher sees for a store event, if any.
    fn translate(&self, e: &Event) -> Option<(&'static str, Arc<Value>)> {
        if e.storage_key != self.storage_key {
            return None;
        }
        let now = self.matches(&e.object);
        match e.type_ {
            EventType::Added => now.then(|| ("ADDED", e.object.clone())),
            EventType::Deleted => {
                let before = e.old.as_deref().map(|o| self.matches(o)).unwrap_or(now);
                before.then(|| ("DELETED", e.object.clone()))
            }
            EventType::Modified => {
                let before = e.old.as_deref().map(|o| self.matches(o)).unwrap_or(now);
                match (before, now) {
                    (true, true) => Some(("MODIFIED", e.object.clone())),
                    (false, true) => Some(("ADDED", e.object.clone())),
                    (true, false) => Some(("DELETED", e.object.clone())),
                    (false, false) => None,
                }
            }
        }
    }
}

struct Encoder {
    info: Arc<crate::registry::ResourceInfo>,
    format: Format,
    include_object: String,
    first_table: bool,
}

impl Encoder {
    fn line(&mut self, type_: &str, obj: &Value) -> Vec<u8> {
        let obj = present(obj, &self.info);
        let object = match self.format {
            Format::Full => obj,
            Format::Metadata => table::partial_metadata(&obj),
            Format::Table => {
                let rv = obj["metadata"]["resourceVersion"].clone();
                let t = table::table(
                    &self.info,
                    &[obj],
                    json!({"resourceVersion": rv}),
                    &self.include_object,
                    self.first_table,
                );
                self.first_table = false;
                t
            }
        };
        let mut line = serde_json::to_vec(&json!({"type": type_, "object": object})).unwrap_or_default();
        line.push(b'\n');
        line
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Vec<u8> {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (kind, api_version) = match self.format {
            Format::Full => (self.info.kind.clone(), self.info.api_version()),
            Format::Metadata => ("PartialObjectMetadata".to_string(), "meta.k8s.io/v1".to_string()),
            Format::Table => ("Table".to_string(), "meta.k8s.io/v1".to_string()),
        };
        let mut line = serde_json::to_vec(
            &json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": meta}}),
        )
        .unwrap_or_default();
        line.push(b'\n');
        line
    }
}

fn error_line(e: &ApiError) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
    line.push(b'\n');
    line
}

/// kube-apiserver's default `--min-request-timeout`.
const MIN_REQUEST_TIMEOUT_SECS: u64 = 1800;

/// The timeout of a watch that asks none: `minRequestTimeout * (1 + rand)`.
fn unset_timeout() -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    Duration::from_secs(MIN_REQUEST_TIMEOUT_SECS + random % MIN_REQUEST_TIMEOUT_SECS)
}

/// Starts a watch; returns the stream of body chunks.
pub fn start(shared: Arc<Shared>, t: &Target, q: &Query, format: Format) -> Result<mpsc::Receiver<Vec<u8>>, ApiError> {
    let (labels, fields) = selectors(t, q)?;
    let filter = Filter { storage_key: t.info.storage_key(), namespace: t.namespace.clone(), labels, fields };
    // As kube-apiserver's getTimeout: 0 is the same as unset, and both get a random time between
    // --min-request-timeout (1800 s by default) and twice that; a negative value ends the watch
    // at once.
    let timeout = match q.get("timeoutSeconds").map(|s| s.parse::<i64>()) {
        Some(Ok(secs)) if secs != 0 => Duration::from_secs(secs.max(0).unsigned_abs()),
        Some(Ok(_)) | None => unset_timeout(),
        Some(Err(_)) => {
            return Err(ApiError::bad_request("timeoutSeconds must be an integer"));
        }
    };
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let send_initial = q.get("sendInitialEvents").map(|s| s == "true");
    let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
    let mut enc = Encoder {
        info: t.info.clone(),
        format,
        include_object: q.get("includeObject").cloned().unwrap_or_else(|| "Metadata".into()),
        first_table: true,
    };

    let (tx, rx) = mpsc::channel::<Vec<u8>>(256);
    let mut initial: Vec<Vec<u8>> = Vec::new();
    let mut drop_signal = shared.faults.drop_signal();
    drop_signal.mark_unchanged();

    // Under the lock: decide the starting point and subscribe, so no event is missed.
    let (mut sub, mut last_rv) = {
        let s = shared.store.lock();
        let current = s.current_rv();
        let from_now = rv_param.is_empty() || rv_param == "0" || send_initial == Some(true);
        if from_now {
            if send_initial != Some(false) {
                for obj in s.list(&filter.storage_key, filter.namespace.as_deref()) {
                    if filter.matches(&obj) {
                        initial.push(enc.line("ADDED", &obj));
                    }
                }
            }
            if send_initial == Some(true) && bookmarks {
                initial.push(enc.bookmark(current, true));
            }
        } else {
            let rv: u64 = rv_param
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv_param:?}")))?;
            match s.events_since(&filter.storage_key, rv) {
                Some(events) => {
                    for e in events {
                        if let Some((ty, obj)) = filter.translate(&e) {
                            initial.push(enc.line(ty, &obj));
                        }
                    }
                }
                None => {
                    initial.push(error_line(&ApiError::gone(format!(
                        "too old resource version: {rv} ({})",
                        s.compacted_rv() + 1
                    ))));
                    let chunks = initial;
                    tokio::spawn(async move {
                        for c in chunks {
                            if tx.send(c).await.is_err() {
                                break;
                            }
                        }
                    });
                    return Ok(rx);
                }
            }
        }
        (s.subscribe(), current)
    };

    let interval = shared.bookmark_interval;
    tokio::spawn(async move {
        for c in initial {
            if tx.send(c).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = drop_signal.changed() => return,
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(enc.bookmark(last_rv, false)).await.is_err() {
                        return;
                    }
                }
                ev = sub.recv() => match ev {
                    Ok(e) => {
                        last_rv = e.rv;
                        if let Some((ty, obj)) = filter.translate(&e)
                            && tx.send(enc.line(ty, &obj)).await.is_err() {
                                return;
                            }
                        // The CRD serving this resource is gone: the real server ends such
                        // watches (after the DELETED events of its objects).
                        if filter.serving_crd_removed(&e) {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        let _ = tx.send(error_line(&ApiError::gone("the watch fell behind; re-list and watch \
                            again"))).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    Ok(rx)
}
