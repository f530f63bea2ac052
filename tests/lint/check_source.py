#!/usr/bin/env python3
"""Source gates of `make lint` that rustfmt and clippy do not cover.

1. Layers: a module imports only from layers below it, in this order (top first):
   commands -> reconciler -> runtime -> aws -> render -> crd.
   (The reconciler uses the runtime's services; the runtime never reaches into the reconciler.)
2. No line of Rust source is longer than 120 characters (rustfmt cannot break strings or comments).

Exit 1 with one line per violation, `path:line: what`.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAYERS = ["crd", "render", "aws", "runtime", "reconciler", "commands"]
MAX_WIDTH = 120
CRATE_PATH = re.compile(r"\bcrate::([a-z_]+)")
COMMENT = re.compile(r"//.*$")


def layer_violations():
    for path in sorted((ROOT / "src").rglob("*.rs")):
        rel = path.relative_to(ROOT / "src")
        if len(rel.parts) < 2:
            continue  # lib.rs and main.rs sit above every layer
        own = rel.parts[0]
        if own not in LAYERS:
            yield f"src/{rel}: module folder {own!r} is not one of the layers {LAYERS}"
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = COMMENT.sub("", line)
            for used in CRATE_PATH.findall(code):
                if used in LAYERS and LAYERS.index(used) > LAYERS.index(own):
                    yield f"src/{rel}:{number}: layer {own!r} imports the higher layer {used!r}"


def width_violations():
    files = [p for p in ROOT.rglob("*.rs") if "target" not in p.relative_to(ROOT).parts[:1]]
    for path in sorted(files):
        rel = path.relative_to(ROOT)
        if rel.parts[0].startswith("."):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if len(line) > MAX_WIDTH:
                yield f"{rel}:{number}: {len(line)} characters (at most {MAX_WIDTH})"


def main():
    problems = list(layer_violations()) + list(width_violations())
    for p in problems:
        print(p)
    if problems:
        print(f"check_source: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("check_source: layers one-way, no line over 120 characters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
