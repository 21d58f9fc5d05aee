# Shared by the benchmark scripts in this directory (sourced, not run):
# tools, a temp dir with cleanup on exit, loopback ports, a throwaway
# PostgreSQL cluster with a test certificate, and PgBouncer / lakepool
# instances started from generated configs.
#
# A script sets `me` (its name, for messages) before sourcing this file, then
# calls bench_init. Every process started here is stopped by the EXIT trap.
# shellcheck shell=bash

say() { echo "==> $*" >&2; }
warn() { echo "$me: warning: $*" >&2; }
die() {
    echo "$me: $*" >&2
    exit 1
}

# Checks that each named variable holds a whole number (0 allowed for those
# listed in $zero_ok).
check_numbers() {
    local v
    for v in "$@"; do
        [[ "${!v}" =~ ^[0-9]+$ && ("${!v}" != 0 || " ${zero_ok:-} " == *" $v "*) ]] ||
            die "$v must be a whole number (got '${!v}')"
    done
}

bench_pw="benchpw" # throwaway cluster on loopback only; removed on exit
pool_size="${POOL_SIZE:-20}"
scale="${SCALE:-10}"

# --- tools ---------------------------------------------------------------------
find_pg_bin() {
    local d
    d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
        sort -V | tail -n 1 || true)"
    if [[ -z "$d" ]] && command -v pg_config >/dev/null; then
        d="$(pg_config --bindir)"
    fi
    [[ -n "$d" && -x "$d/initdb" ]] && echo "$d"
}

bench_tools() {
    pg_bin="$(find_pg_bin)" || die "PostgreSQL server binaries not found (apt-get install postgresql)"
    pgbench="$pg_bin/pgbench"
    psql="$pg_bin/psql"
    [[ -x "$pgbench" ]] || die "pgbench not found in $pg_bin"
    # PGBOUNCER_BIN: e.g. PgBouncer 1.25 built from its release tag (see
    # benches/README.md); Debian's package is the default. A script that runs no
    # PgBouncer sets needs_pgbouncer=0.
    pgbouncer_src="" pgbouncer_version="" pgbouncer_prepared=0 pgbouncer_bin=""
    if [[ "${needs_pgbouncer:-1}" == 1 ]]; then
        pgbouncer_src="${PGBOUNCER_BIN:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}"
        [[ -x "$pgbouncer_src" ]] || die "pgbouncer not found (apt-get install pgbouncer, or set PGBOUNCER_BIN)"
        pgbouncer_version="$("$pgbouncer_src" --version | awk 'NR == 1 { print $2 }')"
        # max_prepared_statements (prepared statements in transaction mode) is 1.21+.
        printf '%s\n1.21\n' "$pgbouncer_version" | sort -V -C -r 2>/dev/null && pgbouncer_prepared=1
    fi
    command -v ss >/dev/null || die "ss (iproute2) is needed to count connections"
    command -v openssl >/dev/null || die "openssl is needed for the test certificate"
    clk_tck="$(getconf CLK_TCK)"

    # initdb, postgres and pgbouncer refuse to run as root. setpriv execs
    # (unlike runuser, which forks), so `$!` of a background job is the
    # daemon itself and its /proc/<pid>/stat is the one we want.
    as_owner=()
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' OS user"
        as_owner=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    fi

    # Every client socket needs a descriptor in the client and in the pooler:
    # raise the soft limit to the hard one (inherited by both poolers).
    local hard
    hard="$(ulimit -Hn)"
    [[ "$hard" == unlimited ]] && hard=1048576
    if (($(ulimit -n) < hard)); then
        ulimit -n "$hard" 2>/dev/null || warn "cannot raise the open files limit to $hard"
    fi
}

