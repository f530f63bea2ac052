"""Shared helpers of the manifest suite: where things are, how to run the operator binary, the
chart and kustomize, and how to validate what they produce.

Every command the suite needs must exist: a missing binary or subcommand fails the test that
needs it with the command and its output, it never skips.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError
from yamllint import linter
from yamllint.config import YamlLintConfig

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "hardened-csi-operator"
CRD_FILE = REPO / "crds" / "hardenedcsidrivers.csi.hardened.dev.yaml"
# The CRD as a chart template (so `helm upgrade` updates it), generated from CRD_FILE.
CHART_CRD_TEMPLATE = CHART / "templates" / "crds" / "hardenedcsidrivers.csi.hardened.dev.yaml"
DEPLOY = REPO / "deploy"
README_FILE = REPO / "README.md"
EXAMPLES = DEPLOY / "examples"
GITOPS = DEPLOY / "gitops"
BIN = Path(os.environ.get("HCO_BIN", REPO / "target" / "debug" / "hardened-csi-operator"))
LOCAL_APISERVER = Path(os.environ.get("LOCAL_APISERVER", REPO / "target" / "debug" / "local-apiserver"))

RELEASE = "hco"
RELEASE_NAMESPACE = "hardened-csi-operator"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema
# kubernetes-validate ships: built-in objects must be valid for both.
K8S_VERSIONS = ("1.30", "1.37")

# A syntactically valid digest used where a test needs an image pinned by digest; no registry
# is contacted, so only its form matters.
TEST_DIGEST = "sha256:" + "0123456789abcdef" * 4
# The operator image and the `helm test` images pinned by digest.
PINNED: dict[str, Any] = {
    "image": {"digest": TEST_DIGEST},
    "tests": {"curlImage": {"digest": TEST_DIGEST}, "kubectlImage": {"digest": TEST_DIGEST}},
}


# Named value sets the chart must lint, render and validate with.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "pinned": PINNED,
    "irsa": {
        **PINNED,
        "serviceAccount": {"irsaRoleArn": "arn:aws:iam::111122223333:role/hardened-csi-operator"},
        "aws": {"region": "us-east-1"},
    },
    "ha": {
        **PINNED,
        "replicaCount": 2,
        "leaderElection": {"enabled": True, "leaseName": "hco-leader", "leaseDuration": "20s", "renewDeadline": "15s"},
        "podDisruptionBudget": {"enabled": True},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "hardened-csi-operator"}},
            }
        ],
    },
    "servicemonitor": {
        **PINNED,
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    },
    "monitoring": {
        **PINNED,
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}, "notReadyFor": "20m"},
            "grafanaDashboard": {"enabled": True},
        },
    },
    "driver": {
        **PINNED,
        "driver": {
            "enabled": True,
            "name": "ebs",
            "spec": {
                "images": {"pullSecrets": ["dhi-pull"]},
                "aws": {
                    "region": "us-east-1",
                    "clusterId": "prod-eks",
                    "identity": {"irsa": {"roleArn": "arn:aws:iam::111122223333:role/ebs-csi"}},
                },
                "storageClasses": [{"name": "gp3", "default": True}],
            },
        },
    },
    "no-leader-election": {**PINNED, "leaderElection": {"enabled": False}},
    "guardrails": {
        **PINNED,
        "driverNamespace": "storage",
        "allowedRegistries": ["dhi.io", "registry.example.com/dhi"],
        "admissionPolicy": {"enabled": True},
    },
    "existing-sa": {
        **PINNED,
        "serviceAccount": {"create": False, "name": "platform-operator"},
        "aws": {"endpointUrl": "https://ec2.us-east-1.amazonaws.com"},
        "extraArgs": ["--shutdown-grace-period=20s"],
        "logLevel": "info,hardened_csi_operator=debug",
    },
}

# chart-testing's value files (ct lint/install use them too): every test of a value set runs on
# each of them, as "ci/<name>".
CI_VALUE_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
VALUE_SETS.update({f"ci/{p.stem}": yaml.safe_load(p.read_text()) or {} for p in CI_VALUE_FILES})


def is_pinned(values: dict[str, Any]) -> bool:
    """Every image the chart renders is pinned by digest."""
    tests = values.get("tests", {})
    return bool(values.get("image", {}).get("digest")) and (
        tests.get("enabled") is False
        or all(tests.get(k, {}).get("digest") for k in ("curlImage", "kubectlImage"))
    )


EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
EXAMPLE_IDS = [p.stem for p in EXAMPLE_FILES]


# ---------------------------------------------------------------- operator binary


def run_bin(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs the operator binary; a missing binary or a failing command fails the test."""
    if not BIN.exists():
        raise AssertionError(f"{BIN} does not exist: build it first (`cargo build` or `make build`)")
    proc = subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"`hardened-csi-operator {' '.join(args)}` exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
        )
    return proc


