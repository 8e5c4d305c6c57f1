#!/usr/bin/env bash
# Times compile-time variants of the Hopper attention kernel in one call (`bash bench/gpu/attention_variants.sh` on the
# GPU machine, with the apb binary published beforehand): each entry of VARIANTS is handed to NVRTC as -D options through
# APB_KERNEL_DEFINES, so no rebuild is needed. Also prints the compiler's full resource report for the kernel and, when
# Nsight Compute is installed, a short profile of the default variant. Results: $OUT/variants.md (+ ncu.txt).
# VARIANTS is required (there is no default): ';' between variants, ',' between the NAME=VALUE defines of one variant,
# e.g. VARIANTS="-;HOP_X=0;HOP_X=1" ('-': the committed kernel). Each NAME must be a macro the kernel guards with
# #ifndef NAME or #ifdef NAME (require_knobs in env.sh); a -D of any other name compiles the same kernel, so the
# variants would time one kernel several times. MASK: causal (default), none or both. The
# committed kernel has no such knob: add it there first. (The HOP_SERIAL / HOP_PINGPONG / HOP_FAST_EXP / HOP_DEFER_PV /
# HOP_STAGES rows in bench/results/cuda-20261128-hopper/variants-*.md come from kernel versions never committed.)
source "$(dirname "$0")/env.sh"
LENGTHS=${LENGTHS:-16k,128k}
MASK=${MASK:-causal}   # causal, none or both
VARIANTS=${VARIANTS:-}
F=src/Apb.Core/Backends/Cuda/Kernels/attention_hopper.cu

require_knobs attention_variants.sh "$F"
if command -v nvcc >/dev/null; then
  for v in "${VS[@]}"; do
    echo "== ptxas -v $F ($v)"
    IFS=',' read -ra DS <<< "$(variant_defines "$v")"
    timeout 120 nvcc -gencode=arch=compute_90a,code=sm_90a -cubin -o /tmp/hopper.cubin -Xptxas -v "${DS[@]/#/-D}" "$F" 2>&1 \
      | grep -E "C75|attention_hopper_d128|registers|spill" | grep -v "^$"
  done | tee "$OUT/ptxas-hopper.txt"
fi

echo "| defines | kernel | variant | shape | median ms | min ms | runs | rate | of peak |" | tee "$OUT/variants.md"
echo "|---|---|---|---|---|---|---|---|---|" | tee -a "$OUT/variants.md"
for v in "${VS[@]}"; do
  APB_KERNEL_DEFINES="$(variant_defines "$v")" timeout 90 "$APB" bench kernel attention --variants hopper --mask "$MASK" --lengths "$LENGTHS" --repeats 5 2>/dev/null \
    | grep "^| attention" | sed "s/^/| $v /" | tee -a "$OUT/variants.md"
done
timeout 60 "$APB" bench kernel attention --variants mma --mask "$MASK" --lengths "$LENGTHS" --repeats 3 2>/dev/null | grep "^| attention" | sed "s/^/| - /" | tee -a "$OUT/variants.md"

if command -v ncu >/dev/null && [ "${NCU:-1}" = 1 ]; then
  echo "== ncu (default variant, 16K, one launch)"
  APB_ATTENTION=hopper timeout 180 ncu --kernel-name regex:apb_attention_hopper --launch-skip 1 --launch-count 1 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
    "$APB" bench kernel attention --variants hopper --mask causal --lengths 16k --repeats 1 > "$OUT/ncu.txt" 2>&1
  grep -E "Throughput|Pipe|Stall|Active|Issued|Eligible|Duration|Warp Cycles|%" "$OUT/ncu.txt" | head -60
else
  echo "no ncu here"
fi
