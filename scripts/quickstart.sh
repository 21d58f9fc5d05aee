#!/usr/bin/env bash
# Run lakepool locally in one command, no cloud account needed:
#
#   scripts/quickstart.sh            # builds lakepool, serves 127.0.0.1:6432
#   LAKEPOOL_PORT=7000 scripts/quickstart.sh
#   scripts/quickstart.sh --smoke    # start, run one query through lakepool, stop
#
# It builds lakepool (Rust 1.95 or newer; the first build takes a few minutes), creates a
# throwaway PostgreSQL cluster in a temp dir on a free loopback port (as the `postgres` OS
# user when run as root) that, like Lakebase, accepts the service principal's token logins
# over TLS only; starts the project's local stand-in for the Databricks workspace API
# (`lakepool-standin`), which mints 60-second database credentials; writes a lakepool config
# that logs in upstream as that service principal; prints the psql line to connect; and runs
# lakepool in the foreground. Watch the log: "database credential refreshed" appears every
# ~30 s while your psql session or a pgbench run keeps working.
#
# Ctrl-C (or SIGTERM) once: lakepool drains gracefully and exits; a second Ctrl-C stops it at
# once. Then, and on any error half-way, PostgreSQL is stopped first and the temp dir removed,
# also when the output is piped (`| tee log`: the pipe may die first, so SIGPIPE is ignored).
# lakepool and the stand-in run in their own sessions, so the terminal's Ctrl-C reaches only
# this script, which passes exactly one signal on per Ctrl-C.
#
# Env: LAKEPOOL_PORT (default 6432; another free port is used when it is taken);
# QUICKSTART_LIFETIME (credential lifetime in seconds, default 60); LAKEPOOL_BIN /
# STANDIN_BIN to use existing binaries instead of `cargo build --release`.
set -euo pipefail

cd "$(dirname "$0")/.."
repo="$(pwd)"
listen_port="${LAKEPOOL_PORT:-6432}"
lifetime="${QUICKSTART_LIFETIME:-60}"
sp_id="quickstart-sp"
sp_app_id="0c5e8a3e-7d1b-4f0a-9b6e-quickstart01"
smoke=0
[[ "${1:-}" == "--smoke" ]] && smoke=1
# The Rust lakepool needs (edition 2024, let chains; parking_lot 0.13 needs 1.95).
rust_min="1.95"

# Output may go to a pipe that dies first (`| tee` on Ctrl-C): writes then fail instead of
# killing the script, and messages are best effort.
trap '' PIPE
say() { echo "==> $*" >&2 2>/dev/null || true; }
die() {
    echo "quickstart: $*" >&2 2>/dev/null || true
    exit 1
}

# --- clean-up: always, PostgreSQL first -------------------------------------------------
dir=""
data=""
pg_bin=""
as_owner=()
pg_started=0
lp_pid=""
standin_pid=""
signals=0

# Stops `pid` with SIGTERM, and SIGKILL if it is still there after `secs` seconds.
stop_pid() {
    local pid="$1" secs="$2"
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

cleanup() {
    local rc=$?
    set +e
    # Nothing interrupts the clean-up.
    trap '' INT TERM HUP
    if ((pg_started)); then
        say "stopping PostgreSQL"
        "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$data" stop -m fast -w >/dev/null 2>&1
    fi
    [[ -n "$lp_pid" ]] && stop_pid "$lp_pid" 15
    [[ -n "$standin_pid" ]] && stop_pid "$standin_pid" 5
    if [[ -n "$dir" ]]; then
        rm -rf "$dir"
        say "removed $dir"
    fi
    exit "$rc"
}
trap cleanup EXIT

# A signal while lakepool runs is passed on to it, once per signal: the first starts its
# graceful drain, a second makes it exit at once. Before lakepool runs, it ends the script.
on_signal() {
    local sig="$1" code="$2"
    if [[ -n "$lp_pid" ]] && kill -0 "$lp_pid" 2>/dev/null; then
        signals=$((signals + 1))
        if ((signals == 1)); then
            say "stopping lakepool: it drains gracefully (Ctrl-C again to stop it at once)"
        fi
        # A hang-up of the terminal asks for a stop, not for lakepool's reload.
        [[ "$sig" == HUP ]] && sig=TERM
        kill -s "$sig" "$lp_pid" 2>/dev/null || true
        # Explicitly 0: a bare `return` in a trap returns the interrupted `wait`'s status,
        # which `set -e` would turn into an exit.
        return 0
    fi
    exit "$code"
}
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

# True if something accepts connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prints a loopback port with no listener, below Linux's ephemeral range (32768-60999): the
# kernel picks the local ports of outgoing connections there, so a port in it can be taken
# (and fail to bind) without any listener. A bind that still fails is retried on another.
pick_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 12768))
        port_busy "$p" || {
            echo "$p"
            return 0
        }
    done
    return 1
}

