"""The HardenedCsiDriver examples (deploy/examples/, the GitOps driver, the chart's driver block)
are valid against the CRD's openAPIV3Schema, with unknown fields treated as errors, and the
operator renders each of them into the driver's children."""

from __future__ import annotations

import copy

import pytest
import yaml

from support import (
    EXAMPLE_FILES,
    EXAMPLE_IDS,
    GITOPS,
    VALUE_SETS,
    by_kind,
    chart_docs,
    crd_errors,
    load_docs,
    one,
    render_example,
    run_bin,
    validate_all_builtin,
)

EXPECTED_EXAMPLES = {
    "minimal", "irsa", "pod-identity", "fips", "private-mirror", "full", "storage", "snapshots", "retag",
}


def test_every_promised_example_exists():
    assert set(EXAMPLE_IDS) == EXPECTED_EXAMPLES


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=EXAMPLE_IDS)
def test_example_matches_crd_schema(example):
    (doc,) = load_docs(example.read_text())
    assert doc["apiVersion"] == "csi.hardened.dev/v1alpha1" and doc["kind"] == "HardenedCsiDriver"
    assert "namespace" not in doc["metadata"], "HardenedCsiDriver is cluster-scoped"
    assert crd_errors(doc) == []


def test_gitops_driver_matches_crd_schema():
    (doc,) = load_docs((GITOPS / "flux" / "driver" / "ebs.yaml").read_text())
    assert crd_errors(doc) == []


def test_chart_driver_block_matches_crd_schema():
    hcd = one(chart_docs(VALUE_SETS["driver"]), "HardenedCsiDriver")
    assert crd_errors(hcd) == []


def test_schema_check_catches_typos_and_bad_values():
    """The validator is strict: the API server would silently prune an unknown field."""
    (doc,) = load_docs((EXAMPLE_FILES[EXAMPLE_IDS.index("full")]).read_text())
    typo = copy.deepcopy(doc)
    typo["spec"]["storageClasses"][0]["volumeBindingmode"] = "Immediate"
    assert any("volumeBindingmode" in e for e in crd_errors(typo))
    bad_enum = copy.deepcopy(doc)
    bad_enum["spec"]["storageClasses"][0]["reclaimPolicy"] = "Recycle"
    assert any(e.startswith("spec.storageClasses.0.reclaimPolicy") for e in crd_errors(bad_enum))
    bad_digest = copy.deepcopy(doc)
    bad_digest["spec"]["images"]["driver"]["digest"] = 42
    assert any(e.startswith("spec.images.driver.digest") for e in crd_errors(bad_digest))


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=EXAMPLE_IDS)
def test_render_produces_the_upstream_object_names(example):
    docs = render_example(example)
    (spec_doc,) = load_docs(example.read_text())
    ns = spec_doc["spec"].get("namespace", "kube-system")
    dep = one(docs, "Deployment", "ebs-csi-controller")
    ds = one(docs, "DaemonSet", "ebs-csi-node")
    assert dep["metadata"]["namespace"] == ns and ds["metadata"]["namespace"] == ns
    one(docs, "CSIDriver", "ebs.csi.aws.com")
    sas = {d["metadata"]["name"] for d in by_kind(docs, "ServiceAccount")}
    controller = spec_doc["spec"].get("snapshots", {}).get("controller", {}).get("enabled", False)
    assert sas == {"ebs-csi-controller-sa", "ebs-csi-node-sa"} | ({"snapshot-controller"} if controller else set())
    classes = {d["metadata"]["name"] for d in by_kind(docs, "StorageClass")}
    # Unset, the spec's default: one gp3 class.
    assert classes == {c["name"] for c in spec_doc["spec"].get("storageClasses", [{"name": "gp3"}])}


def test_render_of_private_mirror_uses_mirror_and_digests():
    path = EXAMPLE_FILES[EXAMPLE_IDS.index("private-mirror")]
    (spec_doc,) = load_docs(path.read_text())
    images = spec_doc["spec"]["images"]
    docs = render_example(path)
    pods = [one(docs, "Deployment", "ebs-csi-controller"), one(docs, "DaemonSet", "ebs-csi-node")]
    containers = [c for p in pods for c in p["spec"]["template"]["spec"]["containers"]]
    driver = images["driver"]
    expected = f"{images['mirror']}/dhi-aws-ebs-csi-driver:{driver['tag']}@{driver['digest']}"
    assert {c["image"] for c in containers if c["name"] == "ebs-plugin"} == {expected}
    for c in containers:
        assert c["image"].startswith(images["mirror"] + "/dhi-") and "@sha256:" in c["image"], c["image"]
    for p in pods:
        assert p["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "mirror-pull"}]


def test_render_rejects_an_invalid_example_naming_the_field(tmp_path):
    (doc,) = load_docs((EXAMPLE_FILES[EXAMPLE_IDS.index("irsa")]).read_text())
    doc["spec"]["aws"]["identity"]["podIdentity"] = {}
    bad = tmp_path / "two-identities.yaml"
    bad.write_text(yaml.safe_dump(doc))
    proc = run_bin("render", "-f", str(bad), check=False)
    assert proc.returncode != 0
    assert "identity" in (proc.stderr + proc.stdout)


def test_chart_driver_block_renders_into_valid_children(tmp_path):
    """What `helm install` with the driver block creates, the operator can render."""
    hcd = one(chart_docs(VALUE_SETS["driver"]), "HardenedCsiDriver")
    path = tmp_path / "chart-driver.yaml"
    path.write_text(yaml.safe_dump(hcd))
    docs = render_example(path)
    sa = one(docs, "ServiceAccount", "ebs-csi-controller-sa")
    role_arn = VALUE_SETS["driver"]["driver"]["spec"]["aws"]["identity"]["irsa"]["roleArn"]
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role_arn
    assert validate_all_builtin(docs, versions=("1.37",)) <= {"snapshot.storage.k8s.io/v1/VolumeSnapshotClass"}
