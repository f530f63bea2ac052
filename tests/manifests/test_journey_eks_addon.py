"""Journey 2 (issue 14): migrate from the EKS managed add-on `aws-ebs-csi-driver`.

The add-on lays down upstream's kustomize manifests (reference data in
../shared/reference/upstream-ebs-csi/: no Helm labels, selectors `app` and
`app.kubernetes.io/name`), labelled `app.kubernetes.io/managed-by: EKS`, written by the field
manager `eks`, with the add-on's `serviceAccountRoleArn` as the controller ServiceAccount's IRSA
annotation and the Windows node plugin. The test lays them down that way with kubectl, then follows
the README: `aws eks delete-addon --preserve` happens in AWS (the objects stay, as here); the
add-on's driver RBAC is handed to the chart's release and the chart installed with the Helm 4
engine (same uids), the operator runs as its ServiceAccount (a 403 fails the test); the
HardenedCsiDriver with the add-on's role reports the add-on's objects and changes nothing; with
`adopt: true` the operator takes every object over in place (same uids, no 422), the images become
dhi.io's, the role annotation is the spec's, and the Windows DaemonSet it does not render is named
with what to do.
"""

from __future__ import annotations

import json

import yaml

from journey import (
    NAMESPACE, apply_driver, cluster, conditions, driver, get, hand_driver_rbac_to_helm, images_of, patch_spec,
    pull_secret, satisfies, wait_condition, wait_rolled_out,
)
from support import REPO, kubectl

ADDON_MANIFESTS = REPO.parent / "shared" / "reference" / "upstream-ebs-csi"
ROLE = "arn:aws:iam::111122223333:role/AmazonEKS_EBS_CSI_DriverRole"
NAME = "ebs"
EKS_LABELS = {
    "app.kubernetes.io/managed-by": "EKS",
    "app.kubernetes.io/component": "csi-driver",
    "app.kubernetes.io/version": "1.64.0",
}


def _addon_objects(role: str | None) -> list[dict]:
    """The add-on's objects: upstream's kustomize base and its Windows node plugin, in kube-system,
    with the labels and ServiceAccount annotation the add-on adds."""
    files = yaml.safe_load((ADDON_MANIFESTS / "kustomization.yaml").read_text())["resources"] + ["node-windows.yaml"]
    out = []
    for f in files:
        for doc in yaml.safe_load_all((ADDON_MANIFESTS / f).read_text()):
            if not doc:
                continue
            meta = doc["metadata"]
            meta.setdefault("labels", {}).update(EKS_LABELS)
            if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "CSIDriver"):
                meta["namespace"] = NAMESPACE
            for s in doc.get("subjects") or []:
                s["namespace"] = NAMESPACE
            if doc["kind"] == "ServiceAccount" and meta["name"] == "ebs-csi-controller-sa" and role:
                meta.setdefault("annotations", {})["eks.amazonaws.com/role-arn"] = role
            out.append(doc)
    return out


def _lay_down_addon(kc, role: str | None) -> None:
    stream = "\n---\n".join(json.dumps(d) for d in _addon_objects(role))
    kubectl(kc, "apply", "--server-side", "--field-manager=eks", "-f", "-", stdin=stream)


def _addon_then_chart(role: str | None):
    """Before the operator: the add-on's objects, then (once `aws eks delete-addon --preserve`
    left them) the README's hand-over of the driver's RBAC to the chart's release, so that `helm
    install` of the chart takes the add-on's ClusterRoles, bindings and leases Role over in place
    instead of failing on their ownership."""

    def lay_down(kc):
        _lay_down_addon(kc, role)
        names = ("ebs-csi-node-role", "ebs-external-attacher-role")
        uids = {n: get(kc, "clusterrole", n)["metadata"]["uid"] for n in names}
        hand_driver_rbac_to_helm(kc)
        lay_down.rbac_uids = uids

    return lay_down


