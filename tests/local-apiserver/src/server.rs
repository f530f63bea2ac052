//! The state shared by every request handler and background task of one server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::counters::CounterSink;
use crate::faults::Faults;
use crate::registry::Registry;
use crate::store::Store;

pub struct Shared {
    pub kubernetes_version: String,
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
}

impl Shared {
    pub fn simulate(&self) -> bool {
        self.simulate_workloads.load(Ordering::Relaxed)
    }
}
