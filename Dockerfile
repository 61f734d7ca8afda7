# Sabot host image.
#
#   docker build -t sabot .                       # build from source (multi-stage)
#   docker run --rm sabot run examples/fraud-detection/pipeline.toml
#
# BASE is the runtime base image (Debian bookworm slim by default).
ARG BASE=debian:bookworm-slim

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN rustup target add wasm32-wasip2 \
 && cargo build --release --locked -p sabot-host \
 && cargo build --release --locked --target wasm32-wasip2 -p fraud-rules \
 && cp target/wasm32-wasip2/release/fraud_rules.wasm examples/fraud-detection/

FROM ${BASE} AS runtime
RUN useradd --system --create-home --home-dir /var/lib/sabot sabot
COPY --from=build /src/target/release/sabot /usr/local/bin/sabot
COPY --from=build --chown=sabot /src/examples /app/examples
USER sabot
WORKDIR /app
ENV SABOT_CACHE_DIR=/var/lib/sabot/cache
VOLUME ["/var/lib/sabot"]
ENTRYPOINT ["sabot"]
CMD ["run", "examples/fraud-detection/pipeline.toml"]
