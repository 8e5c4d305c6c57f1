#!/usr/bin/env bash
# Times compile-time variants of the Hopper attention kernel in one call (`bash bench/gpu/attention_variants.sh` on the
# GPU machine, with the apb binary published beforehand): each entry of VARIANTS is handed to NVRTC as -D options through
# APB_KERNEL_DEFINES, so no rebuild is needed. Also prints the compiler's full resource report for the kernel and, when
# Nsight Compute is installed, a short profile of the default variant. Results: $OUT/variants.md (+ ncu.txt).
source "$(dirname "$0")/env.sh"
LENGTHS=${LENGTHS:-16k,128k}
VARIANTS=${VARIANTS:-"HOP_SERIAL=1;HOP_PINGPONG=0;HOP_PINGPONG=1"}
F=src/Apb.Core/Cuda/Kernels/attention_hopper.cu

IFS=';' read -ra VS <<< "$VARIANTS"
if command -v nvcc >/dev/null; then
  for v in "${VS[@]}"; do
    echo "== ptxas -v $F ($v)"
    IFS=',' read -ra DS <<< "$v"
    timeout 120 nvcc -gencode=arch=compute_90a,code=sm_90a -cubin -o /tmp/hopper.cubin -Xptxas -v "${DS[@]/#/-D}" "$F" 2>&1 \
      | grep -E "C75|attention_hopper_d128|registers|spill" | grep -v "^$"
  done | tee "$OUT/ptxas-hopper.txt"
fi

echo "| defines | kernel | N | heads q/kv | d | median ms | min ms | TFLOP/s |" | tee "$OUT/variants.md"
echo "|---|---|---|---|---|---|---|---|" | tee -a "$OUT/variants.md"
for v in "${VS[@]}"; do
  APB_KERNEL_DEFINES="$v" APB_ATTENTION=hopper timeout 90 "$APB" bench attention --device cuda --lengths "$LENGTHS" --repeats 5 2>/dev/null \
    | grep "^| apb" | sed "s/^/| $v /" | tee -a "$OUT/variants.md"
done
APB_ATTENTION=mma timeout 60 "$APB" bench attention --device cuda --lengths "$LENGTHS" --repeats 3 2>/dev/null | grep "^| apb" | sed "s/^/| mma2 /" | tee -a "$OUT/variants.md"

if command -v ncu >/dev/null && [ "${NCU:-1}" = 1 ]; then
  echo "== ncu (default variant, 16K, one launch)"
  APB_ATTENTION=hopper timeout 180 ncu --kernel-name regex:apb_attention_hopper --launch-skip 1 --launch-count 1 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
    "$APB" bench attention --device cuda --lengths 16k --repeats 1 > "$OUT/ncu.txt" 2>&1
  grep -E "Throughput|Pipe|Stall|Active|Issued|Eligible|Duration|Warp Cycles|%" "$OUT/ncu.txt" | head -60
else
  echo "no ncu here"
fi
