#!/usr/bin/env python3
"""The code a workload runs on every transaction, in 64-byte cache lines.

    hot_lines.py CALLGRIND_OUT TRANSACTIONS [TOP]

TRANSACTIONS is how many units of work the dump covers (transactions, or logins for a
login dump).

Reads a callgrind dump written with --dump-instr=yes (benches/instructions.sh does so with
HOT_LINES=1) and counts the distinct 64-byte lines of code holding an instruction that ran at
least once every two transactions on average (so a branch not taken every time still counts):
the instruction-cache footprint of one transaction.
A footprint above the L1 instruction cache (32 KiB here) cannot stay in it from one
transaction to the next, and on the real machine the kernel's own code, run at every system
call, evicts more. Prints the total (lines, KiB, 4 KiB pages) and the TOP functions (20) by
their hot lines.
"""

import collections
import re
import sys

LINE = 64
PAGE = 4096


def parse(path):
    """Per (object, address): instructions executed there, and the function it is in."""
    names = {}

    def name(kind, text):
        m = re.match(r"\((\d+)\)(?: (.*))?", text)
        key = (kind, m.group(1))
        if m.group(2):
            names[key] = m.group(2)
        return names.get(key, "?")

    executed = collections.defaultdict(int)
    function = {}
    obj = fn = "?"
    last = 0
    call_cost = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            head, _, rest = line.partition("=")
            if head in ("ob", "cob"):
                value = name("ob", rest)
                if head == "ob":
                    obj = value
                continue
            if head in ("fn", "cfn"):
                value = name("fn", rest)
                if head == "fn":
                    fn = value
                continue
            if head in ("fl", "fi", "fe", "cfi", "cfl"):
                continue
            if head == "calls":
                # The next cost line is the call's inclusive cost, not this function's own.
                call_cost = True
                continue
            if line[0] not in "0123456789+-*":
                continue
            fields = line.split()
            pos = fields[0]
            if pos.startswith("0x"):
                addr = int(pos, 16)
            elif pos[0] == "+":
                addr = last + int(pos[1:])
            elif pos[0] == "-":
                addr = last - int(pos[1:])
            else:
                addr = last
            last = addr
            if call_cost:
                call_cost = False
                continue
            ir = int(fields[2]) if len(fields) > 2 else 0
            executed[(obj, addr)] += ir
            function[(obj, addr)] = fn
    return executed, function


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, transactions = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    executed, function = parse(path)
    hot = collections.defaultdict(set)
    touched = set()
    for (obj, addr), ir in executed.items():
        line = (obj, addr // LINE)
        touched.add(line)
        if 2 * ir >= transactions:
            hot[function[(obj, addr)]].add(line)
    lines = set().union(*hot.values()) if hot else set()
    pages = {(obj, line * LINE // PAGE) for obj, line in lines}
    print(f"hot lines (code run in at least half the transactions): {len(lines)} "
          f"= {len(lines) * LINE / 1024:.1f} KiB on {len(pages)} pages of 4 KiB; "
          f"lines run at all: {len(touched)}")
    for fn, fn_lines in sorted(hot.items(), key=lambda kv: -len(kv[1]))[:top]:
        print(f"{len(fn_lines):6d}  {fn[:150]}")


if __name__ == "__main__":
    main()
