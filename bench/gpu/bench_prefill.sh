#!/usr/bin/env bash
# Prefill benchmark on the 2-GPU machine (`bash bench/gpu/bench_prefill.sh` from the repository root, with the Native AOT
# binary published here beforehand into publish/linux-x64). Every step is bounded by a timeout; a step that fails or
# runs out of time leaves its rows empty ('-') and the rest still runs.
#   1. side by side, one GPU each (the two never share a GPU):
#      GPU 0: apb bench kernel attention (the kernel the backend picks, causal, 16K/64K/128K), then apb bench prefill
#             --strategies full (one GPU)
#      GPU 1: the peers: bench/peers/attention_sdpa.py (torch SDPA flash = FA2 and cuDNN), bench/peers/hf_prefill.py
#             (HF transformers, same 8B shape, random bf16 weights, sdpa, one GPU)
#   2. apb launch --nproc-per-node 2 -- bench prefill --strategies apb,zigzag,ulysses,ring,star (one process per GPU, NCCL)
#   3. bench/gpu/prefill_summary.py: one table, strategy x length seconds, the issue's ratios and the attention TFLOP/s
# Decode (ms/token, ours and HF) is not measured here: bench/gpu/single_gpu.sh does it (its step 3).
# Lengths run longest first, so a timeout costs the short ones. The instrumented run of each case (per-phase times) runs
# first and doubles as its warm-up; repeats stop once a case's timed runs pass REPEAT_BUDGET seconds.
# Files go to $OUT (at most 8 come back) and bench/results/prefill-<stamp>/; the summary is printed last.
source "$(dirname "$0")/env.sh"

STAMP=$(date -u +%Y%m%d-%H%M%S)
RES=${RES:-$ROOT/bench/results/prefill-$STAMP}
WORK=$(mktemp -d /tmp/apb-bench-prefill.XXXX)
mkdir -p "$OUT" "$RES"
LOG="$OUT/bench-prefill.log"

SHAPE=${SHAPE:-llama-3.1-8b}
LENGTHS=${LENGTHS:-128k,64k,32k}
HF_LENGTHS=${HF_LENGTHS:-$LENGTHS}
HF_LAYERS=${HF_LAYERS:-32}
ATTN_LENGTHS=${ATTN_LENGTHS:-16k,64k,128k}
STRATEGIES=${STRATEGIES:-apb,zigzag,ulysses,ring,star}
REPEATS=${REPEATS:-3}
REPEAT_BUDGET=${REPEAT_BUDGET:-8}
QUERY=${QUERY:-64}
T_ATTN=${T_ATTN:-60}; T_FULL=${T_FULL:-180}; T_SDPA=${T_SDPA:-90}; T_HF=${T_HF:-180}; T_MULTI=${T_MULTI:-300}
COMMON=(--device cuda --shape "$SHAPE" --lengths "$LENGTHS" --query "$QUERY" --warmup 0 --repeats "$REPEATS" --repeat-budget "$REPEAT_BUDGET")

require_apb

step "nvidia-smi"
timeout 30 nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv 2>&1 | tee -a "$LOG"
timeout 30 python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__, "gpus", torch.cuda.device_count())' 2>&1 | tee -a "$LOG"

step "1. GPU 0: apb bench kernel attention + apb bench prefill --strategies full | GPU 1: attention_sdpa.py + hf_prefill.py"
(
  export CUDA_VISIBLE_DEVICES=0
  timeout $T_ATTN "$APB" bench kernel attention --variants auto --mask causal --lengths "$ATTN_LENGTHS" \
    --out "$WORK/ours-attention/attention.json" >"$WORK/ours-attention.md" 2>"$WORK/ours-attention.log"
  echo "apb bench kernel attention rc=$?" >>"$WORK/ours-attention.log"
  timeout $T_FULL "$APB" bench prefill "${COMMON[@]}" --strategies full --out "$WORK/gpu1" >"$WORK/gpu1.md" 2>"$WORK/gpu1.log"
  echo "apb bench prefill full rc=$?" >>"$WORK/gpu1.log"
) &
p0=$!
(
  export CUDA_VISIBLE_DEVICES=1
  timeout $T_SDPA python3 bench/peers/attention_sdpa.py --lengths "$ATTN_LENGTHS" --out "$WORK/sdpa.json" >"$WORK/sdpa.md" 2>"$WORK/sdpa.log"
  echo "attention_sdpa.py rc=$?" >>"$WORK/sdpa.log"
  timeout $T_HF python3 bench/peers/hf_prefill.py --lengths "$HF_LENGTHS" --layers "$HF_LAYERS" --query "$QUERY" --repeats "$REPEATS" \
    --repeat-budget "$REPEAT_BUDGET" --out "$WORK/hf.json" >"$WORK/hf.md" 2>"$WORK/hf.log"
  echo "hf_prefill.py rc=$?" >>"$WORK/hf.log"
) &
p1=$!
wait $p0; wait $p1
append_log ours-attention gpu1 sdpa hf
step "step 1 done"

step "2. apb launch --nproc-per-node 2 -- bench prefill --strategies $STRATEGIES"
timeout $T_MULTI "$APB" launch --nproc-per-node 2 --timeout $((T_MULTI - 10)) --collective-timeout 60 -- \
  bench prefill "${COMMON[@]}" --strategies "$STRATEGIES" --out "$WORK/gpu2" >"$WORK/gpu2.md" 2>"$WORK/gpu2.log"
echo "apb launch bench prefill rc=$?" >>"$WORK/gpu2.log"
append_log gpu2
step "step 2 done"

python3 bench/gpu/prefill_summary.py "$WORK" >"$OUT/summary.md" 2>>"$LOG"
cp "$WORK/gpu1/prefill.json" "$OUT/gpu1-prefill.json" 2>/dev/null
cp "$WORK/gpu2/prefill.json" "$OUT/gpu2-prefill.json" 2>/dev/null
cp "$WORK/hf.json" "$WORK/sdpa.json" "$OUT/" 2>/dev/null
cp "$WORK/ours-attention/attention.json" "$OUT/ours-attention.json" 2>/dev/null
{ echo "---- per-strategy tables"; cat "$WORK/gpu1/prefill.md" "$WORK/gpu2/prefill.md"; } >"$OUT/tables.md" 2>/dev/null
cp "$OUT"/* "$RES/" 2>/dev/null

echo
echo "== per-case tables (ours): $RES/tables.md"
grep -E "^\| (full|ring|zigzag|ulysses|star|apb) " "$OUT/tables.md" | cut -c1-400
echo
echo "== prefill: $SHAPE, query $QUERY tokens; $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) x$(nvidia-smi -L | wc -l); $(( $(date +%s) - t0 )) s"
cat "$OUT/summary.md"
