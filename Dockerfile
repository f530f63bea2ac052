# syntax=docker/dockerfile:1
# The operator image: built in a Docker Hardened Images Rust builder, run on dhi.io/static.
#
# dhi.io/static holds no C library (CA certificates, tzdata and the nonroot user only), so the
# binary must be static. The builder is the Alpine (musl) variant of the DHI Rust image: Rust on
# musl links statically by default, with no cross toolchain. A glibc build would need a glibc
# runtime base and bring its loader and libc CVEs with it. The only C in the build is aws-lc-rs
# (rustls' crypto), compiled by build-base's gcc.
#
#   docker login dhi.io
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     -t ghcr.io/hardened-csi/hardened-csi-operator:0.1.0 .
# Each platform compiles natively (native builders or QEMU emulation). Release builds pin both
# base images by digest (FROM image:tag@sha256:...).

FROM dhi.io/rust:1-alpine3.23-dev AS build
# The -dev variant keeps apk and a shell for exactly this stage.
RUN apk add --no-cache build-base
WORKDIR /src
COPY . .
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin hardened-csi-operator \
 && install -D -m 0755 target/release/hardened-csi-operator /out/hardened-csi-operator

FROM dhi.io/static:20260413-alpine3.23
COPY --from=build /out/hardened-csi-operator /usr/local/bin/hardened-csi-operator
# The DHI nonroot user; numeric so the kubelet can verify runAsNonRoot without /etc/passwd.
USER 65532:65532
EXPOSE 8080
# Kubernetes probes /livez and /readyz (see the chart); the image has no shell or HTTP client
# for a Docker HEALTHCHECK to run.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/hardened-csi-operator"]
CMD ["run"]
