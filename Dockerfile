# Multi-stage build: compile in the Rust image, run as a non-root user in a slim Debian image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked && strip target/release/lakepool

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home lakepool
COPY --from=build /src/target/release/lakepool /usr/local/bin/lakepool
USER 10001
EXPOSE 6432
ENV LAKEPOOL_CONFIG=/etc/lakepool/lakepool.toml
ENTRYPOINT ["/usr/local/bin/lakepool"]