# --- temp dir, cleanup -----------------------------------------------------------
# Stops a child process: TERM, then KILL if it has not exited after 10 s.
stop_pid() {
    local pid="$1"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

# Processes the cleanup stops besides the poolers in PID[] (a pgbench run in
# flight, perf): track when started, untrack once reaped, so a recycled pid
# is never signalled.
declare -A PID PORT KIND EXTRA HOST

# CLIENT_LEG=unix: pgbench reaches the plain-TCP poolers, and PostgreSQL when
# direct, through Unix-domain sockets instead of loopback TCP; the server leg
# stays TCP. What a sidecar sharing a socket directory with its app gets.
client_leg="${CLIENT_LEG:-tcp}"

# client_host NAME: pgbench's -h for pooler NAME, or for "direct".
client_host() {
    if [[ "$1" == direct ]]; then
        if [[ "$client_leg" == unix ]]; then echo "$dir"; else echo 127.0.0.1; fi
    else
        echo "${HOST[$1]:-127.0.0.1}"
    fi
}

# socket_dir NAME TLS: a directory for pooler NAME's socket when the client
# leg is a Unix socket and the pooler is plain (empty otherwise).
socket_dir() {
    [[ "$client_leg" == unix && "$2" == 0 ]] || return 0
    mkdir -p "$dir/sock-$1"
    [[ "$(id -u)" == 0 ]] && chown postgres: "$dir/sock-$1"
    echo "$dir/sock-$1"
}

# wait_socket DIR PORT PID: until the pooler's socket file exists.
wait_socket() {
    local i
    for ((i = 0; i < 300; i++)); do
        [[ -S "$1/.s.PGSQL.$2" ]] && return 0
        kill -0 "$3" 2>/dev/null || die "pid $3 exited before creating its socket in $1"
        sleep 0.1
    done
    die "no socket $1/.s.PGSQL.$2 within 30 s"
}
track() { EXTRA[$1]=1; }
untrack() { unset "EXTRA[$1]"; }

bench_cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${!EXTRA[@]}"; do stop_pid "$p"; done
    for p in "${PID[@]}"; do stop_pid "$p"; done
    if ((pg_started)); then
        "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$data" stop -m immediate -w >/dev/null 2>&1 || true
    fi
    if [[ "${KEEP_DIR:-0}" == 1 ]]; then
        say "kept $dir"
    else
        rm -rf "$dir"
    fi
    exit "$rc"
}

bench_init() {
    bench_tools
    dir="$(mktemp -d "/tmp/lakepool-$me.XXXXXX")"
    chmod 755 "$dir"
    data="$dir/data"
    pg_started=0
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # All client connections go to loopback; PG* variables from the caller's
    # environment must not change that. Plain TCP unless a run says otherwise.
    unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGOPTIONS PGSSLMODE PGREQUIRESSL \
        PGSSLMINPROTOCOLVERSION PGCHANNELBINDING
    export PGSSLMODE=disable PGCONNECT_TIMEOUT=10 PGPASSWORD="$bench_pw"
    # The binaries are copied into the temp dir: a concurrent rebuild cannot
    # swap them mid-run, and the postgres OS user can run PgBouncer's.
    if [[ -n "$pgbouncer_src" ]]; then
        cp "$pgbouncer_src" "$dir/pgbouncer"
        pgbouncer_bin="$dir/pgbouncer"
    fi
    build_lakepool
}

# --- ports -----------------------------------------------------------------------
# True if something accepts connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prints a free loopback port. Listening ports stay below 32768: 32768-60999
# is Linux's ephemeral range, where the clients' own ports come from.
taken_ports=" "
next_port=$((20000 + RANDOM % 8000))
free_port() {
    local p
    for ((p = next_port; p < next_port + 2000 && p < 32768; p++)); do
        [[ "$taken_ports" == *" $p "* ]] && continue
        if ! port_busy "$p" && ! ss -Htln "sport = :$p" | grep -q .; then
            taken_ports+="$p "
            next_port=$((p + 1))
            echo "$p"
            return 0
        fi
    done
    die "no free loopback port in $next_port-$((next_port + 1999))"
}

