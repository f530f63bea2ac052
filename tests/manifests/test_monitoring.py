"""The chart's PrometheusRule and Grafana dashboard: every rule expression and dashboard query
parses (promql-parser), names only metrics the operator exports, the PrometheusRule and
ServiceMonitor pass the Prometheus Operator's schema (validators generated from its CRDs,
kubernetes-models, run with node), and the alerts the issue asks for are there."""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess

import promql_parser
import pytest

from support import CHART, EXAMPLES, REPO, VALUE_SETS, chart_docs, render_example

NPM = REPO / "tests" / "manifests" / "npm"
REQUIRED_ALERTS = {
    "HardenedCsiDriverNotReady",
    "HardenedCsiNodePluginUnavailable",
    "HardenedCsiDriverMissingIamPermissions",
    "HardenedCsiDriverOrphanedVolumes",
    "HardenedCsiAwsThrottling",
    "HardenedCsiOperatorNoLeader",
}


@functools.cache
def _validator() -> None:
    """Installs the pinned validators (package-lock.json, integrity-checked) once."""
    if not (NPM / "node_modules" / "@kubernetes-models" / "prometheus-operator").is_dir():
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=NPM, check=True,
                       capture_output=True, timeout=600)


def schema_errors(objects: list[dict]) -> list[str]:
    """One line per object: "ok" or what the Prometheus Operator's schema refuses."""
    _validator()
    stdin = "".join(json.dumps(o) + "\n" for o in objects)
    out = subprocess.run(["node", "validate.mjs"], cwd=NPM, input=stdin, capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    assert len(lines) == len(objects), out.stderr
    return lines


def _docs():
    return chart_docs(VALUE_SETS["monitoring"])


def _rule() -> dict:
    [rule] = [d for d in _docs() if d["kind"] == "PrometheusRule"]
    return rule


def _exported_metrics() -> set[str]:
    """Every family the operator registers, as Prometheus names it (prefix, `_total` counters)."""
    names = set()
    for path in ["src/runtime/metrics.rs", "src/aws/metrics.rs"]:
        text = (REPO / path).read_text()
        names |= {f"hardened_csi_operator_{n}" for n in re.findall(r'register\(\s*"([a-z_]+)"', text)}
    names |= set(re.findall(r'"(process_[a-z_]+)"', (REPO / "src/runtime/process.rs").read_text()))
    return names


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:hardened_csi_operator|process)_[a-z_]+)\b", expr))


def _assert_exported(expr: str):
    exported = _exported_metrics()
    for name in _metric_names(expr):
        base = re.sub(r"_(total|bucket|sum|count)$", "", name)
        assert base in exported or name in exported, f"{name} (in {expr!r}) is not a metric the operator exports"


def test_prometheus_rule_has_the_alerts_and_every_expression_parses():
    rule = _rule()
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) >= REQUIRED_ALERTS, REQUIRED_ALERTS - set(alerts)
    assert alerts["HardenedCsiDriverNotReady"]["for"] == "20m", "notReadyFor reaches the rule"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    for name, r in alerts.items():
        promql_parser.parse(r["expr"])  # raises on a syntax error
        _assert_exported(r["expr"])
        assert r["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert "{{ $labels.name }}" in json.dumps(r["annotations"]) or "name" not in r["expr"], name
    with pytest.raises(ValueError):
        promql_parser.parse("max by (name) (hardened_csi_operator_condition{type=\"Ready\"} == 1")


def test_prometheus_rule_and_service_monitor_pass_the_operator_schema():
    docs = _docs()
    objects = [d for d in docs if d["kind"] in {"PrometheusRule", "ServiceMonitor"}]
    assert {o["kind"] for o in objects} == {"PrometheusRule", "ServiceMonitor"}
    assert schema_errors(objects) == ["ok"] * len(objects)
    # The check can fail: a rule without its expression, or a malformed `for`, is refused.
    broken = copy.deepcopy(_rule())
    del broken["spec"]["groups"][0]["rules"][0]["expr"]
    late = copy.deepcopy(_rule())
    late["spec"]["groups"][0]["rules"][0]["for"] = "fifteen minutes"
    errors = schema_errors([broken, late])
    assert "expr" in errors[0] and "for must match pattern" in errors[1], errors


def test_grafana_dashboard_parses_and_every_query_parses():
    [cm] = [d for d in _docs() if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["hardened-csi-operator.json"])
    assert dashboard == json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"]
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert len(queries) >= 12
    for q in queries:
        if q.startswith("label_values("):  # Grafana's template function, not PromQL
            q = re.sub(r"^label_values\((.*), *\w+\)$", r"\1", q)
        promql_parser.parse(q)
        _assert_exported(q)
    shown = set().union(*(_metric_names(q) for q in queries))
    for family in ["condition", "reconciles_total", "aws_requests_total", "kube_requests_total", "build_info"]:
        assert f"hardened_csi_operator_{family}" in shown, family
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= shown


def test_monitoring_objects_are_off_by_default():
    kinds = {(d["kind"], d["metadata"]["name"]) for d in chart_docs({})}
    assert not [k for k in kinds if k[0] == "PrometheusRule" or k[1].endswith("-dashboard")], kinds


def test_driver_service_monitors_pass_the_operator_schema_and_select_their_services():
    """`spec.metrics.serviceMonitor` of deploy/examples/full.yaml: one ServiceMonitor per metrics
    Service, valid for the Prometheus Operator, selecting exactly its Service (by labels, in its
    namespace) and scraping every port that Service names."""
    docs = render_example(EXAMPLES / "full.yaml")
    monitors = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceMonitor"}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert set(monitors) == set(services) == {"ebs-csi-controller", "ebs-csi-node"}
    assert schema_errors(list(monitors.values())) == ["ok"] * len(monitors)
    for name, sm in monitors.items():
        assert sm["metadata"]["labels"]["release"] == "prometheus"
        selected = [s for s in services.values()
                    if sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
                    and s["metadata"]["namespace"] in sm["spec"]["namespaceSelector"]["matchNames"]]
        assert [s["metadata"]["name"] for s in selected] == [name]
        ports = [p["name"] for p in services[name]["spec"]["ports"]]
        assert [e["port"] for e in sm["spec"]["endpoints"]] == ports
        assert {e["interval"] for e in sm["spec"]["endpoints"]} == {"30s"}
    # Without the Prometheus Operator's CRD (render --no-service-monitor-api): none, and the rest unchanged.
    without = render_example(EXAMPLES / "full.yaml", "--no-service-monitor-api")
    assert not [d for d in without if d["kind"] == "ServiceMonitor"]
    assert [d for d in without] == [d for d in docs if d["kind"] != "ServiceMonitor"]
