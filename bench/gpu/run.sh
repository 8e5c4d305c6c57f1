#!/usr/bin/env bash
# The one script run on the GPU machine (`bash bench/gpu/run.sh` from the repository root, with the Native AOT binary
# published here beforehand into publish/linux-x64: no .NET is needed there). It runs, each step bounded by a timeout:
#   1. nvidia-smi (card, driver, clocks as found; nothing is changed)
#   2. apb doctor           (libraries found, versions, kernels compiled by NVRTC for the device)
#   3. apb check-kernels    (every CUDA op vs the CPU reference, fixture models end to end, --bench: attention timings)
# Full logs and JSON go to $OUT (the device tool brings them back) and to bench/results/cuda-<utc stamp>/; a short table
# is printed last. Exit status: non-zero when any check failed.
source "$(dirname "$0")/env.sh"

STAMP=$(date -u +%Y%m%d-%H%M%S)
RES=${RES:-$ROOT/bench/results/cuda-$STAMP}
mkdir -p "$OUT" "$RES"
LENGTHS=${LENGTHS:-16384,65536,131072}

require_apb

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
  for f in src/Apb.Core/Cuda/Kernels/*.cu; do
    timeout 120 nvcc -gencode=arch=compute_90a,code=sm_90a -cubin -o /tmp/$(basename $f).cubin -Xptxas -v "$f" 2>&1
  done | grep -E "Compiling entry|registers|spill|error|warning" | tee "$OUT/ptxas.txt"
  # A matrix kernel on Hopper's fast path shows HGMMA in its SASS; only HMMA means the mma.sync path.
  for f in /tmp/attention_hopper.cu.cubin /tmp/attention.cu.cubin; do
    [ -f "$f" ] && echo "$(basename $f): $(cuobjdump -sass "$f" | grep -c HGMMA) HGMMA, $(cuobjdump -sass "$f" | grep -c HMMA) HMMA instructions"
  done | tee -a "$OUT/ptxas.txt"
fi

echo "== apb check-kernels --bench (lengths $LENGTHS)"
timeout ${CHECK_TIMEOUT:-400} "$APB" check-kernels --bench --bench-lengths "$LENGTHS" --out "$OUT/check-kernels.json" \
  > "$OUT/check-kernels.txt" 2> "$OUT/check-kernels.err"
rc=$?
[ $rc -eq 0 ] || status=1
[ $rc -eq 124 ] && echo "check-kernels TIMED OUT" | tee -a "$OUT/check-kernels.err"
cat "$OUT/check-kernels.err"

# (RES may be OUT itself, as single_gpu.sh sets it: then there is nothing to copy, and cp would fail on each file)
[ "$RES" -ef "$OUT" ] || cp "$OUT"/*.txt "$OUT"/*.json "$OUT"/*.err "$RES/" 2>/dev/null

echo
echo "== failures (full table: $RES/check-kernels.txt)"
grep -E "FAIL" "$OUT/check-kernels.txt" | head -40
echo "== attention / gemm timings"
sed -n '/^timing/,$p' "$OUT/check-kernels.txt"
echo "== summary"
grep -E "^check-kernels:" "$OUT/check-kernels.txt" || echo "check-kernels printed no summary (rc=$rc)"
exit $status
