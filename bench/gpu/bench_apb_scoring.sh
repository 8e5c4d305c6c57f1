#!/usr/bin/env bash
# APB with its scoring and selection on the GPU (HeadDot / SelectPassing / GatherHeadRows kernels) against zigzag on
# 2 GPUs and full on 1 GPU, in one device call (`bash bench/gpu/bench_apb_scoring.sh` from the repository root on the
# nvidia-h200-x2 machine, with the Native AOT binary published into publish/linux-x64 beforehand):
#   1. side by side: GPU 1 the GPU tests (tests/Apb.Gpu.Tests: every op, APB's passing ops included) | GPU 0 bench prefill
#      --strategies full
#   2. apb launch --nproc-per-node 2 -- bench prefill --strategies apb,zigzag
#   3. prefill_summary.py (seconds by strategy x length, ratios) and a short table: seconds, scoring ms of the slowest rank,
#      peak GiB per rank, zigzag/APB and full/APB.
# Files go to $OUT and bench/results/prefill-<stamp>/; the short table is printed last.
source "$(dirname "$0")/env.sh"

STAMP=$(date -u +%Y%m%d-%H%M%S)
RES=${RES:-$ROOT/bench/results/prefill-$STAMP}
WORK=$(mktemp -d /tmp/apb-bench-scoring.XXXX)
mkdir -p "$OUT" "$RES"
LOG="$OUT/bench-prefill.log"

SHAPE=${SHAPE:-llama-3.1-8b}
LENGTHS=${LENGTHS:-128k,64k}
FULL_LENGTHS=${FULL_LENGTHS:-128k,64k}
QUERY=${QUERY:-64}
REPEATS=${REPEATS:-3}
REPEAT_BUDGET=${REPEAT_BUDGET:-8}
T_CHECK=${T_CHECK:-120}; T_FULL=${T_FULL:-150}; T_MULTI=${T_MULTI:-200}
COMMON=(--device cuda --shape "$SHAPE" --query "$QUERY" --warmup 0 --repeats "$REPEATS" --repeat-budget "$REPEAT_BUDGET")

require_apb
require_gpu_tests
step "nvidia-smi"
timeout 30 nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used --format=csv 2>&1 | tee -a "$LOG"

step "1. GPU 1: GPU tests | GPU 0: apb bench prefill --strategies full --lengths $FULL_LENGTHS"
( export CUDA_VISIBLE_DEVICES=1
  timeout $T_CHECK "$GPU_TESTS" --out "$OUT/gpu-tests.json" >"$OUT/gpu-tests.txt" 2>&1
  echo "GPU tests rc=$?" >>"$OUT/gpu-tests.txt" ) &
p1=$!
( export CUDA_VISIBLE_DEVICES=0
  timeout $T_FULL "$APB" bench prefill "${COMMON[@]}" --lengths "$FULL_LENGTHS" --strategies full --out "$WORK/gpu1" >"$WORK/gpu1.md" 2>"$WORK/gpu1.log"
  echo "apb bench prefill full rc=$?" >>"$WORK/gpu1.log" ) &
p0=$!
wait $p0; wait $p1
append_log gpu1
step "step 1 done"

step "2. apb launch --nproc-per-node 2 -- bench prefill --strategies apb,zigzag --lengths $LENGTHS"
timeout $T_MULTI "$APB" launch --nproc-per-node 2 --timeout $((T_MULTI - 10)) --collective-timeout 60 -- \
  bench prefill "${COMMON[@]}" --lengths "$LENGTHS" --strategies apb,zigzag --out "$WORK/gpu2" >"$WORK/gpu2.md" 2>"$WORK/gpu2.log"
echo "apb launch bench prefill rc=$?" >>"$WORK/gpu2.log"
append_log gpu2
step "step 2 done"

python3 bench/gpu/prefill_summary.py "$WORK" >"$OUT/summary.md" 2>>"$LOG"
cp "$WORK/gpu1/prefill.json" "$OUT/gpu1-prefill.json" 2>/dev/null
cp "$WORK/gpu2/prefill.json" "$OUT/gpu2-prefill.json" 2>/dev/null
{ echo "---- per-strategy tables"; cat "$WORK/gpu1/prefill.md" "$WORK/gpu2/prefill.md"; } >"$OUT/tables.md" 2>/dev/null
python3 - "$OUT" >"$OUT/short.md" 2>>"$LOG" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = {}
for f in ("gpu1-prefill.json", "gpu2-prefill.json"):
    try: doc = json.load(open(os.path.join(out, f)))
    except Exception: continue
    names = doc.get("phases") or []
    for r in doc.get("results", []):
        if r.get("status") == "skipped": continue
        p = r.get("profile") or {}
        scoring = None
        if "rank_phases_ms" in p and "scoring" in names:
            scoring = max(ph[names.index("scoring")] for ph in p["rank_phases_ms"])
        rows[(r["strategy"], r["length"])] = (r.get("ranks"), r.get("seconds") if r.get("status") == "ok" else r.get("status"),
                                              scoring, r.get("peak_gib"), r.get("plan"))
fmt = lambda v, f="{:.3f}": "-" if v is None else (f.format(v) if isinstance(v, (int, float)) else str(v))
print("| strategy | context | GPUs | prefill s | scoring ms (slowest rank) | peak GiB per rank | zigzag s / this | full s / this |")
print("|---|---|---|---|---|---|---|---|")
for (s, n) in sorted(rows, key=lambda k: (k[1], k[0])):
    ranks, sec, sc, peak, plan = rows[(s, n)]
    z = rows.get(("zigzag", n), (None, None))[1]; fu = rows.get(("full", n), (None, None))[1]
    ratio = lambda a: f"{a / sec:.2f}x" if isinstance(a, float) and isinstance(sec, float) else "-"
    print(f"| {s} | {n // 1024}K | {ranks} | {fmt(sec)} | {fmt(sc, '{:.0f}')} | {' / '.join(f'{g:.1f}' for g in peak) if peak else '-'} | {ratio(z)} | {ratio(fu)} |")
PY
# (at most 8 files come back from the device: the APB ops' check lines go into short.md rather than a file of their own)
{ echo; echo "GPU tests, APB's passing ops:"; echo '```'; grep -E " passing/|^[0-9]+ passed, [0-9]+ failed" "$OUT/gpu-tests.txt"; echo '```'; } >>"$OUT/short.md" 2>/dev/null
cp "$OUT"/* "$RES/" 2>/dev/null

echo; echo "== per-case tables: $RES/tables.md"
grep -E "^\| (full|zigzag|apb) " "$OUT/tables.md" | cut -c1-400
echo; cat "$OUT/summary.md"
echo; echo "== $SHAPE, query $QUERY; $(( $(date +%s) - t0 )) s"
cat "$OUT/short.md"
