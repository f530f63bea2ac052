# Every check the project has runs from `make test`; `.ci/run` installs what a fresh machine lacks
# and calls it. The AWS SDK is the costly part of the build: every target shares one target/ dir
# and one profile so it compiles once.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
BIN := target/debug/hardened-csi-operator
CRD := crds/hardenedcsidrivers.csi.hardened.dev.yaml
export MOTO_SERVER := $(VENV)/bin/moto_server
export MOTO_EC2_LOAD_DEFAULT_AMIS := false
# Tests never reach instance metadata or real AWS: everything AWS is moto or a local stand-in.
export AWS_EC2_METADATA_DISABLED := true

.PHONY: gitops-testdata all build lint test venv crds crds-check cargo-test manifests demo bench clean deny image-binary

all: build

build:
	$(CARGO) build --workspace --all-targets

## The test tools at the exact versions and hashes of the lock (compiled from requirements.in).
$(VENV)/.installed: tests/manifests/requirements.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes -r tests/manifests/requirements.lock
	touch $@

venv: $(VENV)/.installed

## Gates before the tests: formatting, clippy with warnings as errors, one-way layers and line width,
## cargo-deny.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	python3 tests/lint/check_source.py
	$(MAKE) deny

## Regenerate the CRD from the Rust types: crds/, then the files derived from it (the chart's CRD
## template, values.schema.json, deploy/operator/).
crds: build venv
	$(BIN) crd > $(CRD)
	$(PY) tests/manifests/regenerate.py

## Rewrites the Argo CD health check's test data (deploy/gitops/argocd/csi.hardened.dev/) from the
## operator's health rules; the same unit test fails when it is stale.
gitops-testdata:
	UPDATE_GITOPS_TESTDATA=1 $(CARGO) test --lib gitops_testdata

## Fails when the checked-in CRD differs from what the Rust types generate, or a derived file is stale.
crds-check: build venv
	@$(BIN) crd | diff -u $(CRD) - || { echo "crds/ is stale: run 'make crds'"; exit 1; }
	@$(PY) tests/manifests/regenerate.py --check
	@echo "crds: up to date"

## cargo-deny (deny.toml): licences, bans with duplicate-version warnings, sources. The advisories
## check fetches the RustSec database from GitHub, unreachable here: DENY_CHECKS=all adds it where
## GitHub is reachable (README, "Supply chain checks").
DENY_CHECKS ?= licenses bans sources
deny:
	$(CARGO) deny check $(if $(filter all,$(DENY_CHECKS)),,$(DENY_CHECKS))

cargo-test: venv build
	$(CARGO) nextest run --workspace --no-fail-fast

manifests: venv build
	$(PY) -m pytest -q tests/manifests

test: venv build crds-check manifests cargo-test

clean:
	$(CARGO) clean
	rm -rf $(VENV) $(BENCH_VENV)

## Local demo: the local API server and moto, the operator reconciling deploy/examples/irsa.yaml.
demo: venv build
	deploy/demo.sh

## The image's binary, built as the Dockerfile builds it: static musl, linked by rust-lld (packed
## relative relocations, build.rs), zig (from PyPI) as the C compiler of aws-lc and jemalloc.
MUSL_TARGET ?= x86_64-unknown-linux-musl
IMAGE_BIN := $(CURDIR)/target/$(MUSL_TARGET)/release/hardened-csi-operator
IMAGE_RUSTFLAGS := -C target-feature=+crt-static -C linker-flavor=ld.lld
# The Dockerfile's CARGO_ZIGBUILD_VERSION.
CARGO_ZIGBUILD_VERSION := 0.24.1
BENCH_VENV ?= $(CURDIR)/.venv-bench
$(BENCH_VENV)/.installed: benches/requirements.lock
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --require-hashes -r benches/requirements.lock
	touch $@
image-binary: $(BENCH_VENV)/.installed
	rustup target add $(MUSL_TARGET)
	[ "$$(cargo-zigbuild --version 2>/dev/null)" = "cargo-zigbuild $(CARGO_ZIGBUILD_VERSION)" ] \
	  || $(CARGO) install --locked cargo-zigbuild@$(CARGO_ZIGBUILD_VERSION)
	PATH="$(BENCH_VENV)/bin:$$PATH" RUSTFLAGS="$(IMAGE_RUSTFLAGS)" \
	  CARGO_TARGET_$(shell echo $(MUSL_TARGET) | tr a-z- A-Z_)_LINKER=rust-lld \
	  $(CARGO) zigbuild --release --locked --target $(MUSL_TARGET) --bin hardened-csi-operator

## Benchmarks (not tests): one figure a line, `name value unit`. BENCH_PROFILE=release measures the
## image's binary (`make image-binary`) run by a benchmark built with the benchmark profile (compiles
## the AWS SDK twice more, ~30 minutes cold); BENCH_BIN measures another binary.
BENCH_PROFILE ?= dev
bench: venv
ifeq ($(BENCH_PROFILE),release)
	$(if $(BENCH_BIN),,$(MAKE) image-binary)
	BENCH_BIN="$${BENCH_BIN:-$(IMAGE_BIN)}" $(CARGO) bench --profile benchmark --bench operator
else
	$(CARGO) bench --profile $(BENCH_PROFILE) --bench operator
endif
