#!/usr/bin/env bash
# The decode step's products on one GPU, in one call (`bash bench/gpu/gemv.sh` from the repository root; binaries as
# for decode.sh: .gpu/apb.xz and .gpu/Apb.Gpu.Tests.xz, unpacked here):
#   1. ptxas -v of gemv.cu, or of each file of $PTXAS_FILES (registers and spills per kernel), when nvcc is there
#   2. the GPU tests of $FILTER (default: ops, models, decode)
#   3. apb bench kernel gemv at M = 1, 2, 4: each product of a Llama-3.1-8B decode step through gemv.cu and through
#      cuBLASLt, same call
#   4. apb bench decode (ms per token after $CONTEXTS, default 8k,128k) with the matrix-vector kernels off
#      (APB_GEMV_MAX_ROWS=0: cuBLASLt, as before gemv.cu) and on (4: every row count it takes), same call; the table's "host ms" column says how
#      much of a step the host spent queueing it
#      E2E_RUNS (space-separated VAR=value settings, one run each; default "APB_GEMV_MAX_ROWS=0 APB_GEMV_MAX_ROWS=4")
#      sets what the decode runs compare, e.g. E2E_RUNS="APB_PDL=0 APB_PDL=1" for launches without and with
#      programmatic dependent launch
# SKIP (space-separated) leaves out steps: ptxas, tests, kernel, e2e.
# Everything lands in $OUT/gemv.tar.gz with a summary in $OUT/summary.md (printed last).
source "$(dirname "$0")/env.sh"
WORK=${WORK:-/tmp/apb-gemv}
CONTEXTS=${CONTEXTS:-8k,128k}
SKIP=${SKIP:-}
begin_run apb:publish/linux-x64/apb Apb.Gpu.Tests:publish/gpu-tests/Apb.Gpu.Tests

skip ptxas || for f in ${PTXAS_FILES:-gemv.cu}; do ptxas_summary "src/Apb.Core/Backends/Cuda/Kernels/$f"; done

skip tests || gpu_tests_summary "${FILTER:-ops/,models/,decode/}"

if [[ " $SKIP " != *" kernel "* ]]; then
  step "bench kernel gemv"
  timeout 120 "$APB" bench kernel gemv --lengths 1,2,4 --out "$WORK/kernel" > "$WORK/kernel.md" 2> "$WORK/kernel.log"
  summarize $? kernel "bench kernel gemv"
fi

if [[ " $SKIP " != *" e2e "* ]]; then
  for run in ${E2E_RUNS:-APB_GEMV_MAX_ROWS=0 APB_GEMV_MAX_ROWS=4}; do
    name=decode-$(echo "$run" | tr 'A-Z=' 'a-z-')
    step "bench decode, $run"
    env "$run" timeout 200 "$APB" bench decode --shape llama-3.1-8b --device cuda --lengths "$CONTEXTS" \
      --out "$WORK/$name" > "$WORK/$name.md" 2> "$WORK/$name.log"
    summarize $? "$name" "bench decode, $run" '^(##|\|)'
  done
fi

tar -czf "$OUT/gemv.tar.gz" -C "$WORK" .
step "done"
cat "$SUMMARY"
