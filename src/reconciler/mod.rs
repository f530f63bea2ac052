//! The reconciler: watches HardenedCsiDriver objects and their children and makes the cluster
//! match what `render` produces, reporting what it found in status.
//!
//! HardenedCsiDriver objects are watched as dynamic objects and parsed per object, so one stored
//! object that bypassed schema validation gets a condition instead of breaking the watch for all.
//!
//! - `reconcile`: one pass over one driver (check, render, apply, observe, write status).
//! - `children`: ownership, server-side apply of what changed, pruning.
//! - `caches`: the kinds of child and their label-filtered caches.
//! - `deletion`: the finalizer and the volume guard.
//! - `policy`: the install-time guardrails (driver namespace, registry allowlist).
//! - `driver_rbac`: verification of the driver's RBAC the chart installs, from watches by name.
//! - `conditions`: every condition, as a pure function of what one reconcile observed.
//! - `pods`: the watch of the driver's pods and what each tells the health rules.
//! - `secrets`: the watches of the Secrets the driver names, by name and metadata only.
//! - `error`: the error type and its messages.

pub mod caches;
mod children;
pub mod conditions;
pub mod deletion;
pub mod driver_rbac;
pub mod error;
#[cfg(test)]
mod gitops_testdata;
pub mod pods;
pub mod policy;
mod reconcile;
pub mod secrets;
pub mod snapshots;
mod status_log;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::storage::v1::VolumeAttributesClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;

use crate::aws::AwsStatusStore;
use crate::aws::pv_watch::{crd_gate, gated, watcher_config};
use crate::crd::HardenedCsiDriver;
use crate::render::{Capabilities, LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGER, VolumeSnapshotClass};
use crate::runtime::http::Readiness;
use crate::runtime::metrics::Metrics;
use caches::{Cached, ChildCaches, KindStore, child_kinds};
pub use conditions::Cond;
use error::Error;

/// Finalizer that holds a HardenedCsiDriver until its children are removed.
pub const FINALIZER: &str = "csi.hardened.dev/cleanup";
/// Annotation that lets deletion proceed while PersistentVolumes of the driver exist.
pub const FORCE_DELETE_ANNOTATION: &str = "csi.hardened.dev/force-delete";
/// The snapshot API's CRD whose presence decides the snapshotter and VolumeSnapshotClasses.
pub use crate::render::SNAPSHOT_CRD;
/// The Prometheus Operator's CRD whose presence decides the driver's ServiceMonitors.
pub use crate::render::service_monitor::SERVICE_MONITOR_CRD;
/// Periodic resync of an unchanged driver: a no-op reconcile reads caches and writes nothing.
pub const RESYNC: Duration = Duration::from_secs(600);
/// A status change that is only progress (replica counts, a node joining: see
/// `conditions::progress_only`) is written at most this often per driver; decisions at once.
pub const STATUS_COALESCE: Duration = Duration::from_secs(5);
/// How often the Kubernetes version is asked again while running (one GET of /version): a
/// control-plane upgrade or downgrade changes what is rendered without an operator restart. A
/// watch error (the API server restarting during an upgrade) asks at once. Five minutes: a
/// control-plane upgrade takes longer than that, and 12 requests an hour fit the quiet budget
/// (issue 20: at most 120 an hour in a cluster where nothing changes).
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(300);

/// Shared state of every reconcile.
pub struct Context {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub caches: ChildCaches,
    pub drivers: Store<DynamicObject>,
    pub capabilities: Arc<RwLock<Capabilities>>,
    pub applied: children::AppliedLog,
    pub aws: Option<AwsStatusStore>,
    pub policy: policy::InstallPolicy,
    /// The driver's pods (container statuses), for PodsHealthy and the grace rules.
    pub pods: pods::PodWatch,
    /// The Secrets the driver in charge names (pull Secrets, static keys), metadata only.
    pub secrets: secrets::SecretWatch,
    /// The driver's RBAC the chart installs, each object watched by name.
    pub rbac: driver_rbac::RbacWatch,
    /// Set once the driver store and every child cache have their initial list: no decision
    /// (ownership, pruning, the deletion guard, who is in charge) is taken from a cache before.
    synced: Arc<AtomicBool>,
    failures: Mutex<HashMap<String, u32>>,
    /// Each driver's status as this process last wrote it, and when.
    status_log: status_log::StatusLog,
}

impl Context {
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn capabilities(&self) -> Capabilities {
        self.capabilities.read().map(|c| c.clone()).unwrap_or_default()
    }
}

