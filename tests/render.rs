//! Rendering tests: snapshots of whole renders, parity with the upstream chart's manifests, and
//! every validation rule (Rust and the CRD's CEL) naming its field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use hardened_csi_operator::crd::{HardenedCsiDriver, parse};
use hardened_csi_operator::render::{self, Capabilities, Child};
use kube::ResourceExt;
use serde_json::{Value, json};

fn hcd(spec_yaml: &str) -> HardenedCsiDriver {
    let doc = format!(
        "apiVersion: csi.hardened.dev/v1alpha1\nkind: HardenedCsiDriver\nmetadata:\n  name: ebs\nspec:\n{}",
        indent(spec_yaml)
    );
    parse::from_yaml(&doc).unwrap_or_else(|e| panic!("test spec does not parse: {e}\n{doc}"))
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

fn render_yaml(spec_yaml: &str, caps: &Capabilities) -> String {
    let children = render::render(&hcd(spec_yaml), caps).expect("spec renders");
    render::to_yaml(&children)
}

const IRSA: &str = "aws:\n  region: us-east-1\n  clusterId: prod-eks\n  identity:\n    irsa: {roleArn: \
    \"arn:aws:iam::111122223333:role/ebs-csi\"}\n  extraTags: {team: storage, env: prod}\n";

#[test]
fn snapshots() {
    let caps = Capabilities::default();
    let cases: &[(&str, &str, Capabilities)] = &[
        ("defaults", "{}", caps.clone()),
        ("fips", "fips: true\naws: {region: us-gov-west-1, clusterId: gov}\n", caps.clone()),
        (
            "mirror_digest",
            &format!(
                "images:\n  mirror: registry.example.com/acme\n  pullSecrets: [dhi-pull, mirror-pull]\n  pullPolicy: \
                    Always\n  driver: {{tag: \"1.64.0\", digest: \"sha256:{}\"}}\n  provisioner: {{digest: \
                    \"sha256:{}\"}}\n",
                "a".repeat(64),
                "b".repeat(64)
            ),
            caps.clone(),
        ),
        ("irsa", IRSA, caps.clone()),
        ("pod_identity", "aws:\n  region: eu-west-1\n  identity: {podIdentity: {}}\n", caps.clone()),
        (
            "static_secret",
            "aws:\n  region: eu-west-1\n  identity: {secretRef: {name: aws-creds}}\n  ec2Endpoint: \
                https://ec2.eu-west-1.amazonaws.com\nproxy: {httpProxy: \"http://proxy.internal:3128\", noProxy: \
                \"169.254.169.254,10.0.0.0/8\"}\n",
            caps.clone(),
        ),
        (
            "custom_storage_classes",
            "storageClasses:\n  - {name: gp3-fast, default: true, type: gp3, iops: 6000, throughput: 500, kmsKeyId: \
                alias/ebs, fsType: xfs, mountOptions: [noatime], parameters: {tagSpecification_1: \
                \"team=storage\"}}\n  - {name: io2-retain, type: io2, iops: 10000, reclaimPolicy: Retain, \
                volumeBindingMode: Immediate, allowVolumeExpansion: false}\nvolumeSnapshotClasses:\n  - {name: \
                ebs-snapshots, default: true, deletionPolicy: Retain, parameters: \
                {fastSnapshotRestoreAvailabilityZones: us-east-1a}}\nmetrics: {enabled: true}\n",
            caps.clone(),
        ),
        (
            "no_snapshot_api",
            "volumeSnapshotClasses: [{name: ebs-snapshots}]\n",
            Capabilities { snapshot_api: false, ..caps.clone() },
        ),
        (
            "tolerations_off",
            "node:\n  tolerateAllTaints: false\n  tolerations: [{key: storage, operator: Equal, value: ebs, effect: \
                NoSchedule}]\n  volumeAttachLimit: 25\n  kubeletPath: /var/lib/k0s/kubelet\n  maxUnavailable: \
                2\ncontroller:\n  replicas: 3\n  podDisruptionBudget: {enabled: false}\n  tolerations: []\n",
            caps.clone(),
        ),
        ("kubernetes_1_32", "{}", Capabilities { kubernetes_version: (1, 32), ..caps.clone() }),
        ("version_1_62", "version: \"1.62.0\"\n", caps.clone()),
        (
            "volume_attributes_classes_v1",
            "volumeAttributesClasses:\n  - {name: gp3-fast, type: gp3, iops: 16000, throughput: 1000}\n  - {name: \
                tagged, parameters: {tagSpecification_1: \"team=storage\", tagDeletion_1: legacy}, labels: {tier: \
                gold}, annotations: {owner: platform}}\n",
            Capabilities { kubernetes_version: (1, 34), volume_attributes_class_api: Some("v1"), ..caps.clone() },
        ),
        (
            "snapshot_controller",
            "snapshots:\n  controller: {enabled: true}\nvolumeSnapshotClasses: [{name: ebs-snapshots, default: \
                true}]\n",
            caps.clone(),
        ),
    ];
    for (name, spec, caps) in cases {
        insta::assert_snapshot!(*name, render_yaml(spec, caps));
    }
}

fn find<'a>(children: &'a [Child], kind: &str, name: &str) -> &'a Child {
    children.iter().find(|c| c.kind() == kind && c.name() == name).unwrap_or_else(|| panic!("{kind}/{name} rendered"))
}

fn container_args(children: &[Child], container: &str) -> Vec<String> {
    let d = serde_json::to_value(&find(children, "Deployment", "ebs-csi-controller").object).expect("serialise");
    let c = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == container))
        .unwrap_or_else(|| panic!("container {container}"))
        .clone();
    c["args"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
}

#[test]
fn volume_attributes_classes_follow_the_served_version_and_the_feature_gate() {
    let spec = "volumeAttributesClasses: [{name: fast, type: io2, iops: 20000}]\n";
    let none = Capabilities { kubernetes_version: (1, 33), ..Capabilities::default() };
    let children = render::render(&hcd(spec), &none).expect("renders");
    assert!(children.iter().all(|c| c.kind() != "VolumeAttributesClass"), "not served: none rendered");
    assert!(
        container_args(&children, "csi-provisioner")
            .contains(&"--feature-gates=Topology=true,VolumeAttributesClass=false".into())
    );
    assert!(container_args(&children, "csi-resizer").contains(&"--feature-gates=VolumeAttributesClass=false".into()));

    for version in ["v1", "v1beta1"] {
        let caps = Capabilities { volume_attributes_class_api: Some(version), ..none.clone() };
        let children = render::render(&hcd(spec), &caps).expect("renders");
        let vac = find(&children, "VolumeAttributesClass", "fast");
        assert_eq!(vac.resource.api_version, format!("storage.k8s.io/{version}"));
        let v = serde_json::to_value(&vac.object).expect("serialise");
        assert_eq!(v["apiVersion"], format!("storage.k8s.io/{version}"));
        assert_eq!(v["driverName"], "ebs.csi.aws.com");
        assert_eq!(v["parameters"], json!({"type": "io2", "iops": "20000"}));
        assert!(!container_args(&children, "csi-provisioner").iter().any(|a| a.contains("VolumeAttributesClass")));
        assert!(!container_args(&children, "csi-resizer").iter().any(|a| a.contains("VolumeAttributesClass")));
    }
}

