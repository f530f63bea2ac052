//! Prometheus metrics of the operator: one registry, typed families, served on `/metrics`.
//!
//! Label values are small fixed sets (kinds, results, AWS operation names), never user data,
//! so the series count stays bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsLabels {
    pub operation: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

/// Every metric the operator exports. Cheap to clone pieces out of; shared by `Arc` in the context.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub applies: Family<KindLabels, Counter>,
    pub aws_requests: Family<AwsLabels, Counter>,
    pub volumes: Family<StateLabels, Gauge>,
    pub snapshots: Family<StateLabels, Gauge>,
    pub orphaned_volumes: Gauge,
    pub missing_permissions: Gauge,
    pub leader: Gauge,
    pub build_info: Family<BuildLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hardened_csi_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register("reconciles", "Reconciles by result (ok or an error label)", reconciles.clone());
        let reconcile_duration = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        registry.register("reconcile_duration_seconds", "Time spent in one reconcile", reconcile_duration.clone());
        let applies = Family::<KindLabels, Counter>::default();
        registry.register("applies", "Server-side applies of children by kind", applies.clone());
        let aws_requests = Family::<AwsLabels, Counter>::default();
        registry.register("aws_requests", "AWS API requests by operation and outcome", aws_requests.clone());
        let volumes = Family::<StateLabels, Gauge>::default();
        registry.register("ebs_volumes", "EBS volumes of this cluster's driver by state", volumes.clone());
        let snapshots = Family::<StateLabels, Gauge>::default();
        registry.register("ebs_snapshots", "EBS snapshots of this cluster's driver by state", snapshots.clone());
        let orphaned_volumes = Gauge::default();
        registry.register(
            "ebs_orphaned_volumes",
            "Available volumes of this cluster that no PersistentVolume references",
            orphaned_volumes.clone(),
        );
        let missing_permissions = Gauge::default();
        registry.register(
            "iam_missing_permissions",
            "EC2 actions the driver needs that its identity lacks",
            missing_permissions.clone(),
        );
        let leader = Gauge::default();
        registry.register("leader", "1 when this replica holds the leader lease", leader.clone());
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register("build_info", "Build information", build_info.clone());
        build_info.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_string() }).set(1);
        Self {
            registry,
            reconciles,
            reconcile_duration,
            applies,
            aws_requests,
            volumes,
            snapshots,
            orphaned_volumes,
            missing_permissions,
            leader,
            build_info,
        }
    }

    pub fn count_reconcile(&self, result: &str) {
        self.reconciles.get_or_create(&ResultLabels { result: result.to_string() }).inc();
    }

    pub fn count_apply(&self, kind: &str) {
        self.applies.get_or_create(&KindLabels { kind: kind.to_string() }).inc();
    }

    pub fn count_aws_request(&self, operation: &str, outcome: &str) {
        self.aws_requests
            .get_or_create(&AwsLabels { operation: operation.to_string(), outcome: outcome.to_string() })
            .inc();
    }

    /// Total AWS requests counted so far, over every operation and outcome.
    pub fn aws_requests_total(&self) -> u64 {
        let mut text = String::new();
        // The family has no iterator; the encoded form is the public, stable view of it.
        let _ = encode(&mut text, &self.registry);
        text.lines()
            .filter(|l| l.starts_with("hardened_csi_operator_aws_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_family_and_counts() {
        let m = Metrics::new();
        m.count_reconcile("ok");
        m.count_apply("Deployment");
        m.count_aws_request("DescribeVolumes", "ok");
        m.count_aws_request("DescribeVolumes", "throttled");
        let text = m.encode();
        assert!(text.contains("hardened_csi_operator_reconciles_total{result=\"ok\"} 1"), "{text}");
        assert!(text.contains("hardened_csi_operator_applies_total{kind=\"Deployment\"} 1"));
        assert!(text.contains("hardened_csi_operator_build_info{version=\""));
        assert_eq!(m.aws_requests_total(), 2);
        assert!(text.ends_with("# EOF\n"));
    }
}
