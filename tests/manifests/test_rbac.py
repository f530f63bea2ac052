"""The operator's RBAC: the chart grants what `hardened-csi-operator operator-rbac` says the code
calls, scope by scope, no more and no less (the pull-Secret grant is narrower still: limited by
resourceNames); the kustomize base grants the same; the driver's own RBAC that the chart ships is
the one the operator verifies; and the house rules hold (no wildcards, no Secret read beyond the
named pull Secrets' `get`, no escalate, no bind, no write on RBAC, tokens for one ServiceAccount)."""

from __future__ import annotations

import os

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
    driver_rbac,
    operator_rbac,
    snapshot_controller_rbac,
    render_example,
)


def _role(docs, suffix):
    return one([d for d in by_kind(docs, "Role") if d["metadata"]["name"].endswith(suffix)], "Role")


def _operator_docs(docs):
    """The operator's own RBAC objects (the chart's driver RBAC excluded)."""
    return [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "driver-rbac"]


def _chart_grants(values=None, driver_namespace="kube-system"):
    docs = _operator_docs(chart_docs(VALUE_SETS["ha"] if values is None else values))
    leases = _role(docs, "-leases")
    driver = _role(docs, "-driver")
    secrets = _role(docs, "-pull-secrets")
    ca_bundles = _role(docs, "-ca-bundles")
    assert leases["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert driver["metadata"]["namespace"] == driver_namespace
    assert secrets["metadata"]["namespace"] == driver_namespace
    assert ca_bundles["metadata"]["namespace"] == driver_namespace
    return {
        "clusterRules": expand_rules(one(by_kind(docs, "ClusterRole"), "ClusterRole")["rules"]),
        "operatorNamespaceRules": expand_rules(leases["rules"]),
        "driverNamespaceRules": expand_rules(driver["rules"]),
        "pullSecretRules": expand_rules(secrets["rules"]),
        "caBundleRules": expand_rules(ca_bundles["rules"]),
    }


def _fmt(grants):
    return "\n".join(f"  {g or 'core'}/{r} {v}" + ("" if n == "*" else f" [{n}]") for g, r, v, n in sorted(grants))


@pytest.mark.parametrize("scope", ["clusterRules", "operatorNamespaceRules", "driverNamespaceRules"])
def test_chart_rbac_equals_operator_rbac(scope):
    granted = _chart_grants()[scope]
    needed = expand_rules(operator_rbac()[scope])
    missing, extra = needed - granted, granted - needed
    assert not missing and not extra, (
        f"chart {scope} differ from `operator-rbac`\nmissing from the chart:\n{_fmt(missing)}\n"
        f"granted but not needed:\n{_fmt(extra)}"
    )


def test_chart_pull_secret_role_is_operator_rbac_limited_to_the_named_secrets():
    needed = expand_rules(operator_rbac()["pullSecretRules"])
    for values, names in [
        (VALUE_SETS["ha"], {"dhi-pull"}),
        (VALUE_SETS["driver"], set(VALUE_SETS["driver"]["driver"]["spec"]["images"]["pullSecrets"])),
        ({"pullSecretCheck": {"secretNames": ["mirror-pull", "dhi-pull"]}}, {"mirror-pull", "dhi-pull"}),
    ]:
        granted = _chart_grants(values)["pullSecretRules"]
        assert {(g, r, v, n) for g, r, v, _ in needed for n in names} == granted, _fmt(granted)


def test_chart_ca_bundle_role_is_operator_rbac_limited_to_the_named_config_maps():
    """`get` on exactly the ConfigMaps aws.caBundleConfigMaps names (and the driver block's
    caBundle), in the driver namespace; no names, no Role at all."""
    needed = expand_rules(operator_rbac()["caBundleRules"])
    assert {v for _, _, v, _ in needed} == {"get"}, _fmt(needed)
    driver = {"driver": {"enabled": True, "name": "ebs", "spec": {"aws": {"caBundle": {"name": "corporate-ca"}}}}}
    for values, names in [
        (VALUE_SETS["ha"], {"aws-ca-bundle"}),
        ({"aws": {"caBundleConfigMaps": ["proxy-ca", "aws-ca-bundle"]}}, {"proxy-ca", "aws-ca-bundle"}),
        (driver, {"aws-ca-bundle", "corporate-ca"}),
        ({**driver, "aws": {"caBundleConfigMaps": []}}, {"corporate-ca"}),
    ]:
        granted = _chart_grants(values)["caBundleRules"]
        assert {(g, r, v, n) for g, r, v, _ in needed for n in names} == granted, _fmt(granted)
    docs = _operator_docs(chart_docs({"aws": {"caBundleConfigMaps": []}}))
    assert not [d for d in docs if d["metadata"]["name"].endswith("-ca-bundles")]
    assert not [g for d in docs if d["kind"] in ("ClusterRole", "Role") for g in expand_rules(d["rules"])
                if g[1] == "configmaps"], "no ConfigMap grant without a name"


def test_the_driver_namespace_is_one_install_time_value():
    values = {"driverNamespace": "storage",
              "driver": {"enabled": True, "name": "ebs", "spec": {"namespace": "storage",
                                                                  "images": {"pullSecrets": ["mirror-pull"]}}}}
    docs = chart_docs(values)
    grants = _chart_grants(values, driver_namespace="storage")
    assert grants["driverNamespaceRules"] == expand_rules(operator_rbac()["driverNamespaceRules"])
    role = _role(_operator_docs(docs), "-pull-secrets")
    assert role["rules"][0]["resourceNames"] == ["mirror-pull"]
    for rb in by_kind(docs, "RoleBinding"):
        assert rb["metadata"]["namespace"] in ("storage", RELEASE_NAMESPACE), rb["metadata"]
    # The driver's bindings name its ServiceAccounts in that namespace, and the operator is told.
    for crb in by_kind(docs, "ClusterRoleBinding"):
        if crb["metadata"]["name"].startswith("ebs-csi-"):
            assert {s["namespace"] for s in crb["subjects"]} == {"storage"}, crb
    args = one(by_kind(docs, "Deployment"), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--driver-namespace=storage" in args, args
    # A driver block in another namespace than the install's is refused by the chart itself.
    bad = {"driverNamespace": "kube-system", "driver": {"enabled": True, "name": "ebs", "spec": {"namespace": "storage"}}}
    with pytest.raises(Exception, match="driver.spec.namespace is .storage. but driverNamespace is .kube-system."):
        chart_docs(bad)
    # Without pull secrets, or turned off: no grant on Secrets at all.
    for values in ({"pullSecretCheck": {"secretNames": []}}, {"pullSecretCheck": {"enabled": False}}):
        assert not [d for d in chart_docs(values) if d["metadata"]["name"].endswith("-pull-secrets")]


def test_allowed_registries_reach_the_operator():
    values = {"allowedRegistries": ["dhi.io", "registry.example.com/dhi"]}
    args = one(by_kind(chart_docs(values), "Deployment"), "Deployment")["spec"]["template"]["spec"]["containers"][0][
        "args"]
    assert [a for a in args if a.startswith("--allowed-registry")] == [
        "--allowed-registry=dhi.io", "--allowed-registry=registry.example.com/dhi"]


def _objects(docs, kind):
    return {d["metadata"]["name"]: d for d in by_kind(docs, kind)}


@pytest.mark.parametrize("source", ["chart", "kustomize"])
def test_the_driver_rbac_shipped_equals_what_the_operator_verifies(source):
    """The chart (and the kustomize base) install the driver's ClusterRoles, bindings and leases
    Role exactly as `operator-rbac` (driverRbac, from render::rbac) defines them."""
    docs = chart_docs(VALUE_SETS["default"]) if source == "chart" else load_docs(kustomize(str(DEPLOY)))
    _ships(docs, driver_rbac(), source)


def _snapshot_controller_overlay(tmp_path):
    """A kustomize overlay of the base with the snapshot-controller component, as the component's
    kustomization.yaml tells users to write it."""
    base = os.path.relpath(DEPLOY, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{base}]\ncomponents: [{base}/snapshot-controller]\n"
    )
    return load_docs(kustomize(str(tmp_path)))


@pytest.mark.parametrize("source", ["chart", "kustomize"])
def test_the_snapshot_controller_rbac_shipped_equals_what_the_operator_verifies(source, tmp_path):
    """snapshotController.rbac.create (or the kustomize component) installs the snapshot-controller's
    RBAC exactly as `operator-rbac` (snapshotControllerRbac) defines it; off by default."""
    if source == "chart":
        docs = chart_docs({"snapshotController": {"rbac": {"create": True}}})
        off = chart_docs(VALUE_SETS["default"])
    else:
        docs = _snapshot_controller_overlay(tmp_path)
        off = load_docs(kustomize(str(DEPLOY)))
    want = snapshot_controller_rbac()
    _ships(docs, want, source)
    names = {r["metadata"]["name"] for k in ("clusterRoles", "roles") for r in want[k]}
    assert not names & {d["metadata"]["name"] for d in off}, f"{source} ships the snapshot-controller RBAC by default"


def _ships(docs, want, source):
    for kind, key in [("ClusterRole", "clusterRoles"), ("Role", "roles")]:
        shipped = _objects(docs, kind)
        for role in want[key]:
            name = role["metadata"]["name"]
            assert name in shipped, f"{source} does not ship {kind} {name}"
            assert expand_rules(shipped[name]["rules"]) == expand_rules(role["rules"]), f"{kind} {name} differs"
            if kind == "Role":
                assert shipped[name]["metadata"]["namespace"] == role["metadata"]["namespace"]
    for kind, key in [("ClusterRoleBinding", "clusterRoleBindings"), ("RoleBinding", "roleBindings")]:
        shipped = _objects(docs, kind)
        for binding in want[key]:
            name = binding["metadata"]["name"]
            assert name in shipped, f"{source} does not ship {kind} {name}"
            assert shipped[name]["roleRef"] == binding["roleRef"]
            assert shipped[name]["subjects"] == binding["subjects"]


def test_leases_only_in_the_operator_namespace_role():
    grants = _chart_grants()
    # Cluster-wide, only the snapshot-controller's leader Lease may be listed (by name, to find another
    # installation's controller): no other Lease, and no write that could take over a leader election.
    cluster_leases = {g for g in grants["clusterRules"] if g[1] == "leases"}
    assert cluster_leases == {("coordination.k8s.io", "leases", "list", "snapshot-controller-leader")}, cluster_leases
    assert grants["operatorNamespaceRules"] and all(g[1] == "leases" for g in grants["operatorNamespaceRules"])


def test_kustomize_rbac_equals_chart_rbac():
    docs = _operator_docs(load_docs(kustomize(str(DEPLOY))))
    chart = _chart_grants(VALUE_SETS["default"])
    assert expand_rules(one(by_kind(docs, "ClusterRole"), "ClusterRole")["rules"]) == chart["clusterRules"]
    assert expand_rules(_role(docs, "-leases")["rules"]) == chart["operatorNamespaceRules"]
    assert expand_rules(_role(docs, "-driver")["rules"]) == chart["driverNamespaceRules"]
    assert expand_rules(_role(docs, "-pull-secrets")["rules"]) == chart["pullSecretRules"]
    assert expand_rules(_role(docs, "-ca-bundles")["rules"]) == chart["caBundleRules"]
    sa = one(docs, "ServiceAccount")
    subject = [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}]
    assert one(by_kind(docs, "ClusterRoleBinding"), "ClusterRoleBinding")["subjects"] == subject
    for rb in by_kind(docs, "RoleBinding"):
        assert rb["subjects"] == subject
        role = one([r for r in by_kind(docs, "Role") if r["metadata"]["name"] == rb["roleRef"]["name"]], "Role")
        assert role["metadata"]["namespace"] == rb["metadata"]["namespace"]


