//! The AWS poller: a background task, outside the watch-driven reconcile, that refreshes the
//! inventory of each driver the reconciler hands it, on its own jittered interval, publishes the
//! facts (`AwsStatus`) in `AwsStatusStore`, sets the inventory gauges, and asks for a reconcile
//! only when a result changed. It decides no condition: the reconciler derives AwsReachable and
//! AwsPermissions from the facts with the rest of the status.
//!
//! The reconciler is the only reader of HardenedCsiDriver objects: it parses and validates each
//! spec and `track`s the driver in charge (valid spec, inventory enabled) or `untrack`s it, so the
//! poller runs no watch of its own and never polls an invalid or inactive driver.
//!
//! The cluster side (PersistentVolumes, VolumeAttachments, Nodes, VolumeSnapshotContents) comes
//! from trimmed watches (`cluster::ClusterWatches`) the poller starts when it runs: after their
//! initial lists, a refresh costs no Kubernetes request, whatever the number of PVs.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::SharedHttpClient;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::{AwsApi, AwsError, ErrorClass, classify};
use super::cluster::ClusterWatches;
use super::inventory::{self, ClusterView, Memory, RefreshParams};
use super::metrics::AwsMetrics;
use super::sdk::{AwsSettings, CredentialSource, ProxySettings, RetryPolicy, SdkAws};
use crate::crd::{AwsStatus, CaBundle, HardenedCsiDriverSpec, RetagReport};
use crate::render::controller_deployment;

/// No refresh runs more often than this, whatever the spec says.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// Nor less often than this: the CRD bounds `spec.inventory.interval` to 24h, and the poller
/// clamps too, so a stored object that bypassed admission cannot overflow the clock arithmetic.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// A refresh that failed is retried after this, doubling with each failure in a row up to the
/// interval, instead of a whole interval later: the usual first failure is a new IRSA or Pod
/// Identity driver whose ServiceAccount the reconciler creates a moment after the first refresh.
/// Throttling is not retried sooner (more requests would not help).
pub const FAILURE_RETRY: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Shared {
    /// Drivers to poll, with the spec the reconciler parsed and validated.
    tracked: HashMap<String, HardenedCsiDriverSpec>,
    /// The published inventory of each driver.
    published: HashMap<String, AwsStatus>,
    /// What the driver's status said the retag applied, handed over by the reconciler: the values
    /// the operator set before a restart are still its own.
    retag_seeds: HashMap<String, RetagReport>,
}

/// What the reconciler and the poller share, by HardenedCsiDriver name: the drivers to poll
/// (written by the reconciler) and their published inventories (written by the poller). Cheap
/// to clone.
#[derive(Clone, Default)]
pub struct AwsStatusStore(Arc<RwLock<Shared>>);

impl AwsStatusStore {
    /// The published inventory of a driver.
    pub fn get(&self, name: &str) -> Option<AwsStatus> {
        self.0.read().ok()?.published.get(name).cloned()
    }

    /// Polls `name` with `spec` from now on (a changed spec takes effect on the poller's next tick).
    pub fn track(&self, name: &str, spec: &HardenedCsiDriverSpec) {
        if let Ok(mut s) = self.0.write()
            && s.tracked.get(name) != Some(spec)
        {
            s.tracked.insert(name.to_string(), spec.clone());
        }
    }

    /// Hands over what the driver's status says its last retag applied (`status.aws.retag`), once:
    /// after a restart the poller has no result of its own yet.
    pub fn remember_retag(&self, name: &str, retag: &RetagReport) {
        if let Ok(mut s) = self.0.write()
            && !s.retag_seeds.contains_key(name)
        {
            s.retag_seeds.insert(name.to_string(), retag.clone());
        }
    }

    fn retag_seed(&self, name: &str) -> Option<RetagReport> {
        self.0.read().ok()?.retag_seeds.get(name).cloned()
    }

    /// Stops polling `name`; its published inventory goes on the poller's next tick.
    pub fn untrack(&self, name: &str) {
        if let Ok(mut s) = self.0.write() {
            s.tracked.remove(name);
        }
    }

