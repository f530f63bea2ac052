"""Writes the files derived from others, so each has one source:

- charts/hardened-csi-operator/values.schema.json, from the description below, with
  `driver.spec` taken from the CRD's openAPIV3Schema (a typo in the driver block fails
  `helm install` instead of being pruned by the API server);
- charts/hardened-csi-operator/templates/crds/hardenedcsidrivers.csi.hardened.dev.yaml, the CRD
  from crds/ as a chart template (behind `crds.install`, kept on uninstall unless `crds.keep` is
  false), so `helm upgrade` updates it;
- charts/hardened-csi-operator/README.md, from Chart.yaml and the comments in values.yaml
  (chart_readme.py);
- deploy/operator/{clusterrole,deployment,role-driver,role-pull-secrets,role-ca-bundles,driver-rbac}.yaml, the
  kustomize base's copies of `helm template` output (release and namespace `hardened-csi-operator`), minus Helm's labels;
- the `kubectl auth can-i --list` block of README.md, the operator's privileges in the driver
  namespace as the RBAC-enforcing local API server answers with the kustomize base applied;
- tests/support/chart-rbac.yaml, the ServiceAccount and RBAC objects of `helm template`, which
  the controller, runtime and e2e tests install before running the operator as that ServiceAccount.

The suite and `make crds-check` (`regenerate.py --check`) fail when any of them is stale. `make crds`
runs this script; after changing the chart's values, Deployment or RBAC, run:
  .venv/bin/python tests/manifests/regenerate.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import chart_readme
import tempfile

import yaml

from support import (
    CHART,
    CHART_CRD_TEMPLATE,
    CRD_FILE,
    DEPLOY,
    REPO,
    _strict,
    crd,
    kubectl,
    kustomize,
    load_docs,
    local_apiserver,
    render_chart,
)

README = REPO / "README.md"
OPERATOR_USER = "system:serviceaccount:hardened-csi-operator:hardened-csi-operator"

# ---------------------------------------------------------------- values.schema.json



def obj(props, required=None, extra=False, **kw):
    d = {"type": "object", "additionalProperties": extra, "properties": props}
    if required:
        d["required"] = required
    d.update(kw)
    return d


def s(**kw):
    return {"type": "string", **kw}


strmap = {"type": "object", "additionalProperties": {"type": "string"}}
k8sname = s(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", maxLength=253)
dns1123label = s(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", maxLength=63)
duration = s(pattern=r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")
quantity = {"type": ["string", "integer", "number"], "pattern": r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"}
resmap = {"type": "object", "additionalProperties": False, "patternProperties": {"^(cpu|memory|ephemeral-storage|hugepages-.+)$": quantity}}
port = {"type": "integer", "minimum": 1, "maximum": 65535}
schema = {
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "hardened-csi-operator chart values",
  "type": "object",
  "additionalProperties": False,
  "properties": {
    "global": {"type": "object", "description": "Helm's global values, passed through to subcharts (none here)."},
    "crds": obj({
        "install": {"type": "boolean", "description": "Install and upgrade the CRD with the release."},
        "keep": {"type": "boolean", "description": "Keep the CRD on helm uninstall."},
      }, required=["install", "keep"]),
    "image": obj({
        "repository": s(minLength=1, pattern=r"^[a-z0-9]+([._:/-][a-z0-9]+)*$", description="Image repository, without tag or digest."),
        "tag": s(pattern=r"^([\w][\w.-]{0,127})?$", description="Image tag; empty: the chart's appVersion."),
        "digest": s(pattern=r"^(sha256:[a-f0-9]{64})?$", description="sha256:<64 lowercase hex>, or empty."),
        "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
      }, required=["repository", "pullPolicy"]),
    "imagePullSecrets": {"type": "array", "items": k8sname, "description": "Secret names, as plain strings."},
    "nameOverride": s(maxLength=63),
    "fullnameOverride": s(maxLength=63),
    "replicaCount": {"type": "integer", "minimum": 1, "maximum": 5},
    "leaderElection": obj({
        "enabled": {"type": "boolean"},
        "leaseName": {"anyOf": [{"const": ""}, k8sname]},
        "leaseDuration": s(pattern=r"^([0-9]+s)?$", description="Whole seconds like 15s, or empty."),
        "renewDeadline": s(pattern=r"^([0-9]+s)?$", description="Whole seconds like 10s, or empty."),
        "retryPeriod": s(pattern=r"^([0-9]+s)?$", description="Whole seconds like 2s, or empty."),
      }, required=["enabled"]),
    "logFormat": {"enum": ["json", "text"]},
    "logLevel": s(minLength=1, pattern=r"^[A-Za-z0-9_:=,.-]+$", description="RUST_LOG syntax, e.g. info or info,hardened_csi_operator=debug."),
    "aws": obj({
        "region": s(pattern=r"^([a-z]{2}(-[a-z]+)+-[0-9])?$", description="An AWS region such as us-east-1, or empty."),
        "endpointUrl": s(pattern=r"^(https?://.+)?$", description="http(s) URL, or empty."),
        "caBundleConfigMaps": {"type": "array", "items": k8sname, "uniqueItems": True,
                               "description": "ConfigMap names in driverNamespace (spec.aws.caBundle.name)."},
      }),
    "serviceAccount": obj({
        "create": {"type": "boolean"},
        "name": {"anyOf": [{"const": ""}, k8sname]},
        "irsaRoleArn": s(pattern=r"^(arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+)?$", description="arn:aws:iam::<12-digit account>:role/<name>, or empty."),
        "annotations": strmap,
      }, required=["create"]),
    "rbac": obj({"create": {"type": "boolean"}}, required=["create"]),
    "driverNamespace": dns1123label,
    "allowedRegistries": {"type": "array", "minItems": 1, "uniqueItems": True, "items": s(
        pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9._-]+)*$",
        description="A registry host with an optional port and path, such as dhi.io or registry.example.com/dhi.")},
    "admissionPolicy": obj({"enabled": {"type": "boolean"}}, required=["enabled"]),
    "snapshotController": obj({
        "rbac": obj({"create": {"type": "boolean"}}, required=["create"]),
      }, required=["rbac"]),
    "pullSecretCheck": obj({
        "enabled": {"type": "boolean"},
        "secretNames": {"type": "array", "items": k8sname, "uniqueItems": True},
      }, required=["enabled"]),
    "extraArgs": {"type": "array", "items": {"allOf": [
        s(pattern=r"^--[a-z0-9-]+(=.*)?$", description="A flag of `hardened-csi-operator run`."),
        {"not": {"pattern": r"^--(metrics-addr|log-format|log-level|leader-election|lease-namespace|lease-name|lease-duration|renew-deadline|retry-period|aws-region|aws-endpoint-url|driver-namespace|allowed-registry)(=|$)"},
         "description": "Flags the chart sets from values cannot be repeated here: set the value instead."},
      ]}},
    "extraEnv": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {"name": s(minLength=1)}}},
    "resources": obj({"requests": resmap, "limits": resmap, "claims": {"type": "array"}}),
    "podLabels": strmap,
    "podAnnotations": strmap,
    "nodeSelector": strmap,
    "tolerations": {"type": "array", "items": {"type": "object"}},
    "affinity": {"type": "object"},
    "topologySpreadConstraints": {"type": "array", "items": {"type": "object"}},
    "priorityClassName": {"anyOf": [{"const": ""}, k8sname]},
    "podDisruptionBudget": obj({
        "enabled": {"type": "boolean"},
        "maxUnavailable": {"type": "integer", "minimum": 1, "description": "At least 1: 0 would block every node drain."},
      }, required=["enabled", "maxUnavailable"]),
    "metrics": obj({
        "port": {"type": "integer", "minimum": 1024, "maximum": 65535, "description": "Unprivileged port (the operator runs as UID 65532)."},
        "service": obj({"enabled": {"type": "boolean"}, "port": port}),
        "serviceMonitor": obj({"enabled": {"type": "boolean"}, "interval": duration, "scrapeTimeout": duration, "labels": strmap}),
        "prometheusRule": obj({
            "enabled": {"type": "boolean"},
            "labels": strmap,
            "notReadyFor": s(pattern=r"^([0-9]+(s|m|h))+$", description="A duration like 15m."),
            "nodeUnavailableFor": s(pattern=r"^([0-9]+(s|m|h))+$", description="A duration like 10m."),
          }),
        "grafanaDashboard": obj({"enabled": {"type": "boolean"}, "labels": strmap}),
      }, required=["port"]),
    "networkPolicy": obj({"enabled": {"type": "boolean"}, "metricsFrom": {"type": "array", "items": {"type": "object"}}}),
    "tests": obj({
        "enabled": {"type": "boolean"},
        "driverName": {"anyOf": [{"const": ""}, k8sname]},
        "timeout": s(pattern=r"^([0-9]+(s|m|h))+$", description="A duration like 120s or 5m."),
        "curlImage": obj({
            "repository": s(minLength=1, pattern=r"^[a-z0-9]+([._:/-][a-z0-9]+)*$"),
            "tag": s(minLength=1, pattern=r"^[\w][\w.-]{0,127}$"),
            "digest": s(pattern=r"^(sha256:[a-f0-9]{64})?$", description="sha256:<64 lowercase hex>, or empty."),
          }, required=["repository", "tag"]),
        "kubectlImage": obj({
            "repository": s(minLength=1, pattern=r"^[a-z0-9]+([._:/-][a-z0-9]+)*$"),
            "tag": s(minLength=1, pattern=r"^[\w][\w.-]{0,127}$"),
            "digest": s(pattern=r"^(sha256:[a-f0-9]{64})?$", description="sha256:<64 lowercase hex>, or empty."),
          }, required=["repository", "tag"]),
        "imagePullSecrets": {"type": "array", "items": k8sname, "description": "Secret names, as plain strings."},
        "resources": obj({"requests": resmap, "limits": resmap}),
      }, required=["enabled"]),
    "driver": obj({
        "enabled": {"type": "boolean"},
        "name": k8sname,
        "spec": {"type": "object"},  # replaced by the CRD's spec schema in values_schema()
      }, required=["enabled", "name"]),
  },
  "allOf": [
    {"if": {"properties": {"replicaCount": {"minimum": 2}}, "required": ["replicaCount"]},
     "then": {"properties": {"leaderElection": {"properties": {"enabled": {"const": True}}}}},
     "description": "More than one replica needs leader election."},
    {"if": {"properties": {"serviceAccount": {"properties": {"create": {"const": False}}}}},
     "then": {"properties": {"serviceAccount": {"properties": {"name": k8sname}}}},
     "description": "An existing ServiceAccount must be named."},
  ],
}


def values_schema() -> str:
    (v1alpha1,) = [v for v in crd()["spec"]["versions"] if v["name"] == "v1alpha1"]
    out = json.loads(json.dumps(schema))
    out["properties"]["driver"]["properties"]["spec"] = _strict(v1alpha1["schema"]["openAPIV3Schema"]["properties"]["spec"])
    return json.dumps(out, indent=2) + "\n"


# ---------------------------------------------------------------- kustomize copies

HELM_ONLY_LABELS = re.compile(r"app\.kubernetes\.io/(version|part-of|managed-by)|helm\.sh/chart")
FILES = (
    "clusterrole.yaml", "deployment.yaml", "role-driver.yaml", "role-pull-secrets.yaml", "role-ca-bundles.yaml",
    "driver-rbac.yaml",
)


# ---------------------------------------------------------------- the chart's CRD template

CHART_CRD_HEADER = """\
{{- /*
The HardenedCsiDriver CRD as a template, so `helm upgrade` updates it (Helm never upgrades crds/).
Generated from crds/hardenedcsidrivers.csi.hardened.dev.yaml by `make crds`
(tests/manifests/regenerate.py): do not edit.
*/ -}}
{{- if .Values.crds.install }}
"""
CHART_CRD_METADATA = """\
metadata:
  name: hardenedcsidrivers.csi.hardened.dev
  labels:
    app.kubernetes.io/name: {{ include "hco.name" . }}
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
    app.kubernetes.io/component: crd
    app.kubernetes.io/part-of: hardened-csi-operator
    app.kubernetes.io/managed-by: {{ .Release.Service }}
    helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
  {{- if .Values.crds.keep }}
  annotations:
    # helm uninstall leaves the CRD: deleting it would delete every HardenedCsiDriver with it.
    helm.sh/resource-policy: keep
  {{- end }}
