#!/usr/bin/env bash
# Session 31, call 4 (#19): the layout probe without the merge. The harness times split kernel + merge, and the
# one-head shape has 8x the splits per head over 4 merge blocks; ncu times the split kernel alone.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
unpack_builds
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/gpu.txt
command -v ncu || { echo "no ncu"; exit 0; }
M=gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_requests_srcunit_tex_op_read.sum,lts__t_sectors_srcunit_tex_op_read.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed,sm__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__registers_per_thread
for v in split-kv3 split-kv3-onehead split-kv3-fp8 split-kv3-fp8-onehead; do
  timeout 100 ncu --clock-control none --kernel-name regex:apb_decode3_split --launch-skip 3 --launch-count 1 --metrics $M \
    $APB bench kernel decode --variants $v --lengths 128k --repeats 3 --warmup-ms 0 > $OUT/ncu-$v.txt 2>&1
  echo "== $v (exit $?)"; grep -E "apb_decode3|gpu__time|dram__|lts__|sm__|smsp__|launch__|ERROR" $OUT/ncu-$v.txt | head -16
done
# The fp8 split kernel capped at 3 blocks per SM (DV3_MIN_BLOCKS=3: 0.100 against 0.103 ms on 2026-12-04, one order;
# bf16 spills under it, so only the fp8 rows count), both orders, with its GPU tests and the 128K fp8 decode step.
KERNEL=decode_mma.cu VARIANTS="-;DV3_MIN_BLOCKS=3;-;DV3_MIN_BLOCKS=3" ROWS=split-kv3-fp8 LENGTHS=128k TEST_FILTER="fp8kv/decode v3" \
  ROWS_MATCH='^\| (decode|apb) ' E2E="bench decode --device cuda --shape llama-3.1-8b --contexts 128k --kv-cache-dtype fp8 --tokens 48" \
  timeout 400 bash bench/gpu/decode_fp8_variants.sh 2>&1 | tail -40