    fn tracked(&self) -> HashMap<String, HardenedCsiDriverSpec> {
        self.0.read().map(|s| s.tracked.clone()).unwrap_or_default()
    }

    fn set(&self, name: &str, status: AwsStatus) {
        if let Ok(mut s) = self.0.write() {
            s.published.insert(name.to_string(), status);
        }
    }

    fn remove(&self, name: &str) -> bool {
        self.0.write().map(|mut s| s.published.remove(name).is_some()).unwrap_or(false)
    }
}

/// Operator-wide AWS settings of the poller (flags of `run`).
#[derive(Clone)]
pub struct PollerSettings {
    /// Endpoint of every AWS service (`--aws-endpoint-url`).
    pub endpoint_url: Option<String>,
    /// Region when `spec.aws.region` is unset (`--aws-region`); else the SDK resolves it.
    pub default_region: Option<String>,
    /// The operator's own credentials (default chain in production; static keys with moto).
    pub credentials: CredentialSource,
    /// HTTP client override for tests.
    pub http_client: Option<SharedHttpClient>,
    pub retry: RetryPolicy,
    /// How often the poller looks for due refreshes and spec changes.
    pub tick: Duration,
    /// Floor of the refresh interval (MIN_INTERVAL; tests lower it).
    pub min_interval: Duration,
    /// The first retry of a failed refresh (FAILURE_RETRY; tests lower it). It doubles with each
    /// failure in a row, up to the refresh interval.
    pub failure_retry: Duration,
}

impl Default for PollerSettings {
    fn default() -> Self {
        Self {
            endpoint_url: None,
            default_region: None,
            credentials: CredentialSource::Default,
            http_client: None,
            retry: RetryPolicy::default(),
            tick: Duration::from_secs(5),
            min_interval: MIN_INTERVAL,
            failure_retry: FAILURE_RETRY,
        }
    }
}

/// Builds the `AwsApi` of one driver. The poller keeps it until the driver's AWS settings change,
/// so assumed-role credentials and connections are reused.
pub trait ApiFactory: Send + Sync {
    fn build<'a>(&'a self, spec: &'a HardenedCsiDriverSpec) -> BoxFuture<'a, Result<Arc<dyn AwsApi>, AwsError>>;
}

/// The production factory: the SDK, with IRSA probes as the driver's role.
pub struct SdkFactory {
    pub client: kube::Client,
    pub metrics: AwsMetrics,
    pub settings: PollerSettings,
}

impl SdkFactory {
    /// The SDK settings for a driver's spec.
    pub fn aws_settings(&self, spec: &HardenedCsiDriverSpec) -> AwsSettings {
        let credentials = match &spec.aws.identity.irsa {
            Some(irsa) => CredentialSource::WebIdentity {
                kube: self.client.clone(),
                namespace: spec.namespace.clone(),
                service_account: controller_deployment::SERVICE_ACCOUNT.to_string(),
                role_arn: irsa.role_arn.clone(),
            },
            None => match (&spec.aws.identity.pod_identity, &spec.aws.cluster_id) {
                (Some(_), Some(cluster)) if !cluster.is_empty() => CredentialSource::PodIdentity {
                    kube: self.client.clone(),
                    namespace: spec.namespace.clone(),
                    service_account: controller_deployment::SERVICE_ACCOUNT.to_string(),
                    cluster_name: cluster.clone(),
                    base: Box::new(self.settings.credentials.clone()),
                },
                // Secret keys are never read by the operator (and Pod Identity needs the cluster
                // name): the inventory runs with its own credentials, the preflight does not.
                _ => self.settings.credentials.clone(),
            },
        };
        AwsSettings {
            region: spec.aws.region.clone().or_else(|| self.settings.default_region.clone()),
            endpoint_url: self.settings.endpoint_url.clone(),
            ec2_endpoint: spec.aws.ec2_endpoint.clone(),
            sts_endpoint: spec.aws.sts_endpoint.clone(),
            kms_endpoint: spec.aws.kms_endpoint.clone(),
            fips: spec.fips,
            // The driver's proxy is the operator's too: both reach the same AWS endpoints.
            proxy: spec
                .proxy
                .http_proxy
                .as_ref()
                .map(|url| ProxySettings { url: url.clone(), no_proxy: spec.proxy.no_proxy.clone() }),
            ca_bundle: None,
            credentials,
            http_client: self.settings.http_client.clone(),
            retry: self.settings.retry,
            metrics: self.metrics.clone(),
            principal_label: Some(principal_label(spec).to_string()),
            not_verifiable: not_verifiable(spec),
        }
    }
}

