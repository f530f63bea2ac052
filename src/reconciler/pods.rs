//! The driver's pods: one label-filtered watch of the driver namespace (whole pods, trimmed: the
//! container statuses say why a pod is not ready, which metadata cannot), started for the
//! namespace of the driver in charge, and what one pod tells the health rules ([`facts`]).
//! Only the pods that can change a condition are kept (not ready, terminating, restarted), so
//! memory and each reconcile's work follow the pods in trouble, not the number of nodes. A
//! change of such a pod triggers a reconcile of the driver whose `instance` label it carries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodSpec};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc;

use super::conditions::{ContainerFailure, Failure, PodFacts, Workload};
use crate::aws::pv_watch::watcher_config;
use crate::render::{LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGER, controller_deployment, node_daemonset};

/// Waiting reasons of a container whose image cannot be pulled.
const PULL_REASONS: &[&str] =
    &["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"];
/// Waiting reasons of a container the runtime cannot create or start.
const START_REASONS: &[&str] = &["CreateContainerConfigError", "CreateContainerError", "RunContainerError"];
/// A container restarted after a crash counts as crash-looping until it has run this long (or
/// half the grace period, if shorter), so the running spells between crashes do not hide a loop.
const SETTLE: Duration = Duration::from_secs(60);

/// The pods worth a look: those that are not ready, terminating, or have restarted a container.
/// A ready pod that never restarted tells the health rules nothing, so in a cluster of thousands
/// of nodes the watch keeps (and each reconcile reads) only the few that do.
type Notable = std::collections::HashMap<String, Arc<Pod>>;

struct Running {
    namespace: String,
    notable: Arc<Mutex<Notable>>,
    synced: Arc<std::sync::atomic::AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The pod watch of the driver namespace, moved when the driver in charge names another one.
pub struct PodWatch {
    client: Client,
    triggers: mpsc::Sender<String>,
    running: Mutex<Option<Running>>,
}

/// Whether a pod can change a condition: not ready, terminating, or with a container that
/// restarted (it may be crash-looping). Pods of neither workload never count.
fn notable(p: &Pod) -> bool {
    let ours =
        matches!(p.labels().get("app").map(String::as_str), Some(controller_deployment::NAME | node_daemonset::NAME));
    let Some(status) = p.status.as_ref() else { return ours };
    let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    let restarted = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .any(|c| c.restart_count > 0);
    ours && (!ready || restarted || p.metadata.deletion_timestamp.is_some())
}

impl PodWatch {
    pub fn new(client: Client, triggers: mpsc::Sender<String>) -> Self {
        Self { client, triggers, running: Mutex::new(None) }
    }

    /// The pods of driver `instance` in `namespace` that can change a condition (see
    /// [`notable`]; the others are ready and steady), starting the watch there if needed.
    /// `Ok(None)` until the watch has its first list (its completion triggers a reconcile);
    /// `Err` with the API server's words while that first list fails (for example 403 without
    /// the RBAC grant).
    pub fn pods(&self, namespace: &str, instance: &str) -> Result<Option<Vec<Arc<Pod>>>, String> {
        let Ok(mut running) = self.running.lock() else { return Ok(None) };
        if running.as_ref().is_none_or(|r| r.namespace != namespace) {
            *running = Some(self.start(namespace));
        }
        let Some(r) = running.as_ref() else { return Ok(None) };
        // Once listed, the pods stay readable while the watch re-lists after an error (a
        // dropped watch, a throttled list): the last known pods, not a flip to Unknown.
        if !r.synced.load(std::sync::atomic::Ordering::Acquire) {
            return match r.error.lock().ok().and_then(|e| e.clone()) {
                Some(e) => Err(e),
                None => Ok(None),
            };
        }
        let Ok(notable) = r.notable.lock() else { return Ok(None) };
        Ok(Some(
            notable
                .values()
                .filter(|p| p.labels().get(LABEL_INSTANCE).is_some_and(|i| i == instance))
                .cloned()
                .collect(),
        ))
    }