# Waits until 127.0.0.1:$1 accepts connections; fails if process $2 dies first.
wait_port() {
    local port="$1" pid="$2" what="$3"
    for _ in $(seq 1 300); do
        port_busy "$port" && return 0
        kill -0 "$pid" 2>/dev/null || die "$what exited during startup (see $dir)"
        sleep 0.1
    done
    die "$what did not listen on 127.0.0.1:$port within 30 s"
}

# --- lakepool binary -----------------------------------------------------------
lakepool_desc=""
build_lakepool() {
    if [[ -n "${LAKEPOOL_BIN:-}" ]]; then
        [[ -x "$LAKEPOOL_BIN" ]] || die "LAKEPOOL_BIN=$LAKEPOOL_BIN is not executable"
        cp "$LAKEPOOL_BIN" "$dir/lakepool"
        lakepool_desc="$LAKEPOOL_BIN"
        return
    fi
    # What is being measured: the commit, and whether the work tree differs.
    lakepool_desc="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')"
    git -C "$repo" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null ||
        lakepool_desc+=" + uncommitted changes"
    say "building lakepool (cargo build --release -j ${CARGO_JOBS:-1})"
    (cd "$repo" && cargo build --release --quiet -j "${CARGO_JOBS:-1}" --bin lakepool) ||
        die "cargo build failed"
    cp "$repo/target/release/lakepool" "$dir/lakepool"
}

