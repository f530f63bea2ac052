"""Journey 6 (issue 14): change the driver's AWS identity. A running pod keeps the credentials it
started with (the IRSA and Pod Identity webhooks inject them when the pod is created, a
secretKeyRef is read when the container starts), so every identity change must replace the
controller pods: a new IRSA role ARN, a switch between IRSA, static keys and Pod Identity, and a
rotated static-key Secret (seen by its resourceVersion, watched by name as metadata only). The
controller's pod template carries `csi.hardened.dev/identity-hash`; the node plugin, which uses
no AWS credentials, is not rolled."""

from __future__ import annotations

import json

from journey import (
    NAMESPACE, apply_driver, cluster, driver, get, patch_spec, pods, pull_secret, wait_for, wait_rolled_out,
)
from support import kubectl

NAME = "ebs"
ROLE_A = "arn:aws:iam::111122223333:role/ebs-csi-a"
ROLE_B = "arn:aws:iam::111122223333:role/ebs-csi-b"
HASH = "csi.hardened.dev/identity-hash"


def _live(kc, selector):
    return {p["metadata"]["name"] for p in pods(kc, selector) if not p["metadata"].get("deletionTimestamp")}


def _template_hash(kc) -> str:
    deploy = get(kc, "-n", NAMESPACE, "deployment", "ebs-csi-controller")
    return deploy["spec"]["template"]["metadata"]["annotations"][HASH]


def _static_keys(kc, key_id: str) -> None:
    manifest = kubectl(kc, "-n", NAMESPACE, "create", "secret", "generic", "aws-creds",
                       f"--from-literal=key_id={key_id}", "--from-literal=access_key=not-a-real-key",
                       "--dry-run=client", "-o", "yaml").stdout
    kubectl(kc, "apply", "-f", "-", stdin=manifest)


def _rolled(kc, op, old_hash: str, old_pods: set[str]) -> str:
    """Waits for a new identity hash on the template and a completed rollout of the controller to
    pods none of which existed before; returns the new hash."""
    new_hash = wait_for("a new identity hash", lambda: (h := _template_hash(kc)) != old_hash and h, op)

    def done():
        d = get(kc, "-n", NAMESPACE, "deployment", "ebs-csi-controller")
        st, want = d.get("status") or {}, d["spec"]["replicas"]
        complete = (
            st.get("observedGeneration") == d["metadata"]["generation"]
            and st.get("updatedReplicas") == want == st.get("readyReplicas") == st.get("replicas")
        )
        live = _live(kc, "app=ebs-csi-controller")
        return complete and len(live) == want and not (live & old_pods)

    wait_for("the controller rolled to new pods", done, op)
    return new_hash


def test_every_identity_change_rolls_the_controller(tmp_path):
    # The chart lets the operator read the static-key Secret too (README: pullSecretCheck).
    values = {"pullSecretCheck": {"secretNames": ["dhi-pull", "aws-creds"]}}
    with cluster(tmp_path, "--nodes", "2", values=values) as c:
        kc = c.kc
        pull_secret(kc)
        aws = {"region": "us-east-1", "clusterId": "demo-cluster", "identity": {"irsa": {"roleArn": ROLE_A}}}
        with c.operator() as op:
            apply_driver(kc, driver(aws=aws))
            wait_rolled_out(kc, NAME, op)
            sa = get(kc, "-n", NAMESPACE, "serviceaccount", "ebs-csi-controller-sa")
            assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE_A
            node_pods = _live(kc, "app=ebs-csi-node")
            assert len(node_pods) == 2
            h, controller = _template_hash(kc), _live(kc, "app=ebs-csi-controller")

            # A new IRSA role.
            patch_spec(kc, NAME, {"aws": {"identity": {"irsa": {"roleArn": ROLE_B}}}})
            h = _rolled(kc, op, h, controller)
            sa = get(kc, "-n", NAMESPACE, "serviceaccount", "ebs-csi-controller-sa")
            assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE_B
            controller = _live(kc, "app=ebs-csi-controller")

            # IRSA -> static keys: the role annotation goes, the keys come from the Secret.
            _static_keys(kc, "AKIAFIRST")
            patch_spec(kc, NAME, {"aws": {"identity": {"irsa": None, "secretRef": {"name": "aws-creds"}}}})
            h = _rolled(kc, op, h, controller)
            sa = get(kc, "-n", NAMESPACE, "serviceaccount", "ebs-csi-controller-sa")
            assert "eks.amazonaws.com/role-arn" not in (sa["metadata"].get("annotations") or {})
            wait_rolled_out(kc, NAME, op)
            controller = _live(kc, "app=ebs-csi-controller")

            # The static keys rotated: same spec, same generation, a new Secret resourceVersion.
            generation = get(kc, "hardenedcsidriver", NAME)["metadata"]["generation"]
            _static_keys(kc, "AKIASECOND")
            h = _rolled(kc, op, h, controller)
            assert get(kc, "hardenedcsidriver", NAME)["metadata"]["generation"] == generation
            controller = _live(kc, "app=ebs-csi-controller")

            # Static keys -> Pod Identity.
            patch_spec(kc, NAME, {"aws": {"identity": {"secretRef": None, "podIdentity": {}}}})
            _rolled(kc, op, h, controller)
            wait_rolled_out(kc, NAME, op)

            # The node plugin holds no AWS credentials: never rolled by any of this.
            assert _live(kc, "app=ebs-csi-node") == node_pods
            # No secret value reaches the status or the log.
            status = json.dumps(get(kc, "hardenedcsidriver", NAME)["status"])
            for secret in ("AKIAFIRST", "AKIASECOND", "not-a-real-key"):
                assert secret not in status and secret not in op.log.read_text()
