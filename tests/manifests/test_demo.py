"""`make demo` works: deploy/demo.sh brings up the local API server (RBAC enforced), moto, the
kustomize installation and the operator as its ServiceAccount (refused nothing),
reconciles deploy/examples/irsa.yaml to Ready=True with a first AWS inventory from moto
(AwsReachable=True), prints the children and the status, and cleans up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import BIN, REPO


def test_demo_reaches_ready_and_cleans_up(tmp_path):
    env = {
        **os.environ,
        "DEMO_TIMEOUT": "60",
        "TMPDIR": str(tmp_path),
        "HCO_BIN": str(BIN),
        "DEMO_PYTHON": sys.executable,
        "MOTO_SERVER": str(Path(sys.executable).parent / "moto_server"),
    }
    proc = subprocess.run(
        [str(REPO / "deploy" / "demo.sh")], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )
    out = proc.stdout
    assert proc.returncode == 0, f"demo failed ({proc.returncode})\n{out[-3000:]}\n{proc.stderr[-3000:]}"
    for expected in (
        "deployment.apps/ebs-csi-controller",
        "daemonset.apps/ebs-csi-node",
        "csidriver.storage.k8s.io/ebs.csi.aws.com",
        "storageclass.storage.k8s.io/gp3",
        "type: Ready",
        "type: AwsReachable",
        "scope: cluster prod-eks",
        "by system:serviceaccount:hardened-csi-operator:hardened-csi-operator, none refused",
        "==> demo OK",
    ):
        assert expected in out, f"{expected!r} missing from the demo output:\n{out[-3000:]}"
    # Its work directory (kubeconfig, logs) is gone.
    assert not list(tmp_path.glob("hco-demo.*"))
