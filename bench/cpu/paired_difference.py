"""Paired difference of two `apb eval ruler` JSON files of one seed (the same samples): `python3
bench/cpu/paired_difference.py REFERENCE.json OTHER.json [STRATEGY]`. For each length, OTHER's task mean minus
REFERENCE's, sample by sample, with a 95 % interval: the statistic of src/Apb.Core/Eval/PairedDifference.cs, for runs
that cannot share one invocation (a setting read from the environment, a different binary). Rows are matched by
(length, task); STRATEGY (default full) picks the rows of each file. Needs the files' per-sample "scores"."""
import json, math, sys
from collections import defaultdict


def rows(path, strategy):
    out = {}
    for r in json.load(open(path))["results"]:
        if r["strategy"] == strategy and "scores" in r:
            out[(r["length"], r["task"])] = r["scores"]
    return out


ref, other = sys.argv[1], sys.argv[2]
strategy = sys.argv[3] if len(sys.argv) > 3 else "full"
a, b = rows(ref, strategy), rows(other, strategy)
by_len = defaultdict(list)
for key in sorted(set(a) & set(b)):
    x, y = a[key], b[key]
    if len(x) != len(y) or not x:
        continue
    d = [q - p for p, q in zip(x, y)]
    n = len(d)
    m = sum(d) / n
    var = sum((v - m) ** 2 for v in d) / (n - 1) / n if n > 1 else 0.0
    by_len[key[0]].append((key[1], m, var))
for length, tasks in sorted(by_len.items()):
    T = len(tasks)
    diff = 100 * sum(m for _, m, _ in tasks) / T
    se = 100 * math.sqrt(sum(v for _, _, v in tasks)) / T
    moved = ", ".join(f"{t} {100 * m:+.1f}" for t, m, _ in tasks if m != 0) or "no task's mean moved"
    flips = sum(1 for key in set(a) & set(b) if key[0] == length and len(a[key]) == len(b[key])
                for p, q in zip(a[key], b[key]) if p != q)
    print(f"{length}: {other} minus {ref}, {strategy}, {T} tasks: {diff:+.1f} +- {1.96 * se:.1f} (95 %); "
          f"per task: {moved}; samples whose score changed: {flips}")
