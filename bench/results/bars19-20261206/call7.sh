#!/usr/bin/env bash
# Session 31, call 7 (#19): does more independent work per warp move the fp8 split-KV decode? The tile loop unrolled
# by two (DV3_UNROLL2=1, this tree's decode_mma.cu through APB_KERNEL_SOURCES: the binary's embedded copy predates the
# knob), and the same with the mma asm statements not volatile (.gpu/s31/pure: so the compiler may move one tile's
# products past the other's). GPU tests of both first; then ABCABC rows of the kernel (fp8 and bf16) and ncu counts,
# and the 128K fp8 decode step.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
unpack_builds
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/gpu.txt
TREE=$(realpath src/Apb.Core/Backends/Cuda/Kernels); PURE=$(realpath .gpu/s31/pure)
V=("committed::" "unroll2:$TREE:DV3_UNROLL2=1" "unroll2-pure:$PURE:DV3_UNROLL2=1")
for v in "${V[@]:1}"; do
  IFS=: read -r name src defs <<< "$v"
  APB_KERNEL_SOURCES=$src APB_KERNEL_DEFINES=$defs timeout 110 publish/gpu-tests/Apb.Gpu.Tests --filter "fp8kv/decode v3,decode/v3" > $OUT/tests-$name.txt 2>&1
  echo "$name GPU tests exit $?: $(tail -1 $OUT/tests-$name.txt)"; grep FAIL $OUT/tests-$name.txt | head -5
done
M=gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread
for v in "${V[@]}"; do
  IFS=: read -r name src defs <<< "$v"
  APB_KERNEL_SOURCES=$src APB_KERNEL_DEFINES=$defs timeout 90 ncu --clock-control none --kernel-name regex:apb_decode3_split_d128_p8_fp8 --launch-skip 3 --launch-count 1 --metrics $M \
    $APB bench kernel decode --variants split-kv3-fp8 --lengths 128k --repeats 3 --warmup-ms 0 > $OUT/ncu-$name.txt 2>&1
  echo "== ncu $name (exit $?)"; grep -E "gpu__time|dram__|sm__|smsp__|launch__|ERROR" $OUT/ncu-$name.txt | head -6
done
for round in 1 2; do
  for v in "${V[@]}"; do
    IFS=: read -r name src defs <<< "$v"
    echo "== round $round $name"
    APB_KERNEL_SOURCES=$src APB_KERNEL_DEFINES=$defs timeout 60 $APB bench kernel decode --variants split-kv3-fp8,split-kv3 --lengths 128k --rounds 2 2>/dev/null | grep "^| decode" | grep -v batch
    APB_KERNEL_SOURCES=$src APB_KERNEL_DEFINES=$defs timeout 80 $APB bench decode --device cuda --shape llama-3.1-8b --contexts 128k --kv-cache-dtype fp8 --tokens 32 2>/dev/null | grep "^| apb"
  done
done
