"""Journey (issue 14): upgrade the operator from release 0.1.0, whose operator wrote the driver's
RBAC itself, to this chart, which ships it.

The cluster starts as 0.1.0 left it: that release's chart (testdata/release-0.1.0, `git archive` of
the chart at d42cbb2) installed with the Helm 4 engine, a HardenedCsiDriver, the driver's
ClusterRoles, bindings and leases Role as 0.1.0's operator wrote them (its labels, its field
manager, the driver as their owner: testdata/release-0.1.0/driver-rbac.yaml), and the driver's
workloads. The workloads are written by this operator binary standing in for 0.1.0's process (it
renders them the same way; 0.1.0's binary is not built here). Then the README's "Upgrading from
0.1.0" runs as written: a plain `helm upgrade` fails on ownership and changes nothing; the old
operator is scaled to zero; the README's hand-over block gives the RBAC to the release; `helm
upgrade --force-conflicts` succeeds; the new operator runs as the new chart's ServiceAccount (a 403
fails the test) and the driver is Ready. The driver's Deployment, DaemonSet and RBAC keep their
uids throughout, and once no ownerReference ties the RBAC to the HardenedCsiDriver any more,
deleting the driver leaves the chart's RBAC in place.
"""

from __future__ import annotations

import json

import helm_python
import pytest
import yaml

from journey import (
    NAMESPACE, OPERATOR_RELEASE, apply_driver, driver, get, get_opt, hand_driver_rbac_to_helm, install_with_helm,
    operator_deployment, pull_secret, readme_block, run_readme_block, upgrade_with_helm, wait_for, wait_rolled_out,
)
from support import (
    README_FILE, RELEASE_NAMESPACE, REPO, assert_never_refused, kubectl, local_apiserver, operator_process,
    service_account_kubeconfig,
)

OLD = REPO / "tests" / "manifests" / "testdata" / "release-0.1.0"
OLD_CHART = OLD / "hardened-csi-operator-0.1.0.tgz"
NAME = "ebs"
HELM_UPGRADE = (
    "helm upgrade hardened-csi-operator charts/hardened-csi-operator --namespace hardened-csi-operator "
    "--force-conflicts"
)


def _old_driver_rbac() -> list[dict]:
    return [d for d in yaml.safe_load_all(OLD.joinpath("driver-rbac.yaml").read_text()) if d]


def _ref(doc: dict) -> tuple[str, ...]:
    ns = doc["metadata"].get("namespace")
    return (doc["kind"].lower(), doc["metadata"]["name"]) + (("-n", ns) if ns else ())


def _get(kc, ref: tuple[str, ...]) -> dict:
    kind, name, *ns = ref
    return get(kc, *ns, kind, name)


