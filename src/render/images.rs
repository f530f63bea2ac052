//! Image references: DHI defaults per role, registry or mirror (`<mirror>/dhi-<repository>`),
//! digest pinning and FIPS variants (`-fips` tag suffix unless a tag or digest is explicit).

use crate::crd::{HardenedCsiDriverSpec, ImageRef, Images};

/// Default repository and tag of each role (DHI catalog, matching upstream chart 2.64.0).
pub const DRIVER: (&str, &str) = ("aws-ebs-csi-driver", "1.64.0");
pub const PROVISIONER: (&str, &str) = ("csi-provisioner", "6.3.0");
pub const ATTACHER: (&str, &str) = ("csi-attacher", "4.12.0");
pub const SNAPSHOTTER: (&str, &str) = ("csi-snapshotter", "8.6.0");
pub const RESIZER: (&str, &str) = ("csi-resizer", "2.2.1");
pub const LIVENESS_PROBE: (&str, &str) = ("livenessprobe", "2.19.0");
pub const NODE_DRIVER_REGISTRAR: (&str, &str) = ("csi-node-driver-registrar", "2.17.0");

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedImages {
    pub driver: String,
    pub provisioner: String,
    pub attacher: String,
    pub snapshotter: String,
    pub resizer: String,
    pub liveness_probe: String,
    pub node_driver_registrar: String,
    /// The driver's tag, as the `app.kubernetes.io/version` label.
    pub version_label: String,
}

pub fn resolve(spec: &HardenedCsiDriverSpec) -> ResolvedImages {
    let i = &spec.images;
    let one = |r: &ImageRef, d: (&str, &str)| image(i, r, d, spec.fips);
    ResolvedImages {
        driver: one(&i.driver, DRIVER),
        provisioner: one(&i.provisioner, PROVISIONER),
        attacher: one(&i.attacher, ATTACHER),
        snapshotter: one(&i.snapshotter, SNAPSHOTTER),
        resizer: one(&i.resizer, RESIZER),
        liveness_probe: one(&i.liveness_probe, LIVENESS_PROBE),
        node_driver_registrar: one(&i.node_driver_registrar, NODE_DRIVER_REGISTRAR),
        version_label: label_value(&tag(&i.driver, DRIVER, spec.fips)),
    }
}

fn tag(r: &ImageRef, default: (&str, &str), fips: bool) -> String {
    match (&r.tag, r.digest.as_deref().filter(|d| !d.is_empty())) {
        (Some(t), _) => t.clone(),
        (None, Some(_)) => default.1.to_string(),
        (None, None) if fips => format!("{}-fips", default.1),
        (None, None) => default.1.to_string(),
    }
}

fn image(images: &Images, r: &ImageRef, default: (&str, &str), fips: bool) -> String {
    let repository = r.repository.as_deref().unwrap_or(default.0);
    let base = if images.mirror.is_empty() {
        format!("{}/{}", images.registry, repository)
    } else {
        format!("{}/dhi-{}", images.mirror, repository)
    };
    let mut out = format!("{base}:{}", tag(r, default, fips));
    if let Some(d) = r.digest.as_deref().filter(|d| !d.is_empty()) {
        out.push('@');
        out.push_str(d);
    }
    out
}

/// Label values allow at most 63 of `[A-Za-z0-9._-]`, starting and ending alphanumeric.
fn label_value(s: &str) -> String {
    let v: String = s.chars().filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).take(63).collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HardenedCsiDriverSpec {
        HardenedCsiDriverSpec::default()
    }

    #[test]
    fn defaults_come_from_dhi() {
        let r = resolve(&spec());
        assert_eq!(r.driver, "dhi.io/aws-ebs-csi-driver:1.64.0");
        assert_eq!(r.node_driver_registrar, "dhi.io/csi-node-driver-registrar:2.17.0");
        assert_eq!(r.version_label, "1.64.0");
    }

    #[test]
    fn fips_suffixes_only_implicit_tags() {
        let mut s = spec();
        s.fips = true;
        s.images.provisioner.tag = Some("6.3.0-custom".into());
        s.images.attacher.digest = Some(format!("sha256:{}", "a".repeat(64)));
        let r = resolve(&s);
        assert_eq!(r.driver, "dhi.io/aws-ebs-csi-driver:1.64.0-fips");
        assert_eq!(r.provisioner, "dhi.io/csi-provisioner:6.3.0-custom");
        assert_eq!(r.attacher, format!("dhi.io/csi-attacher:4.12.0@sha256:{}", "a".repeat(64)));
        assert_eq!(r.version_label, "1.64.0-fips");
    }

    #[test]
    fn mirror_uses_dhi_prefix() {
        let mut s = spec();
        s.images.mirror = "registry.example.com/acme".into();
        assert_eq!(resolve(&s).resizer, "registry.example.com/acme/dhi-csi-resizer:2.2.1");
    }
}
