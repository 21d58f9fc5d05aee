"""Session isolation through a transaction pooler with psycopg 3 (driven by
tests/e2e/isolation_drivers.rs).

Every statement is prepared (prepare_threshold = 0). For each statement of ISO_CHANGES, one
connection runs it in autocommit and disconnects; a new connection must then see the server
defaults (ISO_CHECK returns ISO_DEFAULTS). Then one connection runs ISO_OWN_CHANGES and must see
them (ISO_OWN_CHECK returns ISO_OWN_WANT) in autocommit and in transactions, while a second
connection using the same server in between sees the defaults. No statement may get a notice
(none of them is one lakepool cannot make work in transaction mode).

Environment: COMPAT_HOST, COMPAT_PORT, COMPAT_USER, COMPAT_PASSWORD, COMPAT_DB, COMPAT_CA,
ISO_CHANGES and ISO_OWN_CHANGES (one statement per line), ISO_CHECK, ISO_DEFAULTS, ISO_OWN_CHECK,
ISO_OWN_WANT (rows as "a|b|c", NULL as empty).
Prints "OK ..." and exits 0, or "FAIL ..." lines and exits 1.
"""

import os
import sys

import psycopg

E = os.environ
LABEL = f"psycopg {psycopg.__version__}"


NOTICES = []


def connect():
    conn = psycopg.connect(
        host=E.get("COMPAT_HOST", "127.0.0.1"),
        port=E["COMPAT_PORT"],
        user=E["COMPAT_USER"],
        password=E["COMPAT_PASSWORD"],
        dbname=E["COMPAT_DB"],
        sslmode="verify-full",
        sslrootcert=E["COMPAT_CA"],
        connect_timeout=10,
        autocommit=True,
    )
    conn.prepare_threshold = 0
    conn.add_notice_handler(lambda d: NOTICES.append(f"{d.severity}: {d.message_primary}"))
    return conn


def row(conn, sql):
    values = conn.execute(sql).fetchone()
    return "|".join("" if v is None else str(v) for v in values)


def main():
    failures = []
    changes = [s for s in E["ISO_CHANGES"].splitlines() if s.strip()]
    for change in changes:
        with connect() as first:
            first.execute(change)
        with connect() as second:
            got = row(second, E["ISO_CHECK"])
        if got != E["ISO_DEFAULTS"]:
            failures.append(f"after {change!r} a new connection sees {got!r}, want {E['ISO_DEFAULTS']!r}")

    mine, other = connect(), connect()
    for change in E["ISO_OWN_CHANGES"].splitlines():
        if change.strip():
            mine.execute(change)
    for i in range(3):
        got = row(other, E["ISO_CHECK"])
        if got != E["ISO_DEFAULTS"]:
            failures.append(f"round {i}: the other connection sees {got!r}")
        got = row(mine, E["ISO_OWN_CHECK"])
        if got != E["ISO_OWN_WANT"]:
            failures.append(f"round {i}: own settings in autocommit {got!r}, want {E['ISO_OWN_WANT']!r}")
        with mine.transaction():
            got = row(mine, E["ISO_OWN_CHECK"])
        if got != E["ISO_OWN_WANT"]:
            failures.append(f"round {i}: own settings in a transaction {got!r}, want {E['ISO_OWN_WANT']!r}")
    mine.close()
    other.close()
    failures.extend(f"unexpected notice {n!r}" for n in NOTICES)

    if failures:
        for f in failures:
            print(f"FAIL {LABEL}: {f}")
        sys.exit(1)
    print(f"OK {LABEL}: {len(changes)} changes did not leak; own settings followed the connection")


if __name__ == "__main__":
    main()
