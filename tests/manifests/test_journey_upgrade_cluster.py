"""Journey 5 (issue 14): upgrade the cluster while the operator runs. The local API server changes
its Kubernetes version at run time (`POST /local-apiserver/version`, as kubectl sends it); the
operator re-discovers the version on its interval (`--discovery-interval`) and re-renders, without
a restart: MutableCSINodeAllocatableCount is off by default up to 1.34 (alpha in 1.33, beta but off
in 1.34) and on from 1.35, so the CSIDriver's `nodeAllocatableUpdatePeriodSeconds` and the
attacher's feature gate appear on 1.32 -> 1.33 -> 1.35 only at 1.35, and a downgrade to 1.34
turns them off again."""

from __future__ import annotations

import json

from journey import (
    NAMESPACE, apply_driver, cluster, driver, get, images_of, pull_secret, wait_for, wait_rolled_out,
)
from support import kubectl

NAME = "ebs"
GATE = "--feature-gates=MutableCSINodeAllocatableCount=true"


def _set_version(kc, tmp_path, version: str) -> None:
    body = tmp_path / "version.json"
    body.write_text(json.dumps({"kubernetesVersion": version}))
    out = json.loads(kubectl(kc, "create", "--raw", "/local-apiserver/version", "-f", str(body)).stdout)
    assert out["minor"] == version.split(".")[1], out


def _attacher_args(kc) -> list[str]:
    deploy = get(kc, "-n", NAMESPACE, "deployment", "ebs-csi-controller")
    attacher = [c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == "csi-attacher"]
    return attacher[0]["args"]


def _controller_pods(kc) -> list[dict]:
    return get(kc, "-n", NAMESPACE, "pods", "-l", "app=ebs-csi-controller")["items"]


def _period(kc):
    return get(kc, "csidriver", "ebs.csi.aws.com")["spec"].get("nodeAllocatableUpdatePeriodSeconds")


def _reported(kc, version: str, op):
    def probe():
        st = get(kc, "hardenedcsidriver", NAME).get("status") or {}
        return st if st.get("kubernetesVersion") == version else None

    return wait_for(f"status.kubernetesVersion {version}", probe, op)


def test_the_kubernetes_version_is_rediscovered_while_running(tmp_path):
    with cluster(tmp_path, "--nodes", "1", "--kubernetes-version", "1.32") as c:
        kc = c.kc
        pull_secret(kc)
        with c.operator("--discovery-interval=1s") as op:
            apply_driver(kc, driver())
            wait_rolled_out(kc, NAME, op)
            _reported(kc, "1.32", op)
            assert _period(kc) is None
            assert GATE not in _attacher_args(kc)
            csidriver_uid = get(kc, "csidriver", "ebs.csi.aws.com")["metadata"]["uid"]

            # 1.33: the gate is alpha, off by default there: nothing to turn on yet.
            _set_version(kc, tmp_path, "1.33")
            _reported(kc, "1.33", op)
            assert _period(kc) is None
            assert GATE not in _attacher_args(kc)

            # 1.35: on by default; both halves are rendered and the controller rolls.
            before = {p["metadata"]["name"] for p in _controller_pods(kc)}
            _set_version(kc, tmp_path, "1.35")
            _reported(kc, "1.35", op)
            wait_for("the CSIDriver's nodeAllocatableUpdatePeriodSeconds", lambda: _period(kc) == 10, op)
            assert GATE in _attacher_args(kc)
            csidriver = get(kc, "csidriver", "ebs.csi.aws.com")
            assert csidriver["metadata"]["uid"] == csidriver_uid, "a mutable field: updated in place"
            wait_rolled_out(kc, NAME, op)
            after = {p["metadata"]["name"] for p in _controller_pods(kc)}
            assert after and not (after & before), "the controller rolled to the new attacher flags"
            assert all(images_of(p)["csi-attacher"].startswith("dhi.io/") for p in _controller_pods(kc))

            # Downgrade to 1.34: both are turned off again.
            _set_version(kc, tmp_path, "1.34")
            _reported(kc, "1.34", op)
            wait_for("nodeAllocatableUpdatePeriodSeconds removed", lambda: _period(kc) is None, op)
            assert GATE not in _attacher_args(kc)
            wait_rolled_out(kc, NAME, op)
            assert "Kubernetes version changed" in op.log.read_text()
            assert get(kc, "csidriver", "ebs.csi.aws.com")["metadata"]["uid"] == csidriver_uid
