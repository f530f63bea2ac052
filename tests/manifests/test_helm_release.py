"""Release journeys of the chart through the real Helm 4 engine (helm-python-sdk) against the
project's local API server, started as its own process: `helm upgrade` updates the CRD so a field
a release adds is stored, `helm uninstall` keeps the CRD, the README's adoption step moves a 0.1.0
install (CRD from crds/) onto the templated CRD, and `helm test` creates its hook objects in order,
reads the pod's phase and cleans up, with an identity (checked under RBAC) that may only wait for
its driver.

The previous chart version is built in the test from the current chart: the same chart with one
CRD field removed, in either layout a release has shipped (0.1.0's crds/ directory, or the
`crds.install` template). Building it keeps the test independent of git history (CI clones may be
shallow, and no released version lacks a field of today's CRD) and isolates the one change an
upgrade must carry: the CRD's new field.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import helm_python
import pytest
import yaml

from regenerate import chart_crd_template
from support import CHART, CRD_FILE, EXAMPLES, README_FILE, RELEASE_NAMESPACE, kubectl, local_apiserver

CRD_NAME = "hardenedcsidrivers.csi.hardened.dev"
# The field "the next release adds": spec.proxy.noProxy (no CEL rule or default names it).
NEW_FIELD = ("proxy", "noProxy")
NO_PROXY = "169.254.169.254,.svc,.cluster.local"
# The README's release name, so its commands run as written.
RELEASE = "hardened-csi-operator"
TIMEOUT = 120


def _spec_schema(crd: dict) -> dict:
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]


def _field_schema(crd: dict) -> dict | None:
    node = _spec_schema(crd)
    for key in NEW_FIELD:
        node = node.get("properties", {}).get(key)
        if node is None:
            return None
    return node


def _crd_without_new_field() -> dict:
    crd = yaml.safe_load(CRD_FILE.read_text())
    assert _field_schema(crd) is not None, f"the CRD has no spec.{'.'.join(NEW_FIELD)}: pick another NEW_FIELD"
    old = copy.deepcopy(crd)
    parent = _spec_schema(old)
    for key in NEW_FIELD[:-1]:
        parent = parent["properties"][key]
    del parent["properties"][NEW_FIELD[-1]]
    if isinstance(parent.get("default"), dict):
        parent["default"].pop(NEW_FIELD[-1], None)
    if NEW_FIELD[-1] in parent.get("required", []):
        parent["required"].remove(NEW_FIELD[-1])
    return old


def _previous_chart(tmp_path: Path, layout: str) -> Path:
    """The current chart without NEW_FIELD in its CRD, versioned below the current one. layout
    "template": the CRD is the crds.install template (this version's layout); "crds-dir": the CRD
    sits in crds/, which Helm installs once and never upgrades (0.1.0's layout)."""
    chart = tmp_path / "previous" / CHART.name
    shutil.copytree(CHART, chart)
    chart_yaml = chart / "Chart.yaml"
    version = yaml.safe_load(chart_yaml.read_text())["version"]
    chart_yaml.write_text(re.sub(r"(?m)^version: .*$", f"version: {version}-previous", chart_yaml.read_text()))
    old_crd = yaml.safe_dump(_crd_without_new_field(), sort_keys=False, width=1000)
    template = chart / "templates" / "crds" / f"{CRD_NAME}.yaml"
    if layout == "template":
        template.write_text(chart_crd_template(old_crd))
    else:
        template.unlink()
        (chart / "crds").mkdir()
        (chart / "crds" / f"{CRD_NAME}.yaml").write_text(old_crd)
    return chart


def _helm(kubeconfig: Path) -> helm_python.Config:
    return helm_python.Config(kubeconfig_path=str(kubeconfig), namespace=RELEASE_NAMESPACE)


def _get(kubeconfig: Path, *what: str) -> dict:
    return json.loads(kubectl(kubeconfig, "get", *what, "-o", "json").stdout)


def _driver() -> dict:
    """deploy/examples/minimal.yaml with NEW_FIELD set."""
    driver = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
    node = driver["spec"]
    for key in NEW_FIELD[:-1]:
        node = node.setdefault(key, {})
    node[NEW_FIELD[-1]] = NO_PROXY
    return driver


def _apply_driver(kubeconfig: Path, validate: str = "strict", check: bool = True):
    """Server-side applies _driver() with kubectl (`--validate=strict` refuses unknown fields,
    `warn` lets the API server prune them); returns the object as stored, or the failed run."""
    proc = kubectl(
        kubeconfig, "apply", "--server-side", "--field-manager=release-test", f"--validate={validate}", "-f", "-",
        stdin=json.dumps(_driver()), check=check,
    )
    if proc.returncode != 0:
        return proc
    return _get(kubeconfig, "hardenedcsidriver", _driver()["metadata"]["name"])


def _stored_field(driver: dict):
    node = driver["spec"]
    for key in NEW_FIELD:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _has_field(kubeconfig: Path) -> bool:
    return _field_schema(_get(kubeconfig, "crd", CRD_NAME)) is not None


def test_helm_upgrade_updates_the_crd_and_the_new_field_is_stored(tmp_path):
    """Install and upgrade wait as Helm 4 and Flux do (kstatus, `wait="watcher"`): the operator's
    Deployment is rolled out on a Node by the local API server's controllers both times."""
    with local_apiserver(tmp_path, args=("--nodes", "1")) as kc:
        helm = _helm(kc)
        previous = _previous_chart(tmp_path, "template")
        helm.install(
            str(previous), RELEASE, {}, namespace=RELEASE_NAMESPACE, create_namespace=True, timeout=TIMEOUT, wait="watcher"
        )
        assert _get(kc, "-n", RELEASE_NAMESPACE, "deployment", RELEASE)["status"].get("readyReplicas") == 1
        assert not _has_field(kc)
        # The previous CRD does not know the field: strict validation refuses it, and a client
        # that does not validate strictly has it pruned, silently.
        refused = _apply_driver(kc, check=False)
        assert refused.returncode != 0 and 'unknown field "spec.proxy.noProxy"' in refused.stderr, refused.stderr
        before = _apply_driver(kc, validate="warn")
        assert _stored_field(before) is None, "the previous CRD must prune the field (else this test proves nothing)"
        crd_uid = _get(kc, "crd", CRD_NAME)["metadata"]["uid"]

        release = helm.upgrade(str(CHART), RELEASE, {}, namespace=RELEASE_NAMESPACE, timeout=TIMEOUT, wait="watcher")
        assert release["revision"] == 2 and release["chart_version"] == yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
        crd = _get(kc, "crd", CRD_NAME)
        assert crd["metadata"]["uid"] == crd_uid, "the CRD was updated in place, not recreated"
        assert _field_schema(crd) is not None
        # The driver created under the previous CRD is untouched; applied again, the field stays.
        assert _get(kc, "hardenedcsidriver", "ebs")["metadata"]["uid"] == before["metadata"]["uid"]
        after = _apply_driver(kc)
        assert _stored_field(after) == NO_PROXY
        assert [r["chart_version"] for r in helm.history(RELEASE)] == [f"{release['chart_version']}-previous", release["chart_version"]]


def test_helm_uninstall_keeps_the_crd_and_the_drivers(tmp_path):
    with local_apiserver(tmp_path) as kc:
        helm = _helm(kc)
        helm.install(str(CHART), RELEASE, {}, namespace=RELEASE_NAMESPACE, create_namespace=True, timeout=TIMEOUT)
        assert _stored_field(_apply_driver(kc)) == NO_PROXY
        assert kubectl(kc, "-n", RELEASE_NAMESPACE, "get", "deployment", RELEASE, check=False).returncode == 0
        result = helm.uninstall(RELEASE, timeout=TIMEOUT)
        assert CRD_NAME in result["info"], result["info"]
        assert _get(kc, "crd", CRD_NAME)["metadata"]["name"] == CRD_NAME
        assert _stored_field(_get(kc, "hardenedcsidriver", "ebs")) == NO_PROXY
        assert kubectl(kc, "-n", RELEASE_NAMESPACE, "get", "deployment", RELEASE, check=False).returncode != 0
        assert helm.list(all_states=True) == []


def test_helm_uninstall_with_crds_keep_false_deletes_the_crd(tmp_path):
    """The keep policy is what keeps the CRD: without it Helm deletes the CRD, and the API
    server every HardenedCsiDriver with it (why crds.keep defaults to true)."""
    with local_apiserver(tmp_path) as kc:
        helm = _helm(kc)
        values = {"crds": {"keep": False}}
        helm.install(str(CHART), RELEASE, values, namespace=RELEASE_NAMESPACE, create_namespace=True, timeout=TIMEOUT)
        _apply_driver(kc)
        helm.uninstall(RELEASE, timeout=TIMEOUT)
        assert kubectl(kc, "get", "crd", CRD_NAME, check=False).returncode != 0


def test_helm_uninstall_keeps_the_driver_of_the_driver_block(tmp_path):
    """The chart's HardenedCsiDriver carries helm.sh/resource-policy: keep: `helm uninstall` leaves
    it alone (not even marked for deletion), so the driver keeps running while volumes need it;
    deleting it is a kubectl step the guard decides (README, "Removing the driver")."""
    driver_values = {"driver": {"enabled": True, "name": "ebs", "spec": {"aws": {"region": "us-east-1"}}}}
    with local_apiserver(tmp_path) as kc:
        helm = _helm(kc)
        helm.install(str(CHART), RELEASE, {}, namespace=RELEASE_NAMESPACE, create_namespace=True, timeout=TIMEOUT)
        helm.upgrade(str(CHART), RELEASE, driver_values, namespace=RELEASE_NAMESPACE, timeout=TIMEOUT)
        helm.uninstall(RELEASE, timeout=TIMEOUT)
        driver = _get(kc, "hardenedcsidriver", "ebs")
        assert "deletionTimestamp" not in driver["metadata"], driver["metadata"]
        assert driver["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert kubectl(kc, "-n", RELEASE_NAMESPACE, "get", "deployment", RELEASE, check=False).returncode != 0
        assert helm.list(all_states=True) == []


def _readme_adoption_commands() -> list[list[str]]:
    """The `kubectl label|annotate crd ...` lines of the README's upgrade note, as argv lists."""
    text = README_FILE.read_text().replace("\\\n", " ")
    commands = [line.split() for line in text.splitlines() if re.match(r"\s*kubectl (label|annotate) crd ", line)]
    assert len(commands) == 2, f"the README's CRD adoption commands are missing or changed: {commands}"
    return [c[1:] for c in commands]


def test_upgrade_from_the_crds_directory_layout_after_the_readme_adoption_step(tmp_path):
    """0.1.0 shipped the CRD in crds/, created outside the release: Helm refuses to take it over
    on upgrade until it carries the release's ownership metadata, which the README's two kubectl
    commands add. Then the upgrade updates it like any other upgrade."""
    with local_apiserver(tmp_path) as kc:
        helm = _helm(kc)
        previous = _previous_chart(tmp_path, "crds-dir")
        helm.install(str(previous), RELEASE, {}, namespace=RELEASE_NAMESPACE, create_namespace=True, timeout=TIMEOUT)
        assert not _has_field(kc)
        assert "app.kubernetes.io/managed-by" not in _get(kc, "crd", CRD_NAME)["metadata"].get("labels", {})

        with pytest.raises(helm_python.HelmError, match="invalid ownership metadata"):
            helm.upgrade(str(CHART), RELEASE, {}, namespace=RELEASE_NAMESPACE, timeout=TIMEOUT)
        assert not _has_field(kc)

        for argv in _readme_adoption_commands():
            kubectl(kc, *argv)
        helm.upgrade(str(CHART), RELEASE, {}, namespace=RELEASE_NAMESPACE, timeout=TIMEOUT)
        assert _has_field(kc)
        assert _stored_field(_apply_driver(kc)) == NO_PROXY
        meta = _get(kc, "crd", CRD_NAME)["metadata"]
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep"
        assert meta["annotations"]["meta.helm.sh/release-name"] == RELEASE


def test_driver_from_values_needs_the_crd_served_before_the_install(tmp_path):
    """Helm maps every object of a release before applying any, so the install that creates the
    CRD cannot also create a HardenedCsiDriver: it fails and leaves nothing behind. The README's
    two steps work: install, then upgrade with driver.enabled."""
    driver_values = {"driver": {"enabled": True, "name": "ebs", "spec": {"aws": {"region": "us-east-1"}}}}
    with local_apiserver(tmp_path) as kc:
        helm = _helm(kc)
        with pytest.raises(helm_python.HelmReleaseError, match="unable to build kubernetes objects"):
            helm.install(str(CHART), RELEASE, driver_values, namespace=RELEASE_NAMESPACE, create_namespace=True, timeout=TIMEOUT)
        assert helm.list(all_states=True) == []
        assert kubectl(kc, "get", "crd", CRD_NAME, check=False).returncode != 0

        helm.install(str(CHART), RELEASE, {}, namespace=RELEASE_NAMESPACE, create_namespace=True, timeout=TIMEOUT)
        helm.upgrade(str(CHART), RELEASE, driver_values, namespace=RELEASE_NAMESPACE, timeout=TIMEOUT)
        driver = _get(kc, "hardenedcsidriver", "ebs")
        assert driver["spec"]["aws"]["region"] == "us-east-1"
        assert driver["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE


def _helm_test_in_background(helm: helm_python.Config) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = helm.test(RELEASE, timeout=60)
        except helm_python.HelmError as e:
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _wait_for(what: str, predicate, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


TEST_OBJECTS = [
    ("serviceaccount", f"{RELEASE}-test", True),
    ("clusterrole", f"{RELEASE}-test", False),
    ("clusterrolebinding", f"{RELEASE}-test", False),
    ("networkpolicy", f"{RELEASE}-test", True),
    ("pod", f"{RELEASE}-test", True),
]


def _exists(kc: Path, kind: str, name: str, namespaced: bool) -> bool:
    ns = ["-n", RELEASE_NAMESPACE] if namespaced else []
    return kubectl(kc, *ns, "get", kind, name, check=False).returncode == 0


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_helm_test_runs_the_hook_pod_and_cleans_up_after_success(tmp_path, phase):
    """`helm test` through the real engine: the hook's ServiceAccount and RBAC exist before its
    pod, and Helm reads the pod's phase. The local API server's kubelet stand-in does not run
    container commands (and without a Node nothing is scheduled), so the test sets the phase a
    kubelet reports once both containers exited; what the containers run is checked by the render
    tests, checkov and, for the kubectl check, the RBAC test below."""
    with local_apiserver(tmp_path) as kc:
        helm = _helm(kc)
        helm.install(str(CHART), RELEASE, {}, namespace=RELEASE_NAMESPACE, create_namespace=True, timeout=TIMEOUT)
        assert not any(_exists(kc, *o) for o in TEST_OBJECTS), "test objects exist only while a test runs"
        thread, outcome = _helm_test_in_background(helm)
        _wait_for("the test pod", lambda: _exists(kc, "pod", f"{RELEASE}-test", True))
        assert all(_exists(kc, *o) for o in TEST_OBJECTS)
        kubectl(kc, "-n", RELEASE_NAMESPACE, "patch", "pod", f"{RELEASE}-test", "--subresource=status",
                "--type=merge", "-p", json.dumps({"status": {"phase": phase}}))
        thread.join(timeout=90)
        assert not thread.is_alive(), "helm test did not return"
        if phase == "Succeeded":
            assert "error" not in outcome, outcome
            _wait_for("hook clean-up", lambda: not any(_exists(kc, *o) for o in TEST_OBJECTS))
        else:
            assert "error" in outcome, outcome
            assert f"{RELEASE}-test" in str(outcome["error"]), outcome["error"]
            # A failed run leaves the pod for `kubectl logs`; the next run replaces it.
            assert _exists(kc, "pod", f"{RELEASE}-test", True)


def _set_ready(kc: Path, name: str, status: str) -> None:
    """The operator's part: the driver's Ready condition in its status (the operator does not run
    here)."""
    generation = _get(kc, "hardenedcsidriver", name)["metadata"]["generation"]
    condition = {
        "type": "Ready", "status": status, "reason": "Available" if status == "True" else "ControllerUnavailable",
        "message": "controller 2/2, nodes 3/3", "lastTransitionTime": "2026-12-01T00:00:00Z",
        "observedGeneration": generation,
    }
    kubectl(kc, "patch", "hardenedcsidriver", name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"observedGeneration": generation, "conditions": [condition]}}))


def test_helm_test_identity_may_wait_for_its_driver_and_nothing_else(tmp_path):
    """With RBAC enforced (local-apiserver --authorization-mode=RBAC, as a real cluster), the test
    pod's own ServiceAccount runs the pod's exact `kubectl wait` to success against the driver it
    checks, and is refused everything else; its token dies with the hook objects."""
    with local_apiserver(tmp_path, rbac=True) as kc:
        helm = _helm(kc)
        helm.install(str(CHART), RELEASE, {}, namespace=RELEASE_NAMESPACE, create_namespace=True, timeout=TIMEOUT)
        _apply_driver(kc)
        other = {**_driver(), "metadata": {"name": "other"}}
        kubectl(kc, "apply", "--server-side", "-f", "-", stdin=json.dumps(other))
        _set_ready(kc, "ebs", "True")

        thread, outcome = _helm_test_in_background(helm)
        pod_name = f"{RELEASE}-test"
        _wait_for("the test pod", lambda: _exists(kc, "pod", pod_name, True))
        pod = _get(kc, "-n", RELEASE_NAMESPACE, "pod", pod_name)
        token = kubectl(kc, "-n", RELEASE_NAMESPACE, "create", "token", pod["spec"]["serviceAccountName"]).stdout.strip()

        def as_test_pod(*args: str) -> subprocess.CompletedProcess:
            return kubectl(kc, f"--token={token}", *args, check=False)

        (container,) = [c for c in pod["spec"]["containers"] if c["command"] == ["kubectl"]]
        args = [a if not a.startswith("--cache-dir=") else f"--cache-dir={tmp_path / 'kube-cache'}" for a in container["args"]]
        waited = as_test_pod(*args)
        assert waited.returncode == 0, waited.stderr
        assert "condition met" in waited.stdout
        for denied in (
            ["get", "hardenedcsidriver", "other"],
            ["get", "hardenedcsidrivers"],
            ["-n", RELEASE_NAMESPACE, "get", "secrets"],
            ["patch", "hardenedcsidriver", "ebs", "--type=merge", "-p", '{"spec":{"adopt":true}}'],
        ):
            proc = as_test_pod(*denied)
            assert proc.returncode != 0 and "forbidden" in proc.stderr.lower(), (denied, proc.stderr)

        # Not Ready: the same command fails (with a short timeout), so the test would fail.
        _set_ready(kc, "ebs", "False")
        short = [a if not a.startswith("--timeout=") else "--timeout=2s" for a in args]
        assert as_test_pod(*short).returncode != 0

        kubectl(kc, "-n", RELEASE_NAMESPACE, "patch", "pod", pod_name, "--subresource=status",
                "--type=merge", "-p", json.dumps({"status": {"phase": "Succeeded"}}))
        thread.join(timeout=90)
        assert not thread.is_alive() and "error" not in outcome, outcome
        _wait_for("hook clean-up", lambda: not any(_exists(kc, *o) for o in TEST_OBJECTS))
        gone = as_test_pod("get", "hardenedcsidriver", "ebs")
        assert gone.returncode != 0 and "unauthorized" in gone.stderr.lower(), gone.stderr


def _container_states(kc: Path, pod: str) -> dict[str, str]:
    """container name -> its state (`running`, or the waiting/terminated reason)."""
    status = _get(kc, "-n", RELEASE_NAMESPACE, "pod", pod).get("status", {})
    out = {}
    for c in status.get("containerStatuses", []):
        state = c.get("state", {})
        out[c["name"]] = "running" if "running" in state else next(
            (v.get("reason", k) for k, v in state.items()), "unknown"
        )
    return out


def test_helm_test_pod_pulls_from_dhi_io_only_with_the_pull_secret(tmp_path):
    """The local API server's kubelet stand-in refuses dhi.io pulls without a pull secret for the
    registry, as a real kubelet does: the test pod waits in ErrImagePull/ImagePullBackOff until
    `tests.imagePullSecrets` exists in the release namespace, then both containers start."""
    with local_apiserver(tmp_path) as kc:
        helm = _helm(kc)
        helm.install(str(CHART), RELEASE, {}, namespace=RELEASE_NAMESPACE, create_namespace=True, timeout=TIMEOUT)
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a", "labels": {"kubernetes.io/os": "linux"}}}
        kubectl(kc, "apply", "-f", "-", stdin=json.dumps(node))
        thread, outcome = _helm_test_in_background(helm)
        pod = f"{RELEASE}-test"
        _wait_for("the test pod", lambda: _exists(kc, "pod", pod, True))
        _wait_for(
            "ErrImagePull without the pull secret",
            lambda: set(_container_states(kc, pod).values()) & {"ErrImagePull", "ImagePullBackOff"},
        )
        secret = kubectl(
            kc, "-n", RELEASE_NAMESPACE, "create", "secret", "docker-registry", "dhi-pull", "--dry-run=client", "-o", "json",
            "--docker-server=dhi.io", "--docker-username=test", "--docker-password=test",
        ).stdout
        kubectl(kc, "apply", "-f", "-", stdin=secret)
        _wait_for("both test containers running", lambda: _container_states(kc, pod) == {
            "operator-readyz": "running", "driver-ready": "running"
        }, seconds=60)
        # The containers would now exit by themselves; the stand-in does not run their commands.
        kubectl(kc, "-n", RELEASE_NAMESPACE, "patch", "pod", pod, "--subresource=status",
                "--type=merge", "-p", json.dumps({"status": {"phase": "Succeeded"}}))
        thread.join(timeout=90)
        assert not thread.is_alive() and "error" not in outcome, outcome
