#!/usr/bin/env bash
# The project's test command, complete from a fresh clone: it sets up what it needs itself
# (the client libraries of the compatibility tests and the Python venvs, idempotently), then
# runs formatting, lints, every test (unit, in-process and the end-to-end suite in tests/e2e,
# which starts its own throwaway PostgreSQL cluster on a free loopback port), the deployment
# and monitoring checks, and the quickstart end to end.
#
# Every step runs even when an earlier one failed; a summary at the end lists each step's
# result and the exit status is 1 when any failed.
#
# Needs (Debian packages; `bash .ci/run` installs them as root, then runs this script): a Rust
# toolchain >= 1.95 with rustfmt and clippy, postgresql and postgresql-contrib (initdb,
# pg_ctl, psql, pgbench), python3 with python3-venv, nodejs and npm, a JDK with
# libpostgresql-jdbc-java, openssl, and prometheus (promtool). Network access to PyPI and
# the npm registry the first time (the venvs and node_modules are kept under target/ and
# tests/compat/node/).
#
# Extra arguments are passed to `cargo test` (e.g. `scripts/test.sh e2e::`).
set -uo pipefail

cd "$(dirname "$0")/.."

die() {
    echo "scripts/test.sh: $*" >&2
    exit 1
}

# --- prerequisites: all missing ones at once, with the command that installs them ----------
missing=()
need() { # need <command or path> <what to install>
    if [[ "$1" == /* ]]; then
        [[ -e "$1" ]] || missing+=("$2")
    else
        command -v "$1" >/dev/null 2>&1 || missing+=("$2")
    fi
}
need cargo "a Rust toolchain >= 1.95 (rustup: https://rustup.rs)"
if command -v cargo >/dev/null 2>&1; then
    cargo fmt --version >/dev/null 2>&1 || missing+=("rustfmt: rustup component add rustfmt")
    cargo clippy --version >/dev/null 2>&1 || missing+=("clippy: rustup component add clippy")
fi
# Same lookup order as tests/e2e/support (PG_BIN_DIR, Debian layout, pg_config).
pg_bin="${PG_BIN_DIR:-}"
if [[ -z "$pg_bin" ]]; then
    pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -z "$pg_bin" ]] && command -v pg_config >/dev/null; then
        pg_bin="$(pg_config --bindir)"
    fi
fi
for tool in initdb pg_ctl psql pgbench; do
    [[ -n "$pg_bin" && -x "$pg_bin/$tool" ]] || {
        missing+=("PostgreSQL's $tool: apt-get install -y postgresql postgresql-contrib (or set PG_BIN_DIR)")
        break
    }
done
if [[ "$(id -u)" == 0 ]]; then
    # initdb refuses to run as root; the harness runs the cluster as `postgres`.
    id postgres >/dev/null 2>&1 || missing+=("the 'postgres' OS user: apt-get install -y postgresql")
    need setpriv "setpriv: apt-get install -y util-linux"
fi
need openssl "openssl: apt-get install -y openssl"
need promtool "promtool: apt-get install -y prometheus"
need /usr/bin/python3 "python3: apt-get install -y python3 python3-venv"
need npm "npm: apt-get install -y nodejs npm"
need javac "a JDK: apt-get install -y default-jdk-headless"
need /usr/share/java/postgresql.jar "pgjdbc: apt-get install -y libpostgresql-jdbc-java"
if ((${#missing[@]})); then
    printf 'scripts/test.sh: missing prerequisites (as root, `bash .ci/run` installs them all):\n' >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
fi
echo "==> PostgreSQL binaries: $pg_bin ($("$pg_bin/postgres" --version))"
echo "==> $(rustc --version 2>/dev/null || echo 'rustc: unknown version')"

# --- steps -----------------------------------------------------------------------------
results=()
failed=0
step() { # step <name> <command...>
    local name="$1" start rc
    shift
    echo
    echo "==> $name"
    start=$SECONDS
    "$@"
    rc=$?
    if ((rc == 0)); then
        results+=("ok     $name ($((SECONDS - start)) s)")
    else
        results+=("FAILED $name (exit $rc, $((SECONDS - start)) s)")
        failed=$((failed + 1))
    fi
}

# Client libraries of tests/e2e/compat.rs and the PgBouncer exporter test (a venv and
# node_modules; does nothing when they are up to date).
step "client libraries (tests/compat/setup.sh)" tests/compat/setup.sh
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy --all-targets -- -D warnings" cargo clippy --all-targets -- -D warnings
step "cargo test" cargo test "$@"

# Deployment files, offline: the Kubernetes manifests against the 1.30 schemas
# (kubernetes-validate from PyPI, in a venv this makes) with the lakepool.toml they carry,
# then the Dockerfile's stages and paths (its checker uses that venv's PyYAML).
step "scripts/validate-manifests.sh" env LAKEPOOL_BIN=target/debug/lakepool scripts/validate-manifests.sh
step "scripts/check-dockerfile.sh" scripts/check-dockerfile.sh

# Monitoring assets: the alerting rules parse, and fire (and stay quiet) where their unit
# tests say. The Grafana dashboard (and the rules' metric names) are checked against the real
# /metrics by `cargo test` (tests/e2e/monitoring.rs).
step "promtool check rules" promtool check rules config/prometheus/lakepool-alerts.yml
step "promtool test rules" promtool test rules config/prometheus/lakepool-alerts.test.yml

# The README's quickstart command, end to end (cluster, workspace stand-in, lakepool, one
# query as the rotated Lakebase identity), then Ctrl-C once (graceful drain) and twice, with
# the output piped, and a failure half-way: each must stop PostgreSQL and remove its files.
# Uses the debug binaries cargo test just built.
step "scripts/quickstart-test.sh" env LAKEPOOL_BIN=target/debug/lakepool \
    STANDIN_BIN=target/debug/lakepool-standin scripts/quickstart-test.sh

echo
echo "==> summary"
printf '    %s\n' "${results[@]}"
total=${#results[@]}
echo "steps: $((total - failed)) passed, $failed failed"
((failed == 0))
