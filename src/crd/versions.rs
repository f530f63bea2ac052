//! The driver releases the operator knows, in one table: `spec.version` picks a row, and the row
//! names the driver image and the six sidecar images that release was tested with (the pairing
//! of the upstream Helm chart of that release), plus the snapshot-controller of the matching
//! external-snapshotter release. A new release is one new row here (and nothing else): the CRD's
//! `spec.version` enum, the validation, the renderer, `render --list-versions` and the docs'
//! table all read this.
//!
//! Tags are the Docker Hardened Images tags: the upstream version without its `v` (and without
//! upstream's `-eksbuild.N`, an ECR rebuild number). Digests are listed only where known; an
//! image without one is pulled by tag unless the spec pins it.

/// One image of a release: its DHI repository and tag, and the digests known for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pinned {
    pub repository: &'static str,
    pub tag: &'static str,
    /// Digest of the standard image (`sha256:...`), when known.
    pub digest: Option<&'static str>,
    /// Digest of the FIPS variant (`<tag>-fips`), when known. In FIPS mode a digest given in the
    /// spec without a `-fips` tag must be one of these.
    pub fips_digest: Option<&'static str>,
}

const fn pinned(repository: &'static str, tag: &'static str) -> Pinned {
    Pinned { repository, tag, digest: None, fips_digest: None }
}

/// One driver release and the images it runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    /// The driver version, what `spec.version` says.
    pub version: &'static str,
    /// Where the pairing comes from.
    pub source: &'static str,
    pub driver: Pinned,
    pub provisioner: Pinned,
    pub attacher: Pinned,
    pub snapshotter: Pinned,
    pub resizer: Pinned,
    pub liveness_probe: Pinned,
    pub node_driver_registrar: Pinned,
    /// The snapshot-controller of the external-snapshotter release whose csi-snapshotter this
    /// release runs (the snapshot CRDs the operator ships are that release's).
    pub snapshot_controller: Pinned,
}

impl Release {
    /// The images by their field name under `spec.images` (the six sidecars after the driver).
    pub fn images(&self) -> [(&'static str, Pinned); 7] {
        [
            ("driver", self.driver),
            ("provisioner", self.provisioner),
            ("attacher", self.attacher),
            ("snapshotter", self.snapshotter),
            ("resizer", self.resizer),
            ("livenessProbe", self.liveness_probe),
            ("nodeDriverRegistrar", self.node_driver_registrar),
        ]
    }
}

/// Every release, oldest first; the last is the default. Pairings from the upstream chart's
/// `values.yaml` at each release commit of kubernetes-sigs/aws-ebs-csi-driver
/// (`charts/aws-ebs-csi-driver`, `sidecars.*.image.tag`).
pub const RELEASES: &[Release] = &[
    Release {
        version: "1.62.0",
        source: "aws-ebs-csi-driver chart 2.62.0 (commit 79213cd1)",
        driver: pinned("aws-ebs-csi-driver", "1.62.0"),
        provisioner: pinned("csi-provisioner", "6.3.0"),
        attacher: pinned("csi-attacher", "4.12.0"),
        snapshotter: pinned("csi-snapshotter", "8.6.0"),
        resizer: pinned("csi-resizer", "2.2.0"),
        liveness_probe: pinned("livenessprobe", "2.19.0"),
        node_driver_registrar: pinned("csi-node-driver-registrar", "2.17.0"),
        snapshot_controller: pinned("snapshot-controller", "8.6.0"),
    },
    Release {
        version: "1.63.1",
        source: "aws-ebs-csi-driver chart 2.63.1 (commit 22df05a4)",
        driver: pinned("aws-ebs-csi-driver", "1.63.1"),
        provisioner: pinned("csi-provisioner", "6.3.0"),
        attacher: pinned("csi-attacher", "4.12.0"),
        snapshotter: pinned("csi-snapshotter", "8.6.0"),
        resizer: pinned("csi-resizer", "2.2.1"),
        liveness_probe: pinned("livenessprobe", "2.19.0"),
        node_driver_registrar: pinned("csi-node-driver-registrar", "2.17.0"),
        snapshot_controller: pinned("snapshot-controller", "8.6.0"),
    },
    Release {
        version: "1.64.0",
        source: "aws-ebs-csi-driver chart 2.64.0 (commit 180b8827)",
        driver: pinned("aws-ebs-csi-driver", "1.64.0"),
        provisioner: pinned("csi-provisioner", "6.3.0"),
        attacher: pinned("csi-attacher", "4.12.0"),
        snapshotter: pinned("csi-snapshotter", "8.6.0"),
        resizer: pinned("csi-resizer", "2.2.1"),
        liveness_probe: pinned("livenessprobe", "2.19.0"),
        node_driver_registrar: pinned("csi-node-driver-registrar", "2.17.0"),
        snapshot_controller: pinned("snapshot-controller", "8.6.0"),
    },
];

/// The release used when `spec.version` is unset: the newest.
pub const DEFAULT: Release = RELEASES[RELEASES.len() - 1];

/// The versions of `RELEASES`, in order: the CRD's enum of `spec.version`.
pub const VERSIONS: [&str; RELEASES.len()] = {
    let mut out = [""; RELEASES.len()];
    let mut i = 0;
    while i < RELEASES.len() {
        out[i] = RELEASES[i].version;
        i += 1;
    }
    out
};

/// The release of a version, if the table has it.
pub fn release(version: &str) -> Option<&'static Release> {
    RELEASES.iter().find(|r| r.version == version)
}

