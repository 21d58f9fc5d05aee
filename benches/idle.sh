#!/usr/bin/env bash
# Idle clients: resident memory per logged-in idle client at 1,000 and 10,000
# clients, and 50 running pgbench clients next to 10,000 idle ones, for
# PgBouncer and lakepool on the same throwaway cluster.
#
#   benches/idle.sh
#   PGBOUNCER_BIN=/path/to/pgbouncer LAKEPOOL_BIN=target/release/lakepool benches/idle.sh
#
# For each pooler, freshly started (transaction mode, pool of 20, plain TCP):
#   1. one `SELECT 1` through it (the baseline includes an upstream
#      connection and the cached server parameters), then VmRSS;
#   2. benches/idle_clients.py opens logged-in idle clients (SCRAM, then
#      nothing) up to each count in IDLE_COUNTS; VmRSS after each step;
#   3. with all of them still connected, pgbench -S -c 50 -j 2 -T DURATION;
#   4. the idle clients disconnect, and the same pgbench run again.
# Then prints KiB per idle client, whether every login succeeded, and the 50
# clients' tps with and without the idle ones.
#
# Env: IDLE_COUNTS ("1000 10000"), DURATION (10), CLIENTS (50), THREADS (2),
# IDLE_SOURCES (1: source addresses 127.0.0.1..N for the idle clients),
# IDLE_QUERY (none | simple | extended: one SELECT 1 per idle client after its login),
# LAKEPOOL_WORKERS (server.workers; unset = lakepool's default), POOL_SIZE,
# SCALE (1), PGBOUNCER_BIN, LAKEPOOL_BIN, CARGO_JOBS, KEEP_DIR=1,
# MAX_OTHER_CPU (10), QUIET_WAIT (120).
set -euo pipefail

cd "$(dirname "$0")/.."
repo="$(pwd)"
me=idle.sh
SCALE="${SCALE:-1}"
# shellcheck source=benches/lib.sh
source "$repo/benches/lib.sh"

idle_counts="${IDLE_COUNTS:-1000 10000}"
duration="${DURATION:-10}"
clients="${CLIENTS:-50}"
threads="${THREADS:-2}"
sources="${IDLE_SOURCES:-1}"
zero_ok="max_other quiet_wait"
check_numbers duration clients threads sources pool_size scale max_other quiet_wait
prev=0
for n in $idle_counts; do
    check_numbers n
    ((n > prev)) || die "IDLE_COUNTS must be increasing (got '$idle_counts')"
    prev="$n"
done
max_idle="$prev"
max_client=$((max_idle + clients + 100))
command -v python3 >/dev/null || die "python3 is needed for benches/idle_clients.py"

bench_init
if (($(ulimit -n) < max_client + 200)); then
    warn "open files limit $(ulimit -n) is below the $((max_client + 200)) descriptors $max_idle idle clients need"
fi

# Idle client processes of the current pooler (one per count step).
idle_procs=()
stop_idle() {
    local p
    for p in "${idle_procs[@]}"; do
        stop_pid "$p"
        untrack "$p"
    done
    idle_procs=()
}

# open_idle PORT N OUT: N more idle clients; waits for their report line.
open_idle() {
    local port="$1" n="$2" out="$3" p
    python3 "$repo/benches/idle_clients.py" --port "$port" --count "$n" --sources "$sources" \
        --query "${IDLE_QUERY:-none}" >"$out" 2>&1 &
    p=$!
    track "$p"
    idle_procs+=("$p")
    for _ in $(seq 1 3000); do # 300 s
        grep -q '^connected=' "$out" && return 0
        kill -0 "$p" 2>/dev/null || die "idle client process failed: $(tail -n 5 "$out")"
        sleep 0.1
    done
    die "idle clients did not finish logging in within 300 s"
}

established() { ss -Htn state established "( sport = :$1 )" | wc -l; }

# bench_run PORT PID LOG: pgbench -S for DURATION; prints "tps cpu_us_per_tx".
bench_run() {
    local port="$1" pid="$2" log="$3" c0 c1 p rc=0
    c0="$(cpu_ticks "$pid")"
    "$pgbench" -n -S -c "$clients" -j "$threads" -T "$duration" -h 127.0.0.1 -p "$port" -U bench bench \
        >"$log" 2>&1 &
    p=$!
    track "$p"
    wait "$p" || rc=$?
    untrack "$p"
    c1="$(cpu_ticks "$pid")"
    if ((rc != 0)) || ! grep -q '^tps = ' "$log"; then
        warn "pgbench failed: $(tail -n 3 "$log")"
        echo "failed -"
        return 0
    fi
    awk -v d=$((c1 - c0)) -v hz="$clk_tck" '
        /^number of transactions actually processed/ { split($0, a, ": "); tx = a[2] + 0 }
        /^tps = / { tps = $3 }
        END { printf "%.0f %.1f\n", tps, (tx > 0 ? d / hz / tx * 1e6 : 0) }' "$log"
}