# --- PostgreSQL ----------------------------------------------------------------------
# A test CA and a server certificate for 127.0.0.1 / localhost (P-256), used
# by PostgreSQL and by both poolers' client side.
make_certs() {
    local c="$dir/certs"
    mkdir -p "$c"
    (
        cd "$c"
        openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout ca.key \
            -out ca.crt -days 2 -subj "/CN=lakepool bench CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout server.key \
            -out server.csr -subj "/CN=127.0.0.1"
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile server.ext -out server.crt
    ) >"$dir/openssl.log" 2>&1 || die "creating the test certificate failed: $(tail -n 3 "$dir/openssl.log")"
    chmod 600 "$c"/*.key
    [[ "$(id -u)" == 0 ]] && chown -R postgres: "$c"
    cert="$c/server.crt" key="$c/server.key" ca="$c/ca.crt"
}

# The cluster has ssl=on with the test certificate; plain runs connect with
# sslmode=disable, TLS runs with sslmode=require and TLS 1.3 only.
super_pw=""
setup_postgres() {
    local max_conn="${1:-300}"
    pg_port="$(free_port)"
    make_certs
    super_pw="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    [[ "$(id -u)" == 0 ]] && chown postgres: "$dir"
    (umask 077 && printf '%s\n' "$super_pw" >"$dir/pwfile")
    [[ "$(id -u)" == 0 ]] && chown postgres: "$dir/pwfile"

    say "creating a PostgreSQL cluster in $data (127.0.0.1:$pg_port)"
    (cd "$dir" && "${as_owner[@]}" "$pg_bin/initdb" -D "$data" -U postgres \
        --auth=scram-sha-256 --pwfile="$dir/pwfile" -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1) ||
        die "initdb failed: $(cat "$dir/initdb.log")"
    rm -f "$dir/pwfile"
    # fsync off: the benchmark measures the pooler, not the disk.
    (cd "$dir" && "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $dir -c max_connections=$max_conn -c shared_buffers=128MB -c fsync=off -c ssl=on -c ssl_cert_file=$cert -c ssl_key_file=$key -c ssl_min_protocol_version=TLSv1.2" \
        start >/dev/null) || die "PostgreSQL failed to start: $(cat "$dir/postgres.log" 2>/dev/null)"
    pg_started=1

    PGPASSWORD="$super_pw" "$psql" -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres >/dev/null <<SQL
SET password_encryption = 'scram-sha-256';
CREATE ROLE bench LOGIN PASSWORD '$bench_pw';
CREATE DATABASE bench OWNER bench;
SQL
    say "pgbench -i -s $scale"
    "$pgbench" -i -q -s "$scale" -h 127.0.0.1 -p "$pg_port" -U bench bench >"$dir/pgbench-init.log" 2>&1 ||
        die "pgbench -i failed: $(tail -n 5 "$dir/pgbench-init.log")"
    verifier="$(PGPASSWORD="$super_pw" "$psql" -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" \
        -U postgres -d postgres -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'bench'")"
    [[ "$verifier" == SCRAM-SHA-256\$* ]] || die "unexpected verifier for role bench: $verifier"
    # Both poolers authenticate clients against the stored SCRAM verifier, so
    # neither runs PBKDF2 per login (PostgreSQL does the same).
    printf '"bench" "%s"\n' "$verifier" >"$dir/userlist.txt"
    chmod 600 "$dir/userlist.txt"
    [[ "$(id -u)" == 0 ]] && chown postgres: "$dir/userlist.txt"
    return 0
}

# --- poolers -------------------------------------------------------------------
# start_pgbouncer NAME TLS(0|1) [MAX_CLIENT_CONN]: transaction mode, pool of
# $pool_size, SCRAM against the verifier. TLS=1: clients must use TLS 1.3 and
# the server leg is TLS (verify-full against the test CA).
start_pgbouncer() {
    local name="$1" tls="$2" max_client="${3:-2000}" port ini sock
    [[ -n "$pgbouncer_bin" ]] || die "this script was set up without PgBouncer (needs_pgbouncer=0)"
    [[ "$client_leg" == tcp || "$client_leg" == unix ]] || die "CLIENT_LEG must be tcp or unix"
    port="$(free_port)"
    sock="$(socket_dir "$name" "$tls")"
    ini="$dir/$name.ini"
    {
        cat <<INI
[databases]
bench = host=127.0.0.1 port=$pg_port dbname=bench user=bench password=$bench_pw

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $sock
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = $pool_size
max_client_conn = $max_client
logfile = $dir/$name.log
pidfile =
log_connections = 0
log_disconnections = 0
INI
        if ((pgbouncer_prepared)); then
            echo "max_prepared_statements = 200"
        fi
        if ((tls)); then
            cat <<INI
client_tls_sslmode = require
client_tls_protocols = tlsv1.3
client_tls_cert_file = $cert
client_tls_key_file = $key
server_tls_sslmode = verify-full
server_tls_ca_file = $ca
INI
        else
            printf 'client_tls_sslmode = disable\nserver_tls_sslmode = disable\n'
        fi
    } >"$ini"
    chmod 600 "$ini"
    [[ "$(id -u)" == 0 ]] && chown postgres: "$ini"
    "${as_owner[@]}" "$pgbouncer_bin" -q "$ini" 2>>"$dir/$name.stderr" &
    PID[$name]=$!
    PORT[$name]="$port"
    KIND[$name]=pgbouncer
    HOST[$name]="${sock:-127.0.0.1}"
    wait_port "$port" "${PID[$name]}" "PgBouncer ($name)"
    [[ -z "$sock" ]] || wait_socket "$sock" "$port" "${PID[$name]}"
    [[ "$(cat "/proc/${PID[$name]}/comm")" == pgbouncer ]] || die "pid ${PID[$name]} is not pgbouncer"
}

# start_lakepool NAME TLS(0|1) WORKERS [MAX_CLIENT_CONN]: the same pool and
# verifier as PgBouncer. WORKERS empty = lakepool's own default.
start_lakepool() {
    local name="$1" tls="$2" workers="$3" max_client="${4:-2000}" bin="${5:-$dir/lakepool}" port toml sock
    [[ "$client_leg" == tcp || "$client_leg" == unix ]] || die "CLIENT_LEG must be tcp or unix"
    port="$(free_port)"
    sock="$(socket_dir "$name" "$tls")"
    toml="$dir/$name.toml"
    {
        printf '[server]\nlisten = "127.0.0.1:%s"\nmax_client_conn = %s\n' "$port" "$max_client"
        [[ -n "$sock" ]] && printf 'unix_socket_dir = "%s"\n' "$sock"
        [[ -n "$workers" ]] && printf 'workers = %s\n' "$workers"
        if ((tls)); then
            printf 'client_tls = "require"\ntls_cert_file = "%s"\ntls_key_file = "%s"\n' "$cert" "$key"
        else
            printf 'client_tls = "disable"\n'
        fi
        cat <<TOML

[pool]
pool_mode = "transaction"
pool_size = $pool_size

[[users]]
name = "bench"
password = "$verifier"

[[databases]]
name = "bench"
host = "127.0.0.1"
port = $pg_port
dbname = "bench"
user = "bench"
password = "$bench_pw"
TOML
        if ((tls)); then
            printf 'tls = "verify-full"\nca_file = "%s"\n' "$ca"
        else
            printf 'tls = "disable"\n'
        fi
    } >"$toml"
    chmod 600 "$toml"
    "$bin" check --config "$toml" >/dev/null 2>"$dir/$name.check" ||
        die "lakepool rejected the generated config: $(cat "$dir/$name.check")"
    RUST_LOG=warn "$bin" --config "$toml" 2>>"$dir/$name.stderr" &
    PID[$name]=$!
    PORT[$name]="$port"
    KIND[$name]=lakepool
    HOST[$name]="${sock:-127.0.0.1}"
    wait_port "$port" "${PID[$name]}" "lakepool ($name)"
    [[ -z "$sock" ]] || wait_socket "$sock" "$port" "${PID[$name]}"
}

# start_relay NAME: benches/relay.c, a byte relay with one PostgreSQL
# connection per client and no protocol work: the floor under any proxy's CPU
# per transaction on this machine (not under a pooler's tps: it holds a backend
# per client). Plain TCP, client leg TCP only.
start_relay() {
    local name="$1" port
    [[ "$client_leg" == tcp ]] || die "the relay has no Unix-socket client leg (CLIENT_LEG=tcp)"
    command -v cc >/dev/null || die "the relay needs a C compiler (cc)"
    [[ -x "$dir/relay" ]] || cc -O2 -o "$dir/relay" "$repo/benches/relay.c" || die "cannot build benches/relay.c"
    port="$(free_port)"
    "$dir/relay" "$port" "$pg_port" 2>>"$dir/$name.stderr" &
    PID[$name]=$!
    PORT[$name]="$port"
    KIND[$name]=relay
    wait_port "$port" "${PID[$name]}" "relay ($name)"
}

# Stops pooler NAME and forgets it.
stop_pooler() {
    stop_pid "${PID[$1]:-}"
    unset "PID[$1]"
}

# --- measurements --------------------------------------------------------------
# utime + stime of a process (all its threads), in clock ticks.
cpu_ticks() {
    local stat fields
    stat="$(<"/proc/$1/stat")"
    # Skip "pid (comm) ": comm may contain spaces; fields then start at state.
    read -r -a fields <<<"${stat##*) }"
    echo $((fields[11] + fields[12]))
}

# utime and stime of a process (all its threads), in clock ticks: "U S".
user_sys_ticks() {
    local stat fields
    stat="$(<"/proc/$1/stat")"
    read -r -a fields <<<"${stat##*) }"
    echo "${fields[11]} ${fields[12]}"
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# Sets the client environment for plain TCP (0) or TLS 1.3 (1).
client_tls_env() {
    if (($1)); then
        export PGSSLMODE=require PGSSLMINPROTOCOLVERSION=TLSv1.3
    else
        export PGSSLMODE=disable
        unset PGSSLMINPROTOCOLVERSION
    fi
}

# The machine's state, for the record.
machine_line() {
    echo "$(nproc) cores, $(awk '/^MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM;" \
        "uptime: $(uptime | sed 's/^ *//')"
}