# Runs "$@" in a session of its own (when setsid exists): the terminal's Ctrl-C then
# reaches only this script, which decides what to pass on.
detached() {
    if command -v setsid >/dev/null; then
        exec setsid "$@"
    fi
    exec "$@"
}

find_pg_bin() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -z "$d" ]] && command -v pg_config >/dev/null; then
        d="$(pg_config --bindir)"
    fi
    [[ -n "$d" && -x "$d/initdb" ]] && echo "$d"
}

# --- Rust and the binaries, before anything is created -----------------------------------
if [[ -n "${LAKEPOOL_BIN:-}" ]]; then
    bin="$LAKEPOOL_BIN"
    standin="${STANDIN_BIN:-$(dirname "$bin")/lakepool-standin}"
else
    command -v cargo >/dev/null ||
        die "cargo not found: lakepool needs Rust $rust_min or newer (edition 2024). Install it with rustup (https://rustup.rs), open a new shell, and run this again; or set LAKEPOOL_BIN to a lakepool binary"
    rust="$(rustc --version 2>/dev/null | awk '{print $2}')"
    IFS=. read -r r_major r_minor _ <<<"${rust:-0.0.0}"
    IFS=. read -r m_major m_minor <<<"$rust_min"
    if ((r_major < m_major || (r_major == m_major && r_minor < m_minor))); then
        die "Rust ${rust:-(rustc not found)} is too old: lakepool needs $rust_min or newer (edition 2024); run: rustup update stable"
    fi
    say "building lakepool with Rust $rust (cargo build --release; the first build takes a few minutes)"
    cargo build --release --bins
    bin="$repo/target/release/lakepool"
    standin="$repo/target/release/lakepool-standin"
fi
[[ -x "$bin" ]] || die "lakepool binary not found at $bin"
[[ -x "$standin" ]] || die "lakepool-standin binary not found at $standin"
command -v openssl >/dev/null || die "openssl not found (apt-get install -y openssl)"

# --- PostgreSQL binaries ------------------------------------------------------------------
pg_bin="$(find_pg_bin || true)"
if [[ -z "$pg_bin" ]]; then
    [[ "$(id -u)" == 0 ]] || die "PostgreSQL not installed; run: sudo apt-get install -y postgresql"
    say "installing PostgreSQL (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends postgresql
    # The package may start Debian's own cluster; it is not used here.
    pg_bin="$(find_pg_bin)" || die "initdb still not found after installing postgresql"
fi

# initdb and postgres refuse to run as root: use the postgres OS user then.
if [[ "$(id -u)" == 0 ]]; then
    as_owner=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi

if port_busy "$listen_port"; then
    wanted=$listen_port
    listen_port="$(pick_port)" || die "127.0.0.1:$wanted is in use and no other port is free"
    say "127.0.0.1:$wanted is in use: lakepool will listen on 127.0.0.1:$listen_port instead"
fi

# --- throwaway cluster -------------------------------------------------------------------
dir="$(mktemp -d /tmp/lakepool-quickstart.XXXXXX)"
data="$dir/data"