#[test]
fn one_version_selects_every_image_and_overrides_still_win() {
    let children =
        render::render(&hcd("version: \"1.62.0\"\nimages: {attacher: {tag: \"4.13.0\"}}\n"), &Capabilities::default())
            .expect("renders");
    let d = serde_json::to_value(&find(&children, "Deployment", "ebs-csi-controller").object).expect("serialise");
    let images: BTreeMap<String, String> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (c["name"].as_str().unwrap_or_default().to_string(), c["image"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    assert_eq!(images["ebs-plugin"], "dhi.io/aws-ebs-csi-driver:1.62.0");
    assert_eq!(images["csi-resizer"], "dhi.io/csi-resizer:2.2.0");
    assert_eq!(images["csi-attacher"], "dhi.io/csi-attacher:4.13.0");
    assert_eq!(d["metadata"]["labels"]["app.kubernetes.io/version"], "1.62.0");
}

#[test]
fn fips_refuses_an_override_that_is_not_a_fips_image() {
    let fips = "fips: true\naws: {region: us-east-1}\n";
    let ok = format!("{fips}images: {{driver: {{tag: \"1.64.0-fips\", digest: \"sha256:{}\"}}}}\n", "d".repeat(64));
    assert!(render::render(&hcd(&ok), &Capabilities::default()).is_ok());
    for (images, field) in [
        ("{driver: {tag: \"1.64.0\"}}", "spec.images.driver.tag"),
        ("{livenessProbe: {tag: \"2.19.0-dev\"}}", "spec.images.livenessProbe.tag"),
        (&*format!("{{provisioner: {{digest: \"sha256:{}\"}}}}", "e".repeat(64)), "spec.images.provisioner.digest"),
    ] {
        let e = render::render(&hcd(&format!("{fips}images: {images}\n")), &Capabilities::default())
            .expect_err("a non-FIPS override is refused");
        assert!(e.0.iter().any(|f| f.field == field && f.message.contains("FIPS")), "{field}: {e}");
    }
}

#[test]
fn rendering_is_deterministic() {
    let a = render_yaml(IRSA, &Capabilities::default());
    let b = render_yaml(IRSA, &Capabilities::default());
    assert_eq!(a, b);
}

// ---------------------------------------------------------------- upstream parity

fn upstream_dir() -> PathBuf {
    let dir = std::env::var_os("UPSTREAM_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/upstream-ebs-csi"));
    assert!(dir.is_dir(), "upstream reference manifests not found at {} (set UPSTREAM_REFERENCE)", dir.display());
    dir
}

/// Every upstream object except the Windows DaemonSet, keyed `Kind/name`.
fn upstream_objects() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(upstream_dir()).expect("read reference dir") {
        let path = entry.expect("dir entry").path();
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !file.ends_with(".yaml") || file == "values.yaml" || file == "kustomization.yaml" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read reference file");
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).expect("reference YAML parses");
            if v.is_null() {
                continue;
            }
            let key = format!(
                "{}/{}",
                v["kind"].as_str().unwrap_or_default(),
                v["metadata"]["name"].as_str().unwrap_or_default()
            );
            out.insert(key, v);
        }
    }
    out
}

fn ours(children: &[Child]) -> BTreeMap<String, Value> {
    children
        .iter()
        .map(|c| (format!("{}/{}", c.kind(), c.name()), serde_json::to_value(&c.object).expect("serialise")))
        .collect()
}

/// Differences from upstream that are deliberate, each with its reason. The parity test allows
/// exactly these and demands equality everywhere else.
const INTENTIONAL_DIFFERENCES: &[&str] = &[
    "images come from dhi.io (Docker Hardened Images), not public.ecr.aws",
    "no Windows DaemonSet: the hardened images are Linux-only",
    "labels: app.kubernetes.io/{instance,managed-by,part-of,version} added to every object and pod template",
    "controller pod runs as the DHI nonroot user 65532 (upstream 1000) with seccomp RuntimeDefault; node pod gets \
        seccomp RuntimeDefault",
    "every container: capabilities drop ALL, seccomp RuntimeDefault (unprivileged ones), explicit runAsNonRoot",
    "controller ebs-plugin: no optional env from the aws-secret Secret or aws-meta ConfigMap; credentials and \
        endpoints are explicit spec fields",
    "--user-agent-extra=hardened-csi-operator instead of kustomize",
    "RBAC subjects name their namespace (upstream leaves it to kustomize's namespace: stamp)",
    "node DaemonSet carries checkov skip annotations for the four checks a privileged CSI node plugin cannot pass",
    "automountServiceAccountToken: false on both pods; a projected API token is mounted only in containers that call \
        the API",
    "CSI sidecars serve /healthz/leader-election (--http-endpoint on upstream's metrics ports 3302-3304, 3306) with \
        liveness and readiness probes; livenessprobe sidecars get TCP probes; the registrar gets a readiness probe",
    "CPU limits beside upstream's requests and memory limits",
    "a NetworkPolicy admits ingress to the driver pods only on their health and metrics ports",
];

