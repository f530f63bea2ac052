//! The AWS poller: a background task, outside the watch-driven reconcile, that refreshes the
//! inventory of every HardenedCsiDriver with `spec.inventory.enabled` on its own jittered
//! interval, keeps the results in `AwsStatusStore` (read by the reconciler through `AwsView`),
//! sets the inventory gauges, and asks for a reconcile only when a result changed.
//!
//! PersistentVolumes are listed in full, not as metadata: whether a PV belongs to the EBS driver
//! (`spec.csi.driver`) and which volume it points at (`spec.csi.volumeHandle`) live in its spec,
//! and no field selector reaches them. The list is paged (500 a page) and reduced at once to a
//! set of names and volume ids, so memory stays proportional to the number of EBS PVs.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::SharedHttpClient;
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::{AwsApi, AwsError};
use super::inventory::{self, PvReferences, RefreshParams};
use super::sdk::{AwsSettings, CredentialSource, RetryPolicy, SdkAws};
use super::status::AwsStatus;
use super::{CONTROLLER_SERVICE_ACCOUNT, DRIVER_NAME};
use crate::controller::{AwsView, Cond};
use crate::crd::HardenedCsiDriverSpec;
use crate::metrics::{Metrics, StateLabels};

pub const AWS_REACHABLE: &str = "AwsReachable";
pub const AWS_PERMISSIONS: &str = "AwsPermissions";
/// No refresh runs more often than this, whatever the spec says.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
const VOLUME_STATES: [&str; 6] = ["creating", "available", "in-use", "deleting", "deleted", "error"];
const SNAPSHOT_STATES: [&str; 5] = ["pending", "completed", "error", "recoverable", "recovering"];

/// The published inventory of each driver, by HardenedCsiDriver name. Cheap to clone.
#[derive(Clone, Default)]
pub struct AwsStatusStore(Arc<RwLock<HashMap<String, AwsStatus>>>);

impl AwsStatusStore {
    pub fn get(&self, name: &str) -> Option<AwsStatus> {
        self.0.read().ok()?.get(name).cloned()
    }

    fn set(&self, name: &str, status: AwsStatus) {
        if let Ok(mut m) = self.0.write() {
            m.insert(name.to_string(), status);
        }
    }

    fn remove(&self, name: &str) -> bool {
        self.0.write().map(|mut m| m.remove(name).is_some()).unwrap_or(false)
    }

    pub fn names(&self) -> Vec<String> {
        self.0.read().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }
}

impl AwsView for AwsStatusStore {
    fn status(&self, name: &str) -> Option<AwsStatus> {
        self.get(name)
    }

    fn conditions(&self, name: &str) -> Vec<Cond> {
        self.get(name).map(|s| conditions(&s)).unwrap_or_default()
    }
}

/// `AwsReachable` and `AwsPermissions` from an inventory, with messages that say what to do.
/// Messages carry no timestamps that move while the answer stays the same.
pub fn conditions(s: &AwsStatus) -> Vec<Cond> {
    let mut out = Vec::with_capacity(2);
    out.push(match &s.last_error {
        None if s.last_success_at.is_some() => Cond::new(
            AWS_REACHABLE,
            true,
            "Reachable",
            format!(
                "AWS answered ({}, region {}): {} volumes, {} snapshots, {} orphaned.",
                s.scope,
                s.region.as_deref().unwrap_or("?"),
                s.volumes.count,
                s.snapshots.count,
                s.orphaned.count
            ),
        ),
        None => Cond::unknown(AWS_REACHABLE, "NotChecked", "AWS has not been asked yet."),
        Some(code) => {
            let since = match &s.last_success_at {
                Some(t) => format!("the figures in status.aws are from {t} and marked stale"),
                None => "there are no figures yet".to_string(),
            };
            let detail = s.last_error_message.as_deref().unwrap_or("");
            Cond::new(
                AWS_REACHABLE,
                false,
                reachable_reason(code),
                format!("The last AWS check failed with {code} ({detail}); {since}. {}", hint(code)),
            )
        }
    });
    let p = &s.permissions;
    let who = if p.principal.is_empty() { "the probed identity".to_string() } else { p.principal.clone() };
    out.push(if p.checked.is_empty() {
        Cond::unknown(AWS_PERMISSIONS, "NotChecked", "The driver's IAM permissions have not been probed yet (see AwsReachable).")
    } else if !p.missing.is_empty() {
        Cond::new(
            AWS_PERMISSIONS,
            false,
            "MissingPermissions",
            format!(
                "{who} lacks {}. Grant them to the driver's IAM role (the AWS managed policy AmazonEBSCSIDriverPolicy has all of them); volumes cannot be provisioned, attached or snapshotted reliably until then.",
                p.missing.join(", ")
            ),
        )
    } else if !p.unverified.is_empty() {
        let list: Vec<&str> = p.unverified.iter().map(|u| u.action.as_str()).collect();
        Cond::unknown(
            AWS_PERMISSIONS,
            "PartlyVerified",
            format!("{who} has every probed action; {} could not be decided ({}).", list.join(", "), p.unverified[0].reason),
        )
    } else {
        Cond::new(AWS_PERMISSIONS, true, "AllGranted", format!("{who} has all {} EC2 actions the driver needs.", p.checked.len()))
    });
    out
}

