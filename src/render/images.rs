//! Image references: the release of `spec.version` (`crd::versions`) gives each role's DHI
//! repository, tag and known digest; the registry or mirror (`<mirror>/dhi-<repository>`), FIPS
//! variants (`-fips` tags, FIPS digests) and per-image overrides apply on top.

use crate::crd::versions::{self, Pinned, Release};
use crate::crd::{HardenedCsiDriverSpec, ImageRef, Images};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedImages {
    /// The release the images come from (`spec.version`, or the newest).
    pub version: String,
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

/// The release a spec selects; a version the table lacks is refused by validation first.
pub fn release(spec: &HardenedCsiDriverSpec) -> &'static Release {
    spec.version.as_deref().and_then(versions::release).unwrap_or(&versions::DEFAULT)
}

pub fn resolve(spec: &HardenedCsiDriverSpec) -> ResolvedImages {
    let i = &spec.images;
    let r = release(spec);
    let one = |o: &ImageRef, d: Pinned| image(i, o, d, spec.fips);
    ResolvedImages {
        version: r.version.to_string(),
        driver: one(&i.driver, r.driver),
        provisioner: one(&i.provisioner, r.provisioner),
        attacher: one(&i.attacher, r.attacher),
        snapshotter: one(&i.snapshotter, r.snapshotter),
        resizer: one(&i.resizer, r.resizer),
        liveness_probe: one(&i.liveness_probe, r.liveness_probe),
        node_driver_registrar: one(&i.node_driver_registrar, r.node_driver_registrar),
        version_label: label_value(&tag(&i.driver, r.driver, spec.fips)),
    }
}

/// An image outside the seven of `spec.images` (the snapshot-controller), from the same
/// registry or mirror with the same FIPS rule.
pub fn resolve_one(spec: &HardenedCsiDriverSpec, over: &ImageRef, default: Pinned) -> String {
    image(&spec.images, over, default, spec.fips)
}

fn tag(o: &ImageRef, default: Pinned, fips: bool) -> String {
    match &o.tag {
        Some(t) => t.clone(),
        None if fips => format!("{}-fips", default.tag),
        None => default.tag.to_string(),
    }
}

/// The digest: the spec's, else the release's for the release's own tag (an explicit tag is
/// another image, so the release's digest does not apply to it).
fn digest(o: &ImageRef, default: Pinned, fips: bool) -> Option<&str> {
    match o.digest.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => Some(d),
        None if o.tag.is_some() => None,
        None if fips => default.fips_digest,
        None => default.digest,
    }
}

fn image(images: &Images, o: &ImageRef, default: Pinned, fips: bool) -> String {
    let repository = o.repository.as_deref().unwrap_or(default.repository);
    let base = if images.mirror.is_empty() {
        format!("{}/{}", images.registry, repository)
    } else {
        format!("{}/dhi-{}", images.mirror, repository)
    };
    let mut out = format!("{base}:{}", tag(o, default, fips));
    if let Some(d) = digest(o, default, fips) {
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
    fn fips_suffixes_implicit_tags_and_keeps_explicit_ones() {
        let mut s = spec();
        s.fips = true;
        s.images.provisioner.tag = Some("6.3.0-debian13-fips".into());
        s.images.attacher.digest = Some(format!("sha256:{}", "a".repeat(64)));
        let r = resolve(&s);
        assert_eq!(r.driver, "dhi.io/aws-ebs-csi-driver:1.64.0-fips");
        assert_eq!(r.provisioner, "dhi.io/csi-provisioner:6.3.0-debian13-fips");
        assert_eq!(r.attacher, format!("dhi.io/csi-attacher:4.12.0-fips@sha256:{}", "a".repeat(64)));
        assert_eq!(r.version_label, "1.64.0-fips");
    }

    #[test]
    fn the_version_selects_every_image_of_its_release() {
        let mut s = spec();
        s.version = Some("1.62.0".into());
        let r = resolve(&s);
        assert_eq!(r.version, "1.62.0");
        assert_eq!(r.driver, "dhi.io/aws-ebs-csi-driver:1.62.0");
        assert_eq!(r.resizer, "dhi.io/csi-resizer:2.2.0");
        assert_eq!(r.version_label, "1.62.0");
        s.images.resizer.tag = Some("2.2.1".into());
        assert_eq!(resolve(&s).resizer, "dhi.io/csi-resizer:2.2.1", "a per-image tag still overrides");
        assert_eq!(resolve(&spec()).version, versions::DEFAULT.version);
    }

    #[test]
    fn a_release_digest_pins_only_the_release_tag() {
        let d = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
        let f = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
        let p = Pinned { repository: "csi-resizer", tag: "2.2.1", digest: Some(d), fips_digest: Some(f) };
        let images = Images::default();
        assert_eq!(image(&images, &ImageRef::default(), p, false), format!("dhi.io/csi-resizer:2.2.1@{d}"));
        assert_eq!(image(&images, &ImageRef::default(), p, true), format!("dhi.io/csi-resizer:2.2.1-fips@{f}"));
        let tagged = ImageRef { tag: Some("2.3.0".into()), ..ImageRef::default() };
        assert_eq!(image(&images, &tagged, p, false), "dhi.io/csi-resizer:2.3.0");
    }

    #[test]
    fn mirror_uses_dhi_prefix() {
        let mut s = spec();
        s.images.mirror = "registry.example.com/acme".into();
        assert_eq!(resolve(&s).resizer, "registry.example.com/acme/dhi-csi-resizer:2.2.1");
    }
}
