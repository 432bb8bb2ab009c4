# syntax=docker/dockerfile:1.7
#
# The ekycd image: a release build on the Rust toolchain image, run on
# distroless (glibc and libgcc only: no shell, no package manager) as the
# unprivileged uid/gid 65532. Build from the repository root:
#
#   docker build -t ekycd:0.1.0 .
#
# Both bases are pinned by tag. In a real registry pin them by digest as well
# (FROM rust:1.95-bookworm@sha256:<digest>), so that a rebuild of the same
# source cannot pick up a different base; Renovate or Dependabot can keep the
# digests current.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and the target directory between
# builds (BuildKit); the binary is copied out of the cached target.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p ekyc-service --bin ekycd \
    && install -D -m 0755 target/release/ekycd /out/usr/local/bin/ekycd \
    && install -d -m 0750 /out/var/lib/ekycd \
    && install -d -m 0755 /out/etc/ekyc \
    && printf '%s\n' \
        '# Default configuration of the image; the Helm chart mounts its own.' \
        'listen = "0.0.0.0:50051"' \
        'metrics_listen = "0.0.0.0:9464"' \
        'health_listen = "0.0.0.0:8081"' \
        'data_dir = "/var/lib/ekycd"' \
        '' \
        '[log]' \
        'format = "json"' \
        > /out/etc/ekyc/ekycd.toml

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="ekycd" \
      org.opencontainers.image.description="eKYC identity verification gRPC service" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
COPY --from=build /out/usr/local/bin/ekycd /usr/local/bin/ekycd
COPY --from=build /out/etc/ekyc/ekycd.toml /etc/ekyc/ekycd.toml
# data_dir: with PostgreSQL nothing is written there, but it must be writable
# (in Kubernetes an emptyDir is mounted over it).
COPY --from=build --chown=65532:65532 /out/var/lib/ekycd /var/lib/ekycd
ENV EKYCD_CONFIG=/etc/ekyc/ekycd.toml
WORKDIR /var/lib/ekycd
USER 65532:65532
# gRPC, Prometheus /metrics, plaintext grpc.health.v1 for probes.
EXPOSE 50051 9464 8081
ENTRYPOINT ["/usr/local/bin/ekycd"]
CMD ["serve"]
