"""Relative error of `apb logits --out` files against a reference one (standard library only).
Usage: python3 tools/compare_logits.py REFERENCE.json QUERY_ROWS OTHER.json [OTHER.json ...]
Prints, per file: ||a-b||/||b|| over all rows, over the last QUERY_ROWS rows, and whether the last row's argmax agrees."""
import json, math, sys

def load(p): return json.load(open(p))["logits"]

def rel(a, b):
    num = sum((x - y) ** 2 for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    den = sum(y * y for rb in b for y in rb)
    return math.sqrt(num / den)

ref, q = load(sys.argv[1]), int(sys.argv[2])
argmax = lambda row: max(range(len(row)), key=row.__getitem__)
print("file | rel. error, all rows | rel. error, last %d rows | last-row argmax equal" % q)
for p in sys.argv[3:]:
    l = load(p)
    print(f"{p} | {rel(l, ref):.3e} | {rel(l[-q:], ref[-q:]):.3e} | {argmax(l[-1]) == argmax(ref[-1])}")
