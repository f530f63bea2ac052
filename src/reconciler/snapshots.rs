//! The snapshot stack (`spec.snapshots.controller`): decides whose stack the cluster runs, applies
//! the snapshot.storage.k8s.io CRDs when the cluster has none, and checks version skew between
//! the CRDs, the snapshot-controller and the csi-snapshotter sidecar.
//!
//! - **Foreign**: a snapshot CRD not labelled as ours, a `snapshot-controller` Deployment in the
//!   driver namespace that is not ours, or a live `snapshot-controller-leader` Lease in another
//!   namespace (the leader election every external-snapshotter controller holds, wherever it
//!   runs) means another installation provides the stack: it is used, the operator renders no
//!   second controller and applies no CRD.
//! - **Ours**: the CRDs that are absent (or ours from another bundle) are applied, server-side,
//!   by name; the controller is rendered with the other children.
//! - The operator never deletes a snapshot CRD, not on a spec change and not on driver deletion:
//!   deleting one deletes every VolumeSnapshot or VolumeSnapshotContent with it, and its RBAC has
//!   no `delete` on CRDs. A disabled stack reports the CRDs as kept.
//!
//! The CRDs are external-snapshotter v8.6.0's `client/config/crd/` files, unchanged
//! (Apache-2.0, Copyright The Kubernetes Authors; see `snapshot_crds/NOTICE`), shipped in the
//! binary. The operator adds its labels and `csi.hardened.dev/snapshot-crd-bundle` when applying.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

use super::conditions::{SnapshotMode, SnapshotStack};
use super::error::Error;
use crate::render::{LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_PART_OF, MANAGER, PART_OF, snapshot_controller};

/// The external-snapshotter release whose CRDs are shipped.
pub const BUNDLE_VERSION: &str = "v8.6.0";
/// The bundle an applied CRD came from, written by the operator.
pub const BUNDLE_ANNOTATION: &str = "csi.hardened.dev/snapshot-crd-bundle";
/// The annotation some distributions put on the snapshot CRDs they ship.
pub const UPSTREAM_BUNDLE_ANNOTATION: &str = "snapshot.storage.kubernetes.io/bundle-version";
/// The API review an upstream CRD's schema was approved in: it changes when the schema does.
pub const API_APPROVED: &str = "api-approved.kubernetes.io";

/// The three snapshot.storage.k8s.io CRDs, by name (the CRD watch and RBAC use these names).
pub const CRD_NAMES: [&str; 3] = [
    "volumesnapshotclasses.snapshot.storage.k8s.io",
    "volumesnapshotcontents.snapshot.storage.k8s.io",
    "volumesnapshots.snapshot.storage.k8s.io",
];

const CRD_FILES: [&str; 3] = [
    include_str!("snapshot_crds/snapshot.storage.k8s.io_volumesnapshotclasses.yaml"),
    include_str!("snapshot_crds/snapshot.storage.k8s.io_volumesnapshotcontents.yaml"),
    include_str!("snapshot_crds/snapshot.storage.k8s.io_volumesnapshots.yaml"),
];

/// The shipped CRDs, parsed once, with the operator's labels and bundle annotation.
static SHIPPED: LazyLock<Vec<CustomResourceDefinition>> = LazyLock::new(|| {
    CRD_FILES
        .iter()
        .map(|text| {
            let mut crd: CustomResourceDefinition =
                serde_yaml_ng::from_str(text).expect("the shipped snapshot CRDs parse (a unit test checks it)");
            crd.metadata.labels = Some(BTreeMap::from([
                (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
                (LABEL_PART_OF.to_string(), PART_OF.to_string()),
            ]));
            crd.metadata.annotations.get_or_insert_default().insert(BUNDLE_ANNOTATION.into(), BUNDLE_VERSION.into());
            crd
        })
        .collect()
});

/// The shipped CRDs as the operator applies them.
pub fn shipped() -> &'static [CustomResourceDefinition] {
    &SHIPPED
}

fn ours(labels: &BTreeMap<String, String>) -> bool {
    labels.get(LABEL_MANAGED_BY).is_some_and(|m| m == MANAGER)
}

/// `8` of `v8.6.0`, `8.6.0`, `8.6.0-fips`, `dhi.io/snapshot-controller:8.6.0@sha256:...`.
pub fn major_of(version_or_image: &str) -> Option<u32> {
    let no_digest = version_or_image.split('@').next().unwrap_or_default();
    let tag = match no_digest.rsplit_once(':') {
        Some((_, t)) if !t.contains('/') => t,
        _ => no_digest,
    };
    tag.trim_start_matches('v').split('.').next()?.parse().ok()
}

/// The tag of an image reference, for messages.
fn tag_of(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or_default();
    no_digest.rsplit_once(':').map(|(_, t)| t).filter(|t| !t.contains('/')).unwrap_or("latest")
}