fn containers(obj: &Value) -> BTreeMap<String, Value> {
    obj["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| (c["name"].as_str().unwrap_or_default().to_string(), c.clone()))
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// RBAC rules expanded to (apiGroup, resource, verb) triples: two rule lists grant the same
/// permissions exactly when these sets are equal, however the rules are grouped.
fn permissions(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in role["rules"].as_array().expect("rules") {
        for g in strings(&r["apiGroups"]) {
            for res in strings(&r["resources"]) {
                for v in strings(&r["verbs"]) {
                    out.insert((g.to_string(), res.to_string(), v.to_string()));
                }
            }
        }
    }
    out
}

fn items(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// Compares one container with upstream's, allowing only the listed differences.
fn assert_container_parity(key: &str, up: &Value, ours: &Value, controller_pod: bool) {
    let name = up["name"].as_str().unwrap_or_default();
    let ctx = format!("{key}: container {name}");
    let privileged = up["securityContext"]["privileged"] == json!(true);
    // args: upstream's (with our user agent), plus only the sidecar health endpoint.
    let up_args: BTreeSet<String> = strings(&up["args"])
        .iter()
        .map(|a| a.replace("--user-agent-extra=kustomize", "--user-agent-extra=hardened-csi-operator"))
        .collect();
    let our_args: BTreeSet<String> = strings(&ours["args"]).iter().map(|a| a.to_string()).collect();
    assert!(
        our_args.is_superset(&up_args),
        "{ctx}: missing args {:?}",
        up_args.difference(&our_args).collect::<Vec<_>>()
    );
    for extra in our_args.difference(&up_args) {
        assert!(extra.starts_with("--http-endpoint=0.0.0.0:330"), "{ctx}: unexpected arg {extra}");
    }
    // env: upstream's minus the optional Secret/ConfigMap lookups.
    let up_env: Vec<Value> = items(&up["env"])
        .into_iter()
        .filter(|e| e["valueFrom"].get("secretKeyRef").is_none() && e["valueFrom"].get("configMapKeyRef").is_none())
        .collect();
    assert_eq!(items(&ours["env"]), up_env, "{ctx}: env");
    // mounts: upstream's, plus the projected API token where the container calls the API.
    let mut our_mounts = items(&ours["volumeMounts"]);
    our_mounts.retain(|m| m["name"] != "kube-api-access");
    let up_mounts = items(&up["volumeMounts"]);
    assert_eq!(our_mounts.len(), up_mounts.len(), "{ctx}: volume mounts");
    for (o, u) in our_mounts.iter().zip(&up_mounts) {
        assert_eq!(o["name"], u["name"], "{ctx}: mount name");
        assert_eq!(o["mountPath"], u["mountPath"], "{ctx}: mount path");
        assert_eq!(o.get("mountPropagation"), u.get("mountPropagation"), "{ctx}: propagation");
    }
    // ports: upstream's, plus the sidecars' health ports.
    let port_numbers = |v: &Value| items(v).iter().map(|p| p["containerPort"].clone()).collect::<Vec<_>>();
    let (up_ports, our_ports) = (port_numbers(&up["ports"]), port_numbers(&ours["ports"]));
    assert!(up_ports.iter().all(|p| our_ports.contains(p)), "{ctx}: ports");
    assert!(
        our_ports.iter().all(|p| up_ports.contains(p) || (3302..=3306).contains(&p.as_i64().unwrap_or(0))),
        "{ctx}: extra ports"
    );
    // probes upstream has stay exactly as they are; we only add probes.
    for probe in ["livenessProbe", "readinessProbe"] {
        if up.get(probe).is_some() {
            assert_eq!(ours[probe], up[probe], "{ctx}: {probe}");
        } else {
            assert!(ours.get(probe).is_some(), "{ctx}: every container gets a {probe}");
        }
    }
    // resources: upstream's requests and memory limit, plus a CPU limit.
    assert_eq!(ours["resources"]["requests"], up["resources"]["requests"], "{ctx}: requests");
    assert_eq!(ours["resources"]["limits"]["memory"], up["resources"]["limits"]["memory"], "{ctx}: memory limit");
    assert!(ours["resources"]["limits"]["cpu"].is_string(), "{ctx}: cpu limit");
    // security context: upstream's settings kept, hardening added.
    let (usc, osc) = (&up["securityContext"], &ours["securityContext"]);
    for (k, v) in usc.as_object().expect("securityContext") {
        assert_eq!(&osc[k], v, "{ctx}: securityContext.{k}");
    }
    assert_eq!(osc["capabilities"], json!({"drop": ["ALL"]}), "{ctx}: capabilities");
    if !privileged {
        assert_eq!(osc["seccompProfile"], json!({"type": "RuntimeDefault"}), "{ctx}: seccomp");
        assert_eq!(osc["runAsNonRoot"], json!(controller_pod), "{ctx}: runAsNonRoot");
    }
    for field in ["imagePullPolicy", "terminationMessagePolicy", "lifecycle", "command"] {
        assert_eq!(ours.get(field), up.get(field), "{ctx}: {field}");
    }
}

#[test]
fn default_render_matches_upstream_in_substance() {
    let upstream = upstream_objects();
    // Upstream's manifests carry the node attach-limit refresh (CSIDriver
    // nodeAllocatableUpdatePeriodSeconds, the attacher's MutableCSINodeAllocatableCount gate),
    // which upstream sets from 1.33 and we from 1.35, where the gate is on by default: compare there.
    // It is also rendered for a cluster that serves VolumeAttributesClass (no
    // `--feature-gates=VolumeAttributesClass=false` on the provisioner and resizer).
    let caps = Capabilities {
        kubernetes_version: (1, 35),
        volume_attributes_class_api: Some("v1"),
        ..Capabilities::default()
    };
    let children = render::render(&hcd("{}"), &caps).expect("renders");
    let mut ours = ours(&children);
    // The driver's RBAC is installed by the chart, not rendered by the operator: its objects are
    // `driver_rbac` (what the chart ships, tests/manifests/test_rbac.py) and count here too.
    let rbac = render::rbac::driver_rbac("kube-system");
    let values = rbac
        .cluster_roles
        .iter()
        .map(|o| serde_json::to_value(o).expect("json"))
        .chain(rbac.cluster_role_bindings.iter().map(|o| serde_json::to_value(o).expect("json")))
        .chain(rbac.roles.iter().map(|o| serde_json::to_value(o).expect("json")))
        .chain(rbac.role_bindings.iter().map(|o| serde_json::to_value(o).expect("json")));
    for v in values {
        ours.insert(
            format!(
                "{}/{}",
                v["kind"].as_str().unwrap_or_default(),
                v["metadata"]["name"].as_str().unwrap_or_default()
            ),
            v,
        );
    }

    // The same objects, minus the Windows DaemonSet, plus our default StorageClass and NetworkPolicy.
    let up_keys: BTreeSet<&String> = upstream.keys().filter(|k| *k != "DaemonSet/ebs-csi-node-windows").collect();
    let our_keys: BTreeSet<&String> =
        ours.keys().filter(|k| !k.starts_with("StorageClass/") && *k != "NetworkPolicy/ebs-csi-driver").collect();
    assert_eq!(up_keys, our_keys, "object sets differ");

    for (key, up) in &upstream {
        let Some(our) = ours.get(key) else { continue };
        match up["kind"].as_str().unwrap_or_default() {
            "Deployment" | "DaemonSet" => {
                let controller_pod = up["kind"] == "Deployment";
                let (uc, oc) = (containers(up), containers(our));
                assert_eq!(uc.keys().collect::<Vec<_>>(), oc.keys().collect::<Vec<_>>(), "{key}: container sets");
                for (name, c) in &uc {
                    assert_container_parity(key, c, &oc[name], controller_pod);
                }
                let (us, os) = (&up["spec"]["template"]["spec"], &our["spec"]["template"]["spec"]);
                for field in [
                    "tolerations",
                    "affinity",
                    "nodeSelector",
                    "priorityClassName",
                    "serviceAccountName",
                    "hostNetwork",
                    "terminationGracePeriodSeconds",
                ] {
                    assert_eq!(os[field], us[field], "{key}: pod {field}");
                }
                let mut our_volumes = items(&os["volumes"]);
                our_volumes.retain(|v| v["name"] != "kube-api-access");
                assert_eq!(Value::Array(our_volumes), us["volumes"], "{key}: volumes");
                assert_eq!(os["automountServiceAccountToken"], json!(false), "{key}: automount off");
                for field in ["selector", "strategy", "updateStrategy", "replicas", "revisionHistoryLimit"] {
                    assert_eq!(our["spec"][field], up["spec"][field], "{key}: {field}");
                }
                let mut intended_psc = us["securityContext"].clone();
                intended_psc["seccompProfile"] = json!({"type": "RuntimeDefault"});
                if controller_pod {
                    intended_psc = json!({"fsGroup": 65532, "runAsGroup": 65532, "runAsNonRoot": true,
                        "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}});
                }
                assert_eq!(os["securityContext"], intended_psc, "{key}: pod securityContext");
            }
            "ClusterRole" | "Role" => {
                assert_eq!(permissions(our), permissions(up), "{key}: rules as a set of (group, resource, verb)");
            }
            "ClusterRoleBinding" | "RoleBinding" => {
                assert_eq!(our["roleRef"], up["roleRef"], "{key}: roleRef");
                let mut subjects = up["subjects"].clone();
                for s in subjects.as_array_mut().expect("subjects") {
                    s["namespace"] = json!("kube-system");
                }
                assert_eq!(our["subjects"], subjects, "{key}: subjects");
            }
            "CSIDriver" | "PodDisruptionBudget" => assert_eq!(our["spec"], up["spec"], "{key}: spec"),
            "ServiceAccount" => {
                assert_eq!(our["automountServiceAccountToken"], up["automountServiceAccountToken"], "{key}")
            }
            other => panic!("{key}: kind {other} has no parity rule"),
        }
        // The chart labels the driver's RBAC as its own.
        if !matches!(up["kind"].as_str(), Some("ClusterRole" | "Role" | "ClusterRoleBinding" | "RoleBinding")) {
            assert_eq!(
                our["metadata"]["labels"]["app.kubernetes.io/name"], up["metadata"]["labels"]["app.kubernetes.io/name"],
                "{key}: name label"
            );
        }
    }
    assert_eq!(INTENTIONAL_DIFFERENCES.len(), 13, "the list above documents every difference the test allows");
}

#[test]
fn hardening_holds_for_every_container() {
    let children = render::render(&hcd(IRSA), &Capabilities::default()).expect("renders");
    for c in &children {
        let v = serde_json::to_value(&c.object).expect("serialise");
        let Some(cs) = v["spec"]["template"]["spec"]["containers"].as_array() else { continue };
        for ct in cs {
            let sc = &ct["securityContext"];
            let name = ct["name"].as_str().unwrap_or_default();
            assert!(ct["image"].as_str().unwrap_or_default().starts_with("dhi.io/"), "{name}: image from DHI");
            assert_eq!(sc["readOnlyRootFilesystem"], json!(true), "{}: {name} read-only root", c.key());
            let privileged = c.kind() == "DaemonSet" && name == "ebs-plugin";
            assert_eq!(
                sc["privileged"].as_bool().unwrap_or(false),
                privileged,
                "{}: {name} privileged only for the node plugin",
                c.key()
            );
            if !privileged {
                assert_eq!(sc["allowPrivilegeEscalation"], json!(false), "{name}");
                assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}");
                assert_eq!(sc["seccompProfile"]["type"], json!("RuntimeDefault"), "{name}");
            }
            for m in ct["volumeMounts"].as_array().into_iter().flatten() {
                let bidirectional = m["mountPropagation"] == "Bidirectional";
                assert_eq!(
                    bidirectional,
                    privileged && m["name"] == "kubelet-dir",
                    "{name}: Bidirectional only on the kubelet dir"
                );
            }
            for probe in ["livenessProbe", "readinessProbe"] {
                assert!(ct[probe].get("exec").is_none(), "{name}: no shell probes in DHI images");
            }
        }
        for label in ["name", "instance", "managed-by", "part-of", "version"] {
            assert!(
                v["metadata"]["labels"].get(format!("app.kubernetes.io/{label}")).is_some(),
                "{}: label {label}",
                c.key()
            );
        }
    }
}

#[test]
fn the_snapshot_controller_is_hardened_leader_elected_and_follows_fips_and_a_foreign_stack() {
    let spec = "snapshots:\n  controller: {enabled: true, replicas: 3, logLevel: 4}\n";
    let children = render::render(&hcd(spec), &Capabilities::default()).expect("renders");
    let d = serde_json::to_value(&find(&children, "Deployment", "snapshot-controller").object).expect("json");
    assert_eq!(d["spec"]["replicas"], json!(3));
    assert_eq!(d["spec"]["selector"]["matchLabels"], json!({"app.kubernetes.io/name": "snapshot-controller"}));
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], json!(true));
    assert_eq!(pod["automountServiceAccountToken"], json!(false));
    let c = &pod["containers"][0];
    assert_eq!(c["image"], json!("dhi.io/snapshot-controller:8.6.0"));
    assert_eq!(c["args"], json!(["--v=4", "--leader-election=true", "--http-endpoint=:8080"]));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], json!(true));
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], json!("/healthz/leader-election"));
    let pdb = serde_json::to_value(&find(&children, "PodDisruptionBudget", "snapshot-controller").object).expect("pdb");
    assert_eq!(pdb["spec"]["maxUnavailable"], json!(1));
    find(&children, "ServiceAccount", "snapshot-controller");

    // One replica: no PDB (it would block every drain).
    let one =
        render::render(&hcd("snapshots:\n  controller: {enabled: true, replicas: 1}\n"), &Capabilities::default())
            .expect("renders");
    assert!(!one.iter().any(|c| c.kind() == "PodDisruptionBudget" && c.name() == "snapshot-controller"));
    // FIPS: the -fips variant, like every other image.
    let fips = "fips: true\naws: {region: us-east-1}\nsnapshots:\n  controller: {enabled: true}\n";
    let children = render::render(&hcd(fips), &Capabilities::default()).expect("renders");
    let d = serde_json::to_value(&find(&children, "Deployment", "snapshot-controller").object).expect("json");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], json!("dhi.io/snapshot-controller:8.6.0-fips"));
    // Another installation's stack: nothing of the snapshot-controller is rendered.
    let foreign = Capabilities { foreign_snapshot_stack: true, ..Capabilities::default() };
    let children = render::render(&hcd(spec), &foreign).expect("renders");
    assert!(!children.iter().any(|c| c.name() == "snapshot-controller"), "no second snapshot-controller");
    // Off (the default): nothing either.
    let children = render::render(&hcd("{}"), &Capabilities::default()).expect("renders");
    assert!(!children.iter().any(|c| c.name() == "snapshot-controller"));
}