pub fn driver_resource() -> ApiResource {
    ApiResource::erase::<HardenedCsiDriver>(&())
}

fn instance_ref(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<ObjectRef<DynamicObject>> {
    let labels = meta.labels.as_ref()?;
    if labels.get(LABEL_MANAGED_BY)? != MANAGER {
        return None;
    }
    Some(ObjectRef::new_with(labels.get(LABEL_INSTANCE)?, driver_resource()))
}

/// Everything `run` needs besides the client.
pub struct Options {
    pub metrics: Arc<Metrics>,
    /// Shared with the AWS poller: the reconciler tracks the driver in charge, the poller
    /// publishes its facts.
    pub aws: Option<AwsStatusStore>,
    /// Extra reconcile triggers (the AWS poller's result changes).
    pub triggers: Option<mpsc::Receiver<String>>,
    /// Set once every cache has synced.
    pub ready: Option<Readiness>,
    /// Completes when the operator should stop taking work.
    pub shutdown: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>>,
    pub reporter: String,
    /// The driver namespace and registry allowlist fixed at install time; the namespaced caches
    /// watch the driver namespace only.
    pub policy: policy::InstallPolicy,
    /// How often the Kubernetes version is re-discovered ([`DEFAULT_DISCOVERY_INTERVAL`]).
    pub discovery_interval: Duration,
}

/// The API server's Kubernetes (major, minor), from `/version`; None when it is not a version.
async fn kubernetes_version(client: &Client) -> Result<Option<(u32, u32)>, Error> {
    let info = client.apiserver_version().await.map_err(Error::Discovery)?;
    Ok(Capabilities::parse_version(&format!("{}.{}", info.major, info.minor))
        .or_else(|| Capabilities::parse_version(&info.git_version)))
}

/// Discovers the capabilities the render depends on.
pub async fn discover(client: &Client) -> Result<Capabilities, Error> {
    let version = kubernetes_version(client).await?.unwrap_or((1, 33));
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let snapshot_api = crds.get_metadata_opt(SNAPSHOT_CRD).await.map_err(Error::Discovery)?.is_some();
    let service_monitor_api = crds.get_metadata_opt(SERVICE_MONITOR_CRD).await.map_err(Error::Discovery)?.is_some();
    let volume_attributes_class_api = volume_attributes_class_api(client).await?;
    Ok(Capabilities {
        kubernetes_version: version,
        snapshot_api,
        service_monitor_api,
        volume_attributes_class_api,
        identity_secret_version: None,
        foreign_snapshot_stack: false,
    })
}

/// The storage.k8s.io version that serves VolumeAttributesClass (`v1`, else `v1beta1`), as
/// upstream's chart asks `.Capabilities.APIVersions`: from the API server's discovery.
pub async fn volume_attributes_class_api(client: &Client) -> Result<Option<&'static str>, Error> {
    for version in crate::render::VOLUME_ATTRIBUTES_CLASS_VERSIONS {
        match client.list_api_group_resources(&format!("storage.k8s.io/{version}")).await {
            Ok(list) if list.resources.iter().any(|r| r.name == "volumeattributesclasses") => return Ok(Some(version)),
            Ok(_) => {}
            // A group version the server does not serve at all.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::Discovery(e)),
        }
    }
    Ok(None)
}

/// Whether the API server serves `resource` in `group_version` (a group version it does not
/// serve at all is false).
async fn serves(client: &Client, group_version: &str, resource: &str) -> Result<bool, Error> {
    match client.list_api_group_resources(group_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == resource)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(Error::Discovery(e)),
    }
}

