"""Compares two `apb logits --out` files: max |a - b| relative to max |ref|, and how often the rows' argmax agree.
Usage: compare_logits.py REF OTHER  -> prints one JSON line {rel, max_abs, argmax_agree, rows}."""
import json, sys
import numpy as np

ref = json.load(open(sys.argv[1])); got = json.load(open(sys.argv[2]))
a = np.asarray(ref["logits"], dtype=np.float64); b = np.asarray(got["logits"], dtype=np.float64)
if ref["ids"] != got["ids"] or a.shape != b.shape:
    print(json.dumps({"error": f"shapes differ: {a.shape} vs {b.shape} (or different ids)"})); sys.exit(1)
diff = np.abs(a - b)
print(json.dumps({"rel": float(diff.max() / np.abs(a).max()), "max_abs": float(diff.max()),
                  "argmax_agree": float((a.argmax(1) == b.argmax(1)).mean()), "rows": int(a.shape[0])}))
