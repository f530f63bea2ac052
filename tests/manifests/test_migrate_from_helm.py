"""Journey: migrate from the upstream aws-ebs-csi-driver Helm chart to the operator (issue 14).

The upstream chart (reference data in ../shared/reference/upstream-ebs-csi/chart/, installed with
the real Helm 4 engine, helm-python-sdk) is installed into the project's local API server under a
non-default release name with common values: Windows nodes, the old CSIDriver (no fsGroupPolicy),
three controller replicas and a StorageClass. Then the operator binary runs and a HardenedCsiDriver
with `adopt: true` takes every object over: the immutable workload selectors of the release are
kept (the pod templates satisfy them), the CSIDriver is replaced to gain fsGroupPolicy, the images
are dhi.io's, and the release's Windows DaemonSet (which the operator does not render) is named in
the Ownership condition with what to do. Finally the Helm release record is dropped without
deleting anything (the README's migration command) and the driver still runs.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import helm_python
import yaml

from support import (
    CRD_FILE,
    EXAMPLES,
    RELEASE_NAMESPACE,
    REPO,
    assert_never_refused,
    install_operator_identity,
    kubectl,
    local_apiserver,
    operator_process,
)

UPSTREAM_CHART = REPO.parent / "shared" / "reference" / "upstream-ebs-csi" / "chart" / "aws-ebs-csi-driver"
RELEASE = "legacy-ebs"
NAMESPACE = "kube-system"
UPSTREAM_VALUES = {
    "node": {"enableWindows": True},
    "useOldCSIDriver": True,
    "controller": {"replicaCount": 3},
    "storageClasses": [{"name": "gp3", "parameters": {"type": "gp3"}}],
}
TIMEOUT = 120


def _get(kc: Path, *what: str) -> dict:
    return json.loads(kubectl(kc, "get", *what, "-o", "json").stdout)


def _conditions(kc: Path, name: str) -> dict[str, dict]:
    status = _get(kc, "hardenedcsidriver", name).get("status") or {}
    return {c["type"]: c for c in status.get("conditions", [])}


def _wait_ready(kc: Path, name: str, log: Path) -> dict[str, dict]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        conds = _conditions(kc, name)
        if conds.get("Ready", {}).get("status") == "True":
            return conds
        if time.monotonic() > deadline:
            raise AssertionError(
                f"HardenedCsiDriver/{name} not Ready after {TIMEOUT}s:\n{json.dumps(conds, indent=1)}\n"
                f"operator log:\n{log.read_text()[-4000:]}"
            )
        time.sleep(0.5)


def _driver() -> dict:
    driver = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
    driver["spec"]["adopt"] = True
    return driver


def _satisfies(labels: dict, selector: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_adopt_an_upstream_helm_release_then_drop_its_record(tmp_path):
    with local_apiserver(tmp_path, rbac=True, args=("--nodes", "2")) as kc:
        kubectl(kc, "apply", "-f", str(CRD_FILE))
        helm = helm_python.Config(kubeconfig_path=str(kc), namespace=NAMESPACE)
        helm.install(str(UPSTREAM_CHART), RELEASE, UPSTREAM_VALUES, namespace=NAMESPACE, timeout=TIMEOUT)
        before = {
            kind: _get(kc, "-n", NAMESPACE, kind, name)
            for kind, name in (("deployment", "ebs-csi-controller"), ("daemonset", "ebs-csi-node"))
        }
        for obj in before.values():
            # The chart's selectors carry the release: what made adoption fail with a 422.
            assert obj["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == RELEASE
        old_csidriver = _get(kc, "csidriver", "ebs.csi.aws.com")
        # useOldCSIDriver leaves fsGroupPolicy out: the API server defaults it.
        assert old_csidriver["spec"]["fsGroupPolicy"] == "ReadWriteOnceWithFSType", old_csidriver["spec"]
        assert _get(kc, "-n", NAMESPACE, "daemonset", "ebs-csi-node-windows")["metadata"]["name"]

        kubectl(
            kc, "apply", "-f", "-",
            stdin=subprocess.run(
                ["kubectl", "-n", NAMESPACE, "create", "secret", "docker-registry", "dhi-pull", "--dry-run=client",
                 "-o", "yaml", "--docker-server=dhi.io", "--docker-username=u", "--docker-password=p"],
                capture_output=True, text=True, check=True,
            ).stdout,
        )
        # The operator as the chart's ServiceAccount with the chart's RBAC (the upstream release
        # already holds the driver's ClusterRoles and bindings, which the operator verifies).
        operator_kc, user = install_operator_identity(kc, {}, driver_rbac=False)
        with operator_process(operator_kc, tmp_path, f"--lease-namespace={RELEASE_NAMESPACE}") as operator:
            log = operator.log
            driver = _driver()
            kubectl(kc, "apply", "--server-side", "-f", "-", stdin=json.dumps(driver))
            _wait_ready(kc, driver["metadata"]["name"], log)

            for kind, old in before.items():
                now = _get(kc, "-n", NAMESPACE, kind, old["metadata"]["name"])
                assert now["metadata"]["uid"] == old["metadata"]["uid"], f"{kind} was replaced, not adopted"
                assert now["spec"]["selector"] == old["spec"]["selector"], f"{kind}: the selector is kept"
                assert _satisfies(now["spec"]["template"]["metadata"]["labels"], now["spec"]["selector"])
                assert now["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "hardened-csi-operator"
                hcd_uid = _get(kc, "hardenedcsidriver", driver["metadata"]["name"])["metadata"]["uid"]
                assert now["metadata"]["annotations"]["csi.hardened.dev/owner-uid"] == hcd_uid
                pod = now["spec"]["template"]["spec"]
                images = [c["image"] for c in pod["containers"] + (pod.get("initContainers") or [])]
                assert images and all(i.startswith("dhi.io/") for i in images), images
            assert _get(kc, "-n", NAMESPACE, "deployment", "ebs-csi-controller")["status"]["readyReplicas"] >= 1

            csidriver = _get(kc, "csidriver", "ebs.csi.aws.com")
            assert csidriver["metadata"]["uid"] != old_csidriver["metadata"]["uid"], "the CSIDriver was replaced"
            assert csidriver["spec"]["fsGroupPolicy"] == "File"
            assert csidriver["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "hardened-csi-operator"
            sc = _get(kc, "storageclass", "gp3")
            assert sc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "hardened-csi-operator"

            # The Windows node plugin is not rendered by the operator: reported, neither deleted
            # nor silently left.
            ownership = _conditions(kc, driver["metadata"]["name"])["OwnershipConflict"]
            assert ownership["reason"] == "UnmanagedReleaseObjects", ownership
            assert f"DaemonSet/ebs-csi-node-windows of Helm release {RELEASE}" in ownership["message"], ownership
            assert f"kubectl -n {NAMESPACE} delete daemonset ebs-csi-node-windows" in ownership["message"]
            assert "ebs-csi-controller " not in ownership["message"] and "ebs-csi-node " not in ownership["message"]
            assert _get(kc, "-n", NAMESPACE, "daemonset", "ebs-csi-node-windows")["metadata"]["name"]

            # Drop the release record, nothing else (the README's migration step).
            kubectl(kc, "-n", NAMESPACE, "delete", "secret", "-l", f"owner=helm,name={RELEASE}")
            assert helm.list(all_states=True) == []
            kubectl(kc, "annotate", "hardenedcsidriver", driver["metadata"]["name"], "journey/step=released")
            assert _wait_ready(kc, driver["metadata"]["name"], log)["Ready"]["status"] == "True"
            for kind, old in before.items():
                still = _get(kc, "-n", NAMESPACE, kind, old["metadata"]["name"])
                assert still["metadata"]["uid"] == old["metadata"]["uid"], f"{kind} is gone or replaced"
            # The chart's RBAC refused the operator nothing on the whole way.
            assert_never_refused(kc, user)