/// Runs the controller until `opts.shutdown` completes and in-flight reconciles finish.
pub async fn run(client: Client, opts: Options) -> Result<(), Error> {
    let caps = Arc::new(RwLock::new(discover(&client).await?));
    let hcd_ar = driver_resource();
    let drivers: Api<DynamicObject> = Api::all_with(client.clone(), &hcd_ar);
    let mut controller = Controller::new_with(drivers, watcher_config(), hcd_ar.clone());
    let drivers_store = controller.store();

    let label = format!("{LABEL_MANAGED_BY}={MANAGER}");
    // A child watch's error (the API server restarting, as in a control-plane upgrade) asks for
    // the Kubernetes version again.
    let watch_errors = Arc::new(tokio::sync::Notify::new());
    let mut caches = ChildCaches::default();
    let mut syncs: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
    let driver_ns = opts.policy.driver_namespace.clone();
    let (vac_api, snapshot_api, service_monitor_api) = caps
        .read()
        .map(|c| (c.volume_attributes_class_api, c.snapshot_api, c.service_monitor_api))
        .unwrap_or((None, false, false));
    // The snapshot API's CRD, watched by name: it decides what is rendered and gates the watch of
    // VolumeSnapshotClasses, which nothing serves without it.
    let (snapshot_gate, snapshot_crd_watch) = crd_gate(client.clone(), SNAPSHOT_CRD, snapshot_api);
    // The same for the Prometheus Operator's ServiceMonitors.
    let (service_monitor_gate, service_monitor_crd_watch) =
        crd_gate(client.clone(), SERVICE_MONITOR_CRD, service_monitor_api);
    // VolumeAttributesClasses are watched only while served (1.34 on, or v1beta1 where enabled);
    // a version change asks again.
    let (vac_gate_tx, vac_gate) = tokio::sync::watch::channel(vac_api.is_some());
    let mut vac_watched = String::new();
    for mut kind in child_kinds() {
        let is_vac = kind.resource.kind == VolumeAttributesClass::kind(&());
        if is_vac && let Some(version) = vac_api {
            // The cache reads the version the cluster serves (v1beta1 before 1.34, where enabled).
            kind.resource.version = version.to_string();
            kind.resource.api_version = format!("{}/{version}", kind.resource.group);
        }
        if is_vac {
            vac_watched = kind.resource.api_version.clone();
        }
        let gate = if is_vac {
            Some(vac_gate.clone())
        } else if kind.resource.group == VolumeSnapshotClass::group(&()) {
            Some(snapshot_gate.clone())
        } else if kind.optional_api() {
            // The ServiceMonitors.
            Some(service_monitor_gate.clone())
        } else {
            None
        };
        // A whole-kind cache holds foreign objects too (no label selector).
        let mut cfg = if kind.whole { watcher_config() } else { watcher_config().labels(&label) };
        // The one CSIDriver is watched by name, so RBAC can limit even the watch to it.
        if let Some(fields) = kind.field_selector() {
            cfg = cfg.fields(&fields);
        }
        let name = kind.resource.kind.clone();
        // The snapshot API's (and an unserved VolumeAttributesClass's) watch fails for as long as
        // the API is not installed: not a sign of an API server restart.
        let absent_api = kind.optional_api() || (is_vac && vac_api.is_none());
        let errors = (!absent_api).then(|| watch_errors.clone());
        let store = match kind.cached {
            Cached::Deployment => {
                let (reader, writer) = reflector::store::<Deployment>();
                let stream = reflector::reflector(writer, watcher(Api::namespaced(client.clone(), &driver_ns), cfg));
                let stream = quiet(stream.default_backoff().touched_objects(), errors);
                controller = controller.watches_stream(stream, |o| instance_ref(&o.metadata));
                syncs.push(Box::pin(synced_named(reader.clone(), name.clone())));
                KindStore::Deployment(reader)
            }
            Cached::DaemonSet => {
                let (reader, writer) = reflector::store::<DaemonSet>();
                let stream = reflector::reflector(writer, watcher(Api::namespaced(client.clone(), &driver_ns), cfg));
                let stream = quiet(stream.default_backoff().touched_objects(), errors);
                controller = controller.watches_stream(stream, |o| instance_ref(&o.metadata));
                syncs.push(Box::pin(synced_named(reader.clone(), name.clone())));
                KindStore::DaemonSet(reader)
            }
            Cached::Metadata => {
                let writer = reflector::store::Writer::<PartialObjectMeta<DynamicObject>>::new(kind.resource.clone());
                let reader = writer.as_reader();
                let api: Api<PartialObjectMeta<DynamicObject>> = if kind.namespaced {
                    Api::namespaced_with(client.clone(), &driver_ns, &kind.resource)
                } else {
                    Api::all_with(client.clone(), &kind.resource)
                };
                let watch = match gate {
                    Some(gate) => gated(gate, move || watcher(api.clone(), cfg.clone())).boxed(),
                    None => watcher(api, cfg).boxed(),
                };
                let trimmed = watch.modify(|o| caches::trim_meta(&mut o.metadata));
                let stream = reflector::reflector(writer, trimmed);
                controller = controller.watches_stream_with(
                    quiet(stream.default_backoff().touched_objects(), errors),
                    |o: PartialObjectMeta<DynamicObject>| instance_ref(&o.metadata),
                    kind.resource.clone(),
                );
                // The snapshot API and VolumeAttributesClass may be absent; their caches must not
                // hold up readiness.
                if !absent_api {
                    syncs.push(Box::pin(synced_named(reader.clone(), name.clone())));
                }
                KindStore::Meta(reader)
            }
        };
        caches.by_kind.insert(name, (kind, store));
    }

    let (all_tx, all_rx) = mpsc::channel::<()>(4);
    // The driver's RBAC objects, each watched by name: a change (an admin deleting a role)
    // re-checks every driver.
    let rbac = driver_rbac::RbacWatch::start(&client, &driver_ns, all_tx.clone());
    syncs.push(Box::pin(rbac.synced()));
    let capability_watch =
        follow_api_crd(snapshot_gate, SNAPSHOT_CRD, caps.clone(), all_tx.clone(), |c| &mut c.snapshot_api);
    let service_monitor_watch =
        follow_api_crd(service_monitor_gate, SERVICE_MONITOR_CRD, caps.clone(), all_tx.clone(), |c| {
            &mut c.service_monitor_api
        });
    let vac = (vac_gate_tx, vac_watched);
    let version_watch =
        rediscover_version(client.clone(), caps.clone(), all_tx, opts.discovery_interval, watch_errors.clone(), vac);
    controller = controller.reconcile_all_on(tokio_stream(all_rx));
    if let Some(rx) = opts.triggers {
        let ar = hcd_ar.clone();
        controller = controller.reconcile_on(tokio_stream(rx).map(move |name| ObjectRef::new_with(&name, ar.clone())));
    }

    let (pod_tx, pod_rx) = mpsc::channel::<String>(64);
    {
        let ar = hcd_ar.clone();
        controller =
            controller.reconcile_on(tokio_stream(pod_rx).map(move |name| ObjectRef::new_with(&name, ar.clone())));
    }
    let synced_flag = Arc::new(AtomicBool::new(false));
    let ctx = Arc::new(Context {
        pods: pods::PodWatch::new(client.clone(), pod_tx.clone()),
        secrets: secrets::SecretWatch::new(client.clone(), pod_tx),
        rbac,
        recorder: Recorder::new(
            client.clone(),
            Reporter { controller: MANAGER.into(), instance: Some(opts.reporter.clone()) },
        ),
        client,
        metrics: opts.metrics,
        caches,
        drivers: drivers_store.clone(),
        capabilities: caps,
        applied: Mutex::new(HashMap::new()),
        aws: opts.aws,
        policy: opts.policy,
        synced: synced_flag.clone(),
        failures: Mutex::new(HashMap::new()),
        status_log: status_log::StatusLog::default(),
    });

    {
        let (store, synced_flag, ready) = (drivers_store, synced_flag, opts.ready);
        tokio::spawn(async move {
            synced(&store).await;
            futures::future::join_all(syncs).await;
            synced_flag.store(true, Ordering::Release);
            if let Some(ready) = ready {
                ready.set_ready();
            }
            tracing::info!("caches synced; ready");
        });
    }

    let run = controller.graceful_shutdown_on(opts.shutdown).run(reconcile::reconcile, error_policy, ctx).for_each(
        |res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(driver = %obj.name, "reconciled"),
                // A watch of an API that is not installed (the snapshot API) retries with
                // backoff; that is expected, not worth a warning each time.
                Err(kube::runtime::controller::Error::QueueError(e)) => tracing::debug!(error = %e, "watch retrying"),
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
            }
        },
    );
    tokio::select! {
        _ = run => {}
        _ = capability_watch => {}
        _ = snapshot_crd_watch => {}
        _ = service_monitor_watch => {}
        _ = service_monitor_crd_watch => {}
        _ = version_watch => {}
    }
    Ok(())
}

