#!/usr/bin/env bash
# A/B of two lakepool builds: CPU per transaction, user and kernel apart, over
# several rounds in one run, so a difference can be told from noise.
#
#   LAKEPOOL_BIN=target/release/lakepool LAKEPOOL_BIN_B=/path/to/older/lakepool benches/ab.sh
#
# On two shared cores one 10 s pgbench run of a pooler varies by 5-10 % in CPU
# per transaction, more than most code changes are worth. This script starts
# both builds (plain TCP, transaction mode, pool 20, one worker each) on one
# throwaway PostgreSQL cluster and, per workload, runs pgbench against A and B
# alternately for ROUNDS rounds, swapping which goes first each round. It
# prints every round's CPU us/tx (utime+stime from /proc/PID/stat, split) and
# then the median of each build and B/A: user time is where a code change
# shows; kernel time is mostly loopback TCP and scheduling.
#
# LAKEPOOL_BIN_B=pgbouncer makes B PgBouncer (PGBOUNCER_BIN, or Debian's), with the
# same pool, users and verifier; without prepared statements in transaction mode
# (before 1.21) it skips "select prepared". LAKEPOOL_BIN_B=relay makes B
# benches/relay.c, a byte relay with one server connection per client: the floor
# under a proxy's CPU per transaction here (it does no pooling; the cluster allows
# 200 connections, so keep CLIENTS below ~175).
#
# Env: ROUNDS (5), DURATION (s per run, 10), CLIENTS (50), THREADS (2),
# POOL_SIZE (20), SCALE (10), WORKERS (1), ONLY (comma-separated workload
# names: "select simple", "select extended", "select prepared", "select churn (-C)",
# "tpcb-like simple"; for churn, CPU per transaction is CPU per login), KEEP_DIR=1,
# MAX_OTHER_CPU (10), QUIET_WAIT (120), CLIENT_LEG (tcp; unix: pgbench reaches
# both through Unix-domain sockets, see lib.sh).
set -euo pipefail

cd "$(dirname "$0")/.."
repo="$(pwd)"
me=ab.sh
# shellcheck source=benches/lib.sh
source "$repo/benches/lib.sh"

[[ -n "${LAKEPOOL_BIN:-}" && -n "${LAKEPOOL_BIN_B:-}" ]] ||
    die "set LAKEPOOL_BIN (build A) and LAKEPOOL_BIN_B (build B, \"pgbouncer\" or \"relay\")"
rounds="${ROUNDS:-5}"
duration="${DURATION:-10}"
clients="${CLIENTS:-50}"
threads="${THREADS:-2}"
workers="${WORKERS:-1}"
zero_ok="max_other quiet_wait"
check_numbers rounds duration clients threads workers pool_size scale max_other quiet_wait

bench_init
say "machine: $(machine_line)"
start_time="$(date -u '+%Y-%m-%d %H:%M UTC')"
setup_postgres 200
workloads=(
    "select simple|-S -M simple"
    "select extended|-S -M extended"
    "select prepared|-S -M prepared"
    "select churn (-C)|-S -M simple -C"
    "tpcb-like simple|-M simple"
)

start_lakepool a 0 "$workers"
if [[ "$LAKEPOOL_BIN_B" == pgbouncer ]]; then
    # B is PgBouncer (PGBOUNCER_BIN or Debian's): the same pool, users and verifier.
    start_pgbouncer b 0
    b_desc="PgBouncer $pgbouncer_version ($pgbouncer_src)"
    [[ "$pgbouncer_prepared" == 1 ]] || workloads=("${workloads[@]/select prepared*/}")
elif [[ "$LAKEPOOL_BIN_B" == relay ]]; then
    start_relay b
    b_desc="benches/relay.c (byte relay, one PostgreSQL connection per client)"
else
    cp "$LAKEPOOL_BIN_B" "$dir/lakepool-b"
    start_lakepool b 0 "$workers" 2000 "$dir/lakepool-b"
    b_desc="$LAKEPOOL_BIN_B"
fi


say "warm-up"
for inst in a b; do
    "$pgbench" -n -S -c "$clients" -j "$threads" -T 3 -h "$(client_host "$inst")" -p "${PORT[$inst]}" -U bench bench \
        >"$dir/warmup-$inst.log" 2>&1 || die "warm-up against $inst failed: $(tail -n 3 "$dir/warmup-$inst.log")"
    [[ "${KIND[$inst]}" == pgbouncer && "$pgbouncer_prepared" == 0 ]] && continue
    "$pgbench" -n -M prepared -c "$clients" -j "$clients" -T 3 -h "$(client_host "$inst")" -p "${PORT[$inst]}" -U bench bench \
        >"$dir/warmup-prepared-$inst.log" 2>&1 ||
        die "prepared warm-up against $inst failed: $(tail -n 3 "$dir/warmup-prepared-$inst.log")"