impl ApiFactory for SdkFactory {
    fn build<'a>(&'a self, spec: &'a HardenedCsiDriverSpec) -> BoxFuture<'a, Result<Arc<dyn AwsApi>, AwsError>> {
        Box::pin(async move {
            let mut settings = self.aws_settings(spec);
            if let Some(b) = &spec.aws.ca_bundle {
                settings.ca_bundle = Some(read_ca_bundle(&self.client, &spec.namespace, b).await?);
            }
            let api = SdkAws::new(settings).await?;
            Ok(Arc::new(api) as Arc<dyn AwsApi>)
        })
    }
}

/// The PEM bundle `spec.aws.caBundle` names, read from its ConfigMap (one `get`, granted by name:
/// the chart value `aws.caBundleConfigMaps`).
async fn read_ca_bundle(client: &kube::Client, namespace: &str, bundle: &CaBundle) -> Result<Vec<u8>, AwsError> {
    let fail = |code: &str, message: String| {
        AwsError::new("ReadCaBundle", code, message, None).with_class(super::api::ErrorClass::Client)
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = match api.get(&bundle.name).await {
        Ok(cm) => cm,
        Err(kube::Error::Api(s)) if s.code == 404 => {
            return Err(fail(
                "NotFound",
                format!(
                    "ConfigMap {namespace}/{} (spec.aws.caBundle) not found: create it with the PEM bundle",
                    bundle.name
                ),
            ));
        }
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Err(fail(
                "Forbidden",
                format!(
                    "the operator may read only the CA-bundle ConfigMaps its installation names, and \
                    {namespace}/{name} is not one of them: add {name} to the chart value aws.caBundleConfigMaps \
                    (kustomize: the resourceNames of Role hardened-csi-operator-ca-bundles) or fix \
                    spec.aws.caBundle.name ({})",
                    s.message,
                    name = bundle.name
                ),
            ));
        }
        Err(e) => return Err(fail("ReadFailed", format!("ConfigMap {namespace}/{}: {e}", bundle.name))),
    };
    let text = cm.data.as_ref().and_then(|d| d.get(&bundle.key)).map(|t| t.as_bytes().to_vec());
    let bytes = text.or_else(|| cm.binary_data.as_ref().and_then(|d| d.get(&bundle.key)).map(|b| b.0.clone()));
    bytes.ok_or_else(|| {
        fail(
            "MissingKey",
            format!("ConfigMap {namespace}/{} has no key {:?} (spec.aws.caBundle.key)", bundle.name, bundle.key),
        )
    })
}

/// How the status names the credentials of a spec whose identity the operator cannot take.
fn principal_label(spec: &HardenedCsiDriverSpec) -> &'static str {
    let id = &spec.aws.identity;
    if id.secret_ref.is_some() {
        "static keys from a Secret (not read by the operator)"
    } else if id.pod_identity.is_some() {
        "EKS Pod Identity (no cluster name)"
    } else {
        "operator credentials"
    }
}

