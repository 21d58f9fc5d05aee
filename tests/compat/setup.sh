#!/usr/bin/env bash
# Installs the client libraries of the compatibility tests (tests/e2e/compat.rs and
# tests/e2e/pgbouncer_compat.rs):
#   - psycopg 3 and asyncpg into a venv at target/compat-venv (python/requirements.txt)
#   - prometheus-pgbouncer-exporter 2.1.2 with psycopg2-binary into a venv at
#     target/pgbouncer-exporter-venv (python/exporter-requirements.txt)
#   - node-postgres into tests/compat/node/node_modules (npm ci from package-lock.json)
# pgjdbc and a JDK come from Debian (libpostgresql-jdbc-java, default-jdk-headless; .ci/run
# installs them). Idempotent: does nothing when everything is already installed as pinned.
set -euo pipefail

cd "$(dirname "$0")/../.."
root=$PWD

die() {
    echo "tests/compat/setup.sh: $*" >&2
    exit 1
}

# Runs "$@" up to three times (network installs), 5 s apart.
retry() {
    local attempt
    for attempt in 1 2 3; do
        "$@" && return 0
        ((attempt == 3)) && return 1
        echo "==> '$*' failed, retrying in 5 s" >&2
        sleep 5
    done
}

# --- Python: psycopg 3 + asyncpg -------------------------------------------------------
venv=$root/target/compat-venv
req=$root/tests/compat/python/requirements.txt
stamp=$venv/.requirements.txt
if [[ -x $venv/bin/python ]] && cmp -s "$req" "$stamp"; then
    echo "==> compat venv up to date: $venv"
else
    # Debian's python3 (what .ci/run installs) unless COMPAT_PYTHON names another.
    python=${COMPAT_PYTHON:-}
    [[ -n $python ]] || { [[ -x /usr/bin/python3 ]] && python=/usr/bin/python3; } || python=python3
    command -v "$python" >/dev/null || die "python3 not found: apt-get install -y python3 python3-venv"
    if [[ ! -x $venv/bin/python ]]; then
        echo "==> creating $venv with $python"
        rm -rf "$venv"
        "$python" -m venv "$venv" || {
            rm -rf "$venv"
            die "$python -m venv failed: apt-get install -y python3-venv"
        }
    fi
    echo "==> pip install -r $req"
    retry "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" ||
        die "pip install failed (see above)"
    cp "$req" "$stamp"
fi

# --- Python: prometheus-pgbouncer-exporter (tests/e2e/pgbouncer_compat.rs) --------------
# Its own venv: installed with --no-deps (see the requirements file), which must not touch
# the compat venv.
exporter_venv=$root/target/pgbouncer-exporter-venv
exporter_req=$root/tests/compat/python/exporter-requirements.txt
exporter_stamp=$exporter_venv/.requirements.txt
if [[ -x $exporter_venv/bin/python ]] && cmp -s "$exporter_req" "$exporter_stamp"; then
    echo "==> exporter venv up to date: $exporter_venv"
else
    python=${COMPAT_PYTHON:-}
    [[ -n $python ]] || { [[ -x /usr/bin/python3 ]] && python=/usr/bin/python3; } || python=python3
    command -v "$python" >/dev/null || die "python3 not found: apt-get install -y python3 python3-venv"
    if [[ ! -x $exporter_venv/bin/python ]]; then
        echo "==> creating $exporter_venv with $python"
        rm -rf "$exporter_venv"
        "$python" -m venv "$exporter_venv" || {
            rm -rf "$exporter_venv"
            die "$python -m venv failed: apt-get install -y python3-venv"
        }
    fi
    echo "==> pip install --no-deps -r $exporter_req"
    retry "$exporter_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-deps -r "$exporter_req" || die "pip install failed (see above)"
    cp "$exporter_req" "$exporter_stamp"
fi

# --- Node: node-postgres ---------------------------------------------------------------
node_dir=$root/tests/compat/node
lock=$node_dir/package-lock.json
node_stamp=$node_dir/node_modules/.package-lock.json
if [[ -d $node_dir/node_modules/pg ]] && [[ -f $node_stamp ]] && [[ ! $lock -nt $node_stamp ]]; then
    echo "==> node_modules up to date: $node_dir/node_modules"
else
    command -v npm >/dev/null || die "npm not found: apt-get install -y nodejs npm"
    echo "==> npm ci in $node_dir"
    (cd "$node_dir" && retry npm ci --no-audit --no-fund --loglevel=error) ||
        die "npm ci failed (see above)"
fi

# --- Java: report only (installed by .ci/run as root) ----------------------------------
[[ -f /usr/share/java/postgresql.jar ]] ||
    echo "==> note: /usr/share/java/postgresql.jar missing: apt-get install -y libpostgresql-jdbc-java" >&2
command -v javac >/dev/null ||
    echo "==> note: javac missing: apt-get install -y default-jdk-headless" >&2
exit 0
