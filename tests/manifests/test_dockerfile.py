"""The Dockerfile's promises, beyond checkov (there is no Docker engine here, so these are read from
the file, and its shell guards are run): base images from Docker Hardened Images and pinned by
digest (an unpinned build cannot happen), a builder on the build platform that cross-compiles per
TARGETARCH for musl, `cargo auditable`, OCI labels from build arguments, a numeric non-root user
and an exec-form entrypoint; and the README's release command builds what a release needs."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

import pytest
import yaml

from support import CHART, README_FILE, REPO

DOCKERFILE = REPO / "Dockerfile"
PIN_SCRIPT = REPO / "hack" / "pin-base-images.sh"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            word, _, rest = pending.partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


INSTR = _instructions()


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for name, args in INSTR:
        if name == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((name, args))
    return stages


def _global_args() -> dict[str, str]:
    """ARGs before the first FROM, with their defaults."""
    out = {}
    for name, args in INSTR:
        if name == "FROM":
            break
        if name == "ARG":
            key, _, default = args.partition("=")
            out[key] = default
    return out


def _expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


def _from(stage) -> tuple[list[str], str, str | None]:
    """A stage's FROM: its flags, the image reference, and the stage name."""
    words = stage[0][1].split()
    flags = [w for w in words if w.startswith("--")]
    rest = [w for w in words if not w.startswith("--")]
    name = rest[2] if len(rest) == 3 and rest[1].upper() == "AS" else None
    return flags, rest[0], name


def _runs(stage) -> list[str]:
    return [args for name, args in stage if name == "RUN"]


def test_two_stages_from_docker_hardened_images():
    build, runtime = _stages()
    assert _from(build)[2] == "build"
    assert _from(build)[1].startswith("dhi.io/rust:") and "-dev@" in _from(build)[1]
    assert _from(runtime)[1].startswith("dhi.io/static:")


def test_every_base_image_is_pinned_by_digest():
    """Every FROM is image:tag@${NAME_DIGEST}, and NAME_DIGEST is either a sha256 digest or empty:
    empty leaves `image:tag@`, an invalid reference, so a build can never fall back to whatever
    the tag means today. hack/pin-base-images.sh fills the digests from the registry."""
    args = _global_args()
    for stage in _stages():
        ref = _from(stage)[1]
        m = re.fullmatch(r"(dhi\.io/[a-z0-9-]+):([\w.-]+)@\$\{(\w+_DIGEST)\}", ref)
        assert m, f"FROM {ref}: not dhi.io/<image>:<tag>@${{<NAME>_DIGEST}}"
        assert m.group(2) != "latest", ref
        assert m.group(3) in args, f"{m.group(3)} is not an ARG before the first FROM"
        digest = args[m.group(3)]
        assert digest == "" or DIGEST.match(digest), f"{m.group(3)}={digest!r} is not sha256:<64 hex>"


def test_pin_script_resolves_the_index_digest_for_both_platforms():
    script = PIN_SCRIPT.read_text()
    assert "docker buildx imagetools inspect" in script and "{{.Manifest.Digest}}" in script
    assert "linux/amd64" in script and "linux/arm64" in script
    assert PIN_SCRIPT.stat().st_mode & 0o111, "hack/pin-base-images.sh must be executable"


def test_builder_runs_on_the_build_platform_and_cross_compiles_for_musl():
    build, runtime = _stages()
    assert "--platform=$BUILDPLATFORM" in _from(build)[0], "the builder must not run under emulation"
    assert not _from(runtime)[0], "the runtime stage is the target platform's image"
    assert ("ARG", "TARGETARCH") in build
    arch = next(r for r in _runs(build) if "TARGETARCH" in r)
    assert re.search(r"amd64\) echo x86_64-unknown-linux-musl", arch)
    assert re.search(r"arm64\) echo aarch64-unknown-linux-musl", arch)
    assert re.search(r"\*\) echo .*not supported.*exit 1", arch), "another TARGETARCH must fail by name"
    assert 'rustup target add "$(cat /rust-target)"' in arch
    (compile_,) = [r for r in _runs(build) if "cargo auditable" in r]
    assert 'zigbuild --release --locked --target "${target}"' in compile_
    assert "target/${target}/release/hardened-csi-operator" in compile_