/// One reconcile's look at the snapshot stack, for a driver with the controller enabled: whose it
/// is (`SnapshotMode::Foreign`: nothing of ours is rendered or applied), the CRDs' bundles and
/// the version skew.
pub async fn observe(
    client: &Client,
    namespace: &str,
    driver: &str,
    snapshotter_image: &str,
    controller_image: &str,
) -> Result<SnapshotStack, Error> {
    // Five independent reads, sent together: one round trip of latency instead of five.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd_reads = futures::future::try_join_all(CRD_NAMES.map(|name| {
        let crds = crds.clone();
        async move {
            let meta = crds
                .get_metadata_opt(name)
                .await
                .map_err(|source| Error::Read { what: format!("CustomResourceDefinition/{name}"), source })?;
            Ok::<_, Error>((name, meta.map(|m| m.metadata)))
        }
    }));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment_read = async {
        deployments.get_opt(snapshot_controller::NAME).await.map_err(|source| Error::Read {
            what: format!("Deployment/{namespace}/{}", snapshot_controller::NAME),
            source,
        })
    };
    let leases: Api<Lease> = Api::all(client.clone());
    let lease_read = async {
        leases
            .list(&ListParams::default().fields(&format!("metadata.name={}", snapshot_controller::LEADER_LEASE)))
            .await
            .map_err(|source| Error::Read {
                what: format!("Leases {} (all namespaces)", snapshot_controller::LEADER_LEASE),
                source,
            })
    };
    let (present, deployment, held) = futures::try_join!(crd_reads, deployment_read, lease_read)?;

    let mut found = Vec::new();
    found.extend(elsewhere(&held.items, namespace, jiff::Timestamp::now()));
    for (name, meta) in &present {
        if let Some(m) = meta
            && !ours(m.labels.as_ref().unwrap_or(&BTreeMap::new()))
        {
            let by = m
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_MANAGED_BY))
                .map(|m| format!(" (managed by {m})"))
                .unwrap_or_default();
            found.push(format!("CustomResourceDefinition {name}{by}"));
        }
    }
    let foreign_controller = deployment
        .as_ref()
        .filter(|d| !(ours(d.labels()) && d.labels().get(LABEL_INSTANCE).is_some_and(|i| i == driver)));
    if let Some(d) = foreign_controller {
        let by = d.labels().get(LABEL_MANAGED_BY).map(|m| format!(" (managed by {m})")).unwrap_or_default();
        found.push(format!("Deployment {namespace}/{}{by}", d.name_any()));
    }
    let controller_running = match foreign_controller {
        Some(d) => deployment_image(d),
        None if found.is_empty() => Some(controller_image.to_string()),
        None => None,
    };
    let mut stack = SnapshotStack {
        mode: if found.is_empty() { SnapshotMode::Ours } else { SnapshotMode::Foreign(found) },
        controller_image: controller_running,
        snapshotter_image: snapshotter_image.to_string(),
        ..SnapshotStack::default()
    };
    // The CRDs' bundle: ours say it; a foreign one may (some distributions annotate it), or only
    // its API review, compared with the shipped CRD's.
    for (name, meta) in &present {
        let Some(m) = meta else { continue };
        let annotations = m.annotations.clone().unwrap_or_default();
        let bundle = annotations.get(BUNDLE_ANNOTATION).or_else(|| annotations.get(UPSTREAM_BUNDLE_ANNOTATION));
        if let Some(b) = bundle {
            stack.crd_bundles.push((name.to_string(), b.clone()));
        }
        let shipped = shipped().iter().find(|c| c.name_any() == *name);
        let want = shipped.and_then(|c| c.annotations().get(API_APPROVED).cloned());
        if bundle.is_none() && annotations.get(API_APPROVED) != want.as_ref() {
            stack.skew.push(format!(
                "CustomResourceDefinition {name} has another schema than external-snapshotter {BUNDLE_VERSION}'s \
                 ({API_APPROVED} {}, expected {})",
                annotations.get(API_APPROVED).map_or("unset", String::as_str),
                want.as_deref().unwrap_or("unset")
            ));
        }
    }
    stack.skew.extend(skew(&stack));
    Ok(stack)
}

/// A Lease held this long after its last renewal (and the lease duration) counts as a controller
/// that is gone: its leader no longer renews it.
pub const LEASE_GONE_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

/// The snapshot-controllers of other namespaces than the driver's, from the leader-election Leases
/// they hold (`snapshot-controller-leader`): held (a holder) and renewed within the lease duration
/// plus `LEASE_GONE_AFTER`. Ours holds the one in the driver namespace.
pub fn elsewhere(leases: &[Lease], namespace: &str, now: jiff::Timestamp) -> Vec<String> {
    let mut out: Vec<String> = leases
        .iter()
        .filter(|l| l.namespace().is_some_and(|ns| ns != namespace))
        .filter_map(|l| {
            let spec = l.spec.as_ref()?;
            let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty())?;
            let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
            let duration = std::time::Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(0) as u64);
            let limit = jiff::SignedDuration::try_from(duration + LEASE_GONE_AFTER).ok()?;
            (now.duration_since(renewed) <= limit).then(|| {
                format!(
                    "a snapshot-controller in namespace {} (leader {holder}, Lease {}/{})",
                    l.namespace().unwrap_or_default(),
                    l.namespace().unwrap_or_default(),
                    snapshot_controller::LEADER_LEASE
                )
            })
        })
        .collect();
    out.sort();
    out
}

