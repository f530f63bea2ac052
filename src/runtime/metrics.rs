//! Prometheus metrics of the operator: one registry, typed families, served on `/metrics`. The
//! AWS layer owns its families (`aws::metrics`); they are registered here beside the
//! reconciler's and the process's.
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

use crate::aws::metrics::AwsMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
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
    pub aws: AwsMetrics,
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
        let aws = AwsMetrics::default();
        aws.register(&mut registry);
        let leader = Gauge::default();
        registry.register("leader", "1 when this replica holds the leader lease", leader.clone());
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register("build_info", "Build information", build_info.clone());
        build_info.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_string() }).set(1);
        Self { registry, reconciles, reconcile_duration, applies, aws, leader, build_info }
    }

    pub fn count_reconcile(&self, result: &str) {
        self.reconciles.get_or_create(&ResultLabels { result: result.to_string() }).inc();
    }

    pub fn count_apply(&self, kind: &str) {
        self.applies.get_or_create(&KindLabels { kind: kind.to_string() }).inc();
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
        m.aws.count_request("DescribeVolumes", "ok");
        m.aws.count_request("DescribeVolumes", "throttled");
        let text = m.encode();
        assert!(text.contains("hardened_csi_operator_reconciles_total{result=\"ok\"} 1"), "{text}");
        assert!(text.contains("hardened_csi_operator_applies_total{kind=\"Deployment\"} 1"));
        assert!(text.contains("hardened_csi_operator_build_info{version=\""));
        assert_eq!(m.aws.requests_total(), 2);
        assert!(
            text.contains("hardened_csi_operator_aws_requests_total{operation=\"DescribeVolumes\",outcome=\"ok\"} 1")
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn aws_gauges_follow_the_inventory_and_zero_vanished_states() {
        let m = Metrics::new();
        let mut s = crate::crd::AwsStatus::default();
        s.volumes.by_state.insert("available".into(), 3);
        s.orphaned.count = 2;
        m.aws.set_inventory(&s);
        let text = m.encode();
        assert!(text.contains("ebs_volumes{state=\"available\"} 3"), "{text}");
        assert!(text.contains("ebs_orphaned_volumes 2"), "{text}");
        s.volumes.by_state.clear();
        m.aws.set_inventory(&s);
        assert!(m.encode().contains("ebs_volumes{state=\"available\"} 0"));
    }
}
