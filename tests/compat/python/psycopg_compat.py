"""psycopg 3 compatibility workload for lakepool (driven by tests/e2e/compat.rs).

COMPAT_CLIENTS threads, each with its own connection, run COMPAT_ITERS iterations of: a
transaction (INSERT with parameters, SELECT checking the running count and sum, the backend pid
and the session's SET values, COMMIT), every 10th iteration a rolled back INSERT, then
autocommit SELECTs that round-trip int, text, numeric, timestamptz, bytea and NULL parameters,
and once a statement that fails (division by zero) and is executed again. psycopg prepares a
query on the server (a named statement) once it has run it COMPAT_PREPARE_THRESHOLD times
("0" = from the first execution, "default" = psycopg's default of 5), so behind a transaction
pooler the prepared statements are executed on whichever server connection the client gets.

With COMPAT_PREPARED_MAX below the number of statements in use, psycopg keeps closing
(protocol-level Close) and re-preparing them.

Environment: COMPAT_HOST, COMPAT_PORT, COMPAT_USER, COMPAT_PASSWORD, COMPAT_DB, COMPAT_CA (PEM of
the CA), COMPAT_TABLE, COMPAT_CLIENTS (10), COMPAT_ITERS (30), COMPAT_PREPARE_THRESHOLD,
COMPAT_PREPARED_MAX.
Prints "OK ..." and exits 0, or prints "FAIL ..." and exits 1.
"""

import datetime as dt
import os
import sys
import threading
import time
from decimal import Decimal

import psycopg

TABLE = os.environ.get("COMPAT_TABLE", "compat_psycopg")
CLIENTS = int(os.environ.get("COMPAT_CLIENTS", "10"))
ITERS = int(os.environ.get("COMPAT_ITERS", "30"))
THRESHOLD = os.environ.get("COMPAT_PREPARE_THRESHOLD", "default")
# Fewer prepared statements kept than the workload uses: psycopg evicts the least recently
# used one with a protocol-level Close (libpq >= 17) and prepares it again on its next use.
PREPARED_MAX = os.environ.get("COMPAT_PREPARED_MAX", "default")
LABEL = f"psycopg {psycopg.__version__} prepare_threshold={THRESHOLD} prepared_max={PREPARED_MAX}"


class Mismatch(Exception):
    pass


def check(ok, what, got, want):
    if not ok:
        raise Mismatch(f"{what}: got {got!r}, want {want!r}")


def connect():
    conn = psycopg.connect(
        host=os.environ.get("COMPAT_HOST", "127.0.0.1"),
        port=os.environ["COMPAT_PORT"],
        user=os.environ["COMPAT_USER"],
        password=os.environ["COMPAT_PASSWORD"],
        dbname=os.environ["COMPAT_DB"],
        sslmode="verify-full",
        sslrootcert=os.environ["COMPAT_CA"],
        connect_timeout=10,
        autocommit=True,
    )
    if THRESHOLD != "default":
        conn.prepare_threshold = int(THRESHOLD)
    if PREPARED_MAX != "default":
        conn.prepared_max = int(PREPARED_MAX)
    return conn


def stamp(c, i):
    base = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    return base + dt.timedelta(hours=c, minutes=i, microseconds=123456)


def payload(c, i):
    return bytes([c % 256, i % 256, 0, 0xFF, ord("\\"), ord("'")])


INSERT = f"INSERT INTO {TABLE} (client, i, amount, note, at, payload) VALUES (%s, %s, %s, %s, %s, %s)"
SUM = (
    "SELECT count(*), sum(amount), pg_backend_pid(), current_setting('application_name'),"
    f" current_setting('search_path') FROM {TABLE} WHERE client = %s"
)
ECHO = (
    "SELECT %s::int4 * 2, %s::text || '-\u00fc', %s::numeric + 1,"
    " %s::timestamptz + interval '1 day', %s::bytea, %s::int4, pg_backend_pid()"
)
DIV = "SELECT 10 / %s::int4"


def insert(conn, c, i, amount):
    cur = conn.execute(INSERT, (c, i, amount, f"c{c}-i{i}", stamp(c, i), payload(c, i)))
    check(cur.rowcount == 1, "INSERT row count", cur.rowcount, 1)


