#!/usr/bin/env python3
"""APB against full and Star on multikey_2 and _3 together, by whether the needle lies in ranks 0-3 or 4-7, from the
eighths tables of depth.md (`apb eval depth call3/mk-x8-64k.json --strategy S --parts 8`). The cells are rounded to two
decimals, so the sums are close to, not exactly, the per-sample ones.  Usage: python3 by_rank.py depth.md"""
import sys

rows = {}  # (strategy, task) -> [(mean, count)] over the 8 parts
for line in open(sys.argv[1]):
    cells = [c.strip() for c in line.split("|")[1:-1]]
    if len(cells) == 11 and cells[1] in ("niah_multikey_2", "niah_multikey_3"):
        rows[(cells[0].split()[0], cells[1])] = [(float(c.split()[0]), int(c[c.index("(") + 1:c.index(")")])) for c in cells[3:]]

for other in ("full", "star"):
    for name, ranks in (("ranks 0-3", range(0, 4)), ("ranks 4-7", range(4, 8))):
        gained = samples = 0
        for task in ("niah_multikey_2", "niah_multikey_3"):
            for r in ranks:
                (a, n), (o, _) = rows[("apb", task)][r], rows[(other, task)][r]
                gained += (a - o) * n
                samples += n
        print(f"APB minus {other}, needle in {name}: {100 * gained / samples:+.1f} points ({samples} samples)")
