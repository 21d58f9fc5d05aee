#!/usr/bin/env python3
"""Builds the fuzz seeds (fuzz/seeds/<target>/) from recorded traffic and the SQL of the
classifier's unit tests.

    seeds.py CAPTURE_DIR   (run from anywhere; writes into fuzz/seeds/)

CAPTURE_DIR holds record.py's conn-N.bin files. Per connection: the startup packets
(`startup`), the login messages both ways (`frame`), every query text (`sql`), and the
post-login traffic, in the order and pieces it was read, as a `txn` script (see
src/fuzzing/txn.rs: op 0 = client bytes, op 10 = deliver them, op 6 = server bytes, op 12 =
deliver them). Hand-written seeds are added for what the traffic lacks.
"""
import hashlib
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "seeds")
REPO = os.path.dirname(ROOT)
TXN_CAP = 64 * 1024


def save(target, data, name=None):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def records(path):
    data = open(path, "rb").read()
    i = 0
    while i + 5 <= len(data):
        d = data[i : i + 1]
        (n,) = struct.unpack(">I", data[i + 1 : i + 5])
        yield d, data[i + 5 : i + 5 + n]
        i += 5 + n


def messages(stream, start):
    """(offset, tag, body) of the tagged messages from `start`."""
    i = start
    while i + 5 <= len(stream):
        (n,) = struct.unpack(">I", stream[i + 1 : i + 5])
        if i + 1 + n > len(stream):
            return
        yield i, stream[i], stream[i + 5 : i + 1 + n]
        i += 1 + n


def split(path):
    recs = list(records(path))
    client = b"".join(b for d, b in recs if d == b"C")
    server = b"".join(b for d, b in recs if d == b"S")
    # Untagged startup packets: SSLRequest (answered by one byte), then the StartupMessage.
    packets, c = [], 0
    while c + 8 <= len(client):
        (n,) = struct.unpack(">I", client[c : c + 4])
        packets.append(client[c : c + n])
        code = client[c + 4 : c + 8]
        c += n
        if code != b"\x04\xd2\x16\x2f":
            break
    s = 1 if server[:1] in (b"N", b"S") and packets and len(packets[0]) == 8 else 0
    login_c = c
    for off, tag, _ in messages(client, c):
        if tag != ord("p"):
            break
        login_c = off + 1 + struct.unpack(">I", client[off + 1 : off + 5])[0]
    login_s = None
    for off, tag, body in messages(server, s):
        if tag == ord("Z"):
            login_s = off + 6
            break
    return recs, client, server, packets, (c, login_c), (s, login_s)


def txn_script(recs, login_c, login_s, config):
    out = bytearray([config])
    seen = {b"C": 0, b"S": 0}
    start = {b"C": login_c, b"S": login_s}
    for d, b in recs:
        lo = max(0, start[d] - seen[d])
        seen[d] += len(b)
        b = b[lo:]
        if not b:
            continue
        raw, deliver = (0, 10) if d == b"C" else (6, 12)
        for i in range(0, len(b), 255):
            piece = b[i : i + 255]
            out += bytes([raw, len(piece)]) + piece
        out += bytes([deliver]) + struct.pack(">H", min(len(b), 65535))
        if len(out) > TXN_CAP:
            break
    return bytes(out)


def from_capture(capture):
    for name in sorted(os.listdir(capture)):
        recs, client, server, packets, (c0, c1), (s0, s1) = split(os.path.join(capture, name))
        for p in packets:
            save("startup", p)
        save("frame", struct.pack(">HB", 8192, 7) + server[s0:s1 or len(server)])
        save("frame", struct.pack(">HB", 1024, 1) + client[c0:c1])
        if s1 is None:
            continue
        save("frame", struct.pack(">HB", 65535, 255) + server[s1 : s1 + 4096])
        for _, tag, body in messages(client, c1):
            if tag == ord("Q"):
                save("sql", body.rstrip(b"\0"))
            elif tag == ord("P"):
                parts = body.split(b"\0")
                if len(parts) > 1:
                    save("sql", parts[1])
        for config in (0x0B, 0x19, 0x08):
            save("txn", txn_script(recs, c1, s1, config))


