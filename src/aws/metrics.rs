//! The AWS layer's Prometheus families: requests by operation and outcome, and the inventory
//! gauges. `runtime::metrics` registers them in the operator's one registry; label values are
//! fixed sets (operation names, outcomes, EC2 states), never user data.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::crd::AwsStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsLabels {
    pub operation: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

const VOLUME_STATES: [&str; 6] = ["creating", "available", "in-use", "deleting", "deleted", "error"];
const SNAPSHOT_STATES: [&str; 5] = ["pending", "completed", "error", "recoverable", "recovering"];

/// Cheap to clone: every family shares its storage with its clones.
#[derive(Clone, Debug, Default)]
pub struct AwsMetrics {
    pub requests: Family<AwsLabels, Counter>,
    pub volumes: Family<StateLabels, Gauge>,
    pub snapshots: Family<StateLabels, Gauge>,
    pub orphaned_volumes: Gauge,
    pub missing_permissions: Gauge,
}

impl AwsMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("aws_requests", "AWS API requests by operation and outcome", self.requests.clone());
        registry.register("ebs_volumes", "EBS volumes of this cluster's driver by state", self.volumes.clone());
        registry.register("ebs_snapshots", "EBS snapshots of this cluster's driver by state", self.snapshots.clone());
        registry.register(
            "ebs_orphaned_volumes",
            "Available volumes of this cluster that no PersistentVolume references",
            self.orphaned_volumes.clone(),
        );
        registry.register(
            "iam_missing_permissions",
            "EC2 actions the driver needs that its identity lacks",
            self.missing_permissions.clone(),
        );
    }

    pub fn count_request(&self, operation: &str, outcome: &str) {
        self.requests
            .get_or_create(&AwsLabels { operation: operation.to_string(), outcome: outcome.to_string() })
            .inc();
    }

    /// Total AWS requests counted so far, over every operation and outcome.
    pub fn requests_total(&self) -> u64 {
        let mut registry = Registry::default();
        registry.register("r", "", self.requests.clone());
        let mut text = String::new();
        // The family has no iterator; the encoded form is its public, stable view. Writing into a
        // String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text.lines()
            .filter(|l| l.starts_with("r_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Sets the inventory gauges from one driver's inventory; states that vanished read 0.
    pub fn set_inventory(&self, s: &AwsStatus) {
        for state in VOLUME_STATES.iter().map(|s| s.to_string()).chain(s.volumes.by_state.keys().cloned()) {
            let n = s.volumes.by_state.get(&state).copied().unwrap_or(0);
            self.volumes.get_or_create(&StateLabels { state }).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for state in SNAPSHOT_STATES.iter().map(|s| s.to_string()).chain(s.snapshots.by_state.keys().cloned()) {
            let n = s.snapshots.by_state.get(&state).copied().unwrap_or(0);
            self.snapshots.get_or_create(&StateLabels { state }).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.orphaned_volumes.set(i64::try_from(s.orphaned.count).unwrap_or(i64::MAX));
        self.missing_permissions.set(i64::try_from(s.permissions.missing.len()).unwrap_or(i64::MAX));
    }
}
