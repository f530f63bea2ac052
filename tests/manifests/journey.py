"""What the journey tests (issue 14) share: a cluster (the project's local API server enforcing RBAC)
with the operator installed as a user installs it (the chart with the Helm 4 engine, or the
kustomize base with kubectl), the operator binary run as its own process with that installation's
arguments and its ServiceAccount's token, reads through kubectl, and waits that fail with what was
seen and the operator's log."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import helm_python
import yaml

from support import (
    CHART, DEPLOY, EXAMPLES, README_FILE, RELEASE_NAMESPACE, REPO, OperatorProcess, assert_never_refused, kubectl,
    local_apiserver, operator_process, service_account_kubeconfig,
)

UPSTREAM_CHART = REPO.parent / "shared" / "reference" / "upstream-ebs-csi" / "chart" / "aws-ebs-csi-driver"
NAMESPACE = "kube-system"
TIMEOUT = 120
# The README's release name for the operator's chart.
OPERATOR_RELEASE = "hardened-csi-operator"


def get(kc: Path, *what: str) -> dict:
    return json.loads(kubectl(kc, "get", *what, "-o", "json").stdout)


def get_opt(kc: Path, *what: str) -> dict | None:
    proc = kubectl(kc, "get", *what, "-o", "json", "--ignore-not-found", check=True)
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def conditions(kc: Path, name: str) -> dict[str, dict]:
    status = get(kc, "hardenedcsidriver", name).get("status") or {}
    return {c["type"]: c for c in status.get("conditions", [])}


@dataclass
class Cluster:
    """A local API server enforcing RBAC (and OwnerReferencesPermissionEnforcement) with the
    operator installed the way a user installs it; `operator()` runs the binary with that
    installation's Deployment arguments as its ServiceAccount."""

    kc: Path
    workdir: Path
    deployment: dict
    operator_kc: Path
    user: str

    def operator(self, *extra: str):
        return operator_process(self.operator_kc, self.workdir, *extra, deployment=self.deployment)


def helm(kc: Path) -> helm_python.Config:
    return helm_python.Config(kubeconfig_path=str(kc), namespace=RELEASE_NAMESPACE)


def _helm_force_conflicts(kc: Path, action: str, chart: Path, values: dict, **opts: Any) -> dict:
    """`helm install|upgrade ... --force-conflicts` with the Helm 4 engine: helm-python-sdk 0.2
    has no keyword for that flag, so the engine's action is called with the same options plus
    `force_conflicts`, which it passes to Helm's server-side apply."""
    from helm_python import _native
    from helm_python.config import _loads_obj, _opts

    config = helm(kc)
    handle, ref = config._chart_args(str(chart))
    payload = _native.call_string(
        f"helm_{action}", config._raw(), config._context_arg(None), handle, ref, OPERATOR_RELEASE, json.dumps(values),
        _opts(namespace=RELEASE_NAMESPACE, timeout_seconds=TIMEOUT, force_conflicts=True, **opts),
    )
    return _loads_obj(payload)


def install_with_helm(kc: Path, values: dict | None = None, chart: Path = CHART, force_conflicts: bool = False) -> None:
    """The README's `helm install hardened-csi-operator charts/hardened-csi-operator --namespace
    hardened-csi-operator --create-namespace` (with `--force-conflicts` where the README says so),
    with the Helm 4 engine."""
    if force_conflicts:
        _helm_force_conflicts(kc, "install", chart, values or {}, create_namespace=True)
    else:
        helm(kc).install(str(chart), OPERATOR_RELEASE, values or {}, namespace=RELEASE_NAMESPACE,
                         create_namespace=True, timeout=TIMEOUT)


def upgrade_with_helm(kc: Path, values: dict | None = None, chart: Path = CHART, force_conflicts: bool = False) -> None:
    """`helm upgrade hardened-csi-operator charts/hardened-csi-operator --namespace
    hardened-csi-operator` (optionally `--force-conflicts`), with the Helm 4 engine."""
    if force_conflicts:
        _helm_force_conflicts(kc, "upgrade", chart, values or {})
    else:
        helm(kc).upgrade(str(chart), OPERATOR_RELEASE, values or {}, namespace=RELEASE_NAMESPACE, timeout=TIMEOUT)


def install_with_kustomize(kc: Path) -> None:
    """The README's `kubectl apply --server-side -k deploy/`."""
    kubectl(kc, "apply", "--server-side", "-k", str(DEPLOY))


def operator_deployment(kc: Path) -> dict:
    (deployment,) = get(kc, "-n", RELEASE_NAMESPACE, "deployments", "-l",
                        "app.kubernetes.io/name=hardened-csi-operator")["items"]
    return deployment


def readme_block(marker: str) -> str:
    """The shell block of the README between `<!-- MARKER: ... -->` and `<!-- end MARKER -->`."""
    text = README_FILE.read_text()
    start = text.index(f"<!-- {marker}:")
    block = text[start:text.index(f"<!-- end {marker} -->", start)]
    return block.split("```sh\n", 1)[1].rsplit("```", 1)[0]


