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
#
# Profile-guided optimization, opt-in:
#
#   docker build --build-arg PGO=1 -t lakepool:dev .
#
# builds the binary with benches/pgo.sh instead of a plain `cargo build`: an instrumented build,
# pgbench training against a throwaway PostgreSQL cluster inside the build, then the optimized
# build (benches/README.md). On 2 cores that takes about 13 minutes instead of about 5, plus the
# downloads of PostgreSQL's packages and llvm-tools. They are installed in the builder stage
# only; the runtime image differs only in the binary. It is opt-in because the training runs a
# PostgreSQL server during the image build, and because the profile cannot be made once and
# reused: it must match the source and rustc's LLVM, so every such build trains again. If the
# training fails, the build fails.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# Used only by PGO=1 (pgo.sh sources lib.sh).
COPY benches/pgo.sh benches/lib.sh ./benches/
# The build context has no .git: pass the commit for `lakepool --version`, e.g.
# `docker build --build-arg LAKEPOOL_COMMIT=$(git rev-parse --short=12 HEAD) .` (else "unknown").
ARG LAKEPOOL_COMMIT=""
# 0: a plain release build. 1: benches/pgo.sh (see the top of this file). PostgreSQL's package
# would create a default cluster; create_main_cluster = false skips it (pgo.sh makes its own, on
# a free loopback port, and runs it as the postgres OS user, which the package creates, since the
# build runs as root). pgo.sh's builds do not pass --locked: `cargo fetch --locked` fails on a
# stale Cargo.lock instead. The build's /dev/shm is 64 MB; PostgreSQL's dynamic shared memory
# lives there, and the training (50 clients, no parallel queries) needs little of it.
ARG PGO=0
# The registry cache only speeds up rebuilds (BuildKit); target/ stays in the layer so the
# runtime stage can copy the binary from where cargo puts it (PGO=1 copies it there).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    if [ "$PGO" = 0 ]; then \
        cargo build --release --locked --bin lakepool; \
    elif [ "$PGO" = 1 ]; then \
        export DEBIAN_FRONTEND=noninteractive \
        && apt-get update \
        && apt-get install -y --no-install-recommends postgresql-common \
        && sed -ri 's/^#?(create_main_cluster) .*$/\1 = false/' \
            /etc/postgresql-common/createcluster.conf \
        && grep -q '^create_main_cluster = false' /etc/postgresql-common/createcluster.conf \
        && apt-get install -y --no-install-recommends postgresql iproute2 openssl \
        && rm -rf /var/lib/apt/lists/* \
        && rustup component add llvm-tools \
        && cargo fetch --locked \
        && pgo_out="$(bash benches/pgo.sh)" \
        && mkdir -p target/release \
        && cp "$(printf '%s\n' "$pgo_out" | tail -n 1)" target/release/lakepool \
        && rm -rf target/pgo-generate target/pgo; \
    else \
        echo "PGO must be 0 or 1, not '$PGO'" >&2; exit 1; \
    fi \
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