# CPU busy time of the whole machine, in ticks: user + nice + system + irq +
# softirq. Interrupt ticks count because a process's stime includes the
# softirq work (loopback networking) done in its context.
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }

# CPU ticks of PostgreSQL: the postmaster, its live children, and the children
# it has already reaped (cutime/cstime; -C starts a backend per transaction).
# A backend that has exited but is not reaped yet shows no CPU time anywhere,
# so wait (up to 2 s) until the postmaster has no zombie children.
postgres_ticks() {
    local pm out
    pm="$(head -n 1 "$data/postmaster.pid")"
    for _ in $(seq 1 40); do
        # Each stat file is one line; strip "pid (comm) " so fields start at state.
        out="$(awk -v pm="$pm" '{
                sub(/^.*\) /, "")
                if (FILENAME == "/proc/" pm "/stat") t += $12 + $13 + $14 + $15
                else if ($2 == pm) { t += $12 + $13; if ($1 == "Z") z++ }
            } END { print t + 0, z + 0 }' /proc/[0-9]*/stat 2>/dev/null)"
        [[ "${out#* }" == 0 ]] && break
        sleep 0.05
    done
    echo "${out% *}"
}

# CPU seconds used by this shell's finished children (pgbench runs), from
# `times`. It must run in this shell, not in a $(...) subshell whose own
# children counters start at zero, hence the file.
children_cpu_s() {
    times >"$dir/times"
    awk 'NR == 2 {
            split($1, u, /[ms]/); split($2, s, /[ms]/)
            printf "%.3f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$dir/times"
}