def test_adopt_the_eks_addon(tmp_path):
    before = _addon_then_chart(ROLE)
    with cluster(tmp_path, "--nodes", "2", before_install=before, force_conflicts=True) as c:
        kc = c.kc
        # The chart's release took the add-on's RBAC over in place.
        for name, uid in before.rbac_uids.items():
            role = get(kc, "clusterrole", name)
            assert role["metadata"]["uid"] == uid, f"ClusterRole {name} was replaced"
            assert role["metadata"]["labels"]["app.kubernetes.io/component"] == "driver-rbac", role["metadata"]
        before = {
            kind: get(kc, "-n", NAMESPACE, kind, name)
            for kind, name in (("deployment", "ebs-csi-controller"), ("daemonset", "ebs-csi-node"),
                               ("serviceaccount", "ebs-csi-controller-sa"))
        }
        csidriver = get(kc, "csidriver", "ebs.csi.aws.com")
        assert before["deployment"]["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "EKS"

        # README step 4: the pull secret and a HardenedCsiDriver with the add-on's role.
        pull_secret(kc)
        aws = {"region": "us-east-1", "clusterId": "demo-cluster", "identity": {"irsa": {"roleArn": ROLE}}}
        with c.operator() as op:
            apply_driver(kc, driver(aws=aws))
            blocked = wait_condition(kc, NAME, "OwnershipConflict", "True", op, reason="ForeignObjects")
            assert "the EKS managed add-on aws-ebs-csi-driver" in blocked["message"], blocked
            assert "aws eks delete-addon --addon-name aws-ebs-csi-driver --preserve" in blocked["message"]
            for kind in ("deployment", "daemonset"):
                now = get(kc, "-n", NAMESPACE, kind, before[kind]["metadata"]["name"])
                assert now["metadata"]["generation"] == before[kind]["metadata"]["generation"], "nothing changed"
                assert now["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "EKS"

            # Step 5: adopt.
            patch_spec(kc, NAME, {"adopt": True})
            status = wait_rolled_out(kc, NAME, op)
            hcd_uid = get(kc, "hardenedcsidriver", NAME)["metadata"]["uid"]
            for kind, old in before.items():
                now = get(kc, "-n", NAMESPACE, kind, old["metadata"]["name"])
                assert now["metadata"]["uid"] == old["metadata"]["uid"], f"{kind} was replaced, not adopted"
                assert now["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "hardened-csi-operator"
                assert now["metadata"]["annotations"]["csi.hardened.dev/owner-uid"] == hcd_uid
                if kind != "serviceaccount":
                    assert now["spec"]["selector"] == old["spec"]["selector"]
                    assert satisfies(now["spec"]["template"]["metadata"]["labels"], now["spec"]["selector"])
                    assert all(i.startswith("dhi.io/") for i in images_of(now).values()), images_of(now)
            sa = get(kc, "-n", NAMESPACE, "serviceaccount", "ebs-csi-controller-sa")
            assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE
            now_csidriver = get(kc, "csidriver", "ebs.csi.aws.com")
            assert now_csidriver["metadata"]["uid"] == csidriver["metadata"]["uid"], "same immutable fields: in place"
            assert now_csidriver["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "hardened-csi-operator"

            # The add-on's Windows node plugin is not rendered: named, left running.
            ownership = status["OwnershipConflict"]
            assert ownership["reason"] == "UnmanagedReleaseObjects", ownership
            assert "DaemonSet/ebs-csi-node-windows of the EKS add-on aws-ebs-csi-driver" in ownership["message"]
            assert f"kubectl -n {NAMESPACE} delete daemonset ebs-csi-node-windows" in ownership["message"]
            assert get(kc, "-n", NAMESPACE, "daemonset", "ebs-csi-node-windows")["metadata"]["labels"][
                "app.kubernetes.io/managed-by"] == "EKS"

            # The README's removal of the Windows plugin (no Windows nodes here), then adopt back
            # to false: nothing is foreign any more.
            kubectl(kc, "-n", NAMESPACE, "delete", "daemonset", "ebs-csi-node-windows")
            patch_spec(kc, NAME, {"adopt": False})
            status = wait_rolled_out(kc, NAME, op)
            assert status["OwnershipConflict"]["reason"] == "NoConflict", status["OwnershipConflict"]
            assert conditions(kc, NAME)["Ready"]["status"] == "True"


def test_the_addon_role_annotation_goes_when_the_spec_uses_pod_identity(tmp_path):
    """The add-on's IRSA annotation belongs to the field manager `eks`: a plain server-side apply
    without it would leave it, and the driver would keep assuming the add-on's role."""
    with cluster(tmp_path, "--nodes", "1", before_install=_addon_then_chart(ROLE), force_conflicts=True) as c:
        kc = c.kc
        pull_secret(kc)
        with c.operator() as op:
            apply_driver(kc, driver(adopt=True))
            wait_rolled_out(kc, NAME, op)
            sa = get(kc, "-n", NAMESPACE, "serviceaccount", "ebs-csi-controller-sa")
            assert "eks.amazonaws.com/role-arn" not in (sa["metadata"].get("annotations") or {}), sa["metadata"]
            sa = get(kc, "-n", NAMESPACE, "serviceaccount", "ebs-csi-controller-sa", "--show-managed-fields")
            managers = {m["manager"] for m in sa["metadata"]["managedFields"]}
            assert "hardened-csi-operator" in managers, managers
