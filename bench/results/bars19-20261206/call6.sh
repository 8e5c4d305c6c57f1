#!/usr/bin/env bash
# Session 31, call 6 (#19): did v3.5 (fb903af, DV3_F16_FOLD=1: the fp8 group scales folded into f16 codes, "a third
# fewer lane instructions" counted from the source) execute fewer instructions? ncu's sm__inst_executed of the fp8
# split kernel at 128K, the committed kernel beside v3.5's file (and v3.5's file with the knob off, as a control);
# v3.5's fp8 GPU tests first.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
unpack_builds
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/gpu.txt
V35=$(realpath .gpu/s31/v35)
APB_KERNEL_SOURCES=$V35 APB_KERNEL_DEFINES=DV3_F16_FOLD=1 timeout 150 publish/gpu-tests/Apb.Gpu.Tests --filter "fp8kv/decode v3" > $OUT/v35-tests.txt 2>&1
echo "v3.5 GPU tests exit $?: $(tail -1 $OUT/v35-tests.txt)"; grep FAIL $OUT/v35-tests.txt | head -5
M=gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread
for v in committed:: v35-fold:$V35:DV3_F16_FOLD=1 v35-off:$V35:DV3_F16_FOLD=0 committed2:: v35-fold2:$V35:DV3_F16_FOLD=1; do
  IFS=: read -r name src defs <<< "$v"
  APB_KERNEL_SOURCES=$src APB_KERNEL_DEFINES=$defs timeout 100 ncu --clock-control none --kernel-name regex:apb_decode3_split --launch-skip 3 --launch-count 1 --metrics $M \
    $APB bench kernel decode --variants split-kv3-fp8 --lengths 128k --repeats 3 --warmup-ms 0 > $OUT/ncu-$name.txt 2>&1
  echo "== $name (exit $?)"; grep -E "apb_decode3|gpu__time|dram__|sm__|smsp__|launch__|ERROR" $OUT/ncu-$name.txt | head -8
  APB_KERNEL_SOURCES=$src APB_KERNEL_DEFINES=$defs timeout 60 $APB bench kernel decode --variants split-kv3-fp8 --lengths 128k --rounds 2 2>/dev/null | grep "^| decode"
done