fn reachable_reason(code: &str) -> &'static str {
    match super::api::classify(code, None) {
        super::api::ErrorClass::Throttled => "Throttled",
        super::api::ErrorClass::Denied => "AccessDenied",
        super::api::ErrorClass::Credentials => "CredentialsFailed",
        super::api::ErrorClass::Server => "AwsServerError",
        super::api::ErrorClass::Transport => "Unreachable",
        super::api::ErrorClass::Client => "AwsError",
    }
}

fn hint(code: &str) -> &'static str {
    match code {
        "ServiceAccountToken" => {
            "The operator requests a token for the driver's service account (audience sts.amazonaws.com) to check the IRSA role: give it `create` on serviceaccounts/token in the driver namespace, and make sure the service account exists."
        }
        "InvalidIdentityToken" | "IDPRejectedClaim" | "IDPCommunicationError" => {
            "STS rejected the service account token: check the cluster's OIDC provider is registered in IAM and the role's trust policy allows system:serviceaccount:<namespace>:ebs-csi-controller-sa with audience sts.amazonaws.com."
        }
        "AccessDenied" | "UnauthorizedOperation" => {
            "The identity may not make this call: grant it (AmazonEBSCSIDriverPolicy), or for IRSA check the role's trust policy names the driver's service account."
        }
        "NoCredentials" | "InvalidClientTokenId" | "AuthFailure" | "ExpiredToken" | "SignatureDoesNotMatch" => {
            "The operator has no valid AWS credentials: give its own service account an IAM role (IRSA or EKS Pod Identity)."
        }
        "MissingRegion" => "Set spec.aws.region (or run the operator with --aws-region).",
        _ if super::api::classify(code, None) == super::api::ErrorClass::Throttled => {
            "EC2 is throttling this account; the operator backs off and tries again on its next interval."
        }
        _ if super::api::classify(code, None) == super::api::ErrorClass::Transport => {
            "Check network access from the operator to the EC2 endpoint (VPC endpoints, proxies, spec.aws.ec2Endpoint)."
        }
        _ => "The operator tries again on its next interval.",
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
    pub metrics: Arc<Metrics>,
    pub settings: PollerSettings,
}

impl SdkFactory {
    /// The SDK settings for a driver's spec.
    pub fn aws_settings(&self, spec: &HardenedCsiDriverSpec) -> AwsSettings {
        let credentials = match &spec.aws.identity.irsa {
            Some(irsa) => CredentialSource::WebIdentity {
                kube: self.client.clone(),
                namespace: spec.namespace.clone(),
                service_account: CONTROLLER_SERVICE_ACCOUNT.to_string(),
                role_arn: irsa.role_arn.clone(),
            },
            // Pod Identity and Secret keys cannot be assumed by the operator (it never reads
            // secret data): it probes with its own credentials and says so.
            None => self.settings.credentials.clone(),
        };
        AwsSettings {
            region: spec.aws.region.clone().or_else(|| self.settings.default_region.clone()),
            endpoint_url: self.settings.endpoint_url.clone(),
            ec2_endpoint: spec.aws.ec2_endpoint.clone(),
            fips: spec.fips,
            credentials,
            http_client: self.settings.http_client.clone(),
            retry: self.settings.retry,
            metrics: self.metrics.clone(),
            principal_label: Some(principal_label(spec).to_string()),
        }
    }
}

