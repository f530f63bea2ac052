//! The workload loop (switchable): runs the controllers of `controllers` the way
//! kube-controller-manager, kube-scheduler and the kubelets of a real cluster do — Deployments
//! get ReplicaSets and Pods, DaemonSets get one Pod per fitting Node, pending Pods are bound to
//! Nodes and run by a kubelet stand-in. It is driven by the store's change events (so it sees
//! exactly what watches see) plus timers for what takes time (image pulls, back-offs, progress
//! deadlines). Switched off, nothing moves; switched back on, everything is looked at again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

pub use crate::controllers::kubelet::{ImageFault, KubeletOptions};
use crate::controllers::{
    self, Ctx, DAEMONSETS, DEPLOYMENTS, Memory, NODES, PODS, REPLICASETS, Work, controller_of, daemonset, deployment,
    kubelet, nodes, replicaset, scheduling,
};
use crate::server::Shared;
use crate::store::{Event, EventType, key_of};

/// Settings and fault controls shared between the library API and the loop.
pub struct Config {
    pub kubelet: Mutex<KubeletOptions>,
    pub image_faults: Mutex<HashMap<String, ImageFault>>,
    /// Set to have the loop look at every workload object again.
    resync: AtomicBool,
    wake: Notify,
}

impl Config {
    pub fn new(kubelet: KubeletOptions) -> Config {
        Config {
            kubelet: Mutex::new(kubelet),
            image_faults: Mutex::new(HashMap::new()),
            resync: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn kubelet(&self) -> KubeletOptions {
        self.kubelet.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn faults(&self) -> HashMap<String, ImageFault> {
        self.image_faults.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_fault(&self, image: &str, fault: Option<ImageFault>) {
        let mut f = self.image_faults.lock().unwrap_or_else(|p| p.into_inner());
        match fault {
            Some(x) => f.insert(image.to_string(), x),
            None => f.remove(image),
        };
        drop(f);
        self.request_resync();
    }

    pub fn request_resync(&self) {
        self.resync.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// The loop's queue: work now, and work at a later instant.
#[derive(Default)]
struct Queue {
    now: Vec<Work>,
    queued: HashSet<Work>,
    timers: BTreeMap<(Instant, u64), Work>,
    /// The one pending timer of each work item (the earliest wins).
    timer_of: HashMap<Work, (Instant, u64)>,
    seq: u64,
}

impl Queue {
    fn push(&mut self, w: Work) {
        if self.queued.insert(w.clone()) {
            self.now.push(w);
        }
    }

    fn after(&mut self, w: Work, d: Duration) {
        if d.is_zero() {
            self.push(w);
            return;
        }
        let at = Instant::now() + d;
        if let Some(existing) = self.timer_of.get(&w) {
            if existing.0 <= at {
                return;
            }
            self.timers.remove(&existing.clone());
        }
        self.seq += 1;
        self.timer_of.insert(w.clone(), (at, self.seq));
        self.timers.insert((at, self.seq), w);
    }

    fn due(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let w = entry.remove();
            self.timer_of.remove(&w);
            self.push(w);
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(t, _)| *t)
    }

    fn pop(&mut self) -> Option<Work> {
        let w = self.now.pop()?;
        self.queued.remove(&w);
        Some(w)
    }
}

fn everything(shared: &Shared, q: &mut Queue) {
    let s = shared.store.lock();
    for n in s.list(NODES, None) {
        q.push(Work::Node(key_of(&n).1));
    }
    for (storage, make) in [
        (DEPLOYMENTS, Work::Deployment as fn(_) -> Work),
        (REPLICASETS, Work::ReplicaSet),
        (DAEMONSETS, Work::DaemonSet),
        (PODS, Work::Pod),
    ] {
        for o in s.list(storage, None) {
            q.push(make(key_of(&o)));
        }
    }
}

/// What one change makes worth looking at.
fn dispatch(shared: &Shared, q: &mut Queue, mem: &mut Memory, e: &Event) {
    let key = key_of(&e.object);
    match e.storage_key.as_str() {
        DEPLOYMENTS if e.type_ != EventType::Deleted => q.push(Work::Deployment(key)),
        REPLICASETS => {
            if e.type_ != EventType::Deleted {
                q.push(Work::ReplicaSet(key.clone()));
            }
            if let Some(("Deployment", name, _)) = controller_of(&e.object) {
                q.push(Work::Deployment((key.0, name.to_string())));
            }
        }
        DAEMONSETS if e.type_ != EventType::Deleted => q.push(Work::DaemonSet(key)),
        PODS => {
            match controller_of(&e.object) {
                Some(("ReplicaSet", name, _)) => q.push(Work::ReplicaSet((key.0.clone(), name.to_string()))),
                Some(("DaemonSet", name, _)) => q.push(Work::DaemonSet((key.0.clone(), name.to_string()))),
                _ => {}
            }
            if e.type_ == EventType::Deleted {
                if let Some(uid) = e.object["metadata"]["uid"].as_str() {
                    mem.pods.remove(uid);
                }
            } else {
                q.push(Work::Pod(key));
            }
        }
        NODES => {
            q.push(Work::Node(key.1));
            let s = shared.store.lock();
            for ds in s.list(DAEMONSETS, None) {
                q.push(Work::DaemonSet(key_of(&ds)));
            }
            for p in s.list(PODS, None) {
                if p["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
                    q.push(Work::Pod(key_of(&p)));
                }
            }
        }
        _ => {}
    }
}

fn process(
    shared: &Shared,
    mem: &mut Memory,
    w: &Work,
    opts: &KubeletOptions,
    faults: &HashMap<String, ImageFault>,
) -> (Option<Duration>, Vec<Work>) {
    let mut s = shared.store.lock();
    let mut cx = Ctx { shared, s: &mut s, mem, now: Instant::now(), follow_up: Vec::new() };
    let next = match w {
        Work::Deployment(k) => deployment::reconcile(&mut cx, k),
        Work::ReplicaSet(k) => replicaset::reconcile(&mut cx, k),
        Work::DaemonSet(k) => daemonset::reconcile(&mut cx, k),
        Work::Node(name) => nodes::reconcile(&mut cx, name),
        Work::Pod(k) => match cx.get(PODS, k) {
            // Finished pods are left as they are (neither scheduled nor restarted).
            Some(pod) if matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) => None,
            Some(pod) if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) => {
                if !controllers::terminating(&pod) {
                    scheduling::schedule(&mut cx, &pod);
                }
                None
            }
            Some(pod) => kubelet::sync(&mut cx, pod, opts, faults),
            None => None,
        },
    };
    let follow_up = std::mem::take(&mut cx.follow_up);
    // A request waiting for the store gets it before the loop's next item: in a real cluster the
    // controllers, the scheduler and the kubelets are other processes, and an API request never
    // queues behind a batch of their work.
    parking_lot::MutexGuard::unlock_fair(s);
    (next, follow_up)
}

/// The loop on a thread of its own, as the controllers, the scheduler and the kubelets of a real
/// cluster are other processes. On a worker of the server's runtime, a batch of the loop's
/// synchronous work held up every task it woke (a watch stream with its events, a request that
/// waited for the store) until the batch ended, so requests and watch events lagged the loop by
/// milliseconds, which a real API server never does. Dropping it stops the loop and waits for the
/// batch in progress.
pub struct Thread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts the loop on its own thread (with a single-threaded runtime for its timers).
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<Thread> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    let thread = std::thread::Builder::new().name("local-apiserver-workloads".into()).spawn(move || {
        rt.block_on(async move {
            tokio::select! {
                () = run(shared) => {}
                _ = stopped => {}
            }
        });
    })?;
    Ok(Thread { stop: Some(stop), thread: Some(thread) })
}

impl Drop for Thread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn run(shared: Arc<Shared>) {
    let mut sub = shared.store.lock().subscribe();
    let mut q = Queue::default();
    let mut mem = Memory::default();
    everything(&shared, &mut q);
    loop {
        loop {
            match sub.try_recv() {
                Ok(e) => {
                    if shared.simulate() {
                        dispatch(&shared, &mut q, &mut mem, &e);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(_)) => everything(&shared, &mut q),
                Err(TryRecvError::Closed) => return,
            }
        }
        if shared.workloads.resync.swap(false, Ordering::SeqCst) && shared.simulate() {
            everything(&shared, &mut q);
        }
        if shared.simulate() {
            q.due();
            let opts = shared.workloads.kubelet();
            let faults = shared.workloads.faults();
            // A bounded batch, then back to the events (which our own writes produced).
            for _ in 0..64 {
                let Some(w) = q.pop() else { break };
                let (next, follow) = process(&shared, &mut mem, &w, &opts, &faults);
                if let Some(d) = next {
                    q.after(w, d);
                }
                for f in follow {
                    q.push(f);
                }
            }
            if !q.now.is_empty() {
                tokio::task::yield_now().await;
                continue;
            }
        } else {
            q.now.clear();
            q.queued.clear();
        }
        let sleep = async {
            match q.next_timer() {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = sub.recv() => match r {
                Ok(e) => {
                    if shared.simulate() {
                        dispatch(&shared, &mut q, &mut mem, &e);
                    }
                }
                Err(RecvError::Lagged(_)) => everything(&shared, &mut q),
                Err(RecvError::Closed) => return,
            },
            _ = sleep => {}
            _ = shared.workloads.wake.notified() => {}
        }
    }
}

/// Brings every workload up to date (when switched back on).
pub fn reconcile_all(shared: &Shared) {
    shared.workloads.request_resync();
}
