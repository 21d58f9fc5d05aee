"""asyncpg compatibility workload for lakepool (driven by tests/e2e/compat.rs).

COMPAT_CLIENTS asyncio tasks, each with its own connection, run COMPAT_ITERS iterations of: a
transaction (INSERT with parameters, SELECT checking the running count and sum, the backend pid
and the session's SET values, COMMIT), every 10th iteration a rolled back INSERT, then
autocommit SELECTs that round-trip int, text, numeric, timestamptz, bytea and NULL parameters,
and once a statement that fails (division by zero) and is executed again. asyncpg runs every
query as a named prepared statement: the INSERT and the sum query are prepared once with
Connection.prepare() and reused, the others go through asyncpg's statement cache. Behind a
transaction pooler they are executed on whichever server connection the client gets.

Environment: COMPAT_HOST, COMPAT_PORT, COMPAT_USER, COMPAT_PASSWORD, COMPAT_DB, COMPAT_CA (PEM of
the CA), COMPAT_TABLE, COMPAT_CLIENTS (10), COMPAT_ITERS (30).
Prints "OK ..." and exits 0, or prints "FAIL ..." and exits 1.
"""

import asyncio
import datetime as dt
import os
import ssl
import sys
import time
from decimal import Decimal

import asyncpg

TABLE = os.environ.get("COMPAT_TABLE", "compat_asyncpg")
CLIENTS = int(os.environ.get("COMPAT_CLIENTS", "10"))
ITERS = int(os.environ.get("COMPAT_ITERS", "30"))
LABEL = f"asyncpg {asyncpg.__version__}"


class Mismatch(Exception):
    pass


class Rollback(Exception):
    pass


def check(ok, what, got, want):
    if not ok:
        raise Mismatch(f"{what}: got {got!r}, want {want!r}")


async def connect():
    ctx = ssl.create_default_context(cafile=os.environ["COMPAT_CA"])  # verifies the host name
    return await asyncpg.connect(
        host=os.environ.get("COMPAT_HOST", "127.0.0.1"),
        port=int(os.environ["COMPAT_PORT"]),
        user=os.environ["COMPAT_USER"],
        password=os.environ["COMPAT_PASSWORD"],
        database=os.environ["COMPAT_DB"],
        ssl=ctx,
        timeout=10,
        command_timeout=60,
    )


def stamp(c, i):
    base = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    return base + dt.timedelta(hours=c, minutes=i, microseconds=123456)


def payload(c, i):
    return bytes([c % 256, i % 256, 0, 0xFF, ord("\\"), ord("'")])


INSERT = f"INSERT INTO {TABLE} (client, i, amount, note, at, payload) VALUES ($1, $2, $3, $4, $5, $6)"
SUM = (
    "SELECT count(*), sum(amount), pg_backend_pid(), current_setting('application_name'),"
    f" current_setting('search_path') FROM {TABLE} WHERE client = $1"
)
ECHO = (
    "SELECT $1::int4 * 2, $2::text || '-\u00fc', $3::numeric + 1,"
    " $4::timestamptz + interval '1 day', $5::bytea, $6::int4, pg_backend_pid()"
)
DIV = "SELECT 10 / $1::int4"


async def insert(ins, c, i, amount):
    await ins.fetch(c, i, amount, f"c{c}-i{i}", stamp(c, i), payload(c, i))
    check(ins.get_statusmsg() == "INSERT 0 1", "INSERT status", ins.get_statusmsg(), "INSERT 0 1")


async def run_client(c, pids):
    app = f"compat_asyncpg_{c}"
    path = f"compat_c{c}, public"
    i = 0
    try:
        conn = await connect()
        try:
            await conn.execute(f"SET application_name = '{app}'")
            await conn.execute(f"SET search_path = {path}")
            ins = await conn.prepare(INSERT)
            total = await conn.prepare(SUM)
            for i in range(1, ITERS + 1):
                async with conn.transaction():
                    await insert(ins, c, i, Decimal(f"{i}.50"))
                    row = await total.fetchrow(c)
                    check(row[0] == i, "count(*)", row[0], i)
                    want = Decimal(i * (i + 2)) / 2
                    check(row[1] == want, "sum(amount)", row[1], want)
                    pids.add(row[2])
                    check(row[3] == app, "application_name", row[3], app)
                    check(row[4] == path, "search_path", row[4], path)
                if i % 10 == 0:
                    # A rolled back insert leaves nothing behind (checked by the next count).
                    try:
                        async with conn.transaction():
                            await insert(ins, c, 1000 + i, Decimal(999))
                            raise Rollback()
                    except Rollback:
                        pass

                # Autocommit: parameters of several types round-trip.
                text = f"c{c}-i{i} 'q\" \\"
                num = Decimal("100000000000000000000.125") + i
                row = await conn.fetchrow(
                    ECHO, c * 1000 + i, text, num, stamp(c, i), payload(c, i), None
                )
                check(row[0] == 2 * (c * 1000 + i), "int4 * 2", row[0], 2 * (c * 1000 + i))
                check(row[1] == text + "-\u00fc", "text", row[1], text + "-\u00fc")
                check(row[2] == num + 1, "numeric + 1", row[2], num + 1)
                want_ts = stamp(c, i) + dt.timedelta(days=1)
                check(row[3] == want_ts, "timestamptz + 1 day", row[3], want_ts)
                check(row[4] == payload(c, i), "bytea", row[4], payload(c, i))
                check(row[5] is None, "NULL int4", row[5], None)
                pids.add(row[6])
                if i == ITERS // 2:
                    # An error in a prepared statement; the statement stays usable.
                    try:
                        await conn.fetchval(DIV, 0)
                        raise Mismatch("10 / 0 succeeded")
                    except asyncpg.exceptions.DivisionByZeroError:
                        pass
                got = await conn.fetchval(DIV, 5)
                check(got == 2, "10 / 5", got, 2)
            i = ITERS + 1
            # The session's settings are still there.
            got = await conn.fetchval("SHOW application_name")
            check(got == app, "SHOW application_name", got, app)
            got = await conn.fetchval("SHOW search_path")
            check(got == path, "SHOW search_path", got, path)
        finally:
            await conn.close()
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        return f"client {c}, iteration {i}: {type(e).__name__}: {e}".strip()
    return None


async def main():
    start = time.monotonic()
    conn = await connect()
    try:
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (client int NOT NULL, i int NOT NULL,"
            " amount numeric NOT NULL, note text, at timestamptz, payload bytea,"
            " PRIMARY KEY (client, i))"
        )
        await conn.execute(f"TRUNCATE {TABLE}")
    finally:
        await conn.close()
    pids = set()
    results = await asyncio.gather(*(run_client(c, pids) for c in range(CLIENTS)))
    failures = [r for r in results if r]
    if failures:
        for f in failures:
            print(f"FAIL {LABEL}: {f}")
        return 1
    conn = await connect()
    try:
        rows, clients = await conn.fetchrow(
            f"SELECT count(*), count(DISTINCT client) FROM {TABLE}"
        )
    finally:
        await conn.close()
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
        sys.exit(asyncio.run(main()))
    except Exception as e:  # noqa: BLE001
        print(f"FAIL {LABEL}: {type(e).__name__}: {e}")
        sys.exit(1)