rand() { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
super_pw="$(rand)"
app_pw="$(rand)"
sp_secret="$(rand)"

[[ "$(id -u)" == 0 ]] && chown postgres: "$dir"
printf '%s\n' "$super_pw" >"$dir/pwfile"
chmod 600 "$dir/pwfile"
[[ "$(id -u)" == 0 ]] && chown postgres: "$dir/pwfile"

say "creating a PostgreSQL cluster in $data"
(cd "$dir" && "${as_owner[@]}" "$pg_bin/initdb" -D "$data" -U postgres \
    --auth=scram-sha-256 --pwfile="$dir/pwfile" -E UTF8 --locale=C --no-sync >/dev/null)
rm -f "$dir/pwfile"
# TLS with a throwaway CA, as Lakebase requires TLS for token logins.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=quickstart CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$data/server.key" -out "$dir/server.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/san.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/san.ext" -out "$data/server.crt" >/dev/null 2>&1
chmod 600 "$data/server.key"
[[ "$(id -u)" == 0 ]] && chown postgres: "$data/server.key" "$data/server.crt"
cat >"$data/pg_hba.conf" <<HBA
local all all scram-sha-256
hostnossl all +lakebase_oauth 127.0.0.1/32 reject
host all all 127.0.0.1/32 scram-sha-256
HBA
# A port that someone takes between the check and PostgreSQL's bind is retried.
for attempt in 1 2 3 4 5; do
    pg_port="$(pick_port)" || die "no free port below 32768 for PostgreSQL"
    rm -f "$dir/postgres.log"
    # pg_ctl starts the server in a session of its own: Ctrl-C does not reach it.
    if (cd "$dir" && "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $dir -c ssl=on" start >/dev/null); then
        pg_started=1
        break
    fi
    if ((attempt < 5)) && grep -q "could not bind" "$dir/postgres.log" 2>/dev/null; then
        say "port $pg_port was taken before PostgreSQL could bind it; trying another"
        continue
    fi
    die "PostgreSQL failed to start; log:
$(cat "$dir/postgres.log" 2>/dev/null)"
done
say "PostgreSQL listens on 127.0.0.1:$pg_port"

PGPASSWORD="$super_pw" "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres >/dev/null <<SQL
CREATE ROLE lakebase_oauth NOLOGIN;
CREATE ROLE "$sp_app_id" LOGIN IN ROLE lakebase_oauth;
CREATE DATABASE appdb OWNER "$sp_app_id";
SQL

# --- workspace API stand-in ----------------------------------------------------------------
# It binds port 0 (the kernel picks a free port) and logs the address it got.
say "starting the workspace API stand-in (credentials live ${lifetime}s)"
detached env STANDIN_PG_PW="$super_pw" "$standin" --listen "127.0.0.1:0" \
    --pg-host 127.0.0.1 --pg-port "$pg_port" --pg-user postgres --pg-password-env STANDIN_PG_PW \
    --pg-ca-file "$dir/ca.crt" \
    --client "$sp_id:$sp_secret=$sp_app_id" --instance "quickstart=127.0.0.1" \
    --lifetime "$lifetime" 2>"$dir/standin.log" &
standin_pid=$!
standin_port=""
for _ in $(seq 1 200); do
    # The log may not exist yet: the redirection happens in the background job.
    standin_port="$(sed -n 's/.*listening addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' \
        "$dir/standin.log" 2>/dev/null || true)"
    [[ -n "$standin_port" ]] && break
    kill -0 "$standin_pid" 2>/dev/null || die "the stand-in exited; log:
$(cat "$dir/standin.log")"
    sleep 0.1
done
[[ -n "$standin_port" ]] || die "the stand-in did not report its address; log:
$(cat "$dir/standin.log")"

config="$dir/lakepool.toml"
write_config() {
    cat >"$config" <<TOML
# Written by scripts/quickstart.sh; removed on exit.
[server]
listen = "127.0.0.1:$listen_port"
# Loopback only, so plaintext is acceptable for a local trial.
client_tls = "disable"
# Ctrl-C: clients get this long to finish (a second Ctrl-C stops at once).
shutdown_timeout = 10

[pool]
pool_mode = "transaction"
pool_size = 10

[[users]]
name = "app"
password = "$app_pw"

# The local stand-in plays the Databricks workspace: lakepool logs in to it as a
# service principal (OAuth M2M), mints database credentials for the instance,
# and rotates them before they expire.
[workspace]
host = "http://127.0.0.1:$standin_port"
client_id = "$sp_id"
client_secret_env = "QUICKSTART_SP_SECRET"

[[databases]]
name = "app"
instance = "quickstart"       # host = the instance's read_write_dns
port = $pg_port
dbname = "appdb"
tls = "verify-full"
ca_file = "$dir/ca.crt"
TOML
    chmod 600 "$config"
}
export QUICKSTART_SP_SECRET="$sp_secret"

# Starts lakepool on $listen_port and waits until it listens. Returns 1 when it exited during
# startup (its error is in its log above), with lp_pid cleared.
start_lakepool() {
    write_config
    "$bin" check --config "$config" >/dev/null || die "lakepool rejected the generated config ($config)"
    detached "$bin" --config "$config" &
    lp_pid=$!
    for _ in $(seq 1 300); do
        kill -0 "$lp_pid" 2>/dev/null || break
        port_busy "$listen_port" && return 0
        sleep 0.1
    done
    if kill -0 "$lp_pid" 2>/dev/null; then
        die "lakepool did not listen on 127.0.0.1:$listen_port within 30 s"
    fi
    wait "$lp_pid" || true
    lp_pid=""
    return 1
}

# A listen port taken between the check and lakepool's bind is retried on another.
for attempt in 1 2 3 4 5; do
    start_lakepool && break
    if ((attempt < 5)) && port_busy "$listen_port"; then
        wanted=$listen_port
        listen_port="$(pick_port)" || die "no free port below 32768 for lakepool"
        say "127.0.0.1:$wanted was taken: trying 127.0.0.1:$listen_port"
        continue
    fi
    die "lakepool exited during startup (its error is above)"
done

connect="host=127.0.0.1 port=$listen_port user=app dbname=app password=$app_pw"

# Waits for lakepool to exit, whatever signals arrive meanwhile (each is passed on by
# on_signal); returns its exit status.
wait_lakepool() {
    local rc
    while :; do
        rc=0
        wait "$lp_pid" || rc=$?
        kill -0 "$lp_pid" 2>/dev/null || break
    done
    lp_pid=""
    return "$rc"
}

if ((smoke)); then
    out=""
    for _ in $(seq 1 50); do
        out="$("$pg_bin/psql" -X -At "$connect sslmode=disable connect_timeout=10" \
            -c "SELECT 'lakepool ok as ' || current_user" 2>&1 || true)"
        [[ "$out" == "lakepool ok"* ]] && break
        sleep 0.2
    done
    [[ "$out" == "lakepool ok as $sp_app_id" ]] || die "smoke query through lakepool failed: $out"
    # What one Ctrl-C does: a graceful drain, exit status 0.
    kill -INT "$lp_pid"
    rc=0
    wait_lakepool || rc=$?
    ((rc == 0)) || die "lakepool exited with status $rc after one SIGINT"
    say "smoke test passed"
    exit 0
fi

cat >&2 <<MSG || true

lakepool is running on 127.0.0.1:$listen_port (PostgreSQL on 127.0.0.1:$pg_port,
workspace stand-in on 127.0.0.1:$standin_port). Upstream logins use ${lifetime}-second
OAuth database credentials that lakepool rotates: watch for "database credential refreshed".
Connect with:

    psql "$connect"

or keep it busy across several rotations:

    PGPASSWORD=$app_pw pgbench -h 127.0.0.1 -p $listen_port -U app -i app
    PGPASSWORD=$app_pw pgbench -h 127.0.0.1 -p $listen_port -U app -c 10 -T 180 app

Press Ctrl-C to stop: lakepool drains gracefully, then the cluster is removed.

MSG
rc=0
wait_lakepool || rc=$?
exit "$rc"