def _lay_down_what_0_1_0_wrote(kc, hcd: dict) -> None:
    """The driver's RBAC as 0.1.0's operator applied it: its render, its field manager, and the
    HardenedCsiDriver as controller owner (kube's controller_owner_ref)."""
    owner = {"apiVersion": "csi.hardened.dev/v1alpha1", "kind": "HardenedCsiDriver", "name": NAME,
             "uid": hcd["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    docs = _old_driver_rbac()
    for d in docs:
        d["metadata"]["ownerReferences"] = [owner]
    kubectl(kc, "apply", "--server-side", "--field-manager=hardened-csi-operator", "-f", "-",
            stdin="\n---\n".join(json.dumps(d) for d in docs))


def test_readme_documents_the_upgrade_the_test_runs():
    readme = README_FILE.read_text()
    assert HELM_UPGRADE in readme.replace("`\n   `", " "), "the README's helm upgrade command is the one tested"
    assert "scale deployment hardened-csi-operator --replicas=0" in readme_block("upgrade-0.1.0")
    assert "ownerReferences" in readme_block("rbac-handover")


def test_upgrade_from_the_release_whose_operator_wrote_the_drivers_rbac(tmp_path):
    with local_apiserver(tmp_path, rbac=True, args=("--nodes", "2")) as kc:
        # 0.1.0 as it was installed and left running.
        install_with_helm(kc, chart=OLD_CHART)
        kubectl(kc, "wait", "--for=condition=Established", "crd/hardenedcsidrivers.csi.hardened.dev")
        pull_secret(kc)
        apply_driver(kc, driver())
        hcd = get(kc, "hardenedcsidriver", NAME)
        _lay_down_what_0_1_0_wrote(kc, hcd)
        old_deployment = operator_deployment(kc)
        with operator_process(kc, tmp_path, deployment=old_deployment) as stand_in:
            wait_rolled_out(kc, NAME, stand_in)
        rbac = [_ref(d) for d in _old_driver_rbac()]
        uids = {ref: _get(kc, ref)["metadata"]["uid"] for ref in rbac}
        workloads = [("deployment", "ebs-csi-controller", "-n", NAMESPACE),
                     ("daemonset", "ebs-csi-node", "-n", NAMESPACE)]
        uids.update({ref: _get(kc, ref)["metadata"]["uid"] for ref in workloads})

        def unchanged_uids():
            now = {ref: (_get(kc, ref)["metadata"]["uid"]) for ref in uids}
            assert now == uids, "an object of the driver was deleted or replaced"

        # A plain upgrade: Helm refuses the RBAC it does not own, and changes nothing.
        with pytest.raises(helm_python.HelmError) as refused:
            upgrade_with_helm(kc)
        assert "invalid ownership metadata" in str(refused.value), refused.value
        assert "ebs-csi-node-role" in str(refused.value) or "ebs-external-" in str(refused.value), refused.value
        for ref in rbac:
            meta = _get(kc, ref)["metadata"]
            assert meta["labels"]["app.kubernetes.io/managed-by"] == "hardened-csi-operator", meta
            assert meta["ownerReferences"][0]["uid"] == hcd["metadata"]["uid"], meta
        unchanged_uids()

        # The README's steps, as written.
        run_readme_block(kc, "upgrade-0.1.0")
        stopped = get(kc, "-n", RELEASE_NAMESPACE, "deployment", old_deployment["metadata"]["name"])
        assert stopped["spec"]["replicas"] == 0
        hand_driver_rbac_to_helm(kc)
        unchanged_uids()
        upgrade_with_helm(kc, force_conflicts=True)
        unchanged_uids()
        release = helm_python.Config(kubeconfig_path=str(kc), namespace=RELEASE_NAMESPACE).status(OPERATOR_RELEASE)
        assert release["revision"] == 2 and release["status"] == "deployed", release

        # The chart owns the driver's RBAC now, and nothing ties it to the HardenedCsiDriver.
        for ref in rbac:
            meta = _get(kc, ref)["metadata"]
            assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm", meta
            assert meta["labels"]["app.kubernetes.io/component"] == "driver-rbac", meta
            assert meta["annotations"]["meta.helm.sh/release-name"] == OPERATOR_RELEASE, meta
            assert not meta.get("ownerReferences"), meta

        # The new operator, as the new chart's ServiceAccount with the new Deployment's args.
        deployment = operator_deployment(kc)
        assert deployment["spec"]["replicas"] == 1
        operator_kc, user = service_account_kubeconfig(
            kc, RELEASE_NAMESPACE, deployment["spec"]["template"]["spec"]["serviceAccountName"]
        )
        with operator_process(operator_kc, tmp_path, deployment=deployment) as op:
            kubectl(kc, "annotate", "hardenedcsidriver", NAME, "journey/step=upgraded")
            status = wait_rolled_out(kc, NAME, op)
            assert status["Ready"]["status"] == "True", status
            assert status["Degraded"]["status"] == "False", status["Degraded"]
            unchanged_uids()
            for ref in workloads:
                labels = _get(kc, ref)["metadata"]["labels"]
                assert labels["app.kubernetes.io/managed-by"] == "hardened-csi-operator", labels

            # Removing the driver removes its workloads; the chart's RBAC is no child of it.
            kubectl(kc, "delete", "hardenedcsidriver", NAME, "--wait=false")
            wait_for("the HardenedCsiDriver gone", lambda: get_opt(kc, "hardenedcsidriver", NAME) is None, op)
            wait_for("the driver's Deployment gone",
                     lambda: get_opt(kc, "-n", NAMESPACE, "deployment", "ebs-csi-controller") is None, op)
            for ref in rbac:
                assert _get(kc, ref)["metadata"]["uid"] == uids[ref], f"{ref} went with the driver"
            assert_never_refused(kc, user)