/// Why the driver's identity cannot be checked by the operator, and how to check it instead.
pub fn not_verifiable(spec: &HardenedCsiDriverSpec) -> Option<String> {
    let id = &spec.aws.identity;
    let region = spec.aws.region.as_deref().map(|r| format!(" --region {r}")).unwrap_or_default();
    let cluster = spec.aws.cluster_id.as_deref().map(|c| format!(" --cluster-id {c}")).unwrap_or_default();
    if let Some(secret) = &id.secret_ref {
        Some(format!(
            "the driver uses static keys from Secret {}/{}, which the operator never reads: verify them with \
                `AWS_ACCESS_KEY_ID=<{}> AWS_SECRET_ACCESS_KEY=<{}> hardened-csi-operator doctor{region}{cluster}` \
                (the Secret's {} and {} values)",
            spec.namespace, secret.name, secret.key_id, secret.access_key, secret.key_id, secret.access_key
        ))
    } else if id.pod_identity.is_some() && spec.aws.cluster_id.as_deref().is_none_or(str::is_empty) {
        Some(format!(
            "EKS Pod Identity is checked through the EKS Auth API, which needs the EKS cluster name: set \
                spec.aws.clusterId to it, or run `hardened-csi-operator doctor --service-account {}/{} \
                --cluster-id <name>{region}`",
            spec.namespace,
            controller_deployment::SERVICE_ACCOUNT
        ))
    } else {
        None
    }
}

pub use super::pv_watch::list_pv_references as pv_references;

/// `interval` jittered by ±10%, never below `min`; clamped to `MAX_INTERVAL` first, so the
/// multiplication cannot overflow.
pub fn jittered(interval: Duration, min: Duration) -> Duration {
    interval.min(MAX_INTERVAL).max(min).mul_f64(0.9 + fastrand::f64() * 0.2).max(min)
}

/// When the next refresh is due: `now` plus the jittered interval, or (should that not fit the
/// clock) the latest instant `MAX_INTERVAL` allows.
fn next_due(now: Instant, interval: Duration, min: Duration) -> Instant {
    now.checked_add(jittered(interval, min)).or_else(|| now.checked_add(MAX_INTERVAL)).unwrap_or(now)
}

/// The wait before retrying after `failures` failed refreshes in a row (1 or more):
/// `first` doubled per earlier failure, never beyond `interval`.
fn failure_backoff(failures: u32, first: Duration, interval: Duration) -> Duration {
    first.saturating_mul(1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX)).min(interval)
}

/// Whether a published result is a failure worth retrying before the interval: it failed, and not
/// because AWS throttled.
fn retry_sooner(status: &AwsStatus) -> bool {
    status.stale && status.last_error.as_deref().is_none_or(|code| classify(code, None) != ErrorClass::Throttled)
}

struct Entry {
    /// The spec parts the API client and the refresh depend on; a change rebuilds and refreshes.
    key: String,
    api: Option<Arc<dyn AwsApi>>,
    params: RefreshParams,
    interval: Duration,
    next: Instant,
    /// Failed refreshes in a row (retried sooner than the interval, see FAILURE_RETRY).
    failures: u32,
    /// First-seen times carried from one refresh to the next (detaching, disagreeing).
    memory: Memory,
}

/// The poller. Construct with `Poller::new`, run with `run(shutdown)` (on the leader only).
pub struct Poller {
    client: kube::Client,
    store: AwsStatusStore,
    metrics: AwsMetrics,
    triggers: mpsc::Sender<String>,
    factory: Arc<dyn ApiFactory>,
    settings: PollerSettings,
    /// Latest result per driver, published or not (the base of the next failure's stale status).
    latest: HashMap<String, AwsStatus>,
    entries: HashMap<String, Entry>,
    /// The cluster-side watches, started when the poller runs (on the leader).
    watches: Option<ClusterWatches>,
}

impl Poller {
    /// A poller on the AWS SDK. `triggers` receives the name of each HardenedCsiDriver whose
    /// inventory changed (the controller's `Options::triggers`).
    pub fn new(
        client: kube::Client,
        store: AwsStatusStore,
        metrics: AwsMetrics,
        triggers: mpsc::Sender<String>,
        settings: PollerSettings,
    ) -> Self {
        let factory =
            Arc::new(SdkFactory { client: client.clone(), metrics: metrics.clone(), settings: settings.clone() });
        Self::with_factory(client, store, metrics, triggers, settings, factory)
    }

