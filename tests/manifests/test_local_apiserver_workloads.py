"""The local API server's workload controllers and kubelet stand-in, judged by the real Helm 4
engine (helm-python-sdk): `install`/`upgrade` with `wait="watcher"` (kstatus, as Flux and Helm 4
use it) of a chart holding a Deployment and a DaemonSet returns once their pods are ready, and
fails, instead of succeeding, when an image cannot be pulled (a dhi.io image without a pull
secret for dhi.io), as on a real cluster."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import helm_python
import pytest

from support import kubectl, local_apiserver

NAMESPACE = "workloads"
# Two Nodes to schedule on; pulls slow enough (400 ms) that a Helm that did not wait would
# return before any pod is ready.
SERVER_ARGS = ("--nodes", "2", "--image-pull-ms", "400")

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: 2
  progressDeadlineSeconds: {{ .Values.progressDeadlineSeconds }}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      {{- with .Values.pullSecret }}
      imagePullSecrets: [{name: {{ . }}}]
      {{- end }}
      containers:
        - name: web
          image: {{ .Values.image }}
"""

DAEMONSET = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ .Release.Name }}-agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      {{- with .Values.pullSecret }}
      imagePullSecrets: [{name: {{ . }}}]
      {{- end }}
      containers:
        - name: agent
          image: {{ .Values.image }}
"""


PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff"}


def _chart(tmp_path: Path) -> Path:
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: workloads\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text(
        textwrap.dedent(
            """\
            image: nginx:1.27
            pullSecret: ""
            progressDeadlineSeconds: 600
            """
        )
    )
    (chart / "templates" / "deployment.yaml").write_text(DEPLOYMENT)
    (chart / "templates" / "daemonset.yaml").write_text(DAEMONSET)
    return chart


def _pods(kc: Path) -> list[dict]:
    return json.loads(kubectl(kc, "-n", NAMESPACE, "get", "pods", "-o", "json").stdout)["items"]


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def _waiting_reasons(pod: dict) -> set[str]:
    statuses = pod.get("status", {}).get("containerStatuses", [])
    return {s["state"]["waiting"]["reason"] for s in statuses if "waiting" in s.get("state", {})}


def test_install_with_watcher_wait_returns_once_pods_are_ready(tmp_path):
    with local_apiserver(tmp_path, args=SERVER_ARGS) as kc:
        helm = helm_python.Config(kubeconfig_path=str(kc), namespace=NAMESPACE)
        chart = str(_chart(tmp_path))
        helm.install(chart, "demo", {}, namespace=NAMESPACE, create_namespace=True, wait="watcher", timeout=60)
        # Read right after install returned: every pod already runs and is ready.
        pods = _pods(kc)
        assert len(pods) == 4, [p["metadata"]["name"] for p in pods]  # 2 web replicas, 1 agent per Node
        assert all(_ready(p) and p["status"]["phase"] == "Running" for p in pods), pods
        deploy = json.loads(kubectl(kc, "-n", NAMESPACE, "get", "deploy", "demo-web", "-o", "json").stdout)
        assert deploy["status"]["availableReplicas"] == 2
        # An upgrade to a new image waits for the rolled-out ReplicaSet too.
        helm.upgrade(chart, "demo", {"image": "nginx:1.28"}, namespace=NAMESPACE, wait="watcher", timeout=60)
        pods = _pods(kc)
        images = {p["spec"]["containers"][0]["image"] for p in pods if _ready(p)}
        assert images == {"nginx:1.28"}, pods
        assert sum(1 for p in pods if p["metadata"]["labels"]["app"] == "web" and _ready(p)) == 2


def test_install_fails_when_the_image_cannot_be_pulled_and_upgrade_recovers(tmp_path):
    values = {"image": "dhi.io/aws-ebs-csi-driver:1.64.0", "progressDeadlineSeconds": 3}
    with local_apiserver(tmp_path, args=SERVER_ARGS) as kc:
        helm = helm_python.Config(kubeconfig_path=str(kc), namespace=NAMESPACE)
        chart = str(_chart(tmp_path))
        # No pull secret: the kubelet cannot pull from dhi.io, the Deployment exceeds its
        # progress deadline and the wait fails instead of reporting success.
        with pytest.raises(helm_python.HelmError, match="dhi-web"):
            helm.install(chart, "dhi", values, namespace=NAMESPACE, create_namespace=True, wait="watcher",
                         timeout=20)
        pods = _pods(kc)
        assert pods and not any(_ready(p) for p in pods), pods
        # The kubelet reports the failed pull on its own schedule (a loaded machine can still show
        # ContainerCreating when Helm gives up): wait for it, as `kubectl get pods -w` would.
        reasons: set[str] = set()
        deadline = time.monotonic() + 30
        while not reasons & PULL_FAILURES and time.monotonic() < deadline:
            pods = _pods(kc)
            assert not any(_ready(p) for p in pods), pods
            reasons = set().union(*(_waiting_reasons(p) for p in pods))
            time.sleep(0.2)
        assert reasons & PULL_FAILURES, reasons
        # The fix a user makes: the dhi.io pull secret, referenced by the pods.
        kubectl(kc, "-n", NAMESPACE, "create", "secret", "docker-registry", "dhi-pull", "--docker-server=dhi.io",
                "--docker-username=user", "--docker-password=token")
        helm.upgrade(chart, "dhi", {**values, "pullSecret": "dhi-pull"}, namespace=NAMESPACE, wait="watcher",
                     timeout=60)
        pods = [p for p in _pods(kc) if _ready(p)]
        assert len(pods) == 4, pods
        assert all(p["spec"]["imagePullSecrets"] == [{"name": "dhi-pull"}] for p in pods), pods
