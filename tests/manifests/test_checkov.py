"""checkov over everything the project deploys.

- The operator's own manifests (chart for every value set, its `helm test` hook included, the
  kustomize base) fail no check. No skip on any RBAC object (the operator holds no `escalate`,
  `bind` or RBAC write: test_rbac.py); the only skips, annotated on their object, are the probe
  checks CKV_K8S_8 and 9 on the `helm test` pod, which runs to completion.
  Without `image.digest` (and the test images' digests) the image is a tag, so CKV_K8S_43 (digest)
  and CKV_K8S_15 (pull policy, which checkov accepts for digests) fail and nothing else: release
  installs pin the digests.
- `render` output: only CKV_K8S_16, 20, 23 and 40 on the node plugin DaemonSet, skipped by
  annotations on that object alone (a CSI node plugin must run privileged as root). Examples
  that do not pin digests may also fail the two digest checks, and only those.
- The Dockerfile passes checkov's dockerfile framework.
"""

from __future__ import annotations

import concurrent.futures
import functools

import pytest

from support import (
    DEPLOY,
    EXAMPLE_FILES,
    EXAMPLE_IDS,
    REPO,
    VALUE_SETS,
    chart_manifest_text,
    checkov,
    is_pinned,
    kustomize,
    load_docs,
    render_example_text,
)

DIGEST_CHECKS = {"CKV_K8S_43", "CKV_K8S_15"}
NODE_PLUGIN_SKIPS = {"CKV_K8S_16", "CKV_K8S_20", "CKV_K8S_23", "CKV_K8S_40"}
# (check, kind): the `helm test` pod (probes: it runs to completion, like the Jobs checkov exempts
# from them). None on the operator's ClusterRole or any other RBAC object.
ALLOWED_SKIPS = {("CKV_K8S_8", "Pod"), ("CKV_K8S_9", "Pod")}


@functools.cache
def _jobs():
    """All checkov runs start at once (each takes a few seconds, mostly start-up); a run whose
    input cannot be produced fails only its own test."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=3)
    jobs = {}
    for name, values in VALUE_SETS.items():
        jobs[("chart", name)] = pool.submit(lambda v=values: checkov({"chart.yaml": chart_manifest_text(v)}))
    jobs[("kustomize", "deploy")] = pool.submit(lambda: checkov({"deploy.yaml": kustomize(str(DEPLOY))}))
    for path in EXAMPLE_FILES:
        jobs[("render", path.stem)] = pool.submit(
            lambda p=path: checkov({"render.yaml": render_example_text(str(p))})
        )
    jobs[("dockerfile", "Dockerfile")] = pool.submit(
        lambda: checkov({"Dockerfile": (REPO / "Dockerfile").read_text()}, framework="dockerfile")
    )
    pool.shutdown(wait=False)
    return jobs


def _result(kind, name):
    return _jobs()[(kind, name)].result()


def _ids(items):
    return sorted((i["check_id"], i["resource"]) for i in items)


def _operator_result_ok(result, pinned: bool):
    failed = {i["check_id"] for i in result["failed"]}
    if pinned:
        assert result["failed"] == [], _ids(result["failed"])
    else:
        assert failed == DIGEST_CHECKS, _ids(result["failed"])
        # The operator Deployment, and the `helm test` Pod when its images are not pinned either.
        assert {i["resource"].split(".")[0] for i in result["failed"]} <= {"Deployment", "Pod"}
        assert "Deployment" in {i["resource"].split(".")[0] for i in result["failed"]}
    skipped = {(i["check_id"], i["resource"].split(".")[0]) for i in result["skipped"]}
    assert skipped <= ALLOWED_SKIPS, _ids(result["skipped"])


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_checkov_chart(name):
    _operator_result_ok(_result("chart", name), is_pinned(VALUE_SETS[name]))


def test_checkov_kustomize_base():
    _operator_result_ok(_result("kustomize", "deploy"), pinned=False)


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=EXAMPLE_IDS)
def test_checkov_render_only_the_documented_node_plugin_skips(example):
    result = _result("render", example.stem)
    (spec_doc,) = load_docs(example.read_text())
    ns = spec_doc["spec"].get("namespace", "kube-system")
    node = f"DaemonSet.{ns}.ebs-csi-node"
    images = spec_doc["spec"].get("images", {})
    roles = ("driver", "provisioner", "attacher", "snapshotter", "resizer", "livenessProbe", "nodeDriverRegistrar")
    pinned = all(images.get(r, {}).get("digest") for r in roles)
    allowed_failures = set() if pinned else DIGEST_CHECKS
    assert {i["check_id"] for i in result["failed"]} <= allowed_failures, _ids(result["failed"])
    skipped = {(i["check_id"], i["resource"]) for i in result["skipped"]}
    assert skipped == {(c, node) for c in NODE_PLUGIN_SKIPS}, sorted(skipped)


def test_checkov_dockerfile():
    result = _result("dockerfile", "Dockerfile")
    assert result["failed"] == [], _ids(result["failed"])