done

# run_one WORKLOAD INST OPTIONS...: prints "tps user_us sys_us" per transaction.
run_one() {
    local workload="$1" inst="$2" pid log u0 s0 u1 s1 tx tps
    shift 2
    pid="${PID[$inst]}"
    log="$dir/run-$inst.log"
    if [[ "$workload" == tpcb* ]]; then
        # What pgbench does itself without -n, done directly: every run starts from the
        # same table state.
        PGSSLMODE=disable "$psql" -X -q -h 127.0.0.1 -p "$pg_port" -U bench -d bench \
            -c "VACUUM pgbench_branches" -c "VACUUM pgbench_tellers" -c "TRUNCATE pgbench_history" >/dev/null
    fi
    wait_quiet
    read -r u0 s0 < <(user_sys_ticks "$pid")
    "$pgbench" -n -c "$clients" -j "$threads" -T "$duration" "$@" \
        -h "$(client_host "$inst")" -p "${PORT[$inst]}" -U bench bench >"$log" 2>&1 ||
        die "pgbench against $inst failed: $(tail -n 3 "$log")"
    read -r u1 s1 < <(user_sys_ticks "$pid")
    tx="$(awk -F': ' '/^number of transactions actually processed/ { print $2 + 0 }' "$log")"
    tps="$(awk '/^tps = / { print $3 }' "$log")"
    ((tx > 0)) || die "no transactions against $inst; see $log"
    awk -v tps="$tps" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$clk_tck" -v tx="$tx" \
        'BEGIN { printf "%.0f %.2f %.2f\n", tps, u / hz / tx * 1e6, s / hz / tx * 1e6 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

summary=()
for spec in "${workloads[@]}"; do
    [[ -n "$spec" ]] || continue
    IFS='|' read -r name opts <<<"$spec"
    [[ -n "${ONLY:-}" && ",$ONLY," != *",$name,"* ]] && continue
    read -r -a opt_array <<<"$opts"
    : >"$dir/a.txt"
    : >"$dir/b.txt"
    for ((r = 1; r <= rounds; r++)); do
        order=(a b)
        ((r % 2 == 0)) && order=(b a)
        for inst in "${order[@]}"; do
            line="$(run_one "$name" "$inst" "${opt_array[@]}")"
            echo "$line" >>"$dir/$inst.txt"
            read -r tps u s <<<"$line"
            printf '    %-17s round %d  %s  %6s tps  user %5s  kernel %5s  total %5.2f us/tx\n' \
                "$name" "$r" "$inst" "$tps" "$u" "$s" "$(awk -v u="$u" -v s="$s" 'BEGIN { print u + s }')" >&2
        done
    done
    row="$name"
    for inst in a b; do
        tps_m="$(awk '{ print $1 }' "$dir/$inst.txt" | median)"
        u_m="$(awk '{ print $2 }' "$dir/$inst.txt" | median)"
        s_m="$(awk '{ print $3 }' "$dir/$inst.txt" | median)"
        t_m="$(awk '{ print $2 + $3 }' "$dir/$inst.txt" | median)"
        row+="|$tps_m|$u_m|$s_m|$t_m"
    done
    summary+=("$row")
done

echo
echo "pgbench -c $clients -j $threads -T $duration, scale $scale; transaction pooling, pool size $pool_size,"
echo "workers $workers, plain, client leg $client_leg (server leg TCP); $rounds rounds per workload, A and B alternating. Medians of CPU us/tx"
echo "(utime, stime and their sum per run, /proc/PID/stat). B/A: ratio of the medians of the sums."
echo
fmt='%-17s %8s %7s %7s %7s %8s %7s %7s %7s %6s\n'
# shellcheck disable=SC2059
printf "$fmt" workload "A tps" "A user" "A kern" "A CPU" "B tps" "B user" "B kern" "B CPU" "B/A"
for row in "${summary[@]}"; do
    IFS='|' read -r name at au as ac bt bu bs bc <<<"$row"
    # shellcheck disable=SC2059
    printf "$fmt" "$name" "$at" "$au" "$as" "$ac" "$bt" "$bu" "$bs" "$bc" \
        "$(awk -v a="$ac" -v b="$bc" 'BEGIN { printf "%.2f", b / a }')"
done
echo
echo "A: $LAKEPOOL_BIN"
echo "B: $b_desc"
echo "PostgreSQL $("$pg_bin/postgres" --version | awk '{ print $3 }'); started $start_time"
echo "$(machine_line)"
