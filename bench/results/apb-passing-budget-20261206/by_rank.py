#!/usr/bin/env python3
"""APB under the passing budget (this folder's depth.md) against run 12's full, Star and budget-free APB on the same
samples (../train-run12-20261206/depth.md), on multikey_2 and _3 together, by whether the needle lies in ranks 0-3 or
4-7 (eighths of `apb eval depth ... --parts 8`). The cells are rounded to two decimals, so the sums are close to, not
exactly, the per-sample ones.  Usage: python3 by_rank.py depth.md ../train-run12-20261206/depth.md"""
import sys

rows = {}  # (strategy label, task) -> [(mean, count)] over the 8 parts
for path in sys.argv[1:]:
    for line in open(path):
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 11 and cells[1] in ("niah_multikey_2", "niah_multikey_3"):
            rows[(cells[0], cells[1])] = [(float(c.split()[0]), int(c[c.index("(") + 1:c.index(")")])) for c in cells[3:]]

budget = "apb x8 (retaining heads, passing budget 1024)"
for other in ("full", "star x8", "apb x8 (retaining heads)"):
    for name, ranks in (("ranks 0-3", range(0, 4)), ("ranks 4-7", range(4, 8))):
        gained = samples = 0
        for task in ("niah_multikey_2", "niah_multikey_3"):
            for r in ranks:
                (a, n), (o, _) = rows[(budget, task)][r], rows[(other, task)][r]
                gained += (a - o) * n
                samples += n
        print(f"APB with B 1024 minus {other}, needle in {name}: {100 * gained / samples:+.1f} points ({samples} samples)")