/// Drops a child watch's errors before they reach the controller. The watch retries with its own
/// backoff; passed on, each error would also pause *every* trigger behind the controller's shared
/// trigger backoff (up to 30s), delaying unrelated reconciles. Each error wakes the version
/// re-discovery (`errors`).
fn quiet<T, S>(
    stream: S,
    errors: Option<Arc<tokio::sync::Notify>>,
) -> impl Stream<Item = Result<T, watcher::Error>> + Send
where
    S: Stream<Item = Result<T, watcher::Error>> + Send + 'static,
    T: Send + 'static,
{
    stream.filter(move |r| {
        if let Err(e) = r {
            tracing::debug!(error = %e, "child watch retrying");
            if let Some(errors) = &errors {
                errors.notify_one();
            }
        }
        futures::future::ready(r.is_ok())
    })
}

/// Asks the Kubernetes version again every `every` and after a watch error: when it changed (a
/// control-plane upgrade or downgrade), every driver re-renders for it, turning on or off what
/// the version decides (see `Capabilities`), without an operator restart. A new version also
/// asks whether VolumeAttributesClasses are served at `vac.1` (the group version the cache
/// watches), which opens or closes their watch (`vac.0`).
async fn rediscover_version(
    client: Client,
    caps: Arc<RwLock<Capabilities>>,
    all: mpsc::Sender<()>,
    every: Duration,
    watch_errors: Arc<tokio::sync::Notify>,
    vac: (tokio::sync::watch::Sender<bool>, String),
) {
    // A burst of watch errors (every watch fails while the API server restarts) asks once, and
    // at most once per `spacing`.
    let spacing = every.min(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every.saturating_sub(spacing)) => {}
            _ = watch_errors.notified() => {}
        }
        match kubernetes_version(&client).await {
            Ok(Some(version)) => {
                let before = caps.write().map(|mut c| std::mem::replace(&mut c.kubernetes_version, version)).ok();
                if let Some(before) = before
                    && before != version
                {
                    tracing::info!(
                        from = %format!("{}.{}", before.0, before.1),
                        to = %format!("{}.{}", version.0, version.1),
                        "Kubernetes version changed; re-rendering every driver"
                    );
                    match serves(&client, &vac.1, "volumeattributesclasses").await {
                        Ok(served) => {
                            vac.0.send_if_modified(|open| std::mem::replace(open, served) != served);
                        }
                        Err(e) => tracing::debug!(error = %e, "VolumeAttributesClass API not re-discovered"),
                    }
                    let _ = all.send(()).await;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "Kubernetes version not re-discovered; retrying later"),
        }
        tokio::time::sleep(spacing).await;
    }
}