def run_client(c, pids):
    app = f"compat_psycopg_{c}"
    path = f"compat_c{c}, public"
    i = 0
    try:
        with connect() as conn:
            conn.execute(f"SET application_name = '{app}'")
            conn.execute(f"SET search_path = {path}")
            for i in range(1, ITERS + 1):
                with conn.transaction():
                    insert(conn, c, i, Decimal(f"{i}.50"))
                    row = conn.execute(SUM, (c,)).fetchone()
                    check(row[0] == i, "count(*)", row[0], i)
                    want = Decimal(i * (i + 2)) / 2
                    check(row[1] == want, "sum(amount)", row[1], want)
                    pids.add(row[2])
                    check(row[3] == app, "application_name", row[3], app)
                    check(row[4] == path, "search_path", row[4], path)
                if i % 10 == 0:
                    # A rolled back insert leaves nothing behind (checked by the next count).
                    with conn.transaction():
                        insert(conn, c, 1000 + i, Decimal(999))
                        raise psycopg.Rollback()

                # Autocommit: parameters of several types round-trip.
                text = f"c{c}-i{i} 'q\" \\"
                num = Decimal("100000000000000000000.125") + i
                row = conn.execute(
                    ECHO, (c * 1000 + i, text, num, stamp(c, i), payload(c, i), None)
                ).fetchone()
                check(row[0] == 2 * (c * 1000 + i), "int4 * 2", row[0], 2 * (c * 1000 + i))
                check(row[1] == text + "-\u00fc", "text", row[1], text + "-\u00fc")
                check(row[2] == num + 1, "numeric + 1", row[2], num + 1)
                want_ts = stamp(c, i) + dt.timedelta(days=1)
                check(row[3] == want_ts, "timestamptz + 1 day", row[3], want_ts)
                check(bytes(row[4]) == payload(c, i), "bytea", row[4], payload(c, i))
                check(row[5] is None, "NULL int4", row[5], None)
                pids.add(row[6])
                if i == ITERS // 2:
                    # An error in a prepared statement; the statement stays usable.
                    try:
                        conn.execute(DIV, (0,))
                        raise Mismatch("10 / 0 succeeded")
                    except psycopg.errors.DivisionByZero:
                        pass
                row = conn.execute(DIV, (5,)).fetchone()
                check(row[0] == 2, "10 / 5", row[0], 2)
            i = ITERS + 1
            # The session's settings are still there.
            got = conn.execute("SHOW application_name").fetchone()[0]
            check(got == app, "SHOW application_name", got, app)
            got = conn.execute("SHOW search_path").fetchone()[0]
            check(got == path, "SHOW search_path", got, path)
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        return f"client {c}, iteration {i}: {type(e).__name__}: {e}".strip()
    return None


def main():
    start = time.monotonic()
    with connect() as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (client int NOT NULL, i int NOT NULL,"
            " amount numeric NOT NULL, note text, at timestamptz, payload bytea,"
            " PRIMARY KEY (client, i))"
        )
        conn.execute(f"TRUNCATE {TABLE}")
    pids = set()
    failures = [None] * CLIENTS

    def worker(c):
        failures[c] = run_client(c, pids)

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failures = [f for f in failures if f]
    if failures:
        for f in failures:
            print(f"FAIL {LABEL}: {f}")
        return 1
    with connect() as conn:
        rows, clients = conn.execute(
            f"SELECT count(*), count(DISTINCT client) FROM {TABLE}"
        ).fetchone()
    check(rows == CLIENTS * ITERS, f"rows in {TABLE}", rows, CLIENTS * ITERS)
    check(clients == CLIENTS, f"clients in {TABLE}", clients, CLIENTS)
    check(len(pids) >= 2, "distinct backend pids seen", sorted(pids), ">= 2")
    print(
        f"OK {LABEL}: {CLIENTS} clients x {ITERS} iterations,"
        f" {len(pids)} backend pids seen, {time.monotonic() - start:.1f} s"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001
        print(f"FAIL {LABEL}: {type(e).__name__}: {e}")
        sys.exit(1)
