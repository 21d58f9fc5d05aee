#!/usr/bin/env bash
# Compare PostgreSQL direct, PgBouncer and lakepool (1 and 2 workers) with
# pgbench, in one run, on plain TCP and with TLS on both legs.
#
#   benches/pgbench.sh                          # 10 s per run, about 10 minutes
#   PGBOUNCER_BIN=/path/to/pgbouncer benches/pgbench.sh   # e.g. 1.25 built from its tag
#   QUICK=1 benches/pgbench.sh                  # 3 s per run, a smoke test
#
# What it does (see benches/README.md for the reasoning):
#   1. builds lakepool (cargo build --release -j 1) unless LAKEPOOL_BIN is set;
#   2. creates a throwaway PostgreSQL cluster (ssl=on, test certificate) on a
#      free loopback port, a SCRAM role `bench`, and `pgbench -i -s 10`;
#   3. starts PgBouncer and lakepool (workers = 1 and 2) with plain TCP on
#      both legs, and PgBouncer and lakepool with TLS on both legs (clients
#      TLS 1.3; server leg verify-full against the test CA), all in
#      transaction mode with a pool of 20;
#   4. runs pgbench (-c 50 -j 2) for each workload against each target,
#      recording TPS, latency, the pooler's CPU time (/proc/PID/stat) and its
#      system calls and context switches (perf stat -p PID);
#   5. prints the table and removes everything it created (trap on exit).
# Idle memory and 10,000 clients: benches/idle.sh. Profile: benches/profile.sh.
#
# Env: DURATION (s, 10), QUICK=1 (3 s runs), CLIENTS (50), THREADS (2),
# POOL_SIZE (20), SCALE (10), WORKERS ("1 2": lakepool server.workers values),
# TLS (1: also the TLS rows; 0: plain TCP only), PGBOUNCER_BIN, LAKEPOOL_BIN,
# LAKEPOOL_BIN_B (a second lakepool binary, rows "lakepool-b", plain TCP),
# RELAY=1 (a row "relay": benches/relay.c, a byte relay with one PostgreSQL
# connection per client, the floor under a proxy's CPU per transaction here;
# plain TCP rows only, and none with CLIENT_LEG=unix),
# ONLY (comma-separated workload names to run, e.g. "select simple,tpcb-like simple"),
# CARGO_JOBS (1), KEEP_DIR=1, PERF=0 (no perf stat), MAX_OTHER_CPU (10),
# CLIENT_LEG (tcp; unix: pgbench reaches PostgreSQL and the plain poolers
# through Unix-domain sockets, and there are no TLS rows), RETRIES (1),
# QUIET_WAIT (120): before each run, wait up to QUIET_WAIT s until other
# processes use at most MAX_OTHER_CPU % of the machine; a run they disturbed
# more than that is repeated up to RETRIES times.
set -euo pipefail

cd "$(dirname "$0")/.."
repo="$(pwd)"
me=pgbench.sh
# shellcheck source=benches/lib.sh
source "$repo/benches/lib.sh"

duration="${DURATION:-10}"
[[ "${QUICK:-0}" == 1 ]] && duration=3
clients="${CLIENTS:-50}"
threads="${THREADS:-2}"
retries="${RETRIES:-1}"
workers_list="${WORKERS:-1 2}"
with_tls="${TLS:-1}"
[[ "${CLIENT_LEG:-tcp}" == unix ]] && with_tls=0
warmup=$((duration >= 10 ? 3 : 1))
zero_ok="max_other retries quiet_wait with_tls"
check_numbers duration clients threads pool_size scale max_other retries quiet_wait with_tls
for w in $workers_list; do check_numbers w; done

bench_init
perf_check

# --- one run -------------------------------------------------------------------
# Results, keyed "workload|target". OTHER is the share of the machine's CPU
# that neither pgbench, PostgreSQL nor the pooler used during the run.
declare -A TPS LAT CPU_US SYS_TX CS_TX OTHER ERR
run_no=0

