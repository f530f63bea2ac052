"""The kustomize base (deploy/): the namespace enforces Pod Security "restricted", the CRD is the
generated one, and the operator Deployment is the chart's (same pod spec, same RBAC subjects)."""

from __future__ import annotations

import subprocess

from support import CRD_FILE, DEPLOY, EXAMPLE_FILES, chart_docs, kustomize, load_docs, one

NS = "hardened-csi-operator"


def _docs():
    return load_docs(kustomize(str(DEPLOY)))


def test_namespace_enforces_restricted_pod_security():
    ns = one(_docs(), "Namespace")
    assert ns["metadata"]["name"] == NS
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_every_namespaced_object_is_in_the_operator_namespace():
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for d in _docs():
        if d["kind"] in cluster_scoped:
            assert "namespace" not in d["metadata"], f"{d['kind']} {d['metadata']['name']} got a namespace"
        elif d["metadata"]["name"].endswith(("-pull-secrets", "-ca-bundles", "-driver")) or d["metadata"].get(
            "labels", {}
        ).get("app.kubernetes.io/component") == "driver-rbac":
            # The operator's driver-namespace Roles and the driver's own RBAC: in the driver namespace.
            assert d["metadata"]["namespace"] == "kube-system", d["metadata"]
        else:
            assert d["metadata"]["namespace"] == NS, d["metadata"]


def test_crd_is_the_generated_one():
    crd = one(_docs(), "CustomResourceDefinition")
    (generated,) = load_docs(CRD_FILE.read_text())
    crd["metadata"].pop("labels", None)
    generated["metadata"].pop("labels", None)
    assert crd == generated


def test_deployment_matches_the_chart():
    """Same pod spec as `helm install hardened-csi-operator` into the namespace of the same
    name, so both install paths run the operator identically."""
    chart_dep = one(chart_docs({}, release=NS), "Deployment")
    kust_dep = one(_docs(), "Deployment")
    assert kust_dep["metadata"]["name"] == chart_dep["metadata"]["name"] == NS
    assert kust_dep["spec"]["template"]["spec"] == chart_dep["spec"]["template"]["spec"]
    assert kust_dep["spec"]["selector"] == chart_dep["spec"]["selector"]
    assert kust_dep["spec"]["strategy"] == chart_dep["spec"]["strategy"]
    assert kust_dep["spec"]["selector"]["matchLabels"].items() <= kust_dep["spec"]["template"]["metadata"]["labels"].items()


def test_hardened_csi_driver_would_be_stamped_by_namespace(tmp_path):
    """Why the base must never list a HardenedCsiDriver: kustomize's `namespace:` stamps custom
    kinds it cannot know to be cluster-scoped. This test pins that behaviour so the warning in
    deploy/kustomization.yaml stays true (if kustomize learns better, drop the warning)."""
    (tmp_path / "ebs.yaml").write_text(EXAMPLE_FILES[0].read_text())
    (tmp_path / "kustomization.yaml").write_text("namespace: somewhere\nresources: [ebs.yaml]\n")
    out = subprocess.run(["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, check=True).stdout
    (hcd,) = load_docs(out)
    assert hcd["metadata"].get("namespace") == "somewhere"
    assert not [d for d in _docs() if d["kind"] == "HardenedCsiDriver"]
