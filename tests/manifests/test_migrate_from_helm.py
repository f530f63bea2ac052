"""Journey: migrate from the upstream aws-ebs-csi-driver Helm chart to the operator (issue 14).

The upstream chart (reference data in ../shared/reference/upstream-ebs-csi/chart/, installed with
the real Helm 4 engine, helm-python-sdk) is installed into the project's local API server under a
non-default release name with common values: Windows nodes, the old CSIDriver (no fsGroupPolicy),
three controller replicas and a StorageClass. The README's hand-over gives the release's driver
RBAC (the same ClusterRoles, bindings and leases Role the chart ships) to the chart's release, the
chart is installed (`--force-conflicts`) and the operator binary runs as its ServiceAccount (a 403
fails the test). Then a HardenedCsiDriver
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

from journey import OPERATOR_RELEASE, cluster, hand_driver_rbac_to_helm
from support import EXAMPLES, REPO, kubectl, local_apiserver

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
DRIVER_CLUSTER_ROLES = ("ebs-csi-node-role", "ebs-external-attacher-role", "ebs-external-provisioner-role")


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
    rbac_uids: dict[str, str] = {}

    def upstream_release(kc):
        """The upstream release, then the README's hand-over of its driver RBAC to the chart's
        release (the chart installs the same ClusterRoles, bindings and leases Role)."""
        helm_python.Config(kubeconfig_path=str(kc), namespace=NAMESPACE).install(
            str(UPSTREAM_CHART), RELEASE, UPSTREAM_VALUES, namespace=NAMESPACE, timeout=TIMEOUT
        )
        rbac_uids.update({n: _get(kc, "clusterrole", n)["metadata"]["uid"] for n in DRIVER_CLUSTER_ROLES})
        hand_driver_rbac_to_helm(kc)

    with cluster(tmp_path, "--nodes", "2", before_install=upstream_release, force_conflicts=True) as c:
        kc = c.kc
        helm = helm_python.Config(kubeconfig_path=str(kc), namespace=NAMESPACE)
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
        # The operator as the chart's ServiceAccount with the chart's RBAC, which now includes the
        # driver's ClusterRoles and bindings the upstream release created (same uids).
        for name, uid in rbac_uids.items():
            role = _get(kc, "clusterrole", name)
            assert role["metadata"]["uid"] == uid, f"ClusterRole {name} was replaced"
            assert role["metadata"]["annotations"]["meta.helm.sh/release-name"] == OPERATOR_RELEASE
        with c.operator() as operator:
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
            # The driver's RBAC is the chart's, untouched by dropping the old record.
            for name, uid in rbac_uids.items():
                assert _get(kc, "clusterrole", name)["metadata"]["uid"] == uid, f"ClusterRole {name} is gone"


def test_a_keep_policy_on_the_live_objects_does_not_stop_helm_uninstall(tmp_path):
    """Why the README retires the old release by deleting its record, never by `helm uninstall`:
    Helm 4 reads `helm.sh/resource-policy: keep` from the release's stored manifest, not from the
    live objects, so the operator annotating what it adopted (or anyone annotating it) would not
    keep the driver. If this ever fails, Helm honours the live annotation and the README's advice
    can change."""
    with local_apiserver(tmp_path, args=("--nodes", "1")) as kc:
        helm = helm_python.Config(kubeconfig_path=str(kc), namespace=NAMESPACE)
        helm.install(str(UPSTREAM_CHART), RELEASE, UPSTREAM_VALUES, namespace=NAMESPACE, timeout=TIMEOUT)
        kept = (("-n", NAMESPACE, "deployment", "ebs-csi-controller"), ("-n", NAMESPACE, "daemonset", "ebs-csi-node"),
                ("clusterrole", "ebs-csi-node-role"), ("csidriver", "ebs.csi.aws.com"))
        for what in kept:
            kubectl(kc, "annotate", *what, "helm.sh/resource-policy=keep")
            assert _get(kc, *what)["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        helm.uninstall(RELEASE)
        left = [what for what in kept if kubectl(kc, "get", *what, "--ignore-not-found", "-o", "name").stdout.strip()]
        assert left == [], f"helm uninstall kept {left}: a live keep annotation counts now"