    fn start(&self, namespace: &str) -> Running {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let cfg = watcher_config().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
        let notable_pods: Arc<Mutex<Notable>> = Arc::default();
        let synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let error = Arc::new(Mutex::new(None));
        let stream = watcher(api, cfg).default_backoff().modify(trim);
        let (triggers, flag, err, map) = (self.triggers.clone(), synced.clone(), error.clone(), notable_pods.clone());
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            // A (re-)list builds the notable pods afresh and swaps them in when complete.
            let mut listing: Option<(Notable, std::collections::BTreeSet<String>)> = None;
            while let Some(ev) = stream.next().await {
                let mut touched: Vec<String> = Vec::new();
                match ev {
                    Err(e) => {
                        tracing::debug!(error = %e, "pod watch retrying");
                        if let Ok(mut slot) = err.lock() {
                            *slot = Some(watch_error(&e));
                        }
                        continue;
                    }
                    Ok(watcher::Event::Init) => listing = Some(Default::default()),
                    Ok(watcher::Event::InitApply(p)) => {
                        if let Some((fresh, instances)) = listing.as_mut() {
                            instances.extend(p.labels().get(LABEL_INSTANCE).cloned());
                            if notable(&p) {
                                fresh.insert(p.name_any(), Arc::new(p));
                            }
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        let (fresh, instances) = listing.take().unwrap_or_default();
                        if let Ok(mut m) = map.lock() {
                            touched.extend(m.values().filter_map(|p| p.labels().get(LABEL_INSTANCE).cloned()));
                            *m = fresh;
                        }
                        touched.extend(instances);
                        flag.store(true, std::sync::atomic::Ordering::Release);
                    }
                    Ok(watcher::Event::Apply(p)) => {
                        let keep = notable(&p);
                        let was = map.lock().ok().and_then(|mut m| {
                            if keep { m.insert(p.name_any(), Arc::new(p.clone())) } else { m.remove(&p.name_any()) }
                        });
                        // A ready, steady pod staying so changes no condition: no reconcile.
                        if keep || was.is_some() {
                            touched.extend(p.labels().get(LABEL_INSTANCE).cloned());
                        }
                    }
                    Ok(watcher::Event::Delete(p)) => {
                        if let Ok(mut m) = map.lock() {
                            m.remove(&p.name_any());
                        }
                        touched.extend(p.labels().get(LABEL_INSTANCE).cloned());
                    }
                }
                if let Ok(mut slot) = err.lock() {
                    *slot = None;
                }
                touched.sort();
                touched.dedup();
                for n in touched {
                    // A full queue already holds a trigger; the reconcile reads the latest pods.
                    let _ = triggers.try_send(n);
                }
            }
        });
        Running { namespace: namespace.to_string(), notable: notable_pods, synced, error, task }
    }
}

pub(super) fn watch_error(e: &watcher::Error) -> String {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}

/// Keeps what the health rules read: the `app` and `instance` labels, timestamps, the node, the
/// Ready condition and what each container's state says.
fn trim(p: &mut Pod) {
    let m = &mut p.metadata;
    m.managed_fields = None;
    m.annotations = None;
    m.owner_references = None;
    m.finalizers = None;
    if let Some(labels) = m.labels.as_mut() {
        labels.retain(|k, _| k == "app" || k == LABEL_INSTANCE);
    }
    let node_name = p.spec.as_ref().and_then(|s| s.node_name.clone());
    p.spec = Some(PodSpec { node_name, ..PodSpec::default() });
    if let Some(st) = p.status.as_mut() {
        if let Some(conditions) = st.conditions.as_mut() {
            conditions.retain(|c| c.type_ == "Ready");
        }
        (st.host_ip, st.host_ips, st.pod_ip, st.pod_ips, st.qos_class) = (None, None, None, None, None);
        for c in st.init_container_statuses.iter_mut().chain(st.container_statuses.iter_mut()).flatten() {
            (c.container_id, c.resources, c.volume_mounts, c.allocated_resources) = (None, None, None, None);
            c.image_id = String::new();
        }
    }
}