# run_pgbench WORKLOAD TARGET INSTANCE [pgbench options...]. INSTANCE is
# "direct" or a pooler name in PID[]/PORT[].
run_pgbench() {
    local workload="$1" target="$2" inst="$3"
    shift 3
    local key="$workload|$target" log pid="" port="$pg_port" c0=0 c1=0 tx tps lat m0 m1 p0 p1 k0 k1 t0 t1 rc
    if [[ "$inst" != direct ]]; then
        pid="${PID[$inst]}" port="${PORT[$inst]}"
    fi
    run_no=$((run_no + 1))
    log="$dir/run-$run_no-${workload// /_}-$target.log"
    if [[ "$workload" == *tpcb* ]]; then
        # What pgbench does itself without -n; done directly, not through a
        # pooler, so every target starts from the same table state.
        PGSSLMODE=disable "$psql" -X -q -h 127.0.0.1 -p "$pg_port" -U bench -d bench \
            -c "VACUUM pgbench_branches" -c "VACUUM pgbench_tellers" -c "TRUNCATE pgbench_history" >/dev/null
    fi
    [[ -n "$pid" ]] && perf_start "$pid" "$dir/perf-$run_no.csv"
    [[ -n "$pid" ]] && c0="$(cpu_ticks "$pid")"
    children_cpu_s >"$dir/k0"
    m0="$(machine_ticks)" p0="$(postgres_ticks)" k0="$(<"$dir/k0")" t0="$(date +%s.%N)"
    # timeout: a wedged target must not hang the whole benchmark. In the
    # background plus `wait`, so a Ctrl-C runs the cleanup trap at once.
    timeout --signal=INT --kill-after=10 $((duration + 120)) \
        "$pgbench" -n -c "$clients" -j "$threads" -T "$duration" "$@" \
        -h "$(client_host "$inst")" -p "$port" -U bench bench >"$log" 2>&1 &
    local bench_pid=$!
    track "$bench_pid"
    rc=0
    wait "$bench_pid" || rc=$?
    untrack "$bench_pid"
    [[ -n "$pid" ]] && c1="$(cpu_ticks "$pid")"
    perf_stop
    children_cpu_s >"$dir/k1"
    m1="$(machine_ticks)" p1="$(postgres_ticks)" k1="$(<"$dir/k1")" t1="$(date +%s.%N)"
    if ((rc != 0)); then
        # The first error says why (e.g. a protocol feature the pooler lacks).
        ERR[$key]="$(grep -m 1 -o 'error: .*' "$log" | sed 's/^error: //' || true)"
        warn "$workload against $target failed: ${ERR[$key]:-see $log}"
        tail -n 3 "$log" >&2
        TPS[$key]="failed"
        return 0
    fi
    OTHER[$key]="$(awk -v m=$((m1 - m0)) -v p=$((p1 - p0)) -v c=$((c1 - c0)) -v k0="$k0" -v k1="$k1" \
        -v t0="$t0" -v t1="$t1" -v hz="$clk_tck" -v n="$(nproc)" 'BEGIN {
            o = ((m - p - c) / hz - (k1 - k0)) / ((t1 - t0) * n) * 100
            printf "%.0f%%", (o < 0 ? 0 : o) }')"
    tx="$(awk -F': ' '/^number of transactions actually processed/ { print $2 + 0 }' "$log")"
    tps="$(awk '/^tps = / { print $3 }' "$log")"
    lat="$(awk '/^latency average = / { print $4 }' "$log")"
    if [[ -z "$tx" || "$tx" == 0 || -z "$tps" ]]; then
        warn "$workload against $target: no transactions; see output:"
        tail -n 5 "$log" >&2
        TPS[$key]="failed"
        return 0
    fi
    if grep -q '^number of failed transactions: [1-9]' "$log"; then
        warn "$workload against $target: $(grep '^number of failed transactions' "$log")"
    fi
    TPS[$key]="$tps" LAT[$key]="$lat" CPU_US[$key]="" SYS_TX[$key]="" CS_TX[$key]=""
    if [[ -n "$pid" ]]; then
        CPU_US[$key]="$(awk -v d=$((c1 - c0)) -v hz="$clk_tck" -v tx="$tx" 'BEGIN { printf "%.1f", d / hz / tx * 1e6 }')"
        if ((perf_ok)); then
            local sc cs
            sc="$(perf_count "$dir/perf-$run_no.csv" raw_syscalls:sys_enter)"
            cs="$(perf_count "$dir/perf-$run_no.csv" context-switches)"
            [[ -n "$sc" ]] && SYS_TX[$key]="$(awk -v a="$sc" -v tx="$tx" 'BEGIN { printf "%.2f", a / tx }')"
            [[ -n "$cs" ]] && CS_TX[$key]="$(awk -v a="$cs" -v tx="$tx" 'BEGIN { printf "%.2f", a / tx }')"
        fi
    fi
    # Where the rest of the CPU went, for the log: pgbench and PostgreSQL.
    local split
    split="$(awk -v p=$((p1 - p0)) -v k="$(awk -v a="$k0" -v b="$k1" 'BEGIN { print b - a }')" \
        -v hz="$clk_tck" -v tx="$tx" 'BEGIN {
            printf "pgbench %.1f, postgres %.1f CPU us/tx", k / tx * 1e6, p / hz / tx * 1e6 }')"
    printf '    %-24s %-12s %8.0f tps %7.2f ms  pooler %s us/tx; %s, other CPU %s\n' \
        "$workload" "$target" "$tps" "$lat" "${CPU_US[$key]:--}" "$split" "${OTHER[$key]}" >&2
}

