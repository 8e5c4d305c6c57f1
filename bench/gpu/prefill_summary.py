#!/usr/bin/env python3
"""The last table of bench_prefill.sh: prefill seconds by strategy and length (ours on 1 and 2 GPUs, HF on 1 GPU), the
issue's ratios at the longest common length, and attention TFLOP/s (ours vs FA2 vs cuDNN). Reads the JSON the steps wrote;
missing files or rows show as '-'. Usage: prefill_summary.py WORKDIR"""
import json, os, sys

work = sys.argv[1]


def load(name):
    try:
        with open(os.path.join(work, name)) as f:
            return json.load(f)
    except Exception:
        return None


ours1, ours2, hf = load("gpu1/prefill.json"), load("gpu2/prefill.json"), load("hf.json")
attn, sdpa = load("ours-attention/attention.json"), load("sdpa.json")
secs = {}   # (row name, length) -> seconds or a status
for doc, suffix in ((ours1, "1 GPU"), (ours2, None)):
    for r in (doc or {}).get("results", []):
        if r["status"] == "skipped":
            continue
        name = f"{r['strategy']} ({r['ranks']} GPU{'s' if r['ranks'] > 1 else ''})"
        secs[(name, r["length"])] = r["seconds"] if r["status"] == "ok" else r["status"]
for r in (hf or {}).get("results", []):
    secs[("HF transformers (1 GPU)", r["length"])] = r["seconds"] if r["status"] == "ok" else r["status"]

lengths = sorted({n for _, n in secs})
order = ["HF transformers (1 GPU)", "full (1 GPU)", "ring (2 GPUs)", "zigzag (2 GPUs)", "ulysses (2 GPUs)", "star (2 GPUs)", "apb (2 GPUs)"]
rows = [r for r in order if any((r, n) in secs for n in lengths)] + sorted({r for r, _ in secs} - set(order))


def lab(n):
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


def fmt(v):
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


print("| prefill seconds (median) | " + " | ".join(lab(n) for n in lengths) + " |")
print("|---|" + "---|" * len(lengths))
for r in rows:
    print(f"| {r} | " + " | ".join(fmt(secs.get((r, n))) for n in lengths) + " |")

def num(r, n):
    v = secs.get((r, n))
    return v if isinstance(v, float) else None

print()
ratio_len = max([n for n in lengths if num("apb (2 GPUs)", n) is not None] or [0])
if ratio_len:
    print(f"| ratio at {lab(ratio_len)} | value | bar | met |")
    print("|---|---|---|---|")
    for label, a, b, bar in (("APB 2 GPUs vs HF 1 GPU (HF s / APB s)", "HF transformers (1 GPU)", "apb (2 GPUs)", 2.0),
                             ("APB vs our zigzag, 2 GPUs (zigzag s / APB s)", "zigzag (2 GPUs)", "apb (2 GPUs)", 1.3),
                             ("our zigzag 2 GPUs vs our full 1 GPU (full s / zigzag s)", "full (1 GPU)", "zigzag (2 GPUs)", 1.6),
                             ("our full 1 GPU vs HF 1 GPU (HF s / full s)", "HF transformers (1 GPU)", "full (1 GPU)", None)):
        x, y = num(a, ratio_len), num(b, ratio_len)
        v = x / y if x and y else None
        print(f"| {label} | {'-' if v is None else f'{v:.2f}x'} | {'-' if bar is None else f'{bar}x'} | "
              f"{'-' if v is None or bar is None else ('yes' if v >= bar else 'NO')} |")
else:
    print("no APB result: no ratios")

print()
tf = {}
for r in (attn or {}).get("results", []):
    # The kernel Auto picked is not in the JSON: name the selector ("auto" = the Hopper kernel on sm_90, mma2 elsewhere).
    tf[(f"ours (apb {str((attn or {}).get('kernel', '?')).lower()})", r["n"])] = r["tflops"]
for r in (sdpa or {}).get("results", []):
    tf[(f"torch sdpa {r['backend']}", r["n"])] = r.get("tflops", r.get("status"))
alens = sorted({n for _, n in tf})
if alens:
    print("| attention fwd causal 32/8 heads d=128 bf16, TFLOP/s | " + " | ".join(lab(n) for n in alens) + " |")
    print("|---|" + "---|" * len(alens))
    for k in sorted({k for k, _ in tf}, key=lambda s: (not s.startswith("ours"), s)):
        print(f"| {k} | " + " | ".join(fmt(tf.get((k, n))) if not isinstance(tf.get((k, n)), float) else f"{tf[(k, n)]:.1f}" for n in alens) + " |")