/// What one pod tells the health rules. None for a pod of neither workload.
pub fn facts(pod: &Pod, now: Timestamp, grace: Duration) -> Option<PodFacts> {
    let workload = match pod.labels().get("app").map(String::as_str) {
        Some(controller_deployment::NAME) => Workload::Controller,
        Some(node_daemonset::NAME) => Workload::Node,
        _ => return None,
    };
    let status = pod.status.clone().unwrap_or_default();
    let ready_cond = status.conditions.iter().flatten().find(|c| c.type_ == "Ready");
    let ready = ready_cond.is_some_and(|c| c.status == "True");
    let unready_since = if ready {
        None
    } else {
        ready_cond
            .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
            .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
    };
    let settle = SETTLE.min(grace / 2);
    let mut failures: Vec<(ContainerFailure, Option<Timestamp>)> = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .filter_map(|c| failure(c, now, settle))
        .collect();
    failures.sort_by(|a, b| a.0.kind.cmp(&b.0.kind).then(a.0.container.cmp(&b.0.container)));
    let review_at = failures.iter().filter_map(|f| f.1).min();
    Some(PodFacts {
        name: pod.name_any(),
        workload,
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        ready,
        unready_since,
        failure: failures.into_iter().next().map(|f| f.0),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        review_at,
    })
}

/// A container's failure, and when a "restarted, not yet steady" verdict expires.
fn failure(c: &ContainerStatus, now: Timestamp, settle: Duration) -> Option<(ContainerFailure, Option<Timestamp>)> {
    let state = c.state.as_ref();
    let waiting = state.and_then(|s| s.waiting.as_ref());
    let reason = waiting.and_then(|w| w.reason.clone()).unwrap_or_default();
    let message = waiting.and_then(|w| w.message.clone()).unwrap_or_default();
    let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let crashed = last.filter(|t| t.exit_code != 0).map(|t| {
        let mut m = format!("exited with code {}", t.exit_code);
        if let Some(r) = &t.reason {
            m.push_str(&format!(" ({r})"));
        }
        if let Some(text) = t.message.as_ref().filter(|m| !m.is_empty()) {
            m.push_str(&format!(": {}", text.trim()));
        }
        m
    });
    let made = |kind, message: String| ContainerFailure {
        kind,
        container: c.name.clone(),
        image: c.image.clone(),
        reason: reason.clone(),
        message,
    };
    if PULL_REASONS.contains(&reason.as_str()) {
        let mut f = made(Failure::ImagePull, pull_message(&message, &c.image));
        f.reason = pull_reason(&reason).into();
        return Some((f, None));
    }
    if START_REASONS.contains(&reason.as_str()) {
        return Some((made(Failure::CannotStart, message), None));
    }
    if reason == "CrashLoopBackOff" {
        return Some((made(Failure::CrashLoop, crashed.unwrap_or_default()), None));
    }
    // Running again after a crash: still crash-looping until it has run `settle`.
    let started = state.and_then(|s| s.running.as_ref()).and_then(|r| r.started_at.as_ref()).map(|t| t.0);
    if c.restart_count > 0
        && let (Some(started), Some(crashed)) = (started, crashed)
        && let Ok(until) = started.checked_add(settle)
        && until > now
    {
        let mut f = made(Failure::CrashLoop, crashed);
        f.reason = "CrashLoopBackOff".into();
        return Some((f, Some(until)));
    }
    None
}

/// The kubelet's reason for a failing pull as the status shows it. A pull that keeps failing
/// alternates between ErrImagePull (the attempt) and ImagePullBackOff (the wait before the next)
/// with the same error; shown as they come, the status would change (and be written) with every
/// back-off cycle, so both read as the back-off, the state `kubectl get pods` shows most of the
/// time. Other reasons (InvalidImageName, ErrImageNeverPull) stay as they are.
fn pull_reason(reason: &str) -> &str {
    if reason == "ErrImagePull" { "ImagePullBackOff" } else { reason }
}

