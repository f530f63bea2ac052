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
    /// The git commit the binary was built from (`REVISION` at build time, else `git rev-parse`).
    pub revision: String,
}

/// One condition of one driver: `name` is the HardenedCsiDriver (one series set per driver).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub name: String,
    pub r#type: String,
    pub status: String,
}

/// Requests of the operator's Kubernetes client, by HTTP method and answer code (`error` for a
/// request that got no answer).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KubeRequestLabels {
    pub method: String,
    pub code: String,
}

pub type KubeRequests = Family<KubeRequestLabels, Counter>;

/// Every metric the operator exports. Cheap to clone pieces out of; shared by `Arc` in the context.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub applies: Family<KindLabels, Counter>,
    pub aws: AwsMetrics,
    pub leader: Gauge,
    pub build_info: Family<BuildLabels, Gauge>,
    pub conditions: Family<ConditionLabels, Gauge>,
    pub kube_requests: KubeRequests,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The statuses a condition can have: each gets a series (1 for the current one, 0 for the
/// others), so `...{status="False"} == 1 for 15m` alerts and a flip is a change, not a gap.
const CONDITION_STATUSES: [&str; 3] = ["True", "False", "Unknown"];

impl Metrics {
    pub fn new() -> Self {
        let mut root = Registry::default();
        // The standard `process_*` families, unprefixed as every dashboard expects them.
        root.register_collector(Box::new(super::process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("hardened_csi_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register("reconciles", "Reconciles by result (ok or an error label)", reconciles.clone());
        let reconcile_duration = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        registry.register("reconcile_duration_seconds", "Time spent in one reconcile", reconcile_duration.clone());
        let applies = Family::<KindLabels, Counter>::default();
        registry.register("applies", "Server-side applies of children by kind", applies.clone());
        let aws = AwsMetrics::default();
        aws.register(registry);
        let leader = Gauge::default();
        registry.register("leader", "1 when this replica holds the leader lease", leader.clone());
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register("build_info", "Build information: version and git revision", build_info.clone());
        build_info
            .get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_string(), revision: revision() })
            .set(1);
        let conditions = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            "condition",
            "1 when the HardenedCsiDriver's condition of this type has this status, else 0",
            conditions.clone(),
        );
        let kube_requests = KubeRequests::default();
        registry.register(
            "kube_requests",
            "Kubernetes API requests of the operator by method and answer code",
            kube_requests.clone(),
        );
        Self {
            registry: root,
            reconciles,
            reconcile_duration,
            applies,
            aws,
            leader,
            build_info,
            conditions,
            kube_requests,
        }
    }

    pub fn count_reconcile(&self, result: &str) {
        self.reconciles.get_or_create(&ResultLabels { result: result.to_string() }).inc();
    }

    pub fn count_apply(&self, kind: &str) {
        self.applies.get_or_create(&KindLabels { kind: kind.to_string() }).inc();
    }

    /// The driver's conditions as gauges: one series per type and possible status.
    pub fn set_conditions<'a>(&self, name: &str, conditions: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (type_, status) in conditions {
            for s in CONDITION_STATUSES {
                let labels =
                    ConditionLabels { name: name.to_string(), r#type: type_.to_string(), status: s.to_string() };
                self.conditions.get_or_create(&labels).set(i64::from(s == status));
            }
        }
    }

    /// A deleted driver's condition series go away with it.
    pub fn forget_conditions(&self, name: &str, types: impl IntoIterator<Item = String>) {
        for type_ in types {
            for s in CONDITION_STATUSES {
                self.conditions.remove(&ConditionLabels {
                    name: name.to_string(),
                    r#type: type_.clone(),
                    status: s.to_string(),
                });
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// The git commit of this build, set by `build.rs`.
pub fn revision() -> String {
    option_env!("HCO_GIT_REVISION").filter(|r| !r.is_empty()).unwrap_or("unknown").to_string()
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
        assert!(text.contains(&format!("revision=\"{}\"", revision())), "{text}");
        assert!(text.contains("# TYPE process_resident_memory_bytes gauge"), "{text}");
        assert!(text.contains("# TYPE process_cpu_seconds counter") && text.contains("process_start_time_seconds "));
        assert_eq!(m.aws.requests_total(), 2);
        assert!(
            text.contains("hardened_csi_operator_aws_requests_total{operation=\"DescribeVolumes\",outcome=\"ok\"} 1")
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn condition_gauges_have_one_series_per_status_and_go_with_the_driver() {
        let m = Metrics::new();
        m.set_conditions("ebs", [("Ready", "False"), ("Degraded", "True")]);
        let text = m.encode();
        let series = |t: &str, s: &str, v: u8| {
            format!("hardened_csi_operator_condition{{name=\"ebs\",type=\"{t}\",status=\"{s}\"}} {v}")
        };
        for (t, s, v) in [("Ready", "False", 1), ("Ready", "True", 0), ("Ready", "Unknown", 0), ("Degraded", "True", 1)]
        {
            assert!(text.contains(&series(t, s, v)), "{text}");
        }
        m.set_conditions("ebs", [("Ready", "True")]);
        assert!(m.encode().contains(&series("Ready", "True", 1)) && m.encode().contains(&series("Ready", "False", 0)));
        m.forget_conditions("ebs", ["Ready".to_string(), "Degraded".to_string()]);
        assert!(!m.encode().contains("name=\"ebs\""));
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
