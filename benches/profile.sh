#!/usr/bin/env bash
# Where a pooler's microseconds go under pgbench -S -c 50 -j 2 (transaction
# mode, pool 20, plain TCP), for lakepool and PgBouncer on the same cluster.
#
#   benches/profile.sh
#   PGBOUNCER_BIN=/path/to/pgbouncer LAKEPOOL_BIN=target/release/lakepool benches/profile.sh
#
# Per pooler, two runs of DURATION s each:
#   1. counting: CPU per transaction split into user and kernel time
#      (/proc/PID/stat utime/stime), context switches per transaction
#      (voluntary and involuntary, /proc/PID/task/*/status), and system calls
#      per transaction, in all and per call (perf stat on the syscalls:*
#      tracepoints);
#   2. sampling: perf record -g -p PID; the report gives the kernel / pooler /
#      libc split of the samples and the top symbols by self time.
# perf.data files are kept with KEEP_DIR=1 (perf report -i DIR/perf-NAME.data).
#
# Env: DURATION (10), CLIENTS (50), THREADS (2), MODE (simple, extended, prepared:
# pgbench -S -M MODE; churn: -S -C; tpcb: the TPC-B-like script),
# LAKEPOOL_WORKERS, PGBOUNCER_BIN, LAKEPOOL_BIN, POOL_SIZE, SCALE (10),
# TOP (25 symbols), FREQ (999 Hz sampling), KEEP_DIR=1, MAX_OTHER_CPU, QUIET_WAIT.
set -euo pipefail

cd "$(dirname "$0")/.."
repo="$(pwd)"
me=profile.sh
# shellcheck source=benches/lib.sh
source "$repo/benches/lib.sh"

duration="${DURATION:-10}"
clients="${CLIENTS:-50}"
threads="${THREADS:-2}"
mode="${MODE:-simple}"
top="${TOP:-25}"
freq="${FREQ:-999}"
zero_ok="max_other quiet_wait"
check_numbers duration clients threads top freq pool_size scale max_other quiet_wait
# simple, extended, prepared: pgbench -S -M MODE. churn: -S -M simple -C (a login per
# transaction). tpcb: the TPC-B-like default script, -M simple (seven statements in a
# transaction block).
case "$mode" in
simple | extended | prepared) bench_opts=(-S -M "$mode") ;;
churn) bench_opts=(-S -M simple -C) ;;
tpcb) bench_opts=(-M simple) ;;
*) die "MODE must be simple, extended, prepared, churn or tpcb" ;;
esac
command -v perf >/dev/null || die "perf is needed (apt-get install linux-perf)"

bench_init
perf_check
((perf_ok)) || die "perf cannot count system calls here"

# The calls a pooler's data path makes; each is counted if the kernel has its
# tracepoint. raw_syscalls:sys_enter counts every call, listed or not.
calls=()
for c in read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait epoll_pwait2 \
    epoll_ctl futex poll ppoll io_uring_enter accept4 close getsockopt setsockopt sched_yield mmap \
    munmap madvise mprotect brk clock_gettime getrandom; do
    for t in /sys/kernel/tracing /sys/kernel/debug/tracing; do
        if [[ -d "$t/events/syscalls/sys_enter_$c" ]]; then
            calls+=("$c")
            break
        fi
    done
done
events="raw_syscalls:sys_enter,context-switches,cpu-migrations"
for c in "${calls[@]}"; do events+=",syscalls:sys_enter_$c"; done

# Voluntary and involuntary context switches of all threads of a process.
ctxt_switches() {
    awk '/^voluntary_ctxt_switches/ { v += $2 } /^nonvoluntary_ctxt_switches/ { n += $2 }
         END { print v + 0, n + 0 }' /proc/"$1"/task/*/status
}

# pgbench_run PORT LOG: one pgbench run in the background; sets run_pid.
pgbench_run() {
    "$pgbench" -n "${bench_opts[@]}" -c "$clients" -j "$threads" -T "$duration" \
        -h 127.0.0.1 -p "$1" -U bench bench >"$2" 2>&1 &
    run_pid=$!
    track "$run_pid"
}
# pgbench_wait LOG: waits for it (in this shell: the run is its child); sets tx.
pgbench_wait() {
    local rc=0
    wait "$run_pid" || rc=$?
    untrack "$run_pid"
    ((rc == 0)) || die "pgbench failed: $(tail -n 3 "$1")"
    tx="$(awk -F': ' '/^number of transactions actually processed/ { print $2 + 0 }' "$1")"
}

