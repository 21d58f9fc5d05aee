#!/usr/bin/env bash
# Records real client/server traffic for the fuzz seeds: a throwaway PostgreSQL cluster on
# loopback, record.py in front of it, then psql and pgbench sessions through the proxy
# (simple, extended and prepared protocols, COPY, session state, errors, catalog queries).
# Usage: fuzz/capture/capture.sh OUT_DIR   (then fuzz/capture/seeds.py OUT_DIR)
# Ports: PG_PORT (default 25432) and PROXY_PORT (default 25433), both below 32768.
set -euo pipefail
out=$(realpath -m "${1:?usage: capture.sh OUT_DIR}")
here=$(cd "$(dirname "$0")" && pwd)
pg_bin=${PG_BIN_DIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
pg_port=${PG_PORT:-25432}
proxy_port=${PROXY_PORT:-25433}
work=$(mktemp -d)
chmod 755 "$work"
as_pg() { if [[ $(id -u) == 0 ]]; then setpriv --reuid=postgres --regid=postgres --init-groups "$@"; else "$@"; fi; }
[[ $(id -u) == 0 ]] && chown postgres: "$work"
cleanup() {
    [[ -n "${proxy:-}" ]] && kill "$proxy" 2>/dev/null || true
    as_pg "$pg_bin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
echo secret >"$work/pw" && chmod 644 "$work/pw"
as_pg "$pg_bin/initdb" -D "$work/data" -U app --auth=scram-sha-256 --pwfile="$work/pw" >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$work/data" -l "$work/log" -w \
    -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1" start >/dev/null
mkdir -p "$out"
python3 "$here/record.py" "$proxy_port" "$pg_port" "$out" &
proxy=$!
sleep 1
export PGHOST=127.0.0.1 PGPORT=$proxy_port PGUSER=app PGPASSWORD=secret PGDATABASE=postgres
export PGSSLMODE=disable
run_psql() { psql -X -q -v ON_ERROR_STOP=0 "$@" >/dev/null 2>&1 || true; }

PGSSLMODE=prefer run_psql -c 'select 1'
pgbench -i -s 1 -q >/dev/null 2>&1 || echo "pgbench -i failed" >&2
for mode in simple extended prepared; do
    pgbench -t 5 -c 1 -M "$mode" >/dev/null 2>&1 || echo "pgbench -M $mode failed" >&2
done
run_psql -c '\d pgbench_accounts' -c '\dt' -c '\l'
run_psql <<'SQL'
SET search_path TO public;
SET LOCAL work_mem = '1MB';
SELECT set_config('app.tenant', '42', false);
BEGIN;
SELECT pg_advisory_lock(1);
DECLARE c CURSOR WITH HOLD FOR SELECT aid FROM pgbench_accounts LIMIT 3;
COMMIT;
FETCH 2 FROM c;
CLOSE c;
PREPARE p(int) AS SELECT abalance FROM pgbench_accounts WHERE aid = $1;
EXECUTE p(1);
SELECT name, statement FROM pg_prepared_statements;
DEALLOCATE p;
LISTEN ch;
NOTIFY ch, 'hello';
CREATE TEMP TABLE t (a int, b text);
COPY t FROM STDIN;
1	one
2	two
\.
COPY t TO STDOUT;
SELECT * FROM missing_table;
BEGIN;
SELECT 1/0;
ROLLBACK;
DO $$ BEGIN PERFORM 1; END $$;
SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY;
RESET ALL;
DISCARD ALL;
SELECT repeat('x', 20000);
SQL
run_psql <<'SQL'
SELECT $1::int + 1 \bind 41 \g
SELECT 'ab' || $1 \bind cd \g
SQL
sleep 1
echo "recorded $(ls "$out" | wc -l) connections in $out"