/// The pull error without the back-off wrapper, so ErrImagePull and ImagePullBackOff read alike.
fn pull_message(message: &str, image: &str) -> String {
    let wrapper = format!("Back-off pulling image \"{image}\"");
    match message.strip_prefix(&wrapper) {
        Some(rest) => {
            let rest = rest.trim_start_matches(':').trim();
            rest.strip_prefix("ErrImagePull:").map(str::trim).unwrap_or(rest).to_string()
        }
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value, ready: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "ebs-csi-node-abcde", "labels": {"app": "ebs-csi-node"},
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": "node-1", "containers": []},
            "status": {"conditions": [{"type": "Ready", "status": ready,
                                       "lastTransitionTime": "2026-01-01T00:00:05Z"}],
                       "containerStatuses": containers}
        }))
        .expect("pod")
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    const GRACE: Duration = Duration::from_secs(300);

    #[test]
    fn pull_failures_read_alike_in_both_kubelet_states() {
        let img = "dhi.io/aws-ebs-csi-driver:1.64.0";
        let err = json!([{"name": "ebs-plugin", "image": img, "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull", "message": "401 Unauthorized"}}}]);
        let back = json!([{"name": "ebs-plugin", "image": img, "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff",
                "message": format!("Back-off pulling image \"{img}\": ErrImagePull: 401 Unauthorized")}}}]);
        let now = at("2026-01-01T00:01:00Z");
        let a = facts(&pod(err, "False"), now, GRACE).expect("facts");
        let b = facts(&pod(back, "False"), now, GRACE).expect("facts");
        let (fa, fb) = (a.failure.expect("failure"), b.failure.expect("failure"));
        assert_eq!((fa.kind, fa.message.as_str(), fa.image.as_str()), (Failure::ImagePull, "401 Unauthorized", img));
        assert_eq!(fa.message, fb.message);
        assert_eq!((fa.reason.as_str(), fb.reason.as_str()), ("ImagePullBackOff", "ImagePullBackOff"));
        // A reason outside the retry cycle is shown as the kubelet gives it.
        let invalid = json!([{"name": "ebs-plugin", "image": img, "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "InvalidImageName", "message": "bad"}}}]);
        let f = facts(&pod(invalid, "False"), now, GRACE).and_then(|p| p.failure).expect("failure");
        assert_eq!((f.kind, f.reason.as_str()), (Failure::ImagePull, "InvalidImageName"));
        assert_eq!((a.workload, a.node.as_deref(), a.ready), (Workload::Node, Some("node-1"), false));
        assert_eq!(a.unready_since, Some(at("2026-01-01T00:00:05Z")));
    }

    #[test]
    fn a_restarted_container_counts_as_crashing_until_it_settled() {
        let c = |started: &str| {
            json!([{"name": "ebs-plugin", "image": "x", "imageID": "", "ready": true, "restartCount": 2,
                "state": {"running": {"startedAt": started}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": "no region\n"}}}])
        };
        let now = at("2026-01-01T00:10:00Z");
        let f = facts(&pod(c("2026-01-01T00:09:50Z"), "True"), now, GRACE).expect("facts");
        let failure = f.failure.expect("crashing");
        assert_eq!(
            (failure.kind, failure.message.as_str()),
            (Failure::CrashLoop, "exited with code 1 (Error): no region")
        );
        assert_eq!(f.review_at, Some(at("2026-01-01T00:10:50Z")));
        let steady = facts(&pod(c("2026-01-01T00:08:00Z"), "True"), now, GRACE).expect("facts");
        assert_eq!((steady.failure, steady.review_at, steady.unready_since), (None, None, None));
        let looping = json!([{"name": "ebs-plugin", "image": "x", "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting"}},
            "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}}}]);
        let f = facts(&pod(looping, "False"), now, GRACE).expect("facts").failure.expect("crashing");
        assert_eq!(f.message, "exited with code 2 (Error)", "the back-off that grows on every crash is left out");
    }

    #[test]
    fn pods_of_other_apps_are_not_ours_to_judge() {
        let mut p = pod(json!([]), "True");
        p.metadata.labels = Some([("app".to_string(), "other".to_string())].into());
        assert!(facts(&p, at("2026-01-01T00:00:00Z"), GRACE).is_none());
    }
}
