"""The Dockerfile's promises, beyond checkov: hardened builder and DHI static runtime, numeric
non-root user, exec-form entrypoint running the operator."""

from __future__ import annotations

import json

from support import REPO

LINES = [l.strip() for l in (REPO / "Dockerfile").read_text().splitlines() if l.strip() and not l.startswith("#")]


def _instr(name):
    return [l.split(None, 1)[1] for l in LINES if l.split(None, 1)[0].upper() == name]


def test_multi_stage_from_hardened_images():
    froms = _instr("FROM")
    assert len(froms) == 2
    assert froms[0].startswith("dhi.io/rust:") and "-dev" in froms[0] and froms[0].endswith(" AS build")
    assert froms[1].startswith("dhi.io/static:") and not froms[1].endswith(":latest")


def test_numeric_non_root_user_and_exec_form_entrypoint():
    (user,) = _instr("USER")
    uid, _, gid = user.partition(":")
    assert uid == "65532" and gid == "65532"
    (entry,) = _instr("ENTRYPOINT")
    assert json.loads(entry) == ["/usr/local/bin/hardened-csi-operator"]
    (cmd,) = _instr("CMD")
    assert json.loads(cmd) == ["run"]


def test_runtime_stage_only_copies_the_binary():
    runtime = LINES[LINES.index(next(l for l in LINES if l.startswith("FROM dhi.io/static"))) :]
    assert not [l for l in runtime if l.split()[0].upper() == "RUN"], "the runtime image has no shell"
    copies = [l for l in runtime if l.startswith("COPY")]
    assert copies == ["COPY --from=build /out/hardened-csi-operator /usr/local/bin/hardened-csi-operator"]