# Waits (at most QUIET_WAIT s) until the machine is quiet: over a 2 s sample,
# at most MAX_OTHER_CPU % of its CPU busy. Between runs the benchmark's own
# processes are idle, so what is busy then is someone else's work.
max_other="${MAX_OTHER_CPU:-10}"
quiet_wait="${QUIET_WAIT:-120}"
wait_quiet() {
    local waited=0 busy
    while :; do
        busy="$(
            a="$(head -n 1 /proc/stat)"
            sleep 2
            b="$(head -n 1 /proc/stat)"
            awk -v a="$a" -v b="$b" 'BEGIN {
                split(a, x); split(b, y)
                for (i = 2; i <= 9; i++) { d = y[i] - x[i]; all += d; if (i != 5 && i != 6) busy += d }
                printf "%d", (all > 0 ? busy * 100 / all : 0) }'
        )"
        ((busy <= max_other)) && return 0
        if ((waited >= quiet_wait)); then
            warn "machine still ${busy}% busy after ${quiet_wait} s of waiting; running anyway"
            return 0
        fi
        ((waited == 0)) && say "machine ${busy}% busy with other work; waiting (up to ${quiet_wait} s)"
        sleep 3
        waited=$((waited + 5))
    done
}

# perf can count a process's system calls and context switches (needs perf
# and perf_event_paranoid low enough, or root).
perf_ok=0
perf_check() {
    [[ "${PERF:-1}" == 0 ]] && return 0
    if command -v perf >/dev/null &&
        perf stat -x, -e raw_syscalls:sys_enter,context-switches true >/dev/null 2>&1; then
        perf_ok=1
    else
        warn "perf stat -e raw_syscalls:sys_enter does not work here; no system call counts"
    fi
}

# perf_start PID FILE: counts PID's system calls and context switches (all
# its threads) until perf_stop. Sets perf_pid.
perf_pid=""
perf_start() {
    perf_pid=""
    ((perf_ok)) || return 0
    perf stat -x, -o "$2" -e raw_syscalls:sys_enter,context-switches -p "$1" >/dev/null 2>&1 &
    perf_pid=$!
    track "$perf_pid"
    sleep 0.3 # let it attach before the run starts
}
perf_stop() {
    [[ -n "$perf_pid" ]] || return 0
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    untrack "$perf_pid"
    perf_pid=""
}
# perf_count FILE EVENT: the event's count from perf stat -x, output.
perf_count() { awk -F, -v e="$2" '$3 == e && $1 ~ /^[0-9]+$/ { print $1 }' "$1" 2>/dev/null; }