/// The image of a Deployment's first container.
fn deployment_image(d: &Deployment) -> Option<String> {
    d.spec.template.spec.as_ref()?.containers.first()?.image.clone()
}

/// Major-version mismatches between the CRD bundle, the controller and the sidecar (the three
/// come from one external-snapshotter release, and v8's controller and sidecar need v8's CRDs).
fn skew(stack: &SnapshotStack) -> Vec<String> {
    let mut out = Vec::new();
    let sidecar = major_of(&stack.snapshotter_image);
    let controller = stack.controller_image.as_deref().and_then(major_of);
    if let (Some(s), Some(c), Some(image)) = (sidecar, controller, &stack.controller_image)
        && s != c
    {
        out.push(format!(
            "the snapshot-controller runs {} ({image}) but the csi-snapshotter sidecar {} ({}): use one \
             external-snapshotter release for both",
            tag_of(image),
            tag_of(&stack.snapshotter_image),
            stack.snapshotter_image
        ));
    }
    let want = sidecar.or(controller);
    for (name, bundle) in &stack.crd_bundles {
        if let (Some(w), Some(b)) = (want, major_of(bundle))
            && w != b
        {
            out.push(format!(
                "CustomResourceDefinition {name} is from external-snapshotter {bundle}, the controller and sidecar \
                 from v{w}: install that release's CRDs"
            ));
        }
    }
    out
}

/// Applies the shipped CRDs that are absent or ours from another bundle (server-side, by name);
/// returns the names applied. Never touches another installation's CRD.
pub async fn apply_crds(client: &Client, stack: &mut SnapshotStack) -> Vec<Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut errors = Vec::new();
    for crd in shipped() {
        let name = crd.name_any();
        let current = stack.crd_bundles.iter().find(|(n, _)| *n == name).map(|(_, b)| b.as_str());
        if current == Some(BUNDLE_VERSION) {
            continue;
        }
        match crds.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(crd)).await {
            Ok(_) => {
                stack.crds_applied.push(name.clone());
                stack.crd_bundles.retain(|(n, _)| *n != name);
                stack.crd_bundles.push((name, BUNDLE_VERSION.to_string()));
            }
            Err(source) => errors.push(Error::Apply { child: format!("CustomResourceDefinition/{name}"), source }),
        }
    }
    stack.skew = skew(stack);
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_crds_are_the_three_snapshot_crds_labelled_ours() {
        let names: Vec<String> = shipped().iter().map(ResourceExt::name_any).collect();
        assert_eq!(names, CRD_NAMES.map(String::from).to_vec());
        for c in shipped() {
            assert_eq!(c.spec.group, "snapshot.storage.k8s.io");
            assert!(c.spec.versions.iter().any(|v| v.name == "v1" && v.served && v.storage), "{}", c.name_any());
            assert!(ours(c.labels()));
            assert_eq!(c.annotations().get(BUNDLE_ANNOTATION).map(String::as_str), Some(BUNDLE_VERSION));
            assert!(c.annotations().contains_key(API_APPROVED));
        }
    }

    #[test]
    fn majors_parse_from_versions_and_images() {
        assert_eq!(major_of("v8.6.0"), Some(8));
        assert_eq!(major_of("8.6.0-fips"), Some(8));
        assert_eq!(major_of("dhi.io/snapshot-controller:8.6.0@sha256:abc"), Some(8));
        assert_eq!(major_of("registry.k8s.io/sig-storage/snapshot-controller:v6.3.3"), Some(6));
        assert_eq!(major_of("mirror.example:5000/dhi-snapshot-controller"), None);
    }

    #[test]
    fn skew_names_each_mismatch() {
        let stack = SnapshotStack {
            controller_image: Some("registry.k8s.io/sig-storage/snapshot-controller:v6.3.3".into()),
            snapshotter_image: "dhi.io/csi-snapshotter:8.6.0".into(),
            crd_bundles: vec![("volumesnapshots.snapshot.storage.k8s.io".into(), "v6.3.3".into())],
            ..SnapshotStack::default()
        };
        let s = skew(&stack);
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[0].contains("v6.3.3") && s[0].contains("8.6.0"), "{s:?}");
        assert!(s[1].contains("volumesnapshots.snapshot.storage.k8s.io"), "{s:?}");
        let matched = SnapshotStack {
            controller_image: Some("dhi.io/snapshot-controller:8.6.0".into()),
            snapshotter_image: "dhi.io/csi-snapshotter:8.6.0".into(),
            crd_bundles: vec![("volumesnapshots.snapshot.storage.k8s.io".into(), "v8.6.0".into())],
            ..SnapshotStack::default()
        };
        assert!(skew(&matched).is_empty());
    }
}
