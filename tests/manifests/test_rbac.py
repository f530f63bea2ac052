"""The operator's RBAC: the chart grants what `hardened-csi-operator operator-rbac` says the code
calls, scope by scope, no more and no less (the pull-Secret grant is narrower still: limited by
resourceNames); the kustomize base grants the same; and the house rules hold (no wildcards, no
Secret read beyond the named pull Secrets' `get`, bind/escalate only on the driver's roles)."""

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
    operator_rbac,
    render_example,
)


def _role(docs, suffix):
    return one([d for d in by_kind(docs, "Role") if d["metadata"]["name"].endswith(suffix)], "Role")


def _chart_grants(values=None):
    docs = chart_docs(VALUE_SETS["ha"] if values is None else values)
    leases = _role(docs, "-leases")
    driver_roles = [r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith(("-pull-secrets", "-pods"))]
    assert leases["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert {r["metadata"]["namespace"] for r in driver_roles} == {"kube-system"}
    return {
        "clusterRules": expand_rules(one(docs, "ClusterRole")["rules"]),
        "operatorNamespaceRules": expand_rules(leases["rules"]),
        "driverNamespaceRules": expand_rules([rule for r in driver_roles for rule in r["rules"]]),
    }


def _fmt(grants):
    return "\n".join(f"  {g or 'core'}/{r} {v}" + ("" if n == "*" else f" [{n}]") for g, r, v, n in sorted(grants))


@pytest.mark.parametrize("scope", ["clusterRules", "operatorNamespaceRules"])
def test_chart_rbac_equals_operator_rbac(scope):
    granted = _chart_grants()[scope]
    needed = expand_rules(operator_rbac()[scope])
    missing, extra = needed - granted, granted - needed
    assert not missing and not extra, (
        f"chart {scope} differ from `operator-rbac`\nmissing from the chart:\n{_fmt(missing)}\n"
        f"granted but not needed:\n{_fmt(extra)}"
    )


def test_chart_driver_namespace_roles_are_operator_rbac_with_secrets_limited_to_the_named_ones():
    needed = expand_rules(operator_rbac()["driverNamespaceRules"])
    secrets = {g for g in needed if g[1] == "secrets"}
    for values, names in [
        (VALUE_SETS["ha"], {"dhi-pull"}),
        (VALUE_SETS["driver"], set(VALUE_SETS["driver"]["driver"]["spec"]["images"]["pullSecrets"])),
        ({"pullSecretCheck": {"secretNames": ["mirror-pull", "dhi-pull"]}}, {"mirror-pull", "dhi-pull"}),
    ]:
        granted = _chart_grants(values)["driverNamespaceRules"]
        want = {(g, r, v, n) for g, r, v, _ in secrets for n in names} | (needed - secrets)
        assert want == granted, _fmt(granted)


def test_pull_secret_role_follows_the_driver_block():
    values = {"driver": {"enabled": True, "name": "ebs", "spec": {"namespace": "storage", "images": {"pullSecrets": ["mirror-pull"]}}}}
    docs = chart_docs(values)
    role = _role(docs, "-pull-secrets")
    assert role["metadata"]["namespace"] == "storage"
    assert role["rules"][0]["resourceNames"] == ["mirror-pull"]
    assert _role(docs, "-pull-secrets")["metadata"]["name"] == one(
        [d for d in by_kind(docs, "RoleBinding") if d["metadata"]["name"].endswith("-pull-secrets")], "RoleBinding"
    )["roleRef"]["name"]
    assert _role(docs, "-pods")["metadata"]["namespace"] == "storage"
    # Without pull secrets, or turned off: no grant at all.
    for values in ({"pullSecretCheck": {"secretNames": []}}, {"pullSecretCheck": {"enabled": False}}):
        assert not [d for d in chart_docs(values) if d["metadata"]["name"].endswith("-pull-secrets")]


def test_leases_only_in_the_operator_namespace_role():
    grants = _chart_grants()
    assert not [g for g in grants["clusterRules"] if g[1] == "leases"], "leases must not be granted cluster-wide"
    assert grants["operatorNamespaceRules"] and all(g[1] == "leases" for g in grants["operatorNamespaceRules"])


def test_kustomize_rbac_equals_chart_rbac():
    docs = load_docs(kustomize(str(DEPLOY)))
    chart = _chart_grants(VALUE_SETS["default"])
    assert expand_rules(one(docs, "ClusterRole")["rules"]) == chart["clusterRules"]
    assert expand_rules(_role(docs, "-leases")["rules"]) == chart["operatorNamespaceRules"]
    assert (
        expand_rules(_role(docs, "-pull-secrets")["rules"] + _role(docs, "-pods")["rules"])
        == chart["driverNamespaceRules"]
    )
    sa = one(docs, "ServiceAccount")
    subject = [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}]
    assert one(docs, "ClusterRoleBinding")["subjects"] == subject
    for rb in by_kind(docs, "RoleBinding"):
        assert rb["subjects"] == subject
        role = one([r for r in by_kind(docs, "Role") if r["metadata"]["name"] == rb["roleRef"]["name"]], "Role")
        assert role["metadata"]["namespace"] == rb["metadata"]["namespace"]


def _all_chart_rules():
    docs = chart_docs(VALUE_SETS["ha"])
    return [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]


def _all_operator_rules():
    return [r for rules in operator_rbac().values() for r in rules]


@pytest.mark.parametrize("source", ["chart", "operator-rbac"])
def test_no_wildcards(source):
    rules = _all_chart_rules() if source == "chart" else _all_operator_rules()
    for g, r, v, _ in expand_rules(rules):
        assert "*" not in (g, r, v), f"wildcard in {source}: {g}/{r} {v}"


def test_secrets_only_read_and_only_by_name():
    """Every Secret grant is limited by resourceNames: a get of a named Secret, and a list/watch
    only when restricted to that name (fieldSelector metadata.name, which RBAC authorises as the
    name), so the chart can reach exactly the named pull and static-key Secrets, whose metadata is
    all the operator requests. An unnamed list/watch would return every Secret's data."""
    secret_grants = {g for g in expand_rules(_all_chart_rules()) if g[:2] == ("", "secrets")}
    assert secret_grants, "the pull-Secret check grant is missing"
    assert {v for _, _, v, _ in secret_grants} == {"get", "list", "watch"}
    names = {n for *_, n in secret_grants}
    assert "*" not in names and "" not in names and None not in names, names
    assert not [g for g in expand_rules(operator_rbac()["clusterRules"]) if g[1] == "secrets"]


def test_bind_and_escalate_only_on_the_driver_roles_the_operator_renders():
    """bind/escalate are scoped by resourceNames to exactly the (Cluster)Roles that `render`
    produces, so the operator cannot bind or widen any other role."""
    cluster = _chart_grants()["clusterRules"]
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
    "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
}


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=EXAMPLE_IDS)
def test_operator_may_apply_watch_and_prune_every_rendered_kind(example):
    cluster = _chart_grants()["clusterRules"]
    for doc in render_example(example):
        assert doc["kind"] in RESOURCES, f"render produced {doc['kind']}, unknown to this test and maybe to RBAC"
        group, resource = RESOURCES[doc["kind"]]
        for verb in ("get", "list", "watch", "create", "patch", "delete"):
            assert (group, resource, verb, "*") in cluster, f"chart lacks {verb} on {group or 'core'}/{resource}"