// ---------------------------------------------------------------- validation

/// Each rule broken once; Rust validation names the field, and the CRD's own CEL rules (or schema)
/// reject the same object, so the API server and `render` agree.
#[test]
fn invalid_specs_are_rejected_with_field_paths() {
    let digest_bad = "images:\n  driver: {digest: \"sha256:xyz\"}\n";
    let cases: &[(&str, &str, bool)] = &[
        (
            "aws:\n  identity: {irsa: {roleArn: \"arn:aws:iam::111122223333:role/x\"}, podIdentity: {}}\n",
            "spec.aws.identity",
            true,
        ),
        ("aws:\n  identity: {}\n", "spec.aws.identity", true),
        ("storageClasses: [{name: a, default: true}, {name: b, default: true}]\n", "spec.storageClasses", true),
        ("storageClasses: [{name: a}, {name: a}]\n", "spec.storageClasses[1].name", true),
        (
            "volumeSnapshotClasses: [{name: a, default: true}, {name: b, default: true}]\n",
            "spec.volumeSnapshotClasses",
            true,
        ),
        ("node: {volumeAttachLimit: 20, reservedVolumeAttachments: 2}\n", "spec.node", true),
        (digest_bad, "spec.images.driver.digest", true),
        (
            "aws:\n  extraTags: {\"kubernetes.io/cluster/x\": owned}\n",
            "spec.aws.extraTags[kubernetes.io/cluster/x]",
            true,
        ),
        ("aws:\n  extraTags: {CSIVolumeName: x}\n", "spec.aws.extraTags[CSIVolumeName]", true),
        ("storageClasses: [{name: a, type: gp2, iops: 3000}]\n", "spec.storageClasses[0].iops", true),
        ("storageClasses: [{name: a, type: io2, throughput: 300}]\n", "spec.storageClasses[0].throughput", true),
        ("controller: {extraArgs: [\"bad\"]}\n", "spec.controller.extraArgs[0]", true),
        ("fips: true\naws: {region: eu-west-1}\n", "spec.aws.region", false),
        ("fips: true\n", "spec.aws.region", false),
        ("storageClasses: [{name: a, parameters: {type: io1}}]\n", "spec.storageClasses[0].parameters[type]", false),
        ("storageClasses: [{name: a, parameters: {bogus: x}}]\n", "spec.storageClasses[0].parameters[bogus]", false),
        (
            "volumeSnapshotClasses: [{name: a, parameters: {bogus: x}}]\n",
            "spec.volumeSnapshotClasses[0].parameters[bogus]",
            false,
        ),
        ("inventory: {interval: 30s}\n", "spec.inventory.interval", false),
        ("controller: {extraArgs: [\"--k8s-tag-cluster-id=x\"]}\n", "spec.controller.extraArgs[0]", false),
        ("aws: {identity: {irsa: {roleArn: \"arn:aws:iam::1:user/x\"}}}\n", "spec.aws.identity.irsa.roleArn", false),
        ("node: {maxUnavailable: \"ten\"}\n", "spec.node.maxUnavailable", false),
        ("snapshots: {controller: {enabled: true, replicas: 0}}\n", "spec.snapshots.controller.replicas", false),
        ("snapshots: {controller: {logLevel: 11}}\n", "spec.snapshots.controller.logLevel", false),
    ];
    for (spec, field, cel) in cases {
        let obj = hcd(spec);
        let err = render::render(&obj, &Capabilities::default()).expect_err(&format!("{spec} must be rejected"));
        assert!(err.0.iter().any(|e| e.field == *field), "{spec}: expected an error on {field}, got {err}");
        assert!(!err.to_string().is_empty());
        if *cel {
            let cel_result = kube::core::cel::validate_cel(&obj);
            assert!(cel_result.is_err(), "{spec}: the CRD's CEL rules must reject it too");
        }
    }
    // And the valid specs used above pass CEL.
    for ok in ["{}", IRSA, "fips: true\naws: {region: us-east-1}\n"] {
        let obj = hcd(ok);
        let cel = kube::core::cel::validate_cel(&obj);
        assert!(cel.is_ok(), "{ok}: CEL accepts a valid spec: {cel:?}");
        assert!(render::render(&obj, &Capabilities::default()).is_ok());
    }
}

