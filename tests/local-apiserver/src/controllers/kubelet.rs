//! A kubelet stand-in for every Node: runs each pod bound to a ready node through Pending
//! (ContainerCreating) to Running/Ready, or fails it as a real kubelet does. Images from
//! registries the server is told are private need an image pull secret on the pod (its own
//! `imagePullSecrets`; the ServiceAccount's are copied in at admission) whose dockerconfig has
//! an `auths` entry for the registry, otherwise ErrImagePull then ImagePullBackOff, retried with
//! backoff until the secret appears. Images can be marked as crashing (CrashLoopBackOff) or as
//! never ready. Writes container statuses, pod conditions, phase, IPs and the kubelet's Events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::scheduling::{keep_transition, node_ready};
use super::{Ctx, NODES, PODS, SECRETS, Source, condition};
use crate::meta;

/// Timing and registry settings of the kubelet stand-in.
#[derive(Debug, Clone)]
pub struct KubeletOptions {
    /// How long an image pull takes (successful or not).
    pub image_pull: Duration,
    /// How long a crashing container runs before it exits (also how long init containers run).
    pub crash_after: Duration,
    /// First back-off after a failed pull or a crash; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Registries (`host` or `host/path`) whose images need a pull secret, e.g. `dhi.io`.
    pub private_registries: Vec<String>,
}

impl Default for KubeletOptions {
    fn default() -> Self {
        KubeletOptions {
            image_pull: Duration::from_millis(50),
            crash_after: Duration::from_millis(50),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            private_registries: vec!["dhi.io".into()],
        }
    }
}

/// A fault of every container that runs an image (matched by the exact image string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFault {
    /// The container exits with code 1 shortly after starting: CrashLoopBackOff. Between starting
    /// and exiting it is ready only without a readiness probe (no probe passes in that time).
    Crash,
    /// The container runs but never passes readiness.
    NeverReady,
}

#[derive(Debug, Clone, PartialEq)]
enum Stage {
    /// Not started: an init container before it is still running.
    Waiting,
    Pulling,
    PullFailed(String),
    PullBackOff(String),
    /// A pull retried after the back-off. Its status still says ImagePullBackOff with the last
    /// error (a real kubelet reports the reason of its last sync until the retry ends), so a
    /// failing container never reads ContainerCreating again.
    Repulling(String),
    NeverPull,
    Running,
    /// An init container that finished.
    Completed,
    CrashBackOff,
    /// Exited and not restarted (restartPolicy Never).
    Exited,
}

#[derive(Debug, Clone)]
pub struct ContainerRun {
    name: String,
    image: String,
    policy: String,
    init: bool,
    has_readiness_probe: bool,
    stage: Stage,
    due: Option<Instant>,
    restarts: i64,
    pull_backoff: Duration,
    crash_backoff: Duration,
    started_at: String,
    container_id: String,
    last_terminated: Option<Value>,
    unhealthy_reported: bool,
}

/// What the kubelet remembers about one pod.
#[derive(Debug, Clone)]
pub struct PodRun {
    node: String,
    ip: String,
    host_ip: String,
    start_time: String,
    containers: Vec<ContainerRun>,
}

/// Registry host and repository path of an image reference (`docker.io/library/...` when the
/// first segment is not a host).
pub fn split_image(image: &str) -> (String, String) {
    let without_digest = image.split('@').next().unwrap_or_default();
    let (first, rest) = without_digest.split_once('/').unwrap_or(("", without_digest));
    let is_host = first.contains('.') || first.contains(':') || first == "localhost";
    let (host, path) =
        if is_host { (first.to_string(), rest.to_string()) } else { (String::new(), without_digest.to_string()) };
    let host = if host.is_empty() { "docker.io".to_string() } else { host };
    let mut path = match path.rsplit_once(':') {
        Some((p, tag)) if !tag.contains('/') => p.to_string(),
        _ => path,
    };
    if host == "docker.io" && !path.contains('/') {
        path = format!("library/{path}");
    }
    (host, path)
}

