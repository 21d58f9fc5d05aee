#!/usr/bin/env bash
# End-to-end checks of scripts/quickstart.sh, as a user runs it:
#
#   1. --smoke: cluster, stand-in, lakepool, one query as the rotated identity, then one
#      SIGINT to lakepool must drain it to exit status 0;
#   2. Ctrl-C while a query runs (SIGINT to the script's whole process group, as a terminal
#      sends it): the query finishes, lakepool logs its graceful drain and never "second
#      signal", PostgreSQL stops and the temp dir is removed;
#      a second Ctrl-C stops lakepool at once, and the clean-up still runs;
#   3. the same with the output piped through tee (the pipe dies with the Ctrl-C);
#   4. an error half-way (a stand-in that cannot start): PostgreSQL stops, the temp dir goes.
#
#   LAKEPOOL_BIN=target/debug/lakepool STANDIN_BIN=target/debug/lakepool-standin \
#       scripts/quickstart-test.sh
#
# Without LAKEPOOL_BIN the quickstart builds release binaries (slow). Exits 1 if a check fails.
set -uo pipefail

cd "$(dirname "$0")/.."

scratch="$(mktemp -d /tmp/lakepool-quickstart-test.XXXXXX)"
trap '[[ -n "${KEEP_LOGS:-}" ]] || rm -rf "$scratch"' EXIT
failures=0
fail() {
    echo "quickstart-test: FAIL: $*" >&2
    failures=$((failures + 1))
}
pass() { echo "quickstart-test: ok: $*"; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Field of a quickstart log: the cluster's temp dir, PostgreSQL's port, lakepool's connect line.
temp_dir_of() { sed -n 's/.*creating a PostgreSQL cluster in \(.*\)\/data$/\1/p' "$1" | head -n 1; }
pg_port_of() { sed -n 's/.*PostgreSQL listens on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$1" | head -n 1; }
conninfo_of() { sed -n 's/^ *psql "\(host=.*\)"$/\1/p' "$1" | head -n 1; }

# Waits up to $2 seconds for `$1` (a command string) to succeed.
wait_until() {
    local deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        eval "$1" && return 0
        sleep 0.2
    done
    eval "$1"
}

# The quickstart left nothing behind: its temp dir is gone and its PostgreSQL port is closed.
assert_cleaned() { # <what> <log>; returns 1 when something was left behind
    local what="$1" log="$2" dir port before=$failures
    dir="$(temp_dir_of "$log")"
    port="$(pg_port_of "$log")"
    if [[ -z "$dir" ]]; then
        fail "$what: no cluster directory in the output:
$(cat "$log")"
        return
    fi
    if ! wait_until "[[ ! -e '$dir' ]]" 30; then
        fail "$what: $dir was not removed"
    fi
    if [[ -n "$port" ]] && port_busy "$port"; then
        fail "$what: PostgreSQL still accepts connections on 127.0.0.1:$port"
    fi
    if [[ -n "$port" ]] && pgrep -f -- "-D $dir/data" >/dev/null; then
        fail "$what: a process for $dir/data is still running"
    fi
    ((failures == before))
}

pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
[[ -n "${PG_BIN_DIR:-}" ]] && pg_bin="$PG_BIN_DIR"
psql=("$pg_bin/psql" -X -At)

# --- 1. smoke --------------------------------------------------------------------------
log="$scratch/smoke.log"
if scripts/quickstart.sh --smoke >"$log" 2>&1; then
    grep -q "smoke test passed" "$log" && pass "smoke" || fail "smoke: no 'smoke test passed':
$(cat "$log")"
else
    fail "smoke: exit status $?:
$(cat "$log")"
fi
assert_cleaned "smoke" "$log"

# Starts the interactive quickstart in a process group of its own, the way a terminal runs a
# foreground job, with `$1` as the shell command around it; waits until it serves. Job control
# (set -m) gives the job its own group. SIGINT must reach it as from a terminal, but a signal
# ignored when a shell starts cannot be trapped, and this script may itself run with SIGINT
# ignored (started in the background, under nohup, by a supervisor): python3 restores the
# default before the quickstart's shell starts.
start_interactive() { # <shell command> <log>
    set -m
    /usr/bin/python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])' bash -c "$1" &
    qs_pid=$!
    set +m
    if ! wait_until "grep -q 'lakepool is running on' '$2' 2>/dev/null" 300; then
        fail "interactive quickstart did not come up:
$(cat "$2" 2>/dev/null)"
        kill_quickstart "$2"
        return 1
    fi
}

# Last resort after a failed check: kill the quickstart's group and stop and remove what it
# left, so a failing run leaves no cluster behind.
kill_quickstart() { # <log>
    local dir
    kill -KILL -- -"$qs_pid" 2>/dev/null
    wait "$qs_pid" 2>/dev/null
    dir="$(temp_dir_of "$1")"
    [[ -n "$dir" && -d "$dir/data" ]] || return 0
    pkill -KILL -f -- "--config $dir/lakepool.toml" 2>/dev/null
    pkill -KILL -f -- "--pg-ca-file $dir/ca.crt" 2>/dev/null
    local as_owner=()
    [[ "$(id -u)" == 0 ]] && as_owner=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$dir/data" stop -m immediate -w >/dev/null 2>&1
    rm -rf "$dir"
}

