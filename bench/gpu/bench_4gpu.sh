#!/usr/bin/env bash
# The 4-GPU step of the paper-scale issue (nvidia-h200-x4): at one context length, Hugging Face on one GPU and our
# full attention on another (in parallel, first), then every sequence-parallel strategy over 4 GPUs with apb launch.
# Run from the repository root with the Native AOT binary in publish/linux-x64; logs/JSON go to $OUT and to
# bench/results/prefill4-<stamp>/; a short table is printed last.
source "$(dirname "$0")/env.sh"
STAMP=$(date -u +%Y%m%d-%H%M%S)
RES=${RES:-$ROOT/bench/results/prefill4-$STAMP}; WORK=$(mktemp -d /tmp/apb-bench4.XXXX)
mkdir -p "$OUT" "$RES"
LENGTH=${LENGTH:-128k}; HF_LENGTH=${HF_LENGTH:-131072}; NPROC=${NPROC:-4}
STRATEGIES=${STRATEGIES:-apb,zigzag,ulysses,star}
COMMON=(--device cuda --shape llama-3.1-8b --query 64 --warmup 0 --repeats 2 --repeat-budget 6)
LOG="$OUT/bench4.log"
require_apb
echo "== $(date -u +%T) GPU 0: apb full $LENGTH | GPU 1: HF $HF_LENGTH" | tee -a "$LOG"
( CUDA_VISIBLE_DEVICES=0 timeout 150 "$APB" bench prefill "${COMMON[@]}" --lengths "$LENGTH" --strategies full --out "$WORK/full" >>"$LOG" 2>&1 ) &
( CUDA_VISIBLE_DEVICES=1 timeout 150 python3 bench/peers/hf_prefill.py --lengths "$HF_LENGTH" --query 64 --repeats 1 --out "$OUT/hf.json" >>"$LOG" 2>&1 ) &
wait
echo "== $(date -u +%T) apb launch --nproc-per-node $NPROC -- bench prefill --strategies $STRATEGIES --lengths $LENGTH" | tee -a "$LOG"
timeout 220 "$APB" launch --nproc-per-node "$NPROC" --timeout 210 --collective-timeout 60 -- \
  bench prefill "${COMMON[@]}" --lengths "$LENGTH" --strategies "$STRATEGIES" --out "$WORK/multi" >>"$LOG" 2>&1
echo "launch rc=$?" | tee -a "$LOG"
cp "$WORK/full/prefill.json" "$OUT/full-prefill.json" 2>/dev/null; cp "$WORK/multi/prefill.json" "$OUT/multi-prefill.json" 2>/dev/null
cat "$WORK/full/prefill.md" "$WORK/multi/prefill.md" >"$OUT/tables.md" 2>/dev/null
python3 - "$OUT" <<'PY' | tee "$OUT/summary.md"
import json, os, sys
out = sys.argv[1]
def load(f):
    try: return json.load(open(os.path.join(out, f)))
    except Exception: return None
rows = []
hf = load("hf.json")
for r in (hf or {}).get("results", []): rows.append(("HF transformers", 1, r["length"], r.get("seconds"), r.get("status")))
for f in ("full-prefill.json", "multi-prefill.json"):
    for r in (load(f) or {}).get("results", []): rows.append((r["strategy"], r["ranks"], r["length"], r.get("seconds"), r.get("status")))
print("| strategy | GPUs | context | prefill s | status |\n|---|---|---|---|---|")
for s, g, n, t, st in rows: print(f"| {s} | {g} | {n} | {'-' if t is None else f'{t:.3f}'} | {st} |")
sec = {(s, g): t for s, g, n, t, st in rows if t}
def ratio(a, b): return f"{sec[a] / sec[b]:.2f}x" if a in sec and b in sec else "-"
print("\n| ratio | value |\n|---|---|")
for label, a, b in (("HF 1 GPU / APB", ("HF transformers", 1), ("apb", 4)), ("zigzag / APB", ("zigzag", 4), ("apb", 4)),
                    ("star / APB", ("star", 4), ("apb", 4)), ("our full 1 GPU / zigzag", ("full", 1), ("zigzag", 4))):
    print(f"| {label} | {ratio(a, b)} |")
PY
cp "$OUT"/* "$RES/" 2>/dev/null
