#!/usr/bin/env bash
# Builds lakepool with profile-guided optimization (PGO), trained on the benchmark workloads.
#
#   benches/pgo.sh                 # prints the optimized binary's path (target/pgo/<host>/release/lakepool)
#
# 1. an instrumented build (-Cprofile-generate) in target/pgo-generate;
# 2. training: that binary pools pgbench against a throwaway cluster (transaction mode, pool
#    20, plain TCP) for DURATION s of each workload: -S simple, extended and prepared, -S -C
#    (a login per transaction) and TPC-B-like;
# 3. llvm-profdata merges what it recorded (on SIGTERM, as the process exits);
# 4. the optimized build (-Cprofile-use) in target/pgo.
#
# Why: lakepool's per-transaction code spans more lines than the L1 instruction cache holds
# (benches/instructions.sh HOT_LINES=1); a profile lets LLVM lay the hot paths out together
# and inline by measured frequency. The profile must match the source and rustc's LLVM: it is
# kept in target/pgo/lakepool.profdata for PGO_PROFDATA, never committed.
#
# Needs llvm-profdata from rustc's own LLVM (`rustup component add llvm-tools`), PostgreSQL's
# server binaries and pgbench, ss and openssl (benches/lib.sh); not PgBouncer.
# Env: DURATION (s per workload, 10), CLIENTS (50), PGO_PROFDATA (use this merged profile and
# skip steps 1-3).
set -euo pipefail

# A relative PGO_PROFDATA is the caller's, resolved before the cd below.
[[ -z "${PGO_PROFDATA:-}" ]] || PGO_PROFDATA="$(realpath -- "$PGO_PROFDATA")" ||
    { echo "pgo.sh: PGO_PROFDATA=$PGO_PROFDATA: no such file" >&2; exit 1; }
cd "$(dirname "$0")/.."
repo="$(pwd)"
me=pgo.sh
# shellcheck source=benches/lib.sh
source "$repo/benches/lib.sh"

duration="${DURATION:-10}"
clients="${CLIENTS:-50}"
check_numbers duration clients

host="$(rustc -vV | sed -n 's/^host: //p')"
profdata_tool="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
[[ -x "$profdata_tool" ]] || die "llvm-profdata not found: run \`rustup component add llvm-tools\`"

# --target: without it the flags also reach build scripts and proc macros, whose
# instrumented runs during the build would land in the profile. CARGO_ENCODED_RUSTFLAGS
# (fields split by 0x1f, not spaces) keeps a path with spaces whole. LLVM warns about
# functions the profile no longer matches (a PGO_PROFDATA older than the source).
optimized() {
    local profile="$1"
    say "building with the profile (target/pgo)"
    (cd "$repo" && CARGO_ENCODED_RUSTFLAGS="-Cprofile-use=$profile" \
        CARGO_TARGET_DIR="$repo/target/pgo" cargo build --release --quiet --target "$host" \
        --bin lakepool) || die "the optimized build failed"
    echo "$repo/target/pgo/$host/release/lakepool"
}

if [[ -n "${PGO_PROFDATA:-}" ]]; then
    [[ -f "$PGO_PROFDATA" ]] || die "PGO_PROFDATA=$PGO_PROFDATA is not a file"
    optimized "$PGO_PROFDATA"
    exit 0
fi

raw="$repo/target/pgo-generate/profraw"
rm -rf "$raw"
mkdir -p "$raw"
say "instrumented build (target/pgo-generate)"
(cd "$repo" && CARGO_ENCODED_RUSTFLAGS="-Cprofile-generate=$raw" CARGO_TARGET_DIR="$repo/target/pgo-generate" \
    cargo build --release --quiet --target "$host" --bin lakepool) || die "the instrumented build failed"
ls "$raw"/*.profraw >/dev/null 2>&1 && die "the build itself wrote a profile (instrumented build scripts?)"
# The instrumented binary is the one the training runs (bench_init copies it); no PgBouncer.
LAKEPOOL_BIN="$repo/target/pgo-generate/$host/release/lakepool"
needs_pgbouncer=0
bench_init

setup_postgres 200
start_lakepool train 0 1 2000
for opts in "-S -M simple" "-S -M extended" "-S -M prepared" "-S -M simple -C" "-M simple"; do
    say "training: pgbench $opts -c $clients -T $duration"
    # shellcheck disable=SC2086
    "$pgbench" -n -h 127.0.0.1 -p "${PORT[train]}" -U bench -c "$clients" -j 2 -T "$duration" \
        $opts bench >"$dir/train.log" 2>&1 || die "pgbench $opts failed: $(tail -n 3 "$dir/train.log")"
done
# The profile is written as the process exits.
stop_pooler train
ls "$raw"/*.profraw >/dev/null 2>&1 || die "the instrumented lakepool wrote no profile"
"$profdata_tool" merge -o "$dir/lakepool.profdata" "$raw"/*.profraw ||
    die "llvm-profdata merge failed"
mkdir -p "$repo/target/pgo"
cp "$dir/lakepool.profdata" "$repo/target/pgo/lakepool.profdata"
optimized "$repo/target/pgo/lakepool.profdata"