/// Whether `entry` (`host[/path]`) covers the image at `host`/`path`, segment-wise.
fn covers(entry: &str, host: &str, path: &str) -> bool {
    let entry = entry.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
    let (e_host, e_path) = entry.split_once('/').unwrap_or((entry, ""));
    let e_path = e_path.trim_start_matches("v1").trim_start_matches("v2").trim_matches('/');
    let host_ok = e_host == host
        || (e_host.starts_with("*.") && host.ends_with(&e_host[1..]))
        || (matches!(e_host, "index.docker.io" | "registry-1.docker.io") && host == "docker.io");
    host_ok && (e_path.is_empty() || path == e_path || path.starts_with(&format!("{e_path}/")))
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

/// The registries a pull Secret holds credentials for (`auths` of `.dockerconfigjson`, or the
/// top-level keys of a legacy `.dockercfg`).
fn secret_registries(secret: &Value) -> Vec<String> {
    let data = &secret["data"];
    let (raw, nested) = match secret["type"].as_str() {
        Some("kubernetes.io/dockerconfigjson") => (data[".dockerconfigjson"].as_str(), true),
        Some("kubernetes.io/dockercfg") => (data[".dockercfg"].as_str(), false),
        _ => (None, false),
    };
    let parsed: Option<Value> = raw.and_then(decode_base64).and_then(|b| serde_json::from_slice(&b).ok());
    let map = parsed.and_then(|p| if nested { p.get("auths").cloned() } else { Some(p) });
    map.and_then(|m| m.as_object().map(|o| o.keys().cloned().collect())).unwrap_or_default()
}

fn short_hex(text: &str) -> String {
    let h = super::fnv64(text.as_bytes());
    format!("{h:016x}{:016x}{:016x}{:016x}", h.rotate_left(13), h.rotate_left(29), h.rotate_left(47))
}

impl ContainerRun {
    fn field_path(&self) -> String {
        format!("spec.{}{{{}}}", if self.init { "initContainers" } else { "containers" }, self.name)
    }
}

struct Sync<'c, 'a> {
    cx: &'c mut Ctx<'a>,
    pod: Arc<Value>,
    node: String,
    opts: KubeletOptions,
    faults: HashMap<String, ImageFault>,
}

impl Sync<'_, '_> {
    fn event(&mut self, c: &ContainerRun, type_: &str, reason: &str, message: &str) {
        let fp = c.field_path();
        let source = Source { component: "kubelet", host: &self.node, field_path: &fp };
        let pod = self.pod.clone();
        self.cx.event(&pod, &source, type_, reason, message);
    }

    fn pod_event(&mut self, type_: &str, reason: &str, message: &str) {
        let source = Source { component: "kubelet", host: &self.node, field_path: "" };
        let pod = self.pod.clone();
        self.cx.event(&pod, &source, type_, reason, message);
    }

    /// Ok when the image may be pulled; otherwise the container runtime's error.
    fn credentials(&mut self, image: &str) -> Result<(), String> {
        let (host, path) = split_image(image);
        if !self.opts.private_registries.iter().any(|r| covers(r, &host, &path)) {
            return Ok(());
        }
        let ns = self.pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let names: Vec<String> = self.pod["spec"]["imagePullSecrets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str().map(str::to_string))
            .collect();
        let mut missing = Vec::new();
        let mut ok = false;
        for n in &names {
            match self.cx.get(SECRETS, &(ns.clone(), n.clone())) {
                Some(secret) => ok |= secret_registries(&secret).iter().any(|e| covers(e, &host, &path)),
                None => missing.push(n.clone()),
            }
        }
        if !missing.is_empty() {
            let msg = format!(
                "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                missing.join(", ")
            );
            self.pod_event("Warning", "FailedToRetrieveImagePullSecret", &msg);
        }
        if ok {
            return Ok(());
        }
        let scope = path.replace('/', "%2F");
        Err(format!(
            "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": failed to \
             authorize: failed to fetch anonymous token: unexpected status from GET request to \
             https://{host}/token?scope=repository%3A{scope}%3Apull&service={host}: 401 Unauthorized"
        ))
    }

    fn present(&self, image: &str) -> bool {
        self.cx.mem.images.get(&self.node).is_some_and(|s| s.contains(image))
    }

    /// Begins the pull (or skips it when the policy allows a present image).
    fn begin(&mut self, c: &mut ContainerRun, now: Instant) {
        let present = self.present(&c.image);
        match c.policy.as_str() {
            "Never" if !present => {
                c.stage = Stage::NeverPull;
                c.due = None;
                let msg = format!("Container image \"{}\" is not present with pull policy of Never", c.image);
                self.event(c, "Warning", "ErrImageNeverPull", &msg);
                self.event(c, "Warning", "Failed", "Error: ErrImageNeverPull");
            }
            "Never" | "IfNotPresent" if present => {
                let msg = format!("Container image \"{}\" already present on machine", c.image);
                self.event(c, "Normal", "Pulled", &msg);
                self.start(c, now);
            }
            _ => {
                c.stage = Stage::Pulling;
                c.due = Some(now + self.opts.image_pull);
                self.event(c, "Normal", "Pulling", &format!("Pulling image \"{}\"", c.image));
            }
        }
    }

    fn start(&mut self, c: &mut ContainerRun, now: Instant) {
        c.stage = Stage::Running;
        c.started_at = meta::now();
        c.container_id = format!("containerd://{}", short_hex(&format!("{}{}{}", c.name, c.started_at, c.restarts)));
        self.event(c, "Normal", "Created", &format!("Created container: {}", c.name));
        self.event(c, "Normal", "Started", &format!("Started container {}", c.name));
        let fault = self.faults.get(&c.image).copied();
        c.due = if fault == Some(ImageFault::Crash) || c.init { Some(now + self.opts.crash_after) } else { None };
        if fault == Some(ImageFault::NeverReady) && c.has_readiness_probe && !c.unhealthy_reported {
            c.unhealthy_reported = true;
            self.event(c, "Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503");
        }
    }

    /// Moves one container on when its time has come.
    fn advance(&mut self, c: &mut ContainerRun, now: Instant) {
        match c.stage.clone() {
            Stage::Pulling | Stage::Repulling(_) => match self.credentials(&c.image) {
                Ok(()) => {
                    self.cx.mem.images.entry(self.node.clone()).or_default().insert(c.image.clone());
                    let ms = self.opts.image_pull.as_millis();
                    let msg = format!(
                        "Successfully pulled image \"{}\" in {ms}ms ({ms}ms including waiting). \
                         Image size: 10485760 bytes.",
                        c.image
                    );
                    self.event(c, "Normal", "Pulled", &msg);
                    c.pull_backoff = self.opts.backoff_initial;
                    self.start(c, now);
                }
                Err(e) => {
                    self.event(c, "Warning", "Failed", &format!("Failed to pull image \"{}\": {e}", c.image));
                    self.event(c, "Warning", "Failed", "Error: ErrImagePull");
                    c.stage = Stage::PullFailed(e);
                    c.due = Some(now + c.pull_backoff);
                }
            },
            Stage::PullFailed(e) => {
                let msg = format!("Back-off pulling image \"{}\"", c.image);
                self.event(c, "Normal", "BackOff", &msg);
                self.event(c, "Warning", "Failed", "Error: ImagePullBackOff");
                c.stage = Stage::PullBackOff(e);
                c.due = Some(now + c.pull_backoff);
                c.pull_backoff = (c.pull_backoff * 2).min(self.opts.backoff_max);
            }
            Stage::PullBackOff(e) => {
                c.stage = Stage::Repulling(e);
                c.due = Some(now + self.opts.image_pull);
                self.event(c, "Normal", "Pulling", &format!("Pulling image \"{}\"", c.image));
            }
            Stage::Running => {
                let crash = self.faults.get(&c.image) == Some(&ImageFault::Crash);
                let finished = meta::now();
                let (code, reason) = if crash { (1, "Error") } else { (0, "Completed") };
                let term = json!({"exitCode": code, "reason": reason, "startedAt": c.started_at,
                                  "finishedAt": finished, "containerID": c.container_id});
                let policy = self.pod["spec"]["restartPolicy"].as_str().unwrap_or("Always").to_string();
                if !crash && c.init {
                    c.stage = Stage::Completed;
                    c.last_terminated = Some(term);
                    c.due = None;
                } else if policy == "Never" || (policy == "OnFailure" && !crash) {
                    c.stage = Stage::Exited;
                    c.last_terminated = Some(term);
                    c.due = None;
                } else {
                    c.last_terminated = Some(term);
                    c.restarts += 1;
                    c.stage = Stage::CrashBackOff;
                    c.due = Some(now + c.crash_backoff);
                    let pod_ref = self.pod_ref();
                    let msg = format!("Back-off restarting failed container {} in pod {pod_ref}", c.name);
                    self.event(c, "Warning", "BackOff", &msg);
                }
            }
            Stage::CrashBackOff => {
                c.crash_backoff = (c.crash_backoff * 2).min(self.opts.backoff_max);
                let msg = format!("Container image \"{}\" already present on machine", c.image);
                self.event(c, "Normal", "Pulled", &msg);
                self.start(c, now);
            }
            Stage::Waiting | Stage::NeverPull | Stage::Completed | Stage::Exited => c.due = None,
        }
    }

    fn pod_ref(&self) -> String {
        format!(
            "{}_{}({})",
            self.pod["metadata"]["name"].as_str().unwrap_or_default(),
            self.pod["metadata"]["namespace"].as_str().unwrap_or_default(),
            self.pod["metadata"]["uid"].as_str().unwrap_or_default()
        )
    }
}

fn containers_of(pod: &Value) -> Vec<ContainerRun> {
    let mut out = Vec::new();
    for (list, init) in [("initContainers", true), ("containers", false)] {
        for c in pod["spec"][list].as_array().into_iter().flatten() {
            out.push(ContainerRun {
                name: c["name"].as_str().unwrap_or_default().into(),
                image: c["image"].as_str().unwrap_or_default().into(),
                policy: c["imagePullPolicy"].as_str().unwrap_or("IfNotPresent").into(),
                init,
                has_readiness_probe: c["readinessProbe"].is_object(),
                stage: Stage::Waiting,
                due: None,
                restarts: 0,
                pull_backoff: Duration::ZERO,
                crash_backoff: Duration::ZERO,
                started_at: String::new(),
                container_id: String::new(),
                last_terminated: None,
                unhealthy_reported: false,
            });
        }
    }
    out
}

/// Syncs one pod bound to `node`; returns when to look again.
pub fn sync(
    cx: &mut Ctx<'_>,
    pod: Arc<Value>,
    opts: &KubeletOptions,
    faults: &HashMap<String, ImageFault>,
) -> Option<Duration> {
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or_default().to_string();
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let node = cx.get(NODES, &(String::new(), node_name.clone()))?;
    if super::terminating(&pod) || !node_ready(&node) {
        return None;
    }
    let now = cx.now;
    let mut run = match cx.mem.pods.remove(&uid) {
        Some(r) if r.node == node_name => r,
        _ => {
            let index = super::nodes::node_index(cx.mem, &node_name);
            let n = cx.mem.next_pod_ip.entry(node_name.clone()).or_insert(1);
            *n += 1;
            let ip = format!("10.244.{}.{}", index % 256, *n % 254 + 1);
            let mut containers = containers_of(&pod);
            for c in containers.iter_mut() {
                c.pull_backoff = opts.backoff_initial;
                c.crash_backoff = opts.backoff_initial;
            }
            PodRun {
                node: node_name.clone(),
                ip,
                host_ip: super::nodes::node_ip(index),
                start_time: meta::now(),
                containers,
            }
        }
    };
    let mut sync = Sync { cx, pod: pod.clone(), node: node_name.clone(), opts: opts.clone(), faults: faults.clone() };
    // Init containers one after another, then every app container.
    loop {
        let mut moved = false;
        let init_pending = run.containers.iter().position(|c| c.init && c.stage != Stage::Completed);
        for i in 0..run.containers.len() {
            let mut c = run.containers[i].clone();
            let may_start = match init_pending {
                Some(p) => i == p,
                None => true,
            };
            if c.stage == Stage::Waiting && may_start {
                sync.begin(&mut c, now);
                moved = true;
            } else if c.due.is_some_and(|d| d <= now) {
                sync.advance(&mut c, now);
                moved = true;
            }
            run.containers[i] = c;
        }
        let next_init = run.containers.iter().position(|c| c.init && c.stage != Stage::Completed);
        if !moved && next_init == init_pending {
            break;
        }
    }
    let status = pod_status(&pod, &run, faults);
    sync.cx.update_status(PODS, &pod, status, "kubelet");
    let next = run.containers.iter().filter_map(|c| c.due).min().map(|d| d.saturating_duration_since(now));
    sync.cx.mem.pods.insert(uid, run);
    next
}

fn state_of(c: &ContainerRun, pod_ref: &str, init_running: bool) -> Value {
    let waiting = |reason: &str, message: Option<String>| {
        let mut w = json!({"reason": reason});
        if let Some(m) = message {
            w["message"] = json!(m);
        }
        json!({"waiting": w})
    };
    match &c.stage {
        Stage::Waiting if !c.init && init_running => waiting("PodInitializing", None),
        Stage::Waiting if c.init => waiting("PodInitializing", None),
        Stage::Waiting | Stage::Pulling => waiting(if c.init { "PodInitializing" } else { "ContainerCreating" }, None),
        Stage::PullFailed(e) => waiting("ErrImagePull", Some(e.clone())),
        Stage::PullBackOff(e) | Stage::Repulling(e) => {
            waiting("ImagePullBackOff", Some(format!("Back-off pulling image \"{}\": ErrImagePull: {e}", c.image)))
        }
        Stage::NeverPull => waiting(
            "ErrImageNeverPull",
            Some(format!("Container image \"{}\" is not present with pull policy of Never", c.image)),
        ),
        Stage::Running => json!({"running": {"startedAt": c.started_at}}),
        Stage::Completed | Stage::Exited => json!({"terminated": c.last_terminated.clone().unwrap_or(Value::Null)}),
        Stage::CrashBackOff => {
            let secs = c.crash_backoff.as_secs_f64();
            let shown = if secs < 1.0 { format!("{}ms", c.crash_backoff.as_millis()) } else { format!("{secs}s") };
            waiting(
                "CrashLoopBackOff",
                Some(format!("back-off {shown} restarting failed container={} pod={pod_ref}", c.name)),
            )
        }
    }
}

fn image_id(image: &str) -> String {
    let (host, path) = split_image(image);
    let digest = match image.split_once('@') {
        Some((_, d)) => d.to_string(),
        None => format!("sha256:{}", short_hex(image)),
    };
    format!("{host}/{path}@{digest}")
}

fn pod_status(pod: &Value, run: &PodRun, faults: &HashMap<String, ImageFault>) -> Value {
    let pod_ref = format!(
        "{}_{}({})",
        pod["metadata"]["name"].as_str().unwrap_or_default(),
        pod["metadata"]["namespace"].as_str().unwrap_or_default(),
        pod["metadata"]["uid"].as_str().unwrap_or_default()
    );
    let init_running = run.containers.iter().any(|c| c.init && c.stage != Stage::Completed);
    let status_of = |c: &ContainerRun| {
        // A container with a readiness probe is ready once a probe passes: never for one that never
        // passes, nor for one that exits (after `crash_after`) before it serves its first probe.
        let fault = faults.get(&c.image);
        let probe_fails = fault == Some(&ImageFault::NeverReady) || (fault.is_some() && c.has_readiness_probe);
        let ready = !c.init && c.stage == Stage::Running && !probe_fails || (c.init && c.stage == Stage::Completed);
        let started = c.stage == Stage::Running;
        let mut s = json!({
            "name": c.name, "image": c.image, "imageID": "", "ready": ready, "restartCount": c.restarts,
            "started": started, "state": state_of(c, &pod_ref, init_running),
            "lastState": c.last_terminated.as_ref().filter(|_| !matches!(c.stage, Stage::Completed | Stage::Exited))
                .map(|t| json!({"terminated": t})).unwrap_or_else(|| json!({})),
        });
        if !c.container_id.is_empty() {
            s["containerID"] = json!(c.container_id);
            s["imageID"] = json!(image_id(&c.image));
        }
        if c.init {
            s.as_object_mut().map(|m| m.remove("started"));
        }
        s
    };
    let mut main: Vec<Value> = run.containers.iter().filter(|c| !c.init).map(status_of).collect();
    main.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let init: Vec<Value> = run.containers.iter().filter(|c| c.init).map(status_of).collect();
    let unready: Vec<&str> = main.iter().filter(|c| c["ready"] != true).filter_map(|c| c["name"].as_str()).collect();
    let uninit: Vec<&str> =
        run.containers.iter().filter(|c| c.init && c.stage != Stage::Completed).map(|c| c.name.as_str()).collect();
    let all_started = run.containers.iter().filter(|c| !c.init).all(|c| {
        matches!(c.stage, Stage::Running | Stage::CrashBackOff | Stage::Exited) || c.last_terminated.is_some()
    });
    let mains: Vec<&ContainerRun> = run.containers.iter().filter(|c| !c.init).collect();
    let phase = if !mains.is_empty() && mains.iter().all(|c| c.stage == Stage::Exited) {
        let failed = mains.iter().any(|c| c.last_terminated.as_ref().is_some_and(|t| t["exitCode"] != 0));
        if failed { "Failed" } else { "Succeeded" }
    } else if all_started && !init_running {
        "Running"
    } else {
        "Pending"
    };
    let cond = |type_: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let mut c = json!({"type": type_, "status": status, "lastProbeTime": null,
                           "lastTransitionTime": keep_transition(pod, type_, status)});
        if !ok && !reason.is_empty() {
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        c
    };
    let not_ready_msg = format!("containers with unready status: [{}]", unready.join(" "));
    let ready = unready.is_empty() && !init_running;
    let mut conditions = vec![
        cond("PodReadyToStartContainers", true, "", String::new()),
        cond(
            "Initialized",
            uninit.is_empty(),
            "ContainersNotInitialized",
            format!("containers with incomplete status: [{}]", uninit.join(" ")),
        ),
        cond("Ready", ready, "ContainersNotReady", not_ready_msg.clone()),
        cond("ContainersReady", ready, "ContainersNotReady", not_ready_msg),
    ];
    if let Some(s) = condition(pod, "PodScheduled") {
        conditions.push(s.clone());
    }
    let mut st = json!({
        "phase": phase, "conditions": conditions,
        "hostIP": run.host_ip, "hostIPs": [{"ip": run.host_ip}],
        "podIP": run.ip, "podIPs": [{"ip": run.ip}],
        "startTime": run.start_time, "qosClass": qos_class(pod),
        "containerStatuses": main,
    });
    if !init.is_empty() {
        st["initContainerStatuses"] = Value::Array(init);
    }
    st
}

fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = pod["spec"]["containers"].as_array().into_iter().flatten().collect();
    let none = containers.iter().all(|c| {
        c["resources"]["requests"].as_object().is_none_or(|m| m.is_empty())
            && c["resources"]["limits"].as_object().is_none_or(|m| m.is_empty())
    });
    if none {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = &c["resources"]["limits"][r];
            !limit.is_null() && (c["resources"]["requests"][r].is_null() || c["resources"]["requests"][r] == *limit)
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

/// ServiceAccount admission: a pod without `imagePullSecrets` gets its ServiceAccount's.
pub fn service_account_pull_secrets(s: &crate::store::Inner, pod: &mut Value) {
    if pod["spec"]["imagePullSecrets"].as_array().is_some_and(|l| !l.is_empty()) {
        return;
    }
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
    let sa = pod["spec"]["serviceAccountName"].as_str().filter(|n| !n.is_empty()).unwrap_or("default").to_string();
    if let Some(account) = s.get("/serviceaccounts", &(ns, sa))
        && let Some(secrets) = account["imagePullSecrets"].as_array().filter(|l| !l.is_empty())
    {
        pod["spec"]["imagePullSecrets"] = Value::Array(secrets.clone());
    }
}

/// Marks a pod on a node that stopped reporting as not ready (MarkPodsNotReady).
pub fn mark_not_ready(cx: &mut Ctx<'_>, pod: &Arc<Value>) {
    if condition(pod, "Ready").is_none_or(|c| c["status"] != "True") {
        return;
    }
    let mut st = pod["status"].clone();
    if let Some(cs) = st["conditions"].as_array_mut() {
        for c in cs.iter_mut().filter(|c| c["type"] == "Ready" || c["type"] == "ContainersReady") {
            c["status"] = json!("False");
            c["lastTransitionTime"] = json!(meta::now());
        }
    }
    cx.update_status(PODS, pod, st, "node-controller");
}

/// STATUS as `kubectl get pods` prints it (printPod): the waiting or terminated reason of a
/// container, `Init:` states, `Terminating`, else the phase.
pub fn printed_status(pod: &Value) -> String {
    let mut reason =
        pod["status"]["reason"].as_str().or(pod["status"]["phase"].as_str()).unwrap_or("Pending").to_string();
    let inits = pod["status"]["initContainerStatuses"].as_array().cloned().unwrap_or_default();
    let total_init = pod["spec"]["initContainers"].as_array().map_or(0, Vec::len);
    let mut initializing = false;
    for (i, c) in inits.iter().enumerate() {
        let term = &c["state"]["terminated"];
        if term.is_object() && term["exitCode"] == 0 {
            continue;
        }
        initializing = true;
        reason = if term.is_object() {
            match term["reason"].as_str().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None => format!("Init:ExitCode:{}", term["exitCode"]),
            }
        } else if let Some(w) =
            c["state"]["waiting"]["reason"].as_str().filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            format!("Init:{w}")
        } else {
            format!("Init:{i}/{total_init}")
        };
        break;
    }
    if !initializing {
        let mut has_running = false;
        for c in pod["status"]["containerStatuses"].as_array().into_iter().flatten().rev() {
            if let Some(w) = c["state"]["waiting"]["reason"].as_str().filter(|r| !r.is_empty()) {
                reason = w.to_string();
            } else if let Some(t) = c["state"]["terminated"]["reason"].as_str().filter(|r| !r.is_empty()) {
                reason = t.to_string();
            } else if c["state"]["terminated"].is_object() {
                reason = format!("ExitCode:{}", c["state"]["terminated"]["exitCode"]);
            } else if c["ready"] == true && c["state"]["running"].is_object() {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = if super::is_pod_ready(pod) { "Running".into() } else { "NotReady".into() };
        }
    }
    if pod["metadata"].get("deletionTimestamp").is_some() {
        reason = "Terminating".into();
    }
    reason
}

/// RESTARTS as kubectl prints it: the sum, with the age of the last restart.
pub fn printed_restarts(pod: &Value) -> String {
    let mut total = 0;
    let mut last: Option<i64> = None;
    for list in ["initContainerStatuses", "containerStatuses"] {
        for c in pod["status"][list].as_array().into_iter().flatten() {
            total += c["restartCount"].as_i64().unwrap_or(0);
            if let Some(secs) = super::seconds_since(&c["lastState"]["terminated"]["finishedAt"]) {
                last = Some(last.map_or(secs, |l: i64| l.min(secs)));
            }
        }
    }
    match last {
        Some(secs) if total > 0 => format!("{total} ({} ago)", meta::human_age(secs)),
        _ => total.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_and_registry_entries() {
        assert_eq!(split_image("dhi.io/aws-ebs-csi-driver:1.64.0"), ("dhi.io".into(), "aws-ebs-csi-driver".into()));
        assert_eq!(split_image("nginx"), ("docker.io".into(), "library/nginx".into()));
        assert_eq!(split_image("localhost:5000/a/b:1@sha256:00"), ("localhost:5000".into(), "a/b".into()));
        assert!(covers("dhi.io", "dhi.io", "x"));
        assert!(covers("https://dhi.io/v1/", "dhi.io", "x"));
        assert!(covers("dhi.io/team", "dhi.io", "team/x"));
        assert!(!covers("dhi.io/team", "dhi.io", "other/x"));
        assert!(!covers("docker.io", "dhi.io", "x"));
        assert!(covers("*.example.com", "r.example.com", "x"));
    }

    #[test]
    fn pull_secret_registries() {
        let cfg = crate::protobuf::base64(br#"{"auths":{"dhi.io":{"auth":"dTpw"}}}"#);
        let s = json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": cfg}});
        assert_eq!(secret_registries(&s), ["dhi.io"]);
        let empty = json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}});
        assert!(secret_registries(&empty).is_empty());
        let opaque = json!({"type": "Opaque", "data": {".dockerconfigjson": cfg}});
        assert!(secret_registries(&opaque).is_empty());
    }

    #[test]
    fn kubectl_status_column() {
        let pod = |cs: Value| json!({"status": {"phase": "Pending", "containerStatuses": cs}});
        assert_eq!(
            printed_status(&pod(json!([{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]))),
            "ImagePullBackOff"
        );
        assert_eq!(
            printed_status(&pod(json!([{"state": {"waiting": {"reason": "ContainerCreating"}}}]))),
            "ContainerCreating"
        );
        let running =
            json!({"status": {"phase": "Running", "containerStatuses": [{"ready": true, "state": {"running": {}}}]}});
        assert_eq!(printed_status(&running), "Running");
        let init = json!({"spec": {"initContainers": [{}, {}]}, "status": {"phase": "Pending",
            "initContainerStatuses": [{"state": {"terminated": {"exitCode": 0}}}, {"state": {"running": {}}}]}});
        assert_eq!(printed_status(&init), "Init:1/2");
    }
}
