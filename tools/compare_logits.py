"""Compares `apb logits --out` files (standard library only, so it runs here and on the GPU machine alike).

  python3 tools/compare_logits.py REF QUERY_ROWS OTHER [OTHER ...]
      a table: ||a-b||/||ref|| over all rows and over the last QUERY_ROWS rows, and whether the last row's argmax agrees
  python3 tools/compare_logits.py --json REF OTHER
      one JSON line {rel, max_abs, argmax_agree, rows}: rel = max|a-b| / max|ref| (the bf16 tolerance rule of the GPU
      checks), argmax_agree = fraction of rows whose argmax is the same
"""
import json, math, sys


def load(path):
    d = json.load(open(path))
    return d["ids"], d["logits"]


def argmax(row):
    return max(range(len(row)), key=row.__getitem__)


def norm_rel(a, b):
    num = sum((x - y) ** 2 for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    den = sum(y * y for rb in b for y in rb)
    return math.sqrt(num / den)


def as_json(ref_path, other_path):
    (ids_a, a), (ids_b, b) = load(ref_path), load(other_path)
    if ids_a != ids_b or len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b)):
        print(json.dumps({"error": f"shapes or ids differ: {len(a)} vs {len(b)} rows"}))
        sys.exit(1)
    max_abs = max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    scale = max(abs(x) for ra in a for x in ra)
    agree = sum(argmax(ra) == argmax(rb) for ra, rb in zip(a, b)) / len(a)
    print(json.dumps({"rel": max_abs / scale, "max_abs": max_abs, "argmax_agree": agree, "rows": len(a)}))


def table(ref_path, q, others):
    _, ref = load(ref_path)
    print(f"file | rel. error, all rows | rel. error, last {q} rows | last-row argmax equal")
    for p in others:
        _, l = load(p)
        print(f"{p} | {norm_rel(l, ref):.3e} | {norm_rel(l[-q:], ref[-q:]):.3e} | {argmax(l[-1]) == argmax(ref[-1])}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--json"]:
        as_json(sys.argv[2], sys.argv[3])
    else:
        table(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