declare -A R
measure() {
    local name="$1" port pid opened=0 n out line ok=1 total_ok=0
    port="${PORT[$name]}" pid="${PID[$name]}"
    "$psql" -X -q -h 127.0.0.1 -p "$port" -U bench -d bench -c "SELECT 1" >/dev/null
    sleep 1
    R[$name,rss0]="$(rss_kib "$pid")"
    for n in $idle_counts; do
        out="$dir/idle-$name-$n.out"
        open_idle "$port" $((n - opened)) "$out"
        line="$(grep -m 1 '^connected=' "$out")"
        say "$name: $((n - opened)) more idle clients: $line"
        total_ok=$((total_ok + $(sed 's/^connected=\([0-9]*\).*/\1/' <<<"$line")))
        [[ "$line" == *" failed=0 "* ]] || ok=0
        opened="$n"
        sleep 2 # let the last logins finish their bookkeeping
        R[$name,rss$n]="$(rss_kib "$pid")"
        R[$name,est$n]="$(established "$port")"
    done
    R[$name,logins]="$total_ok of $max_idle"
    ((ok)) || R[$name,logins]+=" (failures: see $dir)"
    # With, without, with again (the idle clients reconnect): the load of a
    # shared machine drifts, and the order must not decide the ratio.
    local t1 c1 t2 c2
    wait_quiet
    read -r t1 c1 < <(bench_run "$port" "$pid" "$dir/bench-$name-idle1.log")
    R[$name,rss_after]="$(rss_kib "$pid")"
    stop_idle
    for _ in $(seq 1 100); do
        (($(established "$port") == 0)) && break
        sleep 0.1
    done
    wait_quiet
    read -r "R[$name,tps_alone]" "R[$name,cpu_alone]" < <(bench_run "$port" "$pid" "$dir/bench-$name-alone.log")
    open_idle "$port" "$max_idle" "$dir/idle-$name-again.out"
    line="$(grep -m 1 '^connected=' "$dir/idle-$name-again.out")"
    say "$name: $max_idle idle clients again: $line"
    [[ "$line" == *" failed=0 "* ]] || R[$name,logins]+=" (reconnect: $line)"
    wait_quiet
    read -r t2 c2 < <(bench_run "$port" "$pid" "$dir/bench-$name-idle2.log")
    stop_idle
    R[$name,tps_idle]="$(awk -v a="$t1" -v b="$t2" 'BEGIN { if (a ~ /^[0-9]+$/ && b ~ /^[0-9]+$/) printf "%.0f", (a + b) / 2; else print "failed" }')"
    R[$name,cpu_idle]="$(awk -v a="$c1" -v b="$c2" 'BEGIN { printf "%.1f", (a + b) / 2 }')"
    R[$name,tps_runs]="$t1, $t2"
}

say "machine: $(machine_line)"
start_time="$(date -u '+%Y-%m-%d %H:%M UTC')"
setup_postgres 200
for name in pgbouncer lakepool; do
    if [[ "$name" == pgbouncer ]]; then
        start_pgbouncer pgbouncer 0 "$max_client"
    else
        start_lakepool lakepool 0 "${LAKEPOOL_WORKERS:-}" "$max_client"
    fi
    say "$name: 127.0.0.1:${PORT[$name]}, pid ${PID[$name]}, open files limit" \
        "$(awk '/^Max open files/ { print $4 }' "/proc/${PID[$name]}/limits")"
    measure "$name"
    stop_pooler "$name"
done

echo
echo "Idle clients: plain TCP, SCRAM login, then nothing (transaction mode: no server connection held)."
echo "KiB/client = (VmRSS with N idle clients - VmRSS with none) / N. Then pgbench -S -c $clients -j $threads"
echo "-T $duration with all $max_idle idle clients connected, after they disconnected, and with them again"
echo "(the tps and CPU with idle clients are the mean of the two runs with them)."
echo
hdr="$(printf '%-10s %10s' pooler "no clients")"
for n in $idle_counts; do hdr+="$(printf ' %12s %10s' "$n idle" "KiB/client")"; done
printf '%s\n' "$hdr"
for name in pgbouncer lakepool; do
    row="$(printf '%-10s %10s' "$name" "${R[$name,rss0]} KiB")"
    for n in $idle_counts; do
        row+="$(printf ' %12s %10s' "${R[$name,rss$n]} KiB" \
            "$(awk -v a="${R[$name,rss$n]}" -v b="${R[$name,rss0]}" -v n="$n" 'BEGIN { printf "%.2f", (a - b) / n }')")"
    done
    printf '%s\n' "$row"
done
echo
printf '%-10s %-18s %16s %12s %16s %12s %9s %14s\n' pooler "logins ok" "tps, $max_idle idle" "CPU us/tx" \
    "tps, no idle" "CPU us/tx" "ratio" "RSS after run"
for name in pgbouncer lakepool; do
    printf '%-10s %-18s %16s %12s %16s %12s %9s %14s\n' "$name" "${R[$name,logins]}" \
        "${R[$name,tps_idle]}" "${R[$name,cpu_idle]}" "${R[$name,tps_alone]}" "${R[$name,cpu_alone]}" \
        "$(awk -v a="${R[$name,tps_idle]}" -v b="${R[$name,tps_alone]}" 'BEGIN {
            if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2fx", a / b; else printf "-" }')" \
        "${R[$name,rss_after]} KiB"
done
echo
for name in pgbouncer lakepool; do
    for n in $idle_counts; do
        echo "$name: $n idle: ${R[$name,est$n]} established client connections on its port"
    done
    echo "$name: tps of the two runs with $max_idle idle clients: ${R[$name,tps_runs]}"
done
echo "PgBouncer $pgbouncer_version ($pgbouncer_src), lakepool $lakepool_desc (workers: ${LAKEPOOL_WORKERS:-default});" \
    "started $start_time"
echo "$(machine_line); open files limit $(ulimit -n)"