profile() {
    local name="$1" pid="${PID[$1]}" port="${PORT[$1]}" tx u0 s0 u1 s1 v0 n0 v1 n1 p
    "$pgbench" -n "${bench_opts[@]}" -c "$clients" -j "$threads" -T 3 -h 127.0.0.1 -p "$port" -U bench bench \
        >"$dir/warmup-$name.log" 2>&1 || die "warm-up against $name failed: $(tail -n 3 "$dir/warmup-$name.log")"

    # 1. Counting run.
    wait_quiet
    read -r u0 s0 < <(user_sys_ticks "$pid")
    read -r v0 n0 < <(ctxt_switches "$pid")
    perf stat -x, -o "$dir/stat-$name.csv" -e "$events" -p "$pid" >/dev/null 2>&1 &
    p=$!
    track "$p"
    sleep 0.3
    pgbench_run "$port" "$dir/count-$name.log"
    pgbench_wait "$dir/count-$name.log"
    kill -INT "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    untrack "$p"
    read -r u1 s1 < <(user_sys_ticks "$pid")
    read -r v1 n1 < <(ctxt_switches "$pid")

    echo
    echo "=== $name (pid $pid, $(awk '/^Threads:/ { print $2 }' "/proc/$pid/status") threads):" \
        "$(awk '/^tps = / { printf "%.0f tps", $3 }' "$dir/count-$name.log"), $tx transactions"
    awk -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$clk_tck" -v tx="$tx" -v v=$((v1 - v0)) -v n=$((n1 - n0)) 'BEGIN {
        printf "CPU per transaction: %.1f us = user %.1f + kernel %.1f (%.0f%% kernel)\n",
            (u + s) / hz / tx * 1e6, u / hz / tx * 1e6, s / hz / tx * 1e6, (u + s > 0 ? s * 100 / (u + s) : 0)
        printf "context switches per transaction: %.2f (voluntary %.2f, involuntary %.2f)\n",
            (v + n) / tx, v / tx, n / tx }'
    awk -F, -v tx="$tx" '
        $1 !~ /^[0-9]+$/ { next }
        $3 == "raw_syscalls:sys_enter" { printf "system calls per transaction: %.2f\n", $1 / tx; next }
        $3 == "context-switches" { printf "context switches per transaction (perf): %.2f\n", $1 / tx; next }
        $3 == "cpu-migrations" { printf "CPU migrations per transaction: %.3f\n", $1 / tx; next }
    ' "$dir/stat-$name.csv"
    awk -F, -v tx="$tx" '$1 ~ /^[0-9]+$/ && $3 ~ /^syscalls:sys_enter_/ && $1 / tx >= 0.005 {
            sub(/^syscalls:sys_enter_/, "", $3); printf "%.2f %s\n", $1 / tx, $3 }' "$dir/stat-$name.csv" |
        sort -rn | awk '{ printf "%s%s %s", (NR > 1 ? ", " : "per call, per transaction: "), $2, $1 } END { print "" }'

    # 2. Sampling run.
    wait_quiet
    perf record -F "$freq" -g -o "$dir/perf-$name.data" -p "$pid" >/dev/null 2>"$dir/record-$name.log" &
    p=$!
    track "$p"
    sleep 0.3
    pgbench_run "$port" "$dir/record-$name-pgbench.log"
    pgbench_wait "$dir/record-$name-pgbench.log"
    kill -INT "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    untrack "$p"
    perf report -i "$dir/perf-$name.data" --no-children --sort dso --stdio 2>/dev/null |
        awk '/^ +[0-9.]+%/ { printf "%s%s %s", (n++ ? ", " : "samples by object: "), $2, $1 } END { print "" }'
    # User space by where the code comes from: lakepool modules (three path
    # segments), other crates (first segment), shared libraries (object).
    echo "user-space samples by crate / module (% of all samples):"
    perf report -i "$dir/perf-$name.data" --no-children --sort dso,sym --stdio 2>/dev/null |
        awk '/^ +[0-9.]+%/ && $2 != "[kernel.kallsyms]" {
            pct = $1; sub(/%/, "", pct); dso = $2
            sym = $0; sub(/^.*\[\.\] /, "", sym); sub(/^</, "", sym)
            n = split(sym, seg, "::")
            if (dso != "lakepool" || n < 2) key = (dso == "lakepool" ? sym : dso)
            else if (seg[1] == "lakepool") key = seg[1] "::" seg[2] (n > 3 ? "::" seg[3] : "")
            else key = seg[1]
            sub(/ .*/, "", key)
            t[key] += pct
        }
        END { for (k in t) if (t[k] >= 0.3) printf "%.1f %s\n", t[k], k }' |
        sort -rn | awk '{ printf "%s%s %s%%", (NR > 1 ? ", " : "  "), $2, $1 } END { print "" }'
    echo "top $top symbols by self time ([k] kernel, [.] user space):"
    perf report -i "$dir/perf-$name.data" --no-children --sort sym --stdio 2>/dev/null |
        awk -v top="$top" '/^ +[0-9.]+%/ && n < top { n++; sub(/^ +/, "  "); print }'
    echo "kernel symbols by inclusive time (self + callees), top 15:"
    perf report -i "$dir/perf-$name.data" --children --sort sym --stdio -g none 2>/dev/null |
        awk '/^ +[0-9.]+% +[0-9.]+%/ && $0 ~ /\[k\]/ && n < 15 { n++; sub(/^ +/, "  "); print }'
}

say "machine: $(machine_line)"
start_time="$(date -u '+%Y-%m-%d %H:%M UTC')"
setup_postgres 300
start_pgbouncer pgbouncer 0
start_lakepool lakepool 0 "${LAKEPOOL_WORKERS:-}"
echo "pgbench ${bench_opts[*]} -c $clients -j $threads -T $duration, scale $scale; transaction mode, pool $pool_size, plain TCP"
for name in lakepool pgbouncer; do
    profile "$name"
done
echo
echo "PgBouncer $pgbouncer_version ($pgbouncer_src), lakepool $lakepool_desc (workers: ${LAKEPOOL_WORKERS:-default});" \
    "started $start_time"
echo "$(machine_line)"
