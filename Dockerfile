# Multi-stage build of the outrigger sidecar (the "Production sidecar" issue completes it).
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked

FROM debian:bookworm-slim
COPY --from=build /src/target/release/outrigger /usr/local/bin/outrigger
COPY conf /etc/outrigger/conf
COPY static /etc/outrigger/static
USER 101:101
EXPOSE 8080
ENTRYPOINT ["outrigger"]
CMD ["-c", "/etc/outrigger/conf/outrigger.yaml"]
