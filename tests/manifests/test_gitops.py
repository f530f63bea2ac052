"""GitOps objects: the Argo CD health check reads the operator's conditions correctly (run in
Lua 5.1, the dialect Argo CD embeds), the argocd-cm snippet carries exactly that script, and the
Argo CD and Flux objects point at things that exist."""

from __future__ import annotations

import pytest
import yaml
from lupa import lua51

from support import CHART, GITOPS, REPO, crd, load_docs, yamllint_errors

# Argo CD's resource_customizations layout: <group>/<Kind>/{health.lua, health_test.yaml, testdata/}.
CUSTOMIZATION = GITOPS / "argocd" / "csi.hardened.dev" / "HardenedCsiDriver"
HEALTH_LUA = CUSTOMIZATION / "health.lua"
HEALTH_KEY = "resource.customizations.health.csi.hardened.dev_HardenedCsiDriver"


def _health(obj: dict) -> tuple[str, str]:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(v):
        if isinstance(v, dict):
            return lua.table_from({k: to_lua(x) for k, x in v.items()})
        if isinstance(v, list):
            return lua.table_from([to_lua(x) for x in v])
        return v

    lua.globals().obj = to_lua(obj)
    script = HEALTH_LUA.read_text()
    hs = lua.execute(script)
    return hs["status"], hs["message"]


def _health_tests() -> list[dict]:
    return yaml.safe_load((CUSTOMIZATION / "health_test.yaml").read_text())["tests"]


@pytest.mark.parametrize("case", _health_tests(), ids=lambda c: c["inputPath"].removeprefix("testdata/"))
def test_argocd_health_of_every_status_the_operator_reports(case):
    """health_test.yaml as Argo CD's own resource_customizations test runs it: the objects in
    testdata/ are generated from the operator's health rules (src/reconciler/gitops_testdata.rs),
    one per reason."""
    obj = yaml.safe_load((CUSTOMIZATION / case["inputPath"]).read_text())
    assert _health(obj) == (case["healthStatus"]["status"], case["healthStatus"]["message"])


def test_argocd_testdata_covers_every_health():
    assert {c["healthStatus"]["status"] for c in _health_tests()} == {"Healthy", "Progressing", "Degraded"}
    assert {c["inputPath"] for c in _health_tests()} == {
        f"testdata/{p.name}" for p in (CUSTOMIZATION / "testdata").glob("*.yaml")
    }


def _hcd(generation=2, observed=2, conditions=None, status=True):
    obj = {"apiVersion": "csi.hardened.dev/v1alpha1", "kind": "HardenedCsiDriver", "metadata": {"name": "ebs", "generation": generation}}
    if status:
        obj["status"] = {"observedGeneration": observed, "conditions": conditions or []}
    return obj


def _cond(type_, status, reason, message=""):
    return {"type": type_, "status": status, "reason": reason, "message": message}


READY = _cond("Ready", "True", "Available", "controller 2/2, nodes 3/3")
NOT_READY = _cond("Ready", "False", "ControllerUnavailable", "0/2 controller pods ready")
PROGRESSING = _cond("Progressing", "True", "RollingOut", "node plugin 1/3 updated")


@pytest.mark.parametrize(
    "obj, status, message",
    [
        (_hcd(status=False), "Progressing", "Waiting for the operator to report status"),
        (_hcd(generation=1, observed=-1), "Progressing", "Waiting for the operator to observe generation 1"),
        (_hcd(conditions=[NOT_READY, PROGRESSING]), "Progressing", "RollingOut: node plugin 1/3 updated"),
        (_hcd(conditions=[NOT_READY]), "Degraded", "ControllerUnavailable: 0/2 controller pods ready"),
        (_hcd(conditions=[_cond("Ready", "Unknown", "Pending")]), "Progressing", "Waiting for the Ready condition"),
        (_hcd(conditions=[_cond("Ready", "True", "Available")]), "Healthy", "Available"),
    ],
    ids=["no-status", "status-default", "pre-kstatus-progressing", "pre-kstatus-not-ready", "unknown", "no-message"],
)
def test_argocd_health_of_statuses_without_kstatus_conditions(obj, status, message):
    """Objects the generated test data cannot hold: no status at all (an API server that does not
    apply the CRD's status default), and statuses of operators before Reconciling and Stalled."""
    assert _health(obj) == (status, message)