def _all_chart_rules():
    docs = _operator_docs(chart_docs(VALUE_SETS["ha"]))
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


def test_config_maps_only_get_and_only_by_name():
    """The CA bundle's ConfigMap is read with one `get` of its name: no list or watch (which would
    return every ConfigMap of the driver namespace) and no ConfigMap grant without resourceNames."""
    grants = {g for g in expand_rules(_all_chart_rules()) if g[:2] == ("", "configmaps")}
    assert grants == {("", "configmaps", "get", "aws-ca-bundle")}, _fmt(grants)
    assert not [g for g in expand_rules(operator_rbac()["clusterRules"]) if g[1] == "configmaps"]


def test_no_escalate_no_bind_no_rbac_writes_no_tokens_cluster_wide():
    """A stolen operator token grants nothing: no escalate or bind anywhere, no write on any RBAC
    object (only list/watch by name, the driver's watched to verify them), tokens only for ebs-csi-controller-sa in
    the driver namespace, and no namespaced write cluster-wide."""
    rules = [r for d in _operator_docs(chart_docs(VALUE_SETS["ha"])) if d["kind"] in ("ClusterRole", "Role")
             for r in d["rules"]]
    grants = expand_rules(rules)
    assert not [g for g in grants if g[2] in ("escalate", "bind", "impersonate")], _fmt(grants)
    rbac = {g for g in grants if g[0] == "rbac.authorization.k8s.io"}
    assert {v for _, _, v, _ in rbac} == {"list", "watch"} and all(n != "*" for *_, n in rbac), _fmt(rbac)
    tokens = {g for g in grants if g[1] == "serviceaccounts/token"}
    assert tokens == {("", "serviceaccounts/token", "create", "ebs-csi-controller-sa")}, _fmt(tokens)
    cluster = _chart_grants()["clusterRules"]
    namespaced_kinds = {"serviceaccounts", "deployments", "daemonsets", "services", "poddisruptionbudgets",
                        "networkpolicies", "secrets", "roles", "rolebindings", "serviceaccounts/token"}
    assert not [g for g in cluster if g[1] in namespaced_kinds], "namespaced grants belong in the driver Role"
    # Every write on an object with a known name is limited to that name.
    driver = _chart_grants()["driverNamespaceRules"]
    for g, r, v, n in driver | cluster:
        if r in ("csidrivers",) or (r in namespaced_kinds and v in ("get", "create", "patch", "delete")):
            assert n != "*", f"{v} on {g or 'core'}/{r} is not limited by name"


