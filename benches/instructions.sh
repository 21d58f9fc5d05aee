#!/usr/bin/env bash
# Instructions per login and per transaction, counted by valgrind's callgrind:
# deterministic, so a change of a few percent in user-space work shows, where
# CPU time on two shared cores moves by more than that between runs.
#
#   benches/instructions.sh                      # lakepool and PgBouncer
#   LAKEPOOL_BIN=A LAKEPOOL_BIN_B=B benches/instructions.sh   # two builds
#
# Each pooler (transaction mode, pool 20, plain TCP, RUST_LOG=warn, PgBouncer
# without connection logging, as in the other scripts) runs under callgrind on
# a throwaway cluster. After a warm-up, counters are zeroed, then measured and
# dumped for: LOGINS sequential logins with one `-S` query each (pgbench -C -c 1),
# and TXS sequential `-S` transactions, simple and extended (pgbench -c 1).
# One client at a time by default: the pooler waits in epoll between messages, so
# the runtime's park work is counted per message, more than under load. CLIENTS=N
# runs the transactions from N clients at once instead (valgrind slows the pooler
# so much that it is then always busy: parks become rare, as under heavy load);
# logins stay sequential.
#
# SHA-256 is reported apart: callgrind's CPU has no SHA extensions, so the sha2
# crate runs its portable code here while the real CPU uses SHA-NI; a PgBouncer
# built without OpenSSL (the tag's default build here) always uses its own.
#
# CACHE_SIM=1 also simulates the caches (callgrind --cache-sim=yes, with the host's L1 sizes)
# and reports L1 instruction-cache misses per login and per transaction: how often the work
# fetches a 64-byte line of code the cache no longer holds, which a long hot path does even
# where its instruction count is low. Only user-space code is simulated; on the real machine
# each system call's kernel code evicts more. With CLIENTS > 1 the interleaving, and so the
# misses, vary by about 15% between runs. HOT_LINES=1 dumps per-instruction counts
# (--dump-instr=yes) and prints each target's footprint per login and per simple
# transaction: the distinct 64-byte lines of code run in at least half of them, by function
# (benches/hot_lines.py; needs python3).
#
# Env: LOGINS (200), TXS (2000), CLIENTS (1), TOP (0: the TOP functions by inclusive count of
# lakepool's simple transactions), CACHE_SIM (0), HOT_LINES (0), PGBOUNCER_BIN, LAKEPOOL_BIN, LAKEPOOL_BIN_B
# (instead of PgBouncer), KEEP_DIR=1. Needs valgrind (apt-get install valgrind).
set -euo pipefail

cd "$(dirname "$0")/.."
repo="$(pwd)"
me=instructions.sh
# shellcheck source=benches/lib.sh
source "$repo/benches/lib.sh"

logins="${LOGINS:-200}"
txs="${TXS:-2000}"
clients="${CLIENTS:-1}"
top="${TOP:-0}"
cache_sim="${CACHE_SIM:-0}"
vg_opts=(--tool=callgrind)
[[ "$cache_sim" == 1 ]] && vg_opts+=(--cache-sim=yes)
hot_lines="${HOT_LINES:-0}"
[[ "$hot_lines" == 1 ]] && vg_opts+=(--dump-instr=yes)
zero_ok="top"
check_numbers logins txs clients top
per_client=$((txs / clients))
((per_client > 0)) || die "TXS must be at least CLIENTS"
txs=$((per_client * clients))
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null &&
    command -v callgrind_annotate >/dev/null || die "valgrind is needed (apt-get install valgrind)"

bench_init
setup_postgres 50
# Callgrind's files, writable by PgBouncer's OS user too.
mkdir -p "$dir/cg"
[[ "$(id -u)" == 0 ]] && chown postgres: "$dir/cg"

# under_callgrind NAME: restarts pooler NAME (already configured by start_*) under
# callgrind; sets VG[NAME] (the pid to control) and RUNAS[NAME].
declare -A VG RUNAS
under_callgrind() {
    local name="$1" port="${PORT[$1]}" kind="${KIND[$1]}" i
    stop_pooler "$name"
    if [[ "$kind" == pgbouncer ]]; then
        "${as_owner[@]}" valgrind "${vg_opts[@]}" --callgrind-out-file="$dir/cg/$name.%p" \
            "$pgbouncer_bin" -q "$dir/$name.ini" 2>"$dir/vg-$name.log" &
        RUNAS[$name]=owner
    else
        RUST_LOG=warn valgrind "${vg_opts[@]}" --callgrind-out-file="$dir/cg/$name.%p" \
            "$dir/$name-bin" --config "$dir/$name.toml" 2>"$dir/vg-$name.log" &
        RUNAS[$name]=self
    fi
    VG[$name]=$!
    PID[$name]=$!
    for ((i = 0; i < 600; i++)); do
        port_busy "$port" && return 0
        kill -0 "${VG[$name]}" 2>/dev/null || die "$name exited under valgrind: $(tail -n 5 "$dir/vg-$name.log")"
        sleep 0.1
    done
    die "$name did not listen under valgrind within 60 s"
}

control() {
    local name="$1"
    shift
    if [[ "${RUNAS[$name]}" == owner ]]; then
        "${as_owner[@]}" callgrind_control "$@" "${VG[$name]}" >/dev/null
    else
        callgrind_control "$@" "${VG[$name]}" >/dev/null
    fi
}

bench() { "$pgbench" -n -j 1 -h 127.0.0.1 -p "${PORT[$1]}" -U bench bench "${@:2}" >"$dir/bench-$1.log" 2>&1 ||
    die "pgbench against $1 failed: $(tail -n 3 "$dir/bench-$1.log")"; }

