"""Rewrites the kustomize base's copies of chart output (deploy/operator/clusterrole.yaml,
deployment.yaml, role-pull-secrets.yaml) from `helm template` of the chart with the release
`hardened-csi-operator` in the namespace of the same name, minus Helm's labels.

test_kustomize.py and test_rbac.py fail when these files drift from the chart; after changing
the chart's Deployment or RBAC run:  .venv/bin/python tests/manifests/regenerate_kustomize.py
"""

from __future__ import annotations

import re
import sys

from support import DEPLOY, render_chart

HELM_ONLY_LABELS = re.compile(r"app\.kubernetes\.io/(version|part-of|managed-by)|helm\.sh/chart")
FILES = ("clusterrole.yaml", "deployment.yaml", "role-pull-secrets.yaml")


def main() -> int:
    rendered = render_chart({}, release="hardened-csi-operator")
    for name in FILES:
        text = rendered[f"hardened-csi-operator/templates/{name}"].lstrip("\n")
        lines = [line for line in text.split("\n") if not HELM_ONLY_LABELS.search(line)]
        text = "\n".join(lines).replace(
            "`hardened-csi-operator operator-rbac`", "`hardened-csi-operator operator-rbac`, like the chart's"
        )
        (DEPLOY / "operator" / name).write_text(text.rstrip() + "\n")
        print(f"wrote deploy/operator/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