# Runs one workload against one target, repeating a run that other work on the
# machine disturbed (a compile can start mid-run) and keeping the least
# disturbed attempt.
run_kept() {
    local workload="$1" target="$2" key="$1|$2" best="" other try kept=()
    for ((try = 0; ; try++)); do
        wait_quiet
        run_pgbench "$@"
        other="${OTHER[$key]:-0%}"
        other="${other%\%}"
        if [[ "${TPS[$key]}" != failed ]] && { [[ -z "$best" ]] || ((other < best)); }; then
            best="$other"
            kept=("${TPS[$key]}" "${LAT[$key]}" "${CPU_US[$key]}" "${SYS_TX[$key]}" "${CS_TX[$key]}" "${OTHER[$key]}")
        fi
        ((other <= max_other || try >= retries)) && break
        warn "other processes used $other% of the CPU during that run; repeating it"
    done
    if [[ -n "$best" ]]; then
        TPS[$key]="${kept[0]}" LAT[$key]="${kept[1]}" CPU_US[$key]="${kept[2]}"
        SYS_TX[$key]="${kept[3]}" CS_TX[$key]="${kept[4]}" OTHER[$key]="${kept[5]}"
    fi
    local inst
    for inst in "${!PID[@]}"; do
        kill -0 "${PID[$inst]}" 2>/dev/null || die "$inst died; see $dir/$inst.log / $dir/$inst.stderr"
    done
}

