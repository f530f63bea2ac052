//! The state shared by every request handler and background task of one server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::counters::CounterSink;
use crate::faults::Faults;
use crate::registry::Registry;
use crate::store::Store;

pub struct Shared {
    /// What `/version` reports, e.g. "1.33" (changed at run time by `set_kubernetes_version`).
    pub kubernetes_version: std::sync::RwLock<String>,
    pub store: Store,
    pub registry: Registry,
    pub counters: CounterSink,
    pub faults: Faults,
    pub simulate_workloads: AtomicBool,
    /// Kubelet settings and image faults of the workload loop.
    pub workloads: crate::workloads::Config,
    /// Wakes the garbage collector / finalizer / namespace-deletion loop.
    pub gc_wake: Notify,
    pub bookmark_interval: Duration,
    pub port: std::sync::atomic::AtomicU16,
    /// Authentication, RBAC and the access audit (`auth`).
    pub auth: crate::auth::AuthState,
}

impl Shared {
    /// The Kubernetes version the server currently reports, e.g. "1.33".
    pub fn kubernetes_version(&self) -> String {
        self.kubernetes_version.read().map(|v| v.clone()).unwrap_or_default()
    }

    /// Changes the reported version and what is served with it (a control-plane upgrade or
    /// downgrade, without a restart). The version must be `MAJOR.MINOR` or `MAJOR.MINOR.PATCH`.
    pub fn set_kubernetes_version(&self, version: &str) -> Result<(), String> {
        let version = crate::discovery::parse_version(version)?;
        if let Ok(mut v) = self.kubernetes_version.write() {
            *v = version.clone();
        }
        if let Some(minor) = crate::registry::minor_of(&version) {
            self.registry.set_kubernetes_minor(minor);
        }
        Ok(())
    }

    pub fn simulate(&self) -> bool {
        self.simulate_workloads.load(Ordering::Relaxed)
    }
}
