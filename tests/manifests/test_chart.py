"""The Helm chart: lints, renders for every value set, rejects bad values through
values.schema.json, and renders what each value promises."""

from __future__ import annotations

import copy
import re

import helm_python
import pytest
import yaml

from support import (
    CHART,
    CHART_CRD_TEMPLATE,
    CRD_FILE,
    RELEASE,
    RELEASE_NAMESPACE,
    TEST_DIGEST,
    VALUE_SETS,
    by_kind,
    chart_docs,
    one,
    run_bin,
    render_chart,
    validate_chart_values,
)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_chart_lints_strict(name):
    report = helm_python.lint(str(CHART), copy.deepcopy(VALUE_SETS[name]), strict=True, namespace=RELEASE_NAMESPACE)
    # Severity 1 is informational ("icon is recommended"); warnings and errors fail.
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], (problems, report["errors"])


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_chart_renders_operator_objects(name):
    docs = chart_docs(VALUE_SETS[name], hooks=True)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ClusterRole", "ClusterRoleBinding"} <= kinds
    driver_ns = VALUE_SETS[name].get("driverNamespace", "kube-system")
    for d in docs:
        labels = d["metadata"].get("labels", {})
        driver_side = d["metadata"]["name"].endswith(("-pull-secrets", "-ca-bundles", "-driver"))
        if driver_side or labels.get("app.kubernetes.io/component") == "driver-rbac":
            # The operator's driver-namespace grants and the driver's own RBAC live there.
            if d["kind"] in ("Role", "RoleBinding"):
                assert d["metadata"]["namespace"] == driver_ns, d["metadata"]
        elif d["kind"] not in {"ClusterRole", "ClusterRoleBinding", "HardenedCsiDriver", "CustomResourceDefinition",
                               "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}:
            assert d["metadata"].get("namespace") == RELEASE_NAMESPACE, d["metadata"]
        labels = d["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"):
            assert key in labels, f"{d['kind']}/{d['metadata']['name']} lacks label {key}"


def _deployment(values):
    return one(chart_docs(values), "Deployment")


def test_default_deployment_is_restricted_and_probed():
    dep = _deployment({})
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsUser"] == 65532
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http-metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert {"containerPort": 8080, "name": "http-metrics", "protocol": "TCP"} in c["ports"]
    assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
    assert c["args"][0] == "run"
    assert "--metrics-addr=0.0.0.0:8080" in c["args"]
    assert c["image"] == "ghcr.io/hardened-csi/hardened-csi-operator:0.1.0"
    # The explicit token volume is what the kubelet would mount: kube clients read all three.
    mount = next(m for m in c["volumeMounts"] if m["name"] == "kube-api-access")
    assert mount["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount"
    vol = next(v for v in pod["volumes"] if v["name"] == "kube-api-access")
    paths = set()
    for src in vol["projected"]["sources"]:
        for kind in ("serviceAccountToken", "configMap", "downwardAPI"):
            if kind in src:
                paths |= {src[kind]["path"]} if "path" in src[kind] else {i["path"] for i in src[kind]["items"]}
    assert paths == {"token", "ca.crt", "namespace"}


# Pod Security Standards, "restricted" profile (what the operator namespace enforces).
RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_operator_pod_meets_restricted_pod_security(name):
    pod = _deployment(VALUE_SETS[name])["spec"]["template"]["spec"]
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key)
    for v in pod.get("volumes", []):
        assert set(v) - {"name"} <= RESTRICTED_VOLUME_TYPES, v
    psc = pod.get("securityContext", {})
    assert psc.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost")
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c.get("securityContext", {})
        assert sc.get("allowPrivilegeEscalation") is False
        assert sc.get("privileged") in (None, False)
        assert (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")) is True
        assert (sc.get("runAsUser", psc.get("runAsUser"))) != 0
        assert sc.get("capabilities", {}).get("drop") == ["ALL"]
        assert set(sc.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}
        assert not [p for p in c.get("ports", []) if "hostPort" in p]


def test_leader_election_flags_and_lease_role():
    docs = chart_docs(VALUE_SETS["ha"])
    dep = one(docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-election" in args
    assert f"--lease-namespace={RELEASE_NAMESPACE}" in args
    assert "--lease-name=hco-leader" in args
    assert "--lease-duration=20s" in args and "--renew-deadline=15s" in args
    assert not [a for a in args if a.startswith("--retry-period")]
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in env
    role = one([d for d in docs if d["metadata"]["name"].endswith("-leases")], "Role")
    assert role["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]
    binding = one([d for d in docs if d["metadata"]["name"].endswith("-leases")], "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": pdb["spec"]["selector"]}


def test_pdb_with_one_replica_lets_a_drain_evict_the_pod():
    """minAvailable 1 with the default single replica would block every node drain: the budget
    is maxUnavailable (default 1, never 0) and the schema refuses minAvailable."""
    docs = chart_docs({"podDisruptionBudget": {"enabled": True}})
    assert one(docs, "Deployment")["spec"]["replicas"] == 1
    pdb = one(docs, "PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1 and "minAvailable" not in pdb
    assert not [d for d in chart_docs({}) if d["kind"] == "PodDisruptionBudget"]


def test_without_leader_election_no_lease_role_and_no_flag():
    docs = chart_docs(VALUE_SETS["no-leader-election"])
    # The operator's leases Role goes; the driver's own (ebs-csi-leases-role, from the chart's
    # driver RBAC) is the driver controller's leader election and stays.
    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding") and "leases" in d["metadata"]["name"]
                and not d["metadata"]["name"].startswith("ebs-csi-")]
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if a.startswith("--lease") or a == "--leader-election"]


def test_irsa_annotates_service_account_and_sets_region():
    docs = chart_docs(VALUE_SETS["irsa"])
    sa = one(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == "arn:aws:iam::111122223333:role/hardened-csi-operator"
    assert sa["automountServiceAccountToken"] is False
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--aws-region=us-east-1" in args
    # Without the value, no annotation at all.
    assert "annotations" not in one(chart_docs({}), "ServiceAccount")["metadata"]


def test_digest_pins_the_image():
    c = _deployment(VALUE_SETS["pinned"])["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == f"ghcr.io/hardened-csi/hardened-csi-operator:0.1.0@{TEST_DIGEST}"


def test_existing_service_account_is_used_not_created():
    docs = chart_docs(VALUE_SETS["existing-sa"])
    assert not [d for d in docs if d["kind"] == "ServiceAccount"]
    dep = one(docs, "Deployment")
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "platform-operator"
    crb = one([d for d in by_kind(docs, "ClusterRoleBinding") if not d["metadata"]["name"].startswith("ebs-csi-")],
              "ClusterRoleBinding")
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "platform-operator", "namespace": RELEASE_NAMESPACE}]
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--aws-endpoint-url=https://ec2.us-east-1.amazonaws.com" in args
    assert args[-1] == "--shutdown-grace-period=20s"
    assert "--log-level=info,hardened_csi_operator=debug" in args


def test_service_monitor_scrapes_the_metrics_service():
    docs = chart_docs(VALUE_SETS["servicemonitor"])
    sm = one(docs, "ServiceMonitor")
    svc = one(docs, "Service")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert [e["port"] for e in sm["spec"]["endpoints"]] == [p["name"] for p in svc["spec"]["ports"]]
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert not [d for d in chart_docs({}) if d["kind"] == "ServiceMonitor"]


def test_service_monitor_without_service_fails_with_reason():
    values = {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}
    with pytest.raises(helm_python.HelmError, match="metrics.service.enabled"):
        render_chart(values)


def test_network_policy_admits_only_the_metrics_port():
    docs = chart_docs({})
    np = one(docs, "NetworkPolicy")
    dep = one(docs, "Deployment")
    assert np["spec"]["podSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert np["spec"]["policyTypes"] == ["Ingress"]
    assert np["spec"]["ingress"] == [{"ports": [{"port": "http-metrics", "protocol": "TCP"}]}]


def test_driver_block_renders_a_hardened_csi_driver():
    docs = chart_docs(VALUE_SETS["driver"])
    hcd = one(docs, "HardenedCsiDriver")
    assert hcd["apiVersion"] == "csi.hardened.dev/v1alpha1"
    assert hcd["metadata"]["name"] == "ebs"
    assert "namespace" not in hcd["metadata"], "HardenedCsiDriver is cluster-scoped"
    # The chart's default spec (namespace, pull secret) merged with the values given.
    assert hcd["spec"] == {"namespace": "kube-system", **VALUE_SETS["driver"]["driver"]["spec"]}
    assert not [d for d in chart_docs({}) if d["kind"] == "HardenedCsiDriver"]


def test_notes_tell_the_next_step():
    notes = render_chart({})["hardened-csi-operator/templates/NOTES.txt"]
    assert "create secret docker-registry dhi-pull" in notes
    assert "kind: HardenedCsiDriver" in notes
    notes = render_chart(VALUE_SETS["driver"])["hardened-csi-operator/templates/NOTES.txt"]
    assert "kubectl get hardenedcsidriver ebs -w" in notes
    assert f"helm test {RELEASE} -n {RELEASE_NAMESPACE}" in notes
    notes = render_chart({"tests": {"enabled": False}})["hardened-csi-operator/templates/NOTES.txt"]
    assert "helm test" not in notes


BAD_VALUES = {
    "replicas-without-leader-election": ({"replicaCount": 2, "leaderElection": {"enabled": False}}, "leaderElection/enabled"),
    "zero-replicas": ({"replicaCount": 0}, "replicaCount"),
    "replicas-as-string": ({"replicaCount": "2"}, "replicaCount"),
    "digest-not-sha256": ({"image": {"digest": "sha256:abc"}}, "image/digest"),
    "digest-uppercase": ({"image": {"digest": "sha256:" + "A" * 64}}, "image/digest"),
    "bad-pull-policy": ({"image": {"pullPolicy": "Sometimes"}}, "image/pullPolicy"),
    "typo-top-level": ({"replicas": 2}, "replicas"),
    "typo-nested": ({"serviceAccount": {"irsaRoleARN": "x"}}, "irsaRoleARN"),
    "bad-irsa-arn": ({"serviceAccount": {"irsaRoleArn": "arn:aws:iam::12:user/me"}}, "irsaRoleArn"),
    "existing-sa-without-name": ({"serviceAccount": {"create": False}}, "serviceAccount/name"),
    "bad-log-format": ({"logFormat": "yaml"}, "logFormat"),
    "privileged-metrics-port": ({"metrics": {"port": 80}}, "metrics/port"),
    "bad-region": ({"aws": {"region": "US East"}}, "aws/region"),
    "endpoint-not-url": ({"aws": {"endpointUrl": "ec2.local"}}, "aws/endpointUrl"),
    "extra-arg-not-flag": ({"extraArgs": ["run"]}, "extraArgs"),
    "extra-arg-repeats-a-value": ({"extraArgs": ["--log-format=text"]}, "extraArgs"),
    "bad-lease-duration": ({"leaderElection": {"enabled": True, "leaseDuration": "15"}}, "leaseDuration"),
    "pull-secret-as-object": ({"imagePullSecrets": [{"name": "x"}]}, "imagePullSecrets"),
    "bad-resource-quantity": ({"resources": {"limits": {"memory": "lots"}}}, "resources/limits/memory"),
    "driver-spec-not-object": ({"driver": {"enabled": True, "name": "ebs", "spec": "kube-system"}}, "driver/spec"),
    "pdb-min-available": ({"podDisruptionBudget": {"enabled": True, "minAvailable": 1}}, "minAvailable"),
    "pdb-max-unavailable-zero": ({"podDisruptionBudget": {"enabled": True, "maxUnavailable": 0}}, "podDisruptionBudget/maxUnavailable"),
    "crds-install-not-bool": ({"crds": {"install": "yes"}}, "crds/install"),
    "bad-scrape-interval": ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "interval"),
    # driver.spec is the CRD's spec schema: typos and bad values fail at install time.
    "driver-spec-typo": ({"driver": {"enabled": True, "name": "ebs", "spec": {"awz": {}}}}, "awz"),
    "driver-spec-bad-enum": (
        {"driver": {"enabled": True, "name": "ebs", "spec": {"storageClasses": [{"name": "x", "type": "gp9"}]}}},
        "driver/spec/storageClasses/0/type",
    ),
    "driver-spec-bad-arn": (
        {"driver": {"enabled": True, "name": "ebs", "spec": {"aws": {"identity": {"irsa": {"roleArn": "admin"}}}}}},
        "roleArn",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(case):
    values, field = BAD_VALUES[case]
    with pytest.raises(helm_python.HelmValuesError) as err:
        validate_chart_values(values)
    assert field in str(err.value), str(err.value)
    # helm install/template apply the same schema: rendering fails too.
    with pytest.raises(helm_python.HelmValuesError):
        render_chart(values)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_schema_accepts_the_value_sets(name):
    validate_chart_values(VALUE_SETS[name])


def test_values_yaml_documents_every_key():
    """Each top-level key of values.yaml is documented: a comment in its paragraph (the lines
    above it up to a blank line) or a `# --` comment inside its block."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        if not line or line.startswith((" ", "#")) or ":" not in line:
            continue
        j = i - 1
        paragraph = []
        while j >= 0 and lines[j].strip():
            paragraph.append(lines[j])
            j -= 1
        k = i + 1
        block = []
        while k < len(lines) and (lines[k].startswith(" ") or not lines[k].strip()):
            block.append(lines[k])
            k += 1
        if not any(l.lstrip().startswith("#") for l in paragraph) and not any("# --" in l for l in block):
            undocumented.append(line)
    assert not undocumented, f"values.yaml keys without a comment: {undocumented}"


def _chart_crd(values):
    crds = [d for d in chart_docs(values) if d["kind"] == "CustomResourceDefinition"]
    assert len(crds) <= 1, [d["metadata"]["name"] for d in crds]
    return crds[0] if crds else None


def test_chart_crd_is_the_generated_crd_with_helm_metadata():
    """The chart's CRD is a template (so `helm upgrade` updates it) rendering exactly crds/'s CRD,
    plus the release labels and the keep policy."""
    generated = yaml.safe_load(CRD_FILE.read_text())
    rendered = _chart_crd({})
    meta = rendered.pop("metadata")
    assert rendered == {k: v for k, v in generated.items() if k != "metadata"}
    assert meta["name"] == generated["metadata"]["name"] == "hardenedcsidrivers.csi.hardened.dev"
    assert meta["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert meta["labels"]["app.kubernetes.io/component"] == "crd"
    assert not (CHART / "crds").exists(), "crds/ would make Helm create the CRD outside the release"


def test_chart_crd_template_is_generated():
    from regenerate import chart_crd_template

    assert CHART_CRD_TEMPLATE.read_text() == chart_crd_template(), "the chart's CRD template is stale: run `make crds`"


def test_crds_keep_false_drops_the_keep_policy_and_install_false_the_crd():
    assert "annotations" not in _chart_crd({"crds": {"keep": False}})["metadata"]
    assert _chart_crd({"crds": {"install": False}}) is None


def test_every_flag_the_chart_passes_is_a_run_flag():
    """The chart's container args are flags of `hardened-csi-operator run` (its --help)."""
    help_text = run_bin("run", "--help").stdout
    flags = set()
    for values in VALUE_SETS.values():
        args = one(chart_docs(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[0] == "run"
        # --allowed-registry is the one flag clap takes repeatedly (a list).
        names = [a.split("=", 1)[0] for a in args[1:] if not a.startswith("--allowed-registry=")]
        assert len(names) == len(set(names)), f"a flag is repeated (clap refuses that): {args}"
        flags |= set(names)
    assert {"--metrics-addr", "--log-format", "--leader-election", "--lease-namespace", "--lease-name", "--aws-endpoint-url"} <= flags
    missing = sorted(f for f in flags if not re.search(rf"(^|\s){re.escape(f)}([\s=,<]|$)", help_text, re.M))
    assert not missing, f"flags unknown to `run --help`: {missing}\n{help_text}"


def test_values_schema_is_generated():
    """values.schema.json is what tests/manifests/regenerate.py writes (its driver.spec is the
    CRD's spec schema, so it goes stale with the CRD)."""
    from regenerate import values_schema

    assert (CHART / "values.schema.json").read_text() == values_schema(), (
        "values.schema.json is stale: run .venv/bin/python tests/manifests/regenerate.py"
    )


# ---------------------------------------------------------------- `helm test` hook


def _hooks(values):
    return [d for d in chart_docs(values, hooks=True) if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]


def test_helm_test_hook_is_a_restricted_pod_checking_readyz_and_the_driver():
    docs = chart_docs({}, hooks=True)
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    assert spec["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}
    }
    curl, kubectl = spec["containers"]
    for c in (curl, kubectl):
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert c["image"].startswith("dhi.io/") and c["resources"]["limits"]["memory"]
    svc = one(docs, "Service")
    assert curl["command"] == ["curl"] and "--fail" in curl["args"]
    assert curl["args"][-1] == f"http://{svc['metadata']['name']}.{RELEASE_NAMESPACE}.svc:{svc['spec']['ports'][0]['port']}/readyz"
    assert kubectl["command"] == ["kubectl"]
    assert kubectl["args"][:3] == ["wait", "--for=condition=Ready", "hardenedcsidriver/ebs"]
    # Only the kubectl container carries the API token.
    assert "volumeMounts" not in curl
    assert {m["mountPath"] for m in kubectl["volumeMounts"]} == {"/var/run/secrets/kubernetes.io/serviceaccount", "/tmp"}
    # No selector of the operator (Service, NetworkPolicy, PDB) picks the test pod up.
    assert not svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert spec["imagePullSecrets"] == [{"name": "dhi-pull"}]


def test_helm_test_rbac_reads_only_the_one_driver():
    hooks = _hooks({})
    (sa,) = [d for d in hooks if d["kind"] == "ServiceAccount"]
    (role,) = [d for d in hooks if d["kind"] == "ClusterRole"]
    (binding,) = [d for d in hooks if d["kind"] == "ClusterRoleBinding"]
    assert role["rules"] == [{
        "apiGroups": ["csi.hardened.dev"], "resources": ["hardenedcsidrivers"],
        "resourceNames": ["ebs"], "verbs": ["get", "list", "watch"],
    }]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": RELEASE_NAMESPACE}]
    assert one(hooks, "Pod")["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    # Nothing may connect to the test pod.
    (policy,) = [d for d in hooks if d["kind"] == "NetworkPolicy"]
    assert policy["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in policy["spec"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= one(hooks, "Pod")["metadata"]["labels"].items()
    # Created before the pod (lower weight), removed with it after a passing run.
    for d in (sa, role, binding, policy):
        assert int(d["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0
        assert d["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"


def test_helm_test_follows_the_driver_name_and_can_be_turned_off():
    docs = _hooks({"driver": {"name": "ebs-prod"}})
    assert one(docs, "Pod")["spec"]["containers"][1]["args"][2] == "hardenedcsidriver/ebs-prod"
    docs = _hooks({"tests": {"driverName": "other"}})
    assert one(docs, "ClusterRole", f"{RELEASE}-hardened-csi-operator-test")["rules"][0]["resourceNames"] == ["other"]
    assert _hooks({"tests": {"enabled": False}}) == []


def test_helm_test_needs_the_metrics_service():
    with pytest.raises(helm_python.HelmError, match="tests.enabled needs metrics.service.enabled"):
        render_chart({"metrics": {"service": {"enabled": False}}})
    assert _hooks({"metrics": {"service": {"enabled": False}}, "tests": {"enabled": False}}) == []


def test_network_policy_admits_the_test_pod_when_metrics_are_restricted():
    values = VALUE_SETS["ci/restricted-metrics-values"]
    docs = chart_docs(values)
    peers = one(docs, "NetworkPolicy")["spec"]["ingress"][0]["from"]
    assert peers[0] == values["networkPolicy"]["metricsFrom"][0]
    docs = chart_docs({**values, "tests": {"enabled": True}})
    peers = one(docs, "NetworkPolicy")["spec"]["ingress"][0]["from"]
    test_pod = one(_hooks({**values, "tests": {"enabled": True}}), "Pod")
    assert peers[-1]["podSelector"]["matchLabels"].items() <= test_pod["metadata"]["labels"].items()


# ---------------------------------------------------------------- packaging metadata


def test_chart_readme_is_generated_from_values():
    from chart_readme import README, chart_readme, documented_keys

    assert README.read_text() == chart_readme(), "the chart README is stale: run `make crds` or tests/manifests/chart_readme.py"
    # Every key of values.yaml has a row (a mapping through its keys' rows), with its default.
    text = README.read_text()
    keys = [k for k, _ in documented_keys((CHART / "values.yaml").read_text())]
    assert len(keys) > 60
    for key in keys:
        assert f"| `{key}` |" in text or any(k.startswith(f"{key}.") for k in keys), key
    assert "| `podDisruptionBudget.maxUnavailable` | int | `1` |" in text


def test_chart_testing_value_files_exist():
    from support import CI_VALUE_FILES

    assert len(CI_VALUE_FILES) >= 3, CI_VALUE_FILES
    assert all(f"ci/{p.stem}" in VALUE_SETS for p in CI_VALUE_FILES)
    assert "ci/" in (CHART / ".helmignore").read_text().split(), "ci/ is for CI, not for the packaged chart"


def _annotation(key):
    return yaml.safe_load(yaml.safe_load((CHART / "Chart.yaml").read_text())["annotations"][key])


def test_artifact_hub_images_are_what_the_chart_and_the_operator_run():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    listed = {i["image"] for i in _annotation("artifacthub.io/images")}
    from support import EXAMPLES, render_example

    operator = {c["image"] for c in one(chart_docs({}), "Deployment")["spec"]["template"]["spec"]["containers"]}
    tests = {c["image"] for c in one(chart_docs({}, hooks=True), "Pod")["spec"]["containers"]}
    driver = set()
    for d in render_example(EXAMPLES / "minimal.yaml"):
        pod = d.get("spec", {}).get("template", {}).get("spec", {})
        driver |= {c["image"] for c in pod.get("containers", []) + pod.get("initContainers", [])}
    assert operator == {f"ghcr.io/hardened-csi/hardened-csi-operator:{chart['appVersion']}"}
    assert listed == operator | tests | driver


def test_artifact_hub_crd_example_is_a_valid_driver():
    from support import EXAMPLES, crd_errors

    (example,) = _annotation("artifacthub.io/crdsExamples")
    assert crd_errors(example) == []
    assert example == yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())


def test_artifact_hub_license_links_changes_icon_and_maintainers():
    import tomllib

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    cargo = tomllib.loads((CHART.parents[1] / "Cargo.toml").read_text())
    assert chart["annotations"]["artifacthub.io/license"] == cargo["workspace"]["package"]["license"]
    for link in _annotation("artifacthub.io/links"):
        assert link["name"] and link["url"].startswith("https://github.com/hardened-csi/hardened-csi-operator")
    changes = _annotation("artifacthub.io/changes")
    assert changes and all(c["kind"] in {"added", "changed", "deprecated", "removed", "fixed", "security"} for c in changes)
    # The icon URL points into this repository's main branch: the file must exist.
    prefix = "https://raw.githubusercontent.com/hardened-csi/hardened-csi-operator/main/"
    assert chart["icon"].startswith(prefix) and (CHART.parents[1] / chart["icon"][len(prefix):]).is_file()
    assert chart["maintainers"] and all(m["name"] for m in chart["maintainers"])
