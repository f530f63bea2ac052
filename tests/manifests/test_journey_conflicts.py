"""Journey 3 (issue 14): conflicts block only what conflicts. A user's own StorageClass named like
one in the spec holds back that class only: the driver is installed and Ready, the other classes
are applied, and `OwnershipConflict=True (ForeignClasses)` names the class and its field manager.
`spec.adoptObjects` takes objects over by kind and name (`adopt: true` still takes everything,
see test_migrate_from_helm.py), and the API server refuses a kind the operator does not render,
naming the field."""

from __future__ import annotations

import json

from journey import (
    apply_driver, cluster, conditions, driver, get, patch_spec, pull_secret, wait_condition, wait_rolled_out,
)
from support import kubectl

NAME = "ebs"
USERS_CLASS = {
    "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "gp3"},
    "provisioner": "ebs.csi.aws.com", "parameters": {"type": "gp2"},
}


def test_a_users_storage_class_blocks_only_that_class(tmp_path):
    with cluster(tmp_path, "--nodes", "1", install="kustomize") as c:
        kc = c.kc
        pull_secret(kc)
        kubectl(kc, "create", "-f", "-", stdin=json.dumps(USERS_CLASS))
        users = get(kc, "storageclass", "gp3")
        classes = [{"name": "gp3", "default": True}, {"name": "io2", "type": "io2", "iops": 4000}]
        with c.operator() as op:
            apply_driver(kc, driver(storageClasses=classes))
            status = wait_rolled_out(kc, NAME, op)
            ownership = status["OwnershipConflict"]
            assert (ownership["status"], ownership["reason"]) == ("True", "ForeignClasses"), ownership
            assert "StorageClass/gp3 is managed by field manager kubectl-create" in ownership["message"], ownership
            assert "{kind: StorageClass, name: gp3}" in ownership["message"], ownership
            assert status["Ready"]["status"] == "True" and status["Stalled"]["status"] == "False", status
            # The user's class is untouched; everything else is the operator's.
            now = get(kc, "storageclass", "gp3")
            assert now["metadata"]["uid"] == users["metadata"]["uid"] and now["parameters"] == {"type": "gp2"}
            assert "app.kubernetes.io/managed-by" not in (now["metadata"].get("labels") or {})
            io2 = get(kc, "storageclass", "io2")
            assert io2["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "hardened-csi-operator"
            assert get(kc, "-n", "kube-system", "deployment", "ebs-csi-controller")["status"]["readyReplicas"] >= 1
            assert get(kc, "hardenedcsidriver", NAME)["status"]["storageClasses"] == ["gp3", "io2"]

            # Take over that one class, by kind and name. Its parameters are immutable, so it is
            # recreated as the spec says.
            patch_spec(kc, NAME, {"adoptObjects": [{"kind": "StorageClass", "name": "gp3"}]})
            wait_condition(kc, NAME, "OwnershipConflict", "False", op, reason="NoConflict")
            adopted = get(kc, "storageclass", "gp3")
            assert adopted["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "hardened-csi-operator"
            assert adopted["parameters"]["type"] == "gp3"
            assert adopted["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
            wait_rolled_out(kc, NAME, op)

            # The API server refuses what adoptObjects cannot name, with the field.
            bad = kubectl(kc, "patch", "hardenedcsidriver", NAME, "--type=merge", "-p",
                          json.dumps({"spec": {"adoptObjects": [{"kind": "Pod"}]}}), check=False)
            assert bad.returncode != 0 and "spec.adoptObjects[0].kind" in bad.stderr, bad.stderr
            assert 'Unsupported value: "Pod"' in bad.stderr, bad.stderr
            assert conditions(kc, NAME)["Ready"]["status"] == "True"


def test_a_foreign_driver_object_still_blocks_the_driver_unless_its_kind_is_adopted(tmp_path):
    """Not a class: another installation's controller Deployment means another driver runs; the
    operator changes nothing until the spec adopts it (here by kind only)."""
    with cluster(tmp_path, "--nodes", "1", install="kustomize") as c:
        kc = c.kc
        pull_secret(kc)
        sa = {"apiVersion": "v1", "kind": "ServiceAccount",
              "metadata": {"name": "ebs-csi-controller-sa", "namespace": "kube-system", "labels": {"team": "platform"}}}
        kubectl(kc, "apply", "--server-side", "--field-manager=platform-team", "-f", "-", stdin=json.dumps(sa))
        with c.operator() as op:
            apply_driver(kc, driver())
            blocked = wait_condition(kc, NAME, "OwnershipConflict", "True", op, reason="ForeignObjects")
            assert "ServiceAccount/ebs-csi-controller-sa is managed by field manager platform-team" in blocked["message"], \
                blocked["message"]
            assert get(kc, "-n", "kube-system", "deployments")["items"] == []
            assert conditions(kc, NAME)["Ready"]["reason"] == "OwnershipConflict"

            patch_spec(kc, NAME, {"adoptObjects": [{"kind": "ServiceAccount"}]})
            status = wait_rolled_out(kc, NAME, op)
            assert status["OwnershipConflict"]["reason"] == "NoConflict", status["OwnershipConflict"]
            sa_now = get(kc, "-n", "kube-system", "serviceaccount", "ebs-csi-controller-sa")
            assert sa_now["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "hardened-csi-operator"