impl ApiFactory for SdkFactory {
    fn build<'a>(&'a self, spec: &'a HardenedCsiDriverSpec) -> BoxFuture<'a, Result<Arc<dyn AwsApi>, AwsError>> {
        Box::pin(async move {
            let api = SdkAws::new(self.aws_settings(spec)).await?;
            Ok(Arc::new(api) as Arc<dyn AwsApi>)
        })
    }
}

/// Whose permissions a non-IRSA spec gets probed with.
fn principal_label(spec: &HardenedCsiDriverSpec) -> &'static str {
    let id = &spec.aws.identity;
    if id.secret_ref.is_some() {
        "operator credentials (the driver uses keys from a Secret, which the operator does not read)"
    } else if id.pod_identity.is_some() {
        "operator credentials (the driver uses EKS Pod Identity, whose role the operator cannot assume)"
    } else {
        "operator credentials"
    }
}

/// Lists the references that keep volumes from being orphans: names and volume handles of every
/// PersistentVolume of `ebs.csi.aws.com`, paged.
pub async fn pv_references(client: &kube::Client) -> Result<PvReferences, kube::Error> {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let mut refs = PvReferences::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let list = api.list(&params).await?;
        for pv in &list.items {
            let Some(csi) = pv.spec.as_ref().and_then(|s| s.csi.as_ref()) else { continue };
            if csi.driver != DRIVER_NAME {
                continue;
            }
            if let Some(name) = &pv.metadata.name {
                refs.insert(name.clone());
            }
            refs.insert(csi.volume_handle.clone());
        }
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => params = params.continue_token(&c),
            None => break,
        }
    }
    Ok(refs)
}

/// `interval` jittered by ±10%, never below `min`.
pub fn jittered(interval: Duration, min: Duration) -> Duration {
    interval.max(min).mul_f64(0.9 + fastrand::f64() * 0.2).max(min)
}

struct Entry {
    /// The spec parts the API client and the refresh depend on; a change rebuilds and refreshes.
    key: String,
    api: Option<Arc<dyn AwsApi>>,
    params: RefreshParams,
    interval: Duration,
    next: Instant,
}

/// Whether the reconciler marked this driver `Active=False` (another driver is in charge).
fn is_inactive(obj: &DynamicObject) -> bool {
    obj.data
        .pointer("/status/conditions")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == crate::controller::status::ACTIVE && c["status"] == "False"))
}

/// The poller. Construct with `Poller::new`, run with `run(shutdown)` (on the leader only).
pub struct Poller {
    client: kube::Client,
    store: AwsStatusStore,
    metrics: Arc<Metrics>,
    triggers: mpsc::Sender<String>,
    factory: Arc<dyn ApiFactory>,
    settings: PollerSettings,
    /// Latest result per driver, published or not (the base of the next failure's stale status).
    latest: HashMap<String, AwsStatus>,
    entries: HashMap<String, Entry>,
}

impl Poller {
    /// A poller on the AWS SDK. `triggers` receives the name of each HardenedCsiDriver whose
    /// inventory changed (the controller's `Options::triggers`).
    pub fn new(
        client: kube::Client,
        store: AwsStatusStore,
        metrics: Arc<Metrics>,
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
        metrics: Arc<Metrics>,
        triggers: mpsc::Sender<String>,
        settings: PollerSettings,
        factory: Arc<dyn ApiFactory>,
    ) -> Self {
        Self { client, store, metrics, triggers, factory, settings, latest: HashMap::new(), entries: HashMap::new() }
    }

    /// Watches HardenedCsiDriver objects and refreshes each enabled one when due, until
    /// `shutdown` is cancelled. A refresh in flight at shutdown is abandoned (it writes nothing).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let resource = crate::controller::driver_resource();
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
        let writer = reflector::store::Writer::<DynamicObject>::new(resource);
        let reader = writer.as_reader();
        let watch = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .for_each(|_| async {});
        let work = async {
            tokio::select! {
                _ = reader.wait_until_ready() => {}
                _ = shutdown.cancelled() => return,
            }
            loop {
                self.pass(&reader, &shutdown).await;
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.tick) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        tokio::select! {
            _ = watch => tracing::warn!("HardenedCsiDriver watch of the AWS poller ended"),
            _ = work => {}
        }
        tracing::info!("AWS poller stopped");
    }

