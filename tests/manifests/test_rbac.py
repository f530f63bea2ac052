"""The operator's RBAC: the chart grants exactly what `hardened-csi-operator operator-rbac` says
the code calls (no more, no less), the kustomize base grants the same, and the grants keep the
house rules (no wildcards, Secrets never read, bind/escalate only on the driver's own roles)."""

from __future__ import annotations

import pytest

from support import (
    DEPLOY,
    EXAMPLE_FILES,
    EXAMPLE_IDS,
    RELEASE_NAMESPACE,
    VALUE_SETS,
    by_kind,
    chart_docs,
    expand_rules,
    kustomize,
    load_docs,
    one,
    operator_rbac_rules,
    render_example,
)

LEASES = ("coordination.k8s.io", "leases")


def _chart_grants():
    docs = chart_docs(VALUE_SETS["ha"])
    cluster = expand_rules(one(docs, "ClusterRole")["rules"])
    lease_role = one(docs, "Role")
    assert lease_role["metadata"]["namespace"] == RELEASE_NAMESPACE
    return cluster, expand_rules(lease_role["rules"])


def _fmt(grants):
    return "\n".join(f"  {g or 'core'}/{r} {v}" + ("" if n == "*" else f" [{n}]") for g, r, v, n in sorted(grants))


def test_chart_rbac_equals_operator_rbac():
    cluster, leases = _chart_grants()
    granted = cluster | leases
    needed = expand_rules(operator_rbac_rules())
    missing, extra = needed - granted, granted - needed
    assert not missing and not extra, (
        f"chart RBAC differs from `operator-rbac`\nmissing from the chart:\n{_fmt(missing)}\n"
        f"granted but not needed:\n{_fmt(extra)}"
    )


def test_leases_only_in_the_namespaced_role():
    cluster, leases = _chart_grants()
    assert not [g for g in cluster if g[:2] == LEASES], "leases must not be granted cluster-wide"
    assert leases and all(g[:2] == LEASES for g in leases)


def test_kustomize_rbac_equals_chart_rbac():
    docs = load_docs(kustomize(str(DEPLOY)))
    cluster, leases = _chart_grants()
    assert expand_rules(one(docs, "ClusterRole")["rules"]) == cluster
    assert expand_rules(one(docs, "Role")["rules"]) == leases
    crb = one(docs, "ClusterRoleBinding")
    sa = one(docs, "ServiceAccount")
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}]
    rb = one(docs, "RoleBinding")
    assert rb["roleRef"]["name"] == one(docs, "Role")["metadata"]["name"]


@pytest.mark.parametrize("source", ["chart", "operator-rbac"])
def test_no_wildcards_and_secrets_never_read(source):
    rules = one(chart_docs({}), "ClusterRole")["rules"] if source == "chart" else operator_rbac_rules()
    for g, r, v, n in expand_rules(rules):
        assert "*" not in (g, r, v), f"wildcard in {source}: {g}/{r} {v}"
        assert not (g == "" and r == "secrets" and v in ("get", "list", "watch")), (
            f"{source} grants {v} on secrets: Secrets are never read"
        )


def test_bind_and_escalate_only_on_the_driver_roles_the_operator_renders():
    """bind/escalate are scoped by resourceNames to exactly the (Cluster)Roles that `render`
    produces, so the operator cannot bind or widen any other role."""
    cluster, _ = _chart_grants()
    rendered_cluster_roles, rendered_roles = set(), set()
    for example in EXAMPLE_FILES:
        docs = render_example(example)
        rendered_cluster_roles |= {d["metadata"]["name"] for d in by_kind(docs, "ClusterRole")}
        rendered_roles |= {d["metadata"]["name"] for d in by_kind(docs, "Role")}
    for verb in ("bind", "escalate"):
        scoped = {(r, n) for g, r, v, n in cluster if v == verb}
        assert all(n != "*" for _, n in scoped), f"{verb} without resourceNames"
        assert {n for r, n in scoped if r == "clusterroles"} == rendered_cluster_roles
        assert {n for r, n in scoped if r == "roles"} == rendered_roles
        assert {r for r, _ in scoped} <= {"clusterroles", "roles"}


# kind -> (apiGroup, resource) for what `render` can produce.
RESOURCES = {
    "ServiceAccount": ("", "serviceaccounts"),
    "Service": ("", "services"),
    "Deployment": ("apps", "deployments"),
    "DaemonSet": ("apps", "daemonsets"),
    "ClusterRole": ("rbac.authorization.k8s.io", "clusterroles"),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io", "clusterrolebindings"),
    "Role": ("rbac.authorization.k8s.io", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings"),
    "CSIDriver": ("storage.k8s.io", "csidrivers"),
    "StorageClass": ("storage.k8s.io", "storageclasses"),
    "VolumeSnapshotClass": ("snapshot.storage.k8s.io", "volumesnapshotclasses"),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets"),
}


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=EXAMPLE_IDS)
def test_operator_may_apply_watch_and_prune_every_rendered_kind(example):
    cluster, _ = _chart_grants()
    for doc in render_example(example):
        assert doc["kind"] in RESOURCES, f"render produced {doc['kind']}, unknown to this test and maybe to RBAC"
        group, resource = RESOURCES[doc["kind"]]
        for verb in ("get", "list", "watch", "create", "patch", "delete"):
            assert (group, resource, verb, "*") in cluster, f"chart lacks {verb} on {group or 'core'}/{resource}"
