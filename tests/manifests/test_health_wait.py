"""Health as GitOps tools read it, proven with the real Helm 4 engine (helm-python-sdk; its
`wait="watcher"` is kstatus, the library Flux uses) against the local API server (workload
controllers, scheduler and kubelet stand-in) and the operator binary, both as their own processes:

- `install --wait` of the chart with a driver returns only once the driver is Ready, and fails with
  the operator's words (not a timeout) when the driver's pods cannot pull or keep crashing;
- a second driver, or a spec the operator refuses, fails the wait with the operator's message;
- `upgrade --wait` after a spec change returns only once the new generation is rolled out;
- a node joining a Ready driver never drops Ready nor sets Degraded.

The CRD is applied before the release (`crds.install=false`, the README's path for a cluster whose
CRD is managed apart): Helm maps every object of a release before it applies any, so one install
cannot create the CRD and a HardenedCsiDriver.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import helm_python
import pytest

from support import (
    CHART,
    CRD_FILE,
    RELEASE_NAMESPACE,
    assert_never_refused,
    install_operator_identity,
    kubectl,
    local_apiserver,
    operator_process,
)

RELEASE = "hco"
DRIVER = "ebs"
DRIVER_IMAGE = "dhi.io/aws-ebs-csi-driver:1.64.0"
# Long enough for every rollout here; a wait that ends by timeout fails the test's assertions.
TIMEOUT = 180
# The operator's grace before persistent pull failures or crash loops are Stalled (the minimum).
GRACE = "10s"


def _spec(**extra) -> dict:
    spec = {
        "images": {"pullSecrets": ["dhi-pull"]},
        "aws": {"region": "us-east-1", "clusterId": "health-test"},
        "inventory": {"enabled": False},
        "health": {"degradedAfter": GRACE},
    }
    spec.update(extra)
    return spec


def _values(**spec) -> dict:
    return {"crds": {"install": False}, "driver": {"enabled": True, "name": DRIVER, "spec": _spec(**spec)}}


@contextlib.contextmanager
def _cluster(tmp_path: Path, *server_args: str, pull_secret: bool = True) -> Iterator[tuple[Path, helm_python.Config]]:
    """A cluster enforcing RBAC, the CRD, and the operator running as the release's
    ServiceAccount with exactly the chart's RBAC (created before the release, which adopts it, as
    Helm creates RBAC before the operator's pod starts). Whatever the test did, the API server
    must have refused the operator nothing."""
    with local_apiserver(tmp_path, rbac=True, args=("--nodes", "2", *server_args)) as kc:
        kubectl(kc, "create", "namespace", RELEASE_NAMESPACE)
        kubectl(kc, "apply", "--server-side", "-f", str(CRD_FILE))
        kubectl(kc, "wait", "--for=condition=Established", "crd/hardenedcsidrivers.csi.hardened.dev")
        if pull_secret:
            _create_pull_secret(kc)
        operator_kc, user = install_operator_identity(kc, _values(), release=RELEASE)
        with operator_process(operator_kc, tmp_path, f"--lease-namespace={RELEASE_NAMESPACE}"):
            yield kc, helm_python.Config(kubeconfig_path=str(kc), namespace=RELEASE_NAMESPACE)
            assert_never_refused(kc, user)


def _create_pull_secret(kc: Path) -> None:
    auth = base64.b64encode(b"user:token").decode()
    config = json.dumps({"auths": {"dhi.io": {"auth": auth}}})
    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "dhi-pull", "namespace": "kube-system"},
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
    }
    kubectl(kc, "apply", "-f", "-", stdin=json.dumps(secret))


def _driver(kc: Path, name: str = DRIVER) -> dict:
    return json.loads(kubectl(kc, "get", "hardenedcsidriver", name, "-o", "json").stdout)


def _cond(obj: dict, type_: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def _install(helm: helm_python.Config, values: dict):
    return helm.install(
        str(CHART), RELEASE, values, namespace=RELEASE_NAMESPACE, create_namespace=True, wait="watcher", timeout=TIMEOUT
    )


def _assert_rolled_out(kc: Path, obj: dict) -> None:
    """The status describes this generation and says done, and the workloads agree."""
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"], obj["status"]
    assert _cond(obj, "Ready")["status"] == "True", _cond(obj, "Ready")
    assert _cond(obj, "Reconciling")["status"] == "False", _cond(obj, "Reconciling")
    assert _cond(obj, "Stalled")["status"] == "False", _cond(obj, "Stalled")
    ds = json.loads(kubectl(kc, "-n", "kube-system", "get", "daemonset", "ebs-csi-node", "-o", "json").stdout)
    dep = json.loads(kubectl(kc, "-n", "kube-system", "get", "deployment", "ebs-csi-controller", "-o", "json").stdout)
    assert ds["status"]["observedGeneration"] == ds["metadata"]["generation"]
    assert ds["status"]["updatedNumberScheduled"] == ds["status"]["desiredNumberScheduled"] == 2
    assert ds["status"]["numberReady"] == 2
    assert dep["status"]["observedGeneration"] == dep["metadata"]["generation"]
    assert dep["status"]["updatedReplicas"] == dep["status"]["readyReplicas"] == dep["spec"]["replicas"]


def test_a_new_driver_reads_in_progress_before_the_operator_has_seen_it(tmp_path):
    """What kstatus and the Argo CD check read first: the CRD's status default, from the API
    server, before the operator writes anything (no operator runs here)."""
    with local_apiserver(tmp_path) as kc:
        kubectl(kc, "apply", "--server-side", "-f", str(CRD_FILE))
        kubectl(kc, "wait", "--for=condition=Established", "crd/hardenedcsidrivers.csi.hardened.dev")
        obj = {"apiVersion": "csi.hardened.dev/v1alpha1", "kind": "HardenedCsiDriver", "metadata": {"name": DRIVER},
               "spec": _spec()}
        created = json.loads(kubectl(kc, "create", "-o", "json", "-f", "-", stdin=json.dumps(obj)).stdout)
        assert created["metadata"]["generation"] == 1
        assert created["status"]["observedGeneration"] == -1
        assert _driver(kc)["status"]["observedGeneration"] == -1


def test_install_wait_returns_once_the_driver_is_ready_and_upgrade_once_the_new_generation_is_rolled_out(tmp_path):
    with _cluster(tmp_path) as (kc, helm):
        _install(helm, _values())
        first = _driver(kc)
        _assert_rolled_out(kc, first)
        assert first["metadata"]["generation"] == 1

        # A spec change every driver pod must roll out for.
        helm.upgrade(
            str(CHART), RELEASE, _values(images={"pullSecrets": ["dhi-pull"], "pullPolicy": "Always"}),
            namespace=RELEASE_NAMESPACE, wait="watcher", timeout=TIMEOUT,
        )
        second = _driver(kc)
        assert second["metadata"]["generation"] == 2
        _assert_rolled_out(kc, second)
        pods = json.loads(
            kubectl(kc, "-n", "kube-system", "get", "pods", "-l", "app=ebs-csi-node", "-o", "json").stdout
        )
        running = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]
        assert len(running) == 2
        for p in running:
            assert {c["imagePullPolicy"] for c in p["spec"]["containers"]} == {"Always"}, p["metadata"]["name"]
            assert all(c["ready"] for c in p["status"]["containerStatuses"]), p["metadata"]["name"]


@pytest.mark.parametrize("failure", ["pull", "crash"])
def test_install_wait_fails_with_the_operators_message_when_pods_cannot_become_ready(tmp_path, failure):
    server_args = ("--crashing-image", DRIVER_IMAGE) if failure == "crash" else ()
    with _cluster(tmp_path, *server_args, pull_secret=failure != "pull") as (kc, helm):
        with pytest.raises(helm_python.HelmError) as err:
            _install(helm, _values())
        text = str(err.value)
        obj = _driver(kc)
        stalled = _cond(obj, "Stalled")
        assert stalled["status"] == "True", obj["status"]["conditions"]
        if failure == "pull":
            assert stalled["reason"] == "ImagePullFailed"
            # The pods, the image, the kubelet's reason and message, and what to check.
            for needle in ("ebs-csi-node-", f"cannot pull {DRIVER_IMAGE}", "401 Unauthorized", "dhi-pull",
                           "kube-system", "spec.images.mirror"):
                assert needle in stalled["message"], stalled["message"]
            # ErrImagePull and ImagePullBackOff alternate; the status reads the same in both.
            assert "(ImagePullBackOff)" in stalled["message"], stalled["message"]
        else:
            assert stalled["reason"] == "CrashLoopBackOff"
            assert "keeps crashing: exited with code 1" in stalled["message"], stalled["message"]
        assert "status: Failed" in text and stalled["message"][:80] in text, text
        assert "context deadline exceeded" not in text, text


def test_a_second_driver_fails_the_wait_with_the_operators_message(tmp_path):
    with _cluster(tmp_path) as (kc, helm):
        first = {"apiVersion": "csi.hardened.dev/v1alpha1", "kind": "HardenedCsiDriver",
                 "metadata": {"name": "cluster-driver"}, "spec": _spec()}
        kubectl(kc, "apply", "--server-side", "-f", "-", stdin=json.dumps(first))
        kubectl(kc, "wait", "--for=condition=Ready", "hardenedcsidriver/cluster-driver", f"--timeout={TIMEOUT}s")
        with pytest.raises(helm_python.HelmError) as err:
            _install(helm, _values())
        text = str(err.value)
        stalled = _cond(_driver(kc), "Stalled")
        assert (stalled["status"], stalled["reason"]) == ("True", "AnotherDriverActive")
        assert 'HardenedCsiDriver "cluster-driver" already manages the EBS CSI driver' in text, text
        assert "context deadline exceeded" not in text, text


def test_a_spec_the_operator_refuses_fails_the_wait_with_its_message(tmp_path):
    """The CRD's schema accepts `health.degradedAfter: 5s`; the operator's rules refuse it."""
    with _cluster(tmp_path) as (kc, helm):
        with pytest.raises(helm_python.HelmError) as err:
            _install(helm, _values(health={"degradedAfter": "5s"}))
        text = str(err.value)
        stalled = _cond(_driver(kc), "Stalled")
        assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec")
        assert "spec.health.degradedAfter" in text and "below the minimum of 10s" in text, text
        assert "context deadline exceeded" not in text, text


def test_a_node_joining_never_drops_ready_nor_degrades(tmp_path):
    with _cluster(tmp_path, "--image-pull-ms", "1500") as (kc, helm):
        _install(helm, _values())
        seen: list[dict] = []
        watch = subprocess.Popen(
            ["kubectl", "--kubeconfig", str(kc), "get", "hardenedcsidriver", DRIVER, "--watch", "-o", "json",
             "--output-watch-events"],
            stdout=subprocess.PIPE, text=True,
        )

        def collect():
            decoder, buf = json.JSONDecoder(), ""
            for line in watch.stdout:
                buf += line
                try:
                    ev, end = decoder.raw_decode(buf.strip())
                except json.JSONDecodeError:
                    continue
                buf = ""
                seen.append(ev["object"])

        reader = threading.Thread(target=collect, daemon=True)
        reader.start()
        try:
            node = {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": "node-joining", "labels": {"kubernetes.io/os": "linux"}}}
            kubectl(kc, "apply", "-f", "-", stdin=json.dumps(node))
            deadline = time.monotonic() + TIMEOUT
            # Until the operator reports the join finished: 3 node pods ready, Reconciling False.
            while not any(
                o["status"].get("node", {}).get("ready") == 3 and _cond(o, "Reconciling").get("status") == "False"
                for o in seen
            ):
                assert time.monotonic() < deadline, [o["status"].get("node") for o in seen]
                time.sleep(0.2)
        finally:
            watch.terminate()
            watch.wait()
        # The join itself may never show as Reconciling=True: progress-only status changes are
        # coalesced (issue 20: a node joining must not cost a status write), so a rollout shorter
        # than the coalescing window is seen only as its result, 3 of 3 ready.
        for o in seen:
            assert _cond(o, "Ready")["status"] == "True", _cond(o, "Ready")
            assert _cond(o, "Degraded")["status"] == "False", _cond(o, "Degraded")
