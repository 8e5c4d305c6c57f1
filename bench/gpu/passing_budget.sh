#!/usr/bin/env bash
# What APB's passing budget (docs/apb-algorithm.md 2.8) costs and saves in time, on one GPU, in one call
# (`bash bench/gpu/passing_budget.sh` from the repository root; the binaries from .gpu/builds.tar.xz and
# .gpu/gpu-tests.tar.xz, both carried):
#   1. the GPU cases of the best-first selection and of a budgeted APB prefill (Apb.Gpu.Tests --filter)
#   2. apb bench kernel passing: the selection with and without the best-first order, at 16K and 32K rows
#   3. apb bench kernel critical-path at 8 and 4 ranks: each rank's work alone at 128K (Llama-3.1-8B shape), the
#      modeled multi-GPU prefill of both APB layouts with and without the default budget, against the zigzag ring
#   4. with BENCH_PREFILL=1, apb bench prefill of APB at LENGTH (default 32k) on RANKS (default 4) in-process ranks,
#      with and without the budget (one GPU: the ranks share it, so this is a total-work check, not a critical path)
# Writes $OUT/passing-budget.tar.gz and $OUT/summary.md (printed last).
source "$(dirname "$0")/env.sh"
WORK=${WORK:-/tmp/apb-passing-budget}
LENGTH=${LENGTH:-32k}
RANKS=${RANKS:-4}
begin_run
require_gpu_tests

step "GPU cases: best first, passing budget"
timeout 180 "$GPU_TESTS" --filter "best first,passing budget" --out "$WORK/gpu-tests.json" > "$WORK/gpu-tests.md" 2>&1
summarize $? gpu-tests "GPU cases" '^(ok|FAIL)|passed, '

step "bench kernel passing 16k,32k"
timeout 240 "$APB" bench kernel passing --lengths 16k,32k --out "$WORK/passing.json" > "$WORK/passing.md" 2> "$WORK/passing.log"
summarize $? passing "passing ops (select_passing against select_passing best first)" 'select_passing|^\| kernel'

step "bench kernel critical-path 8,4"
timeout 420 "$APB" bench kernel critical-path --lengths 8,4 --out "$WORK/critical-path.json" > "$WORK/critical-path.md" 2> "$WORK/critical-path.log"
echo "bench kernel critical-path exit $?" >> "$SUMMARY"
{ echo "### critical path (per rank and layer, ms; modeled prefill)"; grep -E "critical path|^  " "$WORK/critical-path.log"; } >> "$SUMMARY"

if [ "${BENCH_PREFILL:-0}" = 1 ]; then
  for b in default 0; do
    name=prefill-$b
    flag=(); [ "$b" = 0 ] && flag=(--passing-budget 0)
    step "bench prefill apb x$RANKS $LENGTH, budget $b"
    timeout 300 "$APB" bench prefill --strategies apb --ranks "$RANKS" --lengths "$LENGTH" "${flag[@]}" --out "$WORK/$name" \
      > "$WORK/$name.md" 2> "$WORK/$name.log"
    summarize $? "$name" "bench prefill apb x$RANKS $LENGTH, budget $b"
  done
fi

tar -czf "$OUT/passing-budget.tar.gz" -C "$WORK" .
step "done"
cat "$SUMMARY"
