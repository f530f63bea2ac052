"""What the journey tests (issue 14) share: the operator binary run as its own process against the
project's local API server, reads through kubectl, and waits that fail with what was seen and the
operator's log."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from support import BIN, EXAMPLES, REPO, kubectl

UPSTREAM_CHART = REPO.parent / "shared" / "reference" / "upstream-ebs-csi" / "chart" / "aws-ebs-csi-driver"
NAMESPACE = "kube-system"
TIMEOUT = 120


def get(kc: Path, *what: str) -> dict:
    return json.loads(kubectl(kc, "get", *what, "-o", "json").stdout)


def get_opt(kc: Path, *what: str) -> dict | None:
    proc = kubectl(kc, "get", *what, "-o", "json", "--ignore-not-found", check=True)
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def conditions(kc: Path, name: str) -> dict[str, dict]:
    status = get(kc, "hardenedcsidriver", name).get("status") or {}
    return {c["type"]: c for c in status.get("conditions", [])}


def install_driver_rbac(kc: Path) -> None:
    """The driver's RBAC, as the operator's chart installs it beside the operator (the operator
    only verifies it). Objects already there are left as they are: a migration starts from the
    upstream chart's own copies of the driver's roles, which the operator checks rule by rule."""
    proc = kubectl(kc, "create", "-f", str(REPO / "deploy" / "operator" / "driver-rbac.yaml"), check=False)
    refused = [line for line in proc.stderr.splitlines() if line.strip() and "AlreadyExists" not in line
               and "already exists" not in line]
    assert proc.returncode == 0 or not refused, f"installing the driver's RBAC failed:\n{proc.stderr}"


class Operator:
    """`hardened-csi-operator run` against the kubeconfig, its log in the work dir."""

    def __init__(self, kc: Path, workdir: Path, *extra: str):
        self.kc = kc
        install_driver_rbac(kc)
        self.log = workdir / "operator.log"
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [str(BIN), "run", "--kubeconfig", str(kc), "--metrics-addr", f"127.0.0.1:{free_port()}",
                 # No AWS here: the inventory fails on a closed port, which the driver's Ready ignores.
                 "--aws-endpoint-url", f"http://127.0.0.1:{free_port()}", "--log-format", "text", *extra],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )

    def tail(self) -> str:
        return self.log.read_text()[-4000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def operator(kc: Path, workdir: Path, *extra: str) -> Iterator[Operator]:
    op = Operator(kc, workdir, *extra)
    try:
        yield op
        assert op.proc.poll() is None, f"the operator exited:\n{op.tail()}"
    finally:
        op.stop()


def wait_for(what: str, probe: Callable[[], Any], op: Operator | None = None, timeout: float = TIMEOUT) -> Any:
    """Polls `probe` until it returns something truthy; fails naming `what`, the last value seen
    and the operator's log."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            log = f"\noperator log:\n{op.tail()}" if op else ""
            raise AssertionError(f"{what}: not seen after {timeout}s (last: {last!r}){log}")
        time.sleep(0.3)


def wait_condition(kc: Path, name: str, type_: str, status: str, op: Operator, reason: str | None = None) -> dict:
    def probe():
        c = conditions(kc, name).get(type_, {})
        ok = c.get("status") == status and (reason is None or c.get("reason") == reason)
        return c if ok else None

    try:
        return wait_for(f"{type_}={status}" + (f" ({reason})" if reason else ""), probe, op)
    except AssertionError as e:
        raise AssertionError(f"{e}\nconditions:\n{json.dumps(conditions(kc, name), indent=1)}") from None


def wait_ready(kc: Path, name: str, op: Operator) -> dict[str, dict]:
    wait_condition(kc, name, "Ready", "True", op)
    return conditions(kc, name)


def wait_rolled_out(kc: Path, name: str, op: Operator) -> dict[str, dict]:
    """Ready and not Reconciling for the current generation: the rollout is complete."""
    generation = get(kc, "hardenedcsidriver", name)["metadata"]["generation"]

    def probe():
        c = conditions(kc, name)
        done = (
            c.get("Ready", {}).get("status") == "True"
            and c.get("Reconciling", {}).get("status") == "False"
            and c.get("Ready", {}).get("observedGeneration") == generation
        )
        return c if done else None

    return wait_for(f"HardenedCsiDriver/{name} rolled out at generation {generation}", probe, op)


def pull_secret(kc: Path, name: str = "dhi-pull", namespace: str = NAMESPACE) -> None:
    """A docker-registry Secret for dhi.io, as the README's command creates it."""
    manifest = subprocess.run(
        ["kubectl", "-n", namespace, "create", "secret", "docker-registry", name, "--dry-run=client", "-o", "yaml",
         "--docker-server=dhi.io", "--docker-username=u", "--docker-password=p"],
        capture_output=True, text=True, check=True,
    ).stdout
    kubectl(kc, "apply", "-f", "-", stdin=manifest)


def driver(**spec: Any) -> dict:
    """deploy/examples/minimal.yaml with `spec` merged in at the top level."""
    doc = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
    doc["spec"].update(spec)
    return doc


def apply_driver(kc: Path, doc: dict) -> None:
    kubectl(kc, "apply", "--server-side", "-f", "-", stdin=json.dumps(doc))


def patch_spec(kc: Path, name: str, patch: dict) -> None:
    kubectl(kc, "patch", "hardenedcsidriver", name, "--type=merge", "-p", json.dumps({"spec": patch}))


def pods(kc: Path, selector: str, namespace: str = NAMESPACE) -> list[dict]:
    return get(kc, "-n", namespace, "pods", "-l", selector)["items"]


def images_of(obj: dict) -> dict[str, str]:
    spec = obj["spec"]["template"]["spec"] if obj["kind"] != "Pod" else obj["spec"]
    return {c["name"]: c["image"] for c in spec["containers"] + (spec.get("initContainers") or [])}


def satisfies(labels: dict, selector: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
