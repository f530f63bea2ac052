"""Journey 4 (issue 14): upgrade the driver. New image tags in the spec roll the controller (a new
ReplicaSet, its pods on the new images) and the node plugin (every node's pod replaced) in the
local API server's workload controllers and kubelet stand-in; a CSIDriver that an earlier driver
version shaped differently in an immutable field is replaced, as when adopting an old upstream
install, and mounted volumes keep working (upstream #1390)."""

from __future__ import annotations

import json

from journey import (
    NAMESPACE, apply_driver, cluster, driver, get, images_of, patch_spec, pods, pull_secret, wait_rolled_out,
)
from support import kubectl

NAME = "ebs"


def _controller_pods(kc):
    return [p for p in pods(kc, "app=ebs-csi-controller") if not p["metadata"].get("deletionTimestamp")]


def _node_pods(kc):
    return [p for p in pods(kc, "app=ebs-csi-node") if not p["metadata"].get("deletionTimestamp")]


def test_new_image_tags_roll_the_controller_and_the_node_plugin(tmp_path):
    with cluster(tmp_path, "--nodes", "2") as c:
        kc = c.kc
        pull_secret(kc)
        with c.operator() as op:
            apply_driver(kc, driver())
            wait_rolled_out(kc, NAME, op)
            before = get(kc, "-n", NAMESPACE, "deployment", "ebs-csi-controller")
            old_controller = {p["metadata"]["name"] for p in _controller_pods(kc)}
            old_node = {p["metadata"]["name"] for p in _node_pods(kc)}
            assert len(old_node) == 2 and old_controller
            old_image = images_of(before)["ebs-plugin"]
            assert old_image.startswith("dhi.io/aws-ebs-csi-driver:"), old_image

            patch_spec(kc, NAME, {"images": {"pullSecrets": ["dhi-pull"], "driver": {"tag": "1.65.0"},
                                             "provisioner": {"tag": "6.4.0"}}})
            status = wait_rolled_out(kc, NAME, op)
            assert status["Ready"]["status"] == "True"

            deploy = get(kc, "-n", NAMESPACE, "deployment", "ebs-csi-controller")
            assert deploy["metadata"]["uid"] == before["metadata"]["uid"], "updated in place, not replaced"
            assert images_of(deploy)["ebs-plugin"] == "dhi.io/aws-ebs-csi-driver:1.65.0"
            assert images_of(deploy)["csi-provisioner"] == "dhi.io/csi-provisioner:6.4.0"
            # A new ReplicaSet took over: every controller pod is new and runs the new images.
            now = _controller_pods(kc)
            assert now and not ({p["metadata"]["name"] for p in now} & old_controller), (old_controller, now)
            for p in now:
                assert images_of(p)["ebs-plugin"] == "dhi.io/aws-ebs-csi-driver:1.65.0"
                assert all(c["ready"] for c in p["status"]["containerStatuses"]), p["status"]
            replica_sets = get(kc, "-n", NAMESPACE, "replicasets", "-l", "app=ebs-csi-controller")["items"]
            assert len(replica_sets) == 2, [r["metadata"]["name"] for r in replica_sets]
            assert sorted(r["spec"]["replicas"] for r in replica_sets)[0] == 0, "the old ReplicaSet is scaled down"

            # The node plugin: one new pod per node, on the new driver image.
            ds = get(kc, "-n", NAMESPACE, "daemonset", "ebs-csi-node")
            assert ds["status"]["updatedNumberScheduled"] == ds["status"]["desiredNumberScheduled"] == 2
            node_pods = _node_pods(kc)
            assert len(node_pods) == 2 and not ({p["metadata"]["name"] for p in node_pods} & old_node)
            assert {p["spec"]["nodeName"] for p in node_pods} == {"node-0", "node-1"}
            assert all(images_of(p)["ebs-plugin"] == "dhi.io/aws-ebs-csi-driver:1.65.0" for p in node_pods)
            assert get(kc, "hardenedcsidriver", NAME)["status"]["driverImage"] == "dhi.io/aws-ebs-csi-driver:1.65.0"


def test_a_csidriver_shaped_by_an_earlier_version_is_replaced(tmp_path):
    """The operator's own CSIDriver as an earlier driver version laid it down, with an immutable
    field that differs (no fsGroupPolicy: the API server defaulted it): applying the new one is
    refused with 422 `field is immutable`, so it is deleted (uid precondition) and created anew."""
    with cluster(tmp_path, "--nodes", "1") as c:
        kc = c.kc
        pull_secret(kc)
        old = {
            "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
            "metadata": {"name": "ebs.csi.aws.com", "labels": {
                "app.kubernetes.io/managed-by": "hardened-csi-operator", "app.kubernetes.io/instance": NAME}},
            "spec": {"attachRequired": True, "podInfoOnMount": False},
        }
        kubectl(kc, "apply", "--server-side", "--field-manager=hardened-csi-operator", "-f", "-",
                stdin=json.dumps(old))
        before = get(kc, "csidriver", "ebs.csi.aws.com")
        assert before["spec"]["fsGroupPolicy"] == "ReadWriteOnceWithFSType"
        with c.operator() as op:
            apply_driver(kc, driver())
            wait_rolled_out(kc, NAME, op)
            now = get(kc, "csidriver", "ebs.csi.aws.com")
            assert now["metadata"]["uid"] != before["metadata"]["uid"], "replaced"
            assert now["spec"]["fsGroupPolicy"] == "File"
            hcd_uid = get(kc, "hardenedcsidriver", NAME)["metadata"]["uid"]
            assert now["metadata"]["annotations"]["csi.hardened.dev/owner-uid"] == hcd_uid
            assert "immutable fields changed; recreating" in op.log.read_text()
