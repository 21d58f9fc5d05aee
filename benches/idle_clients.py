#!/usr/bin/env python3
"""Open N logged-in, idle PostgreSQL client connections and hold them.

Each connection sends a StartupMessage, logs in with SCRAM-SHA-256 (no channel
binding, plain TCP) and waits for ReadyForQuery; with --query it then runs one
SELECT 1 (simple or extended protocol); after that it sends nothing.
The salted password is derived once per (salt, iterations), so a login costs
this client a few HMACs instead of libpq's 4096-iteration PBKDF2: 10,000
logins take seconds, not minutes, and the pooler's share of the work is what
a real login costs it.

When every login has finished (or failed), one line goes to stdout:
    connected=N failed=M first_error=...
and the connections stay open until SIGTERM or SIGINT arrives.

Used by benches/idle.sh; loopback only.
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import resource
import signal
import struct


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--user", default="bench")
    p.add_argument("--database", default="bench")
    p.add_argument("--password-env", default="PGPASSWORD")
    p.add_argument("--sources", type=int, default=1,
                   help="spread connections over 127.0.0.1..127.0.0.N as source addresses")
    p.add_argument("--parallel", type=int, default=64, help="logins in flight at once")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per login")
    p.add_argument("--query", choices=("none", "simple", "extended"), default="none",
                   help="one SELECT 1 after the login (simple Query, or Parse/Bind/Execute/Sync), "
                        "then idle: what an application's pooled connection looks like")
    return p.parse_args()


class LoginError(Exception):
    pass


async def read_message(reader):
    head = await reader.readexactly(5)
    tag, length = head[:1], struct.unpack("!I", head[1:])[0]
    if length < 4 or length > 1 << 20:
        raise LoginError(f"bad message length {length}")
    return tag, await reader.readexactly(length - 4)


def message(tag, body):
    return tag + struct.pack("!I", len(body) + 4) + body


def error_text(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[part[:1]] = part[1:].decode(errors="replace")
    return f'{fields.get(b"C", "?")}: {fields.get(b"M", "?")}'


class Scram:
    """Client side of SCRAM-SHA-256; salted passwords cached per (salt, iterations)."""

    cache = {}

    def __init__(self, password):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"

    def first(self):
        return ("n,," + self.first_bare).encode()

    def final(self, server_first):
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        if not attrs["r"].startswith(self.nonce):
            raise LoginError("server nonce does not extend ours")
        salt, iters = base64.b64decode(attrs["s"]), int(attrs["i"])
        key = (salt, iters)
        if key not in Scram.cache:
            Scram.cache[key] = hashlib.pbkdf2_hmac("sha256", self.password, salt, iters)
        salted = Scram.cache[key]
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        auth_message = f"{self.first_bare},{server_first},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


async def first_query(kind, reader, writer):
    """Runs SELECT 1 once (kind "simple" or "extended") and reads up to ReadyForQuery."""
    if kind == "none":
        return
    if kind == "simple":
        writer.write(message(b"Q", b"SELECT 1\0"))
    else:
        writer.write(message(b"P", b"\0SELECT 1\0\0\0")
                     + message(b"B", b"\0\0\0\0\0\0\0\0")
                     + message(b"E", b"\0\0\0\0\0")
                     + message(b"S", b""))
    while True:
        tag, body = await read_message(reader)
        if tag == b"E":
            raise LoginError(error_text(body))
        if tag == b"Z":
            return


async def login(args, password, source):
    local = (source, 0) if source else None
    reader, writer = await asyncio.open_connection("127.0.0.1", args.port, local_addr=local)
    try:
        params = f"user\0{args.user}\0database\0{args.database}\0\0".encode()
        body = struct.pack("!I", 196608) + params
        writer.write(struct.pack("!I", len(body) + 4) + body)
        scram = None
        while True:
            tag, body = await read_message(reader)
            if tag == b"E":
                raise LoginError(error_text(body))
            if tag == b"Z":
                await first_query(args.query, reader, writer)
                return reader, writer
            if tag != b"R":
                continue  # ParameterStatus, BackendKeyData, NoticeResponse
            code = struct.unpack("!I", body[:4])[0]
            if code == 10:  # AuthenticationSASL
                if b"SCRAM-SHA-256\0" not in body[4:]:
                    raise LoginError("server offers no SCRAM-SHA-256")
                scram = Scram(password)
                first = scram.first()
                writer.write(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
            elif code == 11 and scram:  # SASLContinue
                writer.write(message(b"p", scram.final(body[4:].decode())))
            elif code in (0, 12):  # AuthenticationOk, SASLFinal
                pass
            else:
                raise LoginError(f"unexpected authentication request {code}")
    except BaseException:
        writer.close()
        raise


async def main():
    args = parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    password = os.environ.get(args.password_env, "")
    # Held until a signal arrives.
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sem = asyncio.Semaphore(args.parallel)
    held, errors = [], []

    async def one(i):
        source = f"127.0.0.{1 + i % args.sources}" if args.sources > 1 else None
        async with sem:
            try:
                held.append(await asyncio.wait_for(login(args, password, source), args.timeout))
            except (OSError, LoginError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                errors.append(f"{type(e).__name__}: {e}")

    await asyncio.gather(*(one(i) for i in range(args.count)))
    first = errors[0].replace("\n", " ") if errors else ""
    print(f"connected={len(held)} failed={len(errors)} first_error={first}", flush=True)

    await stop.wait()
    for _, writer in held:
        writer.close()


if __name__ == "__main__":
    asyncio.run(main())
