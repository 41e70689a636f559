# Builds topic-matcher (rocksdb and librdkafka compile from source).
# The Rust version follows the lockfile: scripts/check-toolchain.sh (run by
# the test suite) fails when a locked dependency needs a newer one than this
# image or Cargo.toml's rust-version.
FROM rust:1.91-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libclang-dev cmake libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, in their own layer: a source change does not rebuild
# rocksdb and librdkafka.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/engine.rs \
    && cargo build --release --locked --bin topic-matcher \
    && rm -rf src benches
COPY . .
# The real sources are newer than the placeholders' build: cargo rebuilds
# only the crate itself.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin topic-matcher

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/topic-matcher --create-home matcher
COPY --from=build /src/target/release/topic-matcher /usr/local/bin/topic-matcher
USER matcher
VOLUME /var/lib/topic-matcher
EXPOSE 9464
# Liveness from /healthz (docs/operations.md §6), with bash's /dev/tcp: the
# image carries no HTTP client.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/topic-matcher"]
