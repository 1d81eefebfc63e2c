# syntax=docker/dockerfile:1
# outrigger: the caching reverse-proxy sidecar (Pingora), as a container image.
#
#   docker build -t ghcr.io/outrigger/outrigger:0.1.0 .
#
# Stage 1 builds the release binary on Debian 12; stage 2 is distroless "cc" (Debian 12 glibc +
# libgcc, no shell, no package manager): `ldd target/release/outrigger` lists only libgcc_s,
# libm, libc and the loader, so nothing else is needed at run time. The image runs as 101:101 and
# works with a read-only root filesystem: it writes only the cache directory
# (OUTRIGGER_CACHE_DIR, an emptyDir in Kubernetes) and, if OUTRIGGER_PID_FILE is set, the pid file.
# deploy/check.sh checks that every path copied from the build context below exists.

# The toolchain is pinned to the one build/text-order.txt was generated with (its symbol names
# carry rustc's hashes; with another rustc the binary builds the same but without that layout).
FROM rust:1.95-bookworm AS build
# cmake (with the image's gcc): pingora-core's flate2/zlib-ng build. Unpinned on purpose: the
# bookworm archive only carries the current cmake.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Everything cargo reads: the manifest names bench targets (`[[bench]]`), whose files must exist
# even for `cargo build`, so benches/ and tests/ come along (they are not compiled here).
COPY Cargo.toml Cargo.lock build.rs ./
COPY build ./build
COPY src ./src
COPY benches ./benches
COPY tests ./tests
# BuildKit cache mounts keep the crates.io downloads and the compiled dependencies between builds
# on the same builder, so a source edit recompiles only the crate. The binary is copied out of the
# cached target/ (which is not part of the layer).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
 && install -D -m 0755 target/release/outrigger /out/outrigger \
 && /out/outrigger --version

# Fail the build on a shipped config the binary rejects.
COPY conf ./conf
COPY static ./static
RUN /out/outrigger -t -c conf/outrigger.yaml \
 && /out/outrigger -t -c conf/static-api.yaml \
 && mkdir -p /staging/cache

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/outrigger /usr/local/bin/outrigger
COPY conf /etc/outrigger/conf
COPY static /etc/outrigger/static
# An empty cache directory owned by the runtime user, for `docker run` without a volume; in
# Kubernetes an emptyDir is mounted over it.
COPY --from=build --chown=101:101 /staging/cache/ /var/cache/outrigger/
ENV OUTRIGGER_CACHE_DIR=/var/cache/outrigger
USER 101:101
# 8080: the proxy (conf/outrigger.yaml; conf/static-api.yaml listens on 8081);
# 9145: the admin listener (/healthz, /readyz, /metrics).
EXPOSE 8080 9145
ENTRYPOINT ["outrigger"]
CMD ["-c", "/etc/outrigger/conf/outrigger.yaml"]