# kind -> (apiGroup, resource) for what `render` can produce.
RESOURCES = {
    "ServiceAccount": ("", "serviceaccounts"),
    "Service": ("", "services"),
    "Deployment": ("apps", "deployments"),
    "DaemonSet": ("apps", "daemonsets"),
    "CSIDriver": ("storage.k8s.io", "csidrivers"),
    "StorageClass": ("storage.k8s.io", "storageclasses"),
    "VolumeSnapshotClass": ("snapshot.storage.k8s.io", "volumesnapshotclasses"),
    "VolumeAttributesClass": ("storage.k8s.io", "volumeattributesclasses"),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets"),
    "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
    "ServiceMonitor": ("monitoring.coreos.com", "servicemonitors"),
}


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=EXAMPLE_IDS)
def test_operator_may_apply_watch_and_prune_every_rendered_object(example):
    """Every object `render` produces is one the operator may create, patch, get and delete by
    its name and cache (list, watch), in the driver namespace for namespaced ones."""
    grants = _chart_grants()
    cluster, driver = grants["clusterRules"], grants["driverNamespaceRules"]
    for doc in render_example(example):
        assert doc["kind"] in RESOURCES, f"render produced {doc['kind']}, unknown to this test and maybe to RBAC"
        group, resource = RESOURCES[doc["kind"]]
        name = doc["metadata"]["name"]
        held = driver if doc["metadata"].get("namespace") else cluster
        # A VolumeSnapshotClass is cached whole (existence is known without a read) and never
        # recreated (external-snapshotter v8's CRD has no immutable field): no `get` is needed.
        verbs = ("create", "patch", "delete") if doc["kind"] == "VolumeSnapshotClass" else (
            "get", "create", "patch", "delete")
        for verb in verbs:
            assert {(group, resource, verb, "*"), (group, resource, verb, name)} & held, (
                f"chart lacks {verb} on {group or 'core'}/{resource} {name}")
        for verb in ("list", "watch"):
            assert {(group, resource, verb, "*"), (group, resource, verb, name)} & held, (
                f"chart lacks {verb} on {group or 'core'}/{resource}")


def test_admission_policy_is_off_by_default_and_carries_the_install_settings():
    assert not by_kind(chart_docs(VALUE_SETS["default"]), "ValidatingAdmissionPolicy")
    docs = chart_docs(VALUE_SETS["guardrails"])
    policy = one(by_kind(docs, "ValidatingAdmissionPolicy"), "ValidatingAdmissionPolicy")
    binding = one(by_kind(docs, "ValidatingAdmissionPolicyBinding"), "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rules == [{"apiGroups": ["csi.hardened.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                      "resources": ["hardenedcsidrivers"]}]
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert variables["allowedRegistries"] == '["dhi.io","registry.example.com/dhi"]'
    checks = [v["expression"] for v in policy["spec"]["validations"]]
    assert checks[0] == '!has(object.spec.namespace) || object.spec.namespace == "storage"'
    assert "variables.allowedRegistries.exists" in checks[1]
    assert all(p in checks[2] for p in ("'/etc'", "'/proc'", "'/sys'", "'/dev'", "'/boot'", "'/root'"))
    messages = [v["messageExpression"] for v in policy["spec"]["validations"]]
    assert "driverNamespace" in messages[0] and "allowedRegistries" in messages[1]
    assert "spec.node.kubeletPath" in messages[2]
