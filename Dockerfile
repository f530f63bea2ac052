# syntax=docker/dockerfile:1
# The operator image: cross-compiled in a Docker Hardened Images Rust builder, run on dhi.io/static.
#
# dhi.io/static holds no C library (CA certificates, tzdata and the nonroot user only), so the
# binary is static: Rust on musl links statically. The builder always runs on the build machine's
# own platform ($BUILDPLATFORM) and cross-compiles for each target platform (TARGETARCH amd64 or
# arm64) with cargo-zigbuild, whose zig supplies the musl C cross compiler for the only C in the
# build (aws-lc-rs, rustls' crypto, and jemalloc). The toolchain's own rust-lld links (zig's linker
# refuses the option build.rs asks for): a static position-independent binary with packed
# relative relocations (`make image-binary` builds the same way,
# and `BENCH_PROFILE=release make bench` measures that binary). No QEMU emulation, so an arm64
# image builds as fast as an amd64 one. `cargo auditable` embeds the dependency list in the binary, so scanners
# (syft, trivy, grype, cargo audit bin) see every crate in the image.
#
# Base images are pinned by digest: each FROM is image:tag@${*_DIGEST}. An empty digest leaves
# `image:tag@`, an invalid reference, so an unpinned build fails instead of pulling whatever a tag
# means today. `hack/pin-base-images.sh` (needs `docker login dhi.io`) resolves each FROM's tag to
# its multi-platform index digest and writes it into the ARG below; commit the result. The release command is in the README ("Building the
# image"): it passes VERSION and REVISION, which the build checks, and asks for an SBOM and
# max-mode provenance attestations.
ARG RUST_DIGEST=
ARG RUNTIME_DIGEST=

FROM --platform=$BUILDPLATFORM dhi.io/rust:1-alpine3.23-dev@${RUST_DIGEST} AS build
ARG TARGETARCH
ARG VERSION
ARG REVISION
# The SBOM generator also scans this stage and the build context (Cargo.lock).
ARG BUILDKIT_SBOM_SCAN_STAGE=true
ARG BUILDKIT_SBOM_SCAN_CONTEXT=true
ARG CARGO_AUDITABLE_VERSION=0.7.7
ARG CARGO_ZIGBUILD_VERSION=0.24.1
# The -dev variant keeps apk and a shell for exactly this stage.
RUN apk add --no-cache build-base zig
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo install --locked "cargo-auditable@${CARGO_AUDITABLE_VERSION}" "cargo-zigbuild@${CARGO_ZIGBUILD_VERSION}"
# One Rust target triple per Docker architecture; anything else is refused by name.
RUN case "${TARGETARCH}" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "TARGETARCH=${TARGETARCH} is not supported: build for linux/amd64 or linux/arm64" >&2; exit 1 ;; \
    esac > /rust-target \
 && rustup target add "$(cat /rust-target)"
WORKDIR /src
COPY . .
# The labels must describe what was built: the version is the crate's, the revision a full commit.
RUN test -n "${VERSION}" || { echo "--build-arg VERSION=<Cargo.toml version> is required" >&2; exit 1; }; \
    grep -qx "version = \"${VERSION}\"" Cargo.toml \
      || { echo "VERSION=${VERSION} is not the version in Cargo.toml" >&2; exit 1; }; \
    echo "${REVISION}" | grep -Eqx '[0-9a-f]{40}' \
      || { echo "--build-arg REVISION=<40-hex git commit> is required (git rev-parse HEAD)" >&2; exit 1; }
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,id=target-${TARGETARCH},target=/src/target \
    target="$(cat /rust-target)" \
 && lld="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/rust-lld" \
 && { test -x "${lld}" || { echo "the Rust toolchain has no rust-lld (${lld}), which links the image" >&2; exit 1; }; } \
 && export "CARGO_TARGET_$(echo "${target}" | tr a-z- A-Z_)_LINKER=rust-lld" \
 && RUSTFLAGS="-C target-feature=+crt-static -C linker-flavor=ld.lld" \
    cargo auditable zigbuild --release --locked --target "${target}" --bin hardened-csi-operator \
 && install -D -m 0755 "target/${target}/release/hardened-csi-operator" /out/hardened-csi-operator

FROM dhi.io/static:20260413-alpine3.23@${RUNTIME_DIGEST}
ARG VERSION
ARG REVISION
ARG RUNTIME_DIGEST
LABEL org.opencontainers.image.title="hardened-csi-operator" \
      org.opencontainers.image.description="Runs the AWS EBS CSI driver from Docker Hardened Images" \
      org.opencontainers.image.source="https://github.com/hardened-csi/hardened-csi-operator" \
      org.opencontainers.image.url="https://github.com/hardened-csi/hardened-csi-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="dhi.io/static:20260413-alpine3.23" \
      org.opencontainers.image.base.digest="${RUNTIME_DIGEST}"
COPY --from=build /out/hardened-csi-operator /usr/local/bin/hardened-csi-operator
# The DHI nonroot user; numeric so the kubelet can verify runAsNonRoot without /etc/passwd.
USER 65532:65532
EXPOSE 8080
# Kubernetes probes /livez and /readyz (see the chart); the image has no shell or HTTP client
# for a Docker HEALTHCHECK to run.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/hardened-csi-operator"]
CMD ["run"]