def test_argocd_cm_carries_the_health_script():
    (cm,) = load_docs((GITOPS / "argocd" / "health-check-cm.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"][HEALTH_KEY] == HEALTH_LUA.read_text()


def test_health_check_key_matches_the_crd():
    spec = crd()["spec"]
    assert HEALTH_KEY == f"resource.customizations.health.{spec['group']}_{spec['names']['kind']}"


def test_argocd_application_points_at_the_chart():
    (app,) = load_docs((GITOPS / "argocd" / "application.yaml").read_text())
    src = app["spec"]["source"]
    assert (REPO / src["path"] / "Chart.yaml").exists()
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
    labels = app["spec"]["syncPolicy"]["managedNamespaceMetadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    chart_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert src["targetRevision"] == f"v{chart_version}"


def test_flux_objects_are_wired():
    docs = load_docs((GITOPS / "flux" / "kustomizations.yaml").read_text())
    ks = {d["metadata"]["name"]: d for d in docs}
    op, drv = ks["hardened-csi-operator"], ks["hardened-csi-driver"]
    (repo,) = load_docs((GITOPS / "flux" / "gitrepository.yaml").read_text())
    for k in (op, drv):
        assert k["spec"]["sourceRef"] == {"kind": "GitRepository", "name": repo["metadata"]["name"]}
        assert (REPO / k["spec"]["path"]).is_dir()
    assert op["spec"]["wait"] is True
    assert drv["spec"]["dependsOn"] == [{"name": "hardened-csi-operator"}]
    spec = crd()["spec"]
    (driver_doc,) = load_docs((GITOPS / "flux" / "driver" / "ebs.yaml").read_text())
    assert drv["spec"]["healthChecks"] == [
        {"apiVersion": f"{spec['group']}/v1alpha1", "kind": spec["names"]["kind"], "name": driver_doc["metadata"]["name"]}
    ]
    release = load_docs((GITOPS / "flux" / "operator" / "helmrelease.yaml").read_text())[0]
    helm_repo = load_docs((GITOPS / "flux" / "operator" / "helmrepository.yaml").read_text())[0]
    chart = release["spec"]["chart"]["spec"]
    assert chart["chart"] == yaml.safe_load((CHART / "Chart.yaml").read_text())["name"]
    assert chart["sourceRef"] == {"kind": "HelmRepository", "name": helm_repo["metadata"]["name"]}
    # The chart upgrades its CRD itself (a template): a Flux crds policy would act on nothing.
    assert "crds" not in release["spec"]["install"] and "crds" not in release["spec"]["upgrade"]
    assert release["spec"]["values"].get("crds", {}).get("install", True) is True
    assert release["spec"]["values"]["replicaCount"] == 2 and release["spec"]["values"]["leaderElection"]["enabled"]


def test_crd_status_is_kstatus_shaped():
    """Flux's kstatus and the Argo CD script read status.observedGeneration and Ready."""
    status = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert "observedGeneration" in status
    cond = status["conditions"]["items"]["properties"]
    assert {"type", "status", "reason", "message", "lastTransitionTime"} <= set(cond)


def test_health_lua_has_no_yaml_lint_issue_when_embedded():
    assert yamllint_errors((GITOPS / "argocd" / "health-check-cm.yaml").read_text(), generated=False) == []


def test_gitops_chart_values_pass_the_chart_schema_and_the_crd():
    """The values Argo CD and Flux hand to the chart are valid for it, and the driver they
    declare is valid for the CRD."""
    from support import chart_docs, crd_errors, one, validate_chart_values

    (app,) = load_docs((GITOPS / "argocd" / "application.yaml").read_text())
    release = load_docs((GITOPS / "flux" / "operator" / "helmrelease.yaml").read_text())[0]
    for values in (app["spec"]["source"]["helm"]["valuesObject"], release["spec"]["values"]):
        validate_chart_values(values)
        drivers = [d for d in chart_docs(values) if d["kind"] == "HardenedCsiDriver"]
        for d in drivers:
            assert crd_errors(d) == []
    assert one(chart_docs(app["spec"]["source"]["helm"]["valuesObject"]), "HardenedCsiDriver")


def test_flux_cel_health_check_reads_the_operators_conditions():
    """The healthCheckExprs example is the driver's Kustomization with CEL in place of kstatus: the
    same object, and expressions over exactly the fields the operator writes."""
    (cel,) = load_docs((GITOPS / "flux" / "kustomization-cel.yaml").read_text())
    docs = load_docs((GITOPS / "flux" / "kustomizations.yaml").read_text())
    drv = {d["metadata"]["name"]: d for d in docs}["hardened-csi-driver"]
    assert cel["metadata"] == drv["metadata"] and cel["spec"]["path"] == drv["spec"]["path"]
    spec = crd()["spec"]
    (expr,) = cel["spec"]["healthCheckExprs"]
    assert (expr["apiVersion"], expr["kind"]) == (f"{spec['group']}/v1alpha1", spec["names"]["kind"])
    assert "observedGeneration" in expr["inProgress"] and "'Reconciling'" in expr["inProgress"]
    assert "'Stalled'" in expr["failed"] and "'Degraded'" in expr["failed"]
    assert "'Ready'" in expr["current"]
    status = spec["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["default"] == {"observedGeneration": -1}
