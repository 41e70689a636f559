# Builds topic-matcher (rocksdb and librdkafka compile from source).
FROM rust:1.88-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin topic-matcher

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/topic-matcher /usr/local/bin/topic-matcher
ENTRYPOINT ["/usr/local/bin/topic-matcher"]