"""


def chart_crd_template(text: str | None = None) -> str:
    """crds/'s CRD (or the CRD text given) with Helm's labels and the keep policy in its metadata,
    inside `crds.install`. Template delimiters in the CRD's text (descriptions, CEL rules) are
    escaped."""
    text = CRD_FILE.read_text() if text is None else text
    head = "metadata:\n  name: hardenedcsidrivers.csi.hardened.dev\n"
    if text.count(head) != 1 or not text.startswith("apiVersion: apiextensions.k8s.io/v1\n"):
        raise SystemExit(f"{CRD_FILE}: unexpected layout (metadata is not `name:` only); update regenerate.py")
    text = text.replace("{{", '{{ "{{" }}')
    return CHART_CRD_HEADER + text.replace(head, CHART_CRD_METADATA).rstrip("\n") + "\n{{- end }}\n"


# ---------------------------------------------------------------- main


def source_outputs() -> dict[Path, str]:
    """The files derived from the CRD and the schema description above: the chart reads them."""
    return {
        CHART_CRD_TEMPLATE: chart_crd_template(),
        CHART / "values.schema.json": values_schema(),
        chart_readme.README: chart_readme.chart_readme(),
    }


def rendered_outputs() -> dict[Path, str]:
    """The kustomize copies, rendered from the chart as it is on disk."""
    out = {}
    rendered = render_chart({}, release="hardened-csi-operator")
    for name in FILES:
        text = rendered[f"hardened-csi-operator/templates/{name}"].lstrip("\n")
        lines = [line for line in text.split("\n") if not HELM_ONLY_LABELS.search(line)]
        text = "\n".join(lines).replace(
            "`hardened-csi-operator operator-rbac`", "`hardened-csi-operator operator-rbac`, like the chart's"
        )
        out[DEPLOY / "operator" / name] = text.rstrip() + "\n"
    # The snapshot-controller's RBAC as a kustomize component (deploy/snapshot-controller/), rendered
    # with the value that turns it on.
    name = "snapshot-controller-rbac.yaml"
    text = render_chart({"snapshotController": {"rbac": {"create": True}}}, release="hardened-csi-operator")[
        f"hardened-csi-operator/templates/{name}"
    ].lstrip("\n")
    lines = [line for line in text.split("\n") if not HELM_ONLY_LABELS.search(line)]
    text = "\n".join(lines).replace(
        "`hardened-csi-operator operator-rbac`", "`hardened-csi-operator operator-rbac`, like the chart's"
    )
    out[DEPLOY / "snapshot-controller" / name] = text.rstrip() + "\n"
    out[HARNESS_RBAC] = harness_rbac()
    return out


# ---------------------------------------------------------------- the controller tests' RBAC

HARNESS_RBAC = REPO / "tests" / "support" / "chart-rbac.yaml"
HARNESS_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
# The pull Secrets the controller tests create (tests/controller/support.rs PULL_SECRETS), the
# CA-bundle ConfigMap they name (tests/controller/support.rs CA_BUNDLE), and the
# snapshot-controller's RBAC (tests/controller/snapshots.rs runs it).
HARNESS_VALUES = {"pullSecretCheck": {"secretNames": ["dhi-login", "dhi-pull"]},
                  "aws": {"caBundleConfigMaps": ["aws-ca-bundle"]},
                  "snapshotController": {"rbac": {"create": True}}}


def harness_rbac() -> str:
    """The operator's ServiceAccount and every RBAC object of `helm template` (release and
    namespace `hardened-csi-operator`, the controller tests' pull Secret names): what the
    controller, runtime and e2e tests install, as the cluster admin, before running the operator as that
    ServiceAccount."""
    rendered = render_chart(HARNESS_VALUES, release="hardened-csi-operator")
    docs = []
    for path in sorted(rendered):
        for text in re.split(r"^---\n", rendered[path], flags=re.M):
            body = "\n".join(line for line in text.split("\n") if not line.startswith("#")).strip()
            kind = re.search(r"^kind: (\S+)$", body, flags=re.M)
            if body and kind and kind.group(1) in HARNESS_KINDS:
                docs.append(f"# Source: {path}\n{body}\n")
    head = (
        "# Generated by `make crds` (tests/manifests/regenerate.py): do not edit. `helm template` of the\n"
        f"# chart with {json.dumps(HARNESS_VALUES)}, its ServiceAccount and RBAC\n"
        "# objects only. The controller, runtime and e2e tests run the operator as this ServiceAccount\n"
        "# with exactly these objects.\n"
    )
    return head + "---\n".join(docs)


# ---------------------------------------------------------------- README: the operator's can-i

CAN_I_BEGIN = "<!-- can-i: written by `make crds` (tests/manifests/regenerate.py) from the local API server -->\n"
CAN_I_END = "<!-- end can-i -->\n"
RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def can_i(namespace: str = "kube-system") -> str:
    """`kubectl auth can-i --list` as the operator's ServiceAccount in `namespace`, against the
    RBAC-enforcing local API server with the kustomize base's ServiceAccount and RBAC applied."""
    docs = [d for d in load_docs(kustomize(str(DEPLOY))) if d["kind"] in RBAC_KINDS]
    with tempfile.TemporaryDirectory() as tmp, local_apiserver(Path(tmp), rbac=True) as kc:
        kubectl(kc, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))
        out = kubectl(kc, "auth", "can-i", "--list", f"--as={OPERATOR_USER}", "-n", namespace).stdout
    return "\n".join(line.rstrip() for line in out.strip().split("\n")) + "\n"