def run_readme_block(kc: Path, marker: str) -> str:
    """Runs that README block with bash (errexit, nounset, pipefail) and kubectl on `kc`."""
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_block(marker)], capture_output=True, text=True,
                          env={**os.environ, "KUBECONFIG": str(kc)}, timeout=120)
    assert proc.returncode == 0, f"README block {marker} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def hand_driver_rbac_to_helm(kc: Path) -> None:
    """The README's "Handing the driver's RBAC to the chart", as written."""
    run_readme_block(kc, "rbac-handover")


@contextlib.contextmanager
def cluster(
    workdir: Path, *server_args: str, install: str = "helm", values: dict | None = None,
    before_install: Callable[[Path], None] | None = None, force_conflicts: bool = False,
) -> Iterator[Cluster]:
    """`install` is "helm" (the chart with `values`) or "kustomize" (deploy/); `before_install`
    lays down what the cluster had before the operator (as the admin). Whatever the test did, the
    API server must have refused the operator's ServiceAccount nothing (its access log)."""
    with local_apiserver(workdir, rbac=True, args=server_args) as kc:
        if before_install:
            before_install(kc)
        if install == "helm":
            install_with_helm(kc, values, force_conflicts=force_conflicts)
        elif install == "kustomize":
            assert values is None, "kustomize takes no values"
            install_with_kustomize(kc)
        else:
            raise ValueError(f"install must be helm or kustomize, not {install!r}")
        kubectl(kc, "wait", "--for=condition=Established", "crd/hardenedcsidrivers.csi.hardened.dev")
        deployment = operator_deployment(kc)
        pod = deployment["spec"]["template"]["spec"]
        operator_kc, user = service_account_kubeconfig(kc, RELEASE_NAMESPACE, pod["serviceAccountName"])
        yield Cluster(kc, workdir, deployment, operator_kc, user)
        assert_never_refused(kc, user)


def wait_for(what: str, probe: Callable[[], Any], op: OperatorProcess | None = None, timeout: float = TIMEOUT) -> Any:
    """Polls `probe` until it returns something truthy; fails naming `what`, the last value seen
    and the operator's log."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            log = f"\noperator log:\n{op.tail()}" if op else ""
            raise AssertionError(f"{what}: not seen after {timeout}s (last: {last!r}){log}")
        time.sleep(0.3)


def wait_condition(
    kc: Path, name: str, type_: str, status: str, op: OperatorProcess, reason: str | None = None
) -> dict:
    def probe():
        c = conditions(kc, name).get(type_, {})
        ok = c.get("status") == status and (reason is None or c.get("reason") == reason)
        return c if ok else None

    try:
        return wait_for(f"{type_}={status}" + (f" ({reason})" if reason else ""), probe, op)
    except AssertionError as e:
        raise AssertionError(f"{e}\nconditions:\n{json.dumps(conditions(kc, name), indent=1)}") from None


def wait_ready(kc: Path, name: str, op: OperatorProcess) -> dict[str, dict]:
    wait_condition(kc, name, "Ready", "True", op)
    return conditions(kc, name)


def wait_rolled_out(kc: Path, name: str, op: OperatorProcess) -> dict[str, dict]:
    """Ready and not Reconciling for the current generation: the rollout is complete."""
    generation = get(kc, "hardenedcsidriver", name)["metadata"]["generation"]

    def probe():
        c = conditions(kc, name)
        done = (
            c.get("Ready", {}).get("status") == "True"
            and c.get("Reconciling", {}).get("status") == "False"
            and c.get("Ready", {}).get("observedGeneration") == generation
        )
        return c if done else None

    return wait_for(f"HardenedCsiDriver/{name} rolled out at generation {generation}", probe, op)


def pull_secret(kc: Path, name: str = "dhi-pull", namespace: str = NAMESPACE) -> None:
    """A docker-registry Secret for dhi.io, as the README's command creates it."""
    manifest = subprocess.run(
        ["kubectl", "-n", namespace, "create", "secret", "docker-registry", name, "--dry-run=client", "-o", "yaml",
         "--docker-server=dhi.io", "--docker-username=u", "--docker-password=p"],
        capture_output=True, text=True, check=True,
    ).stdout
    kubectl(kc, "apply", "-f", "-", stdin=manifest)


def driver(**spec: Any) -> dict:
    """deploy/examples/minimal.yaml with `spec` merged in at the top level."""
    doc = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
    doc["spec"].update(spec)
    return doc


def apply_driver(kc: Path, doc: dict) -> None:
    kubectl(kc, "apply", "--server-side", "-f", "-", stdin=json.dumps(doc))


def patch_spec(kc: Path, name: str, patch: dict) -> None:
    kubectl(kc, "patch", "hardenedcsidriver", name, "--type=merge", "-p", json.dumps({"spec": patch}))


def pods(kc: Path, selector: str, namespace: str = NAMESPACE) -> list[dict]:
    return get(kc, "-n", namespace, "pods", "-l", selector)["items"]


def images_of(obj: dict) -> dict[str, str]:
    spec = obj["spec"]["template"]["spec"] if obj["kind"] != "Pod" else obj["spec"]
    return {c["name"]: c["image"] for c in spec["containers"] + (spec.get("initContainers") or [])}


def satisfies(labels: dict, selector: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
