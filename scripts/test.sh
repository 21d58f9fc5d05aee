#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test (unit,
# in-process and the end-to-end suite in tests/e2e, which starts its own
# throwaway PostgreSQL cluster on a free loopback port).
#
# Needs: a Rust toolchain with rustfmt and clippy, and PostgreSQL's server
# binaries (Debian: `apt-get install -y postgresql`; .ci/run does this).
# Extra arguments are passed to `cargo test` (e.g. `scripts/test.sh e2e::`).
set -euo pipefail

cd "$(dirname "$0")/.."

die() {
    echo "scripts/test.sh: $*" >&2
    exit 1
}

command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup)"
cargo fmt --version >/dev/null 2>&1 || die "rustfmt missing: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 || die "clippy missing: rustup component add clippy"

# Same lookup order as tests/e2e/support (PG_BIN_DIR, Debian layout, pg_config).
pg_bin=""
if [[ -n "${PG_BIN_DIR:-}" ]]; then
    pg_bin="$PG_BIN_DIR"
else
    pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -z "$pg_bin" ]] && command -v pg_config >/dev/null; then
        pg_bin="$(pg_config --bindir)"
    fi
fi
for tool in initdb pg_ctl psql pgbench; do
    [[ -n "$pg_bin" && -x "$pg_bin/$tool" ]] ||
        die "PostgreSQL binary '$tool' not found (looked in '${pg_bin:-nothing found}'); install with: apt-get install -y postgresql postgresql-contrib (or run .ci/run), or set PG_BIN_DIR"
done
if [[ "$(id -u)" == 0 ]]; then
    # initdb refuses to run as root; the harness runs the cluster as `postgres`.
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' OS user (created by the postgresql package)"
    command -v setpriv >/dev/null || die "setpriv (util-linux) not found"
fi
echo "==> PostgreSQL binaries: $pg_bin ($("$pg_bin/postgres" --version))"

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

echo "==> cargo test"
cargo test "$@"

# Deployment files, offline: the Dockerfile's stages and paths, and the Kubernetes manifests
# against the 1.30 schemas (kubernetes-validate from PyPI) with the lakepool.toml they carry.
echo "==> scripts/check-dockerfile.sh"
scripts/check-dockerfile.sh
echo "==> scripts/validate-manifests.sh"
LAKEPOOL_BIN=target/debug/lakepool scripts/validate-manifests.sh

# The README's quickstart command, end to end (cluster, workspace stand-in, lakepool, one
# query as the rotated Lakebase identity), with the debug binaries cargo test just built.
echo "==> scripts/quickstart.sh --smoke"
LAKEPOOL_BIN=target/debug/lakepool STANDIN_BIN=target/debug/lakepool-standin \
    LAKEPOOL_PORT="${QUICKSTART_PORT:-16432}" scripts/quickstart.sh --smoke