    /// A poller with another source of `AwsApi` (tests, benchmarks).
    pub fn with_factory(
        client: kube::Client,
        store: AwsStatusStore,
        metrics: AwsMetrics,
        triggers: mpsc::Sender<String>,
        settings: PollerSettings,
        factory: Arc<dyn ApiFactory>,
    ) -> Self {
        Self {
            client,
            store,
            metrics,
            triggers,
            factory,
            settings,
            latest: HashMap::new(),
            entries: HashMap::new(),
            watches: None,
        }
    }

    /// Refreshes each tracked driver when due, until `shutdown` is cancelled. A refresh in
    /// flight at shutdown is abandoned (it publishes nothing).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let watches = ClusterWatches::start(self.client.clone());
        // The first refresh waits (briefly) for the PersistentVolumes, so it does not publish
        // "orphans not checked" only to correct it on the next interval.
        tokio::select! {
            _ = watches.wait_listed(Duration::from_secs(10)) => {}
            _ = shutdown.cancelled() => return,
        }
        self.watches = Some(watches);
        loop {
            self.pass(&shutdown).await;
            tokio::select! {
                _ = tokio::time::sleep(self.settings.tick) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        tracing::info!("AWS poller stopped");
    }

    /// One look at every tracked driver: drops the untracked and disabled, refreshes the due.
    async fn pass(&mut self, shutdown: &CancellationToken) {
        let mut wanted = self.store.tracked();
        wanted.retain(|_, spec| spec.inventory.enabled);
        let gone: Vec<String> = self.entries.keys().filter(|n| !wanted.contains_key(*n)).cloned().collect();
        for name in gone {
            self.entries.remove(&name);
            self.latest.remove(&name);
            if self.store.remove(&name) {
                self.trigger(&name, shutdown).await;
            }
        }
        let now = Instant::now();
        let mut due = Vec::new();
        for (name, spec) in &wanted {
            let key =
                serde_json::to_string(&(&spec.aws, spec.fips, &spec.namespace, &spec.inventory)).unwrap_or_default();
            let interval = spec.inventory.interval.get().max(self.settings.min_interval);
            let entry = self.entries.entry(name.clone()).or_insert_with(|| Entry {
                key: String::new(),
                api: None,
                params: RefreshParams::default(),
                interval,
                next: now,
                failures: 0,
                memory: Memory::default(),
            });
            if entry.key != key {
                entry.key = key;
                entry.api = None;
                entry.params = RefreshParams::from_spec(spec);
                entry.interval = interval;
                entry.next = now;
                entry.failures = 0;
                entry.memory = Memory::default();
            }
            if entry.next <= now {
                due.push(name.clone());
            }
        }
        if due.is_empty() {
            return;
        }
        due.sort();
        let cluster = self.watches.as_ref().map(ClusterWatches::view).unwrap_or_default();
        if cluster.pvs.is_none()
            && let Some(e) = self.watches.as_ref().and_then(|w| w.pvs.error())
        {
            tracing::warn!(error = %e, "the PersistentVolume watch has not listed; orphans not looked for");
        }
        for name in due {
            let Some(spec) = wanted.get(&name) else { continue };
            tokio::select! {
                _ = self.refresh_one(&name, spec, &cluster, shutdown) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn refresh_one(
        &mut self,
        name: &str,
        spec: &HardenedCsiDriverSpec,
        cluster: &ClusterView,
        shutdown: &CancellationToken,
    ) {
        let Some(entry) = self.entries.get_mut(name) else { return };
        entry.next = next_due(Instant::now(), entry.interval, self.settings.min_interval);
        let api = match &entry.api {
            Some(api) => api.clone(),
            None => match self.factory.build(spec).await {
                Ok(api) => {
                    entry.api = Some(api.clone());
                    api
                }
                Err(err) => {
                    tracing::warn!(driver = name, code = %err.code, "cannot build the AWS client: {}", err.message);
                    let mut status =
                        inventory::failed(self.latest.get(name), &entry.params, &err, jiff::Timestamp::now());
                    status.region = spec.aws.region.clone().or_else(|| self.settings.default_region.clone());
                    status.fips_endpoints = spec.fips;
                    self.schedule_after(name, &status);
                    self.publish(name, status, shutdown).await;
                    return;
                }
            },
        };
        let params = entry.params.clone();
        let mut memory = std::mem::take(&mut entry.memory);
        let mut previous = self.latest.get(name).cloned();
        if previous.as_ref().is_none_or(|p| p.retag.is_none())
            && let Some(seed) = self.store.retag_seed(name)
        {
            previous.get_or_insert_with(AwsStatus::default).retag = Some(seed);
        }
        let now = jiff::Timestamp::now();
        let status = inventory::refresh_with(api.as_ref(), &params, cluster, previous.as_ref(), &mut memory, now).await;
        if let Some(entry) = self.entries.get_mut(name) {
            entry.memory = memory;
        }
        self.schedule_after(name, &status);
        self.publish(name, status, shutdown).await;
    }

    /// After a refresh: a failure (other than throttling) brings the next one forward, to the
    /// backoff after the failures in a row; a success resets the count.
    fn schedule_after(&mut self, name: &str, status: &AwsStatus) {
        let Some(entry) = self.entries.get_mut(name) else { return };
        if !retry_sooner(status) {
            entry.failures = 0;
            return;
        }
        entry.failures = entry.failures.saturating_add(1);
        let wait = failure_backoff(entry.failures, self.settings.failure_retry, entry.interval);
        entry.next = entry.next.min(Instant::now() + wait);
    }

    /// Keeps the result, sets the gauges, and publishes (with a reconcile trigger) only a
    /// changed result.
    async fn publish(&mut self, name: &str, status: AwsStatus, shutdown: &CancellationToken) {
        self.metrics.set_inventory(&status);
        self.latest.insert(name.to_string(), status.clone());
        let changed = self.store.get(name).is_none_or(|old| !old.same_result(&status));
        if changed {
            self.store.set(name, status);
            self.trigger(name, shutdown).await;
        }
    }

    async fn trigger(&self, name: &str, shutdown: &CancellationToken) {
        tokio::select! {
            r = self.triggers.send(name.to_string()) => {
                if r.is_err() {
                    tracing::debug!(driver = name, "reconcile trigger channel closed");
                }
            }
            _ = shutdown.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent_and_above_the_floor() {
        for _ in 0..200 {
            let d = jittered(Duration::from_secs(300), MIN_INTERVAL);
            assert!(d >= Duration::from_secs(270) && d <= Duration::from_secs(330), "{d:?}");
            let d = jittered(Duration::from_secs(10), MIN_INTERVAL);
            assert!(d >= MIN_INTERVAL && d <= Duration::from_secs(66), "{d:?}");
            let d = jittered(Duration::from_secs(u64::MAX), MIN_INTERVAL);
            assert!(d <= MAX_INTERVAL.mul_f64(1.1), "{d:?}");
        }
    }

    #[test]
    fn failures_are_retried_sooner_doubling_up_to_the_interval() {
        let first = FAILURE_RETRY;
        let interval = Duration::from_secs(300);
        let waits: Vec<u64> = (1..=7).map(|n| failure_backoff(n, first, interval).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(failure_backoff(u32::MAX, first, interval), interval, "no overflow");
        let failed = |code: &str| AwsStatus { stale: true, last_error: Some(code.into()), ..AwsStatus::default() };
        assert!(retry_sooner(&failed("InvalidIdentityToken")));
        assert!(retry_sooner(&failed("Unavailable")));
        assert!(!retry_sooner(&failed("RequestLimitExceeded")), "throttling waits the interval");
        assert!(!retry_sooner(&AwsStatus::default()), "a success waits the interval");
    }

    #[test]
    fn next_due_never_overflows_the_clock() {
        let now = Instant::now();
        // What `interval: 3000000000000000h` parsed to would have been, had it got this far.
        let due = next_due(now, Duration::from_secs(3_000_000_000_000_000 * 3600 / 3600), MIN_INTERVAL);
        assert!(due > now && due <= now + MAX_INTERVAL.mul_f64(1.1), "{due:?}");
        let due = next_due(now, Duration::MAX, MIN_INTERVAL);
        assert!(due > now && due <= now + MAX_INTERVAL.mul_f64(1.1), "{due:?}");
    }
}
