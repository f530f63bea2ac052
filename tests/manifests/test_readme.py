"""The README starts with the two commands that work on a fresh machine, and every file it links
or names under deploy/, charts/ or crds/ exists."""

from __future__ import annotations

import re

import yaml

from support import REPO

README = (REPO / "README.md").read_text()


def test_readme_starts_with_demo_and_test():
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block and README.index("```sh") < README.index("\n## "), "the commands come before any section"
    commands = [l.split("#")[0].strip() for l in first_block.group(1).splitlines() if l.strip()]
    assert commands == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    for target in ("demo", "test"):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no {target} target"


def test_readme_links_and_paths_exist():
    links = re.findall(r"\]\(((?!https?://|#)[^)]+)\)", README)
    # Repository paths: a file name with an extension, or a directory with a trailing slash
    # (`deploy/hardened-csi-operator` in a kubectl command is an object, not a path).
    paths = re.findall(r"(?<![\w/.-])((?:deploy|charts|crds)/[\w./-]*(?:\.[a-z]+|/))", README)
    missing = sorted({p.rstrip("/.") for p in links + paths if not (REPO / p.rstrip("/.")).exists()})
    assert links and not missing, missing


def test_readme_has_the_benchmarks_pointer():
    assert "## Benchmarks" in README and "make bench" in README.split("## Benchmarks", 1)[1]


def _cli_invocations(text: str):
    """`hardened-csi-operator <subcommand> --flags...` as written in docs (line continuations
    joined; shell words only)."""
    text = text.replace("\\\n", " ")
    for m in re.finditer(r"(?<![\w/-])hardened-csi-operator (crd|render|operator-rbac|run|doctor)\b([^`\n]*)", text):
        yield m.group(1), re.findall(r"(?<!\S)(--[a-z][a-z0-9-]*)", m.group(2))


def test_documented_commands_and_flags_exist():
    """Every `hardened-csi-operator SUBCOMMAND --flag` in the README and the chart's NOTES is
    accepted by the binary (its --help lists the flag)."""
    from support import CHART, run_bin

    docs = README + (CHART / "templates" / "NOTES.txt").read_text()
    used: dict[str, set[str]] = {}
    for sub, flags in _cli_invocations(docs):
        used.setdefault(sub, set()).update(flags)
    assert {"render", "doctor"} <= set(used)
    for sub, flags in sorted(used.items()):
        help_text = run_bin(sub, "--help").stdout
        missing = sorted(f for f in flags if not re.search(rf"(^|\s){re.escape(f)}([\s=,<]|$)", help_text, re.M))
        assert not missing, f"`{sub}` has no {missing}:\n{help_text}"


def _value_paths(values: dict) -> list[str]:
    """The upstream chart's values as the migration table names them: `key`, `key.child`, and
    `sidecars.<sidecar>.field`."""
    out = []
    for key, value in values.items():
        if not isinstance(value, dict) or not value:
            out.append(key)
            continue
        for child, v in value.items():
            if key == "sidecars" and isinstance(v, dict):
                out.extend(f"sidecars.{child}.{field}" for field in v)
            else:
                out.append(f"{key}.{child}")
    return out


def _table_names() -> list[list[str]]:
    """The first column's names of the migration table, bare names completed with the prefix of
    the name before them (`controller.affinity`, `nodeSelector` is `controller.nodeSelector`)."""
    section = README.split("### From the upstream Helm chart", 1)[1].split("\n## ", 1)[0]
    rows = [l for l in section.splitlines() if l.startswith("| `")]
    names = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 2 and cells[1], f"a row without its HardenedCsiDriver side: {row}"
        prefix = ""
        for token in re.findall(r"`([^`]+)`", cells[0]):
            token = token.replace("[]", "").split(" ")[0]
            if "." in token:
                prefix = token.rsplit(".", 1)[0]
            elif prefix:
                token = f"{prefix}.{token}"
            names.append(token.split("."))
    return names


def _covers(name: list[str], path: list[str]) -> bool:
    for i, segment in enumerate(path):
        if i >= len(name):
            return False
        if name[i] == "*":
            return True
        if name[i] != "<name>" and name[i] != segment:
            return False
    return True  # the same path, or a name of one of its fields


def test_migration_table_maps_every_upstream_chart_value():
    """The README's migration table names every value of the upstream chart's values.yaml, with
    its field or why it is not supported."""
    chart = REPO.parent / "shared" / "reference" / "upstream-ebs-csi" / "chart" / "aws-ebs-csi-driver"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    names = _table_names()
    missing = [p for p in _value_paths(values) if not any(_covers(n, p.split(".")) for n in names)]
    assert len(_value_paths(values)) > 150 and not missing, missing