def from_unit_tests():
    src = open(os.path.join(REPO, "src", "proto", "sql_tests.rs")).read()
    for m in re.finditer(r'r#"(.*?)"#|"((?:[^"\\]|\\.)*)"', src, re.S):
        raw, esc = m.group(1), m.group(2)
        if raw is not None:
            text = raw
        else:
            text = re.sub(r"\\(.)", lambda e: {"n": "\n", "t": "\t", "0": "\0"}.get(e.group(1), e.group(1)), esc)
        if len(text) > 3:
            save("sql", text.encode())


def by_hand():
    save("startup", struct.pack(">II", 8, 80877104), "gssenc")
    save("startup", struct.pack(">IIII", 16, 80877102, 4242, 0xDEADBEEF), "cancel")
    save("startup", struct.pack(">II", 8, 196608) + b"\0", "no-params")
    save("frame", struct.pack(">HB", 16, 3) + b"Q\0\0\0\x09sel" + b"Z\0\0\0\x05I" + b"p\xff\xff\xff\xff", "limits")


def txn_ops(config, *ops):
    """A txn script from (op, args...) tuples; see Session::step in src/fuzzing/txn.rs."""
    out = bytearray([config])
    for op in ops:
        out += bytes([op[0]])
        for a in op[1:]:
            out += a if isinstance(a, bytes) else bytes([a])
    return bytes(out)


def hand_txn():
    deliver_c, deliver_s = (10, b"\xff\xff"), (12, b"\xff\xff")
    parse = lambda name, sql: (2, name << 5, sql)  # name index, SQL index
    bind = lambda name: (2, (name << 5) | 2)
    execute, sync, query = (2, 7), (2, 9), lambda sql: (2, 11, sql)
    srv = lambda b: (7, b)
    one, two, cc, ready, err = srv(0), srv(2), srv(5), srv(7), srv(9)
    # Two statements through a one-entry cache: every Bind prepares again.
    save("txn", txn_ops(0x19, parse(1, 0), parse(2, 1), sync, deliver_c, one, one, ready,
                        deliver_s, bind(1), execute, bind(2), execute, (5, b"\x00\x40"), sync,
                        deliver_c, one, two, cc, ready, deliver_s, (15,)), "cache-thrash")
    # A query larger than the read buffer, held whole to be inspected.
    save("txn", txn_ops(0x0B, (4, b"Q", b"\x00\x75\x30", b"x", 8, b"select '"), (10, b"\x20\x00"),
                        deliver_c, cc, ready, deliver_s), "big-query")
    # COPY FROM STDIN, pipelined with its data.
    save("txn", txn_ops(0x0B, query(26), (2, 14), (2, 14), (2, 15), deliver_c, srv(11), cc,
                        ready, deliver_s), "copy-in")
    # An error mid-pipeline, then SQL-level PREPARE/EXECUTE across two servers.
    save("txn", txn_ops(0x0B, bind(3), execute, parse(1, 0), sync, deliver_c, err, ready,
                        deliver_s, query(13), deliver_c, cc, ready, deliver_s, (14,), query(15),
                        deliver_c, cc, ready, cc, ready, deliver_s), "error-then-sql-prepare")
    # pg_prepared_statements with statements to prepare first.
    save("txn", txn_ops(0x0B, parse(1, 0), parse(2, 1), sync, deliver_c, one, one, ready,
                        deliver_s, (14,), query(21), deliver_c, one, one, ready, cc, ready,
                        deliver_s), "catalog")


def main():
    from_capture(sys.argv[1])
    from_unit_tests()
    by_hand()
    hand_txn()
    for t in sorted(os.listdir(SEEDS)):
        print(t, len(os.listdir(os.path.join(SEEDS, t))))


if __name__ == "__main__":
    main()