def readme_with_can_i() -> str:
    text = README.read_text()
    if text.count(CAN_I_BEGIN) != 1 or text.count(CAN_I_END) != 1:
        raise SystemExit(f"README.md: expected one {CAN_I_BEGIN.strip()} ... {CAN_I_END.strip()} block")
    head, rest = text.split(CAN_I_BEGIN)
    _, tail = rest.split(CAN_I_END)
    return head + CAN_I_BEGIN + "```\n" + can_i() + "```\n" + CAN_I_END + tail


def cluster_outputs() -> dict[Path, str]:
    """What the local API server says about the rendered files (needs `make build`)."""
    return {README: readme_with_can_i()}


def main(argv: list[str]) -> int:
    """Writes the derived files; with --check, writes nothing and fails when one is stale."""
    check = argv == ["--check"]
    if argv and not check:
        print(f"usage: regenerate.py [--check]; got {argv}", file=sys.stderr)
        return 2
    stale = []

    def handle(outputs: dict[Path, str]) -> None:
        for path, text in outputs.items():
            rel = path.relative_to(REPO)
            if check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(rel))
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                print(f"wrote {rel}")

    handle(source_outputs())
    # A stale schema or CRD template may not even render: report those first.
    if not stale:
        handle(rendered_outputs())
    if not stale:
        handle(cluster_outputs())
    if stale:
        print(f"stale: {', '.join(stale)}: run `make crds` (or .venv/bin/python tests/manifests/regenerate.py)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