    /// One look at every driver: drops the gone and disabled, refreshes the due.
    async fn pass(&mut self, reader: &Store<DynamicObject>, shutdown: &CancellationToken) {
        let mut wanted: HashMap<String, HardenedCsiDriverSpec> = HashMap::new();
        for obj in reader.state() {
            let Some(name) = obj.metadata.name.clone() else { continue };
            // A second driver is not in charge of anything: polling it would only double the calls.
            if is_inactive(&obj) {
                continue;
            }
            // A stored object that bypassed validation is skipped here; the reconciler reports it.
            let spec = obj.data.get("spec").cloned().unwrap_or_default();
            match serde_json::from_value::<HardenedCsiDriverSpec>(spec) {
                Ok(spec) if spec.inventory.enabled => {
                    wanted.insert(name, spec);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(driver = %name, error = %e, "AWS poller skips a driver whose spec does not parse")
                }
            }
        }
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
            let interval = crate::crd::validate::parse_duration(&spec.inventory.interval)
                .unwrap_or(DEFAULT_INTERVAL)
                .max(self.settings.min_interval);
            let entry = self.entries.entry(name.clone()).or_insert_with(|| Entry {
                key: String::new(),
                api: None,
                params: RefreshParams::default(),
                interval,
                next: now,
            });
            if entry.key != key {
                entry.key = key;
                entry.api = None;
                entry.params = RefreshParams::from_spec(spec);
                entry.interval = interval;
                entry.next = now;
            }
            if entry.next <= now {
                due.push(name.clone());
            }
        }
        if due.is_empty() {
            return;
        }
        due.sort();
        let pvs = match pv_references(&self.client).await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "listing PersistentVolumes failed; orphans are not looked for this time");
                None
            }
        };
        for name in due {
            let Some(spec) = wanted.get(&name) else { continue };
            tokio::select! {
                _ = self.refresh_one(&name, spec, pvs.as_ref(), shutdown) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn refresh_one(
        &mut self,
        name: &str,
        spec: &HardenedCsiDriverSpec,
        pvs: Option<&PvReferences>,
        shutdown: &CancellationToken,
    ) {
        let Some(entry) = self.entries.get_mut(name) else { return };
        entry.next = Instant::now() + jittered(entry.interval, self.settings.min_interval);
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
                    self.publish(name, status, shutdown).await;
                    return;
                }
            },
        };
        let params = entry.params.clone();
        let previous = self.latest.get(name).cloned();
        let status = inventory::refresh(api.as_ref(), &params, pvs, previous.as_ref(), jiff::Timestamp::now()).await;
        self.publish(name, status, shutdown).await;
    }

    /// Keeps the result, sets the gauges, and publishes (with a reconcile trigger) only a
    /// changed result.
    async fn publish(&mut self, name: &str, status: AwsStatus, shutdown: &CancellationToken) {
        set_gauges(&self.metrics, &status);
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

/// Sets the inventory gauges from one driver's inventory.
pub fn set_gauges(metrics: &Metrics, s: &AwsStatus) {
    for state in VOLUME_STATES.iter().map(|s| s.to_string()).chain(s.volumes.by_state.keys().cloned()) {
        let n = s.volumes.by_state.get(&state).copied().unwrap_or(0);
        metrics.volumes.get_or_create(&StateLabels { state }).set(n as i64);
    }
    for state in SNAPSHOT_STATES.iter().map(|s| s.to_string()).chain(s.snapshots.by_state.keys().cloned()) {
        let n = s.snapshots.by_state.get(&state).copied().unwrap_or(0);
        metrics.snapshots.get_or_create(&StateLabels { state }).set(n as i64);
    }
    metrics.orphaned_volumes.set(s.orphaned.count as i64);
    metrics.missing_permissions.set(s.permissions.missing.len() as i64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::status::{PermissionReport, UnverifiedAction};

    #[test]
    fn only_drivers_marked_inactive_are_skipped() {
        let driver = |conditions: serde_json::Value| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "csi.hardened.dev/v1alpha1", "kind": "HardenedCsiDriver",
                "metadata": {"name": "d"}, "spec": {}, "status": {"conditions": conditions}
            }))
            .expect("driver")
        };
        assert!(is_inactive(&driver(serde_json::json!([{"type": "Active", "status": "False"}]))));
        assert!(!is_inactive(&driver(serde_json::json!([{"type": "Active", "status": "True"}]))));
        assert!(!is_inactive(&driver(serde_json::json!([{"type": "Ready", "status": "False"}]))));
        assert!(!is_inactive(&driver(serde_json::json!([]))));
    }

    fn ok_status() -> AwsStatus {
        AwsStatus {
            last_success_at: Some("2026-01-01T00:00:00Z".into()),
            scope: "cluster prod".into(),
            region: Some("us-east-1".into()),
            permissions: PermissionReport {
                principal: "operator credentials".into(),
                checked: vec!["ec2:CreateVolume".into(), "ec2:DeleteVolume".into()],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn conditions_say_reachable_and_granted() {
        let c = conditions(&ok_status());
        assert_eq!((c[0].type_, c[0].status, c[0].reason.as_str()), (AWS_REACHABLE, "True", "Reachable"));
        assert_eq!((c[1].type_, c[1].status, c[1].reason.as_str()), (AWS_PERMISSIONS, "True", "AllGranted"));
    }

    #[test]
    fn conditions_name_missing_actions_and_the_failure() {
        let mut s = ok_status();
        s.permissions.missing = vec!["ec2:DeleteVolume".into()];
        s.last_error = Some("RequestLimitExceeded".into());
        s.last_error_message = Some("DescribeVolumes: Request limit exceeded.".into());
        s.stale = true;
        let c = conditions(&s);
        assert_eq!((c[0].status, c[0].reason.as_str()), ("False", "Throttled"));
        assert!(c[0].message.contains("RequestLimitExceeded") && c[0].message.contains("stale"), "{}", c[0].message);
        assert_eq!((c[1].status, c[1].reason.as_str()), ("False", "MissingPermissions"));
        assert!(
            c[1].message.contains("ec2:DeleteVolume") && c[1].message.contains("operator credentials"),
            "{}",
            c[1].message
        );
    }

    #[test]
    fn conditions_before_any_answer_and_with_unverified_actions() {
        let c = conditions(&AwsStatus::default());
        assert_eq!((c[0].status, c[1].status), ("Unknown", "Unknown"));
        let mut s = ok_status();
        s.permissions.unverified =
            vec![UnverifiedAction { action: "ec2:AttachVolume".into(), reason: "no instance".into() }];
        let c = conditions(&s);
        assert_eq!((c[1].status, c[1].reason.as_str()), ("Unknown", "PartlyVerified"));
        let mut s = ok_status();
        s.last_error = Some("ServiceAccountToken".into());
        let c = conditions(&s);
        assert_eq!(c[0].reason, "CredentialsFailed");
        assert!(c[0].message.contains("serviceaccounts/token"), "{}", c[0].message);
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_above_the_floor() {
        for _ in 0..200 {
            let d = jittered(Duration::from_secs(300), MIN_INTERVAL);
            assert!(d >= Duration::from_secs(270) && d <= Duration::from_secs(330), "{d:?}");
            let d = jittered(Duration::from_secs(10), MIN_INTERVAL);
            assert!(d >= MIN_INTERVAL && d <= Duration::from_secs(66), "{d:?}");
        }
    }

    #[test]
    fn gauges_follow_the_inventory_and_zero_vanished_states() {
        let m = Metrics::new();
        let mut s = ok_status();
        s.volumes.by_state.insert("available".into(), 3);
        s.orphaned.count = 2;
        set_gauges(&m, &s);
        let text = m.encode();
        assert!(text.contains("ebs_volumes{state=\"available\"} 3"), "{text}");
        assert!(text.contains("ebs_orphaned_volumes 2"), "{text}");
        s.volumes.by_state.clear();
        set_gauges(&m, &s);
        assert!(m.encode().contains("ebs_volumes{state=\"available\"} 0"));
    }
}