def load_docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


@functools.cache
def render_example_text(path: str, *extra: str) -> str:
    """`hardened-csi-operator render -f FILE` output, checked to be the driver's children."""
    out = run_bin("render", "-f", path, *extra).stdout
    docs = load_docs(out)
    kinds = {d.get("kind") for d in docs}
    if not {"Deployment", "DaemonSet", "CSIDriver"} <= kinds:
        raise AssertionError(
            f"`render -f {path}` did not print the driver's children (kinds: {sorted(map(str, kinds))})"
        )
    return out


def render_example(path: Path | str, *extra: str) -> list[dict]:
    return load_docs(render_example_text(str(path), *extra))


@functools.cache
def operator_rbac_text() -> str:
    return run_bin("operator-rbac").stdout


RBAC_SCOPES = ("clusterRules", "driverNamespaceRules", "pullSecretRules", "caBundleRules", "operatorNamespaceRules")


def operator_rbac() -> dict[str, list[dict]]:
    """The PolicyRules the operator's code needs, by scope, as printed by `operator-rbac`:
    cluster-wide, in the driver namespace (driverNamespace), on the pull Secrets and the CA-bundle
    ConfigMaps there (names filled in at install time), in the operator's own namespace."""
    doc = operator_rbac_document()
    return {k: doc[k] for k in RBAC_SCOPES}


def driver_rbac() -> dict[str, list[dict]]:
    """The driver's own RBAC (for driver namespace kube-system) that the chart installs and the
    operator verifies: clusterRoles, clusterRoleBindings, roles, roleBindings."""
    return operator_rbac_document()["driverRbac"]


def snapshot_controller_rbac() -> dict[str, list[dict]]:
    """The snapshot-controller's RBAC (driver namespace kube-system) that the chart installs with
    snapshotController.rbac.create and the operator verifies while it runs the controller."""
    return operator_rbac_document()["snapshotControllerRbac"]


def operator_rbac_document() -> dict:
    doc = yaml.safe_load(operator_rbac_text())
    ok = isinstance(doc, dict) and set(doc) == {*RBAC_SCOPES, "driverRbac", "snapshotControllerRbac"} and all(
        isinstance(doc[k], list) and all(isinstance(r, dict) and "verbs" in r for r in doc[k]) for k in RBAC_SCOPES
    )
    if not ok:
        raise AssertionError(
            f"`operator-rbac` must print a mapping {RBAC_SCOPES} -> PolicyRule lists and driverRbac; got:\n"
            f"{operator_rbac_text()[:2000]}"
        )
    return doc


# ---------------------------------------------------------------- local API server