def test_binary_is_built_with_cargo_auditable_from_pinned_tools():
    build = _stages()[0]
    (compile_,) = [r for r in _runs(build) if "cargo auditable" in r]
    assert "cargo auditable zigbuild" in compile_ and "--locked" in compile_
    (install,) = [r for r in _runs(build) if "cargo install" in r]
    assert "--locked" in install
    versions = dict(a.split("=", 1) for n, a in build if n == "ARG" and a.startswith("CARGO_"))
    assert set(versions) == {"CARGO_AUDITABLE_VERSION", "CARGO_ZIGBUILD_VERSION"}
    for key, version in versions.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), (key, version)
    assert '"cargo-auditable@${CARGO_AUDITABLE_VERSION}"' in install
    assert '"cargo-zigbuild@${CARGO_ZIGBUILD_VERSION}"' in install


def _makefile_var(name: str) -> str:
    (value,) = re.findall(rf"^{name} :?= (.*)$", (REPO / "Makefile").read_text(), re.M)
    return value.strip()


def test_image_is_linked_as_make_image_binary_links_the_measured_binary():
    """The benchmark measures `make image-binary`'s binary; the image must be that build: the same
    rustflags (static, rust-lld as the linker, so build.rs adds packed relative relocations) and the same cargo-zigbuild."""
    build = _stages()[0]
    (compile_,) = [r for r in _runs(build) if "cargo auditable" in r]
    assert f'RUSTFLAGS="{_makefile_var("IMAGE_RUSTFLAGS")}"' in compile_
    assert '_LINKER=rust-lld"' in compile_ and "tr a-z- A-Z_" in compile_
    assert "the Rust toolchain has no rust-lld" in compile_, "a toolchain without rust-lld must fail by name"
    versions = dict(a.split("=", 1) for n, a in build if n == "ARG" and "=" in a)
    assert versions["CARGO_ZIGBUILD_VERSION"] == _makefile_var("CARGO_ZIGBUILD_VERSION")