#[test]
fn capabilities_decide_snapshotter_and_attach_limit_refresh() {
    let spec = "volumeSnapshotClasses: [{name: snaps}]\n";
    let with = ours(&render::render(&hcd(spec), &Capabilities::default()).expect("renders"));
    let without = ours(
        &render::render(&hcd(spec), &Capabilities { snapshot_api: false, ..Capabilities::default() }).expect("renders"),
    );
    assert!(with.contains_key("VolumeSnapshotClass/snaps"));
    assert!(containers(&with["Deployment/ebs-csi-controller"]).contains_key("csi-snapshotter"));
    assert!(!without.contains_key("VolumeSnapshotClass/snaps"));
    assert!(!containers(&without["Deployment/ebs-csi-controller"]).contains_key("csi-snapshotter"));

    // MutableCSINodeAllocatableCount: off by default up to 1.34 (alpha in 1.33, beta off in 1.34),
    // on from 1.35: the CSIDriver field and the attacher's gate follow it.
    let at = |minor| {
        ours(
            &render::render(&hcd("{}"), &Capabilities { kubernetes_version: (1, minor), ..Capabilities::default() })
                .expect("renders"),
        )
    };
    let gate = "--feature-gates=MutableCSINodeAllocatableCount=true";
    for (minor, on) in [(32, false), (33, false), (34, false), (35, true), (37, true)] {
        let objs = at(minor);
        let period = objs["CSIDriver/ebs.csi.aws.com"]["spec"].get("nodeAllocatableUpdatePeriodSeconds").cloned();
        assert_eq!(period, on.then(|| json!(10)), "1.{minor}");
        let attacher = &containers(&objs["Deployment/ebs-csi-controller"])["csi-attacher"];
        let has_gate = attacher["args"].as_array().expect("args").iter().any(|a| a == gate);
        assert_eq!(has_gate, on, "1.{minor}: {attacher}");
    }
}

#[test]
fn service_monitors_only_when_enabled_and_served_one_per_metrics_service() {
    let spec = "metrics: {enabled: true, serviceMonitor: {enabled: true, labels: {release: prometheus}}}\n";
    let with = ours(&render::render(&hcd(spec), &Capabilities::default()).expect("renders"));
    for name in ["ebs-csi-controller", "ebs-csi-node"] {
        let sm = &with[&format!("ServiceMonitor/{name}")];
        let svc = &with[&format!("Service/{name}")];
        assert_eq!(sm["metadata"]["labels"]["release"], json!("prometheus"));
        assert_eq!(sm["metadata"]["labels"]["app.kubernetes.io/managed-by"], json!("hardened-csi-operator"));
        // It selects its own Service only: the two Services differ by the upstream `app` label.
        assert_eq!(sm["spec"]["selector"]["matchLabels"]["app"], json!(name));
        assert_eq!(svc["metadata"]["labels"]["app"], json!(name));
        let ports: Vec<_> = svc["spec"]["ports"].as_array().expect("ports").iter().map(|p| p["name"].clone()).collect();
        let scraped: Vec<_> =
            sm["spec"]["endpoints"].as_array().expect("endpoints").iter().map(|e| e["port"].clone()).collect();
        assert_eq!(scraped, ports, "{name}");
        assert!(sm["spec"]["endpoints"].as_array().expect("endpoints").iter().all(|e| e["interval"] == "15s"));
    }
    // Not served, not enabled, or no metrics Services: none, and nothing else changes.
    let unserved = ours(
        &render::render(&hcd(spec), &Capabilities { service_monitor_api: false, ..Capabilities::default() })
            .expect("renders"),
    );
    let off = ours(&render::render(&hcd("metrics: {enabled: true}\n"), &Capabilities::default()).expect("renders"));
    for objs in [&unserved, &off] {
        assert!(!objs.keys().any(|k| k.starts_with("ServiceMonitor/")), "{:?}", objs.keys());
        let without: Vec<_> = with.keys().filter(|k| !k.starts_with("ServiceMonitor/")).collect();
        assert_eq!(objs.keys().collect::<Vec<_>>(), without);
    }
}

#[test]
fn owner_reference_only_where_the_garbage_collector_may_cascade() {
    let mut obj = hcd("{}");
    let children = render::render(&obj, &Capabilities::default()).expect("renders");
    assert!(children.iter().all(|c| c.object.metadata.owner_references.is_none()));
    assert!(children.iter().all(|c| c.object.annotations().get(render::ANNOTATION_OWNER_UID).is_none()));
    let uid = "0b6f5e2e-1111-2222-3333-444455556666";
    obj.metadata.uid = Some(uid.into());
    let children = render::render(&obj, &Capabilities::default()).expect("renders");
    for c in &children {
        assert_eq!(c.object.annotations().get(render::ANNOTATION_OWNER_UID).map(String::as_str), Some(uid));
        match &c.object.metadata.owner_references {
            Some(refs) => {
                assert_eq!(c.kind(), "Service", "only the metrics Service may be cascaded by the GC");
                assert_eq!((refs[0].kind.as_str(), refs[0].controller), ("HardenedCsiDriver", Some(true)));
            }
            None => assert!(!render::gc_may_cascade(c.kind()), "{}", c.key()),
        }
    }
    // The data path and what it needs are never cascaded.
    for kind in [
        "DaemonSet",
        "Deployment",
        "CSIDriver",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "StorageClass",
        "VolumeSnapshotClass",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert!(!render::gc_may_cascade(kind), "{kind}");
    }
}

// ---------------------------------------------------------------- properties

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn pick<T: Clone + std::fmt::Debug + 'static>(xs: &'static [T]) -> impl Strategy<Value = T> {
        proptest::sample::select(xs)
    }

    fn label_ok(v: &str) -> bool {
        v.len() <= 63 && v.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    }

    prop_compose! {
        /// Specs mixing valid and invalid values in every area the rules cover.
        fn spec()(
            ns in pick(&["kube-system", "ebs", "Bad_NS", ""]),
            fips in any::<bool>(),
            region in proptest::option::of(pick(&["us-east-1", "eu-west-1", "us-gov-west-1", "nowhere"])),
            cluster in proptest::option::of(pick(&["prod", "a b", ""])),
            identity in pick(&["irsa", "pod", "secret", "none", "two"]),
            tag in proptest::option::of("[a-z0-9.-]{0,12}"),
            digest in proptest::option::of(pick(&["", "sha256:xyz",
                "sha256:0000000000000000000000000000000000000000000000000000000000000000"])),
            mirror in pick(&["", "registry.example.com/acme", "https://x/"]),
            replicas in -1i32..12,
            attach in proptest::option::of(-1i32..130),
            reserved in proptest::option::of(-1i32..3),
            classes in proptest::collection::vec((pick(&["gp3", "gp2", "io2", "sc1"]), any::<bool>(),
                proptest::option::of(50i64..300_000), pick(&["a", "b", "c", "Bad"])), 0..4),
            extra_tag in pick(&["team", "kubernetes.io/x", "CSIVolumeName", "aws:x"]),
            interval in pick(&["5m", "30s", "1h", "x"]),
            max_unavailable in pick(&["10%", "0%", "x", "3"]),
        ) -> Value {
            let identity = match identity {
                "irsa" => json!({"irsa": {"roleArn": "arn:aws:iam::111122223333:role/ebs"}}),
                "pod" => json!({"podIdentity": {}}),
                "secret" => json!({"secretRef": {"name": "aws-creds"}}),
                "none" => json!({}),
                _ => json!({"podIdentity": {}, "secretRef": {"name": "x"}}),
            };
            let max_unavailable =
                max_unavailable.parse::<i32>().map(Value::from).unwrap_or_else(|_| json!(max_unavailable));
            json!({
                "namespace": ns,
                "fips": fips,
                "images": {"mirror": mirror, "driver": {"tag": tag, "digest": digest}},
                "aws": {"region": region, "clusterId": cluster, "identity": identity, "extraTags": {extra_tag: "v"}},
                "controller": {"replicas": replicas},
                "node": {"volumeAttachLimit": attach, "reservedVolumeAttachments": reserved,
                    "maxUnavailable": max_unavailable},
                "storageClasses": classes.iter().map(|(t, d, iops, n)| json!({"name": n, "type": t, "default": d,
                    "iops": iops})).collect::<Vec<_>>(),
                "inventory": {"interval": interval},
            })
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Random specs never panic `render`: they yield well-formed objects or field errors.
        #[test]
        fn render_never_panics_and_is_well_formed_or_names_fields(spec in spec(), snapshot in any::<bool>(),
            minor in 30u32..38) {
            let mut v = spec;
            strip_nulls(&mut v);
            let doc = json!({"apiVersion": "csi.hardened.dev/v1alpha1", "kind": "HardenedCsiDriver",
                "metadata": {"name": "ebs"}, "spec": v});
            let vac = (minor >= 34).then_some("v1");
            let caps = Capabilities { kubernetes_version: (1, minor), snapshot_api: snapshot,
                volume_attributes_class_api: vac, ..Capabilities::default() };
            match parse::from_value(doc).and_then(|h| render::render(&h, &caps)) {
                Err(errs) => {
                    prop_assert!(!errs.0.is_empty());
                    for e in &errs.0 {
                        prop_assert!(e.field.starts_with("spec"), "error without a field path: {e}");
                        prop_assert!(!e.message.is_empty());
                    }
                }
                Ok(children) => {
                    for c in &children {
                        let name = c.name();
                        prop_assert!(!name.is_empty() && name.len() <= 253, "{}", c.key());
                        for (k, val) in c.object.metadata.labels.iter().flatten() {
                            prop_assert!(label_ok(val), "{}: label {k}={val}", c.key());
                        }
                        let v = serde_json::to_value(&c.object).expect("serialises");
                        for ct in v["spec"]["template"]["spec"]["containers"].as_array().into_iter().flatten() {
                            prop_assert!(ct["image"].as_str().is_some_and(|i| i.contains(':')), "{}: image", c.key());
                        }
                    }
                }
            }
        }
    }

    fn strip_nulls(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|_, x| !x.is_null());
                m.values_mut().for_each(strip_nulls);
            }
            Value::Array(a) => a.iter_mut().for_each(strip_nulls),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------- day-2 knobs (issue 17)