async fn synced_named<K>(store: Store<K>, kind: String)
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    synced(&store).await;
    tracing::debug!(%kind, "cache synced");
}

/// Waits until a store has its initial list. kube's readiness signal wakes only the most recent
/// waiter, and the controller's own applier waits on the driver store too, so poll with a
/// timeout instead of parking on it once.
async fn synced<K>(store: &Store<K>)
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    while tokio::time::timeout(Duration::from_millis(50), store.wait_until_ready()).await.is_err() {}
}

fn tokio_stream<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Follows the CRD `crd` of an optional API (the snapshot API, ServiceMonitors), whose watch by
/// name (`crd_gate`) reports `present`: when it appears or goes, `flag` of the capabilities
/// follows and every driver re-renders.
async fn follow_api_crd(
    mut present: tokio::sync::watch::Receiver<bool>,
    crd: &'static str,
    caps: Arc<RwLock<Capabilities>>,
    all: mpsc::Sender<()>,
    flag: fn(&mut Capabilities) -> &mut bool,
) {
    while present.changed().await.is_ok() {
        let present = *present.borrow_and_update();
        let changed = caps.write().map(|mut c| std::mem::replace(flag(&mut c), present) != present).unwrap_or(false);
        if changed {
            tracing::info!(crd, present, "an optional API changed; re-rendering every driver");
            let _ = all.send(()).await;
        }
    }
}

/// Logs, counts and requeues. A conflict (someone wrote in between) is retried at once and a
/// 429 after its Retry-After; anything else backs off exponentially per object (1s .. 5m,
/// jittered), reset by the next success.
fn error_policy(obj: Arc<DynamicObject>, err: &Error, ctx: Arc<Context>) -> Action {
    let name = obj.name_any();
    ctx.metrics.count_reconcile(err.label());
    tracing::warn!(driver = %name, error = %err, "reconcile failed; retrying");
    let jitter = Duration::from_millis(fastrand::u64(0..250));
    match err.api_status() {
        Some((409, _)) => return Action::requeue(Duration::from_millis(200) + jitter),
        Some((429, retry_after)) => {
            return Action::requeue(Duration::from_secs(u64::from(retry_after.unwrap_or(1))) + jitter);
        }
        _ => {}
    }
    let n = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(name).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    let backoff =
        Duration::from_secs(1).saturating_mul(1u32 << n.min(9).saturating_sub(1)).min(Duration::from_secs(300));
    Action::requeue(backoff + jitter)
}