@contextlib.contextmanager
def local_apiserver(workdir: Path, rbac: bool = False, args: Iterable[str] = ()) -> Iterator[Path]:
    """The project's local Kubernetes API server as its own process on a free port; yields the
    kubeconfig it wrote (with rbac: https, authentication and RBAC enforced like a real cluster,
    with the OwnerReferencesPermissionEnforcement admission plugin, the kubeconfig holding the
    admin; `args`: more flags, e.g. `--nodes 2`). Stopped (SIGTERM,
    then SIGKILL) on exit; its log is in the failure."""
    if not LOCAL_APISERVER.exists():
        raise AssertionError(f"{LOCAL_APISERVER} does not exist: build it first (`make build`)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kubeconfig = workdir / "kubeconfig"
    log = (workdir / "local-apiserver.log").open("w+")
    proc = subprocess.Popen(
        [str(LOCAL_APISERVER), "--port", str(port), "--kubeconfig", str(kubeconfig)]
        # With RBAC also the admission plugin many distributions run (tests/support/chart_rbac.rs).
        + (["--authorization-mode=RBAC", "--enable-admission-plugins=OwnerReferencesPermissionEnforcement"]
           if rbac else [])
        + list(args),
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            log.seek(0)
            if "listening on" in log.read():
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise AssertionError(f"local-apiserver did not start (exit {proc.poll()}):\n{log.read()[-3000:]}")
            time.sleep(0.05)
        yield kubeconfig
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args], input=stdin, capture_output=True, text=True, timeout=60
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"`kubectl {' '.join(args)}` exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


# ---------------------------------------------------------------- chart and kustomize


@functools.cache
def _chart():
    import helm_python

    return helm_python.Chart.load(str(CHART))


def render_chart(values: dict[str, Any], release: str = RELEASE) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would print them (CRDs excluded)."""
    return _chart().render(copy.deepcopy(values), name=release, namespace=RELEASE_NAMESPACE)


def is_hook(doc: dict) -> bool:
    return "helm.sh/hook" in (doc.get("metadata", {}).get("annotations") or {})


def chart_docs(values: dict[str, Any], release: str = RELEASE, hooks: bool = False) -> list[dict]:
    """The release's objects; with hooks, also the hook objects (`helm test`) that Helm creates
    only when a hook runs."""
    docs: list[dict] = []
    for path, text in sorted(render_chart(values, release).items()):
        if path.endswith(".yaml"):
            docs.extend(d for d in load_docs(text) if hooks or not is_hook(d))
    return docs


def chart_manifest_text(values: dict[str, Any]) -> str:
    """The rendered templates as one multi-document stream, like `helm template`."""
    parts = []
    for path, text in sorted(render_chart(values).items()):
        if path.endswith(".yaml") and text.strip():
            parts.append(f"---\n# Source: {path}\n{text.strip()}\n")
    return "".join(parts)


def validate_chart_values(values: dict[str, Any]) -> None:
    _chart().validate_schema(copy.deepcopy(values))


@functools.cache
def kustomize(path: str) -> str:
    proc = subprocess.run(["kubectl", "kustomize", path], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"`kubectl kustomize {path}` failed:\n{proc.stderr}")
    return proc.stdout


# ---------------------------------------------------------------- validation


def validate_builtin(doc: dict, version: str) -> bool:
    """Strict kubernetes-validate of one object; False when the kind is not built in."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except SchemaNotFoundError:
        return False
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        raise AssertionError(
            f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')} is not valid for Kubernetes "
            f"{version}: {path}: {e.message}"
        ) from None
    return True


def validate_all_builtin(docs: Iterable[dict], versions: Iterable[str] = K8S_VERSIONS) -> set[str]:
    """Validates every built-in object; returns the kinds that are not built in."""
    custom = set()
    for doc in docs:
        for version in versions:
            if not validate_builtin(doc, version):
                custom.add(f"{doc['apiVersion']}/{doc['kind']}")
    return custom


# yamllint: the default rules, with line length relaxed for generated text (descriptions in
# the CRD) and comments/document markers the way the project writes them.
YAMLLINT_HANDWRITTEN = YamlLintConfig(
    """
extends: default
rules:
  document-start: disable
  line-length: {max: 120}
  comments: {min-spaces-from-content: 1}
  truthy: {allowed-values: ["true", "false"], check-keys: false}
  indentation: {spaces: 2, indent-sequences: consistent}
"""
)
YAMLLINT_GENERATED = YamlLintConfig(
    """
extends: default
rules:
  document-start: disable
  line-length: disable
  comments: {min-spaces-from-content: 1}
  comments-indentation: disable
  truthy: {allowed-values: ["true", "false"], check-keys: false}
  indentation: {spaces: consistent, indent-sequences: whatever}
"""
)


def yamllint_errors(text: str, generated: bool) -> list[str]:
    conf = YAMLLINT_GENERATED if generated else YAMLLINT_HANDWRITTEN
    return [f"{p.line}:{p.column} {p.level} {p.desc} ({p.rule})" for p in linter.run(text, conf)]


def crd() -> dict:
    if not CRD_FILE.exists():
        raise AssertionError(f"{CRD_FILE.relative_to(REPO)} is missing: run `make crds`")
    return yaml.safe_load(CRD_FILE.read_text())


def _strict(schema: Any) -> Any:
    """A Kubernetes structural schema as plain JSON Schema, stricter than the API server's
    pruning: unknown fields are errors (they would be dropped silently on apply)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if out.get("type") == "object" and "properties" in out and not preserve:
        out.setdefault("additionalProperties", False)
    return out


@functools.cache
def crd_validator() -> jsonschema.Validator:
    versions = crd()["spec"]["versions"]
    served = [v for v in versions if v.get("name") == "v1alpha1"]
    assert served, "the CRD has no v1alpha1 version"
    schema = _strict(served[0]["schema"]["openAPIV3Schema"])
    # The API server knows these for every kind; CRDs may leave them out of their schema.
    props = schema.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    props["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}},
    }
    return jsonschema.Draft7Validator(schema)


def crd_errors(doc: dict) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in crd_validator().iter_errors(doc)
    ]


# ---------------------------------------------------------------- checkov


def checkov(docs_by_file: dict[str, str], framework: str = "kubernetes") -> dict[str, list[dict]]:
    """Runs one checkov framework over the given files (written to a fresh directory, so graph
    checks never connect objects of different runs); returns failed and skipped checks as lists
    of {check_id, resource, file}."""
    with tempfile.TemporaryDirectory(prefix="checkov-") as tmp:
        for name, text in docs_by_file.items():
            (Path(tmp) / name).write_text(text)
        proc = subprocess.run(
            [
                str(Path(sys.executable).parent / "checkov"),
                "-d", tmp,
                "--framework", framework,
                "--output", "json",
                "--skip-download",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            # checkov's own fork-based parallelism dropped results now and then on a loaded
            # machine; the suite runs several checkov processes side by side instead.
            env={**os.environ, "CHECKOV_PARALLELIZATION_TYPE": "none"},
        )
    # Exit 1 means "some check failed"; anything else with no JSON is a crash.
    try:
        report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        raise AssertionError(f"checkov did not print JSON (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    reports = report if isinstance(report, list) else [report]
    out: dict[str, list[dict]] = {"failed": [], "skipped": []}
    for rep in reports:
        results = rep.get("results", {}) if isinstance(rep, dict) else {}
        for key, dest in (("failed_checks", "failed"), ("skipped_checks", "skipped")):
            for r in results.get(key, []):
                out[dest].append(
                    {"check_id": r["check_id"], "resource": r["resource"], "file": r.get("file_path", "")}
                )
    return out


# ---------------------------------------------------------------- RBAC


def expand_rules(rules: Iterable[dict]) -> set[tuple[str, str, str, str]]:
    """PolicyRules as atomic (apiGroup, resource, verb, resourceName|'*') grants, so rule
    grouping does not matter when comparing."""
    grants = set()
    for r in rules:
        for g in r.get("apiGroups") or [""]:
            for res in r.get("resources") or []:
                for v in r.get("verbs") or []:
                    for n in r.get("resourceNames") or ["*"]:
                        grants.add((g, res, v, n))
    return grants


def by_kind(docs: Iterable[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: Iterable[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


# ---------------------------------------------------------------- the operator's identity

IDENTITY_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def install_operator_identity(
    kubeconfig: Path, values: dict[str, Any], release: str = RELEASE, driver_rbac: bool = True
) -> tuple[Path, str]:
    """As the cluster admin, what `helm install` of the chart with `values` creates first: its
    ServiceAccount and every RBAC object of `helm template`, carrying the release's ownership
    metadata so the later `helm install` of that release adopts them. Returns a kubeconfig that
    holds only that ServiceAccount's token (`kubectl create token`) and the ServiceAccount's user
    name: the operator process runs with exactly the chart's RBAC, as its pod would. Without
    `driver_rbac`, the driver's own ClusterRoles and bindings (`app.kubernetes.io/component:
    driver-rbac`) are left out: a cluster migrating from the upstream chart has its copies."""
    docs = [
        d for d in chart_docs(values, release=release)
        if d["kind"] in IDENTITY_KINDS
        and (driver_rbac or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "driver-rbac")
    ]
    for d in docs:
        d["metadata"].setdefault("annotations", {}).update(
            {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": RELEASE_NAMESPACE}
        )
    (sa,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    name, namespace = sa["metadata"]["name"], sa["metadata"].get("namespace", RELEASE_NAMESPACE)
    if kubectl(kubeconfig, "get", "namespace", namespace, check=False).returncode != 0:
        kubectl(kubeconfig, "create", "namespace", namespace)
    kubectl(kubeconfig, "create", "-f", "-", stdin=yaml.safe_dump_all(docs))
    return service_account_kubeconfig(kubeconfig, namespace, name)


def service_account_kubeconfig(kubeconfig: Path, namespace: str, name: str) -> tuple[Path, str]:
    """A copy of the admin `kubeconfig` holding only a token of ServiceAccount `namespace/name`
    (TokenRequest, `kubectl create token`, as the kubelet mounts one into the pod), and that
    account's user name."""
    token = kubectl(kubeconfig, "-n", namespace, "create", "token", name, "--duration=2h").stdout.strip()
    config = yaml.safe_load(kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path = kubeconfig.with_name(f"{name}.kubeconfig")
    path.write_text(yaml.safe_dump(config))
    return path, f"system:serviceaccount:{namespace}:{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OperatorProcess:
    """`hardened-csi-operator run` as its own process, the one way every suite here starts it.

    With `deployment` (the operator's Deployment as the chart or kustomize installed it), the
    binary runs with that Deployment's own arguments and POD_NAME/POD_NAMESPACE, as its pod would;
    without, with `run`'s defaults. Either way only what a pod cannot have here is replaced: the
    kubeconfig (the pod's mounted token), the metrics address (a free local port), text logs, and,
    unless `extra` names one, an AWS endpoint on a closed local port (no AWS here: the inventory
    fails, which the driver's Ready ignores). `extra` flags (`--flag=value` or `--flag`) replace
    the same flag of the Deployment. The log is `workdir/operator.log`."""

    def __init__(self, kubeconfig: Path, workdir: Path, *extra: str, deployment: dict | None = None):
        if not BIN.exists():
            raise AssertionError(f"{BIN} does not exist: build it first (`cargo build` or `make build`)")
        self.kubeconfig = kubeconfig
        self.log = workdir / "operator.log"
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "us-east-1"}
        args = ["run"]
        if deployment is not None:
            (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "operator"]
            args = list(container["args"])
            env["POD_NAME"] = f"{deployment['metadata']['name']}-local"
            env["POD_NAMESPACE"] = deployment["metadata"]["namespace"]
        overrides = [f"--kubeconfig={kubeconfig}", f"--metrics-addr=127.0.0.1:{free_port()}", "--log-format=text"]
        if not any(e.startswith("--aws-endpoint-url") for e in extra):
            overrides.append(f"--aws-endpoint-url=http://127.0.0.1:{free_port()}")
        overrides += extra
        replaced = {o.split("=", 1)[0] for o in overrides}
        self.args = [a for a in args if a.split("=", 1)[0] not in replaced] + overrides
        with self.log.open("w") as out:
            self.proc = subprocess.Popen([str(BIN), *self.args], stdout=out, stderr=subprocess.STDOUT, env=env)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text()[-chars:]

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def operator_process(
    kubeconfig: Path, workdir: Path, *extra: str, deployment: dict | None = None
) -> Iterator[OperatorProcess]:
    """An [`OperatorProcess`] for the block; it must still run at the end, and its log is printed
    when the block fails."""
    op = OperatorProcess(kubeconfig, workdir, *extra, deployment=deployment)
    try:
        yield op
        assert op.running(), f"the operator exited ({op.proc.returncode}):\n{op.tail()}"
    except BaseException:
        print(f"---- operator log ({' '.join(op.args)})\n{op.tail(6000)}")
        raise
    finally:
        op.stop()


def assert_never_refused(kubeconfig: Path, user: str) -> None:
    """The local API server (RBAC mode) refused `user` nothing: every request the operator made
    was granted by the chart (its access log, `GET /local-apiserver/access-log`)."""
    report = json.loads(kubectl(kubeconfig, "get", "--raw", f"/local-apiserver/access-log?user={user}").stdout)
    assert report["allowed"], f"{user} made no request: did the operator run with its own token?"
    denied = [a.get("description", a) for a in report["denied"]]
    assert not denied, f"the chart's RBAC refused {user}:\n" + "\n".join(map(str, denied))
