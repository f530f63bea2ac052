"""Every manifest the project ships or renders is valid Kubernetes (kubernetes-validate --strict:
unknown fields are errors) and clean YAML (yamllint)."""

from __future__ import annotations

import pytest

from support import (
    CHART,
    CRD_FILE,
    DEPLOY,
    EXAMPLE_FILES,
    EXAMPLE_IDS,
    REPO,
    VALUE_SETS,
    chart_docs,
    chart_manifest_text,
    kustomize,
    load_docs,
    render_example,
    render_example_text,
    validate_all_builtin,
    yamllint_errors,
)

# Custom kinds each source may contain: anything else that is not a built-in kind is a mistake
# (a typo in apiVersion or kind would otherwise silently skip validation).
CHART_CUSTOM = {
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
    "csi.hardened.dev/v1alpha1/HardenedCsiDriver",
}
# Custom kinds `render` produces, each checked against its own schema elsewhere (the ServiceMonitor
# against the Prometheus Operator's, tests/manifests/test_monitoring.py).
RENDER_CUSTOM = {"snapshot.storage.k8s.io/v1/VolumeSnapshotClass", "monitoring.coreos.com/v1/ServiceMonitor"}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_chart_output_is_valid_kubernetes(name):
    custom = validate_all_builtin(chart_docs(VALUE_SETS[name], hooks=True))
    assert custom <= CHART_CUSTOM, custom


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_chart_output_passes_yamllint(name):
    assert yamllint_errors(chart_manifest_text(VALUE_SETS[name]), generated=True) == []


def test_kustomize_base_is_valid_kubernetes():
    docs = load_docs(kustomize(str(DEPLOY)))
    assert validate_all_builtin(docs) == set()
    assert {d["kind"] for d in docs} >= {
        "Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole",
        "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service", "NetworkPolicy",
    }


def test_kustomize_base_passes_yamllint():
    assert yamllint_errors(kustomize(str(DEPLOY)), generated=True) == []


def test_crd_is_valid_kubernetes():
    docs = load_docs(CRD_FILE.read_text())
    assert [d["kind"] for d in docs] == ["CustomResourceDefinition"]
    assert validate_all_builtin(docs) == set()


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=EXAMPLE_IDS)
def test_render_of_example_is_valid_kubernetes(example):
    custom = validate_all_builtin(render_example(example), versions=("1.37",))
    assert custom <= RENDER_CUSTOM, custom


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=EXAMPLE_IDS)
def test_render_of_example_passes_yamllint(example):
    assert yamllint_errors(render_example_text(str(example)), generated=True) == []


def test_render_for_oldest_supported_kubernetes_is_valid_there():
    docs = render_example(EXAMPLE_FILES[0], "--kubernetes-version", "1.30")
    assert validate_all_builtin(docs, versions=("1.30",)) <= RENDER_CUSTOM


def test_render_without_snapshot_api_is_valid_and_has_no_snapshot_objects():
    docs = render_example(DEPLOY / "examples" / "full.yaml", "--no-snapshot-api", "--no-service-monitor-api")
    assert validate_all_builtin(docs, versions=("1.37",)) == set()
    assert not [d for d in docs if d["apiVersion"].startswith("snapshot.storage.k8s.io")]


def _handwritten_yaml():
    files = sorted(DEPLOY.rglob("*.yaml")) + [CHART / "Chart.yaml", CHART / "values.yaml"]
    return [p for p in files if p.is_file()]


# The Argo CD resource customization's health_test.yaml and testdata/ are written by the
# operator's own condition code (`make gitops-testdata`): their condition messages are one line
# each, as the operator writes them, so they are linted as generated text (no line-length rule).
ARGOCD_GENERATED = DEPLOY / "gitops" / "argocd" / "csi.hardened.dev"


@pytest.mark.parametrize("path", _handwritten_yaml(), ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_yaml_passes_yamllint(path):
    generated = path.is_relative_to(ARGOCD_GENERATED) and path.name != "health.lua"
    assert yamllint_errors(path.read_text(), generated=generated) == []


@pytest.mark.parametrize(
    "path",
    [p for p in sorted((DEPLOY / "operator").glob("*.yaml"))] + list(EXAMPLE_FILES),
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_shipped_manifests_are_valid_kubernetes(path):
    docs = load_docs(path.read_text())
    assert docs, f"{path} holds no object"
    custom = validate_all_builtin(docs)
    assert custom <= {"csi.hardened.dev/v1alpha1/HardenedCsiDriver"}, custom