# --- output --------------------------------------------------------------------
ratio() { # $1 / $2 as "1.23x", or "-" if either is missing
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {
        if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2fx", a / b; else printf "-" }'
}

print_results() {
    local w t key tps fmt
    fmt='%-24s %-12s %8s %8s %9s %8s %7s %9s %9s %9s %6s\n'
    echo
    echo "pgbench -c $clients -j $threads -T $duration, scale $scale; transaction pooling, pool size $pool_size"
    echo "plain rows: client leg $client_leg, server leg TCP. tls rows: clients TLS 1.3 (sslmode=require) to the target; poolers to"
    echo "PostgreSQL over TLS (verify-full, test CA). Logins: SCRAM-SHA-256 against the stored verifier."
    echo "CPU us/tx: pooler utime+stime (all threads, /proc/PID/stat) per transaction; for churn (-C) that is"
    echo "per login. sys/tx, cs/tx: the pooler's system calls and context switches per transaction"
    echo "(perf stat -e raw_syscalls:sys_enter,context-switches -p PID). x direct, x pgb: tps against the"
    echo "same workload's direct and PgBouncer runs; CPU x pgb: CPU us/tx against PgBouncer's."
    echo "other: share of the machine used by processes other than pgbench, PostgreSQL and the pooler."
    echo
    # shellcheck disable=SC2059
    printf "$fmt" workload target tps "lat ms" "CPU us/tx" "sys/tx" "cs/tx" "x direct" "x pgb" "CPU x pgb" other
    # shellcheck disable=SC2059
    printf "$fmt" -------- ------ --- ------ --------- ------ ----- -------- ----- --------- -----
    for w in "${workload_names[@]}"; do
        for t in "${target_names[@]}"; do
            key="$w|$t"
            [[ -v "TPS[$key]" ]] || continue
            tps="${TPS[$key]}"
            if [[ "$tps" == failed ]]; then
                printf '%-24s %-12s %8s   %s\n' "$w" "$t" "FAILED" "${ERR[$key]:-}"
                continue
            fi
            local vs_d="" vs_p="" cpu_p=""
            if [[ "$t" != direct ]]; then
                vs_d="$(ratio "$tps" "${TPS[$w|direct]:-}")"
                if [[ "$t" != pgbouncer ]]; then
                    vs_p="$(ratio "$tps" "${TPS[$w|pgbouncer]:-}")"
                    cpu_p="$(ratio "${CPU_US[$key]}" "${CPU_US[$w|pgbouncer]:-}")"
                fi
            fi
            # shellcheck disable=SC2059
            printf "$fmt" "$w" "$t" "$(printf '%.0f' "$tps")" "${LAT[$key]}" "${CPU_US[$key]:--}" \
                "${SYS_TX[$key]:--}" "${CS_TX[$key]:--}" "$vs_d" "$vs_p" "$cpu_p" "${OTHER[$key]}"
        done
    done
    ((pgbouncer_prepared)) ||
        echo "(PgBouncer $pgbouncer_version has no prepared statements in transaction mode: no prepared rows for it)"
}

# --- main ----------------------------------------------------------------------
say "machine: $(machine_line)"
start_time="$(date -u '+%Y-%m-%d %H:%M UTC')"
setup_postgres 400
target_names=(direct pgbouncer)
start_pgbouncer pgbouncer 0
for w in $workers_list; do
    start_lakepool "lakepool-w$w" 0 "$w"
    target_names+=("lakepool-w$w")
done
if [[ "${RELAY:-0}" == 1 && "$client_leg" == tcp ]]; then
    start_relay relay
    target_names+=(relay)
fi
if [[ -n "${LAKEPOOL_BIN_B:-}" ]]; then
    # A second build, plain TCP, the first workers value: an A/B of two commits in one run.
    cp "$LAKEPOOL_BIN_B" "$dir/lakepool-b"
    start_lakepool lakepool-b 0 "${workers_list%% *}" 2000 "$dir/lakepool-b"
    target_names+=(lakepool-b)
fi
lp_tls="lakepool-w${workers_list%% *}"
if ((with_tls)); then
    start_pgbouncer pgbouncer-tls 1
    start_lakepool "$lp_tls-tls" 1 "${workers_list%% *}"
fi
for inst in "${!PID[@]}"; do
    say "$inst: $(client_host "$inst"):${PORT[$inst]}, pid ${PID[$inst]}, threads $(awk '/^Threads:/ { print $2 }' "/proc/${PID[$inst]}/status")"
done

# Warm-up: fills the pools, PostgreSQL's buffer cache and the catalog caches.
# pgbench -M prepared prepares each statement with a blocking call the first
# time a client runs it, stalling every client of that thread; with -j below
# -c its own clients holding all servers mid-transaction could wait on each
# other. A short run with one thread per client has each pooler's servers
# accept the statements first.
say "warm-up (${warmup} s per target)"
for inst in direct "${!PID[@]}"; do
    port="${PORT[$inst]:-$pg_port}"
    client_tls_env "$([[ "$inst" == *-tls ]] && echo 1 || echo 0)"
    "$pgbench" -n -S -c "$clients" -j "$threads" -T "$warmup" -h "$(client_host "$inst")" -p "$port" -U bench bench \
        >"$dir/warmup-$inst.log" 2>&1 || die "warm-up against $inst failed: $(tail -n 3 "$dir/warmup-$inst.log")"
    if [[ "$inst" == lakepool* || ("$inst" == pgbouncer* && "$pgbouncer_prepared" == 1) ]]; then
        "$pgbench" -n -M prepared -c "$clients" -j "$clients" -T "$warmup" -h "$(client_host "$inst")" -p "$port" -U bench bench \
            >"$dir/warmup-prepared-$inst.log" 2>&1 ||
            die "prepared warm-up against $inst failed: $(tail -n 3 "$dir/warmup-prepared-$inst.log")"
    fi
done
client_tls_env 0
if ((with_tls)); then
    # The TLS poolers' server connections must really be TLS: after the
    # warm-up, PostgreSQL sees 2 x pool_size TLS backends of role bench.
    tls_backends="$(PGPASSWORD="$super_pw" "$psql" -X -At -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c \
        "SELECT count(*) || ' ' || coalesce(string_agg(DISTINCT version, ','), '-') FROM pg_stat_ssl
         JOIN pg_stat_activity USING (pid) WHERE ssl AND usename = 'bench'")"
    say "server connections over TLS: ${tls_backends% *} (${tls_backends#* }), expected $((2 * pool_size)) (both TLS pools full)"
    ((${tls_backends% *} > 0)) || die "the TLS poolers' server connections are not TLS"
    ((${tls_backends% *} >= 2 * pool_size)) || warn "fewer TLS server connections than both pools hold"
fi

# name | pgbench options | tls (0|1). The TPC-B-like default script runs
# without -N on purpose: it is the write-heavy mix.
workloads=(
    "select simple|-S -M simple|0"
    "select extended|-S -M extended|0"
    "select prepared|-S -M prepared|0"
    "select churn (-C)|-S -M simple -C|0"
    "tpcb-like simple|-M simple|0"
)
if ((with_tls)); then
    workloads+=(
        "tls select simple|-S -M simple|1"
        "tls select extended|-S -M extended|1"
        "tls select prepared|-S -M prepared|1"
    )
fi
workload_names=()
say "running ${#workloads[@]} workloads, ${duration} s per target"
for spec in "${workloads[@]}"; do
    IFS='|' read -r name opts tls <<<"$spec"
    [[ -n "${ONLY:-}" && ",$ONLY," != *",$name,"* ]] && continue
    workload_names+=("$name")
    read -r -a opt_array <<<"$opts"
    client_tls_env "$tls"
    for t in "${target_names[@]}"; do
        inst="$t"
        if ((tls)); then
            case "$t" in
            direct) ;;
            pgbouncer) inst=pgbouncer-tls ;;
            "$lp_tls") inst="$lp_tls-tls" ;;
            *) continue ;;
            esac
        fi
        [[ "$t" == pgbouncer && "$opts" == *prepared* && "$pgbouncer_prepared" == 0 ]] && continue
        run_kept "$name" "$t" "$inst" "${opt_array[@]}"
    done
done
client_tls_env 0

print_results
echo
echo "PostgreSQL $("$pg_bin/postgres" --version | awk '{ print $3 }'), PgBouncer $pgbouncer_version ($pgbouncer_src)," \
    "lakepool $lakepool_desc; started $start_time"
echo "$(machine_line)"