# Sends SIGINT to the quickstart's process group (a terminal's Ctrl-C), `times` times, and
# waits for it to exit.
ctrl_c() { # <log> [times]
    local n
    for ((n = 0; n < ${2:-1}; n++)); do
        kill -INT -- -"$qs_pid"
        # The next Ctrl-C once the first one was passed on.
        ((n + 1 < ${2:-1})) && wait_until "grep -q 'stopping lakepool' '$1'" 30
    done
    local deadline=$((SECONDS + 90))
    while kill -0 "$qs_pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.2
    done
    qs_rc=0
    if kill -0 "$qs_pid" 2>/dev/null; then
        fail "the quickstart did not exit within 90 s of Ctrl-C:
$(cat "$1" 2>/dev/null)"
        kill_quickstart "$1"
        qs_rc=137
        return
    fi
    wait "$qs_pid" || qs_rc=$?
}

# True when a query of ours that sleeps runs on a server (through lakepool at $conn).
sleeping() {
    [[ "$("${psql[@]}" "$conn" -c "SELECT count(*) FROM pg_stat_activity
        WHERE query LIKE 'SELECT ''slept%' AND state = 'active'" 2>/dev/null)" == 1 ]]
}

# --- 2. Ctrl-C while a query runs --------------------------------------------------------
log="$scratch/ctrl-c.log"
if start_interactive "exec scripts/quickstart.sh >'$log' 2>&1" "$log"; then
    conn="$(conninfo_of "$log") sslmode=disable connect_timeout=10"
    "${psql[@]}" "$conn" -c "SELECT 'slept ' || pg_sleep(3)" >"$scratch/query.out" 2>&1 &
    query_pid=$!
    running="$("${psql[@]}" "$conn" -c "SELECT 1" 2>&1)"
    [[ "$running" == 1 ]] || fail "ctrl-c: query through lakepool failed: $running"
    # The sleeping query is on a server before the Ctrl-C.
    wait_until sleeping 30 || fail "ctrl-c: the sleeping query never showed up as active"
    ctrl_c "$log"
    query_rc=0
    wait "$query_pid" || query_rc=$?
    ((qs_rc == 0)) || fail "ctrl-c: the quickstart exited with status $qs_rc"
    if ((query_rc == 0)) && grep -q "^slept" "$scratch/query.out"; then
        pass "ctrl-c: the query in flight finished during the drain"
    else
        fail "ctrl-c: the query in flight did not finish (status $query_rc): $(cat "$scratch/query.out")"
    fi
    grep -q "shutting down: no new connections" "$log" || fail "ctrl-c: no graceful drain in the log"
    grep -q "lakepool: stopped" "$log" || fail "ctrl-c: lakepool did not log 'stopped'"
    if grep -q "second signal" "$log"; then
        fail "ctrl-c: one Ctrl-C reached lakepool twice:
$(cat "$log")"
    else
        pass "ctrl-c: one Ctrl-C, one graceful drain"
    fi
    drained="$(grep -n "lakepool: stopped" "$log" | head -n 1 | cut -d: -f1)"
    stopped="$(grep -n "stopping PostgreSQL" "$log" | head -n 1 | cut -d: -f1)"
    [[ -n "$drained" && -n "$stopped" && "$drained" -lt "$stopped" ]] ||
        fail "ctrl-c: PostgreSQL was not stopped after lakepool's drain"
    assert_cleaned "ctrl-c" "$log"
fi

# --- 2b. Ctrl-C twice: lakepool stops at once, the clean-up still runs -------------------
log="$scratch/ctrl-c-twice.log"
if start_interactive "exec scripts/quickstart.sh >'$log' 2>&1" "$log"; then
    conn="$(conninfo_of "$log") sslmode=disable connect_timeout=10"
    "${psql[@]}" "$conn" -c "SELECT 'slept ' || pg_sleep(60)" >/dev/null 2>&1 &
    query_pid=$!
    wait_until sleeping 30 || fail "ctrl-c twice: the sleeping query never showed up as active"
    ctrl_c "$log" 2
    wait "$query_pid" 2>/dev/null
    ((qs_rc != 0)) || fail "ctrl-c twice: exit status 0 although lakepool was stopped at once"
    grep -q "second signal: exiting now" "$log" && pass "ctrl-c twice: the second one stops at once" ||
        fail "ctrl-c twice: no 'second signal' in the log:
$(cat "$log")"
    assert_cleaned "ctrl-c twice" "$log"
fi

# --- 3. Ctrl-C with the output piped through tee -----------------------------------------
log="$scratch/piped.log"
if start_interactive "scripts/quickstart.sh 2>&1 | tee '$log' >/dev/null" "$log"; then
    ctrl_c "$log"
    assert_cleaned "piped" "$log" && pass "piped: cleaned up after Ctrl-C"
fi

# --- 4. an error half-way ----------------------------------------------------------------
log="$scratch/error.log"
if QUICKSTART_LIFETIME=not-a-number scripts/quickstart.sh --smoke >"$log" 2>&1; then
    fail "error half-way: the quickstart succeeded with a broken stand-in"
else
    grep -q "the stand-in exited" "$log" || fail "error half-way: unexpected failure:
$(cat "$log")"
    grep -q "stopping PostgreSQL" "$log" || fail "error half-way: PostgreSQL was not stopped"
    assert_cleaned "error half-way" "$log" && pass "error half-way: cleaned up"
fi

if ((failures)); then
    echo "quickstart-test: $failures check(s) failed" >&2
    exit 1
fi
echo "quickstart-test: all checks passed"
