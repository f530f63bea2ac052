//! The install-time guardrails a HardenedCsiDriver must satisfy before anything is applied: the
//! driver namespace the operator's RBAC was installed for, and the registries it may deploy
//! from. Writing a HardenedCsiDriver places privileged pods on every node, so these are settings
//! of whoever installed the operator (flags and chart values), not fields of the spec.

use crate::crd::HardenedCsiDriverSpec;

/// The default registry allowlist: Docker Hardened Images only.
pub const DEFAULT_REGISTRY: &str = "dhi.io";

/// The operator's install-time settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallPolicy {
    /// `run --driver-namespace` / chart value `driverNamespace`.
    pub driver_namespace: String,
    /// `run --allowed-registry` / chart value `allowedRegistries`: a registry host, or a host and
    /// path prefix (`mirror.example.com/dhi`).
    pub allowed_registries: Vec<String>,
}

impl Default for InstallPolicy {
    fn default() -> Self {
        Self { driver_namespace: "kube-system".into(), allowed_registries: vec![DEFAULT_REGISTRY.into()] }
    }
}

/// Whether `image_base` (registry, or mirror host and path) is `allowed` or below it.
fn under(image_base: &str, allowed: &str) -> bool {
    let allowed = allowed.trim_end_matches('/');
    image_base == allowed || image_base.strip_prefix(allowed).is_some_and(|rest| rest.starts_with('/'))
}

impl InstallPolicy {
    /// Every way `spec` leaves what this installation allows; each names the field and the setting
    /// to change. Empty: allowed.
    pub fn refusals(&self, spec: &HardenedCsiDriverSpec) -> Vec<String> {
        let mut out = Vec::new();
        if spec.namespace != self.driver_namespace {
            out.push(format!(
                "spec.namespace is {:?}, but this operator is installed for driver namespace {:?} (its RBAC \
                    grants nothing elsewhere): set spec.namespace: {}, or reinstall the operator with the chart \
                    value driverNamespace={} (run --driver-namespace)",
                spec.namespace, self.driver_namespace, self.driver_namespace, spec.namespace
            ));
        }
        let (field, base) = if spec.images.mirror.is_empty() {
            ("spec.images.registry", spec.images.registry.as_str())
        } else {
            ("spec.images.mirror", spec.images.mirror.as_str())
        };
        if !self.allowed_registries.iter().any(|a| under(base, a)) {
            out.push(format!(
                "{field} is {base:?}, which is not an allowed registry ({}): use one of those, or add it at install \
                    time with the chart value allowedRegistries (run --allowed-registry)",
                self.allowed_registries.join(", ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ns: &str, registry: &str, mirror: &str) -> HardenedCsiDriverSpec {
        let mut s: HardenedCsiDriverSpec = serde_json::from_value(serde_json::json!({
            "aws": {"region": "us-east-1", "clusterId": "c"}
        }))
        .expect("spec");
        s.namespace = ns.into();
        s.images.registry = registry.into();
        s.images.mirror = mirror.into();
        s
    }

    #[test]
    fn the_default_allows_dhi_in_kube_system_only() {
        let p = InstallPolicy::default();
        assert!(p.refusals(&spec("kube-system", "dhi.io", "")).is_empty());
        let r = p.refusals(&spec("storage", "dhi.io", ""));
        assert_eq!(r.len(), 1);
        assert!(r[0].contains("\"storage\"") && r[0].contains("\"kube-system\"") && r[0].contains("driverNamespace"));
        let r = p.refusals(&spec("kube-system", "dhi.io", "registry.example.com/dhi"));
        assert!(
            r[0].starts_with("spec.images.mirror is \"registry.example.com/dhi\"")
                && r[0].contains("allowedRegistries")
        );
        // A look-alike host is not under an allowed one.
        assert_eq!(p.refusals(&spec("kube-system", "dhi.io.evil.example", "")).len(), 1);
    }

    #[test]
    fn a_mirror_added_at_install_time_is_allowed_with_its_subpaths() {
        let p = InstallPolicy {
            driver_namespace: "storage".into(),
            allowed_registries: vec!["dhi.io".into(), "registry.example.com/dhi".into()],
        };
        assert!(p.refusals(&spec("storage", "dhi.io", "registry.example.com/dhi")).is_empty());
        assert!(p.refusals(&spec("storage", "dhi.io", "registry.example.com/dhi/team")).is_empty());
        assert_eq!(p.refusals(&spec("storage", "dhi.io", "registry.example.com/other")).len(), 1);
        assert_eq!(p.refusals(&spec("storage", "dhi.io", "registry.example.com/dhix")).len(), 1);
    }
}
