# syntax=docker/dockerfile:1
# The operator image: built in a Docker Hardened Images Rust builder, run on dhi.io/static.
#
# dhi.io/static holds no C library (only CA certificates, tzdata and the nonroot user), so the
# binary is linked statically against musl: a glibc build would need a glibc runtime base and
# bring its loader and libc CVEs with it. The operator's TLS is rustls with aws-lc-rs, whose C
# part compiles with musl-gcc; nothing else links C.
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     -t ghcr.io/hardened-csi/hardened-csi-operator:0.1.0 .
# (pulling dhi.io images needs `docker login dhi.io`.) Each platform builds natively for its own
# musl target, so multi-platform builds need native builders or QEMU emulation.

# Release builds pin both bases by digest: --build-arg RUNTIME_IMAGE=dhi.io/static@sha256:...
ARG RUST_IMAGE=dhi.io/rust:1-dev
ARG RUNTIME_IMAGE=dhi.io/static

FROM ${RUST_IMAGE} AS build
ARG TARGETARCH
WORKDIR /src
# musl-tools: musl-gcc for aws-lc-sys. -dev images keep apt and a shell for exactly this.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN case "${TARGETARCH:-amd64}" in \
      amd64) echo x86_64-unknown-linux-musl > /rust-target ;; \
      arm64) echo aarch64-unknown-linux-musl > /rust-target ;; \
      *) echo "unsupported TARGETARCH ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
 && rustup target add "$(cat /rust-target)"
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(cat /rust-target)" \
 && CC="musl-gcc" cargo build --release --locked --target "$target" --bin hardened-csi-operator \
 && install -D -m 0755 "target/$target/release/hardened-csi-operator" /out/hardened-csi-operator

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/hardened-csi-operator /usr/local/bin/hardened-csi-operator
# The DHI nonroot user; numeric so runAsNonRoot can be verified without reading /etc/passwd.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/hardened-csi-operator"]
CMD ["run"]
