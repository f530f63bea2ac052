"""Writes charts/hardened-csi-operator/README.md from Chart.yaml and the comments in values.yaml,
so the values reference has one source (the comments above each key, helm-docs' `# --` marker
optional). `make crds` and regenerate.py write it; the suite and `make crds-check` fail when it is
stale. Run alone: .venv/bin/python tests/manifests/chart_readme.py [--check]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "hardened-csi-operator"
README = CHART / "README.md"

KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")


def documented_keys(text: str) -> list[tuple[str, str]]:
    """(dotted key, description) for every key of values.yaml, in file order. A key's
    description is the comment block right above it (no blank line between), `# -- ` stripped.
    List items are not keys: a list is documented as one value."""
    out: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            comment = []
            continue
        if stripped.startswith("#"):
            body = stripped[1:].strip()
            comment.append(body[3:] if body.startswith("-- ") else body)
            continue
        indent = len(line) - len(line.lstrip(" "))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stripped.startswith("- "):
            # A list item: whatever is inside it belongs to the list's value.
            stack.append((indent, "[list]"))
            comment = []
            continue
        m = KEY.match(line)
        if not m or any(s[1] == "[list]" for s in stack):
            comment = []
            continue
        path = ".".join([s[1] for s in stack] + [m.group("key")])
        out.append((path, " ".join(comment)))
        stack.append((indent, m.group("key")))
        comment = []
    return out


def _lookup(values: dict, path: str) -> Any:
    node: Any = values
    for part in path.split("."):
        node = node[part]
    return node


def _type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def values_table(values_text: str) -> str:
    values = yaml.safe_load(values_text)
    rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    keys = documented_keys(values_text)
    parents = {k.rsplit(".", 1)[0] for k, _ in keys if "." in k}
    for key, description in keys:
        value = _lookup(values, key)
        # A mapping whose keys have their own rows is shown through them, unless documented.
        if isinstance(value, dict) and value and key in parents and not description:
            continue
        default = "" if isinstance(value, dict) and value and key in parents else f"`{json.dumps(value)}`"
        rows.append(f"| `{key}` | {_type(value)} | {_cell(default)} | {_cell(description)} |")
    return "\n".join(rows)


def chart_readme() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values_text = (CHART / "values.yaml").read_text()
    name, version, app = chart["name"], chart["version"], chart["appVersion"]
    return f"""<!-- Generated from Chart.yaml and values.yaml by tests/manifests/chart_readme.py: do not edit. -->
# {name}

{" ".join(chart["description"].split())}

Chart version `{version}`, operator version `{app}`, Kubernetes `{chart["kubeVersion"]}`. The
project's [README]({chart["home"]}#readme) explains the operator, IAM, the dhi.io pull secret and
migration from the EKS add-on or the upstream chart.

## Install

```sh
helm install {name} oci://ghcr.io/hardened-csi/charts/{name} \\
  --version {version} --namespace {name} --create-namespace
```

The chart installs the HardenedCsiDriver CRD as a template (`crds.install`), so `helm upgrade`
updates it; `helm uninstall` keeps it (`crds.keep`), because deleting it would delete every
HardenedCsiDriver. A release from a chart that shipped the CRD in `crds/` (0.1.0 as first
published) adopts the CRD once before its first upgrade:

```sh
kubectl label crd hardenedcsidrivers.csi.hardened.dev app.kubernetes.io/managed-by=Helm
kubectl annotate crd hardenedcsidrivers.csi.hardened.dev \\
  meta.helm.sh/release-name={name} meta.helm.sh/release-namespace={name}
```

A HardenedCsiDriver from `driver:` needs its CRD served before the release creates it: on a new
cluster install with `driver.enabled=false`, then upgrade with `driver.enabled=true`.

## Test a release

```sh
helm test {name} --namespace {name}
```

The test pod (restricted: non-root, read-only root filesystem, no capabilities, RuntimeDefault
seccomp) runs `dhi.io/curl` against the operator's `/readyz` through the metrics Service and
`dhi.io/kubectl wait --for=condition=Ready` on the HardenedCsiDriver (`tests.driverName`, default
`driver.name`). Its ServiceAccount may only get, list and watch that one HardenedCsiDriver and
exists only while the test runs. It pulls from dhi.io with `tests.imagePullSecrets`, which must
exist in the release namespace.

## Values

Every value is checked by `values.schema.json`: an unknown key or a wrong type fails the install.

{values_table(values_text)}
"""


def main(argv: list[str]) -> int:
    text = chart_readme()
    if argv == ["--check"]:
        if not README.exists() or README.read_text() != text:
            print(f"{README} is stale: run .venv/bin/python tests/manifests/chart_readme.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(text)
    print(f"wrote {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
