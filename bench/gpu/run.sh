#!/usr/bin/env bash
# The one-GPU check run on the GPU machine (`bash bench/gpu/run.sh` from the repository root), with two Native AOT
# binaries published here beforehand (no .NET is needed there):
#   dotnet publish src/Apb.Cli -c Release -r linux-x64 -p:PublishAot=true -o publish/linux-x64
#   dotnet publish tests/Apb.Gpu.Tests -c Release -r linux-x64 -p:PublishAot=true -o publish/gpu-tests
# It runs, each step bounded by a timeout:
#   1. nvidia-smi (card, driver, clocks as found; nothing is changed)
#   2. apb doctor           (libraries found, versions, kernels compiled by NVRTC for the device)
#   3. the GPU tests        (tests/Apb.Gpu.Tests: every CUDA op vs the CPU reference, every attention kernel, split-KV
#                            decode, APB's passing ops, the merges, fixture models end to end; `--filter` with FILTER)
#   4. kernel timings       (apb bench kernel attention / decode / gemm at $LENGTHS; KERNELS to choose others)
# Logs and JSON go to $OUT (the device tool brings them back) and to bench/results/cuda-<utc stamp>/; a short table is
# printed last. Exit status: non-zero when a GPU test failed or a step failed.
source "$(dirname "$0")/env.sh"

STAMP=$(date -u +%Y%m%d-%H%M%S)
RES=${RES:-$ROOT/bench/results/cuda-$STAMP}
mkdir -p "$OUT" "$RES"
LENGTHS=${LENGTHS:-16k,64k,128k}
KERNELS=${KERNELS:-attention decode gemm}
FILTER=${FILTER:-}

require_apb
require_gpu_tests

status=0
echo "== nvidia-smi"
timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
  --format=csv 2>&1 | tee "$OUT/nvidia-smi.txt"

echo "== apb doctor"
timeout 180 "$APB" doctor 2>&1 | tee "$OUT/doctor.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# The compiler's resource report (registers, spills, shared memory) for each kernel, when nvcc is there: costs seconds.
if command -v nvcc >/dev/null; then
  echo "== ptxas -v (sm_90a)"
  for f in src/Apb.Core/Backends/Cuda/Kernels/*.cu; do
    timeout 120 nvcc -gencode=arch=compute_90a,code=sm_90a -cubin -o /tmp/$(basename $f).cubin -Xptxas -v "$f" 2>&1
  done | grep -E "Compiling entry|registers|spill|error|warning" | tee "$OUT/ptxas.txt"
  # A matrix kernel on Hopper's fast path shows HGMMA in its SASS; only HMMA means the mma.sync path.
  for f in /tmp/attention_hopper.cu.cubin /tmp/attention.cu.cubin; do
    [ -f "$f" ] && echo "$(basename $f): $(cuobjdump -sass "$f" | grep -c HGMMA) HGMMA, $(cuobjdump -sass "$f" | grep -c HMMA) HMMA instructions"
  done | tee -a "$OUT/ptxas.txt"
fi

echo "== GPU tests ($GPU_TESTS${FILTER:+ --filter $FILTER})"
timeout ${TESTS_TIMEOUT:-400} "$GPU_TESTS" ${FILTER:+--filter "$FILTER"} --out "$OUT/gpu-tests.json" > "$OUT/gpu-tests.txt" 2>&1
rc=$?
[ $rc -eq 0 ] || status=1
[ $rc -eq 124 ] && echo "GPU tests TIMED OUT" | tee -a "$OUT/gpu-tests.txt"

for k in $KERNELS; do
  echo "== apb bench kernel $k (lengths $LENGTHS)"
  # gemm's size is its side (8192 by default), not a sequence length.
  lens=(--lengths "$LENGTHS"); [ "$k" = gemm ] && lens=()
  timeout ${KERNEL_TIMEOUT:-240} "$APB" bench kernel "$k" ${lens[@]+"${lens[@]}"} --out "$OUT/kernel-$k.json" > "$OUT/kernel-$k.md" 2> "$OUT/kernel-$k.log"
  krc=$?
  [ $krc -eq 0 ] || { status=1; echo "bench kernel $k failed (rc=$krc):"; tail -5 "$OUT/kernel-$k.log"; }
done

# (RES may be OUT itself, as single_gpu.sh sets it: then there is nothing to copy, and cp would fail on each file)
[ "$RES" -ef "$OUT" ] || cp "$OUT"/*.txt "$OUT"/*.json "$OUT"/*.md "$OUT"/*.log "$RES/" 2>/dev/null

echo
echo "== GPU test failures (full list: $RES/gpu-tests.txt)"
grep -E "^FAIL|^  |^error" "$OUT/gpu-tests.txt" | head -40
echo "== kernel timings"
for k in $KERNELS; do grep -E "^\|" "$OUT/kernel-$k.md"; done
echo "== summary"
grep -E "^[0-9]+ passed, [0-9]+ failed" "$OUT/gpu-tests.txt" || echo "the GPU tests printed no summary (rc=$rc)"
exit $status