# measure NAME: prints "Ir/login sha/login Ir/tx-simple Ir/tx-extended".
measure() {
    local name="$1" f part n sha out=() misses=()
    bench "$name" -c 1 -S -C -t 20
    bench "$name" -c "$clients" -S -t 200
    bench "$name" -c "$clients" -S -M extended -t 200
    for part in "login|-c 1 -S -C -t $logins|$logins" "simple|-c $clients -S -t $per_client|$txs" \
        "extended|-c $clients -S -M extended -t $per_client|$txs"; do
        IFS='|' read -r tag opts n <<<"$part"
        control "$name" -z
        # shellcheck disable=SC2086
        bench "$name" $opts
        control "$name" -d "$tag"
        f="$(grep -l "^desc: Trigger: dump $tag" "$dir/cg/$name".* | tail -n 1)"
        chmod a+r "$f" 2>/dev/null || true
        out+=("$(awk -v n="$n" '/^totals:/ { printf "%.0f", $2 / n }' "$f")")
        # I1mr's column, found by name in the events line.
        [[ "$cache_sim" == 1 ]] && misses+=("$(awk -v n="$n" '/^events:/ { for (i = 2; i <= NF; i++)
            if ($i == "I1mr") col = i } /^totals:/ { printf "%.0f", $col / n }' "$f")")
        sha="$(callgrind_annotate --auto=no --inclusive=no --threshold=100 "$f" 2>/dev/null |
            awk -v n="$n" '/^ *[0-9,]+ .*(sha256::compress|SHA256_Transform|sha256_block)/ {
                gsub(",", "", $1); s += $1 } END { printf "%.0f", s / n }')"
        [[ "$tag" == login ]] && out+=("$sha")
        [[ "$tag" == login ]] && cp "$f" "$dir/login-$name.out"
        [[ "$tag" == simple ]] && cp "$f" "$dir/simple-$name.out"
    done
    echo "${out[*]} ${misses[*]}"
}

targets=(lakepool)
cp "$dir/lakepool" "$dir/lakepool-bin"
start_lakepool lakepool 0 1 2000 "$dir/lakepool-bin"
if [[ -n "${LAKEPOOL_BIN_B:-}" ]]; then
    cp "$LAKEPOOL_BIN_B" "$dir/lakepool-b-bin"
    start_lakepool lakepool-b 0 1 2000 "$dir/lakepool-b-bin"
    targets+=(lakepool-b)
else
    start_pgbouncer pgbouncer 0
    targets+=(pgbouncer)
fi

declare -A RESULT
for t in "${targets[@]}"; do
    say "$t under callgrind"
    under_callgrind "$t"
    RESULT[$t]="$(measure "$t")"
    stop_pid "${VG[$t]}"
    unset "PID[$t]"
done

echo
echo "Instructions (callgrind Ir) per login (a login and one -S query, pgbench -C -c 1) and per"
echo "transaction (pgbench -S -c $clients), after a warm-up; SHA-256 compression counted apart (see the header)."
echo
printf '%-12s %12s %12s %12s %14s %16s\n' target "Ir/login" "of it SHA" "w/o SHA" "Ir/tx simple" "Ir/tx extended"
for t in "${targets[@]}"; do
    read -r l s ts te _ <<<"${RESULT[$t]}"
    printf '%-12s %12s %12s %12s %14s %16s\n' "$t" "$l" "$s" "$((l - s))" "$ts" "$te"
done
if [[ "$cache_sim" == 1 ]]; then
    echo
    echo "L1 instruction-cache misses (callgrind I1mr, simulated $(awk '/^desc: I1 cache:/ {
        sub(/^desc: I1 cache: /, ""); print; exit }' "$dir/simple-lakepool.out"))"
    printf '%-12s %12s %14s %16s\n' target "I1mr/login" "I1mr/tx simple" "I1mr/tx extended"
    for t in "${targets[@]}"; do
        read -r _ _ _ _ ml ms mx <<<"${RESULT[$t]}"
        printf '%-12s %12s %14s %16s\n' "$t" "$ml" "$ms" "$mx"
    done
fi
if [[ "$hot_lines" == 1 ]]; then
    for t in "${targets[@]}"; do
        echo
        echo "$t, per login: code footprint"
        python3 "$repo/benches/hot_lines.py" "$dir/login-$t.out" "$logins" "$top" ||
            warn "hot_lines.py failed on $t"
        echo "$t, per simple transaction: code footprint"
        python3 "$repo/benches/hot_lines.py" "$dir/simple-$t.out" "$txs" "$top" ||
            warn "hot_lines.py failed on $t"
    done
fi
echo
echo "lakepool: $lakepool_desc${LAKEPOOL_BIN_B:+; lakepool-b: $LAKEPOOL_BIN_B}"
[[ -z "${LAKEPOOL_BIN_B:-}" ]] && echo "PgBouncer $pgbouncer_version ($pgbouncer_src)"
echo "$(machine_line); $(date -u '+%Y-%m-%d %H:%M UTC')"
if ((top > 0)); then
    echo
    echo "lakepool, simple transactions: top $top functions by inclusive instructions per transaction"
    # Below the frames every instruction passes through (main, the runtime's loop).
    callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$dir/simple-lakepool.out" 2>/dev/null |
        awk -v n="$txs" -v top="$top" '/^ *[0-9,]+ +\(/ { c = $1; gsub(",", "", c); c += 0; if (!all) all = c;
            line = $0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", line); sub(/ \[.*\]$/, "", line);
            if (c >= all || line ~ /^\?\?\?:(main|lakepool::main|lakepool::serve|\(below main\)|0x)|libc-start|libc_start/) next;
            printf "%10.0f  %s\n", c / n, line; if (++k >= top) exit }'
fi
