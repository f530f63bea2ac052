"""Journey 7 (issue 14): the pull secret is created after the driver. Until then dhi.io refuses
the pulls (the local API server's kubelet stand-in needs a dockerconfigjson Secret for dhi.io):
`PullSecretsPresent=False (Missing)` names the Secret and the pods wait in ErrImagePull /
ImagePullBackOff. The operator watches the named Secret by name (metadata only), so once the README's
`kubectl create secret docker-registry` runs the condition turns True from that watch event, and
the kubelet's back-off retries the pulls: the driver becomes Ready with no change to it."""

from __future__ import annotations

from journey import (
    NAMESPACE, apply_driver, cluster, conditions, driver, pods, pull_secret, wait_condition, wait_for, wait_rolled_out,
)
from support import kubectl

NAME = "ebs"


def _waiting_reasons(kc) -> set[str]:
    out = set()
    for p in pods(kc, "app.kubernetes.io/managed-by=hardened-csi-operator"):
        for c in p.get("status", {}).get("containerStatuses") or []:
            reason = (c.get("state", {}).get("waiting") or {}).get("reason")
            if reason:
                out.add(reason)
    return out


def test_pull_secret_created_after_the_driver(tmp_path):
    with cluster(tmp_path, "--nodes", "2", "--backoff-max-ms", "1000") as c:
        kc = c.kc
        with c.operator() as op:
            apply_driver(kc, driver())
            missing = wait_condition(kc, NAME, "PullSecretsPresent", "False", op, reason="Missing")
            assert "dhi-pull" in missing["message"], missing
            wait_for("pods refused by dhi.io", lambda: _waiting_reasons(kc) & {"ErrImagePull", "ImagePullBackOff"}, op)
            assert conditions(kc, NAME)["Ready"]["status"] != "True"
            generation = kubectl(kc, "get", "hcd", NAME, "-o", "jsonpath={.metadata.generation}").stdout

            # The README's command, after the driver.
            pull_secret(kc)
            present = wait_condition(kc, NAME, "PullSecretsPresent", "True", op, reason="Present")
            assert present["message"] == "Every image pull Secret exists."
            # The kubelet retries the pulls on its back-off; nothing else is changed.
            status = wait_rolled_out(kc, NAME, op)
            assert status["PodsHealthy"]["status"] == "True", status["PodsHealthy"]
            assert not _waiting_reasons(kc)
            assert kubectl(kc, "get", "hcd", NAME, "-o", "jsonpath={.metadata.generation}").stdout == generation
            for p in pods(kc, "app.kubernetes.io/managed-by=hardened-csi-operator"):
                assert all(c["ready"] for c in p["status"]["containerStatuses"]), p["metadata"]["name"]

            # Deleted again: the watch sees it go.
            kubectl(kc, "-n", NAMESPACE, "delete", "secret", "dhi-pull")
            wait_condition(kc, NAME, "PullSecretsPresent", "False", op, reason="Missing")