def test_image_carries_oci_labels_from_build_arguments():
    runtime = _stages()[1]
    (label,) = [a for n, a in runtime if n == "LABEL"]
    labels = dict(re.findall(r'([\w.]+)="([^"]*)"', label))
    cargo = tomllib.loads((REPO / "Cargo.toml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert labels["org.opencontainers.image.source"] == chart["sources"][0]
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
    assert labels["org.opencontainers.image.licenses"] == cargo["workspace"]["package"]["license"]
    assert labels["org.opencontainers.image.base.name"] == _from(runtime)[1].split("@")[0]
    assert labels["org.opencontainers.image.base.digest"] == "${RUNTIME_DIGEST}"
    for arg in ("VERSION", "REVISION", "RUNTIME_DIGEST"):
        assert ("ARG", arg) in runtime, f"the runtime stage must declare ARG {arg} to use it in LABEL"


def _guard() -> str:
    (guard,) = [r for r in _runs(_stages()[0]) if "REVISION" in r and "Cargo.toml" in r]
    return guard


@pytest.mark.parametrize(
    "version, revision, error",
    [
        ("{cargo}", "0123456789abcdef0123456789abcdef01234567", None),
        ("", "0123456789abcdef0123456789abcdef01234567", "--build-arg VERSION=<Cargo.toml version> is required"),
        ("9.9.9", "0123456789abcdef0123456789abcdef01234567", "VERSION=9.9.9 is not the version in Cargo.toml"),
        ("{cargo}", "", "--build-arg REVISION=<40-hex git commit> is required"),
        ("{cargo}", "main", "--build-arg REVISION=<40-hex git commit> is required"),
    ],
    ids=["ok", "no-version", "wrong-version", "no-revision", "revision-not-a-commit"],
)
def test_build_refuses_labels_that_do_not_describe_the_source(version, revision, error):
    """The build stage's guard, run as the builder's shell runs it, in the build context."""
    cargo_version = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]
    env = {"PATH": "/usr/bin:/bin", "VERSION": version.format(cargo=cargo_version), "REVISION": revision}
    proc = subprocess.run(["sh", "-c", _guard()], cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    if error is None:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode != 0 and error in proc.stderr, proc.stderr


def test_numeric_non_root_user_and_exec_form_entrypoint():
    runtime = _stages()[1]
    (user,) = [a for n, a in runtime if n == "USER"]
    uid, _, gid = user.partition(":")
    assert uid == "65532" and gid == "65532"
    (entry,) = [a for n, a in runtime if n == "ENTRYPOINT"]
    assert json.loads(entry) == ["/usr/local/bin/hardened-csi-operator"]
    (cmd,) = [a for n, a in runtime if n == "CMD"]
    assert json.loads(cmd) == ["run"]


def test_runtime_stage_only_copies_the_binary():
    runtime = _stages()[1]
    assert not _runs(runtime), "the runtime image has no shell"
    copies = [a for n, a in runtime if n == "COPY"]
    assert copies == ["--from=build /out/hardened-csi-operator /usr/local/bin/hardened-csi-operator"]


def test_readme_release_command_builds_both_platforms_with_sbom_and_provenance():
    section = README_FILE.read_text().split("## Building the image", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    text = block.replace("\\\n", " ")
    assert "hack/pin-base-images.sh" in section, "the release notes how the digests get pinned"
    (build,) = [line for line in text.splitlines() if "docker buildx build" in line]
    for flag in ("--sbom=true", "--provenance=mode=max", "--platform linux/amd64,linux/arm64", "--push"):
        assert flag in build, f"{flag} missing from the release command: {build}"
    assert re.search(r"--build-arg VERSION=\S+", build) and re.search(r"--build-arg REVISION=\"?\$\(git rev-parse HEAD\)", build)
    assert build.rstrip().endswith(" ."), "the build context is the repository root"


FAKE_DOCKER = """#!/bin/sh
# `docker buildx imagetools inspect REF --format FMT`, answered like a registry would for a
# multi-platform index (platforms from $FAKE_PLATFORMS), with a digest derived from REF.
ref=$4
case "$6" in
  *Platform*) echo "$FAKE_PLATFORMS" ;;
  *Manifest.Digest*) printf 'sha256:%s\\n' "$(printf %s "$ref" | sha256sum | cut -c1-64)" ;;
  *) echo "unexpected format $6" >&2; exit 2 ;;
esac
"""


def _pin(tmp_path, platforms: str) -> subprocess.CompletedProcess:
    (tmp_path / "hack").mkdir()
    (tmp_path / "bin").mkdir()
    (tmp_path / "Dockerfile").write_text(DOCKERFILE.read_text())
    script = tmp_path / "hack" / PIN_SCRIPT.name
    script.write_text(PIN_SCRIPT.read_text())
    script.chmod(0o755)
    docker = tmp_path / "bin" / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "FAKE_PLATFORMS": platforms}
    return subprocess.run([str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)


def test_pin_script_writes_each_images_index_digest(tmp_path):
    """hack/pin-base-images.sh against a registry answer (docker's output, no registry here):
    every FROM's digest argument gets that image's index digest, and nothing else changes."""
    proc = _pin(tmp_path, "linux/amd64 linux/arm64 unknown/unknown ")
    assert proc.returncode == 0, proc.stderr
    pinned = (tmp_path / "Dockerfile").read_text()
    refs = re.findall(r"(?m)^FROM (?:--platform=\S+ )?(\S+)@\$\{(\w+)\}", pinned)
    assert len(refs) == 2
    for ref, arg in refs:
        digest = re.search(rf"(?m)^ARG {arg}=(.*)$", pinned).group(1)
        assert DIGEST.match(digest) and f"{ref}@{digest}" in proc.stdout
    changed = [a for a, b in zip(DOCKERFILE.read_text().splitlines(), pinned.splitlines()) if a != b]
    assert len(changed) == 2 and all(line.startswith(("ARG RUST_DIGEST=", "ARG RUNTIME_DIGEST=")) for line in changed), changed


def test_pin_script_refuses_an_image_without_arm64(tmp_path):
    proc = _pin(tmp_path, "linux/amd64 ")
    assert proc.returncode != 0 and "has no linux/arm64 image" in proc.stderr, proc.stderr
    assert (tmp_path / "Dockerfile").read_text() == DOCKERFILE.read_text()
