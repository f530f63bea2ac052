"""The README starts with the two commands that work on a fresh machine, and every file it links
or names under deploy/, charts/ or crds/ exists."""

from __future__ import annotations

import re

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