fn container_of<'a>(obj: &'a Value, name: &str) -> &'a Value {
    obj["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn args_of(obj: &Value, name: &str) -> Vec<String> {
    strings(&container_of(obj, name)["args"]).iter().map(|a| a.to_string()).collect()
}

const SIDECARS: &str = "controller:\n  logLevel: 3\n  loggingFormat: json\n  sidecars:\n    provisioner:\n      \
    extraArgs: [\"--worker-threads=50\", \"--timeout=120s\", \"--kube-api-qps=$(QPS)\"]\n      logLevel: 5\n      \
    resources: {requests: {cpu: 50m, memory: 128Mi}, limits: {memory: 1Gi}}\n    attacher: {extraArgs: \
    [\"--worker-threads=20\"]}\n    livenessProbe: {extraArgs: [\"--probe-timeout=30s\"], logLevel: 4}\nnode:\n  \
    loggingFormat: json\n  sidecars:\n    nodeDriverRegistrar: {logLevel: 6, resources: {limits: {memory: 64Mi}}}\n";

#[test]
fn sidecar_tuning_replaces_defaults_in_place_and_appends_the_rest() {
    let children = ours(&render::render(&hcd(SIDECARS), &Capabilities::default()).expect("renders"));
    let deploy = &children["Deployment/ebs-csi-controller"];
    let prov = args_of(deploy, "csi-provisioner");
    assert_eq!(prov[0], "--timeout=120s", "a default flag is replaced where it stood: {prov:?}");
    assert!(prov.contains(&"--worker-threads=50".to_string()) && !prov.contains(&"--worker-threads=100".to_string()));
    assert!(prov.contains(&"--kube-api-qps=$$(QPS)".to_string()), "user strings are escaped: {prov:?}");
    assert!(prov.contains(&"--v=5".to_string()) && prov.contains(&"--logging-format=json".to_string()), "{prov:?}");
    assert_eq!(prov.iter().filter(|a| a.starts_with("--timeout")).count(), 1);
    let prov_c = container_of(deploy, "csi-provisioner");
    assert_eq!(
        prov_c["resources"],
        json!({"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}})
    );
    // The attacher has no JSON logging; it takes the controller's level.
    let att = args_of(deploy, "csi-attacher");
    assert!(att.contains(&"--v=3".to_string()) && !att.iter().any(|a| a.starts_with("--logging-format")), "{att:?}");
    assert!(att.contains(&"--worker-threads=20".to_string()));
    assert_eq!(container_of(deploy, "csi-attacher")["resources"]["limits"]["memory"], json!("256Mi"));
    let resizer = args_of(deploy, "csi-resizer");
    assert!(resizer.contains(&"--logging-format=json".to_string()) && resizer.contains(&"--v=3".to_string()));
    assert!(args_of(deploy, "ebs-plugin").contains(&"--logging-format=json".to_string()));
    let lp = args_of(deploy, "liveness-probe");
    assert_eq!(lp, ["--csi-address=/csi/csi.sock", "--probe-timeout=30s", "--v=4"]);
    let ds = &children["DaemonSet/ebs-csi-node"];
    assert!(args_of(ds, "ebs-plugin").contains(&"--logging-format=json".to_string()));
    let reg = args_of(ds, "node-driver-registrar");
    assert!(reg.contains(&"--v=6".to_string()) && !reg.iter().any(|a| a.starts_with("--logging-format")), "{reg:?}");
    assert_eq!(container_of(ds, "node-driver-registrar")["resources"], json!({"limits": {"memory": "64Mi"}}));
    assert_eq!(args_of(ds, "liveness-probe"), ["--csi-address=/csi/csi.sock"]);
    // Nothing set: exactly the defaults (the parity test pins them against upstream).
    let plain = ours(&render::render(&hcd("{}"), &Capabilities::default()).expect("renders"));
    assert!(!args_of(&plain["Deployment/ebs-csi-controller"], "csi-provisioner").iter().any(|a| a.contains("format")));
}

const PODS: &str = "controller:\n  podAnnotations: {ad.datadoghq.com/tags: '{\"team\": \"storage\"}'}\n  podLabels: \
    {team: storage}\n  env: [{name: AWS_MAX_ATTEMPTS, value: \"10\"}, {name: TOKEN, value: \
    \"$(AWS_SECRET_ACCESS_KEY)\"}, \
    {name: FROM_SECRET, valueFrom: {secretKeyRef: {name: s, key: k}}}]\n  envFrom: [{configMapRef: {name: \
    driver-env}}]\n  dnsConfig: {options: [{name: ndots, value: \"2\"}]}\n  terminationGracePeriodSeconds: 45\n  \
    revisionHistoryLimit: 3\n  podDisruptionBudget: {minAvailable: 1, unhealthyPodEvictionPolicy: AlwaysAllow}\n\
    node:\n  podLabels: {team: storage}\n  podAnnotations: {example.com/scrape: \"false\"}\n  env: [{name: \
    AWS_MAX_ATTEMPTS, value: \"5\"}]\n  envFrom: [{secretRef: {name: node-env}}]\n  dnsConfig: {searches: \
    [corp.example.com]}\n  terminationGracePeriodSeconds: 120\n  revisionHistoryLimit: 5\n";

#[test]
fn pod_knobs_reach_both_pod_templates_and_the_pdb() {
    let children = ours(&render::render(&hcd(PODS), &Capabilities::default()).expect("renders"));
    let deploy = &children["Deployment/ebs-csi-controller"];
    let (meta, pod) = (&deploy["spec"]["template"]["metadata"], &deploy["spec"]["template"]["spec"]);
    assert_eq!(meta["labels"]["team"], "storage");
    assert_eq!(meta["labels"]["app"], "ebs-csi-controller", "the selector labels stay");
    assert_eq!(meta["annotations"]["ad.datadoghq.com/tags"], "{\"team\": \"storage\"}");
    assert_eq!(pod["dnsConfig"], json!({"options": [{"name": "ndots", "value": "2"}]}));
    assert_eq!(pod["terminationGracePeriodSeconds"], 45);
    assert_eq!(deploy["spec"]["revisionHistoryLimit"], 3);
    let plugin = container_of(deploy, "ebs-plugin");
    let env = plugin["env"].as_array().expect("env");
    assert!(env.contains(&json!({"name": "AWS_MAX_ATTEMPTS", "value": "10"})));
    assert!(env.contains(&json!({"name": "TOKEN", "value": "$$(AWS_SECRET_ACCESS_KEY)"})), "values are literal");
    assert!(env.contains(&json!({"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}})));
    assert_eq!(env[0]["name"], "CSI_ENDPOINT", "the operator's variables come first");
    assert_eq!(plugin["envFrom"], json!([{"configMapRef": {"name": "driver-env"}}]));
    assert!(container_of(deploy, "csi-provisioner").get("envFrom").is_none(), "only the driver container");
    let pdb = &children["PodDisruptionBudget/ebs-csi-controller"]["spec"];
    assert_eq!(pdb["minAvailable"], 1);
    assert!(pdb.get("maxUnavailable").is_none(), "{pdb}");
    assert_eq!(pdb["unhealthyPodEvictionPolicy"], "AlwaysAllow");

    let ds = &children["DaemonSet/ebs-csi-node"];
    let (meta, pod) = (&ds["spec"]["template"]["metadata"], &ds["spec"]["template"]["spec"]);
    assert_eq!(
        (meta["labels"]["team"].as_str(), meta["labels"]["app"].as_str()),
        (Some("storage"), Some("ebs-csi-node"))
    );
    assert_eq!(meta["annotations"], json!({"example.com/scrape": "false"}));
    assert_eq!(pod["dnsConfig"], json!({"searches": ["corp.example.com"]}));
    assert_eq!(pod["terminationGracePeriodSeconds"], 120);
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 5);
    let plugin = container_of(ds, "ebs-plugin");
    assert!(plugin["env"].as_array().expect("env").contains(&json!({"name": "AWS_MAX_ATTEMPTS", "value": "5"})));
    assert_eq!(plugin["envFrom"], json!([{"secretRef": {"name": "node-env"}}]));

    // Defaults: upstream's PDB (maxUnavailable 1), no annotations but the identity hash, grace 30
    // on the node only.
    let plain = ours(&render::render(&hcd("{}"), &Capabilities::default()).expect("renders"));
    assert_eq!(
        plain["PodDisruptionBudget/ebs-csi-controller"]["spec"],
        json!({"maxUnavailable": 1, "selector":
        {"matchLabels": {"app": "ebs-csi-controller", "app.kubernetes.io/name": "aws-ebs-csi-driver"}}})
    );
    let d = &plain["Deployment/ebs-csi-controller"]["spec"]["template"];
    let annotations = d["metadata"]["annotations"].as_object().expect("annotations");
    assert_eq!(annotations.keys().collect::<Vec<_>>(), ["csi.hardened.dev/identity-hash"]);
    assert!(d["spec"].get("terminationGracePeriodSeconds").is_none());
    let percent = ours(
        &render::render(
            &hcd("controller: {podDisruptionBudget: {maxUnavailable: \"50%\"}}\n"),
            &Capabilities::default(),
        )
        .expect("renders"),
    );
    assert_eq!(percent["PodDisruptionBudget/ebs-csi-controller"]["spec"]["maxUnavailable"], "50%");
}

#[test]
fn node_plugin_knobs_region_extra_args_host_network_and_selinux() {
    let spec = "aws: {region: eu-central-1}\nnode:\n  extraArgs: [\"--metadata-sources=kubernetes\", \
        \"--legacy-xfs=true\"]\n  hostNetwork: true\n  selinux: true\n";
    let children = ours(&render::render(&hcd(spec), &Capabilities::default()).expect("renders"));
    let ds = &children["DaemonSet/ebs-csi-node"];
    let plugin = container_of(ds, "ebs-plugin");
    let args = args_of(ds, "ebs-plugin");
    assert!(
        args.ends_with(&["--metadata-sources=kubernetes".to_string(), "--legacy-xfs=true".to_string()]),
        "{args:?}"
    );
    assert!(plugin["env"].as_array().expect("env").contains(&json!({"name": "AWS_REGION", "value": "eu-central-1"})));
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let volumes: Vec<&Value> = pod["volumes"].as_array().expect("volumes").iter().collect();
    assert!(volumes.contains(&&json!({"name": "selinux-sysfs", "hostPath": {"path": "/sys/fs/selinux", "type":
        "Directory"}})));
    assert!(volumes.contains(&&json!({"name": "selinux-config", "hostPath": {"path": "/etc/selinux/config", "type":
        "File"}})));
    let mounts = plugin["volumeMounts"].as_array().expect("mounts");
    assert!(mounts.contains(&json!({"name": "selinux-sysfs", "mountPath": "/sys/fs/selinux"})));
    assert!(mounts.contains(&json!({"name": "selinux-config", "mountPath": "/etc/selinux/config", "readOnly": true})));
    assert_eq!(children["CSIDriver/ebs.csi.aws.com"]["spec"]["seLinuxMount"], true);
    // Off by default: no SELinux mounts, no seLinuxMount, no region on the node without aws.region.
    let plain = ours(&render::render(&hcd("{}"), &Capabilities::default()).expect("renders"));
    assert!(plain["CSIDriver/ebs.csi.aws.com"]["spec"].get("seLinuxMount").is_none());
    let env = &container_of(&plain["DaemonSet/ebs-csi-node"], "ebs-plugin")["env"];
    assert!(!env.as_array().expect("env").iter().any(|e| e["name"] == "AWS_REGION"));
    assert_eq!(plain["DaemonSet/ebs-csi-node"]["spec"]["template"]["spec"]["hostNetwork"], false);
}

#[test]
fn class_metadata_and_the_driver_parameter_list() {
    let spec = "storageClasses:\n  - {name: gp3, default: true, labels: {team: storage}, annotations: \
        {example.com/owner: \
        storage}, parameters: {blockAttachUntilInitialized: \"true\", EXT4ENCRYPTIONSUPPORT: \"true\", \
        allowAutoIOPSIncreaseOnModify: \"true\", tagSpecification_1: \"team=storage\"}}\nvolumeSnapshotClasses:\n  \
        - {name: snaps, labels: {team: storage}, annotations: {example.com/owner: storage}}\n";
    let children = ours(&render::render(&hcd(spec), &Capabilities::default()).expect("renders"));
    let sc = &children["StorageClass/gp3"];
    assert_eq!(sc["metadata"]["labels"]["team"], "storage");
    assert_eq!(sc["metadata"]["labels"]["app.kubernetes.io/managed-by"], "hardened-csi-operator");
    assert_eq!(
        sc["metadata"]["annotations"],
        json!({"example.com/owner": "storage", "storageclass.kubernetes.io/is-default-class": "true"})
    );
    assert_eq!(sc["parameters"]["EXT4ENCRYPTIONSUPPORT"], "true", "keys pass as written");
    let vsc = &children["VolumeSnapshotClass/snaps"];
    assert_eq!(vsc["metadata"]["labels"]["team"], "storage");
    assert_eq!(vsc["metadata"]["annotations"], json!({"example.com/owner": "storage"}));

    // What driver 1.64 refuses (CreateVolume fails with "Invalid parameter key"), or a field's
    // parameter in any case, is refused naming the key.
    for (params, key, says) in [
        ("{outpostArn: x}", "outpostArn", "not a parameter driver 1.64 accepts"),
        ("{TYPE: io2}", "TYPE", "set it with spec.storageClasses[0].type instead"),
        ("{KmsKeyId: x}", "KmsKeyId", "kmsKeyId instead"),
        ("{fstype: xfs}", "fstype", "fsType instead"),
        ("{tagspecification_1: a}", "tagspecification_1", "not a parameter"),
        ("{csi.storage.k8s.io/pvc/name: x}", "csi.storage.k8s.io/pvc/name", "not a parameter"),
    ] {
        let e = render::render(
            &hcd(&format!("storageClasses: [{{name: a, parameters: {params}}}]\n")),
            &Capabilities::default(),
        )
        .expect_err(params);
        let field = format!("spec.storageClasses[0].parameters[{key}]");
        assert!(e.0.iter().any(|f| f.field == field && f.message.contains(says)), "{params}: {e}");
    }
    let e = render::render(
        &hcd("volumeSnapshotClasses: [{name: s, parameters: {blockSize: \"4096\"}}]\n"),
        &Capabilities::default(),
    )
    .expect_err("a volume parameter on a snapshot class");
    assert!(e.0.iter().any(|f| f.field == "spec.volumeSnapshotClasses[0].parameters[blockSize]"), "{e}");
}

#[test]
fn static_key_names_session_token_sts_endpoint_and_ca_bundle() {
    let spec = "aws:\n  identity: {secretRef: {name: keys, keyId: AWS_ACCESS_KEY_ID, accessKey: AWS_SECRET_ACCESS_KEY, \
        sessionToken: AWS_SESSION_TOKEN}}\n  stsEndpoint: https://sts.eu-west-1.amazonaws.com\n  caBundle: {name: \
        corp-ca, key: ca.pem}\n";
    let children = ours(&render::render(&hcd(spec), &Capabilities::default()).expect("renders"));
    let deploy = &children["Deployment/ebs-csi-controller"];
    let plugin = container_of(deploy, "ebs-plugin");
    let env = plugin["env"].as_array().expect("env");
    let from_secret = |name: &str, key: &str| {
        let selector = json!({"name": "keys", "key": key, "optional": false});
        json!({"name": name, "valueFrom": {"secretKeyRef": selector}})
    };
    assert!(env.contains(&from_secret("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID")), "{env:?}");
    assert!(env.contains(&from_secret("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")));
    assert!(env.contains(&from_secret("AWS_SESSION_TOKEN", "AWS_SESSION_TOKEN")));
    assert!(env.contains(&json!({"name": "AWS_ENDPOINT_URL_STS", "value": "https://sts.eu-west-1.amazonaws.com"})));
    let bundle = json!({"name": "AWS_CA_BUNDLE", "value": "/etc/hardened-csi/aws-ca/ca-bundle.crt"});
    assert!(env.contains(&bundle));
    let mount = json!({"name": "aws-ca-bundle", "mountPath": "/etc/hardened-csi/aws-ca", "readOnly": true});
    assert!(plugin["volumeMounts"].as_array().expect("mounts").contains(&mount));
    let volume = json!({"name": "aws-ca-bundle", "configMap": {"name": "corp-ca", "items": [{"key": "ca.pem", "path":
        "ca-bundle.crt"}], "defaultMode": 292, "optional": false}});
    assert!(deploy["spec"]["template"]["spec"]["volumes"].as_array().expect("volumes").contains(&volume));
    let ds = &children["DaemonSet/ebs-csi-node"];
    let node_plugin = container_of(ds, "ebs-plugin");
    assert!(node_plugin["env"].as_array().expect("env").contains(&bundle));
    assert!(node_plugin["volumeMounts"].as_array().expect("mounts").contains(&mount));
    assert!(ds["spec"]["template"]["spec"]["volumes"].as_array().expect("volumes").contains(&volume));
    // Sidecars never see the bundle or the keys.
    assert!(
        container_of(deploy, "csi-provisioner")["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .all(|m| m["name"] != "aws-ca-bundle")
    );
    // Defaults: upstream's key names, no session token.
    let plain = ours(
        &render::render(&hcd("aws: {identity: {secretRef: {name: keys}}}\n"), &Capabilities::default())
            .expect("renders"),
    );
    let env = container_of(&plain["Deployment/ebs-csi-controller"], "ebs-plugin")["env"].clone();
    assert!(env.as_array().expect("env").contains(&from_secret("AWS_ACCESS_KEY_ID", "key_id")));
    assert!(env.as_array().expect("env").contains(&from_secret("AWS_SECRET_ACCESS_KEY", "access_key")));
    assert!(!env.as_array().expect("env").iter().any(|e| e["name"] == "AWS_SESSION_TOKEN"));
}

#[test]
fn driver_metrics_on_upstream_ports_with_services() {
    let children =
        ours(&render::render(&hcd("metrics: {enabled: true}\n"), &Capabilities::default()).expect("renders"));
    let deploy = &children["Deployment/ebs-csi-controller"];
    // Upstream's numbers (chart 2.64 metrics.yaml): driver 3301, provisioner 3302, attacher 3303,
    // resizer 3304, livenessprobe 3305, snapshotter 3306; node plugin 3302.
    for (container, flag) in [
        ("ebs-plugin", "--http-endpoint=0.0.0.0:3301"),
        ("csi-provisioner", "--http-endpoint=0.0.0.0:3302"),
        ("csi-attacher", "--http-endpoint=0.0.0.0:3303"),
        ("csi-resizer", "--http-endpoint=0.0.0.0:3304"),
        ("liveness-probe", "--metrics-address=0.0.0.0:3305"),
        ("csi-snapshotter", "--http-endpoint=0.0.0.0:3306"),
    ] {
        assert!(args_of(deploy, container).contains(&flag.to_string()), "{container}: {flag}");
    }
    let ds = &children["DaemonSet/ebs-csi-node"];
    assert!(args_of(ds, "ebs-plugin").contains(&"--http-endpoint=0.0.0.0:3302".to_string()));
    let svc = &children["Service/ebs-csi-controller"];
    let ports: Vec<(String, i64)> = svc["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| (p["name"].as_str().unwrap_or_default().to_string(), p["port"].as_i64().unwrap_or_default()))
        .collect();
    let want = [
        ("metrics", 3301),
        ("metrics-provisioner", 3302),
        ("metrics-attacher", 3303),
        ("metrics-resizer", 3304),
        ("metrics-snapshotter", 3306),
        ("metrics-liveness", 3305),
    ];
    assert_eq!(ports, want.map(|(n, p)| (n.to_string(), p)));
    assert_eq!(svc["metadata"]["annotations"], json!({"prometheus.io/scrape": "true", "prometheus.io/port": "3301"}));
    let node_svc = &children["Service/ebs-csi-node"];
    assert_eq!(node_svc["spec"]["internalTrafficPolicy"], "Local");
    assert_eq!(node_svc["spec"]["selector"]["app"], "ebs-csi-node");
    assert_eq!(node_svc["spec"]["ports"][0]["port"], 3302);
    let np = &children["NetworkPolicy/ebs-csi-driver"]["spec"]["ingress"][0]["ports"];
    let open: Vec<i64> = np.as_array().expect("ports").iter().filter_map(|p| p["port"].as_i64()).collect();
    for p in [3301, 3302, 3303, 3304, 3305, 3306] {
        assert!(open.contains(&p), "NetworkPolicy admits {p}: {open:?}");
    }
    // Without annotations, and without metrics no Service and no metrics flags at all.
    let quiet = ours(
        &render::render(&hcd("metrics: {enabled: true, prometheusAnnotations: false}\n"), &Capabilities::default())
            .expect("renders"),
    );
    assert!(quiet["Service/ebs-csi-controller"]["metadata"].get("annotations").is_none());
    let off = ours(&render::render(&hcd("{}"), &Capabilities::default()).expect("renders"));
    assert!(!off.keys().any(|k| k.starts_with("Service/")));
    assert!(!args_of(&off["Deployment/ebs-csi-controller"], "liveness-probe").iter().any(|a| a.contains("metrics")));
}
