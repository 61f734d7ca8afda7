# The Sabot host image: `sabot serve` on port 8080, data in /var/lib/sabot.
#
#   docker build -t sabot .                                 # from source (multi-stage)
#   docker run -p 8080:8080 -v sabot-data:/var/lib/sabot -e SABOT_TOKEN=… sabot
#
# An already-built binary (what the tests do, so nothing recompiles in the image):
#
#   mkdir ctx && cp $CARGO_TARGET_DIR/release/sabot ctx/ && cp -r examples ctx/
#   docker build --target prebuilt -f Dockerfile -t sabot ctx
#
# BASE is the runtime base image: any Debian bookworm (glibc 2.36, libstdc++) image.
ARG BASE=debian:bookworm-slim

# ---- build from source ----
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev cmake libssl-dev librocksdb-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Debian's RocksDB, linked statically (scripts/packages.sh: sabot_rocksdb_env).
RUN export ROCKSDB_LIB_DIR=/usr/lib/$(gcc -print-multiarch) ROCKSDB_STATIC=1 ROCKSDB_INCLUDE_DIR=/usr/include \
        SNAPPY_LIB_DIR=/usr/lib/$(gcc -print-multiarch) SNAPPY_STATIC=1 \
 && rustup target add wasm32-wasip2 \
 && cargo build --release --locked -p sabot-host \
 && cargo build --release --locked --target wasm32-wasip2 -p fraud-rules \
 && mkdir -p /out/examples \
 && cp target/release/sabot /out/ \
 && cp -r examples/fraud-detection examples/kafka /out/examples/ \
 && cp target/wasm32-wasip2/release/fraud_rules.wasm /out/examples/fraud-detection/

# ---- what every runtime image has ----
FROM ${BASE} AS runtime-base
# CA certificates: the trust roots of HTTPS clients (object storage, Kafka over TLS, OAuth).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /var/lib/sabot sabot
ENV SABOT_LISTEN=0.0.0.0:8080 \
    SABOT_DATA_DIR=/var/lib/sabot \
    SABOT_SERVER=http://127.0.0.1:8080
VOLUME ["/var/lib/sabot"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["sabot", "health"]
USER sabot
WORKDIR /var/lib/sabot
ENTRYPOINT ["sabot"]
CMD ["serve"]

# ---- packaging a binary built outside (context: the binary `sabot` and `examples/`) ----
FROM runtime-base AS prebuilt
COPY --chown=root:root sabot /usr/local/bin/sabot
COPY examples /opt/sabot/examples

# ---- the default: built from source ----
FROM runtime-base AS runtime
COPY --from=build /out/sabot /usr/local/bin/sabot
COPY --from=build /out/examples /opt/sabot/examples