/// Whether `digest` is a known FIPS image of `role` (a `spec.images` field name) in any release.
pub fn is_fips_digest(role: &str, digest: &str) -> bool {
    RELEASES.iter().any(|r| r.images().iter().any(|(n, p)| *n == role && p.fips_digest == Some(digest)))
}

/// Whether a tag names a FIPS variant (`1.64.0-fips`, `1.64.0-debian13-fips`, `...-fips-dev`).
pub fn is_fips_tag(tag: &str) -> bool {
    tag.split('-').any(|part| part == "fips")
}

/// The table as `render --list-versions` prints it: one row per release, default marked.
pub fn table() -> String {
    let header = [
        "VERSION",
        "DRIVER",
        "PROVISIONER",
        "ATTACHER",
        "SNAPSHOTTER",
        "RESIZER",
        "LIVENESSPROBE",
        "REGISTRAR",
        "SNAPSHOT-CONTROLLER",
        "SOURCE",
    ];
    let cell = |p: &Pinned| match p.digest {
        Some(d) => format!("{}@{d}", p.tag),
        None => p.tag.to_string(),
    };
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in RELEASES {
        let version = if r.version == DEFAULT.version { format!("{} (default)", r.version) } else { r.version.into() };
        let mut row = vec![version];
        row.extend(r.images().iter().map(|(_, p)| cell(p)));
        row.push(cell(&r.snapshot_controller));
        row.push(r.source.to_string());
        rows.push(row);
    }
    let widths: Vec<usize> = (0..header.len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_unique_ascending_and_the_default_is_the_newest() {
        let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().expect("numeric version")).collect() };
        for pair in RELEASES.windows(2) {
            assert!(parse(pair[0].version) < parse(pair[1].version), "{} before {}", pair[0].version, pair[1].version);
        }
        assert_eq!(DEFAULT.version, "1.64.0");
        assert_eq!(VERSIONS, ["1.62.0", "1.63.1", "1.64.0"]);
    }

    #[test]
    fn every_row_is_well_formed() {
        for r in RELEASES {
            assert_eq!(r.driver.tag, r.version, "the driver tag is the release version");
            for (role, p) in r.images().iter().chain([("snapshotController", r.snapshot_controller)].iter()) {
                assert!(!p.tag.starts_with('v') && !is_fips_tag(p.tag), "{} {role}: {}", r.version, p.tag);
                for d in [p.digest, p.fips_digest].into_iter().flatten() {
                    let hex = d.strip_prefix("sha256:").unwrap_or_default();
                    assert!(hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()), "{} {role}: {d}", r.version);
                }
            }
        }
    }

    #[test]
    fn fips_tags() {
        for t in ["1.64.0-fips", "1.64.0-debian13-fips", "1.64.0-fips-dev"] {
            assert!(is_fips_tag(t), "{t}");
        }
        for t in ["1.64.0", "1.64.0-fipsy", "fips1.64", "1.64.0-dev"] {
            assert!(!is_fips_tag(t), "{t}");
        }
    }

    #[test]
    fn the_list_names_every_release() {
        let t = table();
        assert!(t.starts_with("VERSION"), "{t}");
        for r in RELEASES {
            assert!(t.contains(r.version) && t.contains(r.source), "{t}");
        }
        assert!(t.contains("1.64.0 (default)"), "{t}");
        assert!(t.contains("2.2.0") && t.contains("2.2.1"), "the resizer differs between releases: {t}");
    }
}
