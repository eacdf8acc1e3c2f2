# syntax=docker/dockerfile:1
# One image per shop binary, from one Dockerfile:
#
#   docker build --build-arg SERVICE=order -t shop/order .
#
# SERVICE is one of order, inventory, payment, shipping, gateway, provider-sim, choreo (the operator
# CLI, which the init job runs). Stages: chef (the toolchain and cargo-chef), planner (the
# dependency recipe), cacher (dependencies only: a layer that changes only with Cargo.lock), build
# (the one binary), runtime (debian slim, a non-root user, curl for health checks), then a small
# stage per service with its port, defaults and entrypoint; the last stage picks one by SERVICE.
# Migrations are embedded in the binaries (sqlx::migrate!), so the runtime needs no files.

ARG SERVICE=order
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
# Empty: the newest cargo-chef; set it to pin one.
ARG CARGO_CHEF_VERSION=

FROM ${RUST_IMAGE} AS chef
ARG CARGO_CHEF_VERSION
# librdkafka is built from source by rdkafka-sys (features: tokio, and the default libz; no ssl,
# no cmake-build): a C toolchain, make via build-essential, python3 for its build helpers, and
# zlib's headers. cmake is there should a later feature switch to the cmake build.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake python3 zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked ${CARGO_CHEF_VERSION:+--version "$CARGO_CHEF_VERSION"}
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS cacher
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json

FROM chef AS build
ARG SERVICE
ENV SQLX_OFFLINE=true
COPY --from=cacher /src/target target
COPY --from=cacher /usr/local/cargo /usr/local/cargo
COPY . .
RUN cargo build --release --locked --bin "${SERVICE}" \
 && install -D -m 0755 "target/release/${SERVICE}" "/out/${SERVICE}"

FROM ${RUNTIME_IMAGE} AS runtime
# ca-certificates for TLS to a remote registry or broker; curl for the compose health checks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 shop \
 && useradd --system --uid 10001 --gid shop --no-create-home --home-dir /app shop \
 && mkdir /app && chown shop:shop /app
WORKDIR /app
ENV RUST_LOG=info
USER 10001:10001

FROM runtime AS svc-order
COPY --from=build /out/order /usr/local/bin/order
ENV HTTP_ADDR=0.0.0.0:8101
EXPOSE 8101
ENTRYPOINT ["/usr/local/bin/order"]

FROM runtime AS svc-inventory
COPY --from=build /out/inventory /usr/local/bin/inventory
ENV HTTP_ADDR=0.0.0.0:8102
EXPOSE 8102
ENTRYPOINT ["/usr/local/bin/inventory"]

FROM runtime AS svc-payment
COPY --from=build /out/payment /usr/local/bin/payment
ENV HTTP_ADDR=0.0.0.0:8103
EXPOSE 8103
ENTRYPOINT ["/usr/local/bin/payment"]

FROM runtime AS svc-shipping
COPY --from=build /out/shipping /usr/local/bin/shipping
ENV HTTP_ADDR=0.0.0.0:8104
EXPOSE 8104
ENTRYPOINT ["/usr/local/bin/shipping"]

FROM runtime AS svc-gateway
COPY --from=build /out/gateway /usr/local/bin/gateway
ENV HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gateway"]

FROM runtime AS svc-provider-sim
COPY --from=build /out/provider-sim /usr/local/bin/provider-sim
ENV PROVIDER_ADDR=0.0.0.0:8090
EXPOSE 8090
ENTRYPOINT ["/usr/local/bin/provider-sim"]

# The operator CLI: the init job runs `choreo topics apply --dir topics` and
# `choreo schemas register` from /app, so the specs and schemas travel with it, and
# `choreo trace` reads the saga's rules from sagas/.
FROM runtime AS svc-choreo
COPY --from=build /out/choreo /usr/local/bin/choreo
COPY --chown=10001:10001 topics/ /app/topics/
COPY --chown=10001:10001 schemas/ /app/schemas/
COPY --chown=10001:10001 sagas/ /app/sagas/
ENTRYPOINT ["/usr/local/bin/choreo"]

FROM svc-${SERVICE}
