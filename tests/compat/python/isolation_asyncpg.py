"""Session isolation through a transaction pooler with asyncpg (driven by
tests/e2e/isolation_drivers.rs).

The changes run with Connection.execute() (simple query protocol); the checks with fetchrow(),
which asyncpg runs as named prepared statements. Otherwise as isolation_psycopg.py, with the same
environment.
"""

import asyncio
import os
import ssl
import sys

import asyncpg

E = os.environ
LABEL = f"asyncpg {asyncpg.__version__}"


NOTICES = []


async def connect():
    ctx = ssl.create_default_context(cafile=E["COMPAT_CA"])
    conn = await asyncpg.connect(
        host=E.get("COMPAT_HOST", "127.0.0.1"),
        port=int(E["COMPAT_PORT"]),
        user=E["COMPAT_USER"],
        password=E["COMPAT_PASSWORD"],
        database=E["COMPAT_DB"],
        ssl=ctx,
        timeout=10,
        command_timeout=60,
    )
    conn.add_log_listener(lambda _c, m: NOTICES.append(f"{m.severity}: {m.message}"))
    return conn


async def row(conn, sql):
    values = await conn.fetchrow(sql)
    return "|".join("" if v is None else str(v) for v in values)


async def main():
    failures = []
    changes = [s for s in E["ISO_CHANGES"].splitlines() if s.strip()]
    for change in changes:
        first = await connect()
        await first.execute(change)
        await first.close()
        second = await connect()
        got = await row(second, E["ISO_CHECK"])
        await second.close()
        if got != E["ISO_DEFAULTS"]:
            failures.append(f"after {change!r} a new connection sees {got!r}, want {E['ISO_DEFAULTS']!r}")

    mine, other = await connect(), await connect()
    for change in E["ISO_OWN_CHANGES"].splitlines():
        if change.strip():
            await mine.execute(change)
    for i in range(3):
        got = await row(other, E["ISO_CHECK"])
        if got != E["ISO_DEFAULTS"]:
            failures.append(f"round {i}: the other connection sees {got!r}")
        got = await row(mine, E["ISO_OWN_CHECK"])
        if got != E["ISO_OWN_WANT"]:
            failures.append(f"round {i}: own settings in autocommit {got!r}, want {E['ISO_OWN_WANT']!r}")
        async with mine.transaction():
            got = await row(mine, E["ISO_OWN_CHECK"])
        if got != E["ISO_OWN_WANT"]:
            failures.append(f"round {i}: own settings in a transaction {got!r}, want {E['ISO_OWN_WANT']!r}")
    await mine.close()
    await other.close()
    failures.extend(f"unexpected notice {n!r}" for n in NOTICES)

    if failures:
        for f in failures:
            print(f"FAIL {LABEL}: {f}")
        sys.exit(1)
    print(f"OK {LABEL}: {len(changes)} changes did not leak; own settings followed the connection")


if __name__ == "__main__":
    asyncio.run(main())
