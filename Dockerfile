# syntax=docker/dockerfile:1
#
# lakepool container image: compile in the Rust image, run as a fixed non-root user in a slim
# Debian image with nothing but the binary, CA roots (upstream TLS, workspace API) and the health
# check script.
#
#   docker build -t lakepool:dev .
#   docker run --rm -p 6432:6432 -p 9187:9187 \
#       -v "$PWD/lakepool.toml:/etc/lakepool/lakepool.toml:ro" \
#       -v "$PWD/secrets:/var/run/secrets/lakepool:ro" lakepool:dev
#
# The config must listen on 0.0.0.0 (not 127.0.0.1) to be reachable through -p, and set
# `[server] admin_listen = "0.0.0.0:9187"` for the HEALTHCHECK below. See docs/deploy.md.
# scripts/check-dockerfile.sh checks this file against the Kubernetes manifests offline.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# The build context has no .git: pass the commit for `lakepool --version`, e.g.
# `docker build --build-arg LAKEPOOL_COMMIT=$(git rev-parse --short=12 HEAD) .` (else "unknown").
ARG LAKEPOOL_COMMIT=""
# The registry cache only speeds up rebuilds (BuildKit); target/ stays in the layer so the
# runtime stage can copy the binary from where cargo puts it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked --bin lakepool \
    && strip target/release/lakepool \
    && target/release/lakepool --version

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 lakepool \
    && useradd --system --uid 10001 --gid 10001 \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin lakepool
COPY --from=builder /src/target/release/lakepool /usr/local/bin/lakepool
COPY --chmod=0755 scripts/healthcheck.sh /usr/local/bin/lakepool-healthcheck

LABEL org.opencontainers.image.title="lakepool" \
      org.opencontainers.image.description="PostgreSQL connection pooler for Databricks Lakebase" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

# Numeric, so Kubernetes' runAsNonRoot can verify it without a runAsUser.
USER 10001:10001
# 6432: PostgreSQL clients ([server] listen); 9187: /healthz, /readyz ([server] admin_listen).
EXPOSE 6432 9187
ENV LAKEPOOL_CONFIG=/etc/lakepool/lakepool.toml
# lakepool drains on SIGTERM for up to [server] shutdown_timeout, then exits 0; give
# `docker stop --time` more than that.
STOPSIGNAL SIGTERM
# Needs [server] admin_listen on port 9187 (any address: 0.0.0.0:9187 is reached on 127.0.0.1).
# Kubernetes ignores HEALTHCHECK and uses the probes in config/kubernetes instead.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/lakepool-healthcheck", "/healthz"]
ENTRYPOINT ["/usr/local/bin/lakepool"]
CMD ["--config", "/etc/lakepool/lakepool.toml"]
